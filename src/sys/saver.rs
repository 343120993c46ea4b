//! The thread that writes the hub's small state files (the run state, the chat
//! channels' state, the per-session settings sidecars), so the hub never waits on the
//! disk, and in order: two saves of one file land as they were asked, never the older
//! last (as two racing worker threads could). Saves of one file still waiting when a
//! newer one comes are dropped for it. Thread: `saver`, started when a save comes and
//! gone after [`IDLE`] without one (an idle daemon keeps no thread for it), one at a
//! time, fed by a bounded channel of [`QUEUE`] saves; the hub flushes it at shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};

/// Saves waiting for the thread (each holds one small file's bytes).
pub const QUEUE: usize = 64;
/// The thread leaves after this long without a save.
pub const IDLE: Duration = Duration::from_secs(2);

type Write = Box<dyn FnOnce() + Send + 'static>;

enum Job {
    Save(PathBuf, Write),
    /// Answer once every save asked before is done.
    Flush(Sender<()>),
}

struct Shared {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    /// A thread serves the queue (at most one does).
    running: AtomicBool,
}

/// A handle to the saver (or, for tests, a saver that writes at once).
#[derive(Clone)]
pub struct Saver {
    shared: Option<Arc<Shared>>,
}

impl Saver {
    pub fn new() -> Saver {
        let (tx, rx) = bounded(QUEUE);
        Saver {
            shared: Some(Arc::new(Shared {
                tx,
                rx,
                running: AtomicBool::new(false),
            })),
        }
    }

    /// A saver without a thread: each save runs on the caller (unit tests).
    #[cfg(test)]
    pub fn inline() -> Saver {
        Saver { shared: None }
    }

    /// Write `path` with `write`, soon and in order. When the queue is full (the disk
    /// is far behind), the write runs here rather than being lost.
    pub fn save(&self, path: PathBuf, write: impl FnOnce() + Send + 'static) {
        let Some(sh) = &self.shared else {
            return write();
        };
        match sh.tx.try_send(Job::Save(path, Box::new(write))) {
            Ok(()) => wake(sh),
            Err(TrySendError::Full(Job::Save(path, write)))
            | Err(TrySendError::Disconnected(Job::Save(path, write))) => {
                crate::log_warn!(
                    "the state file writer is behind; saving {} on the caller",
                    path.display()
                );
                write();
            }
            Err(_) => {}
        }
    }

    /// Wait (at most `limit`) until every save asked so far is written: at shutdown.
    pub fn flush(&self, limit: Duration) -> bool {
        let Some(sh) = &self.shared else {
            return true;
        };
        let (done_tx, done_rx) = bounded(1);
        if sh.tx.send_timeout(Job::Flush(done_tx), limit).is_err() {
            return false;
        }
        wake(sh);
        done_rx.recv_timeout(limit).is_ok()
    }
}

impl Default for Saver {
    fn default() -> Saver {
        Saver::new()
    }
}

/// Make sure a thread serves the queue. If none can be started, the queue is written
/// out here, in order, rather than left.
fn wake(sh: &Arc<Shared>) {
    if sh.running.swap(true, Ordering::AcqRel) {
        return;
    }
    let s = sh.clone();
    let started = std::thread::Builder::new()
        .name("saver".into())
        .spawn(move || serve(&s));
    if let Err(e) = started {
        crate::log_warn!("cannot start the state file writer ({e}); saving on the caller");
        while let Ok(job) = sh.rx.try_recv() {
            run(vec![job]);
        }
        sh.running.store(false, Ordering::Release);
    }
}

/// Serve the queue until it has been idle for [`IDLE`].
fn serve(sh: &Shared) {
    loop {
        match sh.rx.recv_timeout(IDLE) {
            Ok(first) => {
                let mut batch = vec![first];
                while let Ok(more) = sh.rx.try_recv() {
                    batch.push(more);
                }
                run(batch);
            }
            Err(RecvTimeoutError::Timeout) => {
                sh.running.store(false, Ordering::Release);
                // A save that came just now, after the wait ended, is still served: by
                // this thread if no other took over.
                if sh.rx.is_empty() || sh.running.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Of several saves of one file only the newest runs, at the place of the first (the
/// order of different files is kept); flushes are answered after the saves.
fn run(batch: Vec<Job>) {
    let mut saves: Vec<(PathBuf, Option<Write>)> = Vec::new();
    let mut flushes = Vec::new();
    for job in batch {
        match job {
            Job::Save(path, write) => match saves.iter_mut().find(|(p, _)| *p == path) {
                Some(slot) => slot.1 = Some(write),
                None => saves.push((path, Some(write))),
            },
            Job::Flush(done) => flushes.push(done),
        }
    }
    for (_, write) in saves {
        if let Some(write) = write {
            write();
        }
    }
    for done in flushes {
        let _ = done.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn saves_land_in_order_and_the_newest_of_one_file_wins() {
        let s = Saver::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        // Hold the thread on a slow first save so the rest pile up behind it.
        let l = log.clone();
        s.save(PathBuf::from("slow"), move || {
            std::thread::sleep(Duration::from_millis(100));
            l.lock().unwrap().push("slow".to_string());
        });
        std::thread::sleep(Duration::from_millis(20));
        for (path, v) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a3")] {
            let l = log.clone();
            s.save(PathBuf::from(path), move || {
                l.lock().unwrap().push(v.to_string())
            });
        }
        assert!(s.flush(Duration::from_secs(5)));
        assert_eq!(*log.lock().unwrap(), ["slow", "a3", "b1"]);
    }

    #[test]
    fn an_inline_saver_writes_at_once() {
        let s = Saver::inline();
        let hit = Arc::new(Mutex::new(false));
        let h = hit.clone();
        s.save(PathBuf::from("x"), move || *h.lock().unwrap() = true);
        assert!(*hit.lock().unwrap());
        assert!(s.flush(Duration::from_millis(1)));
    }

    #[test]
    fn the_thread_leaves_when_idle_and_comes_back_for_the_next_save() {
        let s = Saver::new();
        let hits = Arc::new(Mutex::new(0));
        let h = hits.clone();
        s.save(PathBuf::from("x"), move || *h.lock().unwrap() += 1);
        assert!(s.flush(Duration::from_secs(5)));
        let sh = s.shared.clone().unwrap();
        let deadline = std::time::Instant::now() + IDLE * 3;
        while sh.running.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !sh.running.load(Ordering::Acquire),
            "still running when idle"
        );
        let h = hits.clone();
        s.save(PathBuf::from("x"), move || *h.lock().unwrap() += 1);
        assert!(s.flush(Duration::from_secs(5)));
        assert_eq!(*hits.lock().unwrap(), 2);
    }
}
