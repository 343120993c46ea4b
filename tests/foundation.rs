//! The foundation: CLI, configuration, pairing, credentials, lock, logging (issue 2).
//! Every test drives the real binary against the loopback fake relay.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::relay::{FakeRelay, Reply};
use support::*;

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn mode(p: &std::path::Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn write_creds(home: &TempDir, token: &str) -> std::path::PathBuf {
    let dir = home.join("cfg");
    fs::create_dir_all(&dir).unwrap();
    let p = dir.join("credentials.json");
    fs::write(
        &p,
        json!({"node_token": token, "node_name": "old", "bridge_url": "http://old"}).to_string(),
    )
    .unwrap();
    p
}

#[test]
fn version_and_help() {
    let home = TempDir::new("help");
    let o = run(agent(&home).arg("--version"));
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o).trim(),
        format!("coding-bridge-agent {}", env!("CARGO_PKG_VERSION"))
    );
    let o = run(agent(&home).arg("--help"));
    assert_eq!(o.status.code(), Some(0));
    for word in [
        "up",
        "pair",
        "run",
        "status",
        "logout",
        "--bridge-url",
        "Exit codes",
    ] {
        assert!(stdout(&o).contains(word), "{word} missing from --help");
    }
    for (cmd, flag) in [
        ("up", "--permission-timeout"),
        ("run", "--claude-path"),
        ("pair", "--timeout"),
        ("status", "--json"),
        ("logout", "credentials"),
    ] {
        let o = run(agent(&home).args([cmd, "--help"]));
        assert_eq!(o.status.code(), Some(0));
        assert!(stdout(&o).contains(flag), "{cmd} --help lacks {flag}");
        let o = run(agent(&home).args(["help", cmd]));
        assert!(stdout(&o).contains(flag));
    }
}

#[test]
fn usage_errors_exit_2() {
    let home = TempDir::new("usage");
    for args in [
        &["--bogus"][..],
        &["frobnicate"],
        &["status", "--model", "x"],
        &["run", "--json"],
        &["pair", "--timeout"],
    ] {
        let o = run(agent(&home).args(args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("error:"), "{args:?}");
    }
}

#[test]
fn bad_config_exits_2_naming_the_source_before_touching_anything() {
    let relay = FakeRelay::start();
    let home = TempDir::new("badcfg");
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["run"],
            vec![("CODING_BRIDGE_PERMISSION_TIMEOUT", "abc")],
            "CODING_BRIDGE_PERMISSION_TIMEOUT",
        ),
        (
            vec!["run", "--permission-timeout", "soon"],
            vec![],
            "--permission-timeout",
        ),
        (
            vec!["pair"],
            vec![("CODING_BRIDGE_URL", "ftp://relay")],
            "CODING_BRIDGE_URL",
        ),
        (
            vec!["pair", "--bridge-url", "relay.example"],
            vec![],
            "--bridge-url",
        ),
        (
            vec!["up"],
            vec![("CODING_BRIDGE_HEARTBEAT_INTERVAL", "often")],
            "CODING_BRIDGE_HEARTBEAT_INTERVAL",
        ),
        (
            vec!["up"],
            vec![("CODING_BRIDGE_OUTBOX_MAX", "-5")],
            "CODING_BRIDGE_OUTBOX_MAX",
        ),
        (
            vec!["pair"],
            vec![("CODING_BRIDGE_LOG_LEVEL", "shouty")],
            "CODING_BRIDGE_LOG_LEVEL",
        ),
        (vec!["pair", "--timeout", "x"], vec![], "--timeout"),
        (
            vec!["run", "--cwd", "/definitely/not/here"],
            vec![],
            "--cwd",
        ),
    ];
    for (args, env, source) in cases {
        let mut c = agent(&home);
        c.env("CODING_BRIDGE_URL", relay.url());
        c.env("CODING_BRIDGE_NODE_TOKEN", "tok-cfg");
        c.args(&args);
        for (k, v) in &env {
            c.env(k, v);
        }
        let o = run(&mut c);
        assert_eq!(o.status.code(), Some(2), "{args:?} {env:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(source),
            "{args:?}: {} lacks {source}",
            stderr(&o)
        );
        assert!(
            !home.join("cfg").exists(),
            "{args:?} touched the config dir"
        );
    }
    assert!(
        relay.requests().is_empty(),
        "a bad config reached the network"
    );
    assert_eq!(relay.handshakes().len(), 0);
}

