//! Where in a configuration file's text something is: the line of a byte offset and
//! the key whose value it falls in, so errors in `channels.toml` and `policy.toml` name
//! the line at fault. Plain functions; no threads.

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
