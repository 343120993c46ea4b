//! Settings: every value comes from the environment and a flag overrides it. All checks
//! happen here, before anything touches the network or disk; a bad value is a
//! [`ConfigError`] naming the flag or variable it came from (exit code 2).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::args::Flags;
use crate::sys::logging::Level;
use crate::sys::secret::Secret;

pub const DEFAULT_BRIDGE_URL: &str = "https://coding-bridge.acedata.cloud";
pub const DEFAULT_CLAIM_URL: &str = "https://studio.acedata.cloud/coding-bridge?code={code}";
pub const DEFAULT_HEARTBEAT_SECS: f64 = 15.0;
/// Approvals wait half an hour: the browser sends push notifications, and a person may
/// answer from a phone long after the request.
pub const DEFAULT_PERMISSION_TIMEOUT_SECS: f64 = 1800.0;
/// Silent retries of a turn whose CLI crashed before any output (PROTOCOL §6).
pub const DEFAULT_TURN_RETRY_LIMIT: u32 = 1;
pub const DEFAULT_TURN_RETRY_BACKOFF_SECS: f64 = 0.5;
/// `CLAUDE_CODE_ENTRYPOINT` for Claude children: the IDE label keeps bridge sessions
/// visible in `claude --resume` and IDE pickers (the SDK labels hide them).
pub const DEFAULT_CLAUDE_ENTRYPOINT: &str = "claude-vscode";
pub const DEFAULT_OUTBOX_MAX: usize = 5000;
pub const DEFAULT_PAIR_POLL_SECS: f64 = 2.0;
/// An agent with nothing to do for this long is stopped (it resumes on the next turn).
pub const DEFAULT_IDLE_STOP_SECS: f64 = 900.0;
/// Below this much free memory no agent starts before idle ones are stopped.
pub const DEFAULT_MIN_FREE_MEMORY: u64 = 256 << 20;
/// A chat's "Allow for 1 h" lasts this long.
pub const DEFAULT_GRANT_SECS: f64 = 3600.0;
/// `audit.jsonl` rotates at this size.
pub const DEFAULT_AUDIT_MAX: u64 = 8 << 20;

