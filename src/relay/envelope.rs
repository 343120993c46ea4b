//! Relay envelopes (PROTOCOL §2): parsing what the relay sends and building what the node
//! sends. Parsing is total: any text yields an [`Incoming`] or a [`ParseError`], never a
//! panic, whatever the relay or a man in the middle puts in a frame.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::protocol::events::SessionEvent;

/// Protocol version written in every envelope.
pub const VERSION: u64 = 2;

/// A frame from the relay that the hub acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `node.registered`: the relay accepted us.
    Registered,
    /// `node.heartbeat_ack`.
    HeartbeatAck,
    /// `browser.to_node`: a command from a browser.
    Command {
        cmd_id: Option<String>,
        payload: Map<String, Value>,
    },
    /// `node.ack`: durable events up to this sequence number are stored.
    Ack { up_to: u64 },
    /// `error`: a relay-side error.
    Error { message: String },
    /// Any other type: logged and ignored.
    Other { kind: String },
}

/// Why a frame was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    NotJson,
    NotAnObject,
    NoType,
    BadPayload(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::NotJson => f.write_str("not JSON"),
            ParseError::NotAnObject => f.write_str("not a JSON object"),
            ParseError::NoType => f.write_str("no string `type`"),
            ParseError::BadPayload(why) => write!(f, "bad payload: {why}"),
        }
    }
}

/// Parse one text frame.
pub fn parse(text: &str) -> Result<Incoming, ParseError> {
    let value: Value = serde_json::from_str(text).map_err(|_| ParseError::NotJson)?;
    let Value::Object(mut env) = value else {
        return Err(ParseError::NotAnObject);
    };
    let kind = match env.get("type") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(ParseError::NoType),
    };
    let payload = env.remove("payload").unwrap_or(Value::Null);
    match kind.as_str() {
        "node.registered" => Ok(Incoming::Registered),
        "node.heartbeat_ack" => Ok(Incoming::HeartbeatAck),
        "browser.to_node" => {
            let Value::Object(payload) = payload else {
                return Err(ParseError::BadPayload("command payload is not an object"));
            };
            let cmd_id = match env.get("cmd_id").or_else(|| payload.get("cmd_id")) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            Ok(Incoming::Command { cmd_id, payload })
        }
        "node.ack" => {
            let up_to = payload
                .get("up_to_node_seq")
                .and_then(|v| {
                    v.as_u64()
                        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                })
                .ok_or(ParseError::BadPayload(
                    "node.ack without a numeric up_to_node_seq",
                ))?;
            Ok(Incoming::Ack { up_to })
        }
        "error" => {
            let message = match &payload {
                Value::Object(m) => m
                    .get("message")
                    .or_else(|| m.get("detail"))
                    .or_else(|| m.get("error"))
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| payload.to_string()),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Ok(Incoming::Error { message })
        }
        _ => Ok(Incoming::Other { kind }),
    }
}

#[derive(Serialize)]
struct Outgoing<'a, P: Serialize> {
    v: u64,
    id: &'a str,
    ts: u64,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_seq: Option<u64>,
    payload: &'a P,
}

/// Serialize an envelope of `kind` carrying `payload`.
pub fn build<P: Serialize>(
    kind: &str,
    id: &str,
    ts: u64,
    from_node: Option<&str>,
    node_seq: Option<u64>,
    payload: &P,
) -> String {
    let env = Outgoing {
        v: VERSION,
        id,
        ts,
        kind,
        from_node,
        node_seq,
        payload,
    };
    // Serializing our own payload types (and JSON values) to a String cannot fail.
    serde_json::to_string(&env).unwrap_or_default()
}

/// Events that answer one request and are never queued for redelivery.
pub const REQUEST_SCOPED: &[&str] = &[
    "sessions.snapshot",
    "permissions.snapshot",
    "history.snapshot",
    "history.detail",
    "fs.list",
    "capabilities",
    "pong",
];

