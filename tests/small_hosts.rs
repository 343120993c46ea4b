//! Small hosts (issue 19), through the relay protocol with the scripted agents: an idle
//! agent is stopped and its next turn resumes the conversation (Claude Code, Codex, an
//! ACP agent); a running turn or a pending approval is never stopped; at the cap the
//! least recently used idle agent makes room, and when every agent is busy the turn gets
//! `agents_busy`; below the free-memory floor idle agents are stopped, then `low_memory`;
//! an agent the system kills is explained (`agent_killed`) and resumable.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::node::{Node, T, example, named, texts};
use support::*;

/// The pids of the fake Claude Code processes started so far, in order.
fn claude_pids(n: &Node) -> Vec<u32> {
    n.starts()
        .iter()
        .filter_map(|s| s["start"].as_u64()?.try_into().ok())
        .collect()
}

fn start(n: &Node, sid: &str, prompt: &str) -> Vec<Value> {
    n.cmd(json!({"action": "session.start", "session_id": sid, "cwd": n.cwd(), "prompt": prompt}));
    n.until("session.result")
}

fn send(n: &Node, sid: &str, prompt: &str) -> Vec<Value> {
    n.cmd(json!({"action": "session.send", "session_id": sid, "prompt": prompt}));
    n.until("session.result")
}

