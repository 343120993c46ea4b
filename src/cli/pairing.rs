//! Pairing over HTTP (PROTOCOL §1): `POST /pair/start` for a code, then `POST /pair/poll`
//! every couple of seconds until the code is claimed, refused or expires.
//!
//! Runs on the calling thread; nothing here prints. The caller ([`crate::cli::app`]) reports
//! the code and the outcome to people or scripts. Every way the relay can answer badly
//! (no connection, 5xx, non-JSON, odd fields) becomes a [`Failure`] with a reason and an
//! exit code; a few transient failures while polling are retried.

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::sys::secret::Secret;

/// Largest body we read from the relay during pairing.
const MAX_BODY: u64 = 64 * 1024;
/// Consecutive transient poll failures tolerated before giving up.
const MAX_TRANSIENT: u32 = 5;

/// Why pairing did not complete.
#[derive(Debug)]
pub enum Failure {
    /// The code ran out (a `status: expired` answer or a 404 on poll, or its time passed).
    Expired,
    /// The code was already used.
    Consumed,
    /// The relay said no (a 4xx).
    Refused { status: u16, path: &'static str },
    /// `--timeout` passed first.
    Timeout(Duration),
    /// SIGINT or SIGTERM while waiting.
    Interrupted,
    /// No HTTP answer at all.
    Network { url: String, detail: String },
    /// A 5xx.
    Http { status: u16, path: &'static str },
    /// An answer that is not the JSON the protocol promises.
    BadResponse { path: &'static str, detail: String },
}

impl Failure {
    /// The machine-readable reason used in `--json` output.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Expired => "expired",
            Failure::Consumed => "consumed",
            Failure::Refused { .. } => "refused",
            Failure::Timeout(_) => "timeout",
            Failure::Interrupted => "interrupted",
            Failure::Network { .. } => "network",
            Failure::Http { .. } => "http",
            Failure::BadResponse { .. } => "bad_response",
        }
    }

    /// Whether the relay could not be used at all (network, 5xx, not its JSON), as
    /// opposed to pairing itself failing; `cli::app` chooses the exit code from it.
    pub fn unreachable(&self) -> bool {
        match self {
            Failure::Expired
            | Failure::Consumed
            | Failure::Refused { .. }
            | Failure::Timeout(_)
            | Failure::Interrupted => false,
            Failure::Network { .. } | Failure::Http { .. } | Failure::BadResponse { .. } => true,
        }
    }

    /// What went wrong and what to do, for people.
    pub fn message(&self) -> String {
        match self {
            Failure::Expired => "the pairing code expired before it was claimed. Run \
                `coding-bridge-agent pair` again and open the link before it expires."
                .into(),
            Failure::Consumed => "the pairing code was already used. Run \
                `coding-bridge-agent pair` again for a new code."
                .into(),
            Failure::Refused { status, path } => format!(
                "the relay refused {path} with HTTP {status}. Check the bridge URL \
                 (--bridge-url or CODING_BRIDGE_URL)."
            ),
            Failure::Timeout(d) => format!(
                "nobody claimed the code within {} s (--timeout). Run the command again.",
                d.as_secs()
            ),
            Failure::Interrupted => "interrupted before the code was claimed.".into(),
            Failure::Network { url, detail } => format!(
                "cannot reach the relay at {url}: {detail}. Check the network and the bridge \
                 URL (--bridge-url or CODING_BRIDGE_URL)."
            ),
            Failure::Http { status, path } => format!(
                "the relay answered {path} with HTTP {status} (a server error). Try again later."
            ),
            Failure::BadResponse { path, detail } => format!(
                "the relay's answer to {path} was not understood ({detail}). Is the bridge URL \
                 a Coding Bridge relay?"
            ),
        }
    }
}

/// A code to show the user.
#[derive(Debug, Clone)]
pub struct PairCode {
    pub code: String,
    pub expires_in: Duration,
}

/// One poll's answer.
#[derive(Debug)]
enum Poll {
    Pending,
    Ready(Secret),
    Final(Failure),
    Transient(Failure),
}

/// A pairing client for one relay base URL.
pub struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    pub fn new(base_url: &str, tls: ureq::tls::TlsConfig) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(30)))
            .max_redirects(0)
            .user_agent(concat!("coding-bridge-agent/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build();
        Client {
            agent: config.into(),
            base: base_url.trim_end_matches('/').to_string(),
        }
    }

    /// POST `body` to `path`; the status and the parsed JSON (or `Err` text when not JSON).
    fn post(
        &self,
        path: &'static str,
        body: Value,
    ) -> Result<(u16, Result<Value, String>), Failure> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body.to_string())
            .map_err(|e| Failure::Network {
                url: self.base.clone(),
                detail: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let mut bytes = Vec::new();
        let read = resp
            .body_mut()
            .as_reader()
            .take(MAX_BODY)
            .read_to_end(&mut bytes);
        let parsed = match read {
            Err(e) => Err(format!("reading the body failed: {e}")),
            Ok(_) => serde_json::from_slice::<Value>(&bytes)
                .map_err(|_| format!("not JSON: {:?}", snippet(&bytes))),
        };
        crate::log_debug!("POST {path} -> HTTP {status}");
        Ok((status, parsed))
    }

    /// Ask for a pairing code.
    pub fn start(&self, node_name: &str) -> Result<PairCode, Failure> {
        const PATH: &str = "/pair/start";
        let (status, body) = self.post(PATH, json!({ "node_name": node_name }))?;
        match status {
            200 => {}
            s if s >= 500 => {
                return Err(Failure::Http {
                    status: s,
                    path: PATH,
                });
            }
            s => {
                return Err(Failure::Refused {
                    status: s,
                    path: PATH,
                });
            }
        }
        let bad = |detail: String| Failure::BadResponse { path: PATH, detail };
        let body = body.map_err(bad)?;
        let code = body
            .get("pair_code")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no pair_code".into()))?;
        if code.is_empty()
            || code.len() > 64
            || !code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            // Refuse anything that could smuggle terminal escapes or odd URLs.
            return Err(bad(format!(
                "pair_code {:?} is not a short code",
                snippet(code.as_bytes())
            )));
        }
        let expires_in = match body.get("expires_in") {
            None | Some(Value::Null) => 600.0,
            Some(v) => v
                .as_f64()
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or_else(|| bad("expires_in is not a positive number".into()))?,
        };
        Ok(PairCode {
            code: code.to_string(),
            expires_in: Duration::from_secs_f64(expires_in.min(86_400.0)),
        })
    }

    fn poll(&self, code: &str) -> Poll {
        const PATH: &str = "/pair/poll";
        let (status, body) = match self.post(PATH, json!({ "pair_code": code })) {
            Ok(r) => r,
            Err(f) => return Poll::Transient(f),
        };
        match status {
            200 => {}
            404 => return Poll::Final(Failure::Expired),
            s if s >= 500 => {
                return Poll::Transient(Failure::Http {
                    status: s,
                    path: PATH,
                });
            }
            s => {
                return Poll::Final(Failure::Refused {
                    status: s,
                    path: PATH,
                });
            }
        }
        let body = match body {
            Ok(b) => b,
            Err(detail) => return Poll::Transient(Failure::BadResponse { path: PATH, detail }),
        };
        match body.get("status").and_then(Value::as_str) {
            Some("pending") => Poll::Pending,
            Some("ready") => match body.get("node_token").and_then(Value::as_str) {
                Some(t) if !t.trim().is_empty() => Poll::Ready(Secret::new(t.trim())),
                _ => Poll::Final(Failure::BadResponse {
                    path: PATH,
                    detail: "status ready without a node_token".into(),
                }),
            },
            Some("expired") => Poll::Final(Failure::Expired),
            Some("consumed") => Poll::Final(Failure::Consumed),
            other => {
                // A status this daemon does not know yet: keep waiting rather than fail.
                crate::log_debug!("unknown pairing status {other:?}; still waiting");
                Poll::Pending
            }
        }
    }

    /// Poll until the code is claimed, fails, or `limit` (or the code's expiry) passes.
    /// Between polls it waits on `stop` (the signal channel), so Ctrl-C ends it at once.
    pub fn wait_for_claim(
        &self,
        code: &PairCode,
        interval: Duration,
        limit: Option<Duration>,
        stop: &crossbeam_channel::Receiver<i32>,
    ) -> Result<Secret, Failure> {
        let started = Instant::now();
        let (wait, on_deadline) = match limit {
            Some(l) if l < code.expires_in => (l, Failure::Timeout(l)),
            _ => (code.expires_in, Failure::Expired),
        };
        let deadline = started + wait;
        let mut transient = 0;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(on_deadline);
            }
            if stop.recv_timeout(interval.min(deadline - now)).is_ok() {
                return Err(Failure::Interrupted);
            }
            match self.poll(&code.code) {
                Poll::Pending => transient = 0,
                Poll::Ready(token) => return Ok(token),
                Poll::Final(f) => return Err(f),
                Poll::Transient(f) => {
                    transient += 1;
                    crate::log_warn!(
                        "pairing poll failed ({transient}/{MAX_TRANSIENT}): {}",
                        f.message()
                    );
                    if transient >= MAX_TRANSIENT {
                        return Err(f);
                    }
                }
            }
        }
    }
}

/// The first bytes of `b` as text, for error messages.
fn snippet(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(80)]);
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