#[test]
fn flags_override_environment() {
    let home = TempDir::new("prec");
    let status = |c: &mut std::process::Command| -> Value {
        let o = run(c);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        serde_json::from_str(stdout(&o).trim()).unwrap()
    };
    let mut c = agent(&home);
    c.env("CODING_BRIDGE_URL", "https://env.example/")
        .args(["status", "--json"]);
    let v = status(&mut c);
    assert_eq!(v["bridge_url"], "https://env.example");
    assert_eq!(v["node_name"], "test-node");

    let mut c = agent(&home);
    c.env("CODING_BRIDGE_URL", "https://env.example")
        .env("CODING_BRIDGE_CONFIG_DIR", home.join("env-cfg"))
        .args([
            "--bridge-url",
            "http://flag.example:9",
            "--name",
            "flag-node",
        ])
        .args(["status", "--json", "--config-dir"])
        .arg(home.join("flag-cfg"));
    let v = status(&mut c);
    assert_eq!(v["bridge_url"], "http://flag.example:9");
    assert_eq!(v["node_name"], "flag-node");
    assert_eq!(v["config_dir"], home.join("flag-cfg").to_str().unwrap());

    // The default config dir is ~/.ace-bridge.
    let mut c = agent(&home);
    c.env_remove("CODING_BRIDGE_CONFIG_DIR")
        .args(["status", "--json"]);
    let v = status(&mut c);
    assert_eq!(v["config_dir"], home.join(".ace-bridge").to_str().unwrap());
}

#[test]
fn pair_json_success_writes_private_credentials() {
    let relay = FakeRelay::start();
    relay.script_start([Reply::code("XY-42", 600)]);
    relay.script_poll([
        Reply::pending(),
        Reply::pending(),
        Reply::ready("tok-SECRET-paired-1"),
    ]);
    let home = TempDir::new("pairok");
    let mut c = agent(&home);
    c.env("CODING_BRIDGE_URL", relay.url())
        .args(["-vv", "pair", "--json"]);
    // Under umask 000 a file created without an explicit mode would be world-readable.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let o = run(&mut c);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines = json_lines(&stdout(&o));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["event"], "pair_code");
    assert_eq!(lines[0]["pair_code"], "XY-42");
    assert_eq!(lines[0]["expires_in"], 600);
    assert_eq!(
        lines[0]["claim_url"],
        "https://studio.acedata.cloud/coding-bridge?code=XY-42"
    );
    assert_eq!(lines[1]["event"], "paired");
    assert_eq!(lines[1]["config_dir"], home.join("cfg").to_str().unwrap());

    let creds = home.join("cfg/credentials.json");
    assert_eq!(mode(&home.join("cfg")), 0o700);
    assert_eq!(mode(&creds), 0o600);
    let stored: Value = serde_json::from_str(&fs::read_to_string(&creds).unwrap()).unwrap();
    assert_eq!(stored["node_token"], "tok-SECRET-paired-1");
    assert_eq!(stored["node_name"], "test-node");
    assert_eq!(stored["bridge_url"], relay.url());

    let reqs = relay.requests();
    assert_eq!(reqs[0].path, "/pair/start");
    let body: Value = serde_json::from_str(&reqs[0].body).unwrap();
    assert_eq!(body, json!({"node_name": "test-node"}));
    assert_eq!(reqs.len(), 4);
    for r in &reqs[1..] {
        assert_eq!(r.path, "/pair/poll");
        assert_eq!(
            serde_json::from_str::<Value>(&r.body).unwrap(),
            json!({"pair_code": "XY-42"})
        );
    }

    // The token is in no log line: not on stderr (trace level) and not in the log file.
    let log = fs::read_to_string(home.join("cfg/logs/agent.log")).unwrap();
    assert!(log.contains("paired"), "log file: {log}");
    assert_eq!(mode(&home.join("cfg/logs/agent.log")), 0o600);
    assert!(!stderr(&o).contains("tok-SECRET"));
    assert!(!log.contains("tok-SECRET"));
}

