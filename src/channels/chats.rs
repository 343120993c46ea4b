//! The hub's side of the Telegram channels: which chat owns which session, what an
//! update asks for, and how a session's events become Bot API calls. Owned by the hub
//! thread (no locks); the bots' threads are in [`crate::channels::runner`].
//!
//! - An allowed message runs as a turn of the chat's one session (`tg-<bot>-<chat>`),
//!   started on the first message and resumed after a daemon restart from the id kept in
//!   `<config dir>/channels-state.json`. `/new` starts afresh, `/stop` interrupts,
//!   `/status` and `/help` answer here. A message sent while a turn runs is queued
//!   (the agent takes it when the turn ends) and the chat is told so.
//! - Allow lists, the group prefix, the per-sender rate limit and the duplicate window
//!   apply before anything runs; strangers are ignored.
//! - The reply is one message, created with the first text and edited about once a
//!   second as more arrives (plain text, so Telegram cannot reject it as markup), split
//!   at 4096 UTF-16 units; a typing indicator is repeated while the turn works; tool
//!   calls show as short lines. The hub calls [`Channels::on_tick`] every second while
//!   [`Channels::wants_tick`].
//! - Each approval is a message with Allow / Deny buttons (AskUserQuestion: one button
//!   per option). Buttons carry a number that only this run of the daemon handed out,
//!   so a forged or stale press finds nothing and does nothing.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde_json::{Value, json};

use crate::channels::config::Telegram;
use crate::channels::runner::{Call, ChannelEvent, Tag};
use crate::protocol::commands::{Command, Inline, Kind, Resolve, Start, TurnCmd};
use crate::sys::saver::Saver;

/// Telegram's limit on one message, in UTF-16 code units.
pub const MAX_MESSAGE: usize = 4096;
/// How often a streamed reply is edited at most.
const EDIT_EVERY: Duration = Duration::from_millis(1000);
/// How often the typing indicator is renewed (Telegram shows it for 5 s).
const TYPING_EVERY: Duration = Duration::from_secs(4);
/// Tries at creating a reply message before its text is given up.
const CREATE_TRIES: u32 = 3;
/// The most of one turn's reply a chat gets (about 16 full messages); the rest is cut
/// with a note (the browser has it all). Also bounds what waits for a slow Bot API.
const MAX_REPLY: usize = 64 << 10;
const CUT_NOTE: &str = "\n… (the rest of this reply is too long for the chat)";

