//! Reconnect delays, in two phases counted from the start of an outage (the first delay
//! asked for since the schedule was new or reset):
//!
//! - **fast**, for the first [`FAST_FOR`] (5 s): every delay is drawn from
//!   [f/2, f] with f = [`FAST_DELAY`] (500 ms), or the configured first delay `min` if
//!   that is shorter. A relay that restarts or blips is usually back within seconds, and
//!   the device should show online within about half a second of it, not after the
//!   next step of a doubling schedule (1 s, 2 s, 4 s made a 2.5 s outage cost 4–5 s).
//!   With the default `min` (1 s), at most 20 attempts fit in this phase.
//! - **slow**, after that: exponential from `min` doubling to `max` (1 s → 30 s by
//!   default), each delay drawn from [d/2, d], so a relay that stays down is not
//!   hammered and a fleet of nodes does not reconnect in lockstep after a relay restart.
//!
//! The outage clock and the doubling start over only on [`Backoff::reset`], which the
//! owner calls once a link has *stayed* healthy (the hub calls [`Backoff::link_lasted`]
//! when a link ends, which resets after [`HEALTHY_AFTER`]), never on a mere connect: a relay that accepts and drops at once
//! would be retried at the fast pace forever. Such a flapping relay gets the one fast
//! phase, then the slow one, however often it accepts.
//!
//! The schedule is a plain value: [`Backoff::next_delay_at`] takes the time and the
//! random draw, so tests drive it without sleeping. Waiting out a delay is the owner's
//! business (the hub's timer, which a shutdown interrupts).

use std::time::{Duration, Instant};

