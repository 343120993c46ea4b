//! OpenAI Codex through `codex app-server`: one JSON object per line on the child's stdio
//! (JSON-RPC without the `"jsonrpc"` member). This module holds the protocol: finding the
//! CLI, the messages we send, and the per-session [`State`]; how a session drives it
//! (threads, turns, items, approvals) is in [`driver`].
//!
//! Facts that shape it (Codex 0.169, verified offline):
//! - server → client requests have their own ids, starting at 0 like ours: a message
//!   with `method` and `id` is a request to us, `method` alone a notification, anything
//!   else the answer to one of our calls;
//! - every command and every patch asks for approval under `approvalPolicy: untrusted`,
//!   and the turn waits for the answer (`accept` / `decline`);
//! - `thread/resume` does not restore the sandbox: policy and sandbox are sent with every
//!   thread call and every turn;
//! - items interrupted mid-way never complete: open ones are closed at `turn/completed`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub mod driver;
pub mod history;

/// Find the `codex` executable: the configured path, else PATH and the usual npm dirs.
pub fn resolve(
    configured: Option<&Path>,
    path_env: Option<OsString>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    if let Some(p) = configured {
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
        .map(|d| d.join("codex"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// How to install it, for `cli_not_found`.
pub const INSTALL_HINT: &str = "Codex (`codex`) was not found on PATH. Install it with \
    `npm install -g @openai/codex`, or point CODING_BRIDGE_CODEX_PATH / --codex-path at it.";

/// Approval policy and sandbox for a permission mode (PROTOCOL §9): `default` asks for
/// every command and patch, `acceptEdits` too (the node approves patches itself), `plan`
/// is read-only, `bypassPermissions` never asks.
pub fn policy(mode: &str) -> (&'static str, &'static str, Value) {
    match mode {
        "bypassPermissions" => (
            "never",
            "danger-full-access",
            json!({"type": "dangerFullAccess"}),
        ),
        "plan" => (
            "untrusted",
            "read-only",
            json!({"type": "readOnly", "networkAccess": false}),
        ),
        _ => (
            "untrusted",
            "workspace-write",
            json!({"type": "workspaceWrite", "writableRoots": [], "networkAccess": false}),
        ),
    }
}

/// Our calls that wait for an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Initialize,
    ThreadStart,
    ThreadResume,
    TurnStart,
    TurnInterrupt,
}

/// An item of the running turn that may still be open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Open {
    /// An agent message being streamed: its text so far.
    Text(String),
    /// A tool (command or patch) shown as `session.tool_use`, not yet finished.
    Tool,
}

/// What a Codex session keeps besides the generic session state.
#[derive(Debug, Default)]
pub struct State {
    next_id: u64,
    calls: HashMap<u64, Call>,
    /// The running turn's id (`turn/interrupt` needs it).
    pub turn_id: Option<String>,
    /// File changes of `fileChange` items, by item id: the approval request has none.
    pub changes: HashMap<String, Value>,
    pub open: HashMap<String, Open>,
    /// The last agent message of the turn (the result's `result`).
    pub last_text: Option<String>,
    /// An error the server reported for this turn.
    pub error: Option<String>,
    /// An interrupt came before the turn had an id.
    pub held_interrupt: bool,
    /// The thread's own model and effort (what "default" means again after an override:
    /// Codex keeps a turn's override for the turns after it).
    pub default_model: Option<String>,
    pub default_effort: Option<String>,
    /// The model and effort last sent with a turn.
    pub sent_model: Option<String>,
    pub sent_effort: Option<String>,
}

impl State {
    /// A request line for `method`, remembered as `call`.
    pub fn request(&mut self, call: Call, method: &str, params: Value) -> String {
        self.next_id += 1;
        self.calls.insert(self.next_id, call);
        json!({"id": self.next_id, "method": method, "params": params}).to_string()
    }

    /// Which of our calls `id` answers (forgotten once answered).
    pub fn answered(&mut self, id: &Value) -> Option<Call> {
        self.calls.remove(&id.as_u64()?)
    }

    /// The turn ended: forget what belonged to it.
    pub fn end_turn(&mut self) {
        self.turn_id = None;
        self.changes.clear();
        self.open.clear();
        self.last_text = None;
        self.error = None;
    }

    /// The model and effort to send with a turn that asks for `model` and `effort`
    /// (`None`: the default): an earlier override is undone by naming the default.
    pub fn turn_settings(
        &mut self,
        model: Option<String>,
        effort: Option<String>,
    ) -> (Option<String>, Option<String>) {
        let model = model.or_else(|| self.sent_model.as_ref().and(self.default_model.clone()));
        let effort = effort.or_else(|| {
            self.sent_effort.as_ref().map(|_| {
                self.default_effort
                    .clone()
                    .unwrap_or_else(|| "medium".into())
            })
        });
        self.sent_model.clone_from(&model);
        self.sent_effort.clone_from(&effort);
        (model, effort)
    }
}

/// A notification line.
pub fn notification(method: &str) -> String {
    json!({"method": method}).to_string()
}

/// The answer to the server's request `id`.
pub fn reply(id: &Value, result: Value) -> String {
    json!({"id": id, "result": result}).to_string()
}

/// A refusal of a server request we do not serve (so its turn does not hang).
pub fn reply_error(id: &Value, message: &str) -> String {
    json!({"id": id, "error": {"code": -32601, "message": message}}).to_string()
}

/// `initialize` params.
pub fn initialize_params() -> Value {
    json!({
        "clientInfo": {"name": "coding-bridge-agent", "title": "Coding Bridge", "version": env!("CARGO_PKG_VERSION")},
        "capabilities": {"optOutNotificationMethods": ["configWarning", "remoteControl/status/changed"]},
    })
}

/// `thread/start` or `thread/resume` params.
pub fn thread_params(cwd: &Path, mode: &str, model: Option<&str>, resume: Option<&str>) -> Value {
    let (approval, sandbox, _) = policy(mode);
    let mut p = json!({"cwd": cwd, "approvalPolicy": approval, "sandbox": sandbox});
    if let Some(m) = model {
        p["model"] = json!(m);
    }
    if let Some(id) = resume {
        p["threadId"] = json!(id);
        p["excludeTurns"] = json!(true);
    }
    p
}

/// `turn/start` params: the prompt and its images, with the mode's policy, model and
/// effort.
pub fn turn_params(
    thread: &str,
    prompt: &str,
    images: &[PathBuf],
    mode: &str,
    model: Option<&str>,
    effort: Option<&str>,
) -> Value {
    let (approval, _, sandbox) = policy(mode);
    let mut input = vec![json!({"type": "text", "text": prompt})];
    input.extend(
        images
            .iter()
            .map(|p| json!({"type": "localImage", "path": p})),
    );
    let mut p = json!({
        "threadId": thread,
        "input": input,
        "approvalPolicy": approval,
        "sandboxPolicy": sandbox,
    });
    if let Some(m) = model {
        p["model"] = json!(m);
    }
    if let Some(e) = effort {
        p["effort"] = json!(e);
        p["summary"] = json!("auto");
    }
    p
}

/// The command a `commandExecution` shows: the model's own command when Codex parsed it,
/// else the whole shell line.
pub fn command_text(v: &Value) -> String {
    let actions = v.get("commandActions").and_then(Value::as_array);
    let parsed: Vec<&str> = actions
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("command").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if !parsed.is_empty() {
        return parsed.join(" && ");
    }
    match v.get("command") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The text of a finished `reasoning` item: its summary, else its raw content.
pub fn reasoning_text(item: &Value) -> String {
    let join = |k: &str| {
        item.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().or_else(|| x.get("text")?.as_str()))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    let summary = join("summary");
    if summary.trim().is_empty() {
        join("content")
    } else {
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_answers() {
        let mut st = State::default();
        let line = st.request(Call::Initialize, "initialize", json!({}));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["id"], 1);
        assert_eq!(v["method"], "initialize");
        assert!(v.get("jsonrpc").is_none());
        assert_eq!(st.answered(&json!(1)), Some(Call::Initialize));
        assert_eq!(st.answered(&json!(1)), None);
        assert_eq!(st.answered(&json!("x")), None);
    }

    #[test]
    fn back_to_the_default_model_and_effort() {
        let mut st = State {
            default_model: Some("gpt-5.5".into()),
            ..State::default()
        };
        assert_eq!(st.turn_settings(None, None), (None, None));
        assert_eq!(
            st.turn_settings(Some("gpt-6".into()), Some("high".into())),
            (Some("gpt-6".into()), Some("high".into()))
        );
        assert_eq!(
            st.turn_settings(None, None),
            (Some("gpt-5.5".into()), Some("medium".into())),
            "the default is named again"
        );
    }

    #[test]
    fn modes_map_to_policies() {
        assert_eq!(policy("default").0, "untrusted");
        assert_eq!(policy("acceptEdits").1, "workspace-write");
        assert_eq!(policy("plan").1, "read-only");
        assert_eq!(policy("bypassPermissions").0, "never");
        let t = turn_params(
            "th",
            "hi",
            &[PathBuf::from("/i.png")],
            "plan",
            Some("gpt-5.5"),
            Some("high"),
        );
        assert_eq!(
            t["input"][1],
            json!({"type": "localImage", "path": "/i.png"})
        );
        assert_eq!(t["sandboxPolicy"]["type"], "readOnly");
        assert_eq!(t["model"], "gpt-5.5");
        assert_eq!(t["effort"], "high");
        let r = thread_params(Path::new("/w"), "default", None, Some("th"));
        assert_eq!(r["threadId"], "th");
        assert_eq!(
            r["sandbox"], "workspace-write",
            "resume re-sends the sandbox"
        );
    }

    #[test]
    fn commands_and_reasoning() {
        let c = json!({"command": "/bin/bash -lc 'echo hi > f.txt'", "commandActions": [{"type": "unknown", "command": "echo hi > f.txt"}]});
        assert_eq!(command_text(&c), "echo hi > f.txt");
        assert_eq!(command_text(&json!({"command": ["ls", "-l"]})), "ls -l");
        assert_eq!(
            reasoning_text(&json!({"summary": ["a", "b"], "content": ["raw"]})),
            "a\nb"
        );
        assert_eq!(
            reasoning_text(&json!({"summary": [], "content": ["raw"]})),
            "raw"
        );
    }
}
