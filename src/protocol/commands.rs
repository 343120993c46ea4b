//! Browser commands (PROTOCOL §3, §6) parsed into typed values at the edge: the hub and
//! the sessions never look into the command's JSON map again. Parsing never fails as a
//! whole: a command whose fields are wrong becomes [`Kind::Invalid`] with the message for
//! its `session.error`, and an action this node does not know becomes [`Kind::Unknown`].

use serde_json::{Map, Value};

use crate::protocol::SessionId;

/// The permission modes the browser may ask for.
pub const PERMISSION_MODES: [&str; 4] = ["default", "acceptEdits", "plan", "bypassPermissions"];

/// A file that came with a turn as bytes (a photo or document sent to a chat bot).
#[derive(Clone)]
pub struct Inline {
    /// The name the sender gave it (reduced to a safe base name when saved).
    pub name: String,
    pub bytes: Vec<u8>,
    /// Saved with the images (else with the attachments).
    pub image: bool,
}

impl std::fmt::Debug for Inline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Inline({:?}, {} bytes)", self.name, self.bytes.len())
    }
}

/// One browser command.
#[derive(Debug)]
pub struct Command {
    /// The action as sent (for logs and errors).
    pub action: String,
    /// Echoed on the answer (a string, as the browser sends it).
    pub trace_id: Option<Value>,
    /// The session the command is about, if it names one, as sent (the key of a session
    /// held here; the history commands also carry it parsed, see [`Kind::HistoryGet`]).
    pub session_id: Option<String>,
    pub kind: Kind,
    /// Who sent it: the relay (the browser), or a chat of a chat channel.
    pub origin: Origin,
}

/// Where a command came from (the audit log says so, and a decision names who made it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// The relay: the browser, or anything else holding the node's relay session.
    #[default]
    Relay,
    /// A chat of a chat channel (Telegram): the chat, and the user who pressed a button.
    Chat { chat: i64, user: Option<i64> },
}

#[derive(Debug)]
pub enum Kind {
    SessionStart(Start),
    SessionSend(TurnCmd),
    SessionEdit(Edit),
    SessionInterrupt,
    SessionClose,
    PermissionResolve(Resolve),
    PermissionsList,
    SessionsList,
    HistoryList {
        limit: Option<i64>,
    },
    HistoryGet {
        provider: String,
        /// `session_id` as a safe id, to open files by: `None` when it is missing or not
        /// a safe id (the answer then says so, as for any conversation it cannot open).
        id: Option<SessionId>,
    },
    HistoryMarkRead {
        provider: String,
        /// `session_id` as a safe id (`None`: missing or not safe; nothing is marked).
        id: Option<SessionId>,
        updated_at: Option<u64>,
        limit: Option<i64>,
    },
    FsList {
        path: Option<String>,
        show_hidden: bool,
    },
    CapabilitiesGet,
    Ping,
    /// The right action with unusable fields: the message for `session.error`.
    Invalid(String),
    Unknown,
}

/// `session.start`.
#[derive(Debug)]
pub struct Start {
    pub provider: String,
    pub cwd: Option<String>,
    /// The conversation to resume, checked to be a safe id.
    pub resume: Option<SessionId>,
    pub turn: TurnCmd,
}

/// `session.edit`.
#[derive(Debug)]
pub struct Edit {
    pub turn: TurnCmd,
    pub cut_uuid: Option<String>,
    pub restore_code: bool,
}

/// `permission.resolve`.
#[derive(Debug)]
pub struct Resolve {
    pub request_id: String,
    pub allow: bool,
    /// AskUserQuestion answers (or an amended input), as the browser sent them.
    pub answer: Option<Value>,
    /// Allow this and what is like it for a while (Telegram's "Allow for 1 h"; the
    /// browser cannot ask for it).
    pub grant: bool,
}

/// A setting the browser may send with a turn: absent leaves it as it is; present sets
/// it, and an empty value means "back to the default" (PROTOCOL §6).
pub type Override = Option<Option<String>>;

/// A turn as the browser asks for it (`session.start`, `session.send`, `session.edit`).
#[derive(Debug, Clone)]
pub struct TurnCmd {
    pub prompt: String,
    pub images: Option<Value>,
    pub attachments: Option<Value>,
    /// Files given as bytes (from a chat channel; the browser sends URLs and base64).
    pub files: Vec<Inline>,
    pub model: Override,
    pub effort: Override,
    pub mode: Override,
    pub trace: Option<Value>,
}

impl TurnCmd {
    pub fn has_media(&self) -> bool {
        self.images.is_some() || self.attachments.is_some() || !self.files.is_empty()
    }

    pub fn has_prompt(&self) -> bool {
        !self.prompt.trim().is_empty()
    }

