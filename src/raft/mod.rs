//! Everything that wraps raft-rs.
//!
//! - `handle`: how the rest of the node talks to a replica ([`handle::PeerHandle`]:
//!   messages in, answers out, the shared epoch). It sits below `node::ctx`.
//! - `peer`: the actor that owns one replica's `RawNode`. Its `impl Peer` is split by
//!   feature: `ready` (the ready loop: persist, apply, send, in raft-rs's order),
//!   `admin` (membership, leader transfer, log GC, status), `split` (proposing a
//!   split, starting the new shard's replica), `replica_read` (follower ReadIndex
//!   and the leader contact bounded-staleness reads rely on). It sits above `node::ctx`, whose
//!   services it uses.
//! - `transport`: one batched stream per destination node, chunked snapshots, and the
//!   `MessageFilter` seam tests use to drop or partition traffic.
//! - `logger`: raft-rs's slog output bridged into `tracing`.

pub(crate) mod admin;
pub(crate) mod handle;
pub(crate) mod hibernate;
pub(crate) mod logger;
pub(crate) mod peer;
pub(crate) mod ready;
#[cfg(test)]
mod ready_sim;
pub(crate) mod replica_read;
pub(crate) mod split;
pub mod transport;
