//! A bound in bytes for a queue whose items can be megabytes (a 48 MiB command, a
//! chat's 20 MB file): a [`Permit`] for an item's size travels with the item and gives
//! its bytes back when dropped, wherever that is. A producer thread that may wait
//! (a socket reader, a bot poller) [`Budget::acquire`]s and so is held back while the
//! consumer is behind; the hub, which never waits, [`Budget::try_acquire`]s and refuses
//! what does not fit. One item larger than the whole budget still passes when nothing
//! else is in flight, so no item can be stuck forever.

use std::sync::{Condvar, Mutex};

pub struct Budget {
    max: usize,
    used: Mutex<usize>,
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
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    fn fits(&self, used: usize, bytes: usize) -> bool {
        used == 0 || used.saturating_add(bytes) <= self.max
    }

    /// Wait until `bytes` fit, then hold them.
    pub fn acquire(&self, bytes: usize) -> Permit<'_> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while !self.fits(*used, bytes) {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += bytes;
        Permit {
            budget: self,
            bytes,
        }
    }

    /// Hold `bytes` if they fit now.
    pub fn try_acquire(&self, bytes: usize) -> Option<Permit<'_>> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if !self.fits(*used, bytes) {
            return None;
        }
        *used += bytes;
        Some(Permit {
            budget: self,
            bytes,
        })
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        *self.used.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(self.bytes);
        self.budget.freed.notify_all();
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
