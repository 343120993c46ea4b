//! The coding agents a session can run, each as a state machine: its own `State` plus
//! functions that take the generic [`Session`], that state and what arrived (a line from
//! its child, a wake-up, a worker's answer), push node events, and return [`Effect`]s:
//! what the hub should do with the whole daemon. Providers never touch the session
//! table, the children, the timer or the approval table; only the hub applies effects
//! ([`crate::hub::sessions`]). No threads here.
//!
//! - [`claude`]: Claude Code over its stream-json protocol.
//! - [`codex`]: OpenAI Codex over `codex app-server` (JSON-RPC on stdio).
//! - [`acp`]: any agent speaking the Agent Client Protocol (GitHub Copilot, Gemini CLI,
//!   and agents declared in `<config dir>/agents.json`).
//! - [`note`]: the attachment note every agent gets in its prompt, and the user's own
//!   words read back out of it for history.
//!
//! [`Agent`] holds the state of whichever provider drives a session; the hub keeps it
//! beside the session and dispatches on it where the agents differ.

pub mod acp;
pub mod claude;
pub mod codex;
pub mod note;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::protocol::events::SessionEvent;
use crate::providers::claude::stream::{ClaudeState, RewindError};
use crate::session::{Approval, Session};

/// The agent a session runs, with what its provider keeps of its own.
pub(crate) enum Agent {
    /// Claude Code (stream-json), see [`claude::driver`].
    Claude(Box<ClaudeState>),
    /// Codex (`codex app-server`), see [`codex::driver`].
    Codex(Box<codex::State>),
    /// An ACP agent, see [`acp::driver`].
    Acp(Box<acp::State>),
}

impl Agent {
    /// A Claude Code session with nothing known yet.
    pub(crate) fn claude() -> Agent {
        Agent::Claude(Box::default())
    }

    /// The agent named `provider` as the browser spells it, if this node runs it.
    pub(crate) fn named(provider: &str, acp: &[acp::AgentSpec]) -> Option<Agent> {
        match provider {
            "claude" => Some(Agent::claude()),
            "codex" => Some(Agent::Codex(Box::default())),
            other => acp
                .iter()
                .find(|a| a.name == other)
                .map(|a| Agent::Acp(Box::new(acp::State::new(a.clone())))),
        }
    }

    /// Claude Code's state, for a Claude Code session.
    pub(crate) fn claude_state(&mut self) -> Option<&mut ClaudeState> {
        match self {
            Agent::Claude(st) => Some(st),
            _ => None,
        }
    }

    /// Claude Code's state, read only.
    pub(crate) fn claude_ref(&self) -> Option<&ClaudeState> {
        match self {
            Agent::Claude(st) => Some(st),
            _ => None,
        }
    }

    /// How the agent is named to people ("Claude Code stopped mid-turn …").
    pub(crate) fn label(&self) -> String {
        match self {
            Agent::Claude(_) => "Claude Code".into(),
            Agent::Codex(_) => "Codex".into(),
            Agent::Acp(st) => st
                .spec
                .as_ref()
                .map_or_else(|| "The agent".into(), |a| a.label.clone()),
        }
    }

    /// The child is gone (it exited, or was detached): forget what was tied to that
    /// process. A new process starts from scratch (conversations resume by id).
    pub(crate) fn child_gone(&mut self) {
        match self {
            Agent::Claude(st) => st.child_gone(),
            Agent::Codex(st) => **st = codex::State::default(),
            Agent::Acp(st) => {
                let spec = st.spec.take();
                **st = acp::State::default();
                st.spec = spec;
            }
        }
    }
}

