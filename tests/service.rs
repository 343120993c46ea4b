//! Issue 13: `service install|start|stop|restart|status|uninstall`. The service managers
//! are recording stand-ins on PATH (`systemctl`, `loginctl`, `rc-service`, `rc-update`
//! write their argv to a log and answer like the real ones), detection is forced with
//! `CODING_BRIDGE_SERVICE_MANAGER`, and system units go to a temporary
//! `CODING_BRIDGE_SERVICE_DIR`. Written units are checked with `systemd-analyze verify`
//! where it is installed.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use support::*;

const UNIT: &str = "coding-bridge-agent.service";

struct Host {
    home: TempDir,
    bin: PathBuf,
}

impl Host {
    /// A home with stand-in managers, a fake `codex` in `tools/` (on PATH) and a fake
    /// `claude` in `agents/` (configured by CODING_BRIDGE_CLAUDE_PATH), paired or not.
    fn new(tag: &str, paired: bool) -> Host {
        let home = TempDir::new(tag);
        let bin = home.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let log = home.join("manager.log");
        for name in ["systemctl", "loginctl", "rc-service", "rc-update"] {
            let script = format!(
                r#"#!/bin/sh
echo "{name} $*" >> '{log}'
case "{name} $*" in
  *"--property=MainPID --value"*) echo "${{FAKE_MAINPID:-0}}" ;;
  *"show --property=LoadState"*) printf 'LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=4242\nUnitFileState=enabled\n' ;;
  "loginctl show-user"*) echo "${{FAKE_LINGER:-no}}" ;;
  "rc-service coding-bridge-agent status") echo " * status: started" ;;
