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
    // Without a HOME there is no user unit to look at.
    if let Ok(user) = target_for(manager, Scope::User, env)
        && user.file.exists()
    {
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
        && let Some((var, name)) = invoker(env)
    {
        return account::by_name(&name).ok_or_else(|| {
            Refusal(
                EXIT_FAILED,
                format!("{var} names {name:?}, an unknown account"),
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

/// Who ran `sudo` or `doas` to make this process root (the variable and the name).
fn invoker(env: Env) -> Option<(&'static str, String)> {
    if !account::is_root() {
        return None;
    }
    ["SUDO_USER", "DOAS_USER"].into_iter().find_map(|var| {
        env(var)
            .filter(|n| !n.is_empty() && n != "root")
            .map(|n| (var, n))
    })
}

/// The service's PATH: the directories where the agents' CLIs (and `node`, which npm
/// installs need) are found now, then `~/.local/bin` and the usual system dirs.
fn service_path(cfg: &Config, config_dir: &Path, home: &Path, env: Env) -> String {
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
    for a in crate::providers::acp::agents(config_dir, env) {
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
    if scope == Scope::User
        && let Some((_, name)) = invoker(env)
    {
        return Err(Refusal(
            EXIT_FAILED,
            format!(
                "this would install root's user service, not {name}'s. For your own user service run it without sudo; for a system service running as {name} add --system"
            ),
        ));
    }
    let t = target_for(manager, scope, env)?;
    need_root(&t, Verb::Install)?;
    let acct = service_account(t.scope, env)?;
    let config_dir = if t.scope == Scope::System && !o.config_dir_given && invoker(env).is_some() {
        // Under sudo, HOME may be root's: the service account's own default.
        PathBuf::from(&acct.home).join(".ace-bridge")
    } else {
        cfg.config_dir.clone()
    };
    let text_of = |p: &Path, what: &str| -> Result<String, Refusal> {
        p.to_str()
            .filter(|s| units::printable(s))
            .map(str::to_string)
            .ok_or_else(|| {
                Refusal(
                    EXIT_FAILED,
                    format!(
                        "the {what} {} has a name a unit file cannot hold (not UTF-8, or control characters); move it",
                        p.display()
                    ),
                )
            })
    };
    let config_text = text_of(&config_dir, "config dir")?;

    // Refusals, before anything is written.
    let creds = config_dir.join("credentials.json");
    match crate::cli::credentials::load_file(&creds) {
        crate::cli::credentials::Loaded::Found(..) => {
            // The service runs as the account: it must own what it reads and writes.
            use std::os::unix::fs::MetadataExt;
            let owner = std::fs::metadata(&creds)
                .map(|m| m.uid())
                .unwrap_or(acct.uid);
            if owner != acct.uid && acct.uid != 0 {
                return Err(Refusal(
                    EXIT_FAILED,
                    format!(
                        "{} belongs to another account than {}, whom the service runs as; pair as {1} (`sudo -u {1} coding-bridge-agent pair`) or `chown -R {1}: {}`",
                        creds.display(),
                        acct.name,
                        config_dir.display()
                    ),
                ));
            }
        }
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
        // Read-only, so a dry run asks too and refuses the same way.
        let ours = exists && is_service_pid(&t, pid, &config_dir);
        if !ours {
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
    // Where the agents' CLIs were configured (--claude-path, CODING_BRIDGE_<NAME>_PATH).
    // (vars_os: a variable that is not UTF-8 is skipped, not a panic.)
    let mut carried: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, v)| {
            k.starts_with("CODING_BRIDGE_") && k.ends_with("_PATH") && units::printable(v)
        })
        .collect();
    for (k, p) in [
        ("CODING_BRIDGE_CLAUDE_PATH", &cfg.claude_path),
        ("CODING_BRIDGE_CODEX_PATH", &cfg.codex_path),
    ] {
        if let Some(v) = p
            .as_ref()
            .and_then(|p| p.to_str())
            .filter(|v| units::printable(v))
            && !carried.iter().any(|(c, _)| c == k)
        {
            carried.push((k.to_string(), v.to_string()));
        }
    }
    carried.sort();
    let exe_text = text_of(&exe, "binary")?;
    if manager == Manager::Systemd && exe_text.contains(['\'', '"', '\\']) {
        // systemd refuses quotes and backslashes in an executable's name.
        return Err(Refusal(
            EXIT_FAILED,
            format!(
                "systemd cannot run a binary whose path has quotes or backslashes ({}); move it, e.g. to ~/.local/bin",
                exe.display()
            ),
        ));
    }
    let params = Params {
        exe: exe_text,
        config_dir: Some(config_text),
        path: service_path(cfg, &config_dir, Path::new(&acct.home), env),
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
    let user_systemd = t.manager == Manager::Systemd && t.scope == Scope::User;
    for c in &commands {
        if let Err(Refusal(code, m)) = run(c) {
            let hint = if user_systemd {
                " (no user manager? Log in on a console or run `sudo loginctl enable-linger $USER`, then try again)"
            } else {
                ""
            };
            return Err(Refusal(
                code,
                format!(
                    "{m}{hint}. The unit stays at {}: once the problem is fixed, run `coding-bridge-agent service install --force`, or `service uninstall` to remove it",
                    t.file.display()
                ),
            ));
        }
    }
    if user_systemd {
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
fn is_service_pid(t: &Target, pid: Option<u32>, config_dir: &Path) -> bool {
    // A daemon that is just starting may not have written its pid yet.
    let pid = pid.or_else(|| {
        std::thread::sleep(std::time::Duration::from_millis(300));
        match crate::cli::lock::probe(&config_dir.join("agent.lock")) {
            crate::cli::lock::Probe::Running { pid } => pid,
            crate::cli::lock::Probe::NotRunning => None,
        }
    });
    let Some(pid) = pid else { return false };
    match t.manager {
        Manager::Systemd => {
            let (out, ok) = query(&t.systemctl(&["show", "--property=MainPID", "--value"]));
            ok && out.trim().parse::<u32>().ok() == Some(pid)
        }
        // supervise-daemon records the pid of the process it supervises.
        Manager::OpenRc => {
            std::fs::read_to_string(format!("/run/openrc/options/{NAME}/child_pid"))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
                == Some(pid)
        }
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
    // The config dir the installed service uses (it may not be this shell's).
    let config_dir = t
        .as_ref()
        .and_then(|t| std::fs::read_to_string(&t.file).ok())
        .and_then(|text| units::config_dir_of(&text))
        .map(PathBuf::from)
        .unwrap_or_else(|| cfg.config_dir.clone());
    let paired = matches!(
        crate::cli::credentials::load_file(&config_dir.join("credentials.json")),
        crate::cli::credentials::Loaded::Found(..)
    );
    let (running, pid) = match crate::cli::lock::probe(&config_dir.join("agent.lock")) {
        crate::cli::lock::Probe::Running { pid } => (true, pid),
        crate::cli::lock::Probe::NotRunning => (false, None),
    };
    let state = pid.and_then(|p| crate::node::runstate::read(&config_dir, p));
    // Not running: what the last run said before it ended (e.g. a refused token).
    let last_run = (!running)
        .then(|| crate::node::runstate::read_last(&config_dir))
        .flatten();
    if o.json {
        crate::cli::app::print_json(&json!({
            "installed": t.is_some(),
            "manager": match manager { Manager::Systemd => "systemd", Manager::OpenRc => "openrc" },
            "scope": t.as_ref().map(Target::scope_word),
            "unit_file": t.as_ref().map(|t| t.file.display().to_string()),
            "service": manager_state,
            "config_dir": config_dir,
            "paired": paired,
            "daemon_running": running,
            "daemon_pid": pid,
            "connected": state.as_ref().map(|s| s.connected),
            "last_error": state.as_ref().or(last_run.as_ref()).and_then(|s| s.last_error.clone()),
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
    say(&format!("Config dir:  {}", config_dir.display()));
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
        _ => match last_run.and_then(|s| s.last_error) {
            Some(e) => format!("not running; its last run reported: {e}"),
            None => "not running".to_string(),
        },
    };
    say(&format!("Daemon:      {daemon}"));
    Ok(EXIT_OK)
}
