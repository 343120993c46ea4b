//! All sessions (PROTOCOL §3–8): the browser's `session.*` and permission commands,
//! already parsed into typed values ([`crate::protocol::commands`]), applied to the
//! sessions, and the providers' [`crate::providers::Effect`]s applied to the daemon.
//! Each entry pairs the generic [`Session`] with its provider's state ([`Agent`]); what
//! an agent's output means is the provider's ([`crate::providers`]).
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
//! - [`drive`]: a child's lines to its provider and the effects back, exits and
//!   retries, re-keying, detaching;
//! - [`claude`], [`codex`], [`acp`]: starting each agent's child and writing its turns;
//! - [`commands`]: the browser's session commands (start, send, interrupt, close, list),
//!   a turn's setting overrides and queueing;
//! - [`edit`]: `session.edit` (the fork, and restoring the code first);
//! - [`media`]: a turn's images and attachments, saved on a worker before it runs;
//! - [`approvals`]: the approval table's requests, answers and settling;
//! - [`children`]: spawning an agent's child, stopping them all at shutdown;
//! - [`ticks`]: the timer's ticks for sessions (retries, ACP waits, approval timeouts);
//! - [`sidecar`]: the per-session settings saved beside the transcript;
//! - [`live_history`]: what `history.get` sees of a session held here;
//! - [`policing`]: the owner's policy applied (agents, directories, modes, approval
//!   rules), scoped grants, and the audit records;
//! - [`limits`]: small hosts: idle agents stopped, the cap on live agents, the memory
//!   guard, and what `status` says of the agents.

mod acp;
mod approvals;
mod children;
mod claude;
mod codex;
mod commands;
mod drive;
mod edit;
mod limits;
mod live_history;
mod media;
mod policing;
mod sidecar;
mod ticks;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::Sender;
use serde_json::Value;

pub use limits::Limits;

use crate::hub::Tick;
use crate::hub::permissions::Permissions;
use crate::hub::timer::Timer;
use crate::hub::worker::{Work, Workers};
use crate::protocol::events::SessionEvent;
use crate::providers::claude::stream::ClaudeState;
use crate::providers::{self, Agent};
use crate::session::Session;
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
    /// Idle stop, the cap on live agents, the memory guard.
    pub limits: Limits,
    /// How long a chat's "Allow for 1 h" grant lasts.
    pub grant_for: Duration,
}

/// All sessions of this daemon.
pub struct Sessions {
    pub(crate) settings: Settings,
    pub(crate) workers: Workers,
    /// Writes the settings sidecars, in order.
    pub(crate) saver: Saver,
    pub(crate) timer: Timer<Tick>,
    pub(crate) child_tx: Sender<ChildEvent>,
    pub(crate) sessions: HashMap<String, Entry>,
    pub(crate) aliases: HashMap<String, String>,
    /// Child id → session key; `None` once detached (closed or replaced).
    pub(crate) children: HashMap<u64, Option<String>>,
    pub(crate) permissions: Permissions,
    pub(crate) next_child: u64,
    /// The last command catalogue any child reported.
    pub(crate) catalogue: Option<Vec<Value>>,
    /// Numbers the worker jobs of the sessions (a late answer to an old one is dropped).
    pub(crate) next_job: u64,
    /// A session left the table or changed its id: the run state is written again.
    pub(crate) agents_changed: bool,
    /// The owner's policy in force (replaced on SIGHUP).
    pub(crate) policy: std::sync::Arc<crate::policy::Policy>,
    /// Where starts, approvals, decisions and refusals are recorded.
    pub(crate) audit: crate::sys::audit::Audit,
    pub(crate) grants: crate::hub::grants::Grants,
    /// The grants changed since the chats were told.
    pub(crate) grants_changed: bool,
    /// The config dir, as configured and resolved, and the policy file: no agent may
    /// reach into them under a policy (see `policing::own_places`).
    pub(crate) own_dirs: Vec<PathBuf>,
    /// How a command may name them (`~/…`, `$HOME/…` too).
    pub(crate) own_spellings: Vec<String>,
}

