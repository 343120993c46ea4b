//! Claude Code's state machine (PROTOCOL §5–8): what each line of its stream-json means
//! for the session (turns the CLI starts by itself, results, control requests both
//! ways, the real session id), when the next queued turn may be written and how, and
//! how the next child starts. Functions over the generic [`Session`] and its
//! [`ClaudeState`] that push node events and return [`Effect`]s; the hub applies those
//! and does everything with processes, workers and the timer
//! ([`crate::hub::sessions`]). No threads or I/O here beyond writing a line to the
//! child's stdin channel; stream translation is in [`crate::providers::claude::stream`].

use std::time::Duration;

use serde_json::{Value, json};

use crate::protocol::events::{Event, Level, SessionEvent, text_of};
use crate::providers::claude::stream::{
    ClaudeState, OwnRequest, RewindError, on_assistant, on_stream_event, on_user, replayed,
    scope_of, status_text, sync_mode, sync_model,
};
use crate::providers::claude::{self, SpawnOpts};
use crate::providers::{Effect, Wake};
use crate::session::{Approval, Session, Turn};

/// How long queued prompts wait for a turn the CLI announced (`task_notification`)
/// before they go ahead anyway.
const AUTO_TURN_WAIT: Duration = Duration::from_secs(5);

/// One line from the session's Claude Code child.
pub(crate) fn on_line(
    s: &mut Session,
    st: &mut ClaudeState,
    v: &Value,
    out: &mut Vec<SessionEvent>,
) -> Vec<Effect> {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "control_response" => on_control_response(s, st, v, out),
        "control_request" => on_control_request(s, st, v),
        "control_cancel_request" => match v.get("request_id").and_then(Value::as_str) {
            Some(cli_id) => vec![Effect::Withdrawn(cli_id.to_string())],
            None => Vec::new(),
        },
        "system" => on_system(s, st, v),
        "stream_event" | "assistant" | "user" => {
            let is_stream = kind == "stream_event";
            // A replayed message (or the stream of one) is dropped before it can
            // open a turn.
            if !is_stream && replayed(s, st, v) {
                return Vec::new();
            }
            if is_stream && s.current.is_none() && stream_is_replay(st, v) {
                return Vec::new();
            }
            // A background agent's lines come while no turn runs: shown, tagged with
            // their parent, without holding up the user's next prompt.
            if scope_of(v).is_none() {
                open_turn(s, st);
            }
            match kind {
                "stream_event" => on_stream_event(s, st, v, out),
                "assistant" => on_assistant(s, st, v, out),
                _ => on_user(s, st, v, out),
            }
            Vec::new()
        }
        "result" => on_result(s, st, v, out),
        _ => Vec::new(),
    }
}

/// A timer the driver armed went off.
pub(crate) fn on_wake(s: &mut Session, st: &mut ClaudeState, wake: &Wake) -> Vec<Effect> {
    match wake {
        Wake::AutoTurnLate if st.autos_owed > 0 && s.current.is_none() => {
            crate::log_debug!("session {}: the announced turn did not start", s.id);
            st.autos_owed = 0;
            vec![Effect::Pump]
        }
        _ => Vec::new(),
    }
}

