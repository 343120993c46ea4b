//! Agents that speak the Agent Client Protocol (JSON-RPC 2.0, one object per line on the
//! child's stdio): GitHub Copilot CLI (`copilot --acp --stdio`), Gemini CLI
//! (`gemini --acp`), and any agent a user declares in `<config dir>/agents.json`. One
//! client serves them all; this module holds the agent table, the messages and the
//! per-session [`State`]; how a session drives an agent is in [`driver`].
//!
//! Facts that shape it (Copilot 1.0.102, Gemini 0.61, verified offline):
//! - requests from the agent have their own ids from 0: route on `method`;
//! - with `clientCapabilities: {}` an agent asks the client for nothing but
//!   `session/request_permission`, whose options are picked by `kind`;
//! - Gemini sends no `tool_call` before a permission request: the tool is shown from the
//!   request's own `toolCall`, and a refused tool never gets an update (closed here);
//! - `session/cancel` is a notification, and pending requests must be answered
//!   `cancelled` (Gemini waits for that);
//! - `session/load` replays the conversation (Copilot before its answer, Gemini after):
//!   the replay is never shown; a prompt waits for a quiet moment after the load.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

pub mod driver;
pub mod history;

/// One ACP agent the node can run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AgentSpec {
    /// The provider name the browser uses (`copilot`, `gemini`, …).
    pub name: String,
    pub label: String,
    /// The executable (a name looked up on PATH, or a path).
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: HashMap<String, String>,
    /// How to install it, for `cli_not_found`.
    #[serde(default)]
    pub install: Option<String>,
}

/// The built-in agents.
pub fn builtins() -> Vec<AgentSpec> {
    let spec = |name: &str, label: &str, command: &str, args: &[&str], install: &str| AgentSpec {
        name: name.into(),
        label: label.into(),
        command: command.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: HashMap::new(),
        install: Some(install.into()),
    };
    vec![
        spec(
            "copilot",
            "GitHub Copilot",
            "copilot",
            &["--acp", "--stdio"],
            "npm install -g @github/copilot",
        ),
        spec(
            "gemini",
            "Gemini CLI",
            "gemini",
            &["--acp"],
            "npm install -g @google/gemini-cli",
        ),
    ]
}

#[derive(Deserialize)]
struct AgentsFile {
    #[serde(default)]
    agents: Vec<AgentSpec>,
}

