//! What `history.list` shows of every provider's session files: one [`Found`] per file,
//! its [`Summary`] (title, cwd, branch, message count) cached by (path, size, mtime) so a
//! second listing reads nothing but directory entries, and the title rules every
//! provider shares. Runs on worker threads, never on the hub.

use std::collections::HashMap;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

/// The title shown for a session without a single prompt.
pub(crate) const NO_PROMPT: &str = "(no prompt)";
/// Longest title, in characters.
const TITLE_CHARS: usize = 80;
/// Summaries cached before the cache starts over.
const CACHE_ENTRIES: usize = 8192;

/// What the listing shows of one session file.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Summary {
    pub(crate) title: String,
    pub(crate) cwd: Option<String>,
    pub(crate) git_branch: Option<String>,
    pub(crate) message_count: u64,
}

/// One session file found by the listing.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) mtime: u64,
    pub(crate) path: PathBuf,
    pub(crate) id: String,
    pub(crate) size: u64,
}

/// A file's last-modified time in ms since the epoch (0 when unknown).
pub(crate) fn mtime_ms(meta: &Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `summarize(path)`, cached by (path, size, mtime) across listings.
pub(crate) fn summary_cached(
    path: &Path,
    size: u64,
    mtime: u64,
    summarize: fn(&Path) -> Summary,
) -> Summary {
    type Cache = HashMap<PathBuf, (u64, u64, Summary)>;
    static CACHE: Mutex<Option<Cache>> = Mutex::new(None);
    if let Ok(mut c) = CACHE.lock()
        && let Some((sz, mt, s)) = c.get_or_insert_with(HashMap::new).get(path)
        && *sz == size
        && *mt == mtime
    {
        return s.clone();
    }
    let s = summarize(path);
    if let Ok(mut c) = CACHE.lock() {
        let map = c.get_or_insert_with(HashMap::new);
        if map.len() >= CACHE_ENTRIES {
            map.clear();
        }
        map.insert(path.to_path_buf(), (size, mtime, s.clone()));
    }
    s
}

/// Remove `<tag>` markers (keeping the text between them).
pub(crate) fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        match after.find('>') {
            Some(end)
                if end > 1
                    && after[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
                    && after[1..end]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_/ =\"'.:".contains(c)) =>
            {
                rest = &after[end + 1..];
            }
            _ => {
                out.push('<');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A title from `own`, the user's own words (the provider takes its attachment note off
/// first): tags stripped, whitespace folded, at most 80 characters.
pub(crate) fn title_of(own: &str) -> String {
    let folded = strip_tags(own)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if folded.chars().count() <= TITLE_CHARS {
        folded
    } else {
        let mut t: String = folded.chars().take(TITLE_CHARS - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_and_tags() {
        assert_eq!(title_of("  <b>Fix</b>   the\n\nbug  "), "Fix the bug");
        assert_eq!(title_of("a < b and c > d"), "a < b and c > d");
        let long = "word ".repeat(40);
        let t = title_of(&long);
        assert_eq!(t.chars().count(), 80);
        assert!(t.ends_with('…'));
    }
}
