//! Issue 12: chat channels. `channels init` and `channels doctor` (against a fake Bot API
//! on loopback), and a broken `channels.toml` stopping the daemon with its line named.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use serde_json::json;
use support::http;
use support::*;

const TOKEN: &str = "123456:TEST-token-never-printed";

/// A fake Bot API answering getMe for TOKEN; records the paths asked.
fn fake_bot_api() -> (u16, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let port = http::serve(move |mut s| {
        let Ok(Some(req)) = http::read_request(&mut s) else {
            return;
        };
        let path = req.line.split_whitespace().nth(1).unwrap_or("").to_string();
        log.lock().unwrap().push(path.clone());
        if path == format!("/bot{TOKEN}/getMe") {
            let _ = http::json_reply(
                &mut s,
                "200 OK",
                &json!({"ok": true, "result": {"id": 42, "is_bot": true, "username": "fakebot"}})
                    .to_string(),
            );
        } else {
            let _ = http::json_reply(
                &mut s,
                "401 Unauthorized",
                &json!({"ok": false, "error_code": 401, "description": "Unauthorized"}).to_string(),
            );
        }
    });
    (port, seen)
}

#[test]
fn init_writes_a_private_skeleton_once() {
    let home = TempDir::new("ch-init");
    let out = run(agent(&home).args(["channels", "init"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let path = home.join("cfg/channels.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("[[channels.telegram]]") && text.contains("token_env"));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = run(agent(&home).args(["channels", "init"]));
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("exists already"));
    // The skeleton is valid (and disabled): doctor reads it.
    let doc = run(agent(&home).args(["channels", "doctor"]));
    assert!(stdout(&doc).contains("telegram main:"), "{}", stdout(&doc));
}

#[test]
fn a_broken_file_is_an_error_naming_the_line() {
    let home = TempDir::new("ch-bad");
    std::fs::create_dir_all(home.join("cfg")).unwrap();
    std::fs::write(
        home.join("cfg/channels.toml"),
        "[[channels.telegram]]\ntoken_env = \"TG\"\nallowed_senders = [1,\n",
    )
    .unwrap();
    for args in [&["channels", "doctor"][..], &["run"][..]] {
        let mut c = agent(&home);
        c.env("CODING_BRIDGE_NODE_TOKEN", "tok")
            .env("CODING_BRIDGE_URL", "http://127.0.0.1:9");
        let out = run(c.args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("channels.toml line 3"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // The token itself in the file is refused.
    std::fs::write(
        home.join("cfg/channels.toml"),
        "[[channels.telegram]]\ntoken = \"1:x\"\n",
    )
    .unwrap();
    let out = run(agent(&home).args(["channels", "doctor"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("line 2") && stderr(&out).contains("token_env"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn doctor_reaches_each_bot_without_printing_the_token() {
    let (port, seen) = fake_bot_api();
    let home = TempDir::new("ch-doctor");
    std::fs::create_dir_all(home.join("cfg")).unwrap();
    std::fs::write(home.join("tok.txt"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(
        home.join("cfg/channels.toml"),
        format!(
            "[[channels.telegram]]\ninstance_id = \"a\"\napi_base = \"http://127.0.0.1:{port}\"\ntoken_env = \"TG_TOKEN\"\nallowed_senders = [1]\n\n\
             [[channels.telegram]]\ninstance_id = \"b\"\napi_base = \"http://127.0.0.1:{port}\"\ntoken_file = \"{}\"\nallowed_senders = [1]\n\n\
             [[channels.telegram]]\ninstance_id = \"c\"\napi_base = \"http://127.0.0.1:{port}\"\ntoken_env = \"TG_WRONG\"\nallowed_senders = [1]\n\n\
             [[channels.telegram]]\ninstance_id = \"d\"\napi_base = \"http://127.0.0.1:{port}\"\ntoken_env = \"TG_UNSET\"\n",
            home.join("tok.txt").display()
        ),
    )
    .unwrap();
    let mut c = agent(&home);
    c.env("TG_TOKEN", TOKEN)
        .env("TG_WRONG", "999:wrong-token")
        .args(["-v", "channels", "doctor"]);
    let out = run(&mut c);
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(o.contains("telegram a: ok, bot @fakebot"), "{o}");
    assert!(o.contains("telegram b: ok, bot @fakebot"), "{o}");
    assert!(
        o.contains("telegram c: getMe failed: the bot token was refused"),
        "{o}"
    );
    assert!(
        o.contains("telegram d: the variable TG_UNSET (token_env) is not set"),
        "{o}"
    );
    assert_eq!(out.status.code(), Some(1), "one bot fails");
    assert!(
        !o.contains("TEST-token") && !e.contains("TEST-token"),
        "the token is never printed"
    );
    assert!(!o.contains("wrong-token") && !e.contains("wrong-token"));
    assert!(seen.lock().unwrap().iter().any(|p| p.ends_with("/getMe")));
    // --json: one object per instance.
    let mut c = agent(&home);
    c.env("TG_TOKEN", TOKEN)
        .env("TG_WRONG", "x:y")
        .args(["channels", "doctor", "--json"]);
    let out = run(&mut c);
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["ok"], true);
    assert_eq!(lines[0]["bot"], "fakebot");
    assert_eq!(lines[3]["ok"], false);
}
