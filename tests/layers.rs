//! The layers run one way (issue 18, `../shared/ARCHITECTURE.md`):
//!
//! ```text
//! main → cli → daemon → hub → { relay, channels, node } → providers → { session, history, policy } → protocol → sys
//! ```
//!
//! Each layer may use only the layers to its right; siblings (`relay`, `channels` and
//! `node`; `session`, `history` and `policy`) know nothing of each other. `protocol` sits below
//! `session` and `history` (the architecture note draws them side by side) because both
//! build the protocol's events and parse its ids. This test reads every `crate::…` path in the code under `src/`
//! (comments left out) and fails on one that points up or sideways, so the shape cannot
//! rot. `KNOWN` would list edges still to be taken apart (it is empty now): a new one fails,
//! and so does an entry that no longer exists (the list only shrinks).

use std::collections::BTreeSet;
use std::path::Path;

/// The layer of each top-level module: higher uses lower.
fn rank(module: &str) -> Option<u8> {
    Some(match module {
        "main" => 8,
        "cli" => 7,
        "daemon" => 6,
        "hub" => 5,
        "relay" | "channels" | "node" => 4,
        "providers" => 3,
        "session" | "history" | "policy" => 2,
        // Below the session and the history: both build the protocol's events.
        "protocol" => 1,
        // The logging macros are exported at the crate root from `sys::logging`.
        "sys" => 0,
        m if m.starts_with("log_") => 0,
        _ => return None,
    })
}

/// Upward or sideways edges not taken apart yet: (file, module it reaches).
const KNOWN: &[(&str, &str)] = &[];

/// Every `crate::<module>` a line of code names (also `crate::{a, b}` groups).
fn targets(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
        rest = after;
    }
    out
}

/// The code of a file without its comments (line comments and doc comments).
fn code_of(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        // A trailing comment; a `//` inside a string (a URL) cuts harmlessly.
        let code = line.find("//").map_or(line, |i| &line[..i]);
        out.push_str(code);
        out.push('\n');
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every edge that breaks the layering, as (file, module it reaches).
fn violations(src: &Path) -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut bad = BTreeSet::new();
    for f in files {
        let rel = f
            .strip_prefix(src)
            .expect("under src")
            .to_string_lossy()
            .into_owned();
        let top = rel
            .split('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" {
            continue; // declares the modules
        }
        let Some(own) = rank(&top) else {
            panic!("src/{rel}: module `{top}` has no layer; add it to rank()");
        };
        let text = std::fs::read_to_string(&f).expect("read a source file");
        for target in targets(&code_of(&text)) {
            let target_top = if target.starts_with("log_") {
                "sys".to_string()
            } else {
                target
            };
            if target_top == top {
                continue;
            }
            let Some(theirs) = rank(&target_top) else {
                panic!("src/{rel} names crate::{target_top}, which has no layer");
            };
            // Siblings of one layer know nothing of each other.
            if theirs >= own {
                bad.insert((rel.clone(), target_top));
            }
        }
    }
    bad
}

#[test]
fn layers_run_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    let known: BTreeSet<(String, String)> = KNOWN
        .iter()
        .map(|(f, m)| (f.to_string(), m.to_string()))
        .collect();
    let new: Vec<_> = found.difference(&known).collect();
    let gone: Vec<_> = known.difference(&found).collect();
    let show = |v: &[&(String, String)]| {
        v.iter()
            .map(|(f, m)| format!("    (\"{f}\", \"{m}\"),"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        new.is_empty(),
        "{} edge(s) point up or sideways (file, module it reaches):\n{}\n\
         Move the shared piece down a layer, or pass it in from above.",
        new.len(),
        show(&new)
    );
    assert!(
        gone.is_empty(),
        "these edges are gone: take them off KNOWN in tests/layers.rs:\n{}",
        show(&gone)
    );
}

#[test]
fn the_checker_sees_grouped_and_inline_paths_but_not_comments() {
    let code = code_of(
        "use crate::{hub::x, sys::y};\n/// [`crate::cli::z`]\nlet a = crate::node::media::f(); // crate::daemon\n",
    );
    assert_eq!(targets(&code), ["hub", "sys", "node"]);
}
