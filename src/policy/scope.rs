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
    /// This very command, character for character (a program without a subcommand, or
    /// one that runs whatever it is given).
    Exact(String),
    /// Files in this directory or below.
    Dir(PathBuf),
}

/// Tools a grant is never made for: their request is a question, not an action.
pub const QUESTIONS: &[&str] = &["AskUserQuestion", "ExitPlanMode"];

/// Programs whose second word is a subcommand (`cargo test`, `git status`): a grant for
/// one covers that subcommand. Any other program is granted only the very command asked
/// (`rm build` must not cover `rm build -rf ~`, nor `python3 -c …` any script).
const SUBCOMMANDS: &[&str] = &[
    "cargo",
    "git",
    "npm",
    "pnpm",
    "yarn",
    "go",
    "make",
    "just",
    "uv",
    "pip",
    "pip3",
    "poetry",
    "bundle",
    "rake",
    "mvn",
    "gradle",
    "dotnet",
    "swift",
    "zig",
    "rustup",
    "gh",
    "terraform",
    "helm",
    "cmake",
    "ctest",
    "meson",
    "ninja",
    "bazel",
    "composer",
    "mix",
    "stack",
    "cabal",
    "dune",
    "sbt",
    "lein",
    "flutter",
    "dart",
];

/// Subcommands that run whatever they are given: granted only as asked.
const RUNS_ANYTHING: &[&str] = &["exec", "x", "dlx", "run", "eval", "shell"];

impl Scope {
    /// The scope a grant for this request would have; `None` when none can be made (a
    /// question, a compound command, a request with neither a command nor a path).
    pub fn of(tool: &str, subject: &Subject) -> Option<Scope> {
        if QUESTIONS.contains(&tool) {
            return None;
        }
        let Some(c) = &subject.command else {
            return Scope::of_paths(subject);
        };
        if !glob::is_simple(c) {
            return None;
        }
        let words: Vec<String> = c.split_whitespace().map(str::to_string).collect();
        let first = words.first()?;
        let exact = Scope::Exact(c.trim().to_string());
        // A program with subcommands, by its bare name (`./cargo` could be anything), and
        // a subcommand that is a plain word and does not run whatever it is given.
        if !SUBCOMMANDS.contains(&first.as_str()) {
            return Some(exact);
        }
        match words.get(1) {
            Some(sub)
                if !sub.starts_with('-')
                    && !RUNS_ANYTHING.contains(&sub.as_str())
                    && sub
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_') =>
            {
                Some(Scope::Prefix(words[..2].to_vec()))
            }
            _ => Some(exact),
        }
    }

    fn of_paths(subject: &Subject) -> Option<Scope> {
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
            Scope::Exact(exact) => subject
                .command
                .as_ref()
                .is_some_and(|c| glob::is_simple(c) && c.trim() == exact),
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
            Scope::Exact(c) => format!("the command `{c}`"),
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
        Subject::of(&json!({ "command": c }), Path::new("/w"), None)
    }

    #[test]
    fn command_prefixes() {
        let s = Scope::of("Bash", &cmd("cargo test --all")).unwrap();
        assert_eq!(s, Scope::Prefix(vec!["cargo".into(), "test".into()]));
        assert!(s.covers(&cmd("cargo test -p x")));
        assert!(!s.covers(&cmd("cargo testx")));
        assert!(!s.covers(&cmd("cargo build")));
        assert!(!s.covers(&cmd("cargo test; rm -rf ~")));
        // Not a program with subcommands: this command only, character for character.
        let s = Scope::of("Bash", &cmd("rm -f build.log")).unwrap();
        assert!(s.covers(&cmd("rm -f build.log")));
        assert!(!s.covers(&cmd("rm  -f build.log")));
        assert!(!s.covers(&cmd("rm -rf ~")));
        let s = Scope::of("Bash", &cmd("rm build")).unwrap();
        assert!(!s.covers(&cmd("rm build -rf ~")));
        for c in [
            "python3 -c 'print(1)'",
            "bash x.sh",
            "/usr/bin/env FOO=1 cargo",
            "FOO=1 cargo test",
            "./cargo test",
            "npm exec foo",
            "uv run x.py",
            "find src -name x",
            "chmod 644 f",
            "ls -la /tmp",
        ] {
            let s = Scope::of("Bash", &cmd(c)).unwrap();
            assert!(matches!(s, Scope::Exact(_)), "{c}: {s:?}");
        }
        let s = Scope::of("Bash", &cmd("python3 -c 'print(1) # a'")).unwrap();
        assert!(!s.covers(&cmd("python3 -c 'print(1)\n# a'")));
        assert!(Scope::of("Bash", &cmd("make && rm x")).is_none());
        assert!(Scope::of("AskUserQuestion", &cmd("x")).is_none());
    }

    #[test]
    fn directories() {
        let w = Subject::of(&json!({"file_path": "src/a.rs"}), Path::new("/w"), None);
        let s = Scope::of("Write", &w).unwrap();
        assert_eq!(s, Scope::Dir(PathBuf::from("/w/src")));
        let b = Subject::of(
            &json!({"file_path": "/w/src/sub/b.rs"}),
            Path::new("/w"),
            None,
        );
        assert!(s.covers(&b));
        let up = Subject::of(
            &json!({"file_path": "/w/src/../x.rs"}),
            Path::new("/w"),
            None,
        );
        assert!(!s.covers(&up));
        assert!(Scope::of("WebFetch", &Subject::default()).is_none());
    }
}
