//! `<config dir>/channels.toml`: the chat channels the daemon runs besides the relay,
//! parsed into typed [`Telegram`] entries. The file is read with a real TOML parser and
//! is schema-compatible with the reference daemon where they overlap, so a reference
//! `[[channels.telegram]]` block runs here as written:
//!
//! ```toml
//! [[channels.telegram]]
//! instance_id = "main"
//! enabled = true
//! token_env = "TELEGRAM_BOT_TOKEN"        # or token_file = "/path/to/token"
//! allowed_senders = [123456789]           # or ["123456789"]; empty: nobody
//! rate_limit_per_min = 20                 # per sender; 0: no limit
//! dedup_window_seconds = 300.0            # whole or fractional seconds; 0: no dedup
//! ```
//!
//! Unknown keys and tables are refused, naming their line (a typo must not quietly
//! fall back to a default), and so is anything of the wrong type. The bot token is never
//! in this file: a `token` key is refused, and the token is read from the variable or
//! file named here at start. `require_approval`, a reference key, is accepted and changes
//! nothing: here every approval the agent asks for comes to the chat as buttons.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use toml::{Spanned, Value};

use crate::sys::textpos::{self, LineError, key_before, line_at};

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
    /// Messages a sender may send a minute; [`NO_RATE_LIMIT`] (from `0`) for no limit.
    pub rate_limit_per_min: u32,
    /// How long an update id is remembered to drop its redelivery; `0`: no dedup.
    pub dedup_window_seconds: u64,
    /// How long one `getUpdates` long poll waits for news (Telegram allows up to 50).
    pub poll_timeout_seconds: u64,
}

/// [`Telegram::rate_limit_per_min`] for "no limit" (`rate_limit_per_min = 0` in the
/// file, as in the reference): more than any sender can send in a minute.
pub const NO_RATE_LIMIT: u32 = u32::MAX;

/// Where the bot token comes from (never the config file itself).
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource {
    Env(String),
    File(PathBuf),
}

/// A problem in `channels.toml`, naming the line.
pub type ConfigError = LineError;

/// The file's name in the config dir.
const FILE: &str = "channels.toml";

fn err(line: usize, message: impl Into<String>) -> ConfigError {
    LineError {
        file: FILE,
        line,
        message: message.into(),
    }
}

const TOKEN_REFUSED: &str = "the bot token does not belong in this file: set token_env (the name of a variable holding it) or token_file (the path of a 0600 file holding it)";

/// The keys of a `[[channels.telegram]]` table, for the message about an unknown one.
const KEYS: &str = "instance_id, enabled, token_env, token_file, api_base, default_provider, cwd, trigger_prefix, allowed_senders, allowed_groups, rate_limit_per_min, dedup_window_seconds, poll_timeout_seconds, require_approval";

/// The reference refuses bigger files too: a config is a few hundred bytes, and a path
/// to something endless must not eat the memory at start.
const MAX_FILE: u64 = 1_000_000;

/// The whole file: only `[channels]`, and in it only `[[channels.telegram]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    channels: ChannelsToml,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ChannelsToml {
    #[serde(default)]
    telegram: Vec<Spanned<TelegramToml>>,
    /// The reference's WeChat gateway channel, which this daemon does not have: its
    /// blocks are skipped with a warning (the Telegram bots and the daemon still run).
    #[serde(default)]
    wechat: Option<Value>,
}

/// One `[[channels.telegram]]` table as written; [`telegram`] checks and completes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TelegramToml {
    instance_id: Option<Spanned<String>>,
    enabled: Option<bool>,
    api_base: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    #[serde(
        default,
        rename = "token",
        alias = "bot_token",
        deserialize_with = "refuse_token"
    )]
    _token: Option<()>,
    /// Type-checked, then ignored: the agent's approval requests always reach the chat.
    #[serde(rename = "require_approval")]
    _require_approval: Option<bool>,
    default_provider: Option<String>,
    cwd: Option<String>,
    trigger_prefix: Option<String>,
    /// Items with their place, so a bad one is named by its own line.
    #[serde(default)]
    allowed_senders: Vec<Spanned<Value>>,
    #[serde(default)]
    allowed_groups: Vec<Spanned<Value>>,
    #[serde(default, deserialize_with = "rate_limit")]
    rate_limit_per_min: Option<u32>,
    #[serde(default, deserialize_with = "dedup_window")]
    dedup_window_seconds: Option<u64>,
    #[serde(default, deserialize_with = "poll_timeout")]
    poll_timeout_seconds: Option<u64>,
}

