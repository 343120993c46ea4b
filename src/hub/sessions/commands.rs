//! The browser's session commands: `session.start` (a new session, or a turn for one held
//! here), `session.send`, `session.interrupt`, `session.close` and the two snapshots; a
//! turn's setting overrides and its place in the queue. `session.edit` is in
//! [`super::edit`], approvals in [`super::approvals`]. Runs on the hub thread.

use std::path::PathBuf;

use serde_json::Value;

use super::{Entry, MAX_QUEUED_TURNS, MAX_SESSIONS, Sessions};
use crate::history::sidecar;
use crate::protocol::SessionId;
use crate::protocol::commands::{Command, Kind, Origin, Start, TurnCmd};
use crate::protocol::events::{Event, SessionEvent, SessionSummary, Status};
use crate::providers::claude::{self, stream::sync_mode};
use crate::providers::{Agent, acp, codex};
use crate::session::{Session, Turn};
use crate::sys::fsutil::expand_home;

impl Sessions {
    /// Apply a session or approval command; any other command is handed back. The
    /// session it names is active now (see [`Sessions::touch`]).
    pub(crate) fn command(&mut self, cmd: Command, out: &mut Vec<SessionEvent>) -> Option<Command> {
        let sid = cmd.session_id.clone();
        let rest = self.apply_command(cmd, out);
        if rest.is_none()
            && let Some(key) = sid.as_deref().and_then(|s| self.key_of(s))
        {
            self.touch(&key);
        }
        rest
    }

    fn apply_command(&mut self, cmd: Command, out: &mut Vec<SessionEvent>) -> Option<Command> {
        let trace = cmd.trace_id.clone();
        let sid = cmd.session_id.clone();
        let origin = cmd.origin;
        let unknown = |out: &mut Vec<SessionEvent>| {
            let mut e = SessionEvent::reply(
                trace.as_ref(),
                Event::error(
                    "unknown_session",
                    format!(
                        "unknown session: {}; start it again (or open it from history)",
                        sid.as_deref().unwrap_or("")
                    ),
                ),
            );
            e.session_id.clone_from(&sid);
            out.push(e);
        };
        let key = sid.as_deref().and_then(|s| self.key_of(s));
        match cmd.kind {
            Kind::SessionStart(start) => {
                let sid = sid.unwrap_or_default();
                // A live session (or, for a retry, the live session it resumes) continues.
                let live = key.or_else(|| start.resume.as_deref().and_then(|r| self.key_of(r)));
                match live {
                    // The browser's Retry: it re-sends the last prompt with its default
                    // mode (bypass) and no effort, whatever the session used. A session
                    // held here keeps its own; the composer changes them through
                    // session.send/session.edit (PROTOCOL §6).
                    Some(key) => {
                        let mut turn = start.turn;
                        if let Some(s) = self.sessions.get(&key) {
                            let asked = turn.mode.take().flatten();
                            if asked.is_some() && asked != s.permission_mode {
                                crate::log_info!(
                                    "session {}: a start for a held session keeps its permission mode {} (asked: {})",
                                    s.id,
                                    s.mode_label(),
                                    asked.as_deref().unwrap_or("default")
                                );
                            }
                            turn.effort = None;
                        }
                        self.send_turn(&key, turn, origin, out)
                    }
                    None => self.start(&sid, start, origin, out),
                }
            }
            Kind::SessionSend(t) => match key {
                Some(key) => self.send_turn(&key, t, origin, out),
                None => unknown(out),
            },
            Kind::SessionEdit(mut e) => match key {
                Some(key) => {
                    let trace = e.turn.trace.clone();
                    self.police_turn_mode(&key, &mut e.turn.mode, origin, trace.as_ref(), out);
                    self.edit(&key, e, out)
                }
                None => unknown(out),
            },
            Kind::SessionInterrupt => {
                if let Some(key) = key {
                    self.interrupt(&key, out);
                }
            }
            // Closing a session this node does not know is a no-op (another device may
            // have closed it already).
            Kind::SessionClose => {
                if let Some(key) = key {
                    self.close(&key, trace, out);
                }
            }
            Kind::PermissionResolve(r) => self.resolve_permission(r, trace, origin, out),
            Kind::PermissionsList => {
                let requests = self.permissions.snapshot();
                out.push(SessionEvent::reply(
                    trace.as_ref(),
                    Event::PermissionsSnapshot { requests },
                ));
            }
            Kind::SessionsList => {
                let mut sessions: Vec<SessionSummary> = self
                    .sessions
                    .values()
                    .map(|s| SessionSummary {
                        session_id: s.id.clone(),
                        status: if s.running() {
                            Status::Running
                        } else {
                            Status::Idle
                        },
                        describe: s.describe(),
                    })
                    .collect();
                sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
                out.push(SessionEvent::reply(
                    trace.as_ref(),
                    Event::SessionsSnapshot { sessions },
                ));
            }
            kind => return Some(Command { kind, ..cmd }),
        }
        None
    }

