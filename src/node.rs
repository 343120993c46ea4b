//! Node services the browser asks for besides sessions: [`capabilities`] (what the node
//! offers), [`fslist`] (the directory picker), [`media`] (a turn's images and
//! attachments), [`history`] (every provider's past sessions), [`reads`] (unread marks of the history) and [`sidecar`] (per-session
//! settings kept beside the agents' own transcripts). Disk and network work runs on
//! [`crate::hub::worker`] threads.

pub mod capabilities;
pub mod fslist;
pub mod history;
pub mod media;
pub mod reads;
pub mod runstate;
pub mod sidecar;
