//! Node services (issue 5): history, the settings sidecar, the directory picker,
//! capabilities, images and attachments, each against hostile or oversized input.

mod support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use support::node::{Node, T, named, wrapped};
use support::relay::{FakeRelay, test_tls};
use support::*;

fn project_dir(home: &Path, cwd: &str) -> PathBuf {
    let slug: String = cwd
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let d = home.join(".claude/projects").join(slug);
    fs::create_dir_all(&d).unwrap();
    d
}

fn set_mtime(p: &Path, secs_ago: u64) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(secs_ago))
        .unwrap();
}

fn rec(v: Value) -> String {
    format!("{v}\n")
}

/// A realistic transcript with injected context, tools, thinking and a broken line.
fn write_fixture(dir: &Path, id: &str, cwd: &str) -> PathBuf {
    let mut s = String::new();
    s += &rec(json!({"type": "queue-operation", "sessionId": id}));
    s += &rec(
        json!({"type": "user", "isMeta": true, "message": {"role": "user", "content": "Caveat: meta"}, "uuid": "m0", "timestamp": "2026-11-20T10:00:00.000Z", "cwd": cwd, "gitBranch": "main"}),
    );
    s += &rec(
        json!({"type": "user", "message": {"role": "user", "content": "<system-reminder>ignore me</system-reminder>"}, "uuid": "m1", "timestamp": "2026-11-20T10:00:00.500Z", "cwd": cwd, "gitBranch": "main"}),
    );
    s += &rec(
        json!({"type": "user", "message": {"role": "user", "content": "<command-name>/clear</command-name>"}, "uuid": "m2", "timestamp": "2026-11-20T10:00:01.000Z", "cwd": cwd, "gitBranch": "main"}),
    );
    s += &rec(
        json!({"type": "user", "message": {"role": "user", "content": "  Fix   the <b>login</b>\n bug please  "}, "uuid": "m3", "timestamp": "2026-11-20T10:00:02.000Z", "cwd": cwd, "gitBranch": "feature/x"}),
    );
    s += "{ this line is broken\n";
    s += "\u{0}\u{1}binary junk\n";
    s += &rec(
        json!({"type": "assistant", "message": {"id": "msg1", "model": "claude-opus-4-1", "content": [
        {"type": "thinking", "thinking": "hmm"},
        {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": "tu1", "name": "Read", "input": {"file_path": "a.rs"}}]}, "uuid": "m4", "timestamp": "2026-11-20T10:00:03.000Z", "cwd": cwd, "gitBranch": "feature/x"}),
    );
    s += &rec(
        json!({"type": "user", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": [{"type": "text", "text": "fn main"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo"}}], "is_error": false}]}, "uuid": "m5", "timestamp": "2026-11-20T10:00:04.000Z", "cwd": cwd}),
    );
    s += &rec(
        json!({"type": "assistant", "message": {"id": "msg2", "content": [{"type": "text", "text": "Fixed."}]}, "uuid": "m6", "timestamp": "2026-11-20T10:00:05.250Z", "cwd": cwd}),
    );
    let p = dir.join(format!("{id}.jsonl"));
    fs::write(&p, s).unwrap();
    p
}

#[test]
fn history_lists_newest_first_with_titles_and_details() {
    let home = TempDir::new("hist");
    let cwd = "/work/proj";
    let dir = project_dir(home.path(), cwd);
    let a = write_fixture(&dir, "aaaa-1111", cwd);
    set_mtime(&a, 100);
    let b = dir.join("bbbb-2222.jsonl");
    fs::write(&b, rec(json!({"type": "user", "message": {"role": "user", "content": "second one"}, "uuid": "x", "timestamp": "2026-11-21T00:00:00Z", "cwd": cwd}))).unwrap();
    set_mtime(&b, 10);
    // A corrupt transcript: listed, its bad lines skipped.
    let other = project_dir(home.path(), "/elsewhere");
    fs::write(
        other.join("cccc-3333.jsonl"),
        b"\xff\xfe not json\n{\"type\":\"user\"\n[1,2]\n",
    )
    .unwrap();
    set_mtime(&other.join("cccc-3333.jsonl"), 1000);
    // Not transcripts: ignored.
    fs::write(dir.join("notes.txt"), b"x").unwrap();
    fs::write(dir.join("bad id!.jsonl"), b"x").unwrap();

    let n = Node::start_in(home, &[]);
    let snap = n.ask(
        json!({"action": "history.list", "trace_id": "h1"}),
        "history.snapshot",
    );
    assert_eq!(snap["trace_id"], "h1");
    let list = snap["sessions"].as_array().unwrap();
    let ids: Vec<&str> = list
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bbbb-2222", "aaaa-1111", "cccc-3333"]);
    let a = &list[1];
    assert_eq!(a["title"], "Fix the login bug please");
    assert_eq!(a["cwd"], cwd);
    assert_eq!(a["git_branch"], "main");
    assert_eq!(a["provider"], "claude");
    assert_eq!(a["message_count"], 7);
    assert_eq!(a["running"], false);
    assert!(a["updated_at"].as_u64().unwrap() > list[2]["updated_at"].as_u64().unwrap());
    assert_eq!(list[2]["title"], "(no prompt)");

    let snap = n.ask(
        json!({"action": "history.list", "limit": 1}),
        "history.snapshot",
    );
    assert_eq!(snap["sessions"].as_array().unwrap().len(), 1);
    let snap = n.ask(
        json!({"action": "history.list", "limit": -5}),
        "history.snapshot",
    );
    assert_eq!(
        snap["sessions"].as_array().unwrap().len(),
        1,
        "limit is clamped to at least 1"
    );

    let d = n.ask(
        json!({"action": "history.get", "provider": "claude", "session_id": "aaaa-1111"}),
        "history.detail",
    );
    assert_eq!(d["title"], "Fix the login bug please");
    assert_eq!(d["cwd"], cwd);
    assert_eq!(d["git_branch"], "feature/x");
    // No sidecar: no launch selector; the transcript's model is the resolved one.
    assert_eq!(d["model"], "");
    assert_eq!(d["resolved_model"], "claude-opus-4-1");
    assert_eq!(d["permission_mode"], "default");
    assert_eq!(d["truncated"], false);
    let kinds: Vec<&str> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "prompt",
            "prompt",
            "thinking",
            "text",
            "tool_use",
            "tool_result",
            "text"
        ]
    );
    let ev = d["events"].as_array().unwrap();
    // A slash command shows as the user typed it; injected context does not show.
    assert_eq!(ev[0]["text"], "/clear");
    let ev = &ev[1..];
    assert_eq!(ev[0]["text"], "Fix   the <b>login</b>\n bug please");
    assert_eq!(ev[0]["ts"], 1_795_168_802_000u64);
    assert_eq!(ev[3]["tool"], "Read");
    // No base64 in history either: image blocks keep only their type and media type.
    assert_eq!(
        ev[4]["content"],
        "[{\"text\":\"fn main\",\"type\":\"text\"},{\"media_type\":\"image/png\",\"type\":\"image\"}]"
    );
    assert_eq!(ev[5]["ts"], 1_795_168_805_250u64);

    // Failures are session errors with the session id (the browser ends its skeleton).
    for bad in ["../../etc/passwd", "nope-0000"] {
        n.cmd(json!({"action": "history.get", "provider": "claude", "session_id": bad, "trace_id": "g1"}));
        let mut ev = n.until("session.error");
        assert!(
            named(&ev, "history.detail").is_empty(),
            "no empty, resumable detail for a missing transcript"
        );
        let e = ev.pop().unwrap();
        assert_eq!(e["session_id"], bad, "{e}");
        assert_eq!(e["trace_id"], "g1");
        assert!(e["message"].as_str().unwrap().len() > 10, "{e}");
    }
    let e = n.ask(
        json!({"action": "history.get", "provider": "gemini-x", "session_id": "aaaa-1111"}),
        "session.error",
    );
    assert_eq!(e["session_id"], "aaaa-1111");
    assert!(e["message"].as_str().unwrap().contains("provider"), "{e}");
    let e = n.ask(
        json!({"action": "history.get", "provider": "claude"}),
        "session.error",
    );
    assert!(e["message"].as_str().unwrap().contains("session_id"), "{e}");
}

