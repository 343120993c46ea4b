//! The relay side of the node: one outbound WebSocket ([`link`], with its own TLS in
//! [`tls`]), the frames on it ([`envelope`]), reliable delivery of events ([`outbox`]),
//! de-duplication of redelivered commands ([`dedupe`]) and reconnect delays
//! ([`backoff`]). Everything here is driven by [`crate::hub`].

pub mod backoff;
pub mod dedupe;
pub mod envelope;
pub mod link;
pub mod outbox;
pub mod tls;
