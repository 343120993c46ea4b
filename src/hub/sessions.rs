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
//!
//! This file is the table itself (lookup by id or alias, the provider state of a
//! session); the rest is split by job:
//!
//! - [`commands`]: the browser's session commands (start, send, interrupt, close, list),
//!   a turn's setting overrides and queueing;
//! - [`edit`]: `session.edit` (the fork, and restoring the code first);
//! - [`media`]: a turn's images and attachments, saved on a worker before it runs;
//! - [`approvals`]: the approval table's requests, answers and settling;
//! - [`children`]: spawning an agent's child, stopping them all at shutdown;
//! - [`ticks`]: the timer's ticks for sessions (retries, ACP waits, approval timeouts);
//! - [`sidecar`]: the per-session settings saved beside the transcript;
//! - [`live_history`]: what `history.get` sees of a session held here.

mod approvals;
mod children;
mod commands;
mod edit;
mod live_history;
mod media;
mod sidecar;
mod ticks;

pub(crate) use approvals::Approval;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::Sender;
use serde_json::Value;

use crate::hub::Tick;
use crate::hub::permissions::Permissions;
use crate::hub::session::{Agent, Session};
use crate::hub::timer::Timer;
use crate::hub::worker::{Work, Workers};
use crate::sys::child::ChildEvent;
use crate::sys::saver::Saver;

/// Live sessions allowed at once.
const MAX_SESSIONS: usize = 64;
/// Turns waiting behind the running one, per session.
const MAX_QUEUED_TURNS: usize = 64;

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
    pub(crate) fn new(
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

    /// A worker's answer about a session (or the same work done on the hub when no
    /// worker could take it); any other answer is handed back.
    pub(crate) fn on_work(&mut self, w: Work, out: &mut Vec<Value>) -> Option<Work> {
        match w {
            Work::Prepared {
                session,
                turn,
                prepared,
            } => self.on_prepared(&session, turn, prepared, out),
            Work::Transcript { session, job, done } => {
                self.on_transcript(&session, job, done, out);
            }
            Work::AcpLoadDelay { session, delay } => {
                if let Some(key) = self.key_of(&session) {
                    self.acp_load_after(&key, delay);
                }
            }
            other => return Some(other),
        }
        None
    }

    /// The command catalogue last reported by a CLI, if any.
    pub(crate) fn catalogue(&self) -> Option<&Vec<Value>> {
        self.catalogue.as_ref()
    }

    /// The id a session is known by now: `id`, or the real id it was re-keyed to.
    pub(crate) fn current_id(&self, id: &str) -> String {
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

    /// Ids (current and provisional) of sessions with a turn in flight.
    pub(crate) fn running_ids(&self) -> Vec<String> {
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
}
