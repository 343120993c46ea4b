//! The node's policy: what the machine's owner lets remote parties do here, from
//! `<config dir>/policy.toml`. No remote command can change it; the hub checks every
//! `session.start`, `session.send`, `session.edit`, `fs.list` and approval against it.
//!
//! - `permission_modes`: the modes a remote party may pick (others run in `default`);
//! - `roots`: the directories sessions may run in (and `fs.list` may show);
//! - `providers`: the agents that may be started;
//! - `[[rule]]`: tool approvals decided here, before anything reaches the browser.
//!
//! No file means no limits (every key left out is no limit on that). The file is read
//! at start (a bad one stops the start, naming its line) and again on SIGHUP, on a
//! worker (a bad one then keeps the policy in force). Plain data and functions; no
//! threads. Scoped grants (Telegram's "Allow for 1 h") are in [`scope`].

pub mod glob;
pub mod scope;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;

use crate::protocol::commands::PERMISSION_MODES;
use crate::sys::textpos::{self, LineError, key_before, line_at};

/// The file's name in the config dir.
pub const FILE: &str = "policy.toml";
/// A policy file longer than this is refused (it is a page of settings).
const MAX_FILE: u64 = 256 << 10;
/// Rules beyond this many are refused (they are checked in order on every approval).
const MAX_RULES: usize = 1000;

/// What a rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    Ask,
}

impl Decision {
    pub fn name(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Ask => "ask",
        }
    }
}

/// One `[[rule]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its line in the file (names it in decisions and the audit log).
    pub line: usize,
    /// The tool name as in `permission.request` (`*`: any tool).
    pub tool: String,
    /// A glob on the command or the path(s); `None` matches any input.
    pub pattern: Option<String>,
    pub decision: Decision,
}

/// The policy in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The file it was read from; `None`: there is none (no limits).
    pub file: Option<PathBuf>,
    /// `None`: any mode.
    pub permission_modes: Option<Vec<String>>,
    /// Resolved directories (symlinks followed); `None`: anywhere.
    pub roots: Option<Vec<PathBuf>>,
    /// `None`: every agent this node has.
    pub providers: Option<Vec<String>>,
    pub rules: Vec<Rule>,
}

/// A problem in `policy.toml`, naming the line (0: the file as a whole).
pub type PolicyError = LineError;

