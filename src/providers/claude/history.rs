//! Claude Code's transcripts as history (`history.list`, `history.get`,
//! `history.mark_read`): the `.jsonl` files under
//! `<claude dir>/projects/<cwd slug>/<session id>.jsonl`, where the claude dir is
//! `$CLAUDE_CONFIG_DIR` or `~/.claude`. What their records mean is here; the bounded
//! reading, the listing's cache and the detail budget are the shared toolkit in
//! [`crate::history`].
//!
//! Runs on worker threads (see [`crate::hub::worker`]), never on the hub: a transcript can be
//! a gigabyte. What it costs, and why:
//! - **Listing** reads a transcript's head (title, cwd, branch) and scans the rest with a
//!   SIMD substring search (`memchr::memmem`) for message and title records, without
//!   parsing it; summaries are cached by (path, size, mtime), so a second listing reads
//!   nothing but directory entries.
//! - **Detail** reads the transcript backwards from its end and keeps the newest events
//!   that fit the detail budget (`history::detail::newest_events`).
//!
//! A broken line is skipped.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use memchr::memmem;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::history::detail::{DetailError, MAX_FIELD, cut, detail_reply, newest_events, parse_ts};
use crate::history::jsonl::{SCAN_CHUNK, grown_file, head_lines, record_at};
use crate::history::listing::{
    Found, NO_PROMPT, Summarizer, Summary, mtime_ms, strip_tags, summary_cached, title_of,
};
use crate::protocol::events::SessionEvent;
use crate::protocol::{SessionId, valid_id};
use crate::providers::claude::tool_result_content;
use crate::providers::note::user_part;

/// How far into a transcript the listing looks for the first prompt, cwd and branch.
const HEAD_BYTES: u64 = 4 << 20;

/// Every transcript under `<claude_dir>/projects`.
pub(crate) fn transcripts(claude_dir: &Path) -> Vec<Found> {
    let mut files = Vec::new();
    let Ok(projects) = std::fs::read_dir(claude_dir.join("projects")) else {
        return files;
    };
    for project in projects.flatten() {
        let Ok(entries) = std::fs::read_dir(project.path()) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".jsonl")) else {
                continue;
            };
            // A file name, read from the disk: only a safe id is listed.
            if !valid_id(id) {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            files.push(Found {
                mtime: mtime_ms(&meta),
                path: e.path(),
                id: id.to_string(),
                size: meta.len(),
            });
        }
    }
    files
}

/// The last-modified time (ms) of session `id`'s transcript, for a mark without a time.
pub(crate) fn updated_at(claude_dir: Option<&Path>, id: &SessionId) -> Option<u64> {
    let path = find_transcript(claude_dir?, id)?;
    std::fs::metadata(path).ok().map(|m| mtime_ms(&m))
}

/// What a transcript's summary needs to be carried on when the transcript grows: the
/// head's findings and the scan's counts, up to the size it was summarized at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Growth {
    /// The first prompt's title (or a slash command's), from the head.
    head_title: Option<String>,
    #[serde(flatten)]
    scan: Scan,
}

/// How the listing and the index summarize a transcript: whole once, then what it gained.
pub(crate) const SUMMARIZER: Summarizer = Summarizer::Growing {
    whole: summarize_indexed,
    grow: grow_indexed,
};

/// [`summarize_growing`] for the summary index (the growth as JSON).
pub(crate) fn summarize_indexed(path: &Path) -> (Summary, Option<Value>) {
    let (s, g) = summarize_growing(path);
    (s, g.and_then(|g| serde_json::to_value(g).ok()))
}

/// [`grow`] for the summary index: `growth` as it stored it.
pub(crate) fn grow_indexed(
    path: &Path,
    old_size: u64,
    summary: &Summary,
    growth: &Value,
) -> Option<(Summary, Option<Value>)> {
    let g: Growth = serde_json::from_value(growth.clone()).ok()?;
    let (s, g) = grow(path, old_size, summary, &g)?;
    Some((s, serde_json::to_value(g).ok()))
}