impl Sessions {
    pub(crate) fn new(
        settings: Settings,
        timer: Timer<Tick>,
        child_tx: Sender<ChildEvent>,
        workers: Workers,
        saver: Saver,
        policy: crate::policy::Policy,
        audit: crate::sys::audit::Audit,
    ) -> Sessions {
        let (own_dirs, own_spellings) = policing::own_places(&settings, &policy);
        Sessions {
            own_dirs,
            own_spellings,
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
            agents_changed: false,
            policy: std::sync::Arc::new(policy),
            audit,
            grants: Default::default(),
            grants_changed: false,
        }
    }

    /// A worker's answer about a session (or the same work done on the hub when no
    /// worker could take it); any other answer is handed back.
    pub(crate) fn on_work(&mut self, w: Work, out: &mut Vec<SessionEvent>) -> Option<Work> {
        match w {
            Work::Prepared {
                session,
                turn,
                prepared,
            } => self.on_prepared(&session, turn, prepared, out),
            Work::Transcript { session, job, done } => {
                self.on_transcript(&session, job, done, out);
            }
            Work::Wake { session, wake } => self.on_wake(&session, wake, out),
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
    pub(crate) fn effective_model(&self, s: &Entry) -> Option<String> {
        match s.agent {
            Agent::Claude(_) => s
                .model
                .clone()
                .or_else(|| self.settings.default_model.clone()),
            _ => s.model.clone(),
        }
    }

    /// Claude Code's state of session `key`, if it is a Claude Code session.
    pub(crate) fn claude_of(&mut self, key: &str) -> Option<&mut ClaudeState> {
        self.sessions.get_mut(key)?.agent.claude_state()
    }

    /// Ids (current and provisional) of sessions with a turn in flight.
    pub(crate) fn running_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for s in self.sessions.values().filter(|e| e.running()) {
            ids.push(s.id.clone());
            if let Some(sdk) = &s.sdk_id {
                ids.push(sdk.clone());
            }
        }
        // The ids the browser knew them by before the re-key, too.
        for (old, key) in &self.aliases {
            if self.sessions.get(key).is_some_and(|e| e.running()) {
                ids.push(old.clone());
            }
        }
        ids
    }
}

/// A session of the table: the generic [`Session`] and its provider's state side by
/// side, so a provider can change both at once ([`Entry::split`]). It reads as its
/// session (`Deref`), which is what most of the hub looks at.
pub(crate) struct Entry {
    pub(crate) session: Session,
    pub(crate) agent: Agent,
    /// An idle check is armed for it ([`Sessions::touch`]).
    pub(crate) idle_check: bool,
    /// Its agent's state as the run state last said (`None`: no agent).
    pub(crate) reported: Option<&'static str>,
    /// Something happened since: look at its state again.
    pub(crate) state_dirty: bool,
    /// The permission mode last refused by the policy (noticed once in a row).
    pub(crate) refused_mode: Option<String>,
}

impl Entry {
    pub(crate) fn new(session: Session, agent: Agent) -> Entry {
        Entry {
            session,
            agent,
            idle_check: false,
            reported: None,
            state_dirty: true,
            refused_mode: None,
        }
    }

    /// The session and its provider's state, both mutable.
    pub(crate) fn split(&mut self) -> (&mut Session, &mut Agent) {
        (&mut self.session, &mut self.agent)
    }

    pub(crate) fn is_claude(&self) -> bool {
        matches!(self.agent, Agent::Claude(_))
    }

    /// Close whatever the running turn left open (see [`providers::commit_open`]).
    pub(crate) fn commit_open(&mut self, out: &mut Vec<SessionEvent>) {
        providers::commit_open(&mut self.session, &mut self.agent, out);
    }
}

impl std::ops::Deref for Entry {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

impl std::ops::DerefMut for Entry {
    fn deref_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}