fn err(line: usize, message: impl Into<String>) -> PolicyError {
    LineError {
        file: FILE,
        line,
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    permission_modes: Option<Spanned<Vec<Spanned<String>>>>,
    roots: Option<Spanned<Vec<Spanned<String>>>>,
    providers: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    rule: Vec<Spanned<RuleToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    tool: Option<Spanned<String>>,
    #[serde(rename = "match")]
    pattern: Option<Spanned<String>>,
    decision: Option<Spanned<String>>,
}

/// Read the policy at `path` (`<config dir>/policy.toml` unless configured elsewhere);
/// no file is no limits.
pub fn load(path: &Path, home: Option<&Path>) -> Result<Policy, PolicyError> {
    let Some(file) = textpos::open(path, FILE)? else {
        return Ok(Policy::default());
    };
    // A policy anyone else could rewrite is no policy: refused, with the fix. It may
    // belong to root (a policy the daemon's own user cannot change, the hardened way).
    {
        use std::os::unix::fs::MetadataExt;
        let meta = file
            .metadata()
            .map_err(|e| err(0, format!("cannot read {}: {e}", path.display())))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me && meta.uid() != 0 {
            return Err(err(
                0,
                format!(
                    "{} belongs to uid {}, neither the daemon's user (uid {me}) nor root; chown it",
                    path.display(),
                    meta.uid()
                ),
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(err(
                0,
                format!(
                    "{} can be written by others (mode {:o}); run chmod 600 on it",
                    path.display(),
                    meta.mode() & 0o777
                ),
            ));
        }
    }
    let text = textpos::read_text(file, path, FILE, MAX_FILE)?;
    let mut p = parse(&text, home)?;
    p.file = Some(path.to_path_buf());
    Ok(p)
}

/// Parse the text of a `policy.toml` (`home` expands `~`).
pub fn parse(text: &str, home: Option<&Path>) -> Result<Policy, PolicyError> {
    let file: FileToml = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    let line = |span: std::ops::Range<usize>| line_at(text, span.start);
    let list = |v: Option<Spanned<Vec<Spanned<String>>>>,
                key: &str,
                check: &dyn Fn(&str) -> Result<(), String>|
     -> Result<Option<Vec<(usize, String)>>, PolicyError> {
        let Some(v) = v else { return Ok(None) };
        let at = line(v.span());
        let items: Vec<(usize, String)> = v
            .into_inner()
            .into_iter()
            .map(|s| (line(s.span()), s.into_inner()))
            .collect();
        if items.is_empty() {
            return Err(err(
                at,
                format!("{key} is empty, which would allow nothing; leave it out to allow any"),
            ));
        }
        for (l, item) in &items {
            check(item).map_err(|m| err(*l, format!("{key}: {m}")))?;
        }
        Ok(Some(items))
    };
    let modes = list(file.permission_modes, "permission_modes", &|m| {
        if PERMISSION_MODES.contains(&m) {
            Ok(())
        } else {
            Err(format!(
                "unknown mode {m:?} (the modes are {})",
                PERMISSION_MODES.join(", ")
            ))
        }
    })?;
    let providers = list(file.providers, "providers", &|p| {
        let word = !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if word {
            Ok(())
        } else {
            Err(format!(
                "{p:?} is not an agent's name (claude, codex, copilot, gemini, or one of agents.json)"
            ))
        }
    })?;
    let roots = match list(file.roots, "roots", &|_| Ok(()))? {
        None => None,
        Some(items) => {
            let mut out = Vec::new();
            for (l, r) in items {
                let written = crate::sys::fsutil::expand_home(&r, home);
                if !written.is_absolute() {
                    return Err(err(
                        l,
                        format!("roots: {r:?} is not an absolute path (or ~/…)"),
                    ));
                }
                let resolved = std::fs::canonicalize(&written).map_err(|e| {
                    err(
                        l,
                        format!("roots: {} cannot be used: {e}", written.display()),
                    )
                })?;
                if !resolved.is_dir() {
                    return Err(err(
                        l,
                        format!("roots: {} is not a directory", written.display()),
                    ));
                }
                out.push(resolved);
            }
            Some(out)
        }
    };
    if file.rule.len() > MAX_RULES {
        return Err(err(0, format!("more than {MAX_RULES} rules")));
    }
    let mut rules = Vec::new();
    for r in file.rule {
        let at = line(r.span());
        let r = r.into_inner();
        let Some(tool) = r.tool else {
            return Err(err(
                at,
                "this [[rule]] has no tool (the tool name as the browser shows it, or \"*\")",
            ));
        };
        let tool_line = line(tool.span());
        let tool = tool.into_inner();
        if tool.trim().is_empty() {
            return Err(err(tool_line, "tool is empty"));
        }
        let Some(decision) = r.decision else {
            return Err(err(
                at,
                "this [[rule]] has no decision (\"allow\", \"deny\" or \"ask\")",
            ));
        };
        let decision = match decision.get_ref().as_str() {
            "allow" => Decision::Allow,
            "deny" => Decision::Deny,
            "ask" => Decision::Ask,
            other => {
                return Err(err(
                    line(decision.span()),
                    format!("decision {other:?}: write \"allow\", \"deny\" or \"ask\""),
                ));
            }
        };
        let pattern = match r.pattern {
            None => None,
            Some(p) if p.get_ref().is_empty() => {
                return Err(err(
                    line(p.span()),
                    "match is empty (leave it out to match any input)",
                ));
            }
            Some(p) => {
                let p = p.into_inner();
                Some(match p.strip_prefix("~/") {
                    Some(_) => crate::sys::fsutil::expand_home(&p, home)
                        .to_string_lossy()
                        .into_owned(),
                    None => p,
                })
            }
        };
        rules.push(Rule {
            line: at,
            tool,
            pattern,
            decision,
        });
    }
    Ok(Policy {
        file: None,
        permission_modes: modes.map(|m| m.into_iter().map(|(_, m)| m).collect()),
        roots,
        providers: providers.map(|p| p.into_iter().map(|(_, p)| p).collect()),
        rules,
    })
}

/// The parser's error as ours: its line, and the words for this file.
fn toml_error(text: &str, e: &toml::de::Error) -> PolicyError {
    let span = e.span();
    let line = span.as_ref().map_or(0, |s| line_at(text, s.start));
    let message = e.message();
    if let Some((key, _)) = message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
    {
        let inside_rule = text[..span.as_ref().map_or(0, |s| s.start.min(text.len()))]
            .rfind("[[rule]]")
            .is_some();
        return err(
            line,
            if inside_rule {
                format!("unknown key {key} (a [[rule]] has tool, match and decision)")
            } else {
                format!(
                    "unknown key {key} (the keys are permission_modes, roots, providers and [[rule]] tables)"
                )
            },
        );
    }
    let key = span.as_ref().and_then(|s| key_before(text, s.start));
    match key {
        Some(k) if !message.starts_with(k) => err(line, format!("{k}: {message}")),
        _ => err(line, message),
    }
}

/// What an approval request is about, as rules and grants see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// The shell command, for tools that run one (a shell wrapper's script taken out).
    pub command: Option<String>,
    /// The files it touches (absolute, normalized), for tools that name them.
    pub paths: Vec<PathBuf>,
}

impl Subject {
    /// Read the command or the paths out of a tool's input (Claude Code's, Codex's and
    /// the ACP agents' spellings), relative paths taken from `cwd` and `~` from `home`.
    pub fn of(input: &Value, cwd: &Path, home: Option<&Path>) -> Subject {
        let command = match input.get("command") {
            Some(Value::String(c)) => Some(glob::unwrap_shell(c).to_string()),
            Some(Value::Array(words)) => Some(
                words
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        };
        let mut paths = Vec::new();
        let path = |p: &str| {
            let p = crate::sys::fsutil::expand_home(p, home);
            glob::normalize(&p.to_string_lossy(), cwd)
        };
        for k in [
            "file_path",
            "path",
            "notebook_path",
            "filePath",
            "absolute_path",
        ] {
            if let Some(p) = input.get(k).and_then(Value::as_str) {
                paths.push(path(p));
            }
        }
        // Codex's file changes: one path each, and where a move takes it.
        for c in input
            .get("changes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let to = [
                c.get("path"),
                c.pointer("/kind/move_path"),
                c.pointer("/kind/movePath"),
                c.get("move_path"),
                c.get("movePath"),
            ];
            for p in to.into_iter().flatten().filter_map(Value::as_str) {
                paths.push(path(p));
            }
        }
        Subject { command, paths }
    }
}

impl Rule {
    /// Whether this rule speaks for `tool` with `subject`. An allow rule must cover all
    /// of it (every path; a command that is one simple command); a deny or ask rule
    /// speaks when any piece matches.
    pub fn applies(&self, tool: &str, subject: &Subject) -> bool {
        if self.tool != "*" && self.tool != tool {
            return false;
        }
        let Some(pattern) = &self.pattern else {
            return true;
        };
        let strict = self.decision == Decision::Allow;
        if let Some(c) = &subject.command {
            return if strict {
                glob::is_simple(c) && glob::matches(pattern, c.trim())
            } else {
                glob::pieces(c).iter().any(|p| glob::matches(pattern, p))
            };
        }
        if subject.paths.is_empty() {
            return false;
        }
        let hit = |p: &PathBuf| glob::matches(pattern, &p.to_string_lossy());
        if strict {
            subject.paths.iter().all(hit)
        } else {
            subject.paths.iter().any(hit)
        }
    }

    /// How it is named to people: `rule at policy.toml line 12 (Bash "cargo test*": allow)`.
    pub fn describe(&self) -> String {
        let m = self
            .pattern
            .as_ref()
            .map(|p| format!(" {p:?}"))
            .unwrap_or_default();
        format!(
            "the rule at {FILE} line {} ({}{m}: {})",
            self.line,
            self.tool,
            self.decision.name()
        )
    }
}

impl Subject {
    /// Whether this request reaches into `dirs` (the config dir as configured and
    /// resolved): a path under it, or a command naming it (any of `spellings`: the
    /// paths, `~/…`, `$HOME/…`) or one of the node's own files.
    pub fn touches(&self, dirs: &[PathBuf], spellings: &[String]) -> bool {
        const OWN: [&str; 3] = [FILE, "audit.jsonl", "credentials.json"];
        let named = self.command.as_ref().is_some_and(|c| {
            OWN.iter().any(|f| c.contains(f))
                || spellings
                    .iter()
                    .any(|s| !s.is_empty() && c.contains(s.as_str()))
        });
        named
            || dirs
                .iter()
                .any(|d| self.paths.iter().any(|p| p.starts_with(d)))
    }

    /// How a command may name `dirs`: as written, and from the home directory.
    pub fn spellings(dirs: &[PathBuf], home: Option<&Path>) -> Vec<String> {
        let mut out = Vec::new();
        for d in dirs {
            out.push(d.to_string_lossy().into_owned());
            if let Some(rel) = home.and_then(|h| d.strip_prefix(h).ok()) {
                let rel = rel.to_string_lossy();
                if !rel.is_empty() {
                    out.extend([
                        format!("~/{rel}"),
                        format!("$HOME/{rel}"),
                        format!("${{HOME}}/{rel}"),
                    ]);
                }
            }
        }
        out
    }
}

impl Policy {
    /// Whether a file limits anything.
    pub fn is_open(&self) -> bool {
        self.permission_modes.is_none()
            && self.roots.is_none()
            && self.providers.is_none()
            && self.rules.is_empty()
    }

    /// The file's path for messages ("the node's policy (…/policy.toml)").
    pub fn named(&self) -> String {
        match &self.file {
            Some(f) => format!("the node's policy ({})", f.display()),
            None => "the node's policy".into(),
        }
    }

    pub fn allows_mode(&self, mode: &str) -> bool {
        self.permission_modes
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == mode))
    }

    /// The mode to run in instead of a refused one: the session's `current` if allowed,
    /// else `default` if allowed, else the first mode the policy lists.
    pub fn mode_instead(&self, current: Option<&str>) -> String {
        let current = current.unwrap_or("default");
        if self.allows_mode(current) {
            return current.to_string();
        }
        if self.allows_mode("default") {
            return "default".into();
        }
        self.permission_modes
            .as_ref()
            .and_then(|m| m.first().cloned())
            .unwrap_or_else(|| "default".into())
    }

    pub fn allows_provider(&self, provider: &str) -> bool {
        self.providers
            .as_ref()
            .is_none_or(|p| p.iter().any(|x| x == provider))
    }

    /// Whether `dir` (already resolved: symlinks followed) is inside a root.
    pub fn allows_dir(&self, dir: &Path) -> bool {
        self.roots
            .as_ref()
            .is_none_or(|roots| roots.iter().any(|r| dir.starts_with(r)))
    }

    /// The roots as people read them.
    pub fn roots_text(&self) -> String {
        self.roots
            .iter()
            .flatten()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The first rule that speaks for this request, with its index.
    pub fn decide(&self, tool: &str, subject: &Subject) -> Option<&Rule> {
        self.rules.iter().find(|r| r.applies(tool, subject))
    }

    /// The effective policy, for `policy check --json` and the audit log.
    pub fn to_json(&self) -> Value {
        json!({
            "file": self.file,
            "permission_modes": self.permission_modes,
            "roots": self.roots,
            "providers": self.providers,
            "rules": self.rules.iter().map(|r| json!({
                "line": r.line, "tool": r.tool, "match": r.pattern, "decision": r.decision.name(),
            })).collect::<Vec<_>>(),
        })
    }

    /// The effective policy, for `policy check`, one setting a line.
    pub fn describe(&self) -> String {
        let any = |v: &Option<Vec<String>>, what: &str| match v {
            None => format!("any {what}"),
            Some(v) => v.join(", "),
        };
        let mut out = format!(
            "permission modes: {}\nroots: {}\nproviders: {}\n",
            any(&self.permission_modes, "mode"),
            if self.roots.is_some() {
                self.roots_text()
            } else {
                "anywhere".into()
            },
            any(&self.providers, "agent this node has"),
        );
        if self.rules.is_empty() {
            out.push_str("rules: none (every approval goes to the browser or chat)\n");
        } else {
            out.push_str("rules (first match wins; the rest go to the browser or chat):\n");
            for r in &self.rules {
                out.push_str(&format!(
                    "  line {}: {} {}{}\n",
                    r.line,
                    r.decision.name(),
                    r.tool,
                    r.pattern
                        .as_ref()
                        .map(|p| format!(" matching {p:?}"))
                        .unwrap_or_default()
                ));
            }
        }
        out
    }

    /// What a person should know about this policy that is not an error.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let binding = self.rules.iter().any(|r| r.decision != Decision::Allow);
        if binding && self.allows_mode("bypassPermissions") {
            w.push(
                "bypassPermissions is allowed: in that mode the agents ask for nothing, so deny \
                 and ask rules never see a request; list permission_modes without it"
                    .to_string(),
            );
        }
        if binding && self.allows_mode("acceptEdits") {
            w.push(
                "acceptEdits is allowed: in that mode file edits are not asked for, so rules on \
                 edits never see them"
                    .to_string(),
            );
        }
        w
    }
}

