//! Claude sessions as the browser expects them (issue 9, PROTOCOL part two §6–§8),
//! against the scripted fake CLI, through the relay protocol: attachment-only turns,
//! resume on every respawn, silent crash retries, interrupt, overrides and edits with
//! restored code, the entrypoint, the replay guard and the transcript repair, turns the
//! CLI starts by itself, and the event shapes the browser reads.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::node::{Node, named};
use support::*;

/// The real id a session got (from its `session.identified`).
fn real_id(ev: &[Value]) -> String {
    named(ev, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Wait until the daemon saw its CLI exit while idle.
fn idle_exit_seen(n: &Node) {
    assert!(
        wait_until(Duration::from_secs(5), || n
            .daemon
            .stderr()
            .contains("exited while idle")),
        "{}",
        n.daemon.stderr()
    );
}

fn argv(start: &Value) -> String {
    start["argv"].to_string()
}

const PNG: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

#[test]
fn attachment_only_turns_run_and_a_turn_with_nothing_to_run_is_an_error() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "att", "prompt": "", "images": [PNG], "cwd": n.cwd()}));
    let ev = n.until("session.result");
    let result = ev.last().unwrap();
    assert_eq!(result["is_error"], false);
    let text = result["result"].as_str().unwrap();
    assert!(text.contains(".tmp/images/"), "{text}");
    // Only media that cannot be used: an error, not silence.
    n.cmd(json!({"action": "session.send", "session_id": "att", "prompt": "", "attachments": ["https://not-allowed.example/x.txt"]}));
    let ev = n.until("session.error");
    let err = ev.last().unwrap();
    assert!(
        err["message"].as_str().unwrap().contains("Nothing to run"),
        "{err}"
    );
    assert_eq!(err["session_id"], result["session_id"]);
    // Nothing at all.
    n.cmd(json!({"action": "session.send", "session_id": "att", "prompt": "  "}));
    let err = n.until("session.error").pop().unwrap();
    assert!(err["message"].as_str().unwrap().contains("Nothing to send"));
    // The session still works and was never re-keyed again.
    n.cmd(json!({"action": "session.send", "session_id": "att", "prompt": "say fine"}));
    let ev = n.until("session.result");
    assert_eq!(ev.last().unwrap()["result"], "fine");
    assert!(named(&ev, "session.identified").is_empty());
}

#[test]
fn every_respawn_resumes_the_same_conversation() {
    let n = Node::start(&[]);
    // Idle exit: the next prompt resumes, no context lost, no new id.
    n.cmd(json!({"action": "session.start", "session_id": "rs", "prompt": "exitidle", "cwd": n.cwd()}));
    let ev = n.until("session.result");
    let real = real_id(&ev);
    idle_exit_seen(&n);
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "recall"}));
    let ev = n.until("session.result");
    assert_eq!(ev.last().unwrap()["result"], "first prompt was: exitidle");
    assert!(
        named(&ev, "session.identified").is_empty(),
        "re-keyed: {ev:#?}"
    );
    assert!(argv(&n.starts()[1]).contains(&format!("\"--resume={real}\"")));

    // A crash after output is reported; the browser's Retry (session.start with
    // resume_session_id) continues the same conversation.
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "crash"}));
    let err = n.until("session.error").pop().unwrap();
    assert!(
        err["message"].as_str().unwrap().contains("boom"),
        "the stderr line is in the message: {err}"
    );
    n.cmd(json!({"action": "session.start", "session_id": real, "resume_session_id": real, "prompt": "recall", "permission_mode": "bypassPermissions"}));
    let ev = n.until("session.result");
    assert_eq!(ev.last().unwrap()["result"], "first prompt was: exitidle");
    assert!(named(&ev, "session.started").is_empty());
    assert!(named(&ev, "session.identified").is_empty());
    let starts = n.starts();
    assert_eq!(starts.len(), 3);
    assert!(argv(&starts[2]).contains(&format!("\"--resume={real}\"")));

    // An effort change restarts the CLI, resuming.
    n.cmd(
        json!({"action": "session.send", "session_id": real, "prompt": "recall", "effort": "high"}),
    );
    let ev = n.until("session.result");
    assert_eq!(ev.last().unwrap()["result"], "first prompt was: exitidle");
    let a = argv(&n.starts()[3]);
    assert!(
        a.contains(&format!("\"--resume={real}\"")) && a.contains("\"--effort\",\"high\""),
        "{a}"
    );

    // Closed (dead) and started again from history with resume_session_id.
    n.cmd(json!({"action": "session.close", "session_id": real}));
    n.until("session.closed");
    n.cmd(json!({"action": "session.start", "session_id": "reopen", "resume_session_id": real, "prompt": "recall", "cwd": n.cwd()}));
    let ev = n.until("session.result");
    assert_eq!(ev.last().unwrap()["result"], "first prompt was: exitidle");
    assert!(argv(&n.starts()[4]).contains(&format!("\"--resume={real}\"")));
    assert_eq!(
        ev.last().unwrap()["session_id"],
        real.as_str(),
        "keyed by the real id"
    );
    // Only an edit forks.
    assert!(
        n.starts()
            .iter()
            .all(|s| !argv(s).contains("--fork-session"))
    );
}

