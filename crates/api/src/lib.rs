//! ctxstore's wire API, shared by the bundled clients and the server: the generated
//! gRPC types ([`proto`]), the error type and its single mapping to and from gRPC
//! status ([`error`], `status`), the id types, the consistent-hash ring ([`ring`]), the
//! partition-key rule ([`keys`]), the agent context API's key layout and name
//! checks ([`context`]) and the W3C `traceparent` header ([`trace`]).
//!
//! This crate depends on no storage engine and no Raft library: a client that links
//! it builds in seconds. The server's own layout rules are in the `ctxstore` crate.

pub mod backup;
pub mod context;
pub mod error;
pub mod keys;
pub mod proto;
pub mod ranges;
pub mod ring;
mod status;
pub mod tls;
pub mod trace;
pub mod types;
pub mod util;

pub use error::{Error, Result};
pub use types::{NodeId, ReplicaId, ShardId, DEFAULT_SHARD, META_SHARD};
