//! Every event the node sends to the browser (`node.to_browser` payloads, PROTOCOL §4),
//! typed: the one place that names and serializes them. Layers build an [`Event`] in an
//! envelope ([`SessionEvent`]); the chat channels match on its variants instead of
//! re-parsing JSON by name. The JSON is exactly what the `json!` maps at the call sites
//! build today (each test below names the site it mirrors).

use serde::Serialize;
use serde_json::{Map, Number, Value};

/// An event with what every event carries: `session_id` (absent for the node-wide
/// replies: snapshots, `fs.list`, `capabilities`, `pong`, and errors about a command that
/// named no session), `trace_id` (absent when the command had none) and
/// `parent_tool_use_id` (only on a subagent's events).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionEvent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_tool_use_id: Option<String>,
    #[serde(flatten)]
    pub event: Event,
}

impl SessionEvent {
    /// An event of session `session_id` (what `Session::event` builds).
    pub fn new(session_id: impl Into<String>, trace_id: Option<&Value>, event: Event) -> Self {
        SessionEvent {
            session_id: Some(session_id.into()),
            trace_id: trace_id.cloned(),
            parent_tool_use_id: None,
            event,
        }
    }

    /// A reply that is about no one session (what `traced(json!({...}), trace)` builds).
    pub fn reply(trace_id: Option<&Value>, event: Event) -> Self {
        SessionEvent {
            session_id: None,
            trace_id: trace_id.cloned(),
            parent_tool_use_id: None,
            event,
        }
    }

    /// Tagged with the subagent it came from, if any (what `Session::turn_event` adds).
    pub fn under(mut self, parent_tool_use_id: Option<String>) -> Self {
        self.parent_tool_use_id = parent_tool_use_id;
        self
    }

    pub fn name(&self) -> &'static str {
        self.event.name()
    }

    /// The payload as sent: the one place events become JSON.
    pub fn to_value(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(v) => v,
            // Cannot happen (every field is a string, a number, a bool or JSON already);
            // should it, the browser still learns which event of which session it was.
            Err(_) => {
                let mut m = Map::new();
                m.insert("event".into(), Value::String(self.name().into()));
                if let Some(s) = &self.session_id {
                    m.insert("session_id".into(), Value::String(s.clone()));
                }
                Value::Object(m)
            }
        }
    }
}

impl From<SessionEvent> for Value {
    fn from(e: SessionEvent) -> Value {
        e.to_value()
    }
}

/// One event of a conversation's history, as JSON text (written into the frame as is).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct RawEvent(Box<serde_json::value::RawValue>);

impl RawEvent {
    /// Its JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawEvent {
    fn eq(&self, other: &RawEvent) -> bool {
        self.json() == other.json()
    }
}

/// `v` as a [`RawEvent`] (a `Value` always serializes; `null` otherwise).
pub fn raw(v: &Value) -> RawEvent {
    RawEvent(serde_json::value::to_raw_value(v).unwrap_or_else(|_| {
        serde_json::value::RawValue::from_string("null".into()).unwrap_or_default()
    }))
}

