//! Reply streaming: a turn's reply is one message, created with the first text and
//! edited about once a second as more arrives (plain text, so Telegram cannot reject it
//! as markup), split at 4096 UTF-16 units; a typing indicator is repeated while the turn
//! works; tool calls show as short lines. Runs on the hub thread, like all of
//! [`super`]; the bots' own threads are in [`crate::channels::runner`].

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Channels, Chat};
use crate::channels::runner::{Call, Tag};

/// Telegram's limit on one message, in UTF-16 code units.
pub(super) const MAX_MESSAGE: usize = 4096;
/// How often a streamed reply is edited at most.
const EDIT_EVERY: Duration = Duration::from_millis(1000);
/// How often the typing indicator is renewed (Telegram shows it for 5 s).
pub(super) const TYPING_EVERY: Duration = Duration::from_secs(4);
/// Tries at creating a reply message before its text is given up.
pub(super) const CREATE_TRIES: u32 = 3;
/// The most of one turn's reply a chat gets (about 16 full messages); the rest is cut
/// with a note (the browser has it all). Also bounds what waits for a slow Bot API.
const MAX_REPLY: usize = 64 << 10;
const CUT_NOTE: &str = "\n… (the rest of this reply is too long for the chat)";

/// One turn's reply: the message being edited and the text it should show.
pub(super) struct Reply {
    /// Our number for this reply (matches the answer that gives the message id).
    turn: u64,
    message_id: Option<i64>,
    /// A `sendMessage` for it is on its way.
    waiting: bool,
    failures: u32,
    /// Text of the current message (earlier parts went out as full messages).
    text: String,
    /// Length of `text` the message shows.
    shown: usize,
    last_edit: Instant,
    /// Bytes of this turn's reply taken so far (at most [`MAX_REPLY`]).
    taken: usize,
}

impl Reply {
    fn new(turn: u64) -> Reply {
        Reply {
            turn,
            message_id: None,
            waiting: false,
            failures: 0,
            text: String::new(),
            shown: 0,
            last_edit: Instant::now(),
            taken: 0,
        }
    }

    /// Add streamed text, up to [`MAX_REPLY`] for the turn.
    fn push(&mut self, text: &str) {
        if self.taken >= MAX_REPLY {
            return;
        }
        let room = MAX_REPLY - self.taken;
        if text.len() <= room {
            self.text.push_str(text);
            self.taken += text.len();
            return;
        }
        let mut cut = room;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.text.push_str(&text[..cut]);
        self.text.push_str(CUT_NOTE);
        self.taken = MAX_REPLY;
    }

    /// Text not shown yet (whitespace alone is not worth a message or an edit).
    fn unshown(&self) -> bool {
        !self.text[self.shown.min(self.text.len())..]
            .trim()
            .is_empty()
    }

    /// Everything is shown (or given up).
    pub(super) fn settled(&self) -> bool {
        !self.waiting && (!self.unshown() || self.failures >= CREATE_TRIES)
    }

    /// The call that brings the message up to date: an edit (at most once a second
    /// unless `force`), or a new message when there is none yet. One call is on its way
    /// at a time; its answer ([`Reply::answered`]) moves on, so a message is only left
    /// behind (text past 4096 units going on in a new one) once it shows its full text.
    fn flush(&mut self, chat: i64, force: bool, out: &mut Vec<Call>) {
        if self.waiting || !self.unshown() || self.failures >= CREATE_TRIES {
            return;
        }
        let (head, _) = split_at_units(&self.text, MAX_MESSAGE);
        let turn = self.turn;
        match self.message_id {
            None => out.push(Call {
                method: "sendMessage",
                body: json!({"chat_id": chat, "text": head}),
                tag: Some(Tag::Reply { chat, turn }),
            }),
            Some(id) => {
                if !force && self.last_edit.elapsed() < EDIT_EVERY {
                    return;
                }
                out.push(Call {
                    method: "editMessageText",
                    body: json!({"chat_id": chat, "message_id": id, "text": head}),
                    tag: Some(Tag::Edit { chat, turn }),
                });
            }
        }
        self.shown = head.len();
        self.waiting = true;
        self.last_edit = Instant::now();
    }

