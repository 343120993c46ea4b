//! Short-lived worker threads for requests that touch the disk or the network (history,
//! the directory picker, the capability probe, a turn's images and attachments), so the
//! hub never blocks on them. Each worker computes one [`Work`] result and sends it back on
//! the hub's work channel. At most [`MAX_WORKERS`] run at once; beyond that a request is
//! refused and the caller answers with an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::Sender;
use serde_json::Value;

pub const MAX_WORKERS: usize = 8;

/// A worker's result, for the hub.
#[derive(Debug)]
pub enum Work {
    /// A request-scoped reply to emit as is.
    Reply(Value),
    /// A turn's media are saved: append the note, emit the notices, let the turn run.
    Prepared {
        session: String,
        turn: u64,
        prepared: crate::media::Prepared,
    },
    /// The command catalogue from a probe child (`None` when the probe failed).
    Catalogue(Option<Vec<Value>>),
    /// Nothing to report (fire-and-forget work such as saving a sidecar).
    Done,
}

/// The hub's handle for starting workers.
#[derive(Clone)]
pub struct Workers {
    tx: Sender<Work>,
    busy: Arc<AtomicUsize>,
}

impl Workers {
    pub fn new(tx: Sender<Work>) -> Workers {
        Workers {
            tx,
            busy: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Run `job` on a new thread; false (and nothing runs) when too many are busy.
    pub fn run(&self, name: &str, job: impl FnOnce() -> Work + Send + 'static) -> bool {
        if self.busy.fetch_add(1, Ordering::AcqRel) >= MAX_WORKERS {
            self.busy.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let tx = self.tx.clone();
        let busy = self.busy.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("work-{name}"))
            .spawn(move || {
                let result = job();
                busy.fetch_sub(1, Ordering::AcqRel);
                if !matches!(result, Work::Done) {
                    let _ = tx.send(result);
                }
            });
        if spawned.is_err() {
            self.busy.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }
}
