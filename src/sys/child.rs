//! One agent child process (Claude Code, Codex, an ACP agent) and the threads that serve
//! it.
//!
//! Threads and channels, per child:
//! - **supervisor** (`child-N`): owns the process. Writes the lines the hub sends on the
//!   child's stdin channel; on [`ChildInput::Close`] (or when stdout ends) closes stdin,
//!   waits, then SIGTERMs and finally SIGKILLs the child's whole process group, and
//!   reports [`ChildEvent::Exited`] with the exit status and the stderr tail.
//! - **stdout reader** (`child-N-out`): reads stdout line by line (each line bounded by
//!   [`MAX_LINE`]), parses JSON and sends batches of lines (`ChildEvent::Lines`, at most [`LINE_BATCH`]
//!   lines or [`BATCH_BYTES`]) to the hub. A line that is
//!   too long or not JSON is skipped with a log line. The bounded hub channel gives
//!   backpressure: a flooding child waits for the hub.
//! - **stderr reader** (`child-N-err`): keeps a bounded tail of stderr behind a short lock
//!   for error reports.
//!
//! The child runs in its own process group so that shutdown reaches its grandchildren
//! (shells, tools) too, and (in the daemon) under a [`crate::sys::guard`], so that none of
//! them outlives the daemon, even a SIGKILLed one. Waiting with a deadline uses a pidfd and `poll(2)`, not sleeps.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;

/// Longest stdout line accepted from the CLI; longer ones are skipped.
pub const MAX_LINE: usize = 16 << 20;
/// Most stdout lines handed to the hub in one message; batching keeps a flooding child
/// from costing a thread wake-up per line.
pub const LINE_BATCH: usize = 32;
/// Bytes of lines in one batch: a batch closes once it holds this much, so the bounded
/// queue to the hub holds a few MiB per child, not `LINE_BATCH` lines of [`MAX_LINE`].
pub const BATCH_BYTES: usize = 1 << 20;
/// Lines queued for a child's stdin.
pub const STDIN_QUEUE: usize = 256;
/// stderr kept for error reports.
pub const STDERR_TAIL_BYTES: usize = 8 * 1024;
/// Grace after closing stdin, and after SIGTERM, before escalating.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    /// Variables removed from the inherited environment.
    pub env_remove: Vec<String>,
}

/// Hub → supervisor.
#[derive(Debug)]
pub enum ChildInput {
    /// One JSON line for stdin (the newline is added).
    Line(String),
    /// Stop the child (close stdin, then signals).
    Close,
    /// Internal: stdout reached its end.
    StdoutEnded,
}

/// Child threads → hub.
#[derive(Debug)]
pub enum ChildEvent {
    /// Lines read in one go (as many as were already buffered, up to [`LINE_BATCH`]).
    Lines {
        child: u64,
        values: Vec<Value>,
    },
    Exited {
        child: u64,
        status: ExitInfo,
    },
}

/// How a child ended.
#[derive(Debug, Clone, Default)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stderr_tail: String,
}

/// The hub's handle on a running child.
#[derive(Debug, Clone)]
pub struct ChildHandle {
    pub id: u64,
    pub pid: u32,
    pub stdin: Sender<ChildInput>,
}

impl ChildHandle {
    /// Queue a line for stdin; false if the child is gone or not keeping up.
    pub fn send_line(&self, line: String) -> bool {
        self.stdin.try_send(ChildInput::Line(line)).is_ok()
    }

    /// Ask the supervisor to stop the child; if it cannot even take the request (its
    /// queue is full because the child stopped reading), signal the group directly.
    pub fn close(&self) {
        if self.stdin.try_send(ChildInput::Close).is_err() {
            kill_group(self.pid, libc::SIGTERM);
        }
    }
}

