//! What this node can do: the heartbeat's capability list (installed providers plus
//! `history`) and the `capabilities` reply describing every provider, with `available`
//! saying whether its CLI is installed. Claude Code's slash-command catalogue comes from
//! the CLI's `initialize` answer (from a session that ran, or a one-off probe child);
//! Codex's models from `model/list` of a one-off `codex app-server`. Probes are capped
//! (45 s), run on a worker, and cached; a failed one leaves the list empty.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::policy::Policy;
use crate::protocol::events::{Event, SessionEvent};
use crate::sys::child::{self, ChildEvent, Spec};

/// The longest a catalogue probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(45);

/// Where the CLIs are configured (`None`: looked up on PATH).
#[derive(Debug, Clone, Default)]
pub struct Paths {
    pub claude: Option<std::path::PathBuf>,
    pub codex: Option<std::path::PathBuf>,
    /// The ACP agents (built-in and declared).
    pub acp: Vec<crate::providers::acp::AgentSpec>,
}

/// Which providers' CLIs can be found now (a few stat calls; looked up each time so an
/// install shows up without a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Available {
    pub claude: bool,
    pub codex: bool,
    /// Each ACP agent: its spec and whether its executable is found.
    pub acp: Vec<(crate::providers::acp::AgentSpec, bool)>,
}

pub fn available(paths: &Paths) -> Available {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    Available {
        claude: claude_available(paths.claude.as_deref()),
        codex: crate::providers::codex::resolve(
            paths.codex.as_deref(),
            std::env::var_os("PATH"),
            home.as_deref(),
        )
        .is_some(),
        acp: paths
            .acp
            .iter()
            .map(|a| {
                let found = crate::providers::acp::resolve(
                    &a.command,
                    std::env::var_os("PATH"),
                    home.as_deref(),
                )
                .is_some();
                (a.clone(), found)
            })
            .collect(),
    }
}

impl Available {
    /// What the owner's policy lets remote parties start: the others are unavailable.
    pub fn restrict(mut self, policy: &Policy) -> Available {
        self.claude &= policy.allows_provider("claude");
        self.codex &= policy.allows_provider("codex");
        for (spec, ok) in &mut self.acp {
            *ok &= policy.allows_provider(&spec.name);
        }
        self
    }
}

/// What the probes found (cached by the hub).
#[derive(Debug, Clone, Default)]
pub struct Probed {
    pub claude_commands: Vec<Value>,
    pub codex_models: Vec<Value>,
    pub codex_efforts: Vec<String>,
}

/// The heartbeat's capability list.
pub fn heartbeat_list(paths: &Paths, policy: &Policy) -> Vec<String> {
    let a = available(paths).restrict(policy);
    let mut caps = Vec::new();
    if a.claude {
        caps.push("claude".to_string());
    }
    if a.codex {
        caps.push("codex".to_string());
    }
    caps.extend(
        a.acp
            .iter()
            .filter(|(_, ok)| *ok)
            .map(|(s, _)| s.name.clone()),
    );
    caps.push("history".to_string());
    caps
}

/// Whether a `claude` executable can be found.
pub fn claude_available(configured: Option<&Path>) -> bool {
    resolve(configured).is_some()
}

fn resolve(configured: Option<&Path>) -> Option<std::path::PathBuf> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    crate::providers::claude::resolve(configured, std::env::var_os("PATH"), home.as_deref())
}

/// The `capabilities` reply.
pub fn reply(available: Available, probed: &Probed, policy: &Policy) -> SessionEvent {
    let available = available.restrict(policy);
    // The selectors offer only the modes the policy lets a remote party pick.
    let modes: Vec<&str> = crate::protocol::PERMISSION_MODES
        .into_iter()
        .filter(|m| policy.allows_mode(m))
        .collect();
    let commands: Vec<Value> = probed
        .claude_commands
        .iter()
        .filter_map(|c| {
            let name = c.get("name")?.as_str()?;
            Some(json!({
                "name": name,
                "description": c.get("description").and_then(Value::as_str).unwrap_or(""),
                "argument_hint": c.get("argumentHint").or_else(|| c.get("argument_hint")).and_then(Value::as_str).unwrap_or(""),
                "aliases": c.get("aliases").filter(|a| a.is_array()).cloned().unwrap_or_else(|| json!([])),
            }))
        })
        .collect();
    let mut codex_models = vec![json!({"value": "", "label": "Default (from Codex's config)"})];
    codex_models.extend(probed.codex_models.iter().cloned());
    let mut codex_efforts = vec![String::new()];
    codex_efforts.extend(probed.codex_efforts.iter().cloned());
    if codex_efforts.len() == 1 {
        codex_efforts.extend(["low", "medium", "high"].map(String::from));
    }
    let acp = available.acp.iter().map(|(spec, ok)| {
        json!({
            "name": spec.name,
            "label": spec.label,
            "available": ok,
            "models": [{"value": "", "label": "Default (from the agent)"}],
            "efforts": [""],
            "permission_modes": modes,
            "allow_custom_model": true,
            "supports_edit": false,
            "supports_code_restore": false,
            "commands": [],
        })
    });
    let mut providers = vec![
        json!({
            "name": "claude",
            "label": "Claude Code",
            "available": available.claude,
            "models": [
                {"value": "", "label": "Default (from settings)"},
                {"value": "sonnet", "label": "Sonnet"},
                {"value": "sonnet[1m]", "label": "Sonnet (1M context)"},
                {"value": "opus", "label": "Opus"},
                {"value": "opus[1m]", "label": "Opus (1M context)"},
                {"value": "haiku", "label": "Haiku"},
            ],
            "efforts": ["", "low", "medium", "high", "max"],
            "permission_modes": modes,
            "allow_custom_model": true,
            "supports_edit": true,
            "supports_code_restore": true,
            "commands": commands,
        }),
        json!({
            "name": "codex",
            "label": "Codex",
            "available": available.codex,
            "models": codex_models,
            "efforts": codex_efforts,
            "permission_modes": modes,
            "allow_custom_model": true,
            "supports_edit": false,
            "supports_code_restore": false,
            "commands": [],
        }),
    ];
    providers.extend(acp);
    SessionEvent::reply(None, Event::Capabilities { providers })
}

