//! All Claude Code sessions (PROTOCOL §3–5): the browser's `session.*` and permission
//! commands, the child processes, and the routing of each child's output to its
//! [`Session`] (see [`crate::session`] for how that output becomes node events).
//!
//! Owned by the hub thread; no locks. Each session has at most one child
//! ([`crate::child`]); its lines arrive as [`ChildEvent`]s on the hub's child channel.
//! Everything that happens is pushed as an event payload onto an `out` vector that the
//! hub then emits (and, for durable events, queues for reliable delivery). Deadlines
//! (permission timeouts, crash retries) go through the hub's timer as [`Tick`]s.
//!
//! A session is keyed by its current id: first the browser's provisional id, then the
//! CLI's real session id once `system/init` names it (the old id stays an alias).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde_json::{Map, Value, json};

use crate::child::{self, ChildEvent, ExitInfo, Spec};
use crate::claude::{self, SpawnOpts};
use crate::hub::Tick;
use crate::permissions::{Pending, Permissions};
use crate::session::{
    EditPlan, Live, OwnRequest, Session, Turn, next_turn_id, on_assistant, on_stream_event,
    on_user, status_text, sync_settings,
};
use crate::timer::Timer;
use crate::worker::{Work, Workers};

/// Live sessions allowed at once.
pub const MAX_SESSIONS: usize = 64;
/// Turns waiting behind the running one, per session.
pub const MAX_QUEUED_TURNS: usize = 64;
/// Pause before a crashed turn's single retry.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// Daemon-wide settings sessions need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_cwd: PathBuf,
    pub default_model: Option<String>,
    pub claude_path: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub permission_timeout: Option<Duration>,
    /// Where the per-session settings sidecars live (`<config_dir>/sessions`).
    pub config_dir: PathBuf,
    pub media: crate::media::Settings,
}

/// All sessions of this daemon.
pub struct Sessions {
    settings: Settings,
    workers: Workers,
    timer: Timer<Tick>,
    child_tx: Sender<ChildEvent>,
    sessions: HashMap<String, Session>,
    aliases: HashMap<String, String>,
    /// Child id → session key; `None` once detached (closed or replaced).
    children: HashMap<u64, Option<String>>,
    permissions: Permissions,
    next_child: u64,
    /// The last command catalogue any child reported.
    catalogue: Option<Vec<Value>>,
}

