//! Chat channels: ways to drive sessions besides the browser, run inside the daemon on
//! their own threads. [`config`] reads `<config dir>/channels.toml`; [`telegram`] is the
//! Bot API client.

pub mod config;
pub mod telegram;
