//! End to end with real ACP agents (issue 11): the daemon runs GitHub Copilot CLI
//! (`copilot --acp --stdio`, npm `@github/copilot`, a native binary) against a fake OpenAI
//! Chat Completions API served here on loopback, and these tests play the browser through
//! the fake relay: text, every tool approval allowed or denied (the file is or is not
//! written), bypass, interrupt with an approval pending, and a session loaded again after
//! a daemon restart (its replay not shown).
//!
//! The CLI is found in `target/copilot-<version>/` (where `.ci/run` installs it), else it
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
use support::node::{events_until, events_within, named, texts};
use support::relay::FakeRelay;
use support::*;

const COPILOT_PIN: &str = "1.0.102";
const T: Duration = Duration::from_secs(60);

fn find_copilot() -> Result<PathBuf, String> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/copilot-{COPILOT_PIN}"));
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => return Err(format!("no Copilot build for {other}")),
    };
    // The native binary (no Node needed).
    let bin = dir.join(format!("node_modules/@github/copilot-linux-{arch}/copilot"));
    http::npm_package(&dir, &format!("@github/copilot@{COPILOT_PIN}"), &bin)
}

// ---- the fake Chat Completions API ------------------------------------------------

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> String {
    let c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

fn serve_chat(mut s: TcpStream) -> std::io::Result<()> {
    static N: AtomicU32 = AtomicU32::new(0);
    let Some(req) = http::read_request(&mut s)? else {
        return Ok(());
    };
    let line = req.line;
    if !line.starts_with("POST ") || !line.contains("/chat/completions") {
        let b =
            "{\"object\":\"list\",\"data\":[{\"id\":\"claude-sonnet-4.5\",\"object\":\"model\"}]}";
        return http::json_reply(&mut s, "200 OK", b);
    }
    let body = req.body;
    let model = body["model"].as_str().unwrap_or("fake").to_string();
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    let last = msgs.last().cloned().unwrap_or(Value::Null);
    let last_user = msgs
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    let cwd = msgs
        .iter()
        .find_map(|m| {
            let t = text_of(&m["content"]);
            let at = t.find("urrent working directory: ")? + "urrent working directory: ".len();
            Some(t[at..].split_whitespace().next()?.to_string())
        })
        .unwrap_or_else(|| "/tmp".into());
    http::sse_head(&mut s)?;
    s.write_all(chunk(&model, json!({"role": "assistant", "content": ""}), None).as_bytes())?;
    let tool = |name: &str, args: Value| -> Vec<String> {
        let id = format!("call_{}", N.fetch_add(1, Ordering::Relaxed));
        let a = args.to_string();
        vec![
            chunk(
                &model,
                json!({"tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                None,
            ),
            chunk(
                &model,
                json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}),
                None,
            ),
            chunk(&model, json!({}), Some("tool_calls")),
        ]
    };
    let out: Vec<String> = if last["role"] == "tool" {
        let r: String = text_of(&last["content"]).chars().take(80).collect();
        vec![
            chunk(
                &model,
                json!({"content": format!("Tool finished: {r}")}),
                None,
            ),
            chunk(&model, json!({}), Some("stop")),
        ]
    } else if last_user.contains("MARK_BASH") {
        tool(
            "bash",
            json!({"command": "echo hi > f.txt", "description": "Write hi to f.txt"}),
        )
    } else if last_user.contains("MARK_CREATE") {
        tool(
            "create",
            json!({"path": format!("{cwd}/new.txt"), "file_text": "hello from create\n"}),
        )
    } else if last_user.contains("MARK_SLOW") {
        let mut v: Vec<String> = (0..60)
            .map(|i| chunk(&model, json!({"content": format!("tick{i} ")}), None))
            .collect();
        v.push(chunk(&model, json!({}), Some("stop")));
        v
    } else {
        let users = msgs.iter().filter(|m| m["role"] == "user").count();
        vec![
            chunk(&model, json!({"content": "Hello "}), None),
            chunk(
                &model,
                json!({"content": format!("from the fake model ({users} user messages).")}),
                None,
            ),
            chunk(&model, json!({}), Some("stop")),
        ]
    };
    let slow = last_user.contains("MARK_SLOW") && last["role"] != "tool";
    for c in out {
        s.write_all(c.as_bytes())?;
        s.flush()?;
        if slow {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    s.write_all(b"data: [DONE]\n\n")?;
    s.flush()
}

fn start_chat_api() -> u16 {
    http::serve(|s| {
        let _ = serve_chat(s);
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

fn start_node(cli: PathBuf, home: TempDir, api: u16) -> Node {
    let relay = FakeRelay::start();
    relay.set_auto_ack(true);
    std::fs::create_dir_all(home.join("work")).unwrap();
    std::fs::create_dir_all(home.join("copilot-home")).unwrap();
    let mut c = agent(&home);
    c.env("CODING_BRIDGE_URL", relay.url())
        .env("CODING_BRIDGE_NODE_TOKEN", "tok-acp")
        .env("CODING_BRIDGE_COPILOT_PATH", &cli)
        .env("COPILOT_OFFLINE", "true")
        .env(
            "COPILOT_PROVIDER_BASE_URL",
            format!("http://127.0.0.1:{api}/v1"),
        )
        .env("COPILOT_PROVIDER_API_KEY", "sk-test")
        .env("COPILOT_MODEL", "claude-sonnet-4.5")
        .env("COPILOT_HOME", home.join("copilot-home"))
        .env("COPILOT_AUTO_UPDATE", "false")
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
fn real_copilot_over_acp() {
    let Some(cli) = real_agent(
        &format!("Copilot {COPILOT_PIN}"),
        "real Copilot",
        find_copilot(),
    ) else {
        return;
    };
    let n = start_node(cli, TempDir::new("copilot"), start_chat_api());
    let work = n.work();

    // Listed, available.
    n.cmd(json!({"action": "capabilities.get"}));
    let caps = n.until("capabilities").pop().unwrap();
    let p = caps["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "copilot")
        .cloned()
        .unwrap();
    assert_eq!(p["available"], true, "{p}");

    // Text.
    n.cmd(
        json!({"action": "session.start", "session_id": "cp", "provider": "copilot", "cwd": work,
                 "prompt": "say hello", "trace_id": "t1"}),
    );
    let ev = n.until("session.result");
    assert_eq!(named(&ev, "session.started")[0]["provider"], "copilot");
    let sid = named(&ev, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!named(&ev, "session.text_delta").is_empty());
    assert_eq!(texts(&ev), "Hello from the fake model (1 user messages).");
    let r = named(&ev, "session.result")[0];
    assert_eq!(r["subtype"], "success");
    assert_eq!(r["trace_id"], "t1");

    // A command, denied: not run.
    n.cmd(json!({"action": "session.send", "session_id": sid, "prompt": "MARK_BASH now"}));
    let ev = n.until("permission.request");
    let req = ev.last().unwrap().clone();
    assert_eq!(req["tool"], "Bash");
    assert!(
        req["input"].to_string().contains("echo hi > f.txt"),
        "{req}"
    );
    assert!(!named(&ev, "session.tool_use").is_empty());
    n.cmd(json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "deny"}));
    let ev = n.until("session.result");
    assert!(
        !Path::new(&work).join("f.txt").exists(),
        "a denied command does not run"
    );
    assert_eq!(named(&ev, "session.tool_result")[0]["is_error"], true);

    // Allowed: it runs.
    n.cmd(json!({"action": "session.send", "session_id": sid, "prompt": "MARK_BASH again"}));
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
        "{ev:?}"
    );

    // A file edit, denied then allowed.
    n.cmd(json!({"action": "session.send", "session_id": sid, "prompt": "MARK_CREATE it"}));
    let req = n.until("permission.request").pop().unwrap();
    assert_eq!(req["tool"], "Edit", "{req}");
    n.cmd(json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "deny"}));
    n.until("session.result");
    assert!(!Path::new(&work).join("new.txt").exists());
    n.cmd(json!({"action": "session.send", "session_id": sid, "prompt": "MARK_CREATE it, really"}));
    let req = n.until("permission.request").pop().unwrap();
    n.cmd(json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "allow"}));
    n.until("session.result");
    assert_eq!(
        std::fs::read_to_string(Path::new(&work).join("new.txt")).unwrap(),
        "hello from create\n"
    );

    // bypassPermissions: nothing is asked.
    std::fs::remove_file(Path::new(&work).join("f.txt")).unwrap();
    n.cmd(
        json!({"action": "session.send", "session_id": sid, "prompt": "MARK_BASH bypassed",
                 "permission_mode": "bypassPermissions"}),
    );
    let ev = n.until("session.result");
    assert!(named(&ev, "permission.request").is_empty(), "{ev:?}");
    assert!(Path::new(&work).join("f.txt").exists());

    // Interrupt with an approval pending: denied, the turn ends interrupted, nothing runs.
    std::fs::remove_file(Path::new(&work).join("f.txt")).unwrap();
    n.cmd(
        json!({"action": "session.send", "session_id": sid, "prompt": "MARK_BASH later",
                 "permission_mode": "default"}),
    );
    let req = n.until("permission.request").pop().unwrap();
    n.cmd(json!({"action": "session.interrupt", "session_id": sid}));
    let ev = n.until("session.result");
    assert_eq!(
        named(&ev, "permission.resolved")[0]["request_id"],
        req["request_id"]
    );
    let r = named(&ev, "session.result")[0];
    assert_eq!(r["subtype"], "interrupted", "{ev:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!Path::new(&work).join("f.txt").exists());

    // Edits are not available; said so.
    n.cmd(json!({"action": "session.edit", "session_id": sid, "prompt": "instead"}));
    let ev = n.until("session.result");
    assert_eq!(named(&ev, "session.notice")[0]["code"], "edit_unsupported");

    // History from Copilot's own session files.
    n.cmd(json!({"action": "history.list"}));
    let snap = n.until("history.snapshot").pop().unwrap();
    let entry = snap["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["session_id"] == sid.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{snap}"));
    assert_eq!(entry["provider"], "copilot");
    assert_eq!(entry["title"], "say hello");
    assert_eq!(entry["cwd"], work.as_str());
    assert!(entry["message_count"].as_u64().unwrap() >= 8, "{entry}");
    n.cmd(json!({"action": "history.get", "provider": "copilot", "session_id": sid}));
    let d = n.until("history.detail").pop().unwrap();
    let kinds: Vec<&str> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(d["events"][0]["text"], "say hello", "{kinds:?}");
    assert!(
        kinds.contains(&"tool_use") && kinds.contains(&"tool_result") && kinds.contains(&"text"),
        "{kinds:?}"
    );

    // Closed and resumed in the same daemon: loaded again, its replay not shown.
    n.cmd(json!({"action": "session.close", "session_id": sid}));
    n.until("session.closed");
    n.cmd(
        json!({"action": "session.start", "session_id": "same", "provider": "copilot", "cwd": work,
                 "resume_session_id": sid, "prompt": "are you back?"}),
    );
    let ev = n.until("session.result");
    assert_eq!(
        named(&ev, "session.identified")[0]["sdk_session_id"],
        sid.as_str()
    );
    assert!(
        named(&ev, "session.tool_use").is_empty(),
        "no replayed tools: {ev:?}"
    );
    assert!(
        texts(&ev).starts_with("Hello from the fake model ("),
        "{}",
        texts(&ev)
    );

    // The heartbeat names the agents that are installed.
    n.relay.drop_all();
    let hb = n.relay.recv_type("node.heartbeat", T).unwrap();
    assert!(
        hb["payload"]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("copilot")),
        "{hb}"
    );

    // After a daemon restart the session is loaded again: its replay is not shown, and
    // the agent still knows the conversation.
    let n = n.restart();
    n.cmd(
        json!({"action": "session.start", "session_id": "again", "provider": "copilot", "cwd": work,
                 "resume_session_id": sid, "prompt": "still there?"}),
    );
    let ev = n.until("session.result");
    let names: Vec<&str> = ev.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        named(&ev, "session.identified")
            .first()
            .map(|e| e["sdk_session_id"].clone()),
        Some(json!(sid)),
        "{names:?}"
    );
    assert!(
        named(&ev, "session.tool_use").is_empty(),
        "no replayed tools: {ev:?}"
    );
    let t = texts(&ev);
    assert!(t.starts_with("Hello from the fake model ("), "{t}");
    let users: usize = t
        .trim_start_matches("Hello from the fake model (")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(users > 3, "{t}");
}