fn on_system(s: &mut Session, st: &mut ClaudeState, v: &Value) -> Vec<Effect> {
    match v.get("subtype").and_then(Value::as_str) {
        Some("init") => {
            let Some(sid) = v.get("session_id").and_then(Value::as_str) else {
                if let Some(c) = v.get("cwd").and_then(Value::as_str) {
                    st.cli_cwd = Some(c.into());
                }
                return Vec::new();
            };
            let mut model_changed = false;
            if let Some(m) = v.get("model").and_then(Value::as_str)
                && s.resolved_model.as_deref() != Some(m)
            {
                s.resolved_model = Some(m.to_string());
                model_changed = true;
            }
            if let Some(c) = v.get("cwd").and_then(Value::as_str) {
                st.cli_cwd = Some(c.into());
            }
            let known_id = s.sdk_id.as_deref() == Some(sid);
            let same_key = s.id == sid;
            // A new id or key saves the sidecar (with the model) as it re-keys; a new
            // model of a known id saves it too.
            let mut effects = vec![Effect::Rekey(sid.to_string())];
            if model_changed && known_id && same_key {
                effects.push(Effect::SaveSidecar);
            }
            effects
        }
        // A background agent finished: the CLI will start a turn of its own.
        Some("task_notification") => {
            match s.current.take() {
                // A prompt written but not begun yet runs after the CLI's own turn.
                Some(t) if !t.emitted && !t.auto => {
                    s.awaiting.push_front(t);
                    st.autos_owed += 1;
                }
                Some(t) => {
                    s.current = Some(t);
                    st.autos_owed += 1;
                }
                None => st.autos_owed += 1,
            }
            vec![Effect::After(AUTO_TURN_WAIT, Wake::AutoTurnLate)]
        }
        _ => Vec::new(),
    }
}

fn on_result(
    s: &mut Session,
    st: &mut ClaudeState,
    v: &Value,
    out: &mut Vec<SessionEvent>,
) -> Vec<Effect> {
    // A result that belongs to the transcript before this turn (a resumed CLI
    // replays one, on any turn) ends no turn of ours: each turn gets its own.
    if result_is_replay(s, st, v) {
        st.replay_seen = false;
        crate::log_debug!("session {}: dropped a replayed result", s.id);
        return Vec::new();
    }
    st.replay_seen = false;
    if s.current.is_none() && st.autos_owed > 0 {
        open_turn(s, st);
    }
    let Some(turn) = s.current.take() else {
        crate::log_debug!("session {}: result without a turn; ignored", s.id);
        return Vec::new();
    };
    if let Some(sid) = v.get("session_id").and_then(Value::as_str)
        && s.sdk_id.is_none()
    {
        s.sdk_id = Some(sid.to_string());
    }
    st.commit_open_blocks(s, out);
    let aborted = v
        .get("terminal_reason")
        .and_then(Value::as_str)
        .is_some_and(|r| r.starts_with("aborted"));
    let refused = v
        .get("result")
        .and_then(Value::as_str)
        .and_then(|r| unavailable_command(&turn.prompt, r));
    if turn.interrupted || aborted {
        let cost = v.get("total_cost_usd").and_then(Value::as_number).cloned();
        out.push(s.event(
            turn.trace_id.as_ref(),
            Event::interrupted(cost, s.last_uuid.clone(), s.sdk_id.clone()),
        ));
    } else if let Some(name) = refused {
        // A command the CLI cannot run without a terminal (`/login`): the same notice
        // as for one the catalogue does not list, not the CLI's terse sentence.
        s.answer_with_notice(turn.trace_id.as_ref(), slash_notice(&name), out);
    } else {
        out.push(s.event(
            turn.trace_id.as_ref(),
            Event::Result {
                subtype: text_of(v.get("subtype")),
                is_error: v.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                result: text_of(v.get("result")),
                cost_usd: v.get("total_cost_usd").and_then(Value::as_number).cloned(),
                cut_uuid: s.last_uuid.clone(),
                sdk_session_id: s.sdk_id.clone(),
            },
        ));
    }
    st.reset_stream();
    // A prompt that waited behind the CLI's own turn runs now.
    s.current = s.awaiting.pop_front();
    vec![Effect::Pump]
}

