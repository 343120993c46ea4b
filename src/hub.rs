//! The hub: the one thread that owns the daemon's state and makes every decision.
//!
//! Threads and channels (all `crossbeam-channel`, all bounded):
//!
//! ```text
//!   link reader ──LinkEvent──▶ ┌─────┐ ──Outbound──▶ link writer ──▶ relay
//!   child stdout ─ChildEvent─▶ │     │ ──ChildInput──▶ child supervisor ──▶ agent stdin
//!   timer ───────Tick────────▶ │     │ ──(deadline, Tick)──▶ timer
//!   workers ─────Work────────▶ │ hub │ ──job──▶ workers (disk, network, probes)
//!   signals ─────signal no.──▶ │     │ ──save──▶ saver (state files, in order)
//!   bot poller ─ChannelEvent─▶ └─────┘ ──Call──▶ bot sender ──▶ Telegram Bot API
//! ```
//!
//! - **link reader** ([`crate::relay::link`]): one per connection; connects, then blocks in
//!   `poll(2)` and forwards parsed envelopes. Reports `Up` (with the writer's sender and a
//!   kill switch) and `Down`.
//! - **link writer**: one per connection; writes what the hub sends it.
//! - **child supervisor / stdout reader** ([`crate::sys::child`]): per agent child; its
//!   lines go to the session's provider ([`crate::providers`], a state machine), and the
//!   effects it returns are applied by [`crate::hub::sessions`], on the hub.
//! - **workers** ([`crate::hub::worker`]): short-lived threads for everything that touches
//!   the disk or the network (history, media, transcripts, probes); results come back as
//!   [`Work`].
//! - **saver** ([`crate::sys::saver`]): writes the run state, the chats' state and the
//!   settings sidecars in order.
//! - **timer** ([`crate::hub::timer`]): heartbeats, reconnect backoff, permission timeouts,
//!   crash retries, the end of scoped grants.
//! - **audit writer** ([`crate::sys::audit`]): appends the audit records the sessions
//!   make (starts, approvals, decisions, refusals by the owner's policy), chained and
//!   rotated, from a bounded queue the hub never waits on.
//! - **signals**: SIGINT/SIGTERM (stop) and SIGHUP (read `policy.toml` again, on a
//!   worker) from signal-hook's iterator thread.
//! - **bot poller / bot sender** ([`crate::channels::runner`]): per Telegram bot; the
//!   chats' side is [`crate::channels::chats`], called from the hub, which also ticks it
//!   once a second while a chat has a turn running or a reply to show.
//!
//! The hub `select!`s over its inputs and never blocks on I/O. When the writer's queue is
//! full (the relay reads slower than the agents write), the hub stops taking the
//! children's output until the writer has room: their pipes fill and the CLIs wait, so
//! a stalled relay costs time, never events. Every event
//! for the browser goes through [`Hub::emit`], which applies reliable delivery: durable
//! events get a `node_seq` and wait in the [`Outbox`] until the relay acks them.
//!
//! Here: the state, the main loop and the dispatch of every input. Beside it:
//! [`connection`] (the link coming and going, heartbeats), [`delivery`] (events out,
//! the outbox, the ack window), [`services`] (requests the workers answer), [`sessions`]
//! (the session table; it feeds the providers and applies their effects, and applies
//! the owner's policy), [`permissions`], [`grants`], [`timer`], [`worker`]. Every event is a typed
//! [`crate::protocol::events::SessionEvent`], serialized only where it becomes a frame.

mod connection;
mod delivery;
pub mod grants;
pub mod permissions;
mod services;
pub mod sessions;
pub mod timer;
pub mod worker;

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, select};
use serde_json::{Map, Value};

use crate::hub::sessions::{Sessions, Settings};
use crate::hub::timer::Timer;
use crate::hub::worker::{Work, Workers};
use crate::protocol::commands::{Command, Kind};
use crate::protocol::events::{Event, SessionEvent};
use crate::relay::backoff::Backoff;
use crate::relay::dedupe::Dedupe;
use crate::relay::envelope::Incoming;
use crate::relay::link::{Down, LinkControl, LinkEvent, Outbound, Target};
use crate::relay::outbox::Outbox;
use crate::sys::child::ChildEvent;
use crate::sys::saver::Saver;
use crate::sys::secret::Secret;
use crate::sys::timefmt::now_ms;