#[test]
fn a_missing_acp_agent_is_a_clear_cli_not_found() {
    let home = TempDir::new("noacp");
    let relay = FakeRelay::start();
    relay.set_auto_ack(true);
    let mut c = agent(&home);
    c.env("CODING_BRIDGE_URL", relay.url())
        .env("CODING_BRIDGE_NODE_TOKEN", "tok")
        .env("PATH", "/nonexistent")
        .args(["run"]);
    let d = Daemon::spawn(c, &home);
    relay.recv_type("node.heartbeat", T).unwrap();
    relay.command("c1", json!({"action": "capabilities.get"}));
    let caps = events_until(&relay, "capabilities", &|| d.stderr())
        .pop()
        .unwrap();
    let names: Vec<&str> = caps["providers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"copilot") && names.contains(&"gemini"),
        "{names:?}"
    );
    assert!(
        caps["providers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["available"] == false),
        "{caps}"
    );
    relay.command(
        "c2",
        json!({"action": "session.start", "session_id": "s", "provider": "gemini", "prompt": "hi"}),
    );
    let e = events_until(&relay, "session.error", &|| d.stderr())
        .pop()
        .unwrap();
    assert_eq!(e["code"], "cli_not_found");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("npm install -g @google/gemini-cli"),
        "{e}"
    );
}

