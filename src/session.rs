//! One session as every provider sees it: its turns (queued, running, waiting), its
//! child, the settings the browser chose, and the node events built from it. What an
//! agent keeps of its own lives beside it in the provider's `State`
//! ([`crate::providers::Agent`]); the hub's table pairs the two. Owned by the hub thread;
//! no threads or I/O here beyond writing a line to the child's stdin channel.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;

use crate::protocol::events::{Description, Event, SessionEvent};

use crate::sys::child::ChildHandle;

/// Text kept per streamed block (deltas are forwarded regardless).
pub(crate) const MAX_BLOCK_TEXT: usize = 4 << 20;
/// A `permission.request` whose input is larger than this has its long strings cut, so
/// the request always reaches the browser and stays answerable.
pub(crate) const MAX_PERMISSION_INPUT: usize = 512 << 10;
/// What is kept of each long string in such an input.
const CUT_STRING: usize = 16 << 10;

#[derive(Debug, Clone)]
pub(crate) struct Turn {
    pub(crate) id: u64,
    /// Images or attachments are still being saved; the turn waits (and so do later ones).
    pub(crate) preparing: bool,
    pub(crate) prompt: String,
    pub(crate) trace_id: Option<Value>,
    /// Model (`None`: the default) and effort in force when the turn was asked for.
    pub(crate) model: Option<String>,
    pub(crate) effort: Option<String>,
    /// Started by the CLI itself (a background agent finished), not by a prompt.
    pub(crate) auto: bool,
    /// The turn produced output (so a crash is not silently retried).
    pub(crate) emitted: bool,
    /// Silent retries used after crashes.
    pub(crate) retries: u32,
    /// The browser asked to stop it: its result is `interrupted`.
    pub(crate) interrupted: bool,
    /// Images saved for this turn (their paths are also noted in the prompt; agents that
    /// take images as input, like Codex, get them as such too).
    pub(crate) images: Vec<PathBuf>,
    /// The uuid the prompt was written to the agent under (Claude Code names it again
    /// in the turn's result as `user_message_uuid`).
    pub(crate) prompt_uuid: Option<String>,
}

impl Turn {
    pub(crate) fn new(prompt: String, trace_id: Option<Value>) -> Turn {
        Turn {
            id: next_turn_id(),
            preparing: false,
            prompt,
            trace_id,
            model: None,
            effort: None,
            auto: false,
            emitted: false,
            retries: 0,
            interrupted: false,
            images: Vec::new(),
            prompt_uuid: None,
        }
    }
}

pub(crate) struct Live {
    pub(crate) handle: ChildHandle,
    pub(crate) initialized: bool,
    pub(crate) started: Instant,
    /// What the child currently runs with (from argv, then `set_*` requests).
    pub(crate) model: Option<String>,
    pub(crate) mode: Option<String>,
    pub(crate) effort: Option<String>,
}

/// Which subagent an agent's line belongs to (`None`: the main agent), as the browser
/// sees it in `parent_tool_use_id`.
pub(crate) type Scope = Option<String>;

/// An approval an agent asks for, as every provider hands it to the hub's approval table.
pub(crate) struct Approval {
    /// The agent's id for the request (for JSON-RPC agents, the id as JSON text).
    pub cli_request_id: String,
    pub tool: Option<String>,
    /// The tool input shown to the browser (long strings are cut when it is large).
    pub input: Value,
    pub title: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub tool_use_id: Option<String>,
    /// The subagent it comes from, if any.
    pub parent: Option<String>,
    /// What answering needs later (Claude: the whole input; ACP: the offered options).
    pub keep: Value,
}

/// `text` cut to at most `max` characters (with `…` when cut), for titles.
pub(crate) fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut t: String = text.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) provider: String,
    pub(crate) cwd: PathBuf,
    /// The browser's model selector (`None`: the default).
    pub(crate) model: Option<String>,
    /// The model id the agent reported (Claude Code's `system/init`, Codex's thread).
    pub(crate) resolved_model: Option<String>,
    pub(crate) permission_mode: Option<String>,
    pub(crate) effort: Option<String>,
    /// The agent's own id of the conversation (what resumes it).
    pub(crate) sdk_id: Option<String>,
    pub(crate) child: Option<Live>,
    pub(crate) queue: VecDeque<Turn>,
    pub(crate) current: Option<Turn>,
    /// Turns already written to the agent that wait behind a turn it started by itself
    /// (Claude Code's background agents); they run, in order, after it.
    pub(crate) awaiting: VecDeque<Turn>,
    /// The newest message uuid of the conversation (Claude Code's): where an edit of the
    /// next prompt cuts, reported with every result as `cut_uuid`.
    pub(crate) last_uuid: Option<String>,
    /// When the session last did something (its agent wrote, the browser asked): an
    /// agent idle long enough is stopped, the least recently used first.
    pub(crate) last_active: Instant,
}

impl Session {
    /// A new session under the browser's id (Claude Code until told otherwise), with
    /// nothing running yet.
    pub(crate) fn new(id: &str, cwd: PathBuf) -> Session {
        Session {
            id: id.to_string(),
            provider: "claude".into(),
            cwd,
            model: None,
            resolved_model: None,
            permission_mode: None,
            effort: None,
            sdk_id: None,
            child: None,
            queue: VecDeque::new(),
            current: None,
            awaiting: VecDeque::new(),
            last_uuid: None,
            last_active: Instant::now(),
        }
    }

    /// The result of a turn stopped by the browser.
    pub(crate) fn interrupted_result(&self, trace: Option<&Value>) -> SessionEvent {
        self.event(
            trace,
            Event::interrupted(None, self.last_uuid.clone(), self.sdk_id.clone()),
        )
    }

