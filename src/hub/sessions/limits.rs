//! A good steward of a small machine (issue 19): an agent with nothing to do for
//! [`Limits::idle_stop`] is stopped (the session stays, and its next turn resumes the
//! conversation exactly as after an idle exit); at most [`Limits::max_agents`] agents
//! live at once, the least recently used idle one stopped to make room; and no agent
//! starts while less than [`Limits::min_free`] memory is available, after stopping idle
//! agents to get it. Runs on the hub thread; the idle checks are timer ticks.

use std::time::{Duration, Instant};

use super::{Entry, Sessions};
use crate::hub::Tick;
use crate::node::runstate::{AgentRun, LimitsRun};
use crate::protocol::events::SessionEvent;
use crate::providers::Agent;
use crate::providers::claude::stream::TranscriptIo;
use crate::sys::memory::{self, Memory, Sources};

/// The limits in force (resolved by `cli`; see the README's "Small hosts").
#[derive(Debug, Clone)]
pub struct Limits {
    /// Stop an agent with nothing to do for this long (`None`: never).
    pub idle_stop: Option<Duration>,
    /// Live agents at most.
    pub max_agents: usize,
    /// Memory that must be available when an agent starts, in bytes.
    pub min_free: u64,
    /// Where the memory figures are read.
    pub memory: Sources,
}

impl Entry {
    /// Holds an agent process: running, or being started (a worker looks up what
    /// Claude Code resumes).
    pub(crate) fn holds_agent(&self) -> bool {
        self.child.is_some()
            || matches!(&self.agent, Agent::Claude(st) if matches!(st.io, TranscriptIo::Resuming(_)))
    }

    /// Its agent has nothing to do: no turn running, written, queued or announced, no
    /// edit or replay under way (pending approvals are the caller's to check).
    fn agent_idle(&self) -> bool {
        let s = &self.session;
        if s.child.is_none() || s.current.is_some() || !s.awaiting.is_empty() || !s.queue.is_empty()
        {
            return false;
        }
        match &self.agent {
            Agent::Claude(st) => {
                st.autos_owed == 0
                    && st.io == TranscriptIo::Idle
                    && st.pending_edit.is_none()
                    && st.edit_lookup.is_none()
            }
            Agent::Codex(_) => true,
            Agent::Acp(st) => !st.replaying,
        }
    }
}

impl Sessions {
    /// Something happened in session `key` (a line from its agent, a command): it is
    /// active now, and once idle its agent is stopped after [`Limits::idle_stop`].
    pub(crate) fn touch(&mut self, key: &str) {
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        let now = Instant::now();
        e.session.last_active = now;
        e.state_dirty = true;
        self.arm_idle_check(key, now);
    }

    /// Arm the session's idle check for `idle_stop` after `since`, unless one is armed
    /// or there is nothing to stop.
    fn arm_idle_check(&mut self, key: &str, since: Instant) {
        let Some(idle_stop) = self.settings.limits.idle_stop else {
            return;
        };
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        if e.idle_check || e.child.is_none() {
            return;
        }
        let at = (since + idle_stop).max(Instant::now());
        e.idle_check = self
            .timer
            .at(
                at,
                Tick::IdleCheck {
                    session: key.to_string(),
                },
            )
            .is_some();
    }

    /// The idle check of `session` is due: stop its agent if it has been idle long
    /// enough; otherwise check again when it might have been.
    pub(crate) fn on_idle_check(&mut self, session: &str, out: &mut Vec<SessionEvent>) {
        let (Some(idle_stop), Some(key)) = (self.settings.limits.idle_stop, self.key_of(session))
        else {
            return;
        };
        let Some(e) = self.sessions.get_mut(&key) else {
            return;
        };
        e.idle_check = false;
        if e.child.is_none() {
            return;
        }
        if !self.is_idle(&key) {
            // Busy now (a turn, an approval waiting for its answer): look again a whole
            // idle period later; the work it does meanwhile touches it anyway.
            return self.arm_idle_check(&key, Instant::now());
        }
        let Some(e) = self.sessions.get(&key) else {
            return;
        };
        if e.last_active.elapsed() < idle_stop {
            let since = e.last_active;
            return self.arm_idle_check(&key, since);
        }
        crate::log_info!(
            "session {}: {} idle for {} s; stopped (its next turn resumes it)",
            e.id,
            e.agent.label(),
            e.last_active.elapsed().as_secs()
        );
        self.stop_agent(&key, out, "it was idle");
    }

    /// Idle, pending approvals and questions included.
    fn is_idle(&self, key: &str) -> bool {
        self.sessions
            .get(key)
            .is_some_and(|e| e.agent_idle() && !self.permissions.has_session(key))
    }

    /// Stop `key`'s agent process (its whole process tree); the session stays.
    fn stop_agent(&mut self, key: &str, out: &mut Vec<SessionEvent>, why: &str) {
        self.detach_child(key, out, why);
    }

    /// Live agents (running or starting), besides `key`'s.
    fn live_agents_besides(&self, key: &str) -> usize {
        self.sessions
            .iter()
            .filter(|(k, e)| k.as_str() != key && e.holds_agent())
            .count()
    }

    /// The least recently used idle agent's session, besides `key`.
    fn lru_idle(&self, key: &str) -> Option<String> {
        self.sessions
            .iter()
            .filter(|(k, _)| k.as_str() != key)
            .filter(|(k, _)| self.is_idle(k))
            .min_by_key(|(_, e)| e.last_active)
            .map(|(k, _)| k.clone())
    }

