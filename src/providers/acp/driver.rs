//! How a session drives an ACP agent (see [`crate::providers::acp`] for the protocol):
//! `initialize`, then `session/new` (or `session/load` for a session with a real id, its
//! replay hidden), one `session/prompt` at a time, `session/update`s turned into node
//! events, and every `session/request_permission` put before the browser (or answered
//! here when the permission mode says so). A state machine like the Codex driver:
//! functions over the generic [`Session`] and the session's ACP [`State`] that return
//! [`Effect`]s for the hub to apply (re-keying, approvals, timers, the Gemini load check
//! on a worker). No threads or I/O here beyond writing a line to the child's stdin.

use std::time::Duration;

use serde_json::{Value, json};

use crate::protocol::events::{Event, SessionEvent, text_of};
use crate::providers::acp::{self, Call, State};
use crate::providers::{Effect, Job, Wake};
use crate::session::{Approval, MAX_BLOCK_TEXT, Session};
use crate::sys::child::Spec;

/// How long a loaded session must be quiet before its first prompt (its replay may come
/// after the load's answer).
pub const REPLAY_QUIET: Duration = Duration::from_millis(400);

enum Next {
    Nothing,
    /// Gemini CLI cannot load a chat in the minute it was created: look at its chats
    /// directory (`dir`) on a worker for `sid`, then load it, at once or later.
    CheckLoad {
        dir: std::path::PathBuf,
        sid: String,
    },
    Ready(String),
    /// Loaded: wait for the replay to end.
    Loaded,
    Pump,
    Ask(Ask),
    StartFresh,
    Fail(String),
}

struct Ask {
    rpc_id: Value,
    options: Value,
    tool: String,
    input: Value,
    title: Value,
    tool_use_id: Value,
}

/// One line from the session's ACP agent: a request of the agent's, a notification,
/// or the answer to one of our calls.
pub(crate) fn on_line(
    s: &mut Session,
    st: &mut State,
    v: &Value,
    out: &mut Vec<SessionEvent>,
) -> Vec<Effect> {
    let method = v.get("method").and_then(Value::as_str);
    let id = v.get("id").cloned();
    let params = v.get("params").cloned().unwrap_or(Value::Null);
    let next = match (method, id) {
        (Some(m), Some(id)) => agent_request(s, st, m, id, &params, out),
        (Some("session/update"), None) => {
            update(s, st, &params, out);
            Next::Nothing
        }
        (Some(_), None) => Next::Nothing,
        (None, Some(id)) => response(s, st, &id, v, out),
        (None, None) => Next::Nothing,
    };
    match next {
        Next::Nothing => Vec::new(),
        Next::CheckLoad { dir, sid } => vec![Effect::Job(Job::GeminiLoadDelay { dir, sid })],
        // The turn is over: an approval still open was abandoned by the agent.
        Next::Pump => vec![Effect::SettleOpen, Effect::Pump],
        Next::Ready(sid) => {
            if let Some(live) = s.child.as_mut() {
                live.initialized = true;
            }
            vec![Effect::Rekey(sid), Effect::Pump]
        }
        Next::Loaded => {
            // Announced under the browser's id, then keyed by the agent's; the first
            // prompt waits until the replay has been quiet a while.
            if let Some(live) = s.child.as_mut() {
                live.initialized = true;
            }
            let mut effects: Vec<Effect> =
                s.sdk_id.clone().map(Effect::Rekey).into_iter().collect();
            effects.push(Effect::After(REPLAY_QUIET, Wake::Quiet(st.replay_seq)));
            effects
        }
        Next::StartFresh => {
            crate::log_warn!(
                "session {}: the agent could not load session {}; starting a new one",
                s.id,
                s.sdk_id.as_deref().unwrap_or("")
            );
            st.replaying = false;
            s.sdk_id = None;
            let line = st.request(
                Call::New,
                "session/new",
                json!({"cwd": s.cwd, "mcpServers": []}),
            );
            s.send(line);
            Vec::new()
        }
        Next::Fail(message) => vec![Effect::Fail {
            code: "provider_error",
            message,
        }],
        Next::Ask(ask) => {
            let refuse = acp::reply(&ask.rpc_id, acp::permission_outcome(&ask.options, false));
            let approval = Approval {
                cli_request_id: ask.rpc_id.to_string(),
                tool: Some(ask.tool.clone()),
                input: ask.input,
                title: text_of(Some(&ask.title)),
                display_name: Some(ask.tool),
                description: None,
                tool_use_id: text_of(Some(&ask.tool_use_id)),
                parent: None,
                keep: json!({"options": ask.options}),
            };
            vec![Effect::Ask {
                approval: Box::new(approval),
                refuse,
            }]
        }
    }
}

