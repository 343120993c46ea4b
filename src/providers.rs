//! The coding agents a session can run. Each provider starts its agent's CLI as a child
//! ([`crate::sys::child`]) and translates the CLI's protocol into the node's events and
//! approvals; the hub and its sessions stay the same whatever the agent.
//!
//! - [`claude`]: Claude Code over its stream-json protocol.

pub mod claude;
