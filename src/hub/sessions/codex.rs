//! The hub's side of a Codex session: finding `codex`, starting `codex app-server` and
//! writing queued turns; what the server's lines mean is
//! [`crate::providers::codex::driver`]'s. Runs on the hub thread.

use super::Sessions;
use crate::protocol::events::SessionEvent;
use crate::providers::Agent;
use crate::providers::codex::{self, driver};

impl Sessions {
    /// Start `codex app-server` for `key` if it has none; the thread is started (or
    /// resumed, for a session with a real id) once the server is initialized.
    pub(crate) fn codex_ensure_child(&mut self, key: &str, out: &mut Vec<SessionEvent>) {
        if self.sessions.get(key).is_none_or(|e| e.child.is_some()) {
            return;
        }
        let Some(program) = codex::resolve(
            self.settings.codex_path.as_deref(),
            std::env::var_os("PATH"),
            self.settings.home.as_deref(),
        ) else {
            let message = match &self.settings.codex_path {
                Some(p) => format!(
                    "Codex was not found at {} (--codex-path / CODING_BRIDGE_CODEX_PATH). \
                     Point it at the `codex` executable.",
                    p.display()
                ),
                None => codex::INSTALL_HINT.to_string(),
            };
            self.fail_waiting(key, "cli_not_found", &message, out);
            return;
        };
        let Some(e) = self.sessions.get(key) else {
            return;
        };
        let spec = driver::spec(program, e);
        if !self.spawn_agent(key, "codex", "", &spec, out) {
            return;
        }
        if let Some(e) = self.sessions.get_mut(key) {
            let (s, agent) = e.split();
            if let Agent::Codex(st) = agent {
                driver::on_spawned(s, st);
            }
        }
    }

    /// Write the next queued turn when the thread is ready and no turn runs.
    pub(crate) fn codex_pump(&mut self, key: &str, out: &mut Vec<SessionEvent>) {
        while let Some(e) = self.sessions.get_mut(key) {
            let (s, agent) = e.split();
            let Agent::Codex(st) = agent else { return };
            // `true`: a turn was answered locally; look at the next one.
            if !driver::write_turn(s, st, out) {
                return;
            }
        }
    }
}
