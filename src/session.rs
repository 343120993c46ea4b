//! One Claude Code session: its state (queue of turns, child, streaming blocks, our
//! own control requests) and how its CLI's stream-json output becomes node events
//! (PROTOCOL §4–5). Pure functions over a [`Session`]; the collection, the commands and
//! the child processes are in [`crate::sessions`]. Owned by the hub thread.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::child::ChildHandle;
use crate::claude::{self, SpawnOpts};

/// Text kept per streamed block (deltas are forwarded regardless).
pub(crate) const MAX_BLOCK_TEXT: usize = 4 << 20;

#[derive(Debug, Clone)]
pub(crate) struct Turn {
    pub(crate) id: u64,
    /// Images or attachments are still being saved; the turn waits (and so do later ones).
    pub(crate) preparing: bool,
    pub(crate) prompt: String,
    pub(crate) trace_id: Option<Value>,
    /// Model and permission mode in force when the turn was asked for.
    pub(crate) model: Option<String>,
    pub(crate) mode: Option<String>,
    /// The turn produced output (so a crash is not silently retried).
    pub(crate) emitted: bool,
    pub(crate) retried: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockKind {
    Text,
    Thinking,
    Other,
}

#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) kind: BlockKind,
    pub(crate) id: String,
    pub(crate) text: String,
}

/// Our own control requests to a child, by request id.
#[derive(Debug, Clone)]
pub(crate) enum OwnRequest {
    Initialize,
    Interrupt,
    SetModel,
    SetPermissionMode,
    RewindFiles,
}

/// An edit waiting for `rewind_files` to answer before the restart.
#[derive(Debug, Clone)]
pub(crate) struct EditPlan {
    pub(crate) prompt: String,
    pub(crate) cut_uuid: Option<String>,
    pub(crate) trace_id: Option<Value>,
}

pub(crate) struct Live {
    pub(crate) handle: ChildHandle,
    pub(crate) initialized: bool,
    pub(crate) started: Instant,
    /// What the child currently runs with (from argv, then `set_*` requests).
    pub(crate) model: Option<String>,
    pub(crate) mode: Option<String>,
}

pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) provider: String,
    pub(crate) cwd: PathBuf,
    pub(crate) model: Option<String>,
    pub(crate) permission_mode: Option<String>,
    pub(crate) effort: Option<String>,
    pub(crate) sdk_id: Option<String>,
    /// How the next child starts (resume/fork); cleared once used.
    pub(crate) next_spawn: SpawnOpts,
    pub(crate) child: Option<Live>,
    pub(crate) queue: VecDeque<Turn>,
    pub(crate) current: Option<Turn>,
    pub(crate) turn_no: u64,
    pub(crate) ordinal: u64,
    pub(crate) blocks: HashMap<u64, Block>,
    pub(crate) streamed_msgs: HashSet<String>,
    pub(crate) last_uuid: Option<String>,
    pub(crate) held_interrupt: bool,
    pub(crate) commands: Option<Vec<Value>>,
    pub(crate) server_info: Value,
    pub(crate) own: HashMap<String, OwnRequest>,
    pub(crate) control_seq: u64,
    pub(crate) pending_edit: Option<EditPlan>,
    /// Message uuids already known from an earlier process (resume), not to forward again.
    pub(crate) seen_uuids: HashSet<String>,
}

impl Session {
    pub(crate) fn event(&self, name: &str, trace: Option<&Value>, fields: Value) -> Value {
        let mut p = Map::new();
        p.insert("event".into(), Value::String(name.into()));
        p.insert("session_id".into(), Value::String(self.id.clone()));
        if let Some(t) = trace {
            p.insert("trace_id".into(), t.clone());
        }
        if let Value::Object(f) = fields {
            p.extend(f);
        }
        Value::Object(p)
    }

    pub(crate) fn trace(&self) -> Option<Value> {
        self.current
            .as_ref()
            .and_then(|t| t.trace_id.clone())
            .or_else(|| self.queue.front().and_then(|t| t.trace_id.clone()))
    }

    pub(crate) fn running(&self) -> bool {
        self.current.is_some() || (!self.queue.is_empty() && self.child.is_some())
    }

