//! All sessions (PROTOCOL §3–8): the browser's `session.*` and permission commands,
//! already parsed into typed values ([`crate::protocol::commands`]), applied to the sessions.
//! How each session drives its CLI child (spawning, turns, output, exits and retries) is
//! in [`crate::providers::claude::driver`]; how one session's CLI output becomes node events is in
//! [`crate::hub::session`].
//!
//! Owned by the hub thread; no locks. Each session has at most one child
//! ([`crate::sys::child`]); its lines arrive as [`ChildEvent`]s on the hub's child channel.
//! Everything that happens is pushed as an event payload onto an `out` vector that the
//! hub then emits (and, for durable events, queues for reliable delivery). Deadlines
//! (permission timeouts, crash retries) go through the hub's timer as [`Tick`]s.
//!
//! A session is keyed by its current id: first the browser's provisional id, then the
//! CLI's real session id once `system/init` names it (the old id stays an alias).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::Sender;
use serde_json::{Value, json};

use crate::hub::Tick;
use crate::hub::permissions::Permissions;
use crate::hub::session::{Agent, Session, Turn};
use crate::hub::timer::Timer;
use crate::hub::worker::{TranscriptDone, Work, Workers};
use crate::protocol::commands::{Command, Edit, Kind, Resolve, Start, TurnCmd};
use crate::providers::claude;
use crate::providers::claude::stream::sync_mode;
use crate::providers::claude::stream::{EditPlan, OwnRequest, RewindError};
use crate::sys::child::ChildEvent;
use crate::sys::saver::Saver;

/// Live sessions allowed at once.
pub const MAX_SESSIONS: usize = 64;
/// Turns waiting behind the running one, per session.
pub const MAX_QUEUED_TURNS: usize = 64;

/// Daemon-wide settings sessions need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_cwd: PathBuf,
    pub default_model: Option<String>,
    pub claude_path: Option<PathBuf>,
    pub codex_path: Option<PathBuf>,
    /// The ACP agents this node can run (built-in and declared).
    pub acp_agents: Vec<crate::providers::acp::AgentSpec>,
    pub home: Option<PathBuf>,
    /// Claude Code's own directory (`$CLAUDE_CONFIG_DIR`, else `~/.claude`).
    pub claude_dir: Option<PathBuf>,
    pub permission_timeout: Option<Duration>,
    /// Silent retries of a turn whose CLI died before any output, and the pause before each.
    pub retry_limit: u32,
    pub retry_backoff: Duration,
    /// `CLAUDE_CODE_ENTRYPOINT` for the children (`None`: not set).
    pub entrypoint: Option<String>,
    /// Where the per-session settings sidecars live (`<config_dir>/sessions`).
    pub config_dir: PathBuf,
    pub media: crate::node::media::Settings,
}

/// All sessions of this daemon.
pub struct Sessions {
    pub(crate) settings: Settings,
    pub(crate) workers: Workers,
    /// Writes the settings sidecars, in order.
    pub(crate) saver: Saver,
    pub(crate) timer: Timer<Tick>,
    pub(crate) child_tx: Sender<ChildEvent>,
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) aliases: HashMap<String, String>,
    /// Child id → session key; `None` once detached (closed or replaced).
    pub(crate) children: HashMap<u64, Option<String>>,
    pub(crate) permissions: Permissions,
    pub(crate) next_child: u64,
    /// The last command catalogue any child reported.
    pub(crate) catalogue: Option<Vec<Value>>,
    /// Numbers the worker jobs of the sessions (a late answer to an old one is dropped).
    pub(crate) next_job: u64,
}

impl Sessions {
    pub fn new(
        settings: Settings,
        timer: Timer<Tick>,
        child_tx: Sender<ChildEvent>,
        workers: Workers,
        saver: Saver,
    ) -> Sessions {
        Sessions {
            settings,
            workers,
            saver,
            child_tx,
            sessions: HashMap::new(),
            aliases: HashMap::new(),
            children: HashMap::new(),
            permissions: Permissions::with_timer(timer.clone()),
            timer,
            next_child: 0,
            catalogue: None,
            next_job: 0,
        }
    }

    /// The command catalogue last reported by a CLI, if any.
    pub fn catalogue(&self) -> Option<&Vec<Value>> {
        self.catalogue.as_ref()
    }

