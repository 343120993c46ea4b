//! How Claude Code's stream-json output becomes node events (PROTOCOL §4–5): streamed
//! blocks as text deltas and texts (repaired when the assembled message differs),
//! thinking, tool uses and results, the replay guard, and the control requests that
//! keep the CLI's model and mode in step with the session. Pure functions over a
//! [`Session`] and its [`ClaudeState`], called by [`crate::providers::claude::driver`];
//! no threads or I/O.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::protocol::events::{Event, SessionEvent, text_of};
use crate::providers::claude::transcript::Known;
use crate::providers::claude::{self, SpawnOpts};
pub(crate) use crate::session::Scope;
use crate::session::{MAX_BLOCK_TEXT, Session, Turn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockKind {
    Text,
    Thinking,
    Other,
}

/// A content block being streamed, keyed by (subagent, index).
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) kind: BlockKind,
    pub(crate) id: String,
    pub(crate) text: String,
    /// The assembled message's text, when it differs from what was streamed.
    pub(crate) final_text: Option<String>,
    pub(crate) msg: String,
    pub(crate) parent: Option<String>,
}

/// The streamed text blocks of one message, to match them with the assembled message.
#[derive(Debug, Default)]
pub(crate) struct StreamedMsg {
    /// Stream ids of its text blocks, in order, with the text committed for each.
    pub(crate) blocks: Vec<(String, Option<String>)>,
    /// Text blocks of the assembled message seen so far.
    pub(crate) assembled: usize,
}

pub(crate) fn scope_of(v: &Value) -> Scope {
    v.get("parent_tool_use_id")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
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

/// Why Claude Code could not restore the files for an edit: what it said, or how its
/// process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RewindError {
    /// The CLI refused or failed the `rewind_files` request, in its words.
    Refused(String),
    /// The CLI takes no requests (its stdin is closed).
    NotAccepting,
    /// The CLI ended while restoring (its exit, described).
    Exited(String),
}

impl std::fmt::Display for RewindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RewindError::Refused(m) | RewindError::Exited(m) => f.write_str(m),
            RewindError::NotAccepting => f.write_str("Claude Code is not accepting requests"),
        }
    }
}

impl std::error::Error for RewindError {}

/// An edit: what the forked turn runs, and (with "restore code") the prompt whose file
/// changes are undone first.
#[derive(Debug, Clone)]
pub(crate) struct EditPlan {
    pub(crate) turn: Turn,
    /// The edit command's prompt and media, saved when the fork starts.
    pub(crate) media: crate::protocol::commands::TurnCmd,
    pub(crate) cut_uuid: Option<String>,
    pub(crate) restore_to: Option<String>,
}

/// Disk work for the session under way on a worker (the hub never reads a transcript
/// itself; see `driver`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TranscriptIo {
    #[default]
    Idle,
    /// Locating (and maybe repairing) the transcript to resume: job number. The child
    /// is spawned when it is back.
    Resuming(u64),
    /// Reading what the transcript gained, for the replay guard, before turn `turn` is
    /// written.
    Reading { job: u64, turn: u64 },
    /// That read is in: turn `turn` may be written now.
    Fresh { turn: u64 },
}

/// What a Claude Code session keeps besides the generic session state; used by
/// [`crate::providers::claude::driver`] and [`crate::providers::claude::stream`].
#[derive(Default)]
pub(crate) struct ClaudeState {
    /// How the next child starts (fork); cleared once used.
    pub(crate) next_spawn: SpawnOpts,
    /// Turns the CLI announced it will start by itself (`task_notification`) that have
    /// not started yet; queued prompts wait for them.
    pub(crate) autos_owed: u32,
    /// The working directory the CLI reported (its transcripts are filed under it).
    pub(crate) cli_cwd: Option<PathBuf>,
    /// Each prompt written to this session's CLI: the newest message uuid before it (the
    /// cut an edit of it names) and the uuid it was filed under (what a restore undoes).
    pub(crate) prompts: VecDeque<(Option<String>, String)>,
    /// How far the transcript was checked for unsigned thinking (see `driver`).
    pub(crate) thinking_scanned: Option<(PathBuf, u64)>,
    pub(crate) turn_no: u64,
    pub(crate) ordinal: u64,
    pub(crate) blocks: HashMap<(Scope, u64), Block>,
    /// Per scope, the message being streamed and whether it is a replay being dropped.
    pub(crate) streaming: HashMap<Scope, (String, bool)>,
    pub(crate) streamed: HashMap<String, StreamedMsg>,
    pub(crate) held_interrupt: bool,
    pub(crate) commands: Option<Vec<Value>>,
    pub(crate) server_info: Value,
    pub(crate) own: HashMap<String, OwnRequest>,
    pub(crate) control_seq: u64,
    pub(crate) pending_edit: Option<EditPlan>,
    /// What the transcript already holds: a replay of it is not forwarded again.
    pub(crate) known: Known,
    /// Transcript work under way on a worker.
    pub(crate) io: TranscriptIo,
    /// An edit with "restore code" whose restore point a worker looks up (job, plan);
    /// no turn is written meanwhile.
    pub(crate) edit_lookup: Option<(u64, EditPlan)>,
    /// Replayed content was dropped since the last result (so a result that follows is
    /// the replayed one).
    pub(crate) replay_seen: bool,
}