    pub(crate) fn next_request_id(&mut self, kind: OwnRequest) -> String {
        self.control_seq += 1;
        let id = format!("req_{}_{}", self.control_seq, &crate::ids::new_id()[..8]);
        self.own.insert(id.clone(), kind);
        id
    }

    pub(crate) fn send(&self, line: String) -> bool {
        match &self.child {
            Some(live) => live.handle.send_line(line),
            None => false,
        }
    }
}

/// Bring the child's model and permission mode to `model`/`mode` with control requests.
pub(crate) fn sync_settings(s: &mut Session, model: Option<String>, mode: Option<String>) {
    let Some(live) = s.child.as_ref().filter(|c| c.initialized) else {
        return;
    };
    let (set_model, set_mode) = (
        model.filter(|m| live.model.as_ref() != Some(m)),
        mode.filter(|m| live.mode.as_ref() != Some(m)),
    );
    if let Some(m) = set_model {
        let id = s.next_request_id(OwnRequest::SetModel);
        s.send(claude::control_request(
            &id,
            json!({"subtype": "set_model", "model": m}),
        ));
        if let Some(l) = s.child.as_mut() {
            l.model = Some(m);
        }
    }
    if let Some(m) = set_mode {
        let id = s.next_request_id(OwnRequest::SetPermissionMode);
        s.send(claude::control_request(
            &id,
            json!({"subtype": "set_permission_mode", "mode": m}),
        ));
        if let Some(l) = s.child.as_mut() {
            l.mode = Some(m);
        }
    }
}

