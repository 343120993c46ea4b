//! The relay link: one outbound WebSocket (PROTOCOL §2) served by two blocking threads.
//!
//! Threads and channels:
//! - **reader** (one per connection): connects (TCP, TLS, WebSocket handshake), starts the
//!   writer, reports [`LinkEvent::Up`], then blocks in `poll(2)` for readability, drains
//!   every ready frame, parses it ([`crate::relay::envelope::parse`]) and sends it to the hub.
//!   Malformed frames are logged at debug and skipped; the link stays up.
//! - **writer** (one per connection): receives [`Outbound`] frames from a bounded channel
//!   the hub holds, writes a batch, flushes, and waits in `poll(2)` for writability when the
//!   socket is full.
//!
//! Why this shape: a TLS stream cannot simply be split into a read half and a write half,
//! and a reader blocked inside `read()` while holding the stream would stall every send.
//! So the socket is non-blocking and the WebSocket (with its TLS session) sits behind a
//! mutex that each thread holds only while it moves bytes; the waiting happens in
//! `poll(2)` with the lock released. The TLS layer is our own small [`TlsStream`] over an
//! owned `rustls::ClientConnection` whose `read` only reads the socket and whose `write`
//! only writes it (rustls' `StreamOwned` may write inside `read`, which would make a
//! blocked writer spin the reader). Neither thread ever sleeps to poll.
//!
//! The hub ends a connection with [`LinkControl::kill`] (socket shutdown, which wakes both
//! polls) or by sending [`Outbound::Close`] for a polite close. Every event carries the
//! connection number so the hub can ignore news from a connection it already dropped.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use rustls::ClientConnection;
use rustls::pki_types::ServerName;
use tungstenite::protocol::{CloseFrame, WebSocketConfig, frame::coding::CloseCode};
use tungstenite::{Message, WebSocket};

use crate::relay::envelope::{self, Incoming};
use crate::sys::budget::{Budget, Permit};

/// The largest browser command the node takes ([`crate::protocol::limits`]). A bigger
/// frame up to [`MAX_MESSAGE`] is read, refused with a `session.error`, and its `cmd_id`
/// remembered, so a redelivery cannot loop.
pub use crate::protocol::limits::MAX_COMMAND;
/// Bytes of frames read and not yet handled by the hub: beyond this the reader waits
/// (the queue to the hub is bounded in frames too, but one frame can be 48 MiB).
pub static FRAMES: Budget = Budget::new(2 * MAX_COMMAND);
/// Frames up to this size are bounded by the queue's length alone (1024 of them are
/// 64 MiB at most); only bigger ones take a share of [`FRAMES`], so the many small
/// commands pay nothing for it.
const SMALL_FRAME: usize = 64 << 10;
/// WebSocket messages above this cannot be read: the connection fails. The hub then
/// reads up to [`MAX_RECOVERY`] on the next connection, to refuse such a frame properly
/// if the relay delivers it again.
pub const MAX_MESSAGE: usize = 64 << 20;
pub const MAX_RECOVERY: usize = 256 << 20;
/// Frames the writer may have queued before the hub treats the link as stuck.
pub const WRITER_QUEUE: usize = 16;
/// Frames read in one go before the reader hands them over and reads again.
const READ_BATCH: usize = 256;
/// Close code by which the relay says the token is no good.
pub const CLOSE_AUTH_REJECTED: u16 = 4401;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// News from a connection to the hub.
#[derive(Debug)]
pub enum LinkEvent {
    Up {
        conn: u64,
        writer: Sender<Outbound>,
        control: LinkControl,
    },
    Frame {
        conn: u64,
        incoming: Incoming,
        /// Its share of [`FRAMES`] (a large frame), given back when the hub drops it.
        _bytes: Option<Permit<'static>>,
    },
    /// A ping or pong arrived: the link is alive.
    Alive {
        conn: u64,
    },
    Down {
        conn: u64,
        why: Down,
    },
    /// A text frame larger than [`MAX_COMMAND`] was read and dropped; what could be
    /// learnt of it without holding its contents.
    Oversized {
        conn: u64,
        size: usize,
        cmd_id: Option<String>,
        action: Option<String>,
        session_id: Option<String>,
        trace_id: Option<String>,
    },
}

/// How a connection ended (or failed to start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Down {
    /// The relay rejected the token (HTTP 401/403 or close code 4401).
    Rejected(String),
    /// Anything else: try again later.
    Lost(String),
    /// The relay sent a message of `size` bytes, more than the connection reads.
    TooLarge { size: usize, limit: usize },
}

