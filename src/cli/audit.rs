//! The `audit` command: show the audit log (`<config dir>/audit.jsonl` and its rotated
//! files, written by [`crate::sys::audit`]) oldest first, filtered by time (`--since`)
//! and session (`--session`), as aligned text or as the stored JSON lines (`--json`),
//! or check its hash chain (`--verify`). Runs on the caller's thread, reads the files
//! and prints through [`crate::cli::app::say`]; no threads, no channels.

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use crate::cli::app::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::sys::audit;
use crate::sys::logging::escape_controls;
use crate::sys::timefmt::{now_ms, rfc3339_ms};

/// The log's file name in the config dir.
pub const FILE: &str = "audit.jsonl";

/// What `audit` was asked for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A time (`2026-12-08`, `2026-12-08T04:00`, RFC 3339) or a duration back from now
    /// (`90s`, `30m`, `2h`, `7d`).
    pub since: Option<String>,
    pub session: Option<String>,
    pub json: bool,
    pub verify: bool,
}

/// Run `audit` for the log at `<config_dir>/audit.jsonl`, printing to stdout (errors to
/// stderr). Exit code 0; 1 when `--verify` finds the chain broken (or the log cannot be
/// read); 2 for a bad `--since`.
pub fn run(config_dir: &Path, o: &Options) -> i32 {
    run_with(config_dir, o, now_ms(), &mut |line| {
        crate::cli::app::say(line)
    })
}

/// [`run`] at the time `now` (ms), each stdout line handed to `out`.
fn run_with(
    config_dir: &Path,
    o: &Options,
    now: u64,
    out: &mut dyn FnMut(fmt::Arguments<'_>),
) -> i32 {
    let path = config_dir.join(FILE);
    let cutoff = match o.since.as_deref().map(|s| parse_since(s, now)).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let missing = audit::files(&path).is_empty();
    if missing && !(o.verify && o.json) {
        if !o.json {
            out(format_args!("no audit log at {} yet", path.display()));
        }
        return EXIT_OK;
    }
    if o.verify {
        return verify(&path, o.json, out);
    }
    let entries = match audit::read(&path) {
        Ok(e) => e,
        Err(e) => {
            eprintln!(
                "error: cannot read the audit log at {}: {e}",
                path.display()
            );
            return EXIT_FAILED;
        }
    };
    // A session is known by the browser's id first and the agent's once it names it
    // (`session_identified` links the two): either id finds all of its records.
    let mut ids: Vec<String> = o.session.iter().cloned().collect();
    loop {
        let before = ids.len();
        for e in &entries {
            let r = &e.record;
            if r.get("event").and_then(Value::as_str) != Some("session_identified") {
                continue;
            }
            let (Some(a), Some(b)) = (
                r.get("session").and_then(Value::as_str),
                r.get("now").and_then(Value::as_str),
            ) else {
                continue;
            };
            for (known, other) in [(a, b), (b, a)] {
                if ids.iter().any(|i| i == known) && !ids.iter().any(|i| i == other) {
                    ids.push(other.to_string());
                }
            }
        }
        if ids.len() == before {
            break;
        }
    }
    let wanted = |rec: &Map<String, Value>| {
        let after = cutoff.as_deref().is_none_or(|c| {
            rec.get("ts")
                .and_then(Value::as_str)
                .is_some_and(|ts| ts >= c)
        });
        let ours = o.session.is_none()
            || rec
                .get("session")
                .and_then(Value::as_str)
                .is_some_and(|s| ids.iter().any(|i| i == s));
        after && ours
    };
    for e in entries.iter().filter(|e| wanted(&e.record)) {
        if o.json {
            out(format_args!("{}", audit::stored_line(&e.record)));
        } else {
            out(format_args!("{}", human(&e.record)));
        }
    }
    EXIT_OK
}

fn verify(path: &Path, json: bool, out: &mut dyn FnMut(fmt::Arguments<'_>)) -> i32 {
    match audit::verify(path) {
        Ok(v) if json => {
            out(format_args!(
                r#"{{"ok":true,"lines":{},"files":{}}}"#,
                v.lines, v.files
            ));
            EXIT_OK
        }
        Ok(v) => {
            out(format_args!(
                "audit log intact: {} lines in {} files",
                v.lines, v.files
            ));
            EXIT_OK
        }
        Err(b) if json => {
            out(format_args!(
                r#"{{"ok":false,"file":{},"line":{},"reason":{}}}"#,
                Value::from(b.file.display().to_string()),
                b.line,
                Value::from(b.reason)
            ));
            EXIT_FAILED
        }
        Err(b) => {
            out(format_args!(
                "audit log broken at {}",
                escape_controls(&b.to_string())
            ));
            EXIT_FAILED
        }
    }
}

/// Fields shown in their own columns (or not at all).
const COLUMNS: [&str; 5] = ["seq", "ts", "event", "session", "prev"];

/// `<ts>  <event>  <session or ->  key=value …`, control characters escaped.
fn human(rec: &Map<String, Value>) -> String {
    let column = |key: &str| match rec.get(key) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) if s.is_empty() => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    let mut line = format!(
        "{}  {}  {}",
        column("ts"),
        column("event"),
        column("session")
    );
    let mut first = true;
    for (k, v) in rec {
        if COLUMNS.contains(&k.as_str()) {
            continue;
        }
        line.push_str(if std::mem::take(&mut first) {
            "  "
        } else {
            " "
        });
        line.push_str(k);
        line.push('=');
        line.push_str(&value_text(v));
    }
    escape_controls(&line).into_owned()
}

/// A string as is unless it is empty or has spaces or quotes (then quoted JSON); any
/// other value as JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) if !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c == '"') => {
            s.clone()
        }
        v => v.to_string(),
    }
}