/// What a provider leaves to the hub, in order, after handling what arrived. The hub
/// follows the session to its new key after a [`Effect::Rekey`].
pub(crate) enum Effect {
    /// The agent named the conversation's real id: the session is announced
    /// (`session.identified`) and keyed by it from now on.
    Rekey(String),
    /// Save the session's settings beside its transcript.
    SaveSidecar,
    /// Write the next queued turn if the session can take it.
    Pump,
    /// The turn is over: approvals the agent still had open were abandoned; they are
    /// settled (before the turn's result, as they were in time).
    SettleOpen,
    /// Put an approval before the browser. `refuse` is the line that declines it to the
    /// agent when the approval table is full.
    Ask {
        approval: Box<Approval>,
        refuse: String,
    },
    /// The agent withdrew (or settled by itself) its request with this id.
    Withdrawn(String),
    /// The agent cannot serve the session: every waiting turn fails with this, and the
    /// child is let go (the next turn starts a new one).
    Fail { code: &'static str, message: String },
    /// The command catalogue the agent reported (answers the browser's lookups).
    Catalogue(Vec<Value>),
    /// Wake the provider after this long (see the provider's `on_wake`).
    After(Duration, Wake),
    /// Blocking work (the disk) for a worker; its answer comes back as a wake.
    Job(Job),
    /// Claude Code is ready: restore the files of the pending edit now.
    Rewind,
    /// The files of the pending edit were restored, or not.
    Rewound(Result<(), RewindError>),
}

/// Work a provider asks a worker to do: a plain function, so it can also run on the
/// hub when no worker can take it.
pub(crate) enum Job {
    /// How long an ACP session must wait before its `session/load` (Gemini CLI cannot
    /// load a chat in the minute it was created): its chats directory and the chat id.
    GeminiLoadDelay { dir: PathBuf, sid: String },
}

impl Job {
    /// Do it (on a worker): the wake-up that brings the answer back.
    pub(crate) fn run(self) -> Wake {
        match self {
            Job::GeminiLoadDelay { dir, sid } => Wake::LoadAfter(acp::history::gemini_load_delay(
                &dir,
                &sid,
                crate::sys::timefmt::now_ms(),
            )),
        }
    }
}

/// Why a provider is woken: a timer it armed, or a worker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Claude Code announced a turn of its own that has not started in time.
    AutoTurnLate,
    /// ACP: the `session/load` put off is due.
    Load,
    /// ACP: load after this long (zero: now), as a worker found.
    LoadAfter(Duration),
    /// ACP: a loaded session may have finished its replay (`seq` unchanged since).
    Quiet(u64),
}

/// Close whatever the running turn left open, for any agent: streamed text gets its
/// final `session.text`, a tool still running a `session.tool_result`.
pub(crate) fn commit_open(s: &mut Session, agent: &mut Agent, out: &mut Vec<SessionEvent>) {
    match agent {
        Agent::Claude(st) => st.commit_open_blocks(s, out),
        Agent::Codex(st) => codex::driver::close_open(s, st, out),
        Agent::Acp(st) => acp::driver::close_open(s, st, out),
    }
}

/// How an approval is answered to its agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Allow,
    Deny,
    /// The question is withdrawn (an interrupt).
    Cancel,
}

/// The line that answers an agent's approval request `cli_request_id` (with what was
/// kept of it, [`Approval::keep`]): allow (with the browser's answer, for Claude's
/// AskUserQuestion) or deny with `deny_message`.
pub(crate) fn approval_answer(
    agent: &Agent,
    cli_request_id: &str,
    kept: &Value,
    how: Answer,
    answer: Option<&Value>,
    deny_message: &str,
) -> String {
    let rpc_id = || serde_json::from_str(cli_request_id).unwrap_or(Value::Null);
    match agent {
        Agent::Claude(_) => claude::control_success(
            cli_request_id,
            match how {
                Answer::Allow => claude::allow_response(kept, answer),
                Answer::Deny | Answer::Cancel => claude::deny_response(deny_message),
            },
        ),
        Agent::Codex(_) => codex::reply(
            &rpc_id(),
            json!({"decision": match how {
                Answer::Allow => "accept",
                Answer::Deny => "decline",
                Answer::Cancel => "cancel",
            }}),
        ),
        Agent::Acp(_) => acp::reply(
            &rpc_id(),
            match how {
                Answer::Allow => acp::permission_outcome(&kept["options"], true),
                Answer::Deny => acp::permission_outcome(&kept["options"], false),
                Answer::Cancel => json!({"outcome": {"outcome": "cancelled"}}),
            },
        ),
    }
}