    fn start(&mut self, sid: &str, start: Start, origin: Origin, out: &mut Vec<SessionEvent>) {
        let t = start.turn;
        let trace = t.trace.clone();
        let fail = |out: &mut Vec<SessionEvent>, code: &str, message: String| {
            out.push(SessionEvent::new(
                sid,
                trace.as_ref(),
                Event::error(code, message),
            ));
        };
        let provider = start.provider.as_str();
        if !self.police_provider(sid, provider, origin, trace.as_ref(), out) {
            return;
        }
        let Some(agent) = Agent::named(provider, &self.settings.acp_agents) else {
            fail(
                out,
                "provider_error",
                format!("unsupported provider: {provider}"),
            );
            return;
        };
        if self.sessions.len() >= MAX_SESSIONS {
            fail(
                out,
                "provider_error",
                format!("too many live sessions (at most {MAX_SESSIONS}); close one first"),
            );
            return;
        }
        let resume = start.resume;
        // Resuming from history: the sidecar restores what the transcript cannot carry.
        let saved = resume
            .as_ref()
            .and_then(|r| sidecar::load(&self.settings.config_dir, r))
            .unwrap_or(Value::Null);
        let saved_str = |k: &str| {
            saved
                .get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let cwd = match start.cwd.as_deref() {
            Some(c) => expand_home(c, self.settings.home.as_deref()),
            None => saved_str("cwd")
                .map(PathBuf::from)
                .unwrap_or_else(|| self.settings.default_cwd.clone()),
        };
        if !cwd.is_dir() {
            fail(
                out,
                "provider_error",
                format!("the working directory {} does not exist", cwd.display()),
            );
            return;
        }
        let Some(cwd) = self.police_cwd(sid, cwd, origin, trace.as_ref(), out) else {
            return;
        };
        let asked_mode = t
            .mode
            .clone()
            .unwrap_or_else(|| saved_str("permission_mode"));
        let (mode, refused) = self.police_start_mode(sid, asked_mode.clone(), origin);
        let mut s = Session::new(sid, cwd);
        s.provider = provider.to_string();
        s.model = t.model.clone().unwrap_or_else(|| saved_str("model"));
        s.permission_mode = mode;
        s.effort = t.effort.clone().unwrap_or_else(|| saved_str("effort"));
        s.resolved_model = saved_str("resolved_model");
        // A resumed session has its real id already: every child resumes it.
        s.sdk_id = resume.map(SessionId::into_string);
        out.push(s.event(trace.as_ref(), Event::Started(s.describe())));
        let refused_mode = refused
            .as_ref()
            .map(|_| asked_mode.clone().unwrap_or_else(|| "default".to_string()));
        if let Some(notice) = refused {
            out.push(s.event(trace.as_ref(), notice));
        }
        let key = sid.to_string();
        let mut entry = Entry::new(s, agent);
        entry.refused_mode = refused_mode;
        self.sessions.insert(key.clone(), entry);
        self.audit_start(&key, asked_mode.as_deref(), origin);
        if t.has_prompt() || t.has_media() {
            self.queue_turn(&key, t, out);
        }
        self.ensure_child(&key, out);
        self.pump(&key, out);
    }

    /// Apply a turn's setting overrides to the session (model and effort for the turns
    /// that follow, the permission mode live).
    pub(super) fn apply_overrides(&mut self, key: &str, t: &TurnCmd) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if let Some(m) = &t.model {
            s.model.clone_from(m);
        }
        if let Some(e) = &t.effort {
            s.effort.clone_from(e);
        }
        if let Some(m) = &t.mode {
            s.permission_mode.clone_from(m);
            let (s, agent) = s.split();
            if let Some(st) = agent.claude_state() {
                sync_mode(s, st);
            }
        }
    }

    fn send_turn(
        &mut self,
        key: &str,
        mut t: TurnCmd,
        origin: Origin,
        out: &mut Vec<SessionEvent>,
    ) {
        let trace = t.trace.clone();
        self.police_turn_mode(key, &mut t.mode, origin, trace.as_ref(), out);
        self.apply_overrides(key, &t);
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        if !t.has_prompt() && !t.has_media() {
            if !t.changes_settings() {
                out.push(s.error(
                    t.trace.as_ref(),
                    "provider_error",
                    "Nothing to send: the prompt is empty and nothing is attached.",
                ));
            }
            self.save_sidecar(key);
            return;
        }
        self.queue_turn(key, t, out);
        self.save_sidecar(key);
        self.ensure_child(key, out);
        self.pump(key, out);
    }

    /// The turn for `t`, with the session's current model and effort.
    pub(super) fn new_turn(&self, key: &str, t: &TurnCmd) -> Option<Turn> {
        let s = self.sessions.get(key)?;
        let mut turn = Turn::new(t.prompt.clone(), t.trace.clone());
        turn.model = self.effective_model(s);
        turn.effort = s.effort.clone();
        Some(turn)
    }

    /// Queue a turn (and save its media first, if it has any).
    fn queue_turn(&mut self, key: &str, mut t: TurnCmd, out: &mut Vec<SessionEvent>) {
        let Some(turn) = self.new_turn(key, &t) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.queue.len() >= MAX_QUEUED_TURNS {
            out.push(s.error(
                t.trace.as_ref(),
                "provider_error",
                &format!("too many queued turns (at most {MAX_QUEUED_TURNS})"),
            ));
            return;
        }
        s.queue.push_back(turn);
        self.prepare_media(key, &mut t, out);
    }

    /// `session.interrupt`: deny what the session waits for, then stop its turn. The
    /// turn ends with a `session.result` of subtype `interrupted`.
    fn interrupt(&mut self, key: &str, out: &mut Vec<SessionEvent>) {
        self.deny_pending(key, out, "interrupted");
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        let (s, agent) = e.split();
        match agent {
            Agent::Claude(st) => claude::driver::interrupt(s, st, out),
            Agent::Codex(st) => codex::driver::interrupt(s, st, out),
            Agent::Acp(_) => acp::driver::interrupt(s, out),
        }
    }

    pub(super) fn close(&mut self, key: &str, trace: Option<Value>, out: &mut Vec<SessionEvent>) {
        self.stop_current_turn(key, out, "the session was closed");
        self.detach_child(key, out, "the session was closed");
        self.end_session_grants(key);
        if let Some(s) = self.sessions.remove(key) {
            self.agents_changed = true;
            out.push(s.event(trace.as_ref(), Event::Closed));
            self.aliases.retain(|_, v| v != key);
        }
    }
}
