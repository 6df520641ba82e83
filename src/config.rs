//! Node configuration: a TOML file (kebab-case, every field optional with a default)
//! that command-line flags override; `validate()` names the offending field.

use crate::error::{Error, Result};
use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything one `ctxd` process needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id (required, > 0, never reused for another data directory).
    pub node_id: u64,
    /// Address the gRPC server binds (default `127.0.0.1:7001`).
    pub listen: String,
    /// Address other nodes and clients use to reach this node (default: `listen`).
    pub advertise: Option<String>,
    /// Directory holding this node's RocksDB (required).
    pub data_dir: PathBuf,
    /// Initial members, `"1=127.0.0.1:7001,2=127.0.0.1:7002"`; used only on the first
    /// start of a brand-new cluster (ignored once the data dir holds state).
    pub initial_cluster: String,
    /// Start empty and wait to be added with `ctxctl member add` (default false).
    pub join: bool,
    /// Data shards a brand-new cluster creates (default 1), each with up to 3 replicas
    /// placed round-robin over the initial members. Every initial member must agree.
    pub initial_shards: u64,
    /// Raft timing and flow control.
    pub raft: RaftConfig,
    /// Request size limits.
    pub limits: Limits,
    /// TTL purge and watch retention.
    pub context: ContextConfig,
    /// When shards split by themselves, and the guards against split storms.
    pub split: SplitConfig,
    /// The placement driver.
    pub pd: PdConfig,
    /// The HTTP status listener (metrics and health probes).
    pub status: StatusConfig,
    /// Logging.
    pub log: LogConfig,
    /// TLS on the gRPC port, for clients and peers alike.
    pub security: SecurityConfig,
    /// With `join`: addresses of running members ("host:port,host:port") this node
    /// reports to, so the placement driver learns of it and fills it with replicas.
    /// Empty: the node waits to be added with `ctxctl member add`.
    pub peers: String,
    /// This node's share of replica reads relative to the other nodes' (1–10000,
    /// default 100), published through the routing table for clients balancing
    /// reads with the `weighted` policy: 200 takes twice the reads of a node at 100.
    pub read_weight: u32,
    /// Which settings the flags and the file set (not a setting itself).
    #[serde(skip)]
    pub origins: Origins,
}

/// Which settings a node's flags and file set (`ctxctl config show` names each
/// value's source); keys are dotted, as in [`crate::cluster_config`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origins {
    /// Keys the config file sets.
    pub file: std::collections::BTreeSet<String>,
    /// Keys a command-line flag set.
    pub flags: std::collections::BTreeSet<String>,
}

/// Logging (`[log]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogConfig {
    /// Filter directives as in `RUST_LOG` (`info,raft=warn`, `debug,ctxstore::raft=trace`);
    /// empty (the default): `RUST_LOG`, else `info,raft=warn`. A cluster setting
    /// (`ctxctl config set log.level ...`) changes it without a restart.
    pub level: String,
}

/// TLS (`[security]`): off unless all three of `ca-path`, `cert-path` and `key-path`
/// are set. The node serves its gRPC port with `cert-path`, and presents the same
/// certificate when it dials its peers (docs/operations.md, "Security"). The files are
/// re-read when they change on disk, for new connections; a pair that does not load
/// (half-written, mismatched) leaves the previous one in use.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct SecurityConfig {
    /// PEM file of the certificate authorities trusted for client and peer
    /// certificates, and for the peers' server certificates.
    pub ca_path: Option<PathBuf>,
    /// PEM certificate chain of this node.
    pub cert_path: Option<PathBuf>,
    /// PEM private key of `cert-path`.
    pub key_path: Option<PathBuf>,
    /// Whether clients must present a certificate the CA signed: `optional` (the
    /// default: agents may come without one, nodes present theirs), `require`, or
    /// `none` (no client certificates at all: traffic is encrypted, but nothing tells
    /// a peer from a client, so the `Raft` service and node heartbeats are open).
    pub client_cert_auth: ClientCertAuth,
    /// Common names a certificate must have to act as a peer (call the `Raft` service,
    /// send node heartbeats); empty (the default): any certificate the CA signed.
    pub peer_cert_allowed_cn: Vec<String>,
    /// Connections are closed after this long (default `1h`), so a rotated or revoked
    /// certificate stops being used within a bounded time. Clients reconnect.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Option<Duration>,
}