/// One event, by name; its fields are the payload's besides the envelope's.
/// `Option` fields without `skip_serializing_if` are sent as `null` when `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event")]
pub enum Event {
    #[serde(rename = "session.started")]
    Started(Description),
    /// Sent under the provisional id: the agent's real one, which keys the session now.
    #[serde(rename = "session.identified")]
    Identified { sdk_session_id: String },
    #[serde(rename = "session.text_delta")]
    TextDelta { text: String, id: String },
    /// A whole block; `id` when it closes (or corrects) a streamed one.
    #[serde(rename = "session.text")]
    Text {
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Thinking is sent whole, never as deltas.
    #[serde(rename = "session.thinking")]
    Thinking { text: String },
    #[serde(rename = "session.tool_use")]
    ToolUse {
        tool: Option<String>,
        tool_use_id: Option<String>,
        /// The tool's input as the agent gave it.
        input: Value,
    },
    #[serde(rename = "session.tool_result")]
    ToolResult {
        tool_use_id: Option<String>,
        content: String,
        is_error: bool,
    },
    /// A turn's end (see [`Event::interrupted`], [`Event::local_result`]).
    #[serde(rename = "session.result")]
    Result {
        subtype: Option<String>,
        is_error: bool,
        result: Option<String>,
        /// A number as the agent reported it (`0` stays an integer).
        cost_usd: Option<Number>,
        cut_uuid: Option<String>,
        sdk_session_id: Option<String>,
    },
    #[serde(rename = "session.notice")]
    Notice {
        level: Level,
        code: String,
        /// The slash command a `slash_unavailable` notice is about.
        #[serde(skip_serializing_if = "Option::is_none")]
        command: Option<String>,
        text: String,
    },
    #[serde(rename = "session.error")]
    Error {
        /// Absent only in the "unknown session" error.
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        message: String,
        /// A crashed agent process: `exception`, `exit_code`, `stderr`.
        #[serde(flatten)]
        crash: Option<Crash>,
    },
    #[serde(rename = "session.closed")]
    Closed,
    #[serde(rename = "session.rewound")]
    Rewound {
        cut_uuid: Option<String>,
        prompt: String,
    },
    /// Events of the session were dropped from the outbox; sent without a `node_seq`.
    #[serde(rename = "session.stream_truncated")]
    StreamTruncated { reason: String, resume_with: String },
    #[serde(rename = "permission.request")]
    PermissionRequest {
        request_id: String,
        tool: Option<String>,
        /// The tool input shown (long strings cut when `input_truncated`).
        input: Value,
        title: Option<String>,
        display_name: Option<String>,
        description: Option<String>,
        tool_use_id: Option<String>,
        #[serde(skip_serializing_if = "is_false")]
        input_truncated: bool,
    },
    #[serde(rename = "permission.resolved")]
    PermissionResolved {
        request_id: String,
        decision: Decision,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The pending `permission.request` events, in arrival order.
    #[serde(rename = "permissions.snapshot")]
    PermissionsSnapshot { requests: Vec<SessionEvent> },
    #[serde(rename = "sessions.snapshot")]
    SessionsSnapshot { sessions: Vec<SessionSummary> },
    #[serde(rename = "history.snapshot")]
    HistorySnapshot { sessions: Vec<HistoryEntry> },
    /// `history.get`'s answer; its `session_id` is the envelope's.
    #[serde(rename = "history.detail")]
    HistoryDetail {
        provider: String,
        title: String,
        cwd: Option<String>,
        git_branch: Option<String>,
        /// The launch selector (`""`: none).
        model: String,
        resolved_model: Option<String>,
        permission_mode: String,
        effort: Option<String>,
        /// The conversation's events as the history readers build them, held as JSON
        /// text ([`raw`]): a third of the memory of `Value` trees for 4 MiB of them.
        events: Vec<RawEvent>,
        truncated: bool,
        /// Every `history.detail` sent has it; the one read from disk gets it afterwards.
        #[serde(skip_serializing_if = "Option::is_none")]
        running: Option<bool>,
    },
    /// See [`Event::fs_list`] and [`Event::fs_list_error`].
    #[serde(rename = "fs.list")]
    FsList {
        path: String,
        parent: Option<String>,
        sep: String,
        entries: Vec<FsEntry>,
        #[serde(skip_serializing_if = "Option::is_none")]
        truncated: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Every provider's description, as `node::capabilities` builds it.
    #[serde(rename = "capabilities")]
    Capabilities { providers: Vec<Value> },
    #[serde(rename = "pong")]
    Pong,
}

/// A string the agent sent, as an event's optional text field (anything but a string is
/// `None`, sent as `null`).
pub fn text_of(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What `session.started` says of a session, and each `sessions.snapshot` entry with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Description {
    pub cwd: String,
    /// The browser's selector (`""`: the default).
    pub model: String,
    pub resolved_model: Option<String>,
    pub provider: String,
    /// Never null (`"default"`).
    pub permission_mode: String,
    pub effort: Option<String>,
}

/// One `sessions.snapshot` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionSummary {
    pub session_id: String,
    pub status: Status,
    #[serde(flatten)]
    pub describe: Description,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Idle,
    Running,
}

/// One `history.snapshot` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub provider: String,
    pub session_id: String,
    pub title: String,
    pub cwd: Option<String>,
    pub git_branch: Option<String>,
    /// Ms since the epoch.
    pub updated_at: u64,
    pub message_count: u64,
    pub running: bool,
    pub unread: bool,
}

/// One `fs.list` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FsEntry {
    pub name: String,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: FsKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    Dir,
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    Cancelled,
}

/// What a `session.error` about a crashed agent process adds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crash {
    pub exception: String,
    pub exit_code: Option<i32>,
    pub stderr: String,
}

