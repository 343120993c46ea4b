//! What `history.get` answers for any provider: the newest events of a session file that
//! fit [`DETAIL_BUDGET`] bytes (and at most [`MAX_EVENTS`]), read backwards from its end
//! so a 200 MiB session opens in a fraction of a second and the answer stays well under
//! the relay's frame limit; each field cut to [`MAX_FIELD`]; and the `history.detail`
//! reply with the saved launch settings ([`super::sidecar`]). `truncated` says when older
//! events were left out or a field was cut. Runs on worker threads, never on the hub.

use std::fs::File;
use std::path::Path;

use serde_json::Value;

use super::jsonl::{Backwards, shrink_strings};
use super::listing::Summary;
use super::sidecar;
use crate::protocol::SessionId;
use crate::protocol::events::{Event, RawEvent, SessionEvent, raw, text_of};

/// Events kept for `history.detail` (the newest).
pub(crate) const MAX_EVENTS: usize = 4000;
/// Bytes of events (as JSON) in one `history.detail`: the newest that fit.
pub(crate) const DETAIL_BUDGET: usize = 4 << 20;
/// Longest text kept per event field (longer is cut and flagged).
pub(crate) const MAX_FIELD: usize = 64 * 1024;

/// Why `history.get` has no answer; said in a `session.error`.
#[derive(Debug, PartialEq)]
pub(crate) enum DetailError {
    InvalidId,
    NotFound,
    Unreadable(String),
    /// `history.get` named a provider this node does not know.
    UnknownProvider(String),
}

impl std::fmt::Display for DetailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DetailError::InvalidId => write!(f, "invalid session id"),
            DetailError::NotFound => write!(
                f,
                "no transcript of this session was found under the Claude Code projects directory"
            ),
            DetailError::Unreadable(e) => write!(f, "the transcript cannot be read: {e}"),
            DetailError::UnknownProvider(p) => write!(f, "unknown provider {p:?}"),
        }
    }
}

impl std::error::Error for DetailError {}

/// `s`, or its first [`MAX_FIELD`] bytes and `…` (setting `truncated`) when longer.
pub(crate) fn cut(s: &str, truncated: &mut bool) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_string();
    }
    *truncated = true;
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Milliseconds since the epoch of an RFC 3339 UTC timestamp like `2026-11-24T13:15:19.991Z`.
pub(crate) fn parse_ts(ts: &str) -> Option<u64> {
    let b = ts.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut ms = 0;
    if b.get(19) == Some(&b'.') {
        let frac: String = ts[20..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        let f3: String = frac.chars().chain(std::iter::repeat('0')).take(3).collect();
        ms = f3.parse::<i64>().ok()?;
    }
    // days from civil (Howard Hinnant)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let total = ((days * 24 + h) * 60 + mi) * 60 + s;
    (total >= 0).then(|| (total * 1000 + ms) as u64)
}

/// The newest events of a session file that fit [`DETAIL_BUDGET`] (and at most
/// [`MAX_EVENTS`]), oldest first, read backwards: `relevant` picks the lines worth
/// parsing, `per_record` turns one record into its events (setting its flag when it cut
/// a field). True when older events were left out or something was cut.
pub(crate) fn newest_events(
    file: &File,
    len: u64,
    relevant: impl Fn(&[u8]) -> bool,
    mut per_record: impl FnMut(&Value, &mut bool) -> Vec<Value>,
) -> (Vec<RawEvent>, bool) {
    // A line longer than a chunk is cut while it is read; shorter ones below.
    let mut lines = Backwards::shrinking(file, len, MAX_FIELD);
    // Newest record first; each record's events in their own order.
    // Held as JSON text, each event serialized once (its size is its text's).
    let mut records: Vec<Vec<RawEvent>> = Vec::new();
    let (mut count, mut bytes) = (0usize, 0usize);
    let mut truncated = false;
    while let Some(mut line) = lines.next_line() {
        if !relevant(&line) {
            continue;
        }
        if line.len() > 2 * MAX_FIELD {
            shrink_strings(&mut line, MAX_FIELD);
        }
        let Ok(v) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        drop(line);
        let mut cut_here = false;
        let mut events: Vec<RawEvent> = per_record(&v, &mut cut_here).iter().map(raw).collect();
        drop(v);
        let size: usize = events.iter().map(|e| e.json().len() + 1).sum();
        if count + events.len() > MAX_EVENTS || bytes + size > DETAIL_BUDGET {
            // Keep the newest events of this record that still fit, then stop.
            let mut kept = Vec::new();
            while let Some(e) = events.pop() {
                let n = e.json().len() + 1;
                if count + 1 > MAX_EVENTS || bytes + n > DETAIL_BUDGET {
                    break;
                }
                count += 1;
                bytes += n;
                kept.push(e);
            }
            kept.reverse();
            records.push(kept);
            truncated = true;
            break;
        }
        count += events.len();
        bytes += size;
        truncated |= cut_here;
        records.push(events);
    }
    truncated |= lines.skipped > 0;
    (records.into_iter().rev().flatten().collect(), truncated)
}

/// The `history.detail` every provider answers: what its files say, plus the saved
/// launch settings (sidecar): `model` is only the selector the user chose (`""` for none),
/// `resolved_model` the model the agent's own files name.
pub(crate) fn detail_reply(
    provider: &str,
    session: &SessionId,
    config_dir: &Path,
    summary: Summary,
    resolved_model: Option<String>,
    events: Vec<RawEvent>,
    truncated: bool,
) -> SessionEvent {
    let sidecar = sidecar::load(config_dir, session);
    let pick = |k: &str| text_of(sidecar.as_ref().and_then(|s| s.get(k)));
    SessionEvent::new(
        session.as_str(),
        None,
        Event::HistoryDetail {
            provider: provider.to_string(),
            title: summary.title,
            cwd: summary.cwd.or_else(|| pick("cwd")),
            git_branch: summary.git_branch,
            model: pick("model").unwrap_or_default(),
            resolved_model: resolved_model.or_else(|| pick("resolved_model")),
            permission_mode: pick("permission_mode").unwrap_or_else(|| "default".into()),
            effort: pick("effort"),
            events,
            truncated,
            running: None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_ts("2026-11-24T13:15:19.991Z"),
            Some(1_795_526_119_991)
        );
        assert_eq!(parse_ts("2000-02-29T00:00:00.5Z"), Some(951_782_400_500));
        assert_eq!(parse_ts("garbage"), None);
        assert_eq!(parse_ts("2026-13-01T00:00:00Z"), None);
    }
}
