//! The node's Prometheus metrics (docs/operations.md, "Metrics and health").
//!
//! One registry per node, not a process-wide one: tests and `ctxd dev` run several
//! nodes in one process. Hot paths only bump atomics (counters, histograms); values
//! the node already knows (each replica's term, indexes and leader, RocksDB's size,
//! the process's CPU and memory) are read when `/metrics` is scraped. Labels are
//! bounded: a shard id, a gRPC service, method and code. Nothing is labelled by
//! namespace, key or tenant.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// A metric of one shard.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ShardLabel {
    /// The shard id (0: the meta shard).
    pub(crate) shard: u64,
}

/// A finished gRPC call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GrpcCode {
    pub(crate) grpc_service: String,
    pub(crate) grpc_method: String,
    /// The gRPC status code's name (`OK`, `UNAVAILABLE`, ...).
    pub(crate) grpc_code: String,
}

/// A gRPC method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GrpcMethod {
    pub(crate) grpc_service: String,
    pub(crate) grpc_method: String,
}

/// A Raft message type (`MsgAppend`, `MsgHeartbeat`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MsgType {
    pub(crate) msg_type: &'static str,
}

/// How loading changed TLS files went: `ok` or `failed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TlsReload {
    pub(crate) result: &'static str,
}

/// Why the auth layer refused a call: `unauthenticated` or `permission_denied`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AuthRefusal {
    pub(crate) reason: &'static str,
}

/// The node at the other end.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PeerNode {
    pub(crate) to: u64,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Round trips between nodes: 0.1 ms to about 3 s.
fn rtt_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// gRPC handling times: 0.1 ms to about 3 s.
fn grpc_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Every metric of one node.
pub(crate) struct Metrics {
    /// What `/metrics` encodes.
    registry: Registry,
    /// Held by a scrape while it sets the per-shard values and encodes them.
    pub(crate) scrape: tokio::sync::Mutex<()>,
    /// Set at scrape time from the replicas' status.
    pub(crate) shard_has_leader: Family<ShardLabel, Gauge>,
    pub(crate) shard_is_leader: Family<ShardLabel, Gauge>,
    pub(crate) shard_term: Family<ShardLabel, Gauge>,
    pub(crate) shard_commit_index: Family<ShardLabel, Gauge>,
    pub(crate) shard_applied_index: Family<ShardLabel, Gauge>,
    /// Leader changes a replica has seen (counted by the replica).
    pub(crate) shard_leader_changes: Family<ShardLabel, Counter>,
    /// Duration of each synced write of the log writer (WAL fsync included).
    pub(crate) wal_fsync_seconds: Histogram,
    /// Reads served from local replicas, in any read mode.
    pub(crate) reads_served: Counter,
    /// RocksDB's SST bytes, set at scrape time.
    pub(crate) rocksdb_used_bytes: Gauge,
    /// Calls finished, and their handling time.
    pub(crate) grpc_handled: Family<GrpcCode, Counter>,
    pub(crate) grpc_seconds: HistogramFamily<GrpcMethod>,
    /// Proposals waiting to commit on the replicas this node leads (scrape time).
    pub(crate) proposals_pending: Gauge,
    /// Replicas on this node that hibernate (`raft.hibernate`; scrape time).
    pub(crate) replicas_hibernating: Gauge,
    /// Hibernating replicas woken (by a request, a raft message or a lost leader).
    pub(crate) replica_wakes: Counter,
    /// Empty replicas created on a shard leader's first message to this node.
    pub(crate) replicas_created: Counter,
    /// Replicas removed because the meta shard no longer lists them here.
    pub(crate) stale_replicas_collected: Counter,
    /// Leader transfers to this node declined because it is stopping (a drain).
    pub(crate) transfers_declined: Counter,
    /// Leases this node's leaders revoked because their TTL passed.
    pub(crate) leases_expired: Counter,
    /// Proposals answered with an error (leadership lost, dropped, shut down).
    pub(crate) proposals_failed: Counter,
    /// Time to apply one round of committed entries.
    pub(crate) apply_seconds: Histogram,
    /// Size of each command this node's leaders propose (one Raft entry each).
    pub(crate) proposal_bytes: Histogram,
    /// Raft messages queued for another node, and those dropped (filter, full queue,
    /// unreachable node), by type.
    pub(crate) raft_sent: Family<MsgType, Counter>,
    pub(crate) raft_dropped: Family<MsgType, Counter>,
    /// Snapshot files shipped and received: bytes and durations.
    pub(crate) snapshot_sent_bytes: Counter,
    pub(crate) snapshot_received_bytes: Counter,
    pub(crate) snapshot_send_seconds: Histogram,
    pub(crate) snapshot_receive_seconds: Histogram,
    /// From a leader's heartbeat to the follower's answer, by the follower's node.
    pub(crate) peer_rtt_seconds: HistogramFamily<PeerNode>,
    /// RocksDB's estimate of bytes compaction still has to rewrite (scrape time).
    pub(crate) rocksdb_pending_compaction_bytes: Gauge,
    /// TLS handshakes on the gRPC port that failed or timed out.
    pub(crate) tls_handshake_failures: Counter,
    /// Changed TLS files loaded (`ok`) or refused (`failed`, the old ones kept).
    pub(crate) tls_reloads: Family<TlsReload, Counter>,
    /// Calls the auth layer refused, by reason.
    pub(crate) auth_refused: Family<AuthRefusal, Counter>,
}

