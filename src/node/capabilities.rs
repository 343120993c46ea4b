//! What this node can do: the heartbeat's capability list (installed providers plus
//! `history`) and the `capabilities` reply describing the Claude Code provider, whose
//! slash-command catalogue comes from the CLI's `initialize` answer: from a session that
//! ran, or else from a one-off probe child (45 s cap, cached; empty on failure).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::sys::child::{self, ChildEvent, Spec};

/// The longest a catalogue probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(45);

/// The heartbeat's capability list.
pub fn heartbeat_list(claude_path: Option<&Path>) -> Vec<String> {
    let mut caps = Vec::new();
    if claude_available(claude_path) {
        caps.push("claude".to_string());
    }
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
pub fn reply(available: bool, commands: &[Value]) -> Value {
    let commands: Vec<Value> = commands
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
    json!({
        "event": "capabilities",
        "providers": [{
            "name": "claude",
            "label": "Claude Code",
            "available": available,
            "models": [
                {"value": "", "label": "Default (from settings)"},
                {"value": "sonnet", "label": "Sonnet"},
                {"value": "sonnet[1m]", "label": "Sonnet (1M context)"},
                {"value": "opus", "label": "Opus"},
                {"value": "opus[1m]", "label": "Opus (1M context)"},
                {"value": "haiku", "label": "Haiku"},
            ],
            "efforts": ["", "low", "medium", "high", "max"],
            "permission_modes": crate::hub::sessions::PERMISSION_MODES,
            "allow_custom_model": true,
            "supports_edit": true,
            "supports_code_restore": true,
            "commands": commands,
        }],
    })
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
