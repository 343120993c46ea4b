//! What `history.get` sees of a session held here: its provider, its real id once
//! known, whether a turn runs, and a `history.detail` built from memory for the moment
//! before the agent has a transcript to read; and the id `history.mark_read` marks.
//! Runs on the hub thread.

use serde_json::json;

use super::Sessions;
use crate::protocol::SessionId;
use crate::protocol::events::{Event, SessionEvent, raw};
use crate::providers::claude::stream::BlockKind;
use crate::providers::note::user_part;
use crate::session::short;

/// A held session as `history.get` sees it (see [`Sessions::live_history`]).
pub(crate) struct LiveHistory {
    pub(crate) provider: String,
    /// The agent's id of it, once known and safe as a file name.
    pub(crate) real_id: Option<SessionId>,
    pub(crate) running: bool,
    /// The in-memory `history.detail`, under the asked id.
    pub(crate) detail: SessionEvent,
}

impl Sessions {
    /// What `history.get` of `id` should open when `id` is a session held here (its own
    /// id or one it had before a re-key): its provider, the agent's real id once known,
    /// whether a turn runs, and what the conversation holds in memory so far (the
    /// prompts written or waiting, and the text streaming now), for the moment before
    /// the agent has a transcript to read.
    pub(crate) fn live_history(&self, id: &str) -> Option<LiveHistory> {
        let s = self.sessions.get(&self.key_of(id)?)?;
        let mut events = Vec::new();
        let turns = s
            .current
            .iter()
            .chain(s.awaiting.iter())
            .chain(s.queue.iter())
            .filter(|t| !t.auto);
        for t in turns {
            events.push(json!({"kind": "prompt", "text": user_part(&t.prompt)}));
        }
        let mut open: Vec<_> = s
            .agent
            .claude_ref()
            .into_iter()
            .flat_map(|st| st.blocks.iter())
            .collect();
        open.sort_by_key(|(k, _)| k.1);
        for (_, b) in open {
            let kind = match b.kind {
                BlockKind::Text => "text",
                BlockKind::Thinking => "thinking",
                BlockKind::Other => continue,
            };
            if !b.text.is_empty() && b.parent.is_none() {
                events.push(json!({"kind": kind, "text": b.text}));
            }
        }
        let title = events
            .first()
            .and_then(|e| e["text"].as_str())
            .map(|t| short(t, 80))
            .unwrap_or_else(|| "(no prompt)".to_string());
        let detail = SessionEvent::new(
            id,
            None,
            Event::HistoryDetail {
                provider: s.provider.clone(),
                title,
                cwd: Some(s.cwd.to_string_lossy().into_owned()),
                git_branch: None,
                model: s.model.clone().unwrap_or_default(),
                resolved_model: s.resolved_model.clone(),
                permission_mode: s.mode_label().to_string(),
                effort: s.effort.clone(),
                events: events.iter().map(raw).collect(),
                truncated: false,
                running: Some(s.running()),
            },
        );
        Some(LiveHistory {
            provider: s.provider.clone(),
            // The agent's own word for it, held as text: parsed here, where it is read.
            real_id: s.sdk_id.as_deref().and_then(SessionId::parse),
            running: s.running(),
            detail,
        })
    }

    /// The id `history.mark_read` of `asked` marks: the real id of a session held here
    /// under an id it had before a re-key, else `asked` itself (`parsed`, as the command
    /// brought it); `None` when that is not a safe id.
    pub(crate) fn marked_id(&self, asked: &str, parsed: Option<SessionId>) -> Option<SessionId> {
        match self.aliases.get(asked) {
            Some(real) => SessionId::parse(real),
            None => parsed,
        }
    }
}
