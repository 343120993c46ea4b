//! The owner's policy applied to sessions ([`crate::policy`]), and the audit log fed
//! from here: which agents may start, where, in which permission mode; approval
//! requests decided by a rule or a scoped grant before they reach the browser; the
//! grants a chat makes and their end. Every start, request, decision and refusal is an
//! audit record ([`crate::sys::audit`], written off the hub). Runs on the hub thread.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::Sessions;
use crate::hub::Tick;
use crate::hub::grants::Grant;
use crate::hub::permissions::Pending;
use crate::policy::scope::Scope;
use crate::policy::{Decision as RuleDecision, Subject};
use crate::protocol::commands::{Origin, Override};
use crate::protocol::events::{Event, SessionEvent};
use crate::providers::{Answer, approval_answer};
use crate::session::{Approval, short};
use crate::sys::ids::new_id;
use crate::sys::timefmt::{now_ms, rfc3339_ms};

/// Characters of a tool input kept in its audit record.
const AUDIT_INPUT: usize = 300;

impl Sessions {
    /// One audit record: `event` and these fields.
    pub(crate) fn audit(&self, event: &str, fields: Value) {
        let mut m = Map::new();
        m.insert("event".into(), event.into());
        if let Value::Object(f) = fields {
            m.extend(f);
        }
        self.audit.record(m);
    }

    /// A refusal by policy: in the audit log, and a line in the node's log.
    fn refused(&self, session: &str, what: &str, asked: &str, origin: Origin, message: &str) {
        crate::log_info!("session {session}: {message}");
        let mut f = json!({"session": session, "refused": what, "asked": asked});
        add_origin(&mut f, origin);
        self.audit("policy_refusal", f);
    }

    /// A start refused by policy: recorded, and answered with `code` and `message`.
    fn refuse_start(
        &self,
        sid: &str,
        (code, what, asked): (&str, &str, &str),
        message: String,
        (origin, trace): (Origin, Option<&Value>),
        out: &mut Vec<SessionEvent>,
    ) {
        self.refused(sid, what, asked, origin, &message);
        out.push(SessionEvent::new(sid, trace, Event::error(code, message)));
    }

    /// May `provider` start here? If not, the start is answered with `provider_refused`.
    pub(super) fn police_provider(
        &self,
        sid: &str,
        provider: &str,
        origin: Origin,
        trace: Option<&Value>,
        out: &mut Vec<SessionEvent>,
    ) -> bool {
        if self.policy.allows_provider(provider) {
            return true;
        }
        let message = format!(
            "{} does not allow the agent {provider} on this machine (allowed: {}). Pick one of those, or ask the machine's owner.",
            capitalized(&self.policy.named()),
            self.policy
                .providers
                .as_deref()
                .unwrap_or_default()
                .join(", ")
        );
        let what = ("provider_refused", "provider", provider);
        self.refuse_start(sid, what, message, (origin, trace), out);
        false
    }

    /// May a session run in `cwd` (it exists)? Judged on the directory with its
    /// symlinks resolved, which is then the session's directory (a link changed later
    /// cannot move it out of the roots); if not, the start is answered with `cwd_refused`
    /// and `None`.
    pub(super) fn police_cwd(
        &self,
        sid: &str,
        cwd: PathBuf,
        origin: Origin,
        trace: Option<&Value>,
        out: &mut Vec<SessionEvent>,
    ) -> Option<PathBuf> {
        if self.policy.roots.is_none() {
            return Some(cwd);
        }
        let resolved = std::fs::canonicalize(&cwd).unwrap_or_else(|_| cwd.clone());
        if self.policy.allows_dir(&resolved) {
            return Some(resolved);
        }
        let message = format!(
            "The working directory {} is outside the directories {} lets sessions run in ({}). Pick a directory inside them.",
            cwd.display(),
            self.policy.named(),
            self.policy.roots_text()
        );
        let asked = cwd.to_string_lossy();
        self.refuse_start(
            sid,
            ("cwd_refused", "cwd", &asked),
            message,
            (origin, trace),
            out,
        );
        None
    }

