//! What sessions leave on disk that the providers' code and the hub share, below both:
//! the per-session settings [`sidecar`] beside the agents' own transcripts. Plain
//! functions on files; callers run them on worker threads, never on the hub.

pub mod sidecar;
