//! Operating-system plumbing shared by everything else: child processes ([`child`]) and
//! the guard that keeps them from outliving the daemon ([`guard`]), orphan reaping as
//! PID 1 ([`reaper`]), private files ([`fsutil`]), the logger ([`logging`]), random ids
//! ([`ids`]), timestamps ([`timefmt`]), secrets that never print ([`secret`]) and the
//! thread that writes small state files in order off the hub ([`saver`]), byte
//! bounds for queues whose items can be megabytes ([`budget`]), and the memory left to
//! start agents in ([`memory`]).

pub mod account;
pub mod budget;
pub mod child;
pub mod fsutil;
pub mod guard;
pub mod ids;
pub mod logging;
pub mod memory;
pub mod reaper;
pub mod saver;
pub mod secret;
pub mod timefmt;