    /// The mode a new session runs in when it asks for `asked` (`None`: the default),
    /// and, when the policy refused that, the notice saying so.
    pub(super) fn police_start_mode(
        &self,
        sid: &str,
        asked: Option<String>,
        origin: Origin,
    ) -> (Option<String>, Option<Event>) {
        let wanted = asked.as_deref().unwrap_or("default");
        if self.policy.allows_mode(wanted) {
            return (asked, None);
        }
        let instead = self.policy.mode_instead(None);
        let notice = self.mode_notice(wanted, &instead);
        self.refused(sid, "permission_mode", wanted, origin, &notice);
        (Some(instead), Some(Event::notice("mode_refused", notice)))
    }

    /// A turn's permission mode (`session.send`, `session.edit`) as the policy lets it
    /// be: a refused one becomes the session's current mode (or `default`), with a
    /// `mode_refused` notice the first time it is asked in a row.
    pub(super) fn police_turn_mode(
        &mut self,
        key: &str,
        mode: &mut Override,
        origin: Origin,
        trace: Option<&Value>,
        out: &mut Vec<SessionEvent>,
    ) {
        let Some(asked) = mode.as_ref() else { return };
        let wanted = asked.clone().unwrap_or_else(|| "default".into());
        let allowed = self.policy.allows_mode(&wanted);
        let Some(e) = self.sessions.get(key) else {
            return;
        };
        if allowed {
            if let Some(e) = self.sessions.get_mut(key) {
                e.refused_mode = None;
            }
            return;
        }
        let instead = self.policy.mode_instead(e.permission_mode.as_deref());
        let notice = self.mode_notice(&wanted, &instead);
        self.refused(&e.id, "permission_mode", &wanted, origin, &notice);
        if e.refused_mode.as_deref() != Some(wanted.as_str()) {
            out.push(e.event(trace, Event::notice("mode_refused", notice)));
        }
        *mode = Some(Some(instead));
        if let Some(e) = self.sessions.get_mut(key) {
            e.refused_mode = Some(wanted);
        }
    }

    fn mode_notice(&self, wanted: &str, instead: &str) -> String {
        format!(
            "{} does not allow the permission mode {wanted}; this session runs in {instead} instead.",
            capitalized(&self.policy.named())
        )
    }

    /// The audit record of a session's start.
    pub(super) fn audit_start(&self, key: &str, asked: Option<&str>, origin: Origin) {
        let Some(e) = self.sessions.get(key) else {
            return;
        };
        let mut f = json!({
            "session": e.id,
            "provider": e.provider,
            "cwd": e.cwd,
            "mode_asked": asked.unwrap_or("default"),
            "mode": e.mode_label(),
            "resume": e.sdk_id,
        });
        add_origin(&mut f, origin);
        self.audit("session_start", f);
    }

