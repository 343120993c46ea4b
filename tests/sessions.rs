//! Claude Code sessions (issue 4) against a scripted fake CLI (`examples/fake_claude.rs`):
//! every session behaviour row, driven through the fake relay as a browser would.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::node::{Node, T, named};
use support::*;

#[test]
fn start_streams_rekeys_and_reports_the_result() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "p1", "prompt": "say hello brave world", "cwd": n.cwd(), "trace_id": "t1"}));
    let ev = n.until("session.result");
    let started = named(&ev, "session.started")[0];
    assert_eq!(started["session_id"], "p1");
    assert_eq!(started["cwd"], n.cwd());
    assert_eq!(started["provider"], "claude");
    let ident = named(&ev, "session.identified")[0];
    assert_eq!(
        ident["session_id"], "p1",
        "identified goes under the old id"
    );
    let real = ident["sdk_session_id"].as_str().unwrap().to_string();
    let deltas = named(&ev, "session.text_delta");
    assert!(deltas.len() >= 2);
    let joined: String = deltas.iter().map(|d| d["text"].as_str().unwrap()).collect();
    assert_eq!(joined, "hello brave world");
    let block_id = format!("{real}:1:1");
    assert!(
        deltas
            .iter()
            .all(|d| d["id"] == block_id.as_str() && d["session_id"] == real.as_str())
    );
    let texts = named(&ev, "session.text");
    assert_eq!(
        texts.len(),
        1,
        "streamed text must not be sent again from the assembled message"
    );
    assert_eq!(texts[0]["text"], "hello brave world");
    assert_eq!(texts[0]["id"], block_id.as_str());
    let result = ev.last().unwrap();
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["is_error"], false);
    assert_eq!(result["result"], "hello brave world");
    assert_eq!(result["cost_usd"], 0.0123);
    assert_eq!(result["sdk_session_id"], real.as_str());
    assert!(result["cut_uuid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(
        ev.iter().all(|e| e["trace_id"] == "t1"),
        "trace_id on every event: {ev:#?}"
    );

    // The child got the documented argv, entrypoint and cwd, and initialize first.
    let start = &n.starts()[0];
    let argv: Vec<&str> = start["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        argv[..10],
        [
            "--output-format",
            "stream-json",
            "--verbose",
            "--input-format",
            "stream-json",
            "--permission-prompt-tool",
            "stdio",
            "--include-partial-messages",
            "--setting-sources",
            "user,project,local"
        ]
    );
    assert_eq!(start["entrypoint"], "claude-vscode");
    assert_eq!(start["cwd"], n.cwd());
    let first = n
        .log()
        .into_iter()
        .find_map(|l| l.get("stdin").cloned())
        .unwrap();
    assert_eq!(first["request"]["subtype"], "initialize");

    // The old id stays an alias; events now carry the real id.
    n.cmd(json!({"action": "session.send", "session_id": "p1", "prompt": "say again", "trace_id": "t2"}));
    let ev = n.until("session.result");
    assert!(
        ev.iter()
            .all(|e| e["session_id"] == real.as_str() && e["trace_id"] == "t2")
    );
    assert_eq!(ev.last().unwrap()["result"], "again");
    assert_eq!(n.starts().len(), 1, "the same child serves the second turn");
    // Starting a live id continues it.
    n.cmd(json!({"action": "session.start", "session_id": real, "prompt": "say third"}));
    let ev = n.until("session.result");
    assert!(named(&ev, "session.started").is_empty());
    assert_eq!(ev.last().unwrap()["result"], "third");
}

