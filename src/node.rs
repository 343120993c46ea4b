//! Node services the browser asks for besides sessions: [`capabilities`] (what the node
//! offers), [`fslist`] (the directory picker), [`media`] (a turn's images and
//! attachments), [`history`] (every provider's past sessions), [`reads`] (unread marks of
//! the history) and [`runstate`] (what a running daemon says about itself for `status`).
//! Disk and network work runs on the hub's worker threads.

pub mod capabilities;
pub mod fslist;
pub mod history;
pub mod media;
pub mod reads;
pub mod runstate;