    /// The answer to our last call (`sendMessage` with its message id, or an edit). A
    /// failure shows the whole text again on the next tick, a few times.
    fn answered(&mut self, ok: bool, id: Option<i64>, chat: i64, out: &mut Vec<Call>) {
        self.waiting = false;
        let created = self.message_id.is_some() || id.is_some();
        if !ok || !created {
            self.failures += 1;
            self.shown = 0;
            return;
        }
        self.failures = 0; // they count failures in a row
        if self.message_id.is_none() {
            self.message_id = id;
        }
        let (head, rest) = split_at_units(&self.text, MAX_MESSAGE);
        if !rest.is_empty() && self.shown == head.len() {
            // The message shows its full share: the rest starts the next one.
            self.text = rest.to_string();
            self.shown = 0;
            self.message_id = None;
        }
        self.flush(chat, true, out);
    }
}

impl Chat {
    /// The answer to the call of reply `turn` (the running one, or a finished one still
    /// waiting); a finished reply is let go once it is settled.
    pub(super) fn reply_answered(
        &mut self,
        chat: i64,
        turn: u64,
        ok: bool,
        id: Option<i64>,
        calls: &mut Vec<Call>,
    ) {
        let finishing = self.finishing.iter().position(|r| r.turn == turn);
        let r = match (self.reply.as_mut().filter(|r| r.turn == turn), finishing) {
            (Some(r), _) => r,
            (None, Some(i)) => &mut self.finishing[i],
            (None, None) => return,
        };
        r.answered(ok, id, chat, calls);
        if let Some(i) = finishing
            && self.finishing.get(i).is_some_and(Reply::settled)
        {
            self.finishing.remove(i);
        }
    }

    /// Each tick: edit the running reply if it has news, bring finished ones up to date
    /// and let go of those that are.
    pub(super) fn flush_replies(&mut self, chat: i64, calls: &mut Vec<Call>) {
        if let Some(r) = self.reply.as_mut() {
            r.flush(chat, false, calls);
        }
        for r in &mut self.finishing {
            r.flush(chat, true, calls);
        }
        self.finishing.retain(|r| !r.settled());
    }

    /// Show what the running reply has so far, now (before a question, say).
    pub(super) fn flush_reply(&mut self, chat: i64, calls: &mut Vec<Call>) {
        if let Some(r) = self.reply.as_mut() {
            r.flush(chat, true, calls);
        }
    }

    /// The turn is over: its reply shows the rest of its text, and waits among the
    /// finishing ones until it has.
    pub(super) fn finish_reply(&mut self, chat: i64, calls: &mut Vec<Call>) {
        if let Some(mut r) = self.reply.take() {
            r.flush(chat, true, calls);
            if !r.settled() {
                self.finishing.push(r);
            }
        }
    }

    /// Renew the typing indicator while a turn works.
    pub(super) fn renew_typing(&mut self, chat: i64, calls: &mut Vec<Call>) {
        if self.pending > 0 && self.last_typing.is_none_or(|t| t.elapsed() >= TYPING_EVERY) {
            self.last_typing = Some(Instant::now());
            calls.push(typing(chat));
        }
    }
}

impl Channels {
    /// Add streamed text to the chat's reply (one per turn, started here); `always`
    /// adds it even past the reply's cut.
    pub(super) fn append(
        &mut self,
        bot: &str,
        chat: i64,
        text: &str,
        always: bool,
        calls: &mut Vec<Call>,
    ) {
        if text.is_empty() {
            return;
        }
        let fresh = self
            .bots
            .get(bot)
            .and_then(|b| b.chats.get(&chat))
            .is_none_or(|c| c.reply.is_none());
        let n = if fresh { self.number() } else { 0 };
        let Some(c) = self.chat_mut(bot, chat) else {
            return;
        };
        let r = c.reply.get_or_insert_with(|| Reply::new(n));
        // New text: earlier failures do not stop it from being shown.
        r.failures = 0;
        if always {
            r.text.push_str(text);
        } else {
            r.push(text);
        }
        r.flush(chat, false, calls);
    }
}

pub(super) fn typing(chat: i64) -> Call {
    Call {
        method: "sendChatAction",
        body: json!({"chat_id": chat, "action": "typing"}),
        tag: None,
    }
}

