//! What `history.list` shows of every provider's session files: one [`Found`] per file,
//! its [`Summary`] (title, cwd, branch, message count) cached by (path, size, mtime) so a
//! second listing reads nothing but directory entries, and the title rules every
//! provider shares. Runs on worker threads, never on the hub.
//!
//! The cache is also the summary index in the config dir ([`open_index`],
//! [`save_index`]): a restarted daemon summarizes only the files that changed. The index
//! is bounded, replaced atomically, and never trusted blindly: an entry counts only for a
//! file found with the same size and modification time, and an index that cannot be
//! read (or is of another version) is dropped and rebuilt.

use std::collections::HashMap;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

/// The title shown for a session without a single prompt.
pub(crate) const NO_PROMPT: &str = "(no prompt)";
/// Longest title, in characters.
const TITLE_CHARS: usize = 80;
/// Summaries cached before the cache starts over.
const CACHE_ENTRIES: usize = 8192;
/// The index file's format.
const INDEX_VERSION: u64 = 1;
/// An index file larger than this is not read (it is rebuilt).
const MAX_INDEX_BYTES: u64 = 16 << 20;

/// What the listing shows of one session file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

/// How a provider summarizes one of its files.
#[derive(Clone, Copy)]
pub(crate) enum Summarizer {
    /// Read whole, each time it changed.
    Whole(fn(&Path) -> Summary),
    /// An append-only file (a JSONL transcript): read whole once (with what carrying on
    /// needs, as JSON), then only what was appended since.
    Growing {
        whole: fn(&Path) -> (Summary, Option<serde_json::Value>),
        grow: Grow,
    },
}

/// Carry a summary on over what a file gained past its old size.
pub(crate) type Grow =
    fn(&Path, u64, &Summary, &serde_json::Value) -> Option<(Summary, Option<serde_json::Value>)>;

/// A summary, the size and time it was taken at, and what growing it needs.
type Cached = (u64, u64, Summary, Option<serde_json::Value>);

/// The summaries known, by path, with the size and time they were taken at.
#[derive(Default)]
struct Index {
    entries: HashMap<PathBuf, Cached>,
    /// The file it is kept in, once opened.
    file: Option<PathBuf>,
    /// Changed since it was last saved.
    dirty: bool,
}

static INDEX: Mutex<Option<Index>> = Mutex::new(None);

/// One entry of the index file.
#[derive(Serialize, Deserialize)]
struct Stored {
    path: String,
    size: u64,
    mtime: u64,
    #[serde(flatten)]
    summary: Summary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    growth: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct StoredIndex {
    version: u64,
    entries: Vec<Stored>,
}

/// Use the index kept in `file` (read once per process; a missing, unreadable or foreign
/// one starts empty and is rebuilt by the listings).
pub(crate) fn open_index(file: &Path) {
    let Ok(mut guard) = INDEX.lock() else {
        return;
    };
    let index = guard.get_or_insert_with(Index::default);
    if index.file.as_deref() == Some(file) {
        return;
    }
    index.file = Some(file.to_path_buf());
    let read = std::fs::metadata(file)
        .ok()
        .filter(|m| m.len() <= MAX_INDEX_BYTES)
        .and_then(|_| std::fs::read(file).ok());
    let Some(bytes) = read else {
        return;
    };
    match serde_json::from_slice::<StoredIndex>(&bytes) {
        Ok(stored) if stored.version == INDEX_VERSION => {
            for e in stored.entries.into_iter().take(CACHE_ENTRIES) {
                index
                    .entries
                    .entry(PathBuf::from(e.path))
                    .or_insert((e.size, e.mtime, e.summary, e.growth));
            }
        }
        Ok(_) | Err(_) => {
            crate::log_warn!(
                "the history index {} is unreadable or of another version; rebuilding it",
                file.display()
            );
            index.dirty = true;
        }
    }
}

/// Save the index if listings changed it (atomically, 0600; a failure is logged).
pub(crate) fn save_index() {
    let (file, bytes) = {
        let Ok(mut guard) = INDEX.lock() else {
            return;
        };
        let Some(index) = guard.as_mut() else {
            return;
        };
        let Some(file) = index.file.clone().filter(|_| index.dirty) else {
            return;
        };
        index.dirty = false;
        let entries = index
            .entries
            .iter()
            .filter_map(|(p, (size, mtime, summary, growth))| {
                Some(Stored {
                    path: p.to_str()?.to_string(),
                    size: *size,
                    mtime: *mtime,
                    summary: summary.clone(),
                    growth: growth.clone(),
                })
            })
            .collect();
        let stored = StoredIndex {
            version: INDEX_VERSION,
            entries,
        };
        (file, serde_json::to_vec(&stored).unwrap_or_default())
    };
    if let Err(e) = crate::sys::fsutil::replace_private_file_quick(&file, &bytes) {
        crate::log_warn!("cannot save the history index {}: {e}", file.display());
    }
}

/// The summary of `path`, cached by (path, size, mtime) across listings (and restarts,
/// through the index); a grown file of a [`Summarizer::Growing`] provider is read only
/// from where its summary left off.
pub(crate) fn summary_cached(path: &Path, size: u64, mtime: u64, how: Summarizer) -> Summary {
    let known = INDEX.lock().ok().and_then(|mut c| {
        c.get_or_insert_with(Index::default)
            .entries
            .get(path)
            .cloned()
    });
    if let Some((sz, mt, s, _)) = &known
        && *sz == size
        && *mt == mtime
    {
        return s.clone();
    }
    let grown = match (how, &known) {
        (Summarizer::Growing { grow, .. }, Some((old, _, s, Some(g)))) if size > *old => {
            grow(path, *old, s, g)
        }
        _ => None,
    };
    let (s, growth) = match (grown, how) {
        (Some(done), _) => done,
        (None, Summarizer::Whole(f)) => (f(path), None),
        (None, Summarizer::Growing { whole, .. }) => whole(path),
    };
    if let Ok(mut c) = INDEX.lock() {
        let index = c.get_or_insert_with(Index::default);
        if index.entries.len() >= CACHE_ENTRIES {
            index.entries.clear();
        }
        index
            .entries
            .insert(path.to_path_buf(), (size, mtime, s.clone(), growth));
        index.dirty = true;
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
