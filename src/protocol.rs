//! The node's side of the relay protocol (`../shared/PROTOCOL.md`), below every layer
//! that speaks it: the browser's commands parsed into types at the edge
//! ([`commands`]), the sizes both sides keep to ([`limits`]), and the checks every layer
//! shares, such as what a session id may be.
//! It knows nothing of the layers above; no threads.

pub mod commands;
pub mod limits;

pub use commands::PERMISSION_MODES;

/// Whether `id` may name a session: it becomes part of file names (transcripts,
/// sidecars), so only letters, digits, `.`, `_` and `-`, at most 200 bytes, and never `.`
/// or `..`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_plain_file_names() {
        assert!(valid_id("3f2a-b_c.d"));
        assert!(!valid_id("../etc"));
        assert!(!valid_id(".."));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(""));
        assert!(!valid_id(&"x".repeat(201)));
    }
}
