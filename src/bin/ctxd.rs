//! `ctxd`: the ctxstore server, and `ctxd dev` for a local cluster.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use ctxstore::dev::{DevCluster, DevOptions};
use ctxstore::Node;
use ctxstore::NodeConfig;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ctxd",
    version,
    about = "ctxstore server: a sharded, Raft-replicated store for LLM agent context"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a local cluster on loopback in this process (Ctrl-C stops it).
    Dev(DevArgs),
    /// Build this node of a new cluster from a backup (`ctxctl snapshot save`), offline:
    /// run it on every member with the same --from, --initial-cluster and
    /// --bump-index, then start each node on its data dir.
    Restore(RestoreArgs),
    /// Write a throwaway CA, a node certificate (CN ctxstore-node; localhost,
    /// 127.0.0.1, ::1) and a client certificate (CN ctxstore-client) into --out, for
    /// trying TLS with separate processes. Not for production: bring your own PKI.
    Certs(CertsArgs),
}

#[derive(Args)]
struct CertsArgs {
    /// Directory to write ca.crt, node.crt, node.key, client.crt and client.key into.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct RestoreArgs {
    /// The backup directory (copy it to every member).
    #[arg(long)]
    from: PathBuf,
    /// This node's id in the new cluster.
    #[arg(long)]
    node_id: u64,
    /// Its data directory: must be empty or absent.
    #[arg(long)]
    data_dir: PathBuf,
    /// The new cluster's members, as for a new cluster.
    #[arg(long)]
    initial_cluster: String,
    /// Added to every shard's applied index, so that versions of new writes stay above
    /// every version clients saw from the old cluster (writes made after the backup
    /// included). Give every member the same value.
    #[arg(long, default_value_t = 0)]
    bump_index: u64,
}

#[derive(Args)]
struct ServerArgs {
    /// TOML config file; flags override its values.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// This node's id (> 0, never reused).
    #[arg(long, conflicts_with = "node_id_from_hostname")]
    node_id: Option<u64>,
    /// Take the node id from the host name's trailing ordinal plus one (`ctxd-2` →
    /// 3), as in a Kubernetes StatefulSet ($HOSTNAME, else the system's host name).
    /// A node so named that `--initial-cluster` does not list joins those members.
    #[arg(long)]
    node_id_from_hostname: bool,
    /// Address to bind, host:port.
    #[arg(long)]
    listen: Option<String>,
    /// Address other nodes and clients use (default: --listen).
    #[arg(long)]
    advertise: Option<String>,
    /// Data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Members of a new cluster: "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003".
    #[arg(long)]
    initial_cluster: Option<String>,
    /// Start empty and join a running cluster: with --peers, the placement driver
    /// fills the node with replicas; without, it waits for `ctxctl member add`.
    #[arg(long)]
    join: bool,
    /// With --join: addresses of running members, "127.0.0.1:7001,127.0.0.1:7002".
    #[arg(long)]
    peers: Option<String>,
    /// Data shards a brand-new cluster creates (all initial members must agree).
    #[arg(long)]
    initial_shards: Option<u64>,
    /// Serve metrics and health probes over HTTP on this host:port (`status.listen`).
    #[arg(long)]
    status_listen: Option<String>,
    /// This node's share of replica reads for clients using the weighted policy
    /// (`read-weight`, 1–10000, default 100).
    #[arg(long)]
    read_weight: Option<u32>,
    /// Serve linearizable reads from the leader's lease (`raft.lease-reads`; see
    /// docs/operations.md for when that is safe).
    #[arg(long)]
    lease_reads: bool,
    /// Let idle shards hibernate: no ticks or heartbeats until a request or message
    /// wakes them (`raft.hibernate`; see docs/operations.md).
    #[arg(long)]
    hibernate: bool,
    /// On SIGTERM or Ctrl-C: how long to wait for this node's shard leaderships to
    /// move to other nodes before it stops (a second signal stops it at once).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    drain_timeout: std::time::Duration,
    /// TLS: PEM file of the certificate authorities trusted for client and peer
    /// certificates (`security.ca-path`). TLS is on when all three of --ca-path,
    /// --cert-path and --key-path are given.
    #[arg(long)]
    ca_path: Option<PathBuf>,
    /// TLS: this node's PEM certificate chain, served to clients and presented to
    /// peers (`security.cert-path`).
    #[arg(long)]
    cert_path: Option<PathBuf>,
    /// TLS: the PEM private key of --cert-path (`security.key-path`).
    #[arg(long)]
    key_path: Option<PathBuf>,
    /// TLS: whether clients must present a certificate: require, optional (default)
    /// or none (`security.client-cert-auth`).
    #[arg(long)]
    client_cert_auth: Option<ctxstore::config::ClientCertAuth>,
    /// TLS: common names a certificate must carry to act as a peer, comma-separated
    /// (`security.peer-cert-allowed-cn`; default: any certificate the CA signed).
    #[arg(long, value_delimiter = ',')]
    peer_cert_allowed_cn: Vec<String>,
    /// Log records as `text` lines or as `json`, one object per line (`ctxd dev` too).
    #[arg(long, global = true, default_value_t)]
    log_format: ctxstore::logging::LogFormat,
    /// Export spans over OTLP/gRPC to this collector, e.g. `http://127.0.0.1:4317`
    /// (needs a ctxd built with `--features otel`).
    #[arg(long, global = true)]
    otlp_endpoint: Option<String>,
}