/// What the hub asks the writer to send.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    /// Several text frames at once (the hub batches what one step produced).
    Batch(Vec<String>),
    Ping,
    /// Send a normal close frame and stop writing.
    Close,
}

/// Lets the hub end a connection from outside.
#[derive(Debug)]
pub struct LinkControl {
    tcp: TcpStream,
}

impl LinkControl {
    /// Shut the socket down; both link threads wake and exit.
    pub fn kill(&self) {
        let _ = self.tcp.shutdown(Shutdown::Both);
    }
}

/// Where to connect. `url` carries the token; only `display` may be logged.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub display: String,
    pub tls: Arc<rustls::ClientConfig>,
    /// The largest WebSocket message this connection reads ([`MAX_MESSAGE`] normally).
    pub max_message: usize,
}

/// What a query value may carry as is: RFC 3986's unreserved characters. Everything
/// else (`&`, `=`, `+`, `#`, `%`, `/`, non-ASCII …) is percent-encoded.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Build the socket URL from the bridge base URL: `https` → `wss`, `http` → `ws`,
/// `/ws/node?token=<token>` appended (the token percent-encoded where needed).
pub fn socket_url(bridge_url: &str, token: &str) -> (String, String) {
    let base = bridge_url.trim_end_matches('/');
    let ws_base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    };
    let enc = percent_encoding::utf8_percent_encode(token, QUERY_VALUE);
    (
        format!("{ws_base}/ws/node?token={enc}"),
        format!("{ws_base}/ws/node"),
    )
}

/// Start a connection attempt on a new reader thread. Outcome arrives as events.
pub fn spawn(conn: u64, target: Target, hub: Sender<LinkEvent>) {
    let spawned = std::thread::Builder::new()
        .name(format!("link-reader-{conn}"))
        .spawn(move || reader_main(conn, target, hub.clone()));
    if let Err(e) = spawned {
        crate::log_error!("cannot start the link thread: {e}");
    }
}

type Ws = WebSocket<Stream>;

fn lock(ws: &Mutex<Ws>) -> MutexGuard<'_, Ws> {
    // A panic while holding the lock would already have aborted (panic = abort in
    // release); in tests, keep going with the inner value.
    ws.lock().unwrap_or_else(|p| p.into_inner())
}

fn reader_main(conn: u64, target: Target, hub: Sender<LinkEvent>) {
    let (ws, tcp) = match connect(&target) {
        Ok(x) => x,
        Err(why) => {
            let _ = hub.send(LinkEvent::Down { conn, why });
            return;
        }
    };
    let control = match tcp.try_clone() {
        Ok(t) => LinkControl { tcp: t },
        Err(e) => {
            let _ = hub.send(LinkEvent::Down {
                conn,
                why: Down::Lost(format!("socket clone failed: {e}")),
            });
            return;
        }
    };
    let ws = Arc::new(Mutex::new(ws));
    let (out_tx, out_rx) = crossbeam_channel::bounded(WRITER_QUEUE);
    {
        let ws = ws.clone();
        let fd_tcp = tcp.try_clone();
        let spawned = std::thread::Builder::new()
            .name(format!("link-writer-{conn}"))
            .spawn(move || {
                if let Ok(t) = fd_tcp {
                    writer_main(&ws, &t, out_rx);
                }
            });
        if let Err(e) = spawned {
            let _ = hub.send(LinkEvent::Down {
                conn,
                why: Down::Lost(format!("cannot start the writer thread: {e}")),
            });
            return;
        }
    }
    if hub
        .send(LinkEvent::Up {
            conn,
            writer: out_tx,
            control,
        })
        .is_err()
    {
        return;
    }
    let why = read_loop(conn, &ws, &tcp, &hub);
    let _ = tcp.shutdown(Shutdown::Both);
    let _ = hub.send(LinkEvent::Down { conn, why });
}

