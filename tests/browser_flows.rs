//! Flows the real browser sends that broke in use (issue 17), against the scripted fake
//! CLI, through the relay protocol: `/compact` and other local commands end their turn,
//! a replay on any turn never closes a turn with an old result, Retry (a `session.start`
//! for a session the node holds) keeps the session's permission mode and effort, a
//! reload right after Send finds the conversation under the browser's id, and an
//! attachment-only turn is titled by its files.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::node::{Node, named};

fn real_id(ev: &[Value]) -> String {
    named(ev, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// No `session.result` (or error) arrives for `wait`: nothing stray is left to come.
fn no_more_results(n: &Node, wait: Duration) {
    let late = n.relay.recv_until(wait, |v| {
        v["type"] == "node.to_browser"
            && (v["payload"]["event"] == "session.result"
                || v["payload"]["event"] == "session.error")
    });
    assert!(late.is_none(), "a stray result or error: {late:#?}");
}

#[test]
fn compact_and_other_local_commands_end_their_turn_once_and_the_next_prompt_works() {
    let n = Node::start(&[("FAKE_CLAUDE_RESULT_IDS", "1")]);
    n.cmd(json!({"action": "session.start", "session_id": "lc", "prompt": "say hello", "cwd": n.cwd()}));
    let real = real_id(&n.until("session.result"));
    // `/compact` (the CLI echoes it marked `isReplay` and names the prompt in its result).
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "/compact", "trace_id": "t-compact"}));
    let ev = n.until("session.result");
    let r = ev.last().unwrap();
    assert_eq!(r["trace_id"], "t-compact", "{ev:#?}");
    assert_eq!(r["is_error"], false, "{ev:#?}");
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    // `/status` is answered by the node; `/login` is refused with a notice.
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "/status", "trace_id": "t-status"}));
    let ev = n.until("session.result");
    assert_eq!(ev.last().unwrap()["subtype"], "notice");
    assert!(
        named(&ev, "session.text")[0]["text"]
            .as_str()
            .unwrap()
            .contains("Permission mode"),
        "{ev:#?}"
    );
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "/login", "trace_id": "t-login"}));
    let ev = n.until("session.result");
    let notice = named(&ev, "session.notice");
    assert_eq!(notice[0]["code"], "slash_unavailable", "{ev:#?}");
    assert_eq!(notice[0]["command"], "login");
    assert_eq!(ev.last().unwrap()["subtype"], "notice");
    // The next prompt runs and gets its own result.
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "say after compact", "trace_id": "t-after"}));
    let ev = n.until("session.result");
    let r = ev.last().unwrap();
    assert_eq!(r["result"], "after compact", "{ev:#?}");
    assert_eq!(r["trace_id"], "t-after");
    no_more_results(&n, Duration::from_millis(600));
}

