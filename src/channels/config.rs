//! `<config dir>/channels.toml`: the chat channels the daemon runs besides the relay,
//! parsed into typed [`Telegram`] entries. The file is schema-compatible with the
//! reference daemon where they overlap:
//!
//! ```toml
//! [[channels.telegram]]
//! instance_id = "main"
//! enabled = true
//! token_env = "TELEGRAM_BOT_TOKEN"        # or token_file = "/path/to/token"
//! allowed_senders = [123456789]           # empty: nobody
//! ```
//!
//! Only the TOML this needs is read (tables `[[channels.telegram]]`, `key = value` with
//! strings, integers, booleans and one-line arrays of them, `#` comments); anything else
//! is an error naming its line. The bot token is never in this file: a `token` key is
//! refused, and the token is read from the variable or file named here at start.

use std::path::{Path, PathBuf};

/// One Telegram bot.
#[derive(Debug, Clone, PartialEq)]
pub struct Telegram {
    pub instance_id: String,
    pub enabled: bool,
    /// Bot API base URL (`https://api.telegram.org`; a loopback fake in tests).
    pub api_base: String,
    pub token: TokenSource,
    /// The agent a chat's session runs (`claude`, `codex`, an ACP agent).
    pub default_provider: String,
    /// Working directory of the chats' sessions (`None`: the daemon's default).
    pub cwd: Option<String>,
    /// In groups, only messages starting with this run (the prefix is stripped).
    pub trigger_prefix: Option<String>,
    /// User ids allowed to talk to the bot; empty lets nobody in.
    pub allowed_senders: Vec<i64>,
    /// Group chat ids the bot answers in (besides private chats with allowed senders).
    pub allowed_groups: Vec<i64>,
    pub rate_limit_per_min: u32,
    pub dedup_window_seconds: u64,
    /// How long one `getUpdates` long poll waits for news (Telegram allows up to 50).
    pub poll_timeout_seconds: u64,
}

/// Where the bot token comes from (never the config file itself).
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource {
    Env(String),
    File(PathBuf),
}

/// A problem in `channels.toml`, naming the line.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "channels.toml: {}", self.message)
        } else {
            write!(f, "channels.toml line {}: {}", self.line, self.message)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Val>),
}

/// A key of a table: its line, name and value.
type Key = (usize, String, Val);

fn err(line: usize, message: impl Into<String>) -> ConfigError {
    ConfigError {
        line,
        message: message.into(),
    }
}

/// Read `<config_dir>/channels.toml`; no file means no channels.
pub fn load(config_dir: &Path) -> Result<Vec<Telegram>, ConfigError> {
    let path = config_dir.join("channels.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(err(0, format!("cannot read {}: {e}", path.display()))),
    }
}

/// Parse the text of a `channels.toml`.
pub fn parse(text: &str) -> Result<Vec<Telegram>, ConfigError> {
    // Each [[channels.telegram]] table: its first line and its keys with their lines.
    let mut tables: Vec<(usize, Vec<Key>)> = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, raw)) = lines.next() {
        let n = i + 1;
        let mut line = strip_comment(raw).trim().to_string();
        // An array may go on over the next lines until its `]`.
        if line
            .split_once('=')
            .is_some_and(|(_, v)| v.trim().starts_with('['))
            && !line.ends_with(']')
        {
            loop {
                let Some((_, more)) = lines.next() else {
                    return Err(err(n, "an array that never closes (no `]`)"));
                };
                line.push(' ');
                line.push_str(strip_comment(more).trim());
                if line.ends_with(']') {
                    break;
                }
            }
        }
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            match line.as_str() {
                "[[channels.telegram]]" => tables.push((n, Vec::new())),
                "[channels]" => {}
                other => {
                    return Err(err(
                        n,
                        format!("unknown table {other} (expected [[channels.telegram]])"),
                    ));
                }
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(err(n, "expected `key = value`"));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err(n, format!("bad key {key:?}")));
        }
        let value = parse_value(value.trim()).map_err(|m| err(n, m))?;
        let Some(table) = tables.last_mut() else {
            return Err(err(n, "a key outside a [[channels.telegram]] table"));
        };
        if table.1.iter().any(|(_, k, _)| k == key) {
            return Err(err(n, format!("{key} is set twice")));
        }
        table.1.push((n, key.to_string(), value));
    }
    let mut out: Vec<Telegram> = Vec::new();
    for (first, keys) in tables {
        let t = telegram(first, &keys)?;
        if out.iter().any(|o| o.instance_id == t.instance_id) {
            return Err(err(
                first,
                format!("instance_id {:?} is used twice", t.instance_id),
            ));
        }
        out.push(t);
    }
    Ok(out)
}