fn read_loop(conn: u64, ws: &Mutex<Ws>, tcp: &TcpStream, hub: &Sender<LinkEvent>) -> Down {
    let mut batch = Vec::with_capacity(READ_BATCH);
    loop {
        let mut ended = None;
        {
            let mut ws = lock(ws);
            while batch.len() < READ_BATCH {
                match ws.read() {
                    Ok(m) => batch.push(m),
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        break;
                    }
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(
                        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                    ) => {
                        ended = Some(Down::Lost("connection closed".into()));
                        break;
                    }
                    Err(tungstenite::Error::Capacity(
                        tungstenite::error::CapacityError::MessageTooLong { size, max_size },
                    )) => {
                        ended = Some(Down::TooLarge {
                            size,
                            limit: max_size,
                        });
                        break;
                    }
                    Err(e) => {
                        ended = Some(Down::Lost(e.to_string()));
                        break;
                    }
                }
            }
            // Push out any automatic pong or close reply queued by the reads.
            let _ = ws.flush();
        }
        let full = batch.len() == READ_BATCH;
        for m in batch.drain(..) {
            let event = match m {
                Message::Text(t) if t.len() > MAX_COMMAND => {
                    let peek = peek(t.as_str());
                    crate::log_error!(
                        "the relay sent a {} MiB frame ({}); the node takes at most {} MiB: dropped",
                        t.len() >> 20,
                        peek.action.as_deref().unwrap_or("no action"),
                        MAX_COMMAND >> 20
                    );
                    LinkEvent::Oversized {
                        conn,
                        size: t.len(),
                        cmd_id: peek.cmd_id,
                        action: peek.action,
                        session_id: peek.session_id,
                        trace_id: peek.trace_id,
                    }
                }
                Message::Text(t) => match envelope::parse(t.as_str()) {
                    // Waits while the hub holds too many bytes of frames already.
                    Ok(incoming) => LinkEvent::Frame {
                        conn,
                        incoming,
                        _bytes: (t.len() > SMALL_FRAME).then(|| FRAMES.acquire(t.len())),
                    },
                    Err(e) => {
                        crate::log_debug!("skipping a relay frame: {e}");
                        continue;
                    }
                },
                Message::Binary(b) => {
                    crate::log_debug!("skipping a binary relay frame ({} bytes)", b.len());
                    continue;
                }
                Message::Ping(_) | Message::Pong(_) => LinkEvent::Alive { conn },
                Message::Close(frame) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    if code == CLOSE_AUTH_REJECTED {
                        return Down::Rejected(format!(
                            "the relay closed the link with code {code} {reason}"
                        ));
                    }
                    ended = Some(Down::Lost(format!(
                        "the relay closed the link (code {code} {reason})"
                    )));
                    continue;
                }
                Message::Frame(_) => continue,
            };
            if hub.send(event).is_err() {
                return Down::Lost("daemon stopping".into());
            }
        }
        if let Some(why) = ended {
            return why;
        }
        if !full && !wait_fd(tcp, libc::POLLIN) {
            return Down::Lost("socket poll failed".into());
        }
    }
}

fn writer_main(ws: &Mutex<Ws>, tcp: &TcpStream, rx: Receiver<Outbound>) {
    // Ends when the hub drops its sender or the socket fails.
    while let Ok(first) = rx.recv() {
        let mut closing = false;
        let mut next = Some(first);
        let mut written = 0;
        while let Some(out) = next.take() {
            let msg = match out {
                Outbound::Batch(texts) => {
                    for t in texts {
                        if write_message(ws, tcp, Message::Text(t.into())).is_err() {
                            return;
                        }
                        written += 1;
                    }
                    if written >= 1024 {
                        break;
                    }
                    next = rx.try_recv().ok();
                    continue;
                }
                Outbound::Text(t) => Message::Text(t.into()),
                Outbound::Ping => Message::Ping(Vec::new().into()),
                Outbound::Close => {
                    closing = true;
                    Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "node shutting down".into(),
                    }))
                }
            };
            if write_message(ws, tcp, msg).is_err() {
                return;
            }
            written += 1;
            if closing || written >= 1024 {
                break;
            }
            next = rx.try_recv().ok();
        }
        if flush(ws, tcp).is_err() || closing {
            return;
        }
    }
}

/// Queue one message in the WebSocket's write buffer. When the socket is full, wait
/// until everything buffered is out before taking more, so the user-space buffer stays
/// near tungstenite's `write_buffer_size` instead of growing toward its maximum.
fn write_message(ws: &Mutex<Ws>, tcp: &TcpStream, mut msg: Message) -> Result<(), ()> {
    loop {
        let result = lock(ws).write(msg);
        match result {
            Ok(()) => return Ok(()),
            // The frame is buffered; drain before accepting the next one.
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                return flush(ws, tcp);
            }
            Err(tungstenite::Error::WriteBufferFull(m)) => {
                msg = *m;
                flush(ws, tcp)?;
            }
            Err(e) => {
                crate::log_debug!("relay write failed: {e}");
                return Err(());
            }
        }
    }
}

