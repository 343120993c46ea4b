//! Relay-link benchmark: run with `cargo bench --bench relay` (add `-- --idle 60` for the
//! idle wake-up figure). Starts the release binary against a minimal loopback relay that
//! this program drives synchronously, and prints:
//!
//! - time from process start to the first heartbeat (median of 20 starts)
//! - idle RSS after the link is up
//! - ping → pong round trip, p50 and p99 over 5000 pings
//! - daemon CPU time for 100k ping commands in, 100k pong events out (through the hub)
//! - with `--idle SECS`: voluntary context switches of all daemon threads over SECS at
//!   the default 15 s heartbeat
//! - sessions, with the scripted fake CLI (`examples/fake_claude.rs`, built here in
//!   release): permission round trip (the relay sends `permission.resolve` → the CLI has
//!   the `control_response`), and a flood of 100k text deltas: deltas relayed per second,
//!   daemon CPU per 100k deltas, and the daemon's peak RSS
//! - `history.list` over 1000 generated transcripts: first (cold) and repeated listing
//! - `--only resume`: ping round trips (p50, p99, max) while a session resumes a 190 MiB
//!   transcript (one thinking block unsigned, so it is repaired too) and `history.get`
//!   opens it: the hub must go on answering meanwhile
//!
//! Figures are medians or percentiles of repeated runs; machines here are noisy. Set
//! `BENCH_BINARY` to measure another build of the daemon (e.g. the static musl one).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

struct Node {
    child: Child,
    _home: std::path::PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        // A clean stop first (so a daemon run under a profiler writes its profile), then
        // a kill if it takes too long.
        // SAFETY: a plain signal to the child this benchmark started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._home);
    }
}

fn spawn(port: u16, tag: &str, heartbeat: &str) -> Node {
    spawn_with(port, tag, heartbeat, &[])
}

fn spawn_with(port: u16, tag: &str, heartbeat: &str, extra: &[(&str, String)]) -> Node {
    spawn_setup(port, tag, heartbeat, extra, &|_| {})
}

/// Like [`spawn_with`], with `setup` run on the fresh home dir before the daemon starts.
fn spawn_setup(
    port: u16,
    tag: &str,
    heartbeat: &str,
    extra: &[(&str, String)],
    setup: &dyn Fn(&std::path::Path),
) -> Node {
    let home = std::env::temp_dir().join(format!("cba-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    setup(&home);
    // `BENCH_BINARY=dist/coding-bridge-agent-x86_64-unknown-linux-musl` measures a
    // static release build instead of this glibc one.
    // A relative path is taken from the project root (the daemon runs in a temp dir).
    let binary = std::env::var("BENCH_BINARY")
        .map(|b| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(b))
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_coding-bridge-agent").into());
    let child = Command::new(binary)
        .env_clear()
        .env("HOME", &home)
        .env("CODING_BRIDGE_CONFIG_DIR", home.join("cfg"))
        .env("CODING_BRIDGE_URL", format!("http://127.0.0.1:{port}"))
        .env("CODING_BRIDGE_NODE_TOKEN", "bench-token")
        .env("CODING_BRIDGE_HEARTBEAT_INTERVAL", heartbeat)
        .env("CODING_BRIDGE_LOG_LEVEL", "warn")
        .envs(extra.iter().map(|(k, v)| (*k, v.clone())))
        .current_dir(&home)
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn daemon (build it with cargo bench)");
    Node { child, _home: home }
}

fn accept(listener: &TcpListener) -> Ws {
    let (s, _) = listener.accept().expect("accept");
    s.set_nodelay(true).unwrap();
    tungstenite::accept(s).expect("ws handshake")
}

fn read_json(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
            _ => continue,
        }
    }
}

fn command(id: u64) -> Message {
    Message::Text(
        json!({"v": 2, "id": format!("b{id}"), "ts": 0, "type": "browser.to_node",
               "cmd_id": format!("c{id}"), "payload": {"action": "ping"}})
        .to_string()
        .into(),
    )
}

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

fn voluntary_switches(pid: u32) -> u64 {
    let mut total = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let tid = t.file_name().to_string_lossy().into_owned();
            total += proc_field(
                pid,
                &format!("task/{tid}/status"),
                "voluntary_ctxt_switches:",
            );
        }
    }
    total
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let idle_secs: Option<u64> = args
        .iter()
        .position(|a| a == "--idle")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    // `--only link|sessions|stall|providers|history|resume|smallhost`: one section.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    if run("link") {
        link_bench(&listener, port);
    }
    if run("sessions") {
        sessions_bench(&listener, port);
    }
    if run("stall") {
        stall_bench(&listener, port);
    }
    if run("providers") {
        providers_bench(&listener, port);
    }
    if run("history") {
        history_bench(&listener, port);
    }
    if run("resume") {
        resume_bench(&listener, port);
    }
    // Needs the real Claude Code CLI (`.ci/run` installs it); only when asked for.
    if only.as_deref() == Some("smallhost") {
        small_host_bench(&listener, port);
    }
    if let Some(secs) = idle_secs {
        idle_bench(&listener, port, secs);
    }
}

