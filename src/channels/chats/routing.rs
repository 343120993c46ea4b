//! Routing: each chat runs one session (`tg-<bot>-<chat>`), started on its first message
//! and resumed after a daemon restart from the id kept in [`super::saved`]. An admitted
//! message runs as a turn of it (queued while one runs, and the chat is told so);
//! `/new` starts afresh, `/stop` interrupts, `/status` and `/help` answer here. Runs on
//! the hub thread, like all of [`super`]; the bots' own threads are in
//! [`crate::channels::runner`].

use std::time::Instant;

use serde_json::Value;

use super::Channels;
use super::admission::after_trigger;
use super::replies::{TYPING_EVERY, typing};
use super::saved::saved_key;
use crate::channels::runner::FileFailed;
use crate::protocol::SessionId;
use crate::protocol::commands::{Command, Inline, Kind, Origin, Start, TurnCmd};

impl Channels {
    /// An update from Telegram: a message (admitted first) or a button press.
    pub(super) fn on_update(
        &mut self,
        bot_id: &str,
        u: &Value,
        files: Vec<Result<Inline, FileFailed>>,
    ) -> Vec<Command> {
        let Some(bot) = self.bots.get_mut(bot_id) else {
            return Vec::new();
        };
        // Duplicates within the window are ignored.
        let now = Instant::now();
        let update_id = u.get("update_id").and_then(Value::as_i64);
        let seen = bot.repeated(update_id, now);
        if let Some(id) = update_id {
            let handled = bot.handled.clone();
            // Handled from here on: after a restart, polling starts past it. Saved
            // before the poller hears of it (it then confirms it to Telegram).
            // (Set, not raised: Telegram may restart its numbering lower.)
            if self.saved.offsets.insert(bot_id.to_string(), id + 1) != Some(id + 1) {
                self.save();
            }
            let _ = handled.try_send(id);
            if seen {
                crate::log_info!("telegram {bot_id}: update {id} seen already; ignored");
                return Vec::new();
            }
        }
        let Some(bot) = self.bots.get_mut(bot_id) else {
            return Vec::new();
        };
        if let Some(q) = u.get("callback_query") {
            return self.on_button(bot_id, q);
        }
        let Some(m) = u.get("message") else {
            return Vec::new();
        };
        let chat = m.pointer("/chat/id").and_then(Value::as_i64).unwrap_or(0);
        let from = m.pointer("/from/id").and_then(Value::as_i64).unwrap_or(0);
        let group = matches!(
            m.pointer("/chat/type").and_then(Value::as_str),
            Some("group" | "supergroup")
        ) || chat < 0;
        if !bot.admits(from, chat, group) {
            crate::log_info!(
                "telegram {bot_id}: a message from {from} in chat {chat} ignored (not allowed)"
            );
            return Vec::new();
        }
        let mut text = m
            .get("text")
            .or_else(|| m.get("caption"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        // Commands, also as /cmd@botname in groups.
        let first = text.split_whitespace().next().unwrap_or("").to_string();
        let command = first.strip_prefix('/').and_then(|c| {
            let (name, to) = c.split_once('@').unwrap_or((c, ""));
            // `/cmd@otherbot` is for another bot.
            let ours = to.is_empty()
                || bot
                    .username
                    .as_deref()
                    .is_none_or(|u| u.eq_ignore_ascii_case(to));
            let name = name.to_ascii_lowercase();
            (ours && ["new", "stop", "status", "help", "start"].contains(&name.as_str()))
                .then_some(name)
        });
        if group
            && command.is_none()
            && let Some(p) = bot.cfg.trigger_prefix.as_deref()
        {
            match after_trigger(&text, p, bot.username.as_deref()) {
                Some(rest) => text = rest.to_string(),
                None => return Vec::new(),
            }
        }
        // The per-sender rate limit.
        if bot.over_rate_limit(from, now) {
            let n = bot.cfg.rate_limit_per_min;
            crate::log_info!("telegram {bot_id}: {from} is over the rate limit; message ignored");
            self.say(
                bot_id,
                chat,
                &format!("Too many messages: at most {n} a minute. Wait a little."),
            );
            return Vec::new();
        }
        if let Some(c) = command {
            return self.on_command(bot_id, chat, &c);
        }
        let mut inline = Vec::new();
        for f in files {
            match f {
                Ok(f) => inline.push(f),
                Err(e) => self.say(bot_id, chat, &format!("Could not fetch a file: {e}")),
            }
        }
        if text.trim().is_empty() && inline.is_empty() {
            return Vec::new(); // a blank message runs nothing
        }
        self.run_turn(bot_id, chat, text, inline)
    }

    /// `/help` (`/start`), `/status`, `/stop` and `/new`.
    fn on_command(&mut self, bot_id: &str, chat: i64, command: &str) -> Vec<Command> {
        let Some(c) = self.chat_mut(bot_id, chat) else {
            return Vec::new();
        };
        let key = c.key.clone();
        match command {
            "help" | "start" => self.say(bot_id, chat, HELP),
            "status" => {
                let cfg = &self.bots[bot_id].cfg;
                let c = &self.bots[bot_id].chats[&chat];
                let session = self.saved.sessions.get(&saved_key(bot_id, chat));
                let agent = match session
                    .or(key.as_ref())
                    .and_then(|s| self.agent_states.get(s))
                    .map(String::as_str)
                {
                    Some("running") => "running a turn",
                    Some("waiting") => "waiting for your answer",
                    Some(_) => "idle (stopped when idle long enough; your next message resumes it)",
                    None if session.is_some() => "stopped (your next message resumes it)",
                    None => "not started (your first message starts it)",
                };
                let grants: Vec<String> = self
                    .grants
                    .iter()
                    .filter(|g| session.or(key.as_ref()) == Some(&g.session))
                    .map(|g| format!("\n• {} {} until {} UTC", g.tool, g.scope, g.until_hm))
                    .collect();
                let grants = if grants.is_empty() {
                    "none".to_string()
                } else {
                    grants.concat()
                };
                let text = format!(
                    "Provider: {}\nModel: {}\nWorking directory: {}\nSession: {}\nAgent: {agent}\nTurn running: {}\nAllowed for a while: {grants}",
                    c.provider.as_deref().unwrap_or(&cfg.default_provider),
                    c.model
                        .as_deref()
                        .filter(|m| !m.is_empty())
                        .unwrap_or("(the agent's default)"),
                    c.cwd
                        .as_deref()
                        .or(cfg.cwd.as_deref())
                        .unwrap_or("(the daemon's)"),
                    self.saved
                        .sessions
                        .get(&saved_key(bot_id, chat))
                        .map(String::as_str)
                        .unwrap_or("(none yet)"),
                    if c.pending > 0 {
                        format!("yes ({} queued)", c.pending - 1)
                    } else {
                        "no".into()
                    }
                );
                self.say(bot_id, chat, &text);
            }
            "stop" => match key {
                Some(key) if self.bots[bot_id].chats[&chat].pending > 0 => {
                    self.say(bot_id, chat, "Stopping…");
                    return vec![command_for(
                        &key,
                        Kind::SessionInterrupt,
                        Origin::Chat { chat, user: None },
                    )];
                }
                _ => self.say(bot_id, chat, "Nothing is running."),
            },
            "new" => {
                self.saved.sessions.remove(&saved_key(bot_id, chat));
                self.save();
                let mut calls = Vec::new();
                if let Some(c) = self.chat_mut(bot_id, chat) {
                    c.key = None;
                    c.generation += 1;
                    c.pending = 0;
                    c.provider = None;
                    c.model = None;
                    // What the old conversation showed stays as it is; its open
                    // questions are withdrawn (closing the session cancels them).
                    c.finish_reply(chat, &mut calls);
                    c.withdraw_approvals(chat, &mut calls);
                }
                self.send(bot_id, calls);
                self.owners.retain(|_, (b, c)| !(b == bot_id && *c == chat));
                self.say(
                    bot_id,
                    chat,
                    "A new conversation starts with your next message.",
                );
                if let Some(key) = key {
                    return vec![command_for(
                        &key,
                        Kind::SessionClose,
                        Origin::Chat { chat, user: None },
                    )];
                }
            }
            _ => {}
        }
        Vec::new()
    }

    /// An admitted message becomes a turn of the chat's session (starting it).
    fn run_turn(
        &mut self,
        bot_id: &str,
        chat: i64,
        prompt: String,
        files: Vec<Inline>,
    ) -> Vec<Command> {
        let turn = TurnCmd {
            prompt,
            images: None,
            attachments: None,
            files,
            model: None,
            effort: None,
            mode: None,
            trace: None,
        };
        let Some(c) = self.chat_mut(bot_id, chat) else {
            return Vec::new();
        };
        let queued = c.pending > 0;
        c.pending += 1;
        let existing = c.key.clone();
        let key = existing
            .clone()
            .unwrap_or_else(|| session_key(bot_id, chat, c.generation));
        c.key = Some(key.clone());
        let typed = c.last_typing.is_some_and(|t| t.elapsed() < TYPING_EVERY);
        if !typed {
            c.last_typing = Some(Instant::now());
        }
        if queued {
            self.say(
                bot_id,
                chat,
                "Queued: the agent takes this message when the current turn ends.",
            );
        } else if !typed {
            self.send(bot_id, vec![typing(chat)]);
        }
        self.owners.insert(key.clone(), (bot_id.to_string(), chat));
        if existing.is_some() {
            return vec![command_for(
                &key,
                Kind::SessionSend(turn),
                Origin::Chat { chat, user: None },
            )];
        }
        let cfg = &self.bots[bot_id].cfg;
        let start = Start {
            provider: cfg.default_provider.clone(),
            cwd: cfg.cwd.clone(),
            // An id in the state file that is not a safe one starts afresh.
            resume: self
                .saved
                .sessions
                .get(&saved_key(bot_id, chat))
                .and_then(|r| SessionId::parse(r)),
            turn,
        };
        vec![command_for(
            &key,
            Kind::SessionStart(start),
            Origin::Chat { chat, user: None },
        )]
    }
}

/// The hub session of a chat's `generation`-th conversation.
fn session_key(bot: &str, chat: i64, generation: u32) -> String {
    let base = format!("tg-{bot}-{}", chat.to_string().replace('-', "m"));
    if generation == 0 {
        base
    } else {
        format!("{base}-{generation}")
    }
}

/// A session command from the chats, for session `key`.
pub(super) fn command_for(key: &str, kind: Kind, origin: Origin) -> Command {
    Command {
        action: "telegram".into(),
        trace_id: None,
        session_id: Some(key.to_string()),
        kind,
        origin,
    }
}

const HELP: &str = "Send a message to talk to the agent; the conversation goes on across messages.\n\
/new – start a new conversation\n/stop – stop the running turn\n/status – provider, working directory, session\n/help – this list\n\
Tool requests come with Allow / Deny buttons.";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::valid_id;

    #[test]
    fn a_chats_session_key_is_a_valid_id() {
        assert_eq!(session_key("main", -100123, 0), "tg-main-m100123");
        assert_eq!(session_key("main", 5, 2), "tg-main-5-2");
        assert!(valid_id(&session_key("main", -100123, 3)));
    }
}
