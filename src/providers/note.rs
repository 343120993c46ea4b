//! The note that tells an agent where a turn's images and attachments were saved, and
//! how the user's own words are read back out of a prompt that carries it (history
//! titles and the prompt shown when a conversation is reopened). Plain functions, used by
//! the media worker (which writes the note) and every provider's history reader.

use std::path::PathBuf;

/// How the note begins; what follows is one `- <path> (<what>)` line per file and `]`.
const OPENING: &str = "[The user attached these files; they are saved on this machine:";

/// The note for `saved` files (empty when nothing was saved), to follow the user's text.
pub fn attachment_note(saved: &[(PathBuf, String)]) -> String {
    if saved.is_empty() {
        return String::new();
    }
    let mut s = String::from(OPENING);
    for (p, what) in saved {
        s.push_str(&format!("\n- {} ({what})", p.display()));
    }
    s.push(']');
    s
}

/// `prompt` with `note` appended: after a blank line when there is text, else alone
/// (no leading blank lines).
pub fn with_note(prompt: &str, note: &str) -> String {
    if note.is_empty() {
        return prompt.to_string();
    }
    if prompt.trim().is_empty() {
        return note.to_string();
    }
    format!("{prompt}\n\n{note}")
}

/// What the user wrote in `prompt`, without the attachment note; for a prompt that was
/// only the note, the names of the files it lists (`a.png, b.pdf`).
pub fn user_part(prompt: &str) -> String {
    let Some(at) = prompt.find(OPENING) else {
        return prompt.to_string();
    };
    let own = prompt[..at].trim_end();
    if !own.trim().is_empty() {
        return own.to_string();
    }
    let names: Vec<String> = prompt[at + OPENING.len()..]
        .lines()
        .filter_map(|l| l.strip_prefix("- "))
        .map(|l| {
            // `<path> (<what>)`: the path's last component.
            let path = l.rfind(" (").map_or(l, |i| &l[..i]);
            path.rsplit('/').next().unwrap_or(path).to_string()
        })
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        prompt.trim().to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_words_or_the_file_names() {
        let saved = vec![
            (
                PathBuf::from("/w/.tmp/images/s-1/image-1.png"),
                "image/png".to_string(),
            ),
            (
                PathBuf::from("/w/.tmp/attachments/s-1/report (v2).pdf"),
                "application/pdf, 3 bytes".to_string(),
            ),
        ];
        let note = attachment_note(&saved);
        let only = with_note("", &note);
        assert!(only.starts_with("[The user attached"), "{only:?}");
        assert_eq!(user_part(&only), "image-1.png, report (v2).pdf");
        let both = with_note("look at this", &note);
        assert!(both.starts_with("look at this\n\n["));
        assert_eq!(user_part(&both), "look at this");
        assert_eq!(user_part("plain words"), "plain words");
        assert_eq!(with_note("x", ""), "x");
        assert_eq!(attachment_note(&[]), "");
    }
}
