//! The timer thread: the hub schedules `(deadline, tick)` pairs on a channel and the timer
//! sends each tick back to the hub when its deadline passes. The thread blocks in
//! `recv_deadline` for the earliest deadline, so an idle daemon wakes only when a timer
//! is due. Ticks are never cancelled; the hub ignores a tick that no longer applies
//! (each carries enough context to tell).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

/// Pending timers the hub may have scheduled at once (heartbeat, reconnect, one per
/// pending permission ...). Scheduling beyond this is refused and logged.
pub const CAPACITY: usize = 4096;

/// The hub's handle for scheduling ticks.
pub struct Timer<T> {
    tx: Sender<(Instant, T)>,
}

impl<T> Clone for Timer<T> {
    fn clone(&self) -> Self {
        Timer {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Send + 'static> Timer<T> {
    /// Start the timer thread; ticks arrive on `out`.
    pub fn spawn(out: Sender<T>) -> std::io::Result<Timer<T>> {
        let (tx, rx) = crossbeam_channel::bounded(CAPACITY);
        std::thread::Builder::new()
            .name("timer".into())
            .spawn(move || run(rx, out))?;
        Ok(Timer { tx })
    }

    /// Deliver `tick` at `at`. Never blocks the hub.
    pub fn at(&self, at: Instant, tick: T) {
        match self.tx.try_send((at, tick)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                crate::log_error!("timer queue full; a timer was dropped")
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn run<T>(rx: Receiver<(Instant, T)>, out: Sender<T>) {
    let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut ticks: HashMap<u64, T> = HashMap::new();
    let mut next_id = 0u64;
    loop {
        let received = match heap.peek() {
            Some(Reverse((deadline, _))) => rx.recv_deadline(*deadline),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok((at, tick)) => {
                heap.push(Reverse((at, next_id)));
                ticks.insert(next_id, tick);
                next_id += 1;
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
            if let Some(tick) = ticks.remove(&id)
                && out.send(tick).is_err()
            {
                return;
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
}
