//! Reading (and, for one repair, copying) Claude Code's own session transcripts for the
//! live sessions (PROTOCOL §8): where a transcript is, which message uuids and message
//! ids it already holds (the replay guard), which user record an edit rewinds to, and a
//! repaired copy of a transcript whose thinking blocks lack signatures.
//!
//! Plain functions on files. They can take most of a second on a big transcript, so the
//! hub never calls them itself: they run on its workers ([`crate::hub::worker`]) and
//! their results come back as messages (see [`Known::reading`] and [`prepare_resume`]).
//! Every read streams line by line with a bounded line length; every set built is
//! bounded.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::sys::child::{LineRead, read_bounded_line};

/// Longest transcript line read; a longer one is skipped.
const MAX_RECORD: usize = 16 << 20;
/// Most ids a replay guard remembers (a very long session just stops adding).
const MAX_KNOWN: usize = 400_000;

/// Claude Code's configuration directory: `$CLAUDE_CONFIG_DIR`, else `~/.claude`.
pub fn claude_dir(home: Option<&Path>, config_dir_env: Option<&Path>) -> Option<PathBuf> {
    match config_dir_env {
        Some(d) if !d.as_os_str().is_empty() => Some(d.to_path_buf()),
        _ => home.map(|h| h.join(".claude")),
    }
}

/// Claude Code's transcript directory name for a working directory.
pub fn project_slug(cwd: &Path) -> String {
    cwd.to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// The transcript of session `id` started in `cwd`.
pub fn path(claude_dir: &Path, cwd: &Path, id: &str) -> PathBuf {
    claude_dir
        .join("projects")
        .join(project_slug(cwd))
        .join(format!("{id}.jsonl"))
}

/// Where the transcript of session `id` is: under the project dir of `cwd`, else in
/// whichever project dir holds it (the CLI may have filed it under another spelling of
/// the directory). `None` when there is none.
pub fn locate(claude_dir: &Path, cwd: &Path, id: &str) -> Option<PathBuf> {
    let expected = path(claude_dir, cwd, id);
    if expected.is_file() {
        return Some(expected);
    }
    std::fs::read_dir(claude_dir.join("projects"))
        .ok()?
        .flatten()
        .map(|p| p.path().join(format!("{id}.jsonl")))
        .find(|p| p.is_file())
}

/// Calls `f` with each complete line of the file at `path` from byte `from` on (until
/// `f` says stop), and returns the offset after the last complete line read.
fn each_line(path: &Path, from: u64, mut f: impl FnMut(&[u8]) -> bool) -> u64 {
    let Ok(mut file) = std::fs::File::open(path) else {
        return from;
    };
    if file.seek(SeekFrom::Start(from)).is_err() {
        return from;
    }
    let mut reader = BufReader::with_capacity(64 << 10, file);
    let mut offset = from;
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_bounded_line(&mut reader, &mut line, MAX_RECORD) {
            Ok(LineRead::Eof) | Err(_) => break,
            // A last line without its newline may still be being written: read it again
            // next time.
            Ok(LineRead::Line) if line.last() != Some(&b'\n') => break,
            Ok(LineRead::Line) => {
                offset += line.len() as u64;
                if !f(&line) {
                    break;
                }
            }
            Ok(LineRead::TooLong(n)) => offset += n as u64,
        }
    }
    offset
}

/// Calls `f` with each parsed record (see [`each_line`]).
fn each_record(path: &Path, from: u64, mut f: impl FnMut(&Value) -> bool) -> u64 {
    each_line(path, from, |line| {
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => f(&v),
            Err(_) => true,
        }
    })
}

/// Does `hay` contain `needle` (compared only where the first byte matches)?
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    hay.iter()
        .enumerate()
        .filter(|(_, b)| **b == first)
        .any(|(i, _)| hay[i + 1..].starts_with(rest))
}

/// What a session's transcript already holds, so that what a resumed (or busy) CLI
/// replays from it is not shown again: message uuids and Anthropic message ids.
#[derive(Debug, Default)]
pub struct Known {
    path: Option<PathBuf>,
    offset: u64,
    pub uuids: HashSet<String>,
    pub message_ids: HashSet<String>,
}

impl Known {
    /// Follow the transcript at `path` (a new path starts from its beginning).
    pub fn follow(&mut self, path: PathBuf) {
        if self.path.as_ref() != Some(&path) {
            self.path = Some(path);
            self.offset = 0;
        }
    }

