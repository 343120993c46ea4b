//! The service definitions `service install` writes: a systemd unit (user or system
//! scope) and an OpenRC script, rendered from [`Params`]. The files in `contrib/` are the
//! same renderings with generic parameters ([`contrib`]); a test keeps them equal.
//! Plain functions, no I/O.

/// The service's name for both managers.
pub const NAME: &str = "coding-bridge-agent";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `systemctl --user`: runs as the installing user while their manager runs.
    User,
    /// The system manager, running as one account.
    System,
}

/// What varies between installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// The daemon binary (absolute; `%h/...` allowed in a user unit).
    pub exe: String,
    /// Passed as `--config-dir` when set.
    pub config_dir: Option<String>,
    /// The service's PATH: where the agents' CLIs were found, then the usual dirs.
    pub path: String,
    /// The account and group a system service runs as.
    pub user: String,
    pub group: String,
    /// Their home (OpenRC's working directory and HOME).
    pub home: String,
    /// `CODING_BRIDGE_*_PATH` settings to carry over (name, value).
    pub env: Vec<(String, String)>,
}

/// A word for a systemd command line: `%` escaped, quoted when it has spaces or quotes.
/// (`$` is doubled in arguments, where systemd expands `$VAR`, not in the executable,
/// where it does not. Paths with control characters are refused before rendering, see
/// [`printable`].)
fn systemd_word(s: &str) -> String {
    quote_systemd(&s.replace('$', "$$"))
}

/// The executable of a command line.
fn systemd_exe(s: &str) -> String {
    quote_systemd(s)
}

