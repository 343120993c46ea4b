//! Issue 12: driving sessions from Telegram, against the fake Bot API of
//! [`support::telegram`] and the scripted fake Claude Code CLI (the real CLI from a chat
//! is in `tests/real_claude.rs`).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::node::{Node, example};
use support::telegram::*;
use support::*;

/// Write the channel config and start the node with the token in its environment.
fn start_node(bot: &FakeBot, home: TempDir, extra: &str) -> Node {
    start_node_env(bot, home, extra, &[])
}

/// [`start_node`] with more variables for the daemon.
fn start_node_env(bot: &FakeBot, home: TempDir, extra: &str, env: &[(&str, &str)]) -> Node {
    std::fs::create_dir_all(home.join("cfg")).unwrap();
    std::fs::create_dir_all(home.join("work")).unwrap();
    std::fs::write(
        home.join("cfg/channels.toml"),
        format!(
            "[[channels.telegram]]\ninstance_id = \"main\"\nenabled = true\napi_base = \"http://127.0.0.1:{}\"\n\
             token_env = \"TG_TOKEN\"\nallowed_senders = [{ME}]\nallowed_groups = [{GROUP}]\n\
             trigger_prefix = \"/ask \"\ncwd = \"{}\"\npoll_timeout_seconds = 1\n{extra}",
            bot.port,
            home.join("work").display()
        ),
    )
    .unwrap();
    let mut all = vec![("TG_TOKEN", TOKEN)];
    all.extend_from_slice(env);
    Node::start_in(home, &all)
}