fn on_control_response(
    s: &mut Session,
    st: &mut ClaudeState,
    v: &Value,
    out: &mut Vec<SessionEvent>,
) -> Vec<Effect> {
    let resp = v.get("response").cloned().unwrap_or(Value::Null);
    let Some(rid) = resp.get("request_id").and_then(Value::as_str) else {
        return Vec::new();
    };
    let Some(kind) = st.own.remove(rid) else {
        return Vec::new();
    };
    let ok = resp.get("subtype").and_then(Value::as_str) == Some("success");
    let error = resp.get("error").and_then(Value::as_str);
    match kind {
        OwnRequest::Initialize => {
            let mut effects = Vec::new();
            let body = resp.get("response").cloned().unwrap_or(Value::Null);
            if let Some(Value::Array(cmds)) = body.get("commands") {
                st.commands = Some(cmds.clone());
                effects.push(Effect::Catalogue(cmds.clone()));
            }
            st.server_info = body;
            if let Some(live) = s.child.as_mut() {
                live.initialized = true;
            }
            if !ok {
                let err = error.unwrap_or("no reason given");
                crate::log_warn!("session {}: initialize failed: {err}", s.id);
            }
            sync_mode(s, st);
            if st.pending_edit.is_some() {
                effects.push(Effect::Rewind);
            }
            effects.push(Effect::Pump);
            effects
        }
        OwnRequest::RewindFiles => {
            let body = resp.get("response");
            let refused = body
                .and_then(|b| b.get("canRewind"))
                .and_then(Value::as_bool)
                == Some(false);
            let result = if ok && !refused {
                Ok(())
            } else {
                Err(RewindError::Refused(
                    error
                        .or_else(|| body.and_then(|b| b.get("error")).and_then(Value::as_str))
                        .unwrap_or("Claude Code could not rewind the files")
                        .to_string(),
                ))
            };
            vec![Effect::Rewound(result), Effect::Pump]
        }
        OwnRequest::Interrupt | OwnRequest::SetModel | OwnRequest::SetPermissionMode => {
            if !ok {
                let err = error.unwrap_or("failed");
                out.push(s.warning(s.trace().as_ref(), "control_failed", err));
            }
            Vec::new()
        }
    }
}

fn on_control_request(s: &mut Session, st: &mut ClaudeState, v: &Value) -> Vec<Effect> {
    let Some(cli_id) = v.get("request_id").and_then(Value::as_str) else {
        return Vec::new();
    };
    let req = v.get("request").cloned().unwrap_or(Value::Null);
    let subtype = req.get("subtype").and_then(Value::as_str).unwrap_or("");
    if subtype != "can_use_tool" {
        s.send(claude::control_error(
            cli_id,
            &format!("unsupported control request: {subtype}"),
        ));
        return Vec::new();
    }
    open_turn(s, st);
    let input = req.get("input").cloned().unwrap_or_else(|| json!({}));
    let field = |k: &str| text_of(req.get(k));
    let approval = Approval {
        cli_request_id: cli_id.to_string(),
        tool: field("tool_name"),
        input: input.clone(),
        title: field("title"),
        display_name: field("display_name"),
        description: field("description"),
        tool_use_id: field("tool_use_id"),
        parent: scope_of(v).or_else(|| scope_of(&req)),
        keep: input,
    };
    let refuse =
        claude::control_success(cli_id, claude::deny_response("Too many pending approvals"));
    vec![Effect::Ask {
        approval: Box::new(approval),
        refuse,
    }]
}

/// What stands between the front of the queue and the child.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ready {
    /// Nothing to write now (no turn, one running, a child not ready, an edit under way).
    Wait,
    /// The front turn's effort differs from the child's: it is a start-up flag, so the
    /// child must be restarted (resuming) first.
    Restart,
    /// Turn `id` may be written once the transcript is known ([`write_turn`]).
    Turn(u64),
}

/// Whether the next queued turn can be written to the child now.
pub(crate) fn ready(s: &Session, st: &ClaudeState) -> Ready {
    if s.current.is_some()
        || !s.awaiting.is_empty()
        || s.queue.is_empty()
        || st.autos_owed > 0
        || st.pending_edit.is_some()
        || st.edit_lookup.is_some()
    {
        return Ready::Wait;
    }
    let Some(live) = s.child.as_ref().filter(|c| c.initialized) else {
        return Ready::Wait;
    };
    let Some(front) = s.queue.front() else {
        return Ready::Wait;
    };
    if front.preparing {
        return Ready::Wait;
    }
    if front.effort != live.effort {
        return Ready::Restart;
    }
    Ready::Turn(front.id)
}