pub(crate) fn on_stream_event(s: &mut Session, v: &Value, out: &mut Vec<Value>) {
    let Some(ev) = v.get("event") else { return };
    let index = ev.get("index").and_then(Value::as_u64).unwrap_or(0);
    match ev.get("type").and_then(Value::as_str).unwrap_or("") {
        "message_start" => {
            if let Some(id) = ev.pointer("/message/id").and_then(Value::as_str) {
                s.streamed_msgs.insert(id.to_string());
            }
        }
        "content_block_start" => {
            let block = ev.get("content_block").cloned().unwrap_or(Value::Null);
            let kind = match block.get("type").and_then(Value::as_str) {
                Some("text") => BlockKind::Text,
                Some("thinking") => BlockKind::Thinking,
                _ => BlockKind::Other,
            };
            let mut id = String::new();
            if kind == BlockKind::Text {
                s.ordinal += 1;
                id = format!("{}:{}:{}", s.id, s.turn_no, s.ordinal);
            }
            let initial = block
                .get(if kind == BlockKind::Thinking {
                    "thinking"
                } else {
                    "text"
                })
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            s.blocks.insert(
                index,
                Block {
                    kind,
                    id,
                    text: initial,
                },
            );
        }
        "content_block_delta" => {
            let Some(delta) = ev.get("delta") else { return };
            let dtype = delta.get("type").and_then(Value::as_str).unwrap_or("");
            let Some(block) = s.blocks.get_mut(&index) else {
                return;
            };
            match (dtype, block.kind) {
                ("text_delta", BlockKind::Text) => {
                    let text = delta.get("text").and_then(Value::as_str).unwrap_or("");
                    if text.is_empty() {
                        return;
                    }
                    if block.text.len() + text.len() <= MAX_BLOCK_TEXT {
                        block.text.push_str(text);
                    }
                    let id = block.id.clone();
                    if let Some(t) = s.current.as_mut() {
                        t.emitted = true;
                    }
                    out.push(s.event(
                        "session.text_delta",
                        s.trace().as_ref(),
                        json!({"text": text, "id": id}),
                    ));
                }
                ("thinking_delta", BlockKind::Thinking) => {
                    let text = delta.get("thinking").and_then(Value::as_str).unwrap_or("");
                    if block.text.len() + text.len() <= MAX_BLOCK_TEXT {
                        block.text.push_str(text);
                    }
                }
                _ => {}
            }
        }
        "content_block_stop" => {
            let Some(block) = s.blocks.remove(&index) else {
                return;
            };
            match block.kind {
                BlockKind::Text => {
                    out.push(s.event(
                        "session.text",
                        s.trace().as_ref(),
                        json!({"text": block.text, "id": block.id}),
                    ));
                }
                BlockKind::Thinking if !block.text.is_empty() => {
                    if let Some(t) = s.current.as_mut() {
                        t.emitted = true;
                    }
                    out.push(s.event(
                        "session.thinking",
                        s.trace().as_ref(),
                        json!({"text": block.text}),
                    ));
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// Replayed (already known) transcript messages are not forwarded again.
pub(crate) fn already_seen(s: &mut Session, v: &Value) -> bool {
    let uuid = v.get("uuid").and_then(Value::as_str);
    if let Some(u) = uuid {
        if s.seen_uuids.contains(u) {
            return true;
        }
        s.last_uuid = Some(u.to_string());
    }
    v.get("isReplay").and_then(Value::as_bool) == Some(true)
}

pub(crate) fn on_assistant(s: &mut Session, v: &Value, out: &mut Vec<Value>) {
    if already_seen(s, v) {
        return;
    }
    let msg_id = v
        .pointer("/message/id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let streamed = s.streamed_msgs.contains(msg_id);
    let Some(blocks) = v.pointer("/message/content").and_then(Value::as_array) else {
        return;
    };
    let trace = s.trace();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") if !streamed => {
                let text = b.get("text").and_then(Value::as_str).unwrap_or("");
                if !text.is_empty() {
                    out.push(s.event("session.text", trace.as_ref(), json!({"text": text})));
                }
            }
            Some("thinking") if !streamed => {
                let text = b.get("thinking").and_then(Value::as_str).unwrap_or("");
                if !text.is_empty() {
                    out.push(s.event("session.thinking", trace.as_ref(), json!({"text": text})));
                }
            }
            Some("tool_use") => {
                out.push(s.event(
                    "session.tool_use",
                    trace.as_ref(),
                    json!({
                        "tool": b.get("name").cloned().unwrap_or(Value::Null),
                        "tool_use_id": b.get("id").cloned().unwrap_or(Value::Null),
                        "input": b.get("input").cloned().unwrap_or_else(|| json!({})),
                    }),
                ));
            }
            _ => continue,
        }
        if let Some(t) = s.current.as_mut() {
            t.emitted = true;
        }
    }
}

pub(crate) fn on_user(s: &mut Session, v: &Value, out: &mut Vec<Value>) {
    if already_seen(s, v) {
        return;
    }
    let Some(blocks) = v.pointer("/message/content").and_then(Value::as_array) else {
        return;
    };
    let trace = s.trace();
    for b in blocks {
        if b.get("type").and_then(Value::as_str) != Some("tool_result") {
            continue;
        }
        let content = match b.get("content") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        out.push(s.event(
            "session.tool_result",
            trace.as_ref(),
            json!({
                "tool_use_id": b.get("tool_use_id").cloned().unwrap_or(Value::Null),
                "content": content,
                "is_error": b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            }),
        ));
        if let Some(t) = s.current.as_mut() {
            t.emitted = true;
        }
    }
}

/// The local answer to `/status`.
pub(crate) fn status_text(s: &Session) -> String {
    let mut lines = vec!["## Status".to_string(), String::new()];
    if let Some(acct) = s.server_info.get("account")
        && let Some(email) = acct.get("email").and_then(Value::as_str)
    {
        lines.push(format!("- **Account:** {email}"));
    }
    lines.push(format!(
        "- **Session:** {}",
        s.sdk_id.as_deref().unwrap_or(&s.id)
    ));
    lines.push(format!(
        "- **Model:** {}",
        s.model.as_deref().unwrap_or("default")
    ));
    lines.push(format!(
        "- **Permission mode:** {}",
        s.permission_mode.as_deref().unwrap_or("default")
    ));
    if let Some(e) = &s.effort {
        lines.push(format!("- **Effort:** {e}"));
    }
    lines.push(format!("- **Working directory:** {}", s.cwd.display()));
    lines.push(format!(
        "- **Node:** coding-bridge-agent {}",
        env!("CARGO_PKG_VERSION")
    ));
    lines.join("\n")
}

pub(crate) fn next_turn_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}
