//! The coding agents a session can run. Each provider starts its agent's CLI as a child
//! ([`crate::sys::child`]) and translates the CLI's protocol into the node's events and
//! approvals; the hub and its sessions stay the same whatever the agent.
//!
//! - [`claude`]: Claude Code over its stream-json protocol.
//! - [`codex`]: OpenAI Codex over `codex app-server` (JSON-RPC on stdio).
//! - [`acp`]: any agent speaking the Agent Client Protocol (GitHub Copilot, Gemini CLI,
//!   and agents declared in `<config dir>/agents.json`).
//! - [`note`]: the attachment note every agent gets in its prompt, and the user's own
//!   words read back out of it for history.
//!
//! A session's `crate::hub::session::Agent` says which one drives it; the session
//! commands in [`crate::hub::sessions`] dispatch on it where the agents differ (starting
//! the child, writing a turn, reading its lines, interrupting, answering an approval).

pub mod acp;
pub mod claude;
pub mod codex;
pub mod note;
