//! Driving the agents: what every provider shares, on the hub's side of the line. A
//! child's lines go to its provider's state machine, and the [`Effect`]s it returns are
//! applied here (re-keying the table, approvals, the timer, workers, the next turn);
//! a child's exit ends or silently retries its turn; a session can be re-keyed, its
//! running turn stopped, its child detached. Starting a child and writing turns, which
//! differ per agent, are in [`super::claude`], [`super::codex`] and [`super::acp`].
//!
//! Runs on the hub thread; a child's lines and exit arrive as [`ChildEvent`]s.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::Sessions;
use crate::hub::Tick;
use crate::hub::worker::Work;
use crate::protocol::events::{Decision, Event, SessionEvent};
use crate::protocol::valid_id;
use crate::providers::claude::stream::RewindError;
use crate::providers::{self, Agent, Effect, Wake, acp, claude, codex};
use crate::session::Turn;
use crate::sys::child::{ChildEvent, ExitInfo};
use crate::sys::memory;

impl Sessions {
    /// Start a child for `key` if it has none. A session with a real id is resumed.
    pub(crate) fn ensure_child(&mut self, key: &str, out: &mut Vec<SessionEvent>) {
        // Room under the cap and enough memory first (idle agents may be stopped).
        if self.sessions.get(key).is_some_and(|e| !e.holds_agent()) && !self.make_room(key, out) {
            return;
        }
        match self.sessions.get(key).map(|e| &e.agent) {
            Some(Agent::Claude(_)) => self.claude_ensure_child(key, out),
            Some(Agent::Codex(_)) => self.codex_ensure_child(key, out),
            Some(Agent::Acp(_)) => self.acp_ensure_child(key, out),
            None => {}
        }
    }

    /// Write the next queued turn when the child is ready and idle.
    pub(crate) fn pump(&mut self, key: &str, out: &mut Vec<SessionEvent>) {
        match self.sessions.get(key).map(|e| &e.agent) {
            Some(Agent::Claude(_)) => self.claude_pump(key, out),
            Some(Agent::Codex(_)) => self.codex_pump(key, out),
            Some(Agent::Acp(_)) => self.acp_pump(key, out),
            None => {}
        }
    }

