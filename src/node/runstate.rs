//! What a running daemon says about itself for `status` and `service status`:
//! `<config dir>/daemon-state.json` with its pid, whether the relay link is up (since
//! when), the last link error, its live agents and the limits in force. Written when the
//! link or an agent's state changes. Written for the hub by its saver thread when the link
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
    /// The agent processes alive now.
    #[serde(default)]
    pub agents: Vec<AgentRun>,
    /// The small-host limits in force.
    #[serde(default)]
    pub limits: Option<LimitsRun>,
}

/// One live agent process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRun {
    pub provider: String,
    pub session: String,
    /// `running` (a turn), `waiting` (for an approval or question) or `idle`.
    pub state: String,
    pub pid: u32,
    /// Milliseconds since the epoch of its session's last activity.
    pub active_ms: u64,
}

/// The limits of `CODING_BRIDGE_IDLE_STOP`, `_MAX_AGENTS` and `_MIN_FREE_MEMORY`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitsRun {
    /// Seconds; `None`: never.
    pub idle_stop_s: Option<u64>,
    pub max_agents: usize,
    pub min_free_bytes: u64,
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
            agents: vec![AgentRun {
                provider: "claude".into(),
                session: "s1".into(),
                state: "idle".into(),
                pid: 9,
                active_ms: 5,
            }],
            limits: None,
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
