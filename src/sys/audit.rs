//! The audit log: an append-only file of JSON lines, each naming the SHA-256 of the line
//! before it (`prev`), so a line changed, removed or inserted afterwards breaks the chain
//! where it happened and [`verify`] points there. Mechanism only: what is recorded, and
//! when, is the callers' business; this module numbers, stamps, chains, rotates and
//! reads back.
//!
//! A line is `{"seq":N,"ts":"<RFC3339 ms UTC>",<the caller's fields>,"prev":"<hex>"}`:
//! `seq` counts from 1 across rotations, `prev` is the hash of the previous line's bytes
//! without its newline (64 zeros before the first line ever). The file is created 0600
//! and rotated by size into `<stem>.1.<ext>` … `<stem>.<keep>.<ext>`; the chain goes on
//! across files.
//!
//! Thread: `audit`, started by [`Audit::start`], owns the file; [`Audit::record`] hands
//! it records over a bounded channel of [`QUEUE`] without ever blocking the caller. A
//! record that finds the queue full is counted and the count is written as an
//! `{"event":"audit_gap","lost":N}` record at the place of the loss (before the next
//! record that gets in, or at the next flush), so a gap shows in the chain; records
//! that could not be written (disk full) become an `audit_gap` with `"cause":
//! "write_failed"` once writing works again. The thread ends when the last handle is
//! dropped. [`files`], [`read`] and [`verify`] are plain functions for the CLI.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use ring::digest::{SHA256, digest};
use serde_json::{Map, Value};

use crate::sys::timefmt::{now_ms, rfc3339_ms};

/// Records waiting for the thread.
pub const QUEUE: usize = 4096;
/// The longest line read back; a longer one is broken (the writer never writes one).
pub const MAX_LINE: usize = 1 << 20;
/// `prev` of the first line ever.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Field names the writer sets itself; a caller's are dropped.
const RESERVED: [&str; 3] = ["seq", "ts", "prev"];
/// At most one warning about a failing log per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Where the log is and how it rotates.
#[derive(Clone, Debug)]
pub struct Config {
    /// The current file, e.g. `<config dir>/audit.jsonl`.
    pub path: PathBuf,
    /// A line that would take the current file past this starts a new one.
    pub max_bytes: u64,
    /// Rotated files kept (`audit.1.jsonl` … `audit.<keep>.jsonl`); 0 keeps none.
    pub keep: usize,
}

enum Msg {
    /// Fields and the time they were recorded (ms).
    Record(Map<String, Value>, u64),
    /// This many records found the queue full here.
    Gap(u64),
    /// Answer once everything before is written.
    Flush(Sender<()>),
}

struct Inner {
    tx: Sender<Msg>,
    /// Records lost to a full queue and not yet told in an `audit_gap`.
    lost: Arc<AtomicU64>,
}

/// A handle to the audit log (cheap to clone); or one that records nothing.
#[derive(Clone)]
pub struct Audit {
    inner: Option<Arc<Inner>>,
}

impl Audit {
    /// Spawn the thread "audit" that owns the file. The thread opens or creates it (0600)
    /// and learns the last `seq` and hash from the tail of the newest file (a torn last
    /// line is completed with a newline and the chain continues from it), then serves
    /// records. Err only if the thread cannot be spawned; a file that cannot be opened
    /// is logged and tried again at the next record.
    pub fn start(cfg: Config) -> io::Result<Audit> {
        Audit::spawn(cfg, QUEUE, Gate::default())
    }

    /// A handle that records nothing (unit tests).
    #[cfg(test)]
    pub fn disabled() -> Audit {
        Audit { inner: None }
    }

    /// Like [`Audit::start`] with a small queue and a writer that takes one message per
    /// unit sent on the returned gate (and all of them once it is dropped).
    #[cfg(test)]
    fn start_gated(cfg: Config, queue: usize) -> (Audit, Sender<()>) {
        let (open, rx) = crossbeam_channel::unbounded();
        let audit = Audit::spawn(cfg, queue, Gate { rx: Some(rx) }).expect("spawn audit");
        (audit, open)
    }