impl Metrics {
    /// A node's metrics, registered; `node_id` labels `ctxstore_build_info`.
    pub(crate) fn new(node_id: u64) -> Metrics {
        let mut registry = Registry::default();
        let shard_has_leader = Family::default();
        let shard_is_leader = Family::default();
        let shard_term = Family::default();
        let shard_commit_index = Family::default();
        let shard_applied_index = Family::default();
        let shard_leader_changes = Family::default();
        // etcd's buckets: 1 ms doubling to about 8 s.
        let wal_fsync_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let reads_served = Counter::default();
        let rocksdb_used_bytes = Gauge::default();
        let grpc_handled = Family::default();
        let grpc_seconds: HistogramFamily<GrpcMethod> =
            Family::new_with_constructor(grpc_histogram);
        let proposals_pending = Gauge::default();
        let replicas_hibernating = Gauge::default();
        let replica_wakes = Counter::default();
        let replicas_created = Counter::default();
        let stale_replicas_collected = Counter::default();
        let transfers_declined = Counter::default();
        let leases_expired = Counter::default();
        let proposals_failed = Counter::default();
        let apply_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        // 64 B to 16 MiB, by fours.
        let proposal_bytes = Histogram::new(exponential_buckets(64.0, 4.0, 10));
        let raft_sent = Family::default();
        let raft_dropped = Family::default();
        let snapshot_sent_bytes = Counter::default();
        let snapshot_received_bytes = Counter::default();
        let tls_handshake_failures = Counter::default();
        let tls_reloads = Family::default();
        let auth_refused = Family::default();
        // 10 ms to about 20 min.
        let snapshot_send_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 18));
        let snapshot_receive_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 18));
        let peer_rtt_seconds: HistogramFamily<PeerNode> =
            Family::new_with_constructor(rtt_histogram);
        let rocksdb_pending_compaction_bytes = Gauge::default();
        let r = &mut registry;
        r.register(
            "ctxstore_proposals_pending",
            "Proposals waiting to commit on the replicas this node leads",
            proposals_pending.clone(),
        );
        r.register(
            "ctxstore_replicas_hibernating",
            "Replicas on this node that hibernate (raft.hibernate: idle, not ticking)",
            replicas_hibernating.clone(),
        );
        r.register(
            "ctxstore_replica_wakes",
            "Hibernating replicas woken (by a request, a raft message or a lost leader)",
            replica_wakes.clone(),
        );
        r.register(
            "ctxstore_replicas_created",
            "Empty replicas this node created on a shard leader's first message (the node was added to the shard)",
            replicas_created.clone(),
        );
        r.register(
            "ctxstore_stale_replicas_collected",
            "Replicas this node removed because the meta shard no longer lists them here (removed while they could not hear of it)",
            stale_replicas_collected.clone(),
        );
        r.register(
            "ctxstore_leader_transfers_declined",
            "Leader transfers to this node declined because it is stopping (a drain)",
            transfers_declined.clone(),
        );
        r.register(
            "ctxstore_leases_expired",
            "Leases this node's leaders revoked because their TTL passed without a keepalive",
            leases_expired.clone(),
        );
        r.register(
            "ctxstore_proposals_failed",
            "Proposals answered with an error (leadership lost, dropped, shutdown)",
            proposals_failed.clone(),
        );
        r.register_with_unit(
            "ctxstore_apply_duration",
            "Time to apply one round of committed entries",
            Unit::Seconds,
            apply_seconds.clone(),
        );
        r.register_with_unit(
            "ctxstore_proposal_size",
            "Size of each command the replicas this node leads propose (one Raft entry)",
            Unit::Bytes,
            proposal_bytes.clone(),
        );
        r.register(
            "ctxstore_raft_messages_sent",
            "Raft messages queued for another node, by type",
            raft_sent.clone(),
        );
        r.register(
            "ctxstore_raft_messages_dropped",
            "Raft messages dropped (filtered, queue full, node unreachable), by type",
            raft_dropped.clone(),
        );
        r.register(
            "ctxstore_tls_handshake_failures",
            "TLS handshakes on the gRPC port that failed or timed out",
            tls_handshake_failures.clone(),
        );
        r.register(
            "ctxstore_tls_reloads",
            "Changed TLS files loaded (result=ok) or refused, the previous ones kept (result=failed)",
            tls_reloads.clone(),
        );
        r.register(
            "ctxstore_auth_refused",
            "Calls refused by the auth layer, by reason (unauthenticated, permission_denied)",
            auth_refused.clone(),
        );
        r.register_with_unit(
            "ctxstore_snapshot_sent",
            "Bytes of snapshot files shipped to other nodes",
            Unit::Bytes,
            snapshot_sent_bytes.clone(),
        );
        r.register_with_unit(
            "ctxstore_snapshot_received",
            "Bytes of snapshot files received from other nodes",
            Unit::Bytes,
            snapshot_received_bytes.clone(),
        );
        r.register_with_unit(
            "ctxstore_snapshot_send_duration",
            "Time to ship one snapshot file",
            Unit::Seconds,
            snapshot_send_seconds.clone(),
        );
        r.register_with_unit(
            "ctxstore_snapshot_receive_duration",
            "Time to receive one snapshot file",
            Unit::Seconds,
            snapshot_receive_seconds.clone(),
        );
        r.register_with_unit(
            "ctxstore_network_peer_round_trip_time",
            "From a leader's heartbeat to the follower's answer, by the follower's node",
            Unit::Seconds,
            peer_rtt_seconds.clone(),
        );
        r.register_with_unit(
            "ctxstore_rocksdb_pending_compaction",
            "RocksDB's estimate of bytes compaction still has to rewrite",
            Unit::Bytes,
            rocksdb_pending_compaction_bytes.clone(),
        );
        r.register(
            "ctxstore_shard_has_leader",
            "1 if the local replica of the shard knows a leader",
            shard_has_leader.clone(),
        );
        r.register(
            "ctxstore_shard_is_leader",
            "1 if the local replica leads the shard",
            shard_is_leader.clone(),
        );
        r.register(
            "ctxstore_shard_term",
            "Raft term of the local replica",
            shard_term.clone(),
        );
        r.register(
            "ctxstore_shard_commit_index",
            "Raft commit index of the local replica",
            shard_commit_index.clone(),
        );
        r.register(
            "ctxstore_shard_applied_index",
            "Raft applied index of the local replica",
            shard_applied_index.clone(),
        );
        r.register(
            "ctxstore_shard_leader_changes_seen",
            "Leader changes the local replica has seen",
            shard_leader_changes.clone(),
        );
        r.register_with_unit(
            "ctxstore_wal_fsync_duration",
            "Duration of the log writer's synced writes (one fsync each)",
            Unit::Seconds,
            wal_fsync_seconds.clone(),
        );
        r.register(
            "ctxstore_reads_served",
            "Reads served from the node's local replicas, any read mode",
            reads_served.clone(),
        );
        r.register_with_unit(
            "ctxstore_rocksdb_used",
            "Bytes of the node's RocksDB SST files",
            Unit::Bytes,
            rocksdb_used_bytes.clone(),
        );
        r.register(
            "grpc_server_handled",
            "gRPC calls finished, by status code",
            grpc_handled.clone(),
        );
        r.register_with_unit(
            "grpc_server_handling",
            "Time to the response headers of a gRPC call",
            Unit::Seconds,
            grpc_seconds.clone(),
        );
        r.register_collector(Box::new(BuildInfo { node_id }));
        r.register_collector(Box::new(ProcessCollector));
        Metrics {
            registry,
            scrape: tokio::sync::Mutex::new(()),
            shard_has_leader,
            shard_is_leader,
            shard_term,
            shard_commit_index,
            shard_applied_index,
            shard_leader_changes,
            wal_fsync_seconds,
            reads_served,
            rocksdb_used_bytes,
            grpc_handled,
            grpc_seconds,
            proposals_pending,
            replicas_hibernating,
            replica_wakes,
            replicas_created,
            stale_replicas_collected,
            transfers_declined,
            leases_expired,
            proposals_failed,
            proposal_bytes,
            apply_seconds,
            raft_sent,
            raft_dropped,
            snapshot_sent_bytes,
            tls_handshake_failures,
            tls_reloads,
            auth_refused,
            snapshot_received_bytes,
            snapshot_send_seconds,
            snapshot_receive_seconds,
            peer_rtt_seconds,
            rocksdb_pending_compaction_bytes,
        }
    }

    /// Counts a call the auth layer refused with `code`.
    pub(crate) fn auth_refused(&self, code: tonic::Code) {
        let reason = if code == tonic::Code::Unauthenticated {
            "unauthenticated"
        } else {
            "permission_denied"
        };
        self.auth_refused
            .get_or_create(&AuthRefusal { reason })
            .inc();
    }

    /// Counts a Raft message queued for another node (`sent`) or dropped.
    pub(crate) fn raft_message(&self, kind: raft::eraftpb::MessageType, sent: bool) {
        use protobuf::ProtobufEnum as _;
        let label = MsgType {
            msg_type: kind.descriptor().name(),
        };
        let family = if sent {
            &self.raft_sent
        } else {
            &self.raft_dropped
        };
        family.get_or_create(&label).inc();
    }

    /// Forgets the scrape-time values of every shard (before they are set again, so
    /// a shard that left the node disappears from the output).
    pub(crate) fn clear_shards(&self) {
        for f in [
            &self.shard_has_leader,
            &self.shard_is_leader,
            &self.shard_term,
            &self.shard_commit_index,
            &self.shard_applied_index,
        ] {
            f.clear();
        }
    }

    /// The OpenMetrics text of every metric.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// `ctxstore_build_info{version, node_id} 1`.