/// `security.client-cert-auth`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientCertAuth {
    /// Every client presents a certificate.
    Require,
    /// A client may present a certificate.
    #[default]
    Optional,
    /// No client certificates are asked for.
    None,
}

impl std::str::FromStr for ClientCertAuth {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "require" => Ok(Self::Require),
            "optional" => Ok(Self::Optional),
            "none" => Ok(Self::None),
            _ => Err(Error::config(
                "security.client-cert-auth",
                format!("`{s}` is not one of require, optional, none"),
            )),
        }
    }
}

impl SecurityConfig {
    /// Whether TLS is on (all three files set; `validate` refuses a partial set).
    pub fn tls_enabled(&self) -> bool {
        self.ca_path.is_some() && self.cert_path.is_some() && self.key_path.is_some()
    }

    /// How long a connection may live; `1h` unless set.
    pub fn connection_age(&self) -> Duration {
        self.max_connection_age.unwrap_or(Duration::from_secs(3600))
    }

    /// What this node trusts and presents when it dials a peer; `None` without TLS.
    pub fn peer_client(&self) -> Option<ctxstore_api::tls::ClientTls> {
        match (&self.ca_path, &self.cert_path, &self.key_path) {
            (Some(ca), Some(cert), Some(key)) => {
                Some(ctxstore_api::tls::ClientTls::new(ca).with_identity(cert, key))
            }
            _ => None,
        }
    }

    fn validate(&self) -> Result<()> {
        let set = [
            ("security.ca-path", self.ca_path.is_some()),
            ("security.cert-path", self.cert_path.is_some()),
            ("security.key-path", self.key_path.is_some()),
        ];
        if set.iter().any(|(_, s)| *s) {
            if let Some((missing, _)) = set.iter().find(|(_, s)| !*s) {
                let given: Vec<&str> = set.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
                return Err(Error::config(
                    missing,
                    format!(
                        "must be set with {} (TLS needs all three of ca-path, cert-path and key-path)",
                        given.join(" and ")
                    ),
                ));
            }
        } else {
            if !self.peer_cert_allowed_cn.is_empty() {
                return Err(Error::config(
                    "security.peer-cert-allowed-cn",
                    "needs TLS (ca-path, cert-path and key-path)",
                ));
            }
            if self.client_cert_auth == ClientCertAuth::Require {
                return Err(Error::config(
                    "security.client-cert-auth",
                    "`require` needs TLS (ca-path, cert-path and key-path)",
                ));
            }
        }
        if let Some(age) = self.max_connection_age {
            if age < Duration::from_secs(1) {
                return Err(Error::config(
                    "security.max-connection-age",
                    "must be at least 1s",
                ));
            }
        }
        if self
            .peer_cert_allowed_cn
            .iter()
            .any(|c| c.trim().is_empty())
        {
            return Err(Error::config(
                "security.peer-cert-allowed-cn",
                "holds an empty name",
            ));
        }
        Ok(())
    }
}

/// The status listener (`[status]`): plaintext HTTP serving `/metrics`
/// (OpenMetrics), `/livez` and `/readyz` (docs/operations.md, "Metrics and health").
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct StatusConfig {
    /// `host:port` to serve on (`127.0.0.1:7101` is usual; port 0 picks a free one).
    /// Unset (the default): no status listener.
    pub listen: Option<String>,
}

/// The placement driver (`[pd]`), run by the meta leader: it replaces replicas lost
/// with a node, moves replicas off draining nodes, fills new nodes and spreads
/// replicas and leaders evenly (docs/operations.md, "Node lifecycle").
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct PdConfig {
    /// Run the driver (default true). Off, nothing moves unless a person moves it,
    /// and each shard leader's own leader balancing (`raft.leader-balance`) applies.
    pub enabled: bool,
    /// Voters each shard should have (default 3).
    pub replicas: u64,
    /// A node silent this long is down and its replicas are replaced (default
    /// `5m`, so a rolling restart moves nothing). A new meta leader waits this long
    /// before judging any node down.
    #[serde(with = "humantime_serde")]
    pub node_down_after: Duration,
    /// How often the driver plans (default `1s`).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Membership operators in flight cluster-wide (default 4).
    pub max_replica_ops: u64,
    /// Leader transfers in flight cluster-wide (default 4).
    pub max_leader_ops: u64,
    /// Replicas being added to one node at a time, i.e. snapshots it receives
    /// (default 1).
    pub max_snapshots_per_node: u64,
    /// A node with less free disk than this takes no new replica (default 1 GiB).
    pub min_free_bytes: u64,
    /// Replica counts may differ by this much between nodes before replicas move
    /// (default 1).
    pub balance_tolerance: u64,
    /// An operator that has not finished in this long is cancelled (default `10m`).
    #[serde(with = "humantime_serde")]
    pub operator_timeout: Duration,
}

