//! Command dispatch: parse, configure, run the command, and map every outcome to an
//! exit code. This is the only module that writes to stdout.
//!
//! Exit codes (documented in `--help` and the README):
//! 0 success; 1 failed (pairing expired/consumed/refused/timed out, not paired, another
//! daemon running, token rejected); 2 usage or configuration error; 3 relay unreachable.

use std::io::{IsTerminal, Write};

use serde_json::{Value, json};

use crate::cli::args::{self, Action, Command};
use crate::cli::config::{self, Config};
use crate::cli::credentials::{self, Credentials, Loaded, Source};
use crate::cli::lock::{self, LockError, Probe};
use crate::cli::pairing;
use crate::hub::Outcome;
use crate::sys::logging;
use crate::sys::secret::Secret;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_UNREACHABLE: i32 = 3;

/// Run the program with the process's arguments and environment; returns the exit code.
/// `println!` that ends quietly on a closed stdout; see [`say`].
macro_rules! say {
    ($($arg:tt)*) => { $crate::cli::app::say(format_args!($($arg)*)) };
}

pub fn main() -> i32 {
    let cli = match args::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\n\nRun `coding-bridge-agent --help` for usage.");
            return EXIT_USAGE;
        }
    };
    let command = match cli.action {
        Action::Help(topic) => {
            say!("{}", args::help(topic));
            return EXIT_OK;
        }
        Action::Version => {
            say!("coding-bridge-agent {}", env!("CARGO_PKG_VERSION"));
            return EXIT_OK;
        }
        Action::Exec(c) => c,
    };
    let env = |k: &str| std::env::var(k).ok();
    let cfg = match config::resolve(&cli.flags, &env) {
        Ok(c) => c,
        Err(e) => {
            if cli.flags.json {
                print_json(
                    &json!({"event": "error", "reason": "config", "message": e.to_string()}),
                );
            }
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    if let Some(t) = &cfg.node_token {
        logging::add_secret(t.expose());
    }
    match command {
        Command::Status => {
            logging::init(cfg.log_level, None);
            status(&cfg)
        }
        Command::Logout => {
            logging::init(cfg.log_level, None);
            logout(&cfg)
        }
        Command::Channels => {
            logging::init(cfg.log_level, None);
            match cli.flags.sub.as_deref() {
                Some("init") => channels_init(&cfg),
                _ => channels_doctor(&cfg),
            }
        }
        Command::Policy => {
            logging::init(cfg.log_level, None);
            match cli.flags.sub.as_deref() {
                Some("init") => policy_init(&cfg),
                _ => policy_check(&cfg),
            }
        }
        Command::Audit => {
            logging::init(cfg.log_level, None);
            crate::cli::audit::run(
                &cfg.config_dir,
                &crate::cli::audit::Options {
                    since: cli.flags.since.clone(),
                    session: cli.flags.session.clone(),
                    json: cli.flags.json,
                    verify: cli.flags.verify,
                },
            )
        }
        Command::Service => {
            logging::init(cfg.log_level, None);
            let verb = cli
                .flags
                .sub
                .as_deref()
                .and_then(crate::cli::service::Verb::parse)
                .unwrap_or(crate::cli::service::Verb::Status);
            let o = crate::cli::service::Options {
                system: cli.flags.system,
                force: cli.flags.force,
                dry_run: cli.flags.dry_run,
                json: cli.flags.json,
                config_dir_given: cli.flags.config_dir.is_some()
                    || env("CODING_BRIDGE_CONFIG_DIR").is_some_and(|d| !d.is_empty()),
            };
            crate::cli::service::main(&cfg, verb, o, &env)
        }
        Command::Pair => {
            logging::init(cfg.log_level, Some(&cfg.log_dir));
            let signals = match crate::daemon::signal_channel() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_FAILED;
                }
            };
            match pair(&cfg, &signals) {
                Ok(_) => EXIT_OK,
                Err(code) => code,
            }
        }
        Command::Run | Command::Up => {
            if let Err(e) = cfg.check_for_run() {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
            // A broken channels.toml stops the start, naming its line.
            if let Err(e) = crate::channels::config::load(&cfg.config_dir) {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
            // So does a broken policy.toml.
            let policy = match load_policy(&cfg) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_USAGE;
                }
            };
            logging::init(cfg.log_level, Some(&cfg.log_dir));
            for w in policy.warnings() {
                crate::log_warn!("policy: {w}");
            }
            run(&cfg, command == Command::Up, policy)
        }
    }
}

