//! Test harness shared by every integration test: a loopback fake relay
//! ([`relay::FakeRelay`]), scratch directories, and helpers to run the real binary.
#![allow(dead_code)]

pub mod http;
pub mod node;
pub mod relay;
pub mod telegram;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A scratch directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "cba-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DIRS").is_some() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_coding-bridge-agent")
}

/// Write an executable file that the test then runs. The bytes go through a `cat` child,
/// so no descriptor open for writing on the file ever lives in this test process: a
/// sibling test thread that forks meanwhile would inherit such a descriptor until its
/// child execs, and running the file in that window fails with ETXTBSY ("Text file
/// busy"). Writing in a child closes that window for good, where retrying only narrows it.
pub fn write_executable(path: &Path, contents: &[u8]) {
    use std::io::Write;
    let mut c = Command::new("sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run sh to write an executable");
    c.stdin
        .take()
        .expect("its stdin")
        .write_all(contents)
        .expect("write the executable's bytes");
    let st = c.wait().expect("wait for sh");
    assert!(st.success(), "could not write {}", path.display());
}

/// Copy an executable (the daemon's binary) for the test to run, made by a `cp` child
/// for the reason [`write_executable`] gives.
pub fn copy_executable(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(
        st.success(),
        "could not copy {} to {}",
        from.display(),
        to.display()
    );
    let st = Command::new("chmod")
        .arg("755")
        .arg(to)
        .status()
        .expect("run chmod");
    assert!(st.success());
}

/// Whether the tests run under CI (`CI` set to anything but empty, `0` or `false`): a
/// real agent that cannot be found fails there instead of skipping.
pub fn under_ci() -> bool {
    ci_value(std::env::var("CI").ok().as_deref())
}

pub fn ci_value(v: Option<&str>) -> bool {
    !matches!(
        v.map(str::trim),
        None | Some("" | "0" | "false" | "FALSE" | "False")
    )
}

/// The real agent `found`, or what to do without it: `Err` (the test fails with the
/// message) under CI, `Ok(None)` (the test skips) elsewhere.
pub fn agent_or_skip(
    ci: bool,
    agent: &str,
    test: &str,
    found: Result<PathBuf, String>,
) -> Result<Option<PathBuf>, String> {
    match found {
        Ok(p) => Ok(Some(p)),
        Err(why) if ci => Err(format!(
            "{agent} could not be found or installed ({why}); under CI=true a real-agent \
             test fails instead of skipping. Install it as .ci/run does (npm), or check \
             the network."
        )),
        Err(why) => {
            // Straight to the terminal: the harness hides what a passing test prints.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {agent}: {why}");
            Ok(None)
        }
    }
}

/// [`agent_or_skip`] under this run's `CI`, failing the test with its message.
pub fn real_agent(agent: &str, test: &str, found: Result<PathBuf, String>) -> Option<PathBuf> {
    agent_or_skip(under_ci(), agent, test, found).unwrap_or_else(|e| panic!("{e}"))
}

/// The binary with a clean environment: HOME in `home`, config dir `home/cfg`,
/// fast pairing polls, and none of the caller's CODING_BRIDGE_* variables.
pub fn agent(home: &TempDir) -> Command {
    let mut c = Command::new(bin());
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("CODING_BRIDGE_CONFIG_DIR", home.join("cfg"))
        .env("CODING_BRIDGE_PAIR_POLL_INTERVAL", "0.05")
        .env("CODING_BRIDGE_NODE_NAME", "test-node")
        .current_dir(home.path())
        .stdin(Stdio::null());
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run coding-bridge-agent")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A daemon running in the background, stderr captured to a file; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub stderr_path: PathBuf,
}

impl Daemon {
    pub fn spawn(mut cmd: Command, dir: &TempDir) -> Daemon {
        static N: AtomicU32 = AtomicU32::new(0);
        let stderr_path = dir.join(&format!(
            "daemon-{}.stderr",
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&stderr_path).expect("stderr file");
        let out = std::fs::File::create(stderr_path.with_extension("stdout")).expect("stdout file");
        let child = cmd.stdout(out).stderr(file).spawn().expect("spawn daemon");
        Daemon { child, stderr_path }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.stderr_path.with_extension("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Wait until stderr contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.stderr().contains(needle))
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Wait for exit up to `timeout`; the exit code (or -signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                use std::os::unix::process::ExitStatusExt;
                return Some(st.code().unwrap_or_else(|| -st.signal().unwrap_or(0)));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process that exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    coding_bridge_agent::testing::process(pid).is_some_and(|p| !p.is_zombie())
}

/// Poll `f` every 10 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
