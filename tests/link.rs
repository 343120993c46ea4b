//! The relay link (issue 3): connection, heartbeats, commands, reliable delivery,
//! reconnects, hostile frames, auth rejection, TLS and shutdown, against the fake relay.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::relay::{FakeRelay, test_tls};
use support::*;
use tungstenite::Message;

const T: Duration = Duration::from_secs(10);

fn start(relay: &FakeRelay, home: &TempDir, env: &[(&str, &str)]) -> Daemon {
    let mut c = agent(home);
    c.env("CODING_BRIDGE_URL", relay.url())
        .env("CODING_BRIDGE_NODE_TOKEN", "tok-LINK/+secret")
        .env("CODING_BRIDGE_RECONNECT_MIN", "0.05")
        .env("CODING_BRIDGE_RECONNECT_MAX", "0.2")
        .args(["-vv", "run"]);
    for (k, v) in env {
        c.env(k, v);
    }
    Daemon::spawn(c, home)
}

fn event_payloads(frames: &[Value]) -> Vec<&Value> {
    frames
        .iter()
        .filter(|f| f["type"] == "node.to_browser")
        .map(|f| &f["payload"])
        .collect()
}

fn bad_command(relay: &FakeRelay, cmd_id: &str, session: &str) {
    assert!(relay.command(
        cmd_id,
        json!({"action": "frobnicate", "session_id": session})
    ));
}

#[test]
fn connects_heartbeats_and_answers_commands() {
    let relay = FakeRelay::start();
    let home = TempDir::new("link");
    let mut d = start(&relay, &home, &[]);
    let hb = relay
        .recv_type("node.heartbeat", T)
        .unwrap_or_else(|| panic!("no heartbeat: {}", d.stderr()));
    assert_eq!(hb["v"], 2);
    assert_eq!(hb["id"].as_str().unwrap().len(), 32);
    assert!(hb["ts"].as_u64().unwrap() > 1_700_000_000_000);
    let caps = hb["payload"]["capabilities"].as_array().unwrap();
    assert!(caps.contains(&json!("history")), "{hb}");
    let hs = relay.handshakes();
    assert_eq!(hs.len(), 1);
    assert_eq!(hs[0], "/ws/node?token=tok-LINK%2F%2Bsecret");

    relay.command("c1", json!({"action": "ping", "trace_id": "tr-1"}));
    let pong = relay.recv_event("pong", T).expect("pong");
    assert_eq!(pong["payload"]["trace_id"], "tr-1");
    assert!(pong.get("node_seq").is_none(), "pong is not durable");

    bad_command(&relay, "c2", "sess-1");
    let err = relay.recv_event("session.error", T).expect("session.error");
    assert_eq!(err["payload"]["message"], "unknown action: frobnicate");
    assert_eq!(err["payload"]["code"], "unknown_action");
    assert_eq!(err["payload"]["session_id"], "sess-1");
    assert_eq!(err["node_seq"], 1);

    // Without a session id the error is not durable.
    relay.command("c3", json!({"action": "nope"}));
    let err = relay.recv_event("session.error", T).expect("session.error");
    assert!(err.get("node_seq").is_none());
    assert!(err["payload"].get("session_id").is_none());

    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T), Some(0));
    // The token is never logged, even at trace level and inside the socket URL.
    let stderr = d.stderr();
    assert!(stderr.contains("connected to the relay"), "{stderr}");
    for leak in ["tok-LINK", "tok-LINK%2F"] {
        assert!(!stderr.contains(leak), "token leaked to stderr: {stderr}");
        let log = fs::read_to_string(home.join("cfg/logs/agent.log")).unwrap();
        assert!(!log.contains(leak), "token leaked to the log file");
    }
}