impl Event {
    /// The event's name, as its `event` key says.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Started(_) => "session.started",
            Event::Identified { .. } => "session.identified",
            Event::TextDelta { .. } => "session.text_delta",
            Event::Text { .. } => "session.text",
            Event::Thinking { .. } => "session.thinking",
            Event::ToolUse { .. } => "session.tool_use",
            Event::ToolResult { .. } => "session.tool_result",
            Event::Result { .. } => "session.result",
            Event::Notice { .. } => "session.notice",
            Event::Error { .. } => "session.error",
            Event::Closed => "session.closed",
            Event::Rewound { .. } => "session.rewound",
            Event::StreamTruncated { .. } => "session.stream_truncated",
            Event::PermissionRequest { .. } => "permission.request",
            Event::PermissionResolved { .. } => "permission.resolved",
            Event::PermissionsSnapshot { .. } => "permissions.snapshot",
            Event::SessionsSnapshot { .. } => "sessions.snapshot",
            Event::HistorySnapshot { .. } => "history.snapshot",
            Event::HistoryDetail { .. } => "history.detail",
            Event::FsList { .. } => "fs.list",
            Event::Capabilities { .. } => "capabilities",
            Event::Pong => "pong",
        }
    }

    /// A `session.error` with a code (`Session::error`).
    pub fn error(code: impl Into<String>, message: impl Into<String>) -> Event {
        Event::Error {
            code: Some(code.into()),
            message: message.into(),
            crash: None,
        }
    }

    /// The `session.error` of an agent process that died mid-turn.
    pub fn crashed(message: impl Into<String>, exit_code: Option<i32>, stderr: String) -> Event {
        Event::Error {
            code: Some("process_crashed".into()),
            message: message.into(),
            crash: Some(Crash {
                exception: "process_crashed".into(),
                exit_code,
                stderr,
            }),
        }
    }

    /// A `session.notice` at info level.
    pub fn notice(code: impl Into<String>, text: impl Into<String>) -> Event {
        Event::Notice {
            level: Level::Info,
            code: code.into(),
            command: None,
            text: text.into(),
        }
    }

    /// A `session.notice` at warning level (`Session::warning`).
    pub fn warning(code: impl Into<String>, text: impl Into<String>) -> Event {
        Event::Notice {
            level: Level::Warning,
            code: code.into(),
            command: None,
            text: text.into(),
        }
    }

    /// The result of a turn stopped by the browser (`Session::interrupted_result`);
    /// `cost_usd` is what Claude Code reported for it, if anything.
    pub fn interrupted(
        cost_usd: Option<Number>,
        cut_uuid: Option<String>,
        sdk_session_id: Option<String>,
    ) -> Event {
        Event::Result {
            subtype: Some("interrupted".into()),
            is_error: false,
            result: None,
            cost_usd,
            cut_uuid,
            sdk_session_id,
        }
    }

    /// The result of a turn the node answered itself (`Session::local_result`): no
    /// cost (an integer `0`).
    pub fn local_result(
        result: Option<String>,
        cut_uuid: Option<String>,
        sdk_session_id: Option<String>,
    ) -> Event {
        Event::Result {
            subtype: Some("notice".into()),
            is_error: false,
            result,
            cost_usd: Some(Number::from(0u64)),
            cut_uuid,
            sdk_session_id,
        }
    }

    /// A `permission.resolved` without a reason.
    pub fn resolved(request_id: impl Into<String>, decision: Decision) -> Event {
        Event::PermissionResolved {
            request_id: request_id.into(),
            decision,
            reason: None,
        }
    }

    /// A listed directory.
    pub fn fs_list(
        path: String,
        parent: Option<String>,
        entries: Vec<FsEntry>,
        truncated: bool,
    ) -> Event {
        Event::FsList {
            path,
            parent,
            sep: "/".into(),
            entries,
            truncated: Some(truncated),
            error: None,
        }
    }

    /// A directory that could not be listed (no `truncated`).
    pub fn fs_list_error(path: String, parent: Option<String>, error: String) -> Event {
        Event::FsList {
            path,
            parent,
            sep: "/".into(),
            entries: Vec::new(),
            truncated: None,
            error: Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trace() -> Option<Value> {
        Some(json!("t1"))
    }

    fn sent(e: SessionEvent) -> Value {
        let v = e.to_value();
        assert_eq!(v["event"], e.name(), "the name and the tag agree");
        v
    }

    /// An event of session `s1` under trace `t1`, as `Session::event` builds it.
    fn of_s1(event: Event) -> Value {
        sent(SessionEvent::new("s1", trace().as_ref(), event))
    }

    fn describe() -> Description {
        Description {
            cwd: "/work".into(),
            model: "".into(),
            resolved_model: Some("claude-opus-4".into()),
            provider: "claude".into(),
            permission_mode: "default".into(),
            effort: None,
        }
    }

    // --- the envelope: session.rs `Session::event`, `Session::turn_event` ---

    #[test]
    fn envelope_omits_trace_and_parent_when_none() {
        let e = SessionEvent::new("s1", None, Event::Thinking { text: "x".into() });
        assert_eq!(
            sent(e),
            json!({"event": "session.thinking", "session_id": "s1", "text": "x"})
        );
    }

    // session.rs `turn_event` (claude/stream.rs: every event of a subagent's scope)
    #[test]
    fn envelope_tags_subagent_events() {
        let e = SessionEvent::new("s1", trace().as_ref(), Event::Thinking { text: "x".into() })
            .under(Some("toolu_1".into()));
        assert_eq!(
            sent(e),
            json!({"event": "session.thinking", "session_id": "s1", "trace_id": "t1",
                   "text": "x", "parent_tool_use_id": "toolu_1"})
        );
        let top = SessionEvent::new("s1", None, Event::Thinking { text: "x".into() }).under(None);
        assert!(sent(top).get("parent_tool_use_id").is_none());
    }

    #[test]
    fn every_name_is_its_tag() {
        let all = [
            Event::Started(describe()),
            Event::Identified {
                sdk_session_id: "r".into(),
            },
            Event::TextDelta {
                text: "a".into(),
                id: "i".into(),
            },
            Event::Text {
                text: "a".into(),
                id: None,
            },
            Event::Thinking { text: "a".into() },
            Event::ToolUse {
                tool: None,
                tool_use_id: None,
                input: json!({}),
            },
            Event::ToolResult {
                tool_use_id: None,
                content: String::new(),
                is_error: false,
            },
            Event::local_result(None, None, None),
            Event::notice("c", "t"),
            Event::error("c", "m"),
            Event::Closed,
            Event::Rewound {
                cut_uuid: None,
                prompt: String::new(),
            },
            Event::StreamTruncated {
                reason: "r".into(),
                resume_with: "history".into(),
            },
            Event::PermissionRequest {
                request_id: "r".into(),
                tool: None,
                input: json!({}),
                title: None,
                display_name: None,
                description: None,
                tool_use_id: None,
                input_truncated: false,
            },
            Event::resolved("r", Decision::Allow),
            Event::PermissionsSnapshot { requests: vec![] },
            Event::SessionsSnapshot { sessions: vec![] },
            Event::HistorySnapshot { sessions: vec![] },
            Event::HistoryDetail {
                provider: "claude".into(),
                title: String::new(),
                cwd: None,
                git_branch: None,
                model: String::new(),
                resolved_model: None,
                permission_mode: "default".into(),
                effort: None,
                events: vec![],
                truncated: false,
                running: None,
            },
            Event::fs_list("/".into(), None, vec![], false),
            Event::Capabilities { providers: vec![] },
            Event::Pong,
        ];
        for e in all {
            let name = e.name();
            let v = SessionEvent::reply(None, e).to_value();
            assert_eq!(v["event"], name);
            assert!(v.get("session_id").is_none() && v.get("trace_id").is_none());
        }
    }

    // --- session.started ---

    // hub/sessions/commands.rs `start`: s.event("session.started", trace, s.describe())
    // (session.rs `describe`)
    #[test]
    fn started() {
        assert_eq!(
            of_s1(Event::Started(describe())),
            json!({"event": "session.started", "session_id": "s1", "trace_id": "t1",
                   "cwd": "/work", "model": "", "resolved_model": "claude-opus-4",
                   "provider": "claude", "permission_mode": "default", "effort": null})
        );
    }

    // --- session.identified ---

    // providers/claude/driver.rs `rekey`
    #[test]
    fn identified() {
        assert_eq!(
            of_s1(Event::Identified {
                sdk_session_id: "real-1".into()
            }),
            json!({"event": "session.identified", "session_id": "s1", "trace_id": "t1",
                   "sdk_session_id": "real-1"})
        );
    }

    // --- session.text_delta ---

    // providers/claude/stream.rs `on_stream_event` (text_delta, via turn_event);
    // providers/codex/driver.rs `notification` (item/agentMessage/delta);
    // providers/acp/driver.rs `update` (agent_message_chunk)
    #[test]
    fn text_delta() {
        assert_eq!(
            of_s1(Event::TextDelta {
                text: "Hel".into(),
                id: "s1:1:1".into()
            }),
            json!({"event": "session.text_delta", "session_id": "s1", "trace_id": "t1",
                   "text": "Hel", "id": "s1:1:1"})
        );
    }

    // --- session.text ---

    // providers/claude/stream.rs `close_block` and `repair_streamed_text` (the correction);
    // providers/codex/driver.rs `close_open` and `notification` (item/completed agentMessage);
    // providers/acp/driver.rs `commit_stream`
    #[test]
    fn text_with_id() {
        assert_eq!(
            of_s1(Event::Text {
                text: "Hello".into(),
                id: Some("s1:1:1".into())
            }),
            json!({"event": "session.text", "session_id": "s1", "trace_id": "t1",
                   "text": "Hello", "id": "s1:1:1"})
        );
    }

    // providers/claude/stream.rs `on_assistant` (an unstreamed block) and
    // `repair_streamed_text` (an extra block); providers/claude/driver.rs `pump` (/status)
    #[test]
    fn text_without_id() {
        assert_eq!(
            of_s1(Event::Text {
                text: "## Status".into(),
                id: None
            }),
            json!({"event": "session.text", "session_id": "s1", "trace_id": "t1",
                   "text": "## Status"})
        );
    }

    // --- session.thinking ---

    // providers/claude/stream.rs `close_block`, `on_assistant`;
    // providers/codex/driver.rs `notification` (reasoning);
    // providers/acp/driver.rs `commit_stream`, `update`
    #[test]
    fn thinking() {
        assert_eq!(
            of_s1(Event::Thinking { text: "hmm".into() }),
            json!({"event": "session.thinking", "session_id": "s1", "trace_id": "t1",
                   "text": "hmm"})
        );
    }

    // --- session.tool_use ---

    // providers/claude/stream.rs `on_assistant` (tool_use block; name/id missing → null)
    #[test]
    fn tool_use_claude() {
        let e = SessionEvent::new(
            "s1",
            trace().as_ref(),
            Event::ToolUse {
                tool: Some("Read".into()),
                tool_use_id: None,
                input: json!({"file_path": "/a"}),
            },
        )
        .under(Some("toolu_parent".into()));
        assert_eq!(
            sent(e),
            json!({"event": "session.tool_use", "session_id": "s1", "trace_id": "t1",
                   "tool": "Read", "tool_use_id": null, "input": {"file_path": "/a"},
                   "parent_tool_use_id": "toolu_parent"})
        );
    }

    // providers/codex/driver.rs `notification` (item/started commandExecution; fileChange
    // the same with "apply_patch" and {"changes": [...]})
    #[test]
    fn tool_use_codex() {
        assert_eq!(
            of_s1(Event::ToolUse {
                tool: Some("Bash".into()),
                tool_use_id: Some("item_1".into()),
                input: json!({"command": "ls", "cwd": null}),
            }),
            json!({"event": "session.tool_use", "session_id": "s1", "trace_id": "t1",
                   "tool": "Bash", "tool_use_id": "item_1",
                   "input": {"command": "ls", "cwd": null}})
        );
    }

    // providers/acp/driver.rs `show_tool`
    #[test]
    fn tool_use_acp() {
        assert_eq!(
            of_s1(Event::ToolUse {
                tool: Some("Edit".into()),
                tool_use_id: Some("call_1".into()),
                input: json!({"title": "Edit a.rs", "content": ""}),
            }),
            json!({"event": "session.tool_use", "session_id": "s1", "trace_id": "t1",
                   "tool": "Edit", "tool_use_id": "call_1",
                   "input": {"title": "Edit a.rs", "content": ""}})
        );
    }

    // --- session.tool_result ---

    // providers/claude/stream.rs `on_user`; providers/codex/driver.rs `close_open`
    // ("Interrupted.") and `notification` (item/completed); providers/acp/driver.rs
    // `close_open`, `response` (Call::Prompt, "Not run."), `finish_tool`
    #[test]
    fn tool_result() {
        assert_eq!(
            of_s1(Event::ToolResult {
                tool_use_id: Some("item_1".into()),
                content: "Interrupted.".into(),
                is_error: true,
            }),
            json!({"event": "session.tool_result", "session_id": "s1", "trace_id": "t1",
                   "tool_use_id": "item_1", "content": "Interrupted.", "is_error": true})
        );
        // Claude: a block without tool_use_id
        assert_eq!(
            of_s1(Event::ToolResult {
                tool_use_id: None,
                content: String::new(),
                is_error: false,
            })["tool_use_id"],
            Value::Null
        );
    }

    // --- session.result ---

    // session.rs `interrupted_result` (every caller but the one below)
    #[test]
    fn result_interrupted() {
        assert_eq!(
            of_s1(Event::interrupted(None, Some("u9".into()), None)),
            json!({"event": "session.result", "session_id": "s1", "trace_id": "t1",
                   "subtype": "interrupted", "is_error": false, "result": null,
                   "cost_usd": null, "cut_uuid": "u9", "sdk_session_id": null})
        );
    }

    // providers/claude/driver.rs `on_result`: interrupted_result, then
    // r["cost_usd"] = total_cost_usd
    #[test]
    fn result_interrupted_with_cost() {
        let cost = json!(0.0123).as_f64().and_then(Number::from_f64);
        assert_eq!(
            of_s1(Event::interrupted(cost, None, Some("real-1".into()))),
            json!({"event": "session.result", "session_id": "s1", "trace_id": "t1",
                   "subtype": "interrupted", "is_error": false, "result": null,
                   "cost_usd": 0.0123, "cut_uuid": null, "sdk_session_id": "real-1"})
        );
    }

    // session.rs `local_result` (claude/driver.rs `pump` /status: json!(text); the
    // rest: Value::Null)
    #[test]
    fn result_local() {
        assert_eq!(
            of_s1(Event::local_result(
                Some("## Status".into()),
                Some("u9".into()),
                Some("real-1".into())
            )),
            json!({"event": "session.result", "session_id": "s1", "trace_id": "t1",
                   "subtype": "notice", "is_error": false, "result": "## Status",
                   "cost_usd": 0, "cut_uuid": "u9", "sdk_session_id": "real-1"})
        );
        assert_eq!(
            of_s1(Event::local_result(None, None, None))["result"],
            Value::Null
        );
    }

    // providers/claude/driver.rs `on_result` (the CLI's result)
    #[test]
    fn result_claude() {
        let cli = json!({"subtype": "success", "is_error": false, "result": "done",
                         "total_cost_usd": 0});
        let e = Event::Result {
            subtype: cli["subtype"].as_str().map(str::to_string),
            is_error: false,
            result: cli["result"].as_str().map(str::to_string),
            cost_usd: cli["total_cost_usd"].as_number().cloned(),
            cut_uuid: Some("u9".into()),
            sdk_session_id: Some("real-1".into()),
        };
        assert_eq!(
            of_s1(e),
            json!({"event": "session.result", "session_id": "s1", "trace_id": "t1",
                   "subtype": "success", "is_error": false, "result": "done",
                   "cost_usd": 0, "cut_uuid": "u9", "sdk_session_id": "real-1"})
        );
    }

    // providers/codex/driver.rs `notification` (turn/completed) and
    // providers/acp/driver.rs `response` (Call::Prompt): no cost, no cut
    #[test]
    fn result_codex_acp() {
        let e = Event::Result {
            subtype: Some("success".into()),
            is_error: false,
            result: Some("done".into()),
            cost_usd: None,
            cut_uuid: None,
            sdk_session_id: Some("thread-1".into()),
        };
        assert_eq!(
            of_s1(e),
            json!({"event": "session.result", "session_id": "s1", "trace_id": "t1",
                   "subtype": "success", "is_error": false, "result": "done",
                   "cost_usd": null, "cut_uuid": null, "sdk_session_id": "thread-1"})
        );
    }

    // --- session.notice ---

    // session.rs `warning` (claude/driver.rs control_failed, hub/sessions/media.rs
    // attachment_skipped)
    #[test]
    fn notice_warning() {
        assert_eq!(
            of_s1(Event::warning("control_failed", "failed")),
            json!({"event": "session.notice", "session_id": "s1", "trace_id": "t1",
                   "level": "warning", "code": "control_failed", "text": "failed"})
        );
    }

    // providers/codex/driver.rs `codex_pump` (slash_codex_unsupported);
    // providers/acp/driver.rs `acp_pump` (slash_unavailable, no command);
    // hub/sessions/edit.rs `edit` (edit_unsupported)
    #[test]
    fn notice_info() {
        assert_eq!(
            of_s1(Event::notice(
                "slash_codex_unsupported",
                "Slash commands are not available in Codex sessions."
            )),
            json!({"event": "session.notice", "session_id": "s1", "trace_id": "t1",
                   "level": "info", "code": "slash_codex_unsupported",
                   "text": "Slash commands are not available in Codex sessions."})
        );
    }

    // providers/claude/driver.rs `slash_notice`
    #[test]
    fn notice_slash_command() {
        let e = Event::Notice {
            level: Level::Info,
            code: "slash_unavailable".into(),
            command: Some("login".into()),
            text: "/login is not available in a remote Coding Bridge session.".into(),
        };
        assert_eq!(
            of_s1(e),
            json!({"event": "session.notice", "session_id": "s1", "trace_id": "t1",
                   "level": "info", "code": "slash_unavailable", "command": "login",
                   "text": "/login is not available in a remote Coding Bridge session."})
        );
    }

    // hub/delivery.rs `too_large`: session_id and trace_id copied when the event had them
    #[test]
    fn notice_too_large() {
        let e = SessionEvent {
            session_id: Some("s1".into()),
            trace_id: None,
            parent_tool_use_id: None,
            event: Event::warning(
                "event_too_large",
                "A session.tool_result of 9 MiB was too large to relay.",
            ),
        };
        assert_eq!(
            sent(e),
            json!({"event": "session.notice", "session_id": "s1", "level": "warning",
                   "code": "event_too_large",
                   "text": "A session.tool_result of 9 MiB was too large to relay."})
        );
    }

    // --- session.error ---

    // session.rs `error` (every s.error(...)); hub/sessions/children.rs `shutdown`
    // (node_shutdown, built with s.event but the same keys)
    #[test]
    fn error_of_session() {
        assert_eq!(
            of_s1(Event::error("provider_error", "Codex: the turn failed")),
            json!({"event": "session.error", "session_id": "s1", "trace_id": "t1",
                   "code": "provider_error", "message": "Codex: the turn failed"})
        );
    }

    // providers/claude/driver.rs `on_exit` (process_crashed)
    #[test]
    fn error_crashed() {
        assert_eq!(
            of_s1(Event::crashed("exited mid-turn", None, "boom".into())),
            json!({"event": "session.error", "session_id": "s1", "trace_id": "t1",
                   "code": "process_crashed", "message": "exited mid-turn",
                   "exception": "process_crashed", "exit_code": null, "stderr": "boom"})
        );
        assert_eq!(
            of_s1(Event::crashed("m", Some(1), String::new()))["exit_code"],
            1
        );
    }

    // hub/sessions/commands.rs `command`, the `unknown` closure: no code; session_id and
    // trace_id only when the command had them
    #[test]
    fn error_unknown_session() {
        let e = SessionEvent {
            session_id: Some("gone".into()),
            trace_id: trace(),
            parent_tool_use_id: None,
            event: Event::Error {
                code: None,
                message: "unknown session: gone".into(),
                crash: None,
            },
        };
        assert_eq!(
            sent(e),
            json!({"event": "session.error", "session_id": "gone", "trace_id": "t1",
                   "message": "unknown session: gone"})
        );
        let e = SessionEvent::reply(
            None,
            Event::Error {
                code: None,
                message: "unknown session: ".into(),
                crash: None,
            },
        );
        assert_eq!(
            sent(e),
            json!({"event": "session.error", "message": "unknown session: "})
        );
    }

    // hub/sessions/commands.rs `start`, the `fail` closure: session_id always (maybe "")
    #[test]
    fn error_start_failed() {
        let e = SessionEvent::new(
            "",
            None,
            Event::error("provider_error", "unsupported provider: x"),
        );
        assert_eq!(
            sent(e),
            json!({"event": "session.error", "session_id": "", "code": "provider_error",
                   "message": "unsupported provider: x"})
        );
    }

    // hub.rs `on_command` (invalid_command / unknown_action), hub/services.rs `busy_error`
    // and `service` (history_unavailable before the work), hub/connection.rs (Oversized,
    // command_too_large): session_id only when the command named one, trace_id by `traced`
    #[test]
    fn error_of_a_command() {
        let mut e = SessionEvent::reply(
            trace().as_ref(),
            Event::error(
                "node_busy",
                "the node is busy; history.get was not run, try again",
            ),
        );
        assert_eq!(
            sent(e.clone()),
            json!({"event": "session.error", "trace_id": "t1", "code": "node_busy",
                   "message": "the node is busy; history.get was not run, try again"})
        );
        e.session_id = Some("abc".into());
        assert_eq!(sent(e)["session_id"], "abc");
    }

    // hub/services.rs `service` (history.get on a worker: the transcript cannot be read)
    #[test]
    fn error_history_unavailable() {
        let e = SessionEvent::new(
            "abc",
            trace().as_ref(),
            Event::error(
                "history_unavailable",
                "Cannot open this conversation: invalid session id.",
            ),
        );
        assert_eq!(
            sent(e),
            json!({"event": "session.error", "session_id": "abc", "trace_id": "t1",
                   "code": "history_unavailable",
                   "message": "Cannot open this conversation: invalid session id."})
        );
    }

    // --- session.closed ---

    // hub/sessions/commands.rs `close`: s.event("session.closed", trace, json!({}))
    #[test]
    fn closed() {
        assert_eq!(
            of_s1(Event::Closed),
            json!({"event": "session.closed", "session_id": "s1", "trace_id": "t1"})
        );
    }

    // --- session.rewound ---

    // hub/sessions/edit.rs `restart_for_edit`
    #[test]
    fn rewound() {
        assert_eq!(
            of_s1(Event::Rewound {
                cut_uuid: None,
                prompt: "again".into()
            }),
            json!({"event": "session.rewound", "session_id": "s1", "trace_id": "t1",
                   "cut_uuid": null, "prompt": "again"})
        );
    }

    // --- session.stream_truncated ---

    // hub/connection.rs `on_connected` (no trace_id)
    #[test]
    fn stream_truncated() {
        let e = SessionEvent::new(
            "s1",
            None,
            Event::StreamTruncated {
                reason: "node_outbox_overflow".into(),
                resume_with: "history".into(),
            },
        );
        assert_eq!(
            sent(e),
            json!({"event": "session.stream_truncated", "session_id": "s1",
                   "reason": "node_outbox_overflow", "resume_with": "history"})
        );
    }

    // --- permission.request ---

    fn request(input_truncated: bool) -> Event {
        Event::PermissionRequest {
            request_id: "r1".into(),
            tool: Some("Bash".into()),
            input: json!({"command": "ls"}),
            title: Some("Run `ls`?".into()),
            display_name: Some("Bash".into()),
            description: None,
            tool_use_id: Some("item_1".into()),
            input_truncated,
        }
    }

    // hub/sessions/approvals.rs `put_approval` (Codex's and ACP's approvals: no parent,
    // description null for ACP and when Codex gives no reason)
    #[test]
    fn permission_request() {
        assert_eq!(
            of_s1(request(false)),
            json!({"event": "permission.request", "session_id": "s1", "trace_id": "t1",
                   "request_id": "r1", "tool": "Bash", "input": {"command": "ls"},
                   "title": "Run `ls`?", "display_name": "Bash", "description": null,
                   "tool_use_id": "item_1"})
        );
    }

    // hub/sessions/approvals.rs `put_approval`: body["input_truncated"] = true when cut,
    // body["parent_tool_use_id"] = p for a Claude subagent's request
    #[test]
    fn permission_request_cut_from_a_subagent() {
        let e =
            SessionEvent::new("s1", trace().as_ref(), request(true)).under(Some("toolu_p".into()));
        assert_eq!(
            sent(e),
            json!({"event": "permission.request", "session_id": "s1", "trace_id": "t1",
                   "request_id": "r1", "tool": "Bash", "input": {"command": "ls"},
                   "title": "Run `ls`?", "display_name": "Bash", "description": null,
                   "tool_use_id": "item_1", "input_truncated": true,
                   "parent_tool_use_id": "toolu_p"})
        );
    }

    // --- permission.resolved ---

    // providers/claude/driver.rs `on_line` (control_cancel_request) and `on_exit`;
    // hub/sessions/approvals.rs `settle_abandoned`
    #[test]
    fn permission_cancelled() {
        assert_eq!(
            of_s1(Event::resolved("r1", Decision::Cancelled)),
            json!({"event": "permission.resolved", "session_id": "s1", "trace_id": "t1",
                   "request_id": "r1", "decision": "cancelled"})
        );
    }

    // hub/sessions/approvals.rs `resolve_permission` (allow or deny, no reason)
    #[test]
    fn permission_answered() {
        assert_eq!(
            of_s1(Event::resolved("r1", Decision::Allow)),
            json!({"event": "permission.resolved", "session_id": "s1", "trace_id": "t1",
                   "request_id": "r1", "decision": "allow"})
        );
        assert_eq!(
            of_s1(Event::resolved("r1", Decision::Deny))["decision"],
            "deny"
        );
    }

    // hub/sessions/approvals.rs `deny_pending` (reason as given) and
    // hub/sessions/ticks.rs `on_tick` (Tick::Permission, "timeout")
    #[test]
    fn permission_denied_with_reason() {
        let e = Event::PermissionResolved {
            request_id: "r1".into(),
            decision: Decision::Deny,
            reason: Some("timeout".into()),
        };
        assert_eq!(
            of_s1(e),
            json!({"event": "permission.resolved", "session_id": "s1", "trace_id": "t1",
                   "request_id": "r1", "decision": "deny", "reason": "timeout"})
        );
    }

    // --- permissions.snapshot ---

    // hub/sessions/commands.rs `command` (Kind::PermissionsList): the pending requests'
    // bodies (hub/permissions.rs `snapshot`)
    #[test]
    fn permissions_snapshot() {
        let pending = SessionEvent::new("s1", None, request(false));
        let e = SessionEvent::reply(
            trace().as_ref(),
            Event::PermissionsSnapshot {
                requests: vec![pending],
            },
        );
        assert_eq!(
            sent(e),
            json!({"event": "permissions.snapshot", "trace_id": "t1", "requests": [
                {"event": "permission.request", "session_id": "s1",
                 "request_id": "r1", "tool": "Bash", "input": {"command": "ls"},
                 "title": "Run `ls`?", "display_name": "Bash", "description": null,
                 "tool_use_id": "item_1"}
            ]})
        );
    }

    // --- sessions.snapshot ---

    // hub/sessions/commands.rs `command` (Kind::SessionsList): describe() plus
    // session_id and status
    #[test]
    fn sessions_snapshot() {
        let e = SessionEvent::reply(
            None,
            Event::SessionsSnapshot {
                sessions: vec![SessionSummary {
                    session_id: "s1".into(),
                    status: Status::Running,
                    describe: describe(),
                }],
            },
        );
        assert_eq!(
            sent(e),
            json!({"event": "sessions.snapshot", "sessions": [
                {"session_id": "s1", "status": "running", "cwd": "/work", "model": "",
                 "resolved_model": "claude-opus-4", "provider": "claude",
                 "permission_mode": "default", "effort": null}
            ]})
        );
    }

    // --- history.snapshot ---

    // node/history.rs `list`
    #[test]
    fn history_snapshot() {
        let e = SessionEvent::reply(
            trace().as_ref(),
            Event::HistorySnapshot {
                sessions: vec![HistoryEntry {
                    provider: "codex".into(),
                    session_id: "abc".into(),
                    title: "(no prompt)".into(),
                    cwd: Some("/work".into()),
                    git_branch: None,
                    updated_at: 1_795_526_119_991,
                    message_count: 3,
                    running: false,
                    unread: true,
                }],
            },
        );
        assert_eq!(
            sent(e),
            json!({"event": "history.snapshot", "trace_id": "t1", "sessions": [
                {"provider": "codex", "session_id": "abc", "title": "(no prompt)",
                 "cwd": "/work", "git_branch": null, "updated_at": 1_795_526_119_991u64,
                 "message_count": 3, "running": false, "unread": true}
            ]})
        );
    }

    // --- history.detail ---

    fn detail(running: Option<bool>) -> Event {
        Event::HistoryDetail {
            provider: "claude".into(),
            title: "hi".into(),
            cwd: None,
            git_branch: Some("main".into()),
            model: "".into(),
            resolved_model: None,
            permission_mode: "default".into(),
            effort: None,
            events: vec![raw(&json!({"kind": "prompt", "text": "hi"}))],
            truncated: true,
            running,
        }
    }

    // history/detail.rs `detail_reply` (no `running`; hub/services.rs `service` adds
    // d["running"] before sending it)
    #[test]
    fn history_detail_from_disk() {
        let e = SessionEvent::new("abc", trace().as_ref(), detail(None));
        assert_eq!(
            sent(e),
            json!({"event": "history.detail", "session_id": "abc", "trace_id": "t1",
                   "provider": "claude", "title": "hi", "cwd": null, "git_branch": "main",
                   "model": "", "resolved_model": null, "permission_mode": "default",
                   "effort": null, "events": [{"kind": "prompt", "text": "hi"}],
                   "truncated": true})
        );
        let e = SessionEvent::new("abc", trace().as_ref(), detail(Some(false)));
        assert_eq!(sent(e)["running"], false);
    }

    // hub/sessions/live_history.rs `live_history` (git_branch null, running always)
    #[test]
    fn history_detail_live() {
        let e = SessionEvent::new("s1", None, detail(Some(true)));
        assert_eq!(
            sent(e),
            json!({"event": "history.detail", "session_id": "s1",
                   "provider": "claude", "title": "hi", "cwd": null, "git_branch": "main",
                   "model": "", "resolved_model": null, "permission_mode": "default",
                   "effort": null, "events": [{"kind": "prompt", "text": "hi"}],
                   "truncated": true, "running": true})
        );
    }

    // --- fs.list ---

    // node/fslist.rs `list` (the listing)
    #[test]
    fn fs_list() {
        let entries = vec![
            FsEntry {
                name: "src".into(),
                path: "/work/src".into(),
                kind: FsKind::Dir,
            },
            FsEntry {
                name: "a.rs".into(),
                path: "/work/a.rs".into(),
                kind: FsKind::File,
            },
        ];
        let e = SessionEvent::reply(
            trace().as_ref(),
            Event::fs_list("/work".into(), Some("/".into()), entries, false),
        );
        assert_eq!(
            sent(e),
            json!({"event": "fs.list", "trace_id": "t1", "path": "/work", "parent": "/",
                   "sep": "/", "entries": [
                       {"name": "src", "path": "/work/src", "type": "dir"},
                       {"name": "a.rs", "path": "/work/a.rs", "type": "file"}],
                   "truncated": false})
        );
    }

    // node/fslist.rs `list`, the `error_reply` closure (no `truncated`; parent null at /)
    #[test]
    fn fs_list_error() {
        let e = SessionEvent::reply(
            None,
            Event::fs_list_error("/".into(), None, "permission denied".into()),
        );
        assert_eq!(
            sent(e),
            json!({"event": "fs.list", "path": "/", "parent": null, "sep": "/",
                   "entries": [], "error": "permission denied"})
        );
    }

    // --- capabilities ---

    // node/capabilities.rs `reply` (traced by hub/services.rs, or by hub.rs `on_work`
    // for the replies that waited for a probe)
    #[test]
    fn capabilities() {
        let provider = json!({"name": "claude", "label": "Claude Code", "available": true});
        let e = SessionEvent::reply(
            trace().as_ref(),
            Event::Capabilities {
                providers: vec![provider.clone()],
            },
        );
        assert_eq!(
            sent(e),
            json!({"event": "capabilities", "trace_id": "t1", "providers": [provider]})
        );
    }

    // --- pong ---

    // hub.rs `on_command` (Kind::Ping), traced
    #[test]
    fn pong() {
        assert_eq!(
            sent(SessionEvent::reply(trace().as_ref(), Event::Pong)),
            json!({"event": "pong", "trace_id": "t1"})
        );
        assert_eq!(
            sent(SessionEvent::reply(None, Event::Pong)),
            json!({"event": "pong"})
        );
    }
}