    fn spawn(cfg: Config, queue: usize, gate: Gate) -> io::Result<Audit> {
        let (tx, rx) = bounded(queue);
        let lost = Arc::new(AtomicU64::new(0));
        let counter = lost.clone();
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || serve(Writer::new(cfg, counter), &rx, &gate))?;
        Ok(Audit {
            inner: Some(Arc::new(Inner { tx, lost })),
        })
    }

    /// Queue one record; never blocks. When the queue is full the record is counted as
    /// lost, and the count goes in as an `audit_gap` record before the next one.
    pub fn record(&self, fields: Map<String, Value>) {
        let Some(inner) = &self.inner else {
            return;
        };
        let ts = now_ms();
        let pending = inner.lost.swap(0, Ordering::AcqRel);
        if pending > 0 && inner.tx.try_send(Msg::Gap(pending)).is_err() {
            inner.lost.fetch_add(pending + 1, Ordering::AcqRel);
            return;
        }
        match inner.tx.try_send(Msg::Record(fields, ts)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                inner.lost.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Wait up to `wait` until everything queued so far is written (flushed, not
    /// fsynced). True if done.
    pub fn flush(&self, wait: Duration) -> bool {
        let Some(inner) = &self.inner else {
            return true;
        };
        let deadline = Instant::now() + wait;
        let (done_tx, done_rx) = bounded(1);
        if inner
            .tx
            .send_deadline(Msg::Flush(done_tx), deadline)
            .is_err()
        {
            return false;
        }
        done_rx.recv_deadline(deadline).is_ok()
    }
}

/// Test-only hold on the writer; nothing outside tests.
#[derive(Default)]
struct Gate {
    #[cfg(test)]
    rx: Option<Receiver<()>>,
}

impl Gate {
    fn wait(&self) {
        #[cfg(test)]
        if let Some(rx) = &self.rx {
            let _ = rx.recv();
        }
    }
}

/// The writer thread's loop: until the last handle is gone.
fn serve(mut w: Writer, rx: &Receiver<Msg>, gate: &Gate) {
    w.start();
    loop {
        gate.wait();
        let Ok(msg) = rx.recv() else {
            break;
        };
        match msg {
            Msg::Record(fields, ts) => w.record(&fields, ts, 1),
            Msg::Gap(n) => w.record(&gap(n, None), now_ms(), n),
            Msg::Flush(done) => {
                w.tell_lost();
                let _ = done.send(());
            }
        }
    }
    w.tell_lost();
}

/// `{"event":"audit_gap","lost":n}`, with the cause when it is not a full queue.
fn gap(n: u64, cause: Option<&str>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("event".into(), "audit_gap".into());
    m.insert("lost".into(), n.into());
    if let Some(c) = cause {
        m.insert("cause".into(), c.into());
    }
    m
}

/// The file and the chain's state, owned by the thread.
struct Writer {
    path: PathBuf,
    max: u64,
    keep: usize,
    file: Option<File>,
    /// (device, inode) of `file`, to notice the path removed or replaced.
    id: (u64, u64),
    size: u64,
    /// The last line written: its seq and hash.
    seq: u64,
    prev: String,
    /// The chain's state has been learned from the files.
    learned: bool,
    lost: Arc<AtomicU64>,
    /// Records that could not be written, not yet told in an `audit_gap`.
    unwritten: u64,
    /// The hash of a line found cut short (a crash mid-write), to be told in an
    /// `audit_torn` record right after it, so `verify` can tell it from tampering.
    torn: Option<String>,
    warnings: Warnings,
}

/// The record that follows a line cut short by a crash: it names the line's hash (and
/// chains to it), so `verify` accepts that one line as torn, not tampered with.
fn torn_note(hash: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("event".into(), "audit_torn".into());
    m.insert("torn_sha256".into(), hash.into());
    m
}

/// Warnings about the log, at most one per [`WARN_EVERY`].
#[derive(Default)]
struct Warnings {
    last: Option<Instant>,
    /// Held back since the last one.
    quiet: u64,
}

impl Warnings {
    fn warn(&mut self, what: fmt::Arguments<'_>) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            self.quiet += 1;
            return;
        }
        self.last = Some(now);
        match std::mem::take(&mut self.quiet) {
            0 => crate::log_warn!("{what}"),
            n => crate::log_warn!("{what} ({n} more audit log problems in the last minute)"),
        }
    }
}

impl Writer {
    fn new(cfg: Config, lost: Arc<AtomicU64>) -> Writer {
        Writer {
            path: cfg.path,
            max: cfg.max_bytes,
            keep: cfg.keep,
            file: None,
            id: (0, 0),
            size: 0,
            seq: 0,
            prev: GENESIS.to_string(),
            learned: false,
            lost,
            unwritten: 0,
            torn: None,
            warnings: Warnings::default(),
        }
    }

    fn start(&mut self) {
        if let Err(e) = self.ensure_open() {
            self.warnings.warn(format_args!(
                "cannot open the audit log {}: {e}; trying again at the next record",
                self.path.display()
            ));
        }
    }

    /// Write a record that stands for `count` records (a gap record for several).
    fn record(&mut self, fields: &Map<String, Value>, ts: u64, count: u64) {
        if self.unwritten > 0 {
            let told = gap(self.unwritten, Some("write_failed"));
            match self.put(&told, now_ms()) {
                Ok(()) => self.unwritten = 0,
                Err(e) => return self.failed(&e, count),
            }
        }
        if let Err(e) = self.put(fields, ts) {
            self.failed(&e, count);
        }
    }

    /// Write the queue's losses that no record has told yet.
    fn tell_lost(&mut self) {
        let n = self.lost.swap(0, Ordering::AcqRel);
        if n > 0 {
            self.record(&gap(n, None), now_ms(), n);
        }
    }

    fn failed(&mut self, e: &io::Error, count: u64) {
        self.unwritten += count;
        self.warnings.warn(format_args!(
            "cannot write the audit log {}: {e}; {} records not written so far (an audit_gap \
             record will say so)",
            self.path.display(),
            self.unwritten
        ));
    }

    /// Append one line (after the note on a torn line found on opening); the chain
    /// moves on only if it was written whole.
    fn put(&mut self, fields: &Map<String, Value>, ts: u64) -> io::Result<()> {
        self.ensure_open()?;
        if let Some(hash) = self.torn.take() {
            self.put_open(&torn_note(&hash), now_ms())?;
        }
        self.put_open(fields, ts)
    }

    fn put_open(&mut self, fields: &Map<String, Value>, ts: u64) -> io::Result<()> {
        let seq = Value::from(self.seq + 1);
        let ts = Value::from(rfc3339_ms(ts));
        let prev = Value::from(self.prev.as_str());
        let mut line = render(Some(&seq), Some(&ts), fields, Some(&prev));
        if line.len() > MAX_LINE {
            let mut small = Map::new();
            small.insert("event".into(), "audit_oversize".into());
            small.insert("bytes".into(), line.len().into());
            if let Some(ev) = fields.get("event") {
                small.insert("dropped_event".into(), ev.clone());
            }
            line = render(Some(&seq), Some(&ts), &small, Some(&prev));
        }
        let hash = sha256_hex(&line);
        line.push(b'\n');
        let len = line.len() as u64;
        if self.size > 0
            && self.size + len > self.max
            && let Err(e) = self.rotate()
        {
            self.warnings.warn(format_args!(
                "cannot rotate the audit log {}: {e}",
                self.path.display()
            ));
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the log is not open",
            ));
        };
        if let Err(e) = file.write_all(&line) {
            // Take back a part-written line so the next one starts clean; if that fails
            // too, reopen (and complete the torn line) before the next write.
            if file.set_len(self.size).is_err() {
                self.file = None;
            }
            return Err(e);
        }
        self.size += len;
        self.seq += 1;
        self.prev = hash;
        Ok(())
    }

    /// Have the current file open: (re)open it when it is not, or when the path no
    /// longer names it (removed or replaced), learning the chain's state from its tail.
    fn ensure_open(&mut self) -> io::Result<()> {
        if self.file.is_some() {
            match fs::metadata(&self.path) {
                Ok(m) if (m.dev(), m.ino()) == self.id => return Ok(()),
                _ => {
                    self.file = None;
                    self.warnings.warn(format_args!(
                        "the audit log {} was removed or replaced; writing a new one",
                        self.path.display()
                    ));
                }
            }
        }
        let file = open_log(&self.path)?;
        let meta = file.metadata()?;
        self.id = (meta.dev(), meta.ino());
        self.size = meta.len();
        if self.size > 0 {
            let tail = tail(&file, self.size)?;
            if tail.torn {
                (&file).write_all(b"\n")?;
                self.size += 1;
                // Cut inside the line (not just its newline): say so next.
                if !tail.complete {
                    self.torn = Some(tail.prev.clone());
                }
            }
            self.adopt(tail, &self.path.clone());
        } else if !self.learned {
            self.learn_rotated();
        }
        self.learned = true;
        self.file = Some(file);
        Ok(())
    }

    /// The newest rotated file's tail, when the current file is new or empty.
    fn learn_rotated(&mut self) {
        for old in files(&self.path).into_iter().rev() {
            if old == self.path {
                continue;
            }
            let learned = File::open(&old).and_then(|f| {
                let size = f.metadata()?.len();
                if size == 0 {
                    return Ok(None);
                }
                tail(&f, size).map(Some)
            });
            match learned {
                Ok(None) => continue,
                Ok(Some(t)) => return self.adopt(t, &old),
                Err(e) => {
                    self.warnings.warn(format_args!(
                        "cannot read the audit log {}: {e}; the chain starts again",
                        old.display()
                    ));
                    return;
                }
            }
        }
    }

    fn adopt(&mut self, t: Tail, file: &Path) {
        self.prev = t.prev;
        self.seq = match t.seq {
            Ok(seq) => seq,
            Err(lines) => {
                self.warnings.warn(format_args!(
                    "no sequence number near the end of the audit log {}; numbering goes on \
                     from {lines}",
                    file.display()
                ));
                lines
            }
        };
    }

    /// `audit.jsonl` → `audit.1.jsonl` → … → `audit.<keep>.jsonl`, the oldest beyond
    /// `keep` deleted, and a new current file.
    fn rotate(&mut self) -> io::Result<()> {
        for (n, old) in rotated_files(&self.path) {
            if n >= self.keep {
                let _ = fs::remove_file(old);
            }
        }
        for n in (1..self.keep).rev() {
            let _ = fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
        }
        if self.keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = None;
        self.ensure_open()
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// What the end of a file says about the chain.
struct Tail {
    /// Hash of the last line.
    prev: String,
    /// The last line's seq; Err(lines seen) when no line near the end has one.
    seq: Result<u64, u64>,
    /// The last line has no newline.
    torn: bool,
    /// The last line is a whole record (a JSON object with a seq).
    complete: bool,
}

/// Read the last line (and, if it has no seq, the ones before it) from the end of a
/// file of `size` bytes; never more than [`MAX_LINE`] and two newlines.
fn tail(file: &File, size: u64) -> io::Result<Tail> {
    let window = size.min(MAX_LINE as u64 + 2);
    let mut buf = vec![0; window as usize];
    file.read_exact_at(&mut buf, size - window)?;
    let torn = buf.last() != Some(&b'\n');
    let body = if torn {
        &buf[..]
    } else {
        &buf[..buf.len() - 1]
    };
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    // When the window starts inside the file its first piece may be part of a line.
    let whole = if window == size {
        lines.len()
    } else {
        lines.len() - 1
    };
    let prev = sha256_hex(lines.last().copied().unwrap_or_default());
    let complete = lines.last().is_some_and(|l| seq_of(l).is_some());
    let mut seq = Err(whole as u64);
    for (back, line) in lines.iter().rev().take(whole).enumerate() {
        if let Some(s) = seq_of(line) {
            seq = Ok(s.saturating_add(back as u64));
            break;
        }
    }
    Ok(Tail {
        prev,
        seq,
        torn,
        complete,
    })
}

fn seq_of(line: &[u8]) -> Option<u64> {
    match serde_json::from_slice::<Value>(line).ok()? {
        Value::Object(m) => m.get("seq")?.as_u64(),
        _ => None,
    }
}

/// A record laid out as the writer lays it out: seq, ts, the other fields in the map's
/// order, prev (each of the three only if given; reserved names in `fields` skipped).
fn render(
    seq: Option<&Value>,
    ts: Option<&Value>,
    fields: &Map<String, Value>,
    prev: Option<&Value>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.push(b'{');
    let mut first = true;
    let mut pair = |out: &mut Vec<u8>, k: &str, v: &Value| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        json_into(out, &k);
        out.push(b':');
        json_into(out, v);
    };
    for (k, v) in [("seq", seq), ("ts", ts)] {
        if let Some(v) = v {
            pair(&mut out, k, v);
        }
    }
    for (k, v) in fields {
        if !RESERVED.contains(&k.as_str()) {
            pair(&mut out, k, v);
        }
    }
    if let Some(p) = prev {
        pair(&mut out, "prev", p);
    }
    out.push(b'}');
    out
}