impl ClaudeState {
    /// Forget the streaming state of the last turn.
    pub(crate) fn reset_stream(&mut self) {
        self.blocks.clear();
        self.streaming.clear();
        self.streamed.clear();
    }

    /// Commit what is still open (a turn stopped mid-block): each text block as a
    /// `session.text` with its stream id, each thinking block as `session.thinking`.
    pub(crate) fn commit_open_blocks(&mut self, s: &mut Session, out: &mut Vec<SessionEvent>) {
        let mut open: Vec<((Scope, u64), Block)> = self.blocks.drain().collect();
        open.sort_by_key(|(key, _)| key.1);
        for (_, block) in open {
            self.close_block(s, block, out);
        }
        self.streaming.clear();
    }

    pub(crate) fn close_block(
        &mut self,
        s: &mut Session,
        block: Block,
        out: &mut Vec<SessionEvent>,
    ) {
        match block.kind {
            BlockKind::Text => {
                let text = block.final_text.unwrap_or(block.text);
                if let Some(m) = self.streamed.get_mut(&block.msg)
                    && let Some(slot) = m.blocks.iter_mut().find(|(id, _)| *id == block.id)
                {
                    slot.1 = Some(text.clone());
                }
                out.push(s.turn_event(
                    &block.parent,
                    Event::Text {
                        text,
                        id: Some(block.id),
                    },
                ));
            }
            BlockKind::Thinking if !block.text.is_empty() => {
                s.mark_emitted();
                out.push(s.turn_event(&block.parent, Event::Thinking { text: block.text }));
            }
            _ => {}
        }
    }

    /// The directory Claude Code files this session's transcript under: the one it
    /// reported, else the session's.
    pub(crate) fn transcript_cwd<'a>(&'a self, s: &'a Session) -> &'a std::path::Path {
        self.cli_cwd.as_deref().unwrap_or(&s.cwd)
    }

    /// Send one of our control requests to the session's child.
    pub(crate) fn control(&mut self, s: &Session, kind: OwnRequest, request: Value) -> bool {
        self.control_seq += 1;
        let id = format!(
            "req_{}_{}",
            self.control_seq,
            &crate::sys::ids::new_id()[..8]
        );
        self.own.insert(id.clone(), kind);
        s.send(claude::control_request(&id, request))
    }

    /// The child is gone: nothing it was asked or announced is owed any more.
    pub(crate) fn child_gone(&mut self) {
        self.own.clear();
        self.reset_stream();
        self.held_interrupt = false;
        self.autos_owed = 0;
    }
}

/// Prompts remembered per session for restores (older ones are found in the transcript).
pub(crate) const MAX_PROMPTS: usize = 1000;

/// Bring the child's model to the turn's with a control request (`None`: the default).
pub(crate) fn sync_model(s: &mut Session, st: &mut ClaudeState, model: Option<String>) {
    let Some(live) = s.child.as_ref().filter(|c| c.initialized) else {
        return;
    };
    if live.model == model {
        return;
    }
    st.control(s, OwnRequest::SetModel, claude::set_model(model.as_deref()));
    if let Some(l) = s.child.as_mut() {
        l.model = model;
    }
}

/// Bring the child's permission mode to the session's (it applies live, mid-turn too).
pub(crate) fn sync_mode(s: &mut Session, st: &mut ClaudeState) {
    let Some(live) = s.child.as_ref().filter(|c| c.initialized) else {
        return;
    };
    let mode = Some(s.mode_label().to_string());
    if live.mode.as_deref().unwrap_or("default") == s.mode_label() {
        return;
    }
    st.control(
        s,
        OwnRequest::SetPermissionMode,
        json!({"subtype": "set_permission_mode", "mode": s.mode_label()}),
    );
    if let Some(l) = s.child.as_mut() {
        l.mode = mode;
    }
}