impl Default for PdConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            replicas: 3,
            node_down_after: Duration::from_secs(300),
            interval: Duration::from_secs(1),
            max_replica_ops: 4,
            max_leader_ops: 4,
            max_snapshots_per_node: 1,
            min_free_bytes: 1 << 30,
            balance_tolerance: 1,
            operator_timeout: Duration::from_secs(600),
        }
    }
}

impl PdConfig {
    fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("pd.replicas", self.replicas),
            ("pd.max-replica-ops", self.max_replica_ops),
            ("pd.max-leader-ops", self.max_leader_ops),
            ("pd.max-snapshots-per-node", self.max_snapshots_per_node),
        ] {
            if v == 0 {
                return Err(Error::config(name, "must be greater than 0"));
            }
        }
        if self.replicas > 7 {
            return Err(Error::config("pd.replicas", "must be at most 7"));
        }
        for (name, d) in [
            ("pd.node-down-after", self.node_down_after),
            ("pd.interval", self.interval),
            ("pd.operator-timeout", self.operator_timeout),
        ] {
            if d < Duration::from_millis(10) {
                return Err(Error::config(name, "must be at least 10ms"));
            }
        }
        Ok(())
    }
}

/// Automatic splitting (`[split]`). A shard leader checks its shard every
/// `check-interval` and splits it when it holds more than `max-size` bytes or
/// `max-keys` keys, or took more than `max-writes-per-sec` writes (or
/// `max-write-bytes-per-sec` bytes) per second over the last `load-window`. One hash
/// tag is never split: a shard whose load is one partition key reports it instead.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct SplitConfig {
    /// Split shards automatically (default true). Manual splits work either way.
    pub enabled: bool,
    /// Split a shard whose data takes more than this many bytes on disk (default
    /// 64 MiB, approximate: what RocksDB has flushed).
    pub max_size: u64,
    /// Split a shard holding more than this many keys (default 500,000, estimated).
    pub max_keys: u64,
    /// Split a shard taking more writes per second than this (default 2,000).
    pub max_writes_per_sec: u64,
    /// Split a shard taking more written bytes per second than this (default 8 MiB).
    pub max_write_bytes_per_sec: u64,
    /// The window load is measured over (default `10s`).
    #[serde(with = "humantime_serde")]
    pub load_window: Duration,
    /// How often a leader checks its shard (default `10s`).
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// At most one automatic split of a shard per this long (default `60s`).
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
    /// At most this many splits in progress on one node (default 2).
    pub max_concurrent_per_node: u64,
    /// No split when the leader's node already hosts this many shards (default 512);
    /// also the most `initial-shards` a new cluster may have.
    pub max_shards_per_node: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_size: 64 << 20,
            max_keys: 500_000,
            max_writes_per_sec: 2_000,
            max_write_bytes_per_sec: 8 << 20,
            load_window: Duration::from_secs(10),
            check_interval: Duration::from_secs(10),
            min_interval: Duration::from_secs(60),
            max_concurrent_per_node: 2,
            max_shards_per_node: 512,
        }
    }
}

impl SplitConfig {
    fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("split.max-size", self.max_size),
            ("split.max-keys", self.max_keys),
            ("split.max-writes-per-sec", self.max_writes_per_sec),
            (
                "split.max-write-bytes-per-sec",
                self.max_write_bytes_per_sec,
            ),
            (
                "split.max-concurrent-per-node",
                self.max_concurrent_per_node,
            ),
            ("split.max-shards-per-node", self.max_shards_per_node),
        ] {
            if v == 0 {
                return Err(Error::config(name, "must be greater than 0"));
            }
        }
        for (name, d) in [
            ("split.load-window", self.load_window),
            ("split.check-interval", self.check_interval),
        ] {
            if d < Duration::from_millis(10) {
                return Err(Error::config(name, "must be at least 10ms"));
            }
        }
        Ok(())
    }
}

