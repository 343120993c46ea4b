//! The machine owner's policy (issue 20), through the relay as the browser drives the
//! daemon, with the scripted fake agents: each key of `policy.toml` (a refused mode
//! never reaches the agent's argv or `set_permission_mode`, a refused working directory
//! starts no process, a refused agent is unavailable), approval rules for Claude Code and
//! an ACP agent, the audit log (appended, rotated, verified, a tampered line caught),
//! SIGHUP reload, and malformed files. Telegram's scoped grants are in `telegram.rs`.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::node::{Node, example, named};
use support::*;

/// A home whose config dir holds this `policy.toml`.
fn home_with(tag: &str, policy: &str) -> TempDir {
    let home = TempDir::new(tag);
    std::fs::create_dir_all(home.join("cfg")).unwrap();
    std::fs::write(home.join("cfg/policy.toml"), policy).unwrap();
    home
}

/// `coding-bridge-agent <args>` for this home.
fn cli(home: &TempDir, args: &[&str]) -> std::process::Output {
    run(agent(home).args(args))
}

fn argv(start: &Value) -> String {
    start["argv"].to_string()
}

/// The audit log's records, as `audit --json` prints them.
fn audit(home: &TempDir, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "--json"];
    args.extend(extra);
    let o = cli(home, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Wait for the audit log to hold a record matching `f` (it is written off the hub).
fn audited(home: &TempDir, f: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    let found = wait_until(Duration::from_secs(10), || {
        last = audit(home, &[]);
        last.iter().any(&f)
    });
    assert!(found, "no such audit record in {last:#?}");
    last
}

#[test]
fn a_refused_mode_runs_in_default_and_never_reaches_the_agent() {
    let home = home_with("pol-mode", "permission_modes = [\"default\", \"plan\"]\n");
    let n = Node::start_in(home, &[]);
    // The browser's default for a new session: bypassPermissions.
    n.cmd(
        json!({"action": "session.start", "session_id": "m1", "prompt": "say hi",
                 "cwd": n.cwd(), "permission_mode": "bypassPermissions"}),
    );
    let ev = n.until("session.result");
    let notice = named(&ev, "session.notice");
    assert_eq!(notice.len(), 1, "{ev:#?}");
    assert_eq!(notice[0]["code"], "mode_refused");
    let text = notice[0]["text"].as_str().unwrap();
    assert!(
        text.contains("bypassPermissions")
            && text.contains("policy.toml")
            && text.contains("default"),
        "{text}"
    );
    let real = named(&ev, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let a = argv(&n.starts()[0]);
    assert!(!a.contains("bypassPermissions"), "{a}");
    assert!(a.contains("\"--permission-mode\",\"default\""), "{a}");
    // The selector sends the mode again with every message: refused, told once in a row.
    for _ in 0..2 {
        n.cmd(
            json!({"action": "session.send", "session_id": real, "prompt": "say again",
                     "permission_mode": "bypassPermissions"}),
        );
        n.until("session.result");
    }
    // An allowed mode goes live; a refused one after it is told again.
    n.cmd(
        json!({"action": "session.send", "session_id": real, "prompt": "say plan",
                 "permission_mode": "plan"}),
    );
    let ev = n.until("session.result");
    assert!(named(&ev, "session.notice").is_empty(), "{ev:#?}");
    n.cmd(
        json!({"action": "session.send", "session_id": real, "prompt": "say back",
                 "permission_mode": "bypassPermissions"}),
    );
    let ev = n.until("session.result");
    assert_eq!(named(&ev, "session.notice")[0]["code"], "mode_refused");
    // An edit asking for it: the fork runs in the session's allowed mode.
    let cut = ev.last().unwrap()["cut_uuid"].as_str().unwrap().to_string();
    n.cmd(
        json!({"action": "session.edit", "session_id": real, "prompt": "say edited",
                 "cut_uuid": cut, "permission_mode": "bypassPermissions"}),
    );
    n.until("session.result");
    let modes: Vec<Value> = n
        .stdin_of("set_permission_mode")
        .iter()
        .map(|s| s["request"]["mode"].clone())
        .collect();
    assert!(modes.contains(&json!("plan")), "{modes:?}");
    assert!(!modes.contains(&json!("bypassPermissions")), "{modes:?}");
    for s in n.starts() {
        assert!(!argv(&s).contains("bypassPermissions"), "{}", argv(&s));
    }
    n.cmd(json!({"action": "sessions.list"}));
    let s = n.until("sessions.snapshot").pop().unwrap()["sessions"][0].clone();
    assert_ne!(s["permission_mode"], "bypassPermissions");
    // The selectors offer only what the policy allows.
    let caps = n.ask(json!({"action": "capabilities.get"}), "capabilities");
    assert_eq!(
        caps["providers"][0]["permission_modes"],
        json!(["default", "plan"])
    );
    let records = audited(&n.home, |r| r["event"] == "policy_refusal");
    let start = records
        .iter()
        .find(|r| r["event"] == "session_start")
        .unwrap();
    assert_eq!(start["mode_asked"], "bypassPermissions");
    assert_eq!(start["mode"], "default");
    assert_eq!(start["via"], "relay");
    assert_eq!(start["provider"], "claude");
}

#[test]
fn a_cwd_outside_the_roots_starts_no_process_and_is_not_listed() {
    let home = TempDir::new("pol-roots");
    for d in ["work/proj", "work/secret", "other"] {
        std::fs::create_dir_all(home.join(d)).unwrap();
    }
    std::os::unix::fs::symlink(home.join("other"), home.join("work/proj/escape")).unwrap();
    std::fs::create_dir_all(home.join("cfg")).unwrap();
    std::fs::write(home.join("cfg/policy.toml"), "roots = [\"~/work/proj\"]\n").unwrap();
    let n = Node::start_in(home, &[]);
    let at = |d: &str| n.home.join(d).to_string_lossy().into_owned();
    for cwd in [at("other"), at("work/secret"), at("work/proj/escape")] {
        n.cmd(
            json!({"action": "session.start", "session_id": "r1", "prompt": "say hi", "cwd": cwd}),
        );
        let e = n.until("session.error").pop().unwrap();
        assert_eq!(e["code"], "cwd_refused", "{e}");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains(&cwd) && m.contains("work/proj"), "{m}");
    }
    assert!(
        n.starts().is_empty(),
        "a refused cwd started {:?}",
        n.starts()
    );
    // The daemon's own default (the home) is outside too.
    n.cmd(json!({"action": "session.start", "session_id": "r2", "prompt": "say hi"}));
    assert_eq!(
        n.until("session.error").pop().unwrap()["code"],
        "cwd_refused"
    );
    n.cmd(json!({"action": "session.start", "session_id": "r3", "prompt": "say hi", "cwd": at("work/proj")}));
    n.until("session.result");
    assert_eq!(n.starts().len(), 1);
    // The picker: the way down to the root, nothing beside it, nothing outside.
    let list = |p: &str| n.ask(json!({"action": "fs.list", "path": p}), "fs.list");
    let names = |v: &Value| -> Vec<String> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&list(&at("work"))), ["proj"]);
    let outside = list(&at("other"));
    assert!(names(&outside).is_empty());
    assert!(
        outside["error"].as_str().unwrap().contains("outside"),
        "{outside}"
    );
    assert!(list(&at("work/proj/escape"))["error"].is_string());
    audited(&n.home, |r| {
        r["event"] == "policy_refusal" && r["refused"] == "cwd"
    });
}

