//! Codex's state machine (see [`crate::providers::codex`] for the protocol): the child's
//! spec and first request, the next queued turn written when the thread is ready, the
//! server's lines turned into node events, and every command and patch approval handed
//! to the hub as an [`Effect::Ask`], so the browser allows or denies each one.
//!
//! Functions over the generic [`Session`] and the session's Codex [`State`]; what
//! needs the whole daemon (re-keying, approvals, the next turn) is returned as
//! [`Effect`]s that the hub applies ([`crate::hub::sessions`]). No threads or I/O here
//! beyond writing a line to the child's stdin channel.

use serde_json::{Value, json};

use crate::protocol::events::{Event, SessionEvent, text_of};
use crate::providers::Effect;
use crate::providers::codex::{self, Call, Open, State};
use crate::session::{Approval, MAX_BLOCK_TEXT, Session, short};
use crate::sys::child::Spec;

/// What handling one line leaves to do with the whole daemon.
enum Next {
    Nothing,
    /// The thread is ready under this id.
    Ready(String),
    /// The turn ended: run the next one.
    Pump,
    /// An approval for the browser.
    Ask(Ask),
    /// The thread could not be resumed: start a new one.
    StartFresh,
    /// The CLI cannot serve this session: fail what waits.
    Fail(String),
    /// The server settled its request with this id itself (`serverRequest/resolved`).
    Settled(Value),
}

struct Ask {
    rpc_id: Value,
    tool: &'static str,
    input: Value,
    title: String,
    description: Value,
    tool_use_id: Value,
}

/// One line from the session's `codex app-server`: a request of the server's, a
/// notification, or the answer to one of our calls.
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
        (Some(m), Some(id)) => server_request(s, st, m, id, &params),
        (Some(m), None) => notification(s, st, m, &params, out),
        (None, Some(id)) => response(s, st, &id, v, out),
        (None, None) => Next::Nothing,
    };
    match next {
        Next::Nothing => Vec::new(),
        // The turn is over: an approval still open was abandoned by the server.
        Next::Pump => vec![Effect::SettleOpen, Effect::Pump],
        Next::Settled(rpc_id) => vec![Effect::Withdrawn(rpc_id.to_string())],
        Next::Ready(thread) => {
            // Announced under the browser's id, then the session is keyed by the thread.
            if let Some(live) = s.child.as_mut() {
                live.initialized = true;
            }
            vec![Effect::Rekey(thread), Effect::Pump]
        }
        Next::StartFresh => {
            crate::log_warn!(
                "session {}: Codex could not resume thread {}; starting a new one",
                s.id,
                s.sdk_id.as_deref().unwrap_or("")
            );
            s.sdk_id = None;
            let params = codex::thread_params(&s.cwd, s.mode_label(), s.model.as_deref(), None);
            s.send(st.request(Call::ThreadStart, "thread/start", params));
            Vec::new()
        }
        Next::Fail(message) => vec![Effect::Fail {
            code: "provider_error",
            message,
        }],
        Next::Ask(ask) => {
            let refuse = codex::reply(&ask.rpc_id, json!({"decision": "decline"}));
            let approval = Approval {
                cli_request_id: ask.rpc_id.to_string(),
                tool: Some(ask.tool.into()),
                input: ask.input.clone(),
                title: Some(ask.title),
                display_name: Some(ask.tool.into()),
                description: text_of(Some(&ask.description)),
                tool_use_id: text_of(Some(&ask.tool_use_id)),
                parent: None,
                keep: ask.input,
            };
            vec![Effect::Ask {
                approval: Box::new(approval),
                refuse,
            }]
        }
    }
}

/// The child for a session: `codex app-server` in the session's directory.
pub(crate) fn spec(program: std::path::PathBuf, s: &Session) -> Spec {
    Spec {
        program,
        args: vec!["app-server".into()],
        cwd: s.cwd.clone(),
        env: Vec::new(),
        env_remove: vec!["CLAUDECODE".into()],
    }
}

