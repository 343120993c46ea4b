//! The hub's side of the Telegram channels: which chat owns which session, what an
//! update asks for, and how a session's events become Bot API calls. Owned by the hub
//! thread (no locks), like every file under `chats/`; the bots' own threads are in
//! [`crate::channels::runner`].
//!
//! This file holds the state (every bot, its chats, which session belongs to which
//! chat), the entry points the hub calls and the queue of calls to each bot. The jobs
//! are one file each:
//!
//! - `admission`: allow lists, the group prefix, the per-sender rate limit and the
//!   duplicate window apply before anything runs; strangers are ignored.
//! - `routing`: an admitted message runs as a turn of the chat's one session
//!   (`tg-<bot>-<chat>`); `/new`, `/stop`, `/status` and `/help` answer here.
//! - `replies`: the reply is one message, edited about once a second as more arrives,
//!   split at 4096 UTF-16 units, with a typing indicator while the turn works. The hub
//!   calls [`Channels::on_tick`] every second while [`Channels::wants_tick`].
//! - `approvals`: each approval is a message with buttons whose presses answer it.
//! - `saved`: `<config dir>/channels-state.json`, the sessions to resume and the poll
//!   offsets.

mod admission;
mod approvals;
mod replies;
mod routing;
mod saved;

pub(crate) use admission::after_trigger;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crossbeam_channel::Sender;
use serde_json::{Value, json};
use ureq::tls::TlsConfig;

use crate::channels::config::Telegram;
use crate::channels::runner::{self, Call, ChannelEvent, Tag};
use crate::channels::telegram::{self, Api, ApiError};
use crate::protocol::commands::Command;
use crate::protocol::events::{Event, SessionEvent};
use crate::sys::ids::fill_random;
use crate::sys::saver::Saver;
use approvals::Approval;
use replies::{Reply, clip_units, split, tool_line};
use saved::{Saved, saved_key};

/// One chat of a bot: its session, the turn's reply and its open approvals.
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

/// One bot: its configuration, its threads' queues and its chats.
struct Bot {
    cfg: Telegram,
    calls: Sender<Call>,
    /// Update ids handled, for the poller (it confirms a batch only then).
    handled: Sender<i64>,
    stopped: bool,
    /// The bot's username (`/cmd@other` in a group is not for us).
    username: Option<String>,
    chats: HashMap<i64, Chat>,
    /// Update ids of the duplicate window, and each sender's recent messages (for the
    /// rate limit): see [`admission`].
    seen: VecDeque<(i64, Instant)>,
    rate: HashMap<i64, VecDeque<Instant>>,
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
    /// The state of each live agent, by session id (`running`, `waiting`, `idle`), as
    /// the hub last said; a session without one has no agent process now.
    agent_states: HashMap<String, String>,
    /// The scoped grants in force, as the hub last said (for `/status` and the
    /// approval messages).
    grants: Vec<GrantView>,
    /// How long a grant lasts (the "Allow for 1 h" button says so).
    grant_for: std::time::Duration,
    /// The owner's policy (no grant button where a rule asks every time).
    policy: std::sync::Arc<crate::policy::Policy>,
}

/// A scoped grant as a chat shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantView {
    /// The session it belongs to (its current id).
    pub session: String,
    /// The approval it was made from.
    pub request_id: String,
    pub tool: String,
    /// What it covers, in words ("commands starting `cargo test`").
    pub scope: String,
    /// When it ends, `HH:MM` UTC.
    pub until_hm: String,
}

