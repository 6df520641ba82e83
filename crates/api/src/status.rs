//! The single mapping between [`Error`] and `tonic::Status` (DESIGN §5): typed errors
//! travel in the standard rich form, a `google.rpc.Status` in the
//! `grpc-status-details-bin` trailer whose `details` hold one `Any` of type
//! [`DETAIL_TYPE_URL`] (an encoded `ErrorDetail`), so clients of any language act on
//! them without parsing messages. Servers before this form sent the bare
//! `ErrorDetail`; [`detail_of`] reads both.

use crate::error::Error;
use crate::proto::{self, error_detail::Kind, ErrorDetail};
use crate::types::ShardId;
use prost::Message;
use tonic::{Code, Status};

/// The `type_url` of the `Any` that carries an `ErrorDetail`.
pub const DETAIL_TYPE_URL: &str = "type.googleapis.com/ctxstore.v1.ErrorDetail";

/// The `ErrorDetail` in a status's details: the `Any` of type [`DETAIL_TYPE_URL`] in
/// a `google.rpc.Status`, or, from servers before it, the bare message.
pub fn detail_of(details: &[u8]) -> Option<ErrorDetail> {
    if details.is_empty() {
        return None;
    }
    let rich = tonic_types::Status::decode(details).ok().and_then(|s| {
        s.details
            .into_iter()
            .find(|any| any.type_url == DETAIL_TYPE_URL)
    });
    match rich {
        Some(any) => ErrorDetail::decode(any.value.as_slice()).ok(),
        None => ErrorDetail::decode(details).ok(),
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let message = e.to_string();
        let (code, kind) = match e {
            Error::NotLeader { shard, leader } => (
                Code::Unavailable,
                Some(Kind::NotLeader(proto::NotLeader {
                    shard_id: shard.0,
                    leader_hint: leader,
                })),
            ),
            Error::StaleEpoch {
                shard,
                conf_ver,
                ring_ver,
                current,
            } => (
                Code::Aborted,
                Some(Kind::StaleEpoch(proto::StaleEpoch {
                    shard_id: shard.0,
                    conf_ver,
                    ring_ver,
                    current,
                })),
            ),
            Error::WrongShard { shard } => (
                Code::Aborted,
                Some(Kind::WrongShard(proto::WrongShard { shard_id: shard.0 })),
            ),
            Error::ShardUnavailable {
                shard,
                reason,
                outcome_unknown,
            } => (
                Code::Unavailable,
                Some(Kind::ShardUnavailable(proto::ShardUnavailable {
                    shard_id: shard.0,
                    reason,
                    outcome_unknown,
                })),
            ),
            Error::ReplicaTooStale {
                shard,
                applied,
                contact_age_ms,
            } => (
                Code::Unavailable,
                Some(Kind::ReplicaTooStale(proto::ReplicaTooStale {
                    shard_id: shard.0,
                    applied,
                    contact_age_ms,
                })),
            ),
            Error::InvalidArgument { field, reason } => (
                Code::InvalidArgument,
                Some(Kind::InvalidArgument(proto::InvalidArgument {
                    field,
                    reason,
                })),
            ),
            Error::VersionMismatch {
                key,
                expected,
                actual,
            } => (
                Code::FailedPrecondition,
                Some(Kind::VersionMismatch(proto::VersionMismatch {
                    key,
                    expected_version: expected,
                    actual_version: actual,
                })),
            ),
            Error::LimitExceeded { limit, max, actual } => (
                Code::ResourceExhausted,
                Some(Kind::LimitExceeded(proto::LimitExceeded {
                    limit,
                    max,
                    actual,
                })),
            ),
            Error::SequenceMismatch {
                conversation,
                expected,
                actual,
            } => (
                Code::FailedPrecondition,
                Some(Kind::SequenceMismatch(proto::SequenceMismatch {
                    conversation,
                    expected_last_seq: expected,
                    actual_last_seq: actual,
                })),
            ),
            Error::WatchCompacted {
                requested,
                retained_after,
            } => (
                Code::OutOfRange,
                Some(Kind::WatchCompacted(proto::WatchCompacted {
                    requested,
                    retained_after,
                })),
            ),
            Error::FailedPrecondition(reason) => (
                Code::FailedPrecondition,
                Some(Kind::FailedPrecondition(proto::FailedPrecondition {
                    reason,
                })),
            ),
            Error::NotFound(what) => (
                Code::NotFound,
                Some(Kind::NotFound(proto::NotFound { what })),
            ),
            Error::NodeNotReady(reason) => (
                Code::Unavailable,
                Some(Kind::NodeNotReady(proto::NodeNotReady { reason })),
            ),
            Error::Shutdown => (
                Code::Unavailable,
                Some(Kind::NodeNotReady(proto::NodeNotReady {
                    reason: "node is shutting down".into(),
                })),
            ),
            Error::Unauthenticated(_) => (Code::Unauthenticated, None),
            Error::PermissionDenied(_) => (Code::PermissionDenied, None),
            Error::Config { .. } => (Code::InvalidArgument, None),
            Error::Timeout(..) => (Code::DeadlineExceeded, None),
            Error::Rpc { code, .. } => (code, None),
            Error::Transport(_) => (Code::Unavailable, None),
            Error::Storage(_) | Error::Raft(_) | Error::Internal(_) => (Code::Internal, None),
        };
        match kind {
            Some(kind) => {
                let rich = tonic_types::Status {
                    code: code as i32,
                    message: message.clone(),
                    details: vec![prost_types::Any {
                        type_url: DETAIL_TYPE_URL.to_string(),
                        value: ErrorDetail { kind: Some(kind) }.encode_to_vec(),
                    }],
                };
                Status::with_details(code, message, rich.encode_to_vec().into())
            }
            None => Status::new(code, message),
        }
    }
}