fn every_file_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            every_file_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn a_chat_drives_one_session_with_approvals_as_buttons() {
    let bot = FakeBot::start();
    let n = start_node(&bot, TempDir::new("tg-main"), "");
    let work = n.home.join("work");

    // A text turn, then a follow-up in the same session (the fake CLI recalls the first).
    bot.message(ME, ME, "say hello from the agent");
    bot.wait_shown(ME, "the reply", |t| t == "hello from the agent");
    bot.message(ME, ME, "recall");
    bot.wait_shown(ME, "the follow-up", |t| {
        t == "first prompt was: say hello from the agent"
    });
    assert_eq!(n.starts().len(), 1, "one session, one CLI");
    assert_eq!(
        n.starts()[0]["cwd"],
        work.to_str().unwrap(),
        "the channel's cwd"
    );
    assert!(bot.count("sendChatAction") >= 1, "a typing indicator");

    // Strangers are ignored: a private chat, a group the bot does not serve, and in the
    // served group a message without the prefix.
    bot.forget_calls();
    bot.message(999, 999, "say hi");
    bot.message(ME, -777, "/ask say hi");
    bot.message(ME, GROUP, "say no prefix");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        bot.calls()
            .iter()
            .all(|(m, _)| m != "sendMessage" && m != "sendChatAction"),
        "{:?}",
        bot.calls()
    );
    assert_eq!(n.stdin_of("user").len(), 2, "no turn ran");
    // With the prefix, the group gets its own session; the text arrives without it.
    bot.message(ME, GROUP, "/ask say in the group");
    bot.wait_shown(GROUP, "the group's reply", |t| t == "in the group");
    let prompts = n.stdin_of("user");
    assert_eq!(
        prompts.last().unwrap()["message"]["content"],
        "say in the group",
        "{prompts:?}"
    );

    // An approval by button: a stranger's press is refused, a forged one finds nothing,
    // ours allows it and the file is written; pressing again is stale.
    bot.forget_calls();
    bot.message(
        ME,
        ME,
        r#"tool Write {"file_path": "allowed.txt", "content": "yes"}"#,
    );
    let (text, buttons) = approval(&bot);
    assert!(text.contains("Write allowed.txt"), "{text}");
    let allow = button(&buttons, "Allow").to_string();
    bot.press(999, ME, &allow);
    bot.wait("the refusal", |m, b| {
        m == "answerCallbackQuery" && b["text"].as_str().unwrap_or("").contains("not allowed")
    });
    bot.press(ME, ME, "a:1");
    bot.wait("a forged press answered", |m, b| {
        m == "answerCallbackQuery"
            && b["callback_query_id"] == "cq-a:1"
            && b["text"].as_str().unwrap_or("").contains("settled")
    });
    assert!(!work.join("allowed.txt").exists(), "nothing ran yet");
    bot.press(ME, ME, &allow);
    bot.wait("the decision shown", |m, b| {
        m == "editMessageText"
            && b["text"].as_str().unwrap_or("").starts_with("✅ Allowed")
            && b["reply_markup"]["inline_keyboard"] == json!([])
    });
    bot.wait_shown(ME, "the reply after the tool", |t| t.contains("after tool"));
    assert_eq!(
        std::fs::read_to_string(work.join("allowed.txt")).unwrap(),
        "yes"
    );
    let pressed = bot.count("answerCallbackQuery");
    bot.press(ME, ME, &allow);
    bot.wait("the stale press answered", |m, b| {
        m == "answerCallbackQuery"
            && b["text"].as_str().unwrap_or("").contains("settled")
            && b["callback_query_id"] == format!("cq-{allow}")
    });
    assert_eq!(bot.count("answerCallbackQuery"), pressed + 1);

    // Deny: the file is not written.
    bot.forget_calls();
    bot.message(
        ME,
        ME,
        r#"tool Write {"file_path": "denied.txt", "content": "no"}"#,
    );
    let (_, buttons) = approval(&bot);
    bot.press(ME, ME, button(&buttons, "Deny"));
    bot.wait("the denial shown", |m, b| {
        m == "editMessageText" && b["text"].as_str().unwrap_or("").starts_with("⛔ Denied")
    });
    bot.wait_shown(ME, "the reply after the denial", |t| {
        t.contains("after tool")
    });
    assert!(!work.join("denied.txt").exists());

    // AskUserQuestion: one button per option; the pick is the answer.
    bot.forget_calls();
    bot.message(
        ME,
        ME,
        r#"tool AskUserQuestion {"questions": [{"question": "Which color?", "header": "Color", "multiSelect": false, "options": [{"label": "Red", "description": "warm"}, {"label": "Blue", "description": "cool"}]}]}"#,
    );
    let (text, buttons) = approval(&bot);
    assert!(text.contains("Which color?"), "{text}");
    assert_eq!(
        buttons.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["Red", "Blue", "Dismiss"]
    );
    bot.press(ME, ME, button(&buttons, "Blue"));
    bot.wait("the answer shown", |m, b| {
        m == "editMessageText"
            && b["text"]
                .as_str()
                .unwrap_or("")
                .starts_with("✅ Answered: Blue")
    });
    bot.wait_shown(ME, "the reply after the question", |t| {
        t.contains("after tool")
    });
    let answer = n.stdin_of("control_response").last().unwrap().clone();
    assert_eq!(
        answer["response"]["response"]["updatedInput"]["answers"]["Which color?"], "Blue",
        "{answer}"
    );

    // /help and /status (also as /cmd@botname) answer in the chat.
    bot.message(ME, ME, "/help");
    bot.wait_shown(ME, "help", |t| t.contains("/stop") && t.contains("/new"));
    bot.message(ME, ME, "/status@fakebot");
    let status = bot.wait_shown(ME, "status", |t| t.contains("Provider: claude"));
    assert!(
        status.contains(work.to_str().unwrap())
            && status.contains("Model:")
            && status.contains("Agent: idle")
            && status.contains("Turn running: no"),
        "{status}"
    );

    // The token is nowhere an agent or a log could show it: the agent's environment
    // (recorded by the fake CLI at each start), the daemon's log and command line, and
    // every file the daemon and the agent wrote.
    let pid = n.starts()[0]["start"].as_u64().unwrap();
    let environ = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap())
        .into_owned();
    assert!(environ.contains("PATH="), "the agent is alive");
    assert!(
        !environ.contains("fake-bot-token") && !environ.contains("TG_TOKEN"),
        "the agent's environment"
    );
    assert!(!n.daemon.stderr().contains("fake-bot-token"), "the log");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", n.daemon.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("fake-bot-token"));
    let mut files = Vec::new();
    every_file_under(n.home.path(), &mut files);
    assert!(files.len() > 3);
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("fake-bot-token"),
            "{}",
            f.display()
        );
    }
}

