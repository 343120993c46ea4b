//! History across providers (`history.list`, `history.get`, `history.mark_read`): each
//! agent's own session files, read by its provider ([`crate::providers::claude::history`],
//! [`crate::providers::codex::history`], [`crate::providers::acp::history`]) with the
//! shared toolkit in [`crate::history`], listed together newest first with unread marks
//! ([`crate::node::reads`]). Runs on worker threads, never on the hub.

use std::path::{Path, PathBuf};

use crate::history::detail::DetailError;
use crate::history::listing::{self, Found, Summarizer, mtime_ms, summary_cached};
use crate::node::reads::Reads;
use crate::protocol::SessionId;
use crate::protocol::events::{Event, HistoryEntry, SessionEvent};
use crate::providers::acp::history as acp;
use crate::providers::claude::history as claude;
use crate::providers::claude::transcript::claude_dir;
use crate::providers::codex::history as codex;

/// Where each provider keeps its sessions (`None`: no such directory).
#[derive(Debug, Clone, Default)]
pub struct Dirs {
    /// `$CLAUDE_CONFIG_DIR` or `~/.claude`.
    pub claude: Option<PathBuf>,
    /// `$CODEX_HOME` or `~/.codex`.
    pub codex: Option<PathBuf>,
    /// `$COPILOT_HOME` or `~/.copilot`.
    pub copilot: Option<PathBuf>,
    /// `$GEMINI_CLI_HOME/.gemini` or `~/.gemini`.
    pub gemini: Option<PathBuf>,
    /// Where the summary index is kept (`<config dir>/history-index.json`).
    pub index: Option<PathBuf>,
}

impl Dirs {
    /// From the environment and the home dir.
    pub fn from_env(home: Option<&Path>) -> Dirs {
        let var = |k: &str| std::env::var_os(k).map(PathBuf::from);
        Dirs {
            claude: claude_dir(home, var("CLAUDE_CONFIG_DIR").as_deref()),
            codex: codex::codex_home(home, var("CODEX_HOME").as_deref()),
            copilot: acp::copilot_home(home, var("COPILOT_HOME").as_deref()),
            gemini: acp::gemini_dir(home, var("GEMINI_CLI_HOME").as_deref()),
            index: None,
        }
    }
}

/// One session file of one provider, with how that provider summarizes it.
struct Listed {
    provider: &'static str,
    found: Found,
    summarize: Summarizer,
}

/// Every provider's session files.
fn sources(dirs: &Dirs) -> Vec<Listed> {
    let mut out = Vec::new();
    let mut add = |provider, files: Vec<Found>, summarize: Summarizer| {
        out.extend(files.into_iter().map(|found| Listed {
            provider,
            found,
            summarize,
        }));
    };
    if let Some(d) = &dirs.claude {
        add("claude", claude::transcripts(d), claude::SUMMARIZER);
    }
    if let Some(d) = &dirs.codex {
        add(
            "codex",
            codex::rollouts(d),
            Summarizer::Whole(codex::summarize),
        );
    }
    if let Some(d) = &dirs.copilot {
        add("copilot", acp::copilot_sessions(d), acp::COPILOT_SUMMARIZER);
    }
    if let Some(d) = &dirs.gemini {
        add(
            "gemini",
            acp::gemini_sessions(d),
            Summarizer::Whole(acp::gemini_summarize),
        );
    }
    out
}

/// `history.list`: every provider's sessions, newest first, at most `limit` (clamped to
/// 1..=1000), each with `unread` from the read marks.
pub fn list(dirs: &Dirs, limit: Option<i64>, running: &[String], reads: &Reads) -> SessionEvent {
    let limit = limit.unwrap_or(200).clamp(1, 1000) as usize;
    if let Some(file) = &dirs.index {
        listing::open_index(file);
    }
    let mut all = sources(dirs);
    all.sort_by(|a, b| {
        (b.found.mtime.cmp(&a.found.mtime)).then_with(|| a.found.id.cmp(&b.found.id))
    });
    all.truncate(limit);
    let (baseline, marks) = reads.snapshot();
    let sessions: Vec<HistoryEntry> = all
        .iter()
        .map(|l| {
            let (provider, f) = (l.provider, &l.found);
            let s = summary_cached(&f.path, f.size, f.mtime, l.summarize);
            let running = running.contains(&f.id);
            let seen = marks
                .get(&crate::node::reads::key(provider, &f.id))
                .copied()
                .unwrap_or(0)
                .max(baseline);
            HistoryEntry {
                provider: provider.to_string(),
                session_id: f.id.clone(),
                title: s.title,
                cwd: s.cwd,
                git_branch: s.git_branch,
                updated_at: f.mtime,
                message_count: s.message_count,
                running,
                unread: !running && f.mtime > seen,
            }
        })
        .collect();
    listing::save_index();
    SessionEvent::reply(None, Event::HistorySnapshot { sessions })
}

/// `history.get` of `provider`'s session `id`.
pub(crate) fn detail(
    dirs: &Dirs,
    config_dir: &Path,
    provider: &str,
    id: &SessionId,
) -> Result<SessionEvent, DetailError> {
    match provider {
        "claude" => claude::detail(dirs.claude.as_deref(), config_dir, id),
        "codex" => codex::detail(dirs.codex.as_deref(), config_dir, id),
        "copilot" => acp::copilot_detail(dirs.copilot.as_deref(), config_dir, id),
        "gemini" => acp::gemini_detail(dirs.gemini.as_deref(), config_dir, id),
        other => Err(DetailError::UnknownProvider(other.to_string())),
    }
}

/// The last-modified time (ms) of a session's file, for a mark without a time.
pub fn updated_at(dirs: &Dirs, provider: &str, id: &SessionId) -> Option<u64> {
    match provider {
        "claude" => claude::updated_at(dirs.claude.as_deref(), id),
        "codex" => {
            let path = codex::find(dirs.codex.as_deref()?, id)?;
            std::fs::metadata(path).ok().map(|m| mtime_ms(&m))
        }
        "gemini" => acp::gemini_sessions(dirs.gemini.as_deref()?)
            .into_iter()
            .find(|f| f.id == **id)
            .map(|f| f.mtime),
        "copilot" => {
            let path = dirs
                .copilot
                .as_deref()?
                .join("session-state")
                .join(&**id)
                .join("events.jsonl");
            std::fs::metadata(path).ok().map(|m| mtime_ms(&m))
        }
        _ => None,
    }
}
