//! Codex's own session files as history: `$CODEX_HOME/sessions/YYYY/MM/DD/
//! rollout-<local time>-<thread id>.jsonl` (`CODEX_HOME` defaults to `~/.codex`). Each
//! line is `{timestamp, type, payload}`; the first, `session_meta`, has the cwd; the
//! conversation is in `event_msg` / `item_completed` records (UserMessage, AgentMessage,
//! Reasoning, CommandExecution, FileChange); `turn_context` has the model. Injected
//! context (`<environment_context>`, developer messages) is not an item, so it never
//! shows. Read with the shared bounded toolkit in [`crate::history`], on worker threads,
//! never on the hub.

use std::fs::File;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use memchr::memmem;
use serde_json::{Value, json};

use crate::history::detail::{DetailError, MAX_FIELD, cut, detail_reply, newest_events, parse_ts};
use crate::history::jsonl::{count_in_file, grown_count, head_lines};
use crate::history::listing::{
    Found, NO_PROMPT, Summarizer, Summary, mtime_ms, summary_cached, title_of,
};
use crate::protocol::events::SessionEvent;
use crate::protocol::{SessionId, valid_id};
use crate::providers::note::user_part;

/// How far into a rollout the listing looks for the cwd and the first prompt.
const HEAD_BYTES: u64 = 4 << 20;

/// Codex's home: `$CODEX_HOME`, else `~/.codex`.
pub(crate) fn codex_home(home: Option<&Path>, env: Option<&Path>) -> Option<PathBuf> {
    match env {
        Some(d) if !d.as_os_str().is_empty() => Some(d.to_path_buf()),
        _ => home.map(|h| h.join(".codex")),
    }
}

/// The thread id in a rollout file name (`rollout-<time>-<uuid>.jsonl`), read from the
/// disk: only a safe id is listed.
fn thread_of(name: &str) -> Option<&str> {
    let stem = name.strip_prefix("rollout-")?.strip_suffix(".jsonl")?;
    let id = stem.get(stem.len().checked_sub(36)?..)?;
    (id.len() == 36 && valid_id(id)).then_some(id)
}

/// Every rollout under `<codex_home>/sessions` (three date levels deep).
pub(crate) fn rollouts(codex_home: &Path) -> Vec<Found> {
    let mut out = Vec::new();
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    for year in dirs(&codex_home.join("sessions")) {
        for month in dirs(&year) {
            for day in dirs(&month) {
                let Ok(entries) = std::fs::read_dir(&day) else {
                    continue;
                };
                for e in entries.flatten() {
                    let name = e.file_name();
                    let Some(id) = name.to_str().and_then(thread_of) else {
                        continue;
                    };
                    let Ok(meta) = e.metadata() else { continue };
                    if meta.is_file() {
                        out.push(Found {
                            mtime: mtime_ms(&meta),
                            path: e.path(),
                            id: id.to_string(),
                            size: meta.len(),
                        });
                    }
                }
            }
        }
    }
    out
}

/// The rollout of thread `id`, if any.
pub(crate) fn find(codex_home: &Path, id: &SessionId) -> Option<PathBuf> {
    rollouts(codex_home)
        .into_iter()
        .find(|f| f.id == **id)
        .map(|f| f.path)
}

