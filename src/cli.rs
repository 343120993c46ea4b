//! The command line and the configuration: what a person runs and what the daemon is
//! told. [`app`] dispatches a command (the only place that prints for people; [`audit`],
//! the body of the `audit` command, prints through it), [`args`] parses argv, [`config`]
//! merges flags and environment into a checked [`config::Config`], [`credentials`] and
//! [`pairing`] get and keep the node token, [`lock`] keeps one daemon per config dir,
//! [`qr`] draws the claim link, [`service`] installs and drives the daemon as a service
//! with the units [`units`] renders.

pub mod app;
pub mod args;
pub mod audit;
pub mod config;
pub mod credentials;
pub mod lock;
pub mod pairing;
pub mod qr;
pub mod service;
pub mod units;