/// A new server was started: a fresh state, and its `initialize` sent; the thread is
/// started (or resumed, for a session with a real id) once the server answers.
pub(crate) fn on_spawned(s: &Session, st: &mut State) {
    *st = State::default();
    let line = st.request(Call::Initialize, "initialize", codex::initialize_params());
    s.send(line);
}

/// Write the next queued turn when the thread is ready and no turn runs. True when the
/// turn was answered here (a slash command): look at the next one.
pub(crate) fn write_turn(s: &mut Session, st: &mut State, out: &mut Vec<SessionEvent>) -> bool {
    let Some((thread, mut turn)) = s.take_ready_turn() else {
        return false;
    };
    if turn.prompt.trim_start().starts_with('/') {
        let notice = Event::notice(
            "slash_codex_unsupported",
            "Slash commands are not available in Codex sessions.",
        );
        s.answer_with_notice(turn.trace_id.as_ref(), notice, out);
        return true;
    }
    st.end_turn();
    let (model, effort) = st.turn_settings(turn.model.clone(), turn.effort.clone());
    let params = codex::turn_params(
        &thread,
        &turn.prompt,
        &turn.images,
        s.mode_label(),
        model.as_deref(),
        effort.as_deref(),
    );
    s.send(st.request(Call::TurnStart, "turn/start", params));
    if std::mem::take(&mut st.held_interrupt) {
        turn.interrupted = true;
        st.held_interrupt = true;
    }
    s.current = Some(turn);
    false
}

/// Stop the running turn: its approvals are denied by the caller; here the server is
/// asked to interrupt (or the request is held until the turn has an id).
pub(crate) fn interrupt(s: &mut Session, st: &mut State, out: &mut Vec<SessionEvent>) {
    if let Some(turn) = s.current.as_mut() {
        turn.interrupted = true;
        match (&st.turn_id, &s.sdk_id) {
            (Some(turn_id), Some(thread)) => {
                let line = st.request(
                    Call::TurnInterrupt,
                    "turn/interrupt",
                    json!({"threadId": thread, "turnId": turn_id}),
                );
                s.send(line);
            }
            _ => st.held_interrupt = true,
        }
    } else if let Some(turn) = s.queue.pop_front() {
        out.push(s.interrupted_result(turn.trace_id.as_ref()));
    }
}

/// Close the items of the turn that never completed (an interrupt, a crash, a close):
/// streamed text gets its whole `session.text`, a tool a `session.tool_result`.
pub(crate) fn close_open(s: &mut Session, st: &mut State, out: &mut Vec<SessionEvent>) {
    let trace = s.current.as_ref().and_then(|t| t.trace_id.clone());
    let mut open: Vec<(String, Open)> = st.open.drain().collect();
    open.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, o) in open {
        match o {
            Open::Text(t) if !t.is_empty() => {
                out.push(s.event(
                    trace.as_ref(),
                    Event::Text {
                        text: t,
                        id: Some(id),
                    },
                ));
            }
            Open::Text(_) => {}
            Open::Tool => out.push(s.event(
                trace.as_ref(),
                Event::ToolResult {
                    tool_use_id: Some(id),
                    content: "Interrupted.".into(),
                    is_error: true,
                },
            )),
        }
    }
}