/// Background work of the agent context API.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ContextConfig {
    /// How often each shard leader looks for expired records and purges them
    /// (default `10s`). Expired data is invisible at once; this only reclaims space.
    #[serde(with = "humantime_serde")]
    pub purge_interval: Duration,
    /// Bytes of recent changes each replica keeps so watchers can resume from a
    /// version (default 8 MiB per replica).
    pub watch_retain_bytes: u64,
    /// The age past which a replica drops changes from its watch log, whatever their
    /// bytes (default `0s`: no age bound, `watch-retain-bytes` alone).
    #[serde(with = "humantime_serde")]
    pub watch_retain_age: Duration,
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self {
            purge_interval: Duration::from_secs(10),
            watch_retain_bytes: 8 << 20,
            watch_retain_age: Duration::ZERO,
        }
    }
}

/// Raft settings (DESIGN §3).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RaftConfig {
    /// One Raft tick (default `100ms`); one timer per node drives all replicas.
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// Election timeout in ticks (default 10; randomized in [n, 2n)).
    pub election_ticks: usize,
    /// Heartbeat interval in ticks (default 2).
    pub heartbeat_ticks: usize,
    /// Largest append message in bytes (default 1 MiB).
    pub max_size_per_msg: u64,
    /// Append messages in flight per follower (default 256).
    pub max_inflight_msgs: usize,
    /// Bytes of uncommitted entries a leader accepts (default 64 MiB).
    pub max_uncommitted_size: u64,
    /// Compact the Raft log once this many applied entries sit above the last
    /// compaction point (default 10,000).
    pub log_gc_threshold: u64,
    /// Entries kept below the applied index at compaction, for slightly lagging
    /// followers (default 1,000).
    pub log_gc_keep: u64,
    /// Move leadership of a shard back to its preferred (first) replica when this node
    /// leads more than its share of its replicas' shards (default true). Ignored while
    /// the placement driver is enabled: it balances leaders itself, and two balancers
    /// fight.
    pub leader_balance: bool,
    /// Serve linearizable reads from the leader's lease instead of a ReadIndex quorum
    /// round (default false). Safe only while clock drift between nodes stays well
    /// below the election timeout: with `check_quorum`, a leader steps down and its
    /// followers refuse votes within one election timeout of losing contact.
    pub lease_reads: bool,
    /// Let idle shards hibernate (default false): a leader with nothing in flight and
    /// every replica caught up stops ticking and heartbeating after two election
    /// timeouts, and so do its followers, until a request or a message wakes them
    /// (TiKV's hibernate regions). An idle shard then costs no CPU; a leader that dies
    /// while its shard sleeps is replaced when the next request reaches a follower.
    /// Not with `lease-reads` (a sleeping leader's lease is not kept fresh).
    pub hibernate: bool,
}