    /// Read what was appended since the last refresh (on the calling thread).
    #[cfg(test)]
    pub fn refresh(&mut self) {
        if let Some(r) = self.reading() {
            let delta = r.read();
            self.merge(delta);
        }
    }

    /// What to read to bring this up to date, for a worker: `None` when no transcript
    /// is followed. The worker's [`Reading::read`] comes back to [`Known::merge`].
    pub fn reading(&self) -> Option<Reading> {
        Some(Reading {
            path: self.path.clone()?,
            from: self.offset,
            room: MAX_KNOWN.saturating_sub(self.uuids.len() + self.message_ids.len()),
        })
    }

    /// Take in what a [`Reading`] found (one for another path than the one followed now
    /// is dropped: the session moved on meanwhile).
    pub fn merge(&mut self, d: Delta) {
        if self.path.as_ref() != Some(&d.path) || d.from != self.offset {
            return;
        }
        self.offset = d.offset;
        // The first read of a big transcript brings most of the ids: taking its sets
        // whole keeps the hub's share of the work constant.
        if self.uuids.is_empty() {
            self.uuids = d.uuids;
        } else {
            self.uuids.extend(d.uuids);
        }
        if self.message_ids.is_empty() {
            self.message_ids = d.message_ids;
        } else {
            self.message_ids.extend(d.message_ids);
        }
    }

    /// Forget everything (a fresh conversation).
    pub fn clear(&mut self) {
        *self = Known::default();
    }
}

/// A read of what a transcript gained since [`Known`] last looked, to run off the hub.
#[derive(Debug, Clone)]
pub struct Reading {
    path: PathBuf,
    from: u64,
    /// How many more ids may be added before the bound.
    room: usize,
}

/// What a [`Reading`] found, for [`Known::merge`].
#[derive(Debug, Default)]
pub struct Delta {
    path: PathBuf,
    from: u64,
    offset: u64,
    uuids: HashSet<String>,
    message_ids: HashSet<String>,
}

impl Reading {
    pub fn read(self) -> Delta {
        let (mut uuids, mut ids) = (HashSet::new(), HashSet::new());
        let room = self.room;
        let offset = each_record(&self.path, self.from, |v| {
            if uuids.len() + ids.len() >= room {
                return false;
            }
            if let Some(u) = v.get("uuid").and_then(Value::as_str) {
                uuids.insert(u.to_string());
            }
            if v.get("type").and_then(Value::as_str) == Some("assistant")
                && let Some(id) = v.pointer("/message/id").and_then(Value::as_str)
            {
                ids.insert(id.to_string());
            }
            true
        });
        Delta {
            path: self.path,
            from: self.from,
            offset,
            uuids,
            message_ids: ids,
        }
    }
}

/// What a resume needs from the disk, found off the hub: whether `id`'s transcript was
/// ever saved, and, when the API would refuse it (thinking blocks without a signature),
/// the id of a repaired copy to resume instead. `scanned` is how far an earlier check got
/// (each check reads only what was appended since); the new mark comes back.
#[derive(Debug)]
pub struct ResumePlan {
    pub id: String,
    /// The transcript, when one was saved.
    pub path: Option<PathBuf>,
    /// Resume this repaired copy's id instead of `id`.
    pub repaired: Option<String>,
    pub scanned: Option<(PathBuf, u64)>,
    /// A repair that was needed but failed (the original is resumed; the API may refuse).
    pub repair_failed: Option<String>,
}

pub fn prepare_resume(
    claude_dir: &Path,
    cwd: &Path,
    id: &str,
    scanned: Option<(PathBuf, u64)>,
) -> ResumePlan {
    let mut plan = ResumePlan {
        id: id.to_string(),
        path: locate(claude_dir, cwd, id),
        repaired: None,
        scanned,
        repair_failed: None,
    };
    let Some(path) = plan.path.clone() else {
        return plan;
    };
    let from = match &plan.scanned {
        Some((p, end)) if *p == path => *end,
        _ => 0,
    };
    let (unsigned, end) = unsigned_thinking_from(&path, from);
    plan.scanned = Some((path.clone(), end));
    if unsigned {
        let new_id = crate::sys::ids::uuid_v4();
        match write_repaired_copy(&path, &new_id) {
            Ok(_) => plan.repaired = Some(new_id),
            Err(e) => plan.repair_failed = Some(e.to_string()),
        }
    }
    plan
}

