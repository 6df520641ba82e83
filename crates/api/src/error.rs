//! The crate's error type. Routing conditions are typed variants the client acts on
//! (DESIGN §5); `status` is the one place that maps them to and from gRPC.

use crate::proto::{ReplicaInfo, ShardRoute};
use crate::types::ShardId;
use std::time::Duration;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in ctxstore, server or client side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// This replica does not lead the shard; retry at the hint.
    #[error("not the leader of shard {shard}{}", hint_text(.leader))]
    NotLeader {
        /// The shard asked for.
        shard: ShardId,
        /// The leader as this replica knows it.
        leader: Option<ReplicaInfo>,
    },
    /// The client routed with an older ring version than the shard's, or to a shard
    /// that no longer owns the key (a split moved it); nothing was applied. Update
    /// the routing from `current` (or refresh it) and retry.
    #[error("stale epoch for shard {shard}: current conf_ver {conf_ver}, ring_ver {ring_ver}")]
    StaleEpoch {
        /// The shard asked for.
        shard: ShardId,
        /// Current configuration version.
        conf_ver: u64,
        /// Current ring version.
        ring_ver: u64,
        /// The shard's current descriptor and those split from it, as the answering
        /// node knows them.
        current: Vec<ShardRoute>,
    },
    /// The key is not owned by the shard the request named.
    #[error("shard {shard} does not own this key or does not exist on this node")]
    WrongShard {
        /// The shard asked for.
        shard: ShardId,
    },
    /// No leader right now (election in progress), or a proposal lost; back off and
    /// retry.
    #[error("shard {shard} unavailable: {reason}")]
    ShardUnavailable {
        /// The shard asked for.
        shard: ShardId,
        /// What is going on.
        reason: String,
        /// `false`: not applied and never will be (safe to retry anywhere); `true`:
        /// proposed, outcome unknown (it may have been applied: retry with the same
        /// request id, or read first).
        outcome_unknown: bool,
    },
    /// A bounded-staleness read reached a follower that has not heard from its leader
    /// recently enough or has not applied the client's `min_version`; nothing was read.
    /// Another replica or the leader may serve it.
    #[error("replica of shard {shard} too stale for the read: applied {applied}, {}", contact_text(.contact_age_ms))]
    ReplicaTooStale {
        /// The shard asked for.
        shard: ShardId,
        /// The replica's applied index.
        applied: u64,
        /// Milliseconds since the replica last heard from its leader (None: not in
        /// this term).
        contact_age_ms: Option<u64>,
    },
    /// A request field is malformed.
    #[error("invalid argument `{field}`: {reason}")]
    InvalidArgument {
        /// The offending field.
        field: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A compare-and-swap or batch check failed; nothing was written.
    #[error("version mismatch on key {}: expected {expected}, actual {actual}", String::from_utf8_lossy(.key))]
    VersionMismatch {
        /// The key whose version differed.
        key: bytes::Bytes,
        /// The version the request expected (0 = absent).
        expected: u64,
        /// The key's version (0 = absent).
        actual: u64,
    },
    /// A size or count limit was exceeded; nothing was written.
    #[error("{limit} exceeded: {actual} > {max}")]
    LimitExceeded {
        /// The limit's name (as in the config file).
        limit: String,
        /// The configured maximum.
        max: u64,
        /// What the request had.
        actual: u64,
    },
    /// A conversation's last seq was not the one the request expected; nothing was
    /// written.
    #[error("conversation {conversation}: expected last seq {expected}, actual {actual}")]
    SequenceMismatch {
        /// `namespace/id` of the conversation.
        conversation: String,
        /// The last seq the request expected.
        expected: u64,
        /// The conversation's last seq.
        actual: u64,
    },
    /// A watch asked for changes older than the server retains; re-read the data,
    /// then watch from the version read.
    #[error("watch from version {requested} is compacted: only changes after version {retained_after} are retained; re-read and watch from the version read")]
    WatchCompacted {
        /// The version the watch asked to start after.
        requested: u64,
        /// Changes with versions above this are retained.
        retained_after: u64,
    },
    /// The request is well formed but cannot be carried out in the cluster's current
    /// state (for example a split while another split or a membership change of the
    /// shard is in progress); nothing was changed. Retry once the state has changed.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// No credentials, or credentials the cluster does not know (auth is on). An
    /// unknown token and a wrong secret get the same error.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller is known but its roles do not allow the call. Says nothing about
    /// whether the target exists.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The conversation, thread, checkpoint or model does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// This node is starting, joining, or has no replica of the shard yet.
    #[error("node not ready: {0}")]
    NodeNotReady(String),
    /// The configuration is invalid.
    #[error("invalid config `{field}`: {reason}")]
    Config {
        /// The offending field (as in the TOML file or flag).
        field: String,
        /// Why.
        reason: String,
    },
    /// RocksDB or a persisted record failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// raft-rs refused an operation.
    #[error("raft error: {0}")]
    Raft(String),
    /// A node could not be reached.
    #[error("transport error: {0}")]
    Transport(String),
    /// The request's deadline passed while retrying.
    #[error("deadline of {0:?} exceeded; last error: {1}")]
    Timeout(Duration, Box<Error>),
    /// The node is shutting down.
    #[error("shutting down")]
    Shutdown,
    /// A gRPC status without a typed detail.
    #[error("rpc error {code:?}: {message}")]
    Rpc {
        /// The gRPC code.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
    /// A bug or a broken invariant.
    #[error("internal error: {0}")]
    Internal(String),
}

fn hint_text(leader: &Option<ReplicaInfo>) -> String {
    match leader {
        Some(l) => format!(" (leader is node {} at {})", l.node_id, l.addr),
        None => " (leader unknown)".to_string(),
    }
}

fn contact_text(age: &Option<u64>) -> String {
    match age {
        Some(ms) => format!("last heard from its leader {ms} ms ago"),
        None => "no contact with a leader in this term".to_string(),
    }
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::LimitExceeded`].
    pub fn limit(limit: &str, max: u64, actual: u64) -> Self {
        Error::LimitExceeded {
            limit: limit.to_string(),
            max,
            actual,
        }
    }

    /// Shorthand for [`Error::Config`].
    pub fn config(field: &str, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// Whether retrying the same request elsewhere or later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::NotLeader { .. }
                | Error::StaleEpoch { .. }
                | Error::WrongShard { .. }
                | Error::ShardUnavailable { .. }
                | Error::ReplicaTooStale { .. }
                | Error::NodeNotReady(_)
                | Error::Transport(_)
                | Error::Shutdown
        )
    }
}

impl From<prost::DecodeError> for Error {
    fn from(e: prost::DecodeError) -> Self {
        Error::Storage(format!("corrupt record: {e}"))
    }
}

impl Error {
    /// A copy of a routing error (they carry only plain data); any other error becomes
    /// an `Internal` error with the same text.
    pub fn clone_routing(&self) -> Error {
        match self {
            Error::NotLeader { shard, leader } => Error::NotLeader {
                shard: *shard,
                leader: leader.clone(),
            },
            Error::ShardUnavailable {
                shard,
                reason,
                outcome_unknown,
            } => Error::ShardUnavailable {
                shard: *shard,
                reason: reason.clone(),
                outcome_unknown: *outcome_unknown,
            },
            other => Error::Internal(other.to_string()),
        }
    }
}
