//! `coding-bridge-agent service install|start|stop|restart|status|uninstall`: keep the
//! daemon running with the host's service manager (systemd, user or system scope, or
//! OpenRC). Runs in the CLI process, no threads: it checks, writes the unit
//! ([`crate::cli::units`]), and runs the manager's own commands (`systemctl`, `loginctl`,
//! `rc-update`, `rc-service`), showing each one.
//!
//! Exit codes: 0 done; 1 refused or failed (not paired, a unit exists, a daemon runs
//! outside the service, root needed, not installed, a manager command failed); 2 no
//! service manager here (a container) or a usage error.
//!
//! `CODING_BRIDGE_SERVICE_MANAGER` (`systemd`, `openrc`, `none`) overrides detection;
//! `CODING_BRIDGE_SERVICE_DIR` overrides where a system unit or OpenRC script goes.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::cli::app::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::cli::config::Config;
use crate::cli::units::{self, NAME, Params, Scope};
use crate::sys::account::{self, Account};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Install,
    Start,
    Stop,
    Restart,
    Status,
    Uninstall,
}

impl Verb {
    pub fn parse(s: &str) -> Option<Verb> {
        Some(match s {
            "install" => Verb::Install,
            "start" => Verb::Start,
            "stop" => Verb::Stop,
            "restart" => Verb::Restart,
            "status" => Verb::Status,
            "uninstall" => Verb::Uninstall,
            _ => return None,
        })
    }

    fn word(self) -> &'static str {
        match self {
            Verb::Install => "install",
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::Status => "status",
            Verb::Uninstall => "uninstall",
        }
    }
}

/// The flags of `service`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub system: bool,
    pub force: bool,
    pub dry_run: bool,
    pub json: bool,
    /// `--config-dir` or `CODING_BRIDGE_CONFIG_DIR` was given (else a system service
    /// installed with sudo uses the invoking account's default config dir).
    pub config_dir_given: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manager {
    Systemd,
    OpenRc,
}

/// Where the service is defined and how to talk to its manager.
#[derive(Debug, Clone)]
struct Target {
    manager: Manager,
    scope: Scope,
    file: PathBuf,
}

impl Target {
    fn unit(&self) -> String {
        match self.manager {
            Manager::Systemd => format!("{NAME}.service"),
            Manager::OpenRc => NAME.to_string(),
        }
    }

    /// `systemctl [--user] ARGS... UNIT` (the unit last).
    fn systemctl(&self, args: &[&str]) -> Vec<String> {
        let mut v = self.systemctl_bare(args);
        v.push(self.unit());
        v
    }

    /// `systemctl [--user] ARGS...`.
    fn systemctl_bare(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec!["systemctl".to_string()];
        if self.scope == Scope::User {
            v.push("--user".into());
        }
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    fn verb(&self, verb: &str) -> Vec<String> {
        match self.manager {
            Manager::Systemd => self.systemctl(&[verb]),
            Manager::OpenRc => argv(&["rc-service", NAME, verb]),
        }
    }

    fn scope_word(&self) -> &'static str {
        match (self.manager, self.scope) {
            (Manager::OpenRc, _) => "openrc",
            (_, Scope::User) => "user",
            (_, Scope::System) => "system",
        }
    }
}

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// An outcome for the user: the message and the exit code.
struct Refusal(i32, String);

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Run `service VERB`; returns the exit code.
pub fn main(cfg: &Config, verb: Verb, o: Options, env: Env) -> i32 {
    let result = match verb {
        Verb::Install => install(cfg, o, env),
        Verb::Status => status(cfg, o, env),
        Verb::Uninstall => uninstall(o, env),
        Verb::Start | Verb::Stop | Verb::Restart => control(verb, o, env),
    };
    match result {
        Ok(code) => code,
        Err(Refusal(code, msg)) => {
            if o.json {
                crate::cli::app::print_json(&json!({"ok": false, "error": msg}));
            }
            eprintln!("error: {msg}");
            code
        }
    }
}

