//! The error paths of agents behind the provider boundary (issue 11), with scripted
//! agents: an ACP agent (`examples/fake_acp.rs`, declared in `<config dir>/agents.json`)
//! and a `codex app-server` (`examples/fake_codex.rs`): a crash in the middle of a turn,
//! lines that are not messages, and an approval the agent abandons. A declared agent is
//! listed in `capabilities` like a built-in one.

mod support;

use serde_json::{Value, json};
use std::path::PathBuf;
use support::node::{Node, example, named};
use support::*;

fn fake_acp() -> PathBuf {
    example("fake_acp")
}

fn node_with_fake_agent(tag: &str) -> Node {
    let home = TempDir::new(tag);
    std::fs::create_dir_all(home.join("cfg")).unwrap();
    std::fs::write(
        home.join("cfg/agents.json"),
        json!({"agents": [{"name": "fakeacp", "label": "Fake ACP agent",
                           "command": fake_acp(), "env": {"FAKE_ACP_LOG": home.join("acp.log")}}]})
        .to_string(),
    )
    .unwrap();
    Node::start_in(home, &[])
}

fn start(n: &Node, prompt: &str) -> Vec<Value> {
    n.cmd(json!({"action": "session.start", "session_id": "f1", "provider": "fakeacp", "prompt": prompt}));
    n.until("session.identified")
}

#[test]
fn a_declared_agent_is_listed_and_runs() {
    let n = node_with_fake_agent("acp-declared");
    let caps = n.ask(json!({"action": "capabilities.get"}), "capabilities");
    let p = caps["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "fakeacp")
        .cloned()
        .unwrap();
    assert_eq!(p["label"], "Fake ACP agent");
    assert_eq!(p["available"], true);
    start(&n, "hello there");
    let ev = n.until("session.result");
    let text: String = named(&ev, "session.text")
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert_eq!(text, "echo: hello there");
    // The agent's own environment from agents.json reached it.
    assert!(n.home.join("acp.log").exists());
}

#[test]
fn a_crash_mid_turn_is_a_session_error_and_the_next_turn_starts_again() {
    let n = node_with_fake_agent("acp-crash");
    let mut ev = start(&n, "crash");
    ev.extend(n.until("session.error"));
    let e = ev.last().unwrap();
    assert_eq!(e["code"], "process_crashed", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("crashing on purpose"),
        "{e}"
    );
    assert!(
        !named(&ev, "session.text_delta").is_empty(),
        "what came before the crash was shown"
    );
    let sid = named(&ev, "session.identified")[0]["sdk_session_id"].clone();
    // The session lives on: the next prompt starts a new agent process.
    n.cmd(json!({"action": "session.send", "session_id": sid, "prompt": "again"}));
    let ev = n.until("session.result");
    assert_eq!(
        named(&ev, "session.result")[0]["subtype"],
        "success",
        "{ev:?}"
    );
}

#[test]
fn lines_that_are_not_messages_are_skipped() {
    let n = node_with_fake_agent("acp-garbage");
    let mut ev = start(&n, "garbage");
    ev.extend(n.until("session.result"));
    let text: String = named(&ev, "session.text")
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert_eq!(text, "still fine");
    assert!(named(&ev, "session.error").is_empty(), "{ev:?}");
    assert!(!n.daemon.stderr().contains("panicked"));
}

#[test]
fn an_abandoned_approval_is_settled_when_the_turn_ends() {
    let n = node_with_fake_agent("acp-abandon");
    let mut ev = start(&n, "abandon");
    ev.extend(n.until("session.result"));
    let req = named(&ev, "permission.request");
    assert_eq!(req.len(), 1, "{ev:?}");
    let resolved = named(&ev, "permission.resolved");
    assert_eq!(resolved.len(), 1, "{ev:?}");
    assert_eq!(resolved[0]["request_id"], req[0]["request_id"]);
    assert_eq!(resolved[0]["decision"], "cancelled");
    // Nothing is left for the browser to answer.
    let snap = n.ask(
        json!({"action": "permissions.list"}),
        "permissions.snapshot",
    );
    assert_eq!(snap["requests"], json!([]));
    // A late answer from the browser is ignored without an error.
    n.cmd(json!({"action": "permission.resolve", "request_id": req[0]["request_id"], "decision": "allow"}));
    n.cmd(json!({"action": "ping"}));
    let ev = n.until("pong");
    assert!(named(&ev, "session.error").is_empty());
}

// ---- the same error paths behind `codex app-server` (a scripted server) -------------

fn node_with_fake_codex(tag: &str) -> Node {
    let codex = example("fake_codex");
    Node::start_in(
        TempDir::new(tag),
        &[("CODING_BRIDGE_CODEX_PATH", codex.to_str().unwrap())],
    )
}

fn start_codex(n: &Node, prompt: &str) -> Vec<Value> {
    n.cmd(json!({"action": "session.start", "session_id": "c1", "provider": "codex", "prompt": prompt}));
    n.until("session.identified")
}

#[test]
fn codex_crash_garbage_and_abandoned_approval() {
    // A crash mid-turn: a session.error with what it printed; the next turn starts again.
    let n = node_with_fake_codex("codex-crash");
    let mut ev = start_codex(&n, "crash");
    ev.extend(n.until("session.error"));
    let e = ev.last().unwrap();
    assert_eq!(e["code"], "process_crashed", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("crashing on purpose"),
        "{e}"
    );
    let sid = named(&ev, "session.identified")[0]["sdk_session_id"].clone();
    n.cmd(json!({"action": "session.send", "session_id": sid, "prompt": "again"}));
    let ev = n.until("session.result");
    assert_eq!(
        named(&ev, "session.result")[0]["subtype"],
        "success",
        "{ev:?}"
    );

    // Lines that are not messages are skipped.
    let n = node_with_fake_codex("codex-garbage");
    let mut ev = start_codex(&n, "garbage");
    ev.extend(n.until("session.result"));
    let text: String = named(&ev, "session.text")
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert_eq!(text, "echo: garbage");

    // A request the server settles itself: gone for the browser too, before the result.
    let n = node_with_fake_codex("codex-abandon");
    let mut ev = start_codex(&n, "abandon");
    ev.extend(n.until("session.result"));
    let req = named(&ev, "permission.request");
    assert_eq!(req.len(), 1, "{ev:?}");
    let resolved = named(&ev, "permission.resolved");
    assert_eq!(resolved.len(), 1, "{ev:?}");
    assert_eq!(resolved[0]["decision"], "cancelled");
    let snap = n.ask(
        json!({"action": "permissions.list"}),
        "permissions.snapshot",
    );
    assert_eq!(snap["requests"], json!([]));
}

#[test]
fn an_interrupt_withdraws_the_pending_question() {
    let n = node_with_fake_agent("acp-cancel");
    let mut ev = start(&n, "ask");
    ev.extend(n.until("permission.request"));
    let sid = named(&ev, "session.identified")[0]["sdk_session_id"].clone();
    n.cmd(json!({"action": "session.interrupt", "session_id": sid}));
    let ev = n.until("session.result");
    assert_eq!(named(&ev, "session.result")[0]["subtype"], "interrupted");
    // The agent got `cancelled` (ACP's way to withdraw a question), not a reject.
    let log = std::fs::read_to_string(n.home.join("acp.log")).unwrap();
    let answer: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["id"] == 7 && v.get("result").is_some())
        .expect("the permission was answered");
    assert_eq!(
        answer["result"]["outcome"]["outcome"], "cancelled",
        "{answer}"
    );
    assert!(log.contains("session/cancel"));
}

