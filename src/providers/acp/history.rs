//! History from ACP agents' own session files. GitHub Copilot keeps
//! `$COPILOT_HOME/session-state/<session id>/` (`COPILOT_HOME` defaults to `~/.copilot`):
//! `workspace.yaml` (`cwd`, `name` = the title) and `events.jsonl`, one record per line
//! (`{type, data, id, timestamp}`): `user.message`, `assistant.message` (with
//! `toolRequests` and `reasoningText`), `tool.execution_complete`. Read with the same
//! bounded machinery as Claude Code's transcripts.
//!
//! (Gemini CLI's chats are an append-only upsert log whose records can be rewritten by
//! later `$set` lines; listing them is left to a later change.)

use std::fs::File;
use std::path::{Path, PathBuf};

use memchr::memmem;
use serde_json::{Value, json};

use crate::providers::claude::history::{
    DetailError, Found, NO_PROMPT, Summary, cut, mtime_ms, newest_events, parse_ts, summary_cached,
    title_of,
};

/// Copilot's home: `$COPILOT_HOME`, else `~/.copilot`.
pub fn copilot_home(home: Option<&Path>, env: Option<&Path>) -> Option<PathBuf> {
    match env {
        Some(d) if !d.as_os_str().is_empty() => Some(d.to_path_buf()),
        _ => home.map(|h| h.join(".copilot")),
    }
}

/// Every Copilot session with an event log.
pub fn copilot_sessions(copilot_home: &Path) -> Vec<Found> {
    let Ok(dirs) = std::fs::read_dir(copilot_home.join("session-state")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in dirs.flatten() {
        let name = d.file_name();
        let Some(id) = name.to_str().filter(|n| crate::hub::sessions::valid_id(n)) else {
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

/// Title and cwd from `workspace.yaml`, messages counted in the event log.
pub fn copilot_summarize(events: &Path) -> Summary {
    let mut s = Summary::default();
    let yaml = events
        .parent()
        .map(|d| d.join("workspace.yaml"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    s.cwd = yaml_field(&yaml, "cwd");
    s.title = yaml_field(&yaml, "name")
        .map(|t| title_of(&t))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| NO_PROMPT.to_string());
    if let Ok(bytes) = std::fs::read(events)
        && bytes.len() < 256 << 20
    {
        s.message_count = (memmem::find_iter(&bytes, b"\"type\":\"user.message\"").count()
            + memmem::find_iter(&bytes, b"\"type\":\"assistant.message\"").count())
            as u64;
    }
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
                events.push(json!({"kind": "prompt", "text": cut(t.trim(), truncated)}));
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
pub fn copilot_detail(
    copilot_home: Option<&Path>,
    config_dir: &Path,
    id: &str,
) -> Result<Value, DetailError> {
    if !crate::hub::sessions::valid_id(id) {
        return Err(DetailError::InvalidId);
    }
    let path = copilot_home
        .map(|h| h.join("session-state").join(id).join("events.jsonl"))
        .filter(|p| p.is_file())
        .ok_or(DetailError::NotFound)?;
    let file = File::open(&path).map_err(|e| DetailError::Unreadable(e.to_string()))?;
    let meta = file
        .metadata()
        .map_err(|e| DetailError::Unreadable(e.to_string()))?;
    let summary = summary_cached(&path, meta.len(), mtime_ms(&meta), copilot_summarize);
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
    let sidecar = crate::node::sidecar::load(config_dir, id);
    let pick = |k: &str| {
        sidecar
            .as_ref()
            .and_then(|s| s.get(k))
            .cloned()
            .filter(|v| !v.is_null())
    };
    Ok(json!({
        "event": "history.detail",
        "provider": "copilot",
        "session_id": id,
        "title": summary.title,
        "cwd": summary.cwd.map(Value::String).or_else(|| pick("cwd")),
        "git_branch": null,
        "model": pick("model").unwrap_or_else(|| json!("")),
        "resolved_model": model.map(Value::String).or_else(|| pick("resolved_model")),
        "permission_mode": pick("permission_mode").unwrap_or_else(|| json!("default")),
        "effort": pick("effort"),
        "events": events,
        "truncated": truncated,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_yaml() {
        let y = "id: abc\ncwd: /work/x\nname: 'Fix it'\nempty:\n";
        assert_eq!(yaml_field(y, "cwd").as_deref(), Some("/work/x"));
        assert_eq!(yaml_field(y, "name").as_deref(), Some("Fix it"));
        assert_eq!(yaml_field(y, "empty"), None);
        assert_eq!(yaml_field(y, "nope"), None);
    }
}