/// Every variable the daemon reads, for `.env.example` and the README.
pub const ENV_VARS: &[&str] = &[
    "CODING_BRIDGE_URL",
    "CODING_BRIDGE_NODE_NAME",
    "CODING_BRIDGE_CONFIG_DIR",
    "CODING_BRIDGE_HEARTBEAT_INTERVAL",
    "CODING_BRIDGE_PERMISSION_TIMEOUT",
    "CODING_BRIDGE_MODEL",
    "CODING_BRIDGE_CLAIM_URL",
    "CODING_BRIDGE_CLAUDE_PATH",
    "CODING_BRIDGE_LOG_LEVEL",
    "CODING_BRIDGE_LOG_DIR",
    "CODING_BRIDGE_OUTBOX_MAX",
    "CODING_BRIDGE_NODE_TOKEN",
    "CODING_BRIDGE_PAIR_POLL_INTERVAL",
    "CODING_BRIDGE_CA_FILE",
    "CODING_BRIDGE_CWD",
    "CODING_BRIDGE_PAIR_TIMEOUT",
    "CODING_BRIDGE_RECONNECT_MIN",
    "CODING_BRIDGE_RECONNECT_MAX",
    "CODING_BRIDGE_ATTACHMENT_HOSTS",
    "CODING_BRIDGE_TURN_RETRY_LIMIT",
    "CODING_BRIDGE_TURN_RETRY_BACKOFF",
    "CODING_BRIDGE_CLAUDE_ENTRYPOINT",
    "CODING_BRIDGE_LOG_FORWARD",
    "CODING_BRIDGE_CODEX_PATH",
    "CODING_BRIDGE_SERVICE_MANAGER",
    "CODING_BRIDGE_SERVICE_DIR",
    "CODING_BRIDGE_IDLE_STOP",
    "CODING_BRIDGE_MAX_AGENTS",
    "CODING_BRIDGE_MIN_FREE_MEMORY",
    "CODING_BRIDGE_MEMINFO",
    "CODING_BRIDGE_CGROUP_DIR",
    "CODING_BRIDGE_GRANT_SECONDS",
    "CODING_BRIDGE_AUDIT_MAX",
    "CODING_BRIDGE_POLICY_FILE",
];

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Relay base URL, `http(s)://host[:port][/path]`, no trailing `/`.
    pub bridge_url: String,
    pub node_name: String,
    pub config_dir: PathBuf,
    pub heartbeat_interval: Duration,
    /// `None` waits forever.
    pub permission_timeout: Option<Duration>,
    pub model: Option<String>,
    /// Claim link template; `{code}` is replaced by the pairing code.
    pub claim_url: String,
    pub claude_path: Option<PathBuf>,
    /// The Codex CLI (`codex`); `None`: looked up on PATH.
    pub codex_path: Option<PathBuf>,
    pub log_level: Level,
    pub log_dir: PathBuf,
    pub outbox_max: usize,
    /// `CODING_BRIDGE_NODE_TOKEN`: used instead of the credentials file, never stored.
    pub node_token: Option<Secret>,
    /// Default working directory for sessions.
    pub cwd: PathBuf,
    /// `pair --timeout`.
    pub pair_timeout: Option<Duration>,
    pub pair_poll_interval: Duration,
    /// Extra trusted CA certificates (PEM): `CODING_BRIDGE_CA_FILE`, else `SSL_CERT_FILE`.
    pub ca_file: Option<PathBuf>,
    pub json: bool,
    pub qr: Option<bool>,
    /// Hosts attachments may be downloaded from (https only).
    pub attachment_hosts: Vec<String>,
    /// First reconnect delay after an outage's fast first seconds, doubled up to
    /// `reconnect_max` (see `relay::backoff`).
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Silent retries of a turn whose CLI died before any output.
    pub turn_retry_limit: u32,
    pub turn_retry_backoff: Duration,
    /// `CLAUDE_CODE_ENTRYPOINT` for Claude children; `None` leaves it unset.
    pub claude_entrypoint: Option<String>,
    /// Forward info-and-above log lines to the relay as `node.log` while connected.
    pub log_forward: bool,
    /// Stop an agent idle this long (`None`: never).
    pub idle_stop: Option<Duration>,
    /// Live agents at most (`None`: what the host can hold, see `sys::memory`).
    pub max_agents: Option<usize>,
    /// Memory that must stay free when an agent starts, in bytes.
    pub min_free_memory: u64,
    /// How long a chat's scoped grant lasts.
    pub grant_for: Duration,
    /// Bytes of `audit.jsonl` before it rotates.
    pub audit_max: u64,
    /// The owner's policy (`<config dir>/policy.toml` unless set).
    pub policy_file: PathBuf,
}

/// A bad setting: which flag or variable, and what is wrong with it.
#[derive(Debug)]
pub struct ConfigError {
    pub source: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {}: {}", self.source, self.message)
    }
}

/// A raw value and where it came from (`--flag` or `ENV_NAME`).
struct Raw {
    value: String,
    source: String,
}

impl Raw {
    fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            source: self.source.clone(),
            message: message.into(),
        }
    }
}

