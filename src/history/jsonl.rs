//! Bounded reading of an agent's JSONL session files, whatever their records say: the
//! lines of a file's head, a count of byte patterns over the whole file, the record at a
//! file offset, and lines from the end backwards ([`Backwards`], for the newest events).
//!
//! Memory stays bounded whatever a file holds: lines are read with a cap ([`MAX_LINE`],
//! longer ones skipped) or with their strings cut as they are read ([`Shrinker`]: head
//! lines, and long lines read backwards for history), scans go in fixed chunks
//! ([`SCAN_CHUNK`]) with SIMD substring search (`memchr::memmem`) rather than parsing. Plain functions on files; callers run
//! them on worker threads, never on the hub (a transcript can be a gigabyte).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::Path;

use memchr::memmem;
use serde_json::Value;

/// Longest session-file line read; longer ones are skipped.
pub(crate) const MAX_LINE: usize = 16 << 20;
/// Bytes read at a time by the whole-file scans.
pub(crate) const SCAN_CHUNK: usize = 1 << 20;

/// Strings of a head line are cut to this many bytes: the head gives a title, a cwd, a
/// branch, never a 10 MiB tool result.
const HEAD_FIELD: usize = 64 << 10;

/// Call `each` with every line (without its newline) in the first `limit` bytes of
/// `file`, read from where the file's cursor is, until it says `Break`. Each line's
/// strings are cut to [`HEAD_FIELD`] bytes as it is read ([`Shrinker`]), so a huge
/// record costs what is kept of it; a read error ends it like the end of the file does.
pub(crate) fn head_lines(file: &File, limit: u64, mut each: impl FnMut(&[u8]) -> ControlFlow<()>) {
    let mut reader = BufReader::with_capacity(64 * 1024, file.take(limit));
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut s = Shrinker::new(HEAD_FIELD);
        let mut any = false;
        loop {
            let chunk = match reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            s.feed(&chunk[..take], &mut line);
            reader.consume(if done { take + 1 } else { take });
            if done {
                break;
            }
        }
        if !any {
            return;
        }
        s.finish(&mut line);
        if each(&line).is_break() {
            break;
        }
    }
}

/// How many times any of `needles` occurs in the file at `path`, read in fixed chunks
/// (memory stays bounded whatever its size). Needles are at most 64 bytes.
pub(crate) fn count_in_file(path: &Path, needles: &[&[u8]]) -> u64 {
    count_in_file_from(path, 0, needles)
}

/// The file at `path`, opened, when it looks like the one that was `old_size` bytes
/// long, grown: longer now, and `old_size` was the end of a line. Otherwise (it shrank,
/// or was rewritten) it must be read whole.
pub(crate) fn grown_file(path: &Path, old_size: u64) -> Option<File> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path).ok()?;
    if old_size == 0 || file.metadata().ok()?.len() <= old_size {
        return None;
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, old_size - 1).ok()?;
    (last[0] == b'\n').then_some(file)
}

/// `before` plus what [`count_in_file`] finds in the bytes `path` gained past
/// `old_size`; `None` unless it is the same file grown ([`grown_file`]).
pub(crate) fn grown_count(
    path: &Path,
    old_size: u64,
    before: u64,
    needles: &[&[u8]],
) -> Option<u64> {
    grown_file(path, old_size)?;
    Some(before + count_in_file_from(path, old_size, needles))
}

