//! Saved state: what survives a restart, `<config dir>/channels-state.json` (each chat's
//! agent session id, to resume it, and each bot's poll offset, so that no update runs
//! twice). Read once at start, written on the saver thread. Runs on the hub thread, like
//! all of [`super`]; the bots' own threads are in [`crate::channels::runner`].

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Channels;
use crate::sys::fsutil::replace_private_file_quick;

/// What survives a restart (`<config dir>/channels-state.json`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Saved {
    /// `"<bot>:<chat>"` → the agent's session id, for resuming.
    #[serde(default)]
    pub(super) sessions: HashMap<String, String>,
    /// Bot → the first update not handled yet (no update runs twice after a restart).
    #[serde(default)]
    pub(super) offsets: HashMap<String, i64>,
}

impl Saved {
    /// The saved state at `path` (none, or unreadable: empty).
    pub(super) fn load(path: &Path) -> Saved {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }
}

/// The key of a chat in [`Saved::sessions`].
pub(super) fn saved_key(bot: &str, chat: i64) -> String {
    format!("{bot}:{chat}")
}

impl Channels {
    /// Write the saved state (on the saver thread).
    pub(super) fn save(&self) {
        let bytes = serde_json::to_vec(&self.saved).unwrap_or_default();
        // Once per handled update, on the saver thread: replaced atomically, not synced.
        let path = self.state_path.clone();
        self.saver.save(path.clone(), move || {
            if let Err(e) = replace_private_file_quick(&path, &bytes) {
                crate::log_warn!("cannot save {}: {e}", path.display());
            }
        });
    }
}