/// How long after an outage starts the retries stay fast.
pub const FAST_FOR: Duration = Duration::from_secs(5);
/// The longest delay of the fast phase (each is drawn from half of it to all of it).
pub const FAST_DELAY: Duration = Duration::from_millis(500);
/// A link that stayed up this long ends the outage: the next one starts fast again.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// The longest next delay of the slow phase.
    next: Duration,
    /// When the current outage began: the first delay asked for since new or reset.
    since: Option<Instant>,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
            since: None,
        }
    }

    /// The delay before the next attempt, now.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_at(Instant::now(), crate::sys::ids::random_unit())
    }

    /// The delay before the next attempt when asked at `now`, with `unit` (in [0, 1))
    /// picking where in its jitter range it falls. Slow-phase delays double the next one.
    pub fn next_delay_at(&mut self, now: Instant, unit: f64) -> Duration {
        let since = *self.since.get_or_insert(now);
        let cap = if now.saturating_duration_since(since) < FAST_FOR {
            FAST_DELAY.min(self.min)
        } else {
            let d = self.next;
            self.next = (self.next * 2).min(self.max);
            d
        };
        cap.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// Start over: the next outage begins with the fast phase and the slow phase at `min`.
    pub fn reset(&mut self) {
        self.next = self.min;
        self.since = None;
    }

    /// A link ended after `lasted`: reset if it stayed healthy ([`HEALTHY_AFTER`]),
    /// keep the schedule going if it did not.
    pub fn link_lasted(&mut self, lasted: Duration) {
        if lasted >= HEALTHY_AFTER {
            self.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Attempts a relay that refuses at once gets in `window` from the outage start,
    /// with every delay drawn at `unit`.
    fn attempts_within(b: &mut Backoff, t0: Instant, window: Duration, unit: f64) -> usize {
        let mut t = t0;
        let mut n = 0;
        loop {
            t += b.next_delay_at(t, unit);
            if t - t0 > window {
                return n;
            }
            n += 1;
        }
    }

    #[test]
    fn retries_fast_during_the_first_seconds_of_an_outage() {
        let mut b = Backoff::new(S, 30 * S);
        let t0 = Instant::now();
        // Every delay of the first 5 s lies in [250, 500] ms, whatever the draw.
        for (i, unit) in [0.0, 0.999, 0.5, 0.0, 0.999].into_iter().enumerate() {
            let at = t0 + ms(1000 * i as u64);
            let d = b.next_delay_at(at, unit);
            assert!(d >= ms(250) && d <= ms(500), "{d:?} at {i} s");
        }
        assert!(b.next_delay_at(t0 + ms(4999), 0.999) <= ms(500));
        // A 2.5 s outage: an attempt lands within half a second of the relay's return.
        let mut b = Backoff::new(S, 30 * S);
        let mut t = t0;
        while t - t0 < ms(2500) {
            t += b.next_delay_at(t, 0.999);
        }
        assert!(t - t0 <= ms(3000), "back at {:?}", t - t0);
        // The old doubling schedule would wait up to 1 + 2 + 4 s.
    }

    #[test]
    fn slows_down_to_the_cap_after_the_fast_phase() {
        let mut b = Backoff::new(S, 30 * S);
        let t0 = Instant::now();
        b.next_delay_at(t0, 0.5);
        let mut t = t0 + FAST_FOR;
        for cap in [1, 2, 4, 8, 16, 30, 30, 30] {
            let hi = b.clone().next_delay_at(t, 0.999);
            let lo = b.clone().next_delay_at(t, 0.0);
            assert!(hi <= cap * S && hi > cap * S * 9 / 10, "{hi:?} vs {cap} s");
            assert_eq!(lo, cap * S / 2, "{lo:?} vs {cap} s");
            t += b.next_delay_at(t, 0.5);
        }
    }

    #[test]
    fn a_relay_that_stays_down_is_not_hammered() {
        // Shortest draws everywhere: 20 fast attempts, then 0.5 s, 1 s, 2 s, 4 s ...
        let t0 = Instant::now();
        let mut b = Backoff::new(S, 30 * S);
        assert_eq!(attempts_within(&mut b, t0, 12 * S, 0.0), 23);
        let mut b = Backoff::new(S, 30 * S);
        assert!(attempts_within(&mut b, t0, 12 * S, 0.999) <= 16);
        // An hour of refusal: at most four attempts a minute once the cap is reached.
        let mut b = Backoff::new(S, 30 * S);
        assert!(attempts_within(&mut b, t0, 3600 * S, 0.0) <= 20 + 5 + 240);
    }

    #[test]
    fn a_short_first_delay_shortens_the_fast_phase_delays_too() {
        let mut b = Backoff::new(ms(50), ms(200));
        let t0 = Instant::now();
        let d = b.next_delay_at(t0, 0.999);
        assert!(d > ms(49) && d <= ms(50), "{d:?}");
        assert_eq!(b.next_delay_at(t0 + S, 0.0), ms(25));
        let later = t0 + FAST_FOR;
        let caps: Vec<Duration> = (0..4)
            .map(|_| {
                let lo = b.next_delay_at(later, 0.0);
                lo * 2
            })
            .collect();
        assert_eq!(caps, [ms(50), ms(100), ms(200), ms(200)]);
    }

    #[test]
    fn only_a_link_that_stayed_healthy_resets_the_schedule() {
        let t0 = Instant::now();
        // An outage from `at` that has reached the slow phase, with 1, 2, 4 and 8 s spent.
        let slow = |b: &mut Backoff, at: Instant| {
            b.next_delay_at(at, 0.5);
            for _ in 0..4 {
                b.next_delay_at(at + FAST_FOR, 0.5);
            }
        };
        // A relay that accepts and drops at once: links of a few seconds change nothing,
        // the delays keep growing and the fast phase does not come back.
        let mut b = Backoff::new(S, 30 * S);
        slow(&mut b, t0);
        b.link_lasted(ms(50));
        b.link_lasted(HEALTHY_AFTER - ms(1));
        let t = t0 + 60 * S;
        assert_eq!(b.next_delay_at(t, 0.0), 8 * S);
        assert_eq!(b.next_delay_at(t + ms(10), 0.0), 15 * S);
        // A link that lasted: the next outage starts fast, then slow from 1 s again.
        b.link_lasted(HEALTHY_AFTER);
        let t = t0 + 120 * S;
        assert_eq!(b.next_delay_at(t, 0.0), ms(250));
        assert_eq!(b.next_delay_at(t + FAST_FOR - ms(1), 0.0), ms(250));
        assert_eq!(b.next_delay_at(t + FAST_FOR, 0.0), S / 2);
        assert_eq!(b.next_delay_at(t + FAST_FOR, 0.0), S);
        // reset() is the same thing, for an owner that judged the link itself.
        let t = t0 + 300 * S;
        assert_eq!(b.next_delay_at(t, 0.0), 2 * S);
        b.reset();
        let d = b.next_delay_at(t + S, 0.999);
        assert!(d > ms(490) && d <= ms(500), "{d:?}");
    }
}
