//! The hub's side of the Telegram channels: which chat owns which session, what an
//! update asks for, and how a session's events become Bot API calls. Owned by the hub
//! thread (no locks); the bots' threads are in [`crate::channels::runner`].
//!
//! - An allowed message runs as a turn of the chat's one session (`tg-<bot>-<chat>`),
//!   started on the first message and resumed after a daemon restart from the id kept in
//!   `<config dir>/channels-state.json`. `/new` starts afresh, `/stop` interrupts,
//!   `/status` and `/help` answer here.
//! - Allow lists, the group prefix, the per-sender rate limit and the duplicate window
//!   apply before anything runs; strangers are ignored.
//! - The reply is one message edited about once a second as text arrives (plain text,
//!   so Telegram cannot reject it as markup), split at 4096 characters; tool calls show
//!   as short lines; each approval is a message with Allow / Deny buttons.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde_json::{Value, json};

use crate::channels::config::Telegram;
use crate::channels::runner::{Call, ChannelEvent, Tag};
use crate::hub::commands::{Command, Kind, Resolve, Start, TurnCmd};

/// Telegram's limit on one message.
pub const MAX_MESSAGE: usize = 4096;
/// How often a streamed reply is edited at most.
const EDIT_EVERY: Duration = Duration::from_millis(1000);

struct Reply {
    /// Our turn counter (to match the answer that gives the message id).
    turn: u64,
    message_id: Option<i64>,
    /// Text of the message being edited (a tail of the reply).
    text: String,
    shown: usize,
    last_edit: Instant,
}

#[derive(Default)]
struct Chat {
    /// Approvals shown in this chat: request id → message id (once sent).
    approvals: HashMap<String, Option<i64>>,
    reply: Option<Reply>,
    running: bool,
}

struct Bot {
    cfg: Telegram,
    calls: Sender<Call>,
    stopped: bool,
    chats: HashMap<i64, Chat>,
    seen: VecDeque<(i64, Instant)>,
    rate: HashMap<i64, VecDeque<Instant>>,
}

/// Every bot and every chat's session.
pub struct Channels {
    bots: HashMap<String, Bot>,
    /// Session ids (the chat's own, and the agent's once known) → (bot, chat).
    owners: HashMap<String, (String, i64)>,
    /// `"<bot>:<chat>"` → the agent's session id, for resuming after a restart.
    saved: HashMap<String, String>,
    state_path: PathBuf,
    turns: u64,
}

fn session_key(bot: &str, chat: i64) -> String {
    format!("tg-{bot}-{}", chat.to_string().replace('-', "m"))
}

