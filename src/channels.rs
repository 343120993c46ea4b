//! Chat channels: ways to drive sessions besides the browser, run inside the daemon on
//! their own threads. [`config`] reads `<config dir>/channels.toml`; [`telegram`] is the
//! Bot API client; [`runner`] the threads of one bot; [`chats`] the hub's side (which
//! chat owns which session, and how its events become messages).

pub mod chats;
pub use chats::GrantView;
pub mod config;
pub mod runner;
pub mod telegram;
