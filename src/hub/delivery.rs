//! How events leave the hub: [`Hub::emit`] gives durable events a `node_seq` and keeps
//! them in the outbox until the relay acknowledges them, frames are batched for the
//! writer, the ack window paces the agents' output, and an event too large for the relay
//! is replaced by a notice. Runs on the hub thread.

use crossbeam_channel::TrySendError;
use serde_json::json;

use super::{ACK_WINDOW, Hub, LinkState};
use crate::protocol::events::{Event, SessionEvent};
use crate::relay::envelope;
use crate::relay::link::Outbound;
use crate::sys::ids;
use crate::sys::timefmt::now_ms;

impl Hub {
    pub(super) fn emit_all(&mut self, events: Vec<SessionEvent>) {
        for e in events {
            self.emit(e);
        }
    }

    /// Send an event to the browsers, durably when PROTOCOL §2 says so (and to the chat
    /// that owns its session, if a channel does).
    pub fn emit(&mut self, payload: SessionEvent) {
        if let Some(ch) = self.channels.as_mut() {
            ch.on_session_event(&payload);
            self.schedule_channel_tick();
        }
        if envelope::is_durable(&payload) {
            let session_id = payload.session_id.clone().unwrap_or_default();
            let token = self.token.expose();
            let frame_for = |seq| node_frame(token, &payload, Some(seq));
            // The browser needs this one to find the session again: never dropped.
            let entry = if matches!(payload.event, Event::Identified { .. }) {
                self.outbox.push_pinned(&session_id, frame_for)
            } else {
                self.outbox.push(&session_id, frame_for)
            };
            let frame = entry.frame.clone();
            self.send(Outbound::Text(frame));
        } else if matches!(self.state, LinkState::Up { .. }) {
            let frame = node_frame(self.token.expose(), &payload, None);
            self.send(Outbound::Text(frame));
        }
    }

    /// A log line for the relay (`node.log`), only while the link is up.
    pub(super) fn forward_log(&mut self, line: crate::sys::logging::Forwarded) {
        if !matches!(self.state, LinkState::Up { .. }) {
            return;
        }
        let frame = envelope::build(
            "node.log",
            &ids::new_id(),
            now_ms(),
            Some(self.token.expose()),
            None,
            &json!({
                "level": line.level.name(),
                "logger": line.logger,
                "msg": line.msg,
                "trace_id": line.trace_id,
                "session_id": line.session_id,
            }),
        );
        self.send(Outbound::Text(frame));
    }

    /// Queue a frame for the writer if the link is up. Text frames gather in `outq` and
    /// go as one batch after this step; a ping is skipped when the writer is full (the
    /// link is busy, which says enough about it).
    pub(super) fn send(&mut self, out: Outbound) {
        if !matches!(self.state, LinkState::Up { .. }) {
            return;
        }
        match out {
            Outbound::Text(t) => self.outq.push(t),
            other => {
                self.flush_out();
                if let LinkState::Up { writer, .. } = &self.state {
                    let _ = writer.try_send(other);
                }
            }
        }
    }

    /// Hand the frames gathered so far to the writer, if it has room; otherwise they
    /// wait (and the main loop stops reading the agents until it has).
    pub(super) fn flush_out(&mut self) {
        if self.outq.is_empty() {
            return;
        }
        let LinkState::Up { writer, .. } = &self.state else {
            self.outq.clear();
            return;
        };
        let batch = std::mem::take(&mut self.outq);
        match writer.try_send(Outbound::Batch(batch)) {
            Ok(()) => {}
            Err(TrySendError::Full(Outbound::Batch(batch))) => self.outq = batch,
            Err(_) => {
                // The writer ended; the reader's Down event follows.
            }
        }
    }

    /// Frames wait for the writer (the relay is not reading fast enough), or the relay
    /// has a window's worth of events to acknowledge: take no agent output for now.
    pub(super) fn paused(&self) -> bool {
        matches!(self.state, LinkState::Up { .. }) && (!self.outq.is_empty() || self.window_full())
    }

    pub(super) fn window_full(&self) -> bool {
        self.acks_seen && self.outbox.bytes() > ACK_WINDOW
    }
}

/// Largest event sent to the relay; a bigger one (a huge tool result) is replaced by a
/// notice, since the relay refuses messages over 16 MiB and browsers choke on them.
pub const MAX_EVENT_BYTES: usize = 8 << 20;

/// A `node.to_browser` envelope. `from_node` carries the node token, as the relay's
/// reference daemon does; it goes only to the relay that issued it and is never logged.
/// An event larger than [`MAX_EVENT_BYTES`] is replaced by a notice saying so.
pub(super) fn node_frame(token: &str, payload: &SessionEvent, seq: Option<u64>) -> String {
    let build = |p: &SessionEvent| {
        envelope::build(
            "node.to_browser",
            &ids::new_id(),
            now_ms(),
            Some(token),
            seq,
            p,
        )
    };
    let frame = build(payload);
    if frame.len() <= MAX_EVENT_BYTES {
        return frame;
    }
    build(&too_large(payload, frame.len()))
}

/// The notice that replaces an event too large to relay.
pub(super) fn too_large(payload: &SessionEvent, size: usize) -> SessionEvent {
    let name = payload.name();
    crate::log_warn!("replacing a {size}-byte {name} event by a notice (limit {MAX_EVENT_BYTES})");
    let mut notice = SessionEvent::reply(
        payload.trace_id.as_ref(),
        Event::warning(
            "event_too_large",
            format!("A {name} of {} MiB was too large to relay.", size >> 20),
        ),
    );
    notice.session_id.clone_from(&payload.session_id);
    notice
}
