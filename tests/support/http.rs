//! The loopback HTTP plumbing of the fake model APIs (Anthropic, OpenAI, Gemini) the
//! real-agent tests serve: read one request, answer with JSON or an SSE stream.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// One request: its first line, its head, and its body parsed as JSON (`Null` if not).
pub struct Request {
    pub line: String,
    pub head: String,
    pub body: serde_json::Value,
}

/// Read one request (head, then `content-length` bytes of body); `None` at EOF.
pub fn read_request(s: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let mut part = [0u8; 65536];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut part)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&part[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut part)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&part[..n]);
    }
    let line = head.lines().next().unwrap_or("").to_string();
    let body = serde_json::from_slice(&buf[head_end..]).unwrap_or(serde_json::Value::Null);
    Ok(Some(Request { line, head, body }))
}

/// Answer with a JSON body and close.
pub fn json_reply(s: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Start an SSE answer (the caller writes the events).
pub fn sse_head(s: &mut TcpStream) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n"
    )
}

/// Serve every connection on a loopback port with `handle` (a thread each); the port.
pub fn serve(handle: impl Fn(TcpStream) + Send + Sync + Clone + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let h = handle.clone();
            std::thread::spawn(move || h(s));
        }
    });
    port
}

/// The npm package `package` installed under `dir` (installed there now if `bin` is
/// missing); `bin` is the executable inside it. An error says why it could not be.
pub fn npm_package(
    dir: &std::path::Path,
    package: &str,
    bin: &std::path::Path,
) -> Result<std::path::PathBuf, String> {
    if bin.exists() {
        return Ok(bin.to_path_buf());
    }
    // One install at a time, across the threads and the test binaries running at once:
    // a second `npm install` into the same directory rewrites the binary the first one's
    // test is starting (ETXTBSY). The lock is released when the file closes.
    let _ = std::fs::create_dir_all(dir.parent().unwrap_or(dir));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("{}.lock", dir.display()))
        .map_err(|e| format!("cannot open the install lock: {e}"))?;
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; it only waits.
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    }
    if bin.exists() {
        return Ok(bin.to_path_buf());
    }
    let npm = std::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(dir)
        .arg(package)
        .output()
        .map_err(|e| format!("npm is not available ({e})"))?;
    if npm.status.success() && bin.exists() {
        Ok(bin.to_path_buf())
    } else {
        Err(format!(
            "npm could not install {package}: {}",
            String::from_utf8_lossy(&npm.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ))
    }
}
