//! Remembers the last N command ids so a command the relay redelivers across a reconnect
//! runs once. A ring of ids plus a set for O(1) lookups; memory is bounded by N.

use std::collections::{HashSet, VecDeque};

pub struct Dedupe {
    order: VecDeque<String>,
    seen: HashSet<String>,
    cap: usize,
}

impl Dedupe {
    pub fn new(cap: usize) -> Dedupe {
        Dedupe {
            order: VecDeque::with_capacity(cap),
            seen: HashSet::with_capacity(cap),
            cap: cap.max(1),
        }
    }

    /// True the first time `id` is seen (within the last `cap` ids), false for a repeat.
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back(id.to_string());
        self.seen.insert(id.to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bounded_memory_of_ids() {
        let mut d = super::Dedupe::new(3);
        assert!(d.first_time("a"));
        assert!(!d.first_time("a"));
        assert!(d.first_time("b"));
        assert!(d.first_time("c"));
        assert!(d.first_time("d")); // evicts a
        assert!(d.first_time("a"));
        assert!(!d.first_time("d"));
    }
}