#[test]
fn duplicate_cmd_id_runs_once() {
    let relay = FakeRelay::start();
    let home = TempDir::new("dedupe");
    let _d = start(&relay, &home, &[]);
    relay.recv_type("node.heartbeat", T).expect("connected");
    bad_command(&relay, "same", "s");
    bad_command(&relay, "same", "s");
    bad_command(&relay, "other", "s");
    relay.command("p", json!({"action": "ping"}));
    let errors = |relay: &FakeRelay| {
        let mut frames = Vec::new();
        relay.recv_until(T, |v| {
            frames.push(v.clone());
            v["payload"]["event"] == "pong"
        });
        frames
            .iter()
            .filter(|f| f["payload"]["event"] == "session.error" && f["id"].is_string())
            .map(|f| f["node_seq"].as_u64().unwrap())
            .collect::<Vec<u64>>()
    };
    assert_eq!(errors(&relay), [1, 2]);
    // A redelivery after a reconnect is still recognised (acked first, so nothing resends).
    relay.ack(2);
    std::thread::sleep(Duration::from_millis(100));
    relay.drop_all();
    relay.recv_type("node.heartbeat", T).expect("reconnected");
    bad_command(&relay, "other", "s");
    bad_command(&relay, "third", "s");
    relay.command("p2", json!({"action": "ping"}));
    assert_eq!(errors(&relay), [3]);
}

#[test]
fn malformed_frames_are_skipped_and_the_link_stays_up() {
    let relay = FakeRelay::start();
    let home = TempDir::new("malformed");
    let mut d = start(&relay, &home, &[]);
    relay.recv_type("node.heartbeat", T).expect("connected");
    for bad in [
        "not json at all",
        "[1,2,3]",
        "42",
        r#"{"type": 5}"#,
        r#"{"no_type": true}"#,
        r#"{"type":"browser.to_node","payload":"a string"}"#,
        r#"{"type":"browser.to_node","cmd_id":{"x":1},"payload":{"action":7,"session_id":[1]}}"#,
        r#"{"type":"node.ack","payload":{"up_to_node_seq":"many"}}"#,
        r#"{"type":"node.ack","payload":{"up_to_node_seq":-3}}"#,
        r#"{"type":"what.is.this","payload":{}}"#,
        r#"{"type":"error","payload":{"message":{"deep":[null]}}}"#,
        "{\"type\":\"browser.to_node\",\"payload\":{\"action\":\"\u{0}\u{ffff}\"}}",
    ] {
        assert!(relay.send_message(Message::Text(bad.into())), "send {bad}");
    }
    relay.send_message(Message::Binary(vec![0xff, 0x00, 0x7b].into()));
    relay.command("alive", json!({"action": "ping"}));
    relay
        .recv_event("pong", T)
        .expect("still answering after malformed frames");
    assert_eq!(relay.handshakes().len(), 1, "the link was dropped");
    assert!(
        d.wait_exit(Duration::from_millis(10)).is_none(),
        "daemon died"
    );

    // A 17 MiB frame of an unknown type is read and skipped like any other (commands
    // up to 48 MiB are taken; bigger ones: tests/hardening.rs).
    let huge = format!("{{\"type\":\"x\",\"pad\":\"{}\"}}", "a".repeat(17 << 20));
    relay.send_message(Message::Text(huge.into()));
    relay.command("alive2", json!({"action": "ping"}));
    relay.recv_event("pong", T).expect("pong after a big frame");
    assert_eq!(relay.handshakes().len(), 1, "the link was dropped");
    assert!(!d.stderr().contains("panicked"));
}

#[test]
fn handshake_401_stops_with_advice() {
    let relay = FakeRelay::start();
    relay.accept_tokens(&["some-other-token"]);
    let home = TempDir::new("auth");
    let mut d = start(&relay, &home, &[]);
    assert_eq!(d.wait_exit(T), Some(1), "{}", d.stderr());
    let err = d.stderr();
    assert!(err.contains("coding-bridge-agent pair"), "{err}");
    assert!(err.contains("401"), "{err}");
    assert!(!err.contains("tok-LINK"));
    // The lock went with it.
    let o = run(agent(&home).args(["status", "--json"]));
    assert!(stdout(&o).contains("\"daemon_running\":false"));
}