/// The owner's policy (`<config dir>/policy.toml`); no file is no limits.
fn load_policy(cfg: &Config) -> Result<crate::policy::Policy, crate::policy::PolicyError> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    crate::policy::load(&cfg.policy_file, home.as_deref())
}

/// `policy init`: a commented skeleton, private from the first byte, never over a file.
fn policy_init(cfg: &Config) -> i32 {
    write_skeleton(
        &cfg.config_dir,
        &cfg.policy_file,
        crate::policy::SKELETON,
        "Uncomment what you want to limit, run `coding-bridge-agent policy check`, then restart the daemon or send it SIGHUP.",
    )
}

/// Write a commented skeleton at `path`, 0600 from the first byte and never over an
/// existing file; `next` says what to do then. In the config dir, that is made private
/// first; a directory elsewhere (a policy under /etc) is only created if missing, never
/// tightened (the daemon's user may need to read it).
fn write_skeleton(
    config_dir: &std::path::Path,
    path: &std::path::Path,
    text: &str,
    next: &str,
) -> i32 {
    if path.exists() {
        eprintln!(
            "error: {} exists already; edit it, or move it away to start again",
            path.display()
        );
        return EXIT_FAILED;
    }
    let dir = path.parent().unwrap_or(config_dir);
    let made = if dir == config_dir {
        crate::sys::fsutil::ensure_private_dir(dir)
    } else {
        std::fs::create_dir_all(dir)
    };
    let written = made.and_then(|_| crate::sys::fsutil::write_private_file(path, text.as_bytes()));
    match written {
        Ok(()) => {
            say!("Wrote {} (0600). {next}", path.display());
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            EXIT_FAILED
        }
    }
}