/// Is this transcript record a prompt the user typed (not a tool result, not a note the
/// CLI added)?
fn is_prompt(v: &Value) -> bool {
    if v.get("type").and_then(Value::as_str) != Some("user")
        || v.get("isMeta").and_then(Value::as_bool) == Some(true)
        || v.get("isSidechain").and_then(Value::as_bool) == Some(true)
        || v.get("toolUseResult").is_some()
    {
        return false;
    }
    match v.pointer("/message/content") {
        Some(Value::String(_)) => true,
        Some(Value::Array(blocks)) => !blocks
            .iter()
            .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result")),
        _ => false,
    }
}

/// The uuid of the first user prompt after the record `cut` (from the start when `cut`
/// is `None`): the message whose file changes `rewind_files` undoes.
pub fn first_prompt_after(path: &Path, cut: Option<&str>) -> Option<String> {
    let mut passed = cut.is_none();
    let mut found = None;
    each_record(path, 0, |v| {
        let uuid = v.get("uuid").and_then(Value::as_str);
        if !passed {
            passed = uuid.is_some() && uuid == cut;
            return true;
        }
        if is_prompt(v) {
            found = uuid.map(str::to_string);
            return false;
        }
        true
    });
    found
}

/// A thinking block the API will refuse on resume: no (or an empty) signature.
fn unsigned_thinking(b: &Value) -> bool {
    matches!(
        b.get("type").and_then(Value::as_str),
        Some("thinking") | Some("redacted_thinking")
    ) && b
        .get("signature")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        && b.get("data").is_none()
}

fn has_unsigned_thinking(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("assistant")
        && v.pointer("/message/content")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(unsigned_thinking))
}

/// Whether the transcript at `path` has, from byte `from` on, thinking blocks without a
/// signature; and the offset scanned to, so a later check reads only what was appended.
/// Only lines that mention thinking are parsed, so a long transcript is scanned fast.
pub fn unsigned_thinking_from(path: &Path, from: u64) -> (bool, u64) {
    let mut found = false;
    let end = each_line(path, from, |line| {
        found = contains(line, b"\"thinking\"")
            && serde_json::from_slice::<Value>(line).is_ok_and(|v| has_unsigned_thinking(&v));
        !found
    });
    (found, end)
}

/// Write a copy of the transcript at `path` under the id `new_id` beside it, without its
/// unsigned thinking blocks (a record left empty is dropped and its children re-linked
/// to its parent); private and atomic like every file the daemon writes. Returns the
/// copy's path.
pub fn write_repaired_copy(path: &Path, new_id: &str) -> std::io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let old_id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let copy = dir.join(format!("{new_id}.jsonl"));
    let mut reader = BufReader::new(std::fs::File::open(path)?);
    crate::sys::fsutil::write_private_file_with(&copy, |file| {
        let mut out = std::io::BufWriter::new(file);
        // Dropped record uuid → its parent, to re-link what followed it.
        let mut dropped: HashMap<String, Value> = HashMap::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            match read_bounded_line(&mut reader, &mut line, MAX_RECORD)? {
                LineRead::Eof => break,
                LineRead::TooLong(_) => continue,
                LineRead::Line => {}
            }
            let Ok(mut v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if has_unsigned_thinking(&v)
                && let Some(Value::Array(blocks)) = v.pointer_mut("/message/content")
            {
                blocks.retain(|b| !unsigned_thinking(b));
                if blocks.is_empty() {
                    if let Some(u) = v.get("uuid").and_then(Value::as_str) {
                        let parent = v.get("parentUuid").cloned().unwrap_or(Value::Null);
                        dropped.insert(u.to_string(), parent);
                    }
                    continue;
                }
            }
            // Re-link through dropped records (bounded by how many were dropped).
            for _ in 0..=dropped.len() {
                let next = match v.get("parentUuid").and_then(Value::as_str) {
                    Some(p) => dropped.get(p).cloned(),
                    None => None,
                };
                match next {
                    Some(parent) => v["parentUuid"] = parent,
                    None => break,
                }
            }
            if v.get("sessionId").and_then(Value::as_str) == Some(old_id.as_str()) {
                v["sessionId"] = Value::String(new_id.to_string());
            }
            serde_json::to_writer(&mut out, &v).map_err(std::io::Error::other)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    })?;
    Ok(copy)
}

