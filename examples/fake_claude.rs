//! A scripted stand-in for the `claude` CLI, speaking its stream-json control protocol,
//! for the daemon's tests and benchmarks. `cargo test` builds it as an example.
//!
//! The first word of each user prompt picks the behaviour:
//! - `say TEXT` (and anything unknown): stream TEXT as a text block, then a result
//! - `think TEXT`: a streamed thinking block, then TEXT as text
//! - `tool NAME JSON`: a tool_use, a `can_use_tool` request, and the tool's result
//!   according to the answer (an allow without `updatedInput` is an error, as in the CLI;
//!   an allowed `Write` writes `content` to `file_path`, relative to the working directory)
//! - `toolcancel NAME JSON`: asks, then withdraws the request with `control_cancel_request`
//! - `slow N`: N text deltas 50 ms apart, stopping early on an `interrupt`
//! - `flood N`: N text deltas as fast as possible (benchmarks)
//! - `crash`: some output, then exit 3; `crashquiet [N]`: exit 4 with no output, the
//!   first N times (default 1) per `FAKE_CLAUDE_STATE` directory, then answer
//! - `exitidle`: answer, then exit 0 while idle
//! - `recall`: answer with the first prompt of the conversation (proves a resume kept it)
//! - `bgagent`: launch a background agent and finish the turn; 400 ms later the agent's
//!   own lines (with `parent_tool_use_id`), a `task_notification` and a turn the CLI
//!   starts by itself, with its own result
//! - `subagent`: a foreground subagent streaming inside the turn
//! - `repair`: the assembled message's text differs from what was streamed
//! - `image`: a tool result carrying a base64 image
//! - `biginput N`: a tool approval whose input has an N-byte string
//! - `earlytool`: a tool approval before `system/init` names the session
//! - `grandchild`: start `sleep 300` in the process group, report its pid, then answer
//! - `hang`: ignore SIGTERM and stdin and never answer (tests the SIGKILL path)
//! - `oomkill`: some output, then SIGKILL itself (as the OOM killer would)
//! - `garbage`: non-JSON lines, a 17 MiB line and an unknown message type, then an answer
//! - `bigresult`: a 9 MiB tool result (over the daemon's event size limit)
//! - `orphan`: leave a short-lived background job orphaned, then answer
//! - `/compact`: compact as Claude Code 2.1.331 does (an echo marked `isReplay`, a result
//!   with `local_command` and no assistant message)
//!
//! `FAKE_CLAUDE_LOG` (a file) gets one JSON line per start (argv, cwd, environment) and per
//! stdin line. Messages are written to `$HOME/.claude/projects/<slug>/<id>.jsonl` like a
//! transcript (a fork copies it up to `--resume-session-at`); with `FAKE_CLAUDE_REPLAY=1`
//! a resumed session replays it (stream events, messages and a result) before the next
//! turn; with `FAKE_CLAUDE_REPLAY=every`, any session does so before every turn (the
//! replayed result carries the last answer's text). With `FAKE_CLAUDE_RESULT_IDS` each
//! result names the prompt it answers (`user_message_uuid`), as 2.1.3xx does. Like the API, it refuses to resume a transcript with unsigned thinking blocks.
//! `rewind_files` needs `CLAUDE_CODE_ENABLE_SDK_FILE_CHECKPOINTING` and the uuid of a
//! prompt in the transcript. With `FAKE_CLAUDE_ROOT=1`, `bypassPermissions` is refused
//! as the real CLI refuses it to root.

use std::io::{BufRead, Write};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use serde_json::{Value, json};

struct Fake {
    session_id: String,
    init_sent: bool,
    rx: Receiver<Value>,
    transcript: Option<std::path::PathBuf>,
    msg_seq: u64,
    pending_interrupt: bool,
    resumed: bool,
    first_prompt: Option<String>,
    prompt_uuid: Option<String>,
    /// The uuid of the prompt being answered (named in results with `FAKE_CLAUDE_RESULT_IDS`).
    answering: Option<String>,
}

fn uuid() -> String {
    coding_bridge_agent::testing::uuid_v4()
}