/// Resolve the configuration from `flags` and the environment lookup `env`.
pub fn resolve(flags: &Flags, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let pick = |flag: &Option<String>, flag_name: &str, var: &str| -> Option<Raw> {
        if let Some(v) = flag {
            return Some(Raw {
                value: v.clone(),
                source: format!("--{flag_name}"),
            });
        }
        env(var).filter(|v| !v.is_empty()).map(|v| Raw {
            value: v,
            source: var.to_string(),
        })
    };
    let none = None;
    let home = env("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let cwd_now = std::env::current_dir().ok();

    let bridge_url = match pick(&flags.bridge_url, "bridge-url", "CODING_BRIDGE_URL") {
        Some(raw) => http_url(&raw)?,
        None => DEFAULT_BRIDGE_URL.to_string(),
    };

    let claim_url = match pick(&none, "", "CODING_BRIDGE_CLAIM_URL") {
        Some(raw) => {
            http_url(&raw)?;
            raw.value.trim().to_string()
        }
        None => DEFAULT_CLAIM_URL.to_string(),
    };

    let node_name = match pick(&flags.name, "name", "CODING_BRIDGE_NODE_NAME") {
        Some(raw) => {
            let name = raw.value.trim().to_string();
            if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
                return Err(raw.err("a node name is 1 to 100 printable characters"));
            }
            name
        }
        None => hostname().unwrap_or_else(|| "node".to_string()),
    };

    let config_dir = match pick(&flags.config_dir, "config-dir", "CODING_BRIDGE_CONFIG_DIR") {
        Some(raw) => path(&raw, home.as_deref(), cwd_now.as_deref())?,
        None => match &home {
            Some(h) => h.join(".ace-bridge"),
            None => {
                return Err(ConfigError {
                    source: "HOME".into(),
                    message: "HOME is not set; set CODING_BRIDGE_CONFIG_DIR or --config-dir".into(),
                });
            }
        },
    };

    let log_dir = match pick(&flags.log_dir, "log-dir", "CODING_BRIDGE_LOG_DIR") {
        Some(raw) => path(&raw, home.as_deref(), cwd_now.as_deref())?,
        None => config_dir.join("logs"),
    };

    let mut log_level = match pick(&flags.log_level, "log-level", "CODING_BRIDGE_LOG_LEVEL") {
        Some(raw) => Level::parse(&raw.value)
            .ok_or_else(|| raw.err("expected one of error, warn, info, debug, trace"))?,
        None => Level::Info,
    };
    match flags.verbose {
        0 => {}
        1 => log_level = log_level.max(Level::Debug),
        _ => log_level = Level::Trace,
    }

    let heartbeat_interval = match pick(&none, "", "CODING_BRIDGE_HEARTBEAT_INTERVAL") {
        Some(raw) => seconds_within(&raw, 1.0, 3600.0, "the heartbeat interval")?,
        None => Duration::from_secs_f64(DEFAULT_HEARTBEAT_SECS),
    };

    let permission_timeout = match pick(
        &flags.permission_timeout,
        "permission-timeout",
        "CODING_BRIDGE_PERMISSION_TIMEOUT",
    ) {
        Some(raw) => match seconds(&raw)? {
            0.0 => None,
            s => Some(Duration::from_secs_f64(s)),
        },
        None => Some(Duration::from_secs_f64(DEFAULT_PERMISSION_TIMEOUT_SECS)),
    };

    let model = pick(&flags.model, "model", "CODING_BRIDGE_MODEL")
        .map(|raw| {
            let m = raw.value.trim().to_string();
            if m.is_empty()
                || m.len() > 200
                || m.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                Err(raw
                    .err("a model name is a single word such as sonnet, opus or claude-sonnet-4-5"))
            } else {
                Ok(m)
            }
        })
        .transpose()?;

    let claude_path = pick(
        &flags.claude_path,
        "claude-path",
        "CODING_BRIDGE_CLAUDE_PATH",
    )
    .map(|raw| path(&raw, home.as_deref(), cwd_now.as_deref()))
    .transpose()?;

    let codex_path = pick(&flags.codex_path, "codex-path", "CODING_BRIDGE_CODEX_PATH")
        .map(|raw| path(&raw, home.as_deref(), cwd_now.as_deref()))
        .transpose()?;

    let outbox_max = match pick(&none, "", "CODING_BRIDGE_OUTBOX_MAX") {
        Some(raw) => match raw.value.trim().parse::<usize>() {
            Ok(n) if (1..=1_000_000).contains(&n) => n,
            _ => return Err(raw.err("expected a whole number from 1 to 1000000")),
        },
        None => DEFAULT_OUTBOX_MAX,
    };

    let node_token = env("CODING_BRIDGE_NODE_TOKEN")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .map(Secret::new);

    let cwd = match pick(&flags.cwd, "cwd", "CODING_BRIDGE_CWD") {
        Some(raw) => path(&raw, home.as_deref(), cwd_now.as_deref())?,
        // Started from `/` (a service, a container's default), the root is no place
        // to run an agent: the home dir is the default then.
        None => cwd_now
            .clone()
            .filter(|c| c != Path::new("/"))
            .or_else(|| home.clone())
            .or_else(|| cwd_now.clone())
            .unwrap_or_else(|| PathBuf::from("/")),
    };

    let pair_timeout = match pick(&flags.timeout, "timeout", "CODING_BRIDGE_PAIR_TIMEOUT") {
        Some(raw) => {
            let s = seconds(&raw)?;
            if s <= 0.0 {
                return Err(raw.err("the pairing timeout must be more than 0 seconds"));
            }
            Some(Duration::from_secs_f64(s))
        }
        None => None,
    };

    let pair_poll_interval = match pick(&none, "", "CODING_BRIDGE_PAIR_POLL_INTERVAL") {
        Some(raw) => seconds_within(&raw, 0.01, 60.0, "the poll interval")?,
        None => Duration::from_secs_f64(DEFAULT_PAIR_POLL_SECS),
    };

    let ca_file = pick(&none, "", "CODING_BRIDGE_CA_FILE")
        .or_else(|| pick(&none, "", "SSL_CERT_FILE"))
        .map(|raw| path(&raw, home.as_deref(), cwd_now.as_deref()))
        .transpose()?;

    let reconnect_min = match pick(&none, "", "CODING_BRIDGE_RECONNECT_MIN") {
        Some(raw) => seconds_within(&raw, 0.01, 3600.0, "the reconnect delay")?,
        None => Duration::from_secs(1),
    };
    let reconnect_max = match pick(&none, "", "CODING_BRIDGE_RECONNECT_MAX") {
        Some(raw) => seconds_within(&raw, 0.01, 3600.0, "the reconnect delay")?.max(reconnect_min),
        None => Duration::from_secs(30).max(reconnect_min),
    };

    let attachment_hosts = match pick(&none, "", "CODING_BRIDGE_ATTACHMENT_HOSTS") {
        Some(raw) => {
            let hosts: Vec<String> = raw
                .value
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect();
            if hosts.iter().any(|h| h.contains(['/', ':', ' ', '@'])) {
                return Err(
                    raw.err("expected host names separated by commas, like cdn.example.com")
                );
            }
            hosts
        }
        None => crate::node::media::DEFAULT_HOSTS
            .iter()
            .map(|h| h.to_string())
            .collect(),
    };

    let turn_retry_limit = match pick(&none, "", "CODING_BRIDGE_TURN_RETRY_LIMIT") {
        Some(raw) => match raw.value.trim().parse::<u32>() {
            Ok(n) if n <= 10 => n,
            _ => return Err(raw.err("expected a whole number from 0 to 10")),
        },
        None => DEFAULT_TURN_RETRY_LIMIT,
    };
    let turn_retry_backoff = match pick(&none, "", "CODING_BRIDGE_TURN_RETRY_BACKOFF") {
        Some(raw) => seconds_within(&raw, 0.0, 60.0, "the retry backoff")?,
        None => Duration::from_secs_f64(DEFAULT_TURN_RETRY_BACKOFF_SECS),
    };
    let log_forward = match env("CODING_BRIDGE_LOG_FORWARD").map(|v| v.trim().to_ascii_lowercase())
    {
        None => true,
        Some(v) if ["1", "true", "yes", "on", ""].contains(&v.as_str()) => true,
        Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => false,
        Some(v) => {
            return Err(ConfigError {
                source: "CODING_BRIDGE_LOG_FORWARD".into(),
                message: format!("{v:?} is not 0 or 1"),
            });
        }
    };
    let idle_stop = match pick(&none, "", "CODING_BRIDGE_IDLE_STOP") {
        Some(raw) => match seconds(&raw)? {
            0.0 => None,
            s => Some(Duration::from_secs_f64(s)),
        },
        None => Some(Duration::from_secs_f64(DEFAULT_IDLE_STOP_SECS)),
    };
    let max_agents = match pick(&none, "", "CODING_BRIDGE_MAX_AGENTS") {
        Some(raw) => match raw.value.trim().parse::<usize>() {
            Ok(n) if (1..=64).contains(&n) => Some(n),
            _ => return Err(raw.err("expected a whole number of agents from 1 to 64")),
        },
        None => None,
    };
    let min_free_memory = match pick(&none, "", "CODING_BRIDGE_MIN_FREE_MEMORY") {
        Some(raw) => bytes(&raw)?,
        None => DEFAULT_MIN_FREE_MEMORY,
    };
    let grant_for = match pick(&none, "", "CODING_BRIDGE_GRANT_SECONDS") {
        Some(raw) => seconds_within(&raw, 1.0, 86_400.0, "a grant's length")?,
        None => Duration::from_secs_f64(DEFAULT_GRANT_SECS),
    };
    let policy_file = match env("CODING_BRIDGE_POLICY_FILE").filter(|v| !v.trim().is_empty()) {
        Some(v) => {
            let p = crate::sys::fsutil::expand_home(v.trim(), home.as_deref());
            if !p.is_absolute() {
                return Err(ConfigError {
                    source: "CODING_BRIDGE_POLICY_FILE".into(),
                    message: format!("{v:?} is not an absolute path"),
                });
            }
            p
        }
        None => config_dir.join(crate::policy::FILE),
    };
    let audit_max = match pick(&none, "", "CODING_BRIDGE_AUDIT_MAX") {
        Some(raw) => bytes(&raw)?.max(4096),
        None => DEFAULT_AUDIT_MAX,
    };
    // Set but blank means "leave CLAUDE_CODE_ENTRYPOINT unset".
    let claude_entrypoint = match env("CODING_BRIDGE_CLAUDE_ENTRYPOINT") {
        None => Some(DEFAULT_CLAUDE_ENTRYPOINT.to_string()),
        Some(v) if v.trim().is_empty() => None,
        Some(v) => {
            let v = v.trim().to_string();
            if v.len() > 64
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(ConfigError {
                    source: "CODING_BRIDGE_CLAUDE_ENTRYPOINT".into(),
                    message: "expected a short label such as claude-vscode or sdk-py".into(),
                });
            }
            Some(v)
        }
    };

    Ok(Config {
        bridge_url,
        node_name,
        config_dir,
        heartbeat_interval,
        permission_timeout,
        model,
        claim_url,
        claude_path,
        codex_path,
        log_level,
        log_dir,
        outbox_max,
        node_token,
        cwd,
        pair_timeout,
        pair_poll_interval,
        ca_file,
        json: flags.json,
        qr: flags.qr,
        reconnect_min,
        reconnect_max,
        attachment_hosts,
        turn_retry_limit,
        turn_retry_backoff,
        claude_entrypoint,
        log_forward,
        idle_stop,
        max_agents,
        min_free_memory,
        grant_for,
        audit_max,
        policy_file,
    })
}

