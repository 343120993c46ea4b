//! End to end with the real Claude Code CLI (issue 4): the daemon runs `claude` from the
//! npm package `@anthropic-ai/claude-code` against a fake Anthropic Messages API served
//! here on loopback (streaming SSE), and this test plays the browser through the fake relay.
//!
//! The CLI is found at `$CODING_BRIDGE_TEST_CLAUDE`, else `target/claude-code/` (where
//! `.ci/run` installs it), else it is installed there with npm. The test skips, saying
//! why, only when it cannot be installed.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::node::events_until;
use support::relay::FakeRelay;
use support::*;

/// The version `.ci/run` installs; the test installs the same.
const CLI_PACKAGE: &str = "@anthropic-ai/claude-code@2.1.197";
const T: Duration = Duration::from_secs(60);

fn find_cli() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("CODING_BRIDGE_TEST_CLAUDE") {
        return Ok(PathBuf::from(p));
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/claude-code");
    let bin = dir.join("node_modules/.bin/claude");
    if bin.exists() {
        return Ok(bin);
    }
    let npm = std::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(CLI_PACKAGE)
        .output()
        .map_err(|e| format!("npm is not available ({e})"))?;
    if !npm.status.success() || !bin.exists() {
        return Err(format!(
            "npm could not install {CLI_PACKAGE}: {}",
            String::from_utf8_lossy(&npm.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    Ok(bin)
}

/// What the fake model says next, chosen from the conversation so far: whichever came
/// last of a tool result, "write the file" or "count slowly" (the CLI adds context
/// messages of its own, so the last message is not always the user's prompt).
fn reply_for(body: &Value) -> &'static str {
    if body.get("tools").is_none() {
        return "text"; // side requests (titles and such) get plain text
    }
    let all = body["messages"].to_string();
    let at = |needle: &str| all.rfind(needle).map(|p| p as i64).unwrap_or(-1);
    let (tool, write, slow) = (
        at("\"tool_result\""),
        at("write the file"),
        at("count slowly"),
    );
    if write > tool && write > slow {
        "tool"
    } else if slow > tool && slow > write {
        "slow"
    } else {
        "text"
    }
}

fn sse(w: &mut TcpStream, event: &str, data: Value) -> std::io::Result<()> {
    write!(w, "event: {event}\ndata: {data}\n\n")?;
    w.flush()
}

fn serve_api(mut s: TcpStream, log: Arc<Mutex<Vec<Value>>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = head.lines().next().unwrap_or("").to_string();
    let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
    log.lock().unwrap().push(
        json!({"line": line, "has_key": head.to_ascii_lowercase().contains("x-api-key: sk-test")}),
    );
    if !line.starts_with("POST /v1/messages") || line.contains("count_tokens") {
        let b = "{}";
        write!(
            s,
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
            b.len()
        )?;
        return Ok(());
    }
    let kind = reply_for(&body);
    let model = body["model"]
        .as_str()
        .unwrap_or("claude-sonnet-4-5")
        .to_string();
    write!(
        s,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n"
    )?;
    static N: AtomicU32 = AtomicU32::new(0);
    let mid = format!("msg_fake{:08}", N.fetch_add(1, Ordering::Relaxed));
    sse(
        &mut s,
        "message_start",
        json!({"type": "message_start", "message": {"id": mid, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
    )?;
    let stop = if kind == "tool" {
        let input =
            json!({"command": "echo hi > out.txt", "description": "write file"}).to_string();
        sse(
            &mut s,
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": format!("toolu_{mid}"), "name": "Bash", "input": {}}}),
        )?;
        for part in input.as_bytes().chunks(16) {
            sse(
                &mut s,
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": String::from_utf8_lossy(part)}}),
            )?;
        }
        sse(
            &mut s,
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        )?;
        "tool_use"
    } else {
        sse(
            &mut s,
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        )?;
        let pieces: Vec<String> = if kind == "slow" {
            (0..100).map(|i| format!("tick{i} ")).collect()
        } else {
            ["All", " done", " here."]
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        for p in pieces {
            sse(
                &mut s,
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}),
            )?;
            if kind == "slow" {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        sse(
            &mut s,
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        )?;
        "end_turn"
    };
    sse(
        &mut s,
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 12}}),
    )?;
    sse(&mut s, "message_stop", json!({"type": "message_stop"}))?;
    Ok(())
}

fn start_api() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let log = l2.clone();
            std::thread::spawn(move || {
                let _ = serve_api(s, log);
            });
        }
    });
    (port, log)
}

