//! A loopback fake relay for tests, written once and reused by every later issue.
//!
//! One listener serves both halves of the relay protocol:
//! - the pairing endpoints `POST /pair/start` and `POST /pair/poll`, answering from a
//!   script of [`Reply`]s (pending → ready, expired, 404, 500, garbage, hang up ...);
//! - the node WebSocket `GET /ws/node?token=...`, which checks the token, records every
//!   frame the node sends, and lets the test send frames, ack, close or drop the link.
//!
//! Each TCP connection gets its own thread. Optionally served over TLS with a test cert.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use serde_json::{Value, json};
use tungstenite::protocol::{CloseFrame, Role, frame::coding::CloseCode};
use tungstenite::{Message, WebSocket};

/// How the relay answers one HTTP request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status and a JSON body.
    Json(u16, Value),
    /// A status and a raw body (garbage, HTML ...).
    Raw(u16, String),
    /// Close the connection without answering.
    HangUp,
}

impl Reply {
    pub fn pending() -> Reply {
        Reply::Json(200, json!({"status": "pending"}))
    }
    pub fn ready(token: &str) -> Reply {
        Reply::Json(200, json!({"status": "ready", "node_token": token}))
    }
    pub fn code(code: &str, expires_in: u64) -> Reply {
        Reply::Json(200, json!({"pair_code": code, "expires_in": expires_in}))
    }
}

/// One HTTP request the relay saw.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub body: String,
}

/// What the test wants done on the live WebSocket connections.
enum Out {
    Frame(Message),
    /// Stop reading and answering (a half-dead link).
    Mute,
    Unmute,
    Close(u16, String),
    Drop,
}

struct State {
    start: VecDeque<Reply>,
    start_default: Reply,
    poll: VecDeque<Reply>,
    poll_default: Reply,
    requests: Vec<Recorded>,
    /// Tokens the WebSocket accepts; `None` accepts any.
    tokens: Option<Vec<String>>,
    /// Answer the handshake with this HTTP status instead of upgrading.
    ws_reject: Option<u16>,
    /// Answer the handshake with this HTTP status until then (a relay down for a while).
    ws_reject_until: Option<(u16, Instant)>,
    /// Acknowledge every durable event as it arrives.
    auto_ack: bool,
    /// Senders to the live connections, newest last.
    conns: Vec<Sender<Out>>,
    /// The request target of every WebSocket handshake, in order.
    handshakes: Vec<String>,
    /// When each WebSocket handshake arrived and whether it was accepted, in order.
    handshake_times: Vec<(Instant, bool)>,
    /// Open WebSocket connections.
    live: usize,
}

/// The fake relay. Dropping it stops accepting; live connections end with the test.
pub struct FakeRelay {
    addr: SocketAddr,
    tls: bool,
    state: Arc<Mutex<State>>,
    frames: Receiver<Value>,
    stop: Arc<AtomicBool>,
}

/// A stream the relay can serve on: plain TCP or TLS.
pub trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

pub type TlsAcceptor = Arc<rustls::ServerConfig>;

impl FakeRelay {
    pub fn start() -> FakeRelay {
        FakeRelay::start_inner(None)
    }

    /// Serve over TLS with `config` (see the TLS tests for a generated certificate).
    pub fn start_tls(config: TlsAcceptor) -> FakeRelay {
        FakeRelay::start_inner(Some(config))
    }

