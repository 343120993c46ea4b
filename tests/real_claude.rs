//! End to end with the real Claude Code CLI (issues 4 and 9): the daemon runs `claude`
//! from the npm package `@anthropic-ai/claude-code` against a fake Anthropic Messages API
//! served here on loopback (streaming SSE), and these tests play the browser through the
//! fake relay. Each flow runs against two pinned versions: the older pin and the newest
//! (its native binary needs no Node).
//!
//! A version's CLI is found in `target/claude-code-<version>/` (where `.ci/run` installs
//! it), else it is installed there with npm. When it cannot be, a test fails under
//! `CI=true` (naming what could not be installed) and elsewhere skips, printing one
//! `SKIPPED` line.

mod support;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::http;
use support::node::{events_until, named};
use support::relay::FakeRelay;
use support::*;

/// The versions `.ci/run` installs; a test installs the same when they are missing.
const OLD_PIN: &str = "2.1.197";
const NEW_PIN: &str = "2.1.331";
const T: Duration = Duration::from_secs(60);

fn find_cli(version: &str) -> Result<PathBuf, String> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/claude-code-{version}"));
    let bin = dir.join("node_modules/.bin/claude");
    http::npm_package(&dir, &format!("@anthropic-ai/claude-code@{version}"), &bin)
}

/// The CLI at `version`; without it the test `what` fails under CI and skips elsewhere
/// (saying so).
fn cli_or_skip(version: &str, what: &str) -> Option<PathBuf> {
    real_agent(
        &format!("Claude Code {version}"),
        &format!("real Claude Code {what}"),
        find_cli(version),
    )
}

/// What the fake model does next.
enum Reply {
    Text(String),
    Slow,
    Tool(&'static str, Value),
    /// Say nothing for a long while (the test kills the CLI meanwhile).
    Stall,
}

/// The reply, chosen from the conversation so far: whichever marker came last (the CLI
/// adds context messages of its own, so the last message is not always the prompt).
fn reply_for(body: &Value, stalled: &AtomicBool) -> Reply {
    if body.get("tools").is_none() {
        return Reply::Text("text".into()); // side requests (titles and such)
    }
    let all = body["messages"].to_string();
    // A subagent's own conversation: its task, without the prompt that launched it.
    if all.contains("SUBAGENT task") && !all.contains("launch agent now") {
        return Reply::Text("subagent report".into());
    }
    let at = |needle: &str| all.rfind(needle).map(|p| p as i64).unwrap_or(-1);
    let markers = [
        "\"tool_result\"",
        "write the file",
        "count slowly",
        "WRITE:",
        "launch agent now",
        "stall once",
        "task-notification",
    ];
    let (last, _) = markers
        .iter()
        .map(|m| (*m, at(m)))
        .max_by_key(|(_, p)| *p)
        .unwrap_or(("", -1));
    if at(last) < 0 {
        return Reply::Text("All done here.".into());
    }
    match last {
        "\"tool_result\"" if at("Async agent launched") > at("launch agent now") => {
            Reply::Text("agent launched".into())
        }
        "write the file" => Reply::Tool(
            "Bash",
            json!({"command": "python3 -c \"open('out.txt','w').write('hi')\"", "description": "write file"}),
        ),
        "count slowly" => Reply::Slow,
        "WRITE:" => {
            // WRITE:<path>:<content>
            let rest = &all[at(last) as usize + 6..];
            let spec: String = rest
                .chars()
                .take_while(|c| *c != '"' && *c != '\\')
                .collect();
            let (path, content) = spec.split_once(':').unwrap_or((&spec, ""));
            Reply::Tool(
                "Write",
                json!({"file_path": path, "content": format!("{content}\n")}),
            )
        }
        "launch agent now" => Reply::Tool(
            "Agent",
            json!({"description": "bg task", "prompt": "SUBAGENT task: report back",
                   "subagent_type": "general-purpose", "run_in_background": true}),
        ),
        "stall once" if !stalled.swap(true, Ordering::SeqCst) => Reply::Stall,
        "stall once" => Reply::Text("recovered".into()),
        "task-notification" => Reply::Text("background done".into()),
        _ => Reply::Text("All done here.".into()),
    }
}

fn sse(w: &mut TcpStream, event: &str, data: Value) -> std::io::Result<()> {
    write!(w, "event: {event}\ndata: {data}\n\n")?;
    w.flush()
}

fn serve_api(
    mut s: TcpStream,
    log: Arc<Mutex<Vec<Value>>>,
    stalled: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let Some(req) = http::read_request(&mut s)? else {
        return Ok(());
    };
    let (line, head, body) = (req.line, req.head, req.body);
    log.lock().unwrap().push(json!({"line": line,
        "has_key": head.to_ascii_lowercase().contains("x-api-key: sk-test"),
        "messages": body["messages"].to_string()}));
    if !line.starts_with("POST /v1/messages") || line.contains("count_tokens") {
        let b = "{}";
        write!(
            s,
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
            b.len()
        )?;
        return Ok(());
    }
    let kind = reply_for(&body, &stalled);
    if let Reply::Stall = kind {
        std::thread::sleep(Duration::from_secs(40));
        return Ok(());
    }
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
    let stop = if let Reply::Tool(name, input) = &kind {
        let input = input.to_string();
        sse(
            &mut s,
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": format!("toolu_{mid}"), "name": name, "input": {}}}),
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
        let slow = matches!(kind, Reply::Slow);
        let pieces: Vec<String> = match &kind {
            Reply::Slow => (0..100).map(|i| format!("tick{i} ")).collect(),
            Reply::Text(t) if t == "All done here." => ["All", " done", " here."]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Reply::Text(t) => vec![t.clone()],
            _ => Vec::new(),
        };
        for p in pieces {
            sse(
                &mut s,
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}),
            )?;
            if slow {
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
    let stalled = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let (log, stalled) = (l2.clone(), stalled.clone());
            std::thread::spawn(move || {
                let _ = serve_api(s, log, stalled);
            });
        }
    });
    (port, log)
}