/// Read a whole small file (test helper and diagnostics), bounded.
#[cfg(test)]
fn read_small(p: &Path) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Ok(f) = std::fs::File::open(p) {
        let _ = f.take(1 << 20).read_to_string(&mut s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cba-tr-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write(p: &Path, records: &[Value]) {
        let text: String = records.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn a_working_directory_becomes_its_project_slug() {
        assert_eq!(
            project_slug(Path::new("/home/pi/my.app")),
            "-home-pi-my-app"
        );
    }

    #[test]
    fn known_ids_follow_appends_and_skip_a_partial_line() {
        let d = dir("known");
        let p = d.join("s.jsonl");
        write(
            &p,
            &[
                json!({"type": "user", "uuid": "u1", "message": {"content": "hi"}}),
                json!({"type": "assistant", "uuid": "u2", "message": {"id": "m1"}}),
            ],
        );
        let mut k = Known::default();
        k.follow(p.clone());
        k.refresh();
        assert!(k.uuids.contains("u1") && k.uuids.contains("u2"));
        assert!(k.message_ids.contains("m1"));
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        write!(
            f,
            "{}\n{{\"type\":\"assistant\",\"uuid\":\"u4\"",
            json!({"type": "assistant", "uuid": "u3", "message": {"id": "m2"}})
        )
        .unwrap();
        k.refresh();
        assert!(k.uuids.contains("u3") && k.message_ids.contains("m2"));
        assert!(!k.uuids.contains("u4"), "a partial line is not read yet");
        writeln!(f, ",\"message\":{{\"id\":\"m3\"}}}}").unwrap();
        k.refresh();
        assert!(k.uuids.contains("u4") && k.message_ids.contains("m3"));
    }

    #[test]
    fn first_prompt_after_the_cut_skips_tool_results_and_meta() {
        let d = dir("prompt");
        let p = d.join("s.jsonl");
        write(
            &p,
            &[
                json!({"type": "user", "uuid": "p1", "message": {"content": "first"}}),
                json!({"type": "assistant", "uuid": "a1", "message": {"content": []}}),
                json!({"type": "user", "uuid": "t1", "message": {"content": [{"type": "tool_result"}]}}),
                json!({"type": "user", "uuid": "m1", "isMeta": true, "message": {"content": "note"}}),
                json!({"type": "user", "uuid": "p2", "message": {"content": [{"type": "text", "text": "second"}]}}),
            ],
        );
        assert_eq!(first_prompt_after(&p, Some("a1")).as_deref(), Some("p2"));
        assert_eq!(first_prompt_after(&p, None).as_deref(), Some("p1"));
        assert_eq!(first_prompt_after(&p, Some("p2")), None);
        assert_eq!(first_prompt_after(&p, Some("nope")), None);
    }

    #[test]
    fn unsigned_thinking_is_removed_in_a_relinked_copy() {
        let d = dir("repair");
        let p = d.join("old.jsonl");
        write(
            &p,
            &[
                json!({"type": "user", "uuid": "u1", "parentUuid": null, "sessionId": "old", "message": {"content": "q"}}),
                json!({"type": "assistant", "uuid": "a1", "parentUuid": "u1", "sessionId": "old", "message": {"content": [{"type": "thinking", "thinking": "hm"}]}}),
                json!({"type": "assistant", "uuid": "a2", "parentUuid": "a1", "sessionId": "old", "message": {"content": [{"type": "thinking", "thinking": "ok", "signature": "sig"}, {"type": "thinking", "thinking": "x", "signature": ""}, {"type": "text", "text": "answer"}]}}),
            ],
        );
        assert!(unsigned_thinking_from(&p, 0).0);
        let copy = write_repaired_copy(&p, "new").unwrap();
        assert_eq!(copy, d.join("new.jsonl"));
        let recs: Vec<Value> = read_small(&copy)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1]["uuid"], "a2");
        assert_eq!(
            recs[1]["parentUuid"], "u1",
            "re-linked past the dropped record"
        );
        assert_eq!(recs[1]["sessionId"], "new");
        assert_eq!(recs[1]["message"]["content"].as_array().unwrap().len(), 2);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A clean transcript needs no copy; a later check reads only what was appended.
        let (unsigned, end) = unsigned_thinking_from(&copy, 0);
        assert!(!unsigned);
        assert_eq!(end, std::fs::metadata(&copy).unwrap().len());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&copy)
            .unwrap();
        writeln!(f, "{}", json!({"type": "assistant", "message": {"content": [{"type": "thinking", "thinking": "late"}]}})).unwrap();
        assert!(unsigned_thinking_from(&copy, end).0);
        assert!(contains(b"ab\"thinking\"", b"\"thinking\"") && !contains(b"think", b"thinking"));
    }
}
