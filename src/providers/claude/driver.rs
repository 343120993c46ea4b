//! How each session drives its Claude Code child (PROTOCOL §5–8): starting it (always
//! resuming a session that has a real id, repairing a transcript the API would refuse),
//! writing turns in order, routing the child's output lines to the session, the turns
//! the CLI starts by itself, control requests both ways, re-keying, and what happens
//! when a child ends (silent retries, then one `session.error`).
//!
//! These are methods of [`Sessions`], run on the hub thread; the child's lines arrive
//! as [`ChildEvent`]s. What needs the disk (locating, repairing and reading transcripts)
//! runs on the hub's workers and comes back through [`Sessions::on_transcript`]. Stream translation of one line is in [`crate::hub::session`].

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::hub::Tick;
use crate::hub::session::{Live, Session, Turn};
use crate::hub::sessions::{Approval, Sessions};
use crate::hub::worker::{TranscriptDone, Work};
use crate::protocol::valid_id;
use crate::providers::claude;
use crate::providers::claude::stream::{OwnRequest, RewindError, TranscriptIo, scope_of};
use crate::providers::claude::stream::{
    on_assistant, on_stream_event, on_user, replayed, status_text, sync_mode, sync_model,
};
use crate::providers::claude::transcript;
use crate::sys::child::{self, ChildEvent, ExitInfo, Spec};

/// How long queued prompts wait for a turn the CLI announced (`task_notification`)
/// before they go ahead anyway.
const AUTO_TURN_WAIT: Duration = Duration::from_secs(5);