/// A size such as `256M`, `1.5G`, `512MiB` or `300` (plain numbers are MiB).
fn bytes(raw: &Raw) -> Result<u64, ConfigError> {
    let v = raw.value.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let v = v.strip_suffix('i').unwrap_or(v);
    let (num, unit) = match v.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&v[..i], &v[i..]),
        None => (v, "m"),
    };
    let scale: u64 = match unit {
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(raw.err("expected a size such as 256M, 1G or 300 (MiB)")),
    };
    match num.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && (0.0..=1048576.0 * 1024.0).contains(&n) => {
            Ok((n * scale as f64) as u64)
        }
        _ => Err(raw.err("expected a size such as 256M, 1G or 300 (MiB)")),
    }
}

impl Config {
    /// Checks that only matter for a daemon that will run sessions.
    pub fn check_for_run(&self) -> Result<(), ConfigError> {
        if !self.cwd.is_dir() {
            return Err(ConfigError {
                source: "--cwd".into(),
                message: format!("{} is not a directory", self.cwd.display()),
            });
        }
        Ok(())
    }

    /// The claim link for `code`.
    pub fn claim_link(&self, code: &str) -> String {
        if self.claim_url.contains("{code}") {
            self.claim_url.replace("{code}", code)
        } else {
            let sep = if self.claim_url.contains('?') {
                '&'
            } else {
                '?'
            };
            format!("{}{sep}code={code}", self.claim_url)
        }
    }

