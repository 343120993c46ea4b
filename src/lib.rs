//! coding-bridge-agent: the node daemon that lets a browser drive Claude Code on this
//! machine through a relay, without exposing the machine.
//!
//! Module map (one concern each):
//! - [`app`]: command dispatch and exit codes; the only place that prints for people.
//! - [`cli`]: argv parsing (lexopt) into a [`cli::Cli`].
//! - [`config`]: environment + flags into a validated [`config::Config`].
//! - [`credentials`]: the stored node token (`credentials.json`).
//! - [`fsutil`]: private directories and atomic 0600 file writes.
//! - [`lock`]: one daemon per config dir (`agent.lock`).
//! - [`logging`]: stderr + rotating file logger that redacts secrets.
//! - [`pairing`]: the HTTP pairing flow.
//! - [`qr`]: QR code drawn with Unicode blocks for the terminal.
//! - [`secret`]: a string that never prints.
//! - [`timefmt`]: UTC timestamps without a date crate.
//! - [`daemon`]: wires the threads and channels of a running node, then hands over to
//!   [`hub`], the single owner of state (see its doc for the thread diagram).
//! - [`link`]: the relay WebSocket on a reader and a writer thread; [`tls`] its TLS.
//! - [`envelope`], [`outbox`], [`dedupe`]: relay frames, reliable delivery, command de-dup.
//! - [`timer`], [`backoff`], [`ids`]: the timer thread, reconnect delays, random ids.
//! - [`capabilities`]: what the node announces and the `capabilities` reply.
//! - [`sessions`], [`driver`], [`session`], [`child`], [`claude`]: all sessions and their
//!   commands, how a session drives its CLI child, one session's state and stream
//!   translation, the CLI processes, the CLI protocol;
//!   [`permissions`]: tool approvals waiting for the browser.
//! - [`transcript`]: what the live sessions read from Claude Code's own transcripts
//!   (replay guard, the prompt an edit rewinds, the unsigned-thinking repair).
//! - [`history`], [`fslist`], [`media`], [`sidecar`]: transcripts, the directory picker,
//!   a turn's images and attachments, per-session settings; run on [`worker`] threads.
//! - [`reaper`]: orphan reaping when the daemon is PID 1.

pub mod app;
pub mod backoff;
pub mod capabilities;
pub mod child;
pub mod claude;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod dedupe;
pub mod driver;
pub mod envelope;
pub mod fslist;
pub mod fsutil;
pub mod guard;
pub mod history;
pub mod hub;
pub mod ids;
pub mod link;
pub mod lock;
pub mod logging;
pub mod media;
pub mod outbox;
pub mod pairing;
pub mod permissions;
pub mod qr;
pub mod reads;
pub mod reaper;
pub mod secret;
pub mod session;
pub mod sessions;
pub mod sidecar;
pub mod timefmt;
pub mod timer;
pub mod tls;
pub mod transcript;
pub mod worker;