fn flush(ws: &Mutex<Ws>, tcp: &TcpStream) -> Result<(), ()> {
    loop {
        let result = lock(ws).flush();
        match result {
            Ok(()) => return Ok(()),
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                if !wait_fd(tcp, libc::POLLOUT) {
                    return Err(());
                }
            }
            Err(e) => {
                crate::log_debug!("relay flush failed: {e}");
                return Err(());
            }
        }
    }
}

/// What a dropped frame said about itself, read without keeping its big strings.
#[derive(Debug, Default, serde::Deserialize)]
struct Peek {
    #[serde(default, deserialize_with = "lenient")]
    cmd_id: Option<String>,
    #[serde(default)]
    payload: Option<PeekPayload>,
    #[serde(skip)]
    action: Option<String>,
    #[serde(skip)]
    session_id: Option<String>,
    #[serde(skip)]
    trace_id: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct PeekPayload {
    #[serde(default, deserialize_with = "lenient")]
    action: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    session_id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    trace_id: Option<String>,
}

/// A string field, or `None` for anything else (never an error).
fn lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::Deserialize;
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) if s.len() <= 256 => Some(s),
        _ => None,
    })
}

fn peek(text: &str) -> Peek {
    let mut p: Peek = serde_json::from_str(text).unwrap_or_default();
    if let Some(pl) = p.payload.take() {
        p.action = pl.action;
        p.session_id = pl.session_id;
        p.trace_id = pl.trace_id;
    }
    p
}

/// Block until the socket is ready for `events` (or has hung up). False on poll failure.
fn wait_fd(tcp: &TcpStream, events: libc::c_short) -> bool {
    let mut pfd = libc::pollfd {
        fd: tcp.as_raw_fd(),
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, -1) };
        if rc >= 0 {
            return true;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
    }
}

/// Split `scheme://host[:port]/...` into (tls, host, port), parsed by `http::Uri` as
/// tungstenite will parse it for the handshake. An IPv6 host comes without brackets.
fn host_port(url: &str) -> Result<(bool, String, u16), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("the relay URL is not valid: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => return Err("the relay URL is not ws:// or wss://".into()),
    };
    let authority = uri.authority().ok_or("the relay URL has no host")?;
    let host = authority.host();
    // What follows the host (after any userinfo): nothing, or `:` and the port.
    let host_and_port = authority.as_str().rsplit('@').next().unwrap_or("");
    let port = match host_and_port
        .get(host.len()..)
        .and_then(|r| r.strip_prefix(':'))
    {
        Some(p) => p.parse().map_err(|_| "bad port")?,
        None if tls => 443,
        None => 80,
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("the relay URL has no host".into());
    }
    Ok((tls, host.to_string(), port))
}

fn connect(target: &Target) -> Result<(Ws, TcpStream), Down> {
    let lost = |what: &str, e: &dyn std::fmt::Display| {
        Down::Lost(format!("{what} {}: {e}", target.display))
    };
    let (tls, host, port) = host_port(&target.url).map_err(|e| lost("bad URL", &e))?;
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| lost("cannot resolve", &e))?
        .collect();
    let mut last_err = None;
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let tcp = match (tcp, last_err) {
        (Some(t), _) => t,
        (None, Some(e)) => return Err(lost("cannot connect to", &e)),
        (None, None) => return Err(lost("no address for", &"empty DNS answer")),
    };
    let _ = tcp.set_nodelay(true);
    tcp.set_read_timeout(Some(CONNECT_TIMEOUT))
        .map_err(|e| lost("socket setup for", &e))?;
    tcp.set_write_timeout(Some(CONNECT_TIMEOUT))
        .map_err(|e| lost("socket setup for", &e))?;
    let raw = tcp.try_clone().map_err(|e| lost("socket setup for", &e))?;
    let stream = if tls {
        let name = ServerName::try_from(host.clone()).map_err(|e| lost("bad TLS name for", &e))?;
        let mut conn = ClientConnection::new(target.tls.clone(), name)
            .map_err(|e| lost("TLS setup for", &e))?;
        let mut sock = tcp;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)
                .map_err(|e| lost("TLS handshake with", &e))?;
        }
        Stream::Tls(Box::new(TlsStream { conn, tcp: sock }))
    } else {
        Stream::Plain(tcp)
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(target.max_message))
        .max_frame_size(Some(target.max_message))
        .max_write_buffer_size(MAX_MESSAGE + (1 << 20));
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(
        target.url.as_str(),
    )
    .map_err(|e| {
        lost(
            "bad request for",
            &crate::sys::logging::redact(&e.to_string(), &[]),
        )
    })?;
    if let Ok(ua) = concat!("coding-bridge-agent/", env!("CARGO_PKG_VERSION")).parse() {
        request.headers_mut().insert("user-agent", ua);
    }
    let ws = match tungstenite::client::client_with_config(request, stream, Some(config)) {
        Ok((ws, _resp)) => ws,
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            return Err(if status == 401 || status == 403 {
                Down::Rejected(format!("the relay refused the node token (HTTP {status})"))
            } else {
                Down::Lost(format!(
                    "the relay answered the WebSocket handshake with HTTP {status}"
                ))
            });
        }
        Err(tungstenite::HandshakeError::Failure(e)) => {
            return Err(lost("WebSocket handshake with", &e));
        }
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            return Err(lost("WebSocket handshake timed out with", &"no answer"));
        }
    };
    raw.set_read_timeout(None)
        .map_err(|e| lost("socket setup for", &e))?;
    raw.set_write_timeout(None)
        .map_err(|e| lost("socket setup for", &e))?;
    raw.set_nonblocking(true)
        .map_err(|e| lost("socket setup for", &e))?;
    Ok((ws, raw))
}

