//! The running daemon: builds the channels, starts the timer and signal threads, and
//! hands everything to the [`crate::hub::Hub`], which owns the state from then on.

use crossbeam_channel::{Receiver, bounded};

use crate::hub::timer::Timer;
use crate::hub::{Hub, Inputs, Outcome, Wiring};
use crate::relay::link::{self, Target};
use crate::sys::secret::Secret;

/// Bound of the link → hub queue; a full queue makes the reader wait (backpressure).
const LINK_QUEUE: usize = 1024;
const TICK_QUEUE: usize = 256;
/// Bound of the children → hub queue; a full queue makes a flooding child wait.
const CHILD_QUEUE: usize = 2;
/// Bound of the chat channels → hub queue (a bot's poller waits when it is full).
const CHANNEL_QUEUE: usize = 256;
/// Bound of the logger → hub queue of `node.log` lines (a full queue drops lines).
const LOG_QUEUE: usize = 64;
/// Bound of the workers → hub queue (at most a few workers run at once).
const WORK_QUEUE: usize = 16;
/// Rotated audit files kept beside `audit.jsonl`.
const AUDIT_FILES: usize = 5;
/// How long the exit waits for the audit log's last records.
const AUDIT_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// Catch SIGINT, SIGTERM and SIGHUP from now on; each arrives as a number on the channel,
/// delivered by a small thread blocked in signal-hook's iterator.
pub fn signal_channel() -> Result<Receiver<i32>, Error> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let (signal_tx, signal_rx) = bounded(4);
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(Error::Signals)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if signal_tx.send(sig).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| Error::Thread("signal", e))?;
    Ok(signal_rx)
}

/// What a running node needs, built by [`crate::cli`] from its configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Relay base URL, `http(s)://host[:port][/path]`.
    pub bridge_url: String,
    pub node_name: String,
    pub node_token: Secret,
    /// Extra trusted CA certificates (PEM) for the relay link.
    pub ca_file: Option<std::path::PathBuf>,
    /// Forward info-and-above log lines to the relay as `node.log` while connected.
    pub log_forward: bool,
    /// Bytes of `audit.jsonl` before it rotates.
    pub audit_max: u64,
    pub hub: crate::hub::Options,
}

/// Why the daemon could not start.
#[derive(Debug)]
pub enum Error {
    /// The relay link's TLS could not be set up (a bad CA file): a configuration error.
    Tls(crate::relay::tls::TlsError),
    /// The signal handlers could not be installed.
    Signals(std::io::Error),
    /// A thread the daemon needs could not be started.
    Thread(&'static str, std::io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Tls(e) => write!(f, "{e}"),
            Error::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            Error::Thread(what, e) => write!(f, "cannot start the {what} thread: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Tls(e) => Some(e),
            Error::Signals(e) | Error::Thread(_, e) => Some(e),
        }
    }
}

/// Run until a shutdown signal or a token rejection.
pub fn run(cfg: &Settings, signal_rx: Receiver<i32>) -> Result<Outcome, Error> {
    let tls = crate::relay::tls::client_config(cfg.ca_file.as_deref()).map_err(Error::Tls)?;
    let (url, display) = link::socket_url(&cfg.bridge_url, cfg.node_token.expose());
    crate::sys::logging::add_secret(&url);
    let target = Target {
        url,
        display,
        tls,
        max_message: link::MAX_MESSAGE,
    };

    limit_malloc_arenas();
    hide_from_same_user();
    crate::sys::reaper::start_if_init();
    // Every agent child runs under a guard started from this very binary, so nothing it
    // starts outlives the daemon, even a SIGKILLed one. /proc/self/exe works even when
    // the file was replaced by an upgrade while running.
    let exe = std::path::PathBuf::from("/proc/self/exe");
    if exe.exists() {
        crate::sys::child::use_guard(exe);
    } else {
        crate::log_warn!(
            "/proc is not mounted: agent processes cannot be guarded and may outlive a killed daemon"
        );
    }
    let (link_tx, link_rx) = bounded(LINK_QUEUE);
    let (tick_tx, tick_rx) = bounded(TICK_QUEUE);
    let timer = Timer::spawn(tick_tx).map_err(|e| Error::Thread("timer", e))?;
    let saver = crate::sys::saver::Saver::new();
    crate::log_info!(
        "node {:?} starting (relay {}, config {})",
        cfg.node_name,
        cfg.bridge_url,
        cfg.hub.config_dir.display()
    );
    // Chat channels (validated already): their threads start now, feeding the hub. The
    // variables holding their tokens never reach an agent.
    let (channel_tx, channel_rx) = bounded(CHANNEL_QUEUE);
    let channel_cfgs = crate::channels::config::load(&cfg.hub.config_dir).unwrap_or_default();
    crate::sys::child::withhold_env(
        channel_cfgs
            .iter()
            .filter_map(|c| match &c.token {
                crate::channels::config::TokenSource::Env(v) => Some(v.clone()),
                crate::channels::config::TokenSource::File(_) => None,
            })
            .collect(),
    );
    let channels = crate::channels::chats::Channels::start(
        channel_cfgs,
        &cfg.hub.config_dir,
        &cfg.hub.http_tls,
        &|k| std::env::var(k).ok(),
        &channel_tx,
        saver.clone(),
    );
    let (child_tx, child_rx) = bounded(CHILD_QUEUE);
    let (work_tx, work_rx) = bounded(WORK_QUEUE);
    let log_rx = if cfg.log_forward {
        let (log_tx, log_rx) = bounded(LOG_QUEUE);
        crate::sys::logging::forward_to(Some(log_tx));
        log_rx
    } else {
        crossbeam_channel::never()
    };
    let audit = crate::sys::audit::Audit::start(crate::sys::audit::Config {
        path: cfg.hub.config_dir.join("audit.jsonl"),
        max_bytes: cfg.audit_max,
        keep: AUDIT_FILES,
    })
    .map_err(|e| Error::Thread("audit", e))?;
    let hub = Hub::new(
        &cfg.hub,
        cfg.node_token.clone(),
        target,
        Wiring {
            link_tx,
            timer,
            child_tx,
            work_tx,
            saver,
            audit: audit.clone(),
        },
    );
    let mut hub = hub;
    if !channels.is_empty() {
        hub.set_channels(channels);
    }
    let outcome = hub.run(Inputs {
        link_rx,
        child_rx,
        work_rx,
        tick_rx,
        signal_rx,
        log_rx,
        channel_rx,
    });
    if !audit.flush(AUDIT_WAIT) {
        crate::log_warn!("the audit log was still being written at exit");
    }
    Ok(outcome)
}

/// glibc gives each thread that allocates its own malloc arena, which multiplies resident
/// memory for a daemon with a handful of threads; two arenas are plenty here. (musl, used
/// by the static release builds, has no arenas.)
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tuning; called before the worker threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Agents run as the same user as the daemon: without this they could read the node
/// token and the bot tokens from `/proc/<daemon pid>/environ` or the daemon's memory.
/// Not dumpable, those files belong to root (no core dumps either; children are
/// dumpable again after their exec).
fn hide_from_same_user() {
    // SAFETY: prctl with valid arguments; it changes only this process's dumpable flag.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if r != 0 {
        crate::log_warn!(
            "cannot make the daemon non-dumpable: {}",
            std::io::Error::last_os_error()
        );
    }
}
