//! The directory picker (`fs.list`): one directory's entries for choosing a session's
//! working directory. Runs on a worker thread. Dirs first, then files, each sorted
//! case-insensitively; hidden entries only on request; at most [`MAX_ENTRIES`]. With
//! the owner's `roots` ([`crate::policy`]), nothing outside them is listed: a directory
//! above a root shows only the way down to it, and one elsewhere is an error.

use std::path::{Path, PathBuf};

use crate::protocol::events::{Event, FsEntry, FsKind, SessionEvent};

pub const MAX_ENTRIES: usize = 1000;

/// The `fs.list` reply for `path` (default: home, or the first root when home is outside
/// them; `~` expanded; a file lists its parent). `roots`: the directories the policy
/// lets sessions run in (resolved), if it limits them.
pub fn list(
    home: Option<&Path>,
    path: Option<&str>,
    show_hidden: bool,
    roots: Option<&[PathBuf]>,
) -> SessionEvent {
    let inside = |d: &Path| roots.is_none_or(|r| r.iter().any(|r| d.starts_with(r)));
    let requested = match path.map(str::trim).filter(|p| !p.is_empty()) {
        None => home
            .filter(|h| inside(&std::fs::canonicalize(h).unwrap_or_else(|_| h.to_path_buf())))
            .map(Path::to_path_buf)
            .or_else(|| roots.and_then(|r| r.first().cloned()))
            .or_else(|| home.map(Path::to_path_buf))
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
    let toward_root = |d: &Path| roots.is_some_and(|r| r.iter().any(|r| r.starts_with(d)));
    let outside = |d: &Path| {
        let message = format!(
            "outside the directories the node's policy lets sessions run in ({})",
            roots
                .unwrap_or_default()
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        SessionEvent::reply(None, Event::fs_list_error(text(d), None, message))
    };
    // Outside the roots as written: told so before anything is looked up there, so
    // whether a path exists outside them is never told.
    let lexical = crate::policy::glob::normalize(&requested.to_string_lossy(), Path::new("/"));
    if roots.is_some() && !inside(&lexical) && !toward_root(&lexical) {
        return outside(&requested);
    }
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
    // Above a root: only the entries on the way down to one.
    let above = !inside(&dir);
    if above && !toward_root(&dir) {
        // A link inside out of the roots: named as asked, not where it leads.
        return outside(&requested);
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
        if above {
            let path = e.path();
            if !roots.is_some_and(|r| r.iter().any(|r| r.starts_with(&path))) {
                continue;
            }
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
    fn nothing_outside_the_roots_is_listed() {
        let base = std::env::temp_dir().join(format!("fslist-roots-{}", std::process::id()));
        let root = base.join("work/proj");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(base.join("work/secret")).unwrap();
        std::fs::create_dir_all(base.join("other")).unwrap();
        std::fs::write(root.join("a.rs"), "").unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        let roots = [root.clone()];
        let names = |p: &Path| {
            let v = list(None, Some(&p.to_string_lossy()), false, Some(&roots)).to_value();
            let mut n: Vec<String> = v["entries"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| e["name"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            n.sort();
            (n, v["error"].clone())
        };
        assert_eq!(names(&root).0, ["a.rs"]);
        assert_eq!(names(&base.join("work")).0, ["proj"]);
        assert_eq!(names(&base).0, ["work"]);
        let (n, e) = names(&base.join("other"));
        assert!(n.is_empty());
        assert!(e.as_str().unwrap().contains("outside"), "{e}");
        // A link out of a root is judged where it leads.
        let link = root.join("out");
        let _ = std::os::unix::fs::symlink(base.join("other"), &link);
        assert!(names(&link).1.as_str().unwrap().contains("outside"));
        // A path outside that does not exist reads the same as one that does.
        let (_, e) = names(&base.join("other/nothing-here"));
        assert!(e.as_str().unwrap().contains("outside"), "{e}");
        // No path: the first root when home is outside them.
        let v = list(Some(&base.join("other")), None, false, Some(&roots)).to_value();
        assert_eq!(v["path"], root.to_string_lossy().as_ref());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn root_has_no_parent() {
        let v = list(None, Some("/"), false, None).to_value();
        assert_eq!(v["path"], "/");
        assert!(v["parent"].is_null());
    }
}