    /// A batch of lines or an exit from a child.
    pub fn on_child(&mut self, ev: ChildEvent, out: &mut Vec<SessionEvent>) {
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

    /// One line from `key`'s child `child_id`: its provider says what it means.
    fn on_line(&mut self, key: &str, child_id: u64, v: Value, out: &mut Vec<SessionEvent>) {
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        let (s, agent) = e.split();
        let effects = match agent {
            Agent::Claude(st) => claude::driver::on_line(s, st, &v, out),
            Agent::Codex(st) => {
                crate::log_trace!("codex line: {v}");
                codex::driver::on_line(s, st, &v, out)
            }
            Agent::Acp(st) => {
                crate::log_trace!("acp line: {v}");
                acp::driver::on_line(s, st, &v, out)
            }
        };
        self.apply(key, child_id, effects, out);
        // Whatever the line was, the session is active (a turn the CLI starts by itself
        // counts); it may have been re-keyed meanwhile.
        if let Some(Some(key)) = self.children.get(&child_id).cloned() {
            self.touch(&key);
        }
    }

    /// A provider's timer or worker answer for the session known as `session`.
    pub(crate) fn on_wake(&mut self, session: &str, wake: Wake, out: &mut Vec<SessionEvent>) {
        let Some(key) = self.key_of(session) else {
            return;
        };
        let Some(e) = self.sessions.get_mut(&key) else {
            return;
        };
        let (s, agent) = e.split();
        let effects = match agent {
            Agent::Claude(st) => claude::driver::on_wake(s, st, &wake),
            Agent::Codex(_) => Vec::new(),
            Agent::Acp(st) => acp::driver::on_wake(s, st, &wake),
        };
        let child = s.child.as_ref().map_or(0, |c| c.handle.id);
        self.apply(&key, child, effects, out);
    }

    /// Do what a provider asked for `key` (whose child `child_id` it was about), in
    /// order, following the session to its new key after a re-key.
    pub(crate) fn apply(
        &mut self,
        key: &str,
        child_id: u64,
        effects: Vec<Effect>,
        out: &mut Vec<SessionEvent>,
    ) {
        let mut key = key.to_string();
        for effect in effects {
            match effect {
                Effect::Rekey(sid) => {
                    self.rekey(&key, &sid, out);
                    if let Some(k) = self.key_of(&sid) {
                        key = k;
                    }
                }
                Effect::SaveSidecar => self.save_sidecar(&key),
                Effect::Pump => self.pump(&key, out),
                Effect::SettleOpen => self.settle_before_result(&key, out),
                Effect::Ask { approval, refuse } => {
                    self.ask(&key, child_id, *approval, refuse, out);
                }
                Effect::Withdrawn(cli_id) => self.settle_abandoned(&key, Some(&cli_id), out),
                Effect::Fail { code, message } => {
                    // This process cannot serve the session: the next turn starts a new one.
                    self.fail_waiting(&key, code, &message, out);
                    self.detach_child(&key, out, "the agent could not start the session");
                }
                Effect::Catalogue(commands) => self.catalogue = Some(commands),
                Effect::After(delay, wake) => {
                    self.timer.at(
                        Instant::now() + delay,
                        Tick::Wake {
                            session: key.clone(),
                            wake,
                        },
                    );
                }
                Effect::Job(job) => {
                    let session = key.clone();
                    let here = self.workers.run_or_here("provider", move || Work::Wake {
                        session,
                        wake: job.run(),
                    });
                    if let Some(w) = here {
                        self.on_work(w, out);
                    }
                }
                Effect::Rewind => self.send_rewind(&key, out),
                Effect::Rewound(result) => self.rewind_done(&key, result, out),
            }
        }
    }

    /// The agent cannot run: every waiting turn ends with this error.
    pub(crate) fn fail_waiting(
        &mut self,
        key: &str,
        code: &str,
        message: &str,
        out: &mut Vec<SessionEvent>,
    ) {
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        let s = &mut e.session;
        let turns: Vec<Turn> = s.awaiting.drain(..).chain(s.queue.drain(..)).collect();
        if turns.is_empty() {
            out.push(e.error(e.trace().as_ref(), code, message));
        }
        for t in turns {
            out.push(e.error(t.trace_id.as_ref(), code, message));
        }
        if let Some(st) = e.agent.claude_state() {
            st.pending_edit = None;
        }
    }

    /// The agent named the real session id: announce it under the old id, then re-key.
    pub(crate) fn rekey(&mut self, key: &str, sid: &str, out: &mut Vec<SessionEvent>) {
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
            s.trace().as_ref(),
            Event::Identified {
                sdk_session_id: sid.to_string(),
            },
        ));
        self.audit(
            "session_identified",
            serde_json::json!({"session": key, "now": sid}),
        );
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
        self.grants.rekey(key, sid);
        self.agents_changed = true;
        self.save_sidecar(sid);
    }

    /// End the turn running now (close, edit): commit what it streamed and close it as
    /// interrupted; its child is detached by the caller.
    pub(crate) fn stop_current_turn(&mut self, key: &str, out: &mut Vec<SessionEvent>, why: &str) {
        self.deny_pending(key, out, why);
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        let turns = e.session.end_running(false);
        if turns.is_empty() {
            return;
        }
        e.commit_open(out);
        for t in turns {
            out.push(e.interrupted_result(t.trace_id.as_ref()));
        }
        // What the old process still prints belongs to no turn of ours.
        if e.child.is_some() {
            let (key, why) = (key.to_string(), why.to_string());
            self.detach_child(&key, out, &why);
        }
    }

    /// Deny the child's pending approvals and stop it; its later output is ignored.
    pub(crate) fn detach_child(&mut self, key: &str, out: &mut Vec<SessionEvent>, why: &str) {
        self.deny_pending(key, out, why);
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(live) = e.child.take() else { return };
        self.agents_changed = true;
        live.handle.close();
        self.children.insert(live.handle.id, None);
        e.agent.child_gone();
    }

    /// `key`'s child `child_id` ended: what it left open is closed, its approvals
    /// cancelled, and the turn it ran retried quietly (nothing shown yet, retries left)
    /// or ended with one `session.error`.
    fn on_exit(&mut self, key: &str, child_id: u64, status: ExitInfo, out: &mut Vec<SessionEvent>) {
        let retry_limit = self.settings.retry_limit;
        let retry_backoff = self.settings.retry_backoff;
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        if e.child.as_ref().map(|c| c.handle.id) != Some(child_id) {
            return;
        }
        let live = e.child.take();
        self.agents_changed = true;
        let lived = live.map(|l| l.started.elapsed()).unwrap_or_default();
        let label = e.agent.label();
        // What the dead process left open is closed (Claude's own blocks: below, once
        // the turn is known).
        if !e.is_claude() && e.current.is_some() {
            e.commit_open(out);
        }
        // Approvals of a dead child can no longer be answered.
        let gone = self.permissions.take_child(child_id);
        for p in &gone {
            self.audit_decision(p, "cancelled", "agent_exited", Default::default());
        }
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        for p in gone {
            out.push(e.event(
                e.trace().as_ref(),
                Event::resolved(p.id, Decision::Cancelled),
            ));
        }
        // Prompts written to the dead process are written again to the next one.
        while let Some(t) = e.awaiting.pop_back() {
            e.queue.push_front(t);
        }
        let affected = match e.current.take() {
            Some(t) => Some(t),
            None if e.queue.front().is_some_and(|t| !t.preparing) => e.queue.pop_front(),
            None => None,
        };
        let (s, agent) = e.split();
        if let (Agent::Claude(st), Some(_)) = (&mut *agent, &affected) {
            st.commit_open_blocks(s, out);
        }
        agent.child_gone();
        let Some(mut turn) = affected else {
            if status.signal == Some(libc_sigkill()) {
                crate::log_warn!(
                    "session {}: {} exited while idle, killed by SIGKILL that the node did \
                     not send (short of memory?); the next turn resumes it",
                    s.id,
                    label
                );
            } else {
                crate::log_info!(
                    "session {}: {} exited while idle ({:?}); the next turn resumes it",
                    s.id,
                    s.provider,
                    status.code
                );
            }
            if agent
                .claude_ref()
                .is_some_and(|st| st.pending_edit.is_some())
            {
                let message = exit_message(&label, &status, lived, "while restoring the code");
                self.rewind_done(key, Err(RewindError::Exited(message)), out);
            }
            return;
        };
        let exit = exit_message(&label, &status, lived, "mid-turn");
        // SIGKILL that the daemon did not send (a child it stops is detached first and
        // never comes here): the system's doing, most likely the OOM killer. Like any
        // end before output, it is retried quietly first.
        let killed = status.signal == Some(libc_sigkill());
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
        } else if killed && (turn.emitted || !turn.auto) {
            let memory = memory::read(&self.settings.limits.memory)
                .map(|m| format!(": {}", m.describe()))
                .unwrap_or_default();
            let message = format!(
                "The system stopped {label} mid-turn (SIGKILL after {:.1} s), probably for \
                 lack of memory{memory}. The conversation is kept: send again to continue it.",
                lived.as_secs_f64()
            );
            crate::log_warn!("session {}: {message}", s.id);
            out.push(s.event(
                turn.trace_id.as_ref(),
                Event::error("agent_killed", message),
            ));
        } else if turn.emitted || !turn.auto {
            crate::log_warn!("session {}: {exit}", s.id);
            out.push(s.event(
                turn.trace_id.as_ref(),
                Event::crashed(exit, status.code, status.stderr_tail),
            ));
        }
        if !s.queue.is_empty() {
            self.ensure_child(key, out);
            self.pump(key, out);
        }
    }
}

/// SIGKILL's number (9 on every Linux architecture).
const fn libc_sigkill() -> i32 {
    9
}

/// The person-readable account of a child's end, with the last line it printed.
fn exit_message(label: &str, status: &ExitInfo, lived: Duration, when: &str) -> String {
    let how = match (status.code, status.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "an unknown status".into(),
    };
    let mut m = format!(
        "{label} stopped {when} with {how} after {:.1} s",
        lived.as_secs_f64()
    );
    if let Some(last) = providers::claude::stderr_summary(&status.stderr_tail) {
        m.push_str(": ");
        m.push_str(&last);
    }
    m
}