/// A daemon wired to the fake relay and a fake Messages API, running `cli`.
fn start_node(
    cli: &std::path::Path,
    tag: &str,
) -> (FakeRelay, TempDir, Daemon, Arc<Mutex<Vec<Value>>>) {
    start_node_with(cli, tag, &[])
}

/// [`start_node`] with more of the daemon's environment.
fn start_node_with(
    cli: &std::path::Path,
    tag: &str,
    env: &[(&str, &str)],
) -> (FakeRelay, TempDir, Daemon, Arc<Mutex<Vec<Value>>>) {
    let (api_port, api_log) = start_api();
    let relay = FakeRelay::start();
    relay.set_auto_ack(true);
    let home = TempDir::new(tag);
    std::fs::create_dir_all(home.join("work")).unwrap();
    // Under the IDE entrypoint the CLI uses an API key only once it was approved
    // (`customApiKeyResponses` holds the key's last 20 characters).
    std::fs::write(
        home.join(".claude.json"),
        json!({"customApiKeyResponses": {"approved": ["sk-test"], "rejected": []}}).to_string(),
    )
    .unwrap();
    let mut c = agent(&home);
    c.env("CODING_BRIDGE_URL", relay.url())
        .env("CODING_BRIDGE_NODE_TOKEN", "tok-real")
        .env("CODING_BRIDGE_CLAUDE_PATH", cli)
        .env("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{api_port}"))
        .env("ANTHROPIC_API_KEY", "sk-test")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .args(["-v", "run"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let d = Daemon::spawn(c, &home);
    relay
        .recv_type("node.heartbeat", T)
        .unwrap_or_else(|| panic!("link up: {}", d.stderr()));
    (relay, home, d, api_log)
}

/// The messages of the newest API request whose conversation holds `needle` ("" when
/// none does).
fn last_messages(api: &Mutex<Vec<Value>>, needle: &str) -> String {
    api.lock()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r["messages"].as_str().unwrap_or("").contains(needle))
        .map(|r| r["messages"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// The pid of the Claude Code process the daemon started last (from its log).
fn last_cli_pid(d: &Daemon) -> i32 {
    let err = d.stderr();
    let line = err
        .lines()
        .rev()
        .find(|l| l.contains("started claude (pid "))
        .unwrap_or_else(|| panic!("no start in the log: {err}"));
    let tail = &line[line.find("(pid ").unwrap() + 5..];
    tail[..tail.find(')').unwrap()].parse().unwrap()
}

/// Events up to the first `event`, allowing every tool approval asked meanwhile.
fn until_allowing(relay: &FakeRelay, event: &str, err: &dyn Fn() -> String) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let mut asked = None;
        let found = relay.recv_until(T, |v| {
            if v["type"] != "node.to_browser" {
                return false;
            }
            let p = v["payload"].clone();
            got.push(p.clone());
            if p["event"] == "permission.request" {
                asked = Some(p["request_id"].clone());
                return true;
            }
            p["event"] == event
        });
        assert!(found.is_some(), "no {event}; got {got:#?}\n{}", err());
        let Some(id) = asked else { return got };
        assert!(relay.command(
            &format!("allow-{id}"),
            json!({"action": "permission.resolve", "request_id": id, "decision": "allow"})
        ));
    }
}

/// Resume after an idle exit, a silent retry after a crash, interrupt with a pending
/// approval, an edit that restores code, and a background Agent turn (issue 9).
fn session_flows(version: &str) {
    let Some(cli) = cli_or_skip(version, "flows") else {
        return;
    };
    let (relay, home, d, api) = start_node(&cli, &format!("flows-{version}"));
    let work = home.join("work");
    let err = || format!("daemon stderr: {}", d.stderr());
    let n = AtomicU32::new(0);
    let cmd =
        |p: Value| assert!(relay.command(&format!("f{}", n.fetch_add(1, Ordering::Relaxed)), p));
    let last_messages = |needle: &str| last_messages(&api, needle);

    // 1. A first turn, then the CLI dies while idle: the next prompt resumes it.
    cmd(
        json!({"action": "session.start", "session_id": "b1", "prompt": "Remember the word PELICAN", "cwd": work}),
    );
    let ev = until_allowing(&relay, "session.result", &err);
    let real = named(&ev, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        named(&ev, "session.started")[0]["permission_mode"],
        "default"
    );
    // An idle exit comes after the CLI saved the turn.
    let transcript = home
        .join(".claude/projects")
        .join(coding_bridge_agent::testing::project_slug(&work))
        .join(format!("{real}.jsonl"));
    assert!(
        wait_until(T, || std::fs::read_to_string(&transcript)
            .is_ok_and(|t| t.contains("All done here"))),
        "no transcript at {}",
        transcript.display()
    );
    let pid = last_cli_pid(&d);
    // SAFETY: a plain signal to the CLI process this test's daemon started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(
        wait_until(T, || d.stderr().contains("exited while idle")),
        "{}",
        err()
    );
    cmd(
        json!({"action": "session.send", "session_id": real, "prompt": "Which word did I ask you to remember?"}),
    );
    let ev = until_allowing(&relay, "session.result", &err);
    assert!(
        named(&ev, "session.identified").is_empty(),
        "re-keyed: {ev:#?}"
    );
    let r = ev.last().unwrap();
    assert_eq!(r["is_error"], false, "{ev:#?}");
    assert_eq!(r["sdk_session_id"], real.as_str());
    assert!(
        last_messages("Which word").contains("PELICAN"),
        "the resumed CLI lost the conversation"
    );
    assert_ne!(last_cli_pid(&d), pid);

    // 2. The CLI dies mid-turn before any output: the turn is retried, silently, resuming.
    cmd(
        json!({"action": "session.send", "session_id": real, "prompt": "Please stall once", "trace_id": "t-stall"}),
    );
    assert!(
        wait_until(T, || !last_messages("stall once").is_empty()),
        "the stalled request never came"
    );
    let pid = last_cli_pid(&d);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let ev = until_allowing(&relay, "session.result", &err);
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    let r = ev.last().unwrap();
    assert_eq!(r["result"], "recovered", "{ev:#?}");
    assert_eq!(r["trace_id"], "t-stall");
    assert_eq!(r["sdk_session_id"], real.as_str());
    assert!(last_messages("stall once").contains("PELICAN"));

    // 3. Interrupt while an approval is pending: denied, and the turn ends interrupted.
    cmd(
        json!({"action": "session.send", "session_id": real, "prompt": "Please write the file out.txt"}),
    );
    let req = events_until(&relay, "permission.request", &err)
        .pop()
        .unwrap();
    assert_eq!(req["tool"], "Bash");
    cmd(json!({"action": "session.interrupt", "session_id": real}));
    let ev = events_until(&relay, "session.result", &err);
    let resolved = named(&ev, "permission.resolved");
    assert_eq!(resolved[0]["request_id"], req["request_id"]);
    assert_eq!(resolved[0]["decision"], "deny");
    let r = ev.last().unwrap();
    assert_eq!(r["subtype"], "interrupted", "{ev:#?}");
    assert_eq!(r["is_error"], false);
    assert!(!work.join("out.txt").exists(), "an interrupted command ran");

    // 4. Two turns write a file; an edit of the second with restore_code brings back
    //    what the first wrote.
    let f = work.join("f.txt");
    cmd(
        json!({"action": "session.send", "session_id": real, "permission_mode": "acceptEdits",
               "prompt": format!("WRITE:{}:version one", f.display())}),
    );
    let ev = until_allowing(&relay, "session.result", &err);
    let cut = ev.last().unwrap()["cut_uuid"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(&f).unwrap_or_default(),
        "version one\n",
        "{ev:#?}"
    );
    cmd(
        json!({"action": "session.send", "session_id": real, "prompt": format!("WRITE:{}:version two", f.display())}),
    );
    until_allowing(&relay, "session.result", &err);
    assert_eq!(
        std::fs::read_to_string(&f).unwrap_or_default(),
        "version two\n"
    );
    cmd(
        json!({"action": "session.edit", "session_id": real, "prompt": "Never mind, just say hi",
               "cut_uuid": cut, "restore_code": true}),
    );
    let ev = until_allowing(&relay, "session.result", &err);
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    assert_eq!(named(&ev, "session.rewound")[0]["cut_uuid"], cut.as_str());
    assert_eq!(
        std::fs::read_to_string(&f).unwrap_or_default(),
        "version one\n",
        "restore_code did not restore the file"
    );
    let forked = ev.last().unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(forked, real, "an edit forks");

    // 5. A background agent: its lines carry their parent; the turn the CLI starts by
    //    itself when the agent is done is shown and closed with its own result.
    cmd(
        json!({"action": "session.send", "session_id": forked, "prompt": "Please launch agent now", "trace_id": "t-bg"}),
    );
    let ev = until_allowing(&relay, "session.result", &err);
    let r = ev.last().unwrap();
    assert_eq!(r["trace_id"], "t-bg");
    assert_eq!(r["result"], "agent launched", "{ev:#?}");
    let mut later = Vec::new();
    let found = relay.recv_until(T, |v| {
        if v["type"] != "node.to_browser" {
            return false;
        }
        later.push(v["payload"].clone());
        v["payload"]["event"] == "session.result"
    });
    assert!(
        found.is_some(),
        "no turn of the CLI's own: {later:#?}\n{}",
        err()
    );
    let auto = later.last().unwrap();
    assert_eq!(auto["result"], "background done", "{later:#?}");
    assert!(auto.get("trace_id").is_none());
    assert!(
        later
            .iter()
            .chain(ev.iter())
            .any(|e| e["text"] == "subagent report" && e["parent_tool_use_id"].is_string()),
        "no subagent event with its parent: {later:#?}"
    );
    cmd(json!({"action": "sessions.list"}));
    let snap = events_until(&relay, "sessions.snapshot", &err)
        .pop()
        .unwrap();
    assert_eq!(snap["sessions"][0]["status"], "idle");
    assert!(snap["sessions"][0]["resolved_model"].is_string());
}