esac
case " $* " in *" ${{FAKE_FAIL:-none}} "*) echo "Failed to $FAKE_FAIL: no bus" >&2; exit 1 ;; esac
exit "${{FAKE_EXIT:-0}}"
"#,
                log = log.display()
            );
            let p = bin.join(name);
            write_executable(&p, script.as_bytes());
        }
        for (dir, name) in [("tools", "codex"), ("agents", "claude")] {
            std::fs::create_dir_all(home.join(dir)).unwrap();
            let p = home.join(dir).join(name);
            write_executable(&p, b"#!/bin/sh\necho 1.0\n");
        }
        std::fs::create_dir_all(home.join("junk")).unwrap();
        if paired {
            let cfg = home.join("cfg");
            std::fs::create_dir_all(&cfg).unwrap();
            std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o700)).unwrap();
            let creds = cfg.join("credentials.json");
            std::fs::write(
                &creds,
                json!({"node_token": "tok-svc", "node_name": "n", "bridge_url": "http://127.0.0.1:9"}).to_string(),
            )
            .unwrap();
            std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Host { home, bin }
    }

    fn cmd(&self, manager: &str, args: &[&str]) -> Command {
        let mut c = agent(&self.home);
        c.env(
            "PATH",
            format!(
                "{}:{}:{}:/usr/bin:/bin",
                self.bin.display(),
                self.home.join("tools").display(),
                self.home.join("junk").display()
            ),
        )
        .env("CODING_BRIDGE_CLAUDE_PATH", self.home.join("agents/claude"))
        .env("XDG_CONFIG_HOME", self.home.join("xdg"))
        .env("CODING_BRIDGE_SERVICE_MANAGER", manager)
        .env("CODING_BRIDGE_SERVICE_DIR", self.home.join("etc"))
        .arg("service")
        .args(args);
        c
    }

    fn run(&self, manager: &str, args: &[&str]) -> Output {
        run(&mut self.cmd(manager, args))
    }

    /// The manager commands run so far, one per line; the log is then emptied.
    fn commands(&self) -> Vec<String> {
        let p = self.home.join("manager.log");
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let _ = std::fs::remove_file(&p);
        text.lines().map(str::to_string).collect()
    }

    fn user_unit(&self) -> PathBuf {
        self.home.join("xdg/systemd/user").join(UNIT)
    }

    fn cfg(&self) -> String {
        self.home.join("cfg").display().to_string()
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn me() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `systemd-analyze verify` on a unit, where the tool exists (the error text otherwise).
fn verify(unit: &Path) {
    let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
    else {
        eprintln!(
            "systemd-analyze is not installed: {} not verified",
            unit.display()
        );
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    // Outside a booted systemd the tool may complain about the manager itself; lines
    // naming the unit are what counts.
    let about_unit: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(".service") || l.contains("Unknown") || l.contains("not executable"))
        .collect();
    assert!(
        about_unit.is_empty(),
        "systemd-analyze verify {}: {err}",
        unit.display()
    );
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_user_service_is_installed_controlled_and_removed() {
    let h = Host::new("svc-user", true);

    // install: the unit, then exactly these manager commands, then the linger advice.
    let o = h.run("systemd", &["install"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let unit = std::fs::read_to_string(h.user_unit()).unwrap();
    let exe = std::fs::canonicalize(bin()).unwrap();
    assert!(
        unit.contains(&format!(
            "\nExecStart={} --config-dir {} run\n",
            exe.display(),
            h.cfg()
        )),
        "{unit}"
    );
    let path_line = unit
        .lines()
        .find(|l| l.starts_with("Environment=\"PATH="))
        .unwrap();
    let dirs: Vec<&str> = path_line
        .trim_start_matches("Environment=\"PATH=")
        .trim_end_matches('"')
        .split(':')
        .collect();
    let has = |d: &str| dirs.contains(&h.home.join(d).to_str().unwrap());
    assert!(
        has("agents") && has("tools"),
        "claude's and codex's dirs: {path_line}"
    );
    assert!(
        !has("junk") && !has("bin"),
        "only where agents were found: {path_line}"
    );
    assert!(dirs.contains(&"/usr/bin"), "{path_line}");
    let carried = format!(
        "Environment=\"CODING_BRIDGE_CLAUDE_PATH={}\"",
        h.home.join("agents/claude").display()
    );
    assert!(
        unit.contains(&carried),
        "the configured claude is carried over: {unit}"
    );
    assert!(unit.contains("WantedBy=default.target"));
    assert!(unit.contains("Restart=on-failure"));
    assert_eq!(
        std::fs::metadata(h.user_unit())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    let name = me();
    assert_eq!(
        h.commands(),
        [
            "systemctl --user daemon-reload".to_string(),
            format!("systemctl --user enable {UNIT}"),
            format!("systemctl --user restart {UNIT}"),
            format!("loginctl show-user {name} --property=Linger --value"),
        ]
    );
    assert!(
        stdout(&o).contains(&format!("sudo loginctl enable-linger {name}")),
        "{}",
        stdout(&o)
    );
    verify(&h.user_unit());

    // A second install refuses and leaves the unit as it is; --force writes it again
    // (lingering on: no advice).
    std::fs::write(h.user_unit(), "# edited by hand\n").unwrap();
    let o = h.run("systemd", &["install"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("exists already") && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    assert!(h.commands().is_empty());
    assert_eq!(
        std::fs::read_to_string(h.user_unit()).unwrap(),
        "# edited by hand\n"
    );
    let o = run(h
        .cmd("systemd", &["install", "--force"])
        .env("FAKE_LINGER", "yes"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(h.commands().len(), 4);
    assert!(!stdout(&o).contains("enable-linger"), "{}", stdout(&o));
    assert_eq!(std::fs::read_to_string(h.user_unit()).unwrap(), unit);

    // A manager command that fails after the unit is written: exit 1, saying what stays
    // and what to do.
    let o = run(h
        .cmd("systemd", &["install", "--force"])
        .env("FAKE_FAIL", "enable"));
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(
        err.contains("`systemctl --user enable coding-bridge-agent.service` failed"),
        "{err}"
    );
    assert!(
        err.contains("enable-linger") && err.contains("stays at") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        h.commands(),
        [
            "systemctl --user daemon-reload".to_string(),
            format!("systemctl --user enable {UNIT}")
        ],
        "nothing after the failure"
    );

    // start / stop / restart: the manager's own commands.
    for verb in ["start", "stop", "restart"] {
        let o = h.run("systemd", &[verb]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(h.commands(), [format!("systemctl --user {verb} {UNIT}")]);
    }
    // A failing manager command is exit 1, naming the command.
    let o = run(h.cmd("systemd", &["restart"]).env("FAKE_EXIT", "5"));
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains(&format!("`systemctl --user restart {UNIT}` failed")),
        "{}",
        stderr(&o)
    );
    h.commands();

    // status: the manager's state and our own.
    let o = h.run("systemd", &["status", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(s["installed"], true);
    assert_eq!(s["scope"], "user");
    assert_eq!(s["service"]["ActiveState"], "active");
    assert_eq!(s["service"]["MainPID"], "4242");
    assert_eq!(s["paired"], true);
    assert_eq!(s["daemon_running"], false);
    let o = h.run("systemd", &["status"]);
    assert!(
        stdout(&o).contains("active (running), enabled, main pid 4242"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("Paired:      yes"));
    h.commands();

    // uninstall --dry-run changes nothing; uninstall removes it and keeps credentials.
    let before = snapshot(h.home.path());
    let o = h.run("systemd", &["uninstall", "--dry-run"]);
    assert_eq!(code(&o), 0);
    assert!(
        stdout(&o).contains(&format!("$ systemctl --user disable --now {UNIT}")),
        "{}",
        stdout(&o)
    );
    assert!(h.commands().is_empty(), "a dry run runs nothing");
    assert_eq!(snapshot(h.home.path()), before, "a dry run writes nothing");
    let o = h.run("systemd", &["uninstall"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        h.commands(),
        [
            format!("systemctl --user disable --now {UNIT}"),
            "systemctl --user daemon-reload".to_string()
        ]
    );
    assert!(!h.user_unit().exists());
    assert!(
        h.home.join("cfg/credentials.json").exists(),
        "credentials are kept"
    );
    // Not installed any more: control refuses, uninstall has nothing to do.
    let o = h.run("systemd", &["start"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("not installed"), "{}", stderr(&o));
    assert_eq!(code(&h.run("systemd", &["uninstall"])), 0);
}

#[test]
fn every_refusal_has_its_exit_code_and_a_dry_run_touches_nothing() {
    // Not paired: 1, nothing written.
    let h = Host::new("svc-refuse", false);
    let o = h.run("systemd", &["install"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("not paired") && stderr(&o).contains("coding-bridge-agent pair"),
        "{}",
        stderr(&o)
    );
    assert!(!h.user_unit().exists());
    assert!(h.commands().is_empty());

    // No service manager (a container): 2.
    let h = Host::new("svc-none", true);
    let o = h.run("none", &["install"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("no service manager"), "{}", stderr(&o));
    assert_eq!(code(&h.run("none", &["status"])), 2);
    // An unknown override is a usage error too.
    assert_eq!(code(&h.run("upstart", &["install"])), 2);

    // A dry run prints the unit and the commands, and changes nothing (an environment
    // variable that is not UTF-8 is no reason to fail).
    let before = snapshot(h.home.path());
    {
        use std::os::unix::ffi::OsStrExt;
        let o = run(h.cmd("systemd", &["install", "--dry-run"]).env(
            "CODING_BRIDGE_ODD_PATH",
            std::ffi::OsStr::from_bytes(b"/opt/\xff"),
        ));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(
            !stdout(&o).contains("CODING_BRIDGE_ODD_PATH"),
            "{}",
            stdout(&o)
        );
    }
    let o = h.run("systemd", &["install", "--dry-run"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Would write") && stdout(&o).contains("ExecStart="),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains(&format!("$ systemctl --user enable {UNIT}")));
    assert!(h.commands().is_empty());
    assert_eq!(snapshot(h.home.path()), before);

    // A daemon already running for this config dir, outside the service: 1.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(h.home.join("cfg/agent.lock"))
        .unwrap();
    lock.lock().unwrap();
    std::fs::write(h.home.join("cfg/agent.lock"), "31337\n").unwrap();
    let o = h.run("systemd", &["install"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("already runs") && stderr(&o).contains("31337"),
        "{}",
        stderr(&o)
    );
    assert!(!h.user_unit().exists());
    // ... unless it is the service's own daemon (a reinstall with --force).
    h.commands();
    drop(lock);
    assert_eq!(code(&h.run("systemd", &["install"])), 0);
    h.commands();
    let lock = std::fs::File::open(h.home.join("cfg/agent.lock")).unwrap();
    lock.lock().unwrap();
    let o = run(h
        .cmd("systemd", &["install", "--force"])
        .env("FAKE_MAINPID", "31337"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(h
        .cmd("systemd", &["install", "--force"])
        .env("FAKE_MAINPID", "999"));
    assert_eq!(code(&o), 1, "another daemon than the service's");
    // A dry run says the same (it asks the manager, read-only).
    let o = run(h
        .cmd("systemd", &["install", "--force", "--dry-run"])
        .env("FAKE_MAINPID", "999"));
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(stderr(&o).contains("already runs"));
    drop(lock);
    h.commands();

    // Through sudo: a user service would be root's, so it is refused; a system service
    // runs as the account that ran sudo, which must own the credentials.
    if me() == "root" {
        let o = run(h.cmd("systemd", &["install"]).env("SUDO_USER", "nobody"));
        assert_eq!(code(&o), 1);
        assert!(
            stderr(&o).contains("root's user service") && stderr(&o).contains("--system"),
            "{}",
            stderr(&o)
        );
        let o = run(h
            .cmd("systemd", &["install", "--system"])
            .env("SUDO_USER", "nobody"));
        assert_eq!(code(&o), 1);
        assert!(
            stderr(&o).contains("another account than nobody"),
            "{}",
            stderr(&o)
        );
        let o = run(h
            .cmd("systemd", &["install", "--system"])
            .env("DOAS_USER", "no-such-user-x"));
        assert_eq!(code(&o), 1);
        assert!(stderr(&o).contains("DOAS_USER names"), "{}", stderr(&o));
        assert!(!h.home.join("etc").exists());
        assert!(h.commands().is_empty());
    }

    // The system scope needs root: 1 (checked as an unprivileged account where we can).
    if Command::new("setpriv").arg("--version").output().is_ok() && me() == "root" {
        let staged = h.home.join("agent-copy");
        copy_executable(Path::new(bin()), &staged);
        std::fs::set_permissions(h.home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut s = Command::new("setpriv");
        s.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&staged)
            .args(["service", "install", "--system"])
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", h.bin.display()))
            .env("HOME", "/nonexistent")
            .env("CODING_BRIDGE_CONFIG_DIR", h.home.join("cfg"))
            .env("CODING_BRIDGE_SERVICE_MANAGER", "systemd")
            .env("CODING_BRIDGE_SERVICE_DIR", h.home.join("etc"));
        let o = run(&mut s);
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        assert!(
            stderr(&o).contains("needs root") && stderr(&o).contains("sudo"),
            "{}",
            stderr(&o)
        );
        assert!(!h.home.join("etc").exists());
    } else {
        eprintln!("not root or no setpriv: the root refusal is not exercised");
    }
}

#[test]
fn system_units_and_openrc_scripts() {
    if me() != "root" {
        eprintln!("SKIPPED: the system scope needs root");
        return;
    }
    let h = Host::new("svc-system", true);
    let o = h.run("systemd", &["install", "--system"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let file = h.home.join("etc").join(UNIT);
    let unit = std::fs::read_to_string(&file).unwrap();
    assert!(
        unit.contains("\nUser=root\nGroup=root\n"),
        "the invoking account: {unit}"
    );
    assert!(unit.contains(&format!(" --config-dir {} run\n", h.cfg())));
    assert!(unit.contains("WantedBy=multi-user.target"));
    assert_eq!(
        h.commands(),
        [
            "systemctl daemon-reload".to_string(),
            format!("systemctl enable {UNIT}"),
            format!("systemctl restart {UNIT}"),
        ],
        "no --user, no linger advice"
    );
    verify(&file);
    let o = h.run("systemd", &["status", "--system", "--json"]);
    let s: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(s["scope"], "system");
    h.commands();
    // Without --system, control finds the system unit when there is no user unit.
    assert_eq!(code(&h.run("systemd", &["stop"])), 0);
    assert_eq!(h.commands(), [format!("systemctl stop {UNIT}")]);
    assert_eq!(code(&h.run("systemd", &["uninstall", "--system"])), 0);
    assert!(!file.exists());
    h.commands();

    // OpenRC: a supervised script, the runlevel, and back.
    let o = h.run("openrc", &["install"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let script = h.home.join("etc/coding-bridge-agent");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.starts_with("#!/sbin/openrc-run\n"));
    assert!(text.contains("supervisor=\"supervise-daemon\""));
    assert!(
        text.contains(&format!("command_args=\"--config-dir {} run\"", h.cfg())),
        "{text}"
    );
    assert!(text.contains("command_user=\"root:root\""));
    assert_eq!(
        std::fs::metadata(&script).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let sh = Command::new("sh").arg("-n").arg(&script).output().unwrap();
    assert!(
        sh.status.success(),
        "{}",
        String::from_utf8_lossy(&sh.stderr)
    );
    assert_eq!(
        h.commands(),
        [
            "rc-update add coding-bridge-agent default",
            "rc-service coding-bridge-agent restart"
        ]
    );
    let o = h.run("openrc", &["status", "--json"]);
    let s: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(s["manager"], "openrc");
    assert_eq!(s["service"]["started"], true);
    h.commands();
    assert_eq!(code(&h.run("openrc", &["uninstall"])), 0);
    assert_eq!(
        h.commands(),
        [
            "rc-service coding-bridge-agent stop",
            "rc-update del coding-bridge-agent default"
        ]
    );
    assert!(!script.exists());
}

#[test]
fn odd_paths_survive_quoting_and_status_finds_the_units_config_dir() {
    let h = Host::new("svc-odd", false);
    // A binary and a config dir with spaces, `$`, `%` and a quote in their names.
    let dir = h.home.join("my $HOME %h");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("coding-bridge-agent");
    copy_executable(Path::new(bin()), &exe);
    let cfg = h.home.join("cfg $USER %n it's");
    std::fs::create_dir_all(&cfg).unwrap();
    let creds = cfg.join("credentials.json");
    std::fs::write(
        &creds,
        json!({"node_token": "t", "node_name": "n", "bridge_url": "http://x"}).to_string(),
    )
    .unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let c = h.cmd("systemd", &["install"]);
    let mut odd = Command::new(&exe);
    odd.args(c.get_args()).env_clear();
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            odd.env(k, v);
        }
    }
    odd.env("CODING_BRIDGE_CONFIG_DIR", &cfg);
    let o = run(&mut odd);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let unit = std::fs::read_to_string(h.user_unit()).unwrap();
    assert!(
        unit.contains("/my $HOME %%h/") && unit.contains("$$USER %%n it's"),
        "{unit}"
    );
    verify(&h.user_unit());
    // A binary whose path systemd would refuse is refused here first.
    let quoted = h.home.join("it's");
    std::fs::create_dir_all(&quoted).unwrap();
    copy_executable(Path::new(bin()), &quoted.join("coding-bridge-agent"));
    let mut q = Command::new(quoted.join("coding-bridge-agent"));
    q.args(odd.get_args()).env_clear();
    for (k, v) in odd.get_envs() {
        if let Some(v) = v {
            q.env(k, v);
        }
    }
    q.arg("--force");
    let o = run(&mut q);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("quotes or backslashes"),
        "{}",
        stderr(&o)
    );
    // status from a shell with another config dir reads the unit's.
    let o = h.run("systemd", &["status", "--json"]);
    let s: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(s["config_dir"], cfg.to_str().unwrap(), "{s}");
    assert_eq!(s["paired"], true);
}

#[test]
fn status_reports_the_running_daemon_and_its_link() {
    let n = support::node::Node::start(&[]);
    let mut c = agent(&n.home);
    c.env("CODING_BRIDGE_SERVICE_MANAGER", "systemd")
        .env("XDG_CONFIG_HOME", n.home.join("xdg"))
        .args(["service", "status", "--json"]);
    let o = run(&mut c);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(s["installed"], false);
    assert_eq!(s["daemon_running"], true);
    assert_eq!(s["daemon_pid"], n.daemon.pid());
    assert_eq!(s["connected"], true, "{s}");
    assert_eq!(s["last_error"], Value::Null);
}

#[test]
fn contrib_keeps_what_install_writes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contrib");
    for (name, text) in coding_bridge_agent::testing::contrib() {
        let file = dir.join(name);
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&file, &text).unwrap();
        }
        let on_disk = std::fs::read_to_string(&file).unwrap_or_default();
        assert_eq!(
            on_disk, text,
            "contrib/{name} differs from what install writes (BLESS=1 rewrites it)"
        );
    }
}