fn detect(env: Env) -> Result<Manager, Refusal> {
    match env("CODING_BRIDGE_SERVICE_MANAGER").as_deref() {
        Some("systemd") => return Ok(Manager::Systemd),
        Some("openrc") => return Ok(Manager::OpenRc),
        Some("none") | None => {}
        Some(other) => {
            return Err(Refusal(
                EXIT_USAGE,
                format!(
                    "CODING_BRIDGE_SERVICE_MANAGER={other:?}: expected systemd, openrc or none"
                ),
            ));
        }
    }
    if env("CODING_BRIDGE_SERVICE_MANAGER").is_none() {
        // sd_booted(3): systemd runs as the init system.
        if Path::new("/run/systemd/system").is_dir() {
            return Ok(Manager::Systemd);
        }
        if Path::new("/run/openrc").is_dir() || Path::new("/sbin/openrc-run").exists() {
            return Ok(Manager::OpenRc);
        }
    }
    Err(Refusal(
        EXIT_USAGE,
        "no service manager here: systemd is not running and OpenRC is not installed (a \
         container?). Let the container runtime keep the daemon running instead, e.g. \
         `docker run --restart unless-stopped ... coding-bridge-agent run`."
            .into(),
    ))
}

fn system_dir(manager: Manager, env: Env) -> PathBuf {
    if let Some(d) = env("CODING_BRIDGE_SERVICE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    match manager {
        Manager::Systemd => PathBuf::from("/etc/systemd/system"),
        Manager::OpenRc => PathBuf::from("/etc/init.d"),
    }
}

fn user_dir(env: Env) -> Result<PathBuf, Refusal> {
    let base = match env("XDG_CONFIG_HOME").filter(|d| d.starts_with('/')) {
        Some(d) => PathBuf::from(d),
        None => match env("HOME").filter(|h| !h.is_empty()) {
            Some(h) => PathBuf::from(h).join(".config"),
            None => {
                return Err(Refusal(
                    EXIT_FAILED,
                    "HOME is not set, so there is no place for a user unit; use --system".into(),
                ));
            }
        },
    };
    Ok(base.join("systemd/user"))
}

fn target_for(manager: Manager, scope: Scope, env: Env) -> Result<Target, Refusal> {
    let (scope, file) = match (manager, scope) {
        (Manager::OpenRc, _) => (Scope::System, system_dir(manager, env).join(NAME)),
        (Manager::Systemd, Scope::System) => (
            Scope::System,
            system_dir(manager, env).join(format!("{NAME}.service")),
        ),
        (Manager::Systemd, Scope::User) => {
            (Scope::User, user_dir(env)?.join(format!("{NAME}.service")))
        }
    };
    Ok(Target {
        manager,
        scope,
        file,
    })
}

/// The installed service: `--system` (or OpenRC) looks at the system one; else the
/// user unit if there is one, else the system unit.
fn installed(o: Options, env: Env) -> Result<Option<Target>, Refusal> {
    let manager = detect(env)?;
    let system = target_for(manager, Scope::System, env)?;
    if o.system || manager == Manager::OpenRc {
        return Ok(system.file.exists().then_some(system));
    }
    let user = target_for(manager, Scope::User, env)?;
    if user.file.exists() {
        return Ok(Some(user));
    }
    Ok(system.file.exists().then_some(system))
}

fn need_root(t: &Target, verb: Verb) -> Result<(), Refusal> {
    if t.scope == Scope::System && !account::is_root() {
        let flag = if t.manager == Manager::Systemd {
            " --system"
        } else {
            ""
        };
        return Err(Refusal(
            EXIT_FAILED,
            format!(
                "the system service needs root: run `sudo coding-bridge-agent service {}{flag}`",
                verb.word()
            ),
        ));
    }
    Ok(())
}

