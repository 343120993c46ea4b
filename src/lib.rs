//! coding-bridge-agent: the node daemon that lets a browser drive Claude Code on this
//! machine through a relay, without exposing the machine.
//!
//! The data path, as the folders show it:
//!
//! ```text
//!   relay ──▶ relay::link ──▶ hub ──▶ hub::sessions ──▶ providers::<agent> ──▶ sys::child ──▶ agent CLI
//! ```
//!
//! - [`daemon`]: wires the threads and channels of a running node, then hands over to
//!   [`hub`], the single owner of state (see its doc for the thread diagram).
//! - [`relay`]: the WebSocket to the relay, its frames, reliable delivery.
//! - [`hub`]: the state and every decision: sessions, turns, approvals, the timer, the
//!   worker threads.
//! - [`providers`]: each coding agent's protocol, translated into node events.
//! - [`protocol`]: the relay protocol's commands as types, and the checks all layers share.
//! - [`history`]: what sessions leave on disk that providers and the hub share.
//! - [`node`]: the other services the browser asks for (capabilities, the directory
//!   picker, media, unread marks, per-session settings).
//! - [`channels`]: chat channels (Telegram) that drive sessions like the browser does.
//! - [`cli`]: the command line, configuration, pairing, credentials and the `service`
//!   command (systemd units and OpenRC scripts).
//! - [`sys`]: processes, files, logging, ids, time.

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