    /// The id a session is known by now: `id`, or the real id it was re-keyed to.
    pub fn current_id(&self, id: &str) -> String {
        self.aliases
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    pub(crate) fn key_of(&self, id: &str) -> Option<String> {
        if self.sessions.contains_key(id) {
            return Some(id.to_string());
        }
        self.aliases
            .get(id)
            .filter(|k| self.sessions.contains_key(*k))
            .cloned()
    }

    /// The model a turn runs with: the browser's choice, else the daemon's default.
    /// (The daemon's default model is a Claude model: other agents use their own.)
    pub(crate) fn effective_model(&self, s: &Session) -> Option<String> {
        match s.agent {
            Agent::Claude => s
                .model
                .clone()
                .or_else(|| self.settings.default_model.clone()),
            _ => s.model.clone(),
        }
    }

    /// Handle a session or permission command; false if `action` is not one of ours.
    /// Apply a session or approval command; any other command is handed back.
    pub fn command(&mut self, cmd: Command, out: &mut Vec<Value>) -> Option<Command> {
        let trace = cmd.trace_id.clone();
        let sid = cmd.session_id.clone();
        let unknown = |out: &mut Vec<Value>| {
            let mut p = json!({"event": "session.error",
                               "message": format!("unknown session: {}", sid.as_deref().unwrap_or(""))});
            if let Some(s) = &sid {
                p["session_id"] = json!(s);
            }
            if let Some(t) = &trace {
                p["trace_id"] = t.clone();
            }
            out.push(p);
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
                        self.send_turn(&key, turn, out)
                    }
                    None => self.start(&sid, start, out),
                }
            }
            Kind::SessionSend(t) => match key {
                Some(key) => self.send_turn(&key, t, out),
                None => unknown(out),
            },
            Kind::SessionEdit(e) => match key {
                Some(key) => self.edit(&key, e, out),
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
            Kind::PermissionResolve(r) => self.resolve_permission(r, trace, out),
            Kind::PermissionsList => {
                let requests = self.permissions.snapshot();
                let mut p = json!({"event": "permissions.snapshot", "requests": requests});
                if let Some(t) = trace {
                    p["trace_id"] = t;
                }
                out.push(p);
            }
            Kind::SessionsList => {
                let mut list: Vec<Value> = self
                    .sessions
                    .values()
                    .map(|s| {
                        let mut d = s.describe();
                        d["session_id"] = json!(s.id);
                        d["status"] = json!(if s.running() { "running" } else { "idle" });
                        d
                    })
                    .collect();
                list.sort_by(|a, b| a["session_id"].as_str().cmp(&b["session_id"].as_str()));
                let mut p = json!({"event": "sessions.snapshot", "sessions": list});
                if let Some(t) = trace {
                    p["trace_id"] = t;
                }
                out.push(p);
            }
            kind => return Some(Command { kind, ..cmd }),
        }
        None
    }

    fn start(&mut self, sid: &str, start: Start, out: &mut Vec<Value>) {
        let t = start.turn;
        let trace = t.trace.clone();
        let fail = |out: &mut Vec<Value>, code: &str, message: String| {
            let mut p = json!({"event": "session.error", "session_id": sid, "code": code, "message": message});
            if let Some(t) = &trace {
                p["trace_id"] = t.clone();
            }
            out.push(p);
        };
        let provider = start.provider.as_str();
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
        if let Some(r) = &resume
            && !valid_id(r)
        {
            fail(
                out,
                "provider_error",
                format!("invalid resume_session_id {r:?}"),
            );
            return;
        }
        // Resuming from history: the sidecar restores what the transcript cannot carry.
        let saved = resume
            .as_deref()
            .and_then(|r| crate::history::sidecar::load(&self.settings.config_dir, r))
            .unwrap_or(Value::Null);
        let saved_str = |k: &str| {
            saved
                .get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let cwd = match start.cwd.as_deref() {
            Some(c) => crate::sys::fsutil::expand_home(c, self.settings.home.as_deref()),
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
        let mut s = Session::new(sid, cwd);
        s.provider = provider.to_string();
        s.agent = agent;
        s.model = t.model.clone().unwrap_or_else(|| saved_str("model"));
        s.permission_mode = t
            .mode
            .clone()
            .unwrap_or_else(|| saved_str("permission_mode"));
        s.effort = t.effort.clone().unwrap_or_else(|| saved_str("effort"));
        s.resolved_model = saved_str("resolved_model");
        // A resumed session has its real id already: every child resumes it.
        s.sdk_id = resume;
        out.push(s.event("session.started", trace.as_ref(), s.describe()));
        let key = sid.to_string();
        self.sessions.insert(key.clone(), s);
        if t.has_prompt() || t.has_media() {
            self.queue_turn(&key, t, out);
        }
        self.ensure_child(&key, out);
        self.pump(&key, out);
    }

    /// Apply a turn's setting overrides to the session (model and effort for the turns
    /// that follow, the permission mode live).
    fn apply_overrides(&mut self, key: &str, t: &TurnCmd) {
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
            sync_mode(s);
        }
    }

    fn send_turn(&mut self, key: &str, t: TurnCmd, out: &mut Vec<Value>) {
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
    fn new_turn(&self, key: &str, t: &TurnCmd) -> Option<Turn> {
        let s = self.sessions.get(key)?;
        let mut turn = Turn::new(t.prompt.clone(), t.trace.clone());
        turn.model = self.effective_model(s);
        turn.effort = s.effort.clone();
        Some(turn)
    }

    /// Queue a turn (and save its media first, if it has any).
    fn queue_turn(&mut self, key: &str, mut t: TurnCmd, out: &mut Vec<Value>) {
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

    /// If the newest turn of `key` came with images or attachments, hold it and save
    /// them on a worker; [`Sessions::on_prepared`] lets it run.
    /// The media move to the worker (no copy: images can be tens of MiB).
    fn prepare_media(&mut self, key: &str, t: &mut TurnCmd, out: &mut Vec<Value>) {
        if !t.has_media() {
            return;
        }
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(turn) = s.queue.back_mut() else {
            return;
        };
        turn.preparing = true;
        let (turn_id, cwd, sid) = (turn.id, s.cwd.clone(), s.id.clone());
        let media = self.settings.media.clone();
        let owner = key.to_string();
        let (images, attachments) = (t.images.take(), t.attachments.take());
        let files = std::mem::take(&mut t.files);
        let bytes = json_bytes(images.as_ref())
            + json_bytes(attachments.as_ref())
            + files.iter().map(|f| f.bytes.len()).sum::<usize>();
        let started = self
            .workers
            .run_sized("media", bytes, move || Work::Prepared {
                session: owner,
                turn: turn_id,
                prepared: crate::node::media::prepare(
                    &cwd,
                    &sid,
                    images.as_ref(),
                    attachments.as_ref(),
                    files,
                    &media,
                ),
            });
        if !started {
            let prepared = crate::node::media::Prepared {
                saved: Vec::new(),
                notices: vec![
                    "the node is busy; the images and attachments of this turn were not saved"
                        .into(),
                ],
            };
            self.on_prepared(key, turn_id, prepared, out);
        }
    }

    /// A turn's media are saved: add the note to its prompt and let it run. A turn left
    /// with nothing to run (no prompt, nothing saved) is dropped with a `session.error`.
    pub fn on_prepared(
        &mut self,
        session: &str,
        turn_id: u64,
        prepared: crate::node::media::Prepared,
        out: &mut Vec<Value>,
    ) {
        let Some(key) = self.key_of(session) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let Some(pos) = s.queue.iter().position(|t| t.id == turn_id) else {
            return;
        };
        let Some(turn) = s.queue.get_mut(pos) else {
            return;
        };
        turn.prompt = crate::providers::note::with_note(&turn.prompt, &prepared.note());
        turn.images = prepared
            .saved
            .iter()
            .filter(|(_, kind)| kind.starts_with("image/"))
            .map(|(p, _)| p.clone())
            .collect();
        turn.preparing = false;
        let trace = turn.trace_id.clone();
        let empty = turn.prompt.trim().is_empty();
        for text in &prepared.notices {
            out.push(s.warning(trace.as_ref(), "attachment_skipped", text));
        }
        if empty {
            s.queue.remove(pos);
            let why = if prepared.notices.is_empty() {
                "nothing was attached".to_string()
            } else {
                prepared.notices.join("; ")
            };
            out.push(s.error(
                trace.as_ref(),
                "provider_error",
                &format!(
                    "Nothing to run: the prompt is empty and none of the attachments could be used ({why})."
                ),
            ));
        }
        self.pump(&key, out);
    }

    /// Save the session's settings beside its transcript id (on a worker; small file).
    pub(crate) fn save_sidecar(&self, key: &str) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let Some(id) = s.sdk_id.clone() else {
            return;
        };
        let body = json!({
            "provider": s.provider,
            "cwd": s.cwd,
            "model": s.model,
            "resolved_model": s.resolved_model,
            "permission_mode": s.permission_mode,
            "effort": s.effort,
        });
        let dir = self.settings.config_dir.clone();
        let path = dir.join("sessions").join(&id);
        self.saver.save(path, move || {
            crate::history::sidecar::save(&dir, &id, &body);
        });
    }

    /// Ids (current and provisional) of sessions with a turn in flight.
    pub fn running_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for s in self.sessions.values().filter(|s| s.running()) {
            ids.push(s.id.clone());
            if let Some(sdk) = &s.sdk_id {
                ids.push(sdk.clone());
            }
        }
        // The ids the browser knew them by before the re-key, too.
        for (old, key) in &self.aliases {
            if self.sessions.get(key).is_some_and(Session::running) {
                ids.push(old.clone());
            }
        }
        ids
    }

    /// What `history.get` of `id` should open when `id` is a session held here (its own
    /// id or one it had before a re-key): its provider, the agent's real id once known,
    /// whether a turn runs, and what the conversation holds in memory so far (the
    /// prompts written or waiting, and the text streaming now), for the moment before
    /// the agent has a transcript to read.
    pub(crate) fn live_history(&self, id: &str) -> Option<LiveHistory> {
        let s = self.sessions.get(&self.key_of(id)?)?;
        let mut events = Vec::new();
        let turns = s
            .current
            .iter()
            .chain(s.claude.awaiting.iter())
            .chain(s.queue.iter())
            .filter(|t| !t.auto);
        for t in turns {
            events.push(
                json!({"kind": "prompt", "text": crate::providers::note::user_part(&t.prompt)}),
            );
        }
        let mut open: Vec<_> = s.claude.blocks.iter().collect();
        open.sort_by_key(|(k, _)| k.1);
        for (_, b) in open {
            let kind = match b.kind {
                crate::providers::claude::stream::BlockKind::Text => "text",
                crate::providers::claude::stream::BlockKind::Thinking => "thinking",
                crate::providers::claude::stream::BlockKind::Other => continue,
            };
            if !b.text.is_empty() && b.parent.is_none() {
                events.push(json!({"kind": kind, "text": b.text}));
            }
        }
        let title = events
            .first()
            .and_then(|e| e["text"].as_str())
            .map(|t| crate::hub::session::short(t, 80))
            .unwrap_or_else(|| "(no prompt)".to_string());
        let detail = json!({
            "event": "history.detail",
            "provider": s.provider,
            "session_id": id,
            "title": title,
            "cwd": s.cwd,
            "git_branch": null,
            "model": s.model.as_deref().unwrap_or(""),
            "resolved_model": s.resolved_model,
            "permission_mode": s.mode_label(),
            "effort": s.effort,
            "events": events,
            "truncated": false,
            "running": s.running(),
        });
        Some(LiveHistory {
            provider: s.provider.clone(),
            real_id: s.sdk_id.clone().filter(|r| valid_id(r)),
            running: s.running(),
            detail,
        })
    }

    /// `session.edit`: fork the conversation at `cut_uuid` and run the edited turn there,
    /// with the edit's settings and media; with `restore_code`, first undo the file
    /// changes made since (a failed restore is a `session.error` and no fork).
    fn edit(&mut self, key: &str, e: Edit, out: &mut Vec<Value>) {
        let t = e.turn;
        let trace = t.trace.clone();
        if let Some(s) = self.sessions.get(key)
            && !s.is_claude()
        {
            out.push(s.event(
                "session.notice",
                trace.as_ref(),
                json!({"level": "info", "code": "edit_unsupported",
                       "text": format!("Editing an earlier prompt is not available in {} sessions.", s.provider)}),
            ));
            out.push(s.local_result(trace.as_ref(), Value::Null));
            return;
        }
        if !t.has_prompt() && !t.has_media() {
            if let Some(s) = self.sessions.get(key) {
                out.push(s.error(
                    trace.as_ref(),
                    "provider_error",
                    "An edit needs a prompt or an attachment.",
                ));
            }
            return;
        }
        let cut = e.cut_uuid;
        let restore = e.restore_code;
        self.apply_overrides(key, &t);
        // The edit's media are saved when the fork starts (see `restart_for_edit`).
        let Some(turn) = self.new_turn(key, &t) else {
            return;
        };
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let mut plan = EditPlan {
            turn,
            media: t,
            cut_uuid: cut,
            restore_to: None,
        };
        if !restore {
            self.restart_for_edit(key, plan, out);
            return;
        }
        // The prompt right after the cut: one this node wrote (its uuid is known at once),
        // else the first prompt after the cut in the transcript, which a worker reads.
        let sent = s
            .claude
            .prompts
            .iter()
            .find(|(before, _)| before.as_deref() == plan.cut_uuid.as_deref())
            .map(|(_, uuid)| uuid.clone());
        if let Some(uuid) = sent {
            plan.restore_to = Some(uuid);
            return self.rewind_for_edit(key, plan, out);
        }
        let (Some(sdk), Some(dir)) = (&s.sdk_id, &self.settings.claude_dir) else {
            return self.restore_point_missing(key, &plan, out);
        };
        let path = crate::providers::claude::transcript::path(dir, s.transcript_cwd(), sdk);
        let cut = plan.cut_uuid.clone();
        self.next_job += 1;
        let job = self.next_job;
        let session = key.to_string();
        let lookup =
            move || crate::providers::claude::transcript::first_prompt_after(&path, cut.as_deref());
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        s.claude.edit_lookup = Some((job, plan));
        let inline = lookup.clone();
        let sent = self.workers.run("edit", move || Work::Transcript {
            session,
            job,
            done: TranscriptDone::RestorePoint(lookup()),
        });
        if !sent {
            crate::log_warn!("every worker is busy; reading the transcript on the hub");
            self.on_restore_point(key, job, inline(), out);
        }
    }

    /// A worker found (or did not) the prompt an edit with "restore code" rewinds to.
    pub(crate) fn on_restore_point(
        &mut self,
        key: &str,
        job: u64,
        found: Option<String>,
        out: &mut Vec<Value>,
    ) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.claude.edit_lookup.as_ref().is_none_or(|(j, _)| *j != job) {
            return;
        }
        let Some((_, mut plan)) = s.claude.edit_lookup.take() else {
            return;
        };
        match found {
            Some(uuid) => {
                plan.restore_to = Some(uuid);
                self.rewind_for_edit(key, plan, out);
            }
            None => self.restore_point_missing(key, &plan, out),
        }
        self.pump(key, out);
    }

    fn restore_point_missing(&mut self, key: &str, plan: &EditPlan, out: &mut Vec<Value>) {
        if let Some(s) = self.sessions.get(key) {
            out.push(s.error(
                plan.turn.trace_id.as_ref(),
                "rewind_failed",
                "Could not restore the code: no message to restore it to was found in \
                 the session's transcript. Nothing was changed.",
            ));
        }
    }

    /// Files are restored by the session's own CLI (started if it is not running); a
    /// turn still running is stopped first. Then the fork runs the edited turn.
    fn rewind_for_edit(&mut self, key: &str, plan: EditPlan, out: &mut Vec<Value>) {
        self.stop_current_turn(key, out, "the session was rewound");
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        s.claude.pending_edit = Some(plan);
        if s.child.as_ref().is_some_and(|c| c.initialized) {
            self.send_rewind(key, out);
        } else {
            self.ensure_child(key, out);
        }
    }

    /// Ask the CLI to restore files for the pending edit.
    pub(crate) fn send_rewind(&mut self, key: &str, out: &mut Vec<Value>) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(uuid) = s
            .claude
            .pending_edit
            .as_ref()
            .and_then(|p| p.restore_to.clone())
        else {
            return;
        };
        if !s.control(
            OwnRequest::RewindFiles,
            json!({"subtype": "rewind_files", "user_message_id": uuid}),
        ) {
            self.rewind_done(key, Err(RewindError::NotAccepting), out);
        }
    }

    /// The CLI answered `rewind_files`: fork on success, report and stay otherwise.
    pub(crate) fn rewind_done(
        &mut self,
        key: &str,
        result: Result<(), RewindError>,
        out: &mut Vec<Value>,
    ) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(plan) = s.claude.pending_edit.take() else {
            return;
        };
        match result {
            Ok(()) => self.restart_for_edit(key, plan, out),
            Err(e) => out.push(s.error(
                plan.turn.trace_id.as_ref(),
                "rewind_failed",
                &format!("Could not restore the code: {e}. The conversation was not changed."),
            )),
        }
    }

    /// Announce the rewind and restart the CLI forked at the cut, with the edited turn.
    fn restart_for_edit(&mut self, key: &str, plan: EditPlan, out: &mut Vec<Value>) {
        self.stop_current_turn(key, out, "the session was rewound");
        self.detach_child(key, out, "the session was rewound");
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        out.push(s.event(
            "session.rewound",
            plan.turn.trace_id.as_ref(),
            json!({"cut_uuid": plan.cut_uuid, "prompt": plan.media.prompt}),
        ));
        s.queue.clear();
        s.claude.awaiting.clear();
        s.claude.next_spawn = match (&s.sdk_id, &plan.cut_uuid) {
            (Some(sdk), Some(cut)) => claude::SpawnOpts {
                resume: Some(sdk.clone()),
                fork: true,
                resume_at: Some(cut.clone()),
                ..claude::SpawnOpts::default()
            },
            // Nothing to fork from: a fresh conversation.
            _ => {
                s.sdk_id = None;
                s.claude.known.clear();
                claude::SpawnOpts::default()
            }
        };
        let mut turn = plan.turn;
        turn.preparing = false;
        s.queue.push_back(turn);
        let mut media = plan.media;
        self.prepare_media(key, &mut media, out);
        self.ensure_child(key, out);
        self.pump(key, out);
    }

    /// `session.interrupt`: deny what the session waits for, then stop its turn. The
    /// turn ends with a `session.result` of subtype `interrupted`.
    fn interrupt(&mut self, key: &str, out: &mut Vec<Value>) {
        self.deny_pending(key, out, "interrupted");
        if self.sessions.get(key).is_some_and(Session::is_codex) {
            self.codex_interrupt(key, out);
            return;
        }
        if self.sessions.get(key).is_some_and(Session::is_acp) {
            self.acp_interrupt(key, out);
            return;
        }
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let initialized = s.child.as_ref().is_some_and(|c| c.initialized);
        if let Some(turn) = s.current.as_mut() {
            turn.interrupted = true;
            if initialized {
                s.control(OwnRequest::Interrupt, json!({"subtype": "interrupt"}));
            } else {
                s.claude.held_interrupt = true;
            }
        } else if !s.queue.is_empty() {
            if s.child.is_none() {
                // Waiting for a retry: the turn ends here.
                if let Some(turn) = s.queue.pop_front() {
                    out.push(s.interrupted_result(turn.trace_id.as_ref()));
                }
            } else {
                // Still starting: hold it and deliver it with the turn.
                s.claude.held_interrupt = true;
            }
        }
    }

    /// Deny every approval `key` waits for (its CLI gets the deny, the browser a
    /// `permission.resolved`).
    pub(crate) fn deny_pending(&mut self, key: &str, out: &mut Vec<Value>, reason: &str) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        // An interrupt withdraws the question (Codex `cancel`, ACP `cancelled`: the turn
        // stops there); anything else is a plain deny.
        let answer = if reason == "interrupted" {
            Answer::Cancel
        } else {
            Answer::Deny
        };
        for p in self.permissions.take_session(key) {
            if s.child.as_ref().is_some_and(|c| c.handle.id == p.child) {
                s.send(approval_answer(s, &p, answer, None, claude::DENY_MESSAGE));
            }
            out.push(s.event(
                "permission.resolved",
                s.trace().as_ref(),
                json!({"request_id": p.id, "decision": "deny", "reason": reason}),
            ));
        }
    }

    /// Approvals of `key` that its agent stopped waiting for (the turn ended without
    /// them, or the agent said the request is settled): gone, and the browser told.
    /// `only`: just the one the agent asked as this request id.
    pub(crate) fn settle_abandoned(&mut self, key: &str, only: Option<&str>, out: &mut Vec<Value>) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let gone = match only {
            Some(cli) => {
                let child = s.child.as_ref().map(|c| c.handle.id).unwrap_or(0);
                self.permissions.take_cli(child, cli).into_iter().collect()
            }
            None => self.permissions.take_session(key),
        };
        for p in gone {
            crate::log_debug!("session {}: approval {} abandoned by the agent", s.id, p.id);
            out.push(s.event(
                "permission.resolved",
                s.trace().as_ref(),
                json!({"request_id": p.id, "decision": "cancelled"}),
            ));
        }
    }

    /// Run `f` on session `key` and its provider's state (found in its [`Agent`] by `get`
    /// and taken out for the duration, so the session and the state can both be changed).
    /// `None` when the session is gone or runs another agent.
    pub(crate) fn with_agent<T: Default, R>(
        &mut self,
        key: &str,
        get: fn(&mut Agent) -> Option<&mut T>,
        f: impl FnOnce(&mut Session, &mut T) -> R,
    ) -> Option<R> {
        let s = self.sessions.get_mut(key)?;
        let mut st = std::mem::take(get(&mut s.agent)?);
        let r = f(s, &mut st);
        if let Some(slot) = get(&mut s.agent) {
            *slot = st;
        }
        Some(r)
    }

    /// Start an agent's child for `key` (`what` names it in the log). The session gets the
    /// new child, not yet initialized; a failure ends what waits with `transport_error`.
    pub(crate) fn spawn_agent(
        &mut self,
        key: &str,
        what: &str,
        spec: &crate::sys::child::Spec,
        out: &mut Vec<Value>,
    ) -> bool {
        self.next_child += 1;
        let child_id = self.next_child;
        match crate::sys::child::spawn(child_id, spec, self.child_tx.clone()) {
            Ok(handle) => {
                let Some(s) = self.sessions.get_mut(key) else {
                    handle.close();
                    return false;
                };
                crate::log_info!(
                    "session {}: started {what} (pid {}) in {}",
                    s.id,
                    handle.pid,
                    s.cwd.display()
                );
                self.children.insert(child_id, Some(key.to_string()));
                s.child = Some(crate::hub::session::Live {
                    handle,
                    initialized: false,
                    started: std::time::Instant::now(),
                    model: None,
                    mode: None,
                    effort: None,
                });
                true
            }
            Err(e) => {
                let message = format!("could not start {}: {e}", spec.program.display());
                self.fail_waiting(key, "transport_error", &message, out);
                false
            }
        }
    }

    /// Put an agent's approval request before the browser (`permission.request`, with a
    /// timeout) and keep it until something settles it. False, and nothing done, when the
    /// table is full: the caller refuses the request to its agent.
    pub(crate) fn put_approval(
        &mut self,
        key: &str,
        child: u64,
        a: Approval,
        out: &mut Vec<Value>,
    ) -> bool {
        if self.permissions.is_full() {
            return false;
        }
        let Some(s) = self.sessions.get_mut(key) else {
            return false;
        };
        s.mark_emitted();
        let id = crate::sys::ids::new_id();
        let (shown, cut) = crate::hub::session::permission_input(&a.input);
        let mut body = s.event(
            "permission.request",
            s.trace().as_ref(),
            json!({
                "request_id": id,
                "tool": a.tool,
                "input": shown,
                "title": a.title,
                "display_name": a.display_name,
                "description": a.description,
                "tool_use_id": a.tool_use_id,
            }),
        );
        if cut {
            body["input_truncated"] = json!(true);
        }
        if let Some(p) = a.parent {
            body["parent_tool_use_id"] = json!(p);
        }
        out.push(body.clone());
        let timer = self.settings.permission_timeout.and_then(|t| {
            self.timer.at(
                std::time::Instant::now() + t,
                Tick::Permission {
                    request_id: id.clone(),
                },
            )
        });
        self.permissions.add(crate::hub::permissions::Pending {
            id,
            session: key.to_string(),
            child,
            cli_request_id: a.cli_request_id,
            input: a.keep,
            body,
            timer,
        });
        true
    }

    /// [`Sessions::settle_abandoned`] at the end of a turn whose result is already in
    /// `out`: the approvals are settled before that result, as they were in time.
    pub(crate) fn settle_before_result(&mut self, key: &str, out: &mut Vec<Value>) {
        let mut settled = Vec::new();
        self.settle_abandoned(key, None, &mut settled);
        if settled.is_empty() {
            return;
        }
        let at = out
            .iter()
            .rposition(|e| {
                matches!(
                    e["event"].as_str(),
                    Some("session.result" | "session.error")
                )
            })
            .unwrap_or(out.len());
        out.splice(at..at, settled);
    }

    fn close(&mut self, key: &str, trace: Option<Value>, out: &mut Vec<Value>) {
        self.stop_current_turn(key, out, "the session was closed");
        self.detach_child(key, out, "the session was closed");
        if let Some(s) = self.sessions.remove(key) {
            out.push(s.event("session.closed", trace.as_ref(), json!({})));
            self.aliases.retain(|_, v| v != key);
        }
    }

    /// A timer tick for sessions.
    pub fn on_tick(&mut self, tick: Tick, out: &mut Vec<Value>) {
        match tick {
            Tick::Retry { session } => {
                if let Some(key) = self.key_of(&session)
                    && self.sessions.get(&key).is_some_and(|s| s.child.is_none())
                {
                    self.ensure_child(&key, out);
                    self.pump(&key, out);
                }
            }
            Tick::AcpLoad { session } => {
                if let Some(key) = self.key_of(&session) {
                    self.acp_load(&key);
                }
            }
            Tick::AcpQuiet { session, seq } => {
                if let Some(key) = self.key_of(&session) {
                    self.acp_quiet(&key, seq, out);
                }
            }
            Tick::AutoWait { session } => {
                if let Some(key) = self.key_of(&session)
                    && let Some(s) = self.sessions.get_mut(&key)
                    && s.claude.autos_owed > 0
                    && s.current.is_none()
                {
                    crate::log_debug!("session {}: the announced turn did not start", s.id);
                    s.claude.autos_owed = 0;
                    self.pump(&key, out);
                }
            }
            Tick::Permission { request_id } => {
                if let Some(p) = self.permissions.take(&request_id)
                    && let Some(s) = self.sessions.get(&p.session)
                {
                    s.send(approval_answer(
                        s,
                        &p,
                        Answer::Deny,
                        None,
                        "No answer from the user in time; denied by Coding Bridge",
                    ));
                    out.push(s.event(
                        "permission.resolved",
                        s.trace().as_ref(),
                        json!({"request_id": p.id, "decision": "deny", "reason": "timeout"}),
                    ));
                }
            }
            _ => {}
        }
    }

    fn resolve_permission(&mut self, r: Resolve, trace: Option<Value>, out: &mut Vec<Value>) {
        let rid = r.request_id.as_str();
        // Already settled (another device answered, or it timed out): nothing to do.
        let Some(p) = self.permissions.take(rid) else {
            crate::log_debug!("permission {rid} is already settled; resolve ignored");
            return;
        };
        let allow = r.allow;
        if let Some(s) = self.sessions.get(&p.session) {
            s.send(approval_answer(
                s,
                &p,
                if allow { Answer::Allow } else { Answer::Deny },
                r.answer.as_ref(),
                claude::DENY_MESSAGE,
            ));
            let t = trace.or_else(|| s.trace());
            out.push(s.event(
                "permission.resolved",
                t.as_ref(),
                json!({"request_id": p.id, "decision": if allow { "allow" } else { "deny" }}),
            ));
        }
    }

    /// Deny everything and stop every child (daemon shutdown): each turn still running
    /// ends with a `session.error` first. Returns how many children are stopping.
    pub fn shutdown(&mut self, out: &mut Vec<Value>) -> usize {
        let keys: Vec<String> = self.sessions.keys().cloned().collect();
        let mut n = 0;
        for k in keys {
            self.deny_pending(&k, out, "the node is shutting down");
            if let Some(s) = self.sessions.get_mut(&k) {
                for turn in s.end_running(true, out) {
                    out.push(s.event(
                        "session.error",
                        turn.trace_id.as_ref(),
                        json!({"code": "node_shutdown",
                               "message": "The node is shutting down; this turn was stopped. Send it again once the node is back."}),
                    ));
                }
                if s.child.is_some() {
                    n += 1;
                }
            }
            self.detach_child(&k, out, "the node is shutting down");
        }
        n
    }
}