fn link_bench(listener: &TcpListener, port: u16) {
    // 1. Start to first heartbeat.
    let mut starts = Vec::new();
    for i in 0..20 {
        let t0 = Instant::now();
        let node = spawn(port, &format!("start{i}"), "15");
        let mut ws = accept(listener);
        loop {
            let v = read_json(&mut ws);
            if v["type"] == "node.heartbeat" {
                break;
            }
        }
        starts.push(t0.elapsed().as_secs_f64() * 1000.0);
        drop(node);
    }
    println!(
        "first heartbeat after start: median {:.1} ms (20 starts)",
        median(&mut starts)
    );

    // 2-4 on one daemon.
    let node = spawn(port, "main", "15");
    let pid = node.child.id();
    let mut ws = accept(listener);
    while read_json(&mut ws)["type"] != "node.heartbeat" {}
    std::thread::sleep(Duration::from_secs(2));
    let rss = proc_field(pid, "status", "VmRSS:");
    println!("idle RSS: {:.2} MiB", rss as f64 / 1024.0);

    let mut rtts = Vec::new();
    for i in 0..5000u64 {
        let t = Instant::now();
        ws.send(command(i)).unwrap();
        while read_json(&mut ws)["payload"]["event"] != "pong" {}
        rtts.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "ping -> pong round trip: p50 {:.3} ms, p99 {:.3} ms (5000 pings)",
        pct(&mut rtts, 0.5),
        pct(&mut rtts, 0.99)
    );

    let mut per_100k = Vec::new();
    for round in 0..3u64 {
        let cpu0 = cpu_seconds(pid);
        let t0 = Instant::now();
        let total = 100_000u64;
        let batch = 500u64;
        let mut sent = 0;
        while sent < total {
            for i in 0..batch {
                ws.write(command(1_000_000 * (round + 1) + sent + i))
                    .unwrap();
            }
            ws.flush().unwrap();
            let mut got = 0;
            while got < batch {
                if read_json(&mut ws)["payload"]["event"] == "pong" {
                    got += 1;
                }
            }
            sent += batch;
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid) - cpu0;
        per_100k.push(cpu);
        println!(
            "  round {round}: 100k commands -> 100k events in {wall:.2} s wall, daemon CPU {cpu:.2} s"
        );
    }
    println!(
        "daemon CPU per 100k events: median {:.2} s",
        median(&mut per_100k)
    );
    let peak = proc_field(pid, "status", "VmHWM:");
    println!("peak RSS so far: {:.2} MiB", peak as f64 / 1024.0);
    drop(ws);
    drop(node);
}

fn idle_bench(listener: &TcpListener, port: u16, secs: u64) {
    {
        let node = spawn(port, "idle", "15");
        let pid = node.child.id();
        let mut ws = accept(listener);
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        std::thread::sleep(Duration::from_secs(1));
        let before = voluntary_switches(pid);
        let end = Instant::now() + Duration::from_secs(secs);
        let mut heartbeats = 0;
        while Instant::now() < end {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == "node.heartbeat" {
                        heartbeats += 1;
                        let ack = json!({"v": 2, "id": "ack", "ts": 0, "type": "node.heartbeat_ack", "payload": {}});
                        ws.send(Message::Text(ack.to_string().into())).unwrap();
                    }
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        let after = voluntary_switches(pid);
        println!(
            "idle {secs} s at a 15 s heartbeat: {} voluntary context switches over all threads ({heartbeats} heartbeats)",
            after - before
        );
        drop(node);
    }
}

/// The same 20k-delta text stream through each provider, from scripted agents that write
/// one line per write (Claude Code stream-json, Codex app-server, ACP), every event
/// acked: the daemon's CPU per event must not depend on the agent.
fn providers_bench(listener: &TcpListener, port: u16) {
    let claude = build_fake();
    let dir = claude.parent().unwrap().to_path_buf();
    let codex = dir.join("fake_codex");
    let acp = dir.join("fake_acp");
    let cwd = std::env::temp_dir().to_string_lossy().into_owned();
    const N: u64 = 20_000;
    for (provider, prompt) in [
        ("claude", "floodlines 20000"),
        ("codex", "flood 20000"),
        ("fakeacp", "flood 20000"),
    ] {
        let mut cpus = Vec::new();
        for round in 0..5 {
            let tag = format!("prov-{provider}-{round}");
            let env = [
                (
                    "CODING_BRIDGE_CLAUDE_PATH",
                    claude.to_string_lossy().into_owned(),
                ),
                (
                    "CODING_BRIDGE_CODEX_PATH",
                    codex.to_string_lossy().into_owned(),
                ),
            ];
            // A declared ACP agent: the scripted one.
            let node = spawn_setup(port, &tag, "15", &env, &|home| {
                let cfg = home.join("cfg");
                std::fs::create_dir_all(&cfg).unwrap();
                std::fs::write(
                    cfg.join("agents.json"),
                    json!({"agents": [{"name": "fakeacp", "label": "Fake", "command": acp}]})
                        .to_string(),
                )
                .unwrap();
            });
            let pid = node.child.id();
            let mut ws = accept(listener);
            while read_json(&mut ws)["type"] != "node.heartbeat" {}
            ws.send(cmd_msg(
                "p0",
                json!({"action": "session.start", "session_id": "p", "provider": provider,
                                           "prompt": "say warm", "cwd": cwd}),
            ))
            .unwrap();
            let (first, _) = until_event_acking(&mut ws, "session.result", "", 1);
            let sid = first["payload"]["session_id"].clone();
            let cpu0 = cpu_seconds(pid);
            ws.send(cmd_msg(
                "p1",
                json!({"action": "session.send", "session_id": sid, "prompt": prompt}),
            ))
            .unwrap();
            let (_, deltas) =
                until_event_acking(&mut ws, "session.result", "session.text_delta", 1);
            let cpu = cpu_seconds(pid) - cpu0;
            assert_eq!(deltas, N, "{provider}");
            cpus.push(cpu * 1e6 / N as f64);
            drop(ws);
            drop(node);
        }
        println!(
            "{provider}: 20k text deltas, one line per write, every event acked: daemon CPU per event median {:.1} us",
            median(&mut cpus)
        );
    }
}

/// Build the fake CLI in release (in its own target dir, to not contend with the bench build).
fn build_fake() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target/bench-fake-cli");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--release",
            "--example",
            "fake_claude",
            "--example",
            "fake_codex",
            "--example",
            "fake_acp",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(root)
        .status()
        .expect("cargo build the fake CLI");
    assert!(status.success(), "building the fake CLI failed");
    target.join("release/examples/fake_claude")
}