fn quote_systemd(s: &str) -> String {
    let s = s.replace('%', "%%");
    if s.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\' || c == ';')
    {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

/// A value inside `Environment="NAME=value"`.
fn systemd_env(name: &str, value: &str) -> String {
    let v = value
        .replace('%', "%%")
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!("Environment=\"{name}={v}\"\n")
}

/// `s` inside double quotes in a shell script.
fn sh_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn exec_start(p: &Params, exe: &str) -> String {
    let mut line = exe.to_string();
    if let Some(dir) = &p.config_dir {
        line.push_str(&format!(" --config-dir {}", systemd_word(dir)));
    }
    line.push_str(" run");
    line
}

/// The systemd unit for `scope`.
pub fn systemd(scope: Scope, p: &Params) -> String {
    // A `%h/...` binary (contrib's user unit) is kept as a specifier, not escaped.
    let exe = if p.exe.starts_with("%h/") {
        p.exe.clone()
    } else {
        systemd_exe(&p.exe)
    };
    let path_env = if p.path.starts_with("%h/") {
        format!("Environment=PATH={}\n", p.path)
    } else {
        systemd_env("PATH", &p.path)
    };
    let mut extra = String::new();
    for (k, v) in &p.env {
        extra.push_str(&systemd_env(k, v));
    }
    let exec = exec_start(p, &exe);
    match scope {
        Scope::User => format!(
            "# coding-bridge-agent as a user service. `coding-bridge-agent service install`
# writes this file; contrib/ has the same for installing it by hand (contrib/README.md).
# Pair first: coding-bridge-agent pair

[Unit]
Description=Coding Bridge node daemon (drive Claude Code on this machine through a relay)
StartLimitIntervalSec=600
StartLimitBurst=5

[Service]
Type=exec
ExecStart={exec}
# Where the agents' CLIs (claude, codex, ...) were found, then the usual places.
{path_env}{extra}# Optional: CODING_BRIDGE_* settings or secrets, one VAR=value a line (mode 0600).
EnvironmentFile=-%h/.config/{NAME}.env
WorkingDirectory=%h
Restart=on-failure
RestartSec=10
# Exit 2 is a usage or configuration error: restarting will not fix it.
RestartPreventExitStatus=2
KillMode=mixed
TimeoutStopSec=30
UMask=0077
# Options that need no privileges in a user manager. (PrivateTmp= and the Protect*=
# family need user namespaces there; the system unit has them.)
NoNewPrivileges=yes

[Install]
WantedBy=default.target
"
        ),
        Scope::System => format!(
            "# coding-bridge-agent as a system service. `sudo coding-bridge-agent service install
# --system` writes this file; contrib/ has the same for installing it by hand
# (contrib/README.md).
#
# Runs `coding-bridge-agent run` as one unprivileged account (User=, Group=): agent
# sessions run as that account, in its home, with its logins. Pair first, as that
# account: sudo -u USER coding-bridge-agent pair
# Secrets (CODING_BRIDGE_NODE_TOKEN, ANTHROPIC_API_KEY, ...) can go in
# /etc/coding-bridge-agent.env (root-owned, mode 0600) instead of credentials.json.

[Unit]
Description=Coding Bridge node daemon (drive Claude Code on this machine through a relay)
Wants=network-online.target
After=network-online.target
# Give up after 5 failed starts in 10 minutes (e.g. not paired, token rejected).
StartLimitIntervalSec=600
StartLimitBurst=5

[Service]
Type=exec
User={user}
Group={group}
ExecStart={exec}
EnvironmentFile=-/etc/{NAME}.env
# Sessions start in the account's home unless CODING_BRIDGE_CWD / --cwd says otherwise.
WorkingDirectory=~
# Where the agents' CLIs (claude, codex, ...) were found, then the usual places.
{path_env}{extra}Restart=on-failure
RestartSec=10
# Exit 2 is a usage or configuration error: restarting will not fix it.
RestartPreventExitStatus=2
# The daemon closes every session on SIGTERM (stdin, SIGTERM, SIGKILL per process
# group) within its own budget; only then does systemd kill what is left.
KillMode=mixed
TimeoutStopSec=30
UMask=0077

# Hardening that still lets Claude Code work on the account's projects:
# - no ProtectHome= and ProtectSystem=full (not strict): $HOME stays writable, /usr,
#   /boot and /etc are read-only.
# - no MemoryDenyWriteExecute=: Claude Code is a JIT-ed native binary.
# - no RestrictNamespaces=: Claude Code's sandbox (bubblewrap) uses namespaces.
# - no SystemCallArchitectures=native: a 32-bit userland on a 64-bit kernel (Raspberry
#   Pi OS armhf with the arm64 kernel) would be refused every system call.
# - no PrivateDevices=: serial ports and other devices stay usable for the user's work.
# - NoNewPrivileges= also means `sudo` does not work inside sessions, on purpose.
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
PrivateTmp=yes
ProtectSystem=full
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK

[Install]
WantedBy=multi-user.target
",
            user = p.user,
            group = p.group,
        ),
    }
}

/// The OpenRC script (`/etc/init.d/coding-bridge-agent`), supervised (restarted when it
/// fails) by `supervise-daemon`.
pub fn openrc(p: &Params) -> String {
    let mut args = String::new();
    if let Some(dir) = &p.config_dir {
        args.push_str(&format!("--config-dir {} ", shell_word(dir)));
    }
    args.push_str("run");
    let mut exports = format!("export PATH={}\n", sh_quoted(&p.path));
    exports.push_str(&format!("export HOME={}\n", sh_quoted(&p.home)));
    for (k, v) in &p.env {
        exports.push_str(&format!("export {k}={}\n", sh_quoted(v)));
    }
    format!(
        "#!/sbin/openrc-run
# coding-bridge-agent as an OpenRC service. `sudo coding-bridge-agent service install`
# writes this file; contrib/ has the same for installing it by hand (contrib/README.md).
# Runs `coding-bridge-agent run` as one account (command_user); pair first, as that
# account. The daemon logs to <config dir>/logs/agent.log.

name=\"{NAME}\"
description=\"Coding Bridge node daemon (drive Claude Code on this machine through a relay)\"
supervisor=\"supervise-daemon\"
command={exe}
command_args={args}
command_user={user}
directory={home}
# Restart a failed daemon after 10 s; give up after 5 failures in 10 minutes.
respawn_delay=10
respawn_max=5
respawn_period=600
# The daemon closes its sessions on SIGTERM within 30 s.
retry=\"TERM/30/KILL/5\"

{exports}
depend() {{
\tneed net
\tafter firewall
}}
",
        // openrc-run passes these through `eval` unquoted: the inner quotes keep a path
        // with spaces one word.
        exe = sh_quoted(&shell_word(&p.exe)),
        args = sh_quoted(&args),
        user = sh_quoted(&format!("{}:{}", p.user, p.group)),
        home = sh_quoted(&shell_word(&p.home)),
    )
}

/// Whether `s` can go into a unit or script as it is (no control characters).
pub fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// A word inside OpenRC's `command_args` (split by the shell): single-quoted if needed.
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The `--config-dir` an installed unit or script passes (as `status` needs it).
pub fn config_dir_of(text: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("ExecStart=") || l.starts_with("command_args="))?;
    let exec = line.starts_with("ExecStart=");
    // command_args="…": undo the shell's double-quote escapes first.
    let body = match line.strip_prefix("command_args=") {
        Some(v) => {
            let v = v.strip_prefix('"')?.strip_suffix('"')?;
            let mut out = String::new();
            let mut it = v.chars();
            while let Some(c) = it.next() {
                match c {
                    '\\' => out.extend(it.next()),
                    c => out.push(c),
                }
            }
            out
        }
        None => line.to_string(),
    };
    let rest = &body[body.find("--config-dir ")? + "--config-dir ".len()..];
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    match chars.peek() {
        Some('"') => {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '"' => break,
                    c => out.push(c),
                }
            }
        }
        Some('\'') => {
            chars.next();
            // `'…'\''…'` (a quote inside) is the only escape shell_word makes.
            let inner: String = chars.collect();
            let inner = inner.replace("'\\''", "\u{0}");
            out = inner.split('\'').next().unwrap_or("").replace('\u{0}', "'");
        }
        _ => {
            out = chars
                .take_while(|c| !c.is_whitespace() && *c != '"')
                .collect()
        }
    }
    if exec {
        out = out.replace("%%", "%").replace("$$", "$");
    }
    (!out.is_empty()).then_some(out)
}