#[test]
fn a_refused_agent_is_unavailable_and_not_started() {
    let codex = example("fake_codex");
    let home = home_with("pol-prov", "providers = [\"claude\"]\n");
    let n = Node::start_in(
        home,
        &[("CODING_BRIDGE_CODEX_PATH", codex.to_str().unwrap())],
    );
    let caps = n.ask(json!({"action": "capabilities.get"}), "capabilities");
    let p = |name: &str| {
        caps["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(p("claude")["available"], true);
    assert_eq!(p("codex")["available"], false);
    n.cmd(
        json!({"action": "session.start", "session_id": "c1", "provider": "codex",
                 "prompt": "hi", "cwd": n.cwd()}),
    );
    let e = n.until("session.error").pop().unwrap();
    assert_eq!(e["code"], "provider_refused", "{e}");
    assert!(e["message"].as_str().unwrap().contains("codex"), "{e}");
    audited(&n.home, |r| {
        r["event"] == "policy_refusal" && r["asked"] == "codex"
    });
}

const RULES: &str = r#"
[[rule]]
tool = "Bash"
match = "cargo test*"
decision = "allow"

[[rule]]
tool = "*"
match = "rm -rf*"
decision = "deny"

[[rule]]
tool = "Bash"
match = "touch*"
decision = "ask"
"#;

/// The tool result of the turn in `ev`.
fn tool_result(ev: &[Value]) -> Value {
    named(ev, "session.tool_result")
        .first()
        .map(|v| (*v).clone())
        .unwrap_or_else(|| panic!("no tool result in {ev:#?}"))
}

#[test]
fn rules_allow_deny_and_ask_for_claude_code() {
    let n = Node::start_in(home_with("pol-rules", RULES), &[]);
    // Allowed by the rule: never shown, the agent runs it.
    n.cmd(
        json!({"action": "session.start", "session_id": "p1", "cwd": n.cwd(),
                 "prompt": "tool Bash {\"command\":\"cargo test --all\"}"}),
    );
    let ev = n.until("session.result");
    assert!(named(&ev, "permission.request").is_empty(), "{ev:#?}");
    let tr = tool_result(&ev);
    assert_eq!(tr["is_error"], false, "{tr}");
    let real = named(&ev, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Denied by the rule, also inside a chain: the agent is told why, the browser too.
    for cmd in ["rm -rf /", "cargo test; rm -rf ~"] {
        n.cmd(json!({"action": "session.send", "session_id": real,
                     "prompt": format!("tool Bash {}", json!({"command": cmd}))}));
        let ev = n.until("session.result");
        assert!(named(&ev, "permission.request").is_empty(), "{ev:#?}");
        let tr = tool_result(&ev);
        assert_eq!(tr["is_error"], true);
        let why = tr["content"].as_str().unwrap();
        assert!(why.contains("policy.toml line 7"), "{why}");
        let notice = named(&ev, "session.notice");
        assert_eq!(notice[0]["code"], "tool_denied", "{ev:#?}");
    }
    // The node's own files are off limits under a policy, whatever the rules say.
    let cfg = n.home.join("cfg");
    for prompt in [
        format!(
            "tool Write {}",
            json!({"file_path": cfg.join("policy.toml"), "content": ""})
        ),
        format!(
            "tool Read {}",
            json!({"file_path": cfg.join("credentials.json")})
        ),
        format!(
            "tool Bash {}",
            json!({"command": format!("cargo test; cat {}/x", cfg.display())})
        ),
        format!("tool Bash {}", json!({"command": "echo > policy.toml"})),
        format!(
            "tool Bash {}",
            json!({"command": "cat ~/cfg/channels.toml"})
        ),
        format!("tool Read {}", json!({"file_path": "~/cfg/agents.json"})),
    ] {
        n.cmd(json!({"action": "session.send", "session_id": real, "prompt": prompt}));
        let ev = n.until("session.result");
        assert!(
            named(&ev, "permission.request").is_empty(),
            "{prompt}: {ev:#?}"
        );
        let tr = tool_result(&ev);
        assert_eq!(tr["is_error"], true, "{prompt}");
        assert!(
            tr["content"].as_str().unwrap().contains("off limits"),
            "{tr}"
        );
    }
    // A chain the allow rule does not cover, and an ask rule: the browser decides.
    for cmd in ["cargo test | sh", "touch x"] {
        n.cmd(json!({"action": "session.send", "session_id": real,
                     "prompt": format!("tool Bash {}", json!({"command": cmd}))}));
        let req = n.until("permission.request").pop().unwrap();
        n.cmd(json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "allow"}));
        let ev = n.until("session.result");
        assert_eq!(tool_result(&ev)["is_error"], false);
    }
    let records = audited(&n.home, |r| {
        r["event"] == "permission_decision" && r["by"] == "browser"
    });
    let by: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["event"] == "permission_decision")
        .map(|r| (r["decision"].as_str().unwrap(), r["by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        by,
        [
            ("allow", "rule"),
            ("deny", "rule"),
            ("deny", "rule"),
            ("deny", "config_dir"),
            ("deny", "config_dir"),
            ("deny", "config_dir"),
            ("deny", "config_dir"),
            ("deny", "config_dir"),
            ("deny", "config_dir"),
            ("allow", "browser"),
            ("allow", "browser")
        ]
    );
    let requests: Vec<&str> = records
        .iter()
        .filter(|r| r["event"] == "permission_request")
        .map(|r| r["input"].as_str().unwrap())
        .collect();
    assert_eq!(requests[0], "cargo test --all");
    assert_eq!(requests.len(), 11);
}

#[test]
fn rules_allow_deny_and_ask_for_an_acp_agent() {
    let home = home_with("pol-acp", "");
    let fake = example("fake_acp");
    std::fs::write(
        home.join("cfg/agents.json"),
        json!({"agents": [{"name": "fakeacp", "label": "Fake ACP agent",
                           "command": fake, "env": {"FAKE_ACP_LOG": home.join("acp.log")}}]})
        .to_string(),
    )
    .unwrap();
    // The fake agent asks to run `touch x` (an ACP "execute": Bash).
    let answers = |home: &Path| -> Vec<Value> {
        std::fs::read_to_string(home.join("acp.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["id"] == 7 && v.get("result").is_some())
            .collect()
    };
    let mut home = Some(home);
    for (decision, option) in [("allow", "yes"), ("deny", "no"), ("ask", "yes")] {
        let h = home.take().unwrap();
        std::fs::write(
            h.join("cfg/policy.toml"),
            format!("[[rule]]\ntool = \"Bash\"\nmatch = \"touch *\"\ndecision = \"{decision}\"\n"),
        )
        .unwrap();
        let n = Node::start_in(h, &[]);
        n.cmd(
            json!({"action": "session.start", "session_id": "a1", "provider": "fakeacp",
                     "prompt": "ask", "cwd": n.cwd()}),
        );
        if decision == "ask" {
            let req = n.until("permission.request").pop().unwrap();
            assert_eq!(req["tool"], "Bash");
            n.cmd(json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "allow"}));
            n.until("session.result");
        } else {
            let ev = n.until("session.result");
            assert!(
                named(&ev, "permission.request").is_empty(),
                "{decision}: {ev:#?}"
            );
        }
        let a = answers(n.home.path());
        assert_eq!(
            a.last().unwrap()["result"]["outcome"]["optionId"],
            option,
            "{decision}: {a:?}"
        );
        let by = if decision == "ask" { "browser" } else { "rule" };
        let want = if decision == "deny" { "deny" } else { "allow" };
        audited(&n.home, |r| {
            r["event"] == "permission_decision" && r["by"] == by && r["decision"] == want
        });
        home = Some(n.stop());
    }
}

#[test]
fn the_audit_log_is_chained_rotated_and_a_tampered_line_is_caught() {
    let n = Node::start(&[("CODING_BRIDGE_AUDIT_MAX", "4K")]);
    let cfg = n.home.join("cfg");
    for i in 0..10 {
        let sid = format!("au{i}");
        n.cmd(
            json!({"action": "session.start", "session_id": sid, "cwd": n.cwd(),
                     "prompt": format!("tool Bash {}", json!({"command": format!("echo {i}")}))}),
        );
        let req = n.until("permission.request").pop().unwrap();
        n.cmd(json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "deny"}));
        n.until("session.result");
    }
    assert!(
        wait_until(Duration::from_secs(10), || cfg
            .join("audit.1.jsonl")
            .exists()),
        "no rotation"
    );
    let records = audited(&n.home, |r| {
        r["event"] == "permission_decision"
            && r["request_id"].is_string()
            && r["by"] == "browser"
            && r["session"]
                .as_str()
                .is_some_and(|s| s.ends_with('9') || s.len() > 8)
    });
    // One chain across the files: seq counts on.
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(
        records
            .iter()
            .all(|r| r["prev"].as_str().is_some_and(|p| p.len() == 64))
    );
    let o = cli(&n.home, &["audit", "--verify"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("intact"), "{}", stdout(&o));
    // A session's records only, and a time filter.
    // One session, by the browser's id or the agent's: all of its records.
    let one = audit(&n.home, &["--session", "au3"]);
    let real = one
        .iter()
        .find(|r| r["event"] == "session_identified")
        .map(|r| r["now"].clone())
        .unwrap_or_else(|| panic!("{one:#?}"));
    let events: Vec<&str> = one.iter().map(|r| r["event"].as_str().unwrap()).collect();
    for e in ["session_start", "permission_request", "permission_decision"] {
        assert!(events.contains(&e), "{e} in {events:?}");
    }
    assert!(
        one.iter()
            .all(|r| r["session"] == "au3" || r["session"] == real),
        "{one:#?}"
    );
    assert_eq!(audit(&n.home, &["--session", real.as_str().unwrap()]), one);
    assert_eq!(audit(&n.home, &["--since", "1h"]).len(), records.len());
    assert!(audit(&n.home, &["--since", "2999-01-01"]).is_empty());
    let text = stdout(&cli(&n.home, &["audit", "--session", "au3"]));
    assert!(
        text.contains("session_start") && text.contains("au3"),
        "{text}"
    );
    // No secret in any of it.
    for f in std::fs::read_dir(&cfg).unwrap().flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        if name.starts_with("audit") {
            let body = std::fs::read_to_string(f.path()).unwrap();
            assert!(!body.contains("tok-node"), "{name}");
            use std::os::unix::fs::PermissionsExt;
            let mode = f.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
    }
    let _kept = n.stop();
    // Change one character of a line in the middle of a rotated file.
    let home = TempDir::new("pol-audit-tamper");
    let dir = home.join("cfg");
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(&cfg).unwrap().flatten() {
        if f.file_name().to_string_lossy().starts_with("audit") {
            std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
        }
    }
    let older = dir.join("audit.1.jsonl");
    let body = std::fs::read_to_string(&older).unwrap();
    let mut lines: Vec<String> = body.lines().map(str::to_string).collect();
    assert!(lines.len() >= 3);
    lines[1] = lines[1]
        .replacen("\"deny\"", "\"allow\"", 1)
        .replacen("echo", "ECHO", 1);
    std::fs::write(&older, lines.join("\n") + "\n").unwrap();
    let o = cli(&home, &["audit", "--verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains("audit.1.jsonl:3"), "{said}");
    // A removed line is caught as well.
    let mut lines: Vec<&str> = body.lines().collect();
    lines.remove(1);
    std::fs::write(&older, lines.join("\n") + "\n").unwrap();
    let o = cli(&home, &["audit", "--verify", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["line"], 2, "{v}");
}

#[test]
fn sighup_reads_the_policy_again_and_a_broken_one_keeps_it() {
    let n = Node::start(&[]);
    let inside = n.home.join("inside");
    std::fs::create_dir_all(&inside).unwrap();
    let start = |sid: &str, cwd: &Path| {
        n.cmd(
            json!({"action": "session.start", "session_id": sid, "prompt": "say hi",
                     "cwd": cwd, "permission_mode": "bypassPermissions"}),
        );
        n.until("session.result")
    };
    let ev = start("h1", &inside);
    assert!(named(&ev, "session.notice").is_empty(), "{ev:#?}");
    assert!(argv(n.starts().last().unwrap()).contains("bypassPermissions"));
    let h1 = named(&ev, "session.identified")[0]["sdk_session_id"].clone();
    start("hx", n.home.path());
    // Tightened while both run: h1 goes on in default, at once; hx (outside) is closed.
    let policy = n.home.join("cfg/policy.toml");
    std::fs::write(
        &policy,
        format!("permission_modes = [\"default\"]\nroots = [{:?}]\n", inside),
    )
    .unwrap();
    n.daemon.signal(libc::SIGHUP);
    // The sessions are gone through in any order: wait for both.
    let mut ev = n.until("session.closed");
    if named(&ev, "session.notice").is_empty() {
        ev.extend(n.until("session.notice"));
    }
    let notice = named(&ev, "session.notice");
    assert_eq!(notice[0]["code"], "mode_refused", "{ev:#?}");
    assert_eq!(notice[0]["session_id"], h1, "{ev:#?}");
    let closed = named(&ev, "session.error")[0];
    assert_eq!(closed["code"], "cwd_refused", "{ev:#?}");
    assert_ne!(closed["session_id"], h1);
    assert!(
        wait_until(Duration::from_secs(5), || n
            .stdin_of("set_permission_mode")
            .iter()
            .any(|r| r["request"]["mode"] == "default")),
        "{:?}",
        n.stdin_of("set_permission_mode")
    );
    assert!(n.daemon.stderr().contains("read again"));
    // A new session asking for bypass is refused now.
    let ev = start("h2", &inside);
    assert_eq!(
        named(&ev, "session.notice")[0]["code"],
        "mode_refused",
        "{ev:#?}"
    );
    assert!(!argv(n.starts().last().unwrap()).contains("bypassPermissions"));
    // A broken file: said in the log, the daemon goes on under the policy it had.
    std::fs::write(&policy, "permission_modes = [\"default\"]\n\nroots = 5\n").unwrap();
    n.daemon.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || n
            .daemon
            .stderr()
            .contains("policy.toml line 3")),
        "{}",
        n.daemon.stderr()
    );
    let ev = start("h3", &inside);
    assert_eq!(
        named(&ev, "session.notice")[0]["code"],
        "mode_refused",
        "{ev:#?}"
    );
    let records = audited(&n.home, |r| r["event"] == "policy_rejected");
    assert!(records.iter().any(|r| r["event"] == "policy_loaded"));
}

#[test]
fn a_malformed_policy_is_named_by_line_and_stops_the_start() {
    let home = home_with(
        "pol-bad",
        "permission_modes = [\"default\"]\n\n[[rule]]\ntool = \"Bash\"\ndecision = \"sometimes\"\n",
    );
    let o = cli(&home, &["policy", "check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("policy.toml line 5"), "{}", stderr(&o));
    // A policy others could rewrite is refused.
    let open = home_with("pol-open", "providers = [\"claude\"]\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        open.join("cfg/policy.toml"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let o = cli(&open, &["policy", "check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
    let o = cli(&home, &["policy", "check", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        (v["ok"].clone(), v["line"].clone()),
        (json!(false), json!(5))
    );
    // The daemon does not start on it (before any connection).
    let o = run(agent(&home)
        .env("CODING_BRIDGE_URL", "http://127.0.0.1:9")
        .env("CODING_BRIDGE_NODE_TOKEN", "tok-node")
        .arg("run"));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("policy.toml line 5"), "{}", stderr(&o));
    // init writes a private skeleton once; it limits nothing until edited.
    let fresh = TempDir::new("pol-init");
    let o = cli(&fresh, &["policy", "init"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let meta = std::fs::metadata(fresh.join("cfg/policy.toml")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(cli(&fresh, &["policy", "init"]).status.code(), Some(1));
    let o = cli(&fresh, &["policy", "check"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("limits nothing"), "{}", stdout(&o));
    // A valid one is printed as in force, in words and as JSON.
    std::fs::write(fresh.join("cfg/policy.toml"), RULES).unwrap();
    let o = cli(&fresh, &["policy", "check"]);
    assert!(
        stdout(&o).contains("line 2: allow Bash matching \"cargo test*\""),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("warning: bypassPermissions is allowed"),
        "{}",
        stdout(&o)
    );
    let o = cli(&fresh, &["policy", "check", "--json"]);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["rules"][1]["decision"], "deny");
    assert_eq!(v["permission_modes"], Value::Null);
}

#[test]
fn rules_allow_deny_and_ask_for_codex() {
    let codex = example("fake_codex");
    let home = home_with("pol-codex", RULES);
    let n = Node::start_in(
        home,
        &[
            ("CODING_BRIDGE_CODEX_PATH", codex.to_str().unwrap()),
            ("FAKE_CODEX_LOG", "codex.log"),
        ],
    );
    let turn = |sid: &Value, prompt: &str| -> Vec<Value> {
        n.cmd(json!({"action": "session.send", "session_id": sid, "prompt": prompt}));
        n.until("session.result")
    };
    n.cmd(
        json!({"action": "session.start", "session_id": "x1", "provider": "codex",
                 "prompt": "hello", "cwd": n.cwd()}),
    );
    let ev = n.until("session.result");
    let sid = named(&ev, "session.identified")[0]["sdk_session_id"].clone();
    // Codex reports the command as its shell runs it: the script is what rules see.
    let ev = turn(&sid, "approve /bin/bash -lc 'cargo test -q'");
    assert!(named(&ev, "permission.request").is_empty(), "{ev:#?}");
    assert!(
        support::node::texts(&ev).contains("decision: accept"),
        "{ev:#?}"
    );
    let ev = turn(&sid, "approve /bin/bash -lc 'rm -rf build'");
    assert!(named(&ev, "permission.request").is_empty(), "{ev:#?}");
    assert!(
        support::node::texts(&ev).contains("decision: decline"),
        "{ev:#?}"
    );
    assert_eq!(named(&ev, "session.notice")[0]["code"], "tool_denied");
    n.cmd(json!({"action": "session.send", "session_id": sid, "prompt": "approve touch x"}));
    let req = n.until("permission.request").pop().unwrap();
    assert_eq!(req["tool"], "Bash");
    n.cmd(json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "allow"}));
    let ev = n.until("session.result");
    assert!(
        support::node::texts(&ev).contains("decision: accept"),
        "{ev:#?}"
    );
    audited(&n.home, |r| {
        r["event"] == "permission_decision" && r["by"] == "browser"
    });
}

#[test]
fn a_policy_kept_elsewhere_is_read_from_there() {
    let home = TempDir::new("pol-elsewhere");
    let file = home.join("etc/policy.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "permission_modes = [\"default\"]\n").unwrap();
    let o = run(agent(&home)
        .env("CODING_BRIDGE_POLICY_FILE", &file)
        .args(["policy", "check", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["file"], file.to_string_lossy().as_ref());
    assert_eq!(v["permission_modes"], json!(["default"]));
    // The daemon runs under it, and the agents may not touch it.
    let n = Node::start_in(
        home,
        &[("CODING_BRIDGE_POLICY_FILE", file.to_str().unwrap())],
    );
    n.cmd(json!({"action": "session.start", "session_id": "e1", "cwd": n.cwd(),
                 "permission_mode": "bypassPermissions",
                 "prompt": format!("tool Bash {}", json!({"command": format!("echo > {}", file.display())}))}));
    let ev = n.until("session.result");
    assert_eq!(
        named(&ev, "session.notice")[0]["code"],
        "mode_refused",
        "{ev:#?}"
    );
    assert!(named(&ev, "permission.request").is_empty(), "{ev:#?}");
    assert!(
        tool_result(&ev)["content"]
            .as_str()
            .unwrap()
            .contains("off limits")
    );
    // A relative path is a configuration error.
    let o = run(agent(&n.home)
        .env("CODING_BRIDGE_POLICY_FILE", "etc/policy.toml")
        .args(["policy", "check"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("CODING_BRIDGE_POLICY_FILE"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn timeouts_and_interrupts_are_recorded_as_who_decided() {
    let n = Node::start(&[("CODING_BRIDGE_PERMISSION_TIMEOUT", "0.5")]);
    // Unanswered: denied by the timeout.
    n.cmd(
        json!({"action": "session.start", "session_id": "w1", "cwd": n.cwd(),
                 "prompt": format!("tool Bash {}", json!({"command": "ls"}))}),
    );
    let ev = n.until("session.result");
    assert_eq!(named(&ev, "permission.resolved")[0]["reason"], "timeout");
    let real = named(&ev, "session.identified")[0]["sdk_session_id"].clone();
    // A long input is summarized within its bound.
    let long = format!("echo {}", "x".repeat(5000));
    n.cmd(json!({"action": "session.send", "session_id": real,
                 "prompt": format!("tool Bash {}", json!({"command": long}))}));
    n.until("permission.request");
    n.cmd(json!({"action": "session.interrupt", "session_id": real}));
    n.until("session.result");
    let records = audited(&n.home, |r| {
        r["event"] == "permission_decision" && r["by"] == "interrupt"
    });
    let by: Vec<&str> = records
        .iter()
        .filter(|r| r["event"] == "permission_decision")
        .map(|r| r["by"].as_str().unwrap())
        .collect();
    assert_eq!(by, ["timeout", "interrupt"]);
    let summary = records
        .iter()
        .filter(|r| r["event"] == "permission_request")
        .map(|r| r["input"].as_str().unwrap().chars().count())
        .max()
        .unwrap();
    assert!(summary <= 300, "a summary of {summary} characters");
}
