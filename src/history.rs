//! Claude Code transcript history (`history.list`, `history.get`): the `.jsonl` files
//! under `~/.claude/projects/<cwd slug>/<session id>.jsonl`, read line by line.
//!
//! Runs on a worker thread (see [`crate::worker`]), never on the hub: a transcript can be
//! a gigabyte. Memory stays bounded whatever the files hold: lines are read with a cap
//! ([`MAX_LINE`], longer ones skipped), each event's text is cut to [`MAX_FIELD`] and only
//! the newest [`MAX_EVENTS`] events are kept. A broken line is skipped. Summaries used by
//! the listing are cached by (path, size, mtime), so listing many transcripts again is
//! cheap; the cache is bounded too.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use serde_json::{Value, json};

use crate::child::{LineRead, read_bounded_line};

/// Longest transcript line read; longer ones are skipped.
pub const MAX_LINE: usize = 16 << 20;
/// Events kept for `history.detail` (the newest).
pub const MAX_EVENTS: usize = 4000;
/// Longest text kept per event field (longer is cut and flagged).
pub const MAX_FIELD: usize = 64 * 1024;
const TITLE_CHARS: usize = 80;
const CACHE_ENTRIES: usize = 4096;

/// What the listing shows of one transcript.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub title: String,
    pub cwd: Option<String>,
    pub git_branch: Option<String>,
    pub message_count: u64,
}

fn projects_dir(home: &Path) -> PathBuf {
    home.join(".claude/projects")
}

/// `history.list`: newest first, at most `limit` (clamped to 1..=1000).
pub fn list(home: Option<&Path>, limit: Option<i64>, running: &[String]) -> Value {
    let limit = limit.unwrap_or(200).clamp(1, 1000) as usize;
    let mut files: Vec<(u64, PathBuf, String, u64)> = Vec::new();
    if let Some(home) = home
        && let Ok(projects) = std::fs::read_dir(projects_dir(home))
    {
        for project in projects.flatten() {
            let Ok(entries) = std::fs::read_dir(project.path()) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                let Some(id) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".jsonl"))
                else {
                    continue;
                };
                if !crate::sessions::valid_id(id) {
                    continue;
                }
                let Ok(meta) = e.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                let id = id.to_string();
                files.push((mtime, path, id, meta.len()));
            }
        }
    }
    files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
    files.truncate(limit);
    let sessions: Vec<Value> = files
        .iter()
        .map(|(mtime, path, id, size)| {
            let s = summary_cached(path, *size, *mtime);
            json!({
                "provider": "claude",
                "session_id": id,
                "title": s.title,
                "cwd": s.cwd,
                "git_branch": s.git_branch,
                "updated_at": mtime,
                "message_count": s.message_count,
                "running": running.iter().any(|r| r == id),
            })
        })
        .collect();
    json!({"event": "history.snapshot", "sessions": sessions})
}