/// A short line describing a tool input (its command or path), or nothing.
pub(super) fn tool_line(input: Option<&Value>) -> String {
    let Some(i) = input else { return String::new() };
    let detail = ["command", "file_path", "path", "pattern", "url", "title"]
        .iter()
        .find_map(|k| i.get(*k).and_then(Value::as_str))
        .map(str::to_string)
        .unwrap_or_default();
    if detail.is_empty() {
        String::new()
    } else {
        format!(" {}", clip_units(&detail, 200))
    }
}

/// `s` cut to `max` UTF-16 units (Telegram's measure), with an ellipsis when cut.
pub(super) fn clip_units(s: &str, max: usize) -> String {
    let (head, rest) = split_at_units(s, max);
    if rest.is_empty() {
        return s.to_string();
    }
    let (head, _) = split_at_units(head, max.saturating_sub(1));
    format!("{head}…")
}

/// `s` split after at most `max` UTF-16 units, on a character boundary.
fn split_at_units(s: &str, max: usize) -> (&str, &str) {
    let mut units = 0;
    for (i, ch) in s.char_indices() {
        units += ch.len_utf16();
        if units > max {
            return s.split_at(i);
        }
    }
    (s, "")
}

/// `text` in pieces Telegram takes (at most 4096 UTF-16 units each).
pub(super) fn split(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (head, tail) = split_at_units(rest, MAX_MESSAGE);
        out.push(head.to_string());
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_splits_at_4096_units() {
        let t = "é".repeat(9000);
        let parts = split(&t);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].chars().count(), 4096);
        assert_eq!(parts[2].chars().count(), 9000 - 8192);
        assert!(split("").is_empty());
        // An emoji is two units: never cut in half, never over the limit.
        let t = format!("a{}", "😀".repeat(3000));
        let parts = split(&t);
        assert!(
            parts
                .iter()
                .all(|p| p.encode_utf16().count() <= MAX_MESSAGE)
        );
        assert_eq!(parts.concat(), t);
        assert_eq!(clip_units("abcdef", 4), "abc…");
        assert_eq!(clip_units("abc", 4), "abc");
    }

    #[test]
    fn a_reply_is_bounded() {
        let mut r = Reply::new(1);
        for _ in 0..100 {
            r.push(&"é".repeat(1000));
        }
        assert!(
            r.text.len() <= MAX_REPLY + CUT_NOTE.len(),
            "{}",
            r.text.len()
        );
        assert!(r.text.ends_with(CUT_NOTE));
        r.push("more");
        assert!(r.text.ends_with(CUT_NOTE), "nothing after the cut");
    }

    #[test]
    fn a_reply_streams_into_one_message_and_overflows_into_the_next() {
        let mut r = Reply::new(7);
        let mut calls = Vec::new();
        r.text.push_str("hello");
        r.flush(1, false, &mut calls);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].method, "sendMessage");
        // While the message id is unknown nothing else goes out.
        r.text.push_str(" world");
        r.flush(1, true, &mut calls);
        assert_eq!(calls.len(), 1);
        r.answered(true, Some(42), 1, &mut calls);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].method, "editMessageText");
        assert_eq!(calls[1].body["text"], "hello world");
        assert!(!r.settled(), "the edit is on its way");
        r.answered(true, None, 1, &mut calls);
        assert!(r.settled());
        // Past the limit: the message is filled first; the rest starts a new message
        // only once that edit went through.
        r.text.push_str(&"x".repeat(5000));
        r.flush(1, true, &mut calls);
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[2].body["text"].as_str().unwrap().len(), MAX_MESSAGE);
        // The filling edit fails: it is made again (nothing is lost), then goes through.
        r.answered(false, None, 1, &mut calls);
        assert_eq!(calls.len(), 3, "retried on the next tick, not at once");
        r.flush(1, true, &mut calls);
        assert_eq!(calls[3].method, "editMessageText");
        assert_eq!(calls[3].body["message_id"], 42);
        assert_eq!(calls[3].body["text"].as_str().unwrap().len(), MAX_MESSAGE);
        r.answered(true, None, 1, &mut calls);
        assert_eq!(calls[4].method, "sendMessage");
        assert_eq!(
            calls[4].body["text"].as_str().unwrap().len(),
            5011 - MAX_MESSAGE
        );
        // A failed creation is tried again, then given up.
        for _ in 0..CREATE_TRIES {
            assert!(!r.settled());
            r.answered(false, None, 1, &mut calls);
            r.flush(1, true, &mut calls);
        }
        assert!(r.settled());
    }
}
