//! The hub's side of an ACP session: finding the agent's command, starting it and
//! writing queued prompts; what the agent's lines mean is
//! [`crate::providers::acp::driver`]'s. Runs on the hub thread.

use super::Sessions;
use crate::protocol::events::SessionEvent;
use crate::providers::Agent;
use crate::providers::acp::{self, driver};

impl Sessions {
    /// Start the agent for `key` if it has none.
    pub(crate) fn acp_ensure_child(&mut self, key: &str, out: &mut Vec<SessionEvent>) {
        let Some(e) = self.sessions.get(key) else {
            return;
        };
        if e.child.is_some() {
            return;
        }
        let Agent::Acp(st) = &e.agent else { return };
        let Some(spec) = st.spec.clone() else { return };
        let Some(program) = acp::resolve(
            &spec.command,
            std::env::var_os("PATH"),
            self.settings.home.as_deref(),
        ) else {
            let message = format!(
                "{} (`{}`) was not found{}. Install it{}, or set {}.",
                spec.label,
                spec.command,
                if spec.command.contains('/') {
                    ""
                } else {
                    " on PATH"
                },
                spec.install
                    .as_deref()
                    .map(|i| format!(" with `{i}`"))
                    .unwrap_or_default(),
                acp::path_var(&spec.name)
            );
            self.fail_waiting(key, "cli_not_found", &message, out);
            return;
        };
        let run = driver::spec(program, &spec, e);
        if !self.spawn_agent(key, &spec.name, "", &run, out) {
            return;
        }
        if let Some(e) = self.sessions.get_mut(key) {
            let (s, agent) = e.split();
            if let Agent::Acp(st) = agent {
                driver::on_spawned(s, st, spec);
            }
        }
    }

    /// Send the next queued prompt when the session is ready and idle.
    pub(crate) fn acp_pump(&mut self, key: &str, out: &mut Vec<SessionEvent>) {
        while let Some(e) = self.sessions.get_mut(key) {
            let (s, agent) = e.split();
            let Agent::Acp(st) = agent else { return };
            // `true`: a turn was answered locally; look at the next one.
            if !driver::write_turn(s, st, out) {
                return;
            }
        }
    }
}
