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

#[test]
fn nothing_outlives_a_sigkilled_daemon() {
    let mut n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "s1", "prompt": "spawnkids"}));
    n.until("session.result");
    let kids: Vec<u32> = std::fs::read_to_string(n.home.join("kids"))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(kids.len(), 3, "the CLI and its two jobs");
    assert!(kids.iter().all(|p| alive(*p)));
    // A job that left the CLI's process group is still killed: SIGKILL the daemon.
    n.daemon.child.kill().unwrap();
    let _ = n.daemon.child.wait();
    assert!(
        wait_until(Duration::from_secs(2), || kids.iter().all(|p| !alive(*p))),
        "still running 2 s after the daemon was killed: {:?}",
        kids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
    );
}

#[test]
fn a_cli_that_exits_leaves_no_jobs_behind() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "s1", "prompt": "spawnkids"}));
    n.until("session.result");
    let kids: Vec<u32> = std::fs::read_to_string(n.home.join("kids"))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    n.cmd(json!({"action": "session.close", "session_id": "s1"}));
    n.until("session.closed");
    assert!(
        wait_until(Duration::from_secs(6), || kids.iter().all(|p| !alive(*p))),
        "left behind: {:?}",
        kids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
    );
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// A relay that stops reading for 10 s while an agent streams: the daemon waits (the
/// agent's pipe pushes back) and every delta arrives, in order, on the same link.
#[test]
fn a_stalled_relay_loses_nothing() {
    const N: usize = 50_000;
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "s1", "prompt": format!("flood {N}")}));
    n.until("session.text_delta");
    n.relay.mute();
    std::thread::sleep(Duration::from_secs(10));
    let peak = vm_hwm_kib(n.daemon.pid());
    n.relay.unmute();
    let ev = n.until("session.result");
    let mut text = String::from("d0 ");
    let mut truncated = 0;
    for e in &ev {
        match e["event"].as_str() {
            Some("session.text_delta") => text.push_str(e["text"].as_str().unwrap()),
            Some("session.stream_truncated") => truncated += 1,
            _ => {}
        }
    }
    let expected: String = (0..N).map(|i| format!("d{i} ")).collect();
    assert_eq!(truncated, 0);
    assert!(
        text == expected,
        "{} of {} bytes arrived; first difference at {:?}",
        text.len(),
        expected.len(),
        text.bytes().zip(expected.bytes()).position(|(a, b)| a != b)
    );
    assert_eq!(n.relay.handshakes().len(), 1, "the link was never dropped");
    assert!(peak <= 16 * 1024, "peak RSS {peak} KiB during the stall");
}