#[test]
fn turns_queue_in_order_and_settings_go_live() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "q", "prompt": "say one", "cwd": n.cwd(), "model": "sonnet"}));
    n.cmd(json!({"action": "session.send", "session_id": "q", "prompt": "say two"}));
    n.cmd(json!({"action": "session.send", "session_id": "q", "prompt": "say three", "model": "opus", "permission_mode": "plan", "effort": "high"}));
    let mut results = Vec::new();
    for _ in 0..3 {
        results.push(n.until("session.result").last().unwrap()["result"].clone());
    }
    assert_eq!(results, [json!("one"), json!("two"), json!("three")]);
    let starts = n.starts();
    let argv = starts[0]["argv"].to_string();
    assert!(argv.contains("\"--model\",\"sonnet\""), "{argv}");
    assert!(!argv.contains("--effort"));
    // The mode went live at once, to the running CLI.
    let set_mode = n.stdin_of("set_permission_mode");
    assert_eq!(set_mode[0]["request"]["mode"], "plan");
    // The effort change restarted the CLI for turn three, resuming the conversation,
    // with the new model and effort.
    assert_eq!(starts.len(), 2, "{starts:#?}");
    n.cmd(json!({"action": "sessions.list"}));
    let real = n.until("sessions.snapshot").pop().unwrap()["sessions"][0]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let argv = starts[1]["argv"].to_string();
    assert!(argv.contains(&format!("\"--resume={real}\"")), "{argv}");
    assert!(argv.contains("\"--effort\",\"high\""), "{argv}");
    assert!(argv.contains("\"--model\",\"opus\""), "{argv}");
    assert!(argv.contains("\"--permission-mode\",\"plan\""), "{argv}");
    // A model change goes live; "" goes back to the default (set_model with no model).
    n.cmd(json!({"action": "session.send", "session_id": "q", "prompt": "say four", "model": "haiku"}));
    n.until("session.result");
    n.cmd(json!({"action": "session.send", "session_id": "q", "prompt": "say five", "model": ""}));
    n.until("session.result");
    let set_model = n.stdin_of("set_model");
    assert_eq!(set_model.len(), 2, "{set_model:#?}");
    assert_eq!(set_model[0]["request"]["model"], "haiku");
    assert!(
        set_model[1]["request"].get("model").is_none(),
        "{set_model:#?}"
    );
    assert_eq!(n.starts().len(), 2, "a model change needs no restart");
    n.cmd(json!({"action": "session.send", "session_id": "q", "model": "opus"}));
    // Effort applies to the next spawn (here: a fresh edit restart).
    n.cmd(json!({"action": "session.edit", "session_id": "q", "prompt": "say edited"}));
    n.until("session.result");
    let argv = n.starts().last().unwrap()["argv"].to_string();
    assert!(argv.contains("\"--effort\",\"high\""), "{argv}");
    assert!(argv.contains("\"--model\",\"opus\""), "{argv}");
    // sessions.list reflects it.
    n.cmd(json!({"action": "sessions.list"}));
    let snap = n.until("sessions.snapshot").pop().unwrap();
    let s = &snap["sessions"][0];
    assert_eq!(s["status"], "idle");
    assert_eq!(s["model"], "opus");
    assert_eq!(s["permission_mode"], "plan");
    assert_eq!(s["effort"], "high");
    assert_eq!(s["provider"], "claude");
    assert_eq!(s["cwd"], n.cwd());
}

#[test]
fn thinking_tool_use_and_tool_results() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "th", "prompt": "think deeply", "cwd": n.cwd()}));
    let ev = n.until("session.result");
    assert_eq!(named(&ev, "session.thinking")[0]["text"], "let me think");
    assert_eq!(named(&ev, "session.thinking").len(), 1);
    assert_eq!(named(&ev, "session.text")[0]["text"], "deeply");
}

