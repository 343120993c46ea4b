//! The process logger: human-readable lines to stderr and to a rotating file
//! `<log_dir>/agent.log` (2 MiB, then `agent.log.1`, `agent.log.2`; three files in all).
//!
//! Any thread may log; the sinks sit behind one short mutex, held only while a line is
//! written. Every line passes through [`redact`] first: registered secrets (the node
//! token) and any `token=` query value are replaced, so a secret cannot reach a log even
//! through a URL or an error message quoted from a library.
//!
//! Control characters (a NUL or a newline inside a relay string) are escaped, so one
//! call is one line and a log cannot be forged or garbled from outside.
//!
//! While the relay link is up, info-and-above lines are also forwarded to the relay as
//! `node.log` (PROTOCOL §1): the logger hands a [`Forwarded`] line to the hub over a
//! bounded channel (never blocking; a full channel or the rate bound drops lines and the
//! next forwarded line says how many). A thread can name the `trace_id`/`session_id` its
//! lines concern with [`set_context`]; the hub does so per command and per child event.
//!
//! Other crates log through the `log` facade (rustls, tungstenite, ureq); [`init`]
//! installs a `log::Log` that hands their records to the same [`write()`], so they meet
//! the same sinks, the same redaction and the same level. As rustls and ureq are chatty
//! below warn (every handshake step, every request line), their records are kept only
//! at warn and above unless our level is debug or trace. Our own `log_*!` macros do not
//! go through `log`; they call [`write()`] directly.
//!
//! If the log file cannot be opened (read-only home, odd mount), logging continues on
//! stderr only and says so once.

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crossbeam_channel::Sender;