/// A timer the driver armed, or a worker's answer about the delayed load.
pub(crate) fn on_wake(s: &mut Session, st: &mut State, wake: &Wake) -> Vec<Effect> {
    match wake {
        Wake::LoadAfter(delay) if !delay.is_zero() => {
            crate::log_info!(
                "session {}: loading {} in {} s (Gemini CLI cannot load a chat in the minute it was created)",
                s.id,
                s.sdk_id.as_deref().unwrap_or(""),
                delay.as_secs()
            );
            vec![Effect::After(*delay, Wake::Load)]
        }
        Wake::LoadAfter(_) | Wake::Load => {
            if let Some(sid) = s.sdk_id.clone()
                && s.child.is_some()
            {
                send_load(s, st, &sid);
            }
            Vec::new()
        }
        // The replay of a loaded session may have ended: go on if it has been quiet.
        Wake::Quiet(seq) if st.replaying && st.replay_seq == *seq => {
            st.replaying = false;
            vec![Effect::Pump]
        }
        Wake::Quiet(_) if st.replaying => {
            vec![Effect::After(REPLAY_QUIET, Wake::Quiet(st.replay_seq))]
        }
        _ => Vec::new(),
    }
}

/// The child for a session: the agent's command in the session's directory, with the
/// environment its declaration gives.
pub(crate) fn spec(program: std::path::PathBuf, agent: &acp::AgentSpec, s: &Session) -> Spec {
    Spec {
        program,
        args: agent.args.clone(),
        cwd: s.cwd.clone(),
        env: agent
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        env_remove: vec!["CLAUDECODE".into()],
    }
}

/// A new agent was started: a fresh state for it, and its `initialize` sent.
pub(crate) fn on_spawned(s: &Session, st: &mut State, agent: acp::AgentSpec) {
    *st = State::new(agent);
    let line = st.request(
        Call::Initialize,
        "initialize",
        json!({"protocolVersion": 1, "clientCapabilities": {}}),
    );
    s.send(line);
}

/// Send the next queued prompt when the session is ready and idle. True when the turn
/// was answered here (a slash command): look at the next one.
pub(crate) fn write_turn(s: &mut Session, st: &mut State, out: &mut Vec<SessionEvent>) -> bool {
    if st.replaying {
        return false;
    }
    let Some((sid, turn)) = s.take_ready_turn() else {
        return false;
    };
    if turn.prompt.trim_start().starts_with('/') {
        let notice = Event::notice(
            "slash_unavailable",
            "Slash commands are not available in this agent's remote sessions.",
        );
        s.answer_with_notice(turn.trace_id.as_ref(), notice, out);
        return true;
    }
    // Mode and model first (their answers are not waited for: the agent handles
    // requests in order).
    if let Some(mode) = st.mode_for(s.mode_label())
        && st.mode.as_deref() != Some(&mode)
    {
        let line = st.request(
            Call::SetMode,
            "session/set_mode",
            json!({"sessionId": sid, "modeId": mode}),
        );
        s.send(line);
        st.mode = Some(mode);
    }
    // Back to the agent's own model when the browser picks the default again.
    if let Some(m) = turn.model.clone().or_else(|| st.default_model.clone())
        && st.model.as_deref() != Some(&m)
    {
        let line = st.request(
            Call::SetModel,
            "session/set_model",
            json!({"sessionId": sid, "modelId": m}),
        );
        s.send(line);
        st.model = Some(m);
    }
    st.end_turn();
    st.segment += 1;
    let line = st.request(
        Call::Prompt,
        "session/prompt",
        json!({"sessionId": sid, "prompt": [{"type": "text", "text": turn.prompt}]}),
    );
    s.send(line);
    s.current = Some(turn);
    false
}

