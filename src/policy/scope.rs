//! What a scoped grant (Telegram's "Allow for 1 h") covers: the same tool in the same
//! session, and the same command prefix (its program and, when it has one, its
//! subcommand: `cargo test`) or the same directory. A grant never covers a command that
//! chains, pipes, redirects or substitutes, and it never outranks a rule: the hub asks
//! the rules first ([`crate::policy::Policy::decide`]). Plain data; no threads.

use std::path::PathBuf;

use super::Subject;
use super::glob;

/// What a grant covers beyond its session and tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Simple commands whose first words are these.
    Prefix(Vec<String>),
    /// Files in this directory or below.
    Dir(PathBuf),
}

/// Tools a grant is never made for: their request is a question, not an action.
const NEVER: &[&str] = &["AskUserQuestion", "ExitPlanMode"];

impl Scope {
    /// The scope a grant for this request would have; `None` when none can be made (a
    /// question, a compound command, a request with neither a command nor a path).
    pub fn of(tool: &str, subject: &Subject) -> Option<Scope> {
        if NEVER.contains(&tool) {
            return None;
        }
        if let Some(c) = &subject.command {
            if !glob::is_simple(c) {
                return None;
            }
            let words: Vec<&str> = c.split_whitespace().collect();
            let first = words.first()?;
            let mut prefix = vec![first.to_string()];
            // A subcommand (`cargo test`, `git status`): a plain word, not a flag or a path.
            if let Some(sub) = words.get(1)
                && sub
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
                && !sub.starts_with('-')
            {
                prefix.push(sub.to_string());
            }
            return Some(Scope::Prefix(prefix));
        }
        let mut dirs = subject.paths.iter().map(|p| p.parent().map(PathBuf::from));
        let first = dirs.next()??;
        // Several files: only when they share the directory.
        if dirs.all(|d| d.as_ref() == Some(&first)) {
            Some(Scope::Dir(first))
        } else {
            None
        }
    }

    /// Whether a later request's subject is inside this scope.
    pub fn covers(&self, subject: &Subject) -> bool {
        match self {
            Scope::Prefix(prefix) => subject.command.as_ref().is_some_and(|c| {
                glob::is_simple(c) && {
                    let words: Vec<&str> = c.split_whitespace().collect();
                    words.len() >= prefix.len() && prefix.iter().zip(&words).all(|(p, w)| p == w)
                }
            }),
            Scope::Dir(dir) => {
                subject.command.is_none()
                    && !subject.paths.is_empty()
                    && subject.paths.iter().all(|p| p.starts_with(dir))
            }
        }
    }

    /// How it is named to people ("commands starting `cargo test`").
    pub fn describe(&self) -> String {
        match self {
            Scope::Prefix(p) => format!("commands starting `{}`", p.join(" ")),
            Scope::Dir(d) => format!("files in {}", d.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn cmd(c: &str) -> Subject {
        Subject::of(&json!({ "command": c }), Path::new("/w"))
    }

    #[test]
    fn command_prefixes() {
        let s = Scope::of("Bash", &cmd("cargo test --all")).unwrap();
        assert_eq!(s, Scope::Prefix(vec!["cargo".into(), "test".into()]));
        assert!(s.covers(&cmd("cargo test -p x")));
        assert!(!s.covers(&cmd("cargo testx")));
        assert!(!s.covers(&cmd("cargo build")));
        assert!(!s.covers(&cmd("cargo test; rm -rf ~")));
        let s = Scope::of("Bash", &cmd("ls -la /tmp")).unwrap();
        assert_eq!(s, Scope::Prefix(vec!["ls".into()]));
        assert!(Scope::of("Bash", &cmd("make && rm x")).is_none());
        assert!(Scope::of("AskUserQuestion", &cmd("x")).is_none());
    }

    #[test]
    fn directories() {
        let w = Subject::of(&json!({"file_path": "src/a.rs"}), Path::new("/w"));
        let s = Scope::of("Write", &w).unwrap();
        assert_eq!(s, Scope::Dir(PathBuf::from("/w/src")));
        let b = Subject::of(&json!({"file_path": "/w/src/sub/b.rs"}), Path::new("/w"));
        assert!(s.covers(&b));
        let up = Subject::of(&json!({"file_path": "/w/src/../x.rs"}), Path::new("/w"));
        assert!(!s.covers(&up));
        assert!(Scope::of("WebFetch", &Subject::default()).is_none());
    }
}
