//! Issue 10: no loss or leftovers under stress, and the small things a user trips on:
//! `node.log` forwarding, control characters in logs, a closed stdout, `status` showing
//! the version, the default working directory, big commands, a stalled relay, and
//! children that must not outlive a killed daemon.

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use support::node::{Node, T};
use support::relay::new_id;
use support::*;

fn relay_error(n: &Node, message: &str) {
    assert!(
        n.relay
            .send(json!({"v": 2, "id": new_id(), "ts": 0, "type": "error",
                                "payload": {"message": message}}))
    );
}

#[test]
fn log_lines_are_forwarded_as_node_log_redacted_escaped_and_rate_bounded() {
    let n = Node::start(&[]);
    // A relay string with a NUL, an escape sequence and a newline that tries to forge a line.
    relay_error(&n, "bad\u{0}thing\u{1b}[31m\nINFO  forged: line tok-node");
    let log = n
        .relay
        .recv_until(T, |v| {
            v["type"] == "node.log"
                && v["payload"]["msg"]
                    .as_str()
                    .unwrap_or("")
                    .contains("relay error")
        })
        .expect("a node.log frame");
    assert!(log.get("node_seq").is_none(), "not a durable event");
    let p = &log["payload"];
    assert_eq!(p["level"], "warning");
    assert_eq!(p["logger"], "hub");
    let msg = p["msg"].as_str().unwrap();
    assert!(msg.contains("bad\u{0}thing"), "{msg}");
    assert!(
        !msg.contains("tok-node"),
        "the node token is redacted: {msg}"
    );
    assert!(msg.contains("[redacted]"), "{msg}");
    assert!(
        n.daemon
            .wait_for_log("relay error: bad\\0thing\\u{1b}[31m\\nINFO  forged", T),
        "{}",
        n.daemon.stderr()
    );
    assert!(
        !n.daemon
            .stderr()
            .lines()
            .any(|l| l.starts_with("INFO  forged")),
        "no forged line"
    );

    // Lines logged while handling a command carry its trace and session ids.
    n.cmd(json!({"action": "history.mark_read", "provider": "claude",
                 "session_id": "../bad", "trace_id": "tr-9"}));
    let log = n
        .relay
        .recv_until(T, |v| {
            v["type"] == "node.log"
                && v["payload"]["msg"]
                    .as_str()
                    .unwrap_or("")
                    .contains("mark_read")
        })
        .expect("the mark_read warning");
    assert_eq!(log["payload"]["trace_id"], "tr-9");
    assert_eq!(log["payload"]["session_id"], "../bad");

    // A flood is cut to the rate bound, and the next line says how many were left out.
    for i in 0..300 {
        relay_error(&n, &format!("flood {i}"));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let mut forwarded = 0;
    while n
        .relay
        .recv_until(Duration::from_millis(300), |v| {
            v["type"] == "node.log" && v["payload"]["msg"].as_str().unwrap_or("").contains("flood")
        })
        .is_some()
    {
        forwarded += 1;
    }
    assert!(
        (40..=80).contains(&forwarded),
        "{forwarded} of 300 lines forwarded"
    );
    relay_error(&n, "after the flood");
    let log = n
        .relay
        .recv_until(T, |v| {
            v["type"] == "node.log"
                && v["payload"]["msg"]
                    .as_str()
                    .unwrap_or("")
                    .contains("after the flood")
        })
        .unwrap();
    assert!(
        log["payload"]["msg"]
            .as_str()
            .unwrap()
            .contains("earlier log lines were not forwarded"),
        "{log}"
    );
}

#[test]
fn log_forwarding_can_be_turned_off() {
    let n = Node::start(&[("CODING_BRIDGE_LOG_FORWARD", "0")]);
    relay_error(&n, "not for the relay");
    assert!(n.daemon.wait_for_log("not for the relay", T));
    n.cmd(json!({"action": "ping"}));
    n.until("pong");
    assert!(
        n.relay
            .recv_until(Duration::from_millis(500), |v| v["type"] == "node.log")
            .is_none()
    );
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let home = TempDir::new("epipe");
    for args in [&["--help"][..], &["status"][..], &["status", "--json"][..]] {
        let mut c = agent(&home);
        c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        // Close the read end before the program writes (like `| head` that has finished).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

#[test]
fn status_shows_the_version() {
    let home = TempDir::new("status-version");
    let out = run(agent(&home).arg("status"));
    assert!(
        stdout(&out).contains(&format!("Version:     {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        stdout(&out)
    );
    let out = run(agent(&home).args(["status", "--json"]));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn started_from_the_root_the_default_cwd_is_home() {
    let home = TempDir::new("rootcwd");
    let mut c = agent(&home);
    c.current_dir("/");
    let n = Node::start_with(home, c, &[]);
    n.cmd(json!({"action": "session.start", "session_id": "s1", "prompt": "hello"}));
    let ev = n.until("session.result");
    let started = ev.iter().find(|e| e["event"] == "session.started").unwrap();
    assert_eq!(started["cwd"], n.home.path().to_str().unwrap());
}