/// The answer to one of our calls.
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
    let error = v
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_string);
    let result = v.get("result").cloned().unwrap_or(Value::Null);
    match call {
        Call::Initialize => {
            if let Some(e) = error {
                return Next::Fail(format!("Codex did not start: {e}"));
            }
            s.send(codex::notification("initialized"));
            let (call, method) = match s.sdk_id {
                Some(_) => (Call::ThreadResume, "thread/resume"),
                None => (Call::ThreadStart, "thread/start"),
            };
            let params = codex::thread_params(
                &s.cwd,
                s.mode_label(),
                s.model.as_deref(),
                s.sdk_id.as_deref(),
            );
            s.send(st.request(call, method, params));
            Next::Nothing
        }
        Call::ThreadStart | Call::ThreadResume => {
            if let Some(e) = error {
                return if call == Call::ThreadResume {
                    Next::StartFresh
                } else {
                    Next::Fail(format!("Codex could not start a thread: {e}"))
                };
            }
            if let Some(m) = result.get("model").and_then(Value::as_str) {
                s.resolved_model = Some(m.to_string());
                st.default_model = Some(m.to_string());
            }
            st.default_effort = result
                .get("reasoningEffort")
                .and_then(Value::as_str)
                .map(str::to_string);
            match result.pointer("/thread/id").and_then(Value::as_str) {
                Some(thread) => Next::Ready(thread.to_string()),
                None => Next::Fail("Codex started a thread without an id".into()),
            }
        }
        Call::TurnStart => {
            if let Some(e) = error {
                if let Some(turn) = s.current.take() {
                    out.push(s.error(
                        turn.trace_id.as_ref(),
                        "provider_error",
                        &format!("Codex refused the turn: {e}"),
                    ));
                }
                st.end_turn();
                return Next::Pump;
            }
            if let Some(t) = result.pointer("/turn/id").and_then(Value::as_str) {
                st.turn_id = Some(t.to_string());
                if std::mem::take(&mut st.held_interrupt)
                    && let Some(thread) = s.sdk_id.clone()
                {
                    let line = st.request(
                        Call::TurnInterrupt,
                        "turn/interrupt",
                        json!({"threadId": thread, "turnId": t}),
                    );
                    s.send(line);
                }
            }
            Next::Nothing
        }
        Call::TurnInterrupt => Next::Nothing,
    }
}

/// A request from the server: approvals go to the browser (or are answered here when the
/// mode says so); anything else is refused so no turn hangs on it.
fn server_request(s: &mut Session, st: &mut State, method: &str, id: Value, p: &Value) -> Next {
    let mode = s.mode_label().to_string();
    let item = p.get("itemId").cloned().unwrap_or(Value::Null);
    let reason = p.get("reason").cloned().unwrap_or(Value::Null);
    match method {
        "item/commandExecution/requestApproval" => {
            if mode == "bypassPermissions" {
                s.send(codex::reply(&id, json!({"decision": "accept"})));
                return Next::Nothing;
            }
            // What runs (its shell wrapper taken off), not Codex's summary of its parsed
            // actions, which leaves pipeline helpers out: people approve and the node's
            // rules judge the same text.
            let command = match p.get("command").and_then(Value::as_str) {
                Some(line) => crate::policy::glob::unwrap_shell(line).to_string(),
                None => codex::command_text(p),
            };
            let input = json!({"command": command, "cwd": p.get("cwd"), "reason": reason});
            Next::Ask(Ask {
                rpc_id: id,
                tool: "Bash",
                input,
                title: format!("Run `{}`?", short(&command, 120)),
                description: reason,
                tool_use_id: item,
            })
        }
        "item/fileChange/requestApproval" => {
            if mode == "bypassPermissions" || mode == "acceptEdits" {
                s.send(codex::reply(&id, json!({"decision": "accept"})));
                return Next::Nothing;
            }
            let changes = item
                .as_str()
                .and_then(|i| st.changes.get(i))
                .cloned()
                .unwrap_or_else(|| json!([]));
            let paths: Vec<&str> = changes
                .as_array()
                .map(|a| a.iter().filter_map(|c| c.get("path")?.as_str()).collect())
                .unwrap_or_default();
            Next::Ask(Ask {
                rpc_id: id,
                tool: "apply_patch",
                title: format!(
                    "Change {}?",
                    if paths.is_empty() {
                        "files".to_string()
                    } else {
                        paths.join(", ")
                    }
                ),
                input: json!({"changes": changes, "reason": reason}),
                description: reason,
                tool_use_id: item,
            })
        }
        other => {
            crate::log_debug!("session {}: refusing Codex request {other}", s.id);
            s.send(codex::reply_error(&id, "not supported by Coding Bridge"));
            Next::Nothing
        }
    }
}

