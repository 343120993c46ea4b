//! Reliable delivery (PROTOCOL §2). Durable events get a monotonic `node_seq` (per process,
//! never reset) and their serialized envelope waits here until a `node.ack` covers it; on
//! every connect the whole outbox goes out again, same ids, same order. The outbox is
//! bounded by count (`CODING_BRIDGE_OUTBOX_MAX`) and by bytes; overflow drops the oldest
//! and remembers the sessions that lost events, so each gets a `session.stream_truncated`
//! notice at the next connect. Pinned entries (`session.identified`, which the browser
//! needs to find a session again) are never dropped. Overflow only happens while the link
//! is down: while it is up, the hub stops reading the agents' output when the relay does
//! not keep up. Owned by the hub thread; no locking.

use std::collections::{BTreeSet, VecDeque};

/// Upper bound on the bytes of queued envelopes, whatever the count limit says.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

/// One durable event, serialized once.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub session_id: String,
    pub frame: String,
    /// Never dropped by overflow.
    pub pinned: bool,
}

#[derive(Debug)]
pub struct Outbox {
    last_seq: u64,
    queue: VecDeque<Entry>,
    bytes: usize,
    max_len: usize,
    max_bytes: usize,
    truncated: BTreeSet<String>,
}

impl Outbox {
    pub fn new(max_len: usize) -> Outbox {
        Outbox::with_limits(max_len, MAX_BYTES)
    }

    pub fn with_limits(max_len: usize, max_bytes: usize) -> Outbox {
        Outbox {
            last_seq: 0,
            queue: VecDeque::new(),
            bytes: 0,
            max_len: max_len.max(1),
            max_bytes,
            truncated: BTreeSet::new(),
        }
    }

    /// Queue the envelope built by `frame_for(seq)`; returns the stored entry.
    pub fn push(&mut self, session_id: &str, frame_for: impl FnOnce(u64) -> String) -> &Entry {
        self.push_entry(session_id, false, frame_for)
    }

    /// Like [`Outbox::push`], for an entry overflow must never drop.
    pub fn push_pinned(
        &mut self,
        session_id: &str,
        frame_for: impl FnOnce(u64) -> String,
    ) -> &Entry {
        self.push_entry(session_id, true, frame_for)
    }

    fn push_entry(
        &mut self,
        session_id: &str,
        pinned: bool,
        frame_for: impl FnOnce(u64) -> String,
    ) -> &Entry {
        self.last_seq += 1;
        let frame = frame_for(self.last_seq);
        self.bytes += frame.len();
        self.queue.push_back(Entry {
            seq: self.last_seq,
            session_id: session_id.to_string(),
            frame,
            pinned,
        });
        while self.queue.len() > self.max_len || self.bytes > self.max_bytes {
            // The oldest unpinned entry, never the one just pushed.
            let Some(i) = self.queue.iter().position(|e| !e.pinned) else {
                break;
            };
            if i == self.queue.len() - 1 {
                break;
            }
            if let Some(old) = self.queue.remove(i) {
                self.bytes -= old.frame.len();
                self.truncated.insert(old.session_id);
            }
        }
        &self.queue[self.queue.len() - 1]
    }

    /// Forget every entry with `seq <= up_to`; returns how many went.
    pub fn ack(&mut self, up_to: u64) -> usize {
        let mut n = 0;
        while self.queue.front().is_some_and(|e| e.seq <= up_to) {
            if let Some(e) = self.queue.pop_front() {
                self.bytes -= e.frame.len();
                n += 1;
            }
        }
        n
    }

    /// Entries in send order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.queue.iter()
    }

    /// Bytes of the queued envelopes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Sessions that lost events to overflow since the last call.
    pub fn take_truncated(&mut self) -> Vec<String> {
        std::mem::take(&mut self.truncated).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_ack_and_overflow() {
        let mut o = Outbox::new(3);
        for i in 0..5 {
            let sid = if i < 2 { "a" } else { "b" };
            o.push(sid, |seq| format!("frame{seq}"));
        }
        let seqs: Vec<u64> = o.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        assert_eq!(o.take_truncated(), ["a"]);
        assert!(o.take_truncated().is_empty());
        assert_eq!(o.ack(4), 2);
        assert_eq!(o.iter().next().unwrap().frame, "frame5");
        assert_eq!(o.ack(2), 0);
        assert_eq!(
            o.push("a", |seq| seq.to_string()).seq,
            6,
            "sequence numbers never go back"
        );
    }

    #[test]
    fn pinned_entries_survive_overflow() {
        let mut o = Outbox::new(3);
        o.push("a", |s| format!("d{s}"));
        o.push_pinned("a", |s| format!("identified{s}"));
        for _ in 0..10 {
            o.push("a", |s| format!("d{s}"));
        }
        let frames: Vec<&str> = o.iter().map(|e| e.frame.as_str()).collect();
        assert_eq!(frames, ["identified2", "d11", "d12"]);
        assert_eq!(o.take_truncated(), ["a"]);
    }

    #[test]
    fn byte_bound() {
        let mut o = Outbox::with_limits(100, 25);
        for _ in 0..5 {
            o.push("s", |_| "0123456789".to_string());
        }
        assert_eq!(o.len(), 2);
        assert_eq!(o.take_truncated(), ["s"]);
    }
}