fn str_field<'a>(cmd: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    cmd.get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl Sessions {
    pub fn new(
        settings: Settings,
        timer: Timer<Tick>,
        child_tx: Sender<ChildEvent>,
        workers: Workers,
    ) -> Sessions {
        Sessions {
            settings,
            workers,
            timer,
            child_tx,
            sessions: HashMap::new(),
            aliases: HashMap::new(),
            children: HashMap::new(),
            permissions: Permissions::default(),
            next_child: 0,
            catalogue: None,
        }
    }

    /// The command catalogue last reported by a CLI, if any.
    pub fn catalogue(&self) -> Option<&Vec<Value>> {
        self.catalogue.as_ref()
    }

    fn key_of(&self, id: &str) -> Option<String> {
        if self.sessions.contains_key(id) {
            return Some(id.to_string());
        }
        self.aliases
            .get(id)
            .filter(|k| self.sessions.contains_key(*k))
            .cloned()
    }

    /// Handle a session or permission command; false if `action` is not one of ours.
    pub fn command(
        &mut self,
        action: &str,
        cmd: &Map<String, Value>,
        out: &mut Vec<Value>,
    ) -> bool {
        let trace = cmd.get("trace_id").filter(|v| v.is_string()).cloned();
        let sid = str_field(cmd, "session_id");
        let error = |out: &mut Vec<Value>, message: String| {
            let mut p = json!({"event": "session.error", "message": message});
            if let Some(s) = sid {
                p["session_id"] = json!(s);
            }
            if let Some(t) = &trace {
                p["trace_id"] = t.clone();
            }
            out.push(p);
        };
        match action {
            "session.start" => {
                let Some(sid) = sid else {
                    error(out, "session.start needs a session_id".into());
                    return true;
                };
                if self.key_of(sid).is_some() {
                    self.send_turn(sid, cmd, trace, out);
                } else {
                    self.start(sid, cmd, trace, out);
                }
            }
            "session.send" => match sid.and_then(|s| self.key_of(s)) {
                Some(_) => self.send_turn(sid.unwrap_or_default(), cmd, trace, out),
                None => error(out, format!("unknown session: {}", sid.unwrap_or(""))),
            },
            "session.edit" => match sid.and_then(|s| self.key_of(s)) {
                Some(key) => self.edit(&key, cmd, trace, out),
                None => error(out, format!("unknown session: {}", sid.unwrap_or(""))),
            },
            "session.interrupt" => {
                if let Some(key) = sid.and_then(|s| self.key_of(s)) {
                    self.interrupt(&key);
                }
            }
            "session.close" => match sid.and_then(|s| self.key_of(s)) {
                Some(key) => self.close(&key, trace, out),
                None => error(out, format!("unknown session: {}", sid.unwrap_or(""))),
            },
            "permission.resolve" => self.resolve_permission(cmd, trace, out),
            "permissions.list" => {
                let requests = self.permissions.snapshot();
                let mut p = json!({"event": "permissions.snapshot", "requests": requests});
                if let Some(t) = trace {
                    p["trace_id"] = t;
                }
                out.push(p);
            }
            "sessions.list" => {
                let mut list: Vec<Value> = self
                    .sessions
                    .values()
                    .map(|s| {
                        json!({
                            "session_id": s.id,
                            "status": if s.running() { "running" } else { "idle" },
                            "provider": s.provider,
                            "cwd": s.cwd,
                            "model": s.model,
                            "permission_mode": s.permission_mode,
                            "effort": s.effort,
                        })
                    })
                    .collect();
                list.sort_by(|a, b| a["session_id"].as_str().cmp(&b["session_id"].as_str()));
                let mut p = json!({"event": "sessions.snapshot", "sessions": list});
                if let Some(t) = trace {
                    p["trace_id"] = t;
                }
                out.push(p);
            }
            _ => return false,
        }
        true
    }

    fn start(
        &mut self,
        sid: &str,
        cmd: &Map<String, Value>,
        trace: Option<Value>,
        out: &mut Vec<Value>,
    ) {
        let fail = |out: &mut Vec<Value>, code: &str, message: String| {
            let mut p = json!({"event": "session.error", "session_id": sid, "code": code, "message": message});
            if let Some(t) = &trace {
                p["trace_id"] = t.clone();
            }
            out.push(p);
        };
        let provider = str_field(cmd, "provider").unwrap_or("claude");
        if provider != "claude" {
            fail(
                out,
                "provider_error",
                format!("unsupported provider: {provider}"),
            );
            return;
        }
        if self.sessions.len() >= MAX_SESSIONS {
            fail(
                out,
                "provider_error",
                format!("too many live sessions (at most {MAX_SESSIONS}); close one first"),
            );
            return;
        }
        // Resuming from history: the sidecar restores what the transcript cannot carry.
        let saved = str_field(cmd, "resume_session_id")
            .and_then(|r| crate::sidecar::load(&self.settings.config_dir, r))
            .unwrap_or(Value::Null);
        let saved_str = |k: &str| saved.get(k).and_then(Value::as_str).map(str::to_string);
        let cwd = match str_field(cmd, "cwd") {
            Some(c) => crate::fsutil::expand_home(c, self.settings.home.as_deref()),
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
        let resume = str_field(cmd, "resume_session_id").map(str::to_string);
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
        let mut s = Session::new(sid, cwd);
        s.model = str_field(cmd, "model")
            .map(str::to_string)
            .or_else(|| saved_str("model"))
            .or_else(|| self.settings.default_model.clone());
        s.permission_mode = str_field(cmd, "permission_mode")
            .map(str::to_string)
            .or_else(|| saved_str("permission_mode"));
        s.effort = str_field(cmd, "effort")
            .map(str::to_string)
            .or_else(|| saved_str("effort"));
        s.next_spawn.resume = resume.clone();
        if let Some(r) = &resume {
            s.seen_uuids = transcript_uuids(self.settings.home.as_deref(), &s.cwd, r);
        }
        out.push(s.event(
            "session.started",
            trace.as_ref(),
            json!({
                "cwd": s.cwd,
                "model": s.model,
                "provider": s.provider,
                "permission_mode": s.permission_mode,
                "effort": s.effort,
            }),
        ));
        if let Some(prompt) = cmd
            .get("prompt")
            .and_then(Value::as_str)
            .filter(|p| !p.trim().is_empty())
        {
            s.queue.push_back(Turn {
                id: next_turn_id(),
                preparing: false,
                prompt: prompt.to_string(),
                trace_id: trace.clone(),
                model: s.model.clone(),
                mode: s.permission_mode.clone(),
                emitted: false,
                retried: false,
            });
        }
        let key = sid.to_string();
        self.sessions.insert(key.clone(), s);
        self.prepare_media(&key, cmd, out);
        self.ensure_child(&key, out);
        self.pump(&key, out);
    }

    fn send_turn(
        &mut self,
        sid: &str,
        cmd: &Map<String, Value>,
        trace: Option<Value>,
        out: &mut Vec<Value>,
    ) {
        let Some(key) = self.key_of(sid) else { return };
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        // Model and mode go live through control requests, in turn order (see `pump`).
        if let Some(m) = str_field(cmd, "model") {
            s.model = Some(m.to_string());
        }
        if let Some(m) = str_field(cmd, "permission_mode") {
            s.permission_mode = Some(m.to_string());
        }
        if s.current.is_none() && s.queue.is_empty() {
            let (model, mode) = (s.model.clone(), s.permission_mode.clone());
            sync_settings(s, model, mode);
        }
        if let Some(e) = cmd.get("effort").and_then(Value::as_str) {
            // Effort is a start-up flag: it applies from the next spawn.
            s.effort = Some(e.to_string()).filter(|e| !e.is_empty());
        }
        let Some(prompt) = cmd
            .get("prompt")
            .and_then(Value::as_str)
            .filter(|p| !p.trim().is_empty())
        else {
            return;
        };
        if s.queue.len() >= MAX_QUEUED_TURNS {
            out.push(s.event(
                "session.error",
                trace.as_ref(),
                json!({"code": "provider_error", "message": format!("too many queued turns (at most {MAX_QUEUED_TURNS})")}),
            ));
            return;
        }
        s.queue.push_back(Turn {
            id: next_turn_id(),
            preparing: false,
            prompt: prompt.to_string(),
            trace_id: trace,
            model: s.model.clone(),
            mode: s.permission_mode.clone(),
            emitted: false,
            retried: false,
        });
        self.save_sidecar(&key);
        self.prepare_media(&key, cmd, out);
        self.ensure_child(&key, out);
        self.pump(&key, out);
    }

    /// If the newest turn of `key` came with images or attachments, hold it and save
    /// them on a worker; [`Sessions::on_prepared`] lets it run.
    fn prepare_media(&mut self, key: &str, cmd: &Map<String, Value>, out: &mut Vec<Value>) {
        let present = |k: &str| {
            cmd.get(k)
                .filter(|v| !v.is_null() && !v.as_array().is_some_and(|a| a.is_empty()))
                .cloned()
        };
        let (images, attachments) = (present("images"), present("attachments"));
        if images.is_none() && attachments.is_none() {
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
        let started = self.workers.run("media", move || Work::Prepared {
            session: owner,
            turn: turn_id,
            prepared: crate::media::prepare(
                &cwd,
                &sid,
                images.as_ref(),
                attachments.as_ref(),
                &media,
            ),
        });
        if !started {
            if let Some(t) = s.queue.back_mut() {
                t.preparing = false;
            }
            out.push(s.warning(
                s.trace().as_ref(),
                "attachment_skipped",
                "the node is busy; the images and attachments of this turn were not saved",
            ));
        }
    }

    /// A turn's media are saved: add the note to its prompt and let it run.
    pub fn on_prepared(
        &mut self,
        session: &str,
        turn_id: u64,
        prepared: crate::media::Prepared,
        out: &mut Vec<Value>,
    ) {
        let Some(key) = self.key_of(session) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let Some(turn) = s.queue.iter_mut().find(|t| t.id == turn_id) else {
            return;
        };
        turn.prompt.push_str(&prepared.note());
        turn.preparing = false;
        let trace = turn.trace_id.clone();
        for text in &prepared.notices {
            out.push(s.warning(trace.as_ref(), "attachment_skipped", text));
        }
        self.pump(&key, out);
    }

    /// Save the session's settings beside its transcript id (on a worker; small file).
    fn save_sidecar(&self, key: &str) {
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
            "permission_mode": s.permission_mode,
            "effort": s.effort,
        });
        let dir = self.settings.config_dir.clone();
        self.workers.run("sidecar", move || {
            crate::sidecar::save(&dir, &id, &body);
            Work::Done
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
        ids
    }

    fn edit(
        &mut self,
        key: &str,
        cmd: &Map<String, Value>,
        trace: Option<Value>,
        out: &mut Vec<Value>,
    ) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let prompt = cmd
            .get("prompt")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let cut = str_field(cmd, "cut_uuid").map(str::to_string);
        let restore = cmd
            .get("restore_code")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        out.push(s.event(
            "session.rewound",
            trace.as_ref(),
            json!({"cut_uuid": cut, "prompt": prompt}),
        ));
        let plan = EditPlan {
            prompt,
            cut_uuid: cut.clone(),
            trace_id: trace,
        };
        if restore && cut.is_some() && s.child.as_ref().is_some_and(|c| c.initialized) {
            // Restore files first; the restart waits for the CLI's answer.
            let id = s.next_request_id(OwnRequest::RewindFiles);
            if s.send(claude::control_request(
                &id,
                json!({"subtype": "rewind_files", "user_message_id": cut}),
            )) {
                s.pending_edit = Some(plan);
                return;
            }
        }
        self.restart_for_edit(key, plan, out);
    }

    fn restart_for_edit(&mut self, key: &str, plan: EditPlan, out: &mut Vec<Value>) {
        self.detach_child(key, out, "the session was rewound");
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        s.queue.clear();
        s.current = None;
        s.next_spawn = match (&s.sdk_id, &plan.cut_uuid) {
            (Some(sdk), Some(cut)) => SpawnOpts {
                resume: Some(sdk.clone()),
                fork: true,
                resume_at: Some(cut.clone()),
                ..SpawnOpts::default()
            },
            _ => SpawnOpts::default(),
        };
        if let Some(sdk) = s.sdk_id.clone()
            && s.next_spawn.resume.is_some()
        {
            s.seen_uuids = transcript_uuids(self.settings.home.as_deref(), &s.cwd, &sdk);
        }
        if !plan.prompt.trim().is_empty() {
            s.queue.push_back(Turn {
                id: next_turn_id(),
                preparing: false,
                prompt: plan.prompt,
                trace_id: plan.trace_id,
                model: s.model.clone(),
                mode: s.permission_mode.clone(),
                emitted: false,
                retried: false,
            });
        }
        self.ensure_child(key, out);
        self.pump(key, out);
    }

    fn interrupt(&mut self, key: &str) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        match &s.child {
            Some(live) if live.initialized && s.current.is_some() => {
                let id = s.next_request_id(OwnRequest::Interrupt);
                s.send(claude::control_request(
                    &id,
                    json!({"subtype": "interrupt"}),
                ));
            }
            // Still starting: hold it and deliver it with the turn.
            Some(_) if !s.queue.is_empty() || s.current.is_some() => s.held_interrupt = true,
            _ => {}
        }
    }

    fn close(&mut self, key: &str, trace: Option<Value>, out: &mut Vec<Value>) {
        self.detach_child(key, out, "the session was closed");
        if let Some(s) = self.sessions.remove(key) {
            out.push(s.event("session.closed", trace.as_ref(), json!({})));
            self.aliases.retain(|_, v| v != key);
        }
    }

    /// Deny the child's pending approvals and stop it; its later output is ignored.
    fn detach_child(&mut self, key: &str, out: &mut Vec<Value>, why: &str) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(live) = s.child.take() else { return };
        let child_id = live.handle.id;
        for p in self.permissions.take_child(child_id) {
            live.handle.send_line(claude::control_success(
                &p.cli_request_id,
                claude::deny_response(claude::DENY_MESSAGE),
            ));
            out.push(s.event(
                "permission.resolved",
                s.trace().as_ref(),
                json!({"request_id": p.id, "decision": "deny", "reason": why}),
            ));
        }
        live.handle.close();
        self.children.insert(child_id, None);
        s.own.clear();
        s.blocks.clear();
        s.held_interrupt = false;
    }

    /// Start a child for `key` if it has none.
    fn ensure_child(&mut self, key: &str, out: &mut Vec<Value>) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.child.is_some() {
            return;
        }
        let Some(program) = claude::resolve(
            self.settings.claude_path.as_deref(),
            std::env::var_os("PATH"),
            self.settings.home.as_deref(),
        ) else {
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
            out.push(s.event(
                "session.error",
                s.trace().as_ref(),
                json!({"code": "cli_not_found", "message": message}),
            ));
            s.queue.clear();
            return;
        };
        let mut opts = std::mem::take(&mut s.next_spawn);
        // Start with what the first waiting turn asked for (later turns switch live).
        match s.queue.front() {
            Some(t) => {
                opts.model = t.model.clone();
                opts.permission_mode = t.mode.clone();
            }
            None => {
                opts.model = s.model.clone();
                opts.permission_mode = s.permission_mode.clone();
            }
        }
        opts.effort = s.effort.clone();
        let spec = Spec {
            program,
            args: claude::argv(&opts),
            cwd: s.cwd.clone(),
            env: vec![("CLAUDE_CODE_ENTRYPOINT".into(), claude::ENTRYPOINT.into())],
        };
        self.next_child += 1;
        let child_id = self.next_child;
        match child::spawn(child_id, &spec, self.child_tx.clone()) {
            Ok(handle) => {
                crate::log_info!(
                    "session {}: started claude (pid {}) in {}",
                    s.id,
                    handle.pid,
                    s.cwd.display()
                );
                self.children.insert(child_id, Some(key.to_string()));
                let live = Live {
                    handle,
                    initialized: false,
                    started: Instant::now(),
                    model: opts.model.clone(),
                    mode: opts.permission_mode.clone(),
                };
                s.child = Some(live);
                let id = s.next_request_id(OwnRequest::Initialize);
                s.send(claude::control_request(
                    &id,
                    json!({"subtype": "initialize", "hooks": null}),
                ));
            }
            Err(e) => {
                out.push(s.event(
                    "session.error",
                    s.trace().as_ref(),
                    json!({
                        "code": "transport_error",
                        "message": format!("could not start {}: {e}", spec.program.display()),
                        "exception": e.to_string(),
                    }),
                ));
                s.queue.clear();
            }
        }
    }

    /// Write the next queued turn when the child is ready and idle.
    fn pump(&mut self, key: &str, out: &mut Vec<Value>) {
        loop {
            let Some(s) = self.sessions.get_mut(key) else {
                return;
            };
            if s.current.is_some() || s.queue.is_empty() {
                return;
            }
            let ready = s.child.as_ref().is_some_and(|c| c.initialized);
            if !ready || s.queue.front().is_some_and(|t| t.preparing) {
                return;
            }
            let Some(turn) = s.queue.pop_front() else {
                return;
            };
            if let Some(name) = claude::slash_name(&turn.prompt) {
                let name = name.to_string();
                if name == "status" {
                    let text = status_text(s);
                    out.push(s.event(
                        "session.text",
                        turn.trace_id.as_ref(),
                        json!({"text": text}),
                    ));
                    out.push(s.local_result(turn.trace_id.as_ref(), json!(text)));
                    continue;
                }
                let known = s.commands.as_ref().or(self.catalogue.as_ref());
                if let Some(cat) = known
                    && !claude::catalogue_has(cat, &name)
                {
                    out.push(s.event(
                            "session.notice",
                            turn.trace_id.as_ref(),
                            json!({"level": "info", "code": "slash_unavailable", "command": name,
                                   "text": format!("/{name} is not available in a remote Coding Bridge session.")}),
                        ));
                    out.push(s.local_result(turn.trace_id.as_ref(), Value::Null));
                    continue;
                }
            }
            sync_settings(s, turn.model.clone(), turn.mode.clone());
            s.turn_no += 1;
            s.ordinal = 0;
            s.blocks.clear();
            s.streamed_msgs.clear();
            s.send(claude::user_message(&turn.prompt));
            s.current = Some(turn);
            if s.held_interrupt {
                s.held_interrupt = false;
                let id = s.next_request_id(OwnRequest::Interrupt);
                s.send(claude::control_request(
                    &id,
                    json!({"subtype": "interrupt"}),
                ));
            }
            return;
        }
    }

    /// A line or an exit from a child.
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
                self.on_exit(&key, child, status, out);
            }
        }
    }

    fn on_exit(&mut self, key: &str, child_id: u64, status: ExitInfo, out: &mut Vec<Value>) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.child.as_ref().map(|c| c.handle.id) != Some(child_id) {
            return;
        }
        let live = s.child.take();
        let lived = live.map(|l| l.started.elapsed()).unwrap_or_default();
        // Approvals of a dead child can no longer be answered.
        for p in self.permissions.take_child(child_id) {
            out.push(s.event(
                "permission.resolved",
                s.trace().as_ref(),
                json!({"request_id": p.id, "decision": "cancelled"}),
            ));
        }
        s.own.clear();
        s.blocks.clear();
        let affected = s.current.take().or_else(|| s.queue.pop_front());
        let Some(mut turn) = affected else {
            crate::log_info!(
                "session {}: claude exited while idle ({:?})",
                s.id,
                status.code
            );
            return;
        };
        let exit = match (status.code, status.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => "an unknown status".into(),
        };
        out.push(s.event(
            "session.error",
            turn.trace_id.as_ref(),
            json!({
                "code": "process_crashed",
                "message": format!("Claude Code stopped mid-turn with {exit} after {:.1} s", lived.as_secs_f64()),
                "exception": "process_crashed",
                "exit_code": status.code,
                "stderr": status.stderr_tail,
            }),
        ));
        if !turn.emitted && !turn.retried {
            turn.retried = true;
            s.queue.push_front(turn);
            if let Some(sdk) = s.sdk_id.clone() {
                s.next_spawn = SpawnOpts {
                    resume: Some(sdk.clone()),
                    ..SpawnOpts::default()
                };
                s.seen_uuids = transcript_uuids(self.settings.home.as_deref(), &s.cwd, &sdk);
            }
            self.timer.at(
                Instant::now() + RETRY_BACKOFF,
                Tick::Retry {
                    session: key.to_string(),
                },
            );
        } else if !s.queue.is_empty() {
            self.ensure_child(key, out);
            self.pump(key, out);
        }
    }

    /// A timer tick for sessions.
    pub fn on_tick(&mut self, tick: Tick, out: &mut Vec<Value>) {
        match tick {
            Tick::Retry { session }
                if self
                    .sessions
                    .get(&session)
                    .is_some_and(|s| s.child.is_none()) =>
            {
                self.ensure_child(&session, out);
                self.pump(&session, out);
            }
            Tick::Permission { request_id } => {
                if let Some(p) = self.permissions.take(&request_id)
                    && let Some(s) = self.sessions.get(&p.session)
                {
                    s.send(claude::control_success(
                        &p.cli_request_id,
                        claude::deny_response(
                            "No answer from the user in time; denied by Coding Bridge",
                        ),
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

    fn resolve_permission(
        &mut self,
        cmd: &Map<String, Value>,
        trace: Option<Value>,
        out: &mut Vec<Value>,
    ) {
        let Some(rid) = str_field(cmd, "request_id") else {
            out.push(json!({"event": "session.error", "message": "permission.resolve needs a request_id"}));
            return;
        };
        let Some(p) = self.permissions.take(rid) else {
            let mut p = json!({"event": "session.error", "message": format!("no pending permission request {rid}")});
            if let Some(t) = trace {
                p["trace_id"] = t;
            }
            out.push(p);
            return;
        };
        let allow = cmd.get("decision").and_then(Value::as_str) == Some("allow");
        let answer = if allow {
            claude::allow_response(&p.input, cmd.get("answer"))
        } else {
            claude::deny_response(claude::DENY_MESSAGE)
        };
        if let Some(s) = self.sessions.get(&p.session) {
            s.send(claude::control_success(&p.cli_request_id, answer));
            let t = trace.or_else(|| s.trace());
            out.push(s.event(
                "permission.resolved",
                t.as_ref(),
                json!({"request_id": p.id, "decision": if allow { "allow" } else { "deny" }}),
            ));
        }
    }

    fn on_line(&mut self, key: &str, child_id: u64, v: Value, out: &mut Vec<Value>) {
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
            "system" => {
                if v.get("subtype").and_then(Value::as_str) == Some("init")
                    && let Some(sid) = v.get("session_id").and_then(Value::as_str)
                {
                    self.rekey(key, sid, out);
                }
            }
            "stream_event" => {
                if let Some(s) = self.sessions.get_mut(key) {
                    on_stream_event(s, &v, out);
                }
            }
            "assistant" => {
                if let Some(s) = self.sessions.get_mut(key) {
                    on_assistant(s, &v, out);
                }
            }
            "user" => {
                if let Some(s) = self.sessions.get_mut(key) {
                    on_user(s, &v, out);
                }
            }
            "result" => {
                let Some(s) = self.sessions.get_mut(key) else {
                    return;
                };
                let Some(turn) = s.current.take() else {
                    crate::log_debug!("session {}: result without a turn; ignored", s.id);
                    return;
                };
                if let Some(sid) = v.get("session_id").and_then(Value::as_str)
                    && s.sdk_id.is_none()
                {
                    s.sdk_id = Some(sid.to_string());
                }
                out.push(s.event(
                    "session.result",
                    turn.trace_id.as_ref(),
                    json!({
                        "subtype": v.get("subtype").cloned().unwrap_or(Value::Null),
                        "is_error": v.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                        "result": v.get("result").cloned().unwrap_or(Value::Null),
                        "cost_usd": v.get("total_cost_usd").cloned().unwrap_or(Value::Null),
                        "cut_uuid": s.last_uuid,
                        "sdk_session_id": s.sdk_id,
                    }),
                ));
                s.blocks.clear();
                self.pump(key, out);
            }
            _ => {}
        }
    }

    fn on_control_response(&mut self, key: &str, v: &Value, out: &mut Vec<Value>) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let resp = v.get("response").cloned().unwrap_or(Value::Null);
        let Some(rid) = resp.get("request_id").and_then(Value::as_str) else {
            return;
        };
        let Some(kind) = s.own.remove(rid) else {
            return;
        };
        let ok = resp.get("subtype").and_then(Value::as_str) == Some("success");
        let error = resp.get("error").and_then(Value::as_str);
        match kind {
            OwnRequest::Initialize => {
                let body = resp.get("response").cloned().unwrap_or(Value::Null);
                if let Some(Value::Array(cmds)) = body.get("commands") {
                    s.commands = Some(cmds.clone());
                    self.catalogue = Some(cmds.clone());
                }
                s.server_info = body;
                if let Some(live) = s.child.as_mut() {
                    live.initialized = true;
                }
                if !ok {
                    let err = error.unwrap_or("no reason given");
                    crate::log_warn!("session {}: initialize failed: {err}", s.id);
                }
                self.pump(key, out);
            }
            OwnRequest::RewindFiles => {
                if !ok {
                    let err = error.unwrap_or("rewind_files failed");
                    out.push(s.warning(s.trace().as_ref(), "rewind_failed", err));
                }
                if let Some(plan) = s.pending_edit.take() {
                    self.restart_for_edit(key, plan, out);
                }
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
        if self.permissions.is_full() {
            s.send(claude::control_success(
                cli_id,
                claude::deny_response("Too many pending approvals"),
            ));
            return;
        }
        if let Some(t) = s.current.as_mut() {
            t.emitted = true;
        }
        let id = crate::ids::new_id();
        let tool = req.get("tool_name").cloned().unwrap_or(Value::Null);
        let input = req.get("input").cloned().unwrap_or_else(|| json!({}));
        let body = s.event(
            "permission.request",
            s.trace().as_ref(),
            json!({
                "request_id": id,
                "tool": tool,
                "input": input,
                "title": req.get("title").cloned().unwrap_or(Value::Null),
                "display_name": req.get("display_name").cloned().unwrap_or(Value::Null),
                "description": req.get("description").cloned().unwrap_or(Value::Null),
                "tool_use_id": req.get("tool_use_id").cloned().unwrap_or(Value::Null),
            }),
        );
        out.push(body.clone());
        if let Some(t) = self.settings.permission_timeout {
            self.timer.at(
                Instant::now() + t,
                Tick::Permission {
                    request_id: id.clone(),
                },
            );
        }
        self.permissions.add(Pending {
            id,
            session: key.to_string(),
            child: child_id,
            cli_request_id: cli_id.to_string(),
            input,
            body,
        });
    }

    /// The CLI named the real session id: announce it under the old id, then re-key.
    fn rekey(&mut self, key: &str, sid: &str, out: &mut Vec<Value>) {
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

    /// Deny everything and stop every child (daemon shutdown). Returns children stopping.
    pub fn shutdown(&mut self, out: &mut Vec<Value>) -> usize {
        let keys: Vec<String> = self.sessions.keys().cloned().collect();
        let mut n = 0;
        for k in keys {
            if self.sessions.get(&k).is_some_and(|s| s.child.is_some()) {
                n += 1;
            }
            self.detach_child(&k, out, "the node is shutting down");
        }
        n
    }
}

/// Session ids are used in paths; only plain characters are accepted.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Claude Code's transcript directory name for a working directory.
pub fn project_slug(cwd: &Path) -> String {
    cwd.to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Message uuids already in a session's transcript, so a resumed CLI's replay of them is
/// not forwarded twice. Streams the file; bounded by the set it builds.
fn transcript_uuids(home: Option<&Path>, cwd: &Path, session: &str) -> HashSet<String> {
    let mut set = HashSet::new();
    let (Some(home), true) = (home, valid_id(session)) else {
        return set;
    };
    let path = home
        .join(".claude/projects")
        .join(project_slug(cwd))
        .join(format!("{session}.jsonl"));
    let Ok(file) = std::fs::File::open(&path) else {
        return set;
    };
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    while let Ok(r) = child::read_bounded_line(&mut reader, &mut line, 16 << 20) {
        if r == child::LineRead::Eof || set.len() >= 200_000 {
            break;
        }
        if r == child::LineRead::Line
            && let Ok(v) = serde_json::from_slice::<Value>(&line)
            && let Some(u) = v.get("uuid").and_then(Value::as_str)
        {
            set.insert(u.to_string());
        }
        line.clear();
    }
    set
}

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
            project_slug(Path::new("/home/pi/my.app")),
            "-home-pi-my-app"
        );
    }
}
