//! Read marks for the history drawer (PROTOCOL §6 `history.mark_read`, §7 `unread`):
//! `<config dir>/reads.json` holds a first-seen baseline and one read watermark per
//! transcript: `{"version":1,"baseline":<ms>,"reads":{"<provider>:<session id>":<ms>}}`,
//! the reference daemon's format, so a config dir can move between the two.
//!
//! A transcript is unread when it was updated after both its watermark and the baseline
//! (the time the file was first created, so a fresh install shows nothing unread) and no
//! turn runs in it now. Watermarks only go up. At most [`MAX_MARKS`] are kept, the newest.
//!
//! The state lives in memory behind one short lock shared by the hub and the history
//! workers ([`Reads`] is a cheap clone). Every change is written atomically (private temp
//! file, fsync, rename) while the lock is held, so two marks arriving together are both
//! kept. A file that cannot be parsed is moved aside (`reads.json.corrupt-<ms>`), never
//! overwritten; a file that cannot be read or written leaves the marks in memory and is
//! retried at the next mark. Neither ever breaks the listing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

/// Watermarks kept; beyond this the oldest go.
pub const MAX_MARKS: usize = 5000;
/// Largest `reads.json` read back (5000 marks take about 400 KiB).
const MAX_FILE: u64 = 4 << 20;
const SCHEMA: u64 = 1;

#[derive(Debug)]
struct State {
    path: PathBuf,
    baseline: u64,
    marks: HashMap<String, u64>,
    /// The file could not be read: do not replace it until a mark forces a write.
    unreadable: bool,
}

/// Shared handle on the read marks.
#[derive(Debug, Clone)]
pub struct Reads(Arc<Mutex<State>>);

/// The key of one transcript in the file.
pub fn key(provider: &str, session_id: &str) -> String {
    format!("{provider}:{session_id}")
}

