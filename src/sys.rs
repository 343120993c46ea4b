//! Operating-system plumbing shared by everything else: child processes ([`child`]) and
//! the guard that keeps them from outliving the daemon ([`guard`]), orphan reaping as
//! PID 1 ([`reaper`]), private files ([`fsutil`]), the logger ([`logging`]), the
//! hash-chained audit log ([`audit`]), random ids ([`ids`]), timestamps ([`timefmt`]),
//! secrets that never print ([`secret`]) and the thread that writes small state files in
//! order off the hub ([`saver`]), byte bounds for queues whose items can be megabytes
//! ([`budget`]), and the memory left to start agents in ([`memory`]), and where in a
//! config file's text an error is ([`textpos`]).

pub mod account;
pub mod audit;
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
pub mod textpos;
pub mod timefmt;