thread_local! {
    static HELD: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// Write one line; with `FAKE_CLAUDE_COALESCE` set, a turn's lines are held and written
/// in one go at its result (so the daemon reads them in one batch).
fn out(v: &Value) {
    let coalesce = std::env::var_os("FAKE_CLAUDE_COALESCE").is_some();
    // Anything the daemon must answer goes out at once, with what was held before it.
    let is_result =
        v["type"] == "result" || v["type"] == "control_response" || v["type"] == "control_request";
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        if coalesce {
            let buf = h.get_or_insert_with(Vec::new);
            let _ = writeln!(buf, "{v}");
            if is_result {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(buf);
                let _ = o.flush();
                buf.clear();
            }
        } else {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{v}");
            let _ = o.flush();
        }
    });
}

fn log(v: Value) {
    if let Ok(path) = std::env::var("FAKE_CLAUDE_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(f, "{v}");
    }
}

fn slug(cwd: &std::path::Path) -> String {
    cwd.to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

impl Fake {
    fn record(&mut self, v: &Value) {
        if let Some(p) = &self.transcript {
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                let _ = writeln!(f, "{v}");
            }
        }
    }

    fn stream(&self, event: Value) {
        out(
            &json!({"type": "stream_event", "event": event, "session_id": self.session_id, "parent_tool_use_id": null, "uuid": uuid()}),
        );
    }

    fn next_msg_id(&mut self) -> String {
        self.msg_seq += 1;
        format!("msg_fake_{}_{}", std::process::id(), self.msg_seq)
    }

    fn assistant(&mut self, msg_id: &str, content: Value) {
        let v = json!({"type": "assistant", "message": {"id": msg_id, "role": "assistant", "content": [content]},
                       "parent_tool_use_id": null, "session_id": self.session_id, "uuid": uuid()});
        self.record(&v);
        out(&v);
    }

    fn text_block(&mut self, text: &str, chunks: usize) {
        let id = self.next_msg_id();
        self.stream(json!({"type": "message_start", "message": {"id": id, "content": []}}));
        self.stream(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
        let chars: Vec<char> = text.chars().collect();
        let per = chars.len().div_ceil(chunks.max(1)).max(1);
        for part in chars.chunks(per) {
            let s: String = part.iter().collect();
            self.stream(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": s}}));
        }
        // The real CLI sends the assembled message before the block stop.
        self.assistant(&id, json!({"type": "text", "text": text}));
        self.stream(json!({"type": "content_block_stop", "index": 0}));
        self.stream(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}));
        self.stream(json!({"type": "message_stop"}));
    }

    fn result(&self, subtype: &str, is_error: bool, text: &str) {
        self.result_for(self.answering.as_deref(), subtype, is_error, text);
    }

    /// A result; with `FAKE_CLAUDE_RESULT_IDS`, naming the prompt it answers as Claude
    /// Code 2.1.3xx does.
    fn result_for(&self, prompt: Option<&str>, subtype: &str, is_error: bool, text: &str) {
        let mut r = json!({"type": "result", "subtype": subtype, "is_error": is_error, "result": text,
                           "total_cost_usd": 0.0123, "session_id": self.session_id, "uuid": uuid(), "num_turns": 1});
        if std::env::var_os("FAKE_CLAUDE_RESULT_IDS").is_some()
            && let Some(p) = prompt
        {
            r["user_message_uuid"] = json!(p);
            r["user_message_uuids"] = json!([p]);
        }
        out(&r);
    }

    /// Wait for the control_response to `request_id`, answering other control requests.
    fn wait_response(&mut self, request_id: &str) -> Option<Value> {
        loop {
            let v = self.rx.recv().ok()?;
            if v["type"] == "control_response" && v["response"]["request_id"] == request_id {
                return Some(v["response"]["response"].clone());
            }
            self.handle_control(&v);
        }
    }

    /// Answer a control request from the daemon. Returns true for an interrupt.
    fn handle_control(&mut self, v: &Value) -> bool {
        if v["type"] != "control_request" {
            return false;
        }
        let rid = v["request_id"].as_str().unwrap_or("");
        let sub = v["request"]["subtype"].as_str().unwrap_or("");
        match sub {
            "initialize" => {
                if let Some(ms) = std::env::var("FAKE_CLAUDE_INIT_DELAY_MS")
                    .ok()
                    .and_then(|m| m.parse().ok())
                {
                    std::thread::sleep(Duration::from_millis(ms));
                }
                out(
                    &json!({"type": "control_response", "response": {"subtype": "success", "request_id": rid, "response": {
                        "commands": [
                            {"name": "review", "description": "Review the diff", "argumentHint": "[target]"},
                            {"name": "compact", "description": "Compact the conversation", "argumentHint": "", "aliases": ["squash"]}
                        ],
                        "models": [], "account": {"email": "tester@example.com"}, "pid": std::process::id()
                    }}}),
                );
            }
            "rewind_files" => {
                let uuid = v["request"]["user_message_id"].as_str().unwrap_or("");
                let is_prompt = self
                    .transcript
                    .as_ref()
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .any(|r| {
                        r["uuid"] == uuid
                            && r["type"] == "user"
                            && r["message"]["content"].is_string()
                    });
                let error = if std::env::var("CLAUDE_CODE_ENABLE_SDK_FILE_CHECKPOINTING").is_err() {
                    Some("File rewinding is not enabled.")
                } else if std::env::var("FAKE_CLAUDE_REWIND_FAIL").is_ok() || !is_prompt {
                    Some("No file checkpoint found for this message.")
                } else {
                    None
                };
                let resp = match error {
                    Some(e) => json!({"subtype": "error", "request_id": rid, "error": e}),
                    None => {
                        json!({"subtype": "success", "request_id": rid, "response": {"canRewind": true}})
                    }
                };
                out(&json!({"type": "control_response", "response": resp}));
            }
            _ => {
                out(
                    &json!({"type": "control_response", "response": {"subtype": "success", "request_id": rid, "response": {}}}),
                );
                if sub == "interrupt" {
                    self.pending_interrupt = true;
                    return true;
                }
            }
        }
        false
    }

    fn turn(&mut self, prompt: &str) {
        if prompt == "earlytool" {
            let rid = uuid();
            out(
                &json!({"type": "control_request", "request_id": rid, "request": {
                "subtype": "can_use_tool", "tool_name": "Bash", "input": {"command": "true"}, "tool_use_id": "toolu_early"}}),
            );
            out(
                &json!({"type": "system", "subtype": "init", "session_id": self.session_id, "model": "fake-model-1"}),
            );
            let answer = self.wait_response(&rid);
            let text = format!(
                "early {}",
                answer.map(|a| a["behavior"].clone()).unwrap_or_default()
            );
            self.text_block(&text, 1);
            self.result("success", false, &text);
            return;
        }
        let replay = std::env::var("FAKE_CLAUDE_REPLAY").ok();
        let every = replay.as_deref() == Some("every");
        if !self.init_sent || every {
            let first = !self.init_sent;
            self.init_sent = true;
            if replay.is_some()
                && (self.resumed || every)
                && let Some(p) = &self.transcript
                && let Ok(text) = std::fs::read_to_string(p)
            {
                // Like some CLI versions on resume: the stream of the last answer, every
                // message again, and the last result.
                let records: Vec<Value> = text
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect();
                if let Some(last) = records.iter().rev().find(|r| r["type"] == "assistant") {
                    let id = last["message"]["id"].clone();
                    let text = last["message"]["content"][0]["text"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    self.stream(json!({"type": "message_start", "message": {"id": id}}));
                    self.stream(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
                    self.stream(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}));
                    self.stream(json!({"type": "content_block_stop", "index": 0}));
                }
                for r in &records {
                    println!("{r}");
                }
                // The replayed result answers the transcript's last prompt.
                let last_prompt = records
                    .iter()
                    .rev()
                    .find(|r| r["type"] == "user" && r["message"]["content"].is_string())
                    .and_then(|r| r["uuid"].as_str());
                let replayed = if every {
                    text_of_last(&records)
                } else {
                    "replayed".into()
                };
                self.result_for(last_prompt, "success", false, &replayed);
            }
            if first {
                out(
                    &json!({"type": "system", "subtype": "init", "session_id": self.session_id, "cwd": std::env::current_dir().unwrap_or_default(), "tools": ["Bash"], "model": "fake-model-1"}),
                );
            } else {
                out(&json!({"type": "system", "subtype": "init", "session_id": self.session_id}));
            }
        } else {
            out(&json!({"type": "system", "subtype": "init", "session_id": self.session_id}));
        }
        self.pending_interrupt = false;
        // Filed under the uuid the daemon gave it, as the real CLI does.
        let id = self.prompt_uuid.take().unwrap_or_else(uuid);
        self.answering = Some(id.clone());
        let user = json!({"type": "user", "message": {"role": "user", "content": prompt}, "uuid": id, "session_id": self.session_id});
        self.record(&user);
        if prompt.trim() == "/compact" {
            return self.compact();
        }
        if self.first_prompt.is_none() {
            self.first_prompt = Some(prompt.to_string());
        }
        let (word, rest) = prompt.split_once(' ').unwrap_or((prompt, ""));
        match word {
            "think" => {
                let id = self.next_msg_id();
                self.stream(json!({"type": "message_start", "message": {"id": id}}));
                self.stream(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}));
                self.stream(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "let me "}}));
                self.stream(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "think"}}));
                self.assistant(&id, json!({"type": "thinking", "thinking": "let me think"}));
                self.stream(json!({"type": "content_block_stop", "index": 0}));
                self.text_block(rest, 2);
                self.result("success", false, rest);
            }
            "tool" | "toolcancel" => {
                let (name, input) = rest.split_once(' ').unwrap_or((rest, "{}"));
                let input: Value = serde_json::from_str(input).unwrap_or(json!({}));
                let tool_id = format!("toolu_{}", &uuid()[..8]);
                let id = self.next_msg_id();
                self.stream(json!({"type": "message_start", "message": {"id": id}}));
                self.stream(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}));
                self.stream(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": input.to_string()}}));
                self.assistant(
                    &id,
                    json!({"type": "tool_use", "id": tool_id, "name": name, "input": input}),
                );
                let rid = uuid();
                out(
                    &json!({"type": "control_request", "request_id": rid, "request": {
                    "subtype": "can_use_tool", "tool_name": name, "input": input, "tool_use_id": tool_id,
                    "display_name": name, "title": format!("Allow {name}?"), "description": "a fake tool call"}}),
                );
                self.stream(json!({"type": "content_block_stop", "index": 0}));
                let (content, is_error) = if word == "toolcancel" {
                    std::thread::sleep(Duration::from_millis(200));
                    out(&json!({"type": "control_cancel_request", "request_id": rid}));
                    ("cancelled".to_string(), true)
                } else {
                    match self.wait_response(&rid) {
                        Some(r) if r["behavior"] == "allow" => match r.get("updatedInput") {
                            Some(u) if name == "Write" => write_file(u),
                            Some(u) => (format!("ran with {u}"), false),
                            None => ("updatedInput is required".to_string(), true),
                        },
                        Some(r) => (r["message"].as_str().unwrap_or("denied").to_string(), true),
                        None => return,
                    }
                };
                let tr = json!({"type": "user", "message": {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": tool_id, "content": content, "is_error": is_error}]},
                    "session_id": self.session_id, "uuid": uuid()});
                self.record(&tr);
                out(&tr);
                self.text_block("after tool", 1);
                self.result("success", false, &content);
            }
            "slow" => {
                let n: usize = rest.trim().parse().unwrap_or(20);
                let id = self.next_msg_id();
                self.stream(json!({"type": "message_start", "message": {"id": id}}));
                self.stream(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
                for i in 0..n {
                    if self.pending_interrupt {
                        break;
                    }
                    self.stream(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("{i} ")}}));
                    match self.rx.recv_timeout(Duration::from_millis(50)) {
                        Ok(v) => {
                            self.handle_control(&v);
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => std::process::exit(0),
                    }
                }
                if self.pending_interrupt {
                    // As 2.1.19x: the open block is never stopped.
                    out(
                        &json!({"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": "[Request interrupted by user]"}]}, "uuid": uuid(), "session_id": self.session_id}),
                    );
                    out(
                        &json!({"type": "result", "subtype": "error_during_execution", "is_error": true, "terminal_reason": "aborted_streaming",
                                "total_cost_usd": 0.001, "session_id": self.session_id, "uuid": uuid()}),
                    );
                } else {
                    self.stream(json!({"type": "content_block_stop", "index": 0}));
                    self.result("success", false, "slow done");
                }
            }
            "flood" => {
                let n: usize = rest.trim().parse().unwrap_or(1000);
                let id = self.next_msg_id();
                self.stream(json!({"type": "message_start", "message": {"id": id}}));
                self.stream(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
                let sid = self.session_id.clone();
                let mut o = std::io::BufWriter::new(std::io::stdout().lock());
                for i in 0..n {
                    let _ = writeln!(
                        o,
                        "{{\"type\":\"stream_event\",\"event\":{{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"d{i} \"}}}},\"session_id\":\"{sid}\"}}"
                    );
                }
                let _ = o.flush();
                drop(o);
                self.stream(json!({"type": "content_block_stop", "index": 0}));
                self.result("success", false, "flooded");
            }
            "floodlines" => {
                // As the real CLI writes: one line per write(2) (stdout is line-buffered).
                let n: usize = rest.trim().parse().unwrap_or(1000);
                let id = self.next_msg_id();
                self.stream(json!({"type": "message_start", "message": {"id": id}}));
                self.stream(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
                let sid = self.session_id.clone();
                let mut o = std::io::stdout().lock();
                for i in 0..n {
                    let _ = writeln!(
                        o,
                        "{{\"type\":\"stream_event\",\"event\":{{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"d{i} \"}}}},\"session_id\":\"{sid}\"}}"
                    );
                }
                drop(o);
                self.stream(json!({"type": "content_block_stop", "index": 0}));
                self.result("success", false, "flooded");
            }
            "crash" => {
                self.stream(json!({"type": "message_start", "message": {"id": "m_crash"}}));
                self.stream(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
                self.stream(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "partial"}}));
                eprintln!("boom: the fake CLI crashed");
                std::process::exit(3);
            }
            "oomkill" => {
                self.stream(json!({"type": "message_start", "message": {"id": "m_oom"}}));
                self.stream(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
                self.stream(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "working"}}));
                // SAFETY: kill(2) on ourselves.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
            "crashquiet" => {
                let times: u32 = rest.trim().parse().unwrap_or(1);
                let marker = std::env::var("FAKE_CLAUDE_STATE")
                    .ok()
                    .map(|d| std::path::Path::new(&d).join("crashes"));
                if let Some(m) = marker {
                    let n: u32 = std::fs::read_to_string(&m)
                        .ok()
                        .and_then(|t| t.trim().parse().ok())
                        .unwrap_or(0);
                    if n < times {
                        let _ = std::fs::write(&m, (n + 1).to_string());
                        eprintln!("starting up\nquiet crash number {}", n + 1);
                        std::process::exit(4);
                    }
                }
                self.text_block("recovered", 1);
                self.result("success", false, "recovered");
            }
            "spawnkids" => {
                // A tool's shell in our process group, and a job that left it with
                // setsid (as `nohup … &` or a detached spawn would): their pids and ours
                // go to FAKE_CLAUDE_STATE/kids.
                let mut pids = vec![std::process::id()];
                let plain = std::process::Command::new("sleep").arg("300").spawn();
                let mut detached = std::process::Command::new("sleep");
                detached.arg("301");
                // SAFETY: setsid is async-signal-safe.
                unsafe {
                    std::os::unix::process::CommandExt::pre_exec(&mut detached, || {
                        libc::setsid();
                        Ok(())
                    });
                }
                for child in [plain, detached.spawn()].into_iter().flatten() {
                    pids.push(child.id());
                    std::mem::forget(child);
                }
                if let Ok(dir) = std::env::var("FAKE_CLAUDE_STATE") {
                    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
                    let _ = std::fs::write(format!("{dir}/kids"), list.join(" "));
                }
                self.text_block("kids started", 1);
                self.result("success", false, "kids started");
            }
            "exitidle" => {
                self.text_block("bye for now", 1);
                self.result("success", false, "bye for now");
                std::thread::sleep(Duration::from_millis(100));
                std::process::exit(0);
            }
            "recall" => {
                let text = format!(
                    "first prompt was: {}",
                    self.first_prompt.clone().unwrap_or_default()
                );
                self.text_block(&text, 1);
                self.result("success", false, &text);
            }
            "bgagent" => {
                let tool_id = format!("toolu_bg{}", &uuid()[..6]);
                let id = self.next_msg_id();
                self.stream(json!({"type": "message_start", "message": {"id": id}}));
                self.assistant(&id, json!({"type": "tool_use", "id": tool_id, "name": "Agent", "input": {"description": "bg", "prompt": "work", "run_in_background": true}}));
                out(
                    &json!({"type": "system", "subtype": "task_started", "task_id": "t1", "tool_use_id": tool_id, "session_id": self.session_id}),
                );
                let tr = json!({"type": "user", "message": {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": tool_id, "content": "Async agent launched successfully."}]},
                    "session_id": self.session_id, "uuid": uuid()});
                self.record(&tr);
                out(&tr);
                self.text_block("agent launched", 1);
                self.result("success", false, "agent launched");
                std::thread::sleep(Duration::from_millis(400));
                let sub = json!({"type": "assistant", "message": {"id": self.next_msg_id(), "role": "assistant", "content": [{"type": "text", "text": "subagent working"}]},
                                 "parent_tool_use_id": tool_id, "session_id": self.session_id, "uuid": uuid()});
                out(&sub);
                out(
                    &json!({"type": "system", "subtype": "task_notification", "task_id": "t1", "tool_use_id": tool_id, "status": "completed", "session_id": self.session_id}),
                );
                out(
                    &json!({"type": "system", "subtype": "init", "session_id": self.session_id, "model": "fake-model-1"}),
                );
                // Give a prompt sent meanwhile time to arrive: it must wait for this turn.
                std::thread::sleep(Duration::from_millis(300));
                self.text_block("background agent finished", 2);
                out(
                    &json!({"type": "result", "subtype": "success", "is_error": false, "result": "background agent finished",
                            "total_cost_usd": 0.001, "session_id": self.session_id, "uuid": uuid(), "origin": {"kind": "task-notification"}}),
                );
            }
            "subagent" => {
                let tool_id = "toolu_fg1";
                let id = self.next_msg_id();
                self.stream(json!({"type": "message_start", "message": {"id": id}}));
                self.assistant(&id, json!({"type": "tool_use", "id": tool_id, "name": "Agent", "input": {"description": "fg", "prompt": "work"}}));
                // The subagent streams with its own block indexes, interleaved with nothing
                // of the main agent's.
                let sub = |e: Value| {
                    out(
                        &json!({"type": "stream_event", "event": e, "parent_tool_use_id": tool_id, "session_id": "x"}),
                    )
                };
                sub(json!({"type": "message_start", "message": {"id": "msg_sub1"}}));
                sub(
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                );
                sub(
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "sub text"}}),
                );
                out(
                    &json!({"type": "assistant", "message": {"id": "msg_sub1", "content": [{"type": "text", "text": "sub text"}]}, "parent_tool_use_id": tool_id, "uuid": uuid()}),
                );
                sub(json!({"type": "content_block_stop", "index": 0}));
                let tr = json!({"type": "user", "message": {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": tool_id, "content": "sub done"}]}, "session_id": self.session_id, "uuid": uuid()});
                out(&tr);
                self.text_block("main done", 1);
                self.result("success", false, "main done");
            }
            "repair" => {
                let id = self.next_msg_id();
                self.stream(json!({"type": "message_start", "message": {"id": id}}));
                self.stream(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
                self.stream(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "helo wrld"}}));
                self.stream(json!({"type": "content_block_stop", "index": 0}));
                self.assistant(&id, json!({"type": "text", "text": "hello world"}));
                self.result("success", false, "hello world");
            }
            "image" => {
                let tr = json!({"type": "user", "message": {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_img", "content": [
                        {"type": "text", "text": "a screenshot"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgoAAAANSUhEUg"}}]}]},
                    "session_id": self.session_id, "uuid": uuid()});
                out(&tr);
                self.text_block("seen", 1);
                self.result("success", false, "seen");
            }
            "biginput" => {
                let n: usize = rest.trim().parse().unwrap_or(1 << 20);
                let input = json!({"file_path": "big.txt", "content": "z".repeat(n)});
                let rid = uuid();
                out(
                    &json!({"type": "control_request", "request_id": rid, "request": {
                    "subtype": "can_use_tool", "tool_name": "Write", "input": input, "tool_use_id": "toolu_big"}}),
                );
                let answer = self.wait_response(&rid);
                let got = answer
                    .as_ref()
                    .and_then(|a| a["updatedInput"]["content"].as_str())
                    .map(str::len)
                    .unwrap_or(0);
                let text = format!("allowed with {got} bytes");
                self.text_block(&text, 1);
                self.result("success", false, &text);
            }
            "garbage" => {
                println!("this is not json");
                println!("[1, 2, 3]");
                println!("{}", "x".repeat(17 << 20));
                println!("{{\"type\": \"brand_new_type\", \"field\": 1}}");
                self.text_block("survived", 1);
                self.result("success", false, "survived");
            }
            "bigresult" => {
                let tr = json!({"type": "user", "message": {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_big", "content": "y".repeat(9 << 20), "is_error": false}]},
                    "session_id": self.session_id, "uuid": uuid()});
                out(&tr);
                self.text_block("big done", 1);
                self.result("success", false, "big done");
            }
            "orphan" => {
                // A shell that leaves a short-lived background job behind: the job is
                // orphaned to PID 1 when the shell exits, and dies soon after.
                let _ = std::process::Command::new("sh")
                    .args(["-c", "sleep 0.3 &"])
                    .status();
                self.text_block("orphaned", 1);
                self.result("success", false, "orphaned");
            }
            "grandchild" => {
                let child = std::process::Command::new("sleep").arg("300").spawn();
                let pid = child.map(|c| c.id()).unwrap_or(0);
                log(json!({"grandchild": pid}));
                self.text_block(&format!("grandchild {pid}"), 1);
                self.result("success", false, "ok");
            }
            "hang" => {
                // SAFETY: ignoring SIGTERM for this test process.
                unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
                log(json!({"hanging": std::process::id()}));
                loop {
                    std::thread::sleep(Duration::from_secs(60));
                }
            }
            "say" => {
                self.text_block(rest, 3);
                self.result("success", false, rest);
            }
            _ => {
                let text = format!("echo: {prompt}");
                self.text_block(&text, 3);
                self.result("success", false, &text);
            }
        }
    }
}