/// An approval an agent asks for, as every provider hands it to the approval table.
pub(crate) struct Approval {
    /// The agent's id for the request (for JSON-RPC agents, the id as JSON text).
    pub cli_request_id: String,
    pub tool: Value,
    /// The tool input shown to the browser (long strings are cut when it is large).
    pub input: Value,
    pub title: Value,
    pub display_name: Value,
    pub description: Value,
    pub tool_use_id: Value,
    /// The subagent it comes from, if any.
    pub parent: Option<String>,
    /// What answering needs later (Claude: the whole input; ACP: the offered options).
    pub keep: Value,
}

/// The line that answers approval `p` for its session's agent: allow (with the browser's
/// answer, for Claude's AskUserQuestion) or deny with `deny_message`.
fn approval_answer(
    s: &Session,
    p: &crate::hub::permissions::Pending,
    how: Answer,
    answer: Option<&Value>,
    deny_message: &str,
) -> String {
    let rpc_id = || serde_json::from_str(&p.cli_request_id).unwrap_or(Value::Null);
    match s.agent {
        Agent::Claude => claude::control_success(
            &p.cli_request_id,
            match how {
                Answer::Allow => claude::allow_response(&p.input, answer),
                Answer::Deny | Answer::Cancel => claude::deny_response(deny_message),
            },
        ),
        Agent::Codex(_) => crate::providers::codex::reply(
            &rpc_id(),
            json!({"decision": match how {
                Answer::Allow => "accept",
                Answer::Deny => "decline",
                Answer::Cancel => "cancel",
            }}),
        ),
        Agent::Acp(_) => crate::providers::acp::reply(
            &rpc_id(),
            match how {
                Answer::Allow => {
                    crate::providers::acp::permission_outcome(&p.input["options"], true)
                }
                Answer::Deny => {
                    crate::providers::acp::permission_outcome(&p.input["options"], false)
                }
                Answer::Cancel => json!({"outcome": {"outcome": "cancelled"}}),
            },
        ),
    }
}

