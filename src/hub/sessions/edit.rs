//! `session.edit`: fork the conversation at an earlier prompt and run the edited turn
//! there (Claude only). With "restore code" the CLI first undoes the file changes made
//! since; the prompt to rewind to is found in memory or, on a worker, in the transcript.
//! Runs on the hub thread.

use serde_json::json;

use super::Sessions;
use crate::hub::worker::{TranscriptDone, Work};
use crate::protocol::commands::Edit;
use crate::protocol::events::{Event, SessionEvent};
use crate::providers::claude;
use crate::providers::claude::stream::{EditPlan, OwnRequest, RewindError};
use crate::providers::claude::transcript;

impl Sessions {
    /// `session.edit`: fork the conversation at `cut_uuid` and run the edited turn there,
    /// with the edit's settings and media; with `restore_code`, first undo the file
    /// changes made since (a failed restore is a `session.error` and no fork).
    pub(super) fn edit(&mut self, key: &str, e: Edit, out: &mut Vec<SessionEvent>) {
        let t = e.turn;
        let trace = t.trace.clone();
        if let Some(s) = self.sessions.get(key)
            && !s.is_claude()
        {
            let notice = Event::notice(
                "edit_unsupported",
                format!(
                    "Editing an earlier prompt is not available in {} sessions.",
                    s.provider
                ),
            );
            s.answer_with_notice(trace.as_ref(), notice, out);
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
        let Some(e) = self.sessions.get(key) else {
            return;
        };
        let Some(st) = e.agent.claude_ref() else {
            return;
        };
        let s = &e.session;
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
        let sent = st
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
        let path = transcript::path(dir, st.transcript_cwd(s), sdk);
        let cut = plan.cut_uuid.clone();
        self.next_job += 1;
        let job = self.next_job;
        let session = key.to_string();
        let lookup = move || transcript::first_prompt_after(&path, cut.as_deref());
        let Some(st) = self.claude_of(key) else {
            return;
        };
        st.edit_lookup = Some((job, plan));
        let here = self.workers.run_or_here("edit", move || Work::Transcript {
            session,
            job,
            done: TranscriptDone::RestorePoint(lookup()),
        });
        if let Some(w) = here {
            self.on_work(w, out);
        }
    }

    /// A worker found (or did not) the prompt an edit with "restore code" rewinds to.
    pub(crate) fn on_restore_point(
        &mut self,
        key: &str,
        job: u64,
        found: Option<String>,
        out: &mut Vec<SessionEvent>,
    ) {
        let Some(st) = self.claude_of(key) else {
            return;
        };
        if st.edit_lookup.as_ref().is_none_or(|(j, _)| *j != job) {
            return;
        }
        let Some((_, mut plan)) = st.edit_lookup.take() else {
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

    fn restore_point_missing(&mut self, key: &str, plan: &EditPlan, out: &mut Vec<SessionEvent>) {
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
    fn rewind_for_edit(&mut self, key: &str, plan: EditPlan, out: &mut Vec<SessionEvent>) {
        self.stop_current_turn(key, out, "the session was rewound");
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(st) = s.agent.claude_state() else {
            return;
        };
        st.pending_edit = Some(plan);
        if s.child.as_ref().is_some_and(|c| c.initialized) {
            self.send_rewind(key, out);
        } else {
            self.ensure_child(key, out);
        }
    }

    /// Ask the CLI to restore files for the pending edit.
    pub(crate) fn send_rewind(&mut self, key: &str, out: &mut Vec<SessionEvent>) {
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        let (s, agent) = e.split();
        let Some(st) = agent.claude_state() else {
            return;
        };
        let Some(uuid) = st.pending_edit.as_ref().and_then(|p| p.restore_to.clone()) else {
            return;
        };
        if !st.control(
            s,
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
        out: &mut Vec<SessionEvent>,
    ) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(plan) = s.agent.claude_state().and_then(|st| st.pending_edit.take()) else {
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
    fn restart_for_edit(&mut self, key: &str, plan: EditPlan, out: &mut Vec<SessionEvent>) {
        self.stop_current_turn(key, out, "the session was rewound");
        self.detach_child(key, out, "the session was rewound");
        let Some(e) = self.sessions.get_mut(key) else {
            return;
        };
        let (s, agent) = e.split();
        let Some(st) = agent.claude_state() else {
            return;
        };
        out.push(s.event(
            plan.turn.trace_id.as_ref(),
            Event::Rewound {
                cut_uuid: plan.cut_uuid.clone(),
                prompt: plan.media.prompt.clone(),
            },
        ));
        s.queue.clear();
        s.awaiting.clear();
        st.next_spawn = match (&s.sdk_id, &plan.cut_uuid) {
            (Some(sdk), Some(cut)) => claude::SpawnOpts {
                resume: Some(sdk.clone()),
                fork: true,
                resume_at: Some(cut.clone()),
                ..claude::SpawnOpts::default()
            },
            // Nothing to fork from: a fresh conversation.
            _ => {
                s.sdk_id = None;
                st.known.clear();
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
}
