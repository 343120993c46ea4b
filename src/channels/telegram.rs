//! The Telegram Bot API over blocking HTTPS (ureq): the calls the channel makes
//! (`getMe`, `getUpdates` long polling, `sendMessage`, `editMessageText`,
//! `answerCallbackQuery`, `sendChatAction`, `deleteWebhook`), each an [`Api`] method
//! returning the `result` or a typed [`ApiError`], plus [`doctor`] for
//! `channels doctor`.
//!
//! The token is part of every URL (`<api_base>/bot<token>/<method>`): it is registered
//! as a log secret when read, URLs are never logged, and error texts are redacted before
//! they leave this module.

use std::io::Read;
use std::time::Duration;

use serde_json::{Value, json};

use crate::channels::config::{Telegram, TokenSource};
use crate::sys::secret::Secret;

/// Largest Bot API answer read.
const MAX_BODY: u64 = 8 << 20;
/// How long any other call may take at most (less when the long poll is short: a
/// bot configured for quick polls wants hung calls noticed quickly too).
const CALL_TIMEOUT: u64 = 20;
/// Largest file fetched from a chat (the Bot API serves bots files up to 20 MB).
pub const MAX_FILE: u64 = 20 << 20;

/// Read the bot token from where the config says (a variable or a file), trimmed.
pub fn token(
    source: &TokenSource,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, TokenError> {
    let t = match source {
        TokenSource::Env(var) => env(var).ok_or_else(|| TokenError::Unset(var.clone()))?,
        TokenSource::File(path) => {
            std::fs::read_to_string(path).map_err(|e| TokenError::Unreadable(path.clone(), e))?
        }
    };
    let t = t.trim().to_string();
    if t.is_empty() || t.len() > 200 || t.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(TokenError::Malformed);
    }
    crate::sys::logging::add_secret(&t);
    Ok(Secret::new(t))
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 401/404 on the token: revoked or wrong. The channel stops.
    Unauthorized(String),
    /// 409: a webhook is set (or another poller runs).
    Conflict(String),
    /// 429 with the seconds to wait.
    TooMany(u64),
    /// An edit that would change nothing (it was made already).
    NotModified,
    /// Other 4xx: this call was wrong (e.g. the message is gone); not retried.
    Rejected(String),
    /// Network, timeout, 5xx, garbage: try again later.
    Transient(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Unauthorized(m) => write!(f, "the bot token was refused ({m})"),
            ApiError::Conflict(m) => write!(f, "conflict ({m})"),
            ApiError::TooMany(s) => write!(f, "rate limited by Telegram for {s} s"),
            ApiError::NotModified => write!(f, "the message is not modified"),
            ApiError::Rejected(m) => write!(f, "refused: {m}"),
            ApiError::Transient(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ApiError {}

/// Why the bot token could not be had.
#[derive(Debug)]
pub enum TokenError {
    /// The variable `token_env` names is not set.
    Unset(String),
    /// The `token_file` cannot be read.
    Unreadable(std::path::PathBuf, std::io::Error),
    Malformed,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Unset(var) => write!(f, "the variable {var} (token_env) is not set"),
            TokenError::Unreadable(path, e) => write!(
                f,
                "cannot read the token file {} (token_file): {e}",
                path.display()
            ),
            TokenError::Malformed => {
                write!(
                    f,
                    "the bot token is empty or malformed (expected 123456:ABC…)"
                )
            }
        }
    }
}

impl std::error::Error for TokenError {}

/// Why a chat's file could not be fetched.
#[derive(Debug)]
pub enum FetchError {
    Api(ApiError),
    TooLarge {
        max: u64,
    },
    NoPath,
    /// The download itself failed (redacted).
    Download(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Api(e) => write!(f, "{e}"),
            FetchError::TooLarge { max } => write!(f, "larger than {} MiB", max >> 20),
            FetchError::NoPath => write!(f, "Telegram gave no file path"),
            FetchError::Download(m) => write!(f, "download: {m}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// One bot's API.
#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    base: String,
    token: Secret,
    /// How long a call other than the long poll may take.
    call_timeout: Duration,
}

impl Api {
    /// `poll_seconds`: the long poll's wait; calls time out 10 s after it (at most 20 s
    /// for calls other than the poll).
    pub fn new(api_base: &str, token: Secret, tls: ureq::tls::TlsConfig, poll_seconds: u64) -> Api {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .max_redirects(0)
            .user_agent(concat!("coding-bridge-agent/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .into();
        Api {
            agent,
            base: api_base.trim_end_matches('/').to_string(),
            token,
            call_timeout: Duration::from_secs((poll_seconds + 10).min(CALL_TIMEOUT)),
        }
    }

    fn redact(&self, e: String) -> String {
        crate::sys::logging::redact(&e, &[self.token.expose().to_string()])
    }

    /// Call `method` with a JSON body; the `result` on success.
    pub fn call(&self, method: &str, body: &Value) -> Result<Value, ApiError> {
        self.call_within(method, body, self.call_timeout)
    }

    /// [`Api::call`], giving up after `timeout` (a hung request counts as transient).
    fn call_within(
        &self,
        method: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, ApiError> {
        let url = format!("{}/bot{}/{method}", self.base, self.token.expose());
        let redact = |e: String| self.redact(e);
        let mut resp = self
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(body.to_string())
            .map_err(|e| ApiError::Transient(redact(format!("{method}: {e}"))))?;
        let status = resp.status().as_u16();
        let mut bytes = Vec::new();
        let _ = resp
            .body_mut()
            .as_reader()
            .take(MAX_BODY)
            .read_to_end(&mut bytes);
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let description = v
            .get("description")
            .and_then(Value::as_str)
            .map(|d| redact(d.to_string()))
            .unwrap_or_else(|| format!("HTTP {status}"));
        match status {
            200 if v.get("ok") == Some(&Value::Bool(true)) => {
                Ok(v.get("result").cloned().unwrap_or(Value::Null))
            }
            200 => Err(ApiError::Transient(format!(
                "{method}: not a Bot API answer"
            ))),
            401 | 404 => Err(ApiError::Unauthorized(description)),
            409 => Err(ApiError::Conflict(description)),
            429 => Err(ApiError::TooMany(
                v.pointer("/parameters/retry_after")
                    .and_then(Value::as_u64)
                    .unwrap_or(5),
            )),
            s if s >= 500 => Err(ApiError::Transient(format!("{method}: HTTP {s}"))),
            // Telegram says so in words only; an edit that changes nothing was made.
            400 if description.contains("message is not modified") => Err(ApiError::NotModified),
            _ => Err(ApiError::Rejected(format!("{method}: {description}"))),
        }
    }

    pub fn get_me(&self) -> Result<Value, ApiError> {
        self.call("getMe", &json!({}))
    }

    /// Long-poll for updates after `offset`, waiting up to `wait` seconds for news.
    pub fn get_updates(&self, offset: i64, wait: u64) -> Result<Vec<Value>, ApiError> {
        let r = self.call_within(
            "getUpdates",
            &json!({"offset": offset, "timeout": wait, "allowed_updates": ["message", "callback_query"]}),
            Duration::from_secs(wait + 10),
        )?;
        Ok(r.as_array().cloned().unwrap_or_default())
    }

    /// Fetch a file a chat sent (`getFile`, then its bytes), at most `max` bytes.
    pub fn download(&self, file_id: &str, max: u64) -> Result<Vec<u8>, FetchError> {
        let f = self
            .call("getFile", &json!({"file_id": file_id}))
            .map_err(FetchError::Api)?;
        if f.get("file_size").and_then(Value::as_u64).unwrap_or(0) > max {
            return Err(FetchError::TooLarge { max });
        }
        let path = f
            .get("file_path")
            .and_then(Value::as_str)
            .ok_or(FetchError::NoPath)?;
        let url = format!("{}/file/bot{}/{path}", self.base, self.token.expose());
        let mut resp = self
            .agent
            .get(&url)
            .config()
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .call()
            .map_err(|e| FetchError::Download(self.redact(e.to_string())))?;
        if resp.status().as_u16() != 200 {
            return Err(FetchError::Download(format!(
                "HTTP {}",
                resp.status().as_u16()
            )));
        }
        let mut bytes = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| FetchError::Download(self.redact(e.to_string())))?;
        if bytes.len() as u64 > max {
            return Err(FetchError::TooLarge { max });
        }
        Ok(bytes)
    }
}

/// What `channels doctor` found for one instance.
#[derive(Debug, Default)]
pub struct Report {
    pub ok: bool,
    pub bot: Option<String>,
    pub problem: Option<String>,
}

/// Check one instance: its token can be read and the Bot API knows it.
pub fn doctor(
    ch: &Telegram,
    tls: &ureq::tls::TlsConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Report {
    let token = match token(&ch.token, env) {
        Ok(t) => t,
        Err(e) => {
            return Report {
                problem: Some(e.to_string()),
                ..Report::default()
            };
        }
    };
    if ch.allowed_senders.is_empty() {
        crate::log_warn!(
            "telegram {}: allowed_senders is empty, so the bot answers nobody",
            ch.instance_id
        );
    }
    match Api::new(&ch.api_base, token, tls.clone(), ch.poll_timeout_seconds).get_me() {
        Ok(me) => Report {
            ok: true,
            bot: me
                .get("username")
                .and_then(Value::as_str)
                .map(str::to_string),
            problem: None,
        },
        Err(e) => Report {
            problem: Some(format!("getMe failed: {e}")),
            ..Report::default()
        },
    }
}