    /// The claim page without the code, for people typing the code by hand.
    pub fn claim_page(&self) -> String {
        let link = self.claim_link("");
        link.split(['?', '#']).next().unwrap_or(&link).to_string()
    }

    pub fn credentials_path(&self) -> PathBuf {
        self.config_dir.join("credentials.json")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.config_dir.join("agent.lock")
    }
}

/// An `http://` or `https://` URL with a host; returned without trailing `/`.
fn http_url(raw: &Raw) -> Result<String, ConfigError> {
    let v = raw.value.trim();
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .ok_or_else(|| raw.err(format!("{v:?} is not an http:// or https:// URL")))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(raw.err(format!("{v:?} has no host")));
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(raw.err(format!("{v:?} contains spaces or control characters")));
    }
    Ok(v.trim_end_matches('/').to_string())
}

/// A non-negative number of seconds.
fn seconds(raw: &Raw) -> Result<f64, ConfigError> {
    match raw.value.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=31_536_000.0).contains(&s) => Ok(s),
        _ => Err(raw.err(format!("{:?} is not a number of seconds", raw.value))),
    }
}

/// A number of seconds from `min` to `max`, as a duration; `what` names it in the error.
fn seconds_within(raw: &Raw, min: f64, max: f64, what: &str) -> Result<Duration, ConfigError> {
    let s = seconds(raw)?;
    if !(min..=max).contains(&s) {
        return Err(raw.err(format!("{what} must be between {min} and {max} seconds")));
    }
    Ok(Duration::from_secs_f64(s))
}