// ---- Gemini CLI -------------------------------------------------------------------

const GEMINI_PIN: &str = "0.61.0";

fn find_gemini() -> Result<PathBuf, String> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/gemini-cli-{GEMINI_PIN}"));
    let bin = http::npm_package(
        &dir,
        &format!("@google/gemini-cli@{GEMINI_PIN}"),
        &dir.join("node_modules/.bin/gemini"),
    )?;
    // Its launcher needs Node 20 or newer.
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("no node ({e})"))?;
    let v = String::from_utf8_lossy(&node.stdout)
        .trim()
        .trim_start_matches('v')
        .to_string();
    let major: u32 = v
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        return Err(format!("Gemini CLI needs Node >= 20, found {v}"));
    }
    Ok(bin)
}

fn serve_gemini(mut s: TcpStream, work: &str) -> std::io::Result<()> {
    let Some(req) = http::read_request(&mut s)? else {
        return Ok(());
    };
    let line = req.line;
    let body = req.body;
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('?')
        .next()
        .unwrap_or("")
        .to_string();
    let model = path
        .rsplit('/')
        .next()
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("fake")
        .to_string();
    let json_reply = |s: &mut TcpStream, v: Value| http::json_reply(s, "200 OK", &v.to_string());
    if path.ends_with(":countTokens") {
        return json_reply(&mut s, json!({"totalTokens": 10}));
    }
    if path.ends_with(":generateContent") {
        let schema = body["generationConfig"].to_string();
        let text = if schema.contains("complexity_score") {
            json!({"complexity_reasoning": "Simple.", "complexity_score": 10}).to_string()
        } else if schema.contains("model_choice") {
            json!({"reasoning": "simple", "model_choice": "flash"}).to_string()
        } else if schema.contains("next_speaker") {
            json!({"reasoning": "done", "next_speaker": "user"}).to_string()
        } else {
            "Fake title".to_string()
        };
        return json_reply(
            &mut s,
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}, "modelVersion": model}),
        );
    }
    if !path.ends_with(":streamGenerateContent") {
        let b = "{}";
        return write!(
            s,
            "HTTP/1.1 404 Not Found\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
            b.len()
        );
    }
    let contents = body["contents"].as_array().cloned().unwrap_or_default();
    let last = contents.last().cloned().unwrap_or(Value::Null);
    let parts = last["parts"].as_array().cloned().unwrap_or_default();
    let text: String = parts
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let response = parts
        .iter()
        .find_map(|p| p.get("functionResponse"))
        .cloned();
    let users = contents
        .iter()
        .filter(|c| c["role"] == "user")
        .filter(|c| {
            c["parts"].as_array().is_some_and(|p| {
                p.iter().any(|x| {
                    x["text"]
                        .as_str()
                        .is_some_and(|t| !t.starts_with("<session_context>"))
                })
            })
        })
        .count();
    http::sse_head(&mut s)?;
    let ev = |s: &mut TcpStream, parts: Value, finish: bool| -> std::io::Result<()> {
        let mut cand = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        let mut obj = json!({"modelVersion": model, "responseId": "fake"});
        if finish {
            cand["finishReason"] = json!("STOP");
            obj["usageMetadata"] = json!({"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120});
        }
        obj["candidates"] = json!([cand]);
        write!(s, "data: {obj}\r\n\r\n")?;
        s.flush()
    };
    let call = |name: &str, args: Value| json!([{"functionCall": {"name": name, "args": args}, "thoughtSignature": "c2tpcF90aG91Z2h0X3NpZ25hdHVyZV92YWxpZGF0b3I="}]);
    if let Some(r) = response {
        let r: String = r["response"].to_string().chars().take(80).collect();
        ev(
            &mut s,
            json!([{"text": format!("Tool finished: {r}")}]),
            false,
        )?;
    } else if text.contains("MARK_BASH") {
        ev(
            &mut s,
            call(
                "run_shell_command",
                json!({"command": "echo hi > f.txt", "description": "Write hi to f.txt"}),
            ),
            false,
        )?;
    } else if text.contains("MARK_CREATE") {
        ev(
            &mut s,
            call(
                "write_file",
                json!({"file_path": format!("{work}/new.txt"), "content": "hello from create\n"}),
            ),
            false,
        )?;
    } else {
        ev(&mut s, json!([{"text": "Hello "}]), false)?;
        ev(
            &mut s,
            json!([{"text": format!("from the fake model ({users} user messages).")}]),
            false,
        )?;
    }
    ev(&mut s, json!([{"text": ""}]), true)
}

fn start_gemini_api(work: String) -> u16 {
    http::serve(move |s| {
        let _ = serve_gemini(s, &work);
    })
}

fn start_gemini_node(home: TempDir, cli: &Path, api: u16) -> (FakeRelay, Daemon, TempDir) {
    let ghome = home.join("gemini-home");
    let relay = FakeRelay::start();
    relay.set_auto_ack(true);
    let mut c = agent(&home);
    c.env("CODING_BRIDGE_URL", relay.url())
        .env("CODING_BRIDGE_NODE_TOKEN", "tok-gemini")
        .env("CODING_BRIDGE_GEMINI_PATH", cli)
        .env("GOOGLE_GEMINI_BASE_URL", format!("http://127.0.0.1:{api}"))
        .env("GEMINI_API_KEY", "sk-test")
        .env("GEMINI_CLI_HOME", &ghome)
        .env("GEMINI_CLI_NO_RELAUNCH", "true")
        .env("CODING_BRIDGE_LOG_LEVEL", "trace")
        .args(["run"]);
    let daemon = Daemon::spawn(c, &home);
    relay
        .recv_type("node.heartbeat", T)
        .unwrap_or_else(|| panic!("{}", daemon.stderr()));
    (relay, daemon, home)
}

/// Events up to `event`, waiting up to two minutes (a Gemini load may wait for a minute).
fn events_until_long(relay: &FakeRelay, event: &str, ctx: &dyn Fn() -> String) -> Vec<Value> {
    events_within(Duration::from_secs(120), relay, event, ctx)
}

fn send(relay: &FakeRelay, p: Value) {
    static N: AtomicU32 = AtomicU32::new(0);
    assert!(relay.command(&format!("g{}", N.fetch_add(1, Ordering::Relaxed)), p));
}

#[test]
fn real_gemini_over_acp() {
    let Some(cli) = real_agent(
        &format!("Gemini CLI {GEMINI_PIN}"),
        "real Gemini CLI",
        find_gemini(),
    ) else {
        return;
    };
    let home = TempDir::new("gemini");
    let work = home.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let ghome = home.join("gemini-home");
    std::fs::create_dir_all(ghome.join(".gemini")).unwrap();
    std::fs::write(
        ghome.join(".gemini/settings.json"),
        json!({"privacy": {"usageStatisticsEnabled": false}, "telemetry": {"enabled": false},
               "general": {"disableAutoUpdate": true, "disableUpdateNag": true}})
        .to_string(),
    )
    .unwrap();
    let api = start_gemini_api(work.to_string_lossy().into_owned());
    let w = work.to_string_lossy().into_owned();
    let (relay, daemon, home) = start_gemini_node(home, &cli, api);
    let until = |e: &str| events_until(&relay, e, &|| daemon.stderr());
    let cmd = |p: Value| send(&relay, p);

    cmd(json!({"action": "capabilities.get"}));
    let caps = until("capabilities").pop().unwrap();
    let p = caps["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "gemini")
        .cloned()
        .unwrap();
    assert_eq!(p["available"], true, "{p}");

    cmd(
        json!({"action": "session.start", "session_id": "gm", "provider": "gemini", "cwd": w, "prompt": "say hello"}),
    );
    let ev = until("session.result");
    let sid = named(&ev, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        texts(&ev),
        "Hello from the fake model (1 user messages).",
        "{ev:?}"
    );
    assert_eq!(named(&ev, "session.result")[0]["subtype"], "success");

    // Gemini announces no tool before asking: the tool is shown from the request itself.
    cmd(json!({"action": "session.send", "session_id": sid, "prompt": "MARK_BASH now"}));
    let ev = until("permission.request");
    let req = ev.last().unwrap().clone();
    assert_eq!(req["tool"], "Bash", "{req}");
    let shown = named(&ev, "session.tool_use");
    assert_eq!(shown.len(), 1, "{ev:?}");
    assert_eq!(shown[0]["tool_use_id"], req["tool_use_id"]);
    cmd(
        json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "deny"}),
    );
    let ev = until("session.result");
    assert!(!work.join("f.txt").exists());
    // A refused tool gets no update from Gemini: closed here, as an error.
    let closed = named(&ev, "session.tool_result");
    assert!(
        closed
            .iter()
            .any(|r| r["tool_use_id"] == req["tool_use_id"] && r["is_error"] == true),
        "{ev:?}"
    );

    cmd(json!({"action": "session.send", "session_id": sid, "prompt": "MARK_BASH again"}));
    let req = until("permission.request").pop().unwrap();
    cmd(
        json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "allow"}),
    );
    until("session.result");
    assert_eq!(std::fs::read_to_string(work.join("f.txt")).unwrap(), "hi\n");

    // A file write, denied (not written), then allowed.
    cmd(json!({"action": "session.send", "session_id": sid, "prompt": "MARK_CREATE please"}));
    let req = until("permission.request").pop().unwrap();
    assert_eq!(req["tool"], "Edit", "{req}");
    cmd(
        json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "deny"}),
    );
    until("session.result");
    assert!(!work.join("new.txt").exists());
    cmd(
        json!({"action": "session.send", "session_id": sid, "prompt": "MARK_CREATE please, really"}),
    );
    let req = until("permission.request").pop().unwrap();
    cmd(
        json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "allow"}),
    );
    until("session.result");
    assert_eq!(
        std::fs::read_to_string(work.join("new.txt")).unwrap(),
        "hello from create\n"
    );

    // Interrupt while an approval waits (Gemini returns only once the request is answered).
    std::fs::remove_file(work.join("f.txt")).unwrap();
    cmd(json!({"action": "session.send", "session_id": sid, "prompt": "MARK_BASH later"}));
    let req = until("permission.request").pop().unwrap();
    cmd(json!({"action": "session.interrupt", "session_id": sid}));
    let ev = until("session.result");
    assert_eq!(
        named(&ev, "permission.resolved")[0]["request_id"],
        req["request_id"]
    );
    assert_eq!(
        named(&ev, "session.result")[0]["subtype"],
        "interrupted",
        "{ev:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!work.join("f.txt").exists());

    // bypassPermissions: nothing asked.
    cmd(
        json!({"action": "session.send", "session_id": sid, "prompt": "MARK_BASH bypassed",
               "permission_mode": "bypassPermissions"}),
    );
    let ev = until("session.result");
    assert!(named(&ev, "permission.request").is_empty(), "{ev:?}");
    assert!(work.join("f.txt").exists());

    // History from Gemini's own chat files.
    cmd(json!({"action": "history.list"}));
    let snap = until("history.snapshot").pop().unwrap();
    let entries: Vec<&Value> = snap["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["provider"] == "gemini")
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one per session, stray context-only files skipped: {snap}"
    );
    assert_eq!(entries[0]["session_id"], sid.as_str());
    assert_eq!(entries[0]["title"], "say hello");
    assert_eq!(entries[0]["cwd"], w.as_str());
    cmd(json!({"action": "history.get", "provider": "gemini", "session_id": sid}));
    let d = until("history.detail").pop().unwrap();
    let kinds: Vec<&str> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(d["events"][0]["text"], "say hello", "{kinds:?}");
    assert!(
        kinds.contains(&"tool_result") && kinds.contains(&"text"),
        "{kinds:?}"
    );

    // After a daemon restart the chat is loaded again (waiting, if need be, for the
    // minute Gemini CLI 0.61 needs), its replay not shown, and the agent remembers.
    drop(daemon);
    drop(relay);
    let (relay, daemon, _home) = start_gemini_node(home, &cli, api);
    send(
        &relay,
        json!({"action": "session.start", "session_id": "again", "provider": "gemini", "cwd": w,
                        "resume_session_id": sid, "prompt": "still there?"}),
    );
    let ev = events_until_long(&relay, "session.result", &|| daemon.stderr());
    assert_eq!(
        named(&ev, "session.identified")[0]["sdk_session_id"],
        sid.as_str()
    );
    assert!(
        named(&ev, "session.tool_use").is_empty(),
        "no replayed tools: {ev:?}"
    );
    let t = texts(&ev);
    let users: usize = t
        .trim_start_matches("Hello from the fake model (")
        .split(' ')
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert!(users > 3, "{t}");
}