fn json_into(out: &mut Vec<u8>, v: &impl serde::Serialize) {
    let start = out.len();
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"null");
    }
}

/// A record read back, as the writer laid it out (key order seq, ts, fields, prev): the
/// line as stored, for `audit --json`.
pub fn stored_line(record: &Map<String, Value>) -> String {
    let bytes = render(
        record.get("seq"),
        record.get("ts"),
        record,
        record.get("prev"),
    );
    String::from_utf8(bytes).unwrap_or_default()
}

fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = digest(&SHA256, bytes);
    let mut s = String::with_capacity(64);
    for b in d.as_ref() {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `<dir>/<stem>.<n>.<ext>` for `<dir>/<stem>.<ext>` (`<dir>/<stem>.<n>` without one).
fn rotated(path: &Path, n: usize) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{n}"),
    };
    path.with_file_name(name)
}

/// The rotated files that exist, with their numbers, in no order.
fn rotated_files(path: &Path) -> Vec<(usize, PathBuf)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let stem = format!(
        "{}.",
        path.file_stem().unwrap_or_default().to_string_lossy()
    );
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let n = name
            .strip_prefix(&stem)
            .and_then(|rest| rest.strip_suffix(&ext))
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<usize>().ok());
        if let Some(n) = n
            && n >= 1
            && rotated(path, n).file_name() == Some(entry.file_name().as_os_str())
        {
            out.push((n, entry.path()));
        }
    }
    out
}