#[test]
fn handshake_403_and_close_4401_stop_too() {
    let relay = FakeRelay::start();
    relay.reject_ws(Some(403));
    let home = TempDir::new("auth403");
    let mut d = start(&relay, &home, &[]);
    assert_eq!(d.wait_exit(T), Some(1), "{}", d.stderr());

    let relay = FakeRelay::start();
    let home = TempDir::new("auth4401");
    let mut d = start(&relay, &home, &[]);
    relay.recv_type("node.heartbeat", T).expect("connected");
    relay.close_all(4401, "token revoked");
    assert_eq!(d.wait_exit(T), Some(1), "{}", d.stderr());
    assert!(d.stderr().contains("coding-bridge-agent pair"));
}

#[test]
fn transient_handshake_failures_are_retried() {
    let relay = FakeRelay::start();
    relay.reject_ws(Some(502));
    let home = TempDir::new("retry");
    let mut d = start(&relay, &home, &[]);
    assert!(
        wait_until(T, || relay.handshakes().len() >= 3),
        "{}",
        d.stderr()
    );
    assert!(d.wait_exit(Duration::from_millis(10)).is_none());
    relay.reject_ws(None);
    relay
        .recv_type("node.heartbeat", T)
        .expect("connected once the relay recovers");
}

/// Reconnect ten times while durable events flow: every event arrives, node_seq has no
/// gaps, and a resent event keeps its envelope id.
#[test]
fn reliable_delivery_across_ten_drops() {
    let relay = FakeRelay::start();
    let home = TempDir::new("reliable");
    let _d = start(&relay, &home, &[]);
    let mut ids: BTreeMap<u64, String> = BTreeMap::new();
    let mut deliveries = 0;
    let mut acked = 0u64;
    let mut per_conn_orders: Vec<Vec<u64>> = Vec::new();
    fn record(
        frames: &[Value],
        orders: &mut Vec<Vec<u64>>,
        ids: &mut BTreeMap<u64, String>,
        deliveries: &mut u64,
    ) {
        let mut order = Vec::new();
        for f in frames {
            if let Some(seq) = f.get("node_seq").and_then(Value::as_u64) {
                let id = f["id"].as_str().unwrap().to_string();
                let prev = ids.entry(seq).or_insert_with(|| id.clone());
                assert_eq!(*prev, id, "seq {seq} changed id on resend");
                order.push(seq);
                *deliveries += 1;
            }
        }
        orders.push(order);
    }
    // Frames until `stop` matches, all of them.
    let until = |stop: &dyn Fn(&Value) -> bool| {
        let mut frames = Vec::new();
        let got = relay.recv_until(T, |v| {
            frames.push(v.clone());
            stop(v)
        });
        assert!(got.is_some(), "timed out; got {frames:?}");
        frames
    };
    for round in 0..=10 {
        // A new connection: resent events come first, then the heartbeat.
        let mut frames = until(&|v| v["type"] == "node.heartbeat");
        if round == 10 {
            record(&frames, &mut per_conn_orders, &mut ids, &mut deliveries);
            break;
        }
        for i in 0..5 {
            bad_command(&relay, &format!("r{round}-{i}"), &format!("sess-{}", i % 2));
        }
        relay.command(&format!("mark{round}"), json!({"action": "ping"}));
        frames.extend(until(&|v| v["payload"]["event"] == "pong"));
        record(&frames, &mut per_conn_orders, &mut ids, &mut deliveries);
        // Acknowledge only part of what arrived, on even rounds.
        if round % 2 == 0 {
            acked = ids.keys().copied().max().unwrap_or(0).saturating_sub(2);
            relay.ack(acked);
            std::thread::sleep(Duration::from_millis(50));
        }
        relay.drop_all();
    }

    let n = 50u64;
    assert_eq!(
        ids.keys().copied().collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>(),
        "node_seq gaps"
    );
    assert!(deliveries > n, "nothing was ever resent");
    for order in &per_conn_orders {
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "out of order on one connection: {order:?}"
        );
    }
    // What the final connection resent is exactly the unacknowledged tail, in order.
    let last = per_conn_orders.last().unwrap();
    assert_eq!(last, &((acked + 1)..=n).collect::<Vec<_>>());
    assert!(relay.handshakes().len() >= 11);
}