#[test]
fn crash_retries_are_silent_until_spent() {
    let n = Node::start(&[
        ("CODING_BRIDGE_TURN_RETRY_LIMIT", "2"),
        ("CODING_BRIDGE_TURN_RETRY_BACKOFF", "0.1"),
    ]);
    n.cmd(
        json!({"action": "session.start", "session_id": "cr", "prompt": "say hi", "cwd": n.cwd()}),
    );
    let real = real_id(&n.until("session.result"));
    // Two quiet crashes, then it works: no error at all, and each retry resumes.
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "crashquiet 2"}));
    let ev = n.until("session.result");
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    assert_eq!(ev.last().unwrap()["result"], "recovered");
    let starts = n.starts();
    assert_eq!(starts.len(), 3);
    assert!(
        starts[1..]
            .iter()
            .all(|s| argv(s).contains(&format!("\"--resume={real}\"")))
    );
    // Three crashes with two retries: one error, with stderr's last line in the message.
    std::fs::remove_file(n.home.join("crashes")).unwrap();
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "crashquiet 3", "trace_id": "tq"}));
    let ev = n.until("session.error");
    assert_eq!(named(&ev, "session.error").len(), 1);
    let err = ev.last().unwrap();
    assert_eq!(err["code"], "process_crashed");
    assert_eq!(err["trace_id"], "tq");
    assert_eq!(err["session_id"], real.as_str());
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("quiet crash number 3"), "{msg}");
    assert_eq!(n.starts().len(), 5);
}

#[test]
fn bypass_permissions_as_root_is_explained() {
    let n = Node::start(&[
        ("FAKE_CLAUDE_ROOT", "1"),
        ("CODING_BRIDGE_TURN_RETRY_BACKOFF", "0"),
    ]);
    n.cmd(json!({"action": "session.start", "session_id": "root", "prompt": "say hi", "cwd": n.cwd(), "permission_mode": "bypassPermissions"}));
    let err = n.until("session.error").pop().unwrap();
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("cannot be used with root"), "{msg}");
    assert!(msg.contains("IS_SANDBOX=1"), "{msg}");
    assert_eq!(err["session_id"], "root");
}

#[test]
fn interrupt_denies_approvals_commits_open_text_and_ends_as_interrupted() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "in", "prompt": "tool Bash {\"command\":\"ls\"}", "cwd": n.cwd()}));
    let req = n.until("permission.request").pop().unwrap();
    n.cmd(json!({"action": "session.interrupt", "session_id": "in"}));
    let ev = n.until("session.result");
    let resolved = named(&ev, "permission.resolved")[0];
    assert_eq!(resolved["request_id"], req["request_id"]);
    assert_eq!(resolved["decision"], "deny");
    let r = ev.last().unwrap();
    assert_eq!(r["subtype"], "interrupted");
    assert_eq!(r["is_error"], false);
    let answers = n.stdin_of("control_response");
    assert_eq!(answers[0]["response"]["response"]["behavior"], "deny");
    let real = r["session_id"].as_str().unwrap().to_string();

    // A text block cut off by Stop is committed, with its stream id, before the result.
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "slow 200"}));
    let delta = n.until("session.text_delta").pop().unwrap();
    n.cmd(json!({"action": "session.interrupt", "session_id": real}));
    let ev = n.until("session.result");
    let texts = named(&ev, "session.text");
    assert_eq!(texts.len(), 1, "{ev:#?}");
    assert_eq!(texts[0]["id"], delta["id"]);
    assert!(texts[0]["text"].as_str().unwrap().starts_with("0 "));
    assert_eq!(ev.last().unwrap()["subtype"], "interrupted");
}