fn telegram(first: usize, keys: &[Key]) -> Result<Telegram, ConfigError> {
    let get = |k: &str| {
        keys.iter()
            .find(|(_, key, _)| key == k)
            .map(|(n, _, v)| (*n, v))
    };
    let string = |k: &str| -> Result<Option<String>, ConfigError> {
        match get(k) {
            None => Ok(None),
            Some((_, Val::Str(s))) => Ok(Some(s.clone())),
            Some((n, _)) => Err(err(n, format!("{k} must be a string"))),
        }
    };
    let ids = |k: &str| -> Result<Vec<i64>, ConfigError> {
        match get(k) {
            None => Ok(Vec::new()),
            Some((n, Val::List(items))) => items
                .iter()
                .map(|v| match v {
                    Val::Int(i) => Ok(*i),
                    Val::Str(s) => s
                        .trim()
                        .parse()
                        .map_err(|_| err(n, format!("{k}: {s:?} is not a numeric Telegram id"))),
                    _ => Err(err(n, format!("{k} must list numeric ids"))),
                })
                .collect(),
            Some((n, _)) => Err(err(n, format!("{k} must be a list of numeric ids"))),
        }
    };
    let int = |k: &str, default: i64, min: i64, max: i64| -> Result<i64, ConfigError> {
        match get(k) {
            None => Ok(default),
            Some((_, Val::Int(i))) if (min..=max).contains(i) => Ok(*i),
            Some((n, _)) => Err(err(
                n,
                format!("{k} must be a whole number from {min} to {max}"),
            )),
        }
    };
    const KNOWN: &[&str] = &[
        "instance_id",
        "enabled",
        "api_base",
        "token_env",
        "token_file",
        "default_provider",
        "cwd",
        "trigger_prefix",
        "allowed_senders",
        "allowed_groups",
        "rate_limit_per_min",
        "dedup_window_seconds",
        "poll_timeout_seconds",
    ];
    for (n, k, _) in keys {
        if k == "token" || k == "bot_token" {
            return Err(err(
                *n,
                "the bot token does not belong in this file: set token_env (a variable's name) or token_file (a 0600 file's path)",
            ));
        }
        if !KNOWN.contains(&k.as_str()) {
            return Err(err(*n, format!("unknown key {k}")));
        }
    }
    let token = match (string("token_env")?, string("token_file")?) {
        (Some(v), None) if !v.is_empty() => TokenSource::Env(v),
        (None, Some(f)) if !f.is_empty() => TokenSource::File(PathBuf::from(f)),
        (Some(_), Some(_)) => return Err(err(first, "set token_env or token_file, not both")),
        _ => {
            return Err(err(
                first,
                "no token_env or token_file: the bot needs its token",
            ));
        }
    };
    let enabled = match get("enabled") {
        None => true,
        Some((_, Val::Bool(b))) => *b,
        Some((n, _)) => return Err(err(n, "enabled must be true or false")),
    };
    let api_base = string("api_base")?
        .unwrap_or_else(|| "https://api.telegram.org".into())
        .trim_end_matches('/')
        .to_string();
    if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
        let n = get("api_base").map_or(first, |(n, _)| n);
        return Err(err(n, "api_base must be an http(s) URL"));
    }
    let instance_id = string("instance_id")?.unwrap_or_else(|| "default".into());
    if instance_id.is_empty()
        || !instance_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        let n = get("instance_id").map_or(first, |(n, _)| n);
        return Err(err(n, "instance_id: letters, digits, - and _ only"));
    }
    Ok(Telegram {
        instance_id,
        enabled,
        api_base,
        token,
        default_provider: string("default_provider")?.unwrap_or_else(|| "claude".into()),
        cwd: string("cwd")?.filter(|c| !c.is_empty()),
        trigger_prefix: string("trigger_prefix")?.filter(|p| !p.is_empty()),
        allowed_senders: ids("allowed_senders")?,
        allowed_groups: ids("allowed_groups")?,
        rate_limit_per_min: int("rate_limit_per_min", 20, 1, 10_000)? as u32,
        dedup_window_seconds: int("dedup_window_seconds", 600, 0, 86_400)? as u64,
        poll_timeout_seconds: int("poll_timeout_seconds", 25, 1, 50)? as u64,
    })
}

/// The line without a `#` comment (a `#` inside a string is kept).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return &line[..i],
            None => {}
        }
    }
    line
}