impl Channels {
    /// Start every enabled bot whose token can be read; the others are logged and skipped.
    pub fn start(
        configs: Vec<Telegram>,
        config_dir: &Path,
        tls: &TlsConfig,
        env: &dyn Fn(&str) -> Option<String>,
        events: &Sender<ChannelEvent>,
        saver: Saver,
    ) -> Channels {
        let state_path = config_dir.join("channels-state.json");
        let saved = Saved::load(&state_path);
        let mut bots = HashMap::new();
        for cfg in configs.into_iter().filter(|c| c.enabled) {
            let token = match telegram::token(&cfg.token, env) {
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
            let api = Api::new(&cfg.api_base, token, tls.clone(), cfg.poll_timeout_seconds);
            let offset = saved.offsets.get(&cfg.instance_id).copied().unwrap_or(0);
            match runner::start(&cfg, api, events.clone(), offset) {
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
        fill_random(&mut seed);
        Channels {
            bots,
            owners: HashMap::new(),
            saved,
            state_path,
            saver,
            // 52 bits: room to count up, and short in callback data.
            next_number: u64::from_le_bytes(seed) >> 12,
            agent_states: HashMap::new(),
            grants: Vec::new(),
            grant_for: std::time::Duration::from_secs(3600),
            policy: Default::default(),
        }
    }

    /// The owner's policy in force.
    pub fn set_policy(&mut self, policy: std::sync::Arc<crate::policy::Policy>) {
        self.policy = policy;
    }

    /// The grants in force now (the hub's word).
    pub fn set_grants(&mut self, grants: Vec<GrantView>) {
        self.grants = grants;
    }

    /// How long the grants the chats make last.
    pub fn set_grant_for(&mut self, d: std::time::Duration) {
        self.grant_for = d;
    }

    /// The grant's length as its button says it: `1 h`, `30 min`, `20 s`.
    fn grant_label(&self) -> String {
        let s = self.grant_for.as_secs();
        match s {
            _ if s >= 3600 && s.is_multiple_of(3600) => format!("{} h", s / 3600),
            _ if s >= 60 && s.is_multiple_of(60) => format!("{} min", s / 60),
            _ => format!("{s} s"),
        }
    }

    /// The hub's word on the live agents (for `/status`).
    pub fn set_agent_states(&mut self, states: HashMap<String, String>) {
        self.agent_states = states;
    }

    pub fn is_empty(&self) -> bool {
        self.bots.is_empty()
    }

    fn number(&mut self) -> u64 {
        self.next_number += 1;
        self.next_number
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
                other => self.on_sent(
                    bot,
                    other,
                    Err(ApiError::Transient("the send queue is full".into())),
                ),
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
                ..
            } => self.on_update(&instance, &update, files),
        }
    }

    fn on_sent(&mut self, bot: &str, tag: Tag, result: Result<Value, ApiError>) {
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
                if let Some(c) = b.chats.get_mut(&chat) {
                    c.reply_answered(chat, turn, ok, id, &mut calls);
                }
            }
            Tag::Approval { chat, number } => {
                if let Some(c) = b.chats.get_mut(&chat) {
                    c.approval_answered(bot, chat, number, id, &mut calls);
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
                c.flush_replies(*chat, &mut calls);
                c.resend_unsent(*chat, &mut calls);
                c.renew_typing(*chat, &mut calls);
            }
            all.push((name.clone(), calls));
        }
        for (bot, calls) in all {
            self.send(&bot, calls);
        }
    }

    /// A session event the hub emits: the chat that owns the session hears about it.
    pub fn on_session_event(&mut self, e: &SessionEvent) {
        let Some(sid) = e.session_id.as_deref() else {
            return;
        };
        let Some((bot, chat)) = self.owners.get(sid).cloned() else {
            return;
        };
        let mut calls = Vec::new();
        match &e.event {
            Event::Started(d) => {
                if let Some(c) = self.chat_mut(&bot, chat) {
                    c.provider = Some(d.provider.clone());
                    c.model = d
                        .resolved_model
                        .clone()
                        .filter(|m| !m.is_empty())
                        .or_else(|| Some(d.model.clone()));
                    c.cwd = Some(d.cwd.clone());
                }
            }
            Event::Identified { sdk_session_id } => {
                self.owners
                    .insert(sdk_session_id.clone(), (bot.clone(), chat));
                self.saved
                    .sessions
                    .insert(saved_key(&bot, chat), sdk_session_id.clone());
                self.save();
            }
            Event::TextDelta { text, .. } => {
                self.append(&bot, chat, text, false, &mut calls);
            }
            Event::ToolUse { tool, input, .. } => {
                let tool = tool.as_deref().unwrap_or("tool");
                let line = format!("\n🔧 {tool}{}\n", tool_line(Some(input)));
                self.append(&bot, chat, &line, false, &mut calls);
            }
            Event::PermissionRequest {
                request_id,
                tool,
                input,
                ..
            } => self.show_approval(&bot, chat, (request_id, tool.as_deref(), input), &mut calls),
            Event::PermissionResolved {
                request_id,
                decision,
                reason,
            } => self.approval_resolved(
                &bot,
                chat,
                (request_id, *decision, reason.as_deref()),
                &mut calls,
            ),
            Event::Result { .. } | Event::Error { .. } => {
                let real = match &e.event {
                    Event::Error { message, .. } => {
                        // An error is shown even past the reply's cut.
                        let line = format!("\n⚠️ {}", clip_units(message, 1000));
                        self.append(&bot, chat, &line, true, &mut calls);
                        None
                    }
                    Event::Result { sdk_session_id, .. } => sdk_session_id.as_deref(),
                    _ => None,
                };
                if let Some(r) = real
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
                c.finish_reply(chat, &mut calls);
            }
            Event::Closed => {
                if let Some(c) = self.bots.get_mut(&bot).and_then(|b| b.chats.get_mut(&chat))
                    && c.key.as_deref() == Some(sid)
                {
                    c.key = None;
                    c.pending = 0;
                    // Closed mid-turn: what was shown stays, and the next turn writes a
                    // reply of its own.
                    c.finish_reply(chat, &mut calls);
                }
            }
            _ => {}
        }
        self.send(&bot, calls);
    }
}