/// The real id a session was re-keyed to (its `session.identified`).
fn real_id(events: &[Value]) -> String {
    named(events, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn an_idle_agent_is_stopped_and_its_next_turn_resumes_the_conversation() {
    let n = Node::start(&[("CODING_BRIDGE_IDLE_STOP", "1")]);
    let ev = start(&n, "b1", "say first words");
    let real = real_id(&ev);
    let first = claude_pids(&n)[0];
    assert!(
        wait_until(T, || !alive(first)),
        "the idle agent was not stopped: {}",
        n.daemon.stderr()
    );
    assert!(
        n.daemon.stderr().contains("idle for"),
        "{}",
        n.daemon.stderr()
    );
    // The session stays, idle, under its id.
    let list = n.ask(json!({"action": "sessions.list"}), "sessions.snapshot");
    assert_eq!(list["sessions"][0]["session_id"], real.as_str());
    assert_eq!(list["sessions"][0]["status"], "idle");
    // History still shows it.
    let history = n.ask(json!({"action": "history.list"}), "history.snapshot");
    assert!(
        history["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["session_id"] == real.as_str()),
        "{history:#}"
    );
    // The next turn resumes it: the same conversation, no re-key, no error, no notice.
    let ev = send(&n, &real, "recall");
    assert!(
        texts(&ev).contains("first prompt was: say first words"),
        "{ev:#?}"
    );
    for name in ["session.identified", "session.error", "session.notice"] {
        assert!(named(&ev, name).is_empty(), "{name}: {ev:#?}");
    }
    let starts = n.starts();
    assert_eq!(starts.len(), 2);
    let argv = starts[1]["argv"].to_string();
    assert!(argv.contains(&real), "resumed by id: {argv}");
}

#[test]
fn a_running_turn_or_a_pending_approval_is_never_stopped() {
    let n = Node::start(&[("CODING_BRIDGE_IDLE_STOP", "1")]);
    // A turn that runs for 3 s: every delta arrives, the agent lives through it.
    let ev = start(&n, "b1", "slow 60");
    let real = real_id(&ev);
    assert_eq!(named(&ev, "session.text_delta").len(), 60);
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    assert_eq!(claude_pids(&n).len(), 1, "one process for the whole turn");
    // An approval waits 2.5 s with an idle stop of 1 s: the agent is kept.
    n.cmd(json!({"action": "session.send", "session_id": real,
                 "prompt": "tool Bash {\"command\": \"ls\"}"}));
    let ev = n.until("permission.request");
    let rid = named(&ev, "permission.request")[0]["request_id"].clone();
    std::thread::sleep(Duration::from_millis(2500));
    let pid = claude_pids(&n)[0];
    assert!(alive(pid), "stopped while asking: {}", n.daemon.stderr());
    n.cmd(
        json!({"action": "permission.resolve", "request_id": rid, "decision": "allow",
                 "updated_input": {"command": "ls"}}),
    );
    let ev = n.until("session.result");
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    // Idle now: stopped.
    assert!(wait_until(T, || !alive(pid)), "{}", n.daemon.stderr());
}

#[test]
fn at_the_cap_the_least_recently_used_idle_agent_makes_room() {
    let n = Node::start(&[
        ("CODING_BRIDGE_MAX_AGENTS", "2"),
        ("CODING_BRIDGE_IDLE_STOP", "0"),
    ]);
    let a = real_id(&start(&n, "a", "say a"));
    let b = real_id(&start(&n, "b", "say b"));
    // `a` works again: `b` is now the least recently used.
    send(&n, &a, "say a again");
    let pids = claude_pids(&n);
    let (pa, pb) = (pids[0], pids[1]);
    let ev = start(&n, "c", "say c");
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    assert!(wait_until(T, || !alive(pb)), "b's agent was not stopped");
    assert!(alive(pa), "a's agent was used more recently");
    // `b` comes back (resumed), and `a`, now the least recently used, makes room.
    let ev = send(&n, &b, "recall");
    assert!(texts(&ev).contains("first prompt was: say b"), "{ev:#?}");
    assert!(wait_until(T, || !alive(pa)), "a's agent was not stopped");
    let live = claude_pids(&n).into_iter().filter(|p| alive(*p)).count();
    assert_eq!(live, 2, "never more than the cap");
}

#[test]
fn when_every_agent_is_busy_the_turn_is_refused_and_a_retry_works_later() {
    let n = Node::start(&[
        ("CODING_BRIDGE_MAX_AGENTS", "1"),
        ("CODING_BRIDGE_IDLE_STOP", "0"),
    ]);
    n.cmd(
        json!({"action": "session.start", "session_id": "a", "cwd": n.cwd(),
                 "prompt": "tool Bash {\"command\": \"ls\"}"}),
    );
    let ev = n.until("permission.request");
    let rid = named(&ev, "permission.request")[0]["request_id"].clone();
    n.cmd(
        json!({"action": "session.start", "session_id": "b", "cwd": n.cwd(),
                 "prompt": "say b", "trace_id": "tb"}),
    );
    let ev = n.until("session.error");
    let err = named(&ev, "session.error")[0];
    assert_eq!(err["code"], "agents_busy");
    assert_eq!(err["trace_id"], "tb");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("All 1 agents") && msg.contains("CODING_BRIDGE_MAX_AGENTS"),
        "{msg}"
    );
    assert_eq!(claude_pids(&n).len(), 1, "no second agent started");
    // `a` finishes; the browser's Retry of `b` (session.start again) runs now.
    n.cmd(
        json!({"action": "permission.resolve", "request_id": rid, "decision": "allow",
                 "updated_input": {"command": "ls"}}),
    );
    n.until("session.result");
    let ev = start(&n, "b", "say b");
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    assert!(texts(&ev).contains("b"), "{ev:#?}");
}

#[test]
fn below_the_memory_floor_idle_agents_are_stopped_then_the_start_is_refused() {
    let home = TempDir::new("lowmem");
    let meminfo = home.join("meminfo");
    let write = |avail_mib: u64| {
        std::fs::write(
            &meminfo,
            format!(
                "MemTotal: {} kB\nMemFree: 1000 kB\nMemAvailable: {} kB\n",
                4096 * 1024,
                avail_mib * 1024
            ),
        )
        .unwrap();
    };
    write(1000);
    let n = Node::start_in(
        home,
        &[
            ("CODING_BRIDGE_MEMINFO", meminfo.to_str().unwrap()),
            ("CODING_BRIDGE_CGROUP_DIR", ""),
            ("CODING_BRIDGE_MIN_FREE_MEMORY", "256M"),
            ("CODING_BRIDGE_IDLE_STOP", "0"),
        ],
    );
    start(&n, "a", "say a");
    let pa = claude_pids(&n)[0];
    // 100 MiB left: `a`'s idle agent is stopped for it, and still it is not enough.
    write(100);
    n.cmd(json!({"action": "session.start", "session_id": "b", "cwd": n.cwd(), "prompt": "say b"}));
    let ev = n.until("session.error");
    let err = named(&ev, "session.error")[0];
    assert_eq!(err["code"], "low_memory");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("100 MiB available") && msg.contains("256 MiB needed"),
        "{msg}"
    );
    assert!(
        wait_until(T, || !alive(pa)),
        "the idle agent was not stopped first"
    );
    assert_eq!(claude_pids(&n).len(), 1, "nothing started");
    // Memory again: the same start works.
    write(1000);
    let ev = start(&n, "b", "say b");
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
}

#[test]
fn a_cgroup_limit_counts_as_the_memory_there_is() {
    let home = TempDir::new("cgroup");
    let cg = home.join("cg");
    std::fs::create_dir_all(&cg).unwrap();
    std::fs::write(
        home.join("meminfo"),
        "MemTotal: 8000000 kB\nMemAvailable: 6000000 kB\n",
    )
    .unwrap();
    std::fs::write(cg.join("memory.max"), format!("{}\n", 512u64 << 20)).unwrap();
    std::fs::write(cg.join("memory.current"), format!("{}\n", 400u64 << 20)).unwrap();
    let meminfo = home.join("meminfo");
    let n = Node::start_in(
        home,
        &[
            ("CODING_BRIDGE_MEMINFO", meminfo.to_str().unwrap()),
            ("CODING_BRIDGE_CGROUP_DIR", cg.to_str().unwrap()),
        ],
    );
    n.cmd(json!({"action": "session.start", "session_id": "a", "cwd": n.cwd(), "prompt": "say a"}));
    let ev = n.until("session.error");
    let msg = named(&ev, "session.error")[0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("112 MiB available") && msg.contains("cgroup limit 512 MiB"),
        "{msg}"
    );
}

#[test]
fn an_agent_the_system_kills_is_explained_and_the_conversation_goes_on() {
    let n = Node::start(&[]);
    let real = real_id(&start(&n, "b1", "say remember me"));
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "oomkill"}));
    let ev = n.until("session.error");
    let err = named(&ev, "session.error")[0];
    assert_eq!(err["code"], "agent_killed");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("probably for lack of memory") && msg.contains("MiB available"),
        "{msg}"
    );
    // It had shown output, so it is not retried silently (the retry pause is 0.5 s);
    // and the conversation is resumable.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(claude_pids(&n).len(), 1, "no retry of a killed turn");
    let ev = send(&n, &real, "recall");
    assert!(
        texts(&ev).contains("first prompt was: say remember me"),
        "{ev:#?}"
    );
}