    /// An agent asks to use a tool: the node's rules decide first (allow: answered
    /// here, never shown; deny: refused with the reason), then a grant in force, and
    /// anything else goes before the browser and the chats.
    pub(crate) fn ask(
        &mut self,
        key: &str,
        child: u64,
        a: Approval,
        refuse: String,
        out: &mut Vec<SessionEvent>,
    ) {
        let Some(e) = self.sessions.get(key) else {
            return;
        };
        let tool = a.tool.clone().unwrap_or_default();
        let subject = Subject::of(&a.input, &e.cwd, self.settings.home.as_deref());
        let id = new_id();
        self.audit(
            "permission_request",
            json!({"session": e.id, "request_id": id, "tool": tool,
                   "input": input_summary(&subject, &a.input)}),
        );
        let policy = self.policy.clone();
        // Under a policy, the node's own files (the policy, the audit log, the token) are
        // off limits to the agents, whatever the rules say.
        if policy.file.is_some() && subject.touches(&self.own_dirs, &self.own_spellings) {
            let why = format!(
                "Denied by {}: the node's configuration directory ({}) is off limits to agents.",
                policy.named(),
                self.settings.config_dir.display()
            );
            let notice = format!(
                "{tool} was denied: the node's configuration directory is off limits to agents."
            );
            let record = json!({"session": e.id, "request_id": id, "tool": tool,
                                "decision": "deny", "by": "config_dir"});
            self.deny_here(e, &a, &why, notice, record, out);
            return;
        }
        // A question (AskUserQuestion, leaving plan mode) is for a person: no rule or
        // grant answers it.
        let question = crate::policy::scope::QUESTIONS.contains(&tool.as_str());
        // An allow made here must allow this request only: an ACP agent that offers no
        // "allow once" would take "always" as leave to stop asking, past the rules.
        let once = match &e.agent {
            crate::providers::Agent::Acp(_) => a.keep["options"].as_array().is_some_and(|o| {
                o.iter()
                    .any(|o| o.get("kind").and_then(Value::as_str) == Some("allow_once"))
            }),
            _ => true,
        };
        let rule = policy
            .decide(&tool, &subject)
            .filter(|_| !question)
            .filter(|r| once || r.decision != RuleDecision::Allow);
        let decided = |how: &str, by: &str, extra: Value| {
            let mut f = json!({"session": e.id, "request_id": id, "tool": tool,
                               "decision": how, "by": by});
            if let (Value::Object(f), Value::Object(x)) = (&mut f, extra) {
                f.extend(x);
            }
            f
        };
        match rule.map(|r| r.decision) {
            Some(RuleDecision::Allow) => {
                let line = rule.map_or(0, |r| r.line);
                crate::log_info!(
                    "session {}: {tool} allowed by the rule at line {line} of the policy",
                    e.id
                );
                answer_here(e, &a, Answer::Allow, "");
                self.audit(
                    "permission_decision",
                    decided("allow", "rule", json!({"rule_line": line})),
                );
                return;
            }
            Some(RuleDecision::Deny) => {
                let described = rule.map(|r| r.describe()).unwrap_or_default();
                let line = rule.map_or(0, |r| r.line);
                let why = format!(
                    "Denied by {}: {described}. Do not try it another way; tell the user it is not allowed on this machine.",
                    policy.named()
                );
                let what = subject
                    .command
                    .as_ref()
                    .map(|c| format!(" `{}`", short(c, 80)))
                    .unwrap_or_default();
                let notice = format!("{tool}{what} was denied by {described}.");
                let record = decided("deny", "rule", json!({"rule_line": line}));
                self.deny_here(e, &a, &why, notice, record, out);
                return;
            }
            Some(RuleDecision::Ask) => {}
            None if question || !once => {}
            None => {
                if let Some(g) = self.grants.covering(key, &tool, &subject, Instant::now()) {
                    answer_here(e, &a, Answer::Allow, "");
                    self.audit(
                        "permission_decision",
                        decided(
                            "allow",
                            "grant",
                            json!({"grant_from": g.request_id, "user": g.by}),
                        ),
                    );
                    return;
                }
            }
        }
        // A rule that says ask means a person answers every time: no grant for it.
        let grantable = rule.is_none() && once && !question;
        let audit_full = decided("deny", "full", json!({}));
        if !self.put_approval(key, child, id, a, (tool, subject, grantable), out) {
            if let Some(e) = self.sessions.get(key) {
                e.send(refuse);
            }
            self.audit("permission_decision", audit_full);
        }
    }

    /// Deny the agent's request `a` of session `e` on the node: the agent is told `why`,
    /// the browser gets `notice` (`tool_denied`), the audit log `record`.
    fn deny_here(
        &self,
        e: &super::Entry,
        a: &Approval,
        why: &str,
        notice: String,
        record: Value,
        out: &mut Vec<SessionEvent>,
    ) {
        answer_here(e, a, Answer::Deny, why);
        out.push(e.event(e.trace().as_ref(), Event::notice("tool_denied", notice)));
        self.audit("permission_decision", record);
    }