    pub fn changes_settings(&self) -> bool {
        self.model.is_some() || self.effort.is_some() || self.mode.is_some()
    }
}

/// A trimmed, non-empty string field.
fn text(cmd: &Map<String, Value>, k: &str) -> Option<String> {
    cmd.get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn override_field(cmd: &Map<String, Value>, k: &str) -> Override {
    match cmd.get(k) {
        Some(Value::String(v)) => Some(Some(v.trim().to_string()).filter(|v| !v.is_empty())),
        _ => None,
    }
}

/// The turn fields of a command, checked; an error is the message for `session.error`.
/// Images and attachments are taken out of the map (they can be tens of MiB).
fn turn(cmd: &mut Map<String, Value>, trace: Option<Value>) -> Result<TurnCmd, String> {
    let mut take = |k: &str| {
        cmd.remove(k)
            .filter(|v| !v.is_null() && !v.as_array().is_some_and(|a| a.is_empty()))
    };
    let images = take("images");
    let attachments = take("attachments");
    let t = TurnCmd {
        prompt: cmd
            .get("prompt")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        images,
        attachments,
        files: Vec::new(),
        model: override_field(cmd, "model"),
        effort: override_field(cmd, "effort"),
        mode: override_field(cmd, "permission_mode"),
        trace,
    };
    let word = |v: &str| v.len() <= 200 && !v.chars().any(|c| c.is_whitespace() || c.is_control());
    if let Some(Some(m)) = &t.model
        && !word(m)
    {
        return Err(format!("invalid model {m:?}"));
    }
    if let Some(Some(e)) = &t.effort
        && !word(e)
    {
        return Err(format!("invalid effort {e:?}"));
    }
    if let Some(Some(m)) = &t.mode
        && !PERMISSION_MODES.contains(&m.as_str())
    {
        return Err(format!(
            "unknown permission mode {m:?} (expected one of {})",
            PERMISSION_MODES.join(", ")
        ));
    }
    Ok(t)
}

/// Parse one command payload.
pub fn parse(mut cmd: Map<String, Value>) -> Command {
    let action = cmd
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let trace_id = cmd.get("trace_id").filter(|v| v.is_string()).cloned();
    let session_id = text(&cmd, "session_id");
    let id = || session_id.as_deref().and_then(SessionId::parse);
    let provider = || text(&cmd, "provider").unwrap_or_else(|| "claude".to_string());
    let kind = match action.as_str() {
        "session.start" => {
            let (prov, cwd, resume) = (
                provider(),
                text(&cmd, "cwd"),
                text(&cmd, "resume_session_id"),
            );
            let resume = resume.map(|r| SessionId::parse(&r).ok_or(r));
            match (
                session_id.is_some(),
                turn(&mut cmd, trace_id.clone()),
                resume,
            ) {
                (false, _, _) => Kind::Invalid("session.start needs a session_id".into()),
                (true, Err(e), _) => Kind::Invalid(e),
                (true, Ok(_), Some(Err(r))) => {
                    Kind::Invalid(format!("invalid resume_session_id {r:?}"))
                }
                (true, Ok(turn), resume) => Kind::SessionStart(Start {
                    provider: prov,
                    cwd,
                    resume: resume.and_then(Result::ok),
                    turn,
                }),
            }
        }
        "session.send" => match turn(&mut cmd, trace_id.clone()) {
            Ok(t) => Kind::SessionSend(t),
            Err(e) => Kind::Invalid(e),
        },
        "session.edit" => {
            let cut_uuid = text(&cmd, "cut_uuid");
            let restore_code = cmd
                .get("restore_code")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            match turn(&mut cmd, trace_id.clone()) {
                Ok(turn) => Kind::SessionEdit(Edit {
                    turn,
                    cut_uuid,
                    restore_code,
                }),
                Err(e) => Kind::Invalid(e),
            }
        }
        "session.interrupt" => Kind::SessionInterrupt,
        "session.close" => Kind::SessionClose,
        "permission.resolve" => match text(&cmd, "request_id") {
            Some(request_id) => Kind::PermissionResolve(Resolve {
                request_id,
                allow: cmd.get("decision").and_then(Value::as_str) == Some("allow"),
                answer: cmd.remove("answer"),
                grant: false,
            }),
            None => Kind::Invalid("permission.resolve needs a request_id".into()),
        },
        "permissions.list" => Kind::PermissionsList,
        "sessions.list" => Kind::SessionsList,
        "history.list" => Kind::HistoryList {
            limit: cmd.get("limit").and_then(Value::as_i64),
        },
        "history.get" => Kind::HistoryGet {
            provider: provider(),
            id: id(),
        },
        "history.mark_read" => Kind::HistoryMarkRead {
            provider: provider(),
            id: id(),
            updated_at: cmd.get("updated_at").and_then(Value::as_u64),
            limit: cmd.get("limit").and_then(Value::as_i64),
        },
        "fs.list" => Kind::FsList {
            path: cmd.get("path").and_then(Value::as_str).map(str::to_string),
            show_hidden: cmd
                .get("show_hidden")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        },
        "capabilities.get" => Kind::CapabilitiesGet,
        "ping" => Kind::Ping,
        _ => Kind::Unknown,
    };
    Command {
        action,
        trace_id,
        session_id,
        kind,
        origin: Origin::Relay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(v: Value) -> Command {
        parse(v.as_object().unwrap().clone())
    }

    #[test]
    fn turns_and_overrides() {
        let c = p(
            json!({"action": "session.send", "session_id": " s1 ", "trace_id": "t", "prompt": "hi",
                   "model": "", "effort": "high", "images": [], "attachments": [{"url": "u"}]}),
        );
        assert_eq!(c.session_id.as_deref(), Some("s1"));
        let Kind::SessionSend(t) = c.kind else {
            panic!("{:?}", c.kind)
        };
        assert_eq!(t.model, Some(None), "empty means back to the default");
        assert_eq!(t.effort, Some(Some("high".into())));
        assert_eq!(t.mode, None);
        assert!(t.images.is_none() && t.attachments.is_some());
        assert_eq!(t.trace, Some(json!("t")));
    }

    #[test]
    fn bad_fields_are_invalid_not_lost() {
        for (v, needle) in [
            (
                json!({"action": "session.start", "prompt": "x"}),
                "needs a session_id",
            ),
            (
                json!({"action": "session.send", "session_id": "s", "permission_mode": "yolo"}),
                "unknown permission mode",
            ),
            (
                json!({"action": "session.send", "session_id": "s", "model": "a b"}),
                "invalid model",
            ),
            (
                json!({"action": "permission.resolve"}),
                "needs a request_id",
            ),
        ] {
            match p(v).kind {
                Kind::Invalid(m) => assert!(m.contains(needle), "{m}"),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            p(json!({"action": "no.such"})).kind,
            Kind::Unknown
        ));
        assert!(matches!(p(json!({"action": 5})).kind, Kind::Unknown));
    }

    #[test]
    fn start_edit_resolve_and_services() {
        let c = p(
            json!({"action": "session.start", "session_id": "s", "provider": "codex",
                         "cwd": "~/x", "resume_session_id": "r", "prompt": "go"}),
        );
        let Kind::SessionStart(s) = c.kind else {
            panic!()
        };
        assert_eq!(
            (s.provider.as_str(), s.cwd.as_deref(), s.resume.as_deref()),
            ("codex", Some("~/x"), Some("r"))
        );
        let Kind::SessionEdit(e) = p(
            json!({"action": "session.edit", "session_id": "s", "prompt": "p",
                                            "cut_uuid": "u", "restore_code": true}),
        )
        .kind
        else {
            panic!()
        };
        assert_eq!((e.cut_uuid.as_deref(), e.restore_code), (Some("u"), true));
        let Kind::PermissionResolve(r) =
            p(json!({"action": "permission.resolve", "request_id": "r1",
                                                  "decision": "allow", "answer": {"a": 1}}))
            .kind
        else {
            panic!()
        };
        assert!(r.allow);
        assert_eq!(r.answer, Some(json!({"a": 1})));
        let Kind::HistoryMarkRead {
            provider,
            id,
            updated_at,
            limit,
        } = p(
            json!({"action": "history.mark_read", "session_id": "s", "updated_at": 5, "limit": 3}),
        )
        .kind
        else {
            panic!()
        };
        assert_eq!(
            (provider.as_str(), updated_at, limit),
            ("claude", Some(5), Some(3))
        );
        assert_eq!(id.as_deref(), Some("s"));
    }

    #[test]
    fn history_ids_are_parsed_here() {
        let id = |v: Value| match p(v).kind {
            Kind::HistoryGet { id, .. } | Kind::HistoryMarkRead { id, .. } => id,
            other => panic!("{other:?}"),
        };
        for action in ["history.get", "history.mark_read"] {
            assert_eq!(
                id(json!({"action": action, "session_id": " abc-1 "})).as_deref(),
                Some("abc-1")
            );
            for bad in ["../etc/passwd", "..", "a/b", "a\\b", ""] {
                let c = p(json!({"action": action, "session_id": bad}));
                // Not a safe id, but still the command it was (its answer names the id).
                assert_eq!(c.session_id.as_deref(), Some(bad).filter(|b| !b.is_empty()));
                assert_eq!(
                    id(json!({"action": action, "session_id": bad})),
                    None,
                    "{bad}"
                );
            }
            assert_eq!(id(json!({"action": action})), None);
        }
    }
}
