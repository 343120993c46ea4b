//! Orphan reaping for when the daemon is PID 1 (the init of a container).
//!
//! Processes orphaned inside the container (a tool's background job whose shell exited)
//! are re-parented to PID 1, and if nobody waits for them they stay as zombies forever.
//! When this process is PID 1, a small `reaper` thread wakes on SIGCHLD, finds its
//! zombie children in `/proc`, and reaps every one that is not an agent child the daemon
//! spawned itself: those are waited for by their supervisor thread
//! ([`crate::sys::child`]), which records them here with `own` and `disown` (a short lock,
//! also held across the spawn so no child can be reaped before it is recorded).

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, OnceLock};

fn owned() -> MutexGuard<'static, HashSet<u32>> {
    static OWN: OnceLock<Mutex<HashSet<u32>>> = OnceLock::new();
    OWN.get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Run `spawn` with the owned-set locked and record the pid it returns.
pub fn spawn_owned<T>(spawn: impl FnOnce() -> std::io::Result<(T, u32)>) -> std::io::Result<T> {
    let mut set = owned();
    let (value, pid) = spawn()?;
    set.insert(pid);
    Ok(value)
}

/// The supervisor has waited for `pid`.
pub fn disown(pid: u32) {
    owned().remove(&pid);
}

/// Start the reaper thread if this process is PID 1.
pub fn start_if_init() {
    if std::process::id() != 1 {
        return;
    }
    let signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGCHLD]);
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => {
            crate::log_warn!(
                "running as PID 1 but cannot watch SIGCHLD ({e}); orphans will not be reaped"
            );
            return;
        }
    };
    crate::log_info!("running as PID 1: orphaned processes will be reaped");
    let spawned = std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || {
            reap_orphans();
            for _ in signals.forever() {
                reap_orphans();
            }
        });
    if let Err(e) = spawned {
        crate::log_warn!("cannot start the reaper thread: {e}");
    }
}

/// One process as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// The state letter (`R`, `S`, `Z` for a zombie, ...).
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
}

impl Process {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Every process visible in `/proc` (those that vanish while reading are skipped).
pub fn processes() -> Vec<Process> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(process)
        .collect()
}

/// One process, if it exists.
pub fn process(pid: u32) -> Option<Process> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some(Process {
        pid,
        state,
        ppid,
        pgrp,
    })
}

/// Reap every zombie child of ours that no supervisor is waiting for.
pub fn reap_orphans() {
    let me = std::process::id();
    for p in processes() {
        if !p.is_zombie() || p.ppid != me {
            continue;
        }
        let set = owned();
        if set.contains(&p.pid) {
            continue;
        }
        let mut status = 0;
        // SAFETY: waitpid on a specific pid that is our zombie child; WNOHANG never blocks.
        unsafe { libc::waitpid(p.pid as libc::pid_t, &mut status, libc::WNOHANG) };
        drop(set);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let me = super::process(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(!me.is_zombie());
        assert!(
            super::processes()
                .iter()
                .any(|p| p.pid == me.pid && p.ppid == me.ppid)
        );
    }
}