    /// Before `key` starts an agent: room under the cap and enough memory, made by
    /// stopping idle agents (least recently used first). False, with every waiting
    /// turn of `key` failed (`agents_busy`, `low_memory`), when there is none to make.
    pub(crate) fn make_room(&mut self, key: &str, out: &mut Vec<SessionEvent>) -> bool {
        let max = self.settings.limits.max_agents;
        while self.live_agents_besides(key) >= max {
            let Some(victim) = self.lru_idle(key) else {
                let message = format!(
                    "All {max} agents this node runs at once are busy (each has a turn \
                     running or waits for an answer). Send again when one is done, or \
                     raise CODING_BRIDGE_MAX_AGENTS (now {max})."
                );
                self.fail_waiting(key, "agents_busy", &message, out);
                return false;
            };
            crate::log_info!(
                "session {victim}: its idle agent is stopped to make room ({max} at most)"
            );
            self.stop_agent(&victim, out, "another session needed its place");
        }
        let need = self.settings.limits.min_free;
        let Some(m) = memory::read(&self.settings.limits.memory) else {
            return true; // no figures to go by (not Linux)
        };
        // A stopped agent's memory comes back as it exits: count what it held.
        let mut freed = 0u64;
        while m.available.saturating_add(freed) < need {
            let Some(victim) = self.lru_idle(key) else {
                self.fail_low_memory(key, &m, need, out);
                return false;
            };
            let rss = self
                .sessions
                .get(&victim)
                .and_then(|e| e.child.as_ref())
                .and_then(|c| memory::rss_of(c.handle.pid))
                .unwrap_or(0);
            freed = freed.saturating_add(rss);
            crate::log_info!(
                "session {victim}: its idle agent is stopped for memory ({})",
                m.describe()
            );
            self.stop_agent(&victim, out, "the node is short of memory");
        }
        true
    }

    fn fail_low_memory(&mut self, key: &str, m: &Memory, need: u64, out: &mut Vec<SessionEvent>) {
        let label = self
            .sessions
            .get(key)
            .map_or_else(|| "the agent".into(), |e| e.agent.label());
        let message = format!(
            "Not enough memory to start {label}: {}, {} MiB needed \
             (CODING_BRIDGE_MIN_FREE_MEMORY), and no idle agent is left to stop. Close other \
             sessions or programs on the node, or lower CODING_BRIDGE_MIN_FREE_MEMORY.",
            m.describe(),
            need >> 20
        );
        self.fail_waiting(key, "low_memory", &message, out);
    }
}

impl Sessions {
    /// The live agents, for the run state (`status`).
    pub(crate) fn agents_report(&self) -> Vec<AgentRun> {
        let now = Instant::now();
        let now_ms = crate::sys::timefmt::now_ms();
        let mut agents: Vec<AgentRun> = self
            .sessions
            .iter()
            .filter_map(|(key, e)| {
                let child = e.child.as_ref()?;
                let ago = now.saturating_duration_since(e.last_active).as_millis() as u64;
                Some(AgentRun {
                    provider: e.provider.clone(),
                    session: e.id.clone(),
                    state: self.agent_state(key).to_string(),
                    pid: child.handle.pid,
                    active_ms: now_ms.saturating_sub(ago),
                })
            })
            .collect();
        agents.sort_by(|a, b| a.session.cmp(&b.session));
        agents
    }

    /// Each live agent's state by session id (and by the ids it had before a re-key),
    /// for the chat channels' `/status`.
    pub(crate) fn agent_states(&self) -> std::collections::HashMap<String, String> {
        let mut states = std::collections::HashMap::new();
        for (key, e) in &self.sessions {
            if e.child.is_some() {
                states.insert(e.id.clone(), self.agent_state(key).to_string());
            }
        }
        for (old, key) in &self.aliases {
            if let Some(s) = states.get(key).cloned() {
                states.insert(old.clone(), s);
            }
        }
        states
    }

    /// The limits in force, for the run state.
    pub(crate) fn limits_report(&self) -> LimitsRun {
        let l = &self.settings.limits;
        LimitsRun {
            idle_stop_s: l.idle_stop.map(|d| d.as_secs()),
            max_agents: l.max_agents,
            min_free_bytes: l.min_free,
        }
    }

    /// `running`, `waiting` (for the browser's answer) or `idle`.
    fn agent_state(&self, key: &str) -> &'static str {
        if self.permissions.has_session(key) {
            "waiting"
        } else if self.is_idle(key) {
            "idle"
        } else {
            "running"
        }
    }

    /// Whether what [`Sessions::agents_report`] says changed since the last call (a
    /// child started or went, a session turned busy or idle).
    pub(crate) fn take_agents_changed(&mut self) -> bool {
        let keys: Vec<String> = self
            .sessions
            .iter_mut()
            .filter_map(|(k, e)| std::mem::take(&mut e.state_dirty).then(|| k.clone()))
            .collect();
        let mut changed = std::mem::take(&mut self.agents_changed);
        for key in keys {
            let now = self
                .sessions
                .get(&key)
                .filter(|e| e.child.is_some())
                .map(|_| self.agent_state(&key));
            if let Some(e) = self.sessions.get_mut(&key)
                && e.reported != now
            {
                e.reported = now;
                changed = true;
            }
        }
        changed
    }
}