/// The log's files, oldest first (rotated ones by number descending, then the current
/// file); only those that exist.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut old = rotated_files(path);
    old.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let mut out: Vec<PathBuf> = old.into_iter().map(|(_, p)| p).collect();
    if fs::symlink_metadata(path).is_ok() {
        out.push(path.to_path_buf());
    }
    out
}

/// The files opened at once, so a rotation while they are read moves nothing under us.
fn open_all(path: &Path) -> io::Result<Vec<(PathBuf, File)>> {
    let mut out = Vec::new();
    for p in files(path) {
        match File::open(&p) {
            Ok(f) => out.push((p, f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", p.display()))),
        }
    }
    Ok(out)
}

/// The next line into `buf`, without its newline: `Some(true)` if it was longer than
/// [`MAX_LINE`] (then dropped, never held whole), `None` at the end.
fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
    use crate::sys::child::{LineRead, read_bounded_line};
    buf.clear();
    Ok(match read_bounded_line(r, buf, MAX_LINE + 1)? {
        LineRead::Eof => None,
        LineRead::TooLong(_) => Some(true),
        LineRead::Line => {
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            Some(false)
        }
    })
}

/// One line of the log, read back.
#[derive(Clone, Debug)]
pub struct Entry {
    // Where it was read (the tests check it; the `audit` command shows only records).
    #[cfg_attr(not(test), allow(dead_code))]
    pub file: PathBuf,
    #[cfg_attr(not(test), allow(dead_code))]
    /// 1-based within its file.
    pub line: usize,
    pub record: Map<String, Value>,
}

/// Every record, oldest first, across files. Lines that are not JSON objects (or are
/// longer than [`MAX_LINE`]) are skipped here; [`verify`] reports them.
pub fn read(path: &Path) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for (file, f) in open_all(path)? {
        let mut r = BufReader::new(f);
        let mut n = 0;
        while let Some(long) = next_line(&mut r, &mut buf)? {
            n += 1;
            if long {
                continue;
            }
            if let Ok(Value::Object(record)) = serde_json::from_slice(&buf) {
                out.push(Entry {
                    file: file.clone(),
                    line: n,
                    record,
                });
            }
        }
    }
    Ok(out)
}