/// Request limits (DESIGN §5); breaking one is `ResourceExhausted` naming the limit.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Limits {
    /// Largest key in bytes (default 4 KiB).
    pub max_key_size: u64,
    /// Largest value in bytes (default 4 MiB).
    pub max_value_size: u64,
    /// Most operations in one batch (default 1,000).
    pub max_batch_ops: u64,
    /// Most keys one scan returns (default 10,000).
    pub max_scan_limit: u64,
    /// Largest encoded chat message, content and metadata (default 1 MiB).
    pub max_message_size: u64,
    /// Most messages in one append (default 1,000).
    pub max_messages_per_append: u64,
    /// Most channel blobs or pending writes in one checkpoint call (default 1,000).
    pub max_blobs_per_checkpoint: u64,
    /// Longest checkpoint thread id in bytes (default 1 KiB, at most 16 KiB).
    pub max_thread_id_size: u64,
    /// Longest checkpoint namespace (`ns`) in bytes (default 1 KiB, at most 16 KiB):
    /// LangGraph adds about 40 bytes per level of nested subgraphs.
    pub max_checkpoint_ns_size: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_id: 0,
            listen: "127.0.0.1:7001".into(),
            advertise: None,
            data_dir: PathBuf::new(),
            initial_cluster: String::new(),
            join: false,
            initial_shards: 1,
            raft: RaftConfig::default(),
            limits: Limits::default(),
            context: ContextConfig::default(),
            split: SplitConfig::default(),
            pd: PdConfig::default(),
            status: StatusConfig::default(),
            log: LogConfig::default(),
            security: SecurityConfig::default(),
            peers: String::new(),
            read_weight: 100,
            origins: Origins::default(),
        }
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            max_uncommitted_size: 64 << 20,
            log_gc_threshold: 10_000,
            log_gc_keep: 1_000,
            leader_balance: true,
            lease_reads: false,
            hibernate: false,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_size: 4 << 10,
            max_value_size: 4 << 20,
            max_batch_ops: 1_000,
            max_scan_limit: 10_000,
            max_message_size: 1 << 20,
            max_messages_per_append: 1_000,
            max_blobs_per_checkpoint: 1_000,
            max_thread_id_size: crate::context::MAX_THREAD as u64,
            max_checkpoint_ns_size: crate::context::MAX_THREAD as u64,
        }
    }
}

impl NodeConfig {
    /// Reads a TOML file; unknown keys and bad values are errors naming the field.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config("config", format!("cannot read {}: {e}", path.display())))?;
        let bad = |e: toml::de::Error| Error::config("config", format!("{}: {e}", path.display()));
        let table: toml::Table = toml::from_str(&text).map_err(bad)?;
        let mut cfg: NodeConfig = toml::from_str(&text).map_err(bad)?;
        let mut set = BTreeMap::new();
        flatten(&toml::Value::Table(table), "", &mut set);
        cfg.origins.file = set.into_keys().collect();
        Ok(cfg)
    }

    /// The address peers and clients dial.
    pub fn advertise_addr(&self) -> &str {
        self.advertise.as_deref().unwrap_or(&self.listen)
    }

    /// The `peers` addresses.
    pub fn peer_addrs(&self) -> impl Iterator<Item = &str> {
        self.peers
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }

    /// Parses `initial-cluster` into node id → address.
    pub fn initial_members(&self) -> Result<BTreeMap<NodeId, String>> {
        parse_initial_cluster(&self.initial_cluster)
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.node_id == 0 {
            return Err(Error::config("node-id", "must be set and greater than 0"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::config("data-dir", "must be set"));
        }
        self.listen.parse::<std::net::SocketAddr>().map_err(|e| {
            Error::config("listen", format!("`{}` is not host:port: {e}", self.listen))
        })?;
        if let Some(a) = &self.advertise {
            check_host_port("advertise", a)?;
        }
        if let Some(l) = &self.status.listen {
            l.parse::<std::net::SocketAddr>().map_err(|e| {
                Error::config("status.listen", format!("`{l}` is not host:port: {e}"))
            })?;
        }
        if !self.log.level.is_empty() {
            crate::logging::check_filter(&self.log.level)?;
        }
        if !(1..=10_000).contains(&self.read_weight) {
            return Err(Error::config(
                "read-weight",
                format!("must be between 1 and 10000, not {}", self.read_weight),
            ));
        }
        let members = self.initial_members()?;
        if self.join && !members.is_empty() {
            return Err(Error::config(
                "join",
                "cannot be combined with initial-cluster: a joining node is added with `ctxctl member add`",
            ));
        }
        if !self.join && !members.is_empty() && !members.contains_key(&NodeId(self.node_id)) {
            return Err(Error::config(
                "initial-cluster",
                format!("does not list this node (node-id {})", self.node_id),
            ));
        }
        if self.initial_shards == 0 || self.initial_shards > self.split.max_shards_per_node {
            return Err(Error::config(
                "initial-shards",
                format!(
                    "must be between 1 and split.max-shards-per-node ({})",
                    self.split.max_shards_per_node
                ),
            ));
        }
        self.split.validate()?;
        self.pd.validate()?;
        self.security.validate()?;
        self.raft.validate()?;
        for p in self.peer_addrs() {
            check_host_port("peers", p)?;
        }
        if !self.peers.is_empty() && !self.join {
            return Err(Error::config(
                "peers",
                "only with join: a member of a new cluster knows its peers from initial-cluster",
            ));
        }
        if self.context.purge_interval < Duration::from_millis(10) {
            return Err(Error::config(
                "context.purge-interval",
                "must be at least 10ms",
            ));
        }
        self.limits.validate()
    }
}