#[test]
fn real_claude_code_deny_allow_continue_interrupt() {
    let cli = match find_cli() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED real_claude_code test: {why}");
            return;
        }
    };
    let (api_port, api_log) = start_api();
    let relay = FakeRelay::start();
    relay.set_auto_ack(true);
    let home = TempDir::new("real");
    let work = home.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut c = agent(&home);
    c.env("CODING_BRIDGE_URL", relay.url())
        .env("CODING_BRIDGE_NODE_TOKEN", "tok-real")
        .env("CODING_BRIDGE_CLAUDE_PATH", &cli)
        .env("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{api_port}"))
        .env("ANTHROPIC_API_KEY", "sk-test")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .args(["-v", "run"]);
    let d = Daemon::spawn(c, &home);
    let err = || format!("daemon stderr: {}", d.stderr());
    relay.recv_type("node.heartbeat", T).expect("link up");
    let cmd = |id: &str, p: Value| assert!(relay.command(id, p));

    // Turn 1: the model asks for Bash; the browser denies; no file.
    cmd(
        "c1",
        json!({"action": "session.start", "session_id": "browser-1", "prompt": "Please write the file out.txt", "cwd": work}),
    );
    let ev = events_until(&relay, "permission.request", &err);
    let ident = ev
        .iter()
        .find(|e| e["event"] == "session.identified")
        .expect("re-keyed");
    let real = ident["sdk_session_id"].as_str().unwrap().to_string();
    let req = ev.last().unwrap().clone();
    assert_eq!(req["tool"], "Bash");
    assert_eq!(req["input"]["command"], "echo hi > out.txt");
    cmd(
        "c2",
        json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "deny"}),
    );
    let ev = events_until(&relay, "session.result", &err);
    assert!(
        ev.iter()
            .any(|e| e["event"] == "session.tool_result" && e["is_error"] == true),
        "{ev:#?}"
    );
    assert!(!work.join("out.txt").exists(), "a denied command ran");

    // Turn 2: asked again; the browser allows; the file appears.
    cmd(
        "c3",
        json!({"action": "session.send", "session_id": "browser-1", "prompt": "Please write the file out.txt again"}),
    );
    let req = events_until(&relay, "permission.request", &err)
        .pop()
        .unwrap();
    cmd(
        "c4",
        json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "allow"}),
    );
    let ev = events_until(&relay, "session.result", &err);
    let result = ev.last().unwrap();
    assert_eq!(result["is_error"], false, "{ev:#?}");
    assert_eq!(
        std::fs::read_to_string(work.join("out.txt"))
            .unwrap_or_default()
            .trim(),
        "hi"
    );

    // Turn 3: the same session continues.
    cmd(
        "c5",
        json!({"action": "session.send", "session_id": real, "prompt": "Thanks, anything else?"}),
    );
    let ev = events_until(&relay, "session.result", &err);
    let result = ev.last().unwrap();
    assert_eq!(result["sdk_session_id"], real.as_str());
    assert_eq!(result["result"], "All done here.");
    assert!(ev.iter().any(|e| e["event"] == "session.text_delta"));

    // Turn 4: interrupted mid-stream, it ends with an error result.
    cmd(
        "c6",
        json!({"action": "session.send", "session_id": real, "prompt": "Now count slowly"}),
    );
    events_until(&relay, "session.text_delta", &err);
    cmd(
        "c7",
        json!({"action": "session.interrupt", "session_id": real}),
    );
    let ev = events_until(&relay, "session.result", &err);
    let result = ev.last().unwrap();
    assert_eq!(result["is_error"], true, "{ev:#?}");
    assert_eq!(result["subtype"], "error_during_execution");

    let api = api_log.lock().unwrap();
    assert!(api.iter().any(
        |r| r["line"].as_str().unwrap().starts_with("POST /v1/messages") && r["has_key"] == true
    ));
}
