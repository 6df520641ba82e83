//! ctxstore: a sharded, Raft-replicated, strongly consistent key-value store for the
//! working memory of LLM agents.
//!
//! Architecture map (details in `docs/architecture.md`):
//!
//! - [`proto`]: the gRPC API and persisted records, generated from `proto/`.
//! - `keys`: how keys are laid out in RocksDB and which bytes are hashed.
//! - `storage`: the node's RocksDB (`engine`), the per-replica Raft log mirror that
//!   implements `raft::Storage` (`peer_storage`), the node-wide group-committing
//!   `log_writer`, and snapshot build/install.
//! - `fsm`: the replicated state machine: what a committed command does to the data.
//! - `raft`: everything wrapping raft-rs: the per-replica actor (`peer`), the
//!   node-to-node `transport`, and the slog→tracing bridge.
//! - `node`: one `ctxd` process: hosts replicas, bootstraps or joins a cluster.
//! - `server`: the tonic services (`Kv`, `Cluster`, `Raft`).
//! - [`client`]: the bundled Rust client that follows leaders and retries safely.
//! - `ring`: the consistent-hash ring that will place keys on shards (sharding).
//! - [`error`] and `status`: one error type; the single mapping to and from gRPC.

pub mod client;
pub mod config;
pub mod dev;
pub mod error;
pub(crate) mod fsm;
pub mod keys;
pub mod node;
pub mod proto;
pub(crate) mod raft;
pub mod ring;
pub mod server;
pub mod status;
pub(crate) mod storage;
pub mod types;

pub use crate::raft::transport::MessageFilter;
pub use client::{Client, ClientOptions};
pub use config::NodeConfig;
pub use error::{Error, Result};
pub use types::{NodeId, ReplicaId, ShardId};
