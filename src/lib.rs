//! coding-bridge-agent: the node daemon that lets a browser drive coding agents (Claude
//! Code, Codex, ACP agents) on this machine through a relay, without exposing the
//! machine.
//!
//! The layers, each using only those to its right (`tests/layers.rs` keeps it so):
//!
//! ```text
//! main → cli → daemon → hub → { relay, channels, node } → providers → { protocol, session, history } → sys
//! ```
//!
//! - [`cli`]: the command line, configuration, exit codes, pairing, credentials and the
//!   `service` command (systemd units and OpenRC scripts).
//! - [`daemon`]: wires the threads and channels of a running node, then hands over to
//!   [`hub`], the single owner of state (see its doc for the thread diagram).
//! - [`hub`]: the state and every decision: sessions, turns, approvals, the timer, the
//!   worker threads that do its disk and network work.
//! - [`relay`]: the WebSocket to the relay, its frames, reliable delivery, backoff.
//! - [`channels`]: chat channels (Telegram) that drive sessions like the browser does.
//! - [`node`]: the other services the browser asks for (history listing, capabilities,
//!   the directory picker, media, unread marks, the run state).
//! - [`providers`]: each coding agent's protocol, translated into node events.
//! - [`protocol`]: the browser's commands as types, the shared limits and id checks.
//! - [`history`]: what sessions leave on disk that providers and the hub share (the
//!   JSONL toolkit, the settings sidecars).
//! - [`sys`]: processes, files, logging, ids, time, the saver, byte budgets.

pub mod channels;
pub mod cli;
pub mod daemon;
pub mod history;
pub mod hub;
pub mod node;
pub mod protocol;
pub mod providers;
pub mod relay;
pub mod sys;