/// One turn's reply: the message being edited and the text it should show.
struct Reply {
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
    fn settled(&self) -> bool {
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

/// An approval shown in a chat.
struct Approval {
    request_id: String,
    message_id: Option<i64>,
    /// The message as sent (sent again when sending failed).
    body: Value,
    tries: u32,
    /// Decided before its message id was known: shown once it is.
    outcome: Option<String>,
    /// Its message was dropped by a full send queue: sent again on the next tick.
    unsent: bool,
    /// What was asked (shown again with the decision).
    summary: String,
    /// AskUserQuestion: the questions and their option labels, and the picks so far.
    questions: Vec<(String, Vec<String>)>,
    picks: Vec<Option<String>>,
}

#[derive(Default)]
struct Chat {
    /// The hub session this chat runs now (`None`: the next message starts one).
    key: Option<String>,
    /// Sessions this chat started, to tell the key of each generation.
    generation: u32,
    /// Turns asked for and not yet answered.
    pending: u32,
    reply: Option<Reply>,
    /// Replies of finished turns still waiting for their message id.
    finishing: Vec<Reply>,
    approvals: HashMap<u64, Approval>,
    last_typing: Option<Instant>,
    /// What the session reported about itself (for `/status`).
    provider: Option<String>,
    model: Option<String>,
    cwd: Option<String>,
}

struct Bot {
    cfg: Telegram,
    calls: Sender<Call>,
    /// Update ids handled, for the poller (it confirms a batch only then).
    handled: Sender<i64>,
    stopped: bool,
    /// The bot's username (`/cmd@other` in a group is not for us).
    username: Option<String>,
    chats: HashMap<i64, Chat>,
    seen: VecDeque<(i64, Instant)>,
    rate: HashMap<i64, VecDeque<Instant>>,
}

/// What survives a restart (`<config dir>/channels-state.json`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    /// `"<bot>:<chat>"` → the agent's session id, for resuming.
    #[serde(default)]
    sessions: HashMap<String, String>,
    /// Bot → the first update not handled yet (no update runs twice after a restart).
    #[serde(default)]
    offsets: HashMap<String, i64>,
}

/// Every bot and every chat's session.
pub struct Channels {
    bots: HashMap<String, Bot>,
    /// Session ids (the chat's own, and the agent's once known) → (bot, chat).
    owners: HashMap<String, (String, i64)>,
    saved: Saved,
    state_path: PathBuf,
    saver: Saver,
    /// Numbers for replies and approvals; starts at random so that a button of an
    /// earlier run does not match one of this run.
    next_number: u64,
}

/// The text after a group's trigger prefix, or `None` when the message does not start
/// with it. A prefix that is a command (`/ask `) also matches the way Telegram's command
/// menu sends it, `/ask@ourbot text` (the name in any case); `/ask@otherbot` is for
/// another bot. `username` is ours from `getMe` (unknown: any name is taken as ours).
pub fn after_trigger<'a>(text: &'a str, prefix: &str, username: Option<&str>) -> Option<&'a str> {
    let word = prefix.trim_end();
    let command = word.starts_with('/') && !word.contains(char::is_whitespace);
    if command && let Some(rest) = text.strip_prefix(word).and_then(|r| r.strip_prefix('@')) {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (to, rest) = rest.split_at(end);
        let ours = !to.is_empty() && username.is_none_or(|u| u.eq_ignore_ascii_case(to));
        return ours.then(|| rest.trim_start());
    }
    text.strip_prefix(prefix).map(str::trim_start)
}

fn session_key(bot: &str, chat: i64, generation: u32) -> String {
    let base = format!("tg-{bot}-{}", chat.to_string().replace('-', "m"));
    if generation == 0 {
        base
    } else {
        format!("{base}-{generation}")
    }
}

fn saved_key(bot: &str, chat: i64) -> String {
    format!("{bot}:{chat}")
}