/// The signal that makes the daemon read its policy again.
const SIGHUP: i32 = signal_hook::consts::SIGHUP;

/// Commands remembered for de-duplication.
pub const DEDUPE_IDS: usize = 1000;
/// Extra silence tolerated beyond two heartbeat intervals before a link counts as dead.
pub const DEAD_GRACE: Duration = Duration::from_secs(20);
/// How long shutdown waits for the state files still being written.
const SAVER_WAIT: Duration = Duration::from_secs(2);
/// How long shutdown waits for the relay to answer our close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Everything shutdown waits for must be done by then (the promise is exit within 5 s).
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(4600);

/// What the main loop does after one input.
enum Step {
    Go,
    Stop,
    Signal(i32),
}

/// Frames that may wait for a blocked writer before the link counts as dead.
const MAX_PENDING: usize = 4096;
/// Bytes of durable events sent but not yet acknowledged, on a relay that acks, beyond
/// which the hub waits for acks before taking more agent output. Bounds memory (the
/// outbox holds what is in flight) and lets the relay set the pace.
pub const ACK_WINDOW: usize = 512 << 10;
/// A relay that acked before but has not for this long while the window is full is taken
/// to have stopped acking: the window is dropped for the rest of the connection.
const ACK_STALL: Duration = Duration::from_secs(30);

/// Timer ticks the hub schedules for itself.
#[derive(Debug)]
pub enum Tick {
    Heartbeat {
        conn: u64,
    },
    Reconnect {
        conn: u64,
    },
    /// A tool approval's time is up.
    Permission {
        request_id: String,
    },
    /// Re-run a crashed turn.
    Retry {
        session: String,
    },
    /// Is this session's agent idle long enough to stop?
    IdleCheck {
        session: String,
    },
    /// A timer a session's provider armed ([`crate::providers::Effect::After`]).
    Wake {
        session: String,
        wake: crate::providers::Wake,
    },
    /// The chat channels' second: streamed replies edited, typing indicators renewed.
    Channels,
    /// A scoped grant's time is up.
    GrantEnds,
}

enum LinkState {
    /// Waiting for a reconnect tick.
    Down,
    Connecting {
        conn: u64,
    },
    Up {
        conn: u64,
        writer: Sender<Outbound>,
        control: LinkControl,
        since: Instant,
        last_rx: Instant,
    },
}

/// What the hub needs of the configuration, built by [`crate::daemon`].
#[derive(Debug, Clone)]
pub struct Options {
    pub heartbeat: Duration,
    /// Bytes of durable events kept for the relay to acknowledge.
    pub outbox_max: usize,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub config_dir: std::path::PathBuf,
    /// Default working directory for sessions.
    pub cwd: std::path::PathBuf,
    pub model: Option<String>,
    pub claude_path: Option<std::path::PathBuf>,
    pub codex_path: Option<std::path::PathBuf>,
    /// `None` waits forever.
    pub permission_timeout: Option<Duration>,
    pub turn_retry_limit: u32,
    pub turn_retry_backoff: Duration,
    /// `CLAUDE_CODE_ENTRYPOINT` for Claude children; `None` leaves it unset.
    pub claude_entrypoint: Option<String>,
    /// Hosts attachments may be downloaded from (https only), and the TLS to use.
    pub attachment_hosts: Vec<String>,
    pub http_tls: ureq::tls::TlsConfig,
    /// Idle stop, the cap on live agents, the memory guard.
    pub limits: crate::hub::sessions::Limits,
    /// The owner's policy, read at start (`<config dir>/policy.toml` unless configured
    /// elsewhere), and where it is read again on SIGHUP.
    pub policy: crate::policy::Policy,
    pub policy_file: std::path::PathBuf,
    /// How long a chat's "Allow for 1 h" grant lasts.
    pub grant_for: Duration,
}

/// How the hub's run ended (the command line chooses the exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A signal, or every input closed: a clean stop.
    Stopped,
    /// The relay refused this node's token: pairing again is the way out.
    TokenRejected,
}

