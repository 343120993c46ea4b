//! The thread that writes the hub's small state files (the run state, the chat
//! channels' state, the per-session settings sidecars), so the hub never waits on the
//! disk, and in order: two saves of one file land as they were asked, never the older
//! last (as two racing worker threads could). Saves of one file still waiting when a
//! newer one comes are dropped for it. Thread: `saver`, fed by a bounded channel of
//! [`QUEUE`] saves; the hub flushes it at shutdown.

use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

/// Saves waiting for the thread (each holds one small file's bytes).
pub const QUEUE: usize = 64;

type Write = Box<dyn FnOnce() + Send + 'static>;

enum Job {
    Save(PathBuf, Write),
    /// Answer once every save asked before is done.
    Flush(Sender<()>),
}

/// A handle to the saver thread (or, for tests, a saver that writes at once).
#[derive(Clone)]
pub struct Saver {
    tx: Option<Sender<Job>>,
}

impl Saver {
    /// Start the thread.
    pub fn start() -> std::io::Result<Saver> {
        let (tx, rx) = bounded(QUEUE);
        std::thread::Builder::new()
            .name("saver".into())
            .spawn(move || serve(&rx))?;
        Ok(Saver { tx: Some(tx) })
    }

    /// A saver without a thread: each save runs on the caller (unit tests).
    #[cfg(test)]
    pub fn inline() -> Saver {
        Saver { tx: None }
    }

    /// Write `path` with `write`, soon and in order. When the queue is full (the disk
    /// is far behind), the write runs here rather than being lost.
    pub fn save(&self, path: PathBuf, write: impl FnOnce() + Send + 'static) {
        let Some(tx) = &self.tx else {
            return write();
        };
        match tx.try_send(Job::Save(path, Box::new(write))) {
            Ok(()) => {}
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
        let Some(tx) = &self.tx else {
            return true;
        };
        let (done_tx, done_rx) = bounded(1);
        if tx.send_timeout(Job::Flush(done_tx), limit).is_err() {
            return false;
        }
        done_rx.recv_timeout(limit).is_ok()
    }
}

fn serve(rx: &Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        // Take what else is waiting: of several saves of one file only the newest runs,
        // at the place of the first (the order of different files is kept).
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn saves_land_in_order_and_the_newest_of_one_file_wins() {
        let s = Saver::start().unwrap();
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
}
