//! ctxstore's server: a sharded, Raft-replicated, strongly consistent key-value store
//! for the working memory of LLM agents. The design is `docs/design.md`; what is
//! built, and where it departs from the design, is `docs/architecture.md` (which has
//! the one module map). Clients use the `ctxstore-client` crate; the wire types,
//! errors, ring and key rules shared with them live in `ctxstore-api`.
//!
//! # Layers
//!
//! Modules form layers, and **a module imports only from its own layer or the layers
//! below it** (`tests/layering.rs` reads every `crate::` path outside test code and
//! fails on an upward one):
//!
//! | layer | modules | owns |
//! | --- | --- | --- |
//! | 1. leaf | `error`, `proto`, `types`, `ring`, `ranges`, `context`, `util` (from `ctxstore-api`), `keys`, `config`, `cluster_config`, `auth`, `metrics`, `otel` | wire types, errors, ids, hash ranges, key layout, settings and the cluster's dynamic settings, users, roles and tokens, the node's metric handles, span export (feature `otel`) |
//! | 2. storage | `storage::{engine, peer_storage, log_writer, snapshot}` | RocksDB, the Raft log mirror, group commit, snapshots |
//! | 3. state machine | `meta::state`, `load`, `pd` (the placement driver's decisions, pure), then `fsm::{watch, budget, command, context, queue, read, apply}` | what a committed command does, and reading it back; a leader's load statistics |
//! | 4. replica handle | `raft::{handle, logger, transport}`, `meta::cache`, `node::lease` | talking to a replica; node-to-node messages; the deadlines of the leases a node's leaders count |
//! | 5. node context | `node::ctx` | the services and registries replicas share |
//! | 6. replica actor | `raft::{peer, ready, admin}` | the task owning one `RawNode` |
//! | 7. replica creation | `node::replicas` | load, bootstrap, create on a leader's message |
//! | 8. node services | `meta::service`, `node::purge`, `node::lease_keeper` | heartbeats, routing table, TTL purge, lease expiry |
//! | 9. gRPC | `server::{path, watch}`, then `server::{kv, lease, queue, context, cluster, raft_service, grpc_metrics, grpc_trace, status}`, then `server` | the tonic services, a span per call, and the HTTP status listener (metrics, health) |
//! | 10. process | `node` (`Node`), `dev`, `bench_support`, `logging` | starting and stopping it all, and the process's logs |
//!
//! The rule in words, after TiKV raftstore-v2's: state-machine logic never knows about
//! replicas; what every replica shares is defined once in `node::ctx`, which holds
//! services and registries but never creates a replica; the actor splits its `impl
//! Peer` by feature (`ready`, `admin`) instead of reaching upward; and services sit on
//! top, talking to replicas only through their handles.

pub mod auth;
pub mod bench_support;
pub mod cluster_config;
pub mod config;
pub mod dev;
#[cfg(test)]
mod docs_tests;
pub mod error;
pub(crate) mod fsm;
pub mod keys;
pub(crate) mod load;
pub mod logging;
pub(crate) mod meta;
pub(crate) mod metrics;
pub mod node;
#[cfg(feature = "otel")]
pub(crate) mod otel;
pub(crate) mod pd;
pub mod pki;
pub mod proto;
pub(crate) mod raft;
pub(crate) mod server;
pub(crate) mod storage;

pub use ctxstore_api::{context, ranges, ring, types, util};

pub use crate::raft::transport::MessageFilter;
pub use config::NodeConfig;
pub use error::{Error, Result};
pub use fsm::read::IndexCheck;
pub use node::Node;
pub use types::{NodeId, ReplicaId, ShardId};