/// A notification: items become node events; `turn/completed` ends the turn.
fn notification(
    s: &mut Session,
    st: &mut State,
    method: &str,
    p: &Value,
    out: &mut Vec<SessionEvent>,
) -> Next {
    let item = p.get("item").cloned().unwrap_or(Value::Null);
    let item_id = item
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
    let trace = s.current.as_ref().and_then(|t| t.trace_id.clone());
    let ev = |s: &Session, event: Event| s.event(trace.as_ref(), event);
    match method {
        "serverRequest/resolved" => {
            if let Some(id) = p.get("requestId") {
                return Next::Settled(id.clone());
            }
        }
        "turn/started" => {
            if st.turn_id.is_none()
                && let Some(t) = p.pointer("/turn/id").and_then(Value::as_str)
            {
                st.turn_id = Some(t.to_string());
            }
        }
        "item/started" => match kind {
            "agentMessage" => {
                st.open.insert(item_id, Open::Text(String::new()));
            }
            "commandExecution" => {
                out.push(ev(
                        s,
                        Event::ToolUse {
                            tool: Some("Bash".into()),
                            tool_use_id: Some(item_id.clone()),
                            input: json!({"command": codex::command_text(&item), "cwd": item.get("cwd")}),
                        },
                    ));
                st.open.insert(item_id, Open::Tool);
                s.mark_emitted();
            }
            "fileChange" => {
                let changes = item.get("changes").cloned().unwrap_or_else(|| json!([]));
                out.push(ev(
                    s,
                    Event::ToolUse {
                        tool: Some("apply_patch".into()),
                        tool_use_id: Some(item_id.clone()),
                        input: json!({"changes": changes}),
                    },
                ));
                st.changes.insert(item_id.clone(), changes);
                st.open.insert(item_id, Open::Tool);
                s.mark_emitted();
            }
            _ => {}
        },
        "item/agentMessage/delta" => {
            let id = p
                .get("itemId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let delta = p.get("delta").and_then(Value::as_str).unwrap_or("");
            if delta.is_empty() {
                return Next::Nothing;
            }
            if let Some(Open::Text(t)) = st.open.get_mut(&id)
                && t.len() < MAX_BLOCK_TEXT
            {
                t.push_str(delta);
            }
            out.push(ev(
                s,
                Event::TextDelta {
                    text: delta.to_string(),
                    id,
                },
            ));
            s.mark_emitted();
        }
        "item/completed" => match kind {
            "agentMessage" => {
                st.open.remove(&item_id);
                let text = item
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if !text.is_empty() {
                    out.push(ev(
                        s,
                        Event::Text {
                            text: text.clone(),
                            id: Some(item_id),
                        },
                    ));
                    s.mark_emitted();
                    st.last_text = Some(text);
                }
            }
            "reasoning" => {
                let text = codex::reasoning_text(&item);
                if !text.trim().is_empty() {
                    out.push(ev(s, Event::Thinking { text }));
                    s.mark_emitted();
                }
            }
            "commandExecution" | "fileChange" => {
                st.open.remove(&item_id);
                let status = item.get("status").and_then(Value::as_str).unwrap_or("");
                let exit = item.get("exitCode").and_then(Value::as_i64);
                let content = match (kind, status) {
                    (_, "declined") => "Declined by the user.".to_string(),
                    ("fileChange", "completed") => "Applied.".to_string(),
                    _ => item
                        .get("aggregatedOutput")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                };
                let is_error = status != "completed" || exit.is_some_and(|c| c != 0);
                out.push(ev(
                    s,
                    Event::ToolResult {
                        tool_use_id: Some(item_id),
                        content,
                        is_error,
                    },
                ));
            }
            _ => {}
        },
        "error" if p.get("willRetry").and_then(Value::as_bool) != Some(true) => {
            st.error = p
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        "turn/completed" => {
            // Items cut off by an interrupt never complete: close them here.
            close_open(s, st, out);
            let status = p
                .pointer("/turn/status")
                .and_then(Value::as_str)
                .unwrap_or("");
            let error = p
                .pointer("/turn/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| st.error.clone());
            if let Some(turn) = s.current.take() {
                let t = turn.trace_id.as_ref();
                if turn.interrupted || status == "interrupted" {
                    out.push(s.interrupted_result(t));
                } else if status == "failed" {
                    out.push(s.error(
                        t,
                        "provider_error",
                        &format!("Codex: {}", error.as_deref().unwrap_or("the turn failed")),
                    ));
                } else {
                    out.push(s.event(
                        t,
                        Event::Result {
                            subtype: Some("success".into()),
                            is_error: false,
                            result: st.last_text.clone(),
                            cost_usd: None,
                            cut_uuid: None,
                            sdk_session_id: s.sdk_id.clone(),
                        },
                    ));
                }
            }
            st.end_turn();
            return Next::Pump;
        }
        _ => {}
    }
    Next::Nothing
}

/// The provider's logic fed lines directly: no process, no thread, no hub.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Turn;

    fn session() -> (Session, State) {
        let mut s = Session::new("b1", std::path::PathBuf::from("/tmp"));
        s.provider = "codex".into();
        s.sdk_id = Some("th-1".into());
        (s, State::default())
    }

    /// Notification `method` with `params`, as the server sends it.
    fn note(
        s: &mut Session,
        st: &mut State,
        method: &str,
        p: Value,
        out: &mut Vec<SessionEvent>,
    ) -> Next {
        notification(s, st, method, &p, out)
    }

    fn names(out: &[SessionEvent]) -> Vec<&'static str> {
        out.iter().map(SessionEvent::name).collect()
    }

    /// The events as the browser gets them.
    fn values(out: &[SessionEvent]) -> Vec<Value> {
        out.iter().map(SessionEvent::to_value).collect()
    }

    #[test]
    fn a_thread_answer_makes_the_session_ready_and_a_failed_resume_starts_afresh() {
        let (mut s, mut st) = session();
        let line = st.request(Call::ThreadResume, "thread/resume", json!({}));
        let id = serde_json::from_str::<Value>(&line).unwrap()["id"].clone();
        let mut out = Vec::new();
        let answer = json!({"id": id, "result": {"thread": {"id": "th-1"}, "model": "gpt-5.5"}});
        let next = response(&mut s, &mut st, &id, &answer, &mut out);
        assert!(matches!(next, Next::Ready(ref t) if t == "th-1"));
        assert_eq!(s.resolved_model.as_deref(), Some("gpt-5.5"));
        // An answer to nothing we asked changes nothing.
        assert!(matches!(
            response(&mut s, &mut st, &id, &answer, &mut out),
            Next::Nothing
        ));
        let line = st.request(Call::ThreadResume, "thread/resume", json!({}));
        let id = serde_json::from_str::<Value>(&line).unwrap()["id"].clone();
        let refused = json!({"id": id, "error": {"message": "no rollout found"}});
        assert!(matches!(
            response(&mut s, &mut st, &id, &refused, &mut out),
            Next::StartFresh
        ));
    }

    #[test]
    fn a_turn_streams_its_text_runs_a_tool_and_ends_with_one_result() {
        let (mut s, mut st) = session();
        s.current = Some(Turn::new("hi".into(), Some(json!("t1"))));
        let mut out = Vec::new();
        note(
            &mut s,
            &mut st,
            "turn/started",
            json!({"turn": {"id": "turn-1"}}),
            &mut out,
        );
        assert_eq!(st.turn_id.as_deref(), Some("turn-1"));
        let started = json!({"item": {"id": "m1", "type": "agentMessage"}});
        note(&mut s, &mut st, "item/started", started, &mut out);
        for d in ["hel", "lo"] {
            note(
                &mut s,
                &mut st,
                "item/agentMessage/delta",
                json!({"itemId": "m1", "delta": d}),
                &mut out,
            );
        }
        let done = json!({"item": {"id": "m1", "type": "agentMessage", "text": "hello"}});
        note(&mut s, &mut st, "item/completed", done, &mut out);
        let cmd = json!({"item": {"id": "c1", "type": "commandExecution", "command": "ls"}});
        note(&mut s, &mut st, "item/started", cmd, &mut out);
        let ran = json!({"item": {"id": "c1", "type": "commandExecution", "status": "completed",
                                   "exitCode": 0, "aggregatedOutput": "a.txt\n"}});
        note(&mut s, &mut st, "item/completed", ran, &mut out);
        let next = note(
            &mut s,
            &mut st,
            "turn/completed",
            json!({"turn": {"status": "completed"}}),
            &mut out,
        );
        assert!(matches!(next, Next::Pump), "the next turn may go");
        assert_eq!(
            names(&out),
            [
                "session.text_delta",
                "session.text_delta",
                "session.text",
                "session.tool_use",
                "session.tool_result",
                "session.result"
            ]
        );
        let out = values(&out);
        let result = out.last().unwrap();
        assert_eq!(result["result"], "hello");
        assert_eq!(result["trace_id"], "t1");
        assert_eq!(result["sdk_session_id"], "th-1");
        assert_eq!(out[4]["is_error"], false);
        assert!(s.current.is_none() && st.turn_id.is_none());
    }

    #[test]
    fn an_interrupted_turn_closes_what_it_left_open() {
        let (mut s, mut st) = session();
        let mut t = Turn::new("count".into(), None);
        t.interrupted = true;
        s.current = Some(t);
        let mut out = Vec::new();
        let started = json!({"item": {"id": "m1", "type": "agentMessage"}});
        note(&mut s, &mut st, "item/started", started, &mut out);
        note(
            &mut s,
            &mut st,
            "item/agentMessage/delta",
            json!({"itemId": "m1", "delta": "1 2"}),
            &mut out,
        );
        let cmd = json!({"item": {"id": "c1", "type": "commandExecution", "command": "sleep 9"}});
        note(&mut s, &mut st, "item/started", cmd, &mut out);
        note(
            &mut s,
            &mut st,
            "turn/completed",
            json!({"turn": {"status": "interrupted"}}),
            &mut out,
        );
        let n = names(&out);
        assert!(
            n.contains(&"session.text"),
            "the cut-off text is committed: {n:?}"
        );
        assert!(
            n.contains(&"session.tool_result"),
            "the cut-off tool is closed: {n:?}"
        );
        assert_eq!(values(&out).last().unwrap()["subtype"], "interrupted");
    }

    #[test]
    fn the_server_settling_its_own_request_is_reported() {
        let (mut s, mut st) = session();
        let mut out = Vec::new();
        let next = note(
            &mut s,
            &mut st,
            "serverRequest/resolved",
            json!({"requestId": 7}),
            &mut out,
        );
        assert!(matches!(next, Next::Settled(ref id) if *id == json!(7)));
        assert!(out.is_empty());
    }

    #[test]
    fn a_command_approval_is_asked_with_a_decline_ready_and_a_turn_end_settles_and_pumps() {
        let (mut s, mut st) = session();
        s.current = Some(Turn::new("go".into(), None));
        let mut out = Vec::new();
        let ask = json!({"id": 3, "method": "item/commandExecution/requestApproval",
                         "params": {"itemId": "c1", "command": "rm -rf build", "reason": "clean"}});
        let fx = on_line(&mut s, &mut st, &ask, &mut out);
        let [Effect::Ask { approval, refuse }] = fx.as_slice() else {
            panic!("one approval asked");
        };
        assert_eq!(approval.tool.as_deref(), Some("Bash"));
        assert_eq!(approval.description.as_deref(), Some("clean"));
        assert!(refuse.contains("decline"), "{refuse}");
        // The server settles it itself: withdrawn.
        let settled = json!({"method": "serverRequest/resolved", "params": {"requestId": 3}});
        let fx = on_line(&mut s, &mut st, &settled, &mut out);
        assert!(matches!(fx.as_slice(), [Effect::Withdrawn(id)] if id == "3"));
        let done = json!({"method": "turn/completed", "params": {"turn": {"status": "completed"}}});
        let fx = on_line(&mut s, &mut st, &done, &mut out);
        assert!(matches!(fx.as_slice(), [Effect::SettleOpen, Effect::Pump]));
        // In bypass mode nothing is asked: the server gets its accept at once.
        s.permission_mode = Some("bypassPermissions".into());
        assert!(on_line(&mut s, &mut st, &ask, &mut out).is_empty());
    }
}
