//! Short-lived worker threads for requests that touch the disk or the network (history,
//! the directory picker, the capability probe, a turn's images and attachments, the live
//! sessions' transcripts), so the
//! hub never blocks on them. Each worker computes one [`Work`] result and sends it back on
//! the hub's work channel. At most [`MAX_WORKERS`] run at once; further jobs wait in a
//! queue of [`QUEUE`] that the running workers drain before they leave. Only when that is
//! full too is a request refused (and the caller answers with an error).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};

use crate::protocol::events::SessionEvent;

pub const MAX_WORKERS: usize = 8;
/// Jobs waiting for a worker.
pub const QUEUE: usize = 64;
/// Bytes the jobs waiting and running may hold (a turn's images can be 32 MiB).
pub const JOB_BYTES: usize = 128 << 20;
static JOB_BYTES_HELD: crate::sys::budget::Budget = crate::sys::budget::Budget::new(JOB_BYTES);

/// A worker's result, for the hub.
#[derive(Debug)]
pub enum Work {
    /// A request-scoped reply to emit as is.
    Reply(SessionEvent),
    /// A turn's media are saved: append the note, emit the notices, let the turn run.
    Prepared {
        session: String,
        turn: u64,
        prepared: crate::node::media::Prepared,
    },
    /// Transcript work for a Claude Code session (job `job`): what a resume needs, or
    /// what the transcript gained for the replay guard.
    Transcript {
        session: String,
        job: u64,
        done: TranscriptDone,
    },
    /// A provider's job is done ([`crate::providers::Job`]): its answer wakes it.
    Wake {
        session: String,
        wake: crate::providers::Wake,
    },
    /// What the capability probes found (empty lists where they failed).
    Catalogue(crate::node::capabilities::Probed),
    /// `policy.toml` read again (SIGHUP).
    Policy(Result<crate::policy::Policy, crate::policy::PolicyError>),
}

/// The result of a [`Work::Transcript`] job.
#[derive(Debug)]
pub enum TranscriptDone {
    Resume(crate::providers::claude::transcript::ResumePlan),
    Read(crate::providers::claude::transcript::Delta),
    /// The prompt an edit with "restore code" rewinds to, if the transcript has one.
    RestorePoint(Option<String>),
}

type Job = Box<dyn FnOnce() -> Work + Send + 'static>;

/// The hub's handle for starting workers.
#[derive(Clone)]
pub struct Workers {
    tx: Sender<Work>,
    busy: Arc<AtomicUsize>,
    queue_tx: Sender<Job>,
    queue_rx: Receiver<Job>,
}

impl Workers {
    pub fn new(tx: Sender<Work>) -> Workers {
        let (queue_tx, queue_rx) = crossbeam_channel::bounded(QUEUE);
        Workers {
            tx,
            busy: Arc::new(AtomicUsize::new(0)),
            queue_tx,
            queue_rx,
        }
    }

    /// Run `job` on a worker thread: a new one while fewer than [`MAX_WORKERS`] run,
    /// else after the jobs queued before it. False (and nothing runs) only when the
    /// queue is full too.
    pub fn run(&self, name: &str, job: impl FnOnce() -> Work + Send + 'static) -> bool {
        self.submit(name, Box::new(job)).is_ok()
    }

    /// [`Workers::run`] for work that must happen even when no worker can take it: then
    /// it runs here, on the caller, and its result is returned for the caller to handle
    /// as if it had come back from a worker.
    pub fn run_or_here(
        &self,
        name: &str,
        job: impl FnOnce() -> Work + Send + 'static,
    ) -> Option<Work> {
        let job = self.submit(name, Box::new(job)).err()?;
        crate::log_warn!("every worker is busy; {name} runs on the hub");
        Some(job())
    }

    /// Hand `job` to a worker, or give it back when none can take it.
    fn submit(&self, name: &str, job: Job) -> Result<(), Job> {
        if self.busy.fetch_add(1, Ordering::AcqRel) >= MAX_WORKERS {
            self.busy.fetch_sub(1, Ordering::AcqRel);
            return self.queue_tx.try_send(job).map_err(|e| e.into_inner());
        }
        // Through a one-slot channel, so the job can be taken back if no thread starts.
        let (slot_tx, slot_rx) = crossbeam_channel::bounded(1);
        let _ = slot_tx.send(job);
        let back = slot_rx.clone();
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("work-{name}"))
            .spawn(move || {
                if let Ok(job) = slot_rx.recv() {
                    this.serve(job);
                }
            });
        if spawned.is_err() {
            self.busy.fetch_sub(1, Ordering::AcqRel);
            return back.try_recv().map_or(Ok(()), Err);
        }
        Ok(())
    }

    /// [`Workers::run`] for a job that holds `bytes` of data (a turn's images): refused
    /// too while the jobs waiting and running hold [`JOB_BYTES`] already.
    pub fn run_sized(
        &self,
        name: &str,
        bytes: usize,
        job: impl FnOnce() -> Work + Send + 'static,
    ) -> bool {
        let Some(permit) = JOB_BYTES_HELD.try_acquire(bytes) else {
            crate::log_warn!(
                "the workers hold {} MiB of data already; a {name} job of {} MiB is refused",
                JOB_BYTES_HELD.used() >> 20,
                bytes >> 20
            );
            return false;
        };
        self.run(name, move || {
            let w = job();
            drop(permit);
            w
        })
    }

    /// Run `job`, then whatever is queued, then leave.
    fn serve(&self, first: Job) {
        let mut next = Some(first);
        loop {
            while let Some(job) = next.take().or_else(|| self.queue_rx.try_recv().ok()) {
                let result = job();
                let _ = self.tx.send(result);
            }
            self.busy.fetch_sub(1, Ordering::AcqRel);
            // A job queued just before we left would wait for the next `run`: take it
            // back if there is room.
            if self.queue_rx.is_empty() {
                return;
            }
            if self.busy.fetch_add(1, Ordering::AcqRel) >= MAX_WORKERS {
                // The others are running and will drain it.
                self.busy.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::events::Event;
    use serde_json::Value;
    use std::time::Duration;

    /// A reply that carries `i` (as its trace id).
    fn n(i: u64) -> SessionEvent {
        SessionEvent::reply(Some(&Value::from(i)), Event::Pong)
    }

    #[test]
    fn jobs_beyond_the_workers_wait_in_the_queue() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let w = Workers::new(tx);
        let total = MAX_WORKERS + QUEUE;
        for i in 0..total {
            assert!(
                w.run("t", move || {
                    std::thread::sleep(Duration::from_millis(20));
                    Work::Reply(n(i as u64))
                }),
                "job {i} refused"
            );
        }
        assert!(
            !w.run("t", || Work::Reply(n(0))),
            "refused when the queue is full"
        );
        // Work that must happen runs on the caller then, its result handed back.
        let here = std::thread::current().id();
        let ran = w.run_or_here("t", move || {
            Work::Reply(n(u64::from(std::thread::current().id() == here)))
        });
        assert!(
            matches!(ran, Some(Work::Reply(ref e)) if e.trace_id == Some(Value::from(1))),
            "{ran:?}"
        );
        let mut got: Vec<u64> = (0..total)
            .map(|_| match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Work::Reply(e)) => e.trace_id.and_then(|t| t.as_u64()).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..total as u64).collect::<Vec<_>>());
        // All workers leave; the next job starts a fresh one.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while w.busy.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(w.busy.load(Ordering::Acquire), 0);
        assert!(w.run("t", || Work::Reply(n(7))));
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(5)),
            Ok(Work::Reply(_))
        ));
    }
}