impl RaftConfig {
    fn validate(&self) -> Result<()> {
        if self.tick_interval < Duration::from_millis(1) {
            return Err(Error::config("raft.tick-interval", "must be at least 1ms"));
        }
        if self.hibernate && self.lease_reads {
            return Err(Error::config(
                "raft.hibernate",
                "cannot be combined with raft.lease-reads: a hibernating leader does not keep its lease fresh",
            ));
        }
        if self.heartbeat_ticks == 0 {
            return Err(Error::config(
                "raft.heartbeat-ticks",
                "must be greater than 0",
            ));
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return Err(Error::config(
                "raft.election-ticks",
                format!(
                    "must be greater than heartbeat-ticks ({})",
                    self.heartbeat_ticks
                ),
            ));
        }
        if self.max_inflight_msgs == 0 {
            return Err(Error::config(
                "raft.max-inflight-msgs",
                "must be greater than 0",
            ));
        }
        if self.log_gc_threshold == 0 {
            return Err(Error::config(
                "raft.log-gc-threshold",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

impl Limits {
    fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("limits.max-key-size", self.max_key_size),
            ("limits.max-value-size", self.max_value_size),
            ("limits.max-batch-ops", self.max_batch_ops),
            ("limits.max-scan-limit", self.max_scan_limit),
            ("limits.max-message-size", self.max_message_size),
            (
                "limits.max-messages-per-append",
                self.max_messages_per_append,
            ),
            (
                "limits.max-blobs-per-checkpoint",
                self.max_blobs_per_checkpoint,
            ),
            ("limits.max-thread-id-size", self.max_thread_id_size),
            ("limits.max-checkpoint-ns-size", self.max_checkpoint_ns_size),
        ] {
            if v == 0 {
                return Err(Error::config(name, "must be greater than 0"));
            }
        }
        for (name, v) in [
            ("limits.max-thread-id-size", self.max_thread_id_size),
            ("limits.max-checkpoint-ns-size", self.max_checkpoint_ns_size),
        ] {
            if v > crate::context::MAX_THREAD_CAP as u64 {
                return Err(Error::config(name, "must be at most 16 KiB"));
            }
        }
        if self.max_value_size > crate::proto::MAX_VALUE_SIZE_CAP {
            return Err(Error::config(
                "limits.max-value-size",
                "must be at most 64 MiB",
            ));
        }
        Ok(())
    }
}

pub(crate) fn check_host_port(field: &str, addr: &str) -> Result<()> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(Error::config(field, format!("`{addr}` is not host:port"))),
    }
}

/// The `initial-cluster` value for nodes 1..=n listening on `addrs` (in order): the
/// inverse of [`parse_initial_cluster`].
pub fn format_initial_cluster(addrs: &[String]) -> String {
    addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `"1=host:port,2=host:port"`.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<NodeId, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('=').ok_or_else(|| {
            Error::config("initial-cluster", format!("`{part}` is not ID=HOST:PORT"))
        })?;
        let id: u64 = id.trim().parse().map_err(|_| {
            Error::config(
                "initial-cluster",
                format!("`{id}` in `{part}` is not a node id"),
            )
        })?;
        if id == 0 {
            return Err(Error::config("initial-cluster", "node ids start at 1"));
        }
        check_host_port("initial-cluster", addr.trim())?;
        if out.insert(NodeId(id), addr.trim().to_string()).is_some() {
            return Err(Error::config(
                "initial-cluster",
                format!("node {id} listed twice"),
            ));
        }
    }
    Ok(out)
}