#[test]
fn permission_allow_deny_list_and_updated_input() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "pa", "prompt": "tool Bash {\"command\":\"echo hi > out.txt\"}", "cwd": n.cwd(), "trace_id": "tp"}));
    let ev = n.until("permission.request");
    let tu = named(&ev, "session.tool_use")[0];
    assert_eq!(tu["tool"], "Bash");
    assert_eq!(tu["input"]["command"], "echo hi > out.txt");
    let req = ev.last().unwrap().clone();
    assert_eq!(req["tool"], "Bash");
    assert_eq!(req["input"]["command"], "echo hi > out.txt");
    assert_eq!(req["title"], "Allow Bash?");
    assert_eq!(req["display_name"], "Bash");
    assert_eq!(req["description"], "a fake tool call");
    assert_eq!(req["trace_id"], "tp");
    let rid = req["request_id"].as_str().unwrap().to_string();

    n.cmd(json!({"action": "permissions.list"}));
    let snap = n.until("permissions.snapshot").pop().unwrap();
    assert_eq!(snap["requests"].as_array().unwrap().len(), 1);
    assert_eq!(snap["requests"][0]["request_id"], rid.as_str());

    n.cmd(json!({"action": "permission.resolve", "request_id": rid, "decision": "allow"}));
    let ev = n.until("session.result");
    assert_eq!(named(&ev, "permission.resolved")[0]["decision"], "allow");
    let tr = named(&ev, "session.tool_result")[0];
    assert_eq!(tr["is_error"], false);
    assert_eq!(
        tr["content"], "ran with {\"command\":\"echo hi > out.txt\"}",
        "allow carried updatedInput"
    );
    n.cmd(json!({"action": "permissions.list"}));
    assert!(
        n.until("permissions.snapshot").pop().unwrap()["requests"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    n.cmd(json!({"action": "session.send", "session_id": "pa", "prompt": "tool Write {\"path\":\"x\"}"}));
    let rid = n.until("permission.request").pop().unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    n.cmd(json!({"action": "permission.resolve", "request_id": rid, "decision": "no thanks"}));
    let ev = n.until("session.result");
    assert_eq!(named(&ev, "permission.resolved")[0]["decision"], "deny");
    let tr = named(&ev, "session.tool_result")[0];
    assert_eq!(tr["is_error"], true);
    assert_eq!(tr["content"], "Denied by user via Coding Bridge");
    // Resolving a settled request (another device answered) is quietly ignored.
    n.cmd(json!({"action": "permission.resolve", "request_id": rid, "decision": "allow"}));
    n.cmd(json!({"action": "ping"}));
    let ev = n.until("pong");
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
}

#[test]
fn ask_user_question_answers_are_merged_into_the_input() {
    let n = Node::start(&[]);
    let q = json!({"questions": [{"question": "Color?", "options": [{"label": "red"}, {"label": "blue"}]}]});
    n.cmd(json!({"action": "session.start", "session_id": "ask", "prompt": format!("tool AskUserQuestion {q}"), "cwd": n.cwd()}));
    let rid = n.until("permission.request").pop().unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    n.cmd(
        json!({"action": "permission.resolve", "request_id": rid, "decision": "allow",
                 "answer": {"answers": {"Color?": ["red", "blue"]}, "response": "both"}}),
    );
    let ev = n.until("session.result");
    let content = named(&ev, "session.tool_result")[0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let input: Value = serde_json::from_str(content.strip_prefix("ran with ").unwrap()).unwrap();
    assert_eq!(input["answers"]["Color?"], "red, blue");
    assert_eq!(input["response"], "both");
    assert_eq!(input["questions"], q["questions"]);
}

#[test]
fn permission_timeout_denies_and_cancel_withdraws() {
    let n = Node::start(&[("CODING_BRIDGE_PERMISSION_TIMEOUT", "0.5")]);
    n.cmd(json!({"action": "session.start", "session_id": "to", "prompt": "tool Bash {\"command\":\"ls\"}", "cwd": n.cwd()}));
    let t0 = Instant::now();
    let ev = n.until("session.result");
    let resolved = named(&ev, "permission.resolved")[0];
    assert_eq!(resolved["decision"], "deny");
    assert_eq!(resolved["reason"], "timeout");
    assert!(t0.elapsed() >= Duration::from_millis(400));
    assert_eq!(named(&ev, "session.tool_result")[0]["is_error"], true);

    n.cmd(json!({"action": "session.send", "session_id": "to", "prompt": "toolcancel Bash {\"command\":\"ls\"}"}));
    let ev = n.until("session.result");
    let req = named(&ev, "permission.request")[0]["request_id"].clone();
    let resolved = named(&ev, "permission.resolved")[0];
    assert_eq!(resolved["decision"], "cancelled");
    assert_eq!(resolved["request_id"], req);
    // A cancelled request is not answered.
    let answers: Vec<Value> = n.stdin_of("control_response");
    assert_eq!(
        answers.len(),
        1,
        "only the timeout's deny went to the CLI: {answers:?}"
    );
}

#[test]
fn zero_permission_timeout_waits_forever() {
    let n = Node::start(&[("CODING_BRIDGE_PERMISSION_TIMEOUT", "0")]);
    n.cmd(json!({"action": "session.start", "session_id": "fv", "prompt": "tool Bash {}", "cwd": n.cwd()}));
    let rid = n.until("permission.request").pop().unwrap()["request_id"].clone();
    std::thread::sleep(Duration::from_millis(1500));
    n.cmd(json!({"action": "permissions.list"}));
    assert_eq!(
        n.until("permissions.snapshot").pop().unwrap()["requests"][0]["request_id"],
        rid
    );
}

#[test]
fn close_denies_pending_and_stops_the_child_group() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "gc", "prompt": "grandchild", "cwd": n.cwd()}));
    n.until("session.result");
    let grandchild = n
        .log()
        .iter()
        .find_map(|l| l["grandchild"].as_u64())
        .unwrap() as u32;
    n.cmd(json!({"action": "session.send", "session_id": "gc", "prompt": "tool Bash {}"}));
    n.until("permission.request");
    n.cmd(json!({"action": "session.close", "session_id": "gc"}));
    let ev = n.until("session.closed");
    assert_eq!(named(&ev, "permission.resolved")[0]["decision"], "deny");
    assert!(
        wait_until(Duration::from_secs(5), || n
            .stdin_of("control_response")
            .last()
            .is_some_and(|d| d["response"]["response"]["behavior"] == "deny")),
        "the CLI never got the deny"
    );
    assert!(
        wait_until(Duration::from_secs(8), || !alive(grandchild)),
        "grandchild {grandchild} outlived close"
    );
    let pid = n.starts()[0]["start"].as_u64().unwrap() as u32;
    assert!(wait_until(Duration::from_secs(8), || !alive(pid)));
    n.cmd(json!({"action": "session.send", "session_id": "gc", "prompt": "hi"}));
    assert!(
        n.until("session.error").pop().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("unknown session")
    );
}