/// The `--since` value as a timestamp in the log's own form
/// (`YYYY-MM-DDTHH:MM:SS.mmmZ`), which compares with a record's `ts` as text: a
/// duration back from `now` (ms), or a date or time (UTC unless it names an offset).
pub fn parse_since(s: &str, now: u64) -> Result<String, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "--since {:?}: expected a date or time (2026-12-08, 2026-12-08T04:00, \
             2026-12-08T04:00:00Z) or a duration back from now (90s, 30m, 2h, 7d)",
            escape_controls(s)
        )
    };
    if let Some(back) = duration_ms(s) {
        let back = back.ok_or_else(bad)?;
        return Ok(rfc3339_ms(now.saturating_sub(back)));
    }
    timestamp_ms(s).map(rfc3339_ms).ok_or_else(bad)
}

/// `<digits><s|m|h|d>` in ms: None if `s` is not of that form, Some(None) if it
/// overflows.
fn duration_ms(s: &str) -> Option<Option<u64>> {
    let unit = s.chars().last()?;
    let per = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return None,
    };
    let digits = &s[..s.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse::<u64>().ok().and_then(|n| n.checked_mul(per)))
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.fff…]]][Z|±HH:MM]` as ms since the epoch (0 for times
/// before it).
fn timestamp_ms(s: &str) -> Option<u64> {
    let mut c = Cursor(s.as_bytes());
    let y = c.number(4)?;
    c.expect(b'-')?;
    let mo = c.number(2)?;
    c.expect(b'-')?;
    let d = c.number(2)?;
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    if c.take_if(|b| matches!(b, b'T' | b't' | b' ')) {
        let h = c.number(2)?;
        c.expect(b':')?;
        let mi = c.number(2)?;
        let mut sec = 0;
        let mut frac = 0;
        if c.take_if(|b| b == b':') {
            sec = c.number(2)?;
            if c.take_if(|b| b == b'.') {
                let mut scale = 100;
                let mut any = false;
                while let Some(digit) = c.digit() {
                    frac += digit * scale;
                    scale /= 10;
                    any = true;
                }
                if !any {
                    return None;
                }
            }
        }
        if h > 23 || mi > 59 || sec > 59 {
            return None;
        }
        ms += h * 3_600_000 + mi * 60_000 + sec * 1000 + frac;
        if c.take_if(|b| matches!(b, b'Z' | b'z')) {
        } else if let Some(sign) = c.peek().filter(|b| matches!(b, b'+' | b'-')) {
            c.0 = &c.0[1..];
            let oh = c.number(2)?;
            c.expect(b':')?;
            let om = c.number(2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let offset = oh * 3_600_000 + om * 60_000;
            ms -= if sign == b'+' { offset } else { -offset };
        }
    }
    if !c.0.is_empty() {
        return None;
    }
    Some(ms.max(0) as u64)
}

/// A little reader over ASCII bytes.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn take_if(&mut self, f: impl Fn(u8) -> bool) -> bool {
        match self.peek() {
            Some(b) if f(b) => {
                self.0 = &self.0[1..];
                true
            }
            _ => false,
        }
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        self.take_if(|b| b == want).then_some(())
    }

    fn digit(&mut self) -> Option<i64> {
        let b = self.peek().filter(u8::is_ascii_digit)?;
        self.0 = &self.0[1..];
        Some(i64::from(b - b'0'))
    }

    /// Exactly `n` digits.
    fn number(&mut self, n: usize) -> Option<i64> {
        let mut v = 0;
        for _ in 0..n {
            v = v * 10 + self.digit()?;
        }
        Some(v)
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (the inverse of the days-to-civil
/// algorithm in `sys::timefmt`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    const NOW: u64 = 1_795_525_873_456; // 2026-11-24T13:11:13.456Z

    #[test]
    fn since_takes_durations_back_from_now() {
        assert_eq!(parse_since("90s", NOW).unwrap(), "2026-11-24T13:09:43.456Z");
        assert_eq!(parse_since("30m", NOW).unwrap(), "2026-11-24T12:41:13.456Z");
        assert_eq!(parse_since("2h", NOW).unwrap(), "2026-11-24T11:11:13.456Z");
        assert_eq!(parse_since("7d", NOW).unwrap(), "2026-11-17T13:11:13.456Z");
        assert_eq!(parse_since(" 0s ", NOW).unwrap(), rfc3339_ms(NOW));
        assert_eq!(parse_since("99999999d", NOW).unwrap(), rfc3339_ms(0));
        for bad in [
            "",
            "s",
            "5",
            "5w",
            "-5m",
            "1.5h",
            "99999999999999999999s",
            "h2",
        ] {
            assert!(parse_since(bad, NOW).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn since_takes_dates_and_times() {
        let ok = |s: &str| parse_since(s, NOW).unwrap();
        assert_eq!(ok("2026-12-08"), "2026-12-08T00:00:00.000Z");
        assert_eq!(ok("2026-12-08T04:00"), "2026-12-08T04:00:00.000Z");
        assert_eq!(ok("2026-12-08 04:00"), "2026-12-08T04:00:00.000Z");
        assert_eq!(ok("2026-12-08T04:00:00Z"), "2026-12-08T04:00:00.000Z");
        assert_eq!(ok("2026-12-08t04:00:05.5z"), "2026-12-08T04:00:05.500Z");
        assert_eq!(
            ok("2026-12-08T04:00:05.123456Z"),
            "2026-12-08T04:00:05.123Z"
        );
        assert_eq!(ok("2026-12-08T04:00:00+02:00"), "2026-12-08T02:00:00.000Z");
        assert_eq!(ok("2026-12-08T23:30:00-01:00"), "2026-12-09T00:30:00.000Z");
        assert_eq!(ok("2000-02-29"), "2000-02-29T00:00:00.000Z");
        assert_eq!(ok("1960-01-01"), rfc3339_ms(0));
        for bad in [
            "2026-12",
            "2026-13-01",
            "2026-02-29",
            "2026-12-32",
            "2026-12-08T",
            "2026-12-08T4:00",
            "2026-12-08T24:00",
            "2026-12-08T04:00:61Z",
            "2026-12-08T04:00:00.Z",
            "2026-12-08T04:00:00+0200",
            "2026-12-08Z",
            "2026-12-08T04:00 tomorrow",
        ] {
            assert!(parse_since(bad, NOW).is_err(), "{bad:?}");
        }
        // Every day of a few years round-trips through the formatter.
        for day in (0..20_000).step_by(37) {
            let ms = day * 86_400_000 + 12_345;
            let text = rfc3339_ms(ms);
            assert_eq!(timestamp_ms(&text), Some(ms), "{text}");
        }
    }

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn a_record_reads_as_one_line() {
        let rec = map(json!({
            "seq": 4, "ts": "2026-12-08T04:00:00.000Z", "event": "approval",
            "session": "s-1", "tool": "Bash", "answer": "allow always", "n": 3,
            "ok": true, "empty": "", "args": {"cmd": "ls"}, "prev": "00ff",
        }));
        assert_eq!(
            human(&rec),
            "2026-12-08T04:00:00.000Z  approval  s-1  answer=\"allow always\" \
             args={\"cmd\":\"ls\"} empty=\"\" n=3 ok=true tool=Bash"
        );
        let bare = map(json!({"ts": "t", "note": "a\u{1b}[31mred\nline"}));
        assert_eq!(human(&bare), "t  -  -  note=\"a\\u001b[31mred\\nline\"");
        let controls = map(json!({"event": "x\u{7}y", "session": ""}));
        assert_eq!(human(&controls), "-  x\\u{7}y  -");
    }

    #[test]
    fn the_command_filters_prints_and_verifies() {
        let dir = std::env::temp_dir().join(format!("cba-audit-cli-{}", crate::sys::ids::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = |o: &Options, now: u64| {
            let mut lines = Vec::new();
            let code = run_with(&dir, o, now, &mut |a| lines.push(a.to_string()));
            (code, lines)
        };
        let verify = Options {
            verify: true,
            ..Options::default()
        };
        let json_verify = Options {
            json: true,
            ..verify.clone()
        };
        let path = dir.join(FILE);
        // Through stdout: a missing log prints nothing in JSON.
        let quiet = Options {
            json: true,
            ..Options::default()
        };
        assert_eq!(super::run(&dir, &quiet), 0);
        let none = format!("no audit log at {} yet", path.display());
        assert_eq!(run(&Options::default(), NOW), (0, vec![none.clone()]));
        assert_eq!(run(&verify, NOW), (0, vec![none]));
        assert_eq!(
            run(&json_verify, NOW),
            (0, vec![r#"{"ok":true,"lines":0,"files":0}"#.to_string()])
        );

        let a = audit::Audit::start(audit::Config {
            path: path.clone(),
            max_bytes: 1 << 20,
            keep: 2,
        })
        .unwrap();
        for (event, session) in [("start", "a"), ("turn", "b"), ("stop", "a")] {
            a.record(map(json!({"event": event, "session": session})));
        }
        assert!(a.flush(Duration::from_secs(5)));
        let now = now_ms();

        let (code, all) = run(&Options::default(), now);
        assert_eq!(code, 0);
        assert_eq!(all.len(), 3);
        assert!(all[1].ends_with("Z  turn  b"), "{}", all[1]);
        let only_a = Options {
            session: Some("a".into()),
            json: true,
            ..Options::default()
        };
        let (_, lines) = run(&only_a, now);
        let stored: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(lines, [stored[0].clone(), stored[2].clone()]);
        let later = Options {
            since: Some(rfc3339_ms(now + 60_000)),
            ..Options::default()
        };
        assert_eq!(run(&later, now), (0, vec![]));
        let recent = Options {
            since: Some("1h".into()),
            ..Options::default()
        };
        assert_eq!(run(&recent, now).1.len(), 3);
        let bad = Options {
            since: Some("yesterday".into()),
            ..Options::default()
        };
        assert_eq!(run(&bad, now), (2, vec![]));

        assert_eq!(
            run(&verify, now),
            (0, vec!["audit log intact: 3 lines in 1 files".to_string()])
        );
        std::fs::write(&path, stored[0].clone() + "\n" + &stored[2] + "\n").unwrap();
        let (code, lines) = run(&verify, now);
        assert_eq!(code, 1);
        assert_eq!(
            lines,
            [format!(
                "audit log broken at {}:2: seq 3 follows 1: lines are missing",
                path.display()
            )]
        );
        let (code, lines) = run(&json_verify, now);
        assert_eq!(code, 1);
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["line"], 2);
        assert_eq!(v["file"], path.display().to_string());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