#[test]
fn outbox_overflow_sends_a_truncation_notice_first() {
    let relay = FakeRelay::start();
    let home = TempDir::new("overflow");
    let _d = start(&relay, &home, &[("CODING_BRIDGE_OUTBOX_MAX", "3")]);
    relay.recv_type("node.heartbeat", T).expect("connected");
    for i in 0..5 {
        bad_command(&relay, &format!("o{i}"), "sess-over");
    }
    bad_command(&relay, "o5", "sess-other");
    relay.command("m", json!({"action": "ping"}));
    relay.recv_event("pong", T).expect("pong");
    relay.drop_all();
    relay.recv_type("node.heartbeat", Duration::from_millis(1)); // discard stale
    let mut frames = Vec::new();
    relay
        .recv_until(T, |v| {
            frames.push(v.clone());
            v["type"] == "node.heartbeat"
        })
        .expect("reconnected");
    let events: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "node.to_browser")
        .collect();
    assert_eq!(
        events[0]["payload"]["event"], "session.stream_truncated",
        "{events:?}"
    );
    assert_eq!(events[0]["payload"]["session_id"], "sess-over");
    assert_eq!(events[0]["payload"]["reason"], "node_outbox_overflow");
    assert_eq!(events[0]["payload"]["resume_with"], "history");
    assert!(events[0].get("node_seq").is_none());
    let seqs: Vec<u64> = events[1..]
        .iter()
        .map(|e| e["node_seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [4, 5, 6]);
    // Only once.
    relay.drop_all();
    let mut frames = Vec::new();
    relay.recv_until(T, |v| {
        frames.push(v.clone());
        v["type"] == "node.heartbeat"
    });
    assert!(
        event_payloads(&frames)
            .iter()
            .all(|p| p["event"] != "session.stream_truncated")
    );
}

#[test]
fn tls_with_a_generated_ca() {
    let (ca_pem, server) = test_tls();
    let relay = FakeRelay::start_tls(server);
    let home = TempDir::new("tls");
    let ca = home.join("ca.pem");
    fs::write(&ca, ca_pem).unwrap();
    let mut d = start(
        &relay,
        &home,
        &[("CODING_BRIDGE_CA_FILE", ca.to_str().unwrap())],
    );
    relay
        .recv_type("node.heartbeat", T)
        .unwrap_or_else(|| panic!("no heartbeat over TLS: {}", d.stderr()));
    relay.command("tls-ping", json!({"action": "ping"}));
    relay.recv_event("pong", T).expect("pong over TLS");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T), Some(0));

    // Without the CA the certificate is refused, and the daemon keeps trying.
    let home = TempDir::new("tls-untrusted");
    let mut d = start(&relay, &home, &[]);
    assert!(d.wait_for_log("certificate", T), "{}", d.stderr());
    assert!(
        relay.handshakes().len() <= 1,
        "an untrusted relay got a WebSocket request"
    );
    assert!(d.wait_exit(Duration::from_millis(10)).is_none());
}

#[test]
fn sigterm_closes_the_link_and_exits_0_quickly() {
    let relay = FakeRelay::start();
    let home = TempDir::new("shutdown");
    let mut d = start(&relay, &home, &[]);
    relay.recv_type("node.heartbeat", T).expect("connected");
    let t0 = Instant::now();
    d.signal(libc::SIGTERM);
    let close = relay.recv_type("__close__", T).expect("close frame");
    assert_eq!(close["code"], 1000);
    assert_eq!(d.wait_exit(T), Some(0));
    assert!(t0.elapsed() < Duration::from_secs(5));
    let o = run(agent(&home).args(["status", "--json"]));
    assert!(stdout(&o).contains("\"daemon_running\":false"));

    // SIGINT too, and while disconnected.
    let relay2 = FakeRelay::start();
    relay2.reject_ws(Some(503));
    let mut d = start(&relay2, &home, &[]);
    assert!(wait_until(T, || !relay2.handshakes().is_empty()));
    d.signal(libc::SIGINT);
    assert_eq!(d.wait_exit(Duration::from_secs(5)), Some(0));
}