/// The commented skeleton `policy init` writes.
pub const SKELETON: &str = r#"# The node's policy for coding-bridge-agent (see README "Harden a shared machine").
# No remote party (browser, relay, chat) can change it. Every key left out is no limit.
# After editing: `coding-bridge-agent policy check`, then `kill -HUP <daemon pid>`
# (or restart the daemon) to apply it.

# The permission modes a remote party may pick. A session asking for another mode
# runs in "default" instead, and the browser is told (notice code mode_refused).
# The modes: default, acceptEdits, plan, bypassPermissions.
# permission_modes = ["default", "plan"]

# The directories sessions may run in (~ is your home; symlinks are resolved).
# A session elsewhere is refused (error code cwd_refused); the directory picker
# shows nothing outside them.
# roots = ["~/src"]

# The agents that may be started: claude, codex, copilot, gemini, or an agent of
# agents.json. Others are refused (error code provider_refused).
# providers = ["claude"]

# Approval rules, decided here before anything reaches the browser; the first rule
# that matches wins. tool: the tool name as the browser shows it ("*": any);
# match: a glob on the command or the file path (* is any run of characters);
# decision: "allow" (never shown), "deny" (the agent is told why) or "ask".
# An allow rule covers a command only when it is one simple command: chains, pipes,
# redirections and substitutions are always asked.
#
# [[rule]]
# tool = "Bash"
# match = "cargo test*"
# decision = "allow"
#
# [[rule]]
# tool = "Bash"
# match = "rm -rf*"
# decision = "deny"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(c: &str) -> Subject {
        Subject {
            command: Some(c.into()),
            paths: Vec::new(),
        }
    }

    #[test]
    fn the_skeleton_parses_and_limits_nothing() {
        let p = parse(SKELETON, None).unwrap();
        assert!(p.is_open());
        assert!(p.allows_mode("bypassPermissions"));
        assert!(p.allows_provider("gemini"));
        assert!(p.allows_dir(Path::new("/")));
    }

    #[test]
    fn every_key() {
        let dir = std::env::temp_dir();
        let text = format!(
            "permission_modes = [\"default\", \"plan\"]\nroots = [{:?}]\nproviders = [\"claude\"]\n\
             [[rule]]\ntool = \"Bash\"\nmatch = \"cargo test*\"\ndecision = \"allow\"\n\
             [[rule]]\ntool = \"*\"\nmatch = \"rm -rf*\"\ndecision = \"deny\"\n\
             [[rule]]\ntool = \"Write\"\ndecision = \"ask\"\n",
            dir.display()
        );
        let p = parse(&text, None).unwrap();
        assert!(p.allows_mode("plan") && !p.allows_mode("bypassPermissions"));
        assert_eq!(p.mode_instead(Some("bypassPermissions")), "default");
        assert_eq!(p.mode_instead(Some("plan")), "plan");
        assert!(p.allows_provider("claude") && !p.allows_provider("codex"));
        let root = std::fs::canonicalize(&dir).unwrap();
        assert!(p.allows_dir(&root.join("x")));
        assert!(!p.allows_dir(Path::new("/")));
        let d = |s: &Subject, tool: &str| p.decide(tool, s).map(|r| (r.line, r.decision));
        assert_eq!(
            d(&subject("cargo test --all"), "Bash"),
            Some((4, Decision::Allow))
        );
        // A chained command is not allowed by the allow rule, and its rm is denied.
        assert_eq!(
            d(&subject("cargo test; rm -rf /"), "Bash"),
            Some((8, Decision::Deny))
        );
        assert_eq!(d(&subject("cargo test | sh"), "Bash"), None);
        assert_eq!(d(&subject("ls"), "Bash"), None);
        let w = Subject::of(&json!({"file_path": "a.rs"}), Path::new("/src"), None);
        assert_eq!(w.paths, [PathBuf::from("/src/a.rs")]);
        assert_eq!(d(&w, "Write"), Some((12, Decision::Ask)));
        assert!(p.warnings().is_empty());
        let j = p.to_json();
        assert_eq!(j["rules"][0]["match"], "cargo test*");
    }

    #[test]
    fn mistakes_name_their_line() {
        for (text, line, words) in [
            ("permission_modes = [\"yolo\"]\n", 1, "unknown mode"),
            (
                "\n\npermision_modes = [\"default\"]\n",
                3,
                "unknown key permision_modes",
            ),
            ("providers = []\n", 1, "empty"),
            (
                "[[rule]]\ntool = \"Bash\"\ndecision = \"maybe\"\n",
                3,
                "decision",
            ),
            (
                "[[rule]]\ntool = \"Bash\"\nmatches = \"x\"\n",
                3,
                "unknown key matches",
            ),
            ("[[rule]]\ntool = \"Bash\"\n", 1, "no decision"),
            ("\nroots = [\"relative/dir\"]\n", 2, "absolute"),
            ("roots = [\"/no/such/dir/here\"]\n", 1, "cannot be used"),
            ("permission_modes = \"default\"\n", 1, "permission_modes"),
            ("x = [\n", 1, ""),
        ] {
            let e = parse(text, None).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(words), "{text:?}: {e}");
            assert!(e.to_string().starts_with("policy.toml"), "{e}");
        }
    }

    #[test]
    fn allow_rules_need_every_path_deny_rules_any() {
        let p = parse(
            "[[rule]]\ntool = \"apply_patch\"\nmatch = \"/src/*\"\ndecision = \"allow\"\n",
            None,
        )
        .unwrap();
        let inside = Subject::of(
            &json!({"changes": [{"path": "/src/a"}, {"path": "b"}]}),
            Path::new("/src"),
            None,
        );
        assert!(p.decide("apply_patch", &inside).is_some());
        let outside = Subject::of(
            &json!({"changes": [{"path": "/src/a"}, {"path": "../etc/x"}]}),
            Path::new("/src"),
            None,
        );
        assert!(p.decide("apply_patch", &outside).is_none());
        let moved = Subject::of(
            &json!({"changes": [{"path": "/src/a", "kind": {"type": "update", "move_path": "/home/me/.bashrc"}}]}),
            Path::new("/src"),
            None,
        );
        assert!(p.decide("apply_patch", &moved).is_none());
        let wrapped = Subject::of(
            &json!({"command": "/bin/bash -lc 'cat notes | tee ~/.bashrc'"}),
            Path::new("/src"),
            None,
        );
        assert_eq!(
            wrapped.command.as_deref(),
            Some("cat notes | tee ~/.bashrc")
        );
    }

    #[test]
    fn bypass_with_binding_rules_is_warned() {
        let p = parse("[[rule]]\ntool = \"Bash\"\ndecision = \"deny\"\n", None).unwrap();
        assert_eq!(p.warnings().len(), 2);
    }
}
