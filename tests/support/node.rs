//! A running daemon wired to a fake relay and the scripted fake Claude CLI
//! (`examples/fake_claude.rs`), driven the way a browser drives it. Shared by the
//! session and service tests.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::relay::FakeRelay;
use super::{Daemon, TempDir, agent, bin};

/// How long a test waits for any one event.
pub const T: Duration = Duration::from_secs(30);

/// The fake CLI example.
pub fn fake_claude() -> PathBuf {
    example("fake_claude")
}

/// A scripted fake from `examples/` (`fake_claude`, `fake_codex`, `fake_acp`). Plain
/// `cargo test` builds them; a filtered run (`--test sessions`) does not, so a missing or
/// stale build is reported instead of used.
pub fn example(name: &str) -> PathBuf {
    let p = std::path::Path::new(bin())
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.rs"));
    let built = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
    let changed = std::fs::metadata(&src).and_then(|m| m.modified()).ok();
    assert!(
        built.is_some() && built >= changed,
        "the fake {name} is missing or stale: run `cargo build --example {name}` (plain `cargo test` builds it)"
    );
    p
}

/// Run the daemon command `base` under `wrapper` (e.g. `unshare --pid --fork`), keeping
/// the harness's clean environment.
pub fn wrapped(wrapper: &[&str], base: &Command) -> Command {
    let mut c = Command::new(wrapper[0]);
    c.args(&wrapper[1..]).arg(base.get_program()).env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    if let Some(dir) = base.get_current_dir() {
        c.current_dir(dir);
    }
    c
}

/// Event payloads from `relay` up to and including the first `event` (panics with what
/// arrived, and `context`, if it does not come).
pub fn events_until(relay: &FakeRelay, event: &str, context: &dyn Fn() -> String) -> Vec<Value> {
    events_within(T, relay, event, context)
}

/// [`events_until`], waiting up to `limit` for the event.
pub fn events_within(
    limit: Duration,
    relay: &FakeRelay,
    event: &str,
    context: &dyn Fn() -> String,
) -> Vec<Value> {
    let mut got = Vec::new();
    let found = relay.recv_until(limit, |v| {
        if v["type"] == "node.to_browser" {
            got.push(v["payload"].clone());
            v["payload"]["event"] == event
        } else {
            false
        }
    });
    assert!(found.is_some(), "no {event}; got {got:#?}\n{}", context());
    got
}

/// The events named `name`.
pub fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

/// The text of every `session.text` event, joined.
pub fn texts(events: &[Value]) -> String {
    named(events, "session.text")
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect::<Vec<_>>()
        .join("")
}

pub struct Node {
    pub relay: FakeRelay,
    pub home: TempDir,
    pub daemon: Daemon,
}

impl Node {
    pub fn start(env: &[(&str, &str)]) -> Node {
        Node::start_in(TempDir::new("node"), env)
    }

    pub fn start_in(home: TempDir, env: &[(&str, &str)]) -> Node {
        let c = agent(&home);
        Node::start_with(home, c, env)
    }

    /// Like [`Node::start_in`], from a prepared command (e.g. another working dir).
    pub fn start_with(home: TempDir, mut c: Command, env: &[(&str, &str)]) -> Node {
        let relay = FakeRelay::start();
        relay.set_auto_ack(true);
        c.env("CODING_BRIDGE_URL", relay.url())
            .env("CODING_BRIDGE_NODE_TOKEN", "tok-node")
            .env("CODING_BRIDGE_CLAUDE_PATH", fake_claude())
            .env("FAKE_CLAUDE_LOG", home.join("fake.log"))
            .env("FAKE_CLAUDE_STATE", home.path())
            .args(["-v", "run"]);
        for (k, v) in env {
            c.env(k, v);
        }
        let daemon = Daemon::spawn(c, &home);
        relay
            .recv_type("node.heartbeat", T)
            .unwrap_or_else(|| panic!("no link: {}", daemon.stderr()));
        Node {
            relay,
            home,
            daemon,
        }
    }

    /// Stop the daemon and the relay; the home stays for a restart.
    pub fn stop(self) -> TempDir {
        let Node {
            relay,
            home,
            daemon,
        } = self;
        drop(daemon);
        drop(relay);
        home
    }

    /// Send a browser command.
    pub fn cmd(&self, payload: Value) {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!("cmd-{}", N.fetch_add(1, Ordering::Relaxed));
        assert!(self.relay.command(&id, payload));
    }

    /// Event payloads up to and including the first `event`.
    pub fn until(&self, event: &str) -> Vec<Value> {
        events_until(&self.relay, event, &|| {
            format!("stderr: {}", self.daemon.stderr())
        })
    }

    /// Send a command and return the reply named `event`.
    pub fn ask(&self, payload: Value, event: &str) -> Value {
        self.cmd(payload);
        self.until(event).pop().unwrap()
    }

    /// The fake CLI's log: one object per start and per stdin line.
    pub fn log(&self) -> Vec<Value> {
        std::fs::read_to_string(self.home.join("fake.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// What the fake CLI got on stdin: control requests of `kind`, or turns for "user".
    pub fn stdin_of(&self, kind: &str) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter_map(|l| l.get("stdin").cloned())
            .filter(|s| {
                if kind == "user" {
                    s["type"] == "user"
                } else {
                    s["request"]["subtype"] == kind || s["type"] == kind
                }
            })
            .collect()
    }

    /// The fake CLI's starts (argv, cwd, entrypoint).
    pub fn starts(&self) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter(|l| l.get("start").is_some())
            .collect()
    }

    pub fn cwd(&self) -> String {
        self.home.path().to_str().unwrap().to_string()
    }
}
