//! Everything that wraps raft-rs.
//!
//! - `peer`: the actor that owns one replica's `RawNode`; callers hold a `PeerHandle`.
//!   Its `impl Peer` is split by feature: `ready` (the ready loop: persist, apply,
//!   send, in raft-rs's order), `admin` (membership, leader transfer, log GC, status).
//! - `transport`: one batched stream per destination node, chunked snapshots, and the
//!   `MessageFilter` seam tests use to drop or partition traffic.
//! - `logger`: raft-rs's slog output bridged into `tracing`.

pub(crate) mod admin;
pub(crate) mod logger;
pub(crate) mod peer;
pub(crate) mod ready;
#[cfg(test)]
mod ready_sim;
pub mod transport;

pub(crate) use peer::{PeerHandle, PeerMsg};
