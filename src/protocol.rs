//! The node's side of the relay protocol (`../shared/PROTOCOL.md`), below every layer
//! that speaks it: the browser's commands parsed into types at the edge
//! ([`commands`]), the sizes both sides keep to ([`limits`]), and the checks every layer
//! shares, such as what a session id may be.
//! It knows nothing of the layers above; no threads.

pub mod commands;
pub mod events;
pub mod limits;

pub use commands::PERMISSION_MODES;

/// A session id that is safe as a file name ([`valid_id`]), parsed once where it comes
/// in, so the code that puts it into a path needs no check of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    pub fn parse(id: &str) -> Option<SessionId> {
        valid_id(id).then(|| SessionId(id.to_string()))
    }

    pub fn into_string(self) -> String {
        self.0
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for SessionId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

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
        assert_eq!(
            SessionId::parse("abc-1")
                .map(SessionId::into_string)
                .as_deref(),
            Some("abc-1")
        );
        assert!(SessionId::parse("../x").is_none());
    }
}