#[test]
fn turns_queue_stop_and_start_afresh() {
    let bot = FakeBot::start();
    let n = start_node(&bot, TempDir::new("tg-turns"), "");

    // A slow turn: the typing indicator is renewed while it works, the reply is edited
    // as it grows (about once a second), and a message sent meanwhile is queued.
    bot.message(ME, ME, "slow 120");
    bot.wait_shown(ME, "the first part", |t| t.starts_with("0 1"));
    bot.message(ME, ME, "say the queued one");
    bot.wait_shown(ME, "the queued notice", |t| t.starts_with("Queued"));
    bot.wait_shown(ME, "the queued turn's reply", |t| t == "the queued one");
    assert!(
        bot.count("sendChatAction") >= 2,
        "typing renewed: {:?}",
        bot.calls()
    );
    let edits = bot.count("editMessageText");
    assert!(
        (2..=12).contains(&edits),
        "edited about once a second, not per delta: {edits}"
    );
    assert_eq!(
        n.stdin_of("user").len(),
        2,
        "both messages reached the agent"
    );

    // A blank message runs nothing.
    let before = n.stdin_of("user").len();
    bot.message(ME, ME, "   ");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(n.stdin_of("user").len(), before);

    // /stop interrupts the running turn.
    bot.message(ME, ME, "slow 400");
    bot.wait_shown(ME, "the slow turn", |t| {
        t.starts_with("0 1") && t.len() > 10
    });
    bot.message(ME, ME, "/stop");
    bot.wait_shown(ME, "stopping", |t| t == "Stopping…");
    wait_until(Duration::from_secs(10), || {
        !n.stdin_of("interrupt").is_empty()
    });
    assert!(
        !n.stdin_of("interrupt").is_empty(),
        "an interrupt reached the CLI"
    );
    std::thread::sleep(Duration::from_millis(800));
    bot.message(ME, ME, "/stop");
    bot.wait_shown(ME, "nothing to stop", |t| t == "Nothing is running.");

    // /new: the next message starts a fresh conversation.
    bot.message(ME, ME, "/new");
    bot.wait_shown(ME, "new", |t| t.starts_with("A new conversation"));
    bot.message(ME, ME, "recall");
    bot.wait_shown(ME, "a fresh conversation", |t| {
        t == "first prompt was: recall"
    });

    // Idle again: no more typing indicators or edits.
    std::thread::sleep(Duration::from_millis(500));
    bot.forget_calls();
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        bot.calls().is_empty(),
        "an idle chat is left alone: {:?}",
        bot.calls()
    );
}

#[test]
fn long_replies_markup_and_files() {
    let bot = FakeBot::start();
    let n = start_node(&bot, TempDir::new("tg-long"), "");
    let work = n.home.join("work");

    // A long reply full of what Telegram would take as markup: split at 4096, sent as
    // plain text (no parse_mode), nothing lost.
    let long: String = (0..700)
        .map(|i| format!("<b>{i}</b>*_[x](y)`😀 "))
        .collect();
    bot.message(ME, ME, &format!("say {long}"));
    wait_until(Duration::from_secs(30), || bot.shown(ME).concat() == long);
    let shown = bot.shown(ME);
    assert_eq!(shown.concat(), long, "the whole reply, in order");
    assert!(shown.len() >= 4, "{} messages", shown.len());
    assert!(shown.iter().all(|t| t.encode_utf16().count() <= 4096));
    assert!(
        bot.calls()
            .iter()
            .all(|(_, b)| b.get("parse_mode").is_none())
    );

    // A document and a photo become the turn's attachments, saved inside the session's
    // working directory whatever name the sender gave.
    {
        let mut g = bot.state.0.lock().unwrap();
        g.files.insert("doc1".into(), b"document bytes".to_vec());
        g.files.insert("ph-small".into(), b"tiny".to_vec());
        g.files
            .insert("ph-big".into(), b"\xff\xd8\xffbig photo".to_vec());
    }
    bot.push(json!({"message": {"message_id": 5, "from": {"id": ME}, "chat": {"id": ME, "type": "private"},
        "caption": "say got the file", "document": {"file_id": "doc1", "file_name": "../../escape.txt", "file_size": 14}}}));
    bot.wait_shown(ME, "the reply", |t| t.starts_with("got the file"));
    bot.push(json!({"message": {"message_id": 6, "from": {"id": ME}, "chat": {"id": ME, "type": "private"},
        "photo": [{"file_id": "ph-small", "file_size": 4, "width": 90, "height": 90},
                  {"file_id": "ph-big", "file_size": 12, "width": 800, "height": 800}]}}));
    wait_until(Duration::from_secs(10), || n.stdin_of("user").len() == 3);
    let prompts: Vec<String> = n
        .stdin_of("user")
        .iter()
        .map(|u| u["message"]["content"].to_string())
        .collect();
    let mut saved = Vec::new();
    every_file_under(&work.join(".tmp"), &mut saved);
    let doc = saved
        .iter()
        .find(|p| p.ends_with("escape.txt"))
        .expect("the document saved");
    assert!(
        doc.starts_with(work.join(".tmp/attachments")),
        "{}",
        doc.display()
    );
    assert_eq!(std::fs::read(doc).unwrap(), b"document bytes");
    assert!(
        prompts[1].contains("got the file") && prompts[1].contains(doc.to_str().unwrap()),
        "{}",
        prompts[1]
    );
    let photo = saved
        .iter()
        .find(|p| p.starts_with(work.join(".tmp/images")))
        .expect("the photo saved");
    assert_eq!(
        std::fs::read(photo).unwrap(),
        b"\xff\xd8\xffbig photo",
        "the largest size"
    );
    assert!(
        prompts[2].contains(photo.to_str().unwrap()),
        "{}",
        prompts[2]
    );
    assert!(!n.home.join("escape.txt").exists() && !work.join("escape.txt").exists());
}

