//! Identifier newtypes (DESIGN §1).

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                Self(v)
            }
        }
    };
}

id_type!(
    /// One `ctxd` process with one data directory; never reused.
    NodeId
);
id_type!(
    /// One Raft group owning a set of ring arcs.
    ShardId
);
id_type!(
    /// One member of a shard on one node: its raft-rs peer id; unique in the cluster
    /// and never reused.
    ReplicaId
);

/// The first data shard: the one a single-shard cluster keeps all data in, and the one
/// administrative requests name when they name none.
pub const DEFAULT_SHARD: ShardId = ShardId(1);

/// The meta shard: the Raft group holding the routing table (nodes, every shard's
/// descriptor and leader hint). It owns no hash range, so no key request reaches it.
pub const META_SHARD: ShardId = ShardId(0);