fn cmd_msg(id: &str, payload: Value) -> Message {
    Message::Text(
        json!({"v": 2, "id": id, "ts": 0, "type": "browser.to_node", "cmd_id": id, "payload": payload})
            .to_string()
            .into(),
    )
}

/// Read events until `event`, acking durable ones as the relay would; returns the
/// number of `count` events seen on the way.
fn until_event(ws: &mut Ws, event: &str, count: &str) -> (Value, u64) {
    until_event_acking(ws, event, count, 1000)
}

/// Like [`until_event`], acking every `ack_every`-th durable event (1: each one, as the
/// real relay does).
fn until_event_acking(ws: &mut Ws, event: &str, count: &str, ack_every: u64) -> (Value, u64) {
    let mut n = 0;
    let mut last_seq = 0;
    loop {
        let v = read_json(ws);
        if let Some(seq) = v.get("node_seq").and_then(Value::as_u64) {
            last_seq = seq;
            if seq % ack_every == 0 {
                let ack = json!({"v": 2, "id": "a", "ts": 0, "type": "node.ack", "payload": {"up_to_node_seq": seq}});
                ws.send(Message::Text(ack.to_string().into())).unwrap();
            }
        }
        if v["payload"]["event"] == count {
            n += 1;
        }
        if v["payload"]["event"] == event {
            let ack = json!({"v": 2, "id": "a", "ts": 0, "type": "node.ack", "payload": {"up_to_node_seq": last_seq}});
            ws.send(Message::Text(ack.to_string().into())).unwrap();
            return (v, n);
        }
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn sessions_bench(listener: &TcpListener, port: u16) {
    let fake = build_fake();
    let log = std::env::temp_dir().join(format!("cba-bench-fake-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let cwd = std::env::temp_dir().to_string_lossy().into_owned();
    let env = [
        (
            "CODING_BRIDGE_CLAUDE_PATH",
            fake.to_string_lossy().into_owned(),
        ),
        ("FAKE_CLAUDE_LOG", log.to_string_lossy().into_owned()),
    ];

    // Permission round trip.
    let node = spawn_with(port, "perm", "15", &env);
    let mut ws = accept(listener);
    while read_json(&mut ws)["type"] != "node.heartbeat" {}
    ws.send(cmd_msg(
        "s0",
        json!({"action": "session.start", "session_id": "bench", "prompt": "say warm", "cwd": cwd}),
    ))
    .unwrap();
    until_event(&mut ws, "session.result", "");
    let mut sent = Vec::new();
    for i in 0..300 {
        ws.send(cmd_msg(
            &format!("t{i}"),
            json!({"action": "session.send", "session_id": "bench", "prompt": "tool Bash {}"}),
        ))
        .unwrap();
        let (req, _) = until_event(&mut ws, "permission.request", "");
        let rid = req["payload"]["request_id"].clone();
        sent.push(now_ns());
        ws.send(cmd_msg(
            &format!("r{i}"),
            json!({"action": "permission.resolve", "request_id": rid, "decision": "allow"}),
        ))
        .unwrap();
        until_event(&mut ws, "session.result", "");
    }
    let received: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["stdin"]["type"] == "control_response")
        .filter_map(|v| v["t_ns"].as_u64())
        .collect();
    let mut rtt: Vec<f64> = sent
        .iter()
        .zip(&received)
        .map(|(s, r)| (*r as f64 - *s as f64) / 1e6)
        .collect();
    println!(
        "permission round trip (relay sends resolve -> CLI has the answer): p50 {:.3} ms, p99 {:.3} ms ({} approvals)",
        pct(&mut rtt, 0.5),
        pct(&mut rtt, 0.99),
        rtt.len()
    );
    drop(ws);
    drop(node);

    // Text delta flood.
    let mut rates = Vec::new();
    let mut cpus = Vec::new();
    let mut peaks = Vec::new();
    for round in 0..3 {
        let node = spawn_with(port, &format!("flood{round}"), "15", &env);
        let pid = node.child.id();
        let mut ws = accept(listener);
        while read_json(&mut ws)["type"] != "node.heartbeat" {}
        ws.send(cmd_msg("f0", json!({"action": "session.start", "session_id": "flood", "prompt": "say warm", "cwd": cwd}))).unwrap();
        until_event(&mut ws, "session.result", "");
        let before = proc_field(pid, "status", "VmRSS:") as f64 / 1024.0;
        let cpu0 = cpu_seconds(pid);
        let t0 = Instant::now();
        ws.send(cmd_msg(
            "f1",
            json!({"action": "session.send", "session_id": "flood", "prompt": "flood 100000"}),
        ))
        .unwrap();
        let (_, deltas) = until_event(&mut ws, "session.result", "session.text_delta");
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid) - cpu0;
        let peak = proc_field(pid, "status", "VmHWM:") as f64 / 1024.0;
        println!(
            "  flood round {round}: {deltas} deltas in {wall:.2} s, daemon CPU {cpu:.2} s, RSS {before:.2} MiB before, peak {peak:.2} MiB"
        );
        rates.push(deltas as f64 / wall);
        cpus.push(cpu * 100_000.0 / deltas.max(1) as f64);
        peaks.push(peak);
        drop(ws);
        drop(node);
    }
    println!(
        "text deltas relayed: median {:.0} per s; daemon CPU per 100k deltas: median {:.2} s; peak RSS: median {:.2} MiB",
        median(&mut rates),
        median(&mut cpus),
        median(&mut peaks)
    );

    // The real shape: the CLI writes one line per write(2), the relay acks every
    // durable event.
    let mut cpus = Vec::new();
    let mut peaks = Vec::new();
    for round in 0..5 {
        let node = spawn_with(port, &format!("lines{round}"), "15", &env);
        let pid = node.child.id();
        let mut ws = accept(listener);
        while read_json(&mut ws)["type"] != "node.heartbeat" {}
        ws.send(cmd_msg("f0", json!({"action": "session.start", "session_id": "flood", "prompt": "say warm", "cwd": cwd}))).unwrap();
        until_event_acking(&mut ws, "session.result", "", 1);
        let cpu0 = cpu_seconds(pid);
        ws.send(cmd_msg(
            "f1",
            json!({"action": "session.send", "session_id": "flood", "prompt": "floodlines 20000"}),
        ))
        .unwrap();
        let (_, deltas) = until_event_acking(&mut ws, "session.result", "session.text_delta", 1);
        let cpu = cpu_seconds(pid) - cpu0;
        let peak = proc_field(pid, "status", "VmHWM:") as f64 / 1024.0;
        assert_eq!(deltas, 20_000);
        println!("  line-per-write round {round}: daemon CPU {cpu:.3} s, peak RSS {peak:.2} MiB");
        cpus.push(cpu);
        peaks.push(peak);
        drop(ws);
        drop(node);
    }
    println!(
        "20k deltas, one line per write, every event acked: daemon CPU median {:.3} s, peak RSS median {:.2} MiB",
        median(&mut cpus),
        median(&mut peaks)
    );
    let _ = std::fs::remove_file(&log);
}

/// A relay that stops reading for 10 s during a 50k-delta flood: every delta must
/// arrive, and the daemon's memory stays flat (the CLI waits on its pipe).
fn stall_bench(listener: &TcpListener, port: u16) {
    let fake = build_fake();
    let cwd = std::env::temp_dir().to_string_lossy().into_owned();
    let env = [(
        "CODING_BRIDGE_CLAUDE_PATH",
        fake.to_string_lossy().into_owned(),
    )];
    let node = spawn_with(port, "stall", "15", &env);
    let pid = node.child.id();
    let mut ws = accept(listener);
    while read_json(&mut ws)["type"] != "node.heartbeat" {}
    ws.send(cmd_msg(
        "s0",
        json!({"action": "session.start", "session_id": "stall", "prompt": "say warm", "cwd": cwd}),
    ))
    .unwrap();
    until_event_acking(&mut ws, "session.result", "", 1);
    ws.send(cmd_msg(
        "s1",
        json!({"action": "session.send", "session_id": "stall", "prompt": "floodlines 50000"}),
    ))
    .unwrap();
    // Read a little, then nothing for 10 s.
    let mut before = 0;
    for _ in 0..100 {
        if read_json(&mut ws)["payload"]["event"] == "session.text_delta" {
            before += 1;
        }
    }
    std::thread::sleep(Duration::from_secs(10));
    let during = proc_field(pid, "status", "VmHWM:") as f64 / 1024.0;
    let (_, deltas) = until_event_acking(&mut ws, "session.result", "session.text_delta", 1);
    let peak = proc_field(pid, "status", "VmHWM:") as f64 / 1024.0;
    println!(
        "50k deltas through a 10 s relay stall: {} of 50000 arrived, peak RSS {during:.2} MiB during the stall, {peak:.2} MiB overall",
        before + deltas
    );
    drop(ws);
    drop(node);
}

/// The heavy user's history: 3000 transcripts, 1.3 GiB, four of them 100-200 MiB and
/// among the newest (the worst case for a listing). Generated once under
/// `target/bench-history-corpus` (not committed) and reused by later runs.
fn corpus() -> (std::path::PathBuf, u64) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-history-corpus");
    let done = root.join("complete");
    let projects = root.join(".claude/projects");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&root);
        let t0 = Instant::now();
        let filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(30);
        let pool: Vec<String> = (0..64)
            .map(|i| {
                let v = match i % 4 {
                    0 => json!({"parentUuid": "p", "isSidechain": false, "userType": "external", "cwd": "/home/user/proj", "sessionId": "s", "version": "2.1.331", "gitBranch": "main",
                                "message": {"role": "user", "content": format!("Please look at part {i} of the module and fix what is broken there.")}, "type": "user", "uuid": format!("u{i}"), "timestamp": "2026-11-20T10:00:00.000Z"}),
                    1 => json!({"parentUuid": "p", "isSidechain": false, "userType": "external", "cwd": "/home/user/proj", "sessionId": "s", "version": "2.1.331", "gitBranch": "main",
                                "message": {"id": format!("msg_{i}"), "model": "claude-sonnet-4-5", "role": "assistant", "content": [{"type": "text", "text": format!("Looking at it. {filler}")}, {"type": "tool_use", "id": format!("toolu_{i}"), "name": "Read", "input": {"file_path": "/home/user/proj/src/lib.rs"}}]},
                                "type": "assistant", "uuid": format!("a{i}"), "timestamp": "2026-11-20T10:00:01.000Z"}),
                    2 => json!({"parentUuid": "p", "isSidechain": false, "userType": "external", "cwd": "/home/user/proj", "sessionId": "s", "version": "2.1.331", "gitBranch": "main",
                                "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": format!("toolu_{i}"), "content": filler.repeat(4)}]}, "type": "user", "uuid": format!("r{i}"), "timestamp": "2026-11-20T10:00:02.000Z"}),
                    _ => json!({"parentUuid": "p", "isSidechain": false, "userType": "external", "cwd": "/home/user/proj", "sessionId": "s", "version": "2.1.331", "gitBranch": "main",
                                "message": {"id": format!("msg_b{i}"), "model": "claude-sonnet-4-5", "role": "assistant", "content": [{"type": "thinking", "thinking": filler, "signature": "sig"}, {"type": "text", "text": "Done."}]},
                                "type": "assistant", "uuid": format!("b{i}"), "timestamp": "2026-11-20T10:00:03.000Z"}),
                };
                format!("{v}\n")
            })
            .collect();
        let big: [u64; 4] = [200 << 20, 150 << 20, 120 << 20, 100 << 20];
        let small_total: u64 = (1300u64 << 20) - big.iter().sum::<u64>();
        let small = small_total / 2996;
        let now = std::time::SystemTime::now();
        for n in 0..3000u64 {
            let dir = projects.join(format!("-home-user-proj{}", n % 40));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("sess-{n:05}.jsonl"));
            let target = if n < 4 { big[n as usize] } else { small };
            let mut f =
                std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
            use std::io::Write;
            let first = json!({"type": "user", "message": {"role": "user", "content": format!("Session {n}: make the tests pass again")}, "cwd": format!("/home/user/proj{}", n % 40), "gitBranch": "main", "uuid": "first", "timestamp": "2026-11-20T09:59:00.000Z"});
            writeln!(f, "{first}").unwrap();
            let mut written = 0u64;
            let mut i = 0;
            while written < target {
                let line = &pool[i % pool.len()];
                f.write_all(line.as_bytes()).unwrap();
                written += line.len() as u64;
                i += 1;
                if i == 50 {
                    writeln!(f, "{}", json!({"type": "ai-title", "aiTitle": format!("Fixing the tests of session {n}"), "sessionId": "s"})).unwrap();
                }
            }
            drop(f);
            // The big ones are the newest: the listing's worst case.
            let age = Duration::from_secs(60 + n * 60);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(now - age)
                .unwrap();
        }
        std::fs::write(&done, b"").unwrap();
        println!(
            "(generated the history corpus in {:.1} s)",
            t0.elapsed().as_secs_f64()
        );
    }
    let mut bytes = 0;
    for p in std::fs::read_dir(&projects).unwrap().flatten() {
        for f in std::fs::read_dir(p.path()).unwrap().flatten() {
            bytes += f.metadata().unwrap().len();
        }
    }
    (root, bytes)
}

