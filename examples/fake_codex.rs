//! A scripted `codex app-server` for the benchmark (and the error paths real Codex does
//! not take on demand): it answers `initialize`, `thread/start`/`thread/resume` and
//! `turn/start` like Codex 0.169, and a turn whose prompt is `flood N` streams N
//! `item/agentMessage/delta` notifications, one line per write, before completing.
//! The error paths: `crash` (a delta, then exit 3 mid-turn), `garbage` (lines that are not
//! messages, then a normal answer), `abandon` (asks to approve a command, then settles the
//! request itself with `serverRequest/resolved` and completes the turn), `approve <cmd>`
//! (asks to approve running `<cmd>` and, once answered, completes the turn saying
//! `decision: <the answer>`). Any other prompt
//! is answered `echo: <prompt>`. Every line it receives is appended to `FAKE_CODEX_LOG`
//! when set.

use std::io::{BufRead, Write};

use serde_json::{Value, json};

fn send(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn main() {
    let thread = format!(
        "0000fake-{:04}-7000-8000-000000000000",
        std::process::id() % 10000
    );
    let mut turn_no = 0;
    // A turn waiting for the answer to its approval request (id 9): its turn id.
    let mut waiting: Option<String> = None;
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if let Some(path) = std::env::var_os("FAKE_CODEX_LOG")
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
        if v["method"].is_null()
            && id == 9
            && let Some(turn) = waiting.take()
        {
            let decision = v["result"]["decision"].as_str().unwrap_or("?").to_string();
            let item = format!("msg_{turn}");
            let text = format!("decision: {decision}");
            send(
                json!({"method": "item/started", "params": {"threadId": thread, "turnId": turn,
                "item": {"type": "agentMessage", "id": item, "text": ""}}}),
            );
            send(
                json!({"method": "item/agentMessage/delta", "params": {"threadId": thread,
                "turnId": turn, "itemId": item, "delta": text}}),
            );
            send(
                json!({"method": "item/completed", "params": {"threadId": thread, "turnId": turn,
                "item": {"type": "agentMessage", "id": item, "text": text}}}),
            );
            send(
                json!({"method": "turn/completed", "params": {"threadId": thread,
                "turn": {"id": turn, "status": "completed", "error": null}}}),
            );
            continue;
        }
        match v["method"].as_str() {
            Some("initialize") => send(json!({"id": id, "result": {"userAgent": "fake/0.0.0"}})),
            Some("thread/start") => {
                send(json!({"id": id, "result": {"thread": {"id": thread}, "model": "fake-model"}}))
            }
            // A resumed thread keeps its id.
            Some("thread/resume") => {
                let resumed = v["params"]["threadId"]
                    .as_str()
                    .unwrap_or(&thread)
                    .to_string();
                send(
                    json!({"id": id, "result": {"thread": {"id": resumed}, "model": "fake-model"}}),
                )
            }
            Some("turn/start") => {
                turn_no += 1;
                let turn = format!("turn-{turn_no}");
                send(json!({"id": id, "result": {"turn": {"id": turn, "status": "inProgress"}}}));
                let prompt: String = v["params"]["input"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["text"].as_str())
                    .collect();
                if let Some(cmd) = prompt.strip_prefix("approve ") {
                    send(
                        json!({"id": 9, "method": "item/commandExecution/requestApproval",
                        "params": {"threadId": thread, "turnId": turn, "itemId": "call_9",
                                   "command": cmd, "cwd": "/"}}),
                    );
                    waiting = Some(turn);
                    continue;
                }
                let item = format!("msg_{turn_no}");
                let base = json!({"threadId": thread, "turnId": turn});
                send(
                    json!({"method": "item/started", "params": {"threadId": thread, "turnId": turn,
                    "item": {"type": "agentMessage", "id": item, "text": ""}}}),
                );
                match prompt.as_str() {
                    "crash" => {
                        let mut p = base.clone();
                        p["itemId"] = json!(item);
                        p["delta"] = json!("about to fail");
                        send(json!({"method": "item/agentMessage/delta", "params": p}));
                        eprintln!("fake codex: crashing on purpose");
                        std::process::exit(3);
                    }
                    "garbage" => {
                        println!("not JSON at all");
                        send(json!([1, 2, 3]));
                        send(json!({"method": 5}));
                    }
                    "abandon" => {
                        send(
                            json!({"id": 0, "method": "item/commandExecution/requestApproval",
                            "params": {"threadId": thread, "turnId": turn, "itemId": "call_x",
                                       "command": "/bin/bash -lc 'rm -rf build'",
                                       "commandActions": [{"type": "unknown", "command": "rm -rf build"}]}}),
                        );
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        send(
                            json!({"method": "serverRequest/resolved", "params": {"threadId": thread, "requestId": 0}}),
                        );
                    }
                    _ => {}
                }
                let mut text = String::new();
                let deltas: Vec<String> = match prompt.strip_prefix("flood ") {
                    Some(n) => (0..n.trim().parse::<usize>().unwrap_or(1000))
                        .map(|i| format!("d{i} "))
                        .collect(),
                    None => vec![format!("echo: {prompt}")],
                };
                for d in deltas {
                    text.push_str(&d);
                    let mut p = base.clone();
                    p["itemId"] = json!(item);
                    p["delta"] = json!(d);
                    send(json!({"method": "item/agentMessage/delta", "params": p}));
                }
                send(
                    json!({"method": "item/completed", "params": {"threadId": thread, "turnId": turn,
                    "item": {"type": "agentMessage", "id": item, "text": text}}}),
                );
                send(
                    json!({"method": "turn/completed", "params": {"threadId": thread,
                    "turn": {"id": turn, "status": "completed", "error": null}}}),
                );
            }
            Some(_) if !id.is_null() => send(json!({"id": id, "result": {}})),
            _ => {}
        }
    }
}