impl Channels {
    /// Start every enabled bot whose token can be read; the others are logged and skipped.
    pub fn start(
        configs: Vec<Telegram>,
        config_dir: &std::path::Path,
        tls: &ureq::tls::TlsConfig,
        env: &dyn Fn(&str) -> Option<String>,
        events: &Sender<ChannelEvent>,
        saver: Saver,
    ) -> Channels {
        let state_path = config_dir.join("channels-state.json");
        let saved: Saved = std::fs::read(&state_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
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
            let api = crate::channels::telegram::Api::new(
                &cfg.api_base,
                token,
                tls.clone(),
                cfg.poll_timeout_seconds,
            );
            let offset = saved.offsets.get(&cfg.instance_id).copied().unwrap_or(0);
            match crate::channels::runner::start(&cfg, api, events.clone(), offset) {
                Ok(handles) => {
                    crate::log_info!("telegram {}: polling for messages", cfg.instance_id);
                    bots.insert(
                        cfg.instance_id.clone(),
                        Bot {
                            cfg,
                            calls: handles.calls,
                            handled: handles.handled,
                            stopped: false,
                            username: None,
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
        let mut seed = [0u8; 8];
        crate::sys::ids::fill_random(&mut seed);
        Channels {
            bots,
            owners: HashMap::new(),
            saved,
            state_path,
            saver,
            // 52 bits: room to count up, and short in callback data.
            next_number: u64::from_le_bytes(seed) >> 12,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bots.is_empty()
    }

    fn number(&mut self) -> u64 {
        self.next_number += 1;
        self.next_number
    }

    fn save(&self) {
        let bytes = serde_json::to_vec(&self.saved).unwrap_or_default();
        // Once per handled update, on the saver thread: replaced atomically, not synced.
        let path = self.state_path.clone();
        self.saver.save(path.clone(), move || {
            if let Err(e) = crate::sys::fsutil::replace_private_file_quick(&path, &bytes) {
                crate::log_warn!("cannot save {}: {e}", path.display());
            }
        });
    }

    /// Queue calls on `bot`'s sender (never blocking the hub). A full queue drops a call;
    /// one whose answer we wait for is failed at once, so its owner tries again.
    fn send(&mut self, bot: &str, calls: Vec<Call>) {
        let Some(b) = self.bots.get(bot).filter(|b| !b.stopped) else {
            return;
        };
        let mut dropped = Vec::new();
        for c in calls {
            let method = c.method;
            if let Err(e) = b.calls.try_send(c) {
                crate::log_warn!("telegram {bot}: send queue full; {method} dropped");
                dropped.extend(e.into_inner().tag);
            }
        }
        for tag in dropped {
            match tag {
                // An approval waits for the next tick (the queue is full now).
                Tag::Approval { chat, number } => {
                    if let Some(a) = self
                        .bots
                        .get_mut(bot)
                        .and_then(|b| b.chats.get_mut(&chat))
                        .and_then(|c| c.approvals.get_mut(&number))
                    {
                        a.unsent = true;
                    }
                }
                other => self.on_sent(bot, other, Err("the send queue is full".into())),
            }
        }
    }

    fn call(&mut self, bot: &str, method: &'static str, body: Value) {
        self.send(
            bot,
            vec![Call {
                method,
                body,
                tag: None,
            }],
        );
    }

    fn say(&mut self, bot: &str, chat: i64, text: &str) {
        let calls = split(text)
            .into_iter()
            .map(|part| Call {
                method: "sendMessage",
                body: json!({"chat_id": chat, "text": part}),
                tag: None,
            })
            .collect();
        self.send(bot, calls);
    }

    fn chat_mut(&mut self, bot: &str, chat: i64) -> Option<&mut Chat> {
        self.bots
            .get_mut(bot)
            .map(|b| b.chats.entry(chat).or_default())
    }

    /// News from a bot's threads; the session commands it asks for.
    pub fn on_event(&mut self, ev: ChannelEvent) -> Vec<Command> {
        match ev {
            ChannelEvent::Ready { instance, username } => {
                if let Some(b) = self.bots.get_mut(&instance) {
                    b.username = username;
                }
                Vec::new()
            }
            ChannelEvent::Stopped { instance, reason } => {
                if let Some(b) = self.bots.get_mut(&instance) {
                    b.stopped = true;
                }
                crate::log_error!(
                    "telegram {instance} stopped: the token was refused ({reason}); the relay link and the other channels go on"
                );
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
            ChannelEvent::Update {
                instance,
                update,
                files,
            } => self.on_update(&instance, &update, files),
        }
    }

    fn on_sent(&mut self, bot: &str, tag: Tag, result: Result<Value, String>) {
        let ok = result.is_ok();
        let id = result
            .ok()
            .and_then(|r| r.get("message_id").and_then(Value::as_i64));
        let mut calls = Vec::new();
        let Some(b) = self.bots.get_mut(bot) else {
            return;
        };
        match tag {
            Tag::Reply { chat, turn } | Tag::Edit { chat, turn } => {
                let Some(c) = b.chats.get_mut(&chat) else {
                    return;
                };
                let finishing = c.finishing.iter().position(|r| r.turn == turn);
                let r = match (c.reply.as_mut().filter(|r| r.turn == turn), finishing) {
                    (Some(r), _) => r,
                    (None, Some(i)) => &mut c.finishing[i],
                    (None, None) => return,
                };
                r.answered(ok, id, chat, &mut calls);
                if let Some(i) = finishing
                    && c.finishing.get(i).is_some_and(Reply::settled)
                {
                    c.finishing.remove(i);
                }
            }
            Tag::Approval { chat, number } => {
                let Some(c) = b.chats.get_mut(&chat) else {
                    return;
                };
                let Some(a) = c.approvals.get_mut(&number) else {
                    return;
                };
                match (id, a.outcome.clone()) {
                    (Some(id), None) => a.message_id = Some(id),
                    (Some(id), Some(text)) => {
                        calls.push(decision_edit(chat, id, &text));
                        c.approvals.remove(&number);
                    }
                    (None, outcome) => {
                        a.tries += 1;
                        if outcome.is_none() && a.tries < CREATE_TRIES {
                            calls.push(Call {
                                method: "sendMessage",
                                body: a.body.clone(),
                                tag: Some(Tag::Approval { chat, number }),
                            });
                        } else {
                            crate::log_warn!(
                                "telegram {bot}: an approval could not be shown in chat {chat}"
                            );
                            c.approvals.remove(&number);
                        }
                    }
                }
            }
        }
        self.send(bot, calls);
    }

    /// Whether [`Channels::on_tick`] has work: a turn runs or a reply is not shown yet.
    pub fn wants_tick(&self) -> bool {
        // A stopped bot sends nothing more: it never needs a tick.
        self.bots.values().filter(|b| !b.stopped).any(|b| {
            b.chats.values().any(|c| {
                c.pending > 0
                    || c.reply.as_ref().is_some_and(|r| !r.settled())
                    || !c.finishing.is_empty()
                    || c.approvals.values().any(|a| a.unsent)
            })
        })
    }

    /// Every second while [`Channels::wants_tick`]: edit replies that have news and
    /// renew the typing indicator of chats whose turn still works.
    pub fn on_tick(&mut self) {
        let mut all = Vec::new();
        for (name, b) in self.bots.iter_mut().filter(|(_, b)| !b.stopped) {
            let mut calls = Vec::new();
            for (chat, c) in &mut b.chats {
                if let Some(r) = c.reply.as_mut() {
                    r.flush(*chat, false, &mut calls);
                }
                for r in &mut c.finishing {
                    r.flush(*chat, true, &mut calls);
                }
                for (n, a) in c.approvals.iter_mut().filter(|(_, a)| a.unsent) {
                    a.unsent = false;
                    calls.push(Call {
                        method: "sendMessage",
                        body: a.body.clone(),
                        tag: Some(Tag::Approval {
                            chat: *chat,
                            number: *n,
                        }),
                    });
                }
                c.finishing.retain(|r| !r.settled());
                if c.pending > 0 && c.last_typing.is_none_or(|t| t.elapsed() >= TYPING_EVERY) {
                    c.last_typing = Some(Instant::now());
                    calls.push(typing(*chat));
                }
            }
            all.push((name.clone(), calls));
        }
        for (bot, calls) in all {
            self.send(&bot, calls);
        }
    }

    fn on_update(
        &mut self,
        bot_id: &str,
        u: &Value,
        files: Vec<Result<Inline, String>>,
    ) -> Vec<Command> {
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
            let seen = bot.seen.iter().any(|(s, _)| *s == id);
            if !seen {
                bot.seen.push_back((id, now));
                if bot.seen.len() > 10_000 {
                    bot.seen.pop_front();
                }
            }
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
        // The per-sender rate limit (none kept at all without one, so nothing grows).
        if bot.cfg.rate_limit_per_min != crate::channels::config::NO_RATE_LIMIT {
            let times = bot.rate.entry(from).or_default();
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
            {
                times.pop_front();
            }
            if times.len() >= bot.cfg.rate_limit_per_min as usize {
                let n = bot.cfg.rate_limit_per_min;
                crate::log_info!(
                    "telegram {bot_id}: {from} is over the rate limit; message ignored"
                );
                self.say(
                    bot_id,
                    chat,
                    &format!("Too many messages: at most {n} a minute. Wait a little."),
                );
                return Vec::new();
            }
            times.push_back(now);
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
                let text = format!(
                    "Provider: {}\nModel: {}\nWorking directory: {}\nSession: {}\nTurn running: {}",
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
                    return vec![command_for(&key, Kind::SessionInterrupt)];
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
                    if let Some(mut r) = c.reply.take() {
                        r.flush(chat, true, &mut calls);
                        if !r.settled() {
                            c.finishing.push(r);
                        }
                    }
                    // One whose message is still on its way is edited when it arrives.
                    c.approvals.retain(|_, a| {
                        let text = format!("Withdrawn: a new conversation started\n{}", a.summary);
                        match a.message_id {
                            Some(id) => {
                                calls.push(decision_edit(chat, id, &text));
                                false
                            }
                            None => {
                                a.outcome = Some(text);
                                a.unsent = false;
                                true
                            }
                        }
                    });
                }
                self.send(bot_id, calls);
                self.owners.retain(|_, (b, c)| !(b == bot_id && *c == chat));
                self.say(
                    bot_id,
                    chat,
                    "A new conversation starts with your next message.",
                );
                if let Some(key) = key {
                    return vec![command_for(&key, Kind::SessionClose)];
                }
            }
            _ => {}
        }
        Vec::new()
    }

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
            return vec![command_for(&key, Kind::SessionSend(turn))];
        }
        let cfg = &self.bots[bot_id].cfg;
        let start = Start {
            provider: cfg.default_provider.clone(),
            cwd: cfg.cwd.clone(),
            resume: self.saved.sessions.get(&saved_key(bot_id, chat)).cloned(),
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
        let answer = |this: &mut Self, text: &str| {
            this.call(
                bot_id,
                "answerCallbackQuery",
                json!({"callback_query_id": qid, "text": text}),
            );
        };
        let allowed = self
            .bots
            .get(bot_id)
            .is_some_and(|b| b.cfg.allowed_senders.contains(&from));
        if !allowed {
            crate::log_info!("telegram {bot_id}: a button press from {from} refused (not allowed)");
            answer(self, "You are not allowed to answer this.");
            return Vec::new();
        }
        let Some(press) = Press::parse(data) else {
            answer(self, "This request is settled already.");
            return Vec::new();
        };
        let Some(key) = self
            .bots
            .get(bot_id)
            .and_then(|b| b.chats.get(&chat))
            .and_then(|c| c.key.clone())
        else {
            answer(self, "This request is settled already.");
            return Vec::new();
        };
        let Some(a) = self
            .bots
            .get_mut(bot_id)
            .and_then(|b| b.chats.get_mut(&chat))
            .and_then(|c| c.approvals.get_mut(&press.number()))
            .filter(|a| a.outcome.is_none())
        else {
            answer(self, "This request is settled already.");
            return Vec::new();
        };
        let (allow, reply) = match press {
            Press::Allow(_) => (true, None),
            Press::Deny(_) => (false, None),
            Press::Pick(_, qi, oi) => {
                let Some(label) = a.questions.get(qi).and_then(|(_, o)| o.get(oi)).cloned() else {
                    answer(self, "Unknown option.");
                    return Vec::new();
                };
                a.picks[qi] = Some(label.clone());
                if a.picks.iter().any(Option::is_none) {
                    answer(
                        self,
                        &format!("Noted: {label}. Answer the other questions too."),
                    );
                    return Vec::new();
                }
                let answers: serde_json::Map<String, Value> = a
                    .questions
                    .iter()
                    .zip(&a.picks)
                    .map(|((q, _), p)| (q.clone(), json!(p.clone().unwrap_or_default())))
                    .collect();
                (true, Some(json!({"answers": answers})))
            }
        };
        let request_id = a.request_id.clone();
        answer(self, if allow { "Allowed" } else { "Denied" });
        vec![command_for(
            &key,
            Kind::PermissionResolve(Resolve {
                request_id,
                allow,
                answer: reply,
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
        let mut calls = Vec::new();
        match name {
            "session.started" => {
                if let Some(c) = self.chat_mut(&bot, chat) {
                    let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
                    c.provider = text("provider");
                    c.model = text("resolved_model")
                        .filter(|m| !m.is_empty())
                        .or_else(|| text("model"));
                    c.cwd = text("cwd");
                }
            }
            "session.identified" => {
                if let Some(real) = e.get("sdk_session_id").and_then(Value::as_str) {
                    self.owners.insert(real.to_string(), (bot.clone(), chat));
                    self.saved
                        .sessions
                        .insert(saved_key(&bot, chat), real.to_string());
                    self.save();
                }
            }
            "session.text_delta" => {
                let t = e.get("text").and_then(Value::as_str).unwrap_or("");
                self.append(&bot, chat, t, false, &mut calls);
            }
            "session.tool_use" => {
                let tool = e.get("tool").and_then(Value::as_str).unwrap_or("tool");
                let line = format!("\n🔧 {tool}{}\n", tool_line(e.get("input")));
                self.append(&bot, chat, &line, false, &mut calls);
            }
            "permission.request" => self.show_approval(&bot, chat, e, &mut calls),
            "permission.resolved" => {
                let rid = e.get("request_id").and_then(Value::as_str).unwrap_or("");
                let decision = e.get("decision").and_then(Value::as_str).unwrap_or("deny");
                let why = e.get("reason").and_then(Value::as_str).unwrap_or("");
                let Some(c) = self.bots.get_mut(&bot).and_then(|b| b.chats.get_mut(&chat)) else {
                    return;
                };
                let Some(n) = c
                    .approvals
                    .iter()
                    .find(|(_, a)| a.request_id == rid)
                    .map(|(n, _)| *n)
                else {
                    return;
                };
                let Some(a) = c.approvals.get_mut(&n) else {
                    return;
                };
                let picked: Vec<String> = a.picks.iter().flatten().cloned().collect();
                let shown = match (decision, why) {
                    ("allow", _) if !picked.is_empty() => {
                        format!("✅ Answered: {}\n{}", picked.join(", "), a.summary)
                    }
                    ("allow", _) => format!("✅ Allowed\n{}", a.summary),
                    (_, "timeout") => format!("⌛ No answer in time: denied\n{}", a.summary),
                    ("cancelled", _) => format!("Withdrawn\n{}", a.summary),
                    _ => format!("⛔ Denied\n{}", a.summary),
                };
                match a.message_id {
                    Some(id) => {
                        calls.push(decision_edit(chat, id, &shown));
                        c.approvals.remove(&n);
                    }
                    // Its message is on the way: edited when its id is known.
                    None => a.outcome = Some(shown),
                }
            }
            "session.result" | "session.error" => {
                if name == "session.error" {
                    let m = e.get("message").and_then(Value::as_str).unwrap_or("error");
                    // An error is shown even past the reply's cut.
                    let line = format!("\n⚠️ {}", clip_units(m, 1000));
                    self.append(&bot, chat, &line, true, &mut calls);
                }
                if let Some(r) = e.get("sdk_session_id").and_then(Value::as_str)
                    && self
                        .saved
                        .sessions
                        .get(&saved_key(&bot, chat))
                        .map(String::as_str)
                        != Some(r)
                {
                    self.saved
                        .sessions
                        .insert(saved_key(&bot, chat), r.to_string());
                    self.save();
                }
                let Some(c) = self.bots.get_mut(&bot).and_then(|b| b.chats.get_mut(&chat)) else {
                    return;
                };
                c.pending = c.pending.saturating_sub(1);
                if let Some(mut r) = c.reply.take() {
                    r.flush(chat, true, &mut calls);
                    if !r.settled() {
                        c.finishing.push(r);
                    }
                }
            }
            "session.closed" => {
                if let Some(c) = self.bots.get_mut(&bot).and_then(|b| b.chats.get_mut(&chat))
                    && c.key.as_deref() == Some(sid)
                {
                    c.key = None;
                    c.pending = 0;
                }
            }
            _ => {}
        }
        self.send(&bot, calls);
    }

    fn show_approval(&mut self, bot: &str, chat: i64, e: &Value, calls: &mut Vec<Call>) {
        let rid = e
            .get("request_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let tool = e.get("tool").and_then(Value::as_str).unwrap_or("A tool");
        let input = e.get("input");
        let questions: Vec<(String, Vec<String>)> = input
            .and_then(|i| i.get("questions"))
            .and_then(Value::as_array)
            .map(|qs| {
                qs.iter()
                    .take(4)
                    .map(|q| {
                        let text = q.get("question").and_then(Value::as_str).unwrap_or("");
                        let options = q
                            .get("options")
                            .and_then(Value::as_array)
                            .map(|o| {
                                o.iter()
                                    .take(8)
                                    .filter_map(|o| o.get("label").and_then(Value::as_str))
                                    .map(str::to_string)
                                    .collect()
                            })
                            .unwrap_or_default();
                        (text.to_string(), options)
                    })
                    .filter(|(_, o): &(String, Vec<String>)| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let n = self.number();
        let mut rows = Vec::new();
        let (text, summary) = if tool == "AskUserQuestion" && !questions.is_empty() {
            let mut text = String::from("❓ The agent asks:");
            for (qi, (q, options)) in questions.iter().enumerate() {
                text.push_str(&format!("\n\n{q}"));
                for (oi, label) in options.iter().enumerate() {
                    let shown = if questions.len() > 1 {
                        format!("{}. {}", qi + 1, clip_units(label, 40))
                    } else {
                        clip_units(label, 48)
                    };
                    rows.push(
                        json!([{"text": shown, "callback_data": format!("q:{n}:{qi}:{oi}")}]),
                    );
                }
            }
            rows.push(json!([{"text": "Dismiss", "callback_data": format!("d:{n}")}]));
            let summary = questions
                .iter()
                .map(|(q, _)| q.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            (text, summary)
        } else {
            rows.push(json!([
                {"text": "Allow", "callback_data": format!("a:{n}")},
                {"text": "Deny", "callback_data": format!("d:{n}")},
            ]));
            let summary = format!("{tool}{}", tool_line(input));
            (format!("🔐 Approve {summary}?"), summary)
        };
        let picks = vec![None; questions.len()];
        let body = json!({"chat_id": chat, "text": clip_units(&text, MAX_MESSAGE),
                          "reply_markup": {"inline_keyboard": rows}});
        let approval = Approval {
            request_id: rid,
            message_id: None,
            body: body.clone(),
            tries: 0,
            outcome: None,
            unsent: false,
            summary: clip_units(&summary, 1000),
            questions,
            picks,
        };
        if let Some(c) = self.chat_mut(bot, chat) {
            // Anything the chat showed so far comes before the question.
            if let Some(r) = c.reply.as_mut() {
                r.flush(chat, true, calls);
            }
            c.approvals.insert(n, approval);
        }
        calls.push(Call {
            method: "sendMessage",
            body,
            tag: Some(Tag::Approval { chat, number: n }),
        });
    }

    /// Add streamed text to the chat's reply (one per turn, started here); `always`
    /// adds it even past the reply's cut.
    fn append(&mut self, bot: &str, chat: i64, text: &str, always: bool, calls: &mut Vec<Call>) {
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

/// A button press: `a:<n>` allow, `d:<n>` deny, `q:<n>:<question>:<option>` a pick.
enum Press {
    Allow(u64),
    Deny(u64),
    Pick(u64, usize, usize),
}

impl Press {
    fn parse(data: &str) -> Option<Press> {
        let mut parts = data.split(':');
        let kind = parts.next()?;
        let n = parts.next()?.parse().ok()?;
        let press = match kind {
            "a" => Press::Allow(n),
            "d" => Press::Deny(n),
            "q" => Press::Pick(n, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?),
            _ => return None,
        };
        parts.next().is_none().then_some(press)
    }

    fn number(&self) -> u64 {
        match self {
            Press::Allow(n) | Press::Deny(n) | Press::Pick(n, ..) => *n,
        }
    }
}

/// The edit that shows an approval's outcome and removes its buttons.
fn decision_edit(chat: i64, message_id: i64, text: &str) -> Call {
    Call {
        method: "editMessageText",
        body: json!({"chat_id": chat, "message_id": message_id,
                     "text": clip_units(text, MAX_MESSAGE),
                     "reply_markup": {"inline_keyboard": []}}),
        tag: None,
    }
}

fn typing(chat: i64) -> Call {
    Call {
        method: "sendChatAction",
        body: json!({"chat_id": chat, "action": "typing"}),
        tag: None,
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
        format!(" {}", clip_units(&detail, 200))
    }
}

/// `s` cut to `max` UTF-16 units (Telegram's measure), with an ellipsis when cut.
fn clip_units(s: &str, max: usize) -> String {
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
pub fn split(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (head, tail) = split_at_units(rest, MAX_MESSAGE);
        out.push(head.to_string());
        rest = tail;
    }
    out
}

const HELP: &str = "Send a message to talk to the agent; the conversation goes on across messages.\n\
/new – start a new conversation\n/stop – stop the running turn\n/status – provider, working directory, session\n/help – this list\n\
Tool requests come with Allow / Deny buttons.";

#[cfg(test)]
mod tests {
    #[test]
    fn a_trigger_prefix_matches_as_the_command_menu_sends_it() {
        let me = Some("OurBot");
        assert_eq!(
            after_trigger("/ask hi there", "/ask ", me),
            Some("hi there")
        );
        assert_eq!(after_trigger("/ask@ourbot hi", "/ask ", me), Some("hi"));
        assert_eq!(after_trigger("/ask@OURBOT   hi", "/ask", me), Some("hi"));
        assert_eq!(after_trigger("/ask@otherbot hi", "/ask ", me), None);
        assert_eq!(after_trigger("/ask@ hi", "/ask ", me), None);
        assert_eq!(after_trigger("/asking hi", "/ask ", me), None);
        assert_eq!(after_trigger("hello", "/ask ", me), None);
        assert_eq!(after_trigger("/ask@anybot hi", "/ask ", None), Some("hi"));
        // A prefix that is not a command is matched as written.
        assert_eq!(after_trigger("bot, hi", "bot,", me), Some("hi"));
        assert_eq!(
            after_trigger("bot,@ourbot hi", "bot,", me),
            Some("@ourbot hi")
        );
    }

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
        assert_eq!(session_key("main", -100123, 0), "tg-main-m100123");
        assert_eq!(session_key("main", 5, 2), "tg-main-5-2");
        assert!(crate::protocol::valid_id(&session_key("main", -100123, 3)));
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
    fn presses_parse_strictly() {
        assert!(matches!(Press::parse("a:12"), Some(Press::Allow(12))));
        assert!(matches!(
            Press::parse("q:12:1:3"),
            Some(Press::Pick(12, 1, 3))
        ));
        for bad in ["a:forged-request", "a:1:2", "x:1", "", "q:1:2", "d:"] {
            assert!(Press::parse(bad).is_none(), "{bad}");
        }
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

    /// Channels with one bot "b" whose send queue is `queue` (no threads).
    fn channels_with(queue: Sender<Call>) -> Channels {
        let cfg = crate::channels::config::parse(
            "[[channels.telegram]]\ninstance_id = \"b\"\ntoken_env = \"T\"\nallowed_senders = [1]\n",
        )
        .unwrap()
        .remove(0);
        let (handled, _) = crossbeam_channel::unbounded();
        let bot = Bot {
            cfg,
            calls: queue,
            handled,
            stopped: false,
            username: None,
            chats: HashMap::new(),
            seen: VecDeque::new(),
            rate: HashMap::new(),
        };
        Channels {
            bots: HashMap::from([("b".to_string(), bot)]),
            owners: HashMap::from([("s1".to_string(), ("b".to_string(), 1))]),
            saved: Saved::default(),
            state_path: std::env::temp_dir().join(format!("cba-chats-{}.json", std::process::id())),
            saver: crate::sys::saver::Saver::inline(),
            next_number: 100,
        }
    }

    #[test]
    fn an_approval_dropped_by_a_full_queue_is_sent_on_the_next_tick() {
        // A queue with no room: every call is dropped.
        let (full, _keep) = crossbeam_channel::bounded(0);
        let mut ch = channels_with(full);
        ch.on_session_event(&json!({"event": "permission.request", "session_id": "s1",
            "request_id": "r1", "tool": "Bash", "input": {"command": "ls"}}));
        let c = &ch.bots["b"].chats[&1];
        assert_eq!(c.approvals.len(), 1, "kept, not given up");
        assert!(ch.wants_tick());
        // Room again: the tick sends it.
        let (tx, rx) = crossbeam_channel::unbounded();
        ch.bots.get_mut("b").unwrap().calls = tx;
        ch.on_tick();
        let sent: Vec<Call> = rx.try_iter().collect();
        assert!(
            sent.iter().any(|c| c.method == "sendMessage"
                && c.body["text"].as_str().unwrap_or("").contains("ls")),
            "{sent:?}"
        );
        assert!(!ch.wants_tick());
        let _ = std::fs::remove_file(&ch.state_path);
    }
}