#[test]
fn real_claude_code_session_flows_old_pin() {
    session_flows(OLD_PIN);
}

#[test]
fn real_claude_code_session_flows_newest() {
    session_flows(NEW_PIN);
}

#[test]
fn real_claude_code_deny_allow_continue_interrupt_old_pin() {
    deny_allow_continue_interrupt(OLD_PIN);
}

#[test]
fn real_claude_code_deny_allow_continue_interrupt_newest() {
    deny_allow_continue_interrupt(NEW_PIN);
}

fn deny_allow_continue_interrupt(version: &str) {
    let Some(cli) = cli_or_skip(version, "test") else {
        return;
    };
    let (relay, home, d, api_log) = start_node(&cli, &format!("real-{version}"));
    let work = home.join("work");
    let err = || format!("daemon stderr: {}", d.stderr());
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
    assert!(
        req["input"]["command"]
            .as_str()
            .unwrap()
            .contains("out.txt")
    );
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

    // Turn 4: interrupted mid-stream, it ends as interrupted, its text committed.
    cmd(
        "c6",
        json!({"action": "session.send", "session_id": real, "prompt": "Now count slowly"}),
    );
    let first_delta = events_until(&relay, "session.text_delta", &err)
        .pop()
        .unwrap();
    cmd(
        "c7",
        json!({"action": "session.interrupt", "session_id": real}),
    );
    let ev = events_until(&relay, "session.result", &err);
    let result = ev.last().unwrap();
    assert_eq!(result["is_error"], false, "{ev:#?}");
    assert_eq!(result["subtype"], "interrupted");
    assert!(
        named(&ev, "session.text")
            .iter()
            .any(|t| t["id"] == first_delta["id"]),
        "the cut-off block was not committed: {ev:#?}"
    );

    let api = api_log.lock().unwrap();
    assert!(api.iter().any(
        |r| r["line"].as_str().unwrap().starts_with("POST /v1/messages") && r["has_key"] == true
    ));
}

