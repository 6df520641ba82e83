//! raft-rs logs through slog; this routes it into `tracing`, one child logger per shard.

use crate::types::{ReplicaId, ShardId};
use slog::o;

/// A logger for one replica whose records carry its shard and replica ids.
pub(crate) fn replica_logger(shard: ShardId, replica: ReplicaId) -> slog::Logger {
    let root = slog::Logger::root(tracing_slog::TracingSlogDrain, o!());
    root.new(o!("shard" => shard.0, "replica" => replica.0))
}