/// A CLI that replays the transcript before every turn: each turn gets exactly its own
/// result, with and without the prompt ids in results.
fn replay_on_every_turn(env: &[(&str, &str)]) {
    let n = Node::start(env);
    n.cmd(
        json!({"action": "session.start", "session_id": "re", "prompt": "say one", "cwd": n.cwd()}),
    );
    let ev = n.until("session.result");
    assert_eq!(ev.last().unwrap()["result"], "one");
    let real = real_id(&ev);
    for word in ["two", "three", "four"] {
        n.cmd(json!({"action": "session.send", "session_id": real, "prompt": format!("say {word}"), "trace_id": word}));
        let ev = n.until("session.result");
        let r = ev.last().unwrap();
        assert_eq!(r["result"], word, "an old result closed the turn: {ev:#?}");
        assert_eq!(r["trace_id"], word);
        let texts: Vec<&str> = named(&ev, "session.text")
            .iter()
            .map(|t| t["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, [word], "replayed text shown: {ev:#?}");
    }
    no_more_results(&n, Duration::from_millis(600));
}

#[test]
fn a_replay_before_any_turn_never_closes_it_with_an_old_result() {
    replay_on_every_turn(&[("FAKE_CLAUDE_REPLAY", "every")]);
}

#[test]
fn a_replay_before_any_turn_is_told_by_the_prompt_its_result_names() {
    replay_on_every_turn(&[
        ("FAKE_CLAUDE_REPLAY", "every"),
        ("FAKE_CLAUDE_RESULT_IDS", "1"),
    ]);
}

#[test]
fn retry_keeps_the_sessions_mode_and_effort_and_a_start_from_history_applies_its_own() {
    let n = Node::start(&[]);
    n.cmd(
        json!({"action": "session.start", "session_id": "rt", "prompt": "say first", "cwd": n.cwd(),
                 "permission_mode": "plan", "effort": "high"}),
    );
    let ev = n.until("session.result");
    let real = real_id(&ev);
    // The browser's Retry: session.start, resume_session_id, bypass, no effort.
    for (sid, word) in [("rt", "retried"), (real.as_str(), "again")] {
        n.cmd(json!({"action": "session.start", "session_id": sid, "resume_session_id": real,
                     "prompt": format!("say {word}"), "cwd": n.cwd(), "permission_mode": "bypassPermissions"}));
        let ev = n.until("session.result");
        assert_eq!(ev.last().unwrap()["result"], word, "{ev:#?}");
    }
    let modes: Vec<Value> = n
        .stdin_of("set_permission_mode")
        .iter()
        .map(|r| r["request"]["mode"].clone())
        .collect();
    assert!(
        !modes.contains(&json!("bypassPermissions")),
        "a Retry switched the CLI to bypass: {modes:?}"
    );
    let starts = n.starts();
    assert_eq!(starts.len(), 1, "the effort changed: {starts:#?}");
    assert!(starts[0]["argv"].to_string().contains("\"plan\""));
    let snap = n.ask(json!({"action": "sessions.list"}), "sessions.snapshot");
    let s = &snap["sessions"][0];
    assert_eq!(s["permission_mode"], "plan", "{snap}");
    assert_eq!(s["effort"], "high", "{snap}");
    // The composer still changes them.
    n.cmd(
        json!({"action": "session.send", "session_id": real, "prompt": "say composer",
                 "permission_mode": "acceptEdits", "effort": "high"}),
    );
    n.until("session.result");
    let snap = n.ask(json!({"action": "sessions.list"}), "sessions.snapshot");
    assert_eq!(snap["sessions"][0]["permission_mode"], "acceptEdits");

    // After a restart the node no longer holds it: reopening from history applies what
    // the start carries.
    let home = n.stop();
    let n = Node::start_in(home, &[]);
    n.cmd(
        json!({"action": "session.start", "session_id": real, "resume_session_id": real,
                 "prompt": "say reopened", "cwd": n.cwd(), "permission_mode": "default"}),
    );
    let ev = n.until("session.result");
    assert_eq!(
        named(&ev, "session.started")[0]["permission_mode"],
        "default"
    );
    let last = n.starts().pop().unwrap();
    assert!(last["argv"].to_string().contains("\"default\""), "{last}");
}

#[test]
fn a_reload_right_after_send_finds_the_conversation_under_the_browsers_id() {
    // The CLI takes its time to start, as the real one does (1–3 s).
    let n = Node::start(&[("FAKE_CLAUDE_INIT_DELAY_MS", "1500")]);
    n.cmd(json!({"action": "session.start", "session_id": "reload1", "prompt": "say hello there", "cwd": n.cwd()}));
    // The reload: mark_read and get for the browser's own id.
    n.cmd(json!({"action": "history.mark_read", "provider": "claude", "session_id": "reload1"}));
    n.cmd(json!({"action": "history.get", "provider": "claude", "session_id": "reload1", "trace_id": "g1"}));
    let ev = n.until("history.detail");
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    let d = ev.last().unwrap();
    assert_eq!(d["session_id"], "reload1", "{d}");
    assert_eq!(d["trace_id"], "g1");
    assert_eq!(d["running"], true, "{d}");
    assert_eq!(d["events"][0]["kind"], "prompt", "{d}");
    assert_eq!(d["events"][0]["text"], "say hello there", "{d}");
    let ev = n.until("session.result");
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    let real = real_id(&ev);
    // Once the real id is known, the browser's id opens the real transcript.
    n.cmd(json!({"action": "history.get", "provider": "claude", "session_id": "reload1"}));
    let ev = n.until("history.detail");
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    let d = ev.last().unwrap();
    assert_eq!(d["session_id"], real.as_str(), "{d}");
    let kinds: Vec<&str> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"prompt") && kinds.contains(&"text"), "{d}");
    assert_eq!(d["running"], false, "{d}");
    // The history list shows it running under either id while a turn runs.
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "slow 30"}));
    n.until("session.text_delta");
    let snap = n.ask(json!({"action": "history.list"}), "history.snapshot");
    let entry = snap["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["session_id"] == real.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{snap}"));
    assert_eq!(entry["running"], true, "{entry}");
    n.until("session.result");
    // An id nobody knows is still an error.
    n.cmd(json!({"action": "history.get", "provider": "claude", "session_id": "nobody-knows"}));
    let ev = n.until("session.error");
    assert_eq!(ev.last().unwrap()["session_id"], "nobody-knows");
}