/// A chain checked whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub files: usize,
    pub lines: u64,
}

/// Where the chain breaks, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

impl std::error::Error for Broken {}

/// Check the whole chain across files, oldest first: every line a JSON object with an
/// integer `seq` one more than the line before and a `prev` that is the SHA-256 of the
/// line before (across file boundaries). The oldest line is taken as the start (older
/// files may have been rotated away), but a `seq` 1 must have 64 zeros as `prev`. The
/// first problem is reported. A missing log verifies as 0 files, 0 lines.
pub fn verify(path: &Path) -> Result<Verified, Broken> {
    let opened = open_all(path).map_err(|e| Broken {
        file: path.to_path_buf(),
        line: 0,
        reason: format!("cannot read: {e}"),
    })?;
    let files = opened.len();
    // The line before: hash, seq, file, line.
    let mut before: Option<(String, u64, PathBuf, usize)> = None;
    // A line that is not a record, waiting for the `audit_torn` note that must follow
    // it: its hash, file and line.
    let mut torn: Option<(String, PathBuf, usize)> = None;
    let mut lines = 0;
    let mut buf = Vec::new();
    for (file, f) in opened {
        let mut r = BufReader::new(f);
        let mut n = 0;
        loop {
            let at = |line: usize, reason: String| Broken {
                file: file.clone(),
                line,
                reason,
            };
            let long = match next_line(&mut r, &mut buf) {
                Ok(Some(long)) => long,
                Ok(None) => break,
                Err(e) => return Err(at(n + 1, format!("cannot read: {e}"))),
            };
            n += 1;
            lines += 1;
            if long {
                return Err(at(n, format!("a line longer than {MAX_LINE} bytes")));
            }
            let parsed = serde_json::from_slice::<Value>(&buf);
            if let Some((hash, tfile, tline)) = torn.take() {
                // Only the note on that line may follow it.
                let noted = matches!(&parsed, Ok(Value::Object(r))
                    if r.get("event").and_then(Value::as_str) == Some("audit_torn")
                        && r.get("torn_sha256").and_then(Value::as_str) == Some(&hash)
                        && r.get("prev").and_then(Value::as_str) == Some(&hash));
                if !noted {
                    return Err(Broken {
                        file: tfile,
                        line: tline,
                        reason: "not a JSON object".into(),
                    });
                }
                // The torn line took the seq after the line before it.
                if let Some(b) = before.as_mut() {
                    b.0 = hash;
                    b.1 = b.1.saturating_add(1);
                } else {
                    let seq = rec_seq(&parsed).map_or(0, |s| s.saturating_sub(1));
                    before = Some((hash, seq, tfile, tline));
                }
            }
            let Ok(Value::Object(rec)) = parsed else {
                // A line cut short by a crash is followed by the note on it.
                torn = Some((sha256_hex(&buf), file.clone(), n));
                continue;
            };
            let Some(seq) = rec.get("seq").and_then(Value::as_u64) else {
                return Err(at(n, "no integer seq".into()));
            };
            let Some(prev) = rec
                .get("prev")
                .and_then(Value::as_str)
                .filter(|p| is_hash(p))
            else {
                return Err(at(n, "no prev hash (64 lowercase hex digits)".into()));
            };
            match &before {
                None if seq == 1 && prev != GENESIS => {
                    return Err(at(
                        n,
                        "seq 1 starts the chain, but its prev is not 64 zeros".into(),
                    ));
                }
                None => {}
                Some((hash, last, bfile, bline)) => {
                    if seq != last.saturating_add(1) {
                        let why = if seq > *last {
                            "lines are missing"
                        } else {
                            "lines are repeated or out of order"
                        };
                        return Err(at(n, format!("seq {seq} follows {last}: {why}")));
                    }
                    if prev != hash {
                        let place = if *bfile == file {
                            format!("line {bline}")
                        } else {
                            format!("{}:{bline}", bfile.display())
                        };
                        return Err(at(
                            n,
                            format!(
                                "the chain breaks here: {place} before it was changed, or \
                                 lines were removed or inserted"
                            ),
                        ));
                    }
                }
            }
            before = Some((sha256_hex(&buf), seq, file.clone(), n));
        }
    }
    if let Some((_, file, line)) = torn {
        return Err(Broken {
            file,
            line,
            reason: "not a JSON object (a write cut short is noted when the daemon starts again;                      until then it reads as this)"
                .into(),
        });
    }
    Ok(Verified { files, lines })
}