struct FailCase {
    name: &'static str,
    start: Vec<Reply>,
    poll: Vec<Reply>,
    poll_default: Option<Reply>,
    extra: Vec<&'static str>,
    exit: i32,
    reason: &'static str,
}

#[test]
fn pairing_failures_have_reasons_exit_codes_and_keep_old_credentials() {
    let garbage = || Reply::Raw(200, "<html>gateway</html>".into());
    let cases = vec![
        FailCase {
            name: "expired",
            start: vec![],
            poll: vec![
                Reply::pending(),
                Reply::Json(200, json!({"status": "expired"})),
            ],
            poll_default: None,
            extra: vec![],
            exit: 1,
            reason: "expired",
        },
        FailCase {
            name: "consumed",
            start: vec![],
            poll: vec![Reply::Json(200, json!({"status": "consumed"}))],
            poll_default: None,
            extra: vec![],
            exit: 1,
            reason: "consumed",
        },
        FailCase {
            name: "poll 404",
            start: vec![],
            poll: vec![Reply::Json(404, json!({"detail": "gone"}))],
            poll_default: None,
            extra: vec![],
            exit: 1,
            reason: "expired",
        },
        FailCase {
            name: "start 403",
            start: vec![Reply::Json(403, json!({}))],
            poll: vec![],
            poll_default: None,
            extra: vec![],
            exit: 1,
            reason: "refused",
        },
        FailCase {
            name: "start 500",
            start: vec![Reply::Raw(500, "oops".into())],
            poll: vec![],
            poll_default: None,
            extra: vec![],
            exit: 3,
            reason: "http",
        },
        FailCase {
            name: "start garbage",
            start: vec![garbage()],
            poll: vec![],
            poll_default: None,
            extra: vec![],
            exit: 3,
            reason: "bad_response",
        },
        FailCase {
            name: "start bad code",
            start: vec![Reply::Json(
                200,
                json!({"pair_code": "\u{1b}[2J", "expires_in": 60}),
            )],
            poll: vec![],
            poll_default: None,
            extra: vec![],
            exit: 3,
            reason: "bad_response",
        },
        FailCase {
            name: "start hang-up",
            start: vec![Reply::HangUp],
            poll: vec![],
            poll_default: None,
            extra: vec![],
            exit: 3,
            reason: "network",
        },
        FailCase {
            name: "poll 500s",
            start: vec![],
            poll: vec![],
            poll_default: Some(Reply::Raw(502, "bad gateway".into())),
            extra: vec![],
            exit: 3,
            reason: "http",
        },
        FailCase {
            name: "poll garbage",
            start: vec![],
            poll: vec![],
            poll_default: Some(garbage()),
            extra: vec![],
            exit: 3,
            reason: "bad_response",
        },
        FailCase {
            name: "timeout",
            start: vec![],
            poll: vec![],
            poll_default: None,
            extra: vec!["--timeout", "0.4"],
            exit: 1,
            reason: "timeout",
        },
        FailCase {
            name: "code expiry",
            start: vec![Reply::code("QQ11", 1)],
            poll: vec![],
            poll_default: None,
            extra: vec![],
            exit: 1,
            reason: "expired",
        },
    ];
    for case in cases {
        let relay = FakeRelay::start();
        relay.script_start(case.start.clone());
        relay.script_poll(case.poll.clone());
        if let Some(d) = &case.poll_default {
            relay.set_poll_default(d.clone());
        }
        let home = TempDir::new("pairfail");
        let creds = write_creds(&home, "tok-OLD-kept");
        let before = fs::read(&creds).unwrap();
        let mut c = agent(&home);
        c.env("CODING_BRIDGE_URL", relay.url())
            .args(["pair", "--json"])
            .args(&case.extra);
        let o = run(&mut c);
        assert_eq!(
            o.status.code(),
            Some(case.exit),
            "{}: {}",
            case.name,
            stderr(&o)
        );
        let lines = json_lines(&stdout(&o));
        let last = lines
            .last()
            .unwrap_or_else(|| panic!("{}: no output", case.name));
        assert_eq!(last["event"], "error", "{}", case.name);
        assert_eq!(last["reason"], case.reason, "{}: {last}", case.name);
        assert!(last["message"].as_str().unwrap().len() > 10);
        assert!(stderr(&o).contains("pairing failed"), "{}", case.name);
        assert!(!stderr(&o).contains("panicked"), "{}", case.name);
        assert_eq!(
            fs::read(&creds).unwrap(),
            before,
            "{}: credentials changed",
            case.name
        );
    }
}