/// How [`write_turn`] went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// The turn is the child's now (or nothing was queued).
    Sent,
    /// The daemon answered it itself (`/status`, a command this session cannot run):
    /// look at the next one.
    Answered,
}

/// Write the front turn to the child: slash commands answered here or spelled as the
/// CLI spells them (`catalogue`: the newest command list any child reported), the
/// child's model and mode brought in step, and the prompt under a fresh uuid.
pub(crate) fn write_turn(
    s: &mut Session,
    st: &mut ClaudeState,
    catalogue: Option<&Vec<Value>>,
    out: &mut Vec<SessionEvent>,
) -> Written {
    let Some(mut turn) = s.queue.pop_front() else {
        return Written::Sent;
    };
    if let Some(name) = claude::slash_name(&turn.prompt) {
        let name = name.to_string();
        if name.eq_ignore_ascii_case("status") {
            let text = status_text(s, st);
            out.push(s.event(
                turn.trace_id.as_ref(),
                Event::Text {
                    text: text.clone(),
                    id: None,
                },
            ));
            out.push(s.local_result(turn.trace_id.as_ref(), Some(text)));
            return Written::Answered;
        }
        if let Some(cat) = st.commands.as_ref().or(catalogue) {
            match claude::catalogue_match(cat, &name) {
                // The CLI's own spelling (slash names match without regard to case).
                Some(spelled) if spelled != name => {
                    if let Some(pos) = turn.prompt.find(&format!("/{name}")) {
                        turn.prompt
                            .replace_range(pos + 1..pos + 1 + name.len(), &spelled);
                    }
                }
                Some(_) => {}
                None => {
                    s.answer_with_notice(turn.trace_id.as_ref(), slash_notice(&name), out);
                    return Written::Answered;
                }
            }
        }
    }
    sync_model(s, st, turn.model.clone());
    sync_mode(s, st);
    // Replay guard: what the transcript held before this turn (read by the hub before
    // this is called) is not shown again.
    st.turn_no += 1;
    st.ordinal = 0;
    st.reset_stream();
    st.replay_seen = false;
    let uuid = crate::sys::ids::uuid_v4();
    if st.prompts.len() >= crate::providers::claude::stream::MAX_PROMPTS {
        st.prompts.pop_front();
    }
    st.prompts.push_back((s.last_uuid.clone(), uuid.clone()));
    s.send(claude::user_message(&turn.prompt, &uuid));
    turn.prompt_uuid = Some(uuid);
    if st.held_interrupt {
        st.held_interrupt = false;
        turn.interrupted = true;
        st.control(s, OwnRequest::Interrupt, json!({"subtype": "interrupt"}));
    }
    s.current = Some(turn);
    Written::Sent
}

/// The options of the next child: `opts` (what it resumes or forks, see [`next_spawn`])
/// with the front turn's model (else `model`, the session's effective one) and effort,
/// and the session's permission mode.
pub(crate) fn spawn_opts_from(
    s: &Session,
    mut opts: SpawnOpts,
    model: Option<String>,
) -> SpawnOpts {
    opts.model = s.queue.front().map_or(model, |t| t.model.clone());
    // Always explicit, "default" too: without it Claude Code 2.1.33x under the IDE
    // entrypoint starts in its own "auto" mode, which approves tools by itself.
    opts.permission_mode = Some(s.mode_label().to_string());
    opts.effort = s
        .queue
        .front()
        .map(|t| t.effort.clone())
        .unwrap_or_else(|| s.effort.clone());
    opts
}

/// A new child was started: ask it to initialize (its answer makes it ready).
pub(crate) fn on_spawned(s: &Session, st: &mut ClaudeState) {
    st.control(
        s,
        OwnRequest::Initialize,
        json!({"subtype": "initialize", "hooks": null}),
    );
}

