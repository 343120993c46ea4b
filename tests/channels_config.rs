//! Issue 17 point 2: `channels.toml` as the reference daemon writes it. Its example
//! blocks (the channels doc, the file its `channels init` writes once uncommented, the
//! schema in its config module, and a file its portal saves) parse with the values they
//! mean; a float `dedup_window_seconds` and `rate_limit_per_min = 0` (no limit) run the
//! daemon instead of stopping it with exit 2; WeChat blocks (a channel this daemon does
//! not have) are skipped with a warning; unknown keys and a `token` key are still refused,
//! naming their line.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use coding_bridge_agent::testing::{NO_RATE_LIMIT, Telegram, TokenSource, parse};
use support::relay::FakeRelay;
use support::telegram::*;
use support::*;

/// The Telegram block of the reference's channels doc (comments reworded).
const REFERENCE_DOC: &str = r#"[[channels.telegram]]
instance_id = "my-telegram"                 # one per bot
token_env = "TELEGRAM_TOKEN_MY_TELEGRAM"    # the variable with the token
enabled = true
require_approval = false                    # reference: hold tools for approval

trigger_prefix = "/ask "                    # "" answers everything
allowed_senders = ["123456789"]             # Telegram user ids, as strings
allowed_groups = []
rate_limit_per_min = 6                      # 0: no limit
dedup_window_seconds = 300.0                # 0: off
"#;

/// The file the reference's `channels init` writes, with its Telegram block uncommented
/// (the WeChat block stays commented out, as a user leaves it).
const REFERENCE_INIT: &str = r#"# channels config (reference layout)
# Each instance starts disabled.

# [[channels.wechat]]
# instance_id = "my-wechat"
# base_url = "http://127.0.0.1:8000"
# token_env = "WECHAT_TOKEN_MY_WECHAT"
# enabled = false

[[channels.telegram]]
instance_id = "my-telegram"
# from @BotFather:
token_env = "TELEGRAM_TOKEN_MY_TELEGRAM"
enabled = false

# the prefix a message needs
trigger_prefix = "/ask "

# numeric user ids, as strings; empty in the reference: everybody
allowed_senders = []

# group ids, usually negative, as strings
allowed_groups = []

# per sender and minute; 0: no limit
rate_limit_per_min = 6

# seconds; 0: off
dedup_window_seconds = 300.0
"#;

/// The schema in the reference's config module: a `[channels]` table for globals to
/// come, and a bot with every optional key it shows.
const REFERENCE_SCHEMA: &str = r#"[channels]
# reserved

[[channels.telegram]]
instance_id = "my-bot"               # unique in the file
token_env = "TELEGRAM_TOKEN_MY_BOT"  # or token_file
api_base = "https://api.telegram.org"  # a self-hosted Bot API server goes here
enabled = false
default_provider = "claude"
"#;

/// Two bots as the reference's portal saves them: every key written out, floats with
/// their dot, ids as strings, approval on, the prefix off, no rate limit, no dedup.
const REFERENCE_PORTAL: &str = r#"# channels config
# saved by the portal

[[channels.telegram]]
instance_id = "ops"
token_env = "TG_OPS"
api_base = "https://tg.example.org"
enabled = true
require_approval = true
default_provider = "codex"
trigger_prefix = ""
allowed_senders = ["111", "222"]
allowed_groups = ["-1001234567890"]
rate_limit_per_min = 0
dedup_window_seconds = 0.0

[[channels.telegram]]
instance_id = "home"
token_file = "/run/secrets/tg-home"
enabled = false
default_provider = "copilot"
trigger_prefix = "/ask "
allowed_senders = []
allowed_groups = []
rate_limit_per_min = 12
dedup_window_seconds = 45.5
"#;

/// The reference's WeChat block: a channel this daemon does not have.
const REFERENCE_WECHAT: &str = r#"
[[channels.wechat]]
instance_id = "my-wechat"
base_url = "http://127.0.0.1:8000"
token_env = "WECHAT_TOKEN_MY_WECHAT"
enabled = true
"#;

/// This daemon's own README example.
const README_EXAMPLE: &str = r#"[[channels.telegram]]
instance_id = "main"
enabled = true
token_env = "TELEGRAM_BOT_TOKEN"      # or token_file = "/path/to/0600/file"
default_provider = "claude"           # codex, copilot, gemini, or an agent of agents.json
cwd = "~/work"                        # default: the daemon's working directory
allowed_senders = [123456789]         # empty: nobody gets in
allowed_groups = [-1001234567890]     # groups the bot answers in
trigger_prefix = "/ask"               # in groups, only messages starting with it run
rate_limit_per_min = 20               # per sender
dedup_window_seconds = 600
# poll_timeout_seconds = 25           # the long poll's wait (1–50)
# api_base = "https://api.telegram.org"
"#;