fn history_bench(listener: &TcpListener, port: u16) {
    let (home, bytes) = corpus();
    let env = [("HOME", home.to_string_lossy().into_owned())];
    let ask = |ws: &mut Ws, payload: Value, event: &str| -> (Value, f64) {
        let t0 = Instant::now();
        ws.send(cmd_msg(&format!("h{}", now_ns()), payload))
            .unwrap();
        let (reply, _) = until_event(ws, event, "");
        (reply, t0.elapsed().as_secs_f64() * 1000.0)
    };
    for limit in [200, 1000] {
        let mut colds = Vec::new();
        let mut warms = Vec::new();
        let mut peaks = Vec::new();
        for round in 0..3 {
            let node = spawn_with(port, &format!("history{limit}-{round}"), "15", &env);
            let pid = node.child.id();
            let mut ws = accept(listener);
            while read_json(&mut ws)["type"] != "node.heartbeat" {}
            let (reply, cold) = ask(
                &mut ws,
                json!({"action": "history.list", "limit": limit}),
                "history.snapshot",
            );
            let sessions = reply["payload"]["sessions"]
                .as_array()
                .map_or(0, |a| a.len());
            assert_eq!(sessions, limit);
            assert_eq!(
                reply["payload"]["sessions"][0]["title"],
                "Fixing the tests of session 0"
            );
            colds.push(cold);
            for _ in 0..5 {
                warms.push(
                    ask(
                        &mut ws,
                        json!({"action": "history.list", "limit": limit}),
                        "history.snapshot",
                    )
                    .1,
                );
            }
            peaks.push(proc_field(pid, "status", "VmHWM:") as f64 / 1024.0);
            drop(ws);
            drop(node);
        }
        println!(
            "history.list (limit {limit}) over 3000 transcripts ({:.2} GiB, files in the page cache): first after start median {:.0} ms, then median {:.1} ms; peak RSS median {:.2} MiB",
            bytes as f64 / (1u64 << 30) as f64,
            median(&mut colds),
            median(&mut warms),
            median(&mut peaks)
        );
    }
    // The summary index (issue 19): the first listing of a daemon restarted with the
    // index its predecessor left, against one without (cold).
    let (mut colds, mut warms) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let cfg =
            std::env::temp_dir().join(format!("cba-bench-index-{}-{round}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cfg);
        let env = [
            ("HOME", home.to_string_lossy().into_owned()),
            (
                "CODING_BRIDGE_CONFIG_DIR",
                cfg.to_string_lossy().into_owned(),
            ),
        ];
        for (i, times) in [&mut colds, &mut warms].into_iter().enumerate() {
            let node = spawn_with(port, &format!("index{round}-{i}"), "15", &env);
            let mut ws = accept(listener);
            while read_json(&mut ws)["type"] != "node.heartbeat" {}
            let (reply, ms) = ask(
                &mut ws,
                json!({"action": "history.list", "limit": 200}),
                "history.snapshot",
            );
            assert_eq!(
                reply["payload"]["sessions"]
                    .as_array()
                    .map_or(0, |a| a.len()),
                200
            );
            times.push(ms);
            drop(ws);
            drop(node);
        }
        let _ = std::fs::remove_dir_all(&cfg);
    }
    println!(
        "history.list (limit 200) right after a restart: without the summary index median {:.0} ms, with it median {:.1} ms",
        median(&mut colds),
        median(&mut warms)
    );
    let mut times = Vec::new();
    let mut peaks = Vec::new();
    let mut size = 0;
    for round in 0..3 {
        let node = spawn_with(port, &format!("detail{round}"), "15", &env);
        let pid = node.child.id();
        let mut ws = accept(listener);
        while read_json(&mut ws)["type"] != "node.heartbeat" {}
        let (reply, ms) = ask(
            &mut ws,
            json!({"action": "history.get", "provider": "claude", "session_id": "sess-00000"}),
            "history.detail",
        );
        assert_eq!(reply["payload"]["truncated"], true);
        size = reply["payload"]["events"].to_string().len();
        times.push(ms);
        peaks.push(proc_field(pid, "status", "VmHWM:") as f64 / 1024.0);
        drop(ws);
        drop(node);
    }
    println!(
        "history.get of a 200 MiB transcript (fresh daemon): median {:.0} ms, {:.1} MiB of events, peak RSS median {:.2} MiB",
        median(&mut times),
        size as f64 / (1 << 20) as f64,
        median(&mut peaks)
    );
    // Both in one daemon, as a user browsing history does (issue 19: within 32 MiB).
    let mut peaks = Vec::new();
    for round in 0..3 {
        let node = spawn_with(port, &format!("both{round}"), "15", &env);
        let pid = node.child.id();
        let mut ws = accept(listener);
        while read_json(&mut ws)["type"] != "node.heartbeat" {}
        ask(
            &mut ws,
            json!({"action": "history.list", "limit": 1000}),
            "history.snapshot",
        );
        ask(
            &mut ws,
            json!({"action": "history.get", "provider": "claude", "session_id": "sess-00000"}),
            "history.detail",
        );
        peaks.push(proc_field(pid, "status", "VmHWM:") as f64 / 1024.0);
        drop(ws);
        drop(node);
    }
    println!(
        "history.list (limit 1000) then history.get of the 200 MiB transcript in one daemon: peak RSS median {:.2} MiB",
        median(&mut peaks)
    );
}

/// One 190 MiB transcript of session [`RESUME_ID`] started in `work/`, under
/// `target/bench-resume/home` (generated once, reused). Its first thinking block has no
/// signature, so a resume repairs it as well as locating and scanning it.
const RESUME_ID: &str = "6f1f6c1e-5b8e-4d55-9c55-1b6b3c2f0a01";

fn resume_corpus() -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-resume");
    let home = root.join("home");
    let work = root.join("work");
    let slug: String = work
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir = home.join(".claude/projects").join(slug);
    let path = dir.join(format!("{RESUME_ID}.jsonl"));
    let done = root.join("complete");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(30);
        let cwd = work.to_string_lossy().into_owned();
        let mut f =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
        use std::io::Write;
        let mut written = 0u64;
        let mut parent = String::from("root");
        let mut i = 0u64;
        while written < 190 << 20 {
            let uuid = format!("00000000-0000-4000-8000-{i:012}");
            let v = match i % 4 {
                0 => {
                    json!({"parentUuid": parent, "isSidechain": false, "type": "user", "uuid": uuid, "sessionId": RESUME_ID, "cwd": cwd, "timestamp": "2026-11-20T10:00:00.000Z",
                            "message": {"role": "user", "content": format!("Please look at part {i} and fix it.")}})
                }
                1 => {
                    let mut thinking = json!({"type": "thinking", "thinking": filler});
                    if i != 1 {
                        thinking["signature"] = json!("sig");
                    }
                    json!({"parentUuid": parent, "isSidechain": false, "type": "assistant", "uuid": uuid, "sessionId": RESUME_ID, "cwd": cwd, "timestamp": "2026-11-20T10:00:01.000Z",
                           "message": {"id": format!("msg_{i}"), "model": "claude-sonnet-4-5", "role": "assistant", "content": [thinking, {"type": "tool_use", "id": format!("toolu_{i}"), "name": "Read", "input": {"file_path": "src/lib.rs"}}]}})
                }
                2 => {
                    json!({"parentUuid": parent, "isSidechain": false, "type": "user", "uuid": uuid, "sessionId": RESUME_ID, "cwd": cwd, "timestamp": "2026-11-20T10:00:02.000Z",
                            "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": format!("toolu_{}", i - 1), "content": filler.repeat(4)}]}})
                }
                _ => {
                    json!({"parentUuid": parent, "isSidechain": false, "type": "assistant", "uuid": uuid, "sessionId": RESUME_ID, "cwd": cwd, "timestamp": "2026-11-20T10:00:03.000Z",
                            "message": {"id": format!("msg_{i}"), "model": "claude-sonnet-4-5", "role": "assistant", "content": [{"type": "text", "text": format!("Done with part {i}.")}]}})
                }
            };
            let line = format!("{v}\n");
            f.write_all(line.as_bytes()).unwrap();
            written += line.len() as u64;
            parent = uuid;
            i += 1;
        }
        drop(f);
        std::fs::write(&done, b"").unwrap();
    }
    (home, work, dir)
}

