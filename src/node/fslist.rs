//! The directory picker (`fs.list`): one directory's entries for choosing a session's
//! working directory. Runs on a worker thread. Dirs first, then files, each sorted
//! case-insensitively; hidden entries only on request; at most [`MAX_ENTRIES`].

use std::path::{Path, PathBuf};

use crate::protocol::events::{Event, FsEntry, FsKind, SessionEvent};

pub const MAX_ENTRIES: usize = 1000;

/// The `fs.list` reply for `path` (default: home; `~` expanded; a file lists its parent).
pub fn list(home: Option<&Path>, path: Option<&str>, show_hidden: bool) -> SessionEvent {
    let requested = match path.map(str::trim).filter(|p| !p.is_empty()) {
        None => home
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/")),
        Some(p) => crate::sys::fsutil::expand_home(p, home),
    };
    let requested = if requested.is_absolute() {
        requested
    } else {
        home.map(|h| h.join(&requested)).unwrap_or(requested)
    };
    let error_reply = |p: &Path, e: &std::io::Error| {
        SessionEvent::reply(
            None,
            Event::fs_list_error(text(p), p.parent().map(text), describe(e)),
        )
    };
    let mut dir = match std::fs::canonicalize(&requested) {
        Ok(d) => d,
        Err(e) => return error_reply(&requested, &e),
    };
    if !dir.is_dir() {
        dir = dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
    }
    let read = match std::fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) => return error_reply(&dir, &e),
    };
    let mut entries: Vec<(bool, String, String)> = Vec::new();
    let mut truncated = false;
    for e in read.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !show_hidden && name.starts_with('.') {
            continue;
        }
        // Follow symlinks so a link to a directory can be picked.
        let is_dir = std::fs::metadata(e.path())
            .map(|m| m.is_dir())
            .unwrap_or(false);
        entries.push((is_dir, name.to_lowercase(), name));
        // Bound memory on huge directories: keep sorting a window, not everything.
        if entries.len() > MAX_ENTRIES * 4 {
            sort(&mut entries);
            entries.truncate(MAX_ENTRIES + 1);
            truncated = true;
        }
    }
    sort(&mut entries);
    if entries.len() > MAX_ENTRIES {
        entries.truncate(MAX_ENTRIES);
        truncated = true;
    }
    let list: Vec<FsEntry> = entries
        .into_iter()
        .map(|(is_dir, _, name)| FsEntry {
            path: text(&dir.join(&name)),
            name,
            kind: if is_dir { FsKind::Dir } else { FsKind::File },
        })
        .collect();
    SessionEvent::reply(
        None,
        Event::fs_list(text(&dir), dir.parent().map(text), list, truncated),
    )
}

/// A path as the browser shows it (a name that is not UTF-8 shown with replacements).
fn text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn sort(entries: &mut [(bool, String, String)]) {
    entries.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| a.1.cmp(&b.1))
            .then_with(|| a.2.cmp(&b.2))
    });
}

/// Short, stable error words for the browser.
pub fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "not found".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::NotADirectory => "not a directory".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_words() {
        let pd = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(describe(&pd), "permission denied");
        let nf = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(describe(&nf), "not found");
    }

    #[test]
    fn root_has_no_parent() {
        let v = list(None, Some("/"), false).to_value();
        assert_eq!(v["path"], "/");
        assert!(v["parent"].is_null());
    }
}