/// `policy check`: the file is valid; the policy in force, in words or as JSON.
fn policy_check(cfg: &Config) -> i32 {
    let policy = match load_policy(cfg) {
        Ok(p) => p,
        Err(e) => {
            if cfg.json {
                print_json(&json!({"ok": false, "line": e.line, "message": e.message}));
            }
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let warnings = policy.warnings();
    if cfg.json {
        let mut v = policy.to_json();
        v["ok"] = json!(true);
        v["warnings"] = json!(warnings);
        print_json(&v);
        return EXIT_OK;
    }
    match &policy.file {
        Some(f) => say!("{} is valid. In force:", f.display()),
        None => say!(
            "No policy at {}: no limits (every mode, directory and agent; every approval asked). `coding-bridge-agent policy init` writes a skeleton.",
            cfg.policy_file.display()
        ),
    }
    if policy.file.is_some() && policy.is_open() {
        say!("It limits nothing: every mode, directory and agent; every approval asked.");
    } else if policy.file.is_some() {
        say!("{}", policy.describe().trim_end());
    }
    for w in warnings {
        say!("warning: {w}");
    }
    EXIT_OK
}

/// `channels init`: a commented skeleton, private from the first byte, never over a file.
fn channels_init(cfg: &Config) -> i32 {
    write_skeleton(
        &cfg.config_dir,
        &cfg.config_dir.join("channels.toml"),
        crate::channels::config::SKELETON,
        "Fill in allowed_senders, export the token variable, set enabled = true, then run `coding-bridge-agent channels doctor`.",
    )
}

/// `channels doctor`: the file is valid, each enabled bot's token can be read, and the
/// Bot API answers `getMe` with it. The token is never printed.
fn channels_doctor(cfg: &Config) -> i32 {
    let channels = match crate::channels::config::load(&cfg.config_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    if channels.is_empty() {
        say!(
            "No channels in {}; `coding-bridge-agent channels init` writes a skeleton.",
            cfg.config_dir.join("channels.toml").display()
        );
        return EXIT_OK;
    }
    let tls = http_tls(cfg).unwrap_or_default();
    let mut failed = false;
    for ch in &channels {
        let report = crate::channels::telegram::doctor(ch, &tls, &|k| std::env::var(k).ok());
        failed |= ch.enabled && !report.ok;
        if cfg.json {
            print_json(
                &json!({"instance_id": ch.instance_id, "enabled": ch.enabled,
                               "ok": report.ok, "bot": report.bot, "problem": report.problem}),
            );
        } else {
            let state = match (&report.problem, ch.enabled) {
                (None, true) => format!("ok, bot @{}", report.bot.as_deref().unwrap_or("?")),
                (None, false) => format!(
                    "ok, bot @{} (disabled)",
                    report.bot.as_deref().unwrap_or("?")
                ),
                (Some(p), _) => p.clone(),
            };
            say!("telegram {}: {state}", ch.instance_id);
        }
    }
    if failed { EXIT_FAILED } else { EXIT_OK }
}

pub(crate) fn print_json(v: &Value) {
    say(format_args!("{v}"));
}

/// Print one line on stdout. A closed stdout (`coding-bridge-agent --help | head`) ends
/// the process quietly with exit code 0 instead of a panic: the reader has what it
/// wanted. Other write errors are ignored like `println!` would not.
pub fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(line)
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
    if let Err(e) = written
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(EXIT_OK);
    }
}

/// Load credentials, warning (once, naming the file) when the file is unusable.
fn load_credentials(cfg: &Config) -> Option<(Credentials, Source)> {
    match credentials::load(cfg) {
        Loaded::Found(c, src) => {
            logging::add_secret(c.node_token.expose());
            Some((c, src))
        }
        Loaded::Missing => None,
        Loaded::Unusable { path, reason } => {
            crate::log_warn!(
                "ignoring credentials file {}: {reason}; this machine counts as not paired \
                 (run `coding-bridge-agent pair` to pair it again)",
                path.display()
            );
            None
        }
    }
}

fn status(cfg: &Config) -> i32 {
    let loaded = credentials::load(cfg);
    let (paired, source, problem, stored_name) = match &loaded {
        Loaded::Found(c, s) => (true, Some(*s), None, Some(c.node_name.clone())),
        Loaded::Missing => (false, None, None, None),
        Loaded::Unusable { path, reason } => (
            false,
            None,
            Some(format!("{} is unusable: {reason}", path.display())),
            None,
        ),
    };
    let probe = lock::probe(&cfg.lock_path());
    let (running, pid) = match probe {
        Probe::Running { pid } => (true, pid),
        Probe::NotRunning => (false, None),
    };
    let source_name = source.map(|s| match s {
        Source::File => "file",
        Source::Env => "env",
    });
    // What the running daemon last recorded: its live agents and limits.
    let state = pid.and_then(|p| crate::node::runstate::read(&cfg.config_dir, p));
    let memory = crate::sys::memory::read(&crate::sys::memory::Sources::system());
    let now = crate::sys::timefmt::now_ms();
    let agents: Vec<Value> = state
        .iter()
        .flat_map(|s| &s.agents)
        .map(|a| {
            json!({
                "provider": a.provider,
                "session": a.session,
                "state": a.state,
                "pid": a.pid,
                "rss_bytes": crate::sys::memory::rss_of(a.pid),
                "idle_s": (a.state == "idle").then(|| now.saturating_sub(a.active_ms) / 1000),
            })
        })
        .collect();
    let limits = state.as_ref().and_then(|s| s.limits.clone());
    if cfg.json {
        print_json(&json!({
            "version": env!("CARGO_PKG_VERSION"),
            "bridge_url": cfg.bridge_url,
            "node_name": cfg.node_name,
            "paired_node_name": stored_name.filter(|n| !n.is_empty()),
            "config_dir": cfg.config_dir,
            "credentials_file": cfg.credentials_path(),
            "paired": paired,
            "credentials_source": source_name,
            "credentials_problem": problem,
            "daemon_running": running,
            "daemon_pid": pid,
            "agents": agents,
            "limits": limits,
            "memory": memory.map(|m| json!({
                "available_bytes": m.available,
                "total_bytes": m.total,
                "cgroup_limit_bytes": m.cgroup.map(|c| c.limit),
            })),
        }));
    } else {
        let paired_text = match (source, &problem) {
            (Some(Source::File), _) => format!("yes ({})", cfg.credentials_path().display()),
            (Some(Source::Env), _) => "yes (CODING_BRIDGE_NODE_TOKEN)".to_string(),
            (None, Some(p)) => format!("no ({p})"),
            (None, None) => "no (run `coding-bridge-agent pair`)".to_string(),
        };
        let daemon = match (running, pid) {
            (true, Some(p)) => format!("running (pid {p})"),
            (true, None) => "running".to_string(),
            _ => "not running".to_string(),
        };
        say!("Version:     {}", env!("CARGO_PKG_VERSION"));
        say!("Bridge URL:  {}", cfg.bridge_url);
        say!("Node name:   {}", cfg.node_name);
        say!("Config dir:  {}", cfg.config_dir.display());
        say!("Paired:      {paired_text}");
        say!("Daemon:      {daemon}");
        if let Some(m) = memory {
            say!("Memory:      {}", m.describe());
        }
        if let Some(l) = &limits {
            let idle = l
                .idle_stop_s
                .map_or_else(|| "never".to_string(), |s| format!("after {s} s"));
            say!(
                "Limits:      {} agents at most, idle agents stopped {idle}, {} MiB kept free",
                l.max_agents,
                l.min_free_bytes >> 20
            );
        }
        if running {
            say!("Agents:      {} live", agents.len());
        }
        for a in &agents {
            let rss = a["rss_bytes"]
                .as_u64()
                .map_or_else(|| "?".to_string(), |b| format!("{} MiB", b >> 20));
            let idle = a["idle_s"]
                .as_u64()
                .map(|s| format!(", idle {s} s"))
                .unwrap_or_default();
            say!(
                "  {} {} ({}, pid {}, {rss}{idle})",
                a["provider"].as_str().unwrap_or(""),
                a["session"].as_str().unwrap_or(""),
                a["state"].as_str().unwrap_or(""),
                a["pid"]
            );
        }
    }
    EXIT_OK
}

fn logout(cfg: &Config) -> i32 {
    match credentials::remove(&cfg.config_dir) {
        Ok(removed) => {
            let env_note = cfg.node_token.is_some();
            if cfg.json {
                print_json(&json!({
                    "removed": removed,
                    "credentials_file": cfg.credentials_path(),
                    "env_token_set": env_note,
                }));
            } else if removed {
                say!(
                    "Removed the stored credentials ({}).",
                    cfg.credentials_path().display()
                );
            } else {
                say!(
                    "There were no stored credentials in {}.",
                    cfg.config_dir.display()
                );
            }
            if env_note {
                eprintln!(
                    "note: CODING_BRIDGE_NODE_TOKEN is set, so this node still has a token; \
                     unset it to log out completely."
                );
            }
            if let Probe::Running { pid } = lock::probe(&cfg.lock_path()) {
                eprintln!(
                    "note: a daemon is still running for this config dir{}; stop it too.",
                    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                );
            }
            EXIT_OK
        }
        Err(e) => {
            if cfg.json {
                print_json(
                    &json!({"error": e.to_string(), "credentials_file": cfg.credentials_path()}),
                );
            }
            eprintln!(
                "error: could not remove {}: {e}",
                cfg.credentials_path().display()
            );
            EXIT_FAILED
        }
    }
}

/// TLS settings for HTTP requests: the webpki roots, or the PEM file the user named.
fn http_tls(cfg: &Config) -> Result<ureq::tls::TlsConfig, String> {
    use ureq::tls::{PemItem, RootCerts, TlsConfig};
    let Some(path) = &cfg.ca_file else {
        return Ok(TlsConfig::default());
    };
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!(
            "the CA file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::Specific(std::sync::Arc::new(certs)))
        .build())
}

/// Pair this machine; on success the credentials are stored. `Err` carries the exit code.
fn pair(cfg: &Config, signals: &crossbeam_channel::Receiver<i32>) -> Result<Credentials, i32> {
    let json_mode = cfg.json;
    let fail = |reason: &str, message: String, code: i32| -> i32 {
        if json_mode {
            print_json(&json!({"event": "error", "reason": reason, "message": message}));
        }
        eprintln!("error: pairing failed: {message}");
        code
    };
    if cfg.node_token.is_some() {
        crate::log_warn!(
            "CODING_BRIDGE_NODE_TOKEN is set and takes precedence over the credentials this \
             pairing stores"
        );
    }
    let tls = http_tls(cfg).map_err(|m| fail("config", m, EXIT_USAGE))?;
    let client = pairing::Client::new(&cfg.bridge_url, tls);
    crate::log_info!("requesting a pairing code from {}", cfg.bridge_url);
    let code = client
        .start(&cfg.node_name)
        .map_err(|f| fail(f.reason(), f.message(), pairing_exit(&f)))?;
    let link = cfg.claim_link(&code.code);
    let minutes = code.expires_in.as_secs().div_ceil(60);
    if json_mode {
        print_json(&json!({
            "event": "pair_code",
            "pair_code": code.code,
            "claim_url": link,
            "claim_page": cfg.claim_page(),
            "expires_in": code.expires_in.as_secs(),
            "node_name": cfg.node_name,
        }));
    } else {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "\nPair this machine ({}) with Coding Bridge:\n",
            cfg.node_name
        );
        let _ = writeln!(out, "  1. Open   {}", cfg.claim_page());
        let _ = writeln!(out, "  2. Enter  {}\n", code.code);
        let _ = writeln!(out, "  or open the direct link:\n  {link}\n");
        let show_qr = cfg.qr.unwrap_or_else(|| std::io::stdout().is_terminal());
        if show_qr && let Some(qr) = crate::cli::qr::render(&link) {
            let _ = writeln!(out, "{qr}");
        }
        let _ = writeln!(
            out,
            "Waiting for the code to be claimed (expires in {minutes} min)..."
        );
        let _ = out.flush();
    }
    let token = client
        .wait_for_claim(&code, cfg.pair_poll_interval, cfg.pair_timeout, signals)
        .map_err(|f| fail(f.reason(), f.message(), pairing_exit(&f)))?;
    logging::add_secret(token.expose());
    let creds = Credentials {
        node_token: token,
        node_name: cfg.node_name.clone(),
        bridge_url: cfg.bridge_url.clone(),
    };
    let path = credentials::save(&cfg.config_dir, &creds).map_err(|e| {
        fail(
            "storage",
            format!(
                "the code was claimed but the credentials could not be saved in {}: {e}. \
                 Fix the directory (or set --config-dir) and pair again.",
                cfg.config_dir.display()
            ),
            EXIT_FAILED,
        )
    })?;
    crate::log_info!("paired; credentials saved to {}", path.display());
    if json_mode {
        print_json(&json!({
            "event": "paired",
            "config_dir": cfg.config_dir,
            "credentials_file": path,
            "node_name": cfg.node_name,
            "bridge_url": cfg.bridge_url,
        }));
    } else {
        say!("Paired. Credentials saved to {}", path.display());
    }
    if let Probe::Running { pid } = lock::probe(&cfg.lock_path()) {
        eprintln!(
            "note: a daemon is already running for this config dir{}; restart it to use the \
             new credentials.",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        );
    }
    Ok(creds)
}

