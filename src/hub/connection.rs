//! The hub's side of the relay link: connecting, the link coming up (replaying what the
//! relay has not acknowledged) and going down (the reconnect backoff, a refused token),
//! liveness (heartbeats, a silent relay), and the run state `status` reads. Runs on the
//! hub thread; the link's own reader and writer threads are in [`crate::relay::link`].

use std::time::Instant;

use serde_json::{Value, json};

use super::delivery::node_frame;
use super::{Hub, LinkState, Outcome, Tick};
use crate::protocol::events::{Event, SessionEvent};
use crate::relay::envelope;
use crate::relay::link::{self, Down, LinkEvent, Outbound};
use crate::sys::ids;
use crate::sys::timefmt::now_ms;

impl Hub {
    /// Tell `status` (through the config dir) whether the link is up and what failed.
    pub(super) fn record_state(&mut self, connected: bool, last_error: Option<String>) {
        self.link_record = (connected, now_ms(), last_error);
        self.write_state();
    }

    /// Write the run state: the link, the live agents, the limits.
    pub(super) fn write_state(&self) {
        let (connected, since_ms, last_error) = self.link_record.clone();
        let state = crate::node::runstate::RunState {
            pid: std::process::id(),
            connected,
            since_ms,
            last_error,
            agents: self.sessions.agents_report(),
            limits: Some(self.sessions.limits_report()),
        };
        let dir = self.config_dir.clone();
        self.saver.save(crate::node::runstate::path(&dir), move || {
            crate::node::runstate::write(&dir, &state);
        });
    }

    pub(super) fn connect(&mut self) {
        self.conn_seq += 1;
        self.acks_seen = false;
        let conn = self.conn_seq;
        crate::log_debug!("connecting to {} (attempt {conn})", self.target.display);
        self.state = LinkState::Connecting { conn };
        link::spawn(conn, self.target.clone(), self.link_tx.clone());
        // A raised read limit (see `on_down`) serves one connection only.
        self.target.max_message = link::MAX_MESSAGE;
    }

    pub(super) fn current_conn(&self) -> Option<u64> {
        match &self.state {
            LinkState::Down => None,
            LinkState::Connecting { conn } | LinkState::Up { conn, .. } => Some(*conn),
        }
    }