    /// The audit record of a pending approval's end.
    pub(crate) fn audit_decision(&self, p: &Pending, decision: &str, by: &str, origin: Origin) {
        let session = self
            .sessions
            .get(&p.session)
            .map_or(p.session.as_str(), |e| e.id.as_str());
        let mut f = json!({"session": session, "request_id": p.id, "tool": p.tool,
                           "decision": decision, "by": by});
        if let Origin::Chat { chat, user } = origin {
            f["chat"] = json!(chat);
            f["user"] = json!(user);
        }
        self.audit("permission_decision", f);
    }

    /// A chat's "Allow for 1 h" on approval `p`: a grant for what is like it, unless a
    /// rule asks for this every time or no scope can be drawn (then it was allowed once).
    pub(crate) fn make_grant(&mut self, p: &Pending, user: Option<i64>) {
        let scope = if p.grantable {
            Scope::of(&p.tool, &p.subject)
        } else {
            None
        };
        let Some(scope) = scope else {
            crate::log_info!(
                "approval {}: allowed once (no grant can be made for it)",
                p.id
            );
            return;
        };
        let length = self.settings.grant_for;
        let until_ms = now_ms() + length.as_millis() as u64;
        let g = Grant {
            session: p.session.clone(),
            tool: p.tool.clone(),
            scope,
            until: Instant::now() + length,
            until_ms,
            request_id: p.id.clone(),
            by: user,
        };
        let session = self
            .sessions
            .get(&p.session)
            .map_or(p.session.clone(), |e| e.id.clone());
        self.audit(
            "grant",
            json!({"session": session, "tool": g.tool, "scope": g.scope.describe(),
                   "until": rfc3339_ms(until_ms), "user": user, "request_id": p.id}),
        );
        self.timer
            .at(g.until + Duration::from_millis(5), Tick::GrantEnds);
        self.grants.add(g);
        self.grants_changed = true;
    }

    /// Grants whose time is up are gone.
    pub(crate) fn end_grants(&mut self) {
        for g in self.grants.expire(Instant::now()) {
            self.grants_changed = true;
            self.audit(
                "grant_ended",
                json!({"session": g.session, "tool": g.tool, "scope": g.scope.describe(),
                       "why": "expired"}),
            );
        }
    }

    /// A session's grants end with it.
    pub(crate) fn end_session_grants(&mut self, key: &str) {
        for g in self.grants.remove_session(key) {
            self.grants_changed = true;
            self.audit(
                "grant_ended",
                json!({"session": g.session, "tool": g.tool, "scope": g.scope.describe(),
                       "why": "session closed"}),
            );
        }
    }

    /// The grants in force, as the chats show them; `None` when unchanged since asked.
    pub(crate) fn take_grants_changed(&mut self) -> Option<Vec<crate::channels::GrantView>> {
        if !std::mem::take(&mut self.grants_changed) {
            return None;
        }
        Some(
            self.grants
                .list()
                .iter()
                .map(|g| crate::channels::GrantView {
                    session: self
                        .sessions
                        .get(&g.session)
                        .map_or(g.session.clone(), |e| e.id.clone()),
                    request_id: g.request_id.clone(),
                    tool: g.tool.clone(),
                    scope: g.scope.describe(),
                    until_hm: rfc3339_ms(g.until_ms).get(11..16).unwrap_or("").to_string(),
                })
                .collect(),
        )
    }