/// Issue 12 with the real CLI: a Telegram chat (the fake Bot API of `support::telegram`)
/// drives Claude Code; its Bash and Write approvals come as buttons, and the button
/// decides whether the file is written.
#[test]
fn real_claude_code_from_a_telegram_chat() {
    use support::telegram::{FakeBot, ME, TOKEN, approval, button};
    let Some(cli) = cli_or_skip(NEW_PIN, "from a Telegram chat") else {
        return;
    };
    let (api_port, _api_log) = start_api();
    let bot = FakeBot::start();
    let relay = FakeRelay::start();
    relay.set_auto_ack(true);
    let home = TempDir::new("real-tg");
    let work = home.join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(home.join("cfg")).unwrap();
    std::fs::write(
        home.join(".claude.json"),
        json!({"customApiKeyResponses": {"approved": ["sk-test"], "rejected": []}}).to_string(),
    )
    .unwrap();
    std::fs::write(
        home.join("cfg/channels.toml"),
        format!(
            "[[channels.telegram]]\ninstance_id = \"main\"\napi_base = \"http://127.0.0.1:{}\"\n\
             token_env = \"TG_TOKEN\"\nallowed_senders = [{ME}]\ncwd = \"{}\"\npoll_timeout_seconds = 1\n",
            bot.port,
            work.display()
        ),
    )
    .unwrap();
    let mut c = agent(&home);
    c.env("CODING_BRIDGE_URL", relay.url())
        .env("CODING_BRIDGE_NODE_TOKEN", "tok-real")
        .env("CODING_BRIDGE_CLAUDE_PATH", &cli)
        .env("TG_TOKEN", TOKEN)
        .env("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{api_port}"))
        .env("ANTHROPIC_API_KEY", "sk-test")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .args(["-v", "run"]);
    let d = Daemon::spawn(c, &home);
    relay
        .recv_type("node.heartbeat", T)
        .unwrap_or_else(|| panic!("link up: {}", d.stderr()));
    let shown = |what: &str, f: &dyn Fn(&str) -> bool| {
        assert!(
            wait_until(T, || bot.shown(ME).iter().any(|t| f(t))),
            "no {what}; chat shows {:?}; log: {}",
            bot.shown(ME),
            d.stderr()
        );
    };

    // Allowed by button: the command runs and writes the file.
    bot.message(ME, ME, "please write the file");
    let (text, buttons) = approval(&bot);
    assert!(text.contains("Bash"), "{text}");
    bot.press(ME, ME, button(&buttons, "Allow"));
    shown("the reply after the tool", &|t| {
        t.contains("All done here.")
    });
    assert_eq!(std::fs::read_to_string(work.join("out.txt")).unwrap(), "hi");

    // Denied by button, in the same conversation: nothing is written.
    bot.forget_calls();
    bot.message(ME, ME, "WRITE:denied.txt:secret");
    let (text, buttons) = approval(&bot);
    assert!(
        text.contains("Write") && text.contains("denied.txt"),
        "{text}"
    );
    bot.press(ME, ME, button(&buttons, "Deny"));
    bot.wait("the denial shown", |m, b| {
        m == "editMessageText" && b["text"].as_str().unwrap_or("").starts_with("⛔ Denied")
    });
    shown("the reply after the denial", &|t| {
        t.contains("All done here.")
    });
    assert!(!work.join("denied.txt").exists());
    let starts = d.stderr().matches("started claude (pid ").count();
    assert_eq!(starts, 1, "one CLI for the conversation: {}", d.stderr());
}