/// Run a manager command, showing it; its stdout, or a refusal naming it.
fn run(cmd: &[String]) -> Result<String, Refusal> {
    say(&format!("$ {}", cmd.join(" ")));
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| Refusal(EXIT_FAILED, format!("cannot run `{}`: {e}", cmd[0])))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Refusal(
            EXIT_FAILED,
            format!(
                "`{}` failed ({}){}",
                cmd.join(" "),
                out.status,
                match err.trim() {
                    "" => String::new(),
                    e => format!(": {e}"),
                }
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A query whose failure is not fatal: its stdout and whether it succeeded. Not shown.
fn query(cmd: &[String]) -> (String, bool) {
    match Command::new(&cmd[0]).args(&cmd[1..]).output() {
        Ok(o) => (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            o.status.success(),
        ),
        Err(_) => (String::new(), false),
    }
}

fn say(s: &str) {
    crate::cli::app::say(format_args!("{s}"));
}

/// The account the service runs as: for a system service installed through sudo, the
/// account that ran sudo; otherwise this process's.
fn service_account(scope: Scope, env: Env) -> Result<Account, Refusal> {
    if scope == Scope::System
        && account::is_root()
        && let Some(name) = env("SUDO_USER").filter(|n| !n.is_empty() && n != "root")
    {
        return account::by_name(&name).ok_or_else(|| {
            Refusal(
                EXIT_FAILED,
                format!("SUDO_USER names {name:?}, an unknown account"),
            )
        });
    }
    account::current().ok_or_else(|| {
        Refusal(
            EXIT_FAILED,
            "this process's account is not in the password database".into(),
        )
    })
}

/// The service's PATH: the directories where the agents' CLIs (and `node`, which npm
/// installs need) are found now, then `~/.local/bin` and the usual system dirs.
fn service_path(cfg: &Config, home: &Path, env: Env) -> String {
    let path_env = env("PATH").map(std::ffi::OsString::from);
    let mut found: Vec<PathBuf> = Vec::new();
    found.extend(crate::providers::claude::resolve(
        cfg.claude_path.as_deref(),
        path_env.clone(),
        Some(home),
    ));
    found.extend(crate::providers::codex::resolve(
        cfg.codex_path.as_deref(),
        path_env.clone(),
        Some(home),
    ));
    for a in crate::providers::acp::agents(&cfg.config_dir, env) {
        found.extend(crate::providers::acp::resolve(
            &a.command,
            path_env.clone(),
            Some(home),
        ));
    }
    found.extend(crate::providers::acp::resolve(
        "node",
        path_env.clone(),
        Some(home),
    ));
    let mut dirs: Vec<String> = Vec::new();
    let usual = [
        home.join(".local/bin"),
        "/usr/local/sbin".into(),
        "/usr/local/bin".into(),
        "/usr/sbin".into(),
        "/usr/bin".into(),
        "/sbin".into(),
        "/bin".into(),
    ];
    for d in found
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .chain(usual)
    {
        let Some(s) = d.to_str().map(str::to_string) else {
            continue;
        };
        if !s.contains(':') && !s.is_empty() && !dirs.contains(&s) {
            dirs.push(s);
        }
    }
    dirs.join(":")
}

fn install(cfg: &Config, o: Options, env: Env) -> Result<i32, Refusal> {
    let manager = detect(env)?;
    let scope = if o.system || manager == Manager::OpenRc {
        Scope::System
    } else {
        Scope::User
    };
    let t = target_for(manager, scope, env)?;
    need_root(&t, Verb::Install)?;
    let acct = service_account(t.scope, env)?;
    let config_dir = if t.scope == Scope::System && !o.config_dir_given {
        // Under sudo, HOME may be root's: the service account's own default.
        match env("SUDO_USER") {
            Some(_) => PathBuf::from(&acct.home).join(".ace-bridge"),
            None => cfg.config_dir.clone(),
        }
    } else {
        cfg.config_dir.clone()
    };

    // Refusals, before anything is written.
    match crate::cli::credentials::load_file(&config_dir.join("credentials.json")) {
        crate::cli::credentials::Loaded::Found(..) => {}
        crate::cli::credentials::Loaded::Missing => {
            return Err(Refusal(
                EXIT_FAILED,
                format!(
                    "not paired: there are no credentials in {}. Run `coding-bridge-agent pair`{} first",
                    config_dir.display(),
                    if t.scope == Scope::System {
                        format!(" as {}", acct.name)
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        crate::cli::credentials::Loaded::Unusable { path, reason } => {
            return Err(Refusal(
                EXIT_FAILED,
                format!(
                    "not paired: {} is unusable ({reason}). Run `coding-bridge-agent pair` again",
                    path.display()
                ),
            ));
        }
    }
    let exists = t.file.exists();
    if exists && !o.force {
        return Err(Refusal(
            EXIT_FAILED,
            format!(
                "{} exists already: the service is installed. Add --force to write it again, or run `coding-bridge-agent service uninstall` first",
                t.file.display()
            ),
        ));
    }
    if let crate::cli::lock::Probe::Running { pid } =
        crate::cli::lock::probe(&config_dir.join("agent.lock"))
    {
        let ours = exists && !o.dry_run && is_service_pid(&t, pid);
        if !(ours || exists && o.dry_run) {
            return Err(Refusal(
                EXIT_FAILED,
                format!(
                    "a daemon{} already runs for {} outside the service; stop it first (two daemons would fight over one node token)",
                    pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                    config_dir.display()
                ),
            ));
        }
    }

    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| {
            Refusal(
                EXIT_FAILED,
                format!("cannot tell where this binary is: {e}"),
            )
        })?;
    let mut carried = Vec::new();
    if let Some(p) = &cfg.claude_path {
        carried.push((
            "CODING_BRIDGE_CLAUDE_PATH".to_string(),
            p.display().to_string(),
        ));
    }
    if let Some(p) = &cfg.codex_path {
        carried.push((
            "CODING_BRIDGE_CODEX_PATH".to_string(),
            p.display().to_string(),
        ));
    }
    let params = Params {
        exe: exe.display().to_string(),
        config_dir: Some(config_dir.display().to_string()),
        path: service_path(cfg, Path::new(&acct.home), env),
        user: acct.name.clone(),
        group: acct.group.clone(),
        home: acct.home.clone(),
        env: carried,
    };
    let (text, mode) = match manager {
        Manager::Systemd => (units::systemd(t.scope, &params), 0o644),
        Manager::OpenRc => (units::openrc(&params), 0o755),
    };
    let commands: Vec<Vec<String>> = match manager {
        Manager::Systemd => vec![
            t.systemctl_bare(&["daemon-reload"]),
            t.systemctl(&["enable"]),
            t.systemctl(&["restart"]),
        ],
        Manager::OpenRc => vec![
            argv(&["rc-update", "add", NAME, "default"]),
            argv(&["rc-service", NAME, "restart"]),
        ],
    };
    if o.dry_run {
        say(&format!(
            "Would write {} (mode {mode:o}):\n",
            t.file.display()
        ));
        say(&text);
        say("Would run:");
        for c in &commands {
            say(&format!("$ {}", c.join(" ")));
        }
        return Ok(EXIT_OK);
    }
    write_file(&t.file, &text, mode)?;
    say(&format!("Wrote {}", t.file.display()));
    for c in &commands {
        run(c)?;
    }
    if t.manager == Manager::Systemd && t.scope == Scope::User {
        let (linger, _) = query(&argv(&[
            "loginctl",
            "show-user",
            &acct.name,
            "--property=Linger",
            "--value",
        ]));
        if linger.trim() != "yes" {
            say(&format!(
                "Note: lingering is off for {0}, so the service stops when you log out and does not start at boot. Turn it on with:\n  sudo loginctl enable-linger {0}",
                acct.name
            ));
        }
    }
    say(&format!(
        "Installed and started {} ({} service). `coding-bridge-agent service status` shows how it does.",
        t.unit(),
        t.scope_word()
    ));
    Ok(EXIT_OK)
}

/// Whether `pid` is the service's main process.
fn is_service_pid(t: &Target, pid: Option<u32>) -> bool {
    let Some(pid) = pid else { return false };
    match t.manager {
        Manager::Systemd => {
            let (out, ok) = query(&t.systemctl(&["show", "--property=MainPID", "--value"]));
            ok && out.trim().parse::<u32>().ok() == Some(pid)
        }
        // supervise-daemon does not say its child's pid; a started service owns the lock.
        Manager::OpenRc => query(&t.verb("status")).1,
    }
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), Refusal> {
    use std::os::unix::fs::PermissionsExt;
    let fail =
        |e: std::io::Error| Refusal(EXIT_FAILED, format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    crate::sys::fsutil::write_private_file(path, text.as_bytes()).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(fail)
}

fn not_installed() -> Refusal {
    Refusal(
        EXIT_FAILED,
        "the service is not installed; run `coding-bridge-agent service install` first".into(),
    )
}

fn control(verb: Verb, o: Options, env: Env) -> Result<i32, Refusal> {
    let t = installed(o, env)?.ok_or_else(not_installed)?;
    need_root(&t, verb)?;
    run(&t.verb(verb.word()))?;
    Ok(EXIT_OK)
}

fn uninstall(o: Options, env: Env) -> Result<i32, Refusal> {
    let Some(t) = installed(o, env)? else {
        say("The service is not installed; nothing to remove.");
        return Ok(EXIT_OK);
    };
    need_root(&t, Verb::Uninstall)?;
    let (before, after): (Vec<Vec<String>>, Vec<Vec<String>>) = match t.manager {
        Manager::Systemd => (
            vec![t.systemctl(&["disable", "--now"])],
            vec![t.systemctl_bare(&["daemon-reload"])],
        ),
        Manager::OpenRc => (
            vec![
                argv(&["rc-service", NAME, "stop"]),
                argv(&["rc-update", "del", NAME, "default"]),
            ],
            Vec::new(),
        ),
    };
    if o.dry_run {
        say("Would run:");
        for c in &before {
            say(&format!("$ {}", c.join(" ")));
        }
        say(&format!("Would remove {}", t.file.display()));
        for c in &after {
            say(&format!("$ {}", c.join(" ")));
        }
        return Ok(EXIT_OK);
    }
    for c in &before {
        // Stopping a service that is not running is no reason to keep its file.
        if let Err(Refusal(_, m)) = run(c) {
            eprintln!("warning: {m}");
        }
    }
    std::fs::remove_file(&t.file).map_err(|e| {
        Refusal(
            EXIT_FAILED,
            format!("cannot remove {}: {e}", t.file.display()),
        )
    })?;
    say(&format!("Removed {}", t.file.display()));
    for c in &after {
        run(c)?;
    }
    say("The credentials are kept; `coding-bridge-agent logout` removes them.");
    Ok(EXIT_OK)
}

fn status(cfg: &Config, o: Options, env: Env) -> Result<i32, Refusal> {
    let manager = detect(env)?;
    let t = installed(o, env)?;
    let mut manager_state = json!(null);
    if let Some(t) = &t {
        manager_state = match t.manager {
            Manager::Systemd => {
                let (out, ok) = query(&t.systemctl(&[
                    "show",
                    "--property=LoadState,ActiveState,SubState,MainPID,UnitFileState",
                ]));
                let mut m = serde_json::Map::new();
                for line in out.lines() {
                    if let Some((k, v)) = line.split_once('=') {
                        m.insert(k.trim().to_string(), json!(v.trim()));
                    }
                }
                if !ok {
                    m.insert("error".into(), json!("systemctl show failed"));
                }
                Value::Object(m)
            }
            Manager::OpenRc => {
                let (out, ok) = query(&t.verb("status"));
                json!({"status": out.trim(), "started": ok})
            }
        };
    }
    let paired = matches!(
        crate::cli::credentials::load_file(&cfg.credentials_path()),
        crate::cli::credentials::Loaded::Found(..)
    );
    let (running, pid) = match crate::cli::lock::probe(&cfg.lock_path()) {
        crate::cli::lock::Probe::Running { pid } => (true, pid),
        crate::cli::lock::Probe::NotRunning => (false, None),
    };
    let state = pid.and_then(|p| crate::node::runstate::read(&cfg.config_dir, p));
    if o.json {
        crate::cli::app::print_json(&json!({
            "installed": t.is_some(),
            "manager": match manager { Manager::Systemd => "systemd", Manager::OpenRc => "openrc" },
            "scope": t.as_ref().map(Target::scope_word),
            "unit_file": t.as_ref().map(|t| t.file.display().to_string()),
            "service": manager_state,
            "config_dir": cfg.config_dir,
            "paired": paired,
            "daemon_running": running,
            "daemon_pid": pid,
            "connected": state.as_ref().map(|s| s.connected),
            "last_error": state.as_ref().and_then(|s| s.last_error.clone()),
        }));
        return Ok(EXIT_OK);
    }
    match &t {
        Some(t) => {
            say(&format!(
                "Service:     {} ({} service, {})",
                t.unit(),
                t.scope_word(),
                t.file.display()
            ));
            let line = match t.manager {
                Manager::Systemd => format!(
                    "{} ({}), {}, main pid {}",
                    manager_state["ActiveState"].as_str().unwrap_or("unknown"),
                    manager_state["SubState"].as_str().unwrap_or("?"),
                    manager_state["UnitFileState"].as_str().unwrap_or("?"),
                    manager_state["MainPID"].as_str().unwrap_or("0"),
                ),
                Manager::OpenRc => manager_state["status"].as_str().unwrap_or("").to_string(),
            };
            say(&format!("Manager:     {line}"));
        }
        None => say("Service:     not installed (`coding-bridge-agent service install`)"),
    }
    say(&format!("Config dir:  {}", cfg.config_dir.display()));
    say(&format!(
        "Paired:      {}",
        if paired { "yes" } else { "no" }
    ));
    let daemon = match (running, pid, &state) {
        (true, Some(p), Some(s)) if s.connected => {
            format!("running (pid {p}), connected to the relay")
        }
        (true, Some(p), Some(s)) => format!(
            "running (pid {p}), not connected{}",
            s.last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        (true, Some(p), None) => format!("running (pid {p})"),
        (true, None, _) => "running".to_string(),
        _ => "not running".to_string(),
    };
    say(&format!("Daemon:      {daemon}"));
    Ok(EXIT_OK)
}
