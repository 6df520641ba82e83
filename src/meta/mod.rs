//! The meta shard (shard 0): the cluster's nodes, every shard's descriptor with a leader
//! hint, and `routing_version` (DESIGN §1, §5).
//!
//! - `state`: the replicated state machine, pure logic (below `fsm`, which applies it);
//! - `cache`: what a node keeps in memory of the meta shard and its routing table;
//! - `service`: the meta leader's heartbeat handler, the node's heartbeat loop and
//!   `GetRoutingTable` on any node (above `node::ctx`);
//! - `pd`: the placement driver's runtime on the meta leader: it feeds the pure
//!   planner (`crate::pd`) a view of the cluster and carries its steps out.

pub(crate) mod cache;
pub(crate) mod pd;
pub(crate) mod service;
pub(crate) mod state;
