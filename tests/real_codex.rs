//! End to end with the real Codex CLI (issue 11): the daemon runs `codex app-server` from
//! the npm package `@openai/codex` (a native binary) against a fake OpenAI Responses API
//! served here on loopback, and these tests play the browser through the fake relay:
//! text, every command and patch approval allowed or denied (the file is or is not
//! written), the permission modes, interrupt with an approval pending, resume in the same
//! daemon and after a restart, and the turns Codex cannot do (edit, slash commands).
//!
//! The CLI is found in `target/codex-<version>/` (where `.ci/run` installs it), else it
//! is installed there with npm. When it cannot be, a test fails under `CI=true` (naming
//! what could not be installed) and elsewhere skips, printing one `SKIPPED` line.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::http;
use support::node::{events_until, named, texts};
use support::relay::FakeRelay;
use support::*;

/// The version `.ci/run` installs; a test installs the same when it is missing.
const PIN: &str = "0.169.0";
const T: Duration = Duration::from_secs(60);

fn find_cli() -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/codex-{PIN}"));
    // The native binary, inside its vendor tree (which holds the sandbox it needs).
    let (pkg, arch) = match std::env::consts::ARCH {
        "x86_64" => ("codex-linux-x64", "x86_64-unknown-linux-musl"),
        "aarch64" => ("codex-linux-arm64", "aarch64-unknown-linux-musl"),
        other => return Err(format!("no Codex build for {other}")),
    };
    let bin = dir.join(format!(
        "node_modules/@openai/{pkg}/vendor/{arch}/bin/codex"
    ));
    http::npm_package(&dir, &format!("@openai/codex@{PIN}"), &bin)
}

/// The CLI; without it the test `what` fails under CI and skips elsewhere (saying so).
fn cli_or_skip(what: &str) -> Option<PathBuf> {
    real_agent(
        &format!("Codex {PIN}"),
        &format!("real Codex {what}"),
        find_cli(),
    )
}

// ---- the fake Responses API -------------------------------------------------------

fn sse(w: &mut TcpStream, data: Value) -> std::io::Result<()> {
    let kind = data["type"].as_str().unwrap_or("").to_string();
    write!(w, "event: {kind}\ndata: {data}\n\n")?;
    w.flush()
}

/// The text of the last real user message (Codex adds context messages of its own).
fn last_user_text(input: &[Value]) -> String {
    for item in input.iter().rev() {
        if item["role"] == "user" {
            let text = match &item["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(""),
                _ => String::new(),
            };
            if !text.starts_with("<environment_context>") {
                return text;
            }
        }
    }
    String::new()
}

fn text_reply(s: &mut TcpStream, rid: &str, n: u32, text: &str) -> std::io::Result<()> {
    let mid = format!("msg_{n}");
    sse(
        s,
        json!({"type": "response.output_item.added", "output_index": 0,
        "item": {"type": "message", "id": mid, "role": "assistant", "status": "in_progress", "content": []}}),
    )?;
    for (i, w) in text.split(' ').enumerate() {
        let d = if i == 0 {
            w.to_string()
        } else {
            format!(" {w}")
        };
        sse(
            s,
            json!({"type": "response.output_text.delta", "item_id": mid, "output_index": 0, "content_index": 0, "delta": d}),
        )?;
    }
    sse(
        s,
        json!({"type": "response.output_item.done", "output_index": 0,
        "item": {"type": "message", "id": mid, "role": "assistant", "status": "completed",
                 "content": [{"type": "output_text", "text": text, "annotations": []}]}}),
    )?;
    completed(s, rid)
}

