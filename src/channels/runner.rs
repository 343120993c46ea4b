//! The threads of one Telegram bot, feeding the hub:
//! - **poller** (`tg-<id>-poll`): long-polls `getUpdates` and hands every update to the
//!   hub as [`ChannelEvent::Update`]; it confirms a batch to Telegram (the next poll's
//!   offset) only once the hub says it handled it, so a daemon stopped meanwhile gets
//!   the batch again after a restart (and skips what it had handled); with the photo or document of an allowed sender's
//!   message fetched first (bounded; strangers' files are never downloaded); backs off on network errors and 5xx (1 s doubling to
//!   60 s), waits out a 429, clears a webhook on a 409 (`deleteWebhook`), and stops the
//!   channel on a refused token (401/404) with [`ChannelEvent::Stopped`], no tight loop.
//! - **sender** (`tg-<id>-send`): makes the calls the hub queues ([`Call`]) one at a
//!   time, retrying transient failures a few times, and reports each answer the hub
//!   waits for as [`ChannelEvent::Sent`].
//!
//! The channels between them and the hub are bounded; the hub never blocks on them (a
//! full send queue drops the least important calls: typing indicators, intermediate
//! edits).

use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde_json::{Value, json};

use crate::channels::config::Telegram;
use crate::channels::telegram::{Api, ApiError, FetchError, MAX_FILE};
use crate::protocol::commands::Inline;
use crate::protocol::limits::MAX_IMAGE_BYTES;
use crate::sys::budget::{Budget, Permit};

/// Bytes of fetched files handed to the hub and not yet handled (one file can be 20 MB).
pub static FILES: Budget = Budget::new(64 << 20);

/// Calls queued for one bot's sender.
pub const SEND_QUEUE: usize = 256;
/// Update ids the hub reports handled (a batch is at most 100).
const HANDLED_QUEUE: usize = 1024;

/// The hub's ends of one bot's threads.
pub struct Handles {
    /// Bot API calls for the sender.
    pub calls: Sender<Call>,
    /// Each update id the hub has handled, for the poller.
    pub handled: Sender<i64>,
}

/// A chat's file that could not be fetched: its name and why.
#[derive(Debug)]
pub struct FileFailed {
    pub name: String,
    pub why: FetchError,
}

impl std::fmt::Display for FileFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.why)
    }
}

/// News from a bot's threads to the hub.
#[derive(Debug)]
pub enum ChannelEvent {
    Update {
        instance: String,
        update: Value,
        /// The message's photo or document, fetched (or why it could not be).
        files: Vec<Result<Inline, FileFailed>>,
        /// The files' share of [`FILES`], given back when the hub drops the event.
        _bytes: Permit<'static>,
    },
    /// An answer the hub asked to hear about (`tag`): the `result`, or why it failed.
    Sent {
        instance: String,
        tag: Tag,
        result: Result<Value, ApiError>,
    },
    /// The bot's own username (from `getMe`), so `/cmd@otherbot` is not taken as ours.
    Ready {
        instance: String,
        username: Option<String>,
    },
    /// The channel stopped for good (the token was refused).
    Stopped { instance: String, reason: String },
}

/// What an answer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// The message that will hold a chat's streamed reply.
    Reply { chat: i64, turn: u64 },
    /// An edit of that reply's message.
    Edit { chat: i64, turn: u64 },
    /// The message showing approval number `number`.
    Approval { chat: i64, number: u64 },
}

/// One Bot API call for the sender.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: &'static str,
    pub body: Value,
    /// Report the answer back with this tag.
    pub tag: Option<Tag>,
}

/// What the poller needs to know of its bot's config.
struct Poll {
    instance: String,
    wait: u64,
    senders: Vec<i64>,
    groups: Vec<i64>,
    prefix: Option<String>,
    /// The first update not handled yet (kept across restarts by the hub).
    offset: i64,
}