/// Issue 17 points 1 and 4 with the newest pin: the local commands a browser sends end
/// their turns, each with exactly one result of its own (`/compact`, `/context`, `/cost`,
/// `/status` and every other local command that can run headless; `/login` refused with
/// a notice), and the next prompt works. Then the
/// browser's Retry (a `session.start` carrying `bypassPermissions`) of a default-mode
/// session: Bash still asks, and a denial writes nothing.
#[test]
fn real_claude_code_local_commands_end_their_turns_and_retry_keeps_the_mode() {
    let Some(cli) = cli_or_skip(NEW_PIN, "local commands and Retry") else {
        return;
    };
    let (relay, home, d, _api) = start_node(&cli, "local-cmds");
    let work = home.join("work");
    let err = || format!("daemon stderr: {}", d.stderr());
    let n = AtomicU32::new(0);
    let cmd =
        |p: Value| assert!(relay.command(&format!("l{}", n.fetch_add(1, Ordering::Relaxed)), p));
    let no_more_results = |what: &str| {
        let stray = relay.recv_until(Duration::from_secs(2), |v| {
            v["payload"]["event"] == "session.result"
        });
        assert!(stray.is_none(), "a second result after {what}: {stray:?}");
    };

    cmd(
        json!({"action": "session.start", "session_id": "lc1", "prompt": "Remember the word PELICAN", "cwd": work}),
    );
    let ev = until_allowing(&relay, "session.result", &err);
    let real = named(&ev, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        named(&ev, "session.started")[0]["permission_mode"],
        "default"
    );

    // Every local command 2.1.331 lists in `initialize` that runs without a terminal and
    // without an argument it must have (heapdump left out: it writes a heap file).
    let local = [
        "/compact",
        "/context",
        "/cost",
        "/usage",
        "/status",
        "/color",
        "/focus",
        "/autocompact",
        "/output-style",
        "/mcp",
        "/reload-plugins",
        "/reload-skills",
        "/rename probe",
        "/login",
    ];
    for c in local {
        cmd(json!({"action": "session.send", "session_id": real, "prompt": c, "trace_id": c}));
        let ev = events_until(&relay, "session.result", &err);
        let r = ev.last().unwrap();
        assert_eq!(r["trace_id"], c, "{c}: {ev:#?}");
        assert!(named(&ev, "session.error").is_empty(), "{c}: {ev:#?}");
        if c == "/login" {
            let notice = named(&ev, "session.notice");
            assert!(
                notice
                    .iter()
                    .any(|n| n["code"] == "slash_unavailable" && n["command"] == "login"),
                "{ev:#?}"
            );
            assert_eq!(r["subtype"], "notice", "{ev:#?}");
        } else {
            assert_eq!(r["is_error"], false, "{c}: {ev:#?}");
        }
        no_more_results(c);
    }
    // The next prompt runs, in the same conversation, with its own result.
    cmd(
        json!({"action": "session.send", "session_id": real, "prompt": "Thanks, anything else?", "trace_id": "after"}),
    );
    let ev = until_allowing(&relay, "session.result", &err);
    let r = ev.last().unwrap();
    assert_eq!(r["result"], "All done here.", "{ev:#?}");
    assert_eq!(r["trace_id"], "after");
    assert_eq!(r["is_error"], false);
    no_more_results("the prompt after the commands");

    // The browser's Retry: session.start for the held session with bypass and no effort.
    for sid in ["lc1", real.as_str()] {
        cmd(
            json!({"action": "session.start", "session_id": sid, "resume_session_id": real,
                   "prompt": "Please write the file out.txt", "cwd": work,
                   "permission_mode": "bypassPermissions"}),
        );
        let ev = events_until(&relay, "permission.request", &err);
        let req = ev.last().unwrap().clone();
        assert_eq!(req["tool"], "Bash", "{ev:#?}");
        cmd(
            json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "deny"}),
        );
        let ev = events_until(&relay, "session.result", &err);
        assert!(
            named(&ev, "session.tool_result")
                .iter()
                .any(|t| t["is_error"] == true),
            "{ev:#?}"
        );
        assert!(!work.join("out.txt").exists(), "a Retry ran Bash unasked");
    }
    cmd(json!({"action": "sessions.list"}));
    let snap = events_until(&relay, "sessions.snapshot", &err)
        .pop()
        .unwrap();
    let s = snap["sessions"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["session_id"] == real.as_str()))
        .unwrap_or_else(|| panic!("{snap}"));
    assert_eq!(s["permission_mode"], "default", "{snap}");
}

