//! coding-bridge-agent: the node daemon that lets a browser drive coding agents (Claude
//! Code, Codex, ACP agents) on this machine through a relay, without exposing the
//! machine.
//!
//! The layers, each using only those to its right (`tests/layers.rs` keeps it so):
//!
//! ```text
//! main → cli → daemon → hub → { relay, channels, node } → providers → { session, history, policy } → protocol → sys
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
//! - [`providers`]: each coding agent as a state machine: its protocol translated into
//!   node events, and effects for the hub to apply.
//! - [`protocol`]: the browser's commands as types, the shared limits and id checks.
//! - [`session`]: the generic session every provider works on (turns, child, settings,
//!   the events built from it).
//! - [`history`]: what sessions leave on disk that providers and the hub share (the
//!   JSONL toolkit, the settings sidecars).
//! - [`policy`]: the owner's `policy.toml`: allowed modes, roots and agents, approval
//!   rules, and what a scoped grant covers.
//! - [`sys`]: processes, files, logging, ids, time, the saver, byte budgets.
//!

// These docs are for people working on the daemon (`cargo doc --document-private-items`):
// the module map above links to modules that are private to the crate.
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod channels;
pub(crate) mod cli;
pub(crate) mod daemon;
pub(crate) mod history;
pub(crate) mod hub;
pub(crate) mod node;
pub(crate) mod policy;
pub(crate) mod protocol;
pub(crate) mod providers;
pub(crate) mod relay;
pub(crate) mod session;
pub(crate) mod sys;

// The modules are private to the crate, so the compiler reports what nothing uses; the
// binary's entry points and the few items the tests use are what is public.

/// The command line (`coding-bridge-agent ...`): returns the exit code.
pub use cli::app::main;
/// The per-child guard (`sys::guard`): the binary re-executes itself with this first
/// argument to become one.
pub use sys::guard::{ARG as GUARD_ARG, main as guard_main};

/// What the integration tests, the scripted fake agents and the benches reach into.
#[doc(hidden)]
pub mod testing {
    pub use crate::channels::config::{NO_RATE_LIMIT, Telegram, TokenSource, parse};
    pub use crate::cli::config::ENV_VARS;
    pub use crate::cli::units::contrib;
    pub use crate::providers::claude::transcript::project_slug;
    pub use crate::sys::ids::uuid_v4;
    pub use crate::sys::reaper::{process, processes};
}