/// The daemon's state.
pub struct Hub {
    target: Target,
    token: Secret,
    heartbeat: Duration,
    link_tx: Sender<LinkEvent>,
    timer: Timer<Tick>,
    state: LinkState,
    conn_seq: u64,
    outbox: Outbox,
    dedupe: Dedupe,
    backoff: Backoff,
    exit: Option<Outcome>,
    /// What the run state file says of the link: up, since when, the last error.
    link_record: (bool, u64, Option<String>),
    sessions: Sessions,
    /// Text frames produced in this step, handed to the writer in one batch.
    outq: Vec<String>,
    /// The relay of this connection acks (so the ack window applies), and when it last did.
    acks_seen: bool,
    last_ack: Instant,
    workers: Workers,
    /// Writes the run state (and, through the sessions and channels, their files).
    saver: Saver,
    home: Option<std::path::PathBuf>,
    /// Where each provider keeps its sessions.
    history_dirs: crate::node::history::Dirs,
    reads: crate::node::reads::Reads,
    config_dir: std::path::PathBuf,
    claude_entrypoint: Option<String>,
    default_cwd: std::path::PathBuf,
    /// The chat channels (Telegram bots), when any runs.
    channels: Option<crate::channels::chats::Channels>,
    /// A [`Tick::Channels`] is scheduled.
    channel_tick: bool,
    /// What the capability probes found, once probed.
    probed: Option<crate::node::capabilities::Probed>,
    /// Where the agents' CLIs are configured.
    cli_paths: crate::node::capabilities::Paths,
    /// Trace ids of `capabilities.get` requests waiting for a running probe.
    probe_waiting: Option<Vec<Option<Value>>>,
    /// Where the owner's policy is read again on SIGHUP.
    policy_file: std::path::PathBuf,
}

/// The hub's inputs, created by [`crate::daemon`].
pub struct Inputs {
    pub link_rx: Receiver<LinkEvent>,
    pub child_rx: Receiver<ChildEvent>,
    pub work_rx: Receiver<Work>,
    pub tick_rx: Receiver<Tick>,
    pub signal_rx: Receiver<i32>,
    /// Log lines to forward as `node.log` (a never-ready channel when that is off).
    pub log_rx: Receiver<crate::sys::logging::Forwarded>,
    /// News from the chat channels' threads.
    pub channel_rx: Receiver<crate::channels::runner::ChannelEvent>,
}

/// Where the hub's threads send their news, and the threads it hands work to, created
/// by [`crate::daemon`] (the receiving ends are the [`Inputs`]).
pub struct Wiring {
    pub link_tx: Sender<LinkEvent>,
    pub timer: Timer<Tick>,
    pub child_tx: Sender<ChildEvent>,
    pub work_tx: Sender<Work>,
    pub saver: Saver,
    /// The audit log's writer.
    pub audit: crate::sys::audit::Audit,
}