/// The `seq` of a parsed line, if it has one.
fn rec_seq(v: &Result<Value, serde_json::Error>) -> Option<u64> {
    v.as_ref().ok()?.get("seq")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cba-audit-{name}-{}", crate::sys::ids::new_id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn cfg(dir: &Path, max_bytes: u64, keep: usize) -> Config {
        Config {
            path: dir.join("audit.jsonl"),
            max_bytes,
            keep,
        }
    }

    fn rec(event: &str, i: u64) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("event".into(), event.into());
        m.insert("i".into(), i.into());
        m
    }

    fn write(c: &Config, from: u64, to: u64) {
        let a = Audit::start(c.clone()).unwrap();
        for i in from..to {
            a.record(rec("test", i));
        }
        assert!(a.flush(Duration::from_secs(5)));
    }

    fn lines_of(p: &Path) -> Vec<String> {
        fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn records_are_numbered_chained_and_verify() {
        let dir = tmp("basic");
        let c = cfg(&dir, 1 << 20, 3);
        let a = Audit::start(c.clone()).unwrap();
        let mut m = rec("hello", 1);
        m.insert("seq".into(), 99.into());
        m.insert("prev".into(), "x".into());
        m.insert("ts".into(), "then".into());
        m.insert("session".into(), "s1".into());
        a.record(m);
        a.record(rec("two", 2));
        a.record(rec("three", 3));
        assert!(a.flush(Duration::from_secs(5)));
        let lines = lines_of(&c.path);
        assert_eq!(lines.len(), 3);
        let first = &lines[0];
        assert!(first.starts_with("{\"seq\":1,\"ts\":\"20"), "{first}");
        assert!(
            first.ends_with(&format!(
                ",\"event\":\"hello\",\"i\":1,\"session\":\"s1\",\"prev\":\"{GENESIS}\"}}"
            )),
            "{first}"
        );
        assert!(!first.contains("then") && !first.contains("99"), "{first}");
        let second: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(second["seq"], 2);
        assert_eq!(second["prev"], sha256_hex(first.as_bytes()));
        assert_eq!(verify(&c.path), Ok(Verified { files: 1, lines: 3 }));
        let mode = fs::metadata(&c.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let entries = read(&c.path).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(
            (entries[2].file.as_path(), entries[2].line),
            (c.path.as_path(), 3)
        );
        assert_eq!(entries[2].record["event"], "three");
        assert_eq!(stored_line(&entries[0].record), *first);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_restart_continues_seq_and_chain() {
        let dir = tmp("restart");
        let c = cfg(&dir, 1 << 20, 3);
        write(&c, 0, 3);
        write(&c, 3, 5);
        let lines = lines_of(&c.path);
        assert_eq!(lines.len(), 5);
        let fourth: Value = serde_json::from_str(&lines[3]).unwrap();
        assert_eq!(fourth["seq"], 4);
        assert_eq!(fourth["i"], 3);
        assert_eq!(verify(&c.path), Ok(Verified { files: 1, lines: 5 }));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_keeps_the_chain_across_files_and_keep_files_at_most() {
        let dir = tmp("rotate");
        let c = cfg(&dir, 400, 2);
        write(&c, 0, 20);
        // A restart after rotations learns from the current file.
        write(&c, 20, 30);
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["audit.1.jsonl", "audit.2.jsonl", "audit.jsonl"]);
        for n in &names {
            assert!(fs::metadata(dir.join(n)).unwrap().len() <= 400, "{n}");
            let mode = fs::metadata(dir.join(n)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{n}");
        }
        let all = files(&c.path);
        assert_eq!(
            all,
            [
                dir.join("audit.2.jsonl"),
                dir.join("audit.1.jsonl"),
                c.path.clone()
            ]
        );
        let v = verify(&c.path).unwrap();
        assert_eq!(v.files, 3);
        let entries = read(&c.path).unwrap();
        assert_eq!(entries.len() as u64, v.lines);
        let last = entries.last().unwrap();
        assert_eq!(last.record["seq"], 30);
        assert_eq!(last.record["i"], 29);
        // The oldest kept line is not seq 1 and still starts the chain.
        assert!(entries[0].record["seq"].as_u64().unwrap() > 1);
        // The first line of a newer file chains to the last of the older one.
        let older = lines_of(&all[1]);
        let newer: Value = serde_json::from_str(&lines_of(&all[2])[0]).unwrap();
        assert_eq!(newer["prev"], sha256_hex(older.last().unwrap().as_bytes()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotated_files_beyond_keep_from_an_earlier_setting_go() {
        let dir = tmp("keep");
        write(&cfg(&dir, 300, 5), 0, 30);
        assert_eq!(files(&dir.join("audit.jsonl")).len(), 6);
        write(&cfg(&dir, 300, 1), 30, 35);
        let left = files(&dir.join("audit.jsonl"));
        assert_eq!(left, [dir.join("audit.1.jsonl"), dir.join("audit.jsonl")]);
        assert!(verify(&dir.join("audit.jsonl")).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_edited_byte_breaks_the_chain_at_the_next_line() {
        let dir = tmp("edit");
        let c = cfg(&dir, 1 << 20, 3);
        write(&c, 0, 5);
        let text = fs::read_to_string(&c.path).unwrap();
        let edited = text.replacen("\"i\":2", "\"i\":7", 1);
        assert_ne!(text, edited);
        fs::write(&c.path, edited).unwrap();
        let b = verify(&c.path).unwrap_err();
        assert_eq!((b.file.as_path(), b.line), (c.path.as_path(), 4));
        assert_eq!(
            b.reason,
            "the chain breaks here: line 3 before it was changed, or lines were removed or \
             inserted"
        );
        assert!(
            b.to_string()
                .starts_with(&format!("{}:4: ", c.path.display()))
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_edit_across_a_file_boundary_names_the_other_file() {
        let dir = tmp("edit-across");
        let c = cfg(&dir, 400, 3);
        write(&c, 0, 8);
        let older = rotated(&c.path, 1);
        let text = fs::read_to_string(&older).unwrap();
        let last = text.lines().last().unwrap().to_string();
        let n = text.lines().count();
        fs::write(
            &older,
            text.replace(&last, &last.replace("\"test\"", "\"tesT\"")),
        )
        .unwrap();
        let b = verify(&c.path).unwrap_err();
        assert_eq!((b.file.as_path(), b.line), (c.path.as_path(), 1));
        assert!(
            b.reason
                .contains(&format!("{}:{n} before it was changed", older.display())),
            "{b}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_deleted_or_inserted_line_is_caught() {
        let dir = tmp("delete");
        let c = cfg(&dir, 1 << 20, 3);
        write(&c, 0, 5);
        let lines = lines_of(&c.path);
        let mut without = lines.clone();
        without.remove(2);
        fs::write(&c.path, without.join("\n") + "\n").unwrap();
        let b = verify(&c.path).unwrap_err();
        assert_eq!(b.line, 3);
        assert_eq!(b.reason, "seq 4 follows 2: lines are missing");

        // A line copied in keeps no seq order; a renumbered copy breaks the hash.
        let mut with = lines.clone();
        with.insert(2, lines[1].clone());
        fs::write(&c.path, with.join("\n") + "\n").unwrap();
        assert_eq!(
            verify(&c.path).unwrap_err().reason,
            "seq 2 follows 2: lines are repeated or out of order"
        );
        fs::write(&c.path, "{\"seq\":1,\"prev\":\"abc\"}\n").unwrap();
        assert_eq!(verify(&c.path).unwrap_err().line, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_completed_and_the_chain_goes_on_from_it() {
        // Whole but for its newline: the chain stays intact.
        let dir = tmp("torn");
        let c = cfg(&dir, 1 << 20, 3);
        write(&c, 0, 3);
        let text = fs::read_to_string(&c.path).unwrap();
        fs::write(&c.path, text.trim_end_matches('\n')).unwrap();
        write(&c, 3, 5);
        assert_eq!(verify(&c.path), Ok(Verified { files: 1, lines: 5 }));

        // Cut inside the line (a crash): until the writer runs again that line reads as
        // broken; then a note on it follows, chained to it, and the chain verifies.
        let text = fs::read_to_string(&c.path).unwrap();
        fs::write(&c.path, &text[..text.len() - 20]).unwrap();
        let b = verify(&c.path).unwrap_err();
        assert_eq!(b.line, 5);
        assert!(b.reason.starts_with("not a JSON object"), "{b}");
        write(&c, 5, 7);
        assert_eq!(verify(&c.path), Ok(Verified { files: 1, lines: 8 }));
        let lines = lines_of(&c.path);
        assert_eq!(lines.len(), 8);
        let note: Value = serde_json::from_str(&lines[5]).unwrap();
        assert_eq!(note["event"], "audit_torn");
        assert_eq!(note["seq"], 6);
        assert_eq!(note["prev"], sha256_hex(lines[4].as_bytes()));
        assert_eq!(note["torn_sha256"], sha256_hex(lines[4].as_bytes()));
        let after: Value = serde_json::from_str(&lines[6]).unwrap();
        assert_eq!(after["seq"], 7);
        // A note cannot cover a line changed on purpose: change the torn line's text.
        let mut changed = lines.clone();
        changed[4] = format!("{}X", changed[4]);
        fs::write(&c.path, changed.join("\n") + "\n").unwrap();
        assert_eq!(verify(&c.path).unwrap_err().line, 5);
        // Nor can an ordinary line that is not JSON be passed off without its note.
        let mut changed = lines.clone();
        changed[2] = "garbage".into();
        fs::write(&c.path, changed.join("\n") + "\n").unwrap();
        assert_eq!(verify(&c.path).unwrap_err().line, 3);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_in_the_file_does_not_stop_the_writer() {
        let dir = tmp("garbage");
        let c = cfg(&dir, 1 << 20, 3);
        fs::write(&c.path, b"\xff\xfe not json\n\0\0\0").unwrap();
        write(&c, 0, 2);
        let b = verify(&c.path).unwrap_err();
        assert_eq!((b.line, b.reason.as_str()), (1, "not a JSON object"));
        // The torn garbage at the end is noted, then the records follow.
        let entries = read(&c.path).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].record["event"], "audit_torn");
        assert_eq!(entries[1].line, 4);
        assert_eq!(entries[1].record["i"], 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_removed_file_is_started_again() {
        let dir = tmp("removed");
        let c = cfg(&dir, 1 << 20, 3);
        let a = Audit::start(c.clone()).unwrap();
        a.record(rec("one", 1));
        assert!(a.flush(Duration::from_secs(5)));
        fs::remove_file(&c.path).unwrap();
        a.record(rec("two", 2));
        assert!(a.flush(Duration::from_secs(5)));
        let lines = lines_of(&c.path);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("{\"seq\":2,"), "{}", lines[0]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_queue_leaves_an_audit_gap_where_records_were_lost() {
        let dir = tmp("gap");
        let c = cfg(&dir, 1 << 20, 3);
        let (a, gate) = Audit::start_gated(c.clone(), 2);
        for i in 0..4 {
            a.record(rec("r", i));
        }
        // Two are queued, two lost; let the writer take the two.
        gate.send(()).unwrap();
        gate.send(()).unwrap();
        let inner = a.inner.clone().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !inner.tx.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        a.record(rec("r", 4));
        drop(gate);
        assert!(a.flush(Duration::from_secs(5)));
        let got: Vec<(Value, Value)> = read(&c.path)
            .unwrap()
            .into_iter()
            .map(|e| {
                let field = |k: &str| e.record.get(k).cloned().unwrap_or_default();
                (field("event"), field("i"))
            })
            .collect();
        let r = |i: u64| (Value::from("r"), Value::from(i));
        assert_eq!(
            got,
            [r(0), r(1), (Value::from("audit_gap"), Value::Null), r(4)]
        );
        let gap = &read(&c.path).unwrap()[2].record;
        assert_eq!(gap["lost"], 2);
        assert!(gap.get("cause").is_none());
        assert!(verify(&c.path).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn losses_at_the_end_are_told_at_the_flush() {
        let dir = tmp("gap-end");
        let c = cfg(&dir, 1 << 20, 3);
        let (a, gate) = Audit::start_gated(c.clone(), 2);
        for i in 0..5 {
            a.record(rec("r", i));
        }
        drop(gate);
        assert!(a.flush(Duration::from_secs(5)));
        let entries = read(&c.path).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].record["event"], "audit_gap");
        assert_eq!(entries[2].record["lost"], 3);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_log_is_told_as_a_gap_once_it_works_again() {
        let dir = tmp("unwritable");
        let c = Config {
            path: dir.join("sub").join("audit.jsonl"),
            max_bytes: 1 << 20,
            keep: 3,
        };
        let a = Audit::start(c.clone()).unwrap();
        a.record(rec("r", 0));
        a.record(rec("r", 1));
        assert!(a.flush(Duration::from_secs(5)));
        fs::create_dir(dir.join("sub")).unwrap();
        a.record(rec("r", 2));
        assert!(a.flush(Duration::from_secs(5)));
        let entries = read(&c.path).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].record["event"], "audit_gap");
        assert_eq!(entries[0].record["lost"], 2);
        assert_eq!(entries[0].record["cause"], "write_failed");
        assert_eq!(entries[0].record["seq"], 1);
        assert_eq!(entries[0].record["prev"], GENESIS);
        assert_eq!(entries[1].record["i"], 2);
        assert!(verify(&c.path).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_oversize_record_is_replaced_by_a_note() {
        let dir = tmp("oversize");
        let c = cfg(&dir, 8 << 20, 3);
        let a = Audit::start(c.clone()).unwrap();
        let mut big = rec("big", 0);
        big.insert("blob".into(), "x".repeat(MAX_LINE).into());
        a.record(big);
        assert!(a.flush(Duration::from_secs(5)));
        let entries = read(&c.path).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].record["event"], "audit_oversize");
        assert_eq!(entries[0].record["dropped_event"], "big");
        assert!(verify(&c.path).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_ignores_other_names_and_a_missing_log_verifies_empty() {
        let dir = tmp("files");
        let path = dir.join("audit.jsonl");
        assert!(files(&path).is_empty());
        assert_eq!(verify(&path), Ok(Verified { files: 0, lines: 0 }));
        assert!(read(&path).unwrap().is_empty());
        for name in [
            "audit.x.jsonl",
            "audit.01.jsonl",
            "audit.0.jsonl",
            "audit.3.json",
            "audit.10.jsonl",
            "audit.2.jsonl",
        ] {
            fs::write(dir.join(name), "").unwrap();
        }
        assert_eq!(
            files(&path),
            [dir.join("audit.10.jsonl"), dir.join("audit.2.jsonl")]
        );
        assert_eq!(rotated(Path::new("/d/log"), 3), Path::new("/d/log.3"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_disabled_handle_records_nothing() {
        let a = Audit::disabled();
        a.record(rec("r", 0));
        assert!(a.flush(Duration::from_millis(1)));
    }

    #[test]
    fn long_lines_are_cut_when_read_back() {
        let mut data = vec![b'a'; MAX_LINE + 10];
        data.extend_from_slice(b"\nshort\nlast");
        let mut r = BufReader::with_capacity(4096, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), Some(true));
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), Some(false));
        assert_eq!(buf, b"short");
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), Some(false));
        assert_eq!(buf, b"last");
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), None);
    }
}