fn resume_bench(listener: &TcpListener, port: u16) {
    let fake = build_fake();
    let (home, work, dir) = resume_corpus();
    let size = std::fs::metadata(dir.join(format!("{RESUME_ID}.jsonl")))
        .map(|m| m.len())
        .unwrap_or(0);
    let env = [
        (
            "CODING_BRIDGE_CLAUDE_PATH",
            fake.to_string_lossy().into_owned(),
        ),
        ("HOME", home.to_string_lossy().into_owned()),
    ];
    let (mut p50s, mut p99s, mut maxes, mut counts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..5 {
        // Each round resumes the original (repaired copies of earlier rounds removed).
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if !e.file_name().to_string_lossy().starts_with(RESUME_ID) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let node = spawn_with(port, &format!("resume{round}"), "15", &env);
        let mut ws = accept(listener);
        while read_json(&mut ws)["type"] != "node.heartbeat" {}
        // Warm the link first.
        for i in 0..50 {
            ws.send(command(i)).unwrap();
            while read_json(&mut ws)["payload"]["event"] != "pong" {}
        }
        ws.send(cmd_msg(
            "r0",
            json!({"action": "session.start", "session_id": "resumed", "resume_session_id": RESUME_ID,
                   "prompt": "say resumed", "cwd": work}),
        ))
        .unwrap();
        ws.send(cmd_msg(
            "r1",
            json!({"action": "history.get", "provider": "claude", "session_id": RESUME_ID, "trace_id": "g"}),
        ))
        .unwrap();
        let (mut result, mut detail) = (false, false);
        let mut rtts = Vec::new();
        let t0 = Instant::now();
        let mut i = 1000u64;
        while !(result && detail) || rtts.len() < 100 {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "no result/detail in 2 min"
            );
            let t = Instant::now();
            ws.send(command(i)).unwrap();
            i += 1;
            loop {
                let v = read_json(&mut ws);
                if let Some(seq) = v.get("node_seq").and_then(Value::as_u64) {
                    let ack = json!({"v": 2, "id": "a", "ts": 0, "type": "node.ack", "payload": {"up_to_node_seq": seq}});
                    ws.send(Message::Text(ack.to_string().into())).unwrap();
                }
                match v["payload"]["event"].as_str() {
                    Some("pong") => break,
                    Some("session.result") => result = true,
                    Some("history.detail") => detail = true,
                    Some("session.error") => panic!("the resume failed: {v}"),
                    _ => {}
                }
            }
            rtts.push(t.elapsed().as_secs_f64() * 1000.0);
            std::thread::sleep(Duration::from_millis(1));
        }
        counts.push(rtts.len() as f64);
        p50s.push(pct(&mut rtts, 0.5));
        p99s.push(pct(&mut rtts, 0.99));
        maxes.push(rtts.iter().cloned().fold(0.0, f64::max));
        drop(ws);
        drop(node);
    }
    println!(
        "ping while resuming a {:.0} MiB transcript (repaired) and opening it with history.get: p50 {:.3} ms, p99 {:.2} ms, max {:.1} ms (medians of 5 rounds, {:.0} pings each)",
        size as f64 / (1u64 << 20) as f64,
        median(&mut p50s),
        median(&mut p99s),
        median(&mut maxes),
        median(&mut counts)
    );
}