#[derive(Args)]
struct DevArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Port of node 1 (the others follow); 0 picks free ports.
    #[arg(long, default_value_t = 7001)]
    base_port: u16,
    /// Data directory (default: a new one under the system temp dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Data shards (Raft groups) spread over the nodes.
    #[arg(long, default_value_t = 8)]
    shards: u64,
    /// Serve over mutual TLS with a throwaway CA written into the data directory.
    #[arg(long)]
    tls: bool,
}

/// Caps glibc's malloc at one arena per core, unless `MALLOC_ARENA_MAX` or
/// `GLIBC_TUNABLES` says otherwise. glibc gives each thread that finds the arenas busy
/// one of its own, up to eight per core, and an arena keeps most of the pages it
/// freed. A node runs a blocking pool of up to hundreds of threads beside RocksDB's,
/// so its arenas hold memory it no longer uses: 3 nodes with 1,000 sleeping shards
/// measured 241 MiB of RSS by default and 172 MiB with two arenas on 2 cores, at the
/// same CPU per operation (docs/performance.md, "Idle shards and hibernation").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn cap_malloc_arenas() {
    let tuned = std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
    if tuned {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
    // SAFETY: `mallopt` only sets a parameter of the allocator, which takes its own
    // lock; it is called first thing in `main`, before the runtime starts threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn cap_malloc_arenas() {}

fn main() -> ExitCode {
    cap_malloc_arenas();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let logs = ctxstore::logging::LogOptions {
        format: cli.server.log_format,
        otlp_endpoint: cli.server.otlp_endpoint.clone(),
    };
    // In the runtime: a span exporter's channel runs there. The guard flushes the
    // exporter when main returns, before the runtime stops.
    let init = {
        let _in = rt.enter();
        ctxstore::logging::init(&logs)
    };
    let _logs = match init {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let r = rt.block_on(async {
        match cli.cmd {
            Some(Cmd::Dev(d)) => run_dev(d).await,
            Some(Cmd::Restore(r)) => run_restore(r).await,
            Some(Cmd::Certs(c)) => run_certs(c),
            None => run_server(cli.server).await,
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run_server(a: ServerArgs) -> anyhow::Result<()> {
    let mut cfg = match &a.config {
        Some(p) => NodeConfig::from_file(p)?,
        None => NodeConfig::default(),
    };
    // Each flag given overrides the file and is recorded as the setting's source.
    let mut flags = std::collections::BTreeSet::new();
    let mut given = |key: &str| {
        flags.insert(key.to_string());
    };
    if let Some(v) = a.node_id {
        cfg.node_id = v;
        given("node-id");
    }
    if a.node_id_from_hostname {
        let host = match std::env::var("HOSTNAME") {
            Ok(h) if !h.is_empty() => h,
            _ => rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
        };
        cfg.node_id = ctxstore::config::node_id_from_hostname(&host)?;
        given("node-id");
    }
    if let Some(v) = a.listen {
        cfg.listen = v;
        given("listen");
    }
    if let Some(v) = a.advertise {
        cfg.advertise = Some(v);
        given("advertise");
    }
    if let Some(v) = a.data_dir {
        cfg.data_dir = v;
        given("data-dir");
    }
    if let Some(v) = a.initial_cluster {
        cfg.initial_cluster = v;
        given("initial-cluster");
    }
    if a.join {
        cfg.join = true;
        given("join");
    }
    if let Some(v) = a.peers {
        cfg.peers = v;
        given("peers");
    }
    if let Some(v) = a.initial_shards {
        cfg.initial_shards = v;
        given("initial-shards");
    }
    if let Some(v) = a.read_weight {
        cfg.read_weight = v;
        given("read-weight");
    }
    if let Some(v) = a.status_listen {
        cfg.status.listen = Some(v);
        given("status.listen");
    }
    if a.hibernate {
        cfg.raft.hibernate = true;
        given("raft.hibernate");
    }
    if a.lease_reads {
        cfg.raft.lease_reads = true;
        given("raft.lease-reads");
    }
    if let Some(v) = a.ca_path {
        cfg.security.ca_path = Some(v);
        given("security.ca-path");
    }
    if let Some(v) = a.cert_path {
        cfg.security.cert_path = Some(v);
        given("security.cert-path");
    }
    if let Some(v) = a.key_path {
        cfg.security.key_path = Some(v);
        given("security.key-path");
    }
    if let Some(v) = a.client_cert_auth {
        cfg.security.client_cert_auth = v;
        given("security.client-cert-auth");
    }
    if !a.peer_cert_allowed_cn.is_empty() {
        cfg.security.peer_cert_allowed_cn = a.peer_cert_allowed_cn;
        given("security.peer-cert-allowed-cn");
    }
    cfg.origins.flags = flags;
    if a.node_id_from_hostname && cfg.join_unless_initial_member()? {
        eprintln!(
            "ctxd: node {} is not in --initial-cluster: joining its members {}",
            cfg.node_id, cfg.peers
        );
    }
    if !cfg.log.level.is_empty() {
        // `[log] level` from the file (the subscriber started with RUST_LOG).
        ctxstore::logging::set_filter(&cfg.log.level)?;
    }
    let node = Node::start(cfg).await?;
    eprintln!("ctxd: node {} serving on {}", node.id(), node.addr());
    let mut signals = Signals::new()?;
    signals.next().await;
    eprintln!(
        "ctxd: stopping: handing leaderships away (at most {}; signal again to stop now)",
        humantime::format_duration(a.drain_timeout)
    );
    tokio::select! {
        r = node.drain(a.drain_timeout) => {
            if r.still_led.is_empty() {
                eprintln!("ctxd: handed over {} leaderships", r.led.len());
            } else {
                eprintln!("ctxd: still leading shards {:?}; stopping anyway", r.still_led);
            }
        }
        _ = signals.next() => eprintln!("ctxd: second signal: stopping now"),
    }
    eprintln!("ctxd: shutting down");
    node.shutdown().await;
    Ok(())
}

fn run_certs(c: CertsArgs) -> anyhow::Result<()> {
    if c.out.join("ca.crt").exists() {
        anyhow::bail!(
            "{} already holds a ca.crt: not overwriting certificates",
            c.out.display()
        );
    }
    let f = ctxstore::pki::DevPki::write(&c.out)?;
    println!(
        "wrote {}, {} / {} and {} / {}",
        f.ca.display(),
        f.node_cert.display(),
        f.node_key.display(),
        f.client_cert.display(),
        f.client_key.display()
    );
    println!(
        "  ctxd  --ca-path {} --cert-path {} --key-path {} --peer-cert-allowed-cn {} ...",
        f.ca.display(),
        f.node_cert.display(),
        f.node_key.display(),
        ctxstore::pki::DEV_NODE_CN
    );
    println!(
        "  ctxctl --cacert {} --cert {} --key {} ...",
        f.ca.display(),
        f.client_cert.display(),
        f.client_key.display()
    );
    Ok(())
}

async fn run_restore(r: RestoreArgs) -> anyhow::Result<()> {
    let cfg = NodeConfig {
        node_id: r.node_id,
        data_dir: r.data_dir,
        initial_cluster: r.initial_cluster,
        ..Default::default()
    };
    let from = r.from;
    let bump = r.bump_index;
    let report = tokio::task::spawn_blocking(move || {
        ctxstore::node::restore::restore(&cfg, &from, bump).map(|rep| (rep, cfg.data_dir))
    })
    .await
    .context("restore task")??;
    let (report, dir) = report;
    println!(
        "restored node {}: {} of the backup's {} shards ({:?}), {} keys, into {}; start it with `ctxd --node-id {} --data-dir {} --listen ...`",
        r.node_id,
        report.hosted.len(),
        report.shards,
        report.hosted,
        report.keys,
        dir.display(),
        r.node_id,
        dir.display()
    );
    Ok(())
}

async fn run_dev(d: DevArgs) -> anyhow::Result<()> {
    let opts = DevOptions {
        nodes: d.nodes,
        base_port: d.base_port,
        data_dir: d.data_dir,
        shards: d.shards,
        tls: d.tls,
        ..Default::default()
    };
    let d_shards = opts.shards;
    let cluster = DevCluster::start(opts)
        .await
        .context("starting the dev cluster")?;
    let eps = cluster.endpoints().join(",");
    // ctxctl is built next to ctxd.
    let ctxctl = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("ctxctl")))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "ctxctl".to_string());
    println!(
        "ctxstore dev cluster is up: {} nodes, {} shards, every shard has a leader",
        cluster.nodes.len(),
        d_shards
    );
    println!("  data:      {}", cluster.data_dir.display());
    println!("  endpoints: {eps}");
    let mut ctl = format!("{ctxctl} --endpoints {eps}");
    if let Some(t) = &cluster.tls {
        println!("  TLS:       CA {}", t.ca.display());
        ctl = format!(
            "{ctl} --cacert {} --cert {} --key {}",
            t.ca.display(),
            t.client_cert.display(),
            t.client_key.display()
        );
    }
    println!("try:");
    println!("  {ctl} put greeting hello");
    println!("  {ctl} get greeting");
    println!("  {ctl} status");
    println!("Ctrl-C stops the cluster.");
    Signals::new()?.next().await;
    println!("stopping…");
    cluster.shutdown().await;
    Ok(())
}

/// SIGTERM and SIGINT (Ctrl-C), as one stream.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