/// Severity, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    /// Parse a level name; accepts the common spellings of other loggers too.
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" | "critical" | "fatal" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            "trace" => Some(Level::Trace),
            _ => None,
        }
    }

    /// The lowercase name used in `node.log`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }

    fn from_log(level: log::Level) -> Level {
        match level {
            log::Level::Error => Level::Error,
            log::Level::Warn => Level::Warn,
            log::Level::Info => Level::Info,
            log::Level::Debug => Level::Debug,
            log::Level::Trace => Level::Trace,
        }
    }

    fn filter(self) -> log::LevelFilter {
        match self {
            Level::Error => log::LevelFilter::Error,
            Level::Warn => log::LevelFilter::Warn,
            Level::Info => log::LevelFilter::Info,
            Level::Debug => log::LevelFilter::Debug,
            Level::Trace => log::LevelFilter::Trace,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
}

/// Default size at which `agent.log` is rotated.
pub const ROTATE_BYTES: u64 = 2 * 1024 * 1024;
/// Files kept: `agent.log` plus this many minus one rotated ones.
pub const KEEP_FILES: usize = 3;

struct Sinks {
    file: Option<RotatingFile>,
    secrets: Vec<String>,
    forward: Option<Forward>,
}

/// A log line for the relay (`node.log`).
#[derive(Debug, Clone, PartialEq)]
pub struct Forwarded {
    pub level: Level,
    pub logger: String,
    pub msg: String,
    pub trace_id: Option<String>,
    pub session_id: Option<String>,
}

/// Lines forwarded in a burst, and per second after it.
pub const FORWARD_BURST: f64 = 50.0;
pub const FORWARD_PER_SEC: f64 = 10.0;

struct Forward {
    tx: Sender<Forwarded>,
    tokens: f64,
    refilled: Instant,
    dropped: u64,
}

impl Forward {
    /// Take a token if there is one (token bucket).
    fn admit(&mut self) -> bool {
        let now = Instant::now();
        let gained = now.duration_since(self.refilled).as_secs_f64() * FORWARD_PER_SEC;
        self.tokens = (self.tokens + gained).min(FORWARD_BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

thread_local! {
    static CONTEXT: RefCell<(Option<String>, Option<String>)> = const { RefCell::new((None, None)) };
}

/// Name the trace and session that this thread's next log lines concern (until the next
/// call); `None`s clear it.
pub fn set_context(trace_id: Option<&str>, session_id: Option<&str>) {
    CONTEXT.with(|c| {
        let mut c = c.borrow_mut();
        c.0 = trace_id.map(str::to_string);
        c.1 = session_id.map(str::to_string);
    });
}

/// Forward info-and-above lines to `tx` from now on (`None` stops it).
pub fn forward_to(tx: Option<Sender<Forwarded>>) {
    if let Ok(mut s) = logger().sinks.lock() {
        s.forward = tx.map(|tx| Forward {
            tx,
            tokens: FORWARD_BURST,
            refilled: Instant::now(),
            dropped: 0,
        });
    }
}

/// `text` with control characters escaped (`\n`, `\t`, `\r`, `\0`, `\u{1b}` …).
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

struct Logger {
    level: AtomicU8,
    sinks: Mutex<Sinks>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| Logger {
        level: AtomicU8::new(Level::Info as u8),
        sinks: Mutex::new(Sinks {
            file: None,
            secrets: Vec::new(),
            forward: None,
        }),
    })
}

/// Set the level, route the `log` facade here and, when `log_dir` is given, open the
/// rotating file there. Returns the problem if the file could not be opened (already
/// logged once).
pub fn init(level: Level, log_dir: Option<&Path>) -> Option<String> {
    let lg = logger();
    lg.level.store(level as u8, Ordering::Relaxed);
    // Fails only if a logger is already set: ours, by an earlier call.
    let _ = log::set_logger(&Facade);
    log::set_max_level(level.filter());
    let dir = log_dir?;
    match RotatingFile::open(dir, ROTATE_BYTES, KEEP_FILES) {
        Ok(file) => {
            if let Ok(mut s) = lg.sinks.lock() {
                s.file = Some(file);
            }
            None
        }
        Err(e) => {
            let msg = format!(
                "cannot write log files in {}: {e}; logging to stderr only",
                dir.display()
            );
            crate::log_warn!("{msg}");
            Some(msg)
        }
    }
}

/// Never let `secret` appear in a log line from now on.
pub fn add_secret(secret: &str) {
    if secret.len() < 4 {
        return; // too short to redact without mangling ordinary text
    }
    if let Ok(mut s) = logger().sinks.lock()
        && !s.secrets.iter().any(|x| x == secret)
    {
        s.secrets.push(secret.to_string());
    }
}

/// `text` with every registered secret (and `token=` value) replaced, as a log line
/// would have it: for records kept elsewhere (the audit log).
pub fn redact_secrets(text: &str) -> String {
    match logger().sinks.lock() {
        Ok(s) => redact(text, &s.secrets),
        Err(_) => redact(text, &[]),
    }
}

/// Whether a line at `level` would be written.
pub fn enabled(level: Level) -> bool {
    level as u8 <= logger().level.load(Ordering::Relaxed)
}

/// Whether a `log` record at `level` from `target` would be written: ours as our level
/// says; another crate's only at warn and above unless we log at debug or trace.
fn facade_enabled(level: Level, target: &str) -> bool {
    let ours = target == "coding_bridge_agent" || target.starts_with("coding_bridge_agent::");
    let max = logger().level.load(Ordering::Relaxed);
    let max = if ours || max >= Level::Debug as u8 {
        max
    } else {
        max.min(Level::Warn as u8)
    };
    level as u8 <= max
}

/// The `log` facade's logger: records from any crate go to [`write()`].
struct Facade;

impl log::Log for Facade {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        facade_enabled(Level::from_log(metadata.level()), metadata.target())
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = Level::from_log(record.level());
        if facade_enabled(level, record.target()) {
            write(level, record.target(), *record.args());
        }
    }

    fn flush(&self) {}
}

/// Write one line (used by the `log_*!` macros).
pub fn write(level: Level, target: &str, args: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let target = target
        .strip_prefix("coding_bridge_agent::")
        .unwrap_or(target);
    let ts = crate::sys::timefmt::rfc3339_ms(crate::sys::timefmt::now_ms());
    // Formatted before the lock: a `Display` that logs must not find it held.
    let text = args.to_string();
    let lg = logger();
    let Ok(mut sinks) = lg.sinks.lock() else {
        return;
    };
    let body = redact(&text, &sinks.secrets);
    let line = format!(
        "{ts} {:<5} {target}: {}\n",
        level.label(),
        escape_controls(&body)
    );
    let _ = io::stderr().write_all(line.as_bytes());
    if let Some(file) = sinks.file.as_mut() {
        file.write_line(line.as_bytes());
    }
    if level <= Level::Info
        && let Some(fwd) = sinks.forward.as_mut()
    {
        if !fwd.admit() {
            fwd.dropped += 1;
            return;
        }
        let (trace_id, session_id) = CONTEXT.with(|c| c.borrow().clone());
        let msg = match std::mem::take(&mut fwd.dropped) {
            0 => body,
            n => format!("{body} ({n} earlier log lines were not forwarded: rate limit)"),
        };
        let sent = fwd.tx.try_send(Forwarded {
            level,
            logger: target.to_string(),
            msg,
            trace_id,
            session_id,
        });
        if sent.is_err() {
            fwd.dropped += 1;
        }
    }
}

/// Replace each registered secret, and the value of any `token=` parameter, by `[redacted]`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "[redacted]");
        }
    }
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(pos) = rest.find("token=") {
        let (head, tail) = rest.split_at(pos + "token=".len());
        result.push_str(head);
        let end = tail
            .find(|c: char| c == '&' || c == '#' || c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(tail.len());
        if end > 0 && !tail[..end].starts_with("[redacted]") {
            result.push_str("[redacted]");
        } else {
            result.push_str(&tail[..end]);
        }
        rest = &tail[end..];
    }
    result.push_str(rest);
    result
}