/// The agent table: the built-ins, `CODING_BRIDGE_<NAME>_PATH` overrides for them, and
/// the agents declared in `<config dir>/agents.json` (`{"agents": [{name, label, command,
/// args?, env?, install?}]}`; a declared agent replaces a built-in of the same name). A
/// broken file is reported and skipped.
pub fn agents(config_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Vec<AgentSpec> {
    let mut all = builtins();
    let path = config_dir.join("agents.json");
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<AgentsFile>(&bytes) {
            Ok(file) => {
                for a in file.agents {
                    let name_ok = !a.name.is_empty()
                        && a.name.len() <= 40
                        && a.name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                    if !name_ok || ["claude", "codex"].contains(&a.name.as_str()) {
                        crate::log_warn!(
                            "{}: agent name {:?} is not usable (letters, digits, - and _; not claude or codex)",
                            path.display(),
                            a.name
                        );
                        continue;
                    }
                    all.retain(|b| b.name != a.name);
                    all.push(a);
                }
            }
            Err(e) => crate::log_warn!(
                "{} is not a valid agents file ({e}); ignored",
                path.display()
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => crate::log_warn!("cannot read {}: {e}", path.display()),
    }
    // `CODING_BRIDGE_<NAME>_PATH` points any agent at its executable.
    for a in &mut all {
        if let Some(p) = env(&path_var(&a.name)).filter(|p| !p.trim().is_empty()) {
            a.command = p;
        }
    }
    all
}

/// The variable that names an agent's executable: `CODING_BRIDGE_<NAME>_PATH`.
pub fn path_var(name: &str) -> String {
    format!(
        "CODING_BRIDGE_{}_PATH",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// Find the agent's executable: a path as given, or a name on PATH and the usual dirs.
pub fn resolve(command: &str, path_env: Option<OsString>, home: Option<&Path>) -> Option<PathBuf> {
    let p = Path::new(command);
    if command.contains('/') {
        return is_executable(p).then(|| p.to_path_buf());
    }
    let mut dirs: Vec<PathBuf> = path_env
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(h) = home {
        dirs.push(h.join(".local/bin"));
        dirs.push(h.join(".npm-global/bin"));
    }
    dirs.push(PathBuf::from("/usr/local/bin"));
    dirs.into_iter()
        .map(|d| d.join(command))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Our calls that wait for an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Initialize,
    New,
    Load,
    Prompt,
    SetMode,
    SetModel,
}

/// What an ACP session keeps besides the generic session state.
#[derive(Debug, Default)]
pub struct State {
    pub spec: Option<AgentSpec>,
    next_id: u64,
    calls: HashMap<u64, Call>,
    /// The agent can `session/load` an earlier session.
    pub can_load: bool,
    /// Mode ids the agent offers, and the one in force.
    pub modes: Vec<String>,
    pub mode: Option<String>,
    pub model: Option<String>,
    /// The agent's own model at the start (what "default" means after an override).
    pub default_model: Option<String>,
    /// Updates are a replay of a loaded session: not shown.
    pub replaying: bool,
    /// Bumped by every update while replaying (the quiet-period timer checks it).
    pub replay_seq: u64,
    pub open: std::collections::HashSet<String>,
    /// The agent message being streamed: its id and text so far.
    pub text: Option<(String, String)>,
    pub thought: String,
    pub segment: u64,
    /// The last agent message of the turn (the result's `result`).
    pub last_text: Option<String>,
}

impl State {
    pub fn new(spec: AgentSpec) -> State {
        State {
            spec: Some(spec),
            ..State::default()
        }
    }

    /// A request line for `method`, remembered as `call`.
    pub fn request(&mut self, call: Call, method: &str, params: Value) -> String {
        self.next_id += 1;
        self.calls.insert(self.next_id, call);
        json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
            .to_string()
    }

    pub fn answered(&mut self, id: &Value) -> Option<Call> {
        self.calls.remove(&id.as_u64()?)
    }

    /// The turn ended: forget its stream.
    pub fn end_turn(&mut self) {
        self.open.clear();
        self.text = None;
        self.thought.clear();
        self.last_text = None;
    }

    /// The agent's mode id for a permission mode, if it has one (only `plan` maps to a
    /// mode; the others are decided client-side, per approval).
    pub fn mode_for(&self, permission_mode: &str) -> Option<String> {
        let want = match permission_mode {
            "plan" => "plan",
            _ => return self.modes.iter().find(|m| is_default_mode(m)).cloned(),
        };
        self.modes
            .iter()
            .find(|m| m.rsplit(['#', '/']).next() == Some(want))
            .cloned()
    }
}

fn is_default_mode(id: &str) -> bool {
    matches!(id.rsplit(['#', '/']).next(), Some("default" | "agent"))
}

/// A notification line.
pub fn notification(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
}

/// The answer to the agent's request `id`.
pub fn reply(id: &Value, result: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

pub fn reply_error(id: &Value, code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

/// The answer to a permission request: the option of the wanted kind (allow or reject,
/// once preferred), else cancelled.
pub fn permission_outcome(options: &Value, allow: bool) -> Value {
    let kinds: &[&str] = if allow {
        &["allow_once", "allow_always"]
    } else {
        &["reject_once", "reject_always"]
    };
    let list = options.as_array().cloned().unwrap_or_default();
    for k in kinds {
        if let Some(o) = list
            .iter()
            .find(|o| o.get("kind").and_then(Value::as_str) == Some(k))
            && let Some(id) = o.get("optionId")
        {
            return json!({"outcome": {"outcome": "selected", "optionId": id}});
        }
    }
    json!({"outcome": {"outcome": "cancelled"}})
}

/// The tool name shown for an ACP tool kind (the browser knows Claude's names).
pub fn tool_name(kind: &str, title: &str) -> String {
    match kind {
        "execute" => "Bash".into(),
        "edit" => "Edit".into(),
        "delete" | "move" => "Edit".into(),
        "read" => "Read".into(),
        "search" => "Grep".into(),
        "fetch" => "WebFetch".into(),
        "think" => "Think".into(),
        _ if !title.is_empty() => crate::session::short(title, 60),
        _ => "Tool".into(),
    }
}

/// The text of a tool's `content` (text parts, and a line per diff).
pub fn content_text(content: Option<&Value>) -> String {
    let mut out = Vec::new();
    for c in content.and_then(Value::as_array).into_iter().flatten() {
        match c.get("type").and_then(Value::as_str) {
            Some("content") => {
                if let Some(t) = c.pointer("/content/text").and_then(Value::as_str) {
                    out.push(t.to_string());
                }
            }
            Some("diff") => out.push(format!(
                "Changed {}",
                c.get("path").and_then(Value::as_str).unwrap_or("a file")
            )),
            _ => {}
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_picked_by_kind() {
        let copilot = json!([{"optionId": "allow_once", "kind": "allow_once"}, {"optionId": "allow_always", "kind": "allow_always"}, {"optionId": "reject_once", "kind": "reject_once"}]);
        let gemini = json!([{"optionId": "proceed_always", "kind": "allow_always"}, {"optionId": "proceed_once", "kind": "allow_once"}, {"optionId": "cancel", "kind": "reject_once"}]);
        assert_eq!(
            permission_outcome(&copilot, true)["outcome"]["optionId"],
            "allow_once"
        );
        assert_eq!(
            permission_outcome(&gemini, true)["outcome"]["optionId"],
            "proceed_once"
        );
        assert_eq!(
            permission_outcome(&gemini, false)["outcome"]["optionId"],
            "cancel"
        );
        assert_eq!(
            permission_outcome(&json!([]), false)["outcome"]["outcome"],
            "cancelled"
        );
    }

    #[test]
    fn modes_and_the_agent_table() {
        let mut st = State {
            modes: vec![
                "https://x/session-modes#agent".into(),
                "https://x/session-modes#plan".into(),
            ],
            ..State::default()
        };
        assert_eq!(
            st.mode_for("plan").as_deref(),
            Some("https://x/session-modes#plan")
        );
        assert_eq!(
            st.mode_for("default").as_deref(),
            Some("https://x/session-modes#agent")
        );
        st.modes = vec!["default".into(), "plan".into(), "yolo".into()];
        assert_eq!(st.mode_for("bypassPermissions").as_deref(), Some("default"));
        let dir = std::env::temp_dir().join(format!("cba-agents-{}", crate::sys::ids::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("agents.json"), json!({"agents": [
            {"name": "qwen", "label": "Qwen Code", "command": "qwen", "args": ["--acp"], "env": {"A": "1"}},
            {"name": "bad name", "label": "x", "command": "x"},
            {"name": "claude", "label": "x", "command": "x"}]}).to_string()).unwrap();
        let env = |k: &str| match k {
            "CODING_BRIDGE_COPILOT_PATH" => Some("/opt/copilot".to_string()),
            "CODING_BRIDGE_QWEN_PATH" => Some("/opt/qwen".to_string()),
            _ => None,
        };
        let all = agents(&dir, &env);
        let names: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["copilot", "gemini", "qwen"]);
        assert_eq!(all[0].command, "/opt/copilot");
        assert_eq!(all[2].env.get("A").map(String::as_str), Some("1"));
        assert_eq!(
            all[2].command, "/opt/qwen",
            "declared agents are overridable too"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