/// Read a transcript once: cwd, branch and the first real prompt from its head, then a
/// scan of the whole file (no parsing) that counts user/assistant records and finds the
/// last title record. The title is Claude Code's own (a `custom-title` the user set,
/// else an `ai-title`), else the first prompt, else [`NO_PROMPT`].
/// Also what [`grow`] needs later (`None` when the head was not all read, so a later
/// growth could still change what it says: summarized whole again).
pub(crate) fn summarize_growing(path: &Path) -> (Summary, Option<Growth>) {
    let mut s = Summary::default();
    let Ok(file) = File::open(path) else {
        s.title = NO_PROMPT.to_string();
        return (s, None);
    };
    let (mut prompt, mut slash) = (None, None);
    head_lines(&file, HEAD_BYTES, |line| {
        if !is_message_line(line) {
            return ControlFlow::Continue(());
        }
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return ControlFlow::Continue(());
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "user" && kind != "assistant" {
            return ControlFlow::Continue(());
        }
        if s.cwd.is_none() {
            s.cwd = v.get("cwd").and_then(Value::as_str).map(str::to_string);
        }
        if s.git_branch.is_none() {
            s.git_branch = v
                .get("gitBranch")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if prompt.is_none() && kind == "user" {
            prompt = prompt_text(&v);
            if slash.is_none() {
                slash = slash_text(&v);
            }
        }
        if prompt.is_some() && s.cwd.is_some() && s.git_branch.is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    // The first real prompt (the title's source) is found: what the file gains later
    // does not change what its head says.
    let head_done = prompt.is_some();
    let scan = scan(&file, 0, Scan::default());
    s.message_count = scan.messages;
    let head_title = prompt.or(slash).map(|p| title_of(&user_part(&p)));
    s.title = own_title(&file, &scan)
        .or_else(|| head_title.clone())
        .unwrap_or_else(|| NO_PROMPT.to_string());
    let growth = head_done.then_some(Growth { head_title, scan });
    (s, growth)
}

/// The title Claude Code gave the session itself: the newest `custom-title` the user
/// set, else the newest `ai-title`, that says something (Claude Code writes empty ones
/// while it refines a title, and they must not wipe it).
fn own_title(file: &File, scan: &Scan) -> Option<String> {
    let newest = |offsets: &[u64], key: &str| {
        offsets.iter().rev().find_map(|&at| {
            let v = record_at(file, at)?;
            let t = title_of(&user_part(v.get(key)?.as_str()?));
            (!t.is_empty()).then_some(t)
        })
    };
    newest(&scan.custom_titles, "customTitle").or_else(|| newest(&scan.ai_titles, "aiTitle"))
}

/// The summary of a transcript that grew from `old_size` bytes (summarized then as
/// `summary` with `growth`): only the new bytes are scanned. `None` when the file does
/// not look like the same one grown (it shrank, or the old end is no line end).
pub(crate) fn grow(
    path: &Path,
    old_size: u64,
    summary: &Summary,
    growth: &Growth,
) -> Option<(Summary, Growth)> {
    let file = grown_file(path, old_size)?;
    let scan = scan(&file, old_size, growth.scan.clone());
    let s = Summary {
        title: own_title(&file, &scan)
            .or_else(|| growth.head_title.clone())
            .unwrap_or_else(|| NO_PROMPT.to_string()),
        cwd: summary.cwd.clone(),
        git_branch: summary.git_branch.clone(),
        message_count: scan.messages,
    };
    let growth = Growth {
        head_title: growth.head_title.clone(),
        scan,
    };
    Some((s, growth))
}

/// What one pass over a whole transcript finds without parsing it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Scan {
    messages: u64,
    /// Offsets of the newest title records (at most [`TITLE_RECORDS`] of each kind).
    ai_titles: Vec<u64>,
    custom_titles: Vec<u64>,
}

/// Title records remembered per kind by the scan (the newest).
const TITLE_RECORDS: usize = 16;

/// Remember `at`, forgetting the oldest beyond [`TITLE_RECORDS`].
fn keep_newest(offsets: &mut Vec<u64>, at: u64) {
    if offsets.len() == TITLE_RECORDS {
        offsets.remove(0);
    }
    offsets.push(at);
}

/// Count `"type":"user"` / `"type":"assistant"` and find the last title records from
/// byte `from` on, adding to what `out` holds of the bytes before. JSON escapes every
/// quote inside a string, so these byte patterns only match real keys.
fn scan(mut file: &File, from: u64, mut out: Scan) -> Scan {
    const KEY: &[u8] = b"\"type\":\"";
    /// Bytes after the key needed to tell the record type (`custom-title"` is 13).
    const LOOK: usize = 16;
    const NEED: usize = KEY.len() + LOOK;
    let finder = memmem::Finder::new(KEY);
    if file.seek(SeekFrom::Start(from)).is_err() {
        return out;
    }
    let mut buf = vec![0u8; SCAN_CHUNK + NEED];
    let mut kept = 0; // bytes carried over from the previous read
    let mut base: u64 = from; // file offset of buf[0]
    loop {
        let n = match file.read(&mut buf[kept..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        let eof = n == 0;
        let filled = kept + n;
        let data = &buf[..filled];
        for pos in finder.find_iter(data) {
            if pos + NEED <= kept {
                continue; // seen whole in the previous read
            }
            if pos + NEED > filled && !eof {
                continue; // cut off: the next read sees it whole
            }
            let value = &data[pos + KEY.len()..];
            if value.starts_with(b"user\"") || value.starts_with(b"assistant\"") {
                out.messages += 1;
            } else if value.starts_with(b"ai-title\"") {
                keep_newest(&mut out.ai_titles, base + pos as u64);
            } else if value.starts_with(b"custom-title\"") {
                keep_newest(&mut out.custom_titles, base + pos as u64);
            }
        }
        if eof {
            break;
        }
        let carry = NEED.min(filled);
        buf.copy_within(filled - carry..filled, 0);
        base += (filled - carry) as u64;
        kept = carry;
    }
    out
}

/// Does the line hold `"type":"user"` or `"type":"assistant"` (a space after the colon
/// allowed)? One pass over the line, without parsing it.
fn is_message_line(line: &[u8]) -> bool {
    const KEY: &[u8] = b"\"type\":";
    let mut from = 0;
    while let Some(pos) = memmem::find(&line[from..], KEY) {
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

/// The slash command a user record invokes, as typed (`/name args`), if it is one.
fn slash_text(v: &Value) -> Option<String> {
    let text = match v.pointer("/message/content")? {
        Value::String(s) => s.as_str(),
        Value::Array(blocks) => blocks.iter().find(|b| b["type"] == "text")?["text"].as_str()?,
        _ => return None,
    };
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let end = text[start..].find(close)? + start;
        Some(text[start..end].trim())
    };
    let name = between("<command-name>", "</command-name>")?;
    if !name.starts_with('/') || name.len() < 2 {
        return None;
    }
    match between("<command-args>", "</command-args>") {
        Some(args) if !args.is_empty() => Some(format!("{name} {args}")),
        _ => Some(name.to_string()),
    }
}

/// Context the CLI or an IDE adds to the conversation, not typed by the user.
fn is_injected(text: &str) -> bool {
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

/// Find `<session>.jsonl` in any project dir.
fn find_transcript(claude_dir: &Path, session: &SessionId) -> Option<PathBuf> {
    let projects = std::fs::read_dir(claude_dir.join("projects")).ok()?;
    projects
        .flatten()
        .map(|p| p.path().join(format!("{session}.jsonl")))
        .find(|p| p.is_file())
}

/// The events one transcript record shows, in order.
fn record_events(v: &Value, truncated: &mut bool) -> Vec<Value> {
    let mut events = Vec::new();
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    let ts = v
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(parse_ts);
    let mut push = |mut e: Value| {
        e["ts"] = json!(ts);
        events.push(e);
    };
    if kind == "user" {
        if let Some(p) = prompt_text(v).or_else(|| slash_text(v)) {
            let own = user_part(&p);
            push(json!({"kind": "prompt", "text": cut(own.trim(), truncated)}));
        } else if let Some(blocks) = v.pointer("/message/content").and_then(Value::as_array) {
            for b in blocks.iter().filter(|b| b["type"] == "tool_result") {
                // As live: a string, with no base64 of images or documents.
                let content = tool_result_content(b.get("content"));
                push(
                    json!({"kind": "tool_result", "tool_use_id": b["tool_use_id"],
                            "content": cut(&content, truncated),
                            "is_error": b["is_error"].as_bool().unwrap_or(false)}),
                );
            }
        }
    } else if kind == "assistant"
        && let Some(blocks) = v.pointer("/message/content").and_then(Value::as_array)
    {
        for b in blocks {
            match b["type"].as_str() {
                Some("text") => {
                    let text = cut(b["text"].as_str().unwrap_or(""), truncated);
                    push(json!({"kind": "text", "text": text}));
                }
                Some("thinking") => {
                    let text = cut(b["thinking"].as_str().unwrap_or(""), truncated);
                    push(json!({"kind": "thinking", "text": text}));
                }
                Some("tool_use") => {
                    let input = b.get("input").cloned().unwrap_or(Value::Null);
                    let input = if input.to_string().len() > MAX_FIELD {
                        *truncated = true;
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
        }
    }
    events
}

/// `history.get`: the newest events of one transcript that fit the detail budget, plus
/// the saved launch settings (sidecar) and the model the transcript records.
pub(crate) fn detail(
    claude_dir: Option<&Path>,
    config_dir: &Path,
    session: &SessionId,
) -> Result<SessionEvent, DetailError> {
    let path = claude_dir
        .and_then(|d| find_transcript(d, session))
        .ok_or(DetailError::NotFound)?;
    let file = File::open(&path).map_err(|e| DetailError::Unreadable(e.to_string()))?;
    let meta = file
        .metadata()
        .map_err(|e| DetailError::Unreadable(e.to_string()))?;
    let summary = summary_cached(&path, meta.len(), mtime_ms(&meta), SUMMARIZER);
    let mut resolved_model: Option<String> = None;
    let mut branch: Option<String> = None;
    let (events, truncated) = newest_events(&file, meta.len(), is_message_line, |v, cut| {
        if resolved_model.is_none()
            && v["type"] == "assistant"
            && let Some(m) = v.pointer("/message/model").and_then(Value::as_str)
            && m != "<synthetic>"
        {
            resolved_model = Some(m.to_string());
        }
        if branch.is_none() {
            branch = v
                .get("gitBranch")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        record_events(v, cut)
    });
    let mut summary = summary;
    summary.git_branch = branch.or(summary.git_branch);
    Ok(detail_reply(
        "claude",
        session,
        config_dir,
        summary,
        resolved_model,
        events,
        truncated,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grown_transcript_is_summarized_from_where_it_left_off() {
        let dir = std::env::temp_dir().join(format!("cba-grow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("g.jsonl");
        let line = |v: Value| format!("{v}\n");
        let mut text = line(
            json!({"type": "user", "message": {"role": "user", "content": "first ask"}, "cwd": "/w"}),
        );
        text += &line(
            json!({"type": "assistant", "message": {"content": [{"type": "text", "text": "ok"}]}}),
        );
        std::fs::write(&p, &text).unwrap();
        let (s, g) = summarize_growing(&p);
        let g = g.expect("the head holds the first prompt");
        assert_eq!((s.title.as_str(), s.message_count), ("first ask", 2));
        let old = text.len() as u64;
        text += &line(json!({"type": "user", "message": {"role": "user", "content": "more"}}));
        text += &line(json!({"type": "custom-title", "customTitle": "Named by the user"}));
        std::fs::write(&p, &text).unwrap();
        let (grown, g2) = grow(&p, old, &s, &g).expect("grown");
        assert_eq!(grown.title, "Named by the user");
        assert_eq!(grown.message_count, 3);
        assert_eq!(grown.cwd.as_deref(), Some("/w"));
        // What it says equals a whole reading.
        assert_eq!(grown, summarize_growing(&p).0);
        assert_eq!(g2.scan.messages, 3);
        // Not the same file grown (the old size is not at a line's end): read whole.
        assert!(grow(&p, old - 1, &s, &g).is_none());
        assert!(
            grow(&p, text.len() as u64, &s, &g).is_none(),
            "did not grow"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn injected_context() {
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
}