fn item_text(item: &Value) -> String {
    item.get("content")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// What a rollout's messages are counted by.
const MESSAGE_KEYS: [&[u8]; 2] = [
    b"\"type\":\"UserMessage\"".as_slice(),
    b"\"type\":\"AgentMessage\"".as_slice(),
];

/// How the listing and the index summarize a rollout (append-only JSONL): whole once,
/// then only what it gained.
pub(crate) const SUMMARIZER: Summarizer = Summarizer::Growing {
    whole: summarize_indexed,
    grow: grow_indexed,
};

/// [`summarize`], with what growing it needs (the count so far), once its head named
/// the first prompt (so what it gains cannot change the title, cwd or branch).
fn summarize_indexed(path: &Path) -> (Summary, Option<Value>) {
    let s = summarize(path);
    let growth = (s.title != NO_PROMPT).then(|| json!({"messages": s.message_count}));
    (s, growth)
}

/// The summary of a rollout that grew from `old_size` bytes: its new bytes counted.
fn grow_indexed(
    path: &Path,
    old_size: u64,
    summary: &Summary,
    growth: &Value,
) -> Option<(Summary, Option<Value>)> {
    let before = growth.get("messages")?.as_u64()?;
    let messages = grown_count(path, old_size, before, &MESSAGE_KEYS)?;
    let s = Summary {
        message_count: messages,
        ..summary.clone()
    };
    Some((s, Some(json!({"messages": messages}))))
}

/// cwd and the first prompt from the head, and the count of user and agent messages
/// from a scan of the whole file (without parsing it).
pub(crate) fn summarize(path: &Path) -> Summary {
    let mut s = Summary::default();
    let Ok(file) = File::open(path) else {
        s.title = NO_PROMPT.to_string();
        return s;
    };
    let mut prompt = None;
    head_lines(&file, HEAD_BYTES, |line| {
        let meta = memmem::find(line, b"\"session_meta\"").is_some();
        let user = memmem::find(line, b"\"UserMessage\"").is_some();
        if !meta && !user {
            return ControlFlow::Continue(());
        }
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return ControlFlow::Continue(());
        };
        if v["type"] == "session_meta" && s.cwd.is_none() {
            s.cwd = v
                .pointer("/payload/cwd")
                .and_then(Value::as_str)
                .map(str::to_string);
            s.git_branch = v
                .pointer("/payload/git/branch")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if v.pointer("/payload/item/type").and_then(Value::as_str) == Some("UserMessage") {
            let text = item_text(&v["payload"]["item"]);
            if !text.trim().is_empty() {
                prompt = Some(text);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    s.message_count = count_in_file(path, &MESSAGE_KEYS);
    s.title = prompt
        .map(|p| title_of(&user_part(&p)))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| NO_PROMPT.to_string());
    s
}

/// The events one rollout record shows.
fn record_events(v: &Value, truncated: &mut bool) -> Vec<Value> {
    let ts = v
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(parse_ts);
    let item = match v.pointer("/payload/type").and_then(Value::as_str) {
        Some("item_completed") => &v["payload"]["item"],
        _ => return Vec::new(),
    };
    let id = item.get("id").cloned().unwrap_or(Value::Null);
    let mut events = match item.get("type").and_then(Value::as_str) {
        Some("UserMessage") => {
            let text = item_text(item);
            if text.trim().is_empty() {
                Vec::new()
            } else {
                vec![json!({"kind": "prompt", "text": cut(user_part(&text).trim(), truncated)})]
            }
        }
        Some("AgentMessage") => {
            let text = item_text(item);
            vec![json!({"kind": "text", "text": cut(&text, truncated)})]
        }
        Some("Reasoning") => {
            let text = item
                .get("summary_text")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            if text.trim().is_empty() {
                Vec::new()
            } else {
                vec![json!({"kind": "thinking", "text": cut(&text, truncated)})]
            }
        }
        Some("CommandExecution") => {
            let command = match item.get("command") {
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
                Some(Value::String(c)) => c.clone(),
                _ => String::new(),
            };
            let output = item
                .get("aggregated_output")
                .and_then(Value::as_str)
                .unwrap_or("");
            let failed = item
                .get("exit_code")
                .and_then(Value::as_i64)
                .is_some_and(|c| c != 0)
                || item
                    .get("status")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s != "completed" && s != "Completed");
            vec![
                json!({"kind": "tool_use", "tool": "Bash", "tool_use_id": id, "input": {"command": command}}),
                json!({"kind": "tool_result", "tool_use_id": id, "content": cut(output, truncated), "is_error": failed}),
            ]
        }
        Some("FileChange") => {
            let changes = item.get("changes").cloned().unwrap_or(Value::Null);
            let changes = if changes.to_string().len() > MAX_FIELD {
                *truncated = true;
                json!({"truncated": true})
            } else {
                changes
            };
            let status = item
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("completed");
            let applied = status.eq_ignore_ascii_case("completed");
            vec![
                json!({"kind": "tool_use", "tool": "apply_patch", "tool_use_id": id, "input": {"changes": changes}}),
                json!({"kind": "tool_result", "tool_use_id": id,
                       "content": if applied { "Applied.".to_string() } else { format!("Not applied ({status}).") },
                       "is_error": !applied}),
            ]
        }
        _ => Vec::new(),
    };
    for e in &mut events {
        e["ts"] = json!(ts);
    }
    events
}

/// `history.get` for a Codex thread.
pub(crate) fn detail(
    codex_home: Option<&Path>,
    config_dir: &Path,
    id: &SessionId,
) -> Result<SessionEvent, DetailError> {
    let path = codex_home
        .and_then(|h| find(h, id))
        .ok_or(DetailError::NotFound)?;
    let file = File::open(&path).map_err(|e| DetailError::Unreadable(e.to_string()))?;
    let meta = file
        .metadata()
        .map_err(|e| DetailError::Unreadable(e.to_string()))?;
    let summary = summary_cached(&path, meta.len(), mtime_ms(&meta), SUMMARIZER);
    let mut model: Option<String> = None;
    let relevant = |line: &[u8]| {
        memmem::find(line, b"\"item_completed\"").is_some()
            || memmem::find(line, b"\"turn_context\"").is_some()
    };
    let (events, truncated) = newest_events(&file, meta.len(), relevant, |v, cut| {
        if model.is_none() && v["type"] == "turn_context" {
            model = v
                .pointer("/payload/model")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        record_events(v, cut)
    });
    Ok(detail_reply(
        "codex", id, config_dir, summary, model, events, truncated,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grown_rollout_counts_only_what_it_gained() {
        let dir = std::env::temp_dir().join(format!("cba-codex-grow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("rollout.jsonl");
        let item = |kind: &str, text: &str| {
            format!(
                "{}\n",
                json!({"type": "event_msg", "payload": {"type": "item_completed",
                       "item": {"type": kind, "content": [{"type": "text", "text": text}]}}})
            )
        };
        let mut text = format!(
            "{}\n",
            json!({"type": "session_meta", "payload": {"cwd": "/w", "git": {"branch": "main"}}})
        );
        text += &item("UserMessage", "first ask");
        text += &item("AgentMessage", "ok");
        std::fs::write(&p, &text).unwrap();
        let (s, g) = summarize_indexed(&p);
        let g = g.expect("the head named the prompt");
        assert_eq!((s.title.as_str(), s.message_count), ("first ask", 2));
        let old = text.len() as u64;
        text += &item("UserMessage", "more");
        text += &item("AgentMessage", "done");
        std::fs::write(&p, &text).unwrap();
        let (grown, _) = grow_indexed(&p, old, &s, &g).expect("grown");
        assert_eq!(grown, summarize(&p), "the same as a whole reading");
        assert_eq!(grown.message_count, 4);
        assert!(
            grow_indexed(&p, old - 1, &s, &g).is_none(),
            "not at a line's end"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn thread_ids_from_file_names() {
        assert_eq!(
            thread_of("rollout-2026-11-24T19-49-00-01a20f1a-bcbc-75e1-8f0f-3c5ba8465aac.jsonl"),
            Some("01a20f1a-bcbc-75e1-8f0f-3c5ba8465aac")
        );
        assert_eq!(thread_of("rollout-x.jsonl"), None);
        assert_eq!(thread_of("notes.jsonl"), None);
    }
}