/// Stop the running turn (the caller denies its approvals): the child is asked to
/// interrupt, or the request is held until the turn is written; a turn still queued
/// ends here as interrupted.
pub(crate) fn interrupt(s: &mut Session, st: &mut ClaudeState, out: &mut Vec<SessionEvent>) {
    let initialized = s.child.as_ref().is_some_and(|c| c.initialized);
    if let Some(turn) = s.current.as_mut() {
        turn.interrupted = true;
        if initialized {
            st.control(s, OwnRequest::Interrupt, json!({"subtype": "interrupt"}));
        } else {
            st.held_interrupt = true;
        }
    } else if !s.queue.is_empty() {
        if s.child.is_none() {
            // Waiting for a retry: the turn ends here.
            if let Some(turn) = s.queue.pop_front() {
                out.push(s.interrupted_result(turn.trace_id.as_ref()));
            }
        } else {
            // Still starting: hold it and deliver it with the turn.
            st.held_interrupt = true;
        }
    }
}

/// The notice for a slash command this session cannot run.
fn slash_notice(name: &str) -> Event {
    Event::Notice {
        level: Level::Info,
        code: "slash_unavailable".into(),
        command: Some(name.to_string()),
        text: format!("/{name} is not available in a remote Coding Bridge session."),
    }
}

/// What Claude Code answers to a command it cannot run here ("/login isn't available in
/// this environment."): the command's name, when `prompt` was that slash command.
fn unavailable_command(prompt: &str, result: &str) -> Option<String> {
    const SUFFIX: &str = "isn't available in this environment.";
    let name = claude::slash_name(prompt)?;
    let said = result.trim().strip_suffix(SUFFIX)?.trim();
    (said.trim_start_matches('/').eq_ignore_ascii_case(name)).then(|| name.to_string())
}