/// The exit code of a failed pairing: 3 when the relay could not be used, else 1.
fn pairing_exit(f: &pairing::Failure) -> i32 {
    if f.unreachable() {
        EXIT_UNREACHABLE
    } else {
        EXIT_FAILED
    }
}

/// `run` and `up`: take the lock, get credentials (pairing first for `up`), run the daemon.
fn run(cfg: &Config, pair_if_needed: bool, policy: crate::policy::Policy) -> i32 {
    let creds = load_credentials(cfg);
    if creds.is_none() && !pair_if_needed {
        eprintln!("Not paired. Run `coding-bridge-agent pair` first.");
        return EXIT_FAILED;
    }
    // Handle SIGINT/SIGTERM from here on, so a signal during start-up or pairing is a
    // clean stop (exit 0 for the daemon), never the default kill.
    let signals = match crate::daemon::signal_channel() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    if let Err(e) = crate::sys::fsutil::ensure_private_dir(&cfg.config_dir) {
        crate::log_warn!(
            "cannot create the config dir {}: {e}",
            cfg.config_dir.display()
        );
    }
    let _lock = match lock::acquire(&cfg.lock_path()) {
        Ok(l) => Some(l),
        Err(LockError::Held { pid }) => {
            eprintln!(
                "error: another coding-bridge-agent is already running for {}{}. Stop it \
                 first, or use a different --config-dir.",
                cfg.config_dir.display(),
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            );
            return EXIT_FAILED;
        }
        Err(LockError::Io(e)) => {
            crate::log_warn!(
                "cannot create the lock file {}: {e}; running without the one-daemon check",
                cfg.lock_path().display()
            );
            None
        }
    };
    let creds = match creds {
        Some((c, _)) => c,
        None => match pair(cfg, &signals) {
            Ok(c) => c,
            Err(code) => return code,
        },
    };
    if !creds.bridge_url.is_empty() && creds.bridge_url != cfg.bridge_url {
        crate::log_warn!(
            "the stored credentials were issued by {} but the bridge URL is {}; if the relay \
             rejects the token, run `coding-bridge-agent pair`",
            creds.bridge_url,
            cfg.bridge_url
        );
    }
    let settings = daemon_settings(cfg, creds.node_token, policy);
    match crate::daemon::run(&settings, signals) {
        Ok(Outcome::Stopped) => EXIT_OK,
        Ok(Outcome::TokenRejected) => EXIT_FAILED,
        Err(e @ crate::daemon::Error::Tls(_)) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
        Err(e) => {
            crate::log_error!("{e}");
            EXIT_FAILED
        }
    }
}

