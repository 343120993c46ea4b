//! The child guard: a tiny process between the daemon and each agent CLI, so that no
//! agent or tool it started outlives the daemon, however the daemon ends (SIGKILL, the
//! OOM killer, a crash).
//!
//! The daemon starts its own binary as `coding-bridge-agent __child-guard <daemon pid> --
//! <program> <args>…` (see [`crate::sys::child`]) with the CLI's stdio, working dir and
//! environment. The guard, single-threaded and with no other job:
//! - asks the kernel for a parent-death signal (SIGHUP) and becomes a *child subreaper*,
//!   so every orphaned descendant of the CLI (a tool's shell, a background job, even one
//!   that called `setsid`) is re-parented to it rather than to PID 1;
//! - starts the CLI with a parent-death SIGKILL of its own (set before `exec`);
//! - waits in `sigwaitinfo(2)` (no polling): SIGCHLD reaps; when the CLI exits, every
//!   descendant left is killed and the guard exits with the CLI's status (re-raising its
//!   signal), so the daemon sees the CLI's own exit; when the daemon dies, every
//!   descendant is killed at once and the guard leaves.
//!
//! The guard stays in the CLI's process group, so the daemon's SIGTERM/SIGKILL of that
//! group reach the CLI directly, as before; the guard only notes them. Cost: one small
//! process per running session, no thread, no wake-up while the CLI runs.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// The hidden first argument that makes the binary a guard.
pub const ARG: &str = "__child-guard";
/// How long killing the descendants may take before the guard gives up and leaves.
const KILL_BUDGET: Duration = Duration::from_secs(2);

/// The command that runs `program args` under a guard: `exe` is this binary.
pub fn wrap(exe: &std::path::Path, program: &std::path::Path, args: &[String]) -> Command {
    let mut c = Command::new(exe);
    c.arg0("coding-bridge-agent-guard")
        .arg(ARG)
        .arg(std::process::id().to_string())
        .arg("--")
        .arg(program)
        .args(args);
    c
}

/// Run as a guard with the arguments after [`ARG`]; returns only on a usage error.
pub fn main(args: Vec<OsString>) -> i32 {
    let mut it = args.into_iter();
    let parent: Option<libc::pid_t> = it.next().and_then(|p| p.to_str()?.parse().ok());
    let sep = it.next();
    let program = it.next();
    let (Some(parent), Some(program)) = (parent, program) else {
        eprintln!("coding-bridge-agent: {ARG} is internal to the daemon");
        return 2;
    };
    if sep.as_deref() != Some(std::ffi::OsStr::new("--")) {
        eprintln!("coding-bridge-agent: {ARG} is internal to the daemon");
        return 2;
    }
    let rest: Vec<OsString> = it.collect();
    let set = watched_signals();
    // SAFETY: prctl and sigprocmask with valid arguments; this process has one thread.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGHUP, 0, 0, 0);
    }
    // The daemon may have died before the parent-death signal was armed.
    // SAFETY: getppid has no arguments and cannot fail.
    if unsafe { libc::getppid() } != parent {
        return 1;
    }
    let mut cmd = Command::new(&program);
    cmd.args(&rest);
    // SAFETY: the closure only calls prctl, sigemptyset, sigprocmask and signal, which
    // are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            // The CLI must not inherit the guard's blocked signals: an agent that waits
            // for SIGCHLD (Codex does) would never see its commands end.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start {}: {e}", program.to_string_lossy());
            // 127 like a shell: the daemon reports the stderr tail.
            return 127;
        }
    };
    let cli = child.id() as libc::pid_t;
    drop(child); // waited for below with waitpid
    loop {
        // SAFETY: `set` is a valid signal set; a null info pointer is allowed.
        let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        match sig {
            libc::SIGCHLD => {
                if let Some(status) = reap(cli) {
                    kill_descendants();
                    exit_like(status);
                }
            }
            // SAFETY: getppid cannot fail.
            libc::SIGHUP if unsafe { libc::getppid() } != parent => {
                // The daemon is gone: nothing of ours may keep running.
                kill_descendants();
                return 1;
            }
            // SIGTERM, SIGINT, SIGHUP, SIGQUIT: the daemon signals the whole group, so
            // the CLI has it already; the guard waits for the CLI to leave.
            _ => {}
        }
    }
}

fn watched_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGCHLD,
            libc::SIGHUP,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGQUIT,
        ] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Reap every exited child; the CLI's wait status once it has exited.
fn reap(cli: libc::pid_t) -> Option<libc::c_int> {
    let mut cli_status = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return cli_status;
        }
        if pid == cli {
            cli_status = Some(status);
        }
    }
}

/// SIGKILL every descendant (orphans are re-parented to us, so repeat until no child is
/// left), reaping as they go. Bounded by [`KILL_BUDGET`].
fn kill_descendants() {
    let me = std::process::id();
    let deadline = Instant::now() + KILL_BUDGET;
    loop {
        let procs = crate::sys::reaper::processes();
        let mut tree = vec![me];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(procs.iter().filter(|p| p.ppid == parent).map(|p| p.pid));
            i += 1;
        }
        for pid in &tree[1..] {
            // SAFETY: kill(2) on a pid we just found among our descendants.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
        // Reap what died; -1 (ECHILD) means no child is left at all.
        let last = loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer; WNOHANG never blocks.
            let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if r <= 0 {
                break r;
            }
        };
        if last == -1 || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Leave the way the CLI did: the same exit code, or the same signal.
fn exit_like(status: libc::c_int) -> ! {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: restore the default action, unblock, and raise the CLI's signal.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            let mut one: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut one);
            libc::sigaddset(&mut one, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut());
            libc::raise(sig);
        }
        std::process::exit(128 + sig);
    }
    std::process::exit(libc::WEXITSTATUS(status));
}