/// A session id names a file: one that is not safe as a file name is refused where the
/// command comes in, for every provider, even with a real file where it would lead.
#[test]
fn history_refuses_an_id_that_is_not_a_safe_file_name_for_every_provider() {
    let home = TempDir::new("hist-unsafe");
    let dir = project_dir(home.path(), "/p");
    write_fixture(&dir, "aaaa-1111", "/p");
    // Where `projects/<p>/../leak.jsonl` and `session-state/../outside/events.jsonl` lead.
    write_fixture(&home.join(".claude/projects"), "leak", "/p");
    let copilot = home.join(".copilot");
    for d in ["session-state/good-1", "outside"] {
        fs::create_dir_all(copilot.join(d)).unwrap();
        fs::write(
            copilot.join(d).join("events.jsonl"),
            rec(
                json!({"type": "user.message", "data": {"content": "hi"}, "id": "e1",
                       "timestamp": "2026-11-20T10:00:00.000Z"}),
            ),
        )
        .unwrap();
    }
    fs::create_dir_all(home.join(".codex/sessions")).unwrap();
    fs::create_dir_all(home.join(".gemini/tmp")).unwrap();
    let n = Node::start_in(home, &[]);
    for (provider, bad) in [
        ("claude", "../leak"),
        ("claude", "../../etc/passwd"),
        ("codex", "../x"),
        ("copilot", "../outside"),
        ("gemini", "../x"),
        ("claude", ".."),
        ("copilot", "a/b"),
    ] {
        n.cmd(json!({"action": "history.get", "provider": provider, "session_id": bad, "trace_id": "u1"}));
        let mut ev = n.until("session.error");
        assert!(
            named(&ev, "history.detail").is_empty(),
            "{provider} {bad}: {ev:?}"
        );
        let e = ev.pop().unwrap();
        assert_eq!(e["session_id"], bad, "{e}");
        assert_eq!(e["trace_id"], "u1", "{e}");
        assert_eq!(e["code"], "history_unavailable", "{e}");
        assert_eq!(
            e["message"], "Cannot open this conversation: invalid session id.",
            "{e}"
        );
    }
    // The safe ids beside them still open.
    for (provider, good) in [("claude", "aaaa-1111"), ("copilot", "good-1")] {
        let d = n.ask(
            json!({"action": "history.get", "provider": provider, "session_id": good}),
            "history.detail",
        );
        assert_eq!(d["session_id"], good, "{d}");
    }

    // Marks of unsafe ids mark nothing (and, as every bad mark, cost no session.error);
    // without an updated_at they would take it from the file they lead to.
    for (provider, bad) in [("claude", "../leak"), ("copilot", "../outside")] {
        n.cmd(json!({"action": "history.mark_read", "provider": provider, "session_id": bad}));
        let ev = n.until("history.snapshot");
        assert!(named(&ev, "session.error").is_empty(), "{ev:?}");
    }
    n.ask(
        json!({"action": "history.mark_read", "provider": "copilot", "session_id": "good-1"}),
        "history.snapshot",
    );
    let saved: Value =
        serde_json::from_str(&fs::read_to_string(n.home.join("cfg/reads.json")).unwrap()).unwrap();
    let keys: Vec<&String> = saved["reads"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["copilot:good-1"], "{saved}");
}