fn completed(s: &mut TcpStream, rid: &str) -> std::io::Result<()> {
    sse(
        s,
        json!({"type": "response.completed", "response": {"id": rid, "usage": {
        "input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}}}),
    )
}

fn serve_api(mut s: TcpStream) -> std::io::Result<()> {
    let Some(req) = http::read_request(&mut s)? else {
        return Ok(());
    };
    if !req.line.starts_with("POST ") || !req.line.contains("/responses") {
        return http::json_reply(&mut s, "200 OK", "{\"object\":\"list\",\"data\":[]}");
    }
    static N: AtomicU32 = AtomicU32::new(0);
    let input = req.body["input"].as_array().cloned().unwrap_or_default();
    let n = N.fetch_add(1, Ordering::Relaxed);
    let rid = format!("resp_{n}");
    http::sse_head(&mut s)?;
    sse(
        &mut s,
        json!({"type": "response.created", "response": {"id": rid}}),
    )?;
    let last = input.last().cloned().unwrap_or(Value::Null);
    if matches!(
        last["type"].as_str(),
        Some("function_call_output" | "custom_tool_call_output")
    ) {
        let out = match &last["output"] {
            Value::String(o) => o.clone(),
            other => other.to_string(),
        };
        let short: String = out.chars().take(120).collect();
        return text_reply(&mut s, &rid, n, &format!("done: {short}"));
    }
    let prompt = last_user_text(&input);
    if input
        .last()
        .is_some_and(|i| i.to_string().contains("input_image"))
    {
        return text_reply(&mut s, &rid, n, "I see an image");
    }
    if prompt.contains("RUN") {
        let a = json!({"cmd": "echo hi > f.txt"}).to_string();
        let (fid, cid) = (format!("fc_{n}"), format!("call_{n}"));
        sse(
            &mut s,
            json!({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "function_call", "id": fid, "call_id": cid, "name": "exec_command", "arguments": "", "status": "in_progress"}}),
        )?;
        sse(
            &mut s,
            json!({"type": "response.function_call_arguments.delta", "item_id": fid, "output_index": 0, "delta": a}),
        )?;
        sse(
            &mut s,
            json!({"type": "response.function_call_arguments.done", "item_id": fid, "output_index": 0, "arguments": a}),
        )?;
        sse(
            &mut s,
            json!({"type": "response.output_item.done", "output_index": 0,
            "item": {"type": "function_call", "id": fid, "call_id": cid, "name": "exec_command", "arguments": a, "status": "completed"}}),
        )?;
        return completed(&mut s, &rid);
    }
    if prompt.contains("PATCH") {
        let patch = "*** Begin Patch\n*** Add File: added.txt\n+added by fake\n*** End Patch\n";
        let (tid, cid) = (format!("ctc_{n}"), format!("call_{n}"));
        sse(
            &mut s,
            json!({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "custom_tool_call", "id": tid, "call_id": cid, "name": "apply_patch", "input": "", "status": "in_progress"}}),
        )?;
        sse(
            &mut s,
            json!({"type": "response.custom_tool_call_input.delta", "item_id": tid, "output_index": 0, "delta": patch}),
        )?;
        sse(
            &mut s,
            json!({"type": "response.custom_tool_call_input.done", "item_id": tid, "output_index": 0, "input": patch}),
        )?;
        sse(
            &mut s,
            json!({"type": "response.output_item.done", "output_index": 0,
            "item": {"type": "custom_tool_call", "id": tid, "call_id": cid, "name": "apply_patch", "input": patch, "status": "completed"}}),
        )?;
        return completed(&mut s, &rid);
    }
    // Anything else: say so, naming the prompt (so a resumed thread shows its history).
    let earlier = input
        .iter()
        .filter(|i| i["role"] == "user")
        .filter(|i| !i["content"].to_string().contains("<environment_context>"))
        .count();
    text_reply(
        &mut s,
        &rid,
        n,
        &format!("hello from fake ({earlier} user messages)"),
    )
}

fn start_api() -> u16 {
    http::serve(|s| {
        let _ = serve_api(s);
    })
}

// ---- the node ---------------------------------------------------------------------

struct Node {
    relay: FakeRelay,
    home: TempDir,
    daemon: Daemon,
    cli: PathBuf,
    api: u16,
}

fn codex_home(home: &TempDir, api: u16) -> PathBuf {
    let dir = home.join("codex-home");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "model = \"gpt-5.5\"\nmodel_provider = \"fake\"\n\n[model_providers.fake]\nname = \"fake\"\n\
             base_url = \"http://127.0.0.1:{api}/v1\"\nwire_api = \"responses\"\nenv_key = \"OPENAI_API_KEY\"\n\
             request_max_retries = 0\nstream_max_retries = 0\n\n[features]\nplugins = false\n"
        ),
    )
    .unwrap();
    dir
}