#[derive(Debug)]
struct BuildInfo {
    node_id: u64,
}

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let info = prometheus_client::metrics::info::Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("node_id", self.node_id.to_string()),
        ]);
        let m = encoder.encode_descriptor(
            "ctxstore_build",
            "The version of ctxd and the node id",
            None,
            info.metric_type(),
        )?;
        info.encode(m)
    }
}

/// The process's CPU time, resident memory and open file descriptors, read from
/// `/proc/self` at each scrape (absent where there is no `/proc`). Several nodes in
/// one process (tests, `ctxd dev`) report the same process.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = read_process() else {
            return Ok(());
        };
        emit(
            &mut encoder,
            ("process_cpu", "User and system CPU time of the process"),
            Some(&Unit::Seconds),
            ConstCounter::new(p.cpu_seconds),
        )?;
        emit(
            &mut encoder,
            ("process_resident_memory", "Resident memory of the process"),
            Some(&Unit::Bytes),
            ConstGauge::new(p.resident_bytes),
        )?;
        emit(
            &mut encoder,
            ("process_open_fds", "Open file descriptors of the process"),
            None,
            ConstGauge::new(p.open_fds),
        )
    }
}

/// Encodes one collected metric under `(name, help)`.
fn emit(
    encoder: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    unit: Option<&Unit>,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, unit, metric.metric_type())?;
    metric.encode(m)
}

/// What `/proc/self` says of the process.
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: i64,
    open_fds: i64,
}

fn read_process() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, inside parentheses):
    // state is field 3; utime and stime are fields 14 and 15, rss field 24.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let cpu_seconds = (field(14)? + field(15)?) as f64 / ticks;
    let resident_bytes =
        i64::try_from(field(24)?.saturating_mul(rustix::param::page_size() as u64)).ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
    Some(ProcessStats {
        cpu_seconds,
        resident_bytes,
        open_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_parses_as_openmetrics_with_the_expected_families() {
        let m = Metrics::new(7);
        m.shard_term.get_or_create(&ShardLabel { shard: 3 }).set(5);
        m.shard_leader_changes
            .get_or_create(&ShardLabel { shard: 3 })
            .inc();
        m.wal_fsync_seconds.observe(0.002);
        let text = m.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("ctxstore_shard_term{shard=\"3\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("ctxstore_shard_leader_changes_seen_total{shard=\"3\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ctxstore_wal_fsync_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("ctxstore_build_info{version="), "{text}");
        assert!(text.contains("process_cpu_seconds_total"), "{text}");
        m.clear_shards();
        assert!(!m.encode().contains("ctxstore_shard_term{"));
    }
}