impl Channels {
    /// Start every enabled bot whose token can be read; the others are logged and skipped.
    pub fn start(
        configs: Vec<Telegram>,
        config_dir: &std::path::Path,
        tls: &ureq::tls::TlsConfig,
        env: &dyn Fn(&str) -> Option<String>,
        events: &Sender<ChannelEvent>,
    ) -> Channels {
        let mut bots = HashMap::new();
        for cfg in configs.into_iter().filter(|c| c.enabled) {
            let token = match crate::channels::telegram::token(&cfg.token, env) {
                Ok(t) => t,
                Err(e) => {
                    crate::log_error!(
                        "telegram {}: {e}; this channel does not run",
                        cfg.instance_id
                    );
                    continue;
                }
            };
            if cfg.allowed_senders.is_empty() {
                crate::log_warn!(
                    "telegram {}: allowed_senders is empty, so the bot answers nobody",
                    cfg.instance_id
                );
            }
            let api = crate::channels::telegram::Api::new(&cfg.api_base, token, tls.clone());
            match crate::channels::runner::start(&cfg.instance_id, api, events.clone()) {
                Ok(calls) => {
                    crate::log_info!("telegram {}: polling for messages", cfg.instance_id);
                    bots.insert(
                        cfg.instance_id.clone(),
                        Bot {
                            cfg,
                            calls,
                            stopped: false,
                            chats: HashMap::new(),
                            seen: VecDeque::new(),
                            rate: HashMap::new(),
                        },
                    );
                }
                Err(e) => crate::log_error!(
                    "telegram {}: cannot start its threads: {e}",
                    cfg.instance_id
                ),
            }
        }
        let state_path = config_dir.join("channels-state.json");
        let saved = std::fs::read(&state_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<HashMap<String, String>>(&b).ok())
            .unwrap_or_default();
        Channels {
            bots,
            owners: HashMap::new(),
            saved,
            state_path,
            turns: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bots.is_empty()
    }

    fn save(&self) {
        let bytes = serde_json::to_vec(&self.saved).unwrap_or_default();
        if let Err(e) = crate::sys::fsutil::write_private_file(&self.state_path, &bytes) {
            crate::log_warn!("cannot save {}: {e}", self.state_path.display());
        }
    }

    /// Queue a call on `bot`'s sender (never blocking the hub; a full queue drops it).
    fn call(&self, bot: &str, method: &'static str, body: Value, tag: Option<Tag>) {
        if let Some(b) = self.bots.get(bot)
            && !b.stopped
            && b.calls.try_send(Call { method, body, tag }).is_err()
        {
            crate::log_warn!("telegram {bot}: send queue full; {method} dropped");
        }
    }

    fn say(&self, bot: &str, chat: i64, text: &str) {
        for part in split(text) {
            self.call(
                bot,
                "sendMessage",
                json!({"chat_id": chat, "text": part}),
                None,
            );
        }
    }

    /// News from a bot's threads; the session commands it asks for.
    pub fn on_event(&mut self, ev: ChannelEvent) -> Vec<Command> {
        match ev {
            ChannelEvent::Stopped { instance, reason } => {
                if let Some(b) = self.bots.get_mut(&instance) {
                    b.stopped = true;
                }
                crate::log_error!("telegram {instance} stopped: the token was refused ({reason})");
                Vec::new()
            }
            ChannelEvent::Sent {
                instance,
                tag,
                result,
            } => {
                self.on_sent(&instance, tag, result);
                Vec::new()
            }
            ChannelEvent::Update { instance, update } => self.on_update(&instance, &update),
        }
    }

    fn on_sent(&mut self, bot: &str, tag: Tag, result: Result<Value, String>) {
        let id = result
            .ok()
            .and_then(|r| r.get("message_id").and_then(Value::as_i64));
        let mut edit = None;
        if let Some(b) = self.bots.get_mut(bot) {
            match tag {
                Tag::Reply { chat, turn } => {
                    if let Some(r) = b.chats.get_mut(&chat).and_then(|c| c.reply.as_mut())
                        && r.turn == turn
                    {
                        r.message_id = id;
                        if r.text.chars().count() != r.shown {
                            edit = Some(chat);
                        }
                    }
                }
                Tag::Approval { chat, request_id } => {
                    if let Some(slot) = b
                        .chats
                        .get_mut(&chat)
                        .and_then(|c| c.approvals.get_mut(&request_id))
                    {
                        *slot = id;
                    }
                }
            }
        }
        if let Some(chat) = edit {
            self.flush(bot, chat, true);
        }
    }

    fn on_update(&mut self, bot_id: &str, u: &Value) -> Vec<Command> {
        let Some(bot) = self.bots.get_mut(bot_id) else {
            return Vec::new();
        };
        // Duplicates within the window are ignored.
        let now = Instant::now();
        let window = Duration::from_secs(bot.cfg.dedup_window_seconds);
        while bot
            .seen
            .front()
            .is_some_and(|(_, t)| now.duration_since(*t) > window)
        {
            bot.seen.pop_front();
        }
        if let Some(id) = u.get("update_id").and_then(Value::as_i64) {
            if bot.seen.iter().any(|(s, _)| *s == id) {
                crate::log_debug!("telegram {bot_id}: update {id} seen already");
                return Vec::new();
            }
            bot.seen.push_back((id, now));
            if bot.seen.len() > 10_000 {
                bot.seen.pop_front();
            }
        }
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
        );
        let Some(bot) = self.bots.get_mut(bot_id) else {
            return Vec::new();
        };
        if !bot.cfg.allowed_senders.contains(&from)
            || (group && !bot.cfg.allowed_groups.contains(&chat))
        {
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
        let command = first
            .strip_prefix('/')
            .map(|c| c.split('@').next().unwrap_or("").to_ascii_lowercase());
        if group
            && command
                .as_deref()
                .is_none_or(|c| !["new", "stop", "status", "help"].contains(&c))
        {
            match bot.cfg.trigger_prefix.as_deref() {
                Some(p) if text.starts_with(p) => text = text[p.len()..].trim_start().to_string(),
                Some(_) => return Vec::new(),
                None => {}
            }
        }
        // The per-sender rate limit.
        let times = bot.rate.entry(from).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            times.pop_front();
        }
        if times.len() >= bot.cfg.rate_limit_per_min as usize {
            let n = bot.cfg.rate_limit_per_min;
            self.say(
                bot_id,
                chat,
                &format!("Too many messages: at most {n} a minute. Wait a little."),
            );
            return Vec::new();
        }
        times.push_back(now);
        let key = session_key(bot_id, chat);
        let live = self.owners.contains_key(&key);
        match command.as_deref() {
            Some("help") => {
                self.say(bot_id, chat, HELP);
                return Vec::new();
            }
            Some("status") => {
                let running = self
                    .bots
                    .get(bot_id)
                    .and_then(|b| b.chats.get(&chat))
                    .is_some_and(|c| c.running);
                let cfg = &self.bots[bot_id].cfg;
                self.say(
                    bot_id,
                    chat,
                    &format!(
                        "Provider: {}\nWorking directory: {}\nSession: {}\nTurn running: {}",
                        cfg.default_provider,
                        cfg.cwd.as_deref().unwrap_or("(the daemon's)"),
                        self.saved
                            .get(&format!("{bot_id}:{chat}"))
                            .map(String::as_str)
                            .unwrap_or("(none yet)"),
                        if running { "yes" } else { "no" }
                    ),
                );
                return Vec::new();
            }
            Some("stop") => {
                if live {
                    self.say(bot_id, chat, "Stopping…");
                    return vec![command_for(&key, Kind::SessionInterrupt)];
                }
                self.say(bot_id, chat, "Nothing is running.");
                return Vec::new();
            }
            Some("new") => {
                self.saved.remove(&format!("{bot_id}:{chat}"));
                self.save();
                self.say(
                    bot_id,
                    chat,
                    "A new conversation starts with your next message.",
                );
                if live {
                    self.owners.retain(|_, (b, c)| !(b == bot_id && *c == chat));
                    return vec![command_for(&key, Kind::SessionClose)];
                }
                return Vec::new();
            }
            _ => {}
        }
        if text.trim().is_empty() {
            return Vec::new(); // a blank message runs nothing
        }
        let turn = TurnCmd {
            prompt: text,
            images: None,
            attachments: None,
            model: None,
            effort: None,
            mode: None,
            trace: None,
        };
        let busy = self
            .bots
            .get(bot_id)
            .and_then(|b| b.chats.get(&chat))
            .is_some_and(|c| c.running);
        if busy {
            self.say(bot_id, chat, "Queued: it runs when the current turn ends.");
        }
        self.owners.insert(key.clone(), (bot_id.to_string(), chat));
        if live {
            return vec![command_for(&key, Kind::SessionSend(turn))];
        }
        let cfg = &self.bots[bot_id].cfg;
        let start = Start {
            provider: cfg.default_provider.clone(),
            cwd: cfg.cwd.clone(),
            resume: self.saved.get(&format!("{bot_id}:{chat}")).cloned(),
            turn,
        };
        vec![command_for(&key, Kind::SessionStart(start))]
    }