    fn start_inner(tls: Option<TlsAcceptor>) -> FakeRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake relay");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            start: VecDeque::new(),
            start_default: Reply::code("ABC123", 600),
            poll: VecDeque::new(),
            poll_default: Reply::pending(),
            requests: Vec::new(),
            tokens: None,
            ws_reject: None,
            ws_reject_until: None,
            auto_ack: false,
            conns: Vec::new(),
            handshakes: Vec::new(),
            handshake_times: Vec::new(),
            live: 0,
        }));
        let (frames_tx, frames) = unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let is_tls = tls.is_some();
        {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = state.clone();
                    let frames_tx = frames_tx.clone();
                    let tls = tls.clone();
                    std::thread::spawn(move || {
                        let _ = serve(stream, tls, state, frames_tx);
                    });
                }
            });
        }
        FakeRelay {
            addr,
            tls: is_tls,
            state,
            frames,
            stop,
        }
    }

    /// The base URL to give the daemon (`http://127.0.0.1:port` or `https://localhost:port`).
    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://127.0.0.1:{}", self.addr.port())
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("relay state"))
    }

    /// Answer the next `/pair/start` requests with these, then the default.
    pub fn script_start(&self, replies: impl IntoIterator<Item = Reply>) {
        self.with(|s| s.start.extend(replies));
    }

    /// Answer the next `/pair/poll` requests with these, then the default.
    pub fn script_poll(&self, replies: impl IntoIterator<Item = Reply>) {
        self.with(|s| s.poll.extend(replies));
    }

    pub fn set_poll_default(&self, r: Reply) {
        self.with(|s| s.poll_default = r);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.with(|s| s.requests.clone())
    }

    /// Accept only these tokens on the WebSocket (others get HTTP 401).
    pub fn accept_tokens(&self, tokens: &[&str]) {
        self.with(|s| s.tokens = Some(tokens.iter().map(|t| t.to_string()).collect()));
    }

    /// Refuse every WebSocket handshake with `status` (None to accept again).
    pub fn reject_ws(&self, status: Option<u16>) {
        self.with(|s| s.ws_reject = status);
    }

    /// Refuse every WebSocket handshake with `status` for `d` from now, then accept
    /// again by itself (a relay that is down for a while). Returns when it accepts again.
    pub fn reject_ws_for(&self, status: u16, d: Duration) -> Instant {
        let until = Instant::now() + d;
        self.with(|s| s.ws_reject_until = Some((status, until)));
        until
    }

    pub fn set_auto_ack(&self, on: bool) {
        self.with(|s| s.auto_ack = on);
    }

    /// Request targets of all WebSocket handshakes so far.
    pub fn handshakes(&self) -> Vec<String> {
        self.with(|s| s.handshakes.clone())
    }

    /// When each WebSocket handshake arrived and whether it was accepted, in order.
    pub fn handshake_times(&self) -> Vec<(Instant, bool)> {
        self.with(|s| s.handshake_times.clone())
    }

    /// WebSocket connections currently open.
    pub fn live_connections(&self) -> usize {
        self.with(|s| s.live)
    }

    /// The next frame (parsed JSON) the node sent on any connection.
    pub fn recv(&self, timeout: Duration) -> Option<Value> {
        self.frames.recv_timeout(timeout).ok()
    }

    /// Skip frames until one satisfies `pred`.
    pub fn recv_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let v = self.frames.recv_timeout(left).ok()?;
            if pred(&v) {
                return Some(v);
            }
        }
    }

    /// The next frame whose envelope `type` is `ty`.
    pub fn recv_type(&self, ty: &str, timeout: Duration) -> Option<Value> {
        self.recv_until(timeout, |v| v["type"] == ty)
    }

    /// The next node.to_browser event named `event`.
    pub fn recv_event(&self, event: &str, timeout: Duration) -> Option<Value> {
        self.recv_until(timeout, |v| {
            v["type"] == "node.to_browser" && v["payload"]["event"] == event
        })
    }

    /// Send a raw WebSocket message on the newest connection.
    pub fn send_message(&self, m: Message) -> bool {
        self.with(|s| {
            s.conns
                .last()
                .map(|c| c.send(Out::Frame(m)).is_ok())
                .unwrap_or(false)
        })
    }

    /// Send an envelope as a text frame on the newest connection.
    pub fn send(&self, envelope: Value) -> bool {
        self.send_message(Message::Text(envelope.to_string().into()))
    }

    /// Send a browser command (`browser.to_node`) with `cmd_id`.
    pub fn command(&self, cmd_id: &str, payload: Value) -> bool {
        self.send(json!({
            "v": 2, "id": new_id(), "ts": 0, "type": "browser.to_node",
            "cmd_id": cmd_id, "payload": payload,
        }))
    }

    /// Acknowledge durable events up to `seq`.
    pub fn ack(&self, seq: u64) -> bool {
        self.send(json!({"v": 2, "id": new_id(), "ts": 0, "type": "node.ack", "payload": {"up_to_node_seq": seq}}))
    }

    /// Close every live connection with a close frame.
    pub fn close_all(&self, code: u16, reason: &str) {
        self.with(|s| {
            for c in s.conns.drain(..) {
                let _ = c.send(Out::Close(code, reason.to_string()));
            }
        });
    }

    /// Keep the newest connection open but stop reading or answering on it.
    pub fn mute(&self) {
        self.with(|s| {
            if let Some(c) = s.conns.last() {
                let _ = c.send(Out::Mute);
            }
        });
    }

    /// Read and answer again on the newest connection after [`FakeRelay::mute`].
    pub fn unmute(&self) {
        self.with(|s| {
            if let Some(c) = s.conns.last() {
                let _ = c.send(Out::Unmute);
            }
        });
    }

    /// Drop every live connection at the TCP level, without a close frame.
    pub fn drop_all(&self) {
        self.with(|s| {
            for c in s.conns.drain(..) {
                let _ = c.send(Out::Drop);
            }
        });
    }
}

