//! A turn's media: the images and attachments of a turn are saved on a worker (they can
//! be tens of MiB) while the turn waits in the queue, then the turn gets a note naming
//! them and may run. Runs on the hub thread; only the saving is on the worker.

use serde_json::Value;

use super::Sessions;
use crate::hub::worker::Work;
use crate::node::media::{Prepared, prepare};
use crate::protocol::commands::TurnCmd;
use crate::protocol::events::SessionEvent;
use crate::providers::note::with_note;

impl Sessions {
    /// If the newest turn of `key` came with images or attachments, hold it and save
    /// them on a worker; [`Sessions::on_prepared`] lets it run.
    /// The media move to the worker (no copy: images can be tens of MiB).
    pub(super) fn prepare_media(
        &mut self,
        key: &str,
        t: &mut TurnCmd,
        out: &mut Vec<SessionEvent>,
    ) {
        if !t.has_media() {
            return;
        }
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(turn) = s.queue.back_mut() else {
            return;
        };
        turn.preparing = true;
        let (turn_id, cwd, sid) = (turn.id, s.cwd.clone(), s.id.clone());
        let media = self.settings.media.clone();
        let owner = key.to_string();
        let (images, attachments) = (t.images.take(), t.attachments.take());
        let files = std::mem::take(&mut t.files);
        let bytes = json_bytes(images.as_ref())
            + json_bytes(attachments.as_ref())
            + files.iter().map(|f| f.bytes.len()).sum::<usize>();
        let started = self
            .workers
            .run_sized("media", bytes, move || Work::Prepared {
                session: owner,
                turn: turn_id,
                prepared: prepare(
                    &cwd,
                    &sid,
                    images.as_ref(),
                    attachments.as_ref(),
                    files,
                    &media,
                ),
            });
        if !started {
            let prepared = Prepared {
                saved: Vec::new(),
                notices: vec![
                    "the node is busy; the images and attachments of this turn were not saved"
                        .into(),
                ],
            };
            self.on_prepared(key, turn_id, prepared, out);
        }
    }

    /// A turn's media are saved: add the note to its prompt and let it run. A turn left
    /// with nothing to run (no prompt, nothing saved) is dropped with a `session.error`.
    pub(crate) fn on_prepared(
        &mut self,
        session: &str,
        turn_id: u64,
        prepared: Prepared,
        out: &mut Vec<SessionEvent>,
    ) {
        let Some(key) = self.key_of(session) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let Some(pos) = s.queue.iter().position(|t| t.id == turn_id) else {
            return;
        };
        let Some(turn) = s.queue.get_mut(pos) else {
            return;
        };
        turn.prompt = with_note(&turn.prompt, &prepared.note());
        turn.images = prepared
            .saved
            .iter()
            .filter(|(_, kind)| kind.starts_with("image/"))
            .map(|(p, _)| p.clone())
            .collect();
        turn.preparing = false;
        let trace = turn.trace_id.clone();
        let empty = turn.prompt.trim().is_empty();
        for text in &prepared.notices {
            out.push(s.warning(trace.as_ref(), "attachment_skipped", text));
        }
        if empty {
            s.queue.remove(pos);
            let why = if prepared.notices.is_empty() {
                "nothing was attached".to_string()
            } else {
                prepared.notices.join("; ")
            };
            out.push(s.error(
                trace.as_ref(),
                "provider_error",
                &format!(
                    "Nothing to run: the prompt is empty and none of the attachments could be used ({why})."
                ),
            ));
        }
        self.pump(&key, out);
    }
}

/// Roughly the bytes a JSON value holds (its strings), to bound the workers' queue.
fn json_bytes(v: Option<&Value>) -> usize {
    match v {
        Some(Value::String(s)) => s.len(),
        Some(Value::Array(a)) => a.iter().map(|x| json_bytes(Some(x))).sum(),
        Some(Value::Object(m)) => m.iter().map(|(k, x)| k.len() + json_bytes(Some(x))).sum(),
        _ => 0,
    }
}