fn refuse_token<'de, D: Deserializer<'de>>(_: D) -> Result<Option<()>, D::Error> {
    Err(D::Error::custom(TOKEN_REFUSED))
}

/// `rate_limit_per_min`: a whole number, 0 or more; 0 means no limit.
fn rate_limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Value::deserialize(d)? {
        Value::Integer(0) => Ok(Some(NO_RATE_LIMIT)),
        // Past u32 is past anything a sender can send: no limit either.
        Value::Integer(n) if n > 0 => Ok(Some(u32::try_from(n).unwrap_or(NO_RATE_LIMIT))),
        other => Err(D::Error::custom(format!(
            "rate_limit_per_min must be a whole number, 0 or more (0: no limit), not {}",
            shown(&other)
        ))),
    }
}

/// `dedup_window_seconds`: whole or fractional seconds, 0 or more; 0 means no dedup. A
/// fraction is rounded up, so a window that is on stays on.
fn dedup_window<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Integer(n) if n >= 0 => Ok(Some(n as u64)),
        // `as` saturates: a window of 1e300 seconds is forever, as written.
        Value::Float(f) if f.is_finite() && f >= 0.0 => Ok(Some(f.ceil() as u64)),
        other => Err(D::Error::custom(format!(
            "dedup_window_seconds must be a number of seconds, 0 or more (0: no dedup), not {}",
            shown(&other)
        ))),
    }
}

/// `poll_timeout_seconds`: whole seconds from 1 to 50 (Telegram's most).
fn poll_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Integer(n @ 1..=50) => Ok(Some(n as u64)),
        other => Err(D::Error::custom(format!(
            "poll_timeout_seconds must be a whole number from 1 to 50, not {}",
            shown(&other)
        ))),
    }
}

/// A wrong value for a message: numbers as written, other values by their type.
fn shown(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        other => format!("a {}", other.type_str()),
    }
}

/// Read `<config_dir>/channels.toml`; no file means no channels.
pub fn load(config_dir: &Path) -> Result<Vec<Telegram>, ConfigError> {
    let path = config_dir.join(FILE);
    let Some(file) = textpos::open(&path, FILE)? else {
        return Ok(Vec::new());
    };
    parse(&textpos::read_text(file, &path, FILE, MAX_FILE)?)
}

/// Parse the text of a `channels.toml`.
pub fn parse(text: &str) -> Result<Vec<Telegram>, ConfigError> {
    let file: FileToml = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    if file.channels.wechat.is_some() {
        crate::log_warn!(
            "channels.toml: WeChat channels ([[channels.wechat]]) are not supported by this daemon; those blocks are ignored (only [[channels.telegram]] runs here)"
        );
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut out: Vec<Telegram> = Vec::new();
    for table in file.channels.telegram {
        let first = line_at(text, table.span().start);
        let id_line = table
            .get_ref()
            .instance_id
            .as_ref()
            .map_or(first, |s| line_at(text, s.span().start));
        let t = telegram(text, first, table.into_inner(), home.as_deref())?;
        if out.iter().any(|o| o.instance_id == t.instance_id) {
            return Err(err(
                id_line,
                format!("instance_id {:?} is used twice", t.instance_id),
            ));
        }
        out.push(t);
    }
    Ok(out)
}

/// The checks across keys, and the defaults; `first` is the table's header line.
fn telegram(
    text: &str,
    first: usize,
    raw: TelegramToml,
    home: Option<&Path>,
) -> Result<Telegram, ConfigError> {
    let line = |s: &Spanned<String>| line_at(text, s.span().start);
    // An empty one counts as not set, as in the reference.
    let set = |s: Option<Spanned<String>>| s.filter(|v| !v.get_ref().is_empty());
    let token = match (set(raw.token_env), set(raw.token_file)) {
        (Some(v), None) => TokenSource::Env(v.into_inner()),
        (None, Some(f)) => TokenSource::File(crate::sys::fsutil::expand_home(f.get_ref(), home)),
        (Some(_), Some(f)) => return Err(err(line(&f), "set token_env or token_file, not both")),
        (None, None) => {
            return Err(err(
                first,
                "no token_env or token_file: the bot needs its token (the name of a variable holding it, or the path of a 0600 file holding it)",
            ));
        }
    };
    let api_base = match &raw.api_base {
        None => "https://api.telegram.org".to_string(),
        Some(s) => {
            let url = s.get_ref().trim_end_matches('/');
            // Parsed by `http::Uri`, as ureq will parse every request URL built on it.
            let uri = url.parse::<http::Uri>().ok().filter(|u| {
                let http = u.scheme() == Some(&http::uri::Scheme::HTTP)
                    || u.scheme() == Some(&http::uri::Scheme::HTTPS);
                http && u.host().is_some_and(|h| !h.is_empty())
            });
            let Some(uri) = uri else {
                return Err(err(line(s), "api_base must be an http(s) URL"));
            };
            if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                return Err(err(
                    line(s),
                    "api_base must not carry credentials (user:pass@host); the token goes in token_env or token_file",
                ));
            }
            url.to_string()
        }
    };
    let instance_id = match &raw.instance_id {
        None => "default".to_string(),
        Some(s) => {
            let id = s.get_ref();
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
            {
                return Err(err(line(s), "instance_id: letters, digits, - and _ only"));
            }
            id.clone()
        }
    };
    // Telegram ids: numbers, or strings of digits (the reference's form).
    let ids = |key: &str, items: Vec<Spanned<Value>>| -> Result<Vec<i64>, ConfigError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let n = line_at(text, item.span().start);
            out.push(match item.into_inner() {
                Value::Integer(i) => i,
                Value::String(s) => s.trim().parse().map_err(|_| {
                    err(
                        n,
                        format!(
                            "{key}: {s:?} is not a numeric Telegram id (like 123456789 or \"123456789\"; a @username does not work)"
                        ),
                    )
                })?,
                other => {
                    return Err(err(
                        n,
                        format!(
                            "{key}: a Telegram id is a number or a string of digits, not a {}",
                            other.type_str()
                        ),
                    ));
                }
            });
        }
        Ok(out)
    };
    Ok(Telegram {
        instance_id,
        enabled: raw.enabled.unwrap_or(true),
        api_base,
        token,
        default_provider: raw
            .default_provider
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "claude".into()),
        cwd: raw.cwd.filter(|c| !c.is_empty()),
        trigger_prefix: raw.trigger_prefix.filter(|p| !p.is_empty()),
        allowed_senders: ids("allowed_senders", raw.allowed_senders)?,
        allowed_groups: ids("allowed_groups", raw.allowed_groups)?,
        rate_limit_per_min: raw.rate_limit_per_min.unwrap_or(20),
        dedup_window_seconds: raw.dedup_window_seconds.unwrap_or(600),
        poll_timeout_seconds: raw.poll_timeout_seconds.unwrap_or(25),
    })
}