/// Start the poller and the sender of one bot, polling from update `offset`; the hub
/// keeps the returned sender.
pub fn start(
    cfg: &Telegram,
    api: Api,
    events: Sender<ChannelEvent>,
    offset: i64,
) -> std::io::Result<Handles> {
    let instance = cfg.instance_id.clone();
    let (call_tx, call_rx) = crossbeam_channel::bounded(SEND_QUEUE);
    let (handled_tx, handled_rx) = crossbeam_channel::bounded(HANDLED_QUEUE);
    {
        let (api, events) = (api.clone(), events.clone());
        let p = Poll {
            instance: instance.clone(),
            wait: cfg.poll_timeout_seconds,
            senders: cfg.allowed_senders.clone(),
            groups: cfg.allowed_groups.clone(),
            prefix: cfg.trigger_prefix.clone(),
            offset,
        };
        std::thread::Builder::new()
            .name(format!("tg-{instance}-poll"))
            .spawn(move || poll(&p, &api, &events, &handled_rx))?;
    }
    {
        std::thread::Builder::new()
            .name(format!("tg-{instance}-send"))
            .spawn(move || send(&instance, &api, &call_rx, &events))?;
    }
    Ok(Handles {
        calls: call_tx,
        handled: handled_tx,
    })
}

/// Ask the bot's username (until it answers); `None` when the token is refused.
fn hello(p: &Poll, api: &Api, events: &Sender<ChannelEvent>) -> Option<Option<String>> {
    let mut backoff = Duration::from_secs(1);
    loop {
        match api.get_me() {
            Ok(me) => {
                let username = me
                    .get("username")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let _ = events.send(ChannelEvent::Ready {
                    instance: p.instance.clone(),
                    username: username.clone(),
                });
                return Some(username);
            }
            Err(ApiError::Unauthorized(m)) => {
                refused(p, events, m);
                return None;
            }
            Err(ApiError::TooMany(s)) => std::thread::sleep(Duration::from_secs(s.clamp(1, 300))),
            Err(e) => {
                crate::log_warn!(
                    "telegram {}: getMe failed: {e}; retrying in {} s",
                    p.instance,
                    backoff.as_secs()
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

fn refused(p: &Poll, events: &Sender<ChannelEvent>, m: String) {
    crate::log_error!(
        "telegram {}: the bot token was refused ({m}); this channel stops. Check token_env / token_file, then restart the daemon.",
        p.instance
    );
    let _ = events.send(ChannelEvent::Stopped {
        instance: p.instance.clone(),
        reason: m,
    });
}

fn poll(p: &Poll, api: &Api, events: &Sender<ChannelEvent>, handled: &Receiver<i64>) {
    let instance = p.instance.as_str();
    let Some(username) = hello(p, api, events) else {
        return;
    };
    let mut offset: i64 = p.offset;
    let mut backoff = Duration::from_secs(1);
    loop {
        match api.get_updates(offset, p.wait) {
            Ok(updates) => {
                backoff = Duration::from_secs(1);
                // The next poll starts after the batch's last update, whatever the ids
                // before (Telegram may restart its numbering lower after a quiet week).
                let last = updates
                    .iter()
                    .rev()
                    .find_map(|u| u.get("update_id").and_then(Value::as_i64));
                if let Some(last) = last {
                    offset = last + 1;
                }
                for u in updates {
                    let files = fetch_files(p, api, &u, username.as_deref());
                    let size = files
                        .iter()
                        .map(|f| f.as_ref().map_or(0, |i| i.bytes.len()))
                        .sum();
                    // Waits while the hub holds too many fetched bytes already.
                    let bytes = FILES.acquire(size);
                    let ev = ChannelEvent::Update {
                        instance: instance.to_string(),
                        update: u,
                        files,
                        _bytes: bytes,
                    };
                    if events.send(ev).is_err() {
                        return; // the daemon is stopping
                    }
                }
                // The next poll confirms this batch to Telegram: wait until it is handled.
                if let Some(last) = last
                    && !wait_handled(handled, last)
                {
                    return;
                }
            }
            Err(ApiError::Unauthorized(m)) => {
                refused(p, events, m);
                return;
            }
            Err(ApiError::Conflict(m)) => {
                // A webhook is set (removed now), or another poller uses this token (it
                // goes on conflicting: back off so the two do not spin).
                crate::log_warn!("telegram {instance}: {m}; removing any webhook to poll instead");
                if let Err(e) = api.call("deleteWebhook", &json!({"drop_pending_updates": false})) {
                    crate::log_warn!("telegram {instance}: deleteWebhook failed: {e}");
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
            Err(ApiError::TooMany(s)) => std::thread::sleep(Duration::from_secs(s.clamp(1, 300))),
            Err(e) => {
                crate::log_warn!(
                    "telegram {instance}: getUpdates failed: {e}; retrying in {} s",
                    backoff.as_secs()
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// Wait until the hub reports update `last` handled (it handles a batch in order);
/// `false` when the daemon is stopping.
fn wait_handled(handled: &Receiver<i64>, last: i64) -> bool {
    loop {
        match handled.recv() {
            Ok(id) if id == last => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

/// The photo (its largest size) or document of an allowed sender's message, fetched.
fn fetch_files(
    p: &Poll,
    api: &Api,
    u: &Value,
    username: Option<&str>,
) -> Vec<Result<Inline, FileFailed>> {
    let Some(m) = u.get("message") else {
        return Vec::new();
    };
    let from = m.pointer("/from/id").and_then(Value::as_i64).unwrap_or(0);
    let chat = m.pointer("/chat/id").and_then(Value::as_i64).unwrap_or(0);
    let group = chat < 0;
    if !p.senders.contains(&from) || (group && !p.groups.contains(&chat)) {
        return Vec::new();
    }
    // A group message without the prefix runs nothing: its files are not fetched.
    let caption = m.get("caption").and_then(Value::as_str).unwrap_or("");
    if group
        && p.prefix
            .as_deref()
            .is_some_and(|px| super::chats::after_trigger(caption, px, username).is_none())
    {
        return Vec::new();
    }
    let mut wanted = Vec::new();
    if let Some(sizes) = m.get("photo").and_then(Value::as_array) {
        // Sizes come smallest first; the largest that fits an image.
        let best = sizes.iter().rfind(|s| {
            s.get("file_size").and_then(Value::as_u64).unwrap_or(0) <= MAX_IMAGE_BYTES as u64
        });
        if let Some(id) = best.and_then(|s| s.get("file_id")).and_then(Value::as_str) {
            wanted.push((
                id.to_string(),
                "photo.jpg".to_string(),
                true,
                MAX_IMAGE_BYTES as u64,
            ));
        }
    }
    if let Some(d) = m.get("document")
        && let Some(id) = d.get("file_id").and_then(Value::as_str)
    {
        let name = d
            .get("file_name")
            .and_then(Value::as_str)
            .unwrap_or("document");
        wanted.push((id.to_string(), name.to_string(), false, MAX_FILE));
    }
    wanted
        .into_iter()
        .map(|(id, name, image, max)| {
            api.download(&id, max)
                .map(|bytes| Inline {
                    name: name.clone(),
                    bytes,
                    image,
                })
                .map_err(|why| {
                    crate::log_warn!("telegram {}: cannot fetch {name}: {why}", p.instance);
                    FileFailed {
                        name: name.clone(),
                        why,
                    }
                })
        })
        .collect()
}

fn send(instance: &str, api: &Api, calls: &Receiver<Call>, events: &Sender<ChannelEvent>) {
    while let Ok(call) = calls.recv() {
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match api.call(call.method, &call.body) {
                Ok(v) => break Ok(v),
                Err(ApiError::TooMany(s)) if attempt <= 3 => {
                    std::thread::sleep(Duration::from_secs(s.clamp(1, 60)));
                }
                // The edit was made already (an answer lost on the way): done.
                Err(ApiError::NotModified) if call.method == "editMessageText" => {
                    break Ok(Value::Bool(true));
                }
                Err(ApiError::Transient(e)) if attempt <= 3 => {
                    crate::log_debug!("telegram {instance}: {e}; trying again");
                    std::thread::sleep(Duration::from_millis(500 * attempt));
                }
                Err(e) => {
                    crate::log_warn!("telegram {instance}: {} failed: {e}", call.method);
                    break Err(e);
                }
            }
        };
        if let Some(tag) = call.tag {
            let ev = ChannelEvent::Sent {
                instance: instance.to_string(),
                tag,
                result,
            };
            if events.send(ev).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::{Arc, Mutex};

    /// A Bot API whose `getUpdates` answers `updates(offset)`; every poll's offset is
    /// recorded.
    fn fake_api(offsets: Arc<Mutex<Vec<i64>>>, updates: fn(i64) -> Value) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let offsets = offsets.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let (mut line, mut len) = (String::new(), 0);
                    let _ = r.read_line(&mut line);
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    let _ = r.read_exact(&mut body);
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let result = if line.contains("/getUpdates") {
                        let offset = body["offset"].as_i64().unwrap_or(0);
                        offsets.lock().unwrap().push(offset);
                        let u = updates(offset);
                        if u == json!([]) {
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        u
                    } else {
                        json!({"username": "b"})
                    };
                    let out = json!({"ok": true, "result": result}).to_string();
                    let mut s = s;
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{out}",
                        out.len()
                    );
                });
            }
        });
        port
    }

    #[test]
    fn a_batch_is_confirmed_only_once_the_hub_handled_it() {
        let offsets = Arc::new(Mutex::new(Vec::new()));
        let port = fake_api(offsets.clone(), |offset| {
            if offset <= 7 {
                json!([{"update_id": 7, "message": {"text": "hi"}}])
            } else {
                json!([])
            }
        });
        let cfg = crate::channels::config::parse(&format!(
            "[[channels.telegram]]\ntoken_env = \"T\"\napi_base = \"http://127.0.0.1:{port}\"\npoll_timeout_seconds = 1\n"
        ))
        .unwrap()
        .remove(0);
        let api = Api::new(
            &cfg.api_base,
            crate::sys::secret::Secret::new("1:x"),
            ureq::tls::TlsConfig::default(),
            1,
        );
        let (tx, rx) = crossbeam_channel::unbounded();
        let handles = start(&cfg, api, tx, 0).unwrap();
        let got = |rx: &Receiver<ChannelEvent>| loop {
            match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
                ChannelEvent::Update { update, .. } => break update,
                _ => continue,
            }
        };
        assert_eq!(got(&rx)["update_id"], 7);
        // Not handled yet: no poll confirms it (none asks past it).
        std::thread::sleep(Duration::from_millis(600));
        assert!(
            offsets.lock().unwrap().iter().all(|o| *o <= 7),
            "{offsets:?}"
        );
        handles.handled.send(7).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !offsets.lock().unwrap().contains(&8) {
            assert!(std::time::Instant::now() < deadline, "{offsets:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        // A daemon that stops before handling a batch leaves it unconfirmed.
        drop(handles);
    }

    #[test]
    fn a_lower_update_id_moves_the_offset_down_instead_of_looping() {
        // Telegram numbered from 900, then (after a quiet week) from 5.
        let offsets = Arc::new(Mutex::new(Vec::new()));
        let port = fake_api(offsets.clone(), |offset| match offset {
            0..=900 => json!([{"update_id": 900, "message": {"text": "a"}}]),
            901 => json!([{"update_id": 5, "message": {"text": "b"}}]),
            _ => json!([]),
        });
        let cfg = crate::channels::config::parse(&format!(
            "[[channels.telegram]]\ntoken_env = \"T\"\napi_base = \"http://127.0.0.1:{port}\"\npoll_timeout_seconds = 1\n"
        ))
        .unwrap()
        .remove(0);
        let api = Api::new(
            &cfg.api_base,
            crate::sys::secret::Secret::new("1:x"),
            ureq::tls::TlsConfig::default(),
            1,
        );
        let (tx, rx) = crossbeam_channel::unbounded();
        let handles = start(&cfg, api, tx, 0).unwrap();
        for _ in 0..2 {
            loop {
                if let ChannelEvent::Update { update, .. } =
                    rx.recv_timeout(Duration::from_secs(10)).unwrap()
                {
                    handles
                        .handled
                        .send(update["update_id"].as_i64().unwrap())
                        .unwrap();
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(700));
        let seen = offsets.lock().unwrap().clone();
        assert!(
            seen.contains(&6),
            "polls go on from the new numbering: {seen:?}"
        );
        assert!(
            seen.iter().filter(|o| **o == 901).count() == 1,
            "no loop: {seen:?}"
        );
    }
}