#[test]
fn a_stopping_daemon_ends_running_turns_with_an_error_first() {
    let mut n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "sd", "prompt": "slow 400", "cwd": n.cwd(), "trace_id": "ts"}));
    let delta = n.until("session.text_delta").pop().unwrap();
    n.daemon.signal(libc::SIGTERM);
    let ev = n.until("session.error");
    let err = ev.last().unwrap();
    assert_eq!(err["code"], "node_shutdown");
    assert_eq!(err["trace_id"], "ts");
    assert_eq!(err["session_id"], delta["session_id"]);
    assert_eq!(
        named(&ev, "session.text").last().unwrap()["id"],
        delta["id"]
    );
    assert_eq!(n.daemon.wait_exit(Duration::from_secs(8)), Some(0));
}

#[test]
fn permission_mode_goes_live_mid_turn_and_edits_take_their_settings_and_media() {
    let n = Node::start(&[]);
    n.cmd(
        json!({"action": "session.start", "session_id": "ov", "prompt": "say one", "cwd": n.cwd()}),
    );
    let ev = n.until("session.result");
    let real = real_id(&ev);
    let cut = ev.last().unwrap()["cut_uuid"].as_str().unwrap().to_string();
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "slow 40"}));
    n.until("session.text_delta");
    n.cmd(json!({"action": "session.send", "session_id": real, "permission_mode": "acceptEdits"}));
    assert!(wait_until(Duration::from_secs(5), || !n
        .stdin_of("set_permission_mode")
        .is_empty()));
    n.until("session.result");
    // The edit's model, mode, effort and image apply to the forked turn.
    n.cmd(
        json!({"action": "session.edit", "session_id": real, "prompt": "describe", "cut_uuid": cut,
                 "model": "opus", "permission_mode": "plan", "effort": "low", "images": [PNG]}),
    );
    let ev = n.until("session.result");
    let a = argv(n.starts().last().unwrap());
    for want in [
        "\"--model\",\"opus\"",
        "\"--permission-mode\",\"plan\"",
        "\"--effort\",\"low\"",
        "\"--fork-session\"",
    ] {
        assert!(a.contains(want), "{want} missing in {a}");
    }
    let result = ev.last().unwrap()["result"].as_str().unwrap().to_string();
    assert!(
        result.starts_with("echo: describe") && result.contains(".tmp/images/"),
        "{result}"
    );
    n.cmd(json!({"action": "sessions.list"}));
    let s = n.until("sessions.snapshot").pop().unwrap()["sessions"][0].clone();
    assert_eq!(s["model"], "opus");
    assert_eq!(s["permission_mode"], "plan");
    assert_eq!(s["effort"], "low");
}

#[test]
fn a_failed_rewind_is_an_error_and_no_fork() {
    let n = Node::start(&[("FAKE_CLAUDE_REWIND_FAIL", "1")]);
    n.cmd(
        json!({"action": "session.start", "session_id": "rw", "prompt": "say one", "cwd": n.cwd()}),
    );
    let ev = n.until("session.result");
    let real = real_id(&ev);
    let cut = ev.last().unwrap()["cut_uuid"].as_str().unwrap().to_string();
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "say two"}));
    n.until("session.result");
    n.cmd(json!({"action": "session.edit", "session_id": real, "prompt": "say edited", "cut_uuid": cut, "restore_code": true}));
    let ev = n.until("session.error");
    let err = ev.last().unwrap();
    assert_eq!(err["code"], "rewind_failed");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("No file checkpoint"),
        "{err}"
    );
    assert!(named(&ev, "session.rewound").is_empty());
    assert_eq!(n.starts().len(), 1, "no fork");
    // The conversation goes on unchanged.
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "recall"}));
    assert_eq!(
        n.until("session.result").pop().unwrap()["result"],
        "first prompt was: say one"
    );
}