#[test]
fn pairing_with_no_relay_listening_exits_3() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let home = TempDir::new("noreach");
    let o = run(agent(&home)
        .env("CODING_BRIDGE_URL", format!("http://127.0.0.1:{port}"))
        .args(["pair", "--json"]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let lines = json_lines(&stdout(&o));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["reason"], "network");
    assert!(!home.join("cfg/credentials.json").exists());
}

/// Turn the terminal drawing back into pixels and decode it.
fn decode_terminal_qr(text: &str) -> Option<String> {
    let rows: Vec<Vec<char>> = text
        .lines()
        .filter(|l| !l.is_empty() && l.chars().all(|c| " █▀▄".contains(c)))
        .map(|l| l.chars().collect())
        .collect();
    if rows.is_empty() {
        return None;
    }
    let scale = 4;
    let w = rows[0].len() * scale;
    let h = rows.len() * 2 * scale;
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let c = rows[y / (2 * scale)].get(x / scale).copied().unwrap_or(' ');
        let top = (y / scale) % 2 == 0;
        let light = match c {
            '█' => true,
            '▀' => top,
            '▄' => !top,
            _ => false,
        };
        if light { 255 } else { 0 }
    });
    let grids = img.detect_grids();
    grids.first()?.decode().ok().map(|(_, content)| content)
}

