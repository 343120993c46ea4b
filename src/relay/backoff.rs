//! Reconnect delays: exponential from `min` doubling to `max`, each with jitter (the
//! delay is drawn uniformly from [d/2, d]) so a fleet of nodes does not reconnect in
//! lockstep after a relay restart. Reset after a connection that lasted.

use std::time::Duration;

pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The delay before the next attempt; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d.mul_f64(0.5 + 0.5 * crate::sys::ids::random_unit())
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let caps = [1, 2, 4, 8, 16, 30, 30];
        for cap in caps {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(cap), "{d:?} > {cap}");
            assert!(d >= Duration::from_secs(cap) / 2, "{d:?} < {cap}/2");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