#[test]
fn rate_limit_and_duplicates_apply_before_any_turn() {
    let bot = FakeBot::start();
    let n = start_node(&bot, TempDir::new("tg-limit"), "rate_limit_per_min = 3\n");
    let first = FakeBot::message_update(ME, ME, "say one");
    let id = bot.push(first.clone());
    bot.wait_shown(ME, "one", |t| t == "one");
    // The same update again (same id): ignored.
    let mut again = first;
    again["update_id"] = json!(id);
    bot.redeliver(again);
    bot.message(ME, ME, "say two");
    bot.wait_shown(ME, "two", |t| t == "two");
    bot.message(ME, ME, "say three");
    bot.wait_shown(ME, "three", |t| t == "three");
    bot.message(ME, ME, "say four");
    bot.wait_shown(ME, "the limit", |t| {
        t.starts_with("Too many messages: at most 3 a minute")
    });
    std::thread::sleep(Duration::from_millis(500));
    let prompts: Vec<Value> = n
        .stdin_of("user")
        .iter()
        .map(|u| u["message"]["content"].clone())
        .collect();
    assert_eq!(
        prompts,
        [json!("say one"), json!("say two"), json!("say three")]
    );
    assert!(
        n.daemon.stderr().contains("seen already"),
        "the duplicate was noticed"
    );
}

#[test]
fn server_errors_hangs_and_failed_sends_are_survived() {
    let bot = FakeBot::start();
    // Before the first poll: two 5xx answers, a webhook conflict, then a poll that hangs
    // (the client gives up after poll_timeout_seconds + 10 s).
    bot.fault(
        "getUpdates",
        Fault::Status("502 Bad Gateway", "<html>bad gateway</html>"),
    );
    bot.fault(
        "getUpdates",
        Fault::Status(
            "500 Internal Server Error",
            r#"{"ok":false,"error_code":500}"#,
        ),
    );
    bot.fault(
        "getUpdates",
        Fault::Status("409 Conflict", r#"{"ok":false,"error_code":409,"description":"Conflict: can't use getUpdates method while webhook is active"}"#),
    );
    bot.fault("getUpdates", Fault::Hang(Duration::from_secs(60)));
    // The first reply's message fails twice (500, then a hang), then goes through.
    bot.fault(
        "sendMessage",
        Fault::Status(
            "500 Internal Server Error",
            r#"{"ok":false,"error_code":500}"#,
        ),
    );
    bot.fault("sendMessage", Fault::Hang(Duration::from_secs(60)));
    let n = start_node(&bot, TempDir::new("tg-faults"), "");
    bot.wait("the webhook removed", |m, _| m == "deleteWebhook");
    bot.message(ME, ME, "say made it");
    // The poll faults cost 1 + 2 + 4 s of back-off and an 11 s hang; the send faults a
    // short retry and another 11 s hang.
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(50), || bot
            .shown(ME)
            .iter()
            .any(|t| t == "made it")),
        "chat shows {:?}",
        bot.shown(ME)
    );
    assert!(t0.elapsed() < Duration::from_secs(45), "{:?}", t0.elapsed());
    assert_eq!(
        bot.count("getUpdates!"),
        4,
        "every scripted poll fault was met"
    );
    assert_eq!(
        bot.count("sendMessage!"),
        2,
        "the failed sends were tried again"
    );
    // The relay link stayed up throughout.
    n.cmd(json!({"action": "ping"}));
    n.until("pong");
}