impl Hub {
    pub fn new(cfg: &Options, token: Secret, target: Target, wiring: Wiring) -> Hub {
        let Wiring {
            link_tx,
            timer,
            child_tx,
            work_tx,
            saver,
            audit,
        } = wiring;
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        let claude_dir = crate::providers::claude::transcript::claude_dir(
            home.as_deref(),
            std::env::var_os("CLAUDE_CONFIG_DIR")
                .map(std::path::PathBuf::from)
                .as_deref(),
        );
        let settings = Settings {
            default_cwd: cfg.cwd.clone(),
            default_model: cfg.model.clone(),
            claude_path: cfg.claude_path.clone(),
            codex_path: cfg.codex_path.clone(),
            acp_agents: crate::providers::acp::agents(&cfg.config_dir, &|k| std::env::var(k).ok()),
            home: home.clone(),
            permission_timeout: cfg.permission_timeout,
            retry_limit: cfg.turn_retry_limit,
            retry_backoff: cfg.turn_retry_backoff,
            entrypoint: cfg.claude_entrypoint.clone(),
            claude_dir: claude_dir.clone(),
            config_dir: cfg.config_dir.clone(),
            media: crate::node::media::Settings {
                allowed_hosts: cfg.attachment_hosts.clone(),
                tls: cfg.http_tls.clone(),
            },
            limits: cfg.limits.clone(),
            grant_for: cfg.grant_for,
        };
        let workers = Workers::new(work_tx);
        Hub {
            target,
            token,
            heartbeat: cfg.heartbeat,
            link_tx,
            sessions: Sessions::new(
                settings,
                timer.clone(),
                child_tx,
                workers.clone(),
                saver.clone(),
                cfg.policy.clone(),
                audit,
            ),
            saver,
            workers,
            history_dirs: crate::node::history::Dirs {
                index: Some(cfg.config_dir.join("history-index.json")),
                ..crate::node::history::Dirs::from_env(home.as_deref())
            },
            home,
            reads: crate::node::reads::Reads::open(&cfg.config_dir, now_ms()),
            config_dir: cfg.config_dir.clone(),
            claude_entrypoint: cfg.claude_entrypoint.clone(),
            default_cwd: cfg.cwd.clone(),
            probed: None,
            channels: None,
            channel_tick: false,
            cli_paths: crate::node::capabilities::Paths {
                claude: cfg.claude_path.clone(),
                codex: cfg.codex_path.clone(),
                acp: crate::providers::acp::agents(&cfg.config_dir, &|k| std::env::var(k).ok()),
            },
            probe_waiting: None,
            policy_file: cfg.policy_file.clone(),
            outq: Vec::new(),
            acks_seen: false,
            last_ack: Instant::now(),
            timer,
            state: LinkState::Down,
            conn_seq: 0,
            outbox: Outbox::new(cfg.outbox_max),
            dedupe: Dedupe::new(DEDUPE_IDS),
            backoff: Backoff::new(cfg.reconnect_min, cfg.reconnect_max),
            exit: None,
            link_record: (false, now_ms(), None),
        }
    }