#[test]
fn history_keeps_the_newest_4000_events_and_flags_truncation() {
    let home = TempDir::new("hist4k");
    let dir = project_dir(home.path(), "/p");
    let mut f = fs::File::create(dir.join("many-0001.jsonl")).unwrap();
    for i in 0..4500 {
        let line = json!({"type": "assistant", "message": {"content": [{"type": "text", "text": format!("t{i}")}]}, "uuid": format!("u{i}"), "timestamp": "2026-11-20T10:00:00Z"});
        writeln!(f, "{line}").unwrap();
    }
    drop(f);
    let n = Node::start_in(home, &[]);
    let d = n.ask(
        json!({"action": "history.get", "provider": "claude", "session_id": "many-0001"}),
        "history.detail",
    );
    let ev = d["events"].as_array().unwrap();
    assert_eq!(ev.len(), 4000);
    assert_eq!(ev[0]["text"], "t500");
    assert_eq!(ev[3999]["text"], "t4499");
    assert_eq!(d["truncated"], true);
}

fn vm_hwm_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_huge_transcript_and_a_10_mb_line_stay_within_a_memory_bound() {
    let home = TempDir::new("hughist");
    let dir = project_dir(home.path(), "/big");
    let path = dir.join("huge-0001.jsonl");
    let mut f = std::io::BufWriter::new(fs::File::create(&path).unwrap());
    writeln!(f, "{}", json!({"type": "user", "message": {"role": "user", "content": "start of a huge one"}, "uuid": "h0", "timestamp": "2026-11-20T10:00:00Z", "cwd": "/big"})).unwrap();
    // One 10 MB line.
    writeln!(f, "{}", json!({"type": "user", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "z".repeat(10 << 20)}]}, "uuid": "h1"})).unwrap();
    // Then ~300 MB of ordinary records.
    let filler = "lorem ipsum dolor sit amet ".repeat(40);
    let mut written = 0usize;
    let mut i = 0;
    while written < 300 << 20 {
        let line = json!({"type": "assistant", "message": {"content": [{"type": "text", "text": format!("{i} {filler}")}]}, "uuid": format!("a{i}"), "timestamp": "2026-11-20T10:00:01Z"}).to_string();
        written += line.len() + 1;
        writeln!(f, "{line}").unwrap();
        i += 1;
        if i == 200 {
            // Another 10 MB line among the newest records, read backwards by history.get.
            writeln!(f, "{}", json!({"type": "user", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2", "content": "y".repeat(10 << 20)}]}, "uuid": "h2"})).unwrap();
        }
    }
    let newest = i - 1;
    for j in 0..300 {
        let line = json!({"type": "assistant", "message": {"content": [{"type": "text", "text": format!("{} {filler}", i + j)}]}, "uuid": format!("b{j}"), "timestamp": "2026-11-20T10:00:02Z"}).to_string();
        writeln!(f, "{line}").unwrap();
        if j == 150 {
            writeln!(f, "{}", json!({"type": "user", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t3", "content": "x".repeat(10 << 20)}]}, "uuid": "h3"})).unwrap();
        }
    }
    let _ = newest;
    let newest = i + 299;
    let messages = i + 300 + 4; // h0..h3 and the ordinary records
    drop(f);
    let n = Node::start_in(home, &[]);
    let before = vm_hwm_kib(n.daemon.pid());
    let snap = n.ask(json!({"action": "history.list"}), "history.snapshot");
    assert_eq!(snap["sessions"][0]["title"], "start of a huge one");
    assert_eq!(snap["sessions"][0]["message_count"], messages);
    let d = n.ask(
        json!({"action": "history.get", "provider": "claude", "session_id": "huge-0001"}),
        "history.detail",
    );
    // The newest events that fit the byte budget, oldest first, the 10 MB result cut.
    let ev = d["events"].as_array().unwrap();
    assert_eq!(d["truncated"], true);
    assert!(ev.len() > 1000 && ev.len() < 4000, "{} events", ev.len());
    let size: usize = ev.iter().map(|e| e.to_string().len()).sum();
    assert!(size <= 4 << 20, "{size} bytes of events");
    assert!(
        ev.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{newest} ")),
        "the newest event comes last"
    );
    let cut = ev
        .iter()
        .find(|e| e["tool_use_id"] == "t3")
        .expect("the big result is there, cut");
    assert!(cut["content"].as_str().unwrap().len() <= 64 * 1024 + 4);
    assert_eq!(d["title"], "start of a huge one");
    let peak = vm_hwm_kib(n.daemon.pid());
    // The file is ~330 MB; the daemon's peak stays within a small bound regardless.
    assert!(
        peak < 32 * 1024,
        "peak RSS {} KiB (was {before} KiB) for a 310 MB transcript",
        peak
    );
}

#[test]
fn running_sessions_are_flagged_and_the_sidecar_restores_settings() {
    let n = Node::start(&[]);
    let cwd = n.home.path().to_str().unwrap().to_string();
    n.cmd(
        json!({"action": "session.start", "session_id": "live", "prompt": "say one", "cwd": cwd,
                 "model": "opus", "permission_mode": "plan", "effort": "high"}),
    );
    let ev = n.until("session.result");
    let real = named(&ev, "session.identified")[0]["sdk_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The sidecar is written 0600 in <config>/sessions.
    let sidecar = n.home.join(&format!("cfg/sessions/{real}.json"));
    assert!(wait_until(Duration::from_secs(5), || sidecar.exists()));
    let saved: Value = serde_json::from_str(&fs::read_to_string(&sidecar).unwrap()).unwrap();
    assert_eq!(
        saved,
        json!({"version": 1, "provider": "claude", "cwd": cwd, "model": "opus", "resolved_model": "fake-model-1",
               "permission_mode": "plan", "effort": "high"})
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&sidecar).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // history.get folds it in.
    let d = n.ask(
        json!({"action": "history.get", "provider": "claude", "session_id": real}),
        "history.detail",
    );
    assert_eq!(d["permission_mode"], "plan");
    assert_eq!(d["effort"], "high");
    // The launch selector, and the model id the CLI resolved it to.
    assert_eq!(d["model"], "opus");
    assert_eq!(d["resolved_model"], "fake-model-1");
    // A running turn shows in the listing.
    n.cmd(json!({"action": "session.send", "session_id": real, "prompt": "slow 300"}));
    n.until("session.text_delta");
    let snap = n.ask(json!({"action": "history.list"}), "history.snapshot");
    let me = snap["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == real.as_str())
        .cloned()
        .unwrap();
    assert_eq!(me["running"], true);
    assert_eq!(me["unread"], false, "a running session is never unread");
    n.cmd(json!({"action": "session.close", "session_id": real}));
    n.until("session.closed");
    // Resuming from history without settings restores them from the sidecar.
    n.cmd(json!({"action": "session.start", "session_id": "again", "prompt": "say back", "resume_session_id": real}));
    let ev = n.until("session.result");
    let started = named(&ev, "session.started")[0];
    assert_eq!(started["model"], "opus");
    assert_eq!(started["resolved_model"], "fake-model-1");
    assert_eq!(started["permission_mode"], "plan");
    assert_eq!(started["effort"], "high");
    assert_eq!(started["cwd"], cwd.as_str());
}

#[test]
fn directory_picker() {
    let n = Node::start(&[]);
    let root = n.home.join("tree");
    fs::create_dir_all(root.join("Beta")).unwrap();
    fs::create_dir_all(root.join("alpha")).unwrap();
    fs::create_dir_all(root.join(".hidden_dir")).unwrap();
    fs::write(root.join("Zed.txt"), b"z").unwrap();
    fs::write(root.join("apple.txt"), b"a").unwrap();
    fs::write(root.join(".secret"), b"s").unwrap();
    let r = n.ask(
        json!({"action": "fs.list", "path": root, "trace_id": "f1"}),
        "fs.list",
    );
    assert_eq!(r["trace_id"], "f1");
    assert_eq!(r["path"], root.to_str().unwrap());
    assert_eq!(r["parent"], n.home.path().to_str().unwrap());
    assert_eq!(r["sep"], "/");
    let names: Vec<(&str, &str)> = r["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("alpha", "dir"),
            ("Beta", "dir"),
            ("apple.txt", "file"),
            ("Zed.txt", "file")
        ]
    );
    assert_eq!(
        r["entries"][0]["path"],
        root.join("alpha").to_str().unwrap()
    );
    assert_eq!(r["truncated"], false);
    let r = n.ask(
        json!({"action": "fs.list", "path": root, "show_hidden": true}),
        "fs.list",
    );
    assert_eq!(r["entries"].as_array().unwrap().len(), 6);
    assert_eq!(r["entries"][0]["name"], ".hidden_dir");
    // A file lists its parent; ~ is home; the default is home.
    let r = n.ask(
        json!({"action": "fs.list", "path": root.join("apple.txt")}),
        "fs.list",
    );
    assert_eq!(r["path"], root.to_str().unwrap());
    let r = n.ask(json!({"action": "fs.list", "path": "~/tree"}), "fs.list");
    assert_eq!(r["path"], root.to_str().unwrap());
    let r = n.ask(json!({"action": "fs.list"}), "fs.list");
    assert_eq!(r["path"], n.home.path().to_str().unwrap());
    let r = n.ask(json!({"action": "fs.list", "path": "/"}), "fs.list");
    assert!(r["parent"].is_null());
    // Errors are a field, with no entries.
    let r = n.ask(
        json!({"action": "fs.list", "path": "/no/such/place"}),
        "fs.list",
    );
    assert_eq!(r["error"], "not found");
    assert!(r["entries"].as_array().unwrap().is_empty());
    // 1500 entries: 1000 returned, flagged.
    let many = n.home.join("many");
    fs::create_dir_all(&many).unwrap();
    for i in 0..1500 {
        fs::write(many.join(format!("f{i:04}")), b"").unwrap();
    }
    fs::create_dir_all(many.join("zz_dir")).unwrap();
    let r = n.ask(json!({"action": "fs.list", "path": many}), "fs.list");
    let e = r["entries"].as_array().unwrap();
    assert_eq!(e.len(), 1000);
    assert_eq!(r["truncated"], true);
    assert_eq!(e[0]["name"], "zz_dir", "dirs first even when truncated");
    assert_eq!(e[1]["name"], "f0000");
}

#[test]
fn capabilities_probe_once_and_cache() {
    let n = Node::start(&[("CODING_BRIDGE_CODEX_PATH", "/nonexistent/codex")]);
    let caps = n.ask(
        json!({"action": "capabilities.get", "trace_id": "c1"}),
        "capabilities",
    );
    assert_eq!(caps["trace_id"], "c1");
    let p = &caps["providers"][0];
    assert_eq!(p["name"], "claude");
    assert_eq!(p["available"], true);
    let models: Vec<&str> = p["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        models,
        ["", "sonnet", "sonnet[1m]", "opus", "opus[1m]", "haiku"]
    );
    assert_eq!(p["models"][0]["label"], "Default (from settings)");
    assert_eq!(p["efforts"], json!(["", "low", "medium", "high", "max"]));
    assert_eq!(
        p["permission_modes"],
        json!(["default", "acceptEdits", "plan", "bypassPermissions"])
    );
    assert_eq!(p["allow_custom_model"], true);
    assert_eq!(p["supports_edit"], true);
    assert_eq!(p["supports_code_restore"], true);
    let cmds = p["commands"].as_array().unwrap();
    assert_eq!(
        cmds[0],
        json!({"name": "review", "description": "Review the diff", "argument_hint": "[target]", "aliases": []})
    );
    assert_eq!(cmds[1]["aliases"], json!(["squash"]));
    let probes = n.log().iter().filter(|l| l.get("start").is_some()).count();
    assert_eq!(probes, 1);
    // Every provider is listed; one that is not installed says so.
    let codex = &caps["providers"][1];
    assert_eq!(codex["name"], "codex");
    assert_eq!(codex["available"], false);
    assert_eq!(codex["supports_edit"], false);
    assert_eq!(codex["models"][0]["value"], "");
    n.ask(json!({"action": "capabilities.get"}), "capabilities");
    assert_eq!(
        n.log().iter().filter(|l| l.get("start").is_some()).count(),
        1,
        "the probe is cached"
    );

    // Without the CLI: unavailable, no commands, and the heartbeat says so.
    let n = Node::start(&[("CODING_BRIDGE_CLAUDE_PATH", "/nonexistent/claude")]);
    let caps = n.ask(json!({"action": "capabilities.get"}), "capabilities");
    assert_eq!(caps["providers"][0]["available"], false);
    assert_eq!(caps["providers"][0]["commands"], json!([]));
}

#[test]
fn heartbeat_lists_installed_providers() {
    let n = Node::start(&[]);
    // The first heartbeat was consumed by start(); force a reconnect to see another.
    n.relay.drop_all();
    let hb = n.relay.recv_type("node.heartbeat", T).unwrap();
    assert_eq!(hb["payload"]["capabilities"], json!(["claude", "history"]));
    let m = Node::start(&[("CODING_BRIDGE_CLAUDE_PATH", "/nonexistent/claude")]);
    m.relay.drop_all();
    let hb = m.relay.recv_type("node.heartbeat", T).unwrap();
    assert_eq!(hb["payload"]["capabilities"], json!(["history"]));
}

const PNG_1PX: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

#[test]
fn images_are_saved_safely_and_noted_in_the_prompt() {
    let n = Node::start(&[]);
    let cwd = n.home.path().to_str().unwrap().to_string();
    n.cmd(json!({"action": "session.start", "session_id": "img", "prompt": "look at these", "cwd": cwd, "images": [
        format!("data:image/png;base64,{PNG_1PX}"),
        {"data": PNG_1PX, "name": "../../../../etc/evil.gif", "media_type": "image/jpeg"},
        {"base64": PNG_1PX, "name": "..", "mime": "image/webp"},
        {"url": format!("data:image/png;base64,{PNG_1PX}"), "name": "shot.png"},
        {"data": "!!!not base64!!!"},
        42,
    ]}));
    let ev = n.until("session.result");
    let notices: Vec<&str> = named(&ev, "session.notice")
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(
        notices
            .iter()
            .any(|t| t.contains("image 5 skipped: not valid base64"))
    );
    assert!(
        notices
            .iter()
            .any(|t| t.contains("image 6 skipped: not a string or an object"))
    );
    let images = n.home.join(".tmp/images");
    let dirs: Vec<PathBuf> = fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1);
    assert!(
        dirs[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("img-")
    );
    let mut files: Vec<String> = fs::read_dir(&dirs[0])
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["evil.jpg", "image-1.png", "image-3.webp", "shot.png"]
    );
    assert!(!Path::new("/etc/evil.gif").exists());
    assert_eq!(
        fs::read(dirs[0].join("image-1.png")).unwrap()[..4],
        *b"\x89PNG"
    );
    // The prompt the CLI got lists the saved files.
    let prompt = n.stdin_of("user")[0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(prompt.starts_with("look at these"));
    for f in &files {
        assert!(
            prompt.contains(&dirs[0].join(f).display().to_string()),
            "{prompt}"
        );
    }
}

/// A loopback HTTPS file server: `/ok.txt`, `/huge` (60 MiB, no length: aborted while
/// streaming), `/declared` (announces 60 MiB), anything else 404.
fn https_server(config: std::sync::Arc<rustls::ServerConfig>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match std::io::Read::read(&mut tls, &mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let path = line.split_whitespace().nth(1).unwrap_or("");
                let _ = match path {
                    "/ok.txt" => tls.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                    ),
                    "/declared" => tls.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 62914560\r\nConnection: close\r\n\r\n",
                    ),
                    "/huge" => {
                        let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                        let chunk = vec![b'q'; 1 << 20];
                        for _ in 0..60 {
                            if tls.write_all(&chunk).is_err() {
                                return;
                            }
                        }
                        Ok(())
                    }
                    _ => tls.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

#[test]
fn attachments_are_downloaded_from_allowed_hosts_with_size_caps() {
    let (ca_pem, server) = test_tls();
    let port = https_server(server);
    let home = TempDir::new("att");
    let ca = home.join("ca.pem");
    fs::write(&ca, ca_pem).unwrap();
    let n = Node::start_in(
        home,
        &[
            ("CODING_BRIDGE_ATTACHMENT_HOSTS", "localhost"),
            ("CODING_BRIDGE_CA_FILE", ca.to_str().unwrap()),
        ],
    );
    let cwd = n.home.path().to_str().unwrap().to_string();
    let base = format!("https://localhost:{port}");
    let mut items = vec![
        json!(format!("{base}/ok.txt")),
        json!({"url": format!("{base}/ok.txt"), "name": "../../renamed.txt"}),
        json!(format!("{base}/huge")),
        json!(format!("{base}/declared")),
        json!(format!("{base}/missing")),
        json!("https://evil.example/steal.sh"),
        json!(format!("http://localhost:{port}/ok.txt")),
    ];
    for _ in 0..5 {
        items.push(json!(format!("{base}/ok.txt")));
    }
    n.cmd(json!({"action": "session.start", "session_id": "att", "prompt": "read these", "cwd": cwd, "attachments": items}));
    let ev = n.until("session.result");
    let notices: Vec<String> = named(&ev, "session.notice")
        .iter()
        .map(|n| n["text"].as_str().unwrap().to_string())
        .collect();
    let has = |s: &str| notices.iter().any(|t| t.contains(s));
    assert!(
        has("attachment 3 skipped: larger than 50 MiB; download stopped"),
        "{notices:#?}"
    );
    assert!(
        has("attachment 4 skipped: larger than 50 MiB"),
        "{notices:#?}"
    );
    assert!(
        has("attachment 5 skipped: the server answered HTTP 404"),
        "{notices:#?}"
    );
    assert!(
        has("attachment 6 skipped: host evil.example is not on the allowed list"),
        "{notices:#?}"
    );
    assert!(
        has("attachment 7 skipped: only https:// URLs are downloaded"),
        "{notices:#?}"
    );
    assert!(has("only the first 10 attachments"), "{notices:#?}");
    let root = n.home.join(".tmp/attachments");
    let dir = fs::read_dir(&root).unwrap().next().unwrap().unwrap().path();
    let mut files: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["2-ok.txt", "3-ok.txt", "4-ok.txt", "ok.txt", "renamed.txt"],
        "no partial or foreign files"
    );
    assert_eq!(fs::read_to_string(dir.join("ok.txt")).unwrap(), "hello");
    let prompt = n.stdin_of("user")[0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        prompt.contains(&dir.join("renamed.txt").display().to_string()),
        "{prompt}"
    );
    assert!(!prompt.contains("huge"));
}

#[test]
fn directory_picker_reports_permission_denied() {
    // As root every directory is readable, so the daemon runs without the capabilities
    // that bypass file permissions (setpriv from util-linux); skipped where unavailable.
    let ok = std::process::Command::new("setpriv")
        .args(["--bounding-set=-dac_override,-dac_read_search", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED permission-denied test: setpriv cannot drop capabilities here");
        return;
    }
    let relay = FakeRelay::start();
    let home = TempDir::new("perm");
    let locked = home.join("locked");
    fs::create_dir_all(&locked).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    let mut c = wrapped(
        &["setpriv", "--bounding-set=-dac_override,-dac_read_search"],
        &agent(&home),
    );
    c.current_dir(home.path())
        .env("CODING_BRIDGE_URL", relay.url())
        .env("CODING_BRIDGE_NODE_TOKEN", "tok-perm")
        .arg("run");
    let d = Daemon::spawn(c, &home);
    relay
        .recv_type("node.heartbeat", T)
        .unwrap_or_else(|| panic!("no link: {}", d.stderr()));
    relay.command("p1", json!({"action": "fs.list", "path": locked}));
    let r = relay.recv_event("fs.list", T).expect("fs.list reply");
    assert_eq!(r["payload"]["error"], "permission denied");
    assert!(r["payload"]["entries"].as_array().unwrap().is_empty());
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn history_limit_is_clamped_to_1000() {
    let home = TempDir::new("hist-limit");
    let dir = project_dir(home.path(), "/many");
    for i in 0..1005 {
        fs::write(
            dir.join(format!("s-{i:04}.jsonl")),
            rec(json!({"type": "user", "message": {"role": "user", "content": format!("prompt {i}")}})),
        )
        .unwrap();
    }
    let n = Node::start_in(home, &[]);
    let snap = n.ask(
        json!({"action": "history.list", "limit": 5000}),
        "history.snapshot",
    );
    assert_eq!(snap["sessions"].as_array().unwrap().len(), 1000);
    let snap = n.ask(json!({"action": "history.list"}), "history.snapshot");
    assert_eq!(
        snap["sessions"].as_array().unwrap().len(),
        200,
        "the default limit"
    );
}

fn set_mtime_ms(p: &Path, ms: u64) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
        .unwrap();
}

fn entry<'a>(snap: &'a Value, id: &str) -> &'a Value {
    snap["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {snap}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// PROTOCOL §6/§7: `unread` and `history.mark_read`, with reads.json.
#[test]
fn unread_marks_have_a_baseline_a_rising_watermark_and_survive_bad_files() {
    let home = TempDir::new("unread");
    let dir = project_dir(home.path(), "/p");
    let mut paths = Vec::new();
    for i in 0..25 {
        let id = format!("sess-{i:02}");
        let p = dir.join(format!("{id}.jsonl"));
        fs::write(&p, rec(json!({"type": "user", "message": {"role": "user", "content": format!("prompt {i}")}, "cwd": "/p"}))).unwrap();
        set_mtime(&p, 3600);
        paths.push(p);
    }
    let n = Node::start_in(home, &[]);
    let reads = n.home.join("cfg/reads.json");
    let saved: Value = serde_json::from_str(&fs::read_to_string(&reads).unwrap()).unwrap();
    assert!(
        saved["baseline"].as_u64().unwrap() > now_ms() - 60_000,
        "{saved}"
    );
    // A fresh install shows nothing unread, however recent the history.
    let snap = n.ask(json!({"action": "history.list"}), "history.snapshot");
    assert!(
        snap["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["unread"] == false),
        "{snap}"
    );
    // Updated after the baseline: unread.
    let t1 = now_ms() + 5_000;
    set_mtime_ms(&paths[0], t1);
    let snap = n.ask(json!({"action": "history.list"}), "history.snapshot");
    assert_eq!(entry(&snap, "sess-00")["unread"], true);
    assert_eq!(entry(&snap, "sess-00")["updated_at"], t1);
    // Marked read: the answer is a fresh snapshot with the same limit.
    let snap = n.ask(
        json!({"action": "history.mark_read", "provider": "claude", "session_id": "sess-00",
               "updated_at": t1, "limit": 3, "trace_id": "m1"}),
        "history.snapshot",
    );
    assert_eq!(snap["trace_id"], "m1");
    assert_eq!(snap["sessions"].as_array().unwrap().len(), 3);
    assert_eq!(entry(&snap, "sess-00")["unread"], false);
    // The watermark never goes back.
    let snap = n.ask(
        json!({"action": "history.mark_read", "provider": "claude", "session_id": "sess-00", "updated_at": 5}),
        "history.snapshot",
    );
    assert_eq!(entry(&snap, "sess-00")["unread"], false);
    // Updated again: unread again; a mark without updated_at takes the transcript's time.
    let t2 = t1 + 5_000;
    set_mtime_ms(&paths[0], t2);
    let snap = n.ask(json!({"action": "history.list"}), "history.snapshot");
    assert_eq!(entry(&snap, "sess-00")["unread"], true);
    let snap = n.ask(
        json!({"action": "history.mark_read", "provider": "claude", "session_id": "sess-00"}),
        "history.snapshot",
    );
    assert_eq!(entry(&snap, "sess-00")["unread"], false);
    let saved: Value = serde_json::from_str(&fs::read_to_string(&reads).unwrap()).unwrap();
    assert_eq!(saved["reads"]["claude:sess-00"], t2);
    // Bad marks never cost a session.error.
    n.cmd(json!({"action": "history.mark_read", "provider": "claude", "session_id": "../x"}));
    let ev = n.until("history.snapshot");
    assert!(named(&ev, "session.error").is_empty(), "{ev:?}");

    // Twenty marks at once: none lost.
    for p in &paths[1..21] {
        set_mtime_ms(p, t2);
    }
    for i in 1..21 {
        n.cmd(json!({"action": "history.mark_read", "provider": "claude", "session_id": format!("sess-{i:02}"), "updated_at": t2}));
    }
    for _ in 1..21 {
        n.until("history.snapshot");
    }
    let saved: Value = serde_json::from_str(&fs::read_to_string(&reads).unwrap()).unwrap();
    for i in 0..21 {
        assert_eq!(saved["reads"][format!("claude:sess-{i:02}")], t2, "{saved}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&reads).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Marks and baseline survive a restart.
    let home = n.stop();
    set_mtime_ms(&paths[21], t2);
    let n = Node::start_in(home, &[]);
    let snap = n.ask(json!({"action": "history.list"}), "history.snapshot");
    assert_eq!(entry(&snap, "sess-00")["unread"], false);
    assert_eq!(
        entry(&snap, "sess-21")["unread"],
        true,
        "updated after the old baseline"
    );

    // An unreadable reads.json (here a directory) breaks neither listing nor marking,
    // and is not replaced while it cannot be read.
    let home = n.stop();
    let kept = fs::read(&reads).unwrap();
    fs::rename(&reads, home.join("cfg/reads.keep")).unwrap();
    fs::create_dir(&reads).unwrap();
    let n = Node::start_in(home, &[]);
    let snap = n.ask(
        json!({"action": "history.mark_read", "provider": "claude", "session_id": "sess-21", "updated_at": t2}),
        "history.snapshot",
    );
    assert_eq!(entry(&snap, "sess-21")["unread"], false, "held in memory");
    assert!(reads.is_dir(), "not replaced");
    // Readable again: the next mark merges the file's marks with the one held in memory.
    fs::remove_dir(&reads).unwrap();
    fs::write(&reads, &kept).unwrap();
    set_mtime_ms(&paths[22], t2);
    n.ask(
        json!({"action": "history.mark_read", "provider": "claude", "session_id": "sess-22", "updated_at": t2}),
        "history.snapshot",
    );
    let saved: Value = serde_json::from_str(&fs::read_to_string(&reads).unwrap()).unwrap();
    for id in ["sess-00", "sess-20", "sess-21", "sess-22"] {
        assert_eq!(saved["reads"][format!("claude:{id}")], t2, "{id}: {saved}");
    }

    // A corrupt file is set aside (kept), the listing still works.
    let home = n.stop();
    fs::write(&reads, b"{\"baseline\": tru").unwrap();
    let n = Node::start_in(home, &[]);
    let snap = n.ask(json!({"action": "history.list"}), "history.snapshot");
    assert_eq!(snap["sessions"].as_array().unwrap().len(), 25);
    let aside: Vec<_> = fs::read_dir(n.home.join("cfg"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("reads.json.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(fs::read(aside[0].path()).unwrap(), b"{\"baseline\": tru");
}

/// Titles: Claude Code's own title record, else the first real prompt (a slash command
/// as typed), else "(no prompt)"; transcripts under `$CLAUDE_CONFIG_DIR`.
#[test]
fn titles_come_from_title_records_and_claude_config_dir_is_honoured() {
    let home = TempDir::new("titles");
    let alt = home.join("alt-claude");
    let dir = alt.join("projects/-p");
    fs::create_dir_all(&dir).unwrap();
    // Decoy under ~/.claude: must not be listed.
    let decoy = project_dir(home.path(), "/p");
    fs::write(
        decoy.join("decoy-0001.jsonl"),
        rec(json!({"type": "user", "message": {"role": "user", "content": "decoy"}})),
    )
    .unwrap();
    let user = |t: &str| {
        rec(json!({"type": "user", "message": {"role": "user", "content": t}, "cwd": "/p"}))
    };
    fs::write(
        dir.join("titled-0001.jsonl"),
        user("<command-name>/init</command-name>") + &user("real question")
            + &rec(json!({"type": "ai-title", "aiTitle": "Old title", "sessionId": "titled-0001"}))
            + &rec(json!({"type": "assistant", "message": {"model": "claude-x", "content": [{"type": "text", "text": "ok"}]}}))
            + &rec(json!({"type": "ai-title", "aiTitle": "Fixing   the\nparser", "sessionId": "titled-0001"}))
            // Written while Claude Code refines a title: they must not wipe it.
            + &rec(json!({"type": "ai-title", "aiTitle": "", "sessionId": "titled-0001"}))
            + &rec(json!({"type": "ai-title", "aiTitle": "  ", "sessionId": "titled-0001"})),
    )
    .unwrap();
    // A title the user set wins over the AI's, and an empty one does not wipe it either.
    fs::write(
        dir.join("custom-0001.jsonl"),
        user("first prompt")
            + &rec(json!({"type": "custom-title", "customTitle": "My name", "sessionId": "custom-0001"}))
            + &rec(json!({"type": "ai-title", "aiTitle": "AI name", "sessionId": "custom-0001"}))
            + &rec(json!({"type": "custom-title", "customTitle": "", "sessionId": "custom-0001"})),
    )
    .unwrap();
    fs::write(
        dir.join("slash-0001.jsonl"),
        user("<command-message>review</command-message>\n<command-name>/review</command-name>\n<command-args>PR 12</command-args>")
            + &user("<system-reminder>x</system-reminder>"),
    )
    .unwrap();
    fs::write(
        dir.join("empty-0001.jsonl"),
        user("<system-reminder>only context</system-reminder>"),
    )
    .unwrap();
    fs::write(dir.join("long-0001.jsonl"), user(&"word ".repeat(50))).unwrap();
    let n = Node::start_in(home, &[("CLAUDE_CONFIG_DIR", alt.to_str().unwrap())]);
    let snap = n.ask(json!({"action": "history.list"}), "history.snapshot");
    assert_eq!(snap["sessions"].as_array().unwrap().len(), 5, "{snap}");
    assert_eq!(entry(&snap, "custom-0001")["title"], "My name");
    assert_eq!(
        entry(&snap, "titled-0001")["title"],
        "Fixing the parser",
        "the last title record"
    );
    assert_eq!(entry(&snap, "slash-0001")["title"], "/review PR 12");
    assert_eq!(entry(&snap, "empty-0001")["title"], "(no prompt)");
    let long = entry(&snap, "long-0001")["title"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(long.chars().count(), 80);
    let d = n.ask(
        json!({"action": "history.get", "provider": "claude", "session_id": "titled-0001"}),
        "history.detail",
    );
    assert_eq!(d["title"], "Fixing the parser");
    assert_eq!(d["resolved_model"], "claude-x");
    let e = n.ask(
        json!({"action": "history.get", "provider": "claude", "session_id": "decoy-0001"}),
        "session.error",
    );
    assert_eq!(e["session_id"], "decoy-0001");
}

/// Issue 19: the summary index in the config dir. A restarted daemon takes a file's
/// summary from it while the file keeps its size and time (it does not read it again),
/// reads only what a transcript gained since, and rebuilds an index it cannot read.
#[test]
fn a_restarted_daemon_summarizes_only_what_changed() {
    let home = TempDir::new("hist-index");
    let dir = project_dir(home.path(), "/w");
    let title = |snap: &Value, id: &str| {
        snap["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["session_id"] == id)
            .map(|s| {
                (
                    s["title"].as_str().unwrap().to_string(),
                    s["message_count"].clone(),
                )
            })
            .unwrap()
    };
    let prompt = |text: &str| {
        rec(
            json!({"type": "user", "message": {"role": "user", "content": text}, "uuid": "u1", "cwd": "/w"}),
        )
    };
    let kept = dir.join("kept-0001.jsonl");
    let grown = dir.join("grown-0001.jsonl");
    fs::write(&kept, prompt("first title AAAA")).unwrap();
    fs::write(&grown, prompt("grows later")).unwrap();
    set_mtime(&kept, 600);
    set_mtime(&grown, 500);
    let n = Node::start_in(home, &[]);
    let snap = n.ask(json!({"action": "history.list"}), "history.snapshot");
    assert_eq!(title(&snap, "kept-0001").0, "first title AAAA");
    let index = n.home.join("cfg/history-index.json");
    assert!(wait_until(T, || index.exists()), "no index written");
    let home = n.stop();

    // Same size and time, other words: the index's summary stands (not read again).
    let was = fs::metadata(&kept).unwrap().modified().unwrap();
    fs::write(&kept, prompt("other title BBBB")).unwrap();
    fs::File::options()
        .write(true)
        .open(&kept)
        .unwrap()
        .set_modified(was)
        .unwrap();
    // Appended: only what was appended is read (the head's words, changed in place to
    // prove it, are not read again), and it is counted.
    let mut more = fs::read_to_string(&grown)
        .unwrap()
        .replace("grows later", "GROWS LATER");
    more += &rec(
        json!({"type": "assistant", "message": {"content": [{"type": "text", "text": "ok"}]}, "uuid": "a1"}),
    );
    fs::write(&grown, more).unwrap();
    let n = Node::start_in(home, &[]);
    let snap = n.ask(json!({"action": "history.list"}), "history.snapshot");
    assert_eq!(
        title(&snap, "kept-0001").0,
        "first title AAAA",
        "read again"
    );
    assert_eq!(title(&snap, "grown-0001").1, 2, "the change was missed");
    assert_eq!(
        title(&snap, "grown-0001").0,
        "grows later",
        "summarized whole, not from where it grew"
    );
    let home = n.stop();

    // A corrupt index is not trusted: everything is summarized afresh, and it is rebuilt.
    fs::write(home.join("cfg/history-index.json"), b"{not json").unwrap();
    let n = Node::start_in(home, &[]);
    let snap = n.ask(json!({"action": "history.list"}), "history.snapshot");
    assert_eq!(title(&snap, "kept-0001").0, "other title BBBB");
    assert!(
        wait_until(T, || fs::read(n.home.join("cfg/history-index.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some()),
        "the index was not rebuilt"
    );
    assert!(
        n.daemon.stderr().contains("rebuilding it"),
        "{}",
        n.daemon.stderr()
    );
    let meta = fs::metadata(n.home.join("cfg/history-index.json")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}
