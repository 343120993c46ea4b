//! Approvals: an agent's request is put before the browser (`permission.request`, with
//! a timeout) and kept in the table until the browser resolves it, a timeout or an
//! interrupt denies it, or the agent stops waiting for it; the answer goes back to the
//! agent in its own protocol. Runs on the hub thread.

use std::time::Instant;

use serde_json::Value;

use super::{Entry, Sessions};
use crate::hub::Tick;
use crate::hub::permissions::Pending;
use crate::protocol::commands::{Origin, Resolve};
use crate::protocol::events::{Decision, Event, SessionEvent};
use crate::providers::{Answer, approval_answer, claude};
use crate::session::{Approval, permission_input};

impl Sessions {
    /// Deny every approval `key` waits for (its CLI gets the deny, the browser a
    /// `permission.resolved`).
    pub(crate) fn deny_pending(&mut self, key: &str, out: &mut Vec<SessionEvent>, reason: &str) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        // An interrupt withdraws the question (Codex `cancel`, ACP `cancelled`: the turn
        // stops there); anything else is a plain deny.
        let answer = if reason == "interrupted" {
            Answer::Cancel
        } else {
            Answer::Deny
        };
        let by = match reason {
            "interrupted" => "interrupt",
            "the session was closed" => "closed",
            _ => "stopped",
        };
        for p in self.permissions.take_session(key) {
            if s.child.as_ref().is_some_and(|c| c.handle.id == p.child) {
                s.answer(&p, answer, None, claude::DENY_MESSAGE);
            }
            self.audit_decision(&p, "deny", by, Origin::Relay);
            out.push(s.event(
                s.trace().as_ref(),
                Event::PermissionResolved {
                    request_id: p.id,
                    decision: Decision::Deny,
                    reason: Some(reason.to_string()),
                },
            ));
        }
    }

    /// Approvals of `key` that its agent stopped waiting for (the turn ended without
    /// them, or the agent said the request is settled): gone, and the browser told.
    /// `only`: just the one the agent asked as this request id.
    pub(crate) fn settle_abandoned(
        &mut self,
        key: &str,
        only: Option<&str>,
        out: &mut Vec<SessionEvent>,
    ) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let gone = match only {
            Some(cli) => {
                let child = s.child.as_ref().map(|c| c.handle.id).unwrap_or(0);
                self.permissions.take_cli(child, cli).into_iter().collect()
            }
            None => self.permissions.take_session(key),
        };
        for p in gone {
            crate::log_debug!("session {}: approval {} abandoned by the agent", s.id, p.id);
            self.audit_decision(&p, "cancelled", "agent", Origin::Relay);
            out.push(s.event(
                s.trace().as_ref(),
                Event::resolved(p.id, Decision::Cancelled),
            ));
        }
    }

    /// Put an agent's approval request before the browser (`permission.request`, with a
    /// timeout) and keep it until something settles it. False, and nothing done, when the
    /// table is full: the caller refuses the request to its agent.
    pub(crate) fn put_approval(
        &mut self,
        key: &str,
        child: u64,
        id: String,
        a: Approval,
        (tool, subject, grantable): (String, crate::policy::Subject, bool),
        out: &mut Vec<SessionEvent>,
    ) -> bool {
        if self.permissions.is_full() {
            return false;
        }
        let Some(s) = self.sessions.get_mut(key) else {
            return false;
        };
        s.mark_emitted();
        let (shown, cut) = permission_input(&a.input);
        let body = s
            .event(
                s.trace().as_ref(),
                Event::PermissionRequest {
                    request_id: id.clone(),
                    tool: a.tool,
                    input: shown,
                    title: a.title,
                    display_name: a.display_name,
                    description: a.description,
                    tool_use_id: a.tool_use_id,
                    input_truncated: cut,
                },
            )
            .under(a.parent);
        out.push(body.clone());
        let timer = self.settings.permission_timeout.and_then(|t| {
            self.timer.at(
                Instant::now() + t,
                Tick::Permission {
                    request_id: id.clone(),
                },
            )
        });
        self.permissions.add(Pending {
            id,
            session: key.to_string(),
            child,
            cli_request_id: a.cli_request_id,
            input: a.keep,
            body,
            timer,
            tool,
            subject,
            grantable,
        });
        true
    }

    /// [`Sessions::settle_abandoned`] at the end of a turn whose result is already in
    /// `out`: the approvals are settled before that result, as they were in time.
    pub(crate) fn settle_before_result(&mut self, key: &str, out: &mut Vec<SessionEvent>) {
        let mut settled = Vec::new();
        self.settle_abandoned(key, None, &mut settled);
        if settled.is_empty() {
            return;
        }
        let at = out
            .iter()
            .rposition(|e| matches!(e.event, Event::Result { .. } | Event::Error { .. }))
            .unwrap_or(out.len());
        out.splice(at..at, settled);
    }

    pub(super) fn resolve_permission(
        &mut self,
        r: Resolve,
        trace: Option<Value>,
        origin: Origin,
        out: &mut Vec<SessionEvent>,
    ) {
        let rid = r.request_id.as_str();
        // Already settled (another device answered, or it timed out): nothing to do.
        let Some(p) = self.permissions.take(rid) else {
            crate::log_debug!("permission {rid} is already settled; resolve ignored");
            return;
        };
        let allow = r.allow;
        let by = match origin {
            Origin::Relay => "browser",
            Origin::Chat { .. } => "telegram",
        };
        self.audit_decision(&p, if allow { "allow" } else { "deny" }, by, origin);
        if allow && r.grant {
            let user = match origin {
                Origin::Chat { user, .. } => user,
                Origin::Relay => None,
            };
            self.make_grant(&p, user);
        }
        if let Some(s) = self.sessions.get(&p.session) {
            let how = if allow { Answer::Allow } else { Answer::Deny };
            s.answer(&p, how, r.answer.as_ref(), claude::DENY_MESSAGE);
            let t = trace.or_else(|| s.trace());
            let decision = if allow {
                Decision::Allow
            } else {
                Decision::Deny
            };
            out.push(s.event(t.as_ref(), Event::resolved(p.id, decision)));
        }
    }
}

impl Entry {
    /// Answer approval `p` to this session's agent, in its own protocol: allow (with
    /// the browser's `answer`, for Claude's AskUserQuestion) or deny with `deny_message`.
    pub(super) fn answer(
        &self,
        p: &Pending,
        how: Answer,
        answer: Option<&Value>,
        deny_message: &str,
    ) {
        self.send(approval_answer(
            &self.agent,
            &p.cli_request_id,
            &p.input,
            how,
            answer,
            deny_message,
        ));
    }
}