impl Fake {
    /// `/compact` as Claude Code 2.1.331 runs it: a status, a new init, the boundary, the
    /// summary and the command's echo marked `isReplay` (new to the transcript), then a
    /// result naming the command and the prompt, with no assistant message.
    fn compact(&mut self) {
        let sid = self.session_id.clone();
        out(
            &json!({"type": "system", "subtype": "status", "status": "compacting", "session_id": sid, "uuid": uuid()}),
        );
        out(
            &json!({"type": "system", "subtype": "status", "status": null, "compact_result": "success", "session_id": sid, "uuid": uuid()}),
        );
        out(
            &json!({"type": "system", "subtype": "init", "session_id": sid, "model": "fake-model-1"}),
        );
        out(
            &json!({"type": "system", "subtype": "compact_boundary", "session_id": sid, "uuid": uuid(),
                    "compact_metadata": {"trigger": "manual", "pre_tokens": 15, "post_tokens": 20}}),
        );
        let summary = json!({"type": "user", "message": {"role": "user", "content": "This session is being continued from a previous conversation. Summary: earlier turns."},
                             "session_id": sid, "parent_tool_use_id": null, "uuid": uuid(), "isReplay": false, "isSynthetic": true});
        self.record(&summary);
        out(&summary);
        let echo = json!({"type": "user", "message": {"role": "user", "content": "<local-command-stdout>Compacted </local-command-stdout>"},
                          "session_id": sid, "parent_tool_use_id": null, "uuid": uuid(), "isReplay": true});
        self.record(&echo);
        out(&echo);
        let p = self.answering.clone().unwrap_or_default();
        out(
            &json!({"type": "result", "subtype": "success", "is_error": false, "result": "", "num_turns": 0,
                    "total_cost_usd": 0.0, "session_id": sid, "uuid": uuid(), "local_command": "compact",
                    "user_message_uuid": p, "user_message_uuids": [p]}),
        );
    }
}