/// The files of `contrib/`: each service definition with generic parameters.
pub fn contrib() -> Vec<(&'static str, String)> {
    let system = Params {
        exe: format!("/usr/local/bin/{NAME}"),
        config_dir: None,
        path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        user: "coding-bridge".into(),
        group: "coding-bridge".into(),
        home: "/var/lib/coding-bridge".into(),
        env: Vec::new(),
    };
    let user = Params {
        exe: format!("%h/.local/bin/{NAME}"),
        path: "%h/.local/bin:/usr/local/bin:/usr/bin:/bin".into(),
        ..system.clone()
    };
    vec![
        (
            "coding-bridge-agent.user.service",
            systemd(Scope::User, &user),
        ),
        (
            "coding-bridge-agent.service",
            systemd(Scope::System, &system),
        ),
        ("coding-bridge-agent.openrc", openrc(&system)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_paths_are_quoted() {
        assert_eq!(systemd_word("/opt/x/bin"), "/opt/x/bin");
        assert_eq!(systemd_word("/opt/my dir/a%b"), "\"/opt/my dir/a%%b\"");
        assert_eq!(systemd_word("/opt/$HOME/x"), "/opt/$$HOME/x");
        assert_eq!(systemd_exe("/opt/$HOME/x"), "/opt/$HOME/x");
        assert!(!printable("/a\nb") && printable("/a b"));
        assert_eq!(
            systemd_env("PATH", "/a b:/c\"d"),
            "Environment=\"PATH=/a b:/c\\\"d\"\n"
        );
        assert_eq!(sh_quoted("a$b\"c`d"), "\"a\\$b\\\"c\\`d\"");
        assert_eq!(shell_word("/home/u/.ace-bridge"), "/home/u/.ace-bridge");
        assert_eq!(shell_word("/home/u/my cfg"), "'/home/u/my cfg'");
        let p = Params {
            exe: "/opt/my dir/coding-bridge-agent".into(),
            config_dir: Some("/home/u/my cfg".into()),
            path: "/home/u/.npm/bin:/usr/bin".into(),
            user: "u".into(),
            group: "u".into(),
            home: "/home/u".into(),
            env: vec![("CODING_BRIDGE_CLAUDE_PATH".into(), "/x/claude".into())],
        };
        let unit = systemd(Scope::User, &p);
        assert!(unit.contains(
            "ExecStart=\"/opt/my dir/coding-bridge-agent\" --config-dir \"/home/u/my cfg\" run\n"
        ));
        assert!(unit.contains("Environment=\"PATH=/home/u/.npm/bin:/usr/bin\"\n"));
        assert!(unit.contains("Environment=\"CODING_BRIDGE_CLAUDE_PATH=/x/claude\"\n"));
        assert_eq!(config_dir_of(&unit).as_deref(), Some("/home/u/my cfg"));
        for odd in ["/h/a%b$c d", "/h/it's", "/h/plain", "/h/q\"uote"] {
            let q = Params {
                config_dir: Some(odd.into()),
                ..p.clone()
            };
            assert_eq!(
                config_dir_of(&systemd(Scope::System, &q)).as_deref(),
                Some(odd)
            );
            assert_eq!(
                config_dir_of(&openrc(&q)).as_deref(),
                Some(odd),
                "{}",
                openrc(&q)
            );
        }
        let script = openrc(&p);
        assert!(script.contains("command=\"'/opt/my dir/coding-bridge-agent'\"\n"));
        assert!(script.contains("directory=\"/home/u\"\n"));
        assert!(script.contains("command_args=\"--config-dir '/home/u/my cfg' run\"\n"));
        assert!(script.contains("command_user=\"u:u\"\n"));
    }
}