#[test]
fn a_chat_resumes_its_conversation_after_a_daemon_restart() {
    let bot = FakeBot::start();
    let n = start_node(&bot, TempDir::new("tg-restart"), "");
    bot.message(ME, ME, "say before the restart");
    bot.wait_shown(ME, "the reply", |t| t == "before the restart");
    wait_until(Duration::from_secs(5), || {
        n.home.join("cfg/channels-state.json").exists()
    });
    let home = n.stop();
    bot.forget_calls();
    let n = Node::start_in(home, &[("TG_TOKEN", TOKEN)]);
    bot.message(ME, ME, "recall");
    bot.wait_shown(ME, "the follow-up", |t| {
        t == "first prompt was: say before the restart"
    });
    let starts = n.starts();
    let argv = starts.last().unwrap()["argv"].to_string();
    assert!(argv.contains("--resume"), "{argv}");
}

#[test]
fn approvals_answered_in_the_browser_or_timed_out_update_the_chat() {
    let bot = FakeBot::start();
    let home = TempDir::new("tg-elsewhere");
    let n = start_node_env(&bot, home, "", &[("CODING_BRIDGE_PERMISSION_TIMEOUT", "3")]);

    // The browser allows what the chat was asked: the chat's message shows it, and the
    // buttons are gone.
    bot.message(
        ME,
        ME,
        r#"tool Write {"file_path": "from-browser.txt", "content": "b"}"#,
    );
    let (_, buttons) = approval(&bot);
    let req = n.until("permission.request").pop().unwrap();
    n.cmd(json!({"action": "permission.resolve", "request_id": req["request_id"], "decision": "allow"}));
    bot.wait("the browser's decision shown", |m, b| {
        m == "editMessageText"
            && b["text"].as_str().unwrap_or("").starts_with("✅ Allowed")
            && b["reply_markup"]["inline_keyboard"] == json!([])
    });
    bot.wait_shown(ME, "the reply", |t| t.contains("after tool"));
    assert!(n.home.join("work/from-browser.txt").exists());
    // A press on those buttons now is stale.
    bot.press(ME, ME, button(&buttons, "Deny"));
    bot.wait("the stale press", |m, b| {
        m == "answerCallbackQuery" && b["text"].as_str().unwrap_or("").contains("settled")
    });

    // Nobody answers: the timeout shows as denied and nothing is written.
    bot.forget_calls();
    bot.message(
        ME,
        ME,
        r#"tool Write {"file_path": "late.txt", "content": "l"}"#,
    );
    approval(&bot);
    bot.wait("the timeout shown", |m, b| {
        m == "editMessageText"
            && b["text"]
                .as_str()
                .unwrap_or("")
                .starts_with("⌛ No answer in time: denied")
    });
    bot.wait_shown(ME, "the reply", |t| t.contains("after tool"));
    assert!(!n.home.join("work/late.txt").exists());
}

#[test]
fn a_refused_token_stops_the_channel_but_not_the_node() {
    let bot = FakeBot::start();
    bot.state.0.lock().unwrap().refuse_token = true;
    let n = start_node(&bot, TempDir::new("tg-401"), "");
    assert!(
        n.daemon
            .wait_for_log("this channel stops", Duration::from_secs(20)),
        "{}",
        n.daemon.stderr()
    );
    // The relay link is up and serving.
    n.cmd(json!({"action": "ping"}));
    n.until("pong");
    // No tight loop: one refused call, then nothing.
    std::thread::sleep(Duration::from_millis(1500));
    let refused: Vec<String> = bot.calls().into_iter().map(|(m, _)| m).collect();
    assert_eq!(refused, ["getMe!"], "{refused:?}");
    assert!(!n.daemon.stderr().contains("fake-bot-token"));
}

