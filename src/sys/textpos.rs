//! Where in a configuration file's text something is: the line of a byte offset and
//! the key whose value it falls in, so errors in `channels.toml` and `policy.toml` name
//! the line at fault ([`LineError`]); and such a file read whole, within a bound.
//! Plain functions; no threads.

use std::path::Path;

/// A problem in a configuration file, naming its line (0: the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The file's name as people know it (`channels.toml`).
    pub file: &'static str,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{} line {}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for LineError {}

/// Open the configuration file at `path`: `Ok(None)` when there is none.
pub fn open(path: &Path, name: &'static str) -> Result<Option<std::fs::File>, LineError> {
    match std::fs::File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(cannot_read(path, name, &e)),
    }
}

/// The text of an opened configuration file, refused when it is over `max` bytes (it
/// is a page of settings, never read past that).
pub fn read_text(
    file: std::fs::File,
    path: &Path,
    name: &'static str,
    max: u64,
) -> Result<String, LineError> {
    use std::io::Read;
    let mut text = String::new();
    file.take(max + 1)
        .read_to_string(&mut text)
        .map_err(|e| cannot_read(path, name, &e))?;
    if text.len() as u64 > max {
        return Err(LineError {
            file: name,
            line: 0,
            message: format!("{} is over {max} bytes", path.display()),
        });
    }
    Ok(text)
}

fn cannot_read(path: &Path, name: &'static str, e: &std::io::Error) -> LineError {
    LineError {
        file: name,
        line: 0,
        message: format!("cannot read {}: {e}", path.display()),
    }
}

/// The line (from 1) of byte `offset`; an error at the very end (an array or string
/// left open) names the last line that has something on it.
pub fn line_at(text: &str, offset: usize) -> usize {
    let end = text.trim_end().len();
    let at = if offset >= end {
        end.saturating_sub(1)
    } else {
        offset
    };
    1 + text.as_bytes()[..at]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// The bare key of `key = value` when byte `offset` is in its value on the same line.
pub fn key_before(text: &str, offset: usize) -> Option<&str> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let (key, _) = text[start..offset].split_once('=')?;
    let key = key.trim();
    (!key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)))
    .then_some(key)
}