impl Drop for FakeRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.drop_all();
        let _ = TcpStream::connect(self.addr); // wake the accept loop
    }
}

pub fn new_id() -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(1);
    format!("relay{:027x}", N.fetch_add(1, Ordering::Relaxed))
}

/// Read the request head (up to `\r\n\r\n`), returning it and any bytes read past it.
fn read_head(s: &mut dyn Io) -> io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(pos + 4);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("head too large"));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn respond(s: &mut dyn Io, status: u16, body: &str) -> io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}

fn serve(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    state: Arc<Mutex<State>>,
    frames: Sender<Value>,
) -> io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let raw = tcp.try_clone()?;
    let mut stream: Box<dyn Io> = match tls {
        Some(cfg) => {
            let conn = rustls::ServerConnection::new(cfg).map_err(io::Error::other)?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
        None => Box::new(tcp),
    };
    let (head, mut rest) = read_head(stream.as_mut())?;
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let path = target.split('?').next().unwrap_or("").to_string();

    if path == "/ws/node" {
        return serve_ws(stream, raw, &head, &target, rest, state, frames);
    }

    let len: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while rest.len() < len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        rest.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&rest).into_owned();
    let reply = {
        let mut s = state.lock().expect("state");
        s.requests.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            body,
        });
        match (method.as_str(), path.as_str()) {
            ("POST", "/pair/start") => s
                .start
                .pop_front()
                .unwrap_or_else(|| s.start_default.clone()),
            ("POST", "/pair/poll") => s.poll.pop_front().unwrap_or_else(|| s.poll_default.clone()),
            _ => Reply::Json(404, json!({"detail": "not found"})),
        }
    };
    match reply {
        Reply::Json(st, v) => respond(stream.as_mut(), st, &v.to_string()),
        Reply::Raw(st, b) => respond(stream.as_mut(), st, &b),
        Reply::HangUp => Ok(()),
    }
}

