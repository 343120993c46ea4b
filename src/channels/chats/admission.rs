//! Admission: who may talk to a bot (the allowed senders, and groups), a group's trigger
//! prefix, the per-sender rate limit and the duplicate window. All of it applies before
//! anything runs; strangers are ignored. Runs on the hub thread, like all of [`super`];
//! the bots' own threads are in [`crate::channels::runner`] (whose media download also
//! asks [`after_trigger`] first).

use std::time::{Duration, Instant};

use super::Bot;
use crate::channels::config::NO_RATE_LIMIT;

/// The text after a group's trigger prefix, or `None` when the message does not start
/// with it. A prefix that is a command (`/ask `) also matches the way Telegram's command
/// menu sends it, `/ask@ourbot text` (the name in any case); `/ask@otherbot` is for
/// another bot. `username` is ours from `getMe` (unknown: any name is taken as ours).
pub(crate) fn after_trigger<'a>(
    text: &'a str,
    prefix: &str,
    username: Option<&str>,
) -> Option<&'a str> {
    let word = prefix.trim_end();
    let command = word.starts_with('/') && !word.contains(char::is_whitespace);
    if command && let Some(rest) = text.strip_prefix(word).and_then(|r| r.strip_prefix('@')) {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (to, rest) = rest.split_at(end);
        let ours = !to.is_empty() && username.is_none_or(|u| u.eq_ignore_ascii_case(to));
        return ours.then(|| rest.trim_start());
    }
    text.strip_prefix(prefix).map(str::trim_start)
}

impl Bot {
    /// Whether `from` may talk to the bot in `chat` (in a group, the group must be
    /// allowed too).
    pub(super) fn admits(&self, from: i64, chat: i64, group: bool) -> bool {
        self.cfg.allowed_senders.contains(&from)
            && (!group || self.cfg.allowed_groups.contains(&chat))
    }

    /// The duplicate window: updates older than it are forgotten; whether update `id`
    /// came within it already (if not, it is noted).
    pub(super) fn repeated(&mut self, id: Option<i64>, now: Instant) -> bool {
        let window = Duration::from_secs(self.cfg.dedup_window_seconds);
        while self
            .seen
            .front()
            .is_some_and(|(_, t)| now.duration_since(*t) > window)
        {
            self.seen.pop_front();
        }
        let Some(id) = id else {
            return false;
        };
        let seen = self.seen.iter().any(|(s, _)| *s == id);
        if !seen {
            self.seen.push_back((id, now));
            if self.seen.len() > 10_000 {
                self.seen.pop_front();
            }
        }
        seen
    }

    /// The per-sender rate limit (none kept at all without one, so nothing grows):
    /// whether `from` is over it; a message within it is counted.
    pub(super) fn over_rate_limit(&mut self, from: i64, now: Instant) -> bool {
        if self.cfg.rate_limit_per_min == NO_RATE_LIMIT {
            return false;
        }
        let times = self.rate.entry(from).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            times.pop_front();
        }
        if times.len() >= self.cfg.rate_limit_per_min as usize {
            return true;
        }
        times.push_back(now);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_prefix_matches_as_the_command_menu_sends_it() {
        let me = Some("OurBot");
        assert_eq!(
            after_trigger("/ask hi there", "/ask ", me),
            Some("hi there")
        );
        assert_eq!(after_trigger("/ask@ourbot hi", "/ask ", me), Some("hi"));
        assert_eq!(after_trigger("/ask@OURBOT   hi", "/ask", me), Some("hi"));
        assert_eq!(after_trigger("/ask@otherbot hi", "/ask ", me), None);
        assert_eq!(after_trigger("/ask@ hi", "/ask ", me), None);
        assert_eq!(after_trigger("/asking hi", "/ask ", me), None);
        assert_eq!(after_trigger("hello", "/ask ", me), None);
        assert_eq!(after_trigger("/ask@anybot hi", "/ask ", None), Some("hi"));
        // A prefix that is not a command is matched as written.
        assert_eq!(after_trigger("bot, hi", "bot,", me), Some("hi"));
        assert_eq!(
            after_trigger("bot,@ourbot hi", "bot,", me),
            Some("@ourbot hi")
        );
    }
}
