//! Tool approvals waiting for the browser (PROTOCOL §4). Each approval an agent asks for
//! (Claude Code's `can_use_tool`, Codex's approval requests, ACP's
//! `session/request_permission`) becomes a [`Pending`] entry until one thing settles it:
//! `permission.resolve`, the permission timeout, the agent withdrawing it,
//! or the end of its child (session closed, daemon stopping, crash). A bounded table in
//! arrival order, owned by the hub thread through [`crate::hub::sessions`]. Taking an
//! entry out cancels its timeout timer.

use serde_json::Value;

use crate::hub::Tick;
use crate::hub::timer::{Timer, TimerId};
use crate::protocol::events::SessionEvent;

/// Approvals pending across all sessions; beyond this a request is denied at once.
pub const MAX_PENDING: usize = 256;

/// One approval waiting for the browser.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Our id, sent to the browser (the CLI's ids are only unique per child).
    pub id: String,
    /// The session key it belongs to (follows re-keys).
    pub session: String,
    pub child: u64,
    /// The CLI's request id, for the answer.
    pub cli_request_id: String,
    /// The tool input, returned (amended or not) with an allow.
    pub input: Value,
    /// The `permission.request` event, re-sent in `permissions.snapshot`.
    pub body: SessionEvent,
    /// Its timeout, if one runs.
    pub timer: Option<TimerId>,
    /// The tool's name, and what it is about (for the audit log and grants).
    pub tool: String,
    pub subject: crate::policy::Subject,
    /// No rule spoke for it, so a chat's "Allow for 1 h" may make a grant of it.
    pub grantable: bool,
}

#[derive(Default)]
pub struct Permissions {
    pending: Vec<Pending>,
    /// Where the timeouts run (none in unit tests).
    timer: Option<Timer<Tick>>,
}

impl Permissions {
    pub fn with_timer(timer: Timer<Tick>) -> Permissions {
        Permissions {
            pending: Vec::new(),
            timer: Some(timer),
        }
    }

    /// An entry leaves the table: its timeout has nothing left to do.
    fn settled(&self, p: &Pending) {
        if let (Some(t), Some(id)) = (&self.timer, p.timer) {
            t.cancel(id);
        }
    }

    /// Whether session `key` waits for an answer.
    pub fn has_session(&self, key: &str) -> bool {
        self.pending.iter().any(|p| p.session == key)
    }

    pub fn is_full(&self) -> bool {
        self.pending.len() >= MAX_PENDING
    }

    pub fn add(&mut self, p: Pending) {
        self.pending.push(p);
    }

    /// Remove and return the approval with our id `id`.
    pub fn take(&mut self, id: &str) -> Option<Pending> {
        let pos = self.pending.iter().position(|p| p.id == id)?;
        let p = self.pending.remove(pos);
        self.settled(&p);
        Some(p)
    }

    /// Remove and return the approval the CLI of `child` asked as `cli_id`.
    pub fn take_cli(&mut self, child: u64, cli_id: &str) -> Option<Pending> {
        let pos = self
            .pending
            .iter()
            .position(|p| p.child == child && p.cli_request_id == cli_id)?;
        let p = self.pending.remove(pos);
        self.settled(&p);
        Some(p)
    }

    /// Remove and return every approval of `child`, in arrival order.
    pub fn take_child(&mut self, child: u64) -> Vec<Pending> {
        let (taken, kept) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.child == child);
        self.pending = kept;
        for p in &taken {
            self.settled(p);
        }
        taken
    }

    /// Remove and return every approval of session `key`, in arrival order.
    pub fn take_session(&mut self, key: &str) -> Vec<Pending> {
        let (taken, kept) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.session == key);
        self.pending = kept;
        for p in &taken {
            self.settled(p);
        }
        taken
    }

    /// The `permission.request` bodies of everything pending, in arrival order.
    pub fn snapshot(&self) -> Vec<SessionEvent> {
        self.pending.iter().map(|p| p.body.clone()).collect()
    }

    /// A session was re-keyed from `from` to `to`: its approvals follow, and so does the
    /// session id in the request the browser gets from `permissions.list`.
    pub fn rekey(&mut self, from: &str, to: &str) {
        for p in &mut self.pending {
            if p.session == from {
                p.session = to.to_string();
                p.body.session_id = Some(to.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(id: &str, child: u64, cli: &str) -> Pending {
        Pending {
            id: id.into(),
            session: "s".into(),
            child,
            cli_request_id: cli.into(),
            input: json!({}),
            body: SessionEvent::reply(None, crate::protocol::events::Event::Closed),
            timer: None,
            tool: "Bash".into(),
            subject: Default::default(),
            grantable: true,
        }
    }

    #[test]
    fn settle_in_every_way() {
        let mut t = Permissions::default();
        t.add(p("a", 1, "r1"));
        t.add(p("b", 1, "r2"));
        t.add(p("c", 2, "r1"));
        assert_eq!(t.snapshot().len(), 3);
        assert_eq!(t.take_cli(2, "r1").unwrap().id, "c");
        assert!(t.take_cli(2, "r1").is_none());
        t.rekey("s", "real");
        assert_eq!(t.snapshot()[0].session_id.as_deref(), Some("real"));
        assert_eq!(t.take("a").unwrap().session, "real");
        assert!(t.take("a").is_none());
        t.add(p("d", 1, "r3"));
        let gone: Vec<String> = t.take_child(1).into_iter().map(|p| p.id).collect();
        assert_eq!(gone, ["b", "d"]);
        t.add(p("e", 4, "r5"));
        t.rekey("s", "other");
        assert_eq!(t.take_session("other").len(), 1);
        assert!(t.snapshot().is_empty());
        for i in 0..MAX_PENDING {
            t.add(p(&i.to_string(), 3, "x"));
        }
        assert!(t.is_full());
    }
}