fn serve_ws(
    mut stream: Box<dyn Io>,
    raw: TcpStream,
    head: &str,
    target: &str,
    rest: Vec<u8>,
    state: Arc<Mutex<State>>,
    frames: Sender<Value>,
) -> io::Result<()> {
    let token = target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .unwrap_or("")
        .to_string();
    let (reject, out_rx) = {
        let mut s = state.lock().expect("state");
        s.handshakes.push(target.to_string());
        let bad_token = s
            .tokens
            .as_ref()
            .map(|t| !t.contains(&token))
            .unwrap_or(false);
        let now = Instant::now();
        let down = s
            .ws_reject_until
            .and_then(|(status, until)| (now < until).then_some(status));
        let reject = s
            .ws_reject
            .or(down)
            .or(if bad_token { Some(401) } else { None });
        s.handshake_times.push((now, reject.is_none()));
        if reject.is_some() {
            (reject, None)
        } else {
            let (tx, rx) = unbounded();
            s.conns.push(tx);
            (None, Some(rx))
        }
    };
    if let Some(status) = reject {
        return respond(stream.as_mut(), status, "{\"detail\":\"unauthorized\"}");
    }
    let out_rx = out_rx.expect("accepted");
    struct Live(Arc<Mutex<State>>);
    impl Drop for Live {
        fn drop(&mut self) {
            if let Ok(mut s) = self.0.lock() {
                s.live -= 1;
            }
        }
    }
    state.lock().expect("state").live += 1;
    let _live = Live(state.clone());
    let key = header(head, "sec-websocket-key").unwrap_or("");
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    write!(
        stream,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )?;
    stream.flush()?;
    raw.set_read_timeout(Some(Duration::from_millis(5)))?;
    let mut ws = WebSocket::from_partially_read(stream, rest, Role::Server, None);
    // Greet as the real relay does.
    let _ = ws.send(Message::Text(
        json!({"v": 2, "id": new_id(), "ts": 0, "type": "node.registered", "payload": {}})
            .to_string()
            .into(),
    ));
    let mut muted = false;
    loop {
        if muted {
            match out_rx.recv() {
                Ok(Out::Drop) | Err(_) => {
                    let _ = raw.shutdown(std::net::Shutdown::Both);
                    return Ok(());
                }
                Ok(Out::Unmute) => muted = false,
                Ok(_) => continue,
            }
        }
        // Outgoing first.
        loop {
            match out_rx.try_recv() {
                Ok(Out::Frame(m)) => {
                    if ws.send(m).is_err() {
                        return Ok(());
                    }
                }
                Ok(Out::Close(code, reason)) => {
                    let _ = ws.close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    }));
                    let _ = ws.flush();
                    // Let the close frame go out, then end.
                    std::thread::sleep(Duration::from_millis(50));
                    return Ok(());
                }
                Ok(Out::Mute) => muted = true,
                Ok(Out::Unmute) => {}
                Ok(Out::Drop) | Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    let _ = raw.shutdown(std::net::Shutdown::Both);
                    return Ok(());
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
            }
        }
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = match serde_json::from_str(t.as_str()) {
                    Ok(v) => v,
                    Err(_) => json!({"type": "__unparsed__", "text": t.as_str()}),
                };
                let auto_ack = state.lock().map(|s| s.auto_ack).unwrap_or(false);
                if auto_ack && let Some(seq) = v.get("node_seq").and_then(Value::as_u64) {
                    let _ = ws.send(Message::Text(
                            json!({"v": 2, "id": new_id(), "ts": 0, "type": "node.ack", "payload": {"up_to_node_seq": seq}})
                                .to_string()
                                .into(),
                        ));
                }
                if frames.send(v).is_err() {
                    return Ok(());
                }
            }
            Ok(Message::Close(frame)) => {
                let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                let _ = frames.send(json!({"type": "__close__", "code": code}));
            }
            Ok(Message::Binary(_)) => {
                let _ = frames.send(json!({"type": "__binary__"}));
            }
            Ok(Message::Ping(_)) => {
                let _ = frames.send(json!({"type": "__ping__"}));
            }
            Ok(Message::Pong(_)) => {
                let _ = frames.send(json!({"type": "__pong__"}));
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                let _ = ws.flush();
            }
            Err(_) => return Ok(()),
        }
    }
}

/// A throwaway CA and a server certificate for `localhost` signed by it: returns the CA
/// certificate's PEM (for `CODING_BRIDGE_CA_FILE`) and a server config for [`FakeRelay::start_tls`].
pub fn test_tls() -> (String, TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, &ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key der");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .expect("server config");
    (ca_cert.pem(), Arc::new(config))
}