/// Plain TCP or our TLS stream.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A rustls client session over a TCP socket, with reads that only read the socket and
/// writes that only write it (see the module doc for why).
pub struct TlsStream {
    conn: ClientConnection,
    tcp: TcpStream,
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // No plaintext buffered: pull TLS records from the socket (WouldBlock passes up).
            self.conn.read_tls(&mut self.tcp)?;
            self.conn.process_new_packets().map_err(io::Error::other)?;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let n = self.conn.writer().write(buf)?;
            if n > 0 || buf.is_empty() {
                // Opportunistically move records to the socket; a full socket is fine here.
                while self.conn.wants_write() {
                    match self.conn.write_tls(&mut self.tcp) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                return Ok(n);
            }
            // rustls' send buffer is full: drain it to the socket first.
            self.conn.write_tls(&mut self.tcp)?;
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.conn.writer().flush()?;
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.tcp)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeks_at_a_big_frame() {
        let big = "A".repeat(1 << 20);
        let text = serde_json::json!({"type": "browser.to_node", "cmd_id": "c1",
            "payload": {"action": "session.start", "session_id": "s", "trace_id": 5,
                        "images": [{"data": big}]}})
        .to_string();
        let p = peek(&text);
        assert_eq!(p.cmd_id.as_deref(), Some("c1"));
        assert_eq!(p.action.as_deref(), Some("session.start"));
        assert_eq!(p.session_id.as_deref(), Some("s"));
        assert_eq!(p.trace_id, None, "not a string");
        assert_eq!(peek("not json").cmd_id, None);
    }

    #[test]
    fn socket_urls() {
        let (url, display) = socket_url("https://relay.example/", "a+b/c");
        assert_eq!(url, "wss://relay.example/ws/node?token=a%2Bb%2Fc");
        assert_eq!(display, "wss://relay.example/ws/node");
        let (url, _) = socket_url("http://127.0.0.1:8080/base", "tok");
        assert_eq!(url, "ws://127.0.0.1:8080/base/ws/node?token=tok");
        let (url, _) = socket_url("https://r", "a-b._~c&d=e#f%g é");
        assert_eq!(
            url,
            "wss://r/ws/node?token=a-b._~c%26d%3De%23f%25g%20%C3%A9"
        );
    }

    #[test]
    fn host_ports() {
        assert_eq!(host_port("wss://h/ws").unwrap(), (true, "h".into(), 443));
        assert_eq!(host_port("ws://h:9/ws").unwrap(), (false, "h".into(), 9));
        assert_eq!(
            host_port("ws://[::1]:7/x").unwrap(),
            (false, "::1".into(), 7)
        );
        assert!(host_port("http://h").is_err());
        assert!(host_port("ws://h:notaport/").is_err());
        assert!(host_port("ws://h:70000/").is_err());
        assert!(host_port("wss:///x").is_err());
        assert_eq!(
            host_port("wss://[::1]/x?token=a%2B").unwrap(),
            (true, "::1".into(), 443)
        );
        assert_eq!(host_port("ws://u:p@h:5/x").unwrap(), (false, "h".into(), 5));
    }
}
