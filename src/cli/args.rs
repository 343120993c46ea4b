//! Command-line parsing with lexopt. This module only turns argv into a [`Cli`]; values
//! stay as text here and are validated by [`crate::cli::config`], which names the flag or
//! variable at fault. Global flags may appear before or after the command.

use std::ffi::OsString;
use std::fmt;

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Up,
    Pair,
    Run,
    Status,
    Logout,
    /// `channels init` / `channels doctor`.
    Channels,
    /// `service install|start|stop|restart|status|uninstall`.
    Service,
    /// `policy init` / `policy check`.
    Policy,
    /// `audit [--since T] [--session ID] [--verify]`.
    Audit,
}

impl Command {
    pub fn name(self) -> &'static str {
        match self {
            Command::Up => "up",
            Command::Pair => "pair",
            Command::Run => "run",
            Command::Status => "status",
            Command::Logout => "logout",
            Command::Channels => "channels",
            Command::Service => "service",
            Command::Policy => "policy",
            Command::Audit => "audit",
        }
    }

    fn from_name(s: &str) -> Option<Command> {
        Some(match s {
            "up" => Command::Up,
            "pair" => Command::Pair,
            "run" => Command::Run,
            "status" => Command::Status,
            "logout" => Command::Logout,
            "channels" => Command::Channels,
            "service" => Command::Service,
            "policy" => Command::Policy,
            "audit" => Command::Audit,
            _ => return None,
        })
    }

    /// Command-specific flags this command accepts.
    fn accepts(self, flag: &str) -> bool {
        const RUN: &[&str] = &[
            "model",
            "cwd",
            "permission-timeout",
            "claude-path",
            "codex-path",
        ];
        const PAIR: &[&str] = &["json", "qr", "no-qr", "timeout"];
        match self {
            Command::Up => RUN.contains(&flag) || PAIR.contains(&flag),
            Command::Run => RUN.contains(&flag),
            Command::Pair => PAIR.contains(&flag),
            Command::Status | Command::Logout | Command::Channels | Command::Policy => {
                flag == "json"
            }
            Command::Audit => ["json", "since", "session", "verify"].contains(&flag),
            Command::Service => ["json", "system", "force", "dry-run"].contains(&flag),
        }
    }
}

/// The parsed invocation.
#[derive(Debug)]
pub enum Action {
    Help(Option<Command>),
    Version,
    Exec(Command),
}

/// Flag values as given (unvalidated).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub bridge_url: Option<String>,
    pub name: Option<String>,
    pub config_dir: Option<String>,
    pub log_level: Option<String>,
    pub log_dir: Option<String>,
    pub verbose: u8,
    pub model: Option<String>,
    pub cwd: Option<String>,
    pub permission_timeout: Option<String>,
    pub claude_path: Option<String>,
    pub codex_path: Option<String>,
    pub json: bool,
    /// `Some(true)` for `--qr`, `Some(false)` for `--no-qr`.
    pub qr: Option<bool>,
    pub timeout: Option<String>,
    /// The subcommand of `channels` (`init`, `doctor`) or `service` (`install`, ...).
    pub sub: Option<String>,
    /// `service`: the system scope, rewrite an installed unit, only show what it would do.
    pub system: bool,
    pub force: bool,
    pub dry_run: bool,
    /// `audit`: records from this time on, of this session only; check the chain.
    pub since: Option<String>,
    pub session: Option<String>,
    pub verify: bool,
}

#[derive(Debug)]
pub struct Cli {
    pub action: Action,
    pub flags: Flags,
}

/// A usage error, shown with a pointer to `--help`; exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> Self {
        UsageError(e.to_string())
    }
}