#[test]
fn human_pairing_output_with_and_without_qr() {
    let relay = FakeRelay::start();
    relay.set_poll_default(Reply::ready("tok-human"));
    let home = TempDir::new("human");
    let o = run(agent(&home)
        .env("CODING_BRIDGE_URL", relay.url())
        .args(["pair", "--qr"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let link = "https://studio.acedata.cloud/coding-bridge?code=ABC123";
    assert!(out.contains("ABC123"));
    assert!(
        out.contains("https://studio.acedata.cloud/coding-bridge\n"),
        "{out}"
    );
    assert!(out.contains(link));
    assert!(out.contains("Paired."));
    assert_eq!(
        decode_terminal_qr(&out).as_deref(),
        Some(link),
        "QR did not decode to the link:\n{out}"
    );

    // stdout is not a terminal here, so no QR by default, and none with --no-qr.
    for extra in [&[][..], &["--no-qr"]] {
        let home = TempDir::new("human");
        let o = run(agent(&home)
            .env("CODING_BRIDGE_URL", relay.url())
            .arg("pair")
            .args(extra));
        assert_eq!(o.status.code(), Some(0));
        assert!(!stdout(&o).contains('█'), "{extra:?} drew a QR");
        assert!(stdout(&o).contains(link));
    }

    // A custom claim URL template is honoured.
    let home = TempDir::new("human");
    let o = run(agent(&home)
        .env("CODING_BRIDGE_URL", relay.url())
        .env(
            "CODING_BRIDGE_CLAIM_URL",
            "https://claim.example/p/{code}/go",
        )
        .args(["pair", "--json"]));
    assert_eq!(
        json_lines(&stdout(&o))[0]["claim_url"],
        "https://claim.example/p/ABC123/go"
    );
}

#[test]
fn status_in_both_forms() {
    let home = TempDir::new("status");
    let o = run(agent(&home).arg("status"));
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for line in [
        "Bridge URL:  https://coding-bridge.acedata.cloud",
        "Node name:   test-node",
        "Paired:      no",
        "Daemon:      not running",
    ] {
        assert!(out.contains(line), "{line:?} not in {out}");
    }
    assert!(out.contains(&format!("Config dir:  {}", home.join("cfg").display())));
    assert!(
        !home.join("cfg").exists(),
        "status must not create the config dir"
    );

    write_creds(&home, "tok-status");
    let o = run(agent(&home).args(["status", "--json"]));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["paired"], true);
    assert_eq!(v["credentials_source"], "file");
    assert_eq!(v["daemon_running"], false);
    assert_eq!(v["daemon_pid"], Value::Null);
    assert!(!stdout(&o).contains("tok-status"));
    let o = run(agent(&home).arg("status"));
    assert!(stdout(&o).contains("Paired:      yes"));

    // A token from the environment counts as paired and is never written to disk.
    let home = TempDir::new("status-env");
    let o = run(agent(&home)
        .env("CODING_BRIDGE_NODE_TOKEN", "tok-env-only")
        .args(["status", "--json"]));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["paired"], true);
    assert_eq!(v["credentials_source"], "env");
    assert!(!home.join("cfg/credentials.json").exists());
}

#[test]
fn corrupt_credentials_read_as_not_paired_with_a_warning() {
    let home = TempDir::new("corrupt");
    fs::create_dir_all(home.join("cfg")).unwrap();
    let path = home.join("cfg/credentials.json");
    for garbage in [
        &b"{\"node_token\": "[..],
        b"\x00\xff\xfe",
        b"[]",
        b"{\"node_token\": \"\"}",
    ] {
        fs::write(&path, garbage).unwrap();
        let o = run(agent(&home).args(["status", "--json"]));
        assert_eq!(o.status.code(), Some(0));
        let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        assert_eq!(v["paired"], false);
        assert!(
            v["credentials_problem"]
                .as_str()
                .unwrap()
                .contains(path.to_str().unwrap())
        );

        let o = run(agent(&home).arg("run"));
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("Not paired. Run `coding-bridge-agent pair` first."));
        assert!(
            stderr(&o).contains(path.to_str().unwrap()),
            "warning should name the file: {}",
            stderr(&o)
        );
    }
}

#[test]
fn run_without_credentials_exits_1() {
    let home = TempDir::new("unpaired");
    let o = run(agent(&home).arg("run"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Not paired. Run `coding-bridge-agent pair` first."));
}

#[test]
fn logout_removes_credentials_and_says_so() {
    let home = TempDir::new("logout");
    let p = write_creds(&home, "tok-logout");
    let o = run(agent(&home).arg("logout"));
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Removed"), "{}", stdout(&o));
    assert!(!p.exists());
    let o = run(agent(&home).arg("logout"));
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("no stored credentials"),
        "{}",
        stdout(&o)
    );
    write_creds(&home, "tok-logout");
    let o = run(agent(&home).args(["logout", "--json"]));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["removed"], true);
    let o = run(agent(&home).args(["logout", "--json"]));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["removed"], false);
}

