//! Claude Code transcript history (`history.list`, `history.get`, `history.mark_read`):
//! the `.jsonl` files under `<claude dir>/projects/<cwd slug>/<session id>.jsonl`, where
//! the claude dir is `$CLAUDE_CONFIG_DIR` or `~/.claude`.
//!
//! Runs on worker threads (see [`crate::hub::worker`]), never on the hub: a transcript can be
//! a gigabyte. What it costs, and why:
//! - **Listing** reads a transcript's head (title, cwd, branch) and scans the rest with a
//!   SIMD substring search (`memchr::memmem`) for message and title records, without
//!   parsing it; summaries are cached by (path, size, mtime), so a second listing reads
//!   nothing but directory entries.
//! - **Detail** reads the transcript backwards from its end and keeps the newest events
//!   that fit [`DETAIL_BUDGET`] bytes (and at most [`MAX_EVENTS`]), so a 200 MiB session
//!   opens in a fraction of a second and its answer stays well under the relay's frame
//!   limit; `truncated` says when older events were left out or a field was cut.
//!
//! Memory stays bounded whatever the files hold: lines are read with a cap ([`MAX_LINE`],
//! longer ones skipped), each event's text is cut to [`MAX_FIELD`], buffers are fixed.
//! A broken line is skipped.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use memchr::memmem;
use serde_json::{Value, json};

use crate::sys::child::{LineRead, read_bounded_line};

/// Longest transcript line read; longer ones are skipped.
pub const MAX_LINE: usize = 16 << 20;
/// Events kept for `history.detail` (the newest).
pub const MAX_EVENTS: usize = 4000;
/// Bytes of events (as JSON) in one `history.detail`: the newest that fit.
pub const DETAIL_BUDGET: usize = 4 << 20;
/// Longest text kept per event field (longer is cut and flagged).
pub const MAX_FIELD: usize = 64 * 1024;
/// How far into a transcript the listing looks for the first prompt, cwd and branch.
const HEAD_BYTES: u64 = 4 << 20;
const TITLE_CHARS: usize = 80;
const CACHE_ENTRIES: usize = 8192;
const SCAN_CHUNK: usize = 1 << 20;
/// The title shown for a transcript without a single prompt.
pub const NO_PROMPT: &str = "(no prompt)";

/// What the listing shows of one transcript.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub title: String,
    pub cwd: Option<String>,
    pub git_branch: Option<String>,
    pub message_count: u64,
}

/// One transcript file found by the listing.
#[derive(Debug, Clone)]
pub struct Found {
    pub mtime: u64,
    pub path: PathBuf,
    pub id: String,
    pub size: u64,
}

pub fn mtime_ms(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Every transcript under `<claude_dir>/projects`.
pub fn transcripts(claude_dir: &Path) -> Vec<Found> {
    let mut files = Vec::new();
    let Ok(projects) = std::fs::read_dir(claude_dir.join("projects")) else {
        return files;
    };
    for project in projects.flatten() {
        let Ok(entries) = std::fs::read_dir(project.path()) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".jsonl")) else {
                continue;
            };
            if !crate::protocol::valid_id(id) {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            files.push(Found {
                mtime: mtime_ms(&meta),
                path: e.path(),
                id: id.to_string(),
                size: meta.len(),
            });
        }
    }
    files
}

/// The last-modified time (ms) of session `id`'s transcript, for a mark without a time.
pub fn updated_at(claude_dir: Option<&Path>, id: &str) -> Option<u64> {
    let path = find_transcript(claude_dir?, id)?;
    std::fs::metadata(path).ok().map(|m| mtime_ms(&m))
}