/// Parse the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, UsageError> {
    use lexopt::prelude::*;

    let mut parser = lexopt::Parser::from_args(args);
    let mut flags = Flags::default();
    let mut command: Option<Command> = None;
    let mut help = false;
    let mut help_topic: Option<Command> = None;
    let mut version = false;
    let mut specific: Vec<&'static str> = Vec::new();

    fn text(v: OsString, flag: &str) -> Result<String, UsageError> {
        v.into_string()
            .map_err(|_| UsageError(format!("the value of --{flag} is not valid UTF-8")))
    }

    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => help = true,
            Short('V') | Long("version") => version = true,
            Short('v') | Long("verbose") => flags.verbose = flags.verbose.saturating_add(1),
            Long("bridge-url") => flags.bridge_url = Some(text(parser.value()?, "bridge-url")?),
            Long("name") => flags.name = Some(text(parser.value()?, "name")?),
            Long("config-dir") => flags.config_dir = Some(text(parser.value()?, "config-dir")?),
            Long("log-level") => flags.log_level = Some(text(parser.value()?, "log-level")?),
            Long("log-dir") => flags.log_dir = Some(text(parser.value()?, "log-dir")?),
            Long("model") => {
                specific.push("model");
                flags.model = Some(text(parser.value()?, "model")?);
            }
            Long("cwd") => {
                specific.push("cwd");
                flags.cwd = Some(text(parser.value()?, "cwd")?);
            }
            Long("permission-timeout") => {
                specific.push("permission-timeout");
                flags.permission_timeout = Some(text(parser.value()?, "permission-timeout")?);
            }
            Long("claude-path") => {
                specific.push("claude-path");
                flags.claude_path = Some(text(parser.value()?, "claude-path")?);
            }
            Long("codex-path") => {
                specific.push("codex-path");
                flags.codex_path = Some(text(parser.value()?, "codex-path")?);
            }
            Long("json") => {
                specific.push("json");
                flags.json = true;
            }
            Long("qr") => {
                specific.push("qr");
                flags.qr = Some(true);
            }
            Long("no-qr") => {
                specific.push("no-qr");
                flags.qr = Some(false);
            }
            Long("system") => {
                specific.push("system");
                flags.system = true;
            }
            Long("force") => {
                specific.push("force");
                flags.force = true;
            }
            Long("dry-run") => {
                specific.push("dry-run");
                flags.dry_run = true;
            }
            Long("since") => {
                specific.push("since");
                flags.since = Some(text(parser.value()?, "since")?);
            }
            Long("session") => {
                specific.push("session");
                flags.session = Some(text(parser.value()?, "session")?);
            }
            Long("verify") => {
                specific.push("verify");
                flags.verify = true;
            }
            Long("timeout") => {
                specific.push("timeout");
                flags.timeout = Some(text(parser.value()?, "timeout")?);
            }
            Value(v) => {
                let v = text(v, "command")?;
                if command.is_none() && !help && v == "help" {
                    help = true;
                } else if help && help_topic.is_none() && command.is_none() {
                    help_topic = Some(
                        Command::from_name(&v)
                            .ok_or_else(|| UsageError(format!("no such command: {v:?}")))?,
                    );
                } else if command.is_none() {
                    command = Some(Command::from_name(&v).ok_or_else(|| {
                        UsageError(format!(
                            "unknown command {v:?} (expected up, pair, run, status, logout, channels, service, policy or audit)"
                        ))
                    })?);
                } else if command == Some(Command::Channels) && flags.sub.is_none() {
                    if v != "init" && v != "doctor" {
                        return Err(UsageError(format!(
                            "unknown channels command {v:?} (expected init or doctor)"
                        )));
                    }
                    flags.sub = Some(v);
                } else if command == Some(Command::Policy) && flags.sub.is_none() {
                    if v != "init" && v != "check" {
                        return Err(UsageError(format!(
                            "unknown policy command {v:?} (expected init or check)"
                        )));
                    }
                    flags.sub = Some(v);
                } else if command == Some(Command::Service) && flags.sub.is_none() {
                    if crate::cli::service::Verb::parse(&v).is_none() {
                        return Err(UsageError(format!(
                            "unknown service command {v:?} (expected install, start, stop, restart, status or uninstall)"
                        )));
                    }
                    flags.sub = Some(v);
                } else {
                    return Err(UsageError(format!("unexpected argument {v:?}")));
                }
            }
            other => return Err(other.unexpected().into()),
        }
    }

    if help {
        return Ok(Cli {
            action: Action::Help(help_topic.or(command)),
            flags,
        });
    }
    if version {
        return Ok(Cli {
            action: Action::Version,
            flags,
        });
    }
    let command = command.unwrap_or(Command::Up);
    if command == Command::Channels && flags.sub.is_none() {
        return Err(UsageError(
            "`channels` needs a command: init (write a skeleton channels.toml) or doctor (check it)".into(),
        ));
    }
    if command == Command::Policy && flags.sub.is_none() {
        return Err(UsageError(
            "`policy` needs a command: init (write a skeleton policy.toml) or check (validate it and show the policy in force)".into(),
        ));
    }
    if command == Command::Service {
        let sub = flags.sub.as_deref().ok_or_else(|| {
            UsageError(
                "`service` needs a command: install, start, stop, restart, status or uninstall"
                    .into(),
            )
        })?;
        let allowed: &[&str] = match sub {
            "install" => &["system", "force", "dry-run"],
            "uninstall" => &["system", "dry-run"],
            "status" => &["system", "json"],
            _ => &["system"],
        };
        if let Some(bad) = specific.iter().find(|f| !allowed.contains(f)) {
            return Err(UsageError(format!(
                "--{bad} is not an option of `service {sub}`"
            )));
        }
    }
    if let Some(bad) = specific.iter().find(|f| !command.accepts(f)) {
        return Err(UsageError(format!(
            "--{bad} is not an option of `{}`",
            command.name()
        )));
    }
    if flags.qr.is_some() && specific.contains(&"qr") && specific.contains(&"no-qr") {
        return Err(UsageError("--qr and --no-qr contradict each other".into()));
    }
    Ok(Cli {
        action: Action::Exec(command),
        flags,
    })
}

