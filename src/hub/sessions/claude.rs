//! The hub's side of a Claude Code session: starting its child (always resuming a
//! session that has a real id, from a transcript a worker located and, when the API
//! would refuse it, repaired), and writing queued turns once the replay guard knows
//! what the transcript holds (read on a worker). What each line means and how a turn is
//! written are [`crate::providers::claude::driver`]'s.
//!
//! Runs on the hub thread; the workers' answers come back as [`Work::Transcript`] and
//! reach [`Sessions::on_transcript`].

use std::path::PathBuf;

use super::Sessions;
use crate::hub::worker::{TranscriptDone, Work};
use crate::protocol::events::SessionEvent;
use crate::providers::claude::driver::{self as machine, Ready, Written};
use crate::providers::claude::stream::TranscriptIo;
use crate::providers::claude::{self, transcript};
use crate::sys::child::Spec;

impl Sessions {
    /// Start Claude Code for `key` if it has no child. A session with a real id is
    /// resumed once a worker has located its transcript.
    pub(crate) fn claude_ensure_child(&mut self, key: &str, out: &mut Vec<SessionEvent>) {
        if self.sessions.get(key).is_none_or(|e| e.child.is_some()) {
            return;
        }
        let Some(program) = self.claude_program(key, out) else {
            return;
        };
        let dir = self.settings.claude_dir.clone();
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        let (s, agent) = e.split();
        let Some(st) = agent.claude_state() else {
            return;
        };
        if matches!(st.io, TranscriptIo::Resuming(_)) {
            return; // the disk is being asked; the child starts when it answers
        }
        let opts = machine::next_spawn(s, st);
        let (Some(id), Some(dir)) = (opts.resume.clone(), dir) else {
            return self.claude_spawn(key, opts, program, out);
        };
        // Locating the transcript, and repairing a copy the API would refuse, reads it
        // whole: a worker's job, the spawn follows its answer (`on_resume_plan`).
        st.next_spawn = opts;
        self.next_job += 1;
        let job = self.next_job;
        st.io = TranscriptIo::Resuming(job);
        let cwd = st.transcript_cwd(s).to_path_buf();
        let scanned = st.thinking_scanned.clone();
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
    fn claude_program(&mut self, key: &str, out: &mut Vec<SessionEvent>) -> Option<PathBuf> {
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
    pub(crate) fn on_transcript(
        &mut self,
        session: &str,
        job: u64,
        done: TranscriptDone,
        out: &mut Vec<SessionEvent>,
    ) {
        let Some(key) = self.key_of(session) else {
            return;
        };
        match done {
            TranscriptDone::Resume(plan) => self.on_resume_plan(&key, job, plan, out),
            TranscriptDone::RestorePoint(found) => self.on_restore_point(&key, job, found, out),
            TranscriptDone::Read(delta) => {
                let Some(st) = self.claude_of(&key) else {
                    return;
                };
                let TranscriptIo::Reading { job: want, turn } = st.io else {
                    return;
                };
                if want != job {
                    return;
                }
                st.known.merge(delta);
                st.io = TranscriptIo::Fresh { turn };
                self.pump(&key, out);
                // Fresh only for this pump: a turn held back (the CLI started one of its
                // own meanwhile) reads again when it may go.
                if let Some(st) = self.claude_of(&key)
                    && st.io == (TranscriptIo::Fresh { turn })
                {
                    st.io = TranscriptIo::Idle;
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
        out: &mut Vec<SessionEvent>,
    ) {
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        let (s, agent) = e.split();
        let Some(st) = agent.claude_state() else {
            return;
        };
        if st.io != TranscriptIo::Resuming(job) {
            return;
        }
        st.io = TranscriptIo::Idle;
        if s.child.is_some() {
            return;
        }
        let mut opts = machine::next_spawn(s, st);
        if opts.resume.as_deref() != Some(plan.id.as_str()) {
            // What to resume changed meanwhile (an edit's fork): ask again.
            st.next_spawn = opts;
            return self.claude_ensure_child(key, out);
        }
        if plan.scanned.is_some() {
            st.thinking_scanned = plan.scanned;
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
                st.known.clear();
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
        self.claude_spawn(key, opts, program, out);
    }

    /// Whether turn `turn` may be written now: the replay guard must know what the
    /// transcript holds first. Reading it is a worker's job; until its answer is in
    /// (`on_transcript`, which pumps again) this says no.
    fn transcript_fresh(&mut self, key: &str, turn: u64) -> bool {
        let dir = self.settings.claude_dir.clone();
        let Some(e) = self.sessions.get_mut(key) else {
            return false;
        };
        let (s, agent) = e.split();
        let Some(st) = agent.claude_state() else {
            return false;
        };
        let (Some(sdk), Some(dir)) = (&s.sdk_id, &dir) else {
            return true;
        };
        match st.io {
            TranscriptIo::Fresh { turn: t } if t == turn => {
                st.io = TranscriptIo::Idle;
                return true;
            }
            TranscriptIo::Reading { turn: t, .. } if t == turn => return false,
            TranscriptIo::Resuming(_) => return false,
            // A read for another turn (since interrupted) is stale: read again.
            _ => {}
        }
        let path = transcript::path(dir, st.transcript_cwd(s), sdk);
        st.known.follow(path);
        let Some(reading) = st.known.reading() else {
            return true;
        };
        self.next_job += 1;
        let job = self.next_job;
        st.io = TranscriptIo::Reading { job, turn };
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
        st.known.merge(delta);
        st.io = TranscriptIo::Idle;
        true
    }

    /// Spawn the child with `opts` (its resume or fork already decided).
    fn claude_spawn(
        &mut self,
        key: &str,
        opts: claude::SpawnOpts,
        program: PathBuf,
        out: &mut Vec<SessionEvent>,
    ) {
        let Some(e) = self.sessions.get(key) else {
            return;
        };
        let model = self.effective_model(e);
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        let opts = machine::spawn_opts_from(&e.session, opts, model);
        let s = &e.session;
        let (env, env_remove) = claude::child_env(self.settings.entrypoint.as_deref());
        let spec = Spec {
            program,
            args: claude::argv(&opts),
            cwd: s.cwd.clone(),
            env,
            env_remove,
        };
        let how = match (&opts.resume, opts.fork) {
            (Some(r), false) => format!(", resuming {r}"),
            (Some(r), true) => format!(", forking {r}"),
            _ => String::new(),
        };
        if !self.spawn_agent(key, "claude", &how, &spec, out) {
            return;
        }
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        let (s, agent) = e.split();
        if let Some(live) = s.child.as_mut() {
            live.model = opts.model;
            live.mode = opts.permission_mode;
            live.effort = opts.effort;
        }
        if let Some(st) = agent.claude_state() {
            machine::on_spawned(s, st);
        }
    }

    /// Write the next queued turn when the child is ready and idle (and the turns the
    /// daemon answers itself, one after another).
    pub(crate) fn claude_pump(&mut self, key: &str, out: &mut Vec<SessionEvent>) {
        loop {
            let Some(e) = self.sessions.get_mut(key) else {
                return;
            };
            let (s, agent) = e.split();
            let Some(st) = agent.claude_state() else {
                return;
            };
            let turn = match machine::ready(s, st) {
                Ready::Wait => return,
                Ready::Restart => {
                    // Effort is a start-up flag: a changed effort restarts the CLI
                    // (resuming).
                    crate::log_info!("session {}: effort changed; restarting Claude Code", s.id);
                    self.detach_child(key, out, "the effort changed");
                    self.claude_ensure_child(key, out);
                    return;
                }
                Ready::Turn(id) => id,
            };
            if !self.transcript_fresh(key, turn) {
                return;
            }
            let Some(e) = self.sessions.get_mut(key) else {
                return;
            };
            let (s, agent) = e.split();
            let Some(st) = agent.claude_state() else {
                return;
            };
            if machine::write_turn(s, st, self.catalogue.as_ref(), out) != Written::Answered {
                return;
            }
        }
    }
}