#[test]
fn restore_code_works_after_the_cli_exited_while_idle() {
    let n = Node::start(&[]);
    n.cmd(
        json!({"action": "session.start", "session_id": "ri", "prompt": "say one", "cwd": n.cwd()}),
    );
    let ev = n.until("session.result");
    let real = real_id(&ev);
    let cut = ev.last().unwrap()["cut_uuid"].as_str().unwrap().to_string();
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "exitidle"}));
    n.until("session.result");
    idle_exit_seen(&n);
    n.cmd(json!({"action": "session.edit", "session_id": real, "prompt": "say again", "cut_uuid": cut, "restore_code": true}));
    let ev = n.until("session.result");
    assert_eq!(named(&ev, "session.rewound").len(), 1);
    assert_eq!(ev.last().unwrap()["result"], "again");
    let starts = n.starts();
    assert_eq!(starts.len(), 3, "resumed to rewind, then forked");
    assert!(!argv(&starts[1]).contains("--fork-session"));
    assert!(argv(&starts[2]).contains("--fork-session"));
    assert_eq!(n.stdin_of("rewind_files").len(), 1);
}

#[test]
fn entrypoint_defaults_to_the_ide_label_can_be_changed_and_claudecode_is_dropped() {
    let n = Node::start(&[("CLAUDECODE", "1")]);
    n.cmd(
        json!({"action": "session.start", "session_id": "e1", "prompt": "say x", "cwd": n.cwd()}),
    );
    n.until("session.result");
    let s = &n.starts()[0];
    assert_eq!(s["entrypoint"], "claude-vscode");
    // The mode is always explicit: under the IDE label, newer CLIs would otherwise pick
    // an "auto" mode that approves tools by themselves.
    assert!(argv(s).contains("\"--permission-mode\",\"default\""), "{s}");
    assert_eq!(s["claudecode"], Value::Null);
    let n = Node::start(&[("CODING_BRIDGE_CLAUDE_ENTRYPOINT", "sdk-ts")]);
    n.cmd(
        json!({"action": "session.start", "session_id": "e2", "prompt": "say x", "cwd": n.cwd()}),
    );
    n.until("session.result");
    assert_eq!(n.starts()[0]["entrypoint"], "sdk-ts");
    let n = Node::start(&[("CODING_BRIDGE_CLAUDE_ENTRYPOINT", " ")]);
    n.cmd(
        json!({"action": "session.start", "session_id": "e3", "prompt": "say x", "cwd": n.cwd()}),
    );
    n.until("session.result");
    assert_eq!(n.starts()[0]["entrypoint"], Value::Null);
}

#[test]
fn a_resumed_cli_replay_is_not_shown_and_its_result_ends_no_turn() {
    let n = Node::start(&[("FAKE_CLAUDE_REPLAY", "1")]);
    n.cmd(json!({"action": "session.start", "session_id": "rp", "prompt": "say first life", "cwd": n.cwd()}));
    let real = real_id(&n.until("session.result"));
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "exitidle"}));
    n.until("session.result");
    idle_exit_seen(&n);
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "say second life", "trace_id": "t2"}));
    let ev = n.until("session.result");
    let r = ev.last().unwrap();
    assert_eq!(
        r["result"], "second life",
        "the replayed result ended the turn: {ev:#?}"
    );
    let texts: Vec<&str> = named(&ev, "session.text")
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["second life"], "{ev:#?}");
    let deltas: String = named(&ev, "session.text_delta")
        .iter()
        .map(|d| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "second life");
    assert!(ev.iter().all(|e| e["trace_id"] == "t2"));
}

