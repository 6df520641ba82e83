//! Persistence of one node: a single RocksDB holding every replica the node hosts.
//!
//! - `engine`: opening RocksDB with the column families of DESIGN §4.
//! - `peer_storage`: the in-memory mirror of one replica's durable Raft log that
//!   implements `raft::Storage` (raft-rs reads it synchronously, so it never touches
//!   RocksDB after load).
//! - `log_writer`: the node-wide thread that group-commits every replica's log writes
//!   with one WriteBatch and one WAL sync per round.
//! - `index`: the node's indexes of its records: by expiry time, for the TTL purge,
//!   and conversations by namespace and id, for listings.
//! - `snapshot`: shard snapshots as files under `<data-dir>/snap`: building one from a
//!   RocksDB snapshot, spooling one as it arrives, installing one in bounded batches
//!   behind a marker, and redoing an interrupted install at start.
//!
//! Invariant: whatever `peer_storage` shows raft-rs is either durable or queued in the
//! log writer ahead of the notification that makes raft-rs rely on it.

pub(crate) mod engine;
pub(crate) mod index;
pub(crate) mod log_writer;
pub(crate) mod peer_storage;
pub(crate) mod snapshot;
pub(crate) mod split_check;

pub(crate) use engine::Engine;
pub(crate) use log_writer::{LogOp, LogWriter, WriteTask};
pub(crate) use peer_storage::PeerStorage;
