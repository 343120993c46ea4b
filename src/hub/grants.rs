//! Scoped grants: "Allow for 1 h" pressed in a chat lets later requests of the same
//! session, for the same tool and inside the same [`Scope`] (command prefix or
//! directory), through without asking, until the grant ends by itself. A grant only
//! stands in for a person's answer: the node's rules are asked first, so it never
//! widens the policy. A bounded table owned by the hub thread; each grant's end is a
//! timer tick ([`crate::hub::Tick::GrantEnds`]).

use std::time::Instant;

use crate::policy::Subject;
use crate::policy::scope::Scope;

/// Grants held at once; a new one beyond this replaces the one that ends first.
pub const MAX_GRANTS: usize = 64;

/// One grant.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The session key it belongs to (follows re-keys).
    pub session: String,
    pub tool: String,
    pub scope: Scope,
    pub until: Instant,
    /// The same moment as wall-clock milliseconds (for people and the audit log).
    pub until_ms: u64,
    /// The approval it was made from.
    pub request_id: String,
    /// The Telegram user who pressed the button.
    pub by: Option<i64>,
}

#[derive(Default)]
pub struct Grants {
    list: Vec<Grant>,
}

impl Grants {
    /// Add a grant (the oldest-ending one goes when the table is full).
    pub fn add(&mut self, g: Grant) {
        if self.list.len() >= MAX_GRANTS
            && let Some(i) = self
                .list
                .iter()
                .enumerate()
                .min_by_key(|(_, g)| g.until)
                .map(|(i, _)| i)
        {
            self.list.remove(i);
        }
        self.list.push(g);
    }

    /// The grant in force now that covers this request, if any.
    pub fn covering(
        &self,
        session: &str,
        tool: &str,
        subject: &Subject,
        now: Instant,
    ) -> Option<&Grant> {
        self.list.iter().find(|g| {
            g.until > now && g.session == session && g.tool == tool && g.scope.covers(subject)
        })
    }

    /// Remove and return the grants that have ended by `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<Grant> {
        self.take_where(|g| g.until <= now)
    }

    /// A session's grants end with it.
    pub fn remove_session(&mut self, key: &str) -> Vec<Grant> {
        self.take_where(|g| g.session == key)
    }

    fn take_where(&mut self, gone: impl Fn(&Grant) -> bool) -> Vec<Grant> {
        let (gone, kept) = std::mem::take(&mut self.list).into_iter().partition(gone);
        self.list = kept;
        gone
    }

    pub fn rekey(&mut self, from: &str, to: &str) {
        for g in &mut self.list {
            if g.session == from {
                g.session = to.to_string();
            }
        }
    }

    /// Every grant in force, oldest first.
    pub fn list(&self) -> &[Grant] {
        &self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;
    use std::time::Duration;

    fn grant(session: &str, until: Instant) -> Grant {
        Grant {
            session: session.into(),
            tool: "Bash".into(),
            scope: Scope::Prefix(vec!["cargo".into(), "test".into()]),
            until,
            until_ms: 0,
            request_id: "r".into(),
            by: Some(1),
        }
    }

    #[test]
    fn grants_cover_their_session_tool_and_scope_until_they_end() {
        let now = Instant::now();
        let mut t = Grants::default();
        t.add(grant("s", now + Duration::from_secs(60)));
        let s = |c: &str| Subject::of(&json!({ "command": c }), Path::new("/"), None);
        assert!(t.covering("s", "Bash", &s("cargo test -q"), now).is_some());
        assert!(t.covering("other", "Bash", &s("cargo test"), now).is_none());
        assert!(t.covering("s", "Write", &s("cargo test"), now).is_none());
        assert!(t.covering("s", "Bash", &s("cargo run"), now).is_none());
        let later = now + Duration::from_secs(61);
        assert!(t.covering("s", "Bash", &s("cargo test"), later).is_none());
        t.rekey("s", "real");
        assert!(t.covering("real", "Bash", &s("cargo test"), now).is_some());
        assert_eq!(t.expire(later).len(), 1);
        assert!(t.list().is_empty());
        for i in 0..=MAX_GRANTS {
            t.add(grant(
                &i.to_string(),
                now + Duration::from_secs(i as u64 + 1),
            ));
        }
        assert_eq!(t.list().len(), MAX_GRANTS);
        assert!(!t.list().iter().any(|g| g.session == "0"));
        assert_eq!(t.remove_session("5").len(), 1);
    }
}