/// How an approval is answered to its agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Allow,
    Deny,
    /// The question is withdrawn (an interrupt).
    Cancel,
}

/// Session ids are used in paths; only plain characters are accepted.
/// Roughly the bytes a JSON value holds (its strings), to bound the workers' queue.
fn json_bytes(v: Option<&Value>) -> usize {
    match v {
        Some(Value::String(s)) => s.len(),
        Some(Value::Array(a)) => a.iter().map(|x| json_bytes(Some(x))).sum(),
        Some(Value::Object(m)) => m.iter().map(|(k, x)| k.len() + json_bytes(Some(x))).sum(),
        _ => 0,
    }
}

/// A held session as `history.get` sees it (see [`Sessions::live_history`]).
pub(crate) struct LiveHistory {
    pub(crate) provider: String,
    pub(crate) real_id: Option<String>,
    pub(crate) running: bool,
    /// The in-memory `history.detail`, under the asked id.
    pub(crate) detail: Value,
}

use crate::protocol::valid_id;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_slugs() {
        assert!(valid_id("3f2a-b_c.d"));
        assert!(!valid_id("../etc"));
        assert!(!valid_id(".."));
        assert!(!valid_id("a/b"));
        assert_eq!(
            crate::providers::claude::transcript::project_slug(std::path::Path::new(
                "/home/pi/my.app"
            )),
            "-home-pi-my-app"
        );
    }
}