    fn on_button(&mut self, bot_id: &str, q: &Value) -> Vec<Command> {
        let qid = q.get("id").cloned().unwrap_or(Value::Null);
        let from = q.pointer("/from/id").and_then(Value::as_i64).unwrap_or(0);
        let chat = q
            .pointer("/message/chat/id")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let data = q.get("data").and_then(Value::as_str).unwrap_or("");
        let answer = |this: &Self, text: &str| {
            this.call(
                bot_id,
                "answerCallbackQuery",
                json!({"callback_query_id": qid, "text": text}),
                None,
            );
        };
        let allowed = self
            .bots
            .get(bot_id)
            .is_some_and(|b| b.cfg.allowed_senders.contains(&from));
        if !allowed {
            answer(self, "You are not allowed to answer this.");
            return Vec::new();
        }
        let (allow, rid) = match data.split_once(':') {
            Some(("a", r)) => (true, r.to_string()),
            Some(("d", r)) => (false, r.to_string()),
            _ => {
                answer(self, "Unknown button.");
                return Vec::new();
            }
        };
        let pending = self
            .bots
            .get(bot_id)
            .and_then(|b| b.chats.get(&chat))
            .is_some_and(|c| c.approvals.contains_key(&rid));
        if !pending {
            answer(self, "This request is settled already.");
            return Vec::new();
        }
        answer(self, if allow { "Allowed" } else { "Denied" });
        let key = session_key(bot_id, chat);
        vec![command_for(
            &key,
            Kind::PermissionResolve(Resolve {
                request_id: rid,
                allow,
                answer: None,
            }),
        )]
    }

