//! A fake Telegram Bot API on loopback for the channel tests: `getUpdates` long polling
//! served from a queue of updates, files served by `getFile`, every call recorded (a
//! sent message's id as `_id`), faults scripted per method, and text refused like
//! Telegram refuses it (empty, or over 4096 UTF-16 units).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http;

pub const TOKEN: &str = "4242:fake-bot-token-never-leaks";
pub const ME: i64 = 111;
pub const GROUP: i64 = -500;

/// A scripted answer for the next call of a method.
pub enum Fault {
    Status(&'static str, &'static str),
    Hang(Duration),
}

#[derive(Default)]
pub struct BotState {
    pub updates: VecDeque<Value>,
    pub calls: Vec<(String, Value)>,
    pub next_update: i64,
    pub next_message: i64,
    pub refuse_token: bool,
    pub faults: HashMap<String, VecDeque<Fault>>,
    /// file_id → bytes, served by getFile and /file/bot<token>/<path>.
    pub files: HashMap<String, Vec<u8>>,
}

/// The fake Bot API: `getUpdates` hands out queued updates (waiting up to 1 s when none
/// is queued); every other call is recorded (a sent message's id as `_id`) and answered
/// like Telegram would.
#[derive(Clone)]
pub struct FakeBot {
    pub state: Arc<(Mutex<BotState>, Condvar)>,
    pub port: u16,
}

pub const UNAUTHORIZED: &str = r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#;