impl Reads {
    /// Load `<config_dir>/reads.json`, creating it with `now` as the baseline when absent.
    pub fn open(config_dir: &Path, now: u64) -> Reads {
        let path = config_dir.join("reads.json");
        let mut state = State {
            path,
            baseline: now,
            marks: HashMap::new(),
            unreadable: false,
        };
        match read_file(&state.path) {
            Ok(Some(v)) => match parse(&v) {
                Some((baseline, marks)) => {
                    state.baseline = baseline;
                    state.marks = marks;
                }
                None => {
                    set_aside(&state.path, now, "it does not hold read marks");
                    let _ = write(&state);
                }
            },
            Ok(None) => {
                if let Err(e) = write(&state) {
                    crate::log_warn!(
                        "cannot create {}: {e}; unread marks start from now and are kept in memory",
                        state.path.display()
                    );
                }
            }
            Err(ReadError::Corrupt(why)) => {
                set_aside(&state.path, now, &why);
                let _ = write(&state);
            }
            Err(ReadError::Io(e)) => {
                crate::log_warn!(
                    "cannot read {}: {e}; read marks are kept in memory until it can be written",
                    state.path.display()
                );
                state.unreadable = true;
            }
        }
        Reads(Arc::new(Mutex::new(state)))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Is a transcript updated at `updated_at` unread?
    #[cfg(test)]
    pub fn is_unread(&self, key: &str, updated_at: u64) -> bool {
        let s = self.lock();
        let seen = s.marks.get(key).copied().unwrap_or(0).max(s.baseline);
        updated_at > seen
    }

    /// A copy of the baseline and the marks, for a listing that checks many.
    pub fn snapshot(&self) -> (u64, HashMap<String, u64>) {
        let s = self.lock();
        (s.baseline, s.marks.clone())
    }

    /// Raise the watermark of `key` to `at` (never lower it) in memory only; [`Reads::mark`]
    /// also saves. Cheap enough for the hub thread.
    pub fn raise(&self, key: &str, at: u64) {
        let mut s = self.lock();
        let entry = s.marks.entry(key.to_string()).or_insert(0);
        *entry = (*entry).max(at);
    }

    /// Raise the watermark of `key` to `at` (never lower it) and save. The mark holds in
    /// memory even when the save fails; the error is returned for the log.
    pub fn mark(&self, key: &str, at: u64) -> Result<(), MarkError> {
        let mut s = self.lock();
        if s.unreadable {
            // Merge what the file holds before replacing it; never write over marks
            // that could not be read.
            match read_file(&s.path) {
                Ok(v) => {
                    if let Some((baseline, marks)) = v.as_ref().and_then(parse) {
                        s.baseline = baseline;
                        for (k, at) in marks {
                            let e = s.marks.entry(k).or_insert(0);
                            *e = (*e).max(at);
                        }
                    }
                    s.unreadable = false;
                }
                Err(ReadError::Corrupt(why)) => {
                    set_aside(&s.path, crate::sys::timefmt::now_ms(), &why);
                    s.unreadable = false;
                }
                Err(ReadError::Io(e)) => {
                    let entry = s.marks.entry(key.to_string()).or_insert(0);
                    *entry = (*entry).max(at);
                    return Err(MarkError::Unreadable {
                        path: s.path.clone(),
                        source: e,
                    });
                }
            }
        }
        let entry = s.marks.entry(key.to_string()).or_insert(0);
        *entry = (*entry).max(at);
        if s.marks.len() > MAX_MARKS {
            let mut by_age: Vec<(u64, String)> =
                s.marks.iter().map(|(k, v)| (*v, k.clone())).collect();
            by_age.sort_unstable();
            let excess = s.marks.len() - MAX_MARKS;
            for (_, k) in by_age.into_iter().take(excess) {
                s.marks.remove(&k);
            }
        }
        match write(&s) {
            Ok(()) => {
                s.unreadable = false;
                Ok(())
            }
            Err(e) => Err(MarkError::Save {
                path: s.path.clone(),
                source: e,
            }),
        }
    }
}

/// Why a mark could not be saved (it holds in memory all the same).
#[derive(Debug)]
pub enum MarkError {
    /// The marks file could not be read, so it is not written over.
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl std::fmt::Display for MarkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MarkError::Unreadable { path, source } => write!(
                f,
                "cannot read {} ({source}); the mark is kept in memory",
                path.display()
            ),
            MarkError::Save { path, source } => {
                write!(f, "cannot save {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for MarkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MarkError::Unreadable { source, .. } | MarkError::Save { source, .. } => Some(source),
        }
    }
}

enum ReadError {
    Io(std::io::Error),
    Corrupt(String),
}

fn read_file(path: &Path) -> Result<Option<Value>, ReadError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::Io(e)),
    };
    if meta.len() > MAX_FILE {
        return Err(ReadError::Corrupt(format!(
            "it is {} bytes, more than read marks can take",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(ReadError::Io)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ReadError::Corrupt(format!("it is not valid JSON ({e})")))
}

fn parse(v: &Value) -> Option<(u64, HashMap<String, u64>)> {
    let baseline = v.get("baseline")?.as_u64()?;
    let mut marks = HashMap::new();
    for (k, at) in v.get("reads")?.as_object()? {
        if let Some(at) = at.as_u64() {
            marks.insert(k.clone(), at);
        }
    }
    Some((baseline, marks))
}

fn set_aside(path: &Path, now: u64, why: &str) {
    let aside = path.with_file_name(format!("reads.json.corrupt-{now}"));
    match std::fs::rename(path, &aside) {
        Ok(()) => crate::log_warn!(
            "{} was moved to {} because {why}; unread marks start again from now",
            path.display(),
            aside.display()
        ),
        Err(e) => crate::log_warn!(
            "{} is unusable ({why}) and could not be moved aside ({e}); unread marks start again from now",
            path.display()
        ),
    }
}

fn write(s: &State) -> std::io::Result<()> {
    let body = json!({"version": SCHEMA, "baseline": s.baseline, "reads": s.marks});
    let bytes = serde_json::to_vec(&body).map_err(std::io::Error::other)?;
    crate::sys::fsutil::write_private_file(&s.path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "cba-reads-{name}-{}-{}",
            std::process::id(),
            crate::sys::ids::new_id()
        ));
        crate::sys::fsutil::ensure_private_dir(&p).unwrap();
        p
    }

    #[test]
    fn baseline_watermarks_and_bound() {
        let dir = scratch("basic");
        let r = Reads::open(&dir, 1000);
        assert!(
            dir.join("reads.json").is_file(),
            "baseline recorded at once"
        );
        assert!(!r.is_unread("claude:a", 900), "older than the baseline");
        assert!(r.is_unread("claude:a", 1500));
        r.mark("claude:a", 2000).unwrap();
        assert!(!r.is_unread("claude:a", 1500));
        r.mark("claude:a", 1200).unwrap();
        assert!(
            !r.is_unread("claude:a", 1900),
            "a watermark never goes back"
        );
        // A reopened file keeps the baseline and the marks.
        let again = Reads::open(&dir, 99_999);
        assert!(!again.is_unread("claude:a", 1900));
        assert!(again.is_unread("claude:b", 1500));
        for i in 0..(MAX_MARKS as u64 + 10) {
            again.mark(&format!("claude:s{i}"), 10_000 + i).unwrap();
        }
        let (_, marks) = again.snapshot();
        assert_eq!(marks.len(), MAX_MARKS);
        assert!(marks.contains_key(&format!("claude:s{}", MAX_MARKS + 9)));
        assert!(!marks.contains_key("claude:a"), "the oldest went first");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_file_is_set_aside_not_overwritten() {
        let dir = scratch("corrupt");
        std::fs::write(dir.join("reads.json"), b"{not json").unwrap();
        let r = Reads::open(&dir, 5000);
        assert!(!r.is_unread("claude:a", 4000));
        let aside: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("reads.json.corrupt-")
            })
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read(aside[0].path()).unwrap(), b"{not json");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