    /// A session event the hub emits: the chat that owns the session hears about it.
    pub fn on_session_event(&mut self, e: &Value) {
        let Some(sid) = e.get("session_id").and_then(Value::as_str) else {
            return;
        };
        let Some((bot, chat)) = self.owners.get(sid).cloned() else {
            return;
        };
        let name = e.get("event").and_then(Value::as_str).unwrap_or("");
        match name {
            "session.identified" => {
                if let Some(real) = e.get("sdk_session_id").and_then(Value::as_str) {
                    self.owners.insert(real.to_string(), (bot.clone(), chat));
                    self.saved.insert(format!("{bot}:{chat}"), real.to_string());
                    self.save();
                }
            }
            "session.text_delta" => {
                self.ensure_reply(&bot, chat);
                if let Some(t) = e.get("text").and_then(Value::as_str) {
                    self.append(&bot, chat, t);
                }
            }
            "session.tool_use" => {
                self.ensure_reply(&bot, chat);
                let tool = e.get("tool").and_then(Value::as_str).unwrap_or("tool");
                let detail = tool_line(e.get("input"));
                self.append(&bot, chat, &format!("\n🔧 {tool}{detail}\n"));
            }
            "permission.request" => {
                let rid = e
                    .get("request_id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let tool = e.get("tool").and_then(Value::as_str).unwrap_or("A tool");
                let text = format!("🔐 {tool} asks to run:{}", tool_line(e.get("input")));
                if let Some(c) = self
                    .bots
                    .get_mut(&bot)
                    .map(|b| b.chats.entry(chat).or_default())
                {
                    c.approvals.insert(rid.clone(), None);
                }
                let keyboard = json!({"inline_keyboard": [[
                    {"text": "Allow", "callback_data": format!("a:{rid}")},
                    {"text": "Deny", "callback_data": format!("d:{rid}")},
                ]]});
                let body = json!({"chat_id": chat, "text": clip(&text, MAX_MESSAGE), "reply_markup": keyboard});
                self.call(
                    &bot,
                    "sendMessage",
                    body,
                    Some(Tag::Approval {
                        chat,
                        request_id: rid,
                    }),
                );
            }
            "permission.resolved" => {
                let rid = e.get("request_id").and_then(Value::as_str).unwrap_or("");
                let decision = e.get("decision").and_then(Value::as_str).unwrap_or("deny");
                let why = e.get("reason").and_then(Value::as_str).unwrap_or("");
                let shown = match (decision, why) {
                    ("allow", _) => "✅ Allowed".to_string(),
                    (_, "timeout") => "⌛ No answer in time: denied".to_string(),
                    ("cancelled", _) => "Withdrawn".to_string(),
                    _ => "⛔ Denied".to_string(),
                };
                let msg = self
                    .bots
                    .get_mut(&bot)
                    .and_then(|b| b.chats.get_mut(&chat))
                    .and_then(|c| c.approvals.remove(rid))
                    .flatten();
                if let Some(id) = msg {
                    self.call(&bot, "editMessageText", json!({"chat_id": chat, "message_id": id, "text": shown,
                                                             "reply_markup": {"inline_keyboard": []}}), None);
                }
            }
            "session.result" | "session.error" => {
                if name == "session.error" {
                    let m = e.get("message").and_then(Value::as_str).unwrap_or("error");
                    self.ensure_reply(&bot, chat);
                    self.append(&bot, chat, &format!("\n⚠️ {m}"));
                }
                if let Some(r) = e.get("sdk_session_id").and_then(Value::as_str) {
                    self.saved.insert(format!("{bot}:{chat}"), r.to_string());
                }
                self.flush(&bot, chat, true);
                if let Some(c) = self.bots.get_mut(&bot).and_then(|b| b.chats.get_mut(&chat)) {
                    c.reply = None;
                    c.running = false;
                }
            }
            _ => {}
        }
    }

    /// A reply message for the running turn (sent now; edited as text arrives).
    fn ensure_reply(&mut self, bot: &str, chat: i64) {
        let Some(b) = self.bots.get_mut(bot) else {
            return;
        };
        let c = b.chats.entry(chat).or_default();
        c.running = true;
        if c.reply.is_some() {
            return;
        }
        self.turns += 1;
        let turn = self.turns;
        c.reply = Some(Reply {
            turn,
            message_id: None,
            text: String::new(),
            shown: 0,
            last_edit: Instant::now(),
        });
        self.call(
            bot,
            "sendChatAction",
            json!({"chat_id": chat, "action": "typing"}),
            None,
        );
        self.call(
            bot,
            "sendMessage",
            json!({"chat_id": chat, "text": "…"}),
            Some(Tag::Reply { chat, turn }),
        );
    }

    fn append(&mut self, bot: &str, chat: i64, text: &str) {
        let Some(r) = self
            .bots
            .get_mut(bot)
            .and_then(|b| b.chats.get_mut(&chat))
            .and_then(|c| c.reply.as_mut())
        else {
            return;
        };
        r.text.push_str(text);
        self.flush(bot, chat, false);
    }

    /// Edit the reply message with the text so far (at most once a second unless
    /// `force`); text beyond 4096 characters continues in a new message.
    fn flush(&mut self, bot: &str, chat: i64, force: bool) {
        let mut calls = Vec::new();
        {
            let Some(b) = self.bots.get_mut(bot) else {
                return;
            };
            let Some(r) = b.chats.get_mut(&chat).and_then(|c| c.reply.as_mut()) else {
                return;
            };
            let Some(id) = r.message_id else { return };
            if !force && r.last_edit.elapsed() < EDIT_EVERY {
                return;
            }
            let count = r.text.chars().count();
            if count == r.shown {
                return;
            }
            let head: String = r.text.chars().take(MAX_MESSAGE).collect();
            calls.push((
                "editMessageText",
                json!({"chat_id": chat, "message_id": id, "text": head}),
            ));
            r.shown = count.min(MAX_MESSAGE);
            r.last_edit = Instant::now();
            if count > MAX_MESSAGE {
                // The rest goes on in a new message (a full one is never edited again).
                let rest: String = r.text.chars().skip(MAX_MESSAGE).collect();
                for part in split(&rest) {
                    calls.push(("sendMessage", json!({"chat_id": chat, "text": part})));
                }
                r.text.clear();
                r.shown = 0;
                r.message_id = None;
            }
        }
        for (m, body) in calls {
            self.call(bot, m, body, None);
        }
    }
}

fn command_for(key: &str, kind: Kind) -> Command {
    Command {
        action: "telegram".into(),
        trace_id: None,
        session_id: Some(key.to_string()),
        kind,
    }
}

/// A short line describing a tool input (its command or path), or nothing.
fn tool_line(input: Option<&Value>) -> String {
    let Some(i) = input else { return String::new() };
    let detail = ["command", "file_path", "path", "pattern", "url", "title"]
        .iter()
        .find_map(|k| i.get(*k).and_then(Value::as_str))
        .map(str::to_string)
        .unwrap_or_default();
    if detail.is_empty() {
        String::new()
    } else {
        format!(" {}", clip(&detail, 200))
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

/// `text` in pieces Telegram takes (at most 4096 characters each).
pub fn split(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    chars
        .chunks(MAX_MESSAGE)
        .map(|c| c.iter().collect())
        .collect()
}

const HELP: &str = "Send a message to talk to the agent; the conversation goes on across messages.\n\
/new – start a new conversation\n/stop – stop the running turn\n/status – provider, working directory, session\n/help – this list\n\
Tool requests come with Allow / Deny buttons.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_splits_at_4096() {
        let t = "é".repeat(9000);
        let parts = split(&t);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].chars().count(), 4096);
        assert_eq!(parts[2].chars().count(), 9000 - 8192);
        assert!(split("").is_empty());
        assert_eq!(session_key("main", -100123), "tg-main-m100123");
        assert!(crate::hub::sessions::valid_id(&session_key(
            "main", -100123
        )));
    }
}