fn start_node(cli: PathBuf, home: TempDir, api: u16) -> Node {
    let relay = FakeRelay::start();
    relay.set_auto_ack(true);
    std::fs::create_dir_all(home.join("work")).unwrap();
    let mut c = agent(&home);
    c.env("CODING_BRIDGE_URL", relay.url())
        .env("CODING_BRIDGE_NODE_TOKEN", "tok-codex")
        .env("CODING_BRIDGE_CODEX_PATH", &cli)
        .env("CODEX_HOME", codex_home(&home, api))
        .env("OPENAI_API_KEY", "sk-test")
        .env("CODING_BRIDGE_LOG_LEVEL", "trace")
        .args(["run"]);
    let daemon = Daemon::spawn(c, &home);
    relay
        .recv_type("node.heartbeat", T)
        .unwrap_or_else(|| panic!("link up: {}", daemon.stderr()));
    Node {
        relay,
        home,
        daemon,
        cli,
        api,
    }
}

impl Node {
    fn cmd(&self, payload: Value) {
        static N: AtomicU32 = AtomicU32::new(0);
        assert!(
            self.relay
                .command(&format!("c{}", N.fetch_add(1, Ordering::Relaxed)), payload)
        );
    }

    fn until(&self, event: &str) -> Vec<Value> {
        events_until(&self.relay, event, &|| {
            format!("stderr: {}", self.daemon.stderr())
        })
    }

    fn work(&self) -> String {
        self.home.join("work").to_string_lossy().into_owned()
    }

    fn restart(self) -> Node {
        let Node {
            relay,
            home,
            daemon,
            cli,
            api,
        } = self;
        drop(daemon);
        drop(relay);
        start_node(cli, home, api)
    }
}

