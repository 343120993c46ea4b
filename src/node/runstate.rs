//! What a running daemon says about itself for `status` and `service status`:
//! `<config dir>/daemon-state.json` with its pid, whether the relay link is up (since
//! when) and the last link error. Written for the hub by its saver thread when the link
//! comes up or goes down (a few hundred bytes, replaced atomically by a rename, not
//! synced: losing it in a power cut costs nothing),
//! read by the CLI, which trusts it as current only while the lock says that pid runs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub pid: u32,
    pub connected: bool,
    /// Milliseconds since the epoch when the link came up or went down.
    pub since_ms: u64,
    /// Why the link last went down or could not come up.
    pub last_error: Option<String>,
}

pub fn path(config_dir: &Path) -> PathBuf {
    config_dir.join("daemon-state.json")
}

/// Record the daemon's state (a failure is logged; it never stops the daemon).
/// Write the state file (on the hub's [`crate::sys::saver`] thread, never the hub).
pub fn write(config_dir: &Path, state: &RunState) {
    let bytes = serde_json::to_vec(state).unwrap_or_default();
    if let Err(e) = crate::sys::fsutil::replace_private_file_quick(&path(config_dir), &bytes) {
        crate::log_debug!("cannot write the daemon state file: {e}");
    }
}

/// The state the last daemon recorded, whoever it was (for "the last run ended with").
pub fn read_last(config_dir: &Path) -> Option<RunState> {
    let bytes = std::fs::read(path(config_dir)).ok()?;
    serde_json::from_slice::<RunState>(&bytes).ok()
}

/// The state the daemon `pid` last recorded (`None`: none, another pid's, or unreadable).
pub fn read(config_dir: &Path, pid: u32) -> Option<RunState> {
    let bytes = std::fs::read(path(config_dir)).ok()?;
    serde_json::from_slice::<RunState>(&bytes)
        .ok()
        .filter(|s| s.pid == pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_stale_pids() {
        let dir = std::env::temp_dir().join(format!("cba-runstate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read(&dir, 1), None);
        let s = RunState {
            pid: 42,
            connected: false,
            since_ms: 7,
            last_error: Some("refused".into()),
        };
        write(&dir, &s);
        assert_eq!(read(&dir, 42), Some(s));
        assert_eq!(read(&dir, 43), None, "another daemon's state is not ours");
        assert_eq!(read_last(&dir).map(|s| s.pid), Some(42));
        std::fs::write(path(&dir), b"{garbage").unwrap();
        assert_eq!(read(&dir, 42), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