/// A path with `~` expanded, made absolute against the current directory.
fn path(raw: &Raw, home: Option<&Path>, cwd: Option<&Path>) -> Result<PathBuf, ConfigError> {
    let v = raw.value.trim();
    if v.is_empty() {
        return Err(raw.err("the path is empty"));
    }
    if (v == "~" || v.starts_with("~/")) && home.is_none() {
        return Err(raw.err("uses ~ but HOME is not set"));
    }
    let p = crate::sys::fsutil::expand_home(v, home);
    Ok(match (p.is_absolute(), cwd) {
        (false, Some(c)) => c.join(p),
        _ => p,
    })
}

/// This machine's host name.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve_with(flags: &Flags, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("HOME".to_string(), "/home/u".to_string())])
            .collect();
        resolve(flags, &|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = resolve_with(&Flags::default(), &[]).unwrap();
        assert_eq!(c.bridge_url, DEFAULT_BRIDGE_URL);
        assert_eq!(c.config_dir, PathBuf::from("/home/u/.ace-bridge"));
        assert_eq!(c.log_dir, PathBuf::from("/home/u/.ace-bridge/logs"));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(15));
        assert_eq!(c.permission_timeout, Some(Duration::from_secs(1800)));
        assert_eq!(c.turn_retry_limit, 1);
        assert_eq!(c.claude_entrypoint.as_deref(), Some("claude-vscode"));
        assert_eq!(c.outbox_max, 5000);
        assert_eq!(c.log_level, Level::Info);
        assert_eq!(
            c.claim_link("AB12"),
            "https://studio.acedata.cloud/coding-bridge?code=AB12"
        );
        assert_eq!(c.claim_page(), "https://studio.acedata.cloud/coding-bridge");
    }

    #[test]
    fn flags_override_env() {
        let flags = Flags {
            bridge_url: Some("http://flag:1/".into()),
            name: Some("flag-name".into()),
            permission_timeout: Some("0".into()),
            log_level: Some("warn".into()),
            ..Flags::default()
        };
        let env = [
            ("CODING_BRIDGE_URL", "https://env"),
            ("CODING_BRIDGE_NODE_NAME", "env-name"),
            ("CODING_BRIDGE_PERMISSION_TIMEOUT", "12"),
            ("CODING_BRIDGE_LOG_LEVEL", "debug"),
            ("CODING_BRIDGE_CONFIG_DIR", "~/cfg"),
        ];
        let c = resolve_with(&flags, &env).unwrap();
        assert_eq!(c.bridge_url, "http://flag:1");
        assert_eq!(c.node_name, "flag-name");
        assert_eq!(c.permission_timeout, None);
        assert_eq!(c.log_level, Level::Warn);
        assert_eq!(c.config_dir, PathBuf::from("/home/u/cfg"));
        let c = resolve_with(&Flags::default(), &env).unwrap();
        assert_eq!(c.bridge_url, "https://env");
        assert_eq!(c.permission_timeout, Some(Duration::from_secs(12)));
    }

    #[test]
    fn bad_values_name_their_source() {
        let cases: &[(&str, &str)] = &[
            ("CODING_BRIDGE_URL", "ftp://x"),
            ("CODING_BRIDGE_URL", "https://"),
            ("CODING_BRIDGE_PERMISSION_TIMEOUT", "soon"),
            ("CODING_BRIDGE_PERMISSION_TIMEOUT", "-1"),
            ("CODING_BRIDGE_HEARTBEAT_INTERVAL", "0"),
            ("CODING_BRIDGE_OUTBOX_MAX", "lots"),
            ("CODING_BRIDGE_LOG_LEVEL", "loud"),
            ("CODING_BRIDGE_CLAIM_URL", "javascript:alert(1)"),
        ];
        for (var, val) in cases {
            let e = resolve_with(&Flags::default(), &[(var, val)]).unwrap_err();
            assert_eq!(&e.source, var, "{var}={val}");
        }
        let flags = Flags {
            timeout: Some("0".into()),
            ..Flags::default()
        };
        assert_eq!(resolve_with(&flags, &[]).unwrap_err().source, "--timeout");
    }

    #[test]
    fn verbose_raises_level() {
        let flags = Flags {
            verbose: 2,
            ..Flags::default()
        };
        assert_eq!(resolve_with(&flags, &[]).unwrap().log_level, Level::Trace);
    }
}
