//! The settings sidecar: a session's provider, directory, model, mode and effort, saved
//! beside its transcript id so that a resume restores what the transcript cannot carry
//! (read back in [`Sessions::command`]'s `session.start`). Runs on the hub thread; the
//! file is written by the saver.

use serde_json::json;

use super::Sessions;
use crate::history::sidecar;
use crate::protocol::SessionId;

impl Sessions {
    /// Save the session's settings beside its transcript id (on a worker; small file).
    pub(crate) fn save_sidecar(&self, key: &str) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        // The agent's id, held as text: parsed here, where it becomes a file name (an id
        // that is not safe as one has no sidecar).
        let Some(id) = s.sdk_id.as_deref().and_then(SessionId::parse) else {
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
        let path = dir.join("sessions").join(&*id);
        self.saver.save(path, move || {
            sidecar::save(&dir, &id, &body);
        });
    }
}
