//! History from ACP agents' own session files. GitHub Copilot keeps
//! `$COPILOT_HOME/session-state/<session id>/` (`COPILOT_HOME` defaults to `~/.copilot`):
//! `workspace.yaml` (`cwd`, `name` = the title) and `events.jsonl`, one record per line
//! (`{type, data, id, timestamp}`): `user.message`, `assistant.message` (with
//! `toolRequests` and `reasoningText`), `tool.execution_complete`. Read with the shared
//! bounded toolkit in [`crate::history`].
//!
//! Gemini CLI's chats (below) are an append-only upsert log, read whole (they are small)
//! with every upsert applied. Runs on worker threads, never on the hub.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use memchr::memmem;
use serde_json::{Value, json};

use crate::history::detail::{
    DETAIL_BUDGET, DetailError, MAX_EVENTS, cut, detail_reply, newest_events, parse_ts,
};
use crate::history::jsonl::{count_in_file, grown_count};
use crate::history::listing::{
    Found, NO_PROMPT, Summarizer, Summary, mtime_ms, summary_cached, title_of,
};
use crate::protocol::events::{SessionEvent, raw};
use crate::protocol::{SessionId, valid_id};
use crate::providers::note::user_part;
use crate::sys::timefmt::rfc3339_ms;

/// Copilot's home: `$COPILOT_HOME`, else `~/.copilot`.
pub(crate) fn copilot_home(home: Option<&Path>, env: Option<&Path>) -> Option<PathBuf> {
    match env {
        Some(d) if !d.as_os_str().is_empty() => Some(d.to_path_buf()),
        _ => home.map(|h| h.join(".copilot")),
    }
}

/// Every Copilot session with an event log.
pub(crate) fn copilot_sessions(copilot_home: &Path) -> Vec<Found> {
    let Ok(dirs) = std::fs::read_dir(copilot_home.join("session-state")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in dirs.flatten() {
        let name = d.file_name();
        // A directory name, read from the disk: only a safe id is listed.
        let Some(id) = name.to_str().filter(|n| valid_id(n)) else {
            continue;
        };
        let path = d.path().join("events.jsonl");
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_file() {
            out.push(Found {
                mtime: mtime_ms(&meta),
                path,
                id: id.to_string(),
                size: meta.len(),
            });
        }
    }
    out
}

/// `key: value` of a flat YAML file (what `workspace.yaml` is).
fn yaml_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?.trim();
        let v = v.trim_matches('"').trim_matches('\'');
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// What Copilot's event log counts as messages.
const COPILOT_MESSAGES: [&[u8]; 2] = [
    b"\"type\":\"user.message\"".as_slice(),
    b"\"type\":\"assistant.message\"".as_slice(),
];

/// How the listing and the index summarize a Copilot session: the small
/// `workspace.yaml` each time, the append-only event log only over what it gained.
pub(crate) const COPILOT_SUMMARIZER: Summarizer = Summarizer::Growing {
    whole: |events| {
        let s = copilot_summarize(events);
        let growth = json!({"messages": s.message_count});
        (s, Some(growth))
    },
    grow: |events, old_size, _summary, growth| {
        let before = growth.get("messages")?.as_u64()?;
        let messages = grown_count(events, old_size, before, &COPILOT_MESSAGES)?;
        let s = Summary {
            message_count: messages,
            ..copilot_head(events)
        };
        Some((s, Some(json!({"messages": messages}))))
    },
};

/// Title and cwd from `workspace.yaml`, messages counted in the event log.
pub(crate) fn copilot_summarize(events: &Path) -> Summary {
    Summary {
        message_count: count_in_file(events, &COPILOT_MESSAGES),
        ..copilot_head(events)
    }
}

/// Title and cwd from the session's `workspace.yaml` (no count).
fn copilot_head(events: &Path) -> Summary {
    let mut s = Summary::default();
    let yaml = events
        .parent()
        .map(|d| d.join("workspace.yaml"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    s.cwd = yaml_field(&yaml, "cwd");
    s.title = yaml_field(&yaml, "name")
        .map(|t| title_of(&user_part(&t)))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| NO_PROMPT.to_string());
    s
}

fn record_events(v: &Value, truncated: &mut bool) -> Vec<Value> {
    let ts = v
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(parse_ts);
    let d = &v["data"];
    let mut events = Vec::new();
    match v.get("type").and_then(Value::as_str) {
        Some("user.message") => {
            if let Some(t) = d
                .get("content")
                .and_then(Value::as_str)
                .filter(|t| !t.trim().is_empty())
            {
                events.push(json!({"kind": "prompt", "text": cut(user_part(t).trim(), truncated)}));
            }
        }
        Some("assistant.message") => {
            if let Some(t) = d
                .get("reasoningText")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                events.push(json!({"kind": "thinking", "text": cut(t, truncated)}));
            }
            if let Some(t) = d
                .get("content")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                events.push(json!({"kind": "text", "text": cut(t, truncated)}));
            }
            for r in d
                .get("toolRequests")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                events.push(
                    json!({"kind": "tool_use", "tool": r["name"], "tool_use_id": r["toolCallId"],
                                   "input": r.get("arguments").cloned().unwrap_or(Value::Null)}),
                );
            }
        }
        Some("tool.execution_complete") => {
            let ok = d.get("success").and_then(Value::as_bool).unwrap_or(false);
            let content = d
                .pointer("/result/content")
                .or_else(|| d.pointer("/error/message"))
                .and_then(Value::as_str)
                .unwrap_or("");
            events.push(
                json!({"kind": "tool_result", "tool_use_id": d["toolCallId"],
                               "content": cut(content, truncated), "is_error": !ok}),
            );
        }
        _ => {}
    }
    for e in &mut events {
        e["ts"] = json!(ts);
    }
    events
}