fn parse_value(v: &str) -> Result<Val, String> {
    if let Some(inner) = v.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or("an array must end with `]`")?;
        let mut items = Vec::new();
        for part in split_top(inner) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            items.push(parse_value(part)?);
        }
        return Ok(Val::List(items));
    }
    if let Some(s) = v.strip_prefix('"') {
        let body = s.strip_suffix('"').ok_or("unterminated string")?;
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                if c == '"' {
                    return Err("a quote inside a string must be escaped".into());
                }
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                other => {
                    return Err(format!(
                        "unsupported escape \\{}",
                        other.map(String::from).unwrap_or_default()
                    ));
                }
            }
        }
        return Ok(Val::Str(out));
    }
    if let Some(s) = v.strip_prefix('\'') {
        return s
            .strip_suffix('\'')
            .map(|b| Val::Str(b.to_string()))
            .ok_or_else(|| "unterminated string".into());
    }
    match v {
        "true" => return Ok(Val::Bool(true)),
        "false" => return Ok(Val::Bool(false)),
        _ => {}
    }
    let digits: String = v.chars().filter(|c| *c != '_').collect();
    digits
        .parse::<i64>()
        .map(Val::Int)
        .map_err(|_| format!("{v:?} is not a string, number, boolean or array"))
}

/// Split an array body at commas outside strings.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == ',' => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            None => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The commented skeleton `channels init` writes.
pub const SKELETON: &str = r#"# Chat channels for coding-bridge-agent (see README "Drive it from Telegram").
# The bot token never goes in this file: export it in the variable named by token_env
# (or put it alone in a 0600 file named by token_file).

[[channels.telegram]]
instance_id = "main"
# Off until you have filled in the allow list below.
enabled = false
token_env = "TELEGRAM_BOT_TOKEN"
# token_file = "/home/me/.config/coding-bridge/telegram.token"
# The agent each chat runs: claude, codex, copilot, gemini, or an agent of agents.json.
default_provider = "claude"
# Where the chats' sessions work (default: the daemon's working directory).
# cwd = "~/work"
# Your numeric Telegram user id (ask @userinfobot). Empty: nobody gets in.
allowed_senders = []
# Group chat ids the bot may answer in, and the prefix a group message needs.
allowed_groups = []
trigger_prefix = "/ask"
rate_limit_per_min = 20
dedup_window_seconds = 600
# How long one long poll waits for news, in seconds (1–50).
# poll_timeout_seconds = 25
# api_base = "https://api.telegram.org"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_entry() {
        let t = parse(
            r#"
# comment
[[channels.telegram]]
instance_id = "main"   # trailing comment
enabled = true
api_base = "http://127.0.0.1:9/"
token_env = "TG_TOKEN"
default_provider = 'codex'
cwd = "~/w # not a comment"
trigger_prefix = "/ask"
allowed_senders = [123, "456", 7_8]
allowed_groups = [-1001]
rate_limit_per_min = 5
dedup_window_seconds = 60
"#,
        )
        .unwrap();
        assert_eq!(t.len(), 1);
        let t = &t[0];
        assert_eq!(t.api_base, "http://127.0.0.1:9");
        assert_eq!(t.token, TokenSource::Env("TG_TOKEN".into()));
        assert_eq!(t.default_provider, "codex");
        assert_eq!(t.cwd.as_deref(), Some("~/w # not a comment"));
        assert_eq!(t.allowed_senders, [123, 456, 78]);
        assert_eq!(t.allowed_groups, [-1001]);
        assert_eq!(t.rate_limit_per_min, 5);
        assert!(parse(SKELETON).is_ok(), "the skeleton parses");
    }

    #[test]
    fn arrays_may_span_lines() {
        let t = parse(
            "[[channels.telegram]]\ntoken_env = \"T\"\nallowed_senders = [\n  111,  # me\n  222,\n]\nallowed_groups = [-5]\n",
        )
        .unwrap();
        assert_eq!(t[0].allowed_senders, [111, 222]);
        assert_eq!(t[0].allowed_groups, [-5]);
        let e = parse("[[channels.telegram]]\ntoken_env = \"T\"\nallowed_senders = [\n  111,\n")
            .unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, needle) in [
            (
                "[[channels.telegram]]\ntoken = \"123:abc\"\n",
                2,
                "does not belong",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\nallowed_senders = [1, \n",
                3,
                "never closes",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\nnope = 1\n",
                3,
                "unknown key",
            ),
            ("[[channels.telegram]]\n", 1, "no token_env"),
            ("[[channels.slack]]\n", 1, "unknown table"),
            ("token_env = \"X\"\n", 1, "outside"),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\nallowed_senders = [\"@bob\"]\n",
                3,
                "numeric",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\nrate_limit_per_min = 0\n",
                3,
                "whole number",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\n[[channels.telegram]]\ntoken_env = \"Y\"\n",
                3,
                "used twice",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }
}