#[test]
fn a_silent_relay_is_detected_and_replaced() {
    let relay = FakeRelay::start();
    let home = TempDir::new("dead");
    let d = start(&relay, &home, &[("CODING_BRIDGE_HEARTBEAT_INTERVAL", "1")]);
    relay.recv_type("node.heartbeat", T).expect("connected");
    relay.mute();
    // 2 x 1 s + 20 s of silence, then a new connection.
    assert!(
        wait_until(Duration::from_secs(40), || relay.handshakes().len() >= 2),
        "dead link never detected: {}",
        d.stderr()
    );
    assert!(d.stderr().contains("no frame from the relay"));
}

#[test]
fn websocket_pings_both_ways() {
    let relay = FakeRelay::start();
    let home = TempDir::new("pings");
    let _d = start(&relay, &home, &[("CODING_BRIDGE_HEARTBEAT_INTERVAL", "1")]);
    relay.recv_type("node.heartbeat", T).expect("connected");
    // The relay pings; the node answers.
    relay.send_message(Message::Ping(b"are you there".to_vec().into()));
    relay
        .recv_type("__pong__", T)
        .expect("the node answered our ping");
    // The node pings on its own with each heartbeat.
    relay
        .recv_type("__ping__", T)
        .expect("the node pings the relay");
    let hb = relay
        .recv_type("node.heartbeat", T)
        .expect("heartbeats repeat");
    assert_eq!(hb["type"], "node.heartbeat");
}

/// The default reconnect schedule (`CODING_BRIDGE_RECONNECT_MIN`/`_MAX` unset), which the
/// other tests shorten.
const DEFAULT_BACKOFF: [(&str, &str); 2] = [
    ("CODING_BRIDGE_RECONNECT_MIN", "1"),
    ("CODING_BRIDGE_RECONNECT_MAX", "30"),
];
/// How long the retries of an outage stay fast (`relay::backoff::FAST_FOR`).
const FAST_FOR: Duration = Duration::from_secs(5);
/// A link that stayed up this long resets the schedule (`relay::backoff::HEALTHY_AFTER`).
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// Handshakes after `t0`: (when, accepted).
fn handshakes_since(relay: &FakeRelay, t0: Instant) -> Vec<(Instant, bool)> {
    relay
        .handshake_times()
        .into_iter()
        .filter(|(t, _)| *t >= t0)
        .collect()
}

/// Issue 17 point 10: with the relay refusing the node for 2.5 s, the node is back
/// within about a second of the relay (it was 4-5 s with a 1 s, 2 s, 4 s backoff).
#[test]
fn back_within_a_second_of_a_short_outage() {
    let relay = FakeRelay::start();
    let home = TempDir::new("outage");
    let d = start(&relay, &home, &DEFAULT_BACKOFF);
    relay.recv_type("node.heartbeat", T).expect("connected");
    let t0 = Instant::now();
    let back = relay.reject_ws_for(503, Duration::from_millis(2500));
    relay.drop_all();
    assert!(
        wait_until(T, || handshakes_since(&relay, t0).iter().any(|h| h.1)),
        "never reconnected: {}",
        d.stderr()
    );
    let log = handshakes_since(&relay, t0);
    let (at, _) = *log.iter().find(|h| h.1).unwrap();
    let refused = log.iter().filter(|h| !h.1).count();
    let late = at.saturating_duration_since(back);
    eprintln!(
        "outage: {refused} refused attempts; back {:?} after the outage began, {late:?} after the relay",
        at - t0
    );
    assert!(
        late <= Duration::from_millis(1200),
        "back {late:?} after the relay ({:?} after the outage began)",
        at - t0
    );
    // Fast because it kept trying, not by a lucky draw of a slow schedule (1 s then 2 s
    // fits at most two attempts into 2.5 s).
    assert!(refused >= 3, "only {refused} attempts during the outage");
    relay
        .recv_type("node.heartbeat", T)
        .expect("heartbeat on the new link");
}