#[test]
fn a_session_the_agent_could_not_start_starts_again_with_the_next_message() {
    let home = TempDir::new("acp-failnew");
    std::fs::create_dir_all(home.join("cfg")).unwrap();
    std::fs::write(
        home.join("cfg/agents.json"),
        json!({"agents": [{"name": "fakeacp", "label": "Fake", "command": fake_acp(),
                           "env": {"FAKE_ACP_FAIL_NEW_ONCE": home.join("failed-once")}}]})
        .to_string(),
    )
    .unwrap();
    let n = Node::start_in(home, &[]);
    n.cmd(json!({"action": "session.start", "session_id": "f1", "provider": "fakeacp", "prompt": "first"}));
    let e = n.until("session.error").pop().unwrap();
    assert!(
        e["message"].as_str().unwrap().contains("no session today"),
        "{e}"
    );
    n.cmd(json!({"action": "session.send", "session_id": "f1", "prompt": "second"}));
    let ev = n.until("session.result");
    let text: String = named(&ev, "session.text")
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert_eq!(text, "echo: second", "{ev:?}");
}

#[test]
fn plan_mode_refuses_file_changes_of_an_agent_without_a_plan_mode() {
    let n = node_with_fake_agent("acp-plan");
    n.cmd(
        json!({"action": "session.start", "session_id": "f1", "provider": "fakeacp",
                 "permission_mode": "plan", "prompt": "askedit"}),
    );
    let ev = n.until("session.result");
    assert!(
        named(&ev, "permission.request").is_empty(),
        "refused here, not asked: {ev:?}"
    );
    let log = std::fs::read_to_string(n.home.join("acp.log")).unwrap();
    let answer: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["id"] == 7 && v.get("result").is_some())
        .expect("answered");
    assert_eq!(answer["result"]["outcome"]["optionId"], "no", "{answer}");
}