#[test]
fn interrupt_mid_stream_and_while_starting() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "ir", "prompt": "slow 200", "cwd": n.cwd()}));
    n.until("session.text_delta");
    n.cmd(json!({"action": "session.interrupt", "session_id": "ir"}));
    let t0 = Instant::now();
    let r = n.until("session.result").pop().unwrap();
    assert_eq!(r["subtype"], "interrupted");
    assert_eq!(r["is_error"], false);
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(n.stdin_of("interrupt").len(), 1);

    // Held while the CLI starts, then delivered.
    let n = Node::start(&[("FAKE_CLAUDE_INIT_DELAY_MS", "600")]);
    n.cmd(json!({"action": "session.start", "session_id": "ir2", "prompt": "slow 200", "cwd": n.cwd()}));
    n.cmd(json!({"action": "session.interrupt", "session_id": "ir2"}));
    let r = n.until("session.result").pop().unwrap();
    assert_eq!(
        r["subtype"], "interrupted",
        "the early interrupt was dropped"
    );
    assert_eq!(n.stdin_of("interrupt").len(), 1);
}

#[test]
fn edit_forks_at_the_cut_and_restores_code_first() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "ed", "prompt": "say original", "cwd": n.cwd()}));
    let ev = n.until("session.result");
    let real = named(&ev, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let cut = ev.last().unwrap()["cut_uuid"].as_str().unwrap().to_string();
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "say second"}));
    n.until("session.result");
    // The browser edits the second prompt: the cut is the end of the turn before it.
    n.cmd(json!({"action": "session.edit", "session_id": "ed", "prompt": "say edited", "cut_uuid": cut, "restore_code": true, "trace_id": "te"}));
    let ev = n.until("session.result");
    let rewound = named(&ev, "session.rewound")[0];
    assert_eq!(rewound["cut_uuid"], cut.as_str());
    assert_eq!(rewound["prompt"], "say edited");
    assert_eq!(ev.last().unwrap()["result"], "edited");
    // Files are restored to before the edited prompt: the uuid of that prompt's record.
    let transcript = std::fs::read_to_string(
        n.home
            .join(".claude/projects")
            .join(coding_bridge_agent::testing::project_slug(n.home.path()))
            .join(format!("{real}.jsonl")),
    )
    .unwrap();
    let second: Value = transcript
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["message"]["content"] == "say second")
        .unwrap();
    let rewind = n.stdin_of("rewind_files");
    assert_eq!(rewind.len(), 1);
    assert_eq!(rewind[0]["request"]["user_message_id"], second["uuid"]);
    let starts = n.starts();
    assert_eq!(starts.len(), 2);
    assert_eq!(
        starts[0]["checkpointing"], "true",
        "checkpointing from the start"
    );
    let argv = starts[1]["argv"].to_string();
    assert!(argv.contains(&format!("\"--resume={real}\"")), "{argv}");
    assert!(argv.contains("\"--fork-session\""));
    assert!(argv.contains(&format!("\"--resume-session-at={cut}\"")));
    // The fork has a new id: announced under the old real id.
    let ident = named(&ev, "session.identified")[0];
    assert_eq!(ident["session_id"], real.as_str());
    assert_ne!(ident["sdk_session_id"], real.as_str());

    // Without a cut the restart is fresh.
    n.cmd(json!({"action": "session.edit", "session_id": "ed", "prompt": "say fresh"}));
    n.until("session.result");
    assert!(!n.starts()[2]["argv"].to_string().contains("--resume"));
}