/// The text of the last assistant message among transcript records.
fn text_of_last(records: &[Value]) -> String {
    records
        .iter()
        .rev()
        .find(|r| r["type"] == "assistant")
        .and_then(|r| r["message"]["content"][0]["text"].as_str())
        .unwrap_or("")
        .to_string()
}

fn proc_status(key: &str) -> Option<String> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cwd = std::env::current_dir().unwrap_or_default();
    log(
        json!({"start": std::process::id(), "argv": args, "cwd": cwd,
               "entrypoint": std::env::var("CLAUDE_CODE_ENTRYPOINT").ok(),
               "claudecode": std::env::var("CLAUDECODE").ok(),
               "checkpointing": std::env::var("CLAUDE_CODE_ENABLE_SDK_FILE_CHECKPOINTING").ok(),
               // Blocked and ignored signals as the kernel reports them (hex masks).
               "sigblk": proc_status("SigBlk:"), "sigign": proc_status("SigIgn:")}),
    );
    if std::env::var_os("FAKE_CLAUDE_ROOT").is_some()
        && args
            .windows(2)
            .any(|w| w[0] == "--permission-mode" && w[1] == "bypassPermissions")
    {
        eprintln!(
            "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons"
        );
        std::process::exit(1);
    }
    let resume = args
        .iter()
        .find_map(|a| a.strip_prefix("--resume="))
        .map(str::to_string);
    let fork = args.iter().any(|a| a == "--fork-session");
    let session_id = match (&resume, fork) {
        (Some(r), false) => r.clone(),
        _ => uuid(),
    };
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let dir = home.map(|h| h.join(".claude/projects").join(slug(&cwd)));
    let file = |id: &str| dir.as_ref().map(|d| d.join(format!("{id}.jsonl")));
    let old: Vec<Value> = resume
        .as_deref()
        .and_then(file)
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // The API refuses thinking blocks without a signature.
    let unsigned = old.iter().any(|r| {
        r["message"]["content"].as_array().is_some_and(|c| {
            c.iter()
                .any(|b| b["type"] == "thinking" && b.get("signature").is_none())
        })
    });
    if unsigned {
        eprintln!("API Error: 400 messages.1.content.0.thinking.signature: Field required");
        std::process::exit(1);
    }
    let transcript = file(&session_id);
    if fork && let Some(t) = &transcript {
        // The fork starts from the old conversation, cut after --resume-session-at.
        let at = args
            .iter()
            .find_map(|a| a.strip_prefix("--resume-session-at="));
        let mut kept = Vec::new();
        for r in &old {
            kept.push(format!("{r}\n"));
            if at.is_some_and(|a| r["uuid"] == a) {
                break;
            }
        }
        if let Some(d) = t.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let _ = std::fs::write(t, kept.concat());
    }
    let first_prompt = old
        .iter()
        .find(|r| r["type"] == "user" && r["message"]["content"].is_string())
        .and_then(|r| r["message"]["content"].as_str())
        .map(str::to_string);
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            let v: Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(_) => continue,
            };
            let t_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            log(json!({"pid": std::process::id(), "t_ns": t_ns, "stdin": v}));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let mut fake = Fake {
        session_id,
        init_sent: false,
        rx,
        transcript,
        msg_seq: 0,
        pending_interrupt: false,
        resumed: resume.is_some(),
        first_prompt,
        prompt_uuid: None,
        answering: None,
    };
    loop {
        let Ok(v) = fake.rx.recv() else {
            std::process::exit(0)
        };
        if v["type"] == "user" {
            let prompt = v["message"]["content"].as_str().unwrap_or("").to_string();
            fake.prompt_uuid = v["uuid"].as_str().map(str::to_string);
            fake.turn(&prompt);
        } else {
            fake.handle_control(&v);
        }
    }
}

/// What the CLI's Write tool does with an allowed input: the file written.
fn write_file(input: &Value) -> (String, bool) {
    let (Some(path), Some(content)) = (input["file_path"].as_str(), input["content"].as_str())
    else {
        return ("Write needs file_path and content".into(), true);
    };
    match std::fs::write(path, content) {
        Ok(()) => (format!("wrote {path}"), false),
        Err(e) => (format!("cannot write {path}: {e}"), true),
    }
}
