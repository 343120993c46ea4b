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
    /// A new Claude Code session under the browser's id, with nothing running yet.
    pub(crate) fn new(id: &str, cwd: PathBuf) -> Session {
        Session {
            id: id.to_string(),
            provider: "claude".into(),
            cwd,
            model: None,
            permission_mode: None,
            effort: None,
            sdk_id: None,
            next_spawn: SpawnOpts::default(),
            child: None,
            queue: VecDeque::new(),
            current: None,
            turn_no: 0,
            ordinal: 0,
            blocks: HashMap::new(),
            streamed_msgs: HashSet::new(),
            last_uuid: None,
            held_interrupt: false,
            commands: None,
            server_info: Value::Null,
            own: HashMap::new(),
            control_seq: 0,
            pending_edit: None,
            seen_uuids: HashSet::new(),
        }
    }

    /// The `session.result` of a turn the daemon answered itself (no CLI turn, no cost).
    pub(crate) fn local_result(&self, trace: Option<&Value>, result: Value) -> Value {
        self.event(
            "session.result",
            trace,
            json!({"subtype": "success", "is_error": false, "result": result, "cost_usd": 0,
                   "cut_uuid": self.last_uuid, "sdk_session_id": self.sdk_id}),
        )
    }

    /// A `session.notice` at warning level.
    pub(crate) fn warning(&self, trace: Option<&Value>, code: &str, text: &str) -> Value {
        self.event(
            "session.notice",
            trace,
            json!({"level": "warning", "code": code, "text": text}),
        )
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn session_with_turn() -> Session {
        let mut s = Session::new("s1", PathBuf::from("/tmp"));
        s.current = Some(Turn {
            id: 1,
            preparing: false,
            prompt: "p".into(),
            trace_id: Some(json!("t")),
            model: None,
            mode: None,
            emitted: false,
            retried: false,
        });
        s.turn_no = 1;
        s
    }

    #[test]
    fn streamed_text_becomes_deltas_then_one_text() {
        let mut s = session_with_turn();
        let mut out = Vec::new();
        let ev = |e: Value| json!({"type": "stream_event", "event": e});
        on_stream_event(
            &mut s,
            &ev(json!({"type": "message_start", "message": {"id": "m1"}})),
            &mut out,
        );
        on_stream_event(
            &mut s,
            &ev(
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            &mut out,
        );
        for t in ["Hel", "lo"] {
            on_stream_event(
                &mut s,
                &ev(
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}),
                ),
                &mut out,
            );
        }
        let assembled = json!({"type": "assistant", "uuid": "u1", "message": {"id": "m1", "content": [{"type": "text", "text": "Hello"}]}});
        on_assistant(&mut s, &assembled, &mut out);
        on_stream_event(
            &mut s,
            &ev(json!({"type": "content_block_stop", "index": 0})),
            &mut out,
        );
        let names: Vec<&str> = out.iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["session.text_delta", "session.text_delta", "session.text"]
        );
        assert_eq!(out[2]["text"], "Hello");
        assert_eq!(out[2]["id"], "s1:1:1");
        assert!(out.iter().all(|e| e["trace_id"] == "t"));
        assert_eq!(s.last_uuid.as_deref(), Some("u1"));
        assert!(s.current.as_ref().unwrap().emitted);
    }

    /// Property: whatever the CLI prints, translating it never panics. Random shapes are
    /// built around the real message types, with fields of the wrong type, missing or
    /// huge indexes, and unknown kinds.
    #[test]
    fn never_panics_on_arbitrary_cli_output() {
        let state = std::cell::Cell::new(0x2545_F491_4F6C_DD1Du64);
        let next = || {
            let mut x = state.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            state.set(x);
            x
        };
        let atoms = [
            json!(null),
            json!(true),
            json!(-1),
            json!(18446744073709551615u64),
            json!(1.5),
            json!(""),
            json!("text"),
            json!([]),
            json!({}),
            json!([{"type": "text"}]),
            json!({"type": "text_delta", "text": 5}),
            json!({"id": ["x"]}),
        ];
        let kinds = [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "text",
            "thinking",
            "tool_use",
            "tool_result",
            "text_delta",
            "thinking_delta",
            "weird",
        ];
        let mut s = session_with_turn();
        for _ in 0..50_000 {
            let pick = || atoms[(next() % atoms.len() as u64) as usize].clone();
            let kind = kinds[(next() % kinds.len() as u64) as usize];
            let block = json!({"type": kind, "text": pick(), "thinking": pick(), "id": pick(), "name": pick(),
                               "input": pick(), "tool_use_id": pick(), "content": pick(), "is_error": pick()});
            let index = match next() % 4 {
                0 => json!(0),
                1 => json!(u64::MAX),
                2 => pick(),
                _ => json!(1),
            };
            let event = json!({"type": kind, "index": index, "content_block": block.clone(),
                               "delta": {"type": kind, "text": pick(), "thinking": pick()},
                               "message": {"id": pick()}});
            let line = match next() % 3 {
                0 => {
                    json!({"type": "stream_event", "event": if next() % 5 == 0 { pick() } else { event }})
                }
                1 => json!({"type": "assistant", "uuid": pick(), "isReplay": pick(),
                            "message": {"id": pick(), "content": if next() % 4 == 0 { pick() } else { json!([block]) }}}),
                _ => {
                    json!({"type": "user", "uuid": pick(), "message": {"content": if next() % 4 == 0 { pick() } else { json!([block]) }}})
                }
            };
            let mut out = Vec::new();
            on_stream_event(&mut s, &line, &mut out);
            on_assistant(&mut s, &line, &mut out);
            on_user(&mut s, &line, &mut out);
            assert!(s.blocks.len() <= 4, "blocks must not pile up");
        }
        let _ = status_text(&s);
    }
}