#[test]
fn a_transcript_with_unsigned_thinking_is_resumed_through_a_repaired_copy() {
    let n = Node::start(&[]);
    let real = "0b3c7a3e-1f6e-4e43-9d43-5d6a4c1e2f00";
    let dir = n
        .home
        .join(".claude/projects")
        .join(coding_bridge_agent::testing::project_slug(n.home.path()));
    std::fs::create_dir_all(&dir).unwrap();
    let records = [
        json!({"type": "user", "uuid": "u1", "parentUuid": null, "sessionId": real, "message": {"role": "user", "content": "old question"}}),
        json!({"type": "assistant", "uuid": "a1", "parentUuid": "u1", "sessionId": real, "message": {"id": "m1", "content": [{"type": "thinking", "thinking": "hmm"}]}}),
        json!({"type": "assistant", "uuid": "a2", "parentUuid": "a1", "sessionId": real, "message": {"id": "m1", "content": [{"type": "text", "text": "old answer"}]}}),
    ];
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(dir.join(format!("{real}.jsonl")), text).unwrap();
    n.cmd(json!({"action": "session.start", "session_id": "fix", "resume_session_id": real, "prompt": "recall", "cwd": n.cwd()}));
    let ev = n.until("session.result");
    assert_eq!(
        ev.last().unwrap()["result"],
        "first prompt was: old question",
        "{ev:#?}"
    );
    let a = argv(&n.starts()[0]);
    assert!(
        !a.contains(real),
        "the unrepaired transcript was resumed: {a}"
    );
    let copy_id = named(&ev, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(a.contains(&format!("\"--resume={copy_id}\"")), "{a}");
    let copy = std::fs::read_to_string(dir.join(format!("{copy_id}.jsonl"))).unwrap();
    assert!(!copy.contains("\"thinking\""));
    assert!(copy.contains("old answer"));
}

#[test]
fn a_turn_the_cli_starts_by_itself_is_shown_and_closed_and_a_prompt_meanwhile_gets_its_own_result()
{
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "bg", "prompt": "bgagent", "cwd": n.cwd(), "trace_id": "t1"}));
    let ev = n.until("session.result");
    assert_eq!(ev.last().unwrap()["result"], "agent launched");
    assert_eq!(ev.last().unwrap()["trace_id"], "t1");
    let real = ev.last().unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The subagent's own line comes tagged with its parent tool use.
    let ev = n.until("session.text");
    let sub = ev
        .iter()
        .find(|e| e["text"] == "subagent working")
        .expect("subagent text");
    assert!(
        sub["parent_tool_use_id"]
            .as_str()
            .unwrap()
            .starts_with("toolu_bg")
    );
    // While the CLI's own turn runs, the user sends a prompt.
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "say mine", "trace_id": "t2"}));
    let ev = n.until("session.result");
    let auto = ev.last().unwrap();
    assert_eq!(auto["result"], "background agent finished", "{ev:#?}");
    assert!(
        auto.get("trace_id").is_none(),
        "the CLI's turn is not the user's: {auto}"
    );
    assert!(
        named(&ev, "session.text")
            .iter()
            .all(|t| t.get("trace_id").is_none())
    );
    let ev = n.until("session.result");
    let mine = ev.last().unwrap();
    assert_eq!(mine["result"], "mine");
    assert_eq!(mine["trace_id"], "t2");
    n.cmd(json!({"action": "sessions.list"}));
    assert_eq!(
        n.until("sessions.snapshot").pop().unwrap()["sessions"][0]["status"],
        "idle"
    );
}

#[test]
fn subagent_events_carry_their_parent_and_do_not_mix_with_the_main_stream() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "sa", "prompt": "subagent", "cwd": n.cwd()}));
    let ev = n.until("session.result");
    let sub: Vec<&Value> = ev
        .iter()
        .filter(|e| e["parent_tool_use_id"] == "toolu_fg1")
        .collect();
    let kinds: Vec<&str> = sub.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["session.text_delta", "session.text"], "{ev:#?}");
    assert_eq!(sub[1]["text"], "sub text");
    let main: Vec<&Value> = named(&ev, "session.text")
        .into_iter()
        .filter(|e| e.get("parent_tool_use_id").is_none())
        .collect();
    assert_eq!(main.len(), 1);
    assert_eq!(main[0]["text"], "main done");
    assert!(
        named(&ev, "session.tool_use")[0]
            .get("parent_tool_use_id")
            .is_none()
    );
}