/// [`count_in_file`] over the bytes from offset `from` on (what a file gained).
pub(crate) fn count_in_file_from(path: &Path, from: u64, needles: &[&[u8]]) -> u64 {
    let Ok(mut f) = File::open(path) else {
        return 0;
    };
    if f.seek(SeekFrom::Start(from)).is_err() {
        return 0;
    }
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

/// Parse the record whose line contains file offset `at` (none when that line is longer
/// than the 256 KiB window around `at`, or is not JSON).
pub(crate) fn record_at(mut file: &File, at: u64) -> Option<Value> {
    const WINDOW: u64 = 256 * 1024;
    let start = at.saturating_sub(WINDOW);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::new();
    file.take(2 * WINDOW).read_to_end(&mut buf).ok()?;
    let rel = (at - start) as usize;
    let line_start = memchr::memrchr(b'\n', buf.get(..rel)?).map_or(0, |i| i + 1);
    if line_start == 0 && start > 0 {
        return None; // the line is longer than the window
    }
    let line_end = memchr::memchr(b'\n', &buf[rel..]).map_or(buf.len(), |i| rel + i);
    serde_json::from_slice(&buf[line_start..line_end]).ok()
}

/// Lines of a file from its end, each at most [`MAX_LINE`] bytes (a longer one is
/// skipped and counted in `skipped`). Reads backwards in fixed chunks.
pub(crate) struct Backwards<'a> {
    file: &'a File,
    /// File offset where `buf` starts.
    pos: u64,
    /// Bytes read but not yet returned; may start in the middle of a line.
    buf: Vec<u8>,
    /// Lines skipped for being longer than [`MAX_LINE`].
    pub(crate) skipped: usize,
    /// Lines longer than a chunk come with their strings cut to this ([`Shrinker`]),
    /// read in pieces, never held whole.
    shrink: Option<usize>,
}