static GUARD: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
static SECRET_VARS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Environment variables no child may inherit (the daemon's own secrets, such as a bot
/// token's variable): set once at start.
pub fn withhold_env(vars: Vec<String>) {
    let _ = SECRET_VARS.set(vars);
}

/// From now on, run every child under a [`crate::sys::guard`] started from `exe` (this
/// binary), so none outlives the daemon. The daemon calls this once at start; library
/// users that never do get plain children.
pub fn use_guard(exe: PathBuf) {
    let _ = GUARD.set(exe);
}

/// Start `spec` as child number `id`; its output arrives on `events`.
pub fn spawn(id: u64, spec: &Spec, events: Sender<ChildEvent>) -> io::Result<ChildHandle> {
    let mut cmd = match GUARD.get() {
        Some(exe) => crate::sys::guard::wrap(exe, &spec.program, &spec.args),
        None => {
            let mut c = Command::new(&spec.program);
            c.args(&spec.args);
            c
        }
    };
    cmd.current_dir(&spec.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for k in spec
        .env_remove
        .iter()
        .chain(SECRET_VARS.get().into_iter().flatten())
    {
        cmd.env_remove(k);
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let mut child = crate::sys::reaper::spawn_owned(|| {
        let c = cmd.spawn()?;
        let pid = c.id();
        Ok((c, pid))
    })?;
    let pid = child.id();
    let (stdin_tx, stdin_rx) = crossbeam_channel::bounded(STDIN_QUEUE);
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let tail = Arc::new(Mutex::new(Tail::default()));

    // The stderr reader says when it reached the end, so the exit report has the last lines.
    let (err_done_tx, err_done) = crossbeam_channel::bounded::<()>(1);
    if let Some(err) = stderr {
        let tail = tail.clone();
        std::thread::Builder::new()
            .name(format!("child-{id}-err"))
            .spawn(move || {
                read_stderr(err, &tail);
                let _ = err_done_tx.send(());
            })?;
    } else {
        let _ = err_done_tx.send(());
    }
    if let Some(out) = stdout {
        let events = events.clone();
        let wake = stdin_tx.clone();
        std::thread::Builder::new()
            .name(format!("child-{id}-out"))
            .spawn(move || {
                read_stdout(id, out, &events);
                let _ = wake.send(ChildInput::StdoutEnded);
            })?;
    }
    std::thread::Builder::new()
        .name(format!("child-{id}"))
        .spawn(move || supervise(id, child, stdin, stdin_rx, tail, err_done, events))?;
    Ok(ChildHandle {
        id,
        pid,
        stdin: stdin_tx,
    })
}

fn supervise(
    id: u64,
    mut child: Child,
    mut stdin: Option<ChildStdin>,
    rx: Receiver<ChildInput>,
    tail: Arc<Mutex<Tail>>,
    err_done: Receiver<()>,
    events: Sender<ChildEvent>,
) {
    let pid = child.id();
    // Ends on Close, at the end of stdout, or when the hub drops the handle.
    while let Ok(ChildInput::Line(line)) = rx.recv() {
        if let Some(w) = stdin.as_mut() {
            let ok = w
                .write_all(line.as_bytes())
                .and_then(|_| w.write_all(b"\n"))
                .and_then(|_| w.flush());
            if let Err(e) = ok {
                crate::log_debug!("child {id}: stdin write failed: {e}");
                stdin = None;
            }
        }
    }
    drop(stdin);
    let status = stop(&mut child, pid);
    crate::sys::reaper::disown(pid);
    // Whatever is left of the group (a tool's background job) goes too.
    kill_group(pid, libc::SIGKILL);
    // Let the stderr reader catch the last lines (bounded: a process outside the group
    // could still hold the pipe open).
    let _ = err_done.recv_timeout(Duration::from_millis(500));
    let stderr_tail = tail.lock().map(|t| t.text()).unwrap_or_default();
    let info = match status {
        Some(st) => ExitInfo {
            code: st.code(),
            signal: st.signal(),
            stderr_tail,
        },
        None => ExitInfo {
            code: None,
            signal: None,
            stderr_tail,
        },
    };
    let _ = events.send(ChildEvent::Exited {
        child: id,
        status: info,
    });
}

/// Wait for the child to leave after stdin closed; escalate to SIGTERM, then SIGKILL.
fn stop(child: &mut Child, pid: u32) -> Option<ExitStatus> {
    let pidfd = pidfd_open(pid);
    if let Some(st) = wait_timeout(child, pidfd.as_ref(), STOP_GRACE) {
        return Some(st);
    }
    kill_group(pid, libc::SIGTERM);
    if let Some(st) = wait_timeout(child, pidfd.as_ref(), STOP_GRACE) {
        return Some(st);
    }
    kill_group(pid, libc::SIGKILL);
    child.wait().ok()
}

/// Signal the process group led by `pid`.
pub fn kill_group(pid: u32, sig: libc::c_int) {
    if pid > 1 {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        unsafe {
            libc::kill(-(pid as libc::pid_t), sig);
        }
    }
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this fd and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn wait_timeout(
    child: &mut Child,
    pidfd: Option<&OwnedFd>,
    timeout: Duration,
) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        match pidfd {
            Some(fd) => {
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            }
            // Old kernels without pidfd: a short sleep is the only portable wait.
            None => std::thread::sleep(left.min(Duration::from_millis(20))),
        }
    }
}

fn read_stdout(id: u64, out: impl Read, events: &Sender<ChildEvent>) {
    let mut reader = BufReader::with_capacity(64 * 1024, out);
    let mut line = Vec::new();
    let mut batch: Vec<Value> = Vec::new();
    let mut batch_bytes = 0;
    loop {
        // Hand over what we have before a read that may block, and whenever the batch
        // is full, in lines or in bytes.
        if !batch.is_empty()
            && (reader.buffer().is_empty()
                || batch.len() >= LINE_BATCH
                || batch_bytes >= BATCH_BYTES)
        {
            let values = std::mem::take(&mut batch);
            batch_bytes = 0;
            if events
                .send(ChildEvent::Lines { child: id, values })
                .is_err()
            {
                return;
            }
        }
        line.clear();
        match read_bounded_line(&mut reader, &mut line, MAX_LINE) {
            Ok(LineRead::Eof) => {
                if !batch.is_empty() {
                    let _ = events.send(ChildEvent::Lines {
                        child: id,
                        values: batch,
                    });
                }
                return;
            }
            Ok(LineRead::TooLong(n)) => {
                crate::log_warn!(
                    "child {id}: skipped a {n}-byte stdout line (over {MAX_LINE} bytes)"
                );
            }
            Ok(LineRead::Line) => {
                let text = trim_line(&line);
                if text.is_empty() {
                    continue;
                }
                match serde_json::from_slice::<Value>(text) {
                    Ok(value) if value.is_object() => {
                        batch_bytes += text.len();
                        batch.push(value);
                    }
                    _ => {
                        let shown =
                            String::from_utf8_lossy(&text[..text.len().min(200)]).into_owned();
                        crate::log_debug!(
                            "child {id}: skipped a stdout line that is not a JSON object: {shown}"
                        );
                    }
                }
            }
            Err(e) => {
                crate::log_debug!("child {id}: stdout read failed: {e}");
                return;
            }
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b'\n' || line[end - 1] == b'\r') {
        end -= 1;
    }
    &line[..end]
}

/// Outcome of [`read_bounded_line`].
#[derive(Debug, PartialEq, Eq)]
pub enum LineRead {
    Line,
    /// The line exceeded the bound and was discarded (its length).
    TooLong(usize),
    Eof,
}

/// Read one `\n`-terminated line into `buf`, keeping at most `max` bytes; a longer line
/// is consumed and dropped without growing memory.
pub fn read_bounded_line(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    let mut total = 0usize;
    let mut overflow = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(match (total, overflow) {
                (0, _) => LineRead::Eof,
                (n, true) => LineRead::TooLong(n),
                _ => LineRead::Line,
            });
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        total += take;
        if !overflow {
            if buf.len() + take > max {
                overflow = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        r.consume(take);
        if done {
            return Ok(if overflow {
                LineRead::TooLong(total)
            } else {
                LineRead::Line
            });
        }
    }
}

#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Tail {
    fn push(&mut self, line: String) {
        let line: String = line.chars().take(STDERR_TAIL_BYTES).collect();
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.bytes > STDERR_TAIL_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len(),
                None => break,
            }
        }
    }

    fn text(&self) -> String {
        self.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

fn read_stderr(err: impl Read, tail: &Mutex<Tail>) {
    let mut reader = BufReader::new(err);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_bounded_line(&mut reader, &mut line, 64 * 1024) {
            Ok(LineRead::Eof) | Err(_) => return,
            Ok(LineRead::TooLong(n)) => {
                if let Ok(mut t) = tail.lock() {
                    t.push(format!("[{n}-byte line skipped]"));
                }
            }
            Ok(LineRead::Line) => {
                let text = String::from_utf8_lossy(trim_line(&line)).into_owned();
                if let Ok(mut t) = tail.lock() {
                    t.push(text);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_lines() {
        let data = b"short\nxxxxxxxxxxxxxxxxxxxx\nlast".to_vec();
        let mut r = BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_bounded_line(&mut r, &mut buf, 10).unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"short\n");
        buf.clear();
        assert_eq!(
            read_bounded_line(&mut r, &mut buf, 10).unwrap(),
            LineRead::TooLong(21)
        );
        assert!(buf.len() <= 10);
        buf.clear();
        assert_eq!(
            read_bounded_line(&mut r, &mut buf, 10).unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"last");
        buf.clear();
        assert_eq!(
            read_bounded_line(&mut r, &mut buf, 10).unwrap(),
            LineRead::Eof
        );
    }

    #[test]
    fn stderr_tail_is_bounded() {
        let mut t = Tail::default();
        for i in 0..10_000 {
            t.push(format!("line {i}"));
        }
        assert!(t.bytes <= STDERR_TAIL_BYTES);
        assert!(t.text().ends_with("line 9999"));
    }

    #[test]
    fn runs_and_stops_a_process_group() {
        let (tx, rx) = crossbeam_channel::bounded(16);
        let spec = Spec {
            program: "/bin/sh".into(),
            // Echo a JSON line, start a grandchild, ignore stdin closing and SIGTERM.
            args: vec![
                "-c".into(),
                "trap '' TERM; echo '{\"a\":1}'; echo oops >&2; sleep 300 & while :; do sleep 1; done".into(),
            ],
            cwd: std::env::temp_dir(),
            env: vec![],
            env_remove: vec![],
        };
        let h = spawn(7, &spec, tx).unwrap();
        match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            ChildEvent::Lines { child, values } => {
                assert_eq!(child, 7);
                assert_eq!(values[0]["a"], 1);
            }
            other => panic!("{other:?}"),
        }
        let t0 = Instant::now();
        h.close();
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            ChildEvent::Exited { child, status } => {
                assert_eq!(child, 7);
                assert_eq!(status.signal, Some(libc::SIGKILL));
                assert!(status.stderr_tail.contains("oops"));
            }
            other => panic!("{other:?}"),
        }
        assert!(t0.elapsed() >= STOP_GRACE * 2);
        // The whole group is gone (zombies awaiting their new parent do not count).
        let deadline = Instant::now() + Duration::from_secs(3);
        while !live_group_members(h.pid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            live_group_members(h.pid).is_empty(),
            "a grandchild outlived the stop"
        );
    }

    /// Pids of non-zombie processes in process group `pgid`.
    pub fn live_group_members(pgid: u32) -> Vec<u32> {
        crate::sys::reaper::processes()
            .into_iter()
            .filter(|p| p.pgrp == pgid && !p.is_zombie())
            .map(|p| p.pid)
            .collect()
    }
}