/// Issue 19: an idle Claude Code is stopped (process and all), and the next turn resumes
/// it: the same conversation (the resumed CLI sends the earlier messages to the API), no
/// re-key, no error, no notice.
#[test]
fn real_claude_code_stopped_while_idle_resumes_with_the_conversation() {
    let Some(cli) = cli_or_skip(NEW_PIN, "idle stop") else {
        return;
    };
    let (relay, home, d, api) =
        start_node_with(&cli, "idle-stop", &[("CODING_BRIDGE_IDLE_STOP", "2")]);
    let work = home.join("work");
    let err = || format!("daemon stderr: {}", d.stderr());
    let n = AtomicU32::new(0);
    let cmd =
        |p: Value| assert!(relay.command(&format!("i{}", n.fetch_add(1, Ordering::Relaxed)), p));
    cmd(
        json!({"action": "session.start", "session_id": "b1", "prompt": "Remember the word PELICAN", "cwd": work}),
    );
    let ev = until_allowing(&relay, "session.result", &err);
    let real = named(&ev, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let pid = last_cli_pid(&d);
    // SAFETY: signal 0 only asks whether the process exists.
    let alive = || unsafe { libc::kill(pid, 0) } == 0;
    assert!(wait_until(T, || !alive()), "not stopped: {}", err());
    assert!(d.stderr().contains("idle for"), "{}", err());
    cmd(
        json!({"action": "session.send", "session_id": real, "prompt": "Which word did I ask you to remember?"}),
    );
    let ev = until_allowing(&relay, "session.result", &err);
    for name in ["session.identified", "session.error", "session.notice"] {
        assert!(named(&ev, name).is_empty(), "{name}: {ev:#?}");
    }
    let r = ev.last().unwrap();
    assert_eq!(r["is_error"], false, "{ev:#?}");
    assert_eq!(r["sdk_session_id"], real.as_str());
    let asked = last_messages(&api, "Which word");
    assert!(
        asked.contains("PELICAN"),
        "the resumed CLI lost the conversation: {asked}"
    );
    assert_ne!(last_cli_pid(&d), pid, "a new process took the turn");
}

/// Issue 20: the owner's rules decide the real CLI's approvals on the node (an allow
/// never reaches the browser, a deny tells the model why), a policy read on SIGHUP, and
/// the browser's bypassPermissions refused, so the CLI asks at all.
#[test]
fn real_claude_code_approvals_decided_by_the_nodes_rules() {
    let Some(cli) = cli_or_skip(NEW_PIN, "test") else {
        return;
    };
    let (relay, home, d, api_log) = start_node(&cli, "real-rules");
    let work = home.join("work");
    let err = || format!("daemon stderr: {}", d.stderr());
    std::fs::write(
        home.join("cfg/policy.toml"),
        format!(
            "permission_modes = [\"default\", \"plan\"]\n\n[[rule]]\ntool = \"Write\"\nmatch = \"{}/*\"\ndecision = \"allow\"\n\n[[rule]]\ntool = \"Bash\"\nmatch = \"python3*\"\ndecision = \"deny\"\n",
            work.display()
        ),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || d
            .stderr()
            .contains("read again")),
        "{}",
        err()
    );
    let file = work.join("ruled.txt");
    assert!(relay.command(
        "r1",
        json!({"action": "session.start", "session_id": "rules-1", "cwd": work,
               "permission_mode": "bypassPermissions",
               "prompt": format!("WRITE:{}:by the rule", file.display())})
    ));
    // Decided on the node: no question in the browser, and this notice.
    let decided_here = |ev: &[Value], notice: &str| {
        assert!(
            ev.iter().all(|e| e["event"] != "permission.request"),
            "{ev:#?}"
        );
        assert!(
            ev.iter()
                .any(|e| e["event"] == "session.notice" && e["code"] == notice),
            "{ev:#?}"
        );
    };
    let ev = events_until(&relay, "session.result", &err);
    decided_here(&ev, "mode_refused");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default().trim(),
        "by the rule"
    );
    let real = ev
        .iter()
        .find(|e| e["event"] == "session.identified")
        .and_then(|e| e["sdk_session_id"].as_str())
        .unwrap()
        .to_string();
    // The model asks for `python3 -c …`: denied on the node, the reason in its context.
    assert!(relay.command(
        "r2",
        json!({"action": "session.send", "session_id": real, "prompt": "Please write the file out.txt"})
    ));
    let ev = events_until(&relay, "session.result", &err);
    decided_here(&ev, "tool_denied");
    assert!(!work.join("out.txt").exists(), "a denied command ran");
    assert!(
        last_messages(&api_log, "Denied by").contains("policy.toml line"),
        "the model was not told why"
    );
}