/// `agent.log` with size-based rotation into `agent.log.1` .. `agent.log.{keep-1}`.
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
    keep: usize,
    failed: bool,
}

impl RotatingFile {
    pub fn open(dir: &Path, max: u64, keep: usize) -> io::Result<RotatingFile> {
        crate::sys::fsutil::ensure_private_dir(dir)?;
        let path = dir.join("agent.log");
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            file,
            size,
            max,
            keep: keep.max(1),
            failed: false,
        })
    }

    pub fn write_line(&mut self, line: &[u8]) {
        if self.size > 0
            && self.size + line.len() as u64 > self.max
            && let Err(e) = self.rotate()
            && !self.failed
        {
            self.failed = true;
            let _ = writeln!(io::stderr(), "log rotation failed: {e}");
        }
        if self.file.write_all(line).is_ok() {
            self.size += line.len() as u64;
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |i: usize| PathBuf::from(format!("{}.{i}", self.path.display()));
        if self.keep > 1 {
            let _ = fs::remove_file(numbered(self.keep - 1));
            for i in (1..self.keep - 1).rev() {
                let _ = fs::rename(numbered(i), numbered(i + 1));
            }
            fs::rename(&self.path, numbered(1))?;
        } else {
            fs::remove_file(&self.path)?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

#[macro_export]
macro_rules! log_at {
    ($lvl:expr, $($arg:tt)+) => {
        if $crate::sys::logging::enabled($lvl) {
            $crate::sys::logging::write($lvl, module_path!(), format_args!($($arg)+))
        }
    };
}
#[macro_export]
macro_rules! log_error { ($($arg:tt)+) => { $crate::log_at!($crate::sys::logging::Level::Error, $($arg)+) }; }
#[macro_export]
macro_rules! log_warn { ($($arg:tt)+) => { $crate::log_at!($crate::sys::logging::Level::Warn, $($arg)+) }; }
#[macro_export]
macro_rules! log_info { ($($arg:tt)+) => { $crate::log_at!($crate::sys::logging::Level::Info, $($arg)+) }; }
#[macro_export]
macro_rules! log_debug { ($($arg:tt)+) => { $crate::log_at!($crate::sys::logging::Level::Debug, $($arg)+) }; }
#[macro_export]
macro_rules! log_trace { ($($arg:tt)+) => { $crate::log_at!($crate::sys::logging::Level::Trace, $($arg)+) }; }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secrets_and_token_params() {
        let secrets = vec!["s3cr3t-value".to_string()];
        assert_eq!(
            redact("connect wss://h/ws/node?token=abc&x=1 failed", &secrets),
            "connect wss://h/ws/node?token=[redacted]&x=1 failed"
        );
        assert_eq!(
            redact("got s3cr3t-value twice s3cr3t-value", &secrets),
            "got [redacted] twice [redacted]"
        );
        assert_eq!(redact("token= empty", &secrets), "token= empty");
        assert_eq!(redact("no secrets here", &secrets), "no secrets here");
    }

    #[test]
    fn rotates_into_three_files() {
        let dir = std::env::temp_dir().join(format!("cba-log-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut f = RotatingFile::open(&dir, 100, 3).unwrap();
        for i in 0..20 {
            f.write_line(format!("line {i:03} padding padding\n").as_bytes());
        }
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["agent.log", "agent.log.1", "agent.log.2"]);
        for n in &names {
            assert!(fs::metadata(dir.join(n)).unwrap().len() <= 100);
        }
        let newest = fs::read_to_string(dir.join("agent.log")).unwrap();
        assert!(newest.contains("line 019"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain é"), "plain é");
        assert_eq!(
            escape_controls("a\0b\nc\x1b[31m\u{7f}"),
            "a\\0b\\nc\\u{1b}[31m\\u{7f}"
        );
    }

    #[test]
    fn other_crates_records_are_caught_filtered_and_redacted() {
        let dir = std::env::temp_dir().join(format!("cba-log-facade-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let secret = format!("facade-secret-{}-q7", std::process::id());
        add_secret(&secret);
        assert_eq!(init(Level::Info, Some(&dir)), None);
        log::warn!(target: "rustls::conn", "alert from peer, key {secret}\nsecond line");
        log::warn!(target: "ureq::unit", "GET https://h/bot{secret}/getMe?token=t0k failed");
        log::info!(target: "tungstenite::handshake", "chatty info {secret}");
        log::debug!(target: "rustls::client::hs", "chatty debug");
        log::info!("our own record through the facade");
        crate::log_info!("our own record through the macro");
        if let Ok(mut s) = logger().sinks.lock() {
            s.file = None;
        }
        let text = fs::read_to_string(dir.join("agent.log")).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let find = |needle: &str| lines.iter().find(|l| l.contains(needle)).copied();
        let warn = find("alert from peer").expect(&text);
        assert!(
            warn.contains(" WARN  rustls::conn: alert from peer, key [redacted]\\nsecond line"),
            "{warn}"
        );
        let ureq = find("getMe").expect(&text);
        assert!(
            ureq.ends_with("ureq::unit: GET https://h/bot[redacted]/getMe?token=[redacted] failed"),
            "{ureq}"
        );
        assert!(!text.contains(&secret), "{text}");
        assert!(!text.contains("t0k"), "{text}");
        assert_eq!(
            find("chatty"),
            None,
            "below warn from another crate: {text}"
        );
        assert!(find("INFO  sys::logging::tests: our own record through the facade").is_some());
        assert!(find("INFO  sys::logging::tests: our own record through the macro").is_some());
        assert!(facade_enabled(Level::Info, "coding_bridge_agent::hub"));
        assert!(!facade_enabled(Level::Info, "rustls"));
        assert!(!facade_enabled(Level::Debug, "coding_bridge_agent::hub"));
    }

    #[test]
    fn levels_parse() {
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        assert_eq!(Level::parse("debug"), Some(Level::Debug));
        assert_eq!(Level::parse("loud"), None);
    }
}
