//! What sessions leave on disk, below the providers and shared by them: the per-session
//! settings [`sidecar`] beside the agents' own transcripts, and the toolkit every
//! provider's history reader is built on: bounded reading of JSONL files (`jsonl`),
//! what the listing shows of a session (`listing`) and what `history.get` answers
//! (`detail`). Each agent's own record format stays with its provider. Plain functions
//! on files; callers run them on worker threads, never on the hub.

pub(crate) mod detail;
pub(crate) mod jsonl;
pub(crate) mod listing;
pub mod sidecar;