impl FakeBot {
    pub fn start() -> FakeBot {
        let state: Arc<(Mutex<BotState>, Condvar)> = Arc::default();
        let st = state.clone();
        let port = http::serve(move |mut s| {
            let Ok(Some(req)) = http::read_request(&mut s) else {
                return;
            };
            let path = req.line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (lock, cv) = &*st;
            if let Some(file) = path.strip_prefix(&format!("/file/bot{TOKEN}/")) {
                let bytes = lock.lock().unwrap().files.get(file).cloned();
                let _ = match bytes {
                    Some(b) => std::io::Write::write_all(
                        &mut s,
                        &[format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", b.len()).into_bytes(), b].concat(),
                    ),
                    None => http::json_reply(&mut s, "404 Not Found", "{}"),
                };
                return;
            }
            let Some(method) = path
                .strip_prefix(&format!("/bot{TOKEN}/"))
                .map(str::to_string)
            else {
                let _ = http::json_reply(&mut s, "401 Unauthorized", UNAUTHORIZED);
                return;
            };
            let mut g = lock.lock().unwrap();
            if g.refuse_token {
                g.calls.push((format!("{method}!"), req.body.clone()));
                drop(g);
                let _ = http::json_reply(&mut s, "401 Unauthorized", UNAUTHORIZED);
                return;
            }
            // Like Telegram: no empty text, nothing over 4096 UTF-16 units.
            if let Some(t) = req.body.get("text").and_then(Value::as_str)
                && (t.trim().is_empty() || t.encode_utf16().count() > 4096)
            {
                g.calls.push((format!("{method}!"), req.body.clone()));
                drop(g);
                let _ = http::json_reply(
                    &mut s,
                    "400 Bad Request",
                    r#"{"ok":false,"error_code":400,"description":"Bad Request: message text is empty or too long"}"#,
                );
                return;
            }
            let fault = g.faults.get_mut(&method).and_then(VecDeque::pop_front);
            if let Some(f) = fault {
                g.calls.push((format!("{method}!"), req.body.clone()));
                cv.notify_all();
                drop(g);
                match f {
                    Fault::Status(status, body) => {
                        let _ = http::json_reply(&mut s, status, body);
                    }
                    Fault::Hang(d) => std::thread::sleep(d),
                }
                return;
            }
            let result = match method.as_str() {
                "getUpdates" => {
                    let offset = req.body["offset"].as_i64().unwrap_or(0);
                    g.updates
                        .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                    if g.updates.is_empty() {
                        g = cv.wait_timeout(g, Duration::from_secs(1)).unwrap().0;
                    }
                    json!(g.updates.iter().cloned().collect::<Vec<_>>())
                }
                "getMe" => json!({"id": 4242, "is_bot": true, "username": "FakeBot"}),
                "getFile" => {
                    let id = req.body["file_id"].as_str().unwrap_or("").to_string();
                    let size = g.files.get(&id).map(Vec::len);
                    g.calls.push((method.clone(), req.body.clone()));
                    json!({"file_id": id, "file_size": size, "file_path": id})
                }
                "sendMessage" => {
                    g.next_message += 1;
                    let id = g.next_message;
                    let mut body = req.body.clone();
                    body["_id"] = json!(id);
                    g.calls.push((method.clone(), body));
                    cv.notify_all();
                    json!({"message_id": id, "chat": {"id": req.body["chat_id"]}, "text": req.body["text"]})
                }
                _ => {
                    g.calls.push((method.clone(), req.body.clone()));
                    cv.notify_all();
                    json!(true)
                }
            };
            drop(g);
            let _ = http::json_reply(
                &mut s,
                "200 OK",
                &json!({"ok": true, "result": result}).to_string(),
            );
        });
        FakeBot { state, port }
    }

    pub fn fault(&self, method: &str, f: Fault) {
        self.state
            .0
            .lock()
            .unwrap()
            .faults
            .entry(method.into())
            .or_default()
            .push_back(f);
    }

    /// Queue an update (a fresh `update_id`, returned).
    pub fn push(&self, mut update: Value) -> i64 {
        let (lock, cv) = &*self.state;
        let mut g = lock.lock().unwrap();
        g.next_update += 1;
        let id = g.next_update;
        update["update_id"] = json!(id);
        g.updates.push_back(update);
        cv.notify_all();
        id
    }

    /// Deliver an update again with the same id (Telegram may, after a restart of ours).
    pub fn redeliver(&self, update: Value) {
        let (lock, cv) = &*self.state;
        lock.lock().unwrap().updates.push_back(update);
        cv.notify_all();
    }

    pub fn message_update(from: i64, chat: i64, text: &str) -> Value {
        json!({"message": {"message_id": 1, "from": {"id": from, "is_bot": false},
            "chat": {"id": chat, "type": if chat < 0 { "group" } else { "private" }}, "text": text}})
    }

    pub fn message(&self, from: i64, chat: i64, text: &str) -> i64 {
        self.push(Self::message_update(from, chat, text))
    }

    pub fn press(&self, from: i64, chat: i64, data: &str) {
        self.push(
            json!({"callback_query": {"id": format!("cq-{data}"), "from": {"id": from},
            "message": {"message_id": 9, "chat": {"id": chat}}, "data": data}}),
        );
    }

    /// Wait until a recorded call matches.
    pub fn wait(&self, what: &str, f: impl Fn(&str, &Value) -> bool) -> (String, Value) {
        let (lock, cv) = &*self.state;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut g = lock.lock().unwrap();
        loop {
            if let Some(c) = g.calls.iter().find(|(m, b)| f(m, b)) {
                return c.clone();
            }
            let now = Instant::now();
            assert!(now < deadline, "no {what}; calls: {:?}", g.calls);
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    pub fn calls(&self) -> Vec<(String, Value)> {
        self.state.0.lock().unwrap().calls.clone()
    }

    pub fn count(&self, method: &str) -> usize {
        self.calls().iter().filter(|(m, _)| m == method).count()
    }

    pub fn forget_calls(&self) {
        self.state.0.lock().unwrap().calls.clear();
    }

    /// What chat `chat` shows now: each message's latest text, in order.
    pub fn shown(&self, chat: i64) -> Vec<String> {
        let mut order = Vec::new();
        let mut text: HashMap<i64, String> = HashMap::new();
        for (m, b) in self.calls() {
            if b["chat_id"] != chat {
                continue;
            }
            let t = b["text"].as_str().unwrap_or("").to_string();
            match m.as_str() {
                "sendMessage" => {
                    let id = b["_id"].as_i64().unwrap();
                    order.push(id);
                    text.insert(id, t);
                }
                "editMessageText" => {
                    text.insert(b["message_id"].as_i64().unwrap(), t);
                }
                _ => {}
            }
        }
        order.iter().map(|id| text[id].clone()).collect()
    }

    /// Wait until one message of `chat` shows exactly `text`.
    pub fn wait_shown(&self, chat: i64, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(t) = self.shown(chat).into_iter().find(|t| f(t)) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "no {what}; chat shows {:?}",
                self.shown(chat)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The first approval message among the calls recorded, with its buttons.
pub fn approval(bot: &FakeBot) -> (String, Vec<(String, String)>) {
    let (_, ask) = bot.wait("an approval", |m, b| {
        m == "sendMessage" && b.get("reply_markup").is_some()
    });
    let buttons = ask["reply_markup"]["inline_keyboard"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter())
        .map(|b| {
            (
                b["text"].as_str().unwrap().to_string(),
                b["callback_data"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (ask["text"].as_str().unwrap().to_string(), buttons)
}

pub fn button<'a>(buttons: &'a [(String, String)], label: &str) -> &'a str {
    &buttons
        .iter()
        .find(|(t, _)| t == label)
        .unwrap_or_else(|| panic!("no {label} in {buttons:?}"))
        .1
}