    pub(super) fn on_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Up {
                conn,
                writer,
                control,
            } => {
                if self.current_conn() != Some(conn) {
                    control.kill();
                    return;
                }
                crate::log_info!("connected to the relay at {}", self.target.display);
                self.record_state(true, None);
                let now = Instant::now();
                self.state = LinkState::Up {
                    conn,
                    writer,
                    control,
                    since: now,
                    last_rx: now,
                };
                self.on_connected(conn);
            }
            LinkEvent::Frame { conn, incoming, .. } => {
                if !self.touch(conn) {
                    return;
                }
                self.on_frame(incoming);
            }
            LinkEvent::Alive { conn } => {
                self.touch(conn);
            }
            LinkEvent::Oversized {
                conn,
                size,
                cmd_id,
                action,
                session_id,
                trace_id,
            } => {
                if !self.touch(conn) {
                    return;
                }
                if let Some(id) = &cmd_id
                    && !self.dedupe.first_time(id)
                {
                    return; // refused already; a redelivery changes nothing
                }
                let message = format!(
                    "The {} command was {} MiB; this node takes at most {} MiB per command \
                         (images: at most {} MiB each and {} MiB in all). Send fewer or smaller images.",
                    action.as_deref().unwrap_or("browser"),
                    size.div_ceil(1 << 20),
                    link::MAX_COMMAND >> 20,
                    crate::protocol::limits::MAX_IMAGE_BYTES >> 20,
                    crate::protocol::limits::MAX_IMAGES_TOTAL >> 20,
                );
                let trace = trace_id.map(Value::String);
                let mut e =
                    SessionEvent::reply(trace.as_ref(), Event::error("command_too_large", message));
                e.session_id = session_id;
                self.emit(e);
            }
            LinkEvent::Down { conn, why } => {
                if self.current_conn() != Some(conn) {
                    return;
                }
                self.on_down(why);
            }
        }
    }

    /// Note traffic on `conn`; false if it is not the live connection.
    pub(super) fn touch(&mut self, conn: u64) -> bool {
        match &mut self.state {
            LinkState::Up {
                conn: c, last_rx, ..
            } if *c == conn => {
                *last_rx = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// A fresh connection: truncation notices, the outbox again, then heartbeats.
    pub(super) fn on_connected(&mut self, conn: u64) {
        let mut truncated: Vec<String> = self
            .outbox
            .take_truncated()
            .iter()
            .map(|id| self.sessions.current_id(id))
            .collect();
        truncated.sort();
        truncated.dedup();
        for session_id in truncated {
            let payload = SessionEvent::new(
                session_id,
                None,
                Event::StreamTruncated {
                    reason: "node_outbox_overflow".into(),
                    resume_with: "history".into(),
                },
            );
            // Sent once, ahead of the resend, without a node_seq (it must not advance acks).
            let frame = node_frame(self.token.expose(), &payload, None);
            self.send(Outbound::Text(frame));
        }
        let frames: Vec<String> = self.outbox.iter().map(|e| e.frame.clone()).collect();
        if !frames.is_empty() {
            crate::log_info!("resending {} unacknowledged events", frames.len());
        }
        for f in frames {
            self.send(Outbound::Text(f));
        }
        self.send_heartbeat();
        self.timer
            .at(Instant::now() + self.heartbeat, Tick::Heartbeat { conn });
    }

    pub(super) fn on_down(&mut self, why: Down) {
        let why = match why {
            Down::TooLarge { size, limit } => {
                let mib = |n: usize| n.div_ceil(1 << 20);
                if size <= link::MAX_RECOVERY {
                    crate::log_error!(
                        "the relay sent a {} MiB message, more than the {} MiB this connection reads; \
                         the next connection reads it once to refuse it with an error to the browser",
                        mib(size),
                        mib(limit)
                    );
                    self.target.max_message = size;
                } else {
                    crate::log_error!(
                        "the relay sent a {} MiB message, more than the node can ever read ({} MiB); \
                         it is lost, and the link reconnects",
                        mib(size),
                        mib(link::MAX_RECOVERY)
                    );
                }
                Down::Lost(format!("a {} MiB message", mib(size)))
            }
            other => other,
        };
        let lasted = match &self.state {
            LinkState::Up { since, control, .. } => {
                control.kill();
                Some(since.elapsed())
            }
            _ => None,
        };
        self.state = LinkState::Down;
        self.outq.clear();
        let text = match &why {
            Down::Rejected(m) => format!("the relay rejected this node's token ({m})"),
            Down::Lost(m) => m.clone(),
            Down::TooLarge { .. } => "a message too large".to_string(),
        };
        self.record_state(false, Some(text));
        match why {
            Down::Rejected(msg) => {
                crate::log_error!(
                    "{msg}; run `coding-bridge-agent pair` to pair this machine again"
                );
                eprintln!(
                    "error: the relay rejected this node's token ({msg}). Run `coding-bridge-agent pair` to pair this machine again."
                );
                self.exit = Some(Outcome::TokenRejected);
            }
            Down::TooLarge { .. } => {}
            Down::Lost(msg) => {
                if let Some(d) = lasted {
                    self.backoff.link_lasted(d);
                }
                let delay = self.backoff.next_delay();
                let verb = if lasted.is_some() {
                    "relay link lost"
                } else {
                    "cannot connect to the relay"
                };
                crate::log_warn!("{verb}: {msg}; retrying in {:.1} s", delay.as_secs_f64());
                self.timer.at(
                    Instant::now() + delay,
                    Tick::Reconnect {
                        conn: self.conn_seq,
                    },
                );
            }
        }
    }

    pub(super) fn send_heartbeat(&mut self) {
        let frame = envelope::build(
            "node.heartbeat",
            &ids::new_id(),
            now_ms(),
            None,
            None,
            // Looked up each time (a few stat calls), so installing Claude Code shows up
            // without restarting the daemon.
            &json!({"capabilities": crate::node::capabilities::heartbeat_list(&self.cli_paths, &self.sessions.policy)}),
        );
        self.send(Outbound::Text(frame));
    }
}