fn status_json(home: &TempDir) -> Value {
    let o = run(agent(home).args(["status", "--json"]));
    serde_json::from_str(stdout(&o).trim()).unwrap()
}

#[test]
fn one_daemon_per_config_dir() {
    let relay = FakeRelay::start();
    let home = TempDir::new("lock");
    write_creds(&home, "tok-lock");
    let mut first = Daemon::spawn(
        {
            let mut c = agent(&home);
            c.env("CODING_BRIDGE_URL", relay.url()).arg("run");
            c
        },
        &home,
    );
    assert!(
        wait_until(
            Duration::from_secs(10),
            || status_json(&home)["daemon_running"] == true
        ),
        "daemon never took the lock: {}",
        first.stderr()
    );
    let v = status_json(&home);
    assert_eq!(v["daemon_pid"], first.pid());
    let o = run(agent(&home)
        .env("CODING_BRIDGE_URL", relay.url())
        .arg("run"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already running"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("pid {}", first.pid())),
        "{}",
        stderr(&o)
    );
    let o = run(agent(&home).arg("status"));
    assert!(stdout(&o).contains(&format!("Daemon:      running (pid {})", first.pid())));

    // The lock goes with the process, even on SIGKILL.
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(5)).expect("killed");
    assert_eq!(status_json(&home)["daemon_running"], false);
    let mut second = Daemon::spawn(
        {
            let mut c = agent(&home);
            c.env("CODING_BRIDGE_URL", relay.url()).arg("run");
            c
        },
        &home,
    );
    assert!(wait_until(
        Duration::from_secs(10),
        || status_json(&home)["daemon_pid"] == second.pid()
    ));
    second.signal(libc::SIGTERM);
    assert_eq!(
        second.wait_exit(Duration::from_secs(5)),
        Some(0),
        "{}",
        second.stderr()
    );
}

#[test]
fn up_pairs_when_needed_then_runs() {
    let relay = FakeRelay::start();
    relay.script_poll([Reply::pending(), Reply::ready("tok-UP-secret")]);
    let home = TempDir::new("up");
    let out_path = home.join("up.stdout");
    let mut c = agent(&home);
    c.env("CODING_BRIDGE_URL", relay.url())
        .args(["-vv", "up", "--json"]);
    c.stdout(fs::File::create(&out_path).unwrap());
    let child = c
        .stderr(fs::File::create(home.join("up.stderr")).unwrap())
        .spawn()
        .unwrap();
    let mut d = Daemon {
        child,
        stderr_path: home.join("up.stderr"),
    };
    assert!(
        wait_until(Duration::from_secs(10), || fs::read_to_string(&out_path)
            .unwrap_or_default()
            .contains("\"paired\"")),
        "{}",
        d.stderr()
    );
    assert_eq!(status_json(&home)["daemon_running"], true);
    let lines = json_lines(&fs::read_to_string(&out_path).unwrap());
    assert_eq!(
        lines
            .iter()
            .map(|l| l["event"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["pair_code", "paired"]
    );
    assert_eq!(status_json(&home)["paired"], true);
    d.signal(libc::SIGINT);
    assert_eq!(d.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(!d.stderr().contains("tok-UP-secret"));
    let log = fs::read_to_string(home.join("cfg/logs/agent.log")).unwrap();
    assert!(!log.contains("tok-UP-secret"));

    // With credentials, `up` does not pair again.
    let before = relay.requests().len();
    let mut d = Daemon::spawn(
        {
            let mut c = agent(&home);
            c.env("CODING_BRIDGE_URL", relay.url()).arg("up");
            c
        },
        &home,
    );
    assert!(wait_until(
        Duration::from_secs(10),
        || status_json(&home)["daemon_running"] == true
    ));
    assert_eq!(relay.requests().len(), before);
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(5)), Some(0));
}

#[test]
fn unwritable_log_dir_falls_back_to_stderr_once() {
    let relay = FakeRelay::start();
    let home = TempDir::new("rolog");
    let mut d = Daemon::spawn(
        {
            let mut c = agent(&home);
            c.env("CODING_BRIDGE_URL", relay.url())
                .env("CODING_BRIDGE_NODE_TOKEN", "tok-rolog")
                .args(["--log-dir", "/proc/self/no-logs-here", "run"]);
            c
        },
        &home,
    );
    assert!(
        wait_until(
            Duration::from_secs(10),
            || status_json(&home)["daemon_running"] == true
        ),
        "{}",
        d.stderr()
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(5)), Some(0));
    let err = d.stderr();
    assert_eq!(err.matches("logging to stderr only").count(), 1, "{err}");
}