/// Outbox overflow (a relay that does not ack, then a dropped link): the notice names
/// the session's current (re-keyed) id, and `session.identified` is never dropped.
#[test]
fn outbox_overflow_keeps_session_identified_and_names_the_current_id() {
    let n = Node::start(&[
        ("CODING_BRIDGE_OUTBOX_MAX", "100"),
        ("CODING_BRIDGE_RECONNECT_MIN", "0.05"),
        ("CODING_BRIDGE_RECONNECT_MAX", "0.1"),
    ]);
    n.relay.set_auto_ack(false);
    n.cmd(json!({"action": "session.start", "session_id": "s1", "prompt": "flood 500"}));
    let ev = n.until("session.result");
    let real = ev
        .iter()
        .find(|e| e["event"] == "session.identified")
        .expect("identified")["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(real, "s1");
    n.relay.drop_all();
    let mut notices = Vec::new();
    let mut identified = false;
    let mut resent = 0;
    n.relay.recv_until(T, |v| {
        if v["type"] != "node.to_browser" {
            return false;
        }
        let p = &v["payload"];
        match p["event"].as_str() {
            Some("session.stream_truncated") => notices.push(p.clone()),
            Some("session.identified") => identified = true,
            _ => {}
        }
        if v.get("node_seq").is_some() {
            resent += 1;
        }
        p["event"] == "session.result"
    });
    assert_eq!(notices.len(), 1, "one notice per session: {notices:?}");
    let notice = &notices[0];
    assert_eq!(notice["session_id"], real.as_str(), "{notice}");
    assert_eq!(notice["reason"], "node_outbox_overflow");
    assert!(identified, "session.identified was resent");
    assert!(resent <= 100, "{resent}");
}

/// Base64 of `n` zero bytes (`n` a multiple of 3).
fn zeros_b64(n: usize) -> String {
    assert_eq!(n % 3, 0);
    "A".repeat(n / 3 * 4)
}

/// Big commands: two 7 MiB images (within the media limits) fit the frame the node
/// takes and both reach the agent; an image beyond 12 MiB, or images beyond 32 MiB in
/// all, are skipped with a notice.
#[test]
fn a_command_with_two_7_mib_images_works() {
    let n = Node::start(&[]);
    let seven = 7 * 1024 * 1024 - 1; // a multiple of 3
    let img = zeros_b64(seven);
    n.cmd(
        json!({"action": "session.start", "session_id": "big", "prompt": "look",
                 "images": [{"data": img, "media_type": "image/png", "name": "a.png"},
                            {"data": img, "media_type": "image/png", "name": "b.png"}]}),
    );
    let ev = n.until("session.result");
    assert!(
        ev.iter()
            .all(|e| e["event"] != "session.notice" && e["event"] != "session.error"),
        "{:?}",
        ev.iter()
            .filter(|e| e["event"] != "session.text_delta")
            .collect::<Vec<_>>()
    );
    let dir = std::fs::read_dir(n.home.join(".tmp/images"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for f in ["a.png", "b.png"] {
        assert_eq!(
            std::fs::metadata(dir.join(f)).unwrap().len(),
            seven as u64,
            "{f}"
        );
    }
    // Beyond the limits: one image over 12 MiB, and a total over 32 MiB.
    let notices = |ev: &[Value]| -> Vec<String> {
        ev.iter()
            .filter(|e| e["event"] == "session.notice")
            .map(|e| e["text"].as_str().unwrap().to_string())
            .collect()
    };
    n.cmd(
        json!({"action": "session.send", "session_id": "big", "prompt": "more",
                 "images": [zeros_b64(13 * 1024 * 1024 - 1), zeros_b64(3)]}),
    );
    let got = notices(&n.until("session.result"));
    assert_eq!(got, ["image 1 skipped: larger than 12 MiB"]);
    let eleven = zeros_b64(11 * 1024 * 1024 - 2);
    n.cmd(
        json!({"action": "session.send", "session_id": "big", "prompt": "more",
                 "images": [eleven, eleven, eleven]}),
    );
    let got = notices(&n.until("session.result"));
    assert_eq!(
        got,
        ["image 3 skipped: the images of one message may total 32 MiB"]
    );
    assert_eq!(n.relay.handshakes().len(), 1);
}

/// A frame beyond what the node takes is refused with a clear session.error, once, and
/// never makes the link loop: between the command limit and the read limit it is read
/// and refused on the same link; beyond the read limit the link drops once, and the
/// redelivery is read and refused on the next one.
#[test]
fn oversized_frames_are_refused_once_without_a_reconnect_storm() {
    let n = Node::start(&[
        ("CODING_BRIDGE_RECONNECT_MIN", "0.05"),
        ("CODING_BRIDGE_RECONNECT_MAX", "0.1"),
    ]);
    let start = |mib: usize| {
        json!({"action": "session.start", "session_id": format!("s{mib}"), "trace_id": format!("t{mib}"),
               "prompt": "look", "images": [zeros_b64(mib * 1024 * 1024 / 3 * 3)]})
    };
    // 50 MiB: over the 48 MiB command limit, under the 64 MiB read limit.
    assert!(n.relay.command("c50", start(38)));
    let e = n.until("session.error").pop().unwrap();
    assert_eq!(e["session_id"], "s38");
    assert_eq!(e["trace_id"], "t38");
    assert_eq!(e["code"], "command_too_large");
    assert!(
        e["message"].as_str().unwrap().contains("at most 48 MiB"),
        "{e}"
    );
    // Redelivered: ignored.
    assert!(n.relay.command("c50", start(38)));
    n.cmd(json!({"action": "ping"}));
    let ev = n.until("pong");
    assert!(ev.iter().all(|e| e["event"] != "session.error"), "{ev:?}");
    assert_eq!(n.relay.handshakes().len(), 1, "the same link");
    assert!(n.daemon.stderr().contains("MiB frame (session.start)"));

    // 70 MiB: the link drops once ...
    assert!(n.relay.command("c70", start(53)));
    assert!(
        wait_until(T, || n.relay.handshakes().len() == 2),
        "{}",
        n.daemon.stderr()
    );
    n.relay.recv_type("node.heartbeat", T).unwrap();
    // ... and the relay redelivers it: refused with an error, on the same new link.
    assert!(n.relay.command("c70", start(53)));
    let e = n.until("session.error").pop().unwrap();
    assert_eq!(e["session_id"], "s53");
    assert_eq!(e["code"], "command_too_large");
    assert!(n.relay.command("c70", start(53)));
    n.cmd(json!({"action": "ping"}));
    let ev = n.until("pong");
    assert!(ev.iter().all(|e| e["event"] != "session.error"), "{ev:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(n.relay.handshakes().len(), 2, "no reconnect storm");
}

/// A relay that acks sets the pace: the daemon keeps at most a window of unacknowledged
/// events in flight (its outbox, and so its memory, stays small) and goes on when acks
/// come; nothing is lost.
#[test]
fn unacknowledged_events_stay_within_the_ack_window() {
    const N: usize = 30_000;
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "w", "prompt": "say hi"}));
    n.until("session.result");
    n.cmd(
        json!({"action": "session.send", "session_id": "w", "prompt": format!("floodlines {N}")}),
    );
    let mut deltas = 0;
    let mut last_seq = 0;
    let count = |v: &Value, deltas: &mut usize, last_seq: &mut u64| {
        if let Some(s) = v.get("node_seq").and_then(Value::as_u64) {
            *last_seq = s;
        }
        if v["payload"]["event"] == "session.text_delta" {
            *deltas += 1;
        }
    };
    n.relay.recv_until(T, |v| {
        count(v, &mut deltas, &mut last_seq);
        deltas >= 1000
    });
    // Acks stop (the relay still reads): sending stops after about a window.
    n.relay.set_auto_ack(false);
    let acked = last_seq;
    while let Some(v) = n.relay.recv(Duration::from_millis(1500)) {
        count(&v, &mut deltas, &mut last_seq);
    }
    let in_flight = last_seq - acked;
    assert!(
        (100..5000).contains(&in_flight),
        "{in_flight} events in flight without an ack"
    );
    assert!(deltas < N, "paused");
    // Acks again: the rest follows, all of it.
    n.relay.set_auto_ack(true);
    assert!(n.relay.ack(last_seq));
    let found = n.relay.recv_until(T, |v| {
        count(v, &mut deltas, &mut last_seq);
        v["payload"]["event"] == "session.result"
    });
    assert!(found.is_some());
    assert_eq!(deltas, N);
}

/// The guard between the daemon and the CLI must hand the CLI a clean signal state: an
/// agent that waits for SIGCHLD (Codex, Node's child processes) would otherwise never see
/// its commands end, and SIGTERM would not reach it.
#[test]
fn the_cli_starts_with_no_blocked_or_ignored_signals() {
    let n = Node::start(&[]);
    n.cmd(json!({"action": "session.start", "session_id": "s1", "prompt": "hello"}));
    n.until("session.result");
    let start = n
        .log()
        .into_iter()
        .find(|l| l.get("start").is_some())
        .unwrap();
    assert_eq!(start["sigblk"], "0000000000000000", "{start}");
    // Ignored signals: the same as the fake CLI run straight from here (what this test
    // process passes on, plus the SIGPIPE every Rust program ignores), nothing more.
    let log = n.home.join("direct.log");
    let status = std::process::Command::new(support::node::fake_claude())
        .env("FAKE_CLAUDE_LOG", &log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let direct: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(start["sigign"], direct["sigign"], "{start}");
}