#[test]
fn codex_and_an_acp_agent_are_stopped_and_resumed_too() {
    // Codex: the thread is resumed by id in a new app-server.
    let codex = example("fake_codex");
    let home = TempDir::new("codex-idle");
    let codex_log = home.join("codex.log");
    let n = Node::start_in(
        home,
        &[
            ("CODING_BRIDGE_CODEX_PATH", codex.to_str().unwrap()),
            ("CODING_BRIDGE_IDLE_STOP", "1"),
            ("FAKE_CODEX_LOG", codex_log.to_str().unwrap()),
        ],
    );
    n.cmd(
        json!({"action": "session.start", "session_id": "c1", "provider": "codex",
                 "cwd": n.cwd(), "prompt": "hello"}),
    );
    let ev = n.until("session.result");
    let thread = real_id(&ev);
    assert!(
        wait_until(T, || n.daemon.stderr().contains("idle for")),
        "{}",
        n.daemon.stderr()
    );
    let ev = send(&n, &thread, "again");
    assert!(texts(&ev).contains("echo: again"), "{ev:#?}");
    assert!(
        named(&ev, "session.identified").is_empty(),
        "no re-key: {ev:#?}"
    );
    assert!(named(&ev, "session.error").is_empty(), "{ev:#?}");
    let log = n.daemon.stderr();
    assert_eq!(log.matches("started codex").count(), 2, "{log}");
    let resumes: Vec<Value> = std::fs::read_to_string(&codex_log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["method"] == "thread/resume")
        .collect();
    assert_eq!(resumes.len(), 1, "one resume, by the thread's id");
    assert_eq!(resumes[0]["params"]["threadId"], thread.as_str());
    drop(n);

    // An ACP agent that can load sessions: `session/load` of the same id.
    let home = TempDir::new("acp-idle");
    std::fs::create_dir_all(home.join("cfg")).unwrap();
    std::fs::write(
        home.join("cfg/agents.json"),
        json!({"agents": [{"name": "fakeacp", "label": "Fake ACP agent",
                           "command": example("fake_acp"),
                           "env": {"FAKE_ACP_LOG": home.join("acp.log"), "FAKE_ACP_LOAD": "1"}}]})
        .to_string(),
    )
    .unwrap();
    let n = Node::start_in(home, &[("CODING_BRIDGE_IDLE_STOP", "1")]);
    n.cmd(
        json!({"action": "session.start", "session_id": "f1", "provider": "fakeacp",
                 "cwd": n.cwd(), "prompt": "hello"}),
    );
    let ev = n.until("session.result");
    let sid = real_id(&ev);
    assert!(
        wait_until(T, || n.daemon.stderr().contains("idle for")),
        "{}",
        n.daemon.stderr()
    );
    let ev = send(&n, &sid, "again");
    assert!(texts(&ev).contains("echo: again"), "{ev:#?}");
    assert!(
        named(&ev, "session.identified").is_empty(),
        "no re-key: {ev:#?}"
    );
    let acp_log = std::fs::read_to_string(n.home.join("acp.log")).unwrap();
    assert!(
        acp_log.contains("session/load") && acp_log.contains(&sid),
        "{acp_log}"
    );
}

