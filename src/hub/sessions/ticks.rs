//! The hub timer's ticks for sessions: a crash retry's respawn, a provider's own
//! timers (ACP's load and quiet waits, a Claude turn announced but never started), and
//! an approval's timeout (denied to the agent, `permission.resolved` to the browser).
//! Runs on the hub thread.

use super::Sessions;
use crate::hub::Tick;
use crate::protocol::events::{Decision, Event, SessionEvent};
use crate::providers::Answer;

impl Sessions {
    /// A timer tick for sessions.
    pub(crate) fn on_tick(&mut self, tick: Tick, out: &mut Vec<SessionEvent>) {
        match tick {
            Tick::Retry { session } => {
                if let Some(key) = self.key_of(&session)
                    && self.sessions.get(&key).is_some_and(|s| s.child.is_none())
                {
                    self.ensure_child(&key, out);
                    self.pump(&key, out);
                }
            }
            Tick::Wake { session, wake } => self.on_wake(&session, wake, out),
            Tick::IdleCheck { session } => self.on_idle_check(&session, out),
            Tick::GrantEnds => self.end_grants(),
            Tick::Permission { request_id } => {
                if let Some(p) = self.permissions.take(&request_id)
                    && let Some(s) = self.sessions.get(&p.session)
                {
                    self.audit_decision(&p, "deny", "timeout", Default::default());
                    s.answer(
                        &p,
                        Answer::Deny,
                        None,
                        "No answer from the user in time; denied by Coding Bridge",
                    );
                    out.push(s.event(
                        s.trace().as_ref(),
                        Event::PermissionResolved {
                            request_id: p.id,
                            decision: Decision::Deny,
                            reason: Some("timeout".into()),
                        },
                    ));
                }
            }
            _ => {}
        }
    }
}