fn summary_cached(path: &Path, size: u64, mtime: u64) -> Summary {
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

/// Read a transcript once: title, cwd and branch from the first records that have them,
/// and the number of user/assistant messages (counted without parsing every line).
pub fn summarize(path: &Path) -> Summary {
    let mut s = Summary::default();
    let Ok(file) = File::open(path) else { return s };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_bounded_line(&mut reader, &mut line, MAX_LINE) {
            Ok(LineRead::Eof) | Err(_) => break,
            Ok(LineRead::TooLong(_)) => continue,
            Ok(LineRead::Line) => {}
        }
        if !is_message_line(&line) {
            continue;
        }
        let complete = !s.title.is_empty() && s.cwd.is_some() && s.git_branch.is_some();
        if complete {
            s.message_count += 1;
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "user" && kind != "assistant" {
            continue;
        }
        s.message_count += 1;
        if s.cwd.is_none() {
            s.cwd = v.get("cwd").and_then(Value::as_str).map(str::to_string);
        }
        if s.git_branch.is_none() {
            s.git_branch = v
                .get("gitBranch")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if s.title.is_empty()
            && kind == "user"
            && let Some(p) = prompt_text(&v)
        {
            s.title = title_of(&p);
        }
    }
    s
}

/// Does the line hold `"type":"user"` or `"type":"assistant"` (a space after the colon
/// allowed)? One pass over the line, without parsing it.
fn is_message_line(line: &[u8]) -> bool {
    const KEY: &[u8] = b"\"type\":";
    let mut from = 0;
    while let Some(pos) = line[from..].windows(KEY.len()).position(|w| w == KEY) {
        let mut value = &line[from + pos + KEY.len()..];
        if let Some(rest) = value.strip_prefix(b" ") {
            value = rest;
        }
        if value.starts_with(b"\"user\"") || value.starts_with(b"\"assistant\"") {
            return true;
        }
        from += pos + KEY.len();
    }
    false
}

/// The user's own prompt in a record, if it is one (not a tool result, not injected).
fn prompt_text(v: &Value) -> Option<String> {
    if v.get("isMeta").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let content = v.pointer("/message/content")?;
    let text = match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => {
            if blocks.iter().any(|b| b["type"] == "tool_result") {
                return None;
            }
            blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => return None,
    };
    if is_injected(&text) {
        return None;
    }
    let stripped = strip_tags(&text);
    (!stripped.trim().is_empty()).then_some(text)
}

/// Context the CLI or an IDE adds to the conversation, not typed by the user.
pub fn is_injected(text: &str) -> bool {
    let t = text.trim_start();
    const MARKERS: &[&str] = &[
        "<system-reminder>",
        "<command-name>",
        "<command-message>",
        "<command-args>",
        "<local-command-stdout>",
        "<local-command-stderr>",
        "<local-command-caveat>",
        "<ide_opened_file>",
        "<ide_selection>",
        "<ide_diagnostics>",
        "<user-prompt-submit-hook>",
        "Caveat: The messages below were generated",
        "[Request interrupted",
    ];
    MARKERS.iter().any(|m| t.starts_with(m))
}

/// Remove `<tag>` markers (keeping the text between them).
pub fn strip_tags(text: &str) -> String {
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

/// Tags stripped, whitespace folded, at most 80 characters.
pub fn title_of(text: &str) -> String {
    let folded = strip_tags(text)
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

/// Find `<session>.jsonl` in any project dir.
fn find_transcript(home: &Path, session: &str) -> Option<PathBuf> {
    let projects = std::fs::read_dir(projects_dir(home)).ok()?;
    projects
        .flatten()
        .map(|p| p.path().join(format!("{session}.jsonl")))
        .find(|p| p.is_file())
}

fn cut(s: &str, truncated: &mut bool) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_string();
    }
    *truncated = true;
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Milliseconds since the epoch of an RFC 3339 UTC timestamp like `2026-11-24T13:15:19.991Z`.
pub fn parse_ts(ts: &str) -> Option<u64> {
    let b = ts.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut ms = 0;
    if b.get(19) == Some(&b'.') {
        let frac: String = ts[20..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        let f3: String = frac.chars().chain(std::iter::repeat('0')).take(3).collect();
        ms = f3.parse::<i64>().ok()?;
    }
    // days from civil (Howard Hinnant)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let total = ((days * 24 + h) * 60 + mi) * 60 + s;
    (total >= 0).then(|| (total * 1000 + ms) as u64)
}

/// `history.get`: the normalised events of one transcript, plus the settings sidecar.
pub fn detail(home: Option<&Path>, config_dir: &Path, session: &str) -> Value {
    let not_found = |msg: &str| {
        json!({"event": "history.detail", "provider": "claude", "session_id": session,
               "events": [], "truncated": false, "error": msg})
    };
    if !crate::sessions::valid_id(session) {
        return not_found("invalid session id");
    }
    let Some(path) = home.and_then(|h| find_transcript(h, session)) else {
        return not_found("transcript not found");
    };
    let Ok(file) = File::open(&path) else {
        return not_found("transcript not readable");
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut line = Vec::new();
    let mut events: VecDeque<Value> = VecDeque::new();
    let mut truncated = false;
    let mut dropped_old = false;
    let mut title = String::new();
    let (mut cwd, mut branch, mut model) = (None, None, None);
    loop {
        line.clear();
        match read_bounded_line(&mut reader, &mut line, MAX_LINE) {
            Ok(LineRead::Eof) | Err(_) => break,
            Ok(LineRead::TooLong(_)) => {
                truncated = true;
                continue;
            }
            Ok(LineRead::Line) => {}
        }
        let Ok(v) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "user" && kind != "assistant" {
            continue;
        }
        let ts = v
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(parse_ts);
        if cwd.is_none() {
            cwd = v.get("cwd").and_then(Value::as_str).map(str::to_string);
        }
        if let Some(b) = v.get("gitBranch").and_then(Value::as_str) {
            branch = Some(b.to_string());
        }
        let mut push = |mut e: Value| {
            e["ts"] = json!(ts);
            if events.len() == MAX_EVENTS {
                events.pop_front();
                dropped_old = true;
            }
            events.push_back(e);
        };
        if kind == "user" {
            if let Some(p) = prompt_text(&v) {
                if title.is_empty() {
                    title = title_of(&p);
                }
                let mut t = false;
                let text = cut(p.trim(), &mut t);
                push(json!({"kind": "prompt", "text": text}));
                truncated |= t;
                continue;
            }
            if let Some(blocks) = v.pointer("/message/content").and_then(Value::as_array) {
                for b in blocks.iter().filter(|b| b["type"] == "tool_result") {
                    // As live: a string, with no base64 of images or documents.
                    let content = crate::claude::tool_result_content(b.get("content"));
                    let mut t = false;
                    let content = cut(&content, &mut t);
                    push(
                        json!({"kind": "tool_result", "tool_use_id": b["tool_use_id"],
                                "content": content, "is_error": b["is_error"].as_bool().unwrap_or(false)}),
                    );
                    truncated |= t;
                }
            }
        } else {
            if let Some(m) = v.pointer("/message/model").and_then(Value::as_str)
                && m != "<synthetic>"
            {
                model = Some(m.to_string());
            }
            let Some(blocks) = v.pointer("/message/content").and_then(Value::as_array) else {
                continue;
            };
            for b in blocks {
                let mut t = false;
                match b["type"].as_str() {
                    Some("text") => {
                        let text = cut(b["text"].as_str().unwrap_or(""), &mut t);
                        push(json!({"kind": "text", "text": text}));
                    }
                    Some("thinking") => {
                        let text = cut(b["thinking"].as_str().unwrap_or(""), &mut t);
                        push(json!({"kind": "thinking", "text": text}));
                    }
                    Some("tool_use") => {
                        let input = b.get("input").cloned().unwrap_or(Value::Null);
                        let input = if input.to_string().len() > MAX_FIELD {
                            t = true;
                            json!({"truncated": true})
                        } else {
                            input
                        };
                        push(
                            json!({"kind": "tool_use", "tool": b["name"], "tool_use_id": b["id"], "input": input}),
                        );
                    }
                    _ => {}
                }
                truncated |= t;
            }
        }
    }
    truncated |= dropped_old;
    let sidecar = crate::sidecar::load(config_dir, session);
    let pick = |k: &str| {
        sidecar
            .as_ref()
            .and_then(|s| s.get(k))
            .cloned()
            .filter(|v| !v.is_null())
    };
    json!({
        "event": "history.detail",
        "provider": "claude",
        "session_id": session,
        "title": title,
        "cwd": cwd.map(Value::String).or_else(|| pick("cwd")),
        "git_branch": branch,
        "model": pick("model").or(model.map(Value::String)),
        "permission_mode": pick("permission_mode"),
        "effort": pick("effort"),
        "events": Vec::from(events),
        "truncated": truncated,
    })
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
        assert!(is_injected("<system-reminder>x</system-reminder>"));
        assert!(is_injected("<command-name>/clear</command-name>"));
        assert!(!is_injected("please <b>fix</b>"));
    }

    #[test]
    fn message_lines() {
        assert!(is_message_line(
            br#"{"uuid":"x","type":"user","message":{}}"#
        ));
        assert!(is_message_line(br#"{"type": "assistant"}"#));
        assert!(!is_message_line(
            br#"{"type":"queue-operation","role":"user"}"#
        ));
        assert!(!is_message_line(
            br#"{"type":"attachment","content":"\"type\":\"user\""}"#
        ));
        assert!(!is_message_line(br#"{"type":  "user"}"#));
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_ts("2026-11-24T13:15:19.991Z"),
            Some(1_795_526_119_991)
        );
        assert_eq!(parse_ts("2000-02-29T00:00:00.5Z"), Some(951_782_400_500));
        assert_eq!(parse_ts("garbage"), None);
        assert_eq!(parse_ts("2026-13-01T00:00:00Z"), None);
    }
}