    /// Run until a signal or a fatal link error.
    pub fn run(mut self, inputs: Inputs) -> Outcome {
        let policy = &self.sessions.policy;
        self.sessions.audit(
            "node_start",
            serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "policy_file": policy.file,
                               "policy": policy.to_json()}),
        );
        self.record_state(false, None);
        self.connect();
        loop {
            let step = if self.paused() {
                self.wait_while_paused(&inputs)
            } else {
                self.wait_for_input(&inputs)
            };
            match step {
                Step::Go => {}
                Step::Stop => break,
                Step::Signal(SIGHUP) => self.reload_policy(),
                Step::Signal(sig) => {
                    crate::log_info!("signal {sig} received; shutting down");
                    self.shutdown(&inputs);
                    return Outcome::Stopped;
                }
            }
            crate::sys::logging::set_context(None, None);
            self.sync_grants();
            self.flush_out();
            if self.sessions.take_agents_changed() {
                self.write_state();
                if let Some(ch) = self.channels.as_mut() {
                    ch.set_agent_states(self.sessions.agent_states());
                }
            }
            if let Some(outcome) = self.exit {
                self.shutdown(&inputs);
                return outcome;
            }
        }
        Outcome::Stopped
    }

    /// One input, from any source.
    fn wait_for_input(&mut self, inputs: &Inputs) -> Step {
        select! {
            recv(inputs.link_rx) -> ev => match ev {
                Ok(ev) => self.on_link(ev),
                Err(_) => return Step::Stop,
            },
            recv(inputs.child_rx) -> ev => match ev {
                Ok(ev) => self.on_child(ev),
                Err(_) => return Step::Stop,
            },
            recv(inputs.tick_rx) -> t => match t {
                Ok(t) => self.on_tick(t),
                Err(_) => return Step::Stop,
            },
            recv(inputs.work_rx) -> w => match w {
                Ok(w) => self.on_work(w),
                Err(_) => return Step::Stop,
            },
            recv(inputs.log_rx) -> line => {
                if let Ok(line) = line {
                    self.forward_log(line);
                }
            },
            recv(inputs.channel_rx) -> ev => {
                if let Ok(ev) = ev {
                    self.on_channel(ev);
                }
            },
            recv(inputs.signal_rx) -> sig => return Step::Signal(sig.unwrap_or(0)),
        }
        Step::Go
    }

    /// Paused: wait for room in the writer (or for acks), or for anything but the
    /// agents' output. Not reading the children makes their pipes fill and the CLIs
    /// wait: the relay's pace reaches the agent, and nothing is dropped (PROTOCOL §2).
    fn wait_while_paused(&mut self, inputs: &Inputs) -> Step {
        let LinkState::Up { writer, .. } = &self.state else {
            return Step::Go;
        };
        let writer = writer.clone();
        let stall = crossbeam_channel::at(self.last_ack + ACK_STALL);
        let mut sel = crossbeam_channel::Select::new();
        // Room in the writer matters only when frames wait for it.
        let w = if self.outq.is_empty() {
            usize::MAX
        } else {
            sel.send(&writer)
        };
        let acks = if self.window_full() {
            sel.recv(&stall)
        } else {
            usize::MAX
        };
        let link = sel.recv(&inputs.link_rx);
        let tick = sel.recv(&inputs.tick_rx);
        let work = sel.recv(&inputs.work_rx);
        let log = sel.recv(&inputs.log_rx);
        let channel = sel.recv(&inputs.channel_rx);
        let signal = sel.recv(&inputs.signal_rx);
        let ready = sel.ready();
        drop(sel);
        if ready == w {
            return Step::Go; // flush_out sends what waits
        }
        if ready == acks {
            crate::log_warn!(
                "the relay has not acknowledged events for {} s; no longer waiting for its acks on this connection",
                ACK_STALL.as_secs()
            );
            self.acks_seen = false;
            return Step::Go;
        }
        if ready == link {
            match inputs.link_rx.try_recv() {
                Ok(ev) => self.on_link(ev),
                Err(TryRecvError::Disconnected) => return Step::Stop,
                Err(TryRecvError::Empty) => {}
            }
        } else if ready == tick {
            match inputs.tick_rx.try_recv() {
                Ok(t) => self.on_tick(t),
                Err(TryRecvError::Disconnected) => return Step::Stop,
                Err(TryRecvError::Empty) => {}
            }
        } else if ready == work {
            match inputs.work_rx.try_recv() {
                Ok(w) => self.on_work(w),
                Err(TryRecvError::Disconnected) => return Step::Stop,
                Err(TryRecvError::Empty) => {}
            }
        } else if ready == log {
            if let Ok(line) = inputs.log_rx.try_recv() {
                self.forward_log(line);
            }
        } else if ready == channel {
            if let Ok(ev) = inputs.channel_rx.try_recv() {
                self.on_channel(ev);
            }
        } else if ready == signal
            && let Ok(sig) = inputs.signal_rx.try_recv()
        {
            return Step::Signal(sig);
        }
        if self.outq.len() > MAX_PENDING {
            // Only replies and notices pile up here (the agents wait); this many means
            // the relay is gone without saying so. Durable events are in the outbox.
            self.on_down(Down::Lost(format!(
                "the relay has not read for a long time ({} frames waiting)",
                self.outq.len()
            )));
        }
        Step::Go
    }

    fn on_child(&mut self, ev: ChildEvent) {
        let mut out = Vec::new();
        self.sessions.on_child(ev, &mut out);
        self.emit_all(out);
    }

    /// Run these chat channels from now on.
    pub fn set_channels(&mut self, mut channels: crate::channels::chats::Channels) {
        channels.set_grant_for(self.sessions.settings.grant_for);
        channels.set_policy(self.sessions.policy.clone());
        self.channels = Some(channels);
    }

    /// SIGHUP: read `policy.toml` again, on a worker; a broken file keeps the policy in
    /// force.
    fn reload_policy(&mut self) {
        crate::log_info!("SIGHUP: reading {} again", crate::policy::FILE);
        let path = self.policy_file.clone();
        let home = self.home.clone();
        let here = self.workers.run_or_here("policy", move || {
            Work::Policy(crate::policy::load(&path, home.as_deref()))
        });
        if let Some(w) = here {
            self.on_work(w);
        }
    }

    /// Tell the chats about the grants in force when they changed (before they see the
    /// decision that made one).
    fn sync_grants(&mut self) {
        if let Some(grants) = self.sessions.take_grants_changed()
            && let Some(ch) = self.channels.as_mut()
        {
            ch.set_grants(grants);
        }
    }

    /// News from a chat channel: the session commands it asks for run like the
    /// browser's.
    fn on_channel(&mut self, ev: crate::channels::runner::ChannelEvent) {
        let cmds = match self.channels.as_mut() {
            Some(ch) => ch.on_event(ev),
            None => return,
        };
        for cmd in cmds {
            self.handle_command(cmd);
        }
        self.schedule_channel_tick();
    }

    /// Tick the chat channels in a second if they have work and no tick is due yet
    /// (an idle daemon schedules none).
    fn schedule_channel_tick(&mut self) {
        if !self.channel_tick && self.channels.as_ref().is_some_and(|c| c.wants_tick()) {
            self.channel_tick = true;
            self.timer
                .at(Instant::now() + Duration::from_secs(1), Tick::Channels);
        }
    }

    fn on_tick(&mut self, tick: Tick) {
        match tick {
            Tick::Heartbeat { conn } => {
                let dead_after = self.heartbeat * 2 + DEAD_GRACE;
                let silent = match &self.state {
                    LinkState::Up {
                        conn: c, last_rx, ..
                    } if *c == conn => last_rx.elapsed(),
                    _ => return,
                };
                if silent > dead_after {
                    self.on_down(Down::Lost(format!(
                        "no frame from the relay for {} s",
                        silent.as_secs()
                    )));
                    return;
                }
                self.send_heartbeat();
                self.send(Outbound::Ping);
                self.timer
                    .at(Instant::now() + self.heartbeat, Tick::Heartbeat { conn });
            }
            Tick::Reconnect { conn } => {
                if matches!(self.state, LinkState::Down) && conn == self.conn_seq {
                    self.connect();
                }
            }
            Tick::Channels => {
                self.channel_tick = false;
                if let Some(ch) = self.channels.as_mut() {
                    ch.on_tick();
                }
                self.schedule_channel_tick();
            }
            other => {
                let mut out = Vec::new();
                self.sessions.on_tick(other, &mut out);
                self.emit_all(out);
            }
        }
    }

    fn on_frame(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Registered => crate::log_info!("registered with the relay"),
            Incoming::HeartbeatAck => {}
            Incoming::Ack { up_to } => {
                self.acks_seen = true;
                self.last_ack = Instant::now();
                let n = self.outbox.ack(up_to);
                crate::log_trace!("relay stored events up to {up_to} ({n} released)");
            }
            Incoming::Error { message } => crate::log_warn!("relay error: {message}"),
            Incoming::Other { kind } => crate::log_debug!("ignoring relay frame of type {kind:?}"),
            Incoming::Command { cmd_id, payload } => {
                if let Some(id) = &cmd_id
                    && !self.dedupe.first_time(id)
                {
                    crate::log_debug!("skipping repeated command {id}");
                    return;
                }
                self.on_command(payload);
            }
        }
    }

    /// Dispatch one browser command (PROTOCOL §3).
    fn on_command(&mut self, cmd: Map<String, Value>) {
        self.handle_command(crate::protocol::commands::parse(cmd));
    }

    /// Run one typed command, from the browser or a chat channel.
    fn handle_command(&mut self, cmd: Command) {
        crate::sys::logging::set_context(
            cmd.trace_id.as_ref().and_then(Value::as_str),
            cmd.session_id.as_deref(),
        );
        crate::log_debug!("command {:?}", cmd.action);
        let mut out = Vec::new();
        let Some(cmd) = self.sessions.command(cmd, &mut out) else {
            self.sync_grants();
            self.emit_all(out);
            return;
        };
        let Some(cmd) = self.service(cmd) else {
            return;
        };
        let reply = match &cmd.kind {
            Kind::Ping => SessionEvent::reply(None, Event::Pong),
            other => {
                // A code a program can match: the command was malformed, or is not one
                // this node knows.
                let (code, message) = match other {
                    Kind::Invalid(m) => ("invalid_command", m.clone()),
                    _ if cmd.action.is_empty() => {
                        ("invalid_command", "the command has no action".to_string())
                    }
                    _ => ("unknown_action", format!("unknown action: {}", cmd.action)),
                };
                let mut e = SessionEvent::reply(None, Event::error(code, message));
                e.session_id.clone_from(&cmd.session_id);
                e
            }
        };
        self.emit(traced(reply, &cmd.trace_id));
    }

    fn on_work(&mut self, w: Work) {
        let mut out = Vec::new();
        let rest = self.sessions.on_work(w, &mut out);
        self.emit_all(out);
        match rest {
            None => {}
            Some(Work::Reply(v)) => self.emit(v),
            Some(Work::Catalogue(mut probed)) => {
                self.probed = Some(probed.clone());
                if let Some(c) = self.sessions.catalogue() {
                    probed.claude_commands = c.clone();
                }
                let available = crate::node::capabilities::available(&self.cli_paths);
                for t in self.probe_waiting.take().unwrap_or_default() {
                    self.emit(traced(
                        crate::node::capabilities::reply(
                            available.clone(),
                            &probed,
                            &self.sessions.policy,
                        ),
                        &t,
                    ));
                }
            }
            Some(Work::Policy(Ok(policy))) => {
                crate::log_info!(
                    "{} read again; now in force:\n{}",
                    crate::policy::FILE,
                    policy.describe().trim_end()
                );
                for w in policy.warnings() {
                    crate::log_warn!("policy: {w}");
                }
                let mut out = Vec::new();
                self.sessions.set_policy(policy, &mut out);
                if let Some(ch) = self.channels.as_mut() {
                    ch.set_policy(self.sessions.policy.clone());
                }
                self.emit_all(out);
            }
            Some(Work::Policy(Err(e))) => {
                crate::log_error!("{e}; the policy in force stays as it was");
                self.sessions.audit(
                    "policy_rejected",
                    serde_json::json!({"error": e.to_string()}),
                );
            }
            // The sessions' own answers were handled above.
            Some(_) => {}
        }
    }

    /// Stop every child (deny what they wait for), close the link politely, and wait
    /// for both, all within the shutdown budget.
    fn shutdown(&mut self, inputs: &Inputs) {
        let started = Instant::now();
        let mut out = Vec::new();
        let mut children = self.sessions.shutdown(&mut out);
        self.emit_all(out);
        self.flush_out();
        let state = std::mem::replace(&mut self.state, LinkState::Down);
        let mut link = None;
        if let LinkState::Up {
            conn,
            writer,
            control,
            ..
        } = state
        {
            let _ = writer.send_timeout(Outbound::Close, Duration::from_millis(200));
            link = Some((conn, control));
        }
        let mut link_open = link.is_some();
        let close_deadline = started + CLOSE_WAIT;
        let deadline = started + SHUTDOWN_BUDGET;
        while children > 0 || link_open {
            let until = if children == 0 {
                close_deadline
            } else {
                deadline
            };
            select! {
                recv(inputs.child_rx) -> ev => match ev {
                    Ok(ChildEvent::Exited { .. }) => children = children.saturating_sub(1),
                    Ok(_) => {}
                    Err(_) => children = 0,
                },
                recv(inputs.link_rx) -> ev => match ev {
                    Ok(LinkEvent::Down { conn, .. }) if link.as_ref().is_some_and(|(c, _)| *c == conn) => {
                        link_open = false;
                    }
                    Ok(_) => {}
                    Err(_) => link_open = false,
                },
                recv(crossbeam_channel::at(until)) -> _ => {
                    let now = Instant::now();
                    if now >= deadline || (children == 0 && now >= close_deadline) {
                        break;
                    }
                },
            }
        }
        if let Some((_, control)) = link {
            control.kill();
        }
        if children > 0 {
            crate::log_warn!("{children} agent process(es) did not stop in time");
        }
        if !self.saver.flush(SAVER_WAIT) {
            crate::log_warn!("state files still being written at exit");
        }
    }
}

/// `payload` with the command's `trace_id`, when it had one.
fn traced(mut payload: SessionEvent, trace: &Option<Value>) -> SessionEvent {
    if trace.is_some() {
        payload.trace_id.clone_from(trace);
    }
    payload
}