impl<'a> Backwards<'a> {
    /// The lines of the first `len` bytes of `file`, the last first.
    pub(crate) fn new(file: &'a File, len: u64) -> Backwards<'a> {
        Backwards {
            file,
            pos: len,
            buf: Vec::new(),
            skipped: 0,
            shrink: None,
        }
    }

    /// [`Backwards::new`], a line longer than a chunk read with its strings cut to
    /// about `max` bytes (as [`shrink_strings`] would), in pieces.
    pub(crate) fn shrinking(file: &'a File, len: u64, max: usize) -> Backwards<'a> {
        Backwards {
            shrink: Some(max),
            ..Backwards::new(file, len)
        }
    }

    /// The line before the last one returned (empty lines left out).
    pub(crate) fn next_line(&mut self) -> Option<Vec<u8>> {
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
    /// without holding it, then read it in one piece, or in pieces through a
    /// [`Shrinker`] when shrinking (or skip it when over the cap).
    fn long_line(&mut self) -> Option<Vec<u8>> {
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
        if let Some(max) = self.shrink {
            let mut s = Shrinker::new(max);
            let mut out = Vec::new();
            let mut at = start;
            while at < end {
                let n = (SCAN_CHUNK as u64).min(end - at) as usize;
                self.file.read_exact_at(&mut chunk[..n], at).ok()?;
                s.feed(&chunk[..n], &mut out);
                at += n as u64;
            }
            s.finish(&mut out);
            return Some(out);
        }
        let mut line = vec![0u8; len];
        self.file.read_exact_at(&mut line, start).ok()?;
        Some(line)
    }
}

/// Cut every JSON string literal in `line` to about `max` bytes, keeping the JSON valid
/// (escapes and UTF-8 characters are never split). A cut string keeps a few bytes more
/// than `max`, so a later cut to `max` (`detail::cut`) still sees it as too long and
/// flags it. This keeps a record with a 10 MiB tool result from costing 10 MiB more
/// when parsed. See [`Shrinker`] for the same over a line read in pieces.
pub(crate) fn shrink_strings(line: &mut Vec<u8>, max: usize) {
    let mut out = Vec::with_capacity(line.len().min(16 * max + 4096));
    let mut s = Shrinker::new(max);
    s.feed(line, &mut out);
    s.finish(&mut out);
    *line = out;
}

/// [`shrink_strings`] over a line that arrives in pieces: what it keeps of each string
/// is decided as the bytes go by, so a 10 MiB line costs its kept bytes, not 10 MiB. An
/// escape split between two pieces is held until it is whole.
pub(crate) struct Shrinker {
    /// Bytes kept of a string (`max` plus a few).
    keep: usize,
    in_string: bool,
    /// Bytes kept of the current string.
    len: usize,
    /// The rest of the current string is being left out.
    dropping: bool,
    /// The last unit kept was the first half of an escaped surrogate pair.
    high_surrogate: bool,
    /// An escape being read (`\"`, `\n`, `\u00e9`): its bytes so far, and how many it has.
    escape: [u8; 6],
    escape_len: usize,
    escape_width: usize,
}

impl Shrinker {
    pub(crate) fn new(max: usize) -> Shrinker {
        Shrinker {
            keep: max + 4,
            in_string: false,
            len: 0,
            dropping: false,
            high_surrogate: false,
            escape: [0; 6],
            escape_len: 0,
            escape_width: 0,
        }
    }

    /// The next piece of the line; what is kept of it goes to `out`.
    pub(crate) fn feed(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        for &b in piece {
            if self.escape_width > 0 {
                self.escape[self.escape_len] = b;
                self.escape_len += 1;
                if self.escape_len == 2 {
                    self.escape_width = if b == b'u' { 6 } else { 2 };
                }
                if self.escape_len == self.escape_width {
                    self.escape_done(out);
                }
                continue;
            }
            if !self.in_string {
                out.push(b);
                if b == b'"' {
                    self.in_string = true;
                    self.len = 0;
                    self.dropping = false;
                    self.high_surrogate = false;
                }
                continue;
            }
            match b {
                b'"' => {
                    out.push(b);
                    self.in_string = false;
                }
                b'\\' => {
                    self.escape[0] = b;
                    self.escape_len = 1;
                    self.escape_width = 2;
                }
                _ => self.unit(&[b], out),
            }
        }
    }

    /// The line is over (an escape cut off by its end is kept as far as it goes).
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.escape_width > 0 {
            self.escape_done(out);
        }
    }

    fn escape_done(&mut self, out: &mut Vec<u8>) {
        let escape = self.escape;
        let n = self.escape_len;
        self.escape_len = 0;
        self.escape_width = 0;
        self.unit(&escape[..n], out);
    }

    /// One character's bytes or one escape of a string: kept, or left out once the
    /// string has `keep` bytes (only where a character starts, and never between the two
    /// halves of an escaped surrogate pair).
    fn unit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let first = bytes[0];
        if !self.dropping && self.len >= self.keep && first & 0xC0 != 0x80 {
            self.dropping = true;
            if self.high_surrogate {
                out.truncate(out.len().saturating_sub(6));
            }
        }
        if self.dropping {
            return;
        }
        self.high_surrogate = bytes.len() == 6
            && matches!(
                bytes.get(2..4),
                Some([b'd' | b'D', b'8' | b'9' | b'a' | b'b' | b'A' | b'B'])
            );
        out.extend_from_slice(bytes);
        self.len += bytes.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn a_line_shrunk_in_pieces_is_the_line_shrunk_whole() {
        let text = format!(
            "{}é\\\"\\u00e9{}\\ud83d\\ude00{}",
            "a".repeat(10),
            "b".repeat(50),
            "c".repeat(30)
        );
        let v = json!({"a": text, "k": ["short", {"t": "é".repeat(40)}], "n": 5, "p": "\\ud83d\\ude00".repeat(9)});
        let raw = br#"{"s":"abcdefghijklmn\ud83d\ude00xyz","e":"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\n\"q\"","cut":"abc\u00"#;
        for line in [v.to_string().into_bytes(), raw.to_vec()] {
            for max in [3, 12, 15, 40, 1000] {
                let mut whole = line.clone();
                shrink_strings(&mut whole, max);
                if line.ends_with(b"}") {
                    serde_json::from_slice::<Value>(&whole).expect("valid JSON");
                }
                for piece in [1, 2, 3, 5, 7, 64] {
                    let mut s = Shrinker::new(max);
                    let mut out = Vec::new();
                    for c in line.chunks(piece) {
                        s.feed(c, &mut out);
                    }
                    s.finish(&mut out);
                    assert_eq!(out, whole, "max {max}, pieces of {piece}");
                }
            }
        }
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
        // Shrinking: the long line comes cut as shrink_strings cuts it, the rest as is.
        let record = json!({"type": "user", "content": [{"text": "é".repeat(SCAN_CHUNK), "n": 1}]})
            .to_string();
        std::fs::write(&p, format!("one\n{record}\n{{\"s\":\"short\"}}\n")).unwrap();
        let f = File::open(&p).unwrap();
        let mut b = Backwards::shrinking(&f, f.metadata().unwrap().len(), 100);
        let mut whole = record.clone().into_bytes();
        shrink_strings(&mut whole, 100);
        assert_eq!(b.next_line().unwrap(), br#"{"s":"short"}"#);
        assert_eq!(b.next_line().unwrap(), whole);
        assert_eq!(b.next_line().unwrap(), b"one");
        assert!(b.next_line().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