/// How many times any of `needles` occurs in the file at `path`, read in fixed chunks
/// (memory stays bounded whatever its size). Needles are at most 64 bytes.
pub fn count_in_file(path: &Path, needles: &[&[u8]]) -> u64 {
    let Ok(mut f) = File::open(path) else {
        return 0;
    };
    let finders: Vec<memmem::Finder> = needles.iter().map(memmem::Finder::new).collect();
    let longest = needles.iter().map(|n| n.len()).max().unwrap_or(1);
    let mut buf = vec![0u8; SCAN_CHUNK + 64];
    let (mut kept, mut total) = (0usize, 0u64);
    loop {
        let n = match f.read(&mut buf[kept..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let filled = kept + n;
        for finder in &finders {
            // A match that ends in the carried bytes was counted in the last round.
            total += finder
                .find_iter(&buf[..filled])
                .filter(|&p| p + finder.needle().len() > kept)
                .count() as u64;
        }
        let carry = (longest - 1).min(filled);
        buf.copy_within(filled - carry..filled, 0);
        kept = carry;
    }
    total
}

/// `summarize(path)`, cached by (path, size, mtime) across listings.
pub fn summary_cached(
    path: &Path,
    size: u64,
    mtime: u64,
    summarize: fn(&Path) -> Summary,
) -> Summary {
    type Cache = HashMap<PathBuf, (u64, u64, Summary)>;
    static CACHE: Mutex<Option<Cache>> = Mutex::new(None);
    if let Ok(mut c) = CACHE.lock()
        && let Some((sz, mt, s)) = c.get_or_insert_with(HashMap::new).get(path)
        && *sz == size
        && *mt == mtime
    {
        return s.clone();
    }
    let s = summarize(path);
    if let Ok(mut c) = CACHE.lock() {
        let map = c.get_or_insert_with(HashMap::new);
        if map.len() >= CACHE_ENTRIES {
            map.clear();
        }
        map.insert(path.to_path_buf(), (size, mtime, s.clone()));
    }
    s
}

/// Read a transcript once: cwd, branch and the first real prompt from its head, then a
/// scan of the whole file (no parsing) that counts user/assistant records and finds the
/// last title record. The title is Claude Code's own (a `custom-title` the user set,
/// else an `ai-title`), else the first prompt, else [`NO_PROMPT`].
pub fn summarize(path: &Path) -> Summary {
    let mut s = Summary::default();
    let Ok(file) = File::open(path) else {
        s.title = NO_PROMPT.to_string();
        return s;
    };
    let (mut prompt, mut slash) = (None, None);
    {
        let mut reader = BufReader::with_capacity(64 * 1024, (&file).take(HEAD_BYTES));
        let mut line = Vec::new();
        loop {
            line.clear();
            match read_bounded_line(&mut reader, &mut line, MAX_LINE) {
                Ok(LineRead::Eof) | Err(_) => break,
                Ok(LineRead::TooLong(_)) => continue,
                Ok(LineRead::Line) => {}
            }
            if !is_message_line(&line) {
                continue;
            }
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
            if kind != "user" && kind != "assistant" {
                continue;
            }
            if s.cwd.is_none() {
                s.cwd = v.get("cwd").and_then(Value::as_str).map(str::to_string);
            }
            if s.git_branch.is_none() {
                s.git_branch = v
                    .get("gitBranch")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            if prompt.is_none() && kind == "user" {
                prompt = prompt_text(&v);
                if slash.is_none() {
                    slash = slash_text(&v);
                }
            }
            if prompt.is_some() && s.cwd.is_some() && s.git_branch.is_some() {
                break;
            }
        }
    }
    let scan = scan(&file);
    s.message_count = scan.messages;
    // The newest title record that says something: Claude Code writes empty ones while
    // it refines a title, and they must not wipe it.
    let newest = |offsets: &[u64], key: &str| {
        offsets.iter().rev().find_map(|&at| {
            let v = record_at(&file, at)?;
            let t = title_of(v.get(key)?.as_str()?);
            (!t.is_empty()).then_some(t)
        })
    };
    let own_title =
        newest(&scan.custom_titles, "customTitle").or_else(|| newest(&scan.ai_titles, "aiTitle"));
    s.title = own_title
        .or_else(|| prompt.or(slash).map(|p| title_of(&p)))
        .unwrap_or_else(|| NO_PROMPT.to_string());
    s
}

/// What one pass over a whole transcript finds without parsing it.
#[derive(Debug, Default)]
struct Scan {
    messages: u64,
    /// Offsets of the newest title records (at most [`TITLE_RECORDS`] of each kind).
    ai_titles: Vec<u64>,
    custom_titles: Vec<u64>,
}

/// Title records remembered per kind by the scan (the newest).
const TITLE_RECORDS: usize = 16;

/// Remember `at`, forgetting the oldest beyond [`TITLE_RECORDS`].
fn keep_newest(offsets: &mut Vec<u64>, at: u64) {
    if offsets.len() == TITLE_RECORDS {
        offsets.remove(0);
    }
    offsets.push(at);
}

/// Count `"type":"user"` / `"type":"assistant"` and find the last title records. JSON
/// escapes every quote inside a string, so these byte patterns only match real keys.
fn scan(mut file: &File) -> Scan {
    const KEY: &[u8] = b"\"type\":\"";
    /// Bytes after the key needed to tell the record type (`custom-title"` is 13).
    const LOOK: usize = 16;
    const NEED: usize = KEY.len() + LOOK;
    let finder = memmem::Finder::new(KEY);
    let mut out = Scan::default();
    if file.seek(SeekFrom::Start(0)).is_err() {
        return out;
    }
    let mut buf = vec![0u8; SCAN_CHUNK + NEED];
    let mut kept = 0; // bytes carried over from the previous read
    let mut base: u64 = 0; // file offset of buf[0]
    loop {
        let n = match file.read(&mut buf[kept..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        let eof = n == 0;
        let filled = kept + n;
        let data = &buf[..filled];
        for pos in finder.find_iter(data) {
            if pos + NEED <= kept {
                continue; // seen whole in the previous read
            }
            if pos + NEED > filled && !eof {
                continue; // cut off: the next read sees it whole
            }
            let value = &data[pos + KEY.len()..];
            if value.starts_with(b"user\"") || value.starts_with(b"assistant\"") {
                out.messages += 1;
            } else if value.starts_with(b"ai-title\"") {
                keep_newest(&mut out.ai_titles, base + pos as u64);
            } else if value.starts_with(b"custom-title\"") {
                keep_newest(&mut out.custom_titles, base + pos as u64);
            }
        }
        if eof {
            break;
        }
        let carry = NEED.min(filled);
        buf.copy_within(filled - carry..filled, 0);
        base += (filled - carry) as u64;
        kept = carry;
    }
    out
}

/// Parse the record whose line contains file offset `at`.
fn record_at(mut file: &File, at: u64) -> Option<Value> {
    const WINDOW: u64 = 256 * 1024;
    let start = at.saturating_sub(WINDOW);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::new();
    file.take(2 * WINDOW).read_to_end(&mut buf).ok()?;
    let rel = (at - start) as usize;
    let line_start = memchr::memrchr(b'\n', buf.get(..rel)?).map_or(0, |i| i + 1);
    if line_start == 0 && start > 0 {
        return None; // the line is longer than the window: not a title record
    }
    let line_end = memchr::memchr(b'\n', &buf[rel..]).map_or(buf.len(), |i| rel + i);
    serde_json::from_slice(&buf[line_start..line_end]).ok()
}

/// Does the line hold `"type":"user"` or `"type":"assistant"` (a space after the colon
/// allowed)? One pass over the line, without parsing it.
fn is_message_line(line: &[u8]) -> bool {
    const KEY: &[u8] = b"\"type\":";
    let mut from = 0;
    while let Some(pos) = memmem::find(&line[from..], KEY) {
        let mut value = &line[from + pos + KEY.len()..];
        if let Some(rest) = value.strip_prefix(b" ") {
            value = rest;
        }
        if value.starts_with(b"\"user\"") || value.starts_with(b"\"assistant\"") {
            return true;
        }
        from += pos + KEY.len();
    }
    false
}

/// The user's own prompt in a record, if it is one (not a tool result, not injected).
fn prompt_text(v: &Value) -> Option<String> {
    if v.get("isMeta").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let content = v.pointer("/message/content")?;
    let text = match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => {
            if blocks.iter().any(|b| b["type"] == "tool_result") {
                return None;
            }
            blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => return None,
    };
    if is_injected(&text) {
        return None;
    }
    let stripped = strip_tags(&text);
    (!stripped.trim().is_empty()).then_some(text)
}

/// The slash command a user record invokes, as typed (`/name args`), if it is one.
fn slash_text(v: &Value) -> Option<String> {
    let text = match v.pointer("/message/content")? {
        Value::String(s) => s.as_str(),
        Value::Array(blocks) => blocks.iter().find(|b| b["type"] == "text")?["text"].as_str()?,
        _ => return None,
    };
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let end = text[start..].find(close)? + start;
        Some(text[start..end].trim())
    };
    let name = between("<command-name>", "</command-name>")?;
    if !name.starts_with('/') || name.len() < 2 {
        return None;
    }
    match between("<command-args>", "</command-args>") {
        Some(args) if !args.is_empty() => Some(format!("{name} {args}")),
        _ => Some(name.to_string()),
    }
}

/// Context the CLI or an IDE adds to the conversation, not typed by the user.
pub fn is_injected(text: &str) -> bool {
    let t = text.trim_start();
    const MARKERS: &[&str] = &[
        "<system-reminder>",
        "<command-name>",
        "<command-message>",
        "<command-args>",
        "<local-command-stdout>",
        "<local-command-stderr>",
        "<local-command-caveat>",
        "<ide_opened_file>",
        "<ide_selection>",
        "<ide_diagnostics>",
        "<user-prompt-submit-hook>",
        "Caveat: The messages below were generated",
        "[Request interrupted",
    ];
    MARKERS.iter().any(|m| t.starts_with(m))
}

/// Remove `<tag>` markers (keeping the text between them).
pub fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        match after.find('>') {
            Some(end)
                if end > 1
                    && after[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
                    && after[1..end]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_/ =\"'.:".contains(c)) =>
            {
                rest = &after[end + 1..];
            }
            _ => {
                out.push('<');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The user's own words (no attachment note), tags stripped, whitespace folded, at most
/// 80 characters.
pub fn title_of(text: &str) -> String {
    let own = crate::providers::note::user_part(text);
    let folded = strip_tags(&own)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if folded.chars().count() <= TITLE_CHARS {
        folded
    } else {
        let mut t: String = folded.chars().take(TITLE_CHARS - 1).collect();
        t.push('…');
        t
    }
}

/// Find `<session>.jsonl` in any project dir.
fn find_transcript(claude_dir: &Path, session: &str) -> Option<PathBuf> {
    let projects = std::fs::read_dir(claude_dir.join("projects")).ok()?;
    projects
        .flatten()
        .map(|p| p.path().join(format!("{session}.jsonl")))
        .find(|p| p.is_file())
}

pub fn cut(s: &str, truncated: &mut bool) -> String {
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
pub fn parse_ts(ts: &str) -> Option<u64> {
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

/// Lines of a file from its end, each at most [`MAX_LINE`] bytes (a longer one is
/// skipped and counted in `skipped`). Reads backwards in fixed chunks.
struct Backwards<'a> {
    file: &'a File,
    /// File offset where `buf` starts.
    pos: u64,
    /// Bytes read but not yet returned; may start in the middle of a line.
    buf: Vec<u8>,
    /// Lines skipped for being longer than [`MAX_LINE`].
    skipped: usize,
}

impl<'a> Backwards<'a> {
    fn new(file: &'a File, len: u64) -> Backwards<'a> {
        Backwards {
            file,
            pos: len,
            buf: Vec::new(),
            skipped: 0,
        }
    }

    fn next_line(&mut self) -> Option<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        loop {
            if let Some(i) = memchr::memrchr(b'\n', &self.buf) {
                let line = self.buf.split_off(i + 1);
                self.buf.truncate(i);
                if !line.is_empty() {
                    return Some(line);
                }
                continue;
            }
            if self.pos == 0 {
                return (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf));
            }
            if self.buf.len() >= SCAN_CHUNK {
                return self.long_line();
            }
            let n = (SCAN_CHUNK as u64).min(self.pos) as usize;
            let start = self.pos - n as u64;
            let mut chunk = vec![0u8; n + self.buf.len()];
            if self.file.read_exact_at(&mut chunk[..n], start).is_err() {
                return None;
            }
            chunk[n..].copy_from_slice(&self.buf);
            self.pos = start;
            self.buf = chunk;
        }
    }

    /// The line that ends with `buf` is longer than a chunk: find where it starts
    /// without holding it, then read it in one piece (or skip it when over the cap).
    fn long_line(&mut self) -> Option<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let end = self.pos + self.buf.len() as u64;
        self.buf = Vec::new();
        let mut chunk = vec![0u8; SCAN_CHUNK];
        let mut start = 0;
        while self.pos > 0 {
            let n = (SCAN_CHUNK as u64).min(self.pos) as usize;
            let from = self.pos - n as u64;
            if self.file.read_exact_at(&mut chunk[..n], from).is_err() {
                return None;
            }
            self.pos = from;
            if let Some(i) = memchr::memrchr(b'\n', &chunk[..n]) {
                start = from + i as u64 + 1;
                self.pos = from + i as u64; // the newline stays out of the next line
                break;
            }
        }
        let len = (end - start) as usize;
        if len > MAX_LINE {
            self.skipped += 1;
            return self.next_line();
        }
        let mut line = vec![0u8; len];
        self.file.read_exact_at(&mut line, start).ok()?;
        Some(line)
    }
}

/// Cut every JSON string literal in `line` to about `max` bytes, in place, keeping the
/// JSON valid (escapes and UTF-8 characters are never split). A cut string keeps a few
/// bytes more than `max`, so the later [`cut`] still sees it as too long and flags it.
/// This keeps a record with a 10 MiB tool result from costing 10 MiB more when parsed.
fn shrink_strings(line: &mut Vec<u8>, max: usize) {
    let keep = max + 4;
    let (mut r, mut w) = (0, 0);
    let n = line.len();
    while r < n {
        let b = line[r];
        line[w] = b;
        r += 1;
        w += 1;
        if b != b'"' {
            continue;
        }
        // Inside a string: copy up to `keep` bytes, then drop the rest up to the quote.
        let (mut len, mut dropping, mut high_surrogate) = (0, false, false);
        while r < n {
            let c = line[r];
            if c == b'"' {
                break;
            }
            let width = if c == b'\\' {
                if line.get(r + 1) == Some(&b'u') { 6 } else { 2 }
            } else {
                1
            };
            let width = width.min(n - r);
            // Stop copying only where a character starts, and never between the two
            // halves of an escaped surrogate pair.
            if !dropping && len >= keep && c & 0xC0 != 0x80 {
                dropping = true;
                if high_surrogate {
                    w -= 6;
                }
            }
            if dropping {
                r += width;
                continue;
            }
            high_surrogate = width == 6
                && matches!(
                    line.get(r + 2..r + 4),
                    Some([b'd' | b'D', b'8' | b'9' | b'a' | b'b' | b'A' | b'B'])
                );
            line.copy_within(r..r + width, w);
            r += width;
            w += width;
            len += width;
        }
        if r < n {
            line[w] = b'"';
            r += 1;
            w += 1;
        }
    }
    line.truncate(w);
}

/// Why `history.get` has no answer; said in a `session.error`.
#[derive(Debug, PartialEq)]
pub enum DetailError {
    InvalidId,
    NotFound,
    Unreadable(String),
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
        }
    }
}

/// The events one transcript record shows, in order.
fn record_events(v: &Value, truncated: &mut bool) -> Vec<Value> {
    let mut events = Vec::new();
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    let ts = v
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(parse_ts);
    let mut push = |mut e: Value| {
        e["ts"] = json!(ts);
        events.push(e);
    };
    if kind == "user" {
        if let Some(p) = prompt_text(v).or_else(|| slash_text(v)) {
            let own = crate::providers::note::user_part(&p);
            push(json!({"kind": "prompt", "text": cut(own.trim(), truncated)}));
        } else if let Some(blocks) = v.pointer("/message/content").and_then(Value::as_array) {
            for b in blocks.iter().filter(|b| b["type"] == "tool_result") {
                // As live: a string, with no base64 of images or documents.
                let content = crate::providers::claude::tool_result_content(b.get("content"));
                push(
                    json!({"kind": "tool_result", "tool_use_id": b["tool_use_id"],
                            "content": cut(&content, truncated),
                            "is_error": b["is_error"].as_bool().unwrap_or(false)}),
                );
            }
        }
    } else if kind == "assistant"
        && let Some(blocks) = v.pointer("/message/content").and_then(Value::as_array)
    {
        for b in blocks {
            match b["type"].as_str() {
                Some("text") => {
                    let text = cut(b["text"].as_str().unwrap_or(""), truncated);
                    push(json!({"kind": "text", "text": text}));
                }
                Some("thinking") => {
                    let text = cut(b["thinking"].as_str().unwrap_or(""), truncated);
                    push(json!({"kind": "thinking", "text": text}));
                }
                Some("tool_use") => {
                    let input = b.get("input").cloned().unwrap_or(Value::Null);
                    let input = if input.to_string().len() > MAX_FIELD {
                        *truncated = true;
                        json!({"truncated": true})
                    } else {
                        input
                    };
                    push(
                        json!({"kind": "tool_use", "tool": b["name"], "tool_use_id": b["id"], "input": input}),
                    );
                }
                _ => {}
            }
        }
    }
    events
}

/// The newest events of a transcript file that fit [`DETAIL_BUDGET`] (and at most
/// [`MAX_EVENTS`]), oldest first, read backwards: `relevant` picks the lines worth
/// parsing, `per_record` turns one record into its events (setting its flag when it cut
/// a field). True when older events were left out or something was cut.
pub fn newest_events(
    file: &File,
    len: u64,
    relevant: impl Fn(&[u8]) -> bool,
    mut per_record: impl FnMut(&Value, &mut bool) -> Vec<Value>,
) -> (Vec<Value>, bool) {
    let mut lines = Backwards::new(file, len);
    // Newest record first; each record's events in their own order.
    let mut records: Vec<Vec<Value>> = Vec::new();
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
        let mut events = per_record(&v, &mut cut_here);
        let size: usize = events.iter().map(|e| e.to_string().len() + 1).sum();
        if count + events.len() > MAX_EVENTS || bytes + size > DETAIL_BUDGET {
            // Keep the newest events of this record that still fit, then stop.
            let mut kept = Vec::new();
            while let Some(e) = events.pop() {
                let n = e.to_string().len() + 1;
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

/// `history.get`: the newest events of one transcript that fit [`DETAIL_BUDGET`], plus
/// the saved launch settings (sidecar) and the model the transcript records.
pub fn detail(
    claude_dir: Option<&Path>,
    config_dir: &Path,
    session: &str,
) -> Result<Value, DetailError> {
    if !crate::protocol::valid_id(session) {
        return Err(DetailError::InvalidId);
    }
    let path = claude_dir
        .and_then(|d| find_transcript(d, session))
        .ok_or(DetailError::NotFound)?;
    let file = File::open(&path).map_err(|e| DetailError::Unreadable(e.to_string()))?;
    let meta = file
        .metadata()
        .map_err(|e| DetailError::Unreadable(e.to_string()))?;
    let summary = summary_cached(&path, meta.len(), mtime_ms(&meta), summarize);
    let mut resolved_model: Option<String> = None;
    let mut branch: Option<String> = None;
    let (events, truncated) = newest_events(&file, meta.len(), is_message_line, |v, cut| {
        if resolved_model.is_none()
            && v["type"] == "assistant"
            && let Some(m) = v.pointer("/message/model").and_then(Value::as_str)
            && m != "<synthetic>"
        {
            resolved_model = Some(m.to_string());
        }
        if branch.is_none() {
            branch = v
                .get("gitBranch")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        record_events(v, cut)
    });
    let mut summary = summary;
    summary.git_branch = branch.or(summary.git_branch);
    Ok(detail_reply(
        "claude",
        session,
        config_dir,
        summary,
        resolved_model,
        events,
        truncated,
    ))
}

/// The `history.detail` every provider answers: what its files say, plus the saved
/// launch settings (sidecar): `model` is only the selector the user chose (`""` for none),
/// `resolved_model` the model the agent's own files name.
pub fn detail_reply(
    provider: &str,
    session: &str,
    config_dir: &Path,
    summary: Summary,
    resolved_model: Option<String>,
    events: Vec<Value>,
    truncated: bool,
) -> Value {
    let sidecar = crate::history::sidecar::load(config_dir, session);
    let pick = |k: &str| {
        sidecar
            .as_ref()
            .and_then(|s| s.get(k))
            .cloned()
            .filter(|v| !v.is_null())
    };
    json!({
        "event": "history.detail",
        "provider": provider,
        "session_id": session,
        "title": summary.title,
        "cwd": summary.cwd.map(Value::String).or_else(|| pick("cwd")),
        "git_branch": summary.git_branch,
        "model": pick("model").unwrap_or_else(|| json!("")),
        "resolved_model": resolved_model.map(Value::String).or_else(|| pick("resolved_model")),
        "permission_mode": pick("permission_mode").unwrap_or_else(|| json!("default")),
        "effort": pick("effort"),
        "events": events,
        "truncated": truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_and_tags() {
        assert_eq!(title_of("  <b>Fix</b>   the\n\nbug  "), "Fix the bug");
        assert_eq!(title_of("a < b and c > d"), "a < b and c > d");
        let long = "word ".repeat(40);
        let t = title_of(&long);
        assert_eq!(t.chars().count(), 80);
        assert!(t.ends_with('…'));
        assert!(is_injected("<system-reminder>x</system-reminder>"));
        assert!(is_injected("<command-name>/clear</command-name>"));
        assert!(!is_injected("please <b>fix</b>"));
    }

    #[test]
    fn long_strings_shrink_to_valid_json() {
        let text = format!("{}é\\\"\\u00e9{}", "a".repeat(10), "b".repeat(50));
        // An escaped surrogate pair right at the cut is dropped whole.
        let mut pair = br#"{"s":"abcdefghijklmn\ud83d\ude00xyz"}"#.to_vec();
        shrink_strings(&mut pair, 12);
        let back: Value = serde_json::from_slice(&pair).expect("no lone surrogate");
        assert_eq!(back["s"], "abcdefghijklmn");
        let v = json!({"a": text, "k": ["short", {"t": "é".repeat(40)}], "n": 5});
        let mut line = v.to_string().into_bytes();
        shrink_strings(&mut line, 12);
        let back: Value = serde_json::from_slice(&line)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&line)));
        assert_eq!(back["n"], 5);
        assert_eq!(back["k"][0], "short");
        let a = back["a"].as_str().unwrap();
        assert!(a.starts_with("aaaaaaaaaaé") && a.len() < 24, "{a}");
        assert!(back["k"][1]["t"].as_str().unwrap().len() <= 18);
        // Nothing to cut: unchanged.
        let mut same = v.to_string().into_bytes();
        shrink_strings(&mut same, 1000);
        assert_eq!(same, v.to_string().into_bytes());
    }

    #[test]
    fn counting_across_chunks() {
        let dir = std::env::temp_dir().join(format!("cba-count-{}", crate::sys::ids::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        // Put a needle across every chunk boundary region.
        let mut text = String::new();
        let mut expected = 0;
        while text.len() < SCAN_CHUNK * 3 {
            text.push_str(&"x".repeat(SCAN_CHUNK - 7));
            text.push_str("<needle>");
            expected += 1;
        }
        std::fs::write(&p, &text).unwrap();
        assert_eq!(count_in_file(&p, &[b"<needle>".as_slice()]), expected);
        assert_eq!(count_in_file(&p, &[b"<none>".as_slice()]), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn backwards_lines() {
        let dir = std::env::temp_dir().join(format!("cba-back-{}", crate::sys::ids::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.jsonl");
        let long = "x".repeat(SCAN_CHUNK * 2 + 17);
        std::fs::write(&p, format!("one\n\n{long}\ntwo\nthree")).unwrap();
        let f = File::open(&p).unwrap();
        let mut b = Backwards::new(&f, f.metadata().unwrap().len());
        let mut got = Vec::new();
        while let Some(l) = b.next_line() {
            got.push(String::from_utf8(l).unwrap());
        }
        assert_eq!(got, ["three", "two", long.as_str(), "one"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn message_lines() {
        assert!(is_message_line(
            br#"{"uuid":"x","type":"user","message":{}}"#
        ));
        assert!(is_message_line(br#"{"type": "assistant"}"#));
        assert!(!is_message_line(
            br#"{"type":"queue-operation","role":"user"}"#
        ));
        assert!(!is_message_line(
            br#"{"type":"attachment","content":"\"type\":\"user\""}"#
        ));
        assert!(!is_message_line(br#"{"type":  "user"}"#));
    }

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
