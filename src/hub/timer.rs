//! The timer thread: the hub schedules `(deadline, tick)` pairs on a channel and the timer
//! sends each tick back to the hub when its deadline passes. The thread blocks in
//! `recv_deadline` for the earliest deadline, so an idle daemon wakes only when a timer
//! is due. A timer can be cancelled (a permission answered before its timeout); a tick
//! that still arrives after its cause is gone is ignored by the hub (each carries enough
//! context to tell). At most [`CAPACITY`] timers are pending: the count is kept on the
//! hub's side, so scheduling beyond it is refused at once, and the heap of the thread is
//! compacted when cancelled entries pile up in it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

/// Pending timers the hub may have scheduled at once (heartbeat, reconnect, one per
/// pending permission ...). Scheduling beyond this is refused and logged.
pub const CAPACITY: usize = 4096;
/// Schedules and cancels on their way to the thread.
const CHANNEL: usize = 512;

/// A scheduled timer, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerId(u64);

enum Msg<T> {
    At(u64, Instant, T),
    Cancel(u64),
}

/// The hub's handle for scheduling ticks.
pub struct Timer<T> {
    tx: Sender<Msg<T>>,
    next: Arc<AtomicU64>,
    /// Timers scheduled and neither fired nor cancelled yet.
    pending: Arc<AtomicUsize>,
}

impl<T> Clone for Timer<T> {
    fn clone(&self) -> Self {
        Timer {
            tx: self.tx.clone(),
            next: self.next.clone(),
            pending: self.pending.clone(),
        }
    }
}

impl<T: Send + 'static> Timer<T> {
    /// Start the timer thread; ticks arrive on `out`.
    pub fn spawn(out: Sender<T>) -> std::io::Result<Timer<T>> {
        // The thread drains this at once; its slots are allocated up front, so it is
        // kept small (the bound on pending timers is the counter, not the channel).
        let (tx, rx) = crossbeam_channel::bounded(CHANNEL);
        let pending = Arc::new(AtomicUsize::new(0));
        let p = pending.clone();
        std::thread::Builder::new()
            .name("timer".into())
            .spawn(move || run(rx, out, &p))?;
        Ok(Timer {
            tx,
            next: Arc::new(AtomicU64::new(0)),
            pending,
        })
    }

    /// Deliver `tick` at `at`. Never blocks the hub; `None` (logged) when [`CAPACITY`]
    /// timers are pending already.
    pub fn at(&self, at: Instant, tick: T) -> Option<TimerId> {
        if self.pending.fetch_add(1, Ordering::AcqRel) >= CAPACITY {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            crate::log_error!("{CAPACITY} timers are pending; a timer was dropped");
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Msg::At(id, at, tick)) {
            Ok(()) => Some(TimerId(id)),
            Err(e) => {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                if matches!(e, TrySendError::Full(_)) {
                    crate::log_error!("timer queue full; a timer was dropped");
                }
                None
            }
        }
    }

    /// Forget timer `id` if it has not fired. (When the queue is full the cancel is
    /// dropped and the tick arrives anyway; the hub ignores a tick whose cause is gone.)
    pub fn cancel(&self, id: TimerId) {
        let _ = self.tx.try_send(Msg::Cancel(id.0));
    }
}

fn run<T>(rx: Receiver<Msg<T>>, out: Sender<T>, pending: &AtomicUsize) {
    let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut ticks: HashMap<u64, (Instant, T)> = HashMap::new();
    loop {
        let received = match heap.peek() {
            Some(Reverse((deadline, _))) => rx.recv_deadline(*deadline),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(Msg::At(id, at, tick)) => {
                heap.push(Reverse((at, id)));
                ticks.insert(id, (at, tick));
            }
            Ok(Msg::Cancel(id)) => {
                if ticks.remove(&id).is_some() {
                    pending.fetch_sub(1, Ordering::AcqRel);
                }
                // Cancelled entries stay in the heap until their deadline; rebuild it
                // when they outnumber the live ones.
                if heap.len() > 2 * ticks.len() + 64 {
                    heap = ticks
                        .iter()
                        .map(|(id, (at, _))| Reverse((*at, *id)))
                        .collect();
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        while let Some(Reverse((deadline, id))) = heap.peek().copied() {
            if deadline > now {
                break;
            }
            heap.pop();
            if let Some((_, tick)) = ticks.remove(&id) {
                pending.fetch_sub(1, Ordering::AcqRel);
                if out.send(tick).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_in_deadline_order() {
        let (tx, rx) = crossbeam_channel::bounded(8);
        let t = Timer::spawn(tx).unwrap();
        let now = Instant::now();
        t.at(now + Duration::from_millis(60), "late");
        t.at(now + Duration::from_millis(10), "early");
        t.at(now, "now");
        assert_eq!(rx.recv_timeout(Duration::from_secs(2)).unwrap(), "now");
        assert_eq!(rx.recv_timeout(Duration::from_secs(2)).unwrap(), "early");
        assert_eq!(rx.recv_timeout(Duration::from_secs(2)).unwrap(), "late");
        assert!(now.elapsed() >= Duration::from_millis(60));
    }

    #[test]
    fn a_cancelled_timer_does_not_fire_and_frees_its_place() {
        let (tx, rx) = crossbeam_channel::bounded(8);
        let t = Timer::spawn(tx).unwrap();
        let now = Instant::now();
        let id = t.at(now + Duration::from_millis(30), "cancelled").unwrap();
        t.at(now + Duration::from_millis(60), "kept");
        t.cancel(id);
        assert_eq!(rx.recv_timeout(Duration::from_secs(2)).unwrap(), "kept");
        assert!(rx.try_recv().is_err());
        assert_eq!(t.pending.load(Ordering::Acquire), 0);
    }

    #[test]
    fn no_more_than_capacity_timers_are_pending() {
        let (tx, _rx) = crossbeam_channel::bounded(8);
        let t = Timer::spawn(tx).unwrap();
        let later = Instant::now() + Duration::from_secs(3600);
        let mut ids = Vec::new();
        for _ in 0..CAPACITY {
            // Let the thread keep up with the channel, as it does with the hub.
            while t.tx.len() > CHANNEL / 2 {
                std::thread::yield_now();
            }
            ids.push(t.at(later, ()).unwrap());
        }
        while !t.tx.is_empty() {
            std::thread::yield_now();
        }
        assert!(t.at(later, ()).is_none(), "one past the capacity");
        // Cancelling frees places (the thread takes them in order, after the timers).
        for id in &ids[..10] {
            t.cancel(*id);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while t.pending.load(Ordering::Acquire) > CAPACITY - 10 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(t.at(later, ()).is_some());
    }
}