/// A fake Anthropic Messages API on loopback for the real Claude Code CLI: every turn is
/// answered "All done here." as a stream; anything else is a 404.
fn fake_messages_api() -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = BufReader::new(s);
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    return;
                }
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                let mut s = r.into_inner();
                if !line.starts_with("POST /v1/messages") || line.contains("count_tokens") {
                    let _ = write!(
                        s,
                        "HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
                    );
                    return;
                }
                let model = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|b| b["model"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "claude-sonnet-4-5".into());
                let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
                let mut out = String::from(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
                );
                out += &ev(
                    "message_start",
                    json!({"type": "message_start", "message": {"id": format!("msg_{}", now_ns()), "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
                );
                out += &ev(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                );
                out += &ev(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "All done here."}}),
                );
                out += &ev(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                );
                out += &ev(
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 5}}),
                );
                out += &ev("message_stop", json!({"type": "message_stop"}));
                let _ = s.write_all(out.as_bytes());
            });
        }
    });
    port
}

/// The resident memory of `root` and every process under it, in MiB.
fn tree_rss_mib(root: u32) -> f64 {
    let mut parent = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(pp) = ppid {
            parent.insert(pid, pp);
        }
    }
    let under = |mut p: u32| {
        while p > 1 {
            if p == root {
                return true;
            }
            p = parent.get(&p).copied().unwrap_or(0);
        }
        false
    };
    parent
        .keys()
        .copied()
        .chain([root])
        .filter(|p| under(*p))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|p| proc_field(p, "status", "VmRSS:") as f64 / 1024.0)
        .sum()
}