impl Sessions {
    /// Start a child for `key` if it has none. A session with a real id is resumed.
    pub(crate) fn ensure_child(&mut self, key: &str, out: &mut Vec<Value>) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        if s.is_codex() {
            return self.codex_ensure_child(key, out);
        }
        if s.is_acp() {
            return self.acp_ensure_child(key, out);
        }
        if s.child.is_some() {
            return;
        }
        let Some(program) = self.claude_program(key, out) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if matches!(s.claude.io, TranscriptIo::Resuming(_)) {
            return; // the disk is being asked; the child starts when it answers
        }
        let opts = next_spawn(s);
        let (Some(id), Some(dir)) = (opts.resume.clone(), self.settings.claude_dir.clone()) else {
            return self.spawn_child(key, opts, program, out);
        };
        // Locating the transcript, and repairing a copy the API would refuse, reads it
        // whole: a worker's job, the spawn follows its answer (`on_resume_plan`).
        s.claude.next_spawn = opts;
        self.next_job += 1;
        let job = self.next_job;
        s.claude.io = TranscriptIo::Resuming(job);
        let cwd = s.transcript_cwd().to_path_buf();
        let scanned = s.claude.thinking_scanned.clone();
        let session = key.to_string();
        let here = self
            .workers
            .run_or_here("resume", move || Work::Transcript {
                session,
                job,
                done: TranscriptDone::Resume(transcript::prepare_resume(&dir, &cwd, &id, scanned)),
            });
        if let Some(w) = here {
            self.on_work(w, out);
        }
    }

    /// The `claude` executable, or `None` after failing the waiting turns with advice.
    fn claude_program(&mut self, key: &str, out: &mut Vec<Value>) -> Option<std::path::PathBuf> {
        let found = claude::resolve(
            self.settings.claude_path.as_deref(),
            std::env::var_os("PATH"),
            self.settings.home.as_deref(),
        );
        if found.is_none() {
            let message = match &self.settings.claude_path {
                Some(p) => format!(
                    "Claude Code was not found at {} (--claude-path / CODING_BRIDGE_CLAUDE_PATH). \
                     Point it at the `claude` executable.",
                    p.display()
                ),
                None => "Claude Code (`claude`) was not found on PATH or in the usual install \
                         directories. Install it with `npm install -g @anthropic-ai/claude-code`, \
                         or set CODING_BRIDGE_CLAUDE_PATH / --claude-path."
                    .to_string(),
            };
            self.fail_waiting(key, "cli_not_found", &message, out);
        }
        found
    }

    /// A worker's answer for session `session`'s transcript job `job`.
    pub fn on_transcript(
        &mut self,
        session: &str,
        job: u64,
        done: TranscriptDone,
        out: &mut Vec<Value>,
    ) {
        let Some(key) = self.key_of(session) else {
            return;
        };
        match done {
            TranscriptDone::Resume(plan) => self.on_resume_plan(&key, job, plan, out),
            TranscriptDone::RestorePoint(found) => self.on_restore_point(&key, job, found, out),
            TranscriptDone::Read(delta) => {
                let Some(s) = self.sessions.get_mut(&key) else {
                    return;
                };
                let TranscriptIo::Reading { job: want, turn } = s.claude.io else {
                    return;
                };
                if want != job {
                    return;
                }
                s.claude.known.merge(delta);
                s.claude.io = TranscriptIo::Fresh { turn };
                self.pump(&key, out);
                // Fresh only for this pump: a turn held back (the CLI started one of its
                // own meanwhile) reads again when it may go.
                if let Some(s) = self.sessions.get_mut(&key)
                    && s.claude.io == (TranscriptIo::Fresh { turn })
                {
                    s.claude.io = TranscriptIo::Idle;
                }
            }
        }
    }

    /// What the disk said about the transcript to resume: start the child with it.
    fn on_resume_plan(
        &mut self,
        key: &str,
        job: u64,
        plan: transcript::ResumePlan,
        out: &mut Vec<Value>,
    ) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.claude.io != TranscriptIo::Resuming(job) {
            return;
        }
        s.claude.io = TranscriptIo::Idle;
        if s.child.is_some() {
            return;
        }
        let mut opts = next_spawn(s);
        if opts.resume.as_deref() != Some(plan.id.as_str()) {
            // What to resume changed meanwhile (an edit's fork): ask again.
            s.claude.next_spawn = opts;
            return self.ensure_child(key, out);
        }
        if plan.scanned.is_some() {
            s.claude.thinking_scanned = plan.scanned;
        }
        match &plan.path {
            // Nothing was ever saved (the CLI died before writing it): resuming would
            // fail every time, and there is no conversation to lose.
            None => {
                crate::log_warn!(
                    "session {}: no transcript of {} was saved; starting a new conversation",
                    s.id,
                    plan.id
                );
                opts = claude::SpawnOpts::default();
                s.claude.known.clear();
            }
            Some(path) => {
                if let Some(copy) = plan.repaired {
                    crate::log_info!(
                        "session {}: {} has thinking blocks without a signature; resuming a repaired copy {copy}",
                        s.id,
                        path.display()
                    );
                    opts.resume = Some(copy);
                } else if let Some(e) = plan.repair_failed {
                    crate::log_warn!(
                        "session {}: could not repair the transcript {}: {e}",
                        s.id,
                        path.display()
                    );
                }
            }
        }
        let Some(program) = self.claude_program(key, out) else {
            return;
        };
        self.spawn_child(key, opts, program, out);
    }

    /// Whether turn `turn` may be written now: the replay guard must know what the
    /// transcript holds first. Reading it is a worker's job; until its answer is in
    /// (`on_transcript`, which pumps again) this says no.
    fn transcript_fresh(&mut self, key: &str, turn: u64) -> bool {
        let Some(s) = self.sessions.get_mut(key) else {
            return false;
        };
        let (Some(sdk), Some(dir)) = (&s.sdk_id, &self.settings.claude_dir) else {
            return true;
        };
        match s.claude.io {
            TranscriptIo::Fresh { turn: t } if t == turn => {
                s.claude.io = TranscriptIo::Idle;
                return true;
            }
            TranscriptIo::Reading { turn: t, .. } if t == turn => return false,
            TranscriptIo::Resuming(_) => return false,
            // A read for another turn (since interrupted) is stale: read again.
            _ => {}
        }
        s.claude
            .known
            .follow(transcript::path(dir, s.transcript_cwd(), sdk));
        let Some(reading) = s.claude.known.reading() else {
            return true;
        };
        self.next_job += 1;
        let job = self.next_job;
        s.claude.io = TranscriptIo::Reading { job, turn };
        let session = key.to_string();
        let here = self
            .workers
            .run_or_here("transcript", move || Work::Transcript {
                session,
                job,
                done: TranscriptDone::Read(reading.read()),
            });
        // Read here (no worker could take it): this very pump goes on.
        let Some(Work::Transcript {
            done: TranscriptDone::Read(delta),
            ..
        }) = here
        else {
            return false;
        };
        s.claude.known.merge(delta);
        s.claude.io = TranscriptIo::Idle;
        true
    }

    /// Spawn the child with `opts` (its resume or fork already decided).
    fn spawn_child(
        &mut self,
        key: &str,
        mut opts: claude::SpawnOpts,
        program: std::path::PathBuf,
        out: &mut Vec<Value>,
    ) {
        let model = self.sessions.get(key).and_then(|s| match s.queue.front() {
            Some(t) => t.model.clone(),
            None => self.effective_model(s),
        });
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        opts.model = model;
        // Always explicit, "default" too: without it Claude Code 2.1.33x under the IDE
        // entrypoint starts in its own "auto" mode, which approves tools by itself.
        opts.permission_mode = Some(s.mode_label().to_string());
        opts.effort = s
            .queue
            .front()
            .map(|t| t.effort.clone())
            .unwrap_or_else(|| s.effort.clone());
        let (env, env_remove) = claude::child_env(self.settings.entrypoint.as_deref());
        let spec = Spec {
            program,
            args: claude::argv(&opts),
            cwd: s.cwd.clone(),
            env,
            env_remove,
        };
        self.next_child += 1;
        let child_id = self.next_child;
        match child::spawn(child_id, &spec, self.child_tx.clone()) {
            Ok(handle) => {
                crate::log_info!(
                    "session {}: started claude (pid {}) in {}{}",
                    s.id,
                    handle.pid,
                    s.cwd.display(),
                    match (&opts.resume, opts.fork) {
                        (Some(r), false) => format!(", resuming {r}"),
                        (Some(r), true) => format!(", forking {r}"),
                        _ => String::new(),
                    }
                );
                self.children.insert(child_id, Some(key.to_string()));
                s.child = Some(Live {
                    handle,
                    initialized: false,
                    started: Instant::now(),
                    model: opts.model.clone(),
                    mode: opts.permission_mode.clone(),
                    effort: opts.effort.clone(),
                });
                s.control(
                    OwnRequest::Initialize,
                    json!({"subtype": "initialize", "hooks": null}),
                );
            }
            Err(e) => {
                let message = format!("could not start {}: {e}", spec.program.display());
                self.fail_waiting(key, "transport_error", &message, out);
            }
        }
    }

    /// The CLI cannot run: every waiting turn ends with this error.
    pub(crate) fn fail_waiting(
        &mut self,
        key: &str,
        code: &str,
        message: &str,
        out: &mut Vec<Value>,
    ) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let turns: Vec<Turn> = s
            .claude
            .awaiting
            .drain(..)
            .chain(s.queue.drain(..))
            .collect();
        if turns.is_empty() {
            out.push(s.error(s.trace().as_ref(), code, message));
        }
        for t in turns {
            out.push(s.error(t.trace_id.as_ref(), code, message));
        }
        s.claude.pending_edit = None;
    }

    /// Write the next queued turn when the child is ready and idle.
    pub(crate) fn pump(&mut self, key: &str, out: &mut Vec<Value>) {
        if self.sessions.get(key).is_some_and(Session::is_codex) {
            return self.codex_pump(key, out);
        }
        if self.sessions.get(key).is_some_and(Session::is_acp) {
            return self.acp_pump(key, out);
        }
        loop {
            let Some(s) = self.sessions.get_mut(key) else {
                return;
            };
            if s.current.is_some()
                || !s.claude.awaiting.is_empty()
                || s.queue.is_empty()
                || s.claude.autos_owed > 0
                || s.claude.pending_edit.is_some()
                || s.claude.edit_lookup.is_some()
            {
                return;
            }
            let Some(live) = s.child.as_ref().filter(|c| c.initialized) else {
                return;
            };
            let Some(front) = s.queue.front() else { return };
            if front.preparing {
                return;
            }
            // Effort is a start-up flag: a changed effort restarts the CLI (resuming).
            let restart = front.effort != live.effort;
            if restart {
                crate::log_info!("session {}: effort changed; restarting Claude Code", s.id);
                self.detach_child(key, out, "the effort changed");
                self.ensure_child(key, out);
                return;
            }
            let front_id = front.id;
            if !self.transcript_fresh(key, front_id) {
                return;
            }
            let Some(s) = self.sessions.get_mut(key) else {
                return;
            };
            let Some(mut turn) = s.queue.pop_front() else {
                return;
            };
            if let Some(name) = claude::slash_name(&turn.prompt) {
                let name = name.to_string();
                if name.eq_ignore_ascii_case("status") {
                    let text = status_text(s);
                    out.push(s.event(
                        "session.text",
                        turn.trace_id.as_ref(),
                        json!({"text": text}),
                    ));
                    out.push(s.local_result(turn.trace_id.as_ref(), json!(text)));
                    continue;
                }
                let known = s.claude.commands.as_ref().or(self.catalogue.as_ref());
                if let Some(cat) = known {
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
                            out.push(slash_notice(s, turn.trace_id.as_ref(), &name));
                            out.push(s.local_result(turn.trace_id.as_ref(), Value::Null));
                            continue;
                        }
                    }
                }
            }
            sync_model(s, turn.model.clone());
            sync_mode(s);
            // Replay guard: what the transcript held before this turn (read above) is
            // not shown again.
            s.claude.turn_no += 1;
            s.claude.ordinal = 0;
            s.reset_stream();
            s.claude.replay_seen = false;
            let uuid = crate::sys::ids::uuid_v4();
            if s.claude.prompts.len() >= crate::providers::claude::stream::MAX_PROMPTS {
                s.claude.prompts.pop_front();
            }
            s.claude
                .prompts
                .push_back((s.claude.last_uuid.clone(), uuid.clone()));
            s.send(claude::user_message(&turn.prompt, &uuid));
            turn.prompt_uuid = Some(uuid);
            if s.claude.held_interrupt {
                s.claude.held_interrupt = false;
                turn.interrupted = true;
                s.control(OwnRequest::Interrupt, json!({"subtype": "interrupt"}));
            }
            s.current = Some(turn);
            return;
        }
    }

    /// A batch of lines or an exit from a child.
    pub fn on_child(&mut self, ev: ChildEvent, out: &mut Vec<Value>) {
        match ev {
            ChildEvent::Lines { child, values } => {
                let mut key = String::new();
                for value in values {
                    if key.is_empty() {
                        match self.children.get(&child) {
                            Some(Some(k)) => key.clone_from(k),
                            _ => return,
                        }
                        crate::sys::logging::set_context(None, Some(&key));
                    }
                    // Anything but a streaming line may re-key the session or end it:
                    // look the key up again before the next line.
                    let streaming =
                        value.get("type").and_then(Value::as_str) == Some("stream_event");
                    self.on_line(&key, child, value, out);
                    if !streaming {
                        key.clear();
                    }
                }
            }
            ChildEvent::Exited { child, status } => {
                let owner = self.children.remove(&child).flatten();
                let Some(key) = owner else { return };
                crate::sys::logging::set_context(None, Some(&key));
                self.on_exit(&key, child, status, out);
            }
        }
    }

    fn on_line(&mut self, key: &str, child_id: u64, v: Value, out: &mut Vec<Value>) {
        if self.sessions.get(key).is_some_and(Session::is_codex) {
            return self.codex_on_line(key, child_id, v, out);
        }
        if self.sessions.get(key).is_some_and(Session::is_acp) {
            return self.acp_on_line(key, child_id, v, out);
        }
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "control_response" => self.on_control_response(key, &v, out),
            "control_request" => self.on_control_request(key, child_id, &v, out),
            "control_cancel_request" => {
                let Some(cli_id) = v.get("request_id").and_then(Value::as_str) else {
                    return;
                };
                if let Some(p) = self.permissions.take_cli(child_id, cli_id)
                    && let Some(s) = self.sessions.get(key)
                {
                    out.push(s.event(
                        "permission.resolved",
                        s.trace().as_ref(),
                        json!({"request_id": p.id, "decision": "cancelled"}),
                    ));
                }
            }
            "system" => self.on_system(key, &v, out),
            "stream_event" | "assistant" | "user" => {
                let Some(s) = self.sessions.get_mut(key) else {
                    return;
                };
                let is_stream = kind == "stream_event";
                // A replayed message (or the stream of one) is dropped before it can
                // open a turn.
                if !is_stream && replayed(s, &v) {
                    return;
                }
                if is_stream && s.current.is_none() && stream_is_replay(s, &v) {
                    return;
                }
                // A background agent's lines come while no turn runs: shown, tagged with
                // their parent, without holding up the user's next prompt.
                if scope_of(&v).is_none() {
                    open_turn(s);
                }
                match kind {
                    "stream_event" => on_stream_event(s, &v, out),
                    "assistant" => on_assistant(s, &v, out),
                    _ => on_user(s, &v, out),
                }
            }
            "result" => self.on_result(key, &v, out),
            _ => {}
        }
    }

    fn on_system(&mut self, key: &str, v: &Value, out: &mut Vec<Value>) {
        match v.get("subtype").and_then(Value::as_str) {
            Some("init") => {
                let sid = v.get("session_id").and_then(Value::as_str);
                let mut model_changed = false;
                let mut known_id = false;
                if let Some(s) = self.sessions.get_mut(key) {
                    if let Some(m) = v.get("model").and_then(Value::as_str)
                        && s.resolved_model.as_deref() != Some(m)
                    {
                        s.resolved_model = Some(m.to_string());
                        model_changed = true;
                    }
                    if let Some(c) = v.get("cwd").and_then(Value::as_str) {
                        s.claude.cli_cwd = Some(c.into());
                    }
                    known_id = sid.is_some() && s.sdk_id.as_deref() == sid;
                }
                if let Some(sid) = sid {
                    // A new id or key saves the sidecar (with the model) as it re-keys.
                    self.rekey(key, sid, out);
                    if model_changed && known_id && sid == key {
                        self.save_sidecar(sid);
                    }
                }
            }
            // A background agent finished: the CLI will start a turn of its own.
            Some("task_notification") => {
                let Some(s) = self.sessions.get_mut(key) else {
                    return;
                };
                match s.current.take() {
                    // A prompt written but not begun yet runs after the CLI's own turn.
                    Some(t) if !t.emitted && !t.auto => {
                        s.claude.awaiting.push_front(t);
                        s.claude.autos_owed += 1;
                    }
                    Some(t) => {
                        s.current = Some(t);
                        s.claude.autos_owed += 1;
                    }
                    None => s.claude.autos_owed += 1,
                }
                self.timer.at(
                    Instant::now() + AUTO_TURN_WAIT,
                    Tick::AutoWait {
                        session: key.to_string(),
                    },
                );
            }
            _ => {}
        }
    }

    fn on_result(&mut self, key: &str, v: &Value, out: &mut Vec<Value>) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        // A result that belongs to the transcript before this turn (a resumed CLI
        // replays one, on any turn) ends no turn of ours: each turn gets its own.
        if result_is_replay(s, v) {
            s.claude.replay_seen = false;
            crate::log_debug!("session {}: dropped a replayed result", s.id);
            return;
        }
        s.claude.replay_seen = false;
        if s.current.is_none() && s.claude.autos_owed > 0 {
            open_turn(s);
        }
        let Some(turn) = s.current.take() else {
            crate::log_debug!("session {}: result without a turn; ignored", s.id);
            return;
        };
        if let Some(sid) = v.get("session_id").and_then(Value::as_str)
            && s.sdk_id.is_none()
        {
            s.sdk_id = Some(sid.to_string());
        }
        s.commit_open_blocks(out);
        let aborted = v
            .get("terminal_reason")
            .and_then(Value::as_str)
            .is_some_and(|r| r.starts_with("aborted"));
        let refused = v
            .get("result")
            .and_then(Value::as_str)
            .and_then(|r| unavailable_command(&turn.prompt, r));
        if turn.interrupted || aborted {
            let mut r = s.interrupted_result(turn.trace_id.as_ref());
            r["cost_usd"] = v.get("total_cost_usd").cloned().unwrap_or(Value::Null);
            out.push(r);
        } else if let Some(name) = refused {
            // A command the CLI cannot run without a terminal (`/login`): the same notice
            // as for one the catalogue does not list, not the CLI's terse sentence.
            out.push(slash_notice(s, turn.trace_id.as_ref(), &name));
            out.push(s.local_result(turn.trace_id.as_ref(), Value::Null));
        } else {
            out.push(s.event(
                "session.result",
                turn.trace_id.as_ref(),
                json!({
                    "subtype": v.get("subtype").cloned().unwrap_or(Value::Null),
                    "is_error": v.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                    "result": v.get("result").cloned().unwrap_or(Value::Null),
                    "cost_usd": v.get("total_cost_usd").cloned().unwrap_or(Value::Null),
                    "cut_uuid": s.claude.last_uuid,
                    "sdk_session_id": s.sdk_id,
                }),
            ));
        }
        s.reset_stream();
        // A prompt that waited behind the CLI's own turn runs now.
        s.current = s.claude.awaiting.pop_front();
        self.pump(key, out);
    }

    fn on_control_response(&mut self, key: &str, v: &Value, out: &mut Vec<Value>) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let resp = v.get("response").cloned().unwrap_or(Value::Null);
        let Some(rid) = resp.get("request_id").and_then(Value::as_str) else {
            return;
        };
        let Some(kind) = s.claude.own.remove(rid) else {
            return;
        };
        let ok = resp.get("subtype").and_then(Value::as_str) == Some("success");
        let error = resp.get("error").and_then(Value::as_str);
        match kind {
            OwnRequest::Initialize => {
                let body = resp.get("response").cloned().unwrap_or(Value::Null);
                if let Some(Value::Array(cmds)) = body.get("commands") {
                    s.claude.commands = Some(cmds.clone());
                    self.catalogue = Some(cmds.clone());
                }
                s.claude.server_info = body;
                if let Some(live) = s.child.as_mut() {
                    live.initialized = true;
                }
                if !ok {
                    let err = error.unwrap_or("no reason given");
                    crate::log_warn!("session {}: initialize failed: {err}", s.id);
                }
                sync_mode(s);
                if s.claude.pending_edit.is_some() {
                    self.send_rewind(key, out);
                }
                self.pump(key, out);
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
                self.rewind_done(key, result, out);
                self.pump(key, out);
            }
            OwnRequest::Interrupt | OwnRequest::SetModel | OwnRequest::SetPermissionMode => {
                if !ok {
                    let err = error.unwrap_or("failed");
                    out.push(s.warning(s.trace().as_ref(), "control_failed", err));
                }
            }
        }
    }

    fn on_control_request(&mut self, key: &str, child_id: u64, v: &Value, out: &mut Vec<Value>) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(cli_id) = v.get("request_id").and_then(Value::as_str) else {
            return;
        };
        let req = v.get("request").cloned().unwrap_or(Value::Null);
        let subtype = req.get("subtype").and_then(Value::as_str).unwrap_or("");
        if subtype != "can_use_tool" {
            s.send(claude::control_error(
                cli_id,
                &format!("unsupported control request: {subtype}"),
            ));
            return;
        }
        open_turn(s);
        let input = req.get("input").cloned().unwrap_or_else(|| json!({}));
        let field = |k: &str| req.get(k).cloned().unwrap_or(Value::Null);
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
        let cli_id = cli_id.to_string();
        if !self.put_approval(key, child_id, approval, out)
            && let Some(s) = self.sessions.get(key)
        {
            s.send(claude::control_success(
                &cli_id,
                claude::deny_response("Too many pending approvals"),
            ));
        }
    }

    /// The CLI named the real session id: announce it under the old id, then re-key.
    pub(crate) fn rekey(&mut self, key: &str, sid: &str, out: &mut Vec<Value>) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let first = s.sdk_id.as_deref() != Some(sid);
        s.sdk_id = Some(sid.to_string());
        if !valid_id(sid) {
            return;
        }
        if sid == key {
            if first {
                self.save_sidecar(key);
            }
            return;
        }
        out.push(s.event(
            "session.identified",
            s.trace().as_ref(),
            json!({"sdk_session_id": sid}),
        ));
        let Some(mut s) = self.sessions.remove(key) else {
            return;
        };
        s.id = sid.to_string();
        // A fork may land on an id that another live session holds; the newer one wins.
        self.sessions.insert(sid.to_string(), s);
        for v in self.aliases.values_mut() {
            if v == key {
                *v = sid.to_string();
            }
        }
        self.aliases.insert(key.to_string(), sid.to_string());
        for owner in self.children.values_mut().flatten() {
            if owner == key {
                *owner = sid.to_string();
            }
        }
        self.permissions.rekey(key, sid);
        self.save_sidecar(sid);
    }

    /// End the turn running now (close, edit): commit what it streamed and close it as
    /// interrupted; its child is detached by the caller.
    pub(crate) fn stop_current_turn(&mut self, key: &str, out: &mut Vec<Value>, why: &str) {
        self.deny_pending(key, out, why);
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let turns = s.end_running(false, out);
        if turns.is_empty() {
            return;
        }
        for t in turns {
            out.push(s.interrupted_result(t.trace_id.as_ref()));
        }
        // What the old process still prints belongs to no turn of ours.
        if s.child.is_some() {
            let (key, why) = (key.to_string(), why.to_string());
            self.detach_child(&key, out, &why);
        }
    }

    /// Deny the child's pending approvals and stop it; its later output is ignored.
    pub(crate) fn detach_child(&mut self, key: &str, out: &mut Vec<Value>, why: &str) {
        self.deny_pending(key, out, why);
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(live) = s.child.take() else { return };
        live.handle.close();
        self.children.insert(live.handle.id, None);
        s.claude.own.clear();
        s.reset_stream();
        s.claude.held_interrupt = false;
        s.claude.autos_owed = 0;
    }

    fn on_exit(&mut self, key: &str, child_id: u64, status: ExitInfo, out: &mut Vec<Value>) {
        let retry_limit = self.settings.retry_limit;
        let retry_backoff = self.settings.retry_backoff;
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.child.as_ref().map(|c| c.handle.id) != Some(child_id) {
            return;
        }
        let live = s.child.take();
        let lived = live.map(|l| l.started.elapsed()).unwrap_or_default();
        // What the dead process left open is closed (Claude's own blocks: below).
        if !s.is_claude() && s.current.is_some() {
            s.commit_open(out);
        }
        match &mut s.agent {
            // A new server starts from scratch (the thread is resumed by id).
            crate::hub::session::Agent::Codex(st) => **st = Default::default(),
            crate::hub::session::Agent::Acp(st) => {
                let spec = st.spec.take();
                **st = Default::default();
                st.spec = spec;
            }
            crate::hub::session::Agent::Claude => {}
        }
        // Approvals of a dead child can no longer be answered.
        for p in self.permissions.take_child(child_id) {
            out.push(s.event(
                "permission.resolved",
                s.trace().as_ref(),
                json!({"request_id": p.id, "decision": "cancelled"}),
            ));
        }
        s.claude.own.clear();
        s.claude.autos_owed = 0;
        s.claude.held_interrupt = false;
        // Prompts written to the dead process are written again to the next one.
        while let Some(t) = s.claude.awaiting.pop_back() {
            s.queue.push_front(t);
        }
        let affected = match s.current.take() {
            Some(t) => Some(t),
            None if s.queue.front().is_some_and(|t| !t.preparing) => s.queue.pop_front(),
            None => None,
        };
        let Some(mut turn) = affected else {
            s.reset_stream();
            crate::log_info!(
                "session {}: {} exited while idle ({:?}); the next turn resumes it",
                s.id,
                s.provider,
                status.code
            );
            if s.claude.pending_edit.is_some() {
                let message = exit_message(&status, lived, "while restoring the code");
                self.rewind_done(key, Err(RewindError::Exited(message)), out);
            }
            return;
        };
        s.commit_open_blocks(out);
        s.reset_stream();
        let exit = exit_message(&status, lived, "mid-turn");
        if turn.interrupted {
            out.push(s.interrupted_result(turn.trace_id.as_ref()));
        } else if !turn.emitted && !turn.auto && turn.retries < retry_limit {
            // Nothing was shown yet: run it again on a new (resuming) process, quietly.
            turn.retries += 1;
            crate::log_info!(
                "session {}: {exit}; retrying the turn ({} of {retry_limit})",
                s.id,
                turn.retries
            );
            s.queue.push_front(turn);
            self.timer.at(
                Instant::now() + retry_backoff,
                Tick::Retry {
                    session: key.to_string(),
                },
            );
            return;
        } else if turn.emitted || !turn.auto {
            crate::log_warn!("session {}: {exit}", s.id);
            out.push(s.event(
                "session.error",
                turn.trace_id.as_ref(),
                json!({
                    "code": "process_crashed",
                    "message": exit,
                    "exception": "process_crashed",
                    "exit_code": status.code,
                    "stderr": status.stderr_tail,
                }),
            ));
        }
        if !s.queue.is_empty() {
            self.ensure_child(key, out);
            self.pump(key, out);
        }
    }
}