#[test]
fn real_codex_text_approvals_modes_interrupt_and_resume() {
    let Some(cli) = cli_or_skip("flows") else {
        return;
    };
    let n = start_node(cli, TempDir::new("codex"), start_api());
    let work = n.work();

    // Listed as available, with the models the CLI itself knows; in the heartbeat too.
    n.cmd(json!({"action": "capabilities.get", "trace_id": "cap"}));
    let caps = n.until("capabilities").pop().unwrap();
    let codex = caps["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "codex")
        .unwrap()
        .clone();
    assert_eq!(codex["available"], true, "{codex}");
    let models: Vec<&str> = codex["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["value"].as_str())
        .collect();
    assert!(
        models.len() > 2 && models[0].is_empty() && models.contains(&"gpt-5.5"),
        "{models:?}"
    );
    assert!(codex["efforts"].as_array().unwrap().len() > 2, "{codex}");
    n.relay.drop_all();
    let hb = n.relay.recv_type("node.heartbeat", T).unwrap();
    assert!(
        hb["payload"]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("codex")),
        "{hb}"
    );

    // A text turn: streamed, then the whole text and a result; the thread id announced.
    n.cmd(
        json!({"action": "session.start", "session_id": "cx", "provider": "codex", "cwd": work,
                 "permission_mode": "default", "prompt": "say hello", "trace_id": "t1"}),
    );
    let ev = n.until("session.result");
    let started = named(&ev, "session.started")[0];
    assert_eq!(started["provider"], "codex");
    let thread = named(&ev, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!named(&ev, "session.text_delta").is_empty());
    assert_eq!(texts(&ev), "hello from fake (1 user messages)");
    let result = named(&ev, "session.result")[0];
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["trace_id"], "t1");
    assert_eq!(result["sdk_session_id"], thread.as_str());

    // A command, denied: not run, and the turn goes on.
    n.cmd(json!({"action": "session.send", "session_id": thread, "prompt": "RUN it"}));
    let ev = n.until("permission.request");
    let req = ev.last().unwrap();
    assert_eq!(req["tool"], "Bash");
    assert_eq!(req["input"]["command"], "echo hi > f.txt");
    assert_eq!(req["session_id"], thread.as_str());
    assert!(!named(&ev, "session.tool_use").is_empty());
    n.cmd(json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "deny"}));
    let ev = n.until("session.result");
    assert!(
        !Path::new(&work).join("f.txt").exists(),
        "a denied command does not run"
    );
    let tr = named(&ev, "session.tool_result");
    assert_eq!(tr[0]["is_error"], true);
    assert_eq!(named(&ev, "permission.resolved")[0]["decision"], "deny");

    // The same command, allowed: it runs.
    n.cmd(json!({"action": "session.send", "session_id": thread, "prompt": "RUN it again"}));
    let req = n.until("permission.request").pop().unwrap();
    n.cmd(json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "allow"}));
    let ev = n.until("session.result");
    assert_eq!(
        std::fs::read_to_string(Path::new(&work).join("f.txt")).unwrap(),
        "hi\n"
    );
    assert_eq!(
        named(&ev, "session.tool_result")[0]["is_error"],
        false,
        "{:?}",
        named(&ev, "session.tool_result")
    );
    assert!(texts(&ev).starts_with("done:"), "{}", texts(&ev));

    // A patch, denied then allowed.
    n.cmd(json!({"action": "session.send", "session_id": thread, "prompt": "PATCH please"}));
    let req = n.until("permission.request").pop().unwrap();
    assert_eq!(req["tool"], "apply_patch");
    assert!(
        req["input"]["changes"].to_string().contains("added.txt"),
        "{req}"
    );
    n.cmd(json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "deny"}));
    n.until("session.result");
    assert!(!Path::new(&work).join("added.txt").exists());
    n.cmd(
        json!({"action": "session.send", "session_id": thread, "prompt": "PATCH please, really"}),
    );
    let req = n.until("permission.request").pop().unwrap();
    n.cmd(json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "allow"}));
    n.until("session.result");
    assert_eq!(
        std::fs::read_to_string(Path::new(&work).join("added.txt")).unwrap(),
        "added by fake\n"
    );
    std::fs::remove_file(Path::new(&work).join("added.txt")).unwrap();

    // acceptEdits: patches go through without asking; commands still ask.
    n.cmd(
        json!({"action": "session.send", "session_id": thread, "prompt": "PATCH now",
                 "permission_mode": "acceptEdits"}),
    );
    let ev = n.until("session.result");
    assert!(named(&ev, "permission.request").is_empty(), "{ev:?}");
    assert!(Path::new(&work).join("added.txt").exists());

    // bypassPermissions: commands run without asking.
    std::fs::remove_file(Path::new(&work).join("f.txt")).unwrap();
    n.cmd(
        json!({"action": "session.send", "session_id": thread, "prompt": "RUN bypassed",
                 "permission_mode": "bypassPermissions"}),
    );
    let ev = n.until("session.result");
    assert!(named(&ev, "permission.request").is_empty(), "{ev:?}");
    assert!(Path::new(&work).join("f.txt").exists());

    // Interrupt with an approval pending: denied, and the turn ends interrupted.
    std::fs::remove_file(Path::new(&work).join("f.txt")).unwrap();
    n.cmd(
        json!({"action": "session.send", "session_id": thread, "prompt": "RUN later",
                 "permission_mode": "default"}),
    );
    let req = n.until("permission.request").pop().unwrap();
    n.cmd(json!({"action": "session.interrupt", "session_id": thread}));
    let ev = n.until("session.result");
    let resolved = named(&ev, "permission.resolved");
    assert_eq!(resolved[0]["request_id"], req["request_id"]);
    assert_eq!(resolved[0]["decision"], "deny");
    let r = named(&ev, "session.result")[0];
    assert_eq!(r["subtype"], "interrupted");
    assert_eq!(r["is_error"], false);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!Path::new(&work).join("f.txt").exists());

    // An image goes to Codex as an image.
    const PNG_1PX: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
    n.cmd(
        json!({"action": "session.send", "session_id": thread, "prompt": "look",
                 "images": [{"data": PNG_1PX, "media_type": "image/png", "name": "px.png"}]}),
    );
    let ev = n.until("session.result");
    assert_eq!(texts(&ev), "I see an image", "{ev:?}");

    // What Codex cannot do is said, not attempted.
    n.cmd(json!({"action": "session.edit", "session_id": thread, "prompt": "instead"}));
    let ev = n.until("session.result");
    assert_eq!(named(&ev, "session.notice")[0]["code"], "edit_unsupported");
    assert_eq!(named(&ev, "session.result")[0]["subtype"], "notice");
    n.cmd(json!({"action": "session.send", "session_id": thread, "prompt": "/compact"}));
    let ev = n.until("session.result");
    assert_eq!(
        named(&ev, "session.notice")[0]["code"],
        "slash_codex_unsupported"
    );

    // The same thread continues (Codex saw the earlier user messages).
    n.cmd(json!({"action": "session.send", "session_id": thread, "prompt": "and now?"}));
    let ev = n.until("session.result");
    let before: usize = texts(&ev)
        .trim_start_matches("hello from fake (")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(before > 5, "{}", texts(&ev));

    // History: Codex's own session files, listed beside Claude's and opened by id.
    n.cmd(json!({"action": "history.list"}));
    let snap = n.until("history.snapshot").pop().unwrap();
    let entry = snap["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["session_id"] == thread.as_str())
        .unwrap_or_else(|| panic!("{snap}"))
        .clone();
    assert_eq!(entry["provider"], "codex");
    assert_eq!(entry["title"], "say hello");
    assert_eq!(entry["cwd"], work.as_str());
    assert!(entry["message_count"].as_u64().unwrap() >= 10, "{entry}");
    n.cmd(json!({"action": "history.get", "provider": "codex", "session_id": thread}));
    let d = n.until("history.detail").pop().unwrap();
    let kinds: Vec<&str> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds[0], "prompt", "{kinds:?}");
    assert_eq!(d["events"][0]["text"], "say hello");
    assert!(
        kinds.contains(&"tool_use") && kinds.contains(&"tool_result") && kinds.contains(&"text"),
        "{kinds:?}"
    );
    assert_eq!(d["resolved_model"], "gpt-5.5");
    assert_eq!(d["provider"], "codex");

    // Closed and resumed in the same daemon: the same thread goes on.
    n.cmd(json!({"action": "session.close", "session_id": thread}));
    n.until("session.closed");
    n.cmd(
        json!({"action": "session.start", "session_id": "same", "provider": "codex", "cwd": work,
                 "resume_session_id": thread, "prompt": "back again?"}),
    );
    let ev = n.until("session.result");
    assert_eq!(
        named(&ev, "session.identified")[0]["sdk_session_id"],
        thread.as_str()
    );
    let again: usize = texts(&ev)
        .trim_start_matches("hello from fake (")
        .split(' ')
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert!(again > before, "{}", texts(&ev));
    let before = again;

    // After a daemon restart, the browser resumes the thread by id.
    let n = n.restart();
    n.cmd(
        json!({"action": "session.start", "session_id": "again", "provider": "codex", "cwd": work,
                 "resume_session_id": thread, "prompt": "still there?"}),
    );
    let ev = n.until("session.result");
    assert_eq!(
        named(&ev, "session.identified")[0]["sdk_session_id"],
        thread.as_str(),
        "the same thread"
    );
    let after: usize = texts(&ev)
        .trim_start_matches("hello from fake (")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after > before, "{}", texts(&ev));
}

#[test]
fn a_missing_codex_is_a_clear_cli_not_found() {
    let home = TempDir::new("nocodex");
    let relay = FakeRelay::start();
    relay.set_auto_ack(true);
    let mut c = agent(&home);
    c.env("CODING_BRIDGE_URL", relay.url())
        .env("CODING_BRIDGE_NODE_TOKEN", "tok")
        .env("PATH", "/nonexistent")
        .args(["run"]);
    let d = Daemon::spawn(c, &home);
    relay.recv_type("node.heartbeat", T).unwrap();
    relay.command(
        "c1",
        json!({"action": "session.start", "session_id": "s", "provider": "codex", "prompt": "hi"}),
    );
    let ev = events_until(&relay, "session.error", &|| d.stderr());
    let e = ev.last().unwrap();
    assert_eq!(e["code"], "cli_not_found");
    assert_eq!(e["session_id"], "s");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("npm install -g @openai/codex"),
        "{e}"
    );
}