/// `history.get` for a Copilot session.
pub(crate) fn copilot_detail(
    copilot_home: Option<&Path>,
    config_dir: &Path,
    id: &SessionId,
) -> Result<SessionEvent, DetailError> {
    let path = copilot_home
        .map(|h| h.join("session-state").join(&**id).join("events.jsonl"))
        .filter(|p| p.is_file())
        .ok_or(DetailError::NotFound)?;
    let file = File::open(&path).map_err(|e| DetailError::Unreadable(e.to_string()))?;
    let meta = file
        .metadata()
        .map_err(|e| DetailError::Unreadable(e.to_string()))?;
    let summary = summary_cached(&path, meta.len(), mtime_ms(&meta), COPILOT_SUMMARIZER);
    let mut model = None;
    let relevant = |l: &[u8]| {
        memmem::find(l, b"\"type\":\"user.message\"").is_some()
            || memmem::find(l, b"\"type\":\"assistant.message\"").is_some()
            || memmem::find(l, b"\"type\":\"tool.execution_complete\"").is_some()
    };
    let (events, truncated) = newest_events(&file, meta.len(), relevant, |v, cut| {
        if model.is_none() {
            model = v
                .pointer("/data/model")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        record_events(v, cut)
    });
    Ok(detail_reply(
        "copilot", id, config_dir, summary, model, events, truncated,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grown_copilot_log_counts_only_what_it_gained() {
        let dir = std::env::temp_dir().join(format!("cba-copilot-grow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("workspace.yaml"), "cwd: /w\nname: Fix the build\n").unwrap();
        let events = dir.join("events.jsonl");
        let rec = |kind: &str| format!("{}\n", json!({"type": kind, "data": {"content": "x"}}));
        let mut text = rec("user.message") + &rec("assistant.message");
        std::fs::write(&events, &text).unwrap();
        let Summarizer::Growing { whole, grow } = COPILOT_SUMMARIZER else {
            panic!("a growing summarizer");
        };
        let (s, g) = whole(&events);
        assert_eq!((s.title.as_str(), s.message_count), ("Fix the build", 2));
        let old = text.len() as u64;
        text += &rec("user.message");
        std::fs::write(&events, &text).unwrap();
        let (grown, _) = grow(&events, old, &s, g.as_ref().unwrap()).expect("grown");
        assert_eq!(
            grown,
            copilot_summarize(&events),
            "the same as a whole reading"
        );
        assert!(grow(&events, old + 1, &s, g.as_ref().unwrap()).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flat_yaml() {
        let y = "id: abc\ncwd: /work/x\nname: 'Fix it'\nempty:\n";
        assert_eq!(yaml_field(y, "cwd").as_deref(), Some("/work/x"));
        assert_eq!(yaml_field(y, "name").as_deref(), Some("Fix it"));
        assert_eq!(yaml_field(y, "empty"), None);
        assert_eq!(yaml_field(y, "nope"), None);
    }
}

// ---- Gemini CLI -------------------------------------------------------------------
//
// `$GEMINI_CLI_HOME/.gemini/tmp/<project>/chats/session-<minute>-<id8>.jsonl` (the home
// dir when `GEMINI_CLI_HOME` is unset), with the project's path in
// `tmp/<project>/.project_root`. Each file is an append-only upsert log: header lines
// (`sessionId`, `startTime`, `lastUpdated`), message lines (a later line with the same
// `id` replaces the earlier one in place), `{"$set": {…}}` lines (a `messages` list
// replaces everything) and `{"$rewindTo": id}`. Chats are small; a file over
// [`GEMINI_MAX_FILE`] is not read.

/// The largest Gemini chat file read.
const GEMINI_MAX_FILE: u64 = 64 << 20;

/// Gemini's directory: `$GEMINI_CLI_HOME/.gemini`, else `~/.gemini`.
pub(crate) fn gemini_dir(home: Option<&Path>, env: Option<&Path>) -> Option<PathBuf> {
    match env {
        Some(d) if !d.as_os_str().is_empty() => Some(d.join(".gemini")),
        _ => home.map(|h| h.join(".gemini")),
    }
}

/// One chat as its upsert log says it is now.
#[derive(Debug, Default)]
pub(crate) struct Chat {
    pub(crate) session_id: String,
    pub(crate) summary: Option<String>,
    pub(crate) messages: Vec<Value>,
}

/// Read a chat file, applying every upsert.
pub(crate) fn read_chat(path: &Path) -> Option<Chat> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > GEMINI_MAX_FILE {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let mut chat = Chat::default();
    let mut order: Vec<String> = Vec::new();
    let mut by_id: HashMap<String, Value> = HashMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(set) = v.get("$set") {
            if let Some(s) = set.get("summary").and_then(Value::as_str) {
                chat.summary = Some(s.to_string());
            }
            if let Some(msgs) = set.get("messages").and_then(Value::as_array) {
                order.clear();
                by_id.clear();
                for m in msgs {
                    if let Some(id) = m.get("id").and_then(Value::as_str) {
                        order.push(id.to_string());
                        by_id.insert(id.to_string(), m.clone());
                    }
                }
            }
        } else if let Some(to) = v.get("$rewindTo").and_then(Value::as_str) {
            let keep = order.iter().position(|id| id == to).unwrap_or(0);
            for id in order.drain(keep..) {
                by_id.remove(&id);
            }
        } else if let Some(sid) = v.get("sessionId").and_then(Value::as_str) {
            chat.session_id = sid.to_string();
        } else if let Some(id) = v.get("id").and_then(Value::as_str) {
            if !by_id.contains_key(id) {
                order.push(id.to_string());
            }
            by_id.insert(id.to_string(), v);
        }
    }
    chat.messages = order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect();
    Some(chat)
}

/// The text a user message shows (none for context and tool results).
fn gemini_user_text(m: &Value) -> Option<String> {
    let text: String = m
        .get("content")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n");
    let t = text.trim();
    let injected = t.is_empty()
        || t.starts_with("<session_context>")
        || t.starts_with("<hook_context>")
        || t.starts_with("[Function Response:");
    (!injected).then(|| t.to_string())
}

fn gemini_text(m: &Value) -> String {
    match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// Every chat file under the project dirs, with the project's path.
fn chat_files(gemini_dir: &Path) -> Vec<(PathBuf, Option<String>)> {
    let mut out = Vec::new();
    let Ok(projects) = std::fs::read_dir(gemini_dir.join("tmp")) else {
        return out;
    };
    for p in projects.flatten() {
        let root = std::fs::read_to_string(p.path().join(".project_root"))
            .ok()
            .map(|r| r.trim().to_string());
        let Ok(chats) = std::fs::read_dir(p.path().join("chats")) else {
            continue;
        };
        for c in chats.flatten() {
            let name = c.file_name();
            if name
                .to_str()
                .is_some_and(|n| n.starts_with("session-") && n.ends_with(".jsonl"))
            {
                out.push((c.path(), root.clone()));
            }
        }
    }
    out
}

/// Every Gemini chat with a real prompt, one per session (its newest file).
pub(crate) fn gemini_sessions(gemini_dir: &Path) -> Vec<Found> {
    let mut best: HashMap<String, Found> = HashMap::new();
    for (path, _) in chat_files(gemini_dir) {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let Some(chat) = read_chat(&path) else {
            continue;
        };
        // The id the chat file names, read from the disk: only a safe one is listed.
        if !valid_id(&chat.session_id)
            || !chat
                .messages
                .iter()
                .any(|m| m["type"] == "user" && gemini_user_text(m).is_some())
        {
            continue; // a stray file holding only the context
        }
        let found = Found {
            mtime: mtime_ms(&meta),
            path,
            id: chat.session_id.clone(),
            size: meta.len(),
        };
        match best.get(&chat.session_id) {
            Some(b) if b.mtime >= found.mtime => {}
            _ => {
                best.insert(chat.session_id, found);
            }
        }
    }
    best.into_values().collect()
}

/// Title (the summary Gemini wrote, else the first prompt), cwd, message count.
pub(crate) fn gemini_summarize(path: &Path) -> Summary {
    let mut s = Summary::default();
    let Some(chat) = read_chat(path) else {
        s.title = NO_PROMPT.to_string();
        return s;
    };
    s.cwd = path
        .parent()
        .and_then(Path::parent)
        .and_then(|p| std::fs::read_to_string(p.join(".project_root")).ok())
        .map(|r| r.trim().to_string());
    let first = chat
        .messages
        .iter()
        .filter(|m| m["type"] == "user")
        .find_map(gemini_user_text);
    s.title = chat
        .summary
        .or(first)
        .map(|t| title_of(&user_part(&t)))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| NO_PROMPT.to_string());
    s.message_count = chat
        .messages
        .iter()
        .filter(|m| (m["type"] == "user" && gemini_user_text(m).is_some()) || m["type"] == "gemini")
        .count() as u64;
    s
}

/// `history.get` for a Gemini chat (the newest events within the budget).
pub(crate) fn gemini_detail(
    gemini_dir: Option<&Path>,
    config_dir: &Path,
    id: &SessionId,
) -> Result<SessionEvent, DetailError> {
    let found = gemini_dir
        .map(gemini_sessions)
        .unwrap_or_default()
        .into_iter()
        .find(|f| f.id == **id)
        .ok_or(DetailError::NotFound)?;
    let chat = read_chat(&found.path)
        .ok_or_else(|| DetailError::Unreadable("too large or unreadable".into()))?;
    let summary = summary_cached(
        &found.path,
        found.size,
        found.mtime,
        Summarizer::Whole(gemini_summarize),
    );
    let mut events: Vec<Value> = Vec::new();
    let mut truncated = false;
    let mut model = None;
    for m in &chat.messages {
        let ts = m
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(parse_ts);
        let mut push = |mut e: Value| {
            e["ts"] = json!(ts);
            events.push(e);
        };
        match m.get("type").and_then(Value::as_str) {
            Some("user") => {
                if let Some(t) = gemini_user_text(m) {
                    push(json!({"kind": "prompt", "text": cut(&user_part(&t), &mut truncated)}));
                }
                for p in m
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(r) = p.get("functionResponse") {
                        let err = r.pointer("/response/error").and_then(Value::as_str);
                        let out = r
                            .pointer("/response/output")
                            .and_then(Value::as_str)
                            .or(err)
                            .unwrap_or("");
                        push(json!({"kind": "tool_result", "tool_use_id": r["id"],
                                    "content": cut(out, &mut truncated), "is_error": err.is_some()}));
                    }
                }
            }
            Some("gemini") => {
                if let Some(mm) = m.get("model").and_then(Value::as_str) {
                    model = Some(mm.to_string());
                }
                let thoughts: Vec<String> = m
                    .get("thoughts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|t| {
                        t.get("description")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .collect();
                if !thoughts.is_empty() {
                    push(
                        json!({"kind": "thinking", "text": cut(&thoughts.join("\n"), &mut truncated)}),
                    );
                }
                let text = gemini_text(m);
                if !text.is_empty() {
                    push(json!({"kind": "text", "text": cut(&text, &mut truncated)}));
                }
                for c in m
                    .get("toolCalls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    push(
                        json!({"kind": "tool_use", "tool": c["name"], "tool_use_id": c["id"],
                                "input": c.get("args").cloned().unwrap_or(Value::Null)}),
                    );
                }
            }
            _ => {}
        }
    }
    // The newest events within the same budget as the other providers.
    let mut bytes = 0;
    let mut keep = events.len();
    while keep > 0 {
        let n = events[keep - 1].to_string().len() + 1;
        if bytes + n > DETAIL_BUDGET || events.len() - keep >= MAX_EVENTS {
            truncated = true;
            break;
        }
        bytes += n;
        keep -= 1;
    }
    let events: Vec<_> = events.split_off(keep).iter().map(raw).collect();
    Ok(detail_reply(
        "gemini", id, config_dir, summary, model, events, truncated,
    ))
}

#[cfg(test)]
mod gemini_tests {
    use super::*;

    #[test]
    fn loads_wait_for_the_next_minute() {
        let dir = std::env::temp_dir().join(format!("cba-gload-{}", crate::sys::ids::new_id()));
        std::fs::create_dir_all(dir.join("tmp/p/chats")).unwrap();
        // 2026-11-24T19:51:09.000Z
        let now = 1_795_549_869_000;
        let id = "3bee983f-ab09-4476-a782-1661fe06266d";
        std::fs::write(
            dir.join("tmp/p/chats/session-2026-11-24T19-51-3bee983f.jsonl"),
            "{}",
        )
        .unwrap();
        let d = gemini_load_delay(&dir, id, now);
        assert_eq!(d, std::time::Duration::from_millis(51_500));
        assert_eq!(
            gemini_load_delay(&dir, id, now + 60_000),
            std::time::Duration::ZERO
        );
        assert_eq!(
            gemini_load_delay(&dir, "ffffffff-0000", now),
            std::time::Duration::ZERO
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn upserts_sets_and_rewinds() {
        let dir = std::env::temp_dir().join(format!("cba-gemini-{}", crate::sys::ids::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("session-2026-11-24T19-51-abcd1234.jsonl");
        let lines = [
            json!({"sessionId": "abcd1234-0000-4000-8000-000000000000", "startTime": "x"}),
            json!({"$set": {"messages": [{"id": "c", "type": "user", "content": [{"text": "<session_context>x"}]}]}}),
            json!({"id": "u1", "type": "user", "content": [{"text": "first"}]}),
            json!({"id": "g1", "type": "gemini", "content": "draft"}),
            json!({"id": "g1", "type": "gemini", "content": "final"}),
            json!({"id": "u2", "type": "user", "content": [{"text": "second"}]}),
            json!({"id": "g2", "type": "gemini", "content": "gone"}),
            json!({"$rewindTo": "g2"}),
            json!({"$set": {"summary": "A summary"}}),
        ];
        std::fs::write(
            &p,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        let chat = read_chat(&p).unwrap();
        let ids: Vec<&str> = chat
            .messages
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        assert_eq!(ids, ["c", "u1", "g1", "u2"]);
        assert_eq!(chat.messages[2]["content"], "final", "replaced in place");
        assert_eq!(chat.summary.as_deref(), Some("A summary"));
        let s = gemini_summarize(&p);
        assert_eq!(s.title, "A summary");
        assert_eq!(s.message_count, 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// How long to wait before `session/load` of Gemini chat `id`: Gemini CLI 0.61 names a
/// loaded chat's file by the current minute, so loading in the minute the chat was
/// created overwrites it. Zero when its newest file is from an earlier minute.
pub(crate) fn gemini_load_delay(gemini_dir: &Path, id: &str, now_ms: u64) -> Duration {
    let id8 = id.get(..8).unwrap_or(id);
    let now = rfc3339_ms(now_ms); // 2026-11-24T19:51:09.123Z
    let minute = now.get(..16).unwrap_or("").replace(':', "-"); // 2026-11-24T19-51
    let same_minute = chat_files(gemini_dir).iter().any(|(p, _)| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n == format!("session-{minute}-{id8}.jsonl"))
    });
    if !same_minute {
        return Duration::ZERO;
    }
    let into_minute = now_ms % 60_000;
    Duration::from_millis(60_000 - into_minute + 500)
}