/// A relay that stays down is not hammered: after the first seconds of fast retries the
/// delays grow (12 s of refusal: 20 fast attempts at most, then 0.5-1 s, 1-2 s, 2-4 s).
/// A fixed 250-500 ms retry would make 24-48 attempts, a dozen of them in the last 6 s.
#[test]
fn a_relay_that_stays_down_is_not_hammered() {
    let relay = FakeRelay::start();
    let home = TempDir::new("hammer");
    let d = start(&relay, &home, &DEFAULT_BACKOFF);
    relay.recv_type("node.heartbeat", T).expect("connected");
    let t0 = Instant::now();
    relay.reject_ws_for(503, Duration::from_secs(60));
    relay.drop_all();
    std::thread::sleep(Duration::from_secs(12));
    let log = handshakes_since(&relay, t0);
    assert!(log.iter().all(|h| !h.1), "accepted while refusing");
    let early = log.iter().filter(|h| h.0 - t0 < FAST_FOR).count();
    let late = log
        .iter()
        .filter(|h| h.0 - t0 >= Duration::from_secs(6))
        .count();
    eprintln!(
        "12 s of refusal: {} attempts, {early} in the first 5 s, {late} after 6 s",
        log.len()
    );
    assert!(log.len() <= 25, "{} attempts in 12 s", log.len());
    assert!(late <= 5, "{late} attempts in the last 6 s");
    assert!(early >= 5, "only {early} attempts in the first 5 s");
    assert!(d.stderr().contains("retrying in"), "{}", d.stderr());
}

/// A relay that accepts and drops at once gets fast retries only for the first seconds;
/// then the backoff grows while connections stay short-lived, and starts over after one
/// that stayed healthy (10 s): the first retry after a long-lived link is quick again.
#[test]
fn backoff_resets_after_a_connection_that_lasted() {
    let relay = FakeRelay::start();
    let home = TempDir::new("backoff");
    let _d = start(
        &relay,
        &home,
        &[
            ("CODING_BRIDGE_RECONNECT_MIN", "0.05"),
            ("CODING_BRIDGE_RECONNECT_MAX", "3"),
        ],
    );
    relay.recv_type("node.heartbeat", T).expect("connected");
    let gap = |relay: &FakeRelay| {
        let before = relay.handshakes().len();
        let t0 = Instant::now();
        relay.drop_all();
        assert!(wait_until(T, || relay.handshakes().len() > before));
        let took = t0.elapsed();
        relay.recv_type("node.heartbeat", T).expect("reconnected");
        took
    };
    // Short-lived links: fast for the first seconds ...
    let t0 = Instant::now();
    let mut flaps = 0;
    while t0.elapsed() < FAST_FOR + Duration::from_millis(500) {
        let g = gap(&relay);
        if t0.elapsed() < FAST_FOR - Duration::from_millis(500) {
            assert!(
                g < Duration::from_millis(1000),
                "slow in the fast phase: {g:?}"
            );
        }
        flaps += 1;
    }
    assert!(flaps >= 10, "only {flaps} reconnects in the fast phase");
    // ... then the delay doubles toward 3 s.
    for _ in 0..7 {
        gap(&relay);
    }
    let grown = gap(&relay);
    assert!(
        grown >= Duration::from_millis(1400),
        "backoff did not grow: {grown:?}"
    );
    // A link that stays up past 10 s resets it.
    std::thread::sleep(HEALTHY_AFTER + Duration::from_secs(1));
    let reset = gap(&relay);
    assert!(
        reset < Duration::from_millis(500),
        "backoff not reset: {reset:?}"
    );
}
