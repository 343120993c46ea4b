//! Orphan reaping for when the daemon is PID 1 (the init of a container).
//!
//! Processes orphaned inside the container (a tool's background job whose shell exited)
//! are re-parented to PID 1, and if nobody waits for them they stay as zombies forever.
//! When this process is PID 1, a small `reaper` thread wakes on SIGCHLD, finds its
//! zombie children in `/proc`, and reaps every one that is not a Claude Code child the
//! daemon spawned itself: those are waited for by their supervisor thread
//! ([`crate::child`]), which records them here with [`own`] and [`disown`] (a short lock,
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

/// Reap every zombie child of ours that no supervisor is waiting for.
pub fn reap_orphans() {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next();
        let ppid = f.next().and_then(|p| p.parse::<u32>().ok());
        if state != Some("Z") || ppid != Some(me) {
            continue;
        }
        let set = owned();
        if set.contains(&pid) {
            continue;
        }
        let mut status = 0;
        // SAFETY: waitpid on a specific pid that is our zombie child; WNOHANG never blocks.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        drop(set);
    }
}