pub(crate) fn on_stream_event(
    s: &mut Session,
    st: &mut ClaudeState,
    v: &Value,
    out: &mut Vec<SessionEvent>,
) {
    let Some(ev) = v.get("event") else { return };
    let scope = scope_of(v);
    let index = ev.get("index").and_then(Value::as_u64).unwrap_or(0);
    let kind = ev.get("type").and_then(Value::as_str).unwrap_or("");
    if kind == "message_start" {
        let id = ev
            .pointer("/message/id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let replayed = !id.is_empty() && st.known.message_ids.contains(&id);
        if replayed {
            st.replay_seen = true;
        } else {
            // Its assembled message must not repeat what was streamed.
            st.streamed.entry(id.clone()).or_default();
        }
        st.streaming.insert(scope, (id, replayed));
        return;
    }
    // The stream of a message the transcript already holds is a replay: dropped.
    let (msg, replayed) = st.streaming.get(&scope).cloned().unwrap_or_default();
    if replayed {
        return;
    }
    match kind {
        "content_block_start" => {
            let block = ev.get("content_block").cloned().unwrap_or(Value::Null);
            let kind = match block.get("type").and_then(Value::as_str) {
                Some("text") => BlockKind::Text,
                Some("thinking") => BlockKind::Thinking,
                _ => BlockKind::Other,
            };
            let mut id = String::new();
            if kind == BlockKind::Text {
                st.ordinal += 1;
                id = format!("{}:{}:{}", s.id, st.turn_no, st.ordinal);
                st.streamed
                    .entry(msg.clone())
                    .or_default()
                    .blocks
                    .push((id.clone(), None));
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
            let key = (scope.clone(), index);
            if let Some(old) = st.blocks.remove(&key) {
                st.close_block(s, old, out);
            }
            st.blocks.insert(
                key,
                Block {
                    kind,
                    id,
                    text: initial,
                    final_text: None,
                    msg,
                    parent: scope,
                },
            );
        }
        "content_block_delta" => {
            let Some(delta) = ev.get("delta") else { return };
            let dtype = delta.get("type").and_then(Value::as_str).unwrap_or("");
            let Some(block) = st.blocks.get_mut(&(scope.clone(), index)) else {
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
                    s.mark_emitted();
                    out.push(s.turn_event(
                        &scope,
                        Event::TextDelta {
                            text: text.to_string(),
                            id,
                        },
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
            if let Some(block) = st.blocks.remove(&(scope, index)) {
                st.close_block(s, block, out);
            }
        }
        _ => {}
    }
}

/// A transcript message the CLI replays (known uuid or message id, or marked so): not
/// forwarded again. Otherwise its uuid becomes the session's newest.
pub(crate) fn replayed(s: &mut Session, st: &mut ClaudeState, v: &Value) -> bool {
    let uuid = v.get("uuid").and_then(Value::as_str);
    let msg_id = v.pointer("/message/id").and_then(Value::as_str);
    let known = uuid.is_some_and(|u| st.known.uuids.contains(u))
        || (v.get("type").and_then(Value::as_str) == Some("assistant")
            && msg_id.is_some_and(|m| st.known.message_ids.contains(m)));
    if known {
        st.replay_seen = true;
        return true;
    }
    // Marked as a replay but new to the transcript: a local command's echo (`/compact`
    // writes `<local-command-stdout>` so). Not shown, and no sign that the next result
    // is a replayed one.
    if v.get("isReplay").and_then(Value::as_bool) == Some(true) {
        return true;
    }
    // Subagent messages live in their own transcript: they are not cut points.
    if let Some(u) = uuid
        && scope_of(v).is_none()
    {
        s.last_uuid = Some(u.to_string());
    }
    false
}

pub(crate) fn on_assistant(
    s: &mut Session,
    st: &mut ClaudeState,
    v: &Value,
    out: &mut Vec<SessionEvent>,
) {
    if replayed(s, st, v) {
        return;
    }
    let scope = scope_of(v);
    let msg_id = v
        .pointer("/message/id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(blocks) = v.pointer("/message/content").and_then(Value::as_array) else {
        return;
    };
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = b.get("text").and_then(Value::as_str).unwrap_or("");
                if st.streamed.contains_key(&msg_id) {
                    repair_streamed_text(s, st, &msg_id, text, &scope, out);
                } else if !text.is_empty() {
                    out.push(s.turn_event(
                        &scope,
                        Event::Text {
                            text: text.to_string(),
                            id: None,
                        },
                    ));
                }
            }
            Some("thinking") if !st.streamed.contains_key(&msg_id) => {
                let text = b.get("thinking").and_then(Value::as_str).unwrap_or("");
                if !text.is_empty() {
                    out.push(s.turn_event(
                        &scope,
                        Event::Thinking {
                            text: text.to_string(),
                        },
                    ));
                }
            }
            Some("tool_use") => {
                out.push(s.turn_event(
                    &scope,
                    Event::ToolUse {
                        tool: text_of(b.get("name")),
                        tool_use_id: text_of(b.get("id")),
                        input: b.get("input").cloned().unwrap_or_else(|| json!({})),
                    },
                ));
            }
            _ => continue,
        }
        s.mark_emitted();
    }
}

/// The assembled message's text for a block that was streamed: if the block is still
/// open it will be committed with this text; if it was already committed with other
/// text, a `session.text` with the same id corrects it.
fn repair_streamed_text(
    s: &mut Session,
    st: &mut ClaudeState,
    msg_id: &str,
    text: &str,
    scope: &Scope,
    out: &mut Vec<SessionEvent>,
) {
    let Some(m) = st.streamed.get_mut(msg_id) else {
        return;
    };
    let k = m.assembled;
    m.assembled += 1;
    let Some((id, committed)) = m.blocks.get(k).cloned() else {
        // More text blocks than were streamed: show the extra one as it is.
        if !text.is_empty() {
            out.push(s.turn_event(
                scope,
                Event::Text {
                    text: text.to_string(),
                    id: None,
                },
            ));
        }
        return;
    };
    match committed {
        Some(c) if c != text => {
            if let Some(slot) = st
                .streamed
                .get_mut(msg_id)
                .and_then(|m| m.blocks.get_mut(k))
            {
                slot.1 = Some(text.to_string());
            }
            out.push(s.turn_event(
                scope,
                Event::Text {
                    text: text.to_string(),
                    id: Some(id),
                },
            ));
        }
        Some(_) => {}
        None => {
            if let Some(block) = st.blocks.values_mut().find(|b| b.id == id)
                && block.text != text
            {
                block.final_text = Some(text.to_string());
            }
        }
    }
}

pub(crate) fn on_user(
    s: &mut Session,
    st: &mut ClaudeState,
    v: &Value,
    out: &mut Vec<SessionEvent>,
) {
    if replayed(s, st, v) {
        return;
    }
    let scope = scope_of(v);
    let Some(blocks) = v.pointer("/message/content").and_then(Value::as_array) else {
        return;
    };
    for b in blocks {
        if b.get("type").and_then(Value::as_str) != Some("tool_result") {
            continue;
        }
        out.push(s.turn_event(
            &scope,
            Event::ToolResult {
                tool_use_id: text_of(b.get("tool_use_id")),
                content: claude::tool_result_content(b.get("content")),
                is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            },
        ));
        s.mark_emitted();
    }
}

/// The local answer to `/status`.
pub(crate) fn status_text(s: &Session, st: &ClaudeState) -> String {
    let mut lines = vec!["## Status".to_string(), String::new()];
    if let Some(acct) = st.server_info.get("account")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Turn;
    use std::path::PathBuf;

    fn session_with_turn() -> (Session, ClaudeState) {
        let mut s = Session::new("s1", PathBuf::from("/tmp"));
        s.current = Some(Turn::new("p".into(), Some(json!("t"))));
        let st = ClaudeState {
            turn_no: 1,
            ..ClaudeState::default()
        };
        (s, st)
    }

    #[test]
    fn streamed_text_becomes_deltas_then_one_text() {
        let (mut s, mut st) = session_with_turn();
        let mut out = Vec::new();
        let ev = |e: Value| json!({"type": "stream_event", "event": e});
        on_stream_event(
            &mut s,
            &mut st,
            &ev(json!({"type": "message_start", "message": {"id": "m1"}})),
            &mut out,
        );
        on_stream_event(
            &mut s,
            &mut st,
            &ev(
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            &mut out,
        );
        for t in ["Hel", "lo"] {
            on_stream_event(
                &mut s,
                &mut st,
                &ev(
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}),
                ),
                &mut out,
            );
        }
        let assembled = json!({"type": "assistant", "uuid": "u1", "message": {"id": "m1", "content": [{"type": "text", "text": "Hello"}]}});
        on_assistant(&mut s, &mut st, &assembled, &mut out);
        on_stream_event(
            &mut s,
            &mut st,
            &ev(json!({"type": "content_block_stop", "index": 0})),
            &mut out,
        );
        let names: Vec<&str> = out.iter().map(SessionEvent::name).collect();
        let out: Vec<Value> = out.iter().map(SessionEvent::to_value).collect();
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
        let (mut s, mut st) = session_with_turn();
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
            on_stream_event(&mut s, &mut st, &line, &mut out);
            on_assistant(&mut s, &mut st, &line, &mut out);
            on_user(&mut s, &mut st, &line, &mut out);
            assert!(st.blocks.len() <= 4, "blocks must not pile up");
        }
        let _ = status_text(&s, &st);
    }
}