/// Does this `result` belong to the conversation from before the running turn (a resumed
/// CLI replays the last one, on any turn)? Claude Code 2.1.3xx names the prompt a result
/// answers (`user_message_uuid`): a prompt turn's own result names its uuid, and one
/// that names a prompt the transcript held already, or an earlier prompt of ours, is a
/// replay. A result that names none (older versions, turns the CLI starts itself) is
/// the replayed one when it follows replayed content before the turn showed anything.
fn result_is_replay(s: &Session, st: &ClaudeState, v: &Value) -> bool {
    let names: Vec<&str> = v
        .get("user_message_uuids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .chain(v.get("user_message_uuid").and_then(Value::as_str))
        .collect();
    let current = s.current.as_ref();
    if let Some(ours) = current
        .filter(|t| !t.auto)
        .and_then(|t| t.prompt_uuid.as_deref())
        && !names.is_empty()
    {
        if names.contains(&ours) {
            return false;
        }
        let waiting = |n: &str| {
            s.awaiting
                .iter()
                .any(|t| t.prompt_uuid.as_deref() == Some(n))
        };
        return names.iter().all(|n| !waiting(n))
            && names
                .iter()
                .any(|n| st.known.uuids.contains(*n) || st.prompts.iter().any(|(_, p)| p == n));
    }
    st.replay_seen && current.is_none_or(|t| !t.emitted)
}

/// How the session's next child starts: the options set aside for it (a fork), and
/// every respawn of a conversation with a real id continues it.
pub(crate) fn next_spawn(s: &Session, st: &mut ClaudeState) -> claude::SpawnOpts {
    let mut opts = std::mem::take(&mut st.next_spawn);
    if opts.resume.is_none() {
        opts.resume.clone_from(&s.sdk_id);
    }
    opts
}

/// Output while no turn runs: the CLI started one by itself.
fn open_turn(s: &mut Session, st: &mut ClaudeState) {
    if s.current.is_some() {
        return;
    }
    let mut t = Turn::new(String::new(), None);
    t.auto = true;
    st.autos_owed = st.autos_owed.saturating_sub(1);
    st.turn_no += 1;
    st.ordinal = 0;
    st.reset_stream();
    s.current = Some(t);
}

/// A stream event of a replayed message (its `message_start` named a known id), seen
/// while no turn runs.
fn stream_is_replay(st: &mut ClaudeState, v: &Value) -> bool {
    let scope = scope_of(v);
    let ev = v.get("event");
    if ev.and_then(|e| e.get("type")).and_then(Value::as_str) == Some("message_start") {
        let id = ev
            .and_then(|e| e.pointer("/message/id"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let replay = !id.is_empty() && st.known.message_ids.contains(id);
        if replay {
            st.streaming.insert(scope, (id.to_string(), true));
            st.replay_seen = true;
        }
        return replay;
    }
    st.streaming.get(&scope).is_some_and(|(_, r)| *r)
}

/// Claude Code's logic fed lines directly: no process, no thread, no hub.
#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> (Session, ClaudeState) {
        let s = Session::new("b1", std::path::PathBuf::from("/tmp"));
        (s, ClaudeState::default())
    }

    fn names(out: &[SessionEvent]) -> Vec<&'static str> {
        out.iter().map(SessionEvent::name).collect()
    }

    fn turn(prompt: &str) -> Turn {
        Turn::new(prompt.into(), Some(json!("t1")))
    }

    #[test]
    fn init_names_the_real_id_and_a_new_model_of_a_known_id_saves_the_settings() {
        let (mut s, mut st) = session();
        let mut out = Vec::new();
        let init = json!({"type": "system", "subtype": "init", "session_id": "r1",
                          "model": "claude-x", "cwd": "/real"});
        let fx = on_line(&mut s, &mut st, &init, &mut out);
        assert!(matches!(fx.as_slice(), [Effect::Rekey(id)] if id == "r1"));
        assert_eq!(s.resolved_model.as_deref(), Some("claude-x"));
        assert_eq!(st.transcript_cwd(&s), std::path::Path::new("/real"));
        // Keyed by the real id now (the hub did it): a new model is saved at once.
        s.id = "r1".into();
        s.sdk_id = Some("r1".into());
        let init = json!({"type": "system", "subtype": "init", "session_id": "r1",
                          "model": "claude-y"});
        let fx = on_line(&mut s, &mut st, &init, &mut out);
        assert!(matches!(
            fx.as_slice(),
            [Effect::Rekey(_), Effect::SaveSidecar]
        ));
        assert!(out.is_empty(), "nothing for the browser: {out:?}");
    }

    #[test]
    fn a_tool_request_is_asked_with_its_refusal_ready_and_a_cancel_withdraws_it() {
        let (mut s, mut st) = session();
        let mut out = Vec::new();
        let ask = json!({"type": "control_request", "request_id": "c1",
                         "request": {"subtype": "can_use_tool", "tool_name": "Bash",
                                     "input": {"command": "ls"}, "tool_use_id": "toolu_1"}});
        let fx = on_line(&mut s, &mut st, &ask, &mut out);
        let [Effect::Ask { approval, refuse }] = fx.as_slice() else {
            panic!("one approval asked");
        };
        assert_eq!(approval.cli_request_id, "c1");
        assert_eq!(approval.tool.as_deref(), Some("Bash"));
        assert_eq!(approval.tool_use_id.as_deref(), Some("toolu_1"));
        assert_eq!(approval.keep, json!({"command": "ls"}));
        assert!(refuse.contains("Too many pending approvals"), "{refuse}");
        // Asked while no turn ran: the CLI's own turn is opened for it.
        assert!(s.current.as_ref().is_some_and(|t| t.auto));
        let cancel = json!({"type": "control_cancel_request", "request_id": "c1"});
        let fx = on_line(&mut s, &mut st, &cancel, &mut out);
        assert!(matches!(fx.as_slice(), [Effect::Withdrawn(id)] if id == "c1"));
    }

    #[test]
    fn a_result_ends_its_own_turn_once_and_a_replayed_one_is_dropped() {
        let (mut s, mut st) = session();
        let mut t = turn("hi");
        t.prompt_uuid = Some("p1".into());
        s.current = Some(t);
        st.known.uuids.insert("old".into());
        let mut out = Vec::new();
        let replayed = json!({"type": "result", "subtype": "success", "result": "before",
                              "user_message_uuid": "old"});
        let fx = on_line(&mut s, &mut st, &replayed, &mut out);
        assert!(fx.is_empty() && out.is_empty(), "a replay ends nothing");
        assert!(s.current.is_some());
        let ours = json!({"type": "result", "subtype": "success", "result": "hello",
                          "total_cost_usd": 0.25, "user_message_uuid": "p1",
                          "session_id": "r1"});
        let fx = on_line(&mut s, &mut st, &ours, &mut out);
        assert!(
            matches!(fx.as_slice(), [Effect::Pump]),
            "the next turn may go"
        );
        assert_eq!(names(&out), ["session.result"]);
        let v = out[0].to_value();
        assert_eq!(v["result"], "hello");
        assert_eq!(v["cost_usd"], 0.25);
        assert_eq!(v["trace_id"], "t1");
        assert!(s.current.is_none());
        assert_eq!(s.sdk_id.as_deref(), Some("r1"));
    }

    #[test]
    fn a_turn_the_cli_announces_holds_the_queue_until_it_starts_or_is_late() {
        let (mut s, mut st) = session();
        s.queue.push_back(turn("next"));
        let mut out = Vec::new();
        let note = json!({"type": "system", "subtype": "task_notification"});
        let fx = on_line(&mut s, &mut st, &note, &mut out);
        assert!(matches!(
            fx.as_slice(),
            [Effect::After(d, Wake::AutoTurnLate)] if *d == AUTO_TURN_WAIT
        ));
        assert_eq!(st.autos_owed, 1);
        assert_eq!(ready(&s, &st), Ready::Wait);
        // It never started: the queue goes ahead.
        let fx = on_wake(&mut s, &mut st, &Wake::AutoTurnLate);
        assert!(matches!(fx.as_slice(), [Effect::Pump]));
        assert_eq!(st.autos_owed, 0);
        // A second late wake-up changes nothing.
        assert!(on_wake(&mut s, &mut st, &Wake::AutoTurnLate).is_empty());
    }

    #[test]
    fn slash_commands_are_answered_here_or_spelled_as_the_cli_spells_them() {
        let (mut s, mut st) = session();
        let catalogue = vec![json!({"name": "compact", "aliases": ["squash"]})];
        let mut out = Vec::new();
        s.queue.push_back(turn("/status"));
        assert_eq!(
            write_turn(&mut s, &mut st, Some(&catalogue), &mut out),
            Written::Answered
        );
        assert_eq!(names(&out), ["session.text", "session.result"]);
        out.clear();
        s.queue.push_back(turn("/nope now"));
        assert_eq!(
            write_turn(&mut s, &mut st, Some(&catalogue), &mut out),
            Written::Answered
        );
        assert_eq!(names(&out), ["session.notice", "session.result"]);
        assert_eq!(out[0].to_value()["code"], "slash_unavailable");
        out.clear();
        s.queue.push_back(turn("/Compact please"));
        assert_eq!(
            write_turn(&mut s, &mut st, Some(&catalogue), &mut out),
            Written::Sent
        );
        let running = s.current.as_ref().expect("the turn runs");
        assert_eq!(running.prompt, "/compact please");
        assert!(running.prompt_uuid.is_some(), "written under a uuid");
        assert_eq!(st.prompts.len(), 1, "remembered for a restore");
        assert!(out.is_empty());
    }

    #[test]
    fn output_while_idle_opens_the_clis_own_turn() {
        let (mut s, mut st) = session();
        let mut out = Vec::new();
        let line = json!({"type": "assistant", "uuid": "u9",
                          "message": {"id": "m9", "content": [{"type": "text", "text": "Done."}]}});
        assert!(on_line(&mut s, &mut st, &line, &mut out).is_empty());
        assert!(s.current.as_ref().is_some_and(|t| t.auto && t.emitted));
        assert_eq!(names(&out), ["session.text"]);
        assert_eq!(s.last_uuid.as_deref(), Some("u9"));
        // A replayed message (known to the transcript) opens nothing.
        let (mut s, mut st) = session();
        st.known.uuids.insert("u9".into());
        let mut out = Vec::new();
        on_line(&mut s, &mut st, &line, &mut out);
        assert!(s.current.is_none() && out.is_empty());
    }
}