#[test]
fn env_example_lists_every_variable() {
    let example = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for var in coding_bridge_agent::testing::ENV_VARS {
        assert!(example.contains(var), ".env.example lacks {var}");
        assert!(readme.contains(var), "README lacks {var}");
    }
}

#[test]
fn ctrl_c_while_waiting_for_the_claim_stops_pairing() {
    let relay = FakeRelay::start();
    let home = TempDir::new("pairint");
    let mut c = agent(&home);
    c.env("CODING_BRIDGE_URL", relay.url())
        .env("CODING_BRIDGE_PAIR_POLL_INTERVAL", "5")
        .args(["pair", "--json"]);
    let mut d = Daemon::spawn(c, &home);
    assert!(wait_until(Duration::from_secs(10), || d
        .stdout()
        .contains("pair_code")));
    let t0 = std::time::Instant::now();
    d.signal(libc::SIGINT);
    assert_eq!(d.wait_exit(Duration::from_secs(5)), Some(1));
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "did not stop promptly"
    );
    let lines = json_lines(&d.stdout());
    assert_eq!(lines.last().unwrap()["reason"], "interrupted");
    assert!(!home.join("cfg/credentials.json").exists());
}

// ---- the harness itself (issue 17 point 7) ------------------------------------------

#[test]
fn executables_written_by_tests_run_while_other_threads_fork() {
    // Other test threads fork all the time; an executable written in this process and
    // run at once can meet ETXTBSY. The harness's writers leave no window for that.
    let dir = TempDir::new("etxtbsy");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let forkers: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::process::Command::new("true").status();
                }
            })
        })
        .collect();
    let mut failed = Vec::new();
    for i in 0..150 {
        let p = dir.join(&format!("script-{i}"));
        write_executable(&p, b"#!/bin/sh\nexit 0\n");
        if let Err(e) = std::process::Command::new(&p).status() {
            failed.push(format!("script {i}: {e}"));
        }
        let c = dir.join(&format!("copy-{i}"));
        copy_executable(Path::new("/bin/true"), &c);
        if let Err(e) = std::process::Command::new(&c).status() {
            failed.push(format!("copy {i}: {e}"));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in forkers {
        let _ = f.join();
    }
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn a_missing_real_agent_fails_under_ci_and_skips_elsewhere() {
    for v in ["true", "1", "yes"] {
        assert!(ci_value(Some(v)), "{v}");
    }
    for v in [None, Some(""), Some("0"), Some("false")] {
        assert!(!ci_value(v), "{v:?}");
    }
    let missing = || Err("npm could not install @openai/codex@0.169.0: E404".to_string());
    let e = agent_or_skip(true, "Codex 0.169.0", "flows", missing()).unwrap_err();
    assert!(
        e.contains("Codex 0.169.0") && e.contains("E404") && e.contains("CI=true"),
        "{e}"
    );
    assert_eq!(
        agent_or_skip(false, "Codex 0.169.0", "flows", missing()),
        Ok(None)
    );
    let found = PathBuf::from("/opt/codex");
    assert_eq!(
        agent_or_skip(true, "Codex 0.169.0", "flows", Ok(found.clone())),
        Ok(Some(found))
    );
}