/// Stop the running prompt (its approvals are answered by the caller).
pub(crate) fn interrupt(s: &mut Session, out: &mut Vec<SessionEvent>) {
    if let Some(turn) = s.current.as_mut() {
        turn.interrupted = true;
        if let Some(sid) = s.sdk_id.clone() {
            s.send(acp::notification(
                "session/cancel",
                json!({"sessionId": sid}),
            ));
        }
    } else if let Some(turn) = s.queue.pop_front() {
        out.push(s.interrupted_result(turn.trace_id.as_ref()));
    }
}

/// Where Gemini CLI keeps its chats, for a Gemini session (only it needs a wait before
/// a load, see [`crate::providers::acp::history::gemini_load_delay`]).
fn gemini_dir(st: &State) -> Option<std::path::PathBuf> {
    if st.spec.as_ref().is_none_or(|a| a.name != "gemini") {
        return None;
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let env = st
        .spec
        .as_ref()
        .and_then(|a| a.env.get("GEMINI_CLI_HOME").cloned())
        .or_else(|| std::env::var("GEMINI_CLI_HOME").ok())
        .map(std::path::PathBuf::from);
    crate::providers::acp::history::gemini_dir(home.as_deref(), env.as_deref())
}

fn send_load(s: &mut Session, st: &mut State, sid: &str) {
    let line = st.request(
        Call::Load,
        "session/load",
        json!({"sessionId": sid, "cwd": s.cwd, "mcpServers": []}),
    );
    s.send(line);
}

/// Close what the turn left open (a crash, a close): the streamed text and thought, and
/// every tool the agent never finished.
pub(crate) fn close_open(s: &mut Session, st: &mut State, out: &mut Vec<SessionEvent>) {
    commit_stream(s, st, out);
    let trace = s.current.as_ref().and_then(|t| t.trace_id.clone());
    let mut open: Vec<String> = st.open.drain().collect();
    open.sort();
    for tid in open {
        out.push(s.event(trace.as_ref(), not_run(tid)));
    }
}

/// Close the streamed text and thought of the turn so far.
fn commit_stream(s: &mut Session, st: &mut State, out: &mut Vec<SessionEvent>) {
    let trace = s.current.as_ref().and_then(|t| t.trace_id.clone());
    if !st.thought.is_empty() {
        let text = std::mem::take(&mut st.thought);
        out.push(s.event(trace.as_ref(), Event::Thinking { text }));
    }
    if let Some((id, text)) = st.text.take()
        && !text.is_empty()
    {
        out.push(s.event(
            trace.as_ref(),
            Event::Text {
                text: text.clone(),
                id: Some(id),
            },
        ));
        st.last_text = Some(text);
    }
}

fn response(
    s: &mut Session,
    st: &mut State,
    id: &Value,
    v: &Value,
    out: &mut Vec<SessionEvent>,
) -> Next {
    let Some(call) = st.answered(id) else {
        return Next::Nothing;
    };
    let error = v.get("error").map(|e| {
        e.pointer("/data/details")
            .or_else(|| e.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_string()
    });
    let result = v.get("result").cloned().unwrap_or(Value::Null);
    let remember_modes = |st: &mut State| {
        st.modes = result
            .pointer("/modes/availableModes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.get("id")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        st.mode = result
            .pointer("/modes/currentModeId")
            .and_then(Value::as_str)
            .map(str::to_string);
        st.model = result
            .pointer("/models/currentModelId")
            .and_then(Value::as_str)
            .map(str::to_string);
        st.default_model.clone_from(&st.model);
    };
    match call {
        Call::Initialize => {
            if let Some(e) = error {
                return Next::Fail(format!("the agent did not start: {e}"));
            }
            st.can_load = result
                .pointer("/agentCapabilities/loadSession")
                .and_then(Value::as_bool)
                == Some(true);
            match s.sdk_id.clone() {
                Some(sid) if st.can_load => {
                    st.replaying = true;
                    if let Some(dir) = gemini_dir(st) {
                        return Next::CheckLoad { dir, sid };
                    }
                    send_load(s, st, &sid);
                }
                _ => {
                    s.sdk_id = None;
                    let line = st.request(
                        Call::New,
                        "session/new",
                        json!({"cwd": s.cwd, "mcpServers": []}),
                    );
                    s.send(line);
                }
            }
            Next::Nothing
        }
        Call::New => {
            if let Some(e) = error {
                return Next::Fail(format!("the agent could not start a session: {e}"));
            }
            remember_modes(st);
            match result.get("sessionId").and_then(Value::as_str) {
                Some(sid) => Next::Ready(sid.to_string()),
                None => Next::Fail("the agent started a session without an id".into()),
            }
        }
        Call::Load => {
            if error.is_some() {
                return Next::StartFresh;
            }
            remember_modes(st);
            Next::Loaded
        }
        Call::Prompt => {
            commit_stream(s, st, out);
            let trace = s.current.as_ref().and_then(|t| t.trace_id.clone());
            // Tools the agent never closed (refused, cancelled) end here.
            let mut open: Vec<String> = st.open.drain().collect();
            open.sort();
            for tid in open {
                out.push(s.event(trace.as_ref(), not_run(tid)));
            }
            let stop = result
                .get("stopReason")
                .and_then(Value::as_str)
                .unwrap_or("");
            if let Some(turn) = s.current.take() {
                let t = turn.trace_id.as_ref();
                if let Some(e) = error {
                    out.push(s.error(t, "provider_error", &format!("{}: {e}", s.provider)));
                } else if turn.interrupted || stop == "cancelled" {
                    out.push(s.interrupted_result(t));
                } else {
                    let subtype = if stop == "end_turn" || stop.is_empty() {
                        "success"
                    } else {
                        stop
                    };
                    out.push(s.event(
                        t,
                        Event::Result {
                            subtype: Some(subtype.to_string()),
                            is_error: stop == "refusal",
                            result: st.last_text.clone(),
                            cost_usd: None,
                            cut_uuid: None,
                            sdk_session_id: s.sdk_id.clone(),
                        },
                    ));
                }
            }
            st.end_turn();
            Next::Pump
        }
        Call::SetMode | Call::SetModel => {
            if let Some(e) = error {
                crate::log_warn!("session {}: the agent refused a setting: {e}", s.id);
            }
            Next::Nothing
        }
    }
}

/// A request from the agent: permissions (answered here when the mode says so); anything
/// else is refused (the node offers no client methods).
fn agent_request(
    s: &mut Session,
    st: &mut State,
    method: &str,
    id: Value,
    p: &Value,
    out: &mut Vec<SessionEvent>,
) -> Next {
    if method != "session/request_permission" {
        s.send(acp::reply_error(
            &id,
            -32601,
            "not supported by Coding Bridge",
        ));
        return Next::Nothing;
    }
    let options = p.get("options").cloned().unwrap_or_else(|| json!([]));
    let call = p.get("toolCall").cloned().unwrap_or(Value::Null);
    let kind = call.get("kind").and_then(Value::as_str).unwrap_or("");
    let title = call
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let tid = call.get("toolCallId").cloned().unwrap_or(Value::Null);
    let mode = s.mode_label().to_string();
    let auto = mode == "bypassPermissions" || (mode == "acceptEdits" && kind == "edit");
    // `plan` is read-only: an agent without a plan mode of its own gets its file changes
    // refused here (commands still go to the browser).
    if mode == "plan" && st.mode_for("plan").is_none() && matches!(kind, "edit" | "delete" | "move")
    {
        s.send(acp::reply(&id, acp::permission_outcome(&options, false)));
        return Next::Nothing;
    }
    // An agent that announces no tool before asking (Gemini): show it from the request.
    if let Some(t) = tid.as_str()
        && !st.open.contains(t)
        && s.current.is_some()
    {
        commit_stream(s, st, out);
        show_tool(s, st, &call, out);
    }
    if auto {
        s.send(acp::reply(&id, acp::permission_outcome(&options, true)));
        return Next::Nothing;
    }
    let input = call
        .get("rawInput")
        .cloned()
        .filter(|v| !v.is_null())
        .unwrap_or_else(
            || json!({"title": title, "content": acp::content_text(call.get("content"))}),
        );
    Next::Ask(Ask {
        rpc_id: id,
        options,
        tool: acp::tool_name(kind, &title),
        input,
        title: json!(title),
        tool_use_id: tid,
    })
}

/// `session.tool_use` for an ACP tool call, once.
fn show_tool(s: &mut Session, st: &mut State, call: &Value, out: &mut Vec<SessionEvent>) {
    let Some(tid) = call.get("toolCallId").and_then(Value::as_str) else {
        return;
    };
    if st.open.contains(tid) {
        return;
    }
    let kind = call.get("kind").and_then(Value::as_str).unwrap_or("");
    let title = call
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let input = call
        .get("rawInput")
        .cloned()
        .filter(|v| !v.is_null())
        .unwrap_or_else(
            || json!({"title": title, "content": acp::content_text(call.get("content"))}),
        );
    st.open.insert(tid.to_string());
    // Text after a tool is a new block.
    st.segment += 1;
    let trace = s.current.as_ref().and_then(|t| t.trace_id.clone());
    let e = s.event(
        trace.as_ref(),
        Event::ToolUse {
            tool: Some(acp::tool_name(kind, &title)),
            tool_use_id: Some(tid.to_string()),
            input,
        },
    );
    out.push(e);
    s.mark_emitted();
}

/// A `session/update`: streamed text and thoughts, tool calls and their results.
fn update(s: &mut Session, st: &mut State, p: &Value, out: &mut Vec<SessionEvent>) {
    let u = p.get("update").cloned().unwrap_or(Value::Null);
    if st.replaying {
        st.replay_seq += 1;
        return;
    }
    if s.current.is_none() {
        return; // nothing of ours runs (a mode notice, a command list)
    }
    let trace = s.current.as_ref().and_then(|t| t.trace_id.clone());
    match u.get("sessionUpdate").and_then(Value::as_str) {
        Some("agent_message_chunk") => {
            let text = u
                .pointer("/content/text")
                .and_then(Value::as_str)
                .unwrap_or("");
            if text.is_empty() || text.starts_with("[MODE_UPDATE]") {
                return;
            }
            if !st.thought.is_empty() {
                let t = std::mem::take(&mut st.thought);
                out.push(s.event(trace.as_ref(), Event::Thinking { text: t }));
            }
            let (id, acc) = st
                .text
                .get_or_insert_with(|| (format!("{}:{}", s.id, st.segment), String::new()));
            if acc.len() < MAX_BLOCK_TEXT {
                acc.push_str(text);
            }
            let id = id.clone();
            out.push(s.event(
                trace.as_ref(),
                Event::TextDelta {
                    text: text.to_string(),
                    id,
                },
            ));
            s.mark_emitted();
        }
        Some("agent_thought_chunk") => {
            if let Some(t) = u.pointer("/content/text").and_then(Value::as_str)
                && st.thought.len() < MAX_BLOCK_TEXT
            {
                st.thought.push_str(t);
            }
        }
        Some("tool_call") => {
            commit_stream(s, st, out);
            show_tool(s, st, &u, out);
            finish_tool(s, st, &u, out);
        }
        Some("tool_call_update") => {
            let known = u
                .get("toolCallId")
                .and_then(Value::as_str)
                .is_some_and(|t| st.open.contains(t));
            if !known {
                commit_stream(s, st, out);
                show_tool(s, st, &u, out);
            }
            finish_tool(s, st, &u, out);
        }
        _ => {}
    }
}

/// `session.tool_result` when a tool call reached `completed` or `failed`.
fn finish_tool(s: &mut Session, st: &mut State, u: &Value, out: &mut Vec<SessionEvent>) {
    let status = u.get("status").and_then(Value::as_str).unwrap_or("");
    if status != "completed" && status != "failed" {
        return;
    }
    let Some(tid) = u.get("toolCallId").and_then(Value::as_str) else {
        return;
    };
    if !st.open.remove(tid) {
        return;
    }
    let mut content = acp::content_text(u.get("content"));
    if content.is_empty() {
        content = u
            .pointer("/rawOutput/content")
            .or_else(|| u.pointer("/rawOutput/message"))
            .and_then(Value::as_str)
            .unwrap_or(if status == "failed" {
                "Failed."
            } else {
                "Done."
            })
            .to_string();
    }
    let trace = s.current.as_ref().and_then(|t| t.trace_id.clone());
    out.push(s.event(
        trace.as_ref(),
        Event::ToolResult {
            tool_use_id: Some(tid.to_string()),
            content,
            is_error: status == "failed",
        },
    ));
}

/// The result of a tool the agent never finished.
fn not_run(tid: String) -> Event {
    Event::ToolResult {
        tool_use_id: Some(tid),
        content: "Not run.".into(),
        is_error: true,
    }
}

/// The provider's logic fed lines directly: no process, no thread, no hub.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Turn;

    fn session() -> (Session, State) {
        let mut s = Session::new("b1", std::path::PathBuf::from("/tmp"));
        s.provider = "copilot".into();
        s.sdk_id = Some("sess-1".into());
        (s, State::default())
    }

    /// Ask `call` and return the id to answer it with.
    fn asked(st: &mut State, call: Call, method: &str) -> Value {
        let line = st.request(call, method, json!({}));
        serde_json::from_str::<Value>(&line).unwrap()["id"].clone()
    }

    fn chunk(s: &mut Session, st: &mut State, kind: &str, text: &str, out: &mut Vec<SessionEvent>) {
        let p =
            json!({"update": {"sessionUpdate": kind, "content": {"type": "text", "text": text}}});
        update(s, st, &p, out);
    }

    fn names(out: &[SessionEvent]) -> Vec<&'static str> {
        out.iter().map(SessionEvent::name).collect()
    }

    /// The events as the browser gets them.
    fn values(out: &[SessionEvent]) -> Vec<Value> {
        out.iter().map(SessionEvent::to_value).collect()
    }

    #[test]
    fn a_new_session_is_ready_and_a_failed_load_starts_afresh() {
        let (mut s, mut st) = session();
        let mut out = Vec::new();
        let id = asked(&mut st, Call::New, "session/new");
        let answer = json!({"id": id, "result": {"sessionId": "sess-2"}});
        assert!(matches!(
            response(&mut s, &mut st, &id, &answer, &mut out),
            Next::Ready(ref sid) if sid == "sess-2"
        ));
        let id = asked(&mut st, Call::Load, "session/load");
        let refused = json!({"id": id, "error": {"message": "no such session"}});
        assert!(matches!(
            response(&mut s, &mut st, &id, &refused, &mut out),
            Next::StartFresh
        ));
    }

    #[test]
    fn a_replay_shows_nothing() {
        let (mut s, mut st) = session();
        s.current = Some(Turn::new("hi".into(), None));
        st.replaying = true;
        let mut out = Vec::new();
        chunk(
            &mut s,
            &mut st,
            "agent_message_chunk",
            "old answer",
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(
            st.replay_seq, 1,
            "counted, so the hub can tell when it ends"
        );
    }

    #[test]
    fn a_turn_streams_thought_text_and_a_tool_then_ends_with_one_result() {
        let (mut s, mut st) = session();
        s.current = Some(Turn::new("hi".into(), Some(json!("t1"))));
        let mut out = Vec::new();
        chunk(
            &mut s,
            &mut st,
            "agent_thought_chunk",
            "let me see",
            &mut out,
        );
        chunk(&mut s, &mut st, "agent_message_chunk", "Look", &mut out);
        chunk(&mut s, &mut st, "agent_message_chunk", "ing.", &mut out);
        let tool = json!({"update": {"sessionUpdate": "tool_call", "toolCallId": "tc1",
                          "title": "ls", "kind": "execute", "status": "pending"}});
        update(&mut s, &mut st, &tool, &mut out);
        let done = json!({"update": {"sessionUpdate": "tool_call_update", "toolCallId": "tc1",
                          "status": "completed",
                          "content": [{"type": "content", "content": {"type": "text", "text": "a.txt"}}]}});
        update(&mut s, &mut st, &done, &mut out);
        let id = asked(&mut st, Call::Prompt, "session/prompt");
        let end = json!({"id": id, "result": {"stopReason": "end_turn"}});
        assert!(matches!(
            response(&mut s, &mut st, &id, &end, &mut out),
            Next::Pump
        ));
        let n = names(&out);
        assert_eq!(n[0], "session.thinking", "{n:?}");
        assert_eq!(&n[1..3], ["session.text_delta", "session.text_delta"]);
        assert_eq!(n.last(), Some(&"session.result"));
        assert_eq!(n.iter().filter(|e| **e == "session.result").count(), 1);
        assert!(n.contains(&"session.tool_use") && n.contains(&"session.tool_result"));
        let out = values(&out);
        let text = out.iter().find(|e| e["event"] == "session.text").unwrap();
        assert_eq!(text["text"], "Looking.");
        let result = out.last().unwrap();
        assert_eq!(result["subtype"], "success");
        assert_eq!(result["trace_id"], "t1");
        assert!(s.current.is_none());
    }

    #[test]
    fn a_tool_the_agent_never_closed_ends_as_not_run() {
        let (mut s, mut st) = session();
        s.current = Some(Turn::new("hi".into(), None));
        let mut out = Vec::new();
        let tool = json!({"update": {"sessionUpdate": "tool_call", "toolCallId": "tc9",
                          "title": "rm -rf", "kind": "execute", "status": "pending"}});
        update(&mut s, &mut st, &tool, &mut out);
        let id = asked(&mut st, Call::Prompt, "session/prompt");
        let end = json!({"id": id, "result": {"stopReason": "cancelled"}});
        response(&mut s, &mut st, &id, &end, &mut out);
        let out = values(&out);
        let closed = out
            .iter()
            .find(|e| e["event"] == "session.tool_result")
            .expect("closed");
        assert_eq!(closed["tool_use_id"], "tc9");
        assert_eq!(closed["is_error"], true);
        assert_eq!(out.last().unwrap()["subtype"], "interrupted");
    }

    #[test]
    fn a_loaded_session_is_rekeyed_and_waits_for_its_replay_to_go_quiet() {
        let (mut s, mut st) = session();
        let mut out = Vec::new();
        let id = asked(&mut st, Call::Load, "session/load");
        st.replaying = true;
        let fx = on_line(&mut s, &mut st, &json!({"id": id, "result": {}}), &mut out);
        assert!(matches!(
            fx.as_slice(),
            [Effect::Rekey(sid), Effect::After(d, Wake::Quiet(0))]
                if sid == "sess-1" && *d == REPLAY_QUIET
        ));
        // The replay goes on: wait again, with the newer count.
        chunk(&mut s, &mut st, "agent_message_chunk", "old text", &mut out);
        let fx = on_wake(&mut s, &mut st, &Wake::Quiet(0));
        assert!(matches!(fx.as_slice(), [Effect::After(_, Wake::Quiet(1))]));
        assert!(out.is_empty(), "a replay shows nothing");
        // Quiet since: the first prompt may go.
        let fx = on_wake(&mut s, &mut st, &Wake::Quiet(1));
        assert!(matches!(fx.as_slice(), [Effect::Pump]));
        assert!(!st.replaying);
    }

    #[test]
    fn a_permission_request_is_asked_with_a_refusal_ready_and_a_load_put_off_is_armed() {
        let (mut s, mut st) = session();
        s.current = Some(Turn::new("go".into(), None));
        let mut out = Vec::new();
        let ask = json!({"id": 7, "method": "session/request_permission", "params": {
            "options": [{"optionId": "a", "kind": "allow_once"}, {"optionId": "r", "kind": "reject_once"}],
            "toolCall": {"toolCallId": "tc1", "kind": "execute", "title": "ls", "rawInput": {"command": "ls"}}}});
        let fx = on_line(&mut s, &mut st, &ask, &mut out);
        let [Effect::Ask { approval, refuse }] = fx.as_slice() else {
            panic!("one approval asked");
        };
        assert_eq!(approval.cli_request_id, "7");
        assert_eq!(approval.tool_use_id.as_deref(), Some("tc1"));
        assert!(
            refuse.contains("\"r\""),
            "the refusal picks the reject option: {refuse}"
        );
        // A worker found the load must wait (Gemini's minute): a timer for it.
        let fx = on_wake(
            &mut s,
            &mut st,
            &Wake::LoadAfter(std::time::Duration::from_secs(30)),
        );
        assert!(matches!(fx.as_slice(), [Effect::After(d, Wake::Load)] if d.as_secs() == 30));
    }
}