#[test]
fn status_shows_the_live_agents_the_limits_and_the_memory() {
    let n = Node::start(&[
        ("CODING_BRIDGE_MAX_AGENTS", "3"),
        ("CODING_BRIDGE_IDLE_STOP", "0"),
    ]);
    let real = real_id(&start(&n, "b1", "say hi"));
    let pid = claude_pids(&n)[0];
    let status = || {
        let o = run(agent(&n.home).args(["status", "--json"]));
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()
    };
    // Written by the saver once the agent is idle.
    assert!(
        wait_until(T, || status()["agents"][0]["state"] == "idle"),
        "{:#}",
        status()
    );
    let s = status();
    let a = &s["agents"][0];
    assert_eq!(a["provider"], "claude");
    assert_eq!(a["session"], real.as_str());
    assert!(a["rss_bytes"].as_u64().is_some_and(|r| r > 0), "{a}");
    assert!(a["idle_s"].is_u64(), "{a}");
    // The agent the daemon runs is the one `status` reads (under its guard).
    assert!(a["pid"].as_u64().is_some(), "{a} (agent pid {pid})");
    assert_eq!(s["limits"]["max_agents"], 3);
    assert!(s["limits"]["idle_stop_s"].is_null(), "0: never");
    assert!(
        s["memory"]["available_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0)
    );
    // And for people.
    let o = run(agent(&n.home).arg("status"));
    let text = stdout(&o);
    assert!(text.contains("Agents:      1 live"), "{text}");
    assert!(text.contains("3 agents at most"), "{text}");
    // A stopped agent leaves the list.
    n.cmd(json!({"action": "session.close", "session_id": real}));
    assert!(
        wait_until(T, || status()["agents"]
            .as_array()
            .is_some_and(Vec::is_empty)),
        "{:#}",
        status()
    );
}

#[test]
fn an_idle_stop_takes_the_agents_whole_process_tree() {
    // What the agent started (an MCP server, a tool's shell) goes with it.
    let n = Node::start(&[("CODING_BRIDGE_IDLE_STOP", "1")]);
    start(&n, "b1", "grandchild");
    let grandchild = n
        .log()
        .iter()
        .find_map(|l| l["grandchild"].as_u64()?.try_into().ok())
        .expect("the fake CLI started a grandchild");
    assert!(alive(grandchild));
    assert!(
        wait_until(T, || !alive(grandchild)),
        "grandchild {grandchild} outlived the idle stop: {}",
        n.daemon.stderr()
    );
    assert!(
        n.daemon.stderr().contains("idle for"),
        "{}",
        n.daemon.stderr()
    );
}