/// The notice for a slash command this session cannot run.
fn slash_notice(s: &Session, trace: Option<&Value>, name: &str) -> Value {
    s.event(
        "session.notice",
        trace,
        json!({"level": "info", "code": "slash_unavailable", "command": name,
               "text": format!("/{name} is not available in a remote Coding Bridge session.")}),
    )
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
fn result_is_replay(s: &Session, v: &Value) -> bool {
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
            s.claude
                .awaiting
                .iter()
                .any(|t| t.prompt_uuid.as_deref() == Some(n))
        };
        return names.iter().all(|n| !waiting(n))
            && names.iter().any(|n| {
                s.claude.known.uuids.contains(*n) || s.claude.prompts.iter().any(|(_, p)| p == n)
            });
    }
    s.claude.replay_seen && current.is_none_or(|t| !t.emitted)
}

/// How the session's next child starts: the options set aside for it (a fork), and
/// every respawn of a conversation with a real id continues it.
fn next_spawn(s: &mut Session) -> claude::SpawnOpts {
    let mut opts = std::mem::take(&mut s.claude.next_spawn);
    if opts.resume.is_none() {
        opts.resume.clone_from(&s.sdk_id);
    }
    opts
}

/// The person-readable account of a child's end, with the last line it printed.
fn exit_message(status: &ExitInfo, lived: Duration, when: &str) -> String {
    let how = match (status.code, status.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "an unknown status".into(),
    };
    let mut m = format!(
        "Claude Code stopped {when} with {how} after {:.1} s",
        lived.as_secs_f64()
    );
    if let Some(last) = claude::stderr_summary(&status.stderr_tail) {
        m.push_str(": ");
        m.push_str(&last);
    }
    m
}

/// Output while no turn runs: the CLI started one by itself.
fn open_turn(s: &mut Session) {
    if s.current.is_some() {
        return;
    }
    let mut t = Turn::new(String::new(), None);
    t.auto = true;
    s.claude.autos_owed = s.claude.autos_owed.saturating_sub(1);
    s.claude.turn_no += 1;
    s.claude.ordinal = 0;
    s.reset_stream();
    s.current = Some(t);
}

/// A stream event of a replayed message (its `message_start` named a known id), seen
/// while no turn runs.
fn stream_is_replay(s: &mut Session, v: &Value) -> bool {
    let scope = scope_of(v);
    let ev = v.get("event");
    if ev.and_then(|e| e.get("type")).and_then(Value::as_str) == Some("message_start") {
        let id = ev
            .and_then(|e| e.pointer("/message/id"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let replay = !id.is_empty() && s.claude.known.message_ids.contains(id);
        if replay {
            s.claude.streaming.insert(scope, (id.to_string(), true));
            s.claude.replay_seen = true;
        }
        return replay;
    }
    s.claude.streaming.get(&scope).is_some_and(|(_, r)| *r)
}