/// The parser's error as ours: its line, and words for this file's schema.
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let span = e.span();
    let line = span.as_ref().map_or(0, |s| line_at(text, s.start));
    let at = |s: &Range<usize>| text.get(s.clone()).unwrap_or("").trim();
    let message = e.message();
    // serde's words for a key no struct has: "unknown field `k`, expected …".
    if let Some((key, expected)) = message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
    {
        let message = if key == "token" || key == "bot_token" {
            TOKEN_REFUSED.to_string()
        } else if expected.contains("`instance_id`") {
            format!("unknown key {key} (a [[channels.telegram]] table has {KEYS})")
        } else if expected.contains("`telegram`") {
            format!("unknown table [channels.{key}] (expected [[channels.telegram]])")
        } else if span
            .as_ref()
            .and_then(|s| text.get(..s.start))
            .is_some_and(|before| before.trim_end().ends_with('['))
        {
            format!("unknown table [{key}] (expected [[channels.telegram]])")
        } else {
            format!("{key} is outside a [[channels.telegram]] table")
        };
        return err(line, message);
    }
    if message == "duplicate key"
        && let Some(s) = &span
    {
        return err(line, format!("{} is set twice", at(s)));
    }
    if let Some(s) = &span
        && at(s) == "[channels.telegram]"
    {
        return err(
            line,
            "write [[channels.telegram]] (two brackets: one such table for each bot)",
        );
    }
    // A value's error: name its key when it is on the same line.
    let key = span.as_ref().and_then(|s| key_before(text, s.start));
    match key {
        Some(k) if !message.starts_with(k) => err(line, format!("{k}: {message}")),
        _ => err(line, message),
    }
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
# Messages per sender and minute (0: no limit).
rate_limit_per_min = 20
# How long a delivered update is remembered to drop a redelivery, in seconds (0: off).
dedup_window_seconds = 600
# How long one long poll waits for news, in seconds (1–50).
# poll_timeout_seconds = 25
# api_base = "https://api.telegram.org"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Telegram {
        let mut t = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(t.len(), 1, "{text:?}");
        t.remove(0)
    }

    #[test]
    fn a_full_entry() {
        let t = one(r#"
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
poll_timeout_seconds = 3
"#);
        assert_eq!(t.instance_id, "main");
        assert!(t.enabled);
        assert_eq!(t.api_base, "http://127.0.0.1:9");
        assert_eq!(t.token, TokenSource::Env("TG_TOKEN".into()));
        assert_eq!(t.default_provider, "codex");
        assert_eq!(t.cwd.as_deref(), Some("~/w # not a comment"));
        assert_eq!(t.trigger_prefix.as_deref(), Some("/ask"));
        assert_eq!(t.allowed_senders, [123, 456, 78]);
        assert_eq!(t.allowed_groups, [-1001]);
        assert_eq!(t.rate_limit_per_min, 5);
        assert_eq!(t.dedup_window_seconds, 60);
        assert_eq!(t.poll_timeout_seconds, 3);
        let t = one(
            "[[channels.telegram]]\ntoken_env = \"T\"\napi_base = \"HTTPS://[::1]:8443/tg/\"\n",
        );
        assert_eq!(t.api_base, "HTTPS://[::1]:8443/tg");
    }

    #[test]
    fn defaults_and_the_skeleton() {
        let t = one("[[channels.telegram]]\ntoken_file = \"/run/tg\"\n");
        assert_eq!(t.instance_id, "default");
        assert!(t.enabled);
        assert_eq!(t.api_base, "https://api.telegram.org");
        assert_eq!(t.token, TokenSource::File("/run/tg".into()));
        assert_eq!(t.default_provider, "claude");
        assert_eq!((t.cwd, t.trigger_prefix), (None, None));
        assert!(t.allowed_senders.is_empty() && t.allowed_groups.is_empty());
        assert_eq!(
            (
                t.rate_limit_per_min,
                t.dedup_window_seconds,
                t.poll_timeout_seconds
            ),
            (20, 600, 25)
        );
        let s = one(SKELETON);
        assert!(!s.enabled, "the skeleton is off");
        assert_eq!(s.token, TokenSource::Env("TELEGRAM_BOT_TOKEN".into()));
        assert!(parse("").unwrap().is_empty());
        assert!(parse("# nothing yet\n[channels]\n").unwrap().is_empty());
    }

    #[test]
    fn arrays_may_span_lines() {
        let t = one(
            "[[channels.telegram]]\ntoken_env = \"T\"\nallowed_senders = [\n  111,  # me\n  222,\n]\nallowed_groups = [-5]\n",
        );
        assert_eq!(t.allowed_senders, [111, 222]);
        assert_eq!(t.allowed_groups, [-5]);
        // Left open: the last line the parser read is named.
        let e = parse("[[channels.telegram]]\ntoken_env = \"T\"\nallowed_senders = [\n  111,\n")
            .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
    }

    #[test]
    fn numbers_as_the_reference_writes_them() {
        let with = |kv: &str| parse(&format!("[[channels.telegram]]\ntoken_env = \"T\"\n{kv}\n"));
        let t = |kv: &str| with(kv).unwrap_or_else(|e| panic!("{kv}: {e}")).remove(0);
        assert_eq!(
            t("rate_limit_per_min = 0").rate_limit_per_min,
            NO_RATE_LIMIT
        );
        assert_eq!(t("rate_limit_per_min = 6").rate_limit_per_min, 6);
        assert_eq!(
            t("rate_limit_per_min = 99_000_000_000").rate_limit_per_min,
            NO_RATE_LIMIT
        );
        assert_eq!(t("dedup_window_seconds = 300.0").dedup_window_seconds, 300);
        assert_eq!(t("dedup_window_seconds = 300").dedup_window_seconds, 300);
        assert_eq!(t("dedup_window_seconds = 0").dedup_window_seconds, 0);
        assert_eq!(t("dedup_window_seconds = 0.0").dedup_window_seconds, 0);
        assert_eq!(t("dedup_window_seconds = 0.25").dedup_window_seconds, 1);
        assert_eq!(t("dedup_window_seconds = 1e3").dedup_window_seconds, 1000);
        for (kv, needle) in [
            ("rate_limit_per_min = -1", "rate_limit_per_min must be"),
            ("rate_limit_per_min = 6.0", "rate_limit_per_min must be"),
            ("rate_limit_per_min = \"6\"", "not a string"),
            (
                "dedup_window_seconds = -1.0",
                "dedup_window_seconds must be",
            ),
            ("dedup_window_seconds = nan", "dedup_window_seconds must be"),
            ("dedup_window_seconds = inf", "dedup_window_seconds must be"),
            ("dedup_window_seconds = true", "not a boolean"),
            ("poll_timeout_seconds = 0", "from 1 to 50"),
            ("poll_timeout_seconds = 51", "from 1 to 50"),
            ("enabled = 1", "enabled: invalid type"),
            ("enabled = \"yes\"", "enabled: invalid type"),
            ("allowed_senders = 5", "allowed_senders: invalid type"),
            ("allowed_senders = [1.5]", "not a float"),
            ("allowed_senders = [\"\"]", "not a numeric Telegram id"),
        ] {
            let e = with(kv).unwrap_err();
            assert_eq!(e.line, 3, "{kv}: {e}");
            assert!(e.message.contains(needle), "{kv}: {e}");
        }
    }

    #[test]
    fn the_token_never_comes_from_this_file() {
        for text in [
            "[[channels.telegram]]\ntoken = \"123:abc\"\n",
            "[[channels.telegram]]\nbot_token = \"123:abc\"\n",
            "[[channels.telegram]]\ntoken = 123\n",
            "[channels]\ntoken = \"123:abc\"\n",
            "# top\ntoken = \"123:abc\"\n",
            "[[channels.telegram]]\napi_base = \"https://u:123@example.org\"\ntoken_env = \"T\"\n",
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, 2, "{text:?}: {e}");
            assert!(e.message.contains("token_env"), "{text:?}: {e}");
            assert!(!e.to_string().contains("123"), "{text:?}: {e}");
        }
    }

    #[test]
    fn token_sources() {
        let t = |kv: &str| parse(&format!("[[channels.telegram]]\n{kv}\n"));
        assert_eq!(
            t("token_env = \"\"\ntoken_file = \"/t\"").unwrap()[0].token,
            TokenSource::File("/t".into()),
            "an empty one is not set"
        );
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let expected = match &home {
            Some(h) => h.join("tg.token"),
            None => PathBuf::from("~/tg.token"),
        };
        assert_eq!(
            t("token_file = \"~/tg.token\"").unwrap()[0].token,
            TokenSource::File(expected)
        );
        let e = t("token_env = \"A\"\ntoken_file = \"/t\"").unwrap_err();
        assert_eq!((e.line, e.message.contains("not both")), (3, true), "{e}");
        let e = t("token_env = \"\"").unwrap_err();
        assert_eq!(
            (e.line, e.message.contains("no token_env")),
            (1, true),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, needle) in [
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\nallowed_senders = [1, \n",
                3,
                "unclosed array",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\nnope = 1\n",
                3,
                "unknown key nope",
            ),
            ("[[channels.telegram]]\n", 1, "no token_env"),
            (
                "\n[[channels.slack]]\n",
                2,
                "unknown table [channels.slack]",
            ),
            ("[other]\n", 1, "unknown table [other]"),
            ("token_env = \"X\"\n", 1, "outside"),
            (
                "[channels.telegram]\ntoken_env = \"X\"\n",
                1,
                "two brackets",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\nallowed_senders = [\"@bob\"]\n",
                3,
                "numeric",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\nallowed_groups = [\n  -1,\n  \"x\",\n]\n",
                5,
                "numeric",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\nenabled = true\nenabled = false\n",
                4,
                "enabled is set twice",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\n[[channels.telegram]]\ntoken_env = \"Y\"\n",
                3,
                "used twice",
            ),
            (
                "[[channels.telegram]]\ninstance_id = \"a\"\ntoken_env = \"X\"\n\n[[channels.telegram]]\ntoken_env = \"Y\"\ninstance_id = \"a\"\n",
                7,
                "used twice",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\ninstance_id = \"my bot\"\n",
                3,
                "instance_id",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\napi_base = \"ftp://x\"\n",
                3,
                "http(s)",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\napi_base = \"https://\"\n",
                3,
                "http(s)",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\napi_base = \"http://:80/\"\n",
                3,
                "http(s)",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\napi_base = \"https://bad host\"\n",
                3,
                "http(s)",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\napi_base = \"wss://x\"\n",
                3,
                "http(s)",
            ),
            (
                "[[channels.telegram]]\ntoken_env = \"X\"\ncwd = \"unterminated\n",
                3,
                "string",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("channels.toml line {line}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn a_file_too_big_is_refused() {
        let dir = std::env::temp_dir().join(format!("cba-chcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(load(&dir).unwrap().is_empty(), "no file, no channels");
        let mut big = String::from("[[channels.telegram]]\ntoken_env = \"T\"\n");
        big.push_str(&"#".repeat(MAX_FILE as usize));
        std::fs::write(dir.join("channels.toml"), big).unwrap();
        let e = load(&dir).unwrap_err();
        assert!(e.message.contains("over"), "{e}");
        std::fs::write(dir.join("channels.toml"), SKELETON).unwrap();
        assert_eq!(load(&dir).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