    /// A new policy is in force (SIGHUP), for the sessions held here too: one in a mode
    /// it no longer allows goes on in an allowed one (live for Claude Code and ACP
    /// approvals; Codex from its next turn), with a `mode_refused` notice; one whose
    /// agent or directory it no longer allows is closed, with the error saying why.
    pub(crate) fn set_policy(
        &mut self,
        policy: crate::policy::Policy,
        out: &mut Vec<SessionEvent>,
    ) {
        self.audit(
            "policy_loaded",
            json!({"file": policy.file, "policy": policy.to_json()}),
        );
        self.policy = std::sync::Arc::new(policy);
        (self.own_dirs, self.own_spellings) = own_places(&self.settings, &self.policy);
        let mut keys: Vec<String> = self.sessions.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let Some(e) = self.sessions.get(&key) else {
                continue;
            };
            let via = Origin::Relay;
            let refusal = if !self.policy.allows_provider(&e.provider) {
                Some((
                    "provider_refused",
                    "provider",
                    e.provider.clone(),
                    format!(
                        "{} no longer allows the agent {}; this session is closed.",
                        capitalized(&self.policy.named()),
                        e.provider
                    ),
                ))
            } else if self.policy.roots.is_some()
                && !self
                    .policy
                    .allows_dir(&std::fs::canonicalize(&e.cwd).unwrap_or_else(|_| e.cwd.clone()))
            {
                Some((
                    "cwd_refused",
                    "cwd",
                    e.cwd.to_string_lossy().into_owned(),
                    format!(
                        "{} no longer lets sessions run in {} (allowed: {}); this session is closed.",
                        capitalized(&self.policy.named()),
                        e.cwd.display(),
                        self.policy.roots_text()
                    ),
                ))
            } else {
                None
            };
            if let Some((code, what, asked, message)) = refusal {
                out.push(e.event(e.trace().as_ref(), Event::error(code, message.clone())));
                let id = e.id.clone();
                self.refused(&id, what, &asked, via, &message);
                self.close(&key, None, out);
                continue;
            }
            let mode = e.mode_label().to_string();
            if self.policy.allows_mode(&mode) {
                continue;
            }
            let instead = self.policy.mode_instead(None);
            let notice = self.mode_notice(&mode, &instead);
            out.push(e.event(
                e.trace().as_ref(),
                Event::notice("mode_refused", notice.clone()),
            ));
            let id = e.id.clone();
            self.refused(&id, "permission_mode", &mode, via, &notice);
            let Some(e) = self.sessions.get_mut(&key) else {
                continue;
            };
            e.permission_mode = Some(instead);
            e.refused_mode = Some(mode);
            let (s, agent) = e.split();
            if let Some(st) = agent.claude_state() {
                crate::providers::claude::stream::sync_mode(s, st);
            }
            self.save_sidecar(&key);
        }
    }
}

/// Answer the agent's request `a` of session `e` here, without asking anyone.
fn answer_here(e: &super::Entry, a: &Approval, how: Answer, deny_message: &str) {
    e.send(approval_answer(
        &e.agent,
        &a.cli_request_id,
        &a.keep,
        how,
        None,
        deny_message,
    ));
}

/// What the agents may not reach under a policy: the config dir (as configured and
/// resolved) and the policy file (which may live elsewhere), and how a command may name
/// them (also `~/…`, `$HOME/…`). Worked out when a policy comes into force, not per
/// request.
pub(super) fn own_places(
    settings: &super::Settings,
    policy: &crate::policy::Policy,
) -> (Vec<PathBuf>, Vec<String>) {
    let mut dirs = vec![settings.config_dir.clone()];
    if let Ok(d) = std::fs::canonicalize(&settings.config_dir)
        && d != settings.config_dir
    {
        dirs.push(d);
    }
    dirs.extend(policy.file.iter().cloned());
    let names = Subject::spellings(&dirs, settings.home.as_deref());
    (dirs, names)
}

/// Where a command came from, as audit fields.
fn add_origin(f: &mut Value, origin: Origin) {
    match origin {
        Origin::Relay => f["via"] = json!("relay"),
        Origin::Chat { chat, user } => {
            f["via"] = json!("telegram");
            f["chat"] = json!(chat);
            if user.is_some() {
                f["user"] = json!(user);
            }
        }
    }
}

/// What a tool's input says, short: its command, its paths, or its JSON cut; secrets
/// the log knows are replaced.
fn input_summary(subject: &Subject, input: &Value) -> String {
    let text = if let Some(c) = &subject.command {
        c.clone()
    } else if !subject.paths.is_empty() {
        subject
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        // Bounded before it is serialized whole: the summary only needs its start.
        let (shown, _) = crate::session::permission_input(input);
        shown.to_string()
    };
    // Secrets out first: one cut in half by the length bound would keep its start.
    short(&crate::sys::logging::redact_secrets(&text), AUDIT_INPUT)
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