    /// The permission mode as the browser reads it (never null).
    pub(crate) fn mode_label(&self) -> &str {
        self.permission_mode.as_deref().unwrap_or("default")
    }

    /// What `session.started` and `sessions.snapshot` say about the session.
    pub(crate) fn describe(&self) -> Description {
        Description {
            cwd: self.cwd.to_string_lossy().into_owned(),
            model: self.model.clone().unwrap_or_default(),
            resolved_model: self.resolved_model.clone(),
            provider: self.provider.clone(),
            permission_mode: self.mode_label().to_string(),
            effort: self.effort.clone(),
        }
    }

    /// The `session.result` of a turn the daemon answered itself (no CLI turn, no cost).
    pub(crate) fn local_result(
        &self,
        trace: Option<&Value>,
        result: Option<String>,
    ) -> SessionEvent {
        self.event(
            trace,
            Event::local_result(result, self.last_uuid.clone(), self.sdk_id.clone()),
        )
    }

    /// A turn the daemon answers itself with `notice` (a command this agent cannot run
    /// here): the notice, then the turn's result.
    pub(crate) fn answer_with_notice(
        &self,
        trace: Option<&Value>,
        notice: Event,
        out: &mut Vec<SessionEvent>,
    ) {
        out.push(self.event(trace, notice));
        out.push(self.local_result(trace, None));
    }

    /// The next queued turn, taken, with the agent's id of the conversation, when the
    /// agent can be given one now: none runs, the front one's media are saved, the
    /// conversation has its id and the child is initialized.
    pub(crate) fn take_ready_turn(&mut self) -> Option<(String, Turn)> {
        if self.current.is_some() || self.queue.front().is_none_or(|t| t.preparing) {
            return None;
        }
        let id = self.sdk_id.clone()?;
        if !self.child.as_ref().is_some_and(|c| c.initialized) {
            return None;
        }
        Some((id, self.queue.pop_front()?))
    }

    /// A `session.notice` at warning level.
    pub(crate) fn warning(&self, trace: Option<&Value>, code: &str, text: &str) -> SessionEvent {
        self.event(trace, Event::warning(code, text))
    }

    /// A `session.error` with a code and message.
    pub(crate) fn error(&self, trace: Option<&Value>, code: &str, message: &str) -> SessionEvent {
        self.event(trace, Event::error(code, message))
    }

    /// An event of this session (under its current id).
    pub(crate) fn event(&self, trace: Option<&Value>, event: Event) -> SessionEvent {
        SessionEvent::new(self.id.clone(), trace, event)
    }

    /// An event of the running turn, tagged with the subagent it came from, if any.
    pub(crate) fn turn_event(&self, scope: &Scope, event: Event) -> SessionEvent {
        let trace = self.current.as_ref().and_then(|t| t.trace_id.as_ref());
        self.event(trace, event).under(scope.clone())
    }

    pub(crate) fn trace(&self) -> Option<Value> {
        self.current
            .as_ref()
            .and_then(|t| t.trace_id.clone())
            .or_else(|| self.queue.front().and_then(|t| t.trace_id.clone()))
    }

    pub(crate) fn running(&self) -> bool {
        self.current.is_some()
            || !self.awaiting.is_empty()
            || (!self.queue.is_empty() && self.child.is_some())
    }

    pub(crate) fn send(&self, line: String) -> bool {
        match &self.child {
            Some(live) => live.handle.send_line(line),
            None => false,
        }
    }

    pub(crate) fn mark_emitted(&mut self) {
        if let Some(t) = self.current.as_mut() {
            t.emitted = true;
        }
    }

    /// Take the turn running now and the prompts waiting behind a turn the agent started
    /// (with `queued`, every queued turn too). What they streamed is the caller's to
    /// commit ([`crate::providers::commit_open`]) before it ends them.
    pub(crate) fn end_running(&mut self, queued: bool) -> Vec<Turn> {
        let mut turns: Vec<Turn> = self.current.take().into_iter().collect();
        turns.extend(self.awaiting.drain(..));
        if queued {
            turns.extend(self.queue.drain(..));
        }
        turns
    }
}

/// The `permission.request` input as sent to the browser: as it is, or, when it is too
/// large to relay comfortably, with every long string cut and `input_truncated` set.
/// The CLI still gets the whole original input back with an allow.
pub(crate) fn permission_input(input: &Value) -> (Value, bool) {
    let size = serde_json::to_vec(input).map(|v| v.len()).unwrap_or(0);
    if size <= MAX_PERMISSION_INPUT {
        return (input.clone(), false);
    }
    fn cut(v: &Value, depth: usize, budget: &mut usize) -> Value {
        match v {
            Value::String(t) if t.len() > CUT_STRING || *budget < t.len() => {
                let keep = CUT_STRING.min(*budget);
                let mut end = keep.min(t.len());
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                *budget = budget.saturating_sub(end);
                Value::String(format!(
                    "{}… [{} more bytes not shown]",
                    &t[..end],
                    t.len() - end
                ))
            }
            Value::String(t) => {
                *budget = budget.saturating_sub(t.len());
                v.clone()
            }
            Value::Array(items) if depth < 16 => Value::Array(
                items
                    .iter()
                    .take(1000)
                    .map(|i| cut(i, depth + 1, budget))
                    .collect(),
            ),
            Value::Object(m) if depth < 16 => Value::Object(
                m.iter()
                    .take(1000)
                    .map(|(k, i)| (k.clone(), cut(i, depth + 1, budget)))
                    .collect(),
            ),
            Value::Array(_) | Value::Object(_) => Value::String("[not shown]".into()),
            other => other.clone(),
        }
    }
    let mut budget = MAX_PERMISSION_INPUT;
    (cut(input, 0, &mut budget), true)
}

pub(crate) fn next_turn_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}
