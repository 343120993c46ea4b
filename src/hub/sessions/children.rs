//! Children: an agent's child process is spawned for a session (and registered in the
//! child table so its lines find the session), and at shutdown every child is stopped
//! after what waits on it is denied or ended. Detaching a child and its exit are in
//! [`super::drive`]. Runs on the hub thread.

use std::time::Instant;

use super::Sessions;
use crate::protocol::events::SessionEvent;
use crate::session::Live;
use crate::sys::child::{self, Spec};

impl Sessions {
    /// Start an agent's child for `key` (`what` names it in the log, `how` adds to that
    /// line). The session gets the new child, not yet initialized; a failure ends what
    /// waits with `transport_error`.
    pub(crate) fn spawn_agent(
        &mut self,
        key: &str,
        what: &str,
        how: &str,
        spec: &Spec,
        out: &mut Vec<SessionEvent>,
    ) -> bool {
        self.next_child += 1;
        let child_id = self.next_child;
        match child::spawn(child_id, spec, self.child_tx.clone()) {
            Ok(handle) => {
                let Some(s) = self.sessions.get_mut(key) else {
                    handle.close();
                    return false;
                };
                crate::log_info!(
                    "session {}: started {what} (pid {}) in {}{how}",
                    s.id,
                    handle.pid,
                    s.cwd.display()
                );
                self.children.insert(child_id, Some(key.to_string()));
                self.agents_changed = true;
                s.child = Some(Live {
                    handle,
                    initialized: false,
                    started: Instant::now(),
                    model: None,
                    mode: None,
                    effort: None,
                });
                true
            }
            Err(e) => {
                let message = format!("could not start {}: {e}", spec.program.display());
                self.fail_waiting(key, "transport_error", &message, out);
                false
            }
        }
    }

    /// Deny everything and stop every child (daemon shutdown): each turn still running
    /// ends with a `session.error` first. Returns how many children are stopping.
    pub(crate) fn shutdown(&mut self, out: &mut Vec<SessionEvent>) -> usize {
        let keys: Vec<String> = self.sessions.keys().cloned().collect();
        let mut n = 0;
        for k in keys {
            self.deny_pending(&k, out, "the node is shutting down");
            if let Some(s) = self.sessions.get_mut(&k) {
                let turns = s.session.end_running(true);
                if !turns.is_empty() {
                    s.commit_open(out);
                }
                for turn in turns {
                    out.push(s.error(
                        turn.trace_id.as_ref(),
                        "node_shutdown",
                        "The node is shutting down; this turn was stopped. Send it again once the node is back.",
                    ));
                }
                if s.child.is_some() {
                    n += 1;
                }
            }
            self.detach_child(&k, out, "the node is shutting down");
        }
        n
    }
}