/// The small-host limits: the agent cap defaults to what the host can hold (one agent
/// per 512 MiB of the memory the daemon may use, at least 2, at most 16).
fn limits(cfg: &Config) -> crate::hub::sessions::Limits {
    let memory = crate::sys::memory::Sources::system();
    let max_agents = cfg.max_agents.unwrap_or_else(|| {
        crate::sys::memory::read(&memory)
            .map_or(4, |m| crate::sys::memory::default_max_agents(m.total))
    });
    crate::hub::sessions::Limits {
        idle_stop: cfg.idle_stop,
        max_agents,
        min_free: cfg.min_free_memory,
        memory,
    }
}

/// What the daemon needs of the configuration.
fn daemon_settings(
    cfg: &Config,
    node_token: Secret,
    policy: crate::policy::Policy,
) -> crate::daemon::Settings {
    crate::daemon::Settings {
        bridge_url: cfg.bridge_url.clone(),
        node_name: cfg.node_name.clone(),
        node_token,
        ca_file: cfg.ca_file.clone(),
        log_forward: cfg.log_forward,
        audit_max: cfg.audit_max,
        hub: crate::hub::Options {
            heartbeat: cfg.heartbeat_interval,
            outbox_max: cfg.outbox_max,
            reconnect_min: cfg.reconnect_min,
            reconnect_max: cfg.reconnect_max,
            config_dir: cfg.config_dir.clone(),
            cwd: cfg.cwd.clone(),
            model: cfg.model.clone(),
            claude_path: cfg.claude_path.clone(),
            codex_path: cfg.codex_path.clone(),
            permission_timeout: cfg.permission_timeout,
            turn_retry_limit: cfg.turn_retry_limit,
            turn_retry_backoff: cfg.turn_retry_backoff,
            claude_entrypoint: cfg.claude_entrypoint.clone(),
            attachment_hosts: cfg.attachment_hosts.clone(),
            // A CA file that cannot be read stops the start in `daemon::run` (the relay
            // link's TLS), with its reason.
            http_tls: http_tls(cfg).unwrap_or_default(),
            limits: limits(cfg),
            policy,
            policy_file: cfg.policy_file.clone(),
            grant_for: cfg.grant_for,
        },
    }
}