/// Start a throwaway `codex app-server` and return its models (`{value, label}`) and the
/// reasoning efforts they support, in a stable order.
pub fn probe_codex(
    configured: Option<&Path>,
    cwd: &Path,
    timeout: Duration,
) -> Option<(Vec<Value>, Vec<String>)> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let program =
        crate::providers::codex::resolve(configured, std::env::var_os("PATH"), home.as_deref())?;
    let spec = Spec {
        program,
        args: vec!["app-server".into()],
        cwd: cwd.to_path_buf(),
        env: Vec::new(),
        env_remove: Vec::new(),
    };
    let (tx, rx) = crossbeam_channel::bounded(4);
    let handle = child::spawn(0, &spec, tx).ok()?;
    let mut st = crate::providers::codex::State::default();
    handle.send_line(st.request(
        crate::providers::codex::Call::Initialize,
        "initialize",
        crate::providers::codex::initialize_params(),
    ));
    handle.send_line(crate::providers::codex::notification("initialized"));
    handle.send_line(json!({"id": "models", "method": "model/list", "params": {}}).to_string());
    let deadline = Instant::now() + timeout;
    let mut found = None;
    'wait: while let Ok(ev) = rx.recv_deadline(deadline) {
        match ev {
            ChildEvent::Lines { values, .. } => {
                for v in values {
                    if v["id"] == "models" {
                        found = v.pointer("/result/data").and_then(Value::as_array).cloned();
                        break 'wait;
                    }
                }
            }
            ChildEvent::Exited { .. } => break,
        }
    }
    handle.close();
    let data = found?;
    let mut efforts: Vec<String> = Vec::new();
    let models = data
        .iter()
        .filter(|m| m.get("hidden").and_then(Value::as_bool) != Some(true))
        .filter_map(|m| {
            let id = m.get("model").or_else(|| m.get("id"))?.as_str()?;
            for e in m
                .get("supportedReasoningEfforts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(e) = e.get("reasoningEffort").and_then(Value::as_str)
                    && !efforts.iter().any(|x| x == e)
                {
                    efforts.push(e.to_string());
                }
            }
            let label = m.get("displayName").and_then(Value::as_str).unwrap_or(id);
            Some(json!({"value": id, "label": label}))
        })
        .collect();
    Some((models, efforts))
}

/// Start a throwaway CLI, ask `initialize`, and return its command catalogue.
pub fn probe(
    configured: Option<&Path>,
    entrypoint: Option<&str>,
    cwd: &Path,
    timeout: Duration,
) -> Option<Vec<Value>> {
    let program = resolve(configured)?;
    let (env, env_remove) = crate::providers::claude::child_env(entrypoint);
    let spec = Spec {
        program,
        args: crate::providers::claude::argv(&crate::providers::claude::SpawnOpts::default()),
        cwd: cwd.to_path_buf(),
        env,
        env_remove,
    };
    let (tx, rx) = crossbeam_channel::bounded(4);
    let handle = child::spawn(0, &spec, tx).ok()?;
    let rid = format!("probe_{}", &crate::sys::ids::new_id()[..8]);
    handle.send_line(crate::providers::claude::control_request(
        &rid,
        json!({"subtype": "initialize", "hooks": null}),
    ));
    let deadline = Instant::now() + timeout;
    let mut found = None;
    'wait: while let Ok(ev) = rx.recv_deadline(deadline) {
        match ev {
            ChildEvent::Lines { values, .. } => {
                for v in values {
                    if v["type"] == "control_response"
                        && v["response"]["request_id"] == rid.as_str()
                    {
                        found = v["response"]["response"]["commands"].as_array().cloned();
                        break 'wait;
                    }
                }
            }
            ChildEvent::Exited { .. } => break,
        }
    }
    handle.close();
    // Let the supervisor finish in the background; nothing more is read.
    found
}