/// Issue 19's figures with the real Claude Code CLI (2.1.331, as `.ci/run` installs it):
/// ten sessions opened and left idle, the RSS of the daemon and its agents before and
/// after the idle stop, and the time from `session.send` to the first text of a stopped
/// session against a live one.
fn small_host_bench(listener: &TcpListener, port: u16) {
    let cli = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/claude-code-2.1.331/node_modules/.bin/claude");
    if !cli.exists() {
        println!(
            "smallhost: skipped, no Claude Code at {} (run .ci/run once)",
            cli.display()
        );
        return;
    }
    let api = fake_messages_api();
    const IDLE: u64 = 20;
    let env = [
        (
            "CODING_BRIDGE_CLAUDE_PATH",
            cli.to_string_lossy().into_owned(),
        ),
        ("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{api}")),
        ("ANTHROPIC_API_KEY", "sk-test".to_string()),
        ("DISABLE_TELEMETRY", "1".into()),
        ("DISABLE_AUTOUPDATER", "1".into()),
        ("DISABLE_ERROR_REPORTING", "1".into()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
        ("CODING_BRIDGE_IDLE_STOP", IDLE.to_string()),
        ("CODING_BRIDGE_MAX_AGENTS", "16".into()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
    ];
    let setup = |home: &std::path::Path| {
        std::fs::create_dir_all(home.join("work")).unwrap();
        std::fs::write(
            home.join(".claude.json"),
            json!({"customApiKeyResponses": {"approved": ["sk-test"], "rejected": []}}).to_string(),
        )
        .unwrap();
    };
    let node = spawn_setup(port, "smallhost", "15", &env, &setup);
    let pid = node.child.id();
    let work = node._home.join("work");
    let mut ws = accept(listener);
    while read_json(&mut ws)["type"] != "node.heartbeat" {}
    let mut ids = Vec::new();
    for i in 0..10 {
        ws.send(cmd_msg(
            &format!("s{i}"),
            json!({"action": "session.start", "session_id": format!("b{i}"), "cwd": work, "prompt": "hello"}),
        ))
        .unwrap();
        let (v, _) = until_event(&mut ws, "session.result", "");
        ids.push(
            v["payload"]["session_id"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let before = tree_rss_mib(pid);
    let t0 = Instant::now();
    while tree_rss_mib(pid) > before / 4.0 && t0.elapsed() < Duration::from_secs(IDLE * 4) {
        std::thread::sleep(Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = tree_rss_mib(pid);
    // First text of a stopped session (resumed), then of the same one live.
    let first_text = |ws: &mut Ws, id: &str| {
        let t0 = Instant::now();
        ws.send(cmd_msg(
            &format!("t{}", now_ns()),
            json!({"action": "session.send", "session_id": id, "prompt": "hello again"}),
        ))
        .unwrap();
        let mut ms = None;
        loop {
            let v = read_json(ws);
            let e = v["payload"]["event"].as_str().unwrap_or("");
            if ms.is_none() && (e == "session.text_delta" || e == "session.text") {
                ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
            }
            if e == "session.result" {
                if let Some(seq) = v.get("node_seq").and_then(Value::as_u64) {
                    let ack = json!({"v": 2, "id": "a", "ts": 0, "type": "node.ack", "payload": {"up_to_node_seq": seq}});
                    ws.send(Message::Text(ack.to_string().into())).unwrap();
                }
                return ms.unwrap_or(f64::NAN);
            }
        }
    };
    let (mut stopped, mut live) = (Vec::new(), Vec::new());
    for id in ids.iter().take(5) {
        stopped.push(first_text(&mut ws, id));
        live.push(first_text(&mut ws, id));
    }
    println!(
        "10 real Claude Code sessions left idle: daemon + agents RSS {before:.0} MiB, {after:.0} MiB after the idle stop ({IDLE} s)"
    );
    println!(
        "session.send -> first text: stopped session (resumed) median {:.0} ms, live session median {:.0} ms (5 each)",
        median(&mut stopped),
        median(&mut live)
    );
    drop(ws);
    drop(node);
}