impl From<Status> for Error {
    fn from(s: Status) -> Error {
        let detail = detail_of(s.details()).and_then(|d| d.kind);
        match detail {
            Some(Kind::NotLeader(n)) => Error::NotLeader {
                shard: ShardId(n.shard_id),
                leader: n.leader_hint,
            },
            Some(Kind::StaleEpoch(e)) => Error::StaleEpoch {
                shard: ShardId(e.shard_id),
                conf_ver: e.conf_ver,
                ring_ver: e.ring_ver,
                current: e.current,
            },
            Some(Kind::WrongShard(w)) => Error::WrongShard {
                shard: ShardId(w.shard_id),
            },
            Some(Kind::ShardUnavailable(u)) => Error::ShardUnavailable {
                shard: ShardId(u.shard_id),
                reason: u.reason,
                outcome_unknown: u.outcome_unknown,
            },
            Some(Kind::ReplicaTooStale(r)) => Error::ReplicaTooStale {
                shard: ShardId(r.shard_id),
                applied: r.applied,
                contact_age_ms: r.contact_age_ms,
            },
            Some(Kind::InvalidArgument(i)) => Error::InvalidArgument {
                field: i.field,
                reason: i.reason,
            },
            Some(Kind::VersionMismatch(v)) => Error::VersionMismatch {
                key: v.key,
                expected: v.expected_version,
                actual: v.actual_version,
            },
            Some(Kind::LimitExceeded(l)) => Error::LimitExceeded {
                limit: l.limit,
                max: l.max,
                actual: l.actual,
            },
            Some(Kind::NodeNotReady(n)) => Error::NodeNotReady(n.reason),
            Some(Kind::SequenceMismatch(m)) => Error::SequenceMismatch {
                conversation: m.conversation,
                expected: m.expected_last_seq,
                actual: m.actual_last_seq,
            },
            Some(Kind::WatchCompacted(c)) => Error::WatchCompacted {
                requested: c.requested,
                retained_after: c.retained_after,
            },
            Some(Kind::NotFound(n)) => Error::NotFound(n.what),
            Some(Kind::FailedPrecondition(f)) => Error::FailedPrecondition(f.reason),
            None => match s.code() {
                // Connection-level failures surface as Unavailable (or, for a request
                // in flight when the connection dropped, Cancelled) without a detail.
                // Retrying is safe: writes carry request ids.
                Code::Unavailable | Code::Unknown | Code::Cancelled if s.details().is_empty() => {
                    Error::Transport(s.message().to_string())
                }
                // A connection that broke under a request in flight (the server
                // process stopping, a reset stream) surfaces as Internal, made on
                // this side from the HTTP/2 error: a server's own Internal comes off
                // the wire, without a source.
                Code::Internal
                    if s.details().is_empty()
                        && (std::error::Error::source(&s).is_some()
                            || s.message().starts_with("h2 protocol error")) =>
                {
                    Error::Transport(s.message().to_string())
                }
                Code::Unauthenticated => Error::Unauthenticated(
                    s.message()
                        .strip_prefix("unauthenticated: ")
                        .unwrap_or(s.message())
                        .to_string(),
                ),
                Code::PermissionDenied => Error::PermissionDenied(
                    s.message()
                        .strip_prefix("permission denied: ")
                        .unwrap_or(s.message())
                        .to_string(),
                ),
                code => Error::Rpc {
                    code,
                    message: s.message().to_string(),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_connection_is_a_transport_error_and_a_server_internal_is_not() {
        let broken = Status::internal("h2 protocol error: http2 error");
        assert!(matches!(Error::from(broken), Error::Transport(_)));
        let from_server = Status::internal("a bug");
        assert!(matches!(
            Error::from(from_server),
            Error::Rpc {
                code: Code::Internal,
                ..
            }
        ));
    }

    #[test]
    fn details_are_a_google_rpc_status_and_bare_details_still_decode() {
        let status = Status::from(Error::NotFound("conversation a/b".into()));
        // What any gRPC library reads: a google.rpc.Status with one typed Any.
        let rich = tonic_types::Status::decode(status.details()).expect("google.rpc.Status");
        assert_eq!(rich.code, Code::NotFound as i32);
        assert_eq!(rich.message, status.message());
        assert_eq!(rich.details.len(), 1);
        assert_eq!(rich.details[0].type_url, DETAIL_TYPE_URL);
        assert!(matches!(
            ErrorDetail::decode(rich.details[0].value.as_slice()).map(|d| d.kind),
            Ok(Some(Kind::NotFound(_)))
        ));
        // A server from before sent the bare ErrorDetail: still understood.
        let bare = ErrorDetail {
            kind: Some(Kind::WrongShard(proto::WrongShard { shard_id: 7 })),
        };
        let old = Status::with_details(Code::Aborted, "wrong shard", bare.encode_to_vec().into());
        assert!(matches!(
            Error::from(old),
            Error::WrongShard { shard } if shard == ShardId(7)
        ));
    }

    #[test]
    fn typed_errors_round_trip() {
        let cases = vec![
            Error::NotLeader {
                shard: ShardId(3),
                leader: Some(proto::ReplicaInfo {
                    replica_id: 2,
                    node_id: 2,
                    addr: "127.0.0.1:1".into(),
                }),
            },
            Error::ShardUnavailable {
                shard: ShardId(1),
                reason: "election".into(),
                outcome_unknown: false,
            },
            Error::ShardUnavailable {
                shard: ShardId(1),
                reason: "superseded".into(),
                outcome_unknown: true,
            },
            Error::invalid("key", "empty"),
            Error::ReplicaTooStale {
                shard: ShardId(2),
                applied: 40,
                contact_age_ms: Some(700),
            },
            Error::ReplicaTooStale {
                shard: ShardId(2),
                applied: 0,
                contact_age_ms: None,
            },
            Error::VersionMismatch {
                key: "k".into(),
                expected: 3,
                actual: 4,
            },
            Error::limit("max-value-size", 10, 11),
            Error::SequenceMismatch {
                conversation: "ns/c".into(),
                expected: 3,
                actual: 5,
            },
            Error::WatchCompacted {
                requested: 2,
                retained_after: 9,
            },
            Error::NotFound("conversation ns/c".into()),
            Error::FailedPrecondition("shard 3: a split is already in progress".into()),
            Error::StaleEpoch {
                shard: ShardId(1),
                conf_ver: 2,
                ring_ver: 3,
                current: vec![proto::ShardRoute {
                    descriptor: Some(proto::ShardDescriptor {
                        shard_id: 1,
                        arcs: vec![proto::HashRange { lo: 0, hi: 9 }],
                        ..Default::default()
                    }),
                    leader: None,
                    leader_term: 0,
                }],
            },
        ];
        for e in cases {
            let text = e.to_string();
            let back = Error::from(Status::from(e));
            assert_eq!(back.to_string(), text);
        }
    }
}