/// Is this event durable (PROTOCOL §2: has a `session_id`, not a request-scoped reply)?
pub fn is_durable(payload: &SessionEvent) -> bool {
    let has_session = payload.session_id.as_deref().is_some_and(|s| !s.is_empty());
    has_session && !REQUEST_SCOPED.contains(&payload.name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_known_types() {
        assert_eq!(
            parse(r#"{"type":"node.registered","payload":{}}"#),
            Ok(Incoming::Registered)
        );
        assert_eq!(
            parse(r#"{"type":"node.ack","payload":{"up_to_node_seq":7}}"#),
            Ok(Incoming::Ack { up_to: 7 })
        );
        match parse(r#"{"type":"browser.to_node","cmd_id":"c1","payload":{"action":"ping"}}"#) {
            Ok(Incoming::Command { cmd_id, payload }) => {
                assert_eq!(cmd_id.as_deref(), Some("c1"));
                assert_eq!(payload["action"], "ping");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(r#"{"type":"what.is.this"}"#),
            Ok(Incoming::Other {
                kind: "what.is.this".into()
            })
        );
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse("nope"), Err(ParseError::NotJson));
        assert_eq!(parse("[1,2]"), Err(ParseError::NotAnObject));
        assert_eq!(parse(r#"{"type":5}"#), Err(ParseError::NoType));
        assert!(parse(r#"{"type":"browser.to_node","payload":"x"}"#).is_err());
        assert!(parse(r#"{"type":"node.ack","payload":{"up_to_node_seq":"x"}}"#).is_err());
        assert!(parse(r#"{"type":"node.ack","payload":[]}"#).is_err());
    }

    #[test]
    fn durability() {
        use crate::protocol::events::Event;
        let text = || Event::Text {
            text: "x".into(),
            id: None,
        };
        assert!(is_durable(&SessionEvent::new("s", None, text())));
        assert!(!is_durable(&SessionEvent::new("s", None, Event::Pong)));
        assert!(!is_durable(&SessionEvent::reply(None, text())));
        assert!(!is_durable(&SessionEvent::new("", None, text())));
    }

    /// Property: no input makes the parser panic. A small xorshift generator mutates
    /// valid envelopes (byte flips, truncation, splicing) and emits random JSON shapes.
    #[test]
    fn never_panics_on_arbitrary_input() {
        let seeds = [
            r#"{"v":2,"id":"a","ts":1,"type":"browser.to_node","cmd_id":"c","payload":{"action":"ping","session_id":"s"}}"#,
            r#"{"type":"node.ack","payload":{"up_to_node_seq":18446744073709551615}}"#,
            r#"{"type":"error","payload":{"message":{"nested":[1,2,{"x":null}]}}}"#,
            r#"{"type":"node.heartbeat_ack","payload":null}"#,
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let shapes = [
            "null",
            "true",
            "1e999",
            "-0",
            "\"\\ud800\"",
            "[]",
            "{}",
            "[[[[[[[[]]]]]]]]",
            "{\"type\":null}",
            "1.5",
        ];
        for i in 0..200_000u64 {
            let seed = seeds[(i % seeds.len() as u64) as usize].as_bytes();
            let mut bytes = seed.to_vec();
            for _ in 0..(next() % 6) {
                let r = next();
                let pos = (r as usize) % bytes.len().max(1);
                let specials = b"{}[]\",:\\0";
                match r % 5 {
                    0 if !bytes.is_empty() => bytes[pos] = (r >> 8) as u8,
                    0 => {}
                    1 => bytes.truncate(pos),
                    2 => bytes.insert(
                        pos.min(bytes.len()),
                        specials[(r >> 16) as usize % specials.len()],
                    ),
                    3 => {
                        let shape = shapes[(r >> 20) as usize % shapes.len()].as_bytes();
                        let at = pos.min(bytes.len());
                        bytes.splice(at..at, shape.iter().copied());
                    }
                    _ => {
                        if pos < bytes.len() {
                            bytes.remove(pos);
                        }
                    }
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse(&text);
        }
    }

    #[test]
    fn builds_envelopes() {
        let p = json!({"event": "pong"});
        let s = build("node.to_browser", "abc", 5, Some("node"), Some(3), &p);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["v"], 2);
        assert_eq!(v["node_seq"], 3);
        assert_eq!(v["payload"]["event"], "pong");
        let s = build("node.heartbeat", "abc", 5, None, None, &p);
        assert!(!s.contains("node_seq"));
    }
}