#[test]
fn shapes_the_browser_reads() {
    let n = Node::start(&[]);
    // permission_mode is "default", never null; model is "" when none was chosen.
    n.cmd(
        json!({"action": "session.start", "session_id": "sh", "prompt": "repair", "cwd": n.cwd()}),
    );
    let ev = n.until("session.result");
    let started = named(&ev, "session.started")[0];
    assert_eq!(started["permission_mode"], "default");
    assert_eq!(started["model"], "");
    // Streamed text that differs from the final message is corrected under the same id.
    let texts = named(&ev, "session.text");
    assert_eq!(texts.last().unwrap()["text"], "hello world", "{ev:#?}");
    assert_eq!(
        texts.last().unwrap()["id"],
        named(&ev, "session.text_delta")[0]["id"]
    );
    let real = ev.last().unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    n.cmd(json!({"action": "sessions.list"}));
    let snap = n.until("sessions.snapshot").pop().unwrap();
    assert_eq!(snap["sessions"][0]["resolved_model"], "fake-model-1");
    assert_eq!(snap["sessions"][0]["permission_mode"], "default");
    // No base64 reaches the browser.
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "image"}));
    let ev = n.until("session.result");
    let content = named(&ev, "session.tool_result")[0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!content.contains("iVBOR"), "{content}");
    assert!(
        content.contains("\"media_type\":\"image/png\""),
        "{content}"
    );
    // Slash commands: case-insensitive, aliases; unknown ones are a notice.
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "/SQUASH"}));
    assert_eq!(
        n.until("session.result").pop().unwrap()["result"],
        "echo: /squash"
    );
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "/Nope"}));
    let ev = n.until("session.result");
    assert_eq!(named(&ev, "session.notice")[0]["code"], "slash_unavailable");
    let r = ev.last().unwrap();
    assert_eq!(r["subtype"], "notice");
    assert_eq!(r["is_error"], false);
    assert_eq!(r["result"], Value::Null);
    // A huge tool input still makes an answerable request; the CLI gets it whole.
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "biginput 12000000"}));
    let req = n.until("permission.request").pop().unwrap();
    assert_eq!(req["input_truncated"], true);
    assert!(req.to_string().len() < 1 << 20);
    n.cmd(json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "allow"}));
    assert_eq!(
        n.until("session.result").pop().unwrap()["result"],
        "allowed with 12000000 bytes"
    );
}

#[test]
fn a_pending_approval_follows_its_session_when_it_is_re_keyed() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "early", "prompt": "earlytool", "cwd": n.cwd()}));
    let req = n.until("permission.request").pop().unwrap();
    assert_eq!(req["session_id"], "early");
    let real = real_id(&n.until("session.identified"));
    n.cmd(json!({"action": "permissions.list"}));
    let snap = n.until("permissions.snapshot").pop().unwrap();
    assert_eq!(snap["requests"][0]["request_id"], req["request_id"]);
    assert_eq!(snap["requests"][0]["session_id"], real.as_str());
    n.cmd(json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "allow"}));
    let ev = n.until("session.result");
    assert_eq!(ev.last().unwrap()["result"], "early \"allow\"");
    assert_eq!(ev.last().unwrap()["session_id"], real.as_str());
}

#[test]
fn restore_code_after_a_daemon_restart_finds_its_prompt_in_the_transcript() {
    // The node that wrote the prompts is gone: the restore point comes from the
    // transcript (read on a worker), and the edit goes on from there.
    let n = Node::start(&[]);
    n.cmd(
        json!({"action": "session.start", "session_id": "rr", "prompt": "say one", "cwd": n.cwd()}),
    );
    let ev = n.until("session.result");
    let real = real_id(&ev);
    let cut = ev.last().unwrap()["cut_uuid"].as_str().unwrap().to_string();
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "say two"}));
    n.until("session.result");
    let home = n.stop();
    let n = Node::start_in(home, &[]);
    // Reopened from history, then the first prompt edited.
    n.cmd(
        json!({"action": "session.start", "session_id": real, "resume_session_id": real,
                 "prompt": "say three", "cwd": n.cwd()}),
    );
    n.until("session.result");
    n.cmd(json!({"action": "session.edit", "session_id": real, "prompt": "say again", "cut_uuid": cut, "restore_code": true}));
    let ev = n.until("session.result");
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    assert_eq!(named(&ev, "session.rewound").len(), 1, "{ev:#?}");
    assert_eq!(ev.last().unwrap()["result"], "again");
    let rewinds = n.stdin_of("rewind_files");
    assert_eq!(rewinds.len(), 1);
    assert!(
        !rewinds[0]["request"]["user_message_id"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{rewinds:?}"
    );
}