fn parsed(text: &str) -> Vec<Telegram> {
    parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn the_reference_doc_block_parses_with_its_meaning() {
    let t = parsed(REFERENCE_DOC);
    assert_eq!(t.len(), 1);
    let t = &t[0];
    assert_eq!(t.instance_id, "my-telegram");
    assert_eq!(
        t.token,
        TokenSource::Env("TELEGRAM_TOKEN_MY_TELEGRAM".into())
    );
    assert!(t.enabled);
    assert_eq!(t.api_base, "https://api.telegram.org");
    assert_eq!(t.default_provider, "claude");
    assert_eq!(t.trigger_prefix.as_deref(), Some("/ask "));
    assert_eq!(t.allowed_senders, [123456789]);
    assert!(t.allowed_groups.is_empty());
    assert_eq!(t.rate_limit_per_min, 6);
    assert_eq!(t.dedup_window_seconds, 300);
}

#[test]
fn the_reference_init_file_parses_once_uncommented() {
    let t = parsed(REFERENCE_INIT);
    assert_eq!(t.len(), 1, "the commented WeChat block is only a comment");
    let t = &t[0];
    assert_eq!(t.instance_id, "my-telegram");
    assert!(!t.enabled);
    assert_eq!(t.trigger_prefix.as_deref(), Some("/ask "));
    assert!(t.allowed_senders.is_empty() && t.allowed_groups.is_empty());
    assert_eq!((t.rate_limit_per_min, t.dedup_window_seconds), (6, 300));
}

#[test]
fn the_reference_schema_parses() {
    let t = parsed(REFERENCE_SCHEMA);
    assert_eq!(t.len(), 1);
    let t = &t[0];
    assert_eq!(t.instance_id, "my-bot");
    assert_eq!(t.token, TokenSource::Env("TELEGRAM_TOKEN_MY_BOT".into()));
    assert_eq!(t.api_base, "https://api.telegram.org");
    assert!(!t.enabled);
    assert_eq!(t.default_provider, "claude");
}

#[test]
fn a_file_saved_by_the_reference_portal_parses() {
    let t = parsed(REFERENCE_PORTAL);
    assert_eq!(t.len(), 2);
    let (ops, home) = (&t[0], &t[1]);
    assert_eq!(ops.instance_id, "ops");
    assert_eq!(ops.api_base, "https://tg.example.org");
    assert!(ops.enabled);
    assert_eq!(ops.default_provider, "codex");
    assert_eq!(ops.trigger_prefix, None, "an empty prefix is no prefix");
    assert_eq!(ops.allowed_senders, [111, 222]);
    assert_eq!(ops.allowed_groups, [-1001234567890]);
    assert_eq!(ops.rate_limit_per_min, NO_RATE_LIMIT, "0: no limit");
    assert_eq!(ops.dedup_window_seconds, 0, "0.0: no dedup");
    assert_eq!(
        home.token,
        TokenSource::File(PathBuf::from("/run/secrets/tg-home"))
    );
    assert!(!home.enabled);
    assert_eq!(home.default_provider, "copilot");
    assert_eq!(home.rate_limit_per_min, 12);
    assert_eq!(home.dedup_window_seconds, 46, "a fraction rounds up");
}

#[test]
fn our_readme_example_parses() {
    let t = parsed(README_EXAMPLE);
    assert_eq!(t[0].cwd.as_deref(), Some("~/work"));
    assert_eq!(t[0].allowed_groups, [-1001234567890]);
    assert_eq!(
        (t[0].rate_limit_per_min, t[0].dedup_window_seconds),
        (20, 600)
    );
}

#[test]
fn refusals_still_name_their_line() {
    // An unknown key (a typo), in the reference's own block.
    let typo = REFERENCE_DOC.replace("allowed_senders", "allowed_sender");
    let e = parse(&typo).unwrap_err();
    assert_eq!(e.line, 8, "{e}");
    assert!(e.message.contains("unknown key allowed_sender"), "{e}");
    assert!(e.to_string().starts_with("channels.toml line 8: "), "{e}");
    // The token itself: refused, where it goes instead said, the value never echoed.
    let with_token = REFERENCE_DOC.replace(
        "enabled = true\n",
        "enabled = true\ntoken = \"123456:SECRET\"\n",
    );
    let e = parse(&with_token).unwrap_err();
    assert_eq!(e.line, 5, "{e}");
    assert!(
        e.message.contains("token_env") && e.message.contains("token_file"),
        "{e}"
    );
    assert!(!e.to_string().contains("SECRET"), "{e}");
    // A WeChat block: a channel this daemon does not run is skipped, the bot still runs.
    let t = parse(&format!("{REFERENCE_DOC}{REFERENCE_WECHAT}")).expect("WeChat skipped");
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(
        t[0].instance_id,
        parse(REFERENCE_DOC).unwrap()[0].instance_id
    );
    // Values out of what the reference accepts too.
    for (from, to, needle) in [
        (
            "rate_limit_per_min = 6 ",
            "rate_limit_per_min = -6 ",
            "rate_limit_per_min must be",
        ),
        (
            "dedup_window_seconds = 300.0",
            "dedup_window_seconds = -1.5",
            "dedup_window_seconds must be",
        ),
        (
            "dedup_window_seconds = 300.0",
            "dedup_window_seconds = nan",
            "dedup_window_seconds must be",
        ),
        ("enabled = true", "enabled = 1", "enabled"),
        (
            "require_approval = false",
            "require_approval = \"no\"",
            "require_approval",
        ),
    ] {
        let text = REFERENCE_DOC.replace(from, to);
        assert_ne!(text, REFERENCE_DOC, "{from}");
        let e = parse(&text).unwrap_err();
        let line = 1 + text[..text.find(to).unwrap()].matches('\n').count();
        assert_eq!(e.line, line, "{to}: {e}");
        assert!(e.message.contains(needle), "{to}: {e}");
    }
}

/// The reference's block for the fake Bot API, allowing the fake's user `ME` (as a
/// string, the reference's form) with no rate limit.
fn reference_block_for(bot: &FakeBot) -> String {
    let text = REFERENCE_DOC
        .replace("[\"123456789\"]", &format!("[\"{ME}\"]"))
        .replace("rate_limit_per_min = 6 ", "rate_limit_per_min = 0 ");
    format!("{text}api_base = \"http://127.0.0.1:{}\"\n", bot.port)
}

#[test]
fn doctor_accepts_the_reference_block() {
    let bot = FakeBot::start();
    let home = TempDir::new("chcfg-doctor");
    std::fs::create_dir_all(home.join("cfg")).unwrap();
    std::fs::write(home.join("cfg/channels.toml"), reference_block_for(&bot)).unwrap();
    let out = run(agent(&home)
        .env("TELEGRAM_TOKEN_MY_TELEGRAM", TOKEN)
        .args(["channels", "doctor"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("telegram my-telegram: ok, bot @FakeBot"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_daemon_runs_the_reference_block_with_no_rate_limit() {
    let bot = FakeBot::start();
    let home = TempDir::new("chcfg-run");
    std::fs::create_dir_all(home.join("cfg")).unwrap();
    std::fs::write(home.join("cfg/channels.toml"), reference_block_for(&bot)).unwrap();
    let relay = FakeRelay::start();
    relay.set_auto_ack(true);
    let mut c = agent(&home);
    c.env("CODING_BRIDGE_URL", relay.url())
        .env("CODING_BRIDGE_NODE_TOKEN", "tok-node")
        .env("TELEGRAM_TOKEN_MY_TELEGRAM", TOKEN)
        .args(["-v", "run"]);
    let mut daemon = Daemon::spawn(c, &home);
    assert!(
        relay
            .recv_type("node.heartbeat", Duration::from_secs(30))
            .is_some(),
        "the daemon did not start (exit {:?}): {}",
        daemon.wait_exit(Duration::ZERO),
        daemon.stderr()
    );
    // More messages in a minute than the default limit (20) allows, all answered: the
    // commands need no agent, and a sender over the limit would be told so instead.
    const N: usize = 25;
    bot.message(999, 999, "/help");
    for _ in 0..N {
        bot.message(ME, ME, "/help");
    }
    let helps = |chat: i64| {
        bot.shown(chat)
            .iter()
            .filter(|t| t.contains("/new"))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(30), || helps(ME) == N),
        "{} of {N} answered; chat shows {:?}\n{}",
        helps(ME),
        bot.shown(ME),
        daemon.stderr()
    );
    assert!(
        !bot.shown(ME).iter().any(|t| t.contains("Too many")),
        "{:?}",
        bot.shown(ME)
    );
    assert!(bot.shown(999).is_empty(), "a stranger gets nothing");
    assert_eq!(daemon.wait_exit(Duration::ZERO), None, "the daemon runs on");
}
