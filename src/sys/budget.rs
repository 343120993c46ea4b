//! A bound in bytes for a queue whose items can be megabytes (a 48 MiB command, a
//! chat's 20 MB file): a [`Permit`] for an item's size travels with the item and gives
//! its bytes back when dropped, wherever that is. A producer thread that may wait
//! (a socket reader, a bot poller) [`Budget::acquire`]s and so is held back while the
//! consumer is behind; the hub, which never waits, [`Budget::try_acquire`]s and refuses
//! what does not fit. One item larger than the whole budget still passes when nothing
//! else is in flight, so no item can be stuck forever.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};

pub struct Budget {
    max: usize,
    /// Bytes held. Taken and given back with atomics: the producer and the hub pass
    /// items at a high rate, and a lock between them would make them queue.
    used: AtomicUsize,
    /// Producers waiting for room; only when there are any does a release take the lock
    /// to wake them (a condvar's notify is a system call).
    waiting: AtomicUsize,
    lock: Mutex<()>,
    freed: Condvar,
}

/// Bytes of a [`Budget`] held by one item.
pub struct Permit<'a> {
    budget: &'a Budget,
    bytes: usize,
}

impl Budget {
    pub const fn new(max: usize) -> Budget {
        Budget {
            max,
            used: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            lock: Mutex::new(()),
            freed: Condvar::new(),
        }
    }

    /// Hold `bytes` if they fit now (one item always fits alone).
    fn take(&self, bytes: usize) -> bool {
        let mut used = self.used.load(SeqCst);
        loop {
            if used != 0 && used.saturating_add(bytes) > self.max {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(used, used + bytes, SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Wait until `bytes` fit, then hold them.
    pub fn acquire(&self, bytes: usize) -> Permit<'_> {
        if !self.take(bytes) {
            let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.waiting.fetch_add(1, SeqCst);
            // Checked again after saying we wait: a release either sees us waiting (and
            // wakes us) or left its bytes for this check to see.
            while !self.take(bytes) {
                guard = self.freed.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
            self.waiting.fetch_sub(1, SeqCst);
        }
        Permit {
            budget: self,
            bytes,
        }
    }

    /// Hold `bytes` if they fit now.
    pub fn try_acquire(&self, bytes: usize) -> Option<Permit<'_>> {
        // `then`, not `then_some`: a permit built and dropped would give back bytes
        // that were never taken.
        self.take(bytes).then(|| Permit {
            budget: self,
            bytes,
        })
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(SeqCst)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let b = self.budget;
        b.used.fetch_sub(self.bytes, SeqCst);
        if b.waiting.load(SeqCst) > 0 {
            let _guard = b.lock.lock().unwrap_or_else(|p| p.into_inner());
            b.freed.notify_all();
        }
    }
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Permit({} bytes)", self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn items_wait_for_room_and_a_big_one_passes_alone() {
        static B: Budget = Budget::new(100);
        let a = B.acquire(60);
        assert!(B.try_acquire(50).is_none(), "over the bound");
        let b = B.try_acquire(40).expect("fits");
        assert_eq!(B.used(), 100);
        let waiter = std::thread::spawn(|| {
            let p = B.acquire(30);
            B.used() >= 30 && p.bytes == 30
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "it waits while the budget is spent");
        drop(a);
        assert!(waiter.join().unwrap());
        drop(b);
        assert_eq!(B.used(), 0);
        // Larger than the whole budget: passes when nothing else is held.
        let big = B.try_acquire(500).expect("alone it passes");
        assert!(B.try_acquire(1).is_none());
        drop(big);
        assert_eq!(B.used(), 0);
    }
}