/// Every leaf of a TOML tree under its dotted key (`limits.max-value-size`).
pub fn flatten(v: &toml::Value, prefix: &str, out: &mut BTreeMap<String, toml::Value>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &key, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// The node id a StatefulSet pod takes from its host name: the trailing ordinal plus
/// one (`ctxd-0` → 1, `ctxd-2` → 3), since node ids start at 1.
pub fn node_id_from_hostname(host: &str) -> Result<u64> {
    let bad = || {
        Error::config(
            "node-id-from-hostname",
            format!("host name `{host}` does not end in -ORDINAL (like ctxd-0)"),
        )
    };
    let (_, ordinal) = host.trim().rsplit_once('-').ok_or_else(bad)?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = ordinal.parse().map_err(|_| bad())?;
    n.checked_add(1).ok_or_else(bad)
}

impl NodeConfig {
    /// A node that `initial-cluster` does not list joins the cluster those members
    /// form instead (with them as its `peers`): one set of arguments then serves every
    /// pod of a StatefulSet, the ones scaled out beyond the initial members included.
    /// Returns whether it switched to joining.
    pub fn join_unless_initial_member(&mut self) -> Result<bool> {
        let members = self.initial_members()?;
        if self.join || members.is_empty() || members.contains_key(&NodeId(self.node_id)) {
            return Ok(false);
        }
        self.peers = members.into_values().collect::<Vec<_>>().join(",");
        self.initial_cluster.clear();
        self.join = true;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_come_from_the_trailing_ordinal() {
        assert_eq!(node_id_from_hostname("ctxd-0").unwrap(), 1);
        assert_eq!(node_id_from_hostname("a-b-12").unwrap(), 13);
        for bad in ["ctxd", "ctxd-", "ctxd-x1", "-", "ctxd-99999999999999999999"] {
            let e = node_id_from_hostname(bad).unwrap_err().to_string();
            assert!(e.contains("node-id-from-hostname"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_node_missing_from_initial_cluster_joins_its_members() {
        let mut c = valid();
        assert!(!c.join_unless_initial_member().unwrap());
        assert_eq!(c.initial_cluster, valid().initial_cluster);
        c.node_id = 4;
        assert!(c.join_unless_initial_member().unwrap());
        assert!(c.join && c.initial_cluster.is_empty());
        assert_eq!(c.peers, "127.0.0.1:7001,127.0.0.1:7002");
        c.validate().unwrap();
    }

    fn valid() -> NodeConfig {
        NodeConfig {
            node_id: 1,
            data_dir: "/tmp/x".into(),
            initial_cluster: "1=127.0.0.1:7001,2=127.0.0.1:7002".into(),
            ..Default::default()
        }
    }

    #[test]
    fn initial_cluster_round_trips() {
        let addrs = vec!["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
        let parsed = parse_initial_cluster(&format_initial_cluster(&addrs)).expect("parses");
        assert_eq!(
            parsed.get(&NodeId(2)).map(String::as_str),
            Some("127.0.0.1:2")
        );
        assert_eq!(parsed.len(), 2);
    }

    #[test]
    fn valid_config_passes() {
        valid().validate().expect("valid");
    }

    #[test]
    fn bad_fields_are_named() {
        type Mutation = fn(&mut NodeConfig);
        let cases: Vec<(Mutation, &str)> = vec![
            (|c| c.node_id = 0, "node-id"),
            (|c| c.data_dir = PathBuf::new(), "data-dir"),
            (|c| c.listen = "nope".into(), "listen"),
            (|c| c.initial_cluster = "1=a".into(), "initial-cluster"),
            (
                |c| c.initial_cluster = "x=127.0.0.1:1".into(),
                "initial-cluster",
            ),
            (
                |c| c.initial_cluster = "2=127.0.0.1:1".into(),
                "initial-cluster",
            ),
            (|c| c.join = true, "join"),
            (|c| c.raft.election_ticks = 1, "raft.election-ticks"),
            (|c| c.limits.max_key_size = 0, "limits.max-key-size"),
        ];
        for (mutate, field) in cases {
            let mut c = valid();
            mutate(&mut c);
            match c.validate() {
                Err(Error::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected error on {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn toml_uses_kebab_case_and_human_durations() {
        let c: NodeConfig =
            toml::from_str("node-id = 3\ndata-dir = \"/d\"\n[raft]\ntick-interval = \"50ms\"\n")
                .expect("parses");
        assert_eq!(c.node_id, 3);
        assert_eq!(c.raft.tick_interval, Duration::from_millis(50));
        assert!(toml::from_str::<NodeConfig>("nodeid = 3").is_err());
    }
}