#[test]
fn a_conflicting_poller_is_backed_off_not_spun() {
    let bot = FakeBot::start();
    for _ in 0..1000 {
        bot.fault(
            "getUpdates",
            Fault::Status("409 Conflict", r#"{"ok":false,"error_code":409,"description":"Conflict: terminated by other getUpdates request"}"#),
        );
    }
    let _n = start_node(&bot, TempDir::new("tg-409"), "");
    bot.wait("the webhook removal", |m, _| m == "deleteWebhook");
    std::thread::sleep(Duration::from_secs(4));
    let polls = bot.count("getUpdates!");
    assert!(
        (2..=5).contains(&polls),
        "{polls} polls in about 4 s: backed off 1, 2, 4 s"
    );
}

#[test]
fn new_during_a_turn_leaves_the_old_reply_and_starts_clean() {
    let bot = FakeBot::start();
    let n = start_node(&bot, TempDir::new("tg-newturn"), "");
    bot.message(
        ME,
        ME,
        r#"tool Write {"file_path": "never.txt", "content": "x"}"#,
    );
    approval(&bot);
    bot.message(ME, ME, "/new");
    bot.wait("the question withdrawn", |m, b| {
        m == "editMessageText"
            && b["text"].as_str().unwrap_or("").starts_with("Withdrawn")
            && b["reply_markup"]["inline_keyboard"] == json!([])
    });
    bot.message(ME, ME, "say fresh reply");
    bot.wait_shown(ME, "the new conversation's reply", |t| t == "fresh reply");
    let shown = bot.shown(ME);
    assert!(
        shown
            .iter()
            .all(|t| !t.contains("fresh reply") || t == "fresh reply"),
        "{shown:?}"
    );
    assert!(!n.home.join("work/never.txt").exists());
    assert_eq!(n.starts().len(), 2, "a second CLI for the new conversation");
}

#[test]
fn an_approval_decided_before_its_message_is_known_is_still_shown() {
    let bot = FakeBot::start();
    let home = TempDir::new("tg-race");
    // The sender is held up by a slow call, so the approval times out (1 s) before the
    // answer carrying its message id comes back.
    bot.fault("sendChatAction", Fault::Hang(Duration::from_secs(3)));
    let _n = start_node_env(&bot, home, "", &[("CODING_BRIDGE_PERMISSION_TIMEOUT", "1")]);
    bot.message(
        ME,
        ME,
        r#"tool Write {"file_path": "late.txt", "content": "l"}"#,
    );
    approval(&bot);
    bot.wait("the timeout shown", |m, b| {
        m == "editMessageText" && b["text"].as_str().unwrap_or("").starts_with("⌛")
    });
}

#[test]
fn commands_for_another_bot_are_not_ours_and_updates_do_not_rerun_after_a_restart() {
    let bot = FakeBot::start();
    let n = start_node(&bot, TempDir::new("tg-other"), "");
    bot.message(ME, GROUP, "/help@someotherbot");
    bot.message(ME, GROUP, "/help@FakeBot");
    bot.wait_shown(GROUP, "our help", |t| t.contains("/stop"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        bot.shown(GROUP).len(),
        1,
        "only the command addressed to us: {:?}",
        bot.shown(GROUP)
    );
    // Handled updates are not handled again after a restart, even when Telegram hands
    // them out again (it does until a poll confirms them).
    bot.message(ME, ME, "say once");
    bot.wait_shown(ME, "the reply", |t| t == "once");
    let home = n.stop();
    {
        let mut g = bot.state.0.lock().unwrap();
        let all: Vec<Value> = (1..=g.next_update)
            .map(|id| {
                let mut u = FakeBot::message_update(ME, ME, "say once");
                u["update_id"] = json!(id);
                u
            })
            .collect();
        g.updates = all.into();
    }
    let n = Node::start_in(home, &[("TG_TOKEN", TOKEN)]);
    bot.message(ME, ME, "say after");
    bot.wait_shown(ME, "the new message", |t| t == "after");
    let prompts: Vec<Value> = n
        .stdin_of("user")
        .iter()
        .map(|u| u["message"]["content"].clone())
        .collect();
    assert_eq!(
        prompts,
        [json!("say once"), json!("say after")],
        "nothing ran twice"
    );
}

#[test]
fn a_group_trigger_picked_from_the_command_menu_names_our_bot() {
    // With `trigger_prefix = "/ask "`, Telegram's command menu sends `/ask@ourbot text`:
    // that runs `text` (the bot's name in any case, its files fetched); `/ask@otherbot`
    // is for another bot and runs nothing.
    let bot = FakeBot::start();
    let n = start_node(&bot, TempDir::new("tg-ask-at"), "");
    bot.state
        .0
        .lock()
        .unwrap()
        .files
        .insert("doc-at".into(), b"menu document".to_vec());
    bot.message(ME, GROUP, "/ask@someotherbot say not ours");
    bot.message(ME, GROUP, "/ask@fakebot say ours");
    bot.wait_shown(GROUP, "the reply to our command", |t| t == "ours");
    bot.push(json!({"message": {"message_id": 7, "from": {"id": ME}, "chat": {"id": GROUP, "type": "supergroup"},
        "caption": "/ask@FakeBot say with the file", "document": {"file_id": "doc-at", "file_name": "menu.txt", "file_size": 13}}}));
    bot.wait_shown(GROUP, "the reply with the file", |t| {
        t.starts_with("with the file")
    });
    bot.message(ME, GROUP, "/ask@someotherbot say still not ours");
    std::thread::sleep(Duration::from_millis(500));
    let prompts: Vec<String> = n
        .stdin_of("user")
        .iter()
        .map(|u| u["message"]["content"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        prompts.len(),
        2,
        "only what was addressed to us ran: {prompts:?}"
    );
    assert_eq!(prompts[0], "say ours");
    assert!(
        prompts[1].starts_with("say with the file") && prompts[1].contains("menu.txt"),
        "the caption without the command, and the file: {}",
        prompts[1]
    );
    assert_eq!(
        bot.shown(GROUP).len(),
        2,
        "nothing answered the other bot's commands: {:?}",
        bot.shown(GROUP)
    );
}

#[test]
fn a_chat_runs_any_provider_with_its_approvals_as_buttons() {
    // Codex (a scripted app-server): the chat's session is a Codex thread.
    let bot = FakeBot::start();
    let codex = example("fake_codex");
    let n = start_node_env(
        &bot,
        TempDir::new("tg-codex"),
        "default_provider = \"codex\"\n",
        &[("CODING_BRIDGE_CODEX_PATH", codex.to_str().unwrap())],
    );
    bot.message(ME, ME, "hello codex");
    bot.wait_shown(ME, "codex's reply", |t| t == "echo: hello codex");
    bot.message(ME, ME, "/status");
    bot.wait_shown(ME, "status", |t| t.contains("Provider: codex"));
    drop(n);

    // An ACP agent declared in agents.json: its permission request comes as buttons and
    // the press picks the agent's allow option.
    let bot = FakeBot::start();
    let home = TempDir::new("tg-acp");
    std::fs::create_dir_all(home.join("cfg")).unwrap();
    let log = home.join("acp.log");
    std::fs::write(
        home.join("cfg/agents.json"),
        json!({"agents": [{"name": "fakeacp", "label": "Fake ACP agent",
                           "command": example("fake_acp"), "env": {"FAKE_ACP_LOG": log}}]})
        .to_string(),
    )
    .unwrap();
    let _n = start_node(&bot, home, "default_provider = \"fakeacp\"\n");
    bot.message(ME, ME, "ask");
    let (text, buttons) = approval(&bot);
    assert!(text.contains("touch x"), "{text}");
    bot.press(ME, ME, button(&buttons, "Allow"));
    bot.wait("the decision shown", |m, b| {
        m == "editMessageText" && b["text"].as_str().unwrap_or("").starts_with("✅ Allowed")
    });
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("\"optionId\":\"yes\"")),
        "the agent got its allow option: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// Issue 19: `/status` says what the chat's agent is doing, and that a stopped one comes
/// back with the next message.
#[test]
fn status_shows_the_chats_agent_stopped_while_idle_and_back_with_the_next_message() {
    let bot = FakeBot::start();
    let n = start_node_env(
        &bot,
        TempDir::new("tg-idle"),
        "",
        &[("CODING_BRIDGE_IDLE_STOP", "1")],
    );
    bot.message(ME, ME, "say first words");
    bot.wait_shown(ME, "the reply", |t| t.contains("first words"));
    assert!(
        wait_until(Duration::from_secs(30), || n
            .daemon
            .stderr()
            .contains("idle for")),
        "{}",
        n.daemon.stderr()
    );
    bot.message(ME, ME, "/status");
    let status = bot.wait_shown(ME, "status", |t| t.contains("Agent:"));
    assert!(
        status.contains("Agent: stopped (your next message resumes it)"),
        "{status}"
    );
    bot.message(ME, ME, "recall");
    bot.wait_shown(ME, "the resumed conversation", |t| {
        t.contains("first prompt was: say first words")
    });
}

#[test]
fn allow_for_a_while_covers_what_is_alike_until_it_ends_and_never_past_a_rule() {
    let bot = FakeBot::start();
    let home = TempDir::new("tg-grant");
    std::fs::create_dir_all(home.join("cfg")).unwrap();
    std::fs::write(
        home.join("cfg/policy.toml"),
        "[[rule]]\ntool = \"Bash\"\nmatch = \"cargo test --release*\"\ndecision = \"deny\"\n",
    )
    .unwrap();
    let n = start_node_env(
        &bot,
        home,
        "rate_limit_per_min = 0\n",
        &[("CODING_BRIDGE_GRANT_SECONDS", "12")],
    );
    let bash = |cmd: &str| format!("tool Bash {}", json!({ "command": cmd }));
    // The approval offers a grant for a while; pressing it allows this one.
    bot.message(ME, ME, &bash("cargo test -q"));
    let (_, buttons) = approval(&bot);
    let grant = button(&buttons, "Allow for 12 s").to_string();
    bot.press(ME, ME, &grant);
    bot.wait("the grant shown", |m, b| {
        m == "editMessageText"
            && b["text"]
                .as_str()
                .unwrap_or("")
                .starts_with("✅ Allowed until")
            && b["text"]
                .as_str()
                .unwrap_or("")
                .contains("commands starting `cargo test`")
    });
    // What the agent was answered, in order (allow, or deny with its reason).
    let answered = |count: usize| -> Value {
        assert!(
            wait_until(Duration::from_secs(10), || n
                .stdin_of("control_response")
                .len()
                >= count),
            "{:?}",
            n.stdin_of("control_response")
        );
        n.stdin_of("control_response")[count - 1]["response"]["response"].clone()
    };
    bot.wait_shown(ME, "the first run", |t| {
        t.contains("cargo test -q\nafter tool")
    });
    assert_eq!(answered(1)["behavior"], "allow");
    // The same prefix runs without a question; a rule's deny still wins.
    bot.forget_calls();
    bot.message(ME, ME, &bash("cargo test --all"));
    bot.wait_shown(ME, "the granted run", |t| {
        t.contains("cargo test --all\nafter tool")
    });
    assert_eq!(answered(2)["behavior"], "allow");
    bot.message(ME, ME, &bash("cargo test --release"));
    bot.wait_shown(ME, "the rule's deny", |t| {
        t.contains("cargo test --release\nafter tool")
    });
    let deny = answered(3);
    assert_eq!(deny["behavior"], "deny");
    assert!(
        deny["message"]
            .as_str()
            .unwrap()
            .contains("policy.toml line 1"),
        "{deny}"
    );
    // Another prefix is asked.
    bot.message(ME, ME, &bash("cargo build"));
    let (text, build_buttons) = approval(&bot);
    assert!(text.contains("cargo build"), "{text}");
    assert_eq!(
        bot.calls()
            .iter()
            .filter(|(m, b)| m == "sendMessage" && b.get("reply_markup").is_some())
            .count(),
        1,
        "only cargo build was asked: {:?}",
        bot.calls()
    );
    bot.message(ME, ME, "/status");
    let status = bot.wait_shown(ME, "status", |t| t.contains("Allowed for a while"));
    assert!(
        status.contains("Bash commands starting `cargo test` until"),
        "{status}"
    );
    bot.press(ME, ME, button(&build_buttons, "Deny"));
    assert_eq!(answered(4)["behavior"], "deny");
    // It ends by itself: the prefix is asked again, and /status lists nothing.
    let mut status = String::new();
    let ended = wait_until(Duration::from_secs(40), || {
        std::thread::sleep(Duration::from_millis(500));
        bot.forget_calls();
        bot.message(ME, ME, "/status");
        status = bot.wait_shown(ME, "status", |t| t.contains("Allowed for a while"));
        status.contains("Allowed for a while: none")
    });
    assert!(ended, "{status}");
    bot.forget_calls();
    bot.message(ME, ME, &bash("cargo test --doc"));
    let (text, _) = approval(&bot);
    assert!(text.contains("cargo test --doc"), "{text}");
    let out = run(agent(&n.home).args(["audit", "--json"]));
    let records: Vec<Value> = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let of = |e: &str| records.iter().filter(|r| r["event"] == e).count();
    assert_eq!(of("grant"), 1, "{records:#?}");
    assert_eq!(of("grant_ended"), 1, "{records:#?}");
    let by: Vec<&str> = records
        .iter()
        .filter(|r| r["event"] == "permission_decision")
        .map(|r| r["by"].as_str().unwrap())
        .collect();
    assert_eq!(
        by,
        ["telegram", "grant", "rule", "telegram"],
        "{records:#?}"
    );
    let first = records
        .iter()
        .find(|r| r["event"] == "permission_decision")
        .unwrap();
    assert_eq!(first["user"], ME);
    let start = records
        .iter()
        .find(|r| r["event"] == "session_start")
        .unwrap();
    assert_eq!(start["via"], "telegram");
    assert_eq!(start["chat"], ME);
    // The bot token is nowhere in the audit log.
    let mut files = Vec::new();
    every_file_under(&n.home.join("cfg"), &mut files);
    for f in files
        .iter()
        .filter(|f| f.to_string_lossy().contains("audit"))
    {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(!text.contains(TOKEN), "{}", f.display());
    }
}
