//! A scripted ACP agent for the error paths real agents do not take on demand (used by
//! `tests/agent_errors.rs`, declared to the daemon through `<config dir>/agents.json`). It
//! speaks just enough of the Agent Client Protocol, and the prompt picks what goes wrong:
//!
//! - `crash`: one text chunk, then exit 3 in the middle of the turn;
//! - `garbage`: lines that are not JSON, a JSON line that is no message, then a normal reply;
//! - `abandon`: asks for a permission, then ends the turn without waiting for the answer;
//! - `hangup`: never answers the prompt and exits when stdin closes;
//! - `ask` / `askedit`: asks to run a command / to edit a file, and waits: the answer's outcome ends the turn
//!   (`cancelled` → stopReason `cancelled`);
//! - `flood N`: N text chunks, one line per write (the benchmark's stream);
//! - anything else: `echo: <prompt>`.
//!
//! With `FAKE_ACP_LOAD=1` it offers `session/load` (and a loaded session keeps its id).
//! Every line it receives is appended to `FAKE_ACP_LOG` when set.

use std::io::{BufRead, Write};

use serde_json::{Value, json};

fn send(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn chunk(session: &str, text: &str) {
    send(
        json!({"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": session,
        "update": {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}}}),
    );
}

fn main() {
    let log = std::env::var("FAKE_ACP_LOG").ok();
    let mut session = format!("fake-{}", std::process::id());
    let can_load = std::env::var_os("FAKE_ACP_LOAD").is_some();
    let mut pending_prompt: Option<Value> = None;
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if let Some(path) = &log
            && let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let id = v["id"].clone();
        match v["method"].as_str() {
            Some("initialize") => send(json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": 1, "agentCapabilities": {"loadSession": can_load}}})),
            Some("session/load") if can_load => {
                session = v["params"]["sessionId"]
                    .as_str()
                    .unwrap_or(&session)
                    .to_string();
                send(json!({"jsonrpc": "2.0", "id": id, "result": {}}))
            }
            Some("session/new") => {
                // FAKE_ACP_FAIL_NEW_ONCE=<file>: the first session/new fails (the file records it).
                if let Ok(marker) = std::env::var("FAKE_ACP_FAIL_NEW_ONCE")
                    && !std::path::Path::new(&marker).exists()
                {
                    let _ = std::fs::write(&marker, "failed once");
                    send(json!({"jsonrpc": "2.0", "id": id,
                                "error": {"code": -32603, "message": "no session today"}}));
                    continue;
                }
                send(json!({"jsonrpc": "2.0", "id": id, "result": {"sessionId": session}}))
            }
            Some("session/prompt") => {
                let prompt: String = v["params"]["prompt"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["text"].as_str())
                    .collect();
                match prompt.as_str() {
                    "crash" => {
                        chunk(&session, "about to fail");
                        eprintln!("fake agent: crashing on purpose");
                        std::process::exit(3);
                    }
                    "garbage" => {
                        send(json!(["not", "a", "message"]));
                        println!("this is not JSON at all");
                        println!("{{\"half\": ");
                        chunk(&session, "still fine");
                        send(
                            json!({"jsonrpc": "2.0", "id": id, "result": {"stopReason": "end_turn"}}),
                        );
                    }
                    "abandon" => {
                        send(
                            json!({"jsonrpc": "2.0", "id": 0, "method": "session/request_permission", "params": {
                            "sessionId": session,
                            "toolCall": {"toolCallId": "t1", "title": "rm -rf build", "kind": "execute", "status": "pending",
                                         "rawInput": {"command": "rm -rf build"}},
                            "options": [{"optionId": "yes", "kind": "allow_once", "name": "Allow"},
                                        {"optionId": "no", "kind": "reject_once", "name": "Deny"}]}}),
                        );
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        chunk(&session, "never mind");
                        send(
                            json!({"jsonrpc": "2.0", "id": id, "result": {"stopReason": "end_turn"}}),
                        );
                    }
                    "hangup" => {}
                    "ask" | "askedit" => {
                        let kind = if prompt == "ask" { "execute" } else { "edit" };
                        send(
                            json!({"jsonrpc": "2.0", "id": 7, "method": "session/request_permission", "params": {
                            "sessionId": session,
                            "toolCall": {"toolCallId": "t7", "title": "touch x", "kind": kind, "status": "pending",
                                         "rawInput": {"command": "touch x"}},
                            "options": [{"optionId": "yes", "kind": "allow_once", "name": "Allow"},
                                        {"optionId": "no", "kind": "reject_once", "name": "Deny"}]}}),
                        );
                        pending_prompt = Some(id.clone());
                    }
                    p if p.starts_with("flood ") => {
                        let n: usize = p[6..].trim().parse().unwrap_or(1000);
                        for i in 0..n {
                            chunk(&session, &format!("d{i} "));
                        }
                        send(
                            json!({"jsonrpc": "2.0", "id": id, "result": {"stopReason": "end_turn"}}),
                        );
                    }
                    other => {
                        chunk(&session, &format!("echo: {other}"));
                        send(
                            json!({"jsonrpc": "2.0", "id": id, "result": {"stopReason": "end_turn"}}),
                        );
                    }
                }
            }
            Some("session/cancel") => {}
            None if v["id"] == 7 => {
                // The answer to our permission request ends the waiting prompt.
                let outcome = v
                    .pointer("/result/outcome/outcome")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if let Some(pid) = pending_prompt.take() {
                    let stop = if outcome == "cancelled" {
                        "cancelled"
                    } else {
                        "end_turn"
                    };
                    send(json!({"jsonrpc": "2.0", "id": pid, "result": {"stopReason": stop}}));
                }
            }
            Some(_) if !id.is_null() => send(json!({"jsonrpc": "2.0", "id": id, "result": {}})),
            _ => {}
        }
    }
}
