//! One daemon per config dir: `run`/`up` hold an exclusive `flock` on
//! `<config_dir>/agent.lock` for their whole life and write their pid in it. The kernel
//! drops the lock when the process ends, however it ends, so a crash never leaves a stale
//! lock; a stale pid in the file is harmless because only a held lock counts.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// The held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

#[derive(Debug)]
pub enum LockError {
    /// Another process holds the lock; its pid when the file says so.
    Held {
        pid: Option<u32>,
    },
    Io(io::Error),
}

/// What `status` learns without disturbing a running daemon.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    Running { pid: Option<u32> },
    NotRunning,
}

fn open(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .truncate(false) // the pid of a running daemon must survive our open
        .mode(0o600)
        .open(path)
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(64).read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// Take the lock at `path` and write our pid into it.
///
/// A `status` probe holds a shared lock for a few microseconds; to not mistake that for
/// a running daemon we retry a few times before giving up.
pub fn acquire(path: &Path) -> Result<InstanceLock, LockError> {
    let mut file = open(path, true).map_err(LockError::Io)?;
    let mut attempt = 0;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if attempt < 5 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    pid: read_pid(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(LockError::Io(e)),
        }
    }
    let write = (|| {
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        writeln!(file, "{}", std::process::id())?;
        file.flush()
    })();
    if let Err(e) = write {
        crate::log_warn!("could not write the pid into {}: {e}", path.display());
    }
    Ok(InstanceLock { _file: file })
}

/// Is a daemon holding the lock at `path`? Does not create the file.
pub fn probe(path: &Path) -> Probe {
    let mut file = match open(path, false) {
        Ok(f) => f,
        Err(_) => return Probe::NotRunning,
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            Probe::NotRunning
        }
        Err(TryLockError::WouldBlock) => Probe::Running {
            pid: read_pid(&mut file),
        },
        Err(TryLockError::Error(_)) => Probe::NotRunning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_within_process_via_separate_opens() {
        let dir = std::env::temp_dir().join(format!("cba-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.lock");
        assert_eq!(probe(&path), Probe::NotRunning);
        let held = acquire(&path).unwrap();
        // flock locks belong to the open file description, so a second open conflicts.
        match acquire(&path) {
            Err(LockError::Held { pid }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            probe(&path),
            Probe::Running {
                pid: Some(std::process::id())
            }
        );
        drop(held);
        assert_eq!(probe(&path), Probe::NotRunning);
        assert!(acquire(&path).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