#[test]
fn resume_does_not_forward_replayed_messages() {
    let n = Node::start(&[("FAKE_CLAUDE_REPLAY", "1")]);
    n.cmd(json!({"action": "session.start", "session_id": "r1", "prompt": "say first life", "cwd": n.cwd()}));
    let ev = n.until("session.result");
    let real = named(&ev, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    n.cmd(json!({"action": "session.close", "session_id": real}));
    n.until("session.closed");
    n.cmd(json!({"action": "session.start", "session_id": "r2", "prompt": "say second life", "cwd": n.cwd(), "resume_session_id": real}));
    let ev = n.until("session.result");
    assert!(
        n.starts()[1]["argv"]
            .to_string()
            .contains(&format!("\"--resume={real}\""))
    );
    let texts: Vec<&str> = named(&ev, "session.text")
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["second life"],
        "replayed history was forwarded again"
    );
}

#[test]
fn slash_commands() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "sl", "prompt": "/frobnicate now", "cwd": n.cwd()}));
    let ev = n.until("session.result");
    let notice = named(&ev, "session.notice")[0];
    assert_eq!(notice["code"], "slash_unavailable");
    assert_eq!(notice["command"], "frobnicate");
    assert_eq!(ev.last().unwrap()["is_error"], false);
    n.cmd(json!({"action": "session.send", "session_id": "sl", "prompt": "/status"}));
    let ev = n.until("session.result");
    let text = named(&ev, "session.text")[0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("Working directory") && text.contains(&n.cwd()),
        "{text}"
    );
    n.cmd(json!({"action": "session.send", "session_id": "sl", "prompt": "/review main"}));
    assert_eq!(
        n.until("session.result").pop().unwrap()["result"],
        "echo: /review main"
    );
    n.cmd(json!({"action": "session.send", "session_id": "sl", "prompt": "/squash"}));
    assert_eq!(
        n.until("session.result").pop().unwrap()["result"],
        "echo: /squash"
    );
    let turns: Vec<String> = n
        .stdin_of("user")
        .iter()
        .map(|u| u["message"]["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        turns,
        ["/review main", "/squash"],
        "unavailable or local commands reached the CLI"
    );
}

#[test]
fn a_crash_reports_and_the_daemon_lives_on() {
    let n = Node::start(&[]);
    n.cmd(
        json!({"action": "session.start", "session_id": "cr", "prompt": "crash", "cwd": n.cwd()}),
    );
    let ev = n.until("session.error");
    let err = ev.last().unwrap();
    assert_eq!(err["code"], "process_crashed");
    assert_eq!(err["exit_code"], 3);
    assert!(err["stderr"].as_str().unwrap().contains("boom"));
    // It had emitted output, so no retry.
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(n.starts().len(), 1);
    n.cmd(json!({"action": "ping"}));
    n.until("pong");
    n.cmd(json!({"action": "session.send", "session_id": "cr", "prompt": "say alive"}));
    assert_eq!(n.until("session.result").pop().unwrap()["result"], "alive");
    assert_eq!(n.starts().len(), 2);
}

#[test]
fn a_silent_crash_is_retried_once() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "cq", "prompt": "crashquiet", "cwd": n.cwd()}));
    let ev = n.until("session.result");
    assert!(
        named(&ev, "session.error").is_empty(),
        "the retry was not silent: {ev:#?}"
    );
    assert_eq!(ev.last().unwrap()["result"], "recovered");
    assert_eq!(n.starts().len(), 2);
}