pub const GLOBAL_OPTIONS: &str = "\
Global options:
      --bridge-url URL      relay base URL [env CODING_BRIDGE_URL]
      --name NAME           node name shown in the browser [env CODING_BRIDGE_NODE_NAME]
      --config-dir DIR      where credentials and the lock live [env CODING_BRIDGE_CONFIG_DIR]
      --log-level LEVEL     error, warn, info, debug or trace [env CODING_BRIDGE_LOG_LEVEL]
      --log-dir DIR         log file directory (default <config-dir>/logs) [env CODING_BRIDGE_LOG_DIR]
  -v, --verbose             more logging (-v debug, -vv trace)
  -h, --help                show help
  -V, --version             show the version";

/// Help text for the program or one command.
pub fn help(topic: Option<Command>) -> String {
    let run_opts = "\
      --model MODEL             default Claude model for new sessions [env CODING_BRIDGE_MODEL]
      --cwd DIR                 default working directory for sessions (default: current dir)
      --permission-timeout SECS deny a tool request unanswered this long; 0 waits forever
                                (default 1800) [env CODING_BRIDGE_PERMISSION_TIMEOUT]
      --claude-path PATH        the claude CLI to run [env CODING_BRIDGE_CLAUDE_PATH]
      --codex-path PATH         the codex CLI to run [env CODING_BRIDGE_CODEX_PATH]";
    let pair_opts = "\
      --json                    print one JSON object per line on stdout (for scripts)
      --qr / --no-qr            force or suppress the terminal QR code (default: on a TTY)
      --timeout SECS            give up waiting for the claim sooner than the code expires";
    let exit_codes = "\
Exit codes:
  0  success
  1  failed: pairing expired, consumed, refused or timed out; not paired; another daemon
     runs for this config dir; the relay rejected the token
  2  usage or configuration error (the flag or variable is named)
  3  relay unreachable: network error, a 5xx, or an answer that is not the expected JSON";
    match topic {
        None => format!(
            "coding-bridge-agent {}
Run Claude Code on this machine and drive it from a browser through a relay.

Usage: coding-bridge-agent [OPTIONS] [COMMAND]

Commands:
  up        pair if needed, then run (default)
  pair      pair this machine with your account and exit
  run       run with stored credentials
  status    show configuration, pairing and whether a daemon is running
  logout    remove the stored credentials
  channels  init: write a skeleton channels.toml; doctor: check it and reach each bot
  service   install, start, stop, restart, status or uninstall the daemon as a service
  policy    init: write a skeleton policy.toml; check: validate it, show the policy
  audit     show the audit log (--since, --session), or check its chain (--verify)
  help      show help for a command

{GLOBAL_OPTIONS}

{exit_codes}

Run `coding-bridge-agent help COMMAND` for a command's options.",
            env!("CARGO_PKG_VERSION")
        ),
        Some(Command::Up) => format!(
            "Pair if this machine has no credentials, then connect and serve sessions.

Usage: coding-bridge-agent up [OPTIONS]

{run_opts}
{pair_opts}

{GLOBAL_OPTIONS}

{exit_codes}"
        ),
        Some(Command::Run) => format!(
            "Connect with the stored credentials and serve sessions until stopped.

Usage: coding-bridge-agent run [OPTIONS]

{run_opts}

{GLOBAL_OPTIONS}

{exit_codes}"
        ),
        Some(Command::Pair) => format!(
            "Pair this machine: show a code and a link, wait until it is claimed, store the token.

Usage: coding-bridge-agent pair [OPTIONS]

{pair_opts}

{GLOBAL_OPTIONS}

{exit_codes}"
        ),
        Some(Command::Channels) => format!(
            "Chat channels (Telegram) in <config dir>/channels.toml.

Usage: coding-bridge-agent channels init      write a commented skeleton (0600), if none
       coding-bridge-agent channels doctor    check the file, read each token, ask each bot getMe

      --json                    doctor: one JSON object per instance

{GLOBAL_OPTIONS}

{exit_codes}"
        ),
        Some(Command::Service) => format!(
            "Keep the daemon running with the host's service manager (systemd, or OpenRC).

Usage: coding-bridge-agent service install [--system] [--force] [--dry-run]
       coding-bridge-agent service start|stop|restart [--system]
       coding-bridge-agent service status [--system] [--json]
       coding-bridge-agent service uninstall [--system] [--dry-run]

install writes the unit (a user unit in $XDG_CONFIG_HOME/systemd/user/ by default; with
--system a system unit running as the invoking account, which needs root; an OpenRC
script in /etc/init.d on OpenRC hosts, which needs root), with this binary's absolute
path, the config dir and a PATH holding the directories where the agents' CLIs are found
now; then enables and starts it. It refuses when this machine is not paired, when the
unit exists (unless --force), or when a daemon runs for this config dir outside the
service. uninstall stops, disables and removes it; the credentials are kept.

      --system                  the system service (default: the user service)
      --force                   install: write the unit again although it exists
      --dry-run                 install/uninstall: print what would be written and run;
                                change nothing
      --json                    status: one JSON object

Exit codes:
  0  done
  1  refused or failed: not paired; the unit exists; a daemon runs outside the service;
     root needed; not installed; a manager command failed
  2  no service manager here (a container), or a usage error

Environment: CODING_BRIDGE_SERVICE_MANAGER (systemd, openrc or none) overrides the
detection; CODING_BRIDGE_SERVICE_DIR, where a system unit or OpenRC script goes.

{GLOBAL_OPTIONS}"
        ),
        Some(Command::Policy) => format!(
            "The machine owner's policy in <config dir>/policy.toml: the permission modes, working
directories and agents remote parties may use, and approval rules decided on this machine.

Usage: coding-bridge-agent policy init      write a commented skeleton (0600), if none
       coding-bridge-agent policy check     validate it and print the policy in force

      --json                    check: the policy as one JSON object

A running daemon reads the file again on SIGHUP (a broken file then keeps the old policy).

Exit codes:
  0  done (check: the file is valid, or there is none: no limits)
  1  init: the file exists already, or cannot be written
  2  the file is malformed (its line is named), or a usage error

{GLOBAL_OPTIONS}"
        ),
        Some(Command::Audit) => format!(
            "The audit log (<config dir>/audit.jsonl and its rotated files): every session start,
tool approval request, decision and refusal by policy, each line chained to the one
before it by its SHA-256.

Usage: coding-bridge-agent audit [--since T] [--session ID] [--json]
       coding-bridge-agent audit --verify [--json]

      --since T                 records from T on: a time (2026-12-08, 2026-12-08T14:00Z)
                                or a span back from now (90s, 30m, 2h, 7d)
      --session ID              only the records of this session
      --json                    the records as stored, one JSON object per line
      --verify                  check the whole chain; names the first broken line

Exit codes:
  0  done; --verify: the chain is intact
  1  --verify: the chain is broken (a line was changed, removed or inserted)
  2  a usage error (a --since that is not a time or a span)

{GLOBAL_OPTIONS}"
        ),
        Some(Command::Status) => format!(
            "Show the bridge URL, node name, config dir, whether this machine is paired and
whether a daemon is running for this config dir.

Usage: coding-bridge-agent status [--json]

      --json                print one JSON object

{GLOBAL_OPTIONS}"
        ),
        Some(Command::Logout) => format!(
            "Remove the stored credentials (credentials.json) from the config dir.

Usage: coding-bridge-agent logout [--json]

      --json                print one JSON object

{GLOBAL_OPTIONS}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cli, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn defaults_to_up() {
        assert!(matches!(p(&[]).unwrap().action, Action::Exec(Command::Up)));
    }

    #[test]
    fn globals_before_and_after_command() {
        let c = p(&["--name", "a", "status", "--config-dir=/x", "-vv", "--json"]).unwrap();
        assert!(matches!(c.action, Action::Exec(Command::Status)));
        assert_eq!(c.flags.name.as_deref(), Some("a"));
        assert_eq!(c.flags.config_dir.as_deref(), Some("/x"));
        assert_eq!(c.flags.verbose, 2);
        assert!(c.flags.json);
    }

    #[test]
    fn rejects_flags_of_other_commands() {
        let e = p(&["status", "--model", "opus"]).unwrap_err();
        assert!(e.0.contains("--model"), "{}", e.0);
        assert!(p(&["run", "--json"]).is_err());
        assert!(p(&["pair", "--qr", "--no-qr"]).is_err());
        assert!(p(&["frobnicate"]).is_err());
        assert!(p(&["--bogus"]).is_err());
        assert!(p(&["status", "extra"]).is_err());
        assert!(p(&["service"]).is_err());
        assert!(p(&["service", "reboot"]).is_err());
        assert!(p(&["service", "start", "--force"]).is_err());
        assert!(p(&["service", "status", "--dry-run"]).is_err());
        assert!(p(&["service", "install", "--json"]).is_err());
        assert!(p(&["run", "--system"]).is_err());
        let c = p(&["service", "install", "--system", "--force", "--dry-run"]).unwrap();
        assert!(matches!(c.action, Action::Exec(Command::Service)));
        assert!(c.flags.system && c.flags.force && c.flags.dry_run);
        assert_eq!(c.flags.sub.as_deref(), Some("install"));
    }

    #[test]
    fn help_forms() {
        assert!(matches!(p(&["--help"]).unwrap().action, Action::Help(None)));
        assert!(matches!(
            p(&["help", "pair"]).unwrap().action,
            Action::Help(Some(Command::Pair))
        ));
        assert!(matches!(
            p(&["run", "-h"]).unwrap().action,
            Action::Help(Some(Command::Run))
        ));
        assert!(matches!(p(&["-V"]).unwrap().action, Action::Version));
    }
}
