//! The browser's requests that the disk or a probe answers (history, the directory
//! picker, capabilities, unread marks), run on the hub's workers so the hub never waits;
//! each answer comes back as a [`Work`] message. Runs on the hub thread.

use super::{Hub, traced};
use crate::history::detail::DetailError;
use crate::hub::worker::Work;
use crate::protocol::commands::{Command, Kind};
use crate::protocol::events::{Event, SessionEvent};

impl Hub {
    /// Requests answered from the disk or a probe, on worker threads; any other command
    /// is handed back.
    pub(super) fn service(&mut self, cmd: Command) -> Option<Command> {
        let trace = cmd.trace_id.clone();
        let with_trace = {
            let trace = trace.clone();
            move |e: SessionEvent| traced(e, &trace)
        };
        let home = self.home.clone();
        let started = match &cmd.kind {
            Kind::HistoryList { limit } => {
                let limit = *limit;
                let running = self.sessions.running_ids();
                let (dirs, reads) = (self.history_dirs.clone(), self.reads.clone());
                self.workers.run("history", move || {
                    Work::Reply(with_trace(crate::node::history::list(
                        &dirs, limit, &running, &reads,
                    )))
                })
            }
            Kind::HistoryMarkRead {
                provider,
                id,
                updated_at,
                limit,
            } => {
                let (limit, at) = (*limit, *updated_at);
                // The browser's own id of a session held here marks its real one.
                let id = match cmd.session_id.as_deref() {
                    Some(asked) => self.sessions.marked_id(asked, id.clone()),
                    None => None,
                };
                if id.is_none() {
                    crate::log_warn!(
                        "history.mark_read without a valid session_id; nothing marked"
                    );
                }
                let key = id
                    .as_deref()
                    .map(|id| crate::node::reads::key(provider, id));
                if let (Some(at), Some(key)) = (at, &key) {
                    // Held in memory at once: a busy node cannot lose it.
                    self.reads.raise(key, at);
                }
                let running = self.sessions.running_ids();
                let (dirs, reads) = (self.history_dirs.clone(), self.reads.clone());
                let provider = provider.clone();
                let ok = self.workers.run("history", move || {
                    // Never a session.error (PROTOCOL §6): a failure is logged and the
                    // snapshot still goes out.
                    if let (Some(id), Some(key)) = (id, key) {
                        match at.or_else(|| crate::node::history::updated_at(&dirs, &provider, &id)) {
                            Some(at) => {
                                if let Err(e) = reads.mark(&key, at) {
                                    crate::log_warn!("cannot save the read mark of {id}: {e}");
                                }
                            }
                            None => crate::log_warn!(
                                "history.mark_read of {id}: no updated_at and no transcript to take it from"
                            ),
                        }
                    }
                    Work::Reply(with_trace(crate::node::history::list(
                        &dirs, limit, &running, &reads,
                    )))
                });
                if !ok {
                    crate::log_warn!(
                        "the node is busy; the read mark is kept in memory and saved with the next one"
                    );
                }
                return None;
            }
            Kind::HistoryGet { provider, id } => {
                let session = cmd.session_id.clone().unwrap_or_default();
                if session.is_empty()
                    || !["claude", "codex", "copilot", "gemini"].contains(&provider.as_str())
                {
                    let message = if session.is_empty() {
                        "history.get needs a session_id".to_string()
                    } else {
                        format!("history.get: unknown provider {provider:?}")
                    };
                    let mut e =
                        SessionEvent::reply(None, Event::error("history_unavailable", message));
                    if !session.is_empty() {
                        e.session_id = Some(session);
                    }
                    self.emit(with_trace(e));
                    return None;
                }
                let config_dir = self.config_dir.clone();
                let dirs = self.history_dirs.clone();
                // A session held here (under its id, or the browser's id from before the
                // re-key, as after a reload right after Send) opens the agent's real
                // transcript once it has one, else what the node holds in memory.
                let live = self.sessions.live_history(&session);
                let running = self.sessions.running_ids().contains(&session)
                    || live.as_ref().is_some_and(|l| l.running);
                let (provider, id, fallback) = match live {
                    Some(l) => (l.provider, l.real_id.or_else(|| id.clone()), Some(l.detail)),
                    None => (provider.clone(), id.clone(), None),
                };
                self.workers.run("history", move || {
                    // An id that is not safe as a file name opens nothing.
                    let detail = id.ok_or(DetailError::InvalidId).and_then(|id| {
                        crate::node::history::detail(&dirs, &config_dir, &provider, &id)
                    });
                    let reply = match (detail, fallback) {
                        (Ok(mut d), _) => {
                            if let Event::HistoryDetail { running: r, .. } = &mut d.event {
                                *r = Some(running);
                            }
                            d
                        }
                        (Err(_), Some(fallback)) => fallback,
                        (Err(e), None) => SessionEvent::new(
                            session,
                            None,
                            Event::error(
                                "history_unavailable",
                                format!("Cannot open this conversation: {e}."),
                            ),
                        ),
                    };
                    Work::Reply(with_trace(reply))
                })
            }
            Kind::FsList { path, show_hidden } => {
                let (path, hidden) = (path.clone(), *show_hidden);
                let policy = self.sessions.policy.clone();
                self.workers.run("fs", move || {
                    Work::Reply(with_trace(crate::node::fslist::list(
                        home.as_deref(),
                        path.as_deref(),
                        hidden,
                        policy.roots.as_deref(),
                    )))
                })
            }
            Kind::CapabilitiesGet => {
                use crate::node::capabilities::{self as caps, Probed};
                let available = caps::available(&self.cli_paths);
                let available_codex = available.codex;
                // A running session's catalogue is the freshest Claude one.
                let live = self.sessions.catalogue().cloned();
                let done = match &self.probed {
                    Some(p) => Some(p.clone()),
                    // Nothing to probe: answer now.
                    None if !available_codex && (!available.claude || live.is_some()) => {
                        Some(Probed::default())
                    }
                    None => None,
                };
                match done {
                    Some(mut probed) => {
                        if let Some(c) = live {
                            probed.claude_commands = c;
                        }
                        let reply = caps::reply(available, &probed, &self.sessions.policy);
                        self.emit(with_trace(reply));
                        true
                    }
                    None => {
                        if let Some(waiting) = self.probe_waiting.as_mut() {
                            waiting.push(trace.clone());
                            true
                        } else {
                            let paths = self.cli_paths.clone();
                            let cwd = self.default_cwd.clone();
                            let entrypoint = self.claude_entrypoint.clone();
                            let claude = available.claude && live.is_none();
                            let codex = available_codex;
                            let ok = self.workers.run("probe", move || {
                                let mut p = Probed::default();
                                if claude {
                                    p.claude_commands = caps::probe(
                                        paths.claude.as_deref(),
                                        entrypoint.as_deref(),
                                        &cwd,
                                        caps::PROBE_TIMEOUT,
                                    )
                                    .unwrap_or_default();
                                }
                                if codex
                                    && let Some((models, efforts)) = caps::probe_codex(
                                        paths.codex.as_deref(),
                                        &cwd,
                                        caps::PROBE_TIMEOUT,
                                    )
                                {
                                    p.codex_models = models;
                                    p.codex_efforts = efforts;
                                }
                                Work::Catalogue(p)
                            });
                            if ok {
                                self.probe_waiting = Some(vec![trace.clone()]);
                            }
                            ok
                        }
                    }
                }
            }
            _ => return Some(cmd),
        };
        if !started {
            self.emit(traced(
                busy_error(&cmd.action, cmd.session_id.as_deref()),
                &trace,
            ));
        }
        None
    }
}

/// The answer to a request the workers had no room for; it names the command's session,
/// if it had one, like every error about a session.
pub(super) fn busy_error(action: &str, session_id: Option<&str>) -> SessionEvent {
    let mut e = SessionEvent::reply(
        None,
        Event::error(
            "node_busy",
            format!("the node is busy; {action} was not run, try again"),
        ),
    );
    e.session_id = session_id.map(str::to_string);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_errors_name_the_session() {
        let e = busy_error("history.get", Some("abc")).to_value();
        assert_eq!(e["session_id"], "abc");
        assert_eq!(e["event"], "session.error");
        let e = busy_error("fs.list", None).to_value();
        assert!(e.get("session_id").is_none());
    }
}