/// The browser's own id of a session held here is a key, not a file name: one that is
/// not safe as a file name still finds the session (from memory, then under its real
/// id), and its mark marks the real id.
#[test]
fn a_held_session_under_an_unsafe_browser_id_still_opens_and_marks_its_real_id() {
    let n = Node::start(&[("FAKE_CLAUDE_INIT_DELAY_MS", "1500")]);
    n.cmd(json!({"action": "session.start", "session_id": "../held", "prompt": "say hello there", "cwd": n.cwd()}));
    n.cmd(json!({"action": "history.get", "provider": "claude", "session_id": "../held"}));
    let ev = n.until("history.detail");
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    let d = ev.last().unwrap();
    assert_eq!(d["session_id"], "../held", "{d}");
    assert_eq!(d["events"][0]["text"], "say hello there", "{d}");
    let ev = n.until("session.result");
    let real = real_id(&ev);
    n.cmd(json!({"action": "history.get", "provider": "claude", "session_id": "../held"}));
    let ev = n.until("history.detail");
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    assert_eq!(ev.last().unwrap()["session_id"], real.as_str());
    n.cmd(json!({"action": "history.mark_read", "provider": "claude", "session_id": "../held", "updated_at": 7}));
    let ev = n.until("history.snapshot");
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(n.home.join("cfg/reads.json")).unwrap())
            .unwrap();
    assert_eq!(saved["reads"][format!("claude:{real}")], 7, "{saved}");
    assert_eq!(saved["reads"].as_object().unwrap().len(), 1, "{saved}");
}

const PNG: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

#[test]
fn an_attachment_only_turn_is_titled_by_its_files_and_its_note_has_no_blank_lead() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "att", "prompt": "", "images": [PNG], "cwd": n.cwd()}));
    let ev = n.until("session.result");
    let real = real_id(&ev);
    let sent = n.stdin_of("user");
    let text = sent[0]["message"]["content"][0]["text"]
        .as_str()
        .or_else(|| sent[0]["message"]["content"].as_str())
        .unwrap()
        .to_string();
    assert!(text.starts_with("[The user attached"), "{text:?}");
    let snap = n.ask(json!({"action": "history.list"}), "history.snapshot");
    let entry = snap["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["session_id"] == real.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{snap}"));
    let title = entry["title"].as_str().unwrap();
    assert!(!title.contains("attached"), "{title}");
    assert!(title.ends_with(".png"), "{title}");
    let d = n.ask(
        json!({"action": "history.get", "provider": "claude", "session_id": real}),
        "history.detail",
    );
    let prompt = &d["events"][0];
    assert_eq!(prompt["kind"], "prompt");
    assert_eq!(prompt["text"], title, "{d}");
    // A prompt with text keeps its own words as the title.
    n.cmd(json!({"action": "session.start", "session_id": "att2", "prompt": "look at this", "images": [PNG], "cwd": n.cwd()}));
    let real2 = real_id(&n.until("session.result"));
    let snap = n.ask(json!({"action": "history.list"}), "history.snapshot");
    let entry = snap["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["session_id"] == real2.as_str())
        .cloned()
        .unwrap();
    assert_eq!(entry["title"], "look at this");
}

#[test]
fn a_resume_id_that_is_not_a_safe_file_name_is_refused_at_the_edge() {
    // The id becomes part of transcript and sidecar paths: refused before anything runs,
    // with a code a program can match.
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "bad", "resume_session_id": "../../etc/passwd",
                 "prompt": "say hi", "cwd": n.cwd(), "trace_id": "t-bad"}));
    let ev = n.until("session.error");
    let e = ev.last().unwrap();
    assert_eq!(e["code"], "invalid_command", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains("invalid resume_session_id"),
        "{e}"
    );
    assert_eq!(e["trace_id"], "t-bad");
    assert!(n.starts().is_empty(), "nothing ran");
}
