//! As PID 1 (a container's init) the daemon reaps processes orphaned to it. Run in a new
//! PID namespace with `unshare --pid --fork`; skipped, saying why, where that is not
//! permitted.

mod support;

use std::time::Duration;

use serde_json::json;
use support::node::{fake_claude, wrapped};
use support::relay::FakeRelay;
use support::*;

use coding_bridge_agent::testing::processes;

/// Zombie children of `pid`.
fn zombie_children(pid: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|p| p.ppid == pid && p.is_zombie())
        .map(|p| p.pid)
        .collect()
}

fn children_of(pid: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|p| p.ppid == pid)
        .map(|p| p.pid)
        .collect()
}

#[test]
fn as_pid_1_orphans_are_reaped() {
    let probe = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "SKIPPED pid-1 test: unshare --pid is not permitted here ({})",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("SKIPPED pid-1 test: unshare is not available ({e})");
            return;
        }
    }
    let fake = fake_claude();
    let relay = FakeRelay::start();
    relay.set_auto_ack(true);
    let home = TempDir::new("pid1");
    // Run the daemon itself as PID 1 of a new PID namespace, with the harness's
    // clean environment.
    let mut c2 = wrapped(
        &["unshare", "--pid", "--fork", "--mount-proc"],
        &agent(&home),
    );
    c2.current_dir(home.path())
        .env("CODING_BRIDGE_URL", relay.url())
        .env("CODING_BRIDGE_NODE_TOKEN", "tok-pid1")
        .env("CODING_BRIDGE_CLAUDE_PATH", &fake)
        .args(["-v", "run"]);
    let mut d = Daemon::spawn(c2, &home);
    relay
        .recv_type("node.heartbeat", Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no link: {}", d.stderr()));
    assert!(d.stderr().contains("running as PID 1"), "{}", d.stderr());
    // The daemon is unshare's only child.
    let daemon_pid = *children_of(d.pid()).first().expect("daemon process");

    relay.command("o1", json!({"action": "session.start", "session_id": "orph", "prompt": "orphan", "cwd": home.path()}));
    relay
        .recv_event("session.result", Duration::from_secs(15))
        .expect("result");
    // The orphaned `sleep 0.3` ends soon; as PID 1 the daemon must reap it.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        wait_until(Duration::from_secs(3), || zombie_children(daemon_pid)
            .is_empty()),
        "zombies left under PID 1: {:?}",
        zombie_children(daemon_pid)
    );
    // SIGTERM to the daemon (unshare does not forward it): a clean exit as PID 1 too.
    unsafe { libc::kill(daemon_pid as i32, libc::SIGTERM) };
    assert_eq!(
        d.wait_exit(Duration::from_secs(8)),
        Some(0),
        "{}",
        d.stderr()
    );
}