#[test]
fn cli_not_found_and_unknown_sessions() {
    let n = Node::start(&[("CODING_BRIDGE_CLAUDE_PATH", "/nonexistent/claude")]);
    n.cmd(json!({"action": "session.start", "session_id": "nf", "prompt": "hi", "cwd": n.cwd()}));
    let err = n.until("session.error").pop().unwrap();
    assert_eq!(err["code"], "cli_not_found");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("CODING_BRIDGE_CLAUDE_PATH")
    );
    n.cmd(json!({"action": "session.send", "session_id": "ghost", "prompt": "hi"}));
    assert!(
        n.until("session.error").pop().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("unknown session")
    );
    n.cmd(json!({"action": "session.start", "session_id": "bad-cwd", "prompt": "hi", "cwd": "/no/such/dir"}));
    assert!(
        n.until("session.error").pop().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
}

#[test]
fn sessions_list_shows_running_and_idle() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "idle1", "prompt": "say x", "cwd": n.cwd()}));
    n.until("session.result");
    n.cmd(json!({"action": "session.start", "session_id": "busy1", "prompt": "slow 200", "cwd": n.cwd()}));
    n.until("session.text_delta");
    n.cmd(json!({"action": "sessions.list"}));
    let snap = n.until("sessions.snapshot").pop().unwrap();
    let list = snap["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let status: Vec<&str> = list.iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert!(
        status.contains(&"idle") && status.contains(&"running"),
        "{list:?}"
    );
}

#[test]
fn shutdown_stops_even_a_stubborn_child_within_5_s() {
    let mut n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "hg", "prompt": "hang", "cwd": n.cwd()}));
    assert!(wait_until(T, || n
        .log()
        .iter()
        .any(|l| l.get("hanging").is_some())));
    let pid = n.log().iter().find_map(|l| l["hanging"].as_u64()).unwrap() as u32;
    let t0 = Instant::now();
    n.daemon.signal(libc::SIGTERM);
    assert_eq!(n.daemon.wait_exit(Duration::from_secs(8)), Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t0.elapsed()
    );
    assert!(
        wait_until(Duration::from_secs(2), || !alive(pid)),
        "the child outlived the daemon"
    );
}

#[test]
fn garbage_and_oversized_lines_from_the_cli_are_skipped() {
    let n = Node::start(&[]);
    n.cmd(
        json!({"action": "session.start", "session_id": "gb", "prompt": "garbage", "cwd": n.cwd()}),
    );
    let ev = n.until("session.result");
    assert_eq!(ev.last().unwrap()["result"], "survived");
    assert_eq!(named(&ev, "session.text")[0]["text"], "survived");
    assert!(
        n.daemon.stderr().contains("skipped a"),
        "no log line for the skipped output"
    );
}

#[test]
fn an_event_too_large_to_relay_becomes_a_notice() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "big", "prompt": "bigresult", "cwd": n.cwd()}));
    let ev = n.until("session.result");
    let notice = named(&ev, "session.notice")[0];
    assert_eq!(notice["code"], "event_too_large");
    assert!(named(&ev, "session.tool_result").is_empty());
    assert_eq!(ev.last().unwrap()["result"], "big done");
}

#[test]
fn a_turn_read_in_one_batch_is_rekeyed_and_streamed_whole() {
    // The CLI's lines for a whole turn arrive in one read: the re-key (system/init) and
    // the streaming that follows it are handled in the same batch.
    let n = Node::start(&[("FAKE_CLAUDE_COALESCE", "1")]);
    n.cmd(json!({"action": "session.start", "session_id": "batch", "prompt": "say all at once", "cwd": n.cwd()}));
    let ev = n.until("session.result");
    let real = named(&ev, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let joined: String = named(&ev, "session.text_delta")
        .iter()
        .map(|d| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(joined, "all at once");
    assert!(
        named(&ev, "session.text_delta")
            .iter()
            .all(|d| d["session_id"] == real.as_str())
    );
    assert_eq!(named(&ev, "session.text")[0]["text"], "all at once");
}
