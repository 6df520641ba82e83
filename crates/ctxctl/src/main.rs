//! `ctxctl`: command-line client for ctxstore.
//!
//! Exit codes: 0 success; 1 key not found or version mismatch; 2 bad usage or invalid
//! argument; 3 cluster unreachable, unavailable or timed out; 4 any other error; 5 not
//! authenticated or not allowed.

use clap::{Parser, Subcommand};
use ctxstore_client::proto::{Replica, ReplicaRole, RoutingTable, ShardDescriptor, StatusResponse};
use ctxstore_client::Error;
use ctxstore_client::{Client, ClientOptions, ClientTls, ReadBalance, ReadMode};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "ctxctl", version, about = "Command-line client for ctxstore")]
struct Cli {
    /// Comma-separated node addresses (host:port).
    #[arg(
        long,
        env = "CTXSTORE_ENDPOINTS",
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,
    /// Per-request deadline, e.g. "10s", "500ms".
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// How reads are served: leader (linearizable, the default), follower
    /// (linearizable at any replica), bounded:<duration> (e.g. bounded:500ms) or stale.
    #[arg(long = "read", global = true, default_value = "leader")]
    read_mode: ReadMode,
    /// How reads any replica may serve pick it: p2c-peak-ewma (default), round-robin,
    /// least-outstanding, weighted, lowest-latency or key-affinity.
    #[arg(long = "balance", global = true, default_value = "p2c-peak-ewma")]
    read_balance: ReadBalance,
    /// Send each get and put as its own gRPC call, instead of on one
    /// `Kv.BatchCommands` stream per node (the default; for comparison).
    #[arg(long, global = true)]
    unary: bool,
    /// TLS: PEM file of the CA that signed the nodes' certificates; turns TLS on.
    #[arg(long, env = "CTXCTL_CACERT", global = true, value_name = "FILE")]
    cacert: Option<std::path::PathBuf>,
    /// TLS: this client's PEM certificate, for clusters that ask for one (with --key).
    // Named apart from the subcommands' `key` arguments: global flags share their ids.
    #[arg(long = "cert", env = "CTXCTL_CERT", global = true, value_name = "FILE", requires_all = ["cacert", "tls_key"])]
    tls_cert: Option<std::path::PathBuf>,
    /// TLS: the PEM private key of --cert.
    #[arg(
        long = "key",
        env = "CTXCTL_KEY",
        global = true,
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<std::path::PathBuf>,
    /// A bearer token (`ctxctl auth token create`), for clusters with auth on. Prefer
    /// the environment variable: a flag shows in the process list.
    #[arg(
        long,
        env = "CTXCTL_TOKEN",
        global = true,
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write KEY = VALUE.
    Put {
        key: String,
        value: String,
        /// Expire after this long, e.g. "30s".
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
    },
    /// Print the value of KEY (exit 1 if absent).
    Get {
        key: String,
        /// Read from any replica, possibly stale (the same as --read stale).
        #[arg(long)]
        stale: bool,
        /// Also print version, create version and expiry.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Delete KEY (exit 1 if it did not exist).
    Del { key: String },
    /// Write VALUE only if KEY is at EXPECTED_VERSION (0 = must not exist).
    Cas {
        key: String,
        expected_version: u64,
        value: Option<String>,
        /// Delete instead of writing.
        #[arg(long)]
        delete: bool,
    },
    /// List keys starting with PREFIX.
    Scan {
        #[arg(default_value = "")]
        prefix: String,
        /// Resume after this key.
        #[arg(long, default_value = "")]
        start_after: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Print the changes to KEY (or, with --prefix, to the keys starting with it,
    /// which must hold a whole hash tag such as `{tag}`), one line each, as they
    /// happen or, with --from, from that version on.
    Watch {
        key: String,
        #[arg(long)]
        prefix: bool,
        /// Print the changes after this version first (they must still be retained).
        #[arg(long)]
        from: Option<u64>,
        /// Stop after this many changes.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Ask every endpoint's gRPC health service whether the node is ready (it serves
    /// and all its replicas know a leader and are caught up); exit 1 unless all are.
    /// For scripts and container health checks.
    Health,
    /// One row per shard (leader node, term, commit/applied, lagging replicas) and one
    /// per node (address, state, replicas, leaders).
    Status {
        /// `table` (default) or `json`.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Membership of a shard (default: shard 1; 0 is the meta shard).
    Member {
        #[arg(long, global = true)]
        shard: Option<u64>,
        #[command(subcommand)]
        cmd: MemberCmd,
    },
    /// Hand leadership of a shard to its replica on a node: `transfer-leader SHARD
    /// NODE`, or `transfer-leader NODE [--shard S]` (default shard 1; 0 is the meta shard).
    TransferLeader {
        /// `[SHARD] NODE`.
        #[arg(num_args = 1..=2, required = true, value_name = "[SHARD] NODE")]
        ids: Vec<u64>,
        #[arg(long)]
        shard: Option<u64>,
    },
    /// Show which shard owns KEY (its partition hash) and where its leader is.
    Route { key: String },
    /// Shards: list them with their arcs, size and load, or split one.
    Shard {
        #[command(subcommand)]
        cmd: ShardCmd,
    },
    /// Nodes: list them with liveness, admin state and load; drain, undrain, remove.
    Node {
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// The placement driver: its operators and findings; pause or resume it.
    Pd {
        #[command(subcommand)]
        cmd: PdCmd,
    },
    /// Backups: save every shard to a directory, check one.
    Snapshot {
        #[command(subcommand)]
        cmd: snapshot::SnapshotCmd,
    },
    /// The cluster's dynamic settings: set and unset them, show them per node.
    Config {
        #[command(subcommand)]
        cmd: config::ConfigCmd,
    },
    /// Closed-loop load generator: N clients each issue one request at a time.
    Bench(BenchArgs),
    /// Conversations of the agent context API (NAMESPACE/ID names one).
    Conv {
        #[command(subcommand)]
        cmd: ConvCmd,
    },
    /// List a tenant namespace's checkpoint threads (none: the default namespace).
    Threads { namespace: Option<String> },
    /// The service registry: instances registered under leases.
    Svc {
        #[command(subcommand)]
        cmd: SvcCmd,
    },
    /// Authentication and authorization: enable, users, roles, tokens, tenants.
    Auth {
        #[command(subcommand)]
        cmd: auth::AuthCmd,
    },
}

#[derive(Subcommand)]
enum ShardCmd {
    /// One row per shard: arcs (share of the hash space), approximate size and keys,
    /// writes per second, leader, and a hot partition key if one takes most writes.
    List {
        /// `table` (default) or `json`.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Split SHARD in two while it serves: the hashes at and above the cut go to a new
    /// shard on the same replicas (no data is copied).
    Split {
        shard: u64,
        /// Cut at this hash (decimal or 0x-hex), strictly inside one of the shard's
        /// arcs. Default: where the shard's data divides in halves by size.
        #[arg(long, value_parser = parse_hash)]
        at: Option<u64>,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// One row per node: liveness, admin state, replicas, leaders, disk used and free.
    List {
        /// `table` (default) or `json`.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Move every replica and leadership off NODE (refused when fewer serving nodes
    /// than the replication factor would remain). `node list` shows the progress.
    Drain { node: u64 },
    /// Let a draining NODE take replicas again.
    Undrain { node: u64 },
    /// Retire a drained NODE that hosts no replica; its id is never reused.
    Remove { node: u64 },
}

#[derive(Subcommand)]
enum PdCmd {
    /// Operators in flight, under-replicated and unavailable shards.
    Status {
        /// `table` (default) or `json`.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Stop the driver: no replica or leadership moves until `pd resume`.
    Pause,
    /// Resume the driver.
    Resume,
}

/// A hash: decimal, or hex with a `0x` prefix.
fn parse_hash(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("`{s}` is not a 64-bit hash (decimal or 0x-hex): {e}"))
}

/// How a report is printed.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    /// Aligned columns for people.
    Table,
    /// One JSON document for scripts.
    Json,
}

#[derive(Subcommand)]
enum SvcCmd {
    /// The registered instances of SERVICE, a line each: instance, value, lease id.
    List { service: String },
    /// Print registrations (PUT) and departures (DELETE) of SERVICE's instances.
    Watch {
        service: String,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Register INSTANCE of SERVICE with VALUE under a lease kept alive until
    /// interrupted (Ctrl-C revokes it).
    Register {
        service: String,
        instance: String,
        value: String,
        /// The lease's TTL: how long the entry outlives this command if it dies.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

#[derive(Subcommand)]
enum ConvCmd {
    /// Append one message; prints its seq.
    Append {
        /// NAMESPACE/ID.
        conversation: String,
        role: String,
        content: String,
        /// Its token count (default: bytes / 4, at least 1).
        #[arg(long)]
        tokens: Option<u64>,
        /// Append only if the last seq is this (exit 1 otherwise).
        #[arg(long)]
        expect_last: Option<u64>,
    },
    /// Print messages: all (paged), the newest N, or the newest that fit a budget.
    Read {
        conversation: String,
        #[arg(long, conflicts_with = "budget")]
        last: Option<u64>,
        /// Token budget (pinned and system messages included).
        #[arg(long)]
        budget: Option<u64>,
    },
    /// Print a conversation's metadata (exit 1 if it does not exist).
    Info { conversation: String },
    /// List a namespace's conversations.
    List { namespace: String },
    /// Delete a conversation.
    Delete { conversation: String },
}

fn conv_ref(s: &str) -> Result<ctxstore_client::proto::ConversationRef, Error> {
    let (namespace, id) = s
        .split_once('/')
        .ok_or_else(|| Error::invalid("conversation", "expected NAMESPACE/ID"))?;
    Ok(ctxstore_client::proto::ConversationRef {
        namespace: namespace.into(),
        id: id.into(),
    })
}

fn print_message(m: &ctxstore_client::proto::ChatMessage) {
    println!(
        "{:>6} {:<10} [{} tok] {}",
        m.seq, m.role, m.token_count, m.content
    );
}

/// Runs a `ctxctl conv` command.
async fn conv(client: &Client, cmd: ConvCmd) -> Result<ExitCode, Error> {
    use ctxstore_client::proto::{
        read_request::Select, AppendRequest, ChatMessage, ReadRequest, SeqRange, TokenBudget,
    };
    match cmd {
        ConvCmd::Append { conversation, role, content, tokens, expect_last } => {
            let token_count = tokens.unwrap_or(content.len() as u64 / 4 + 1);
            let r = client
                .append(AppendRequest {
                    conversation: Some(conv_ref(&conversation)?),
                    messages: vec![ChatMessage { role, content, token_count, ..Default::default() }],
                    expected_last_seq: expect_last,
                    ..Default::default()
                })
                .await?;
            println!("OK seq={} version={}", r.first_seq, r.version);
        }
        ConvCmd::Read { conversation, last, budget } => {
            let c = conv_ref(&conversation)?;
            let select = match (last, budget) {
                (Some(n), _) => Select::LastN(n),
                (_, Some(t)) => Select::TokenBudget(TokenBudget { max_tokens: t, include_pinned: true }),
                _ => Select::Range(SeqRange::default()),
            };
            let mut after = 0;
            loop {
                let r = client
                    .read(ReadRequest {
                        conversation: Some(c.clone()),
                        select: Some(select),
                        after_seq: after,
                        ..Default::default()
                    })
                    .await?;
                r.messages.iter().for_each(print_message);
                if r.next_seq == 0 {
                    if budget.is_some() {
                        println!("({} tokens)", r.total_tokens);
                    }
                    break;
                }
                after = r.next_seq - 1;
            }
        }
        ConvCmd::Info { conversation } => match client.conversation(conv_ref(&conversation)?).await? {
            Some(i) => println!(
                "messages={} tokens={} seqs={}..={} created={} updated={} idle_ttl_ms={} expires_at_ms={} metadata_version={} metadata={:?}",
                i.message_count, i.token_total, i.first_seq, i.last_seq, i.created_at_ms,
                i.updated_at_ms, i.idle_ttl_ms, i.expires_at_ms, i.metadata_version, i.metadata
            ),
            None => {
                eprintln!("conversation {conversation} not found");
                return Ok(ExitCode::from(1));
            }
        },
        ConvCmd::List { namespace } => {
            let mut after = String::new();
            loop {
                let page = client.list_conversations(&namespace, &after, 100).await?;
                for i in &page.conversations {
                    let id = i.conversation.as_ref().map_or("", |c| c.id.as_str());
                    println!("{id}\t{} messages\t{} tokens", i.message_count, i.token_total);
                    after = id.to_string();
                }
                if !page.more || page.conversations.is_empty() {
                    break;
                }
            }
        }
        ConvCmd::Delete { conversation } => {
            let r = client.delete_conversation(conv_ref(&conversation)?).await?;
            println!("{}", if r.deleted { "deleted" } else { "not found" });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the events of a watch, a line each (kind, key, value, version), until it
/// ends or after `count` of them.
async fn print_events(
    mut w: ctxstore_client::Watcher<ctxstore_client::proto::WatchEvent>,
    count: Option<u64>,
) -> Result<(), Error> {
    let mut seen = 0;
    while count.is_none_or(|c| seen < c) {
        let Some(e) = w.next().await else { break };
        let e = e?;
        let kind = e.kind().as_str_name();
        let kv = e.kv.unwrap_or_default();
        let (k, v) = (
            String::from_utf8_lossy(&kv.key),
            String::from_utf8_lossy(&kv.value),
        );
        println!("{kind}\t{k}\t{v}\tversion={}", e.version);
        seen += 1;
    }
    Ok(())
}

async fn svc(client: &Client, cmd: SvcCmd) -> Result<(), Error> {
    match cmd {
        SvcCmd::List { service } => {
            let prefix = ctxstore_client::service_prefix(&service);
            for kv in client.discover(&service).await? {
                let instance = kv.key.get(prefix.len()..).unwrap_or_default();
                println!(
                    "{}\t{}\tlease={}",
                    String::from_utf8_lossy(instance),
                    String::from_utf8_lossy(&kv.value),
                    kv.lease_id
                );
            }
        }
        SvcCmd::Watch { service, count } => {
            print_events(client.watch_service(&service, None).await?, count).await?
        }
        SvcCmd::Register {
            service,
            instance,
            value,
            ttl,
        } => {
            let mut keeper = client.register(&service, &instance, value, ttl).await?;
            println!(
                "registered {instance} in {service} (lease {})",
                keeper.lease().id
            );
            tokio::select! {
                _ = keeper.lost() => {
                    eprintln!("the registration's lease was lost");
                    return Err(Error::FailedPrecondition("lease lost".into()));
                }
                _ = tokio::signal::ctrl_c() => {
                    client.revoke_lease(keeper.lease()).await?;
                    println!("deregistered {instance}");
                }
            }
        }
    }
    Ok(())
}

/// Prints every thread of `namespace`, a line each: id, created and updated times
/// (ms since the epoch), idle TTL.
async fn threads(client: &Client, namespace: &str) -> Result<(), Error> {
    let mut after = String::new();
    loop {
        let page = client.list_threads(namespace, &after, 100).await?;
        for t in &page.threads {
            println!(
                "{}\tcreated={}\tupdated={}\tidle_ttl_ms={}",
                t.thread, t.created_at_ms, t.updated_at_ms, t.idle_ttl_ms
            );
        }
        match page.threads.last() {
            Some(last) if page.more => after = last.thread.clone(),
            _ => return Ok(()),
        }
    }
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long to measure, e.g. "10s".
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load before measuring (not counted).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// put | get | get-stale | mixed (50% put, 50% get) | ycsb-a (50% update) |
    /// ycsb-b (5% update) | ycsb-c (reads only); keys are chosen uniformly.
    /// agent-step: each client runs agent steps on its own conversation (a 2,000-token
    /// budget read, an append of a user and a --value-size assistant message, a
    /// checkpoint with a --value-size blob); one op = one step.
    /// append: each client appends one --value-size message to its own conversation.
    /// load: write each of --keys keys once, then stop (use --warmup 0s).
    /// list: list the first page (100) of namespace `bench`'s conversations (make them
    /// with `append`: one per client).
    /// budget: read the newest messages that fit 2,000 tokens of conversation
    /// `bench/budget-<keys>`, filled first with --keys messages of --value-size bytes.
    #[arg(long, default_value = "put")]
    workload: String,
    /// The system under load: `ctxstore`, or `etcd` (a v3 cluster at --endpoints, driven
    /// over its gRPC KV API with the same closed loop, for side-by-side numbers).
    #[arg(long, default_value = "ctxstore")]
    target: String,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum MemberCmd {
    /// List replicas.
    List,
    /// Add a node (as a learner, promoted once caught up).
    Add { node_id: u64, addr: String },
    /// Remove a node's replica.
    Remove { node_id: u64 },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let plaintext = cli.cacert.is_none();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(4);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            // A plaintext client talking to a TLS port (or the reverse) sees only
            // failed connections.
            let failed_to_connect = match &e {
                Error::Transport(_) => true,
                Error::Timeout(_, last) => matches!(**last, Error::Transport(_)),
                _ => false,
            };
            if matches!(e, Error::Unauthenticated(_)) {
                eprintln!("hint: this cluster has auth on: pass a token with --token or CTXCTL_TOKEN (ctxctl auth token create)");
            }
            if failed_to_connect {
                if plaintext {
                    eprintln!("hint: if the cluster uses TLS, pass --cacert (CTXCTL_CACERT)");
                } else {
                    eprintln!("hint: check that the nodes serve TLS and that --cacert holds the CA that signed their certificates");
                }
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &Error) -> u8 {
    match e {
        Error::VersionMismatch { .. } | Error::SequenceMismatch { .. } | Error::NotFound(_) => 1,
        Error::InvalidArgument { .. } | Error::LimitExceeded { .. } | Error::Config { .. } => 2,
        Error::Timeout(..)
        | Error::Transport(_)
        | Error::ShardUnavailable { .. }
        | Error::NotLeader { .. }
        | Error::NodeNotReady(_)
        | Error::Shutdown => 3,
        Error::Unauthenticated(_) | Error::PermissionDenied(_) => 5,
        _ => 4,
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let member_add = matches!(
        cli.cmd,
        Cmd::Member {
            cmd: MemberCmd::Add { .. },
            ..
        }
    );
    let tls = cli.cacert.as_ref().map(|ca| {
        let t = ClientTls::new(ca);
        match (&cli.tls_cert, &cli.tls_key) {
            (Some(c), Some(k)) => t.with_identity(c, k),
            _ => t,
        }
    });
    let opts = ClientOptions {
        // Adding a member waits for the new replica to catch up.
        timeout: if member_add {
            cli.timeout.max(Duration::from_secs(90))
        } else {
            cli.timeout
        },
        read_mode: cli.read_mode,
        read_balance: cli.read_balance,
        tls: tls.clone(),
        token: cli.token.clone(),
        batch_calls: !cli.unary,
        ..Default::default()
    };
    let client = Client::connect_with(&cli.endpoints, opts).await?;
    match cli.cmd {
        Cmd::Put { key, value, ttl } => {
            let r = client.put_with_ttl(key, value, ttl).await?;
            println!(
                "OK version={} create_version={}",
                r.version, r.create_version
            );
        }
        Cmd::Get {
            key,
            stale,
            verbose,
        } => {
            let kv = if stale {
                client.get_stale(key).await?
            } else {
                client.get(key).await?
            };
            match kv {
                Some(kv) => {
                    println!("{}", String::from_utf8_lossy(&kv.value));
                    if verbose {
                        println!(
                            "version={} create_version={} expires_at_ms={}",
                            kv.version, kv.create_version, kv.expires_at_ms
                        );
                    }
                }
                None => {
                    eprintln!("(not found)");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Cmd::Del { key } => {
            if client.delete(key).await? {
                println!("deleted");
            } else {
                eprintln!("(not found)");
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Cas {
            key,
            expected_version,
            value,
            delete,
        } => {
            let r = if delete {
                client.compare_and_delete(key, expected_version).await?
            } else {
                let value =
                    value.ok_or_else(|| Error::invalid("value", "required unless --delete"))?;
                client
                    .compare_and_swap(key, expected_version, value)
                    .await?
            };
            println!("OK version={}", r.version);
        }
        Cmd::Scan {
            prefix,
            start_after,
            limit,
        } => {
            let r = client.scan(prefix, start_after, limit).await?;
            for kv in &r.kvs {
                println!(
                    "{}\t{}\tversion={}",
                    String::from_utf8_lossy(&kv.key),
                    String::from_utf8_lossy(&kv.value),
                    kv.version
                );
            }
            if r.more {
                if let Some(last) = r.kvs.last() {
                    eprintln!(
                        "(more: --start-after {})",
                        String::from_utf8_lossy(&last.key)
                    );
                }
            }
        }
        Cmd::Watch {
            key,
            prefix,
            from,
            count,
        } => print_events(client.watch(key, prefix, from).await?, count).await?,
        Cmd::Health => {
            let mut all = true;
            for ep in &cli.endpoints {
                let state = health(ep, tls.as_ref(), cli.timeout).await;
                all &= state == "SERVING";
                println!("{ep} {state}");
            }
            if !all {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Status { output } => {
            let (statuses, table) = gather(&client, &cli.endpoints).await?;
            let r = status::report(&statuses, table.as_ref());
            match output {
                Output::Table => print!("{}", status::render(&r)),
                Output::Json => println!(
                    "{}",
                    serde_json::to_string(&r).map_err(|e| Error::Internal(e.to_string()))?
                ),
            }
        }
        Cmd::Member { shard, cmd } => match cmd {
            MemberCmd::List => {
                let want = shard.unwrap_or(1);
                let desc = client
                    .routing()
                    .await
                    .into_iter()
                    .map(|(d, _)| d)
                    .find(|d| d.shard_id == want)
                    .ok_or(Error::WrongShard {
                        shard: ctxstore_client::ShardId(want),
                    })?;
                print_members(&desc);
            }
            MemberCmd::Add { node_id, addr } => {
                let r = client.add_shard_member(shard, node_id, &addr).await?;
                if let Some(rep) = &r.replica {
                    let role = match role_name(rep) {
                        "voter" => "voter",
                        _ => "learner (still catching up)",
                    };
                    println!("added node {node_id} ({role})");
                }
                if let Some(d) = &r.descriptor {
                    print_members(d);
                }
            }
            MemberCmd::Remove { node_id } => {
                let d = client.remove_shard_member(shard, node_id).await?;
                println!("removed node {node_id}");
                print_members(&d);
            }
        },
        Cmd::TransferLeader { ids, shard } => {
            let (shard, node_id) = match (ids.as_slice(), shard) {
                ([s, n], None) => (Some(*s), *n),
                ([n], shard) => (shard, *n),
                _ => return Err(Error::invalid(
                    "shard",
                    "give the shard either as `transfer-leader SHARD NODE` or as --shard, not both",
                )),
            };
            match shard {
                Some(s) => client.transfer_shard_leader(s, node_id).await?,
                None => client.transfer_leader(node_id).await?,
            }
            println!("leadership transfer to node {node_id} requested");
        }
        Cmd::Route { key } => {
            let (shard, leader) = client.route(key.as_bytes()).await;
            let shard = if shard == 0 { 1 } else { shard };
            let partition =
                String::from_utf8_lossy(ctxstore_client::keys::partition_key(key.as_bytes()))
                    .into_owned();
            println!(
                "key {key} (partition key {partition}) -> shard {shard}, leader {}",
                leader.unwrap_or_else(|| "unknown".into())
            );
        }
        Cmd::Shard { cmd } => match cmd {
            ShardCmd::Split { shard, at } => {
                let (p, c) = client.split_shard(shard, at).await?;
                println!("split shard {shard}: new shard {}", c.shard_id);
                for d in [&p, &c] {
                    println!(
                        "  shard {:<6} ring_ver {:<4} arcs {}",
                        d.shard_id,
                        d.ring_ver,
                        status::show_arcs(d)
                    );
                }
            }
            ShardCmd::List { output } => {
                let (statuses, table) = gather(&client, &cli.endpoints).await?;
                let rows = status::shard_list(&statuses, table.as_ref());
                match output {
                    Output::Table => print!("{}", status::render_shard_list(&rows)),
                    Output::Json => println!(
                        "{}",
                        serde_json::to_string(&rows).map_err(|e| Error::Internal(e.to_string()))?
                    ),
                }
            }
        },
        Cmd::Node { cmd } => match cmd {
            NodeCmd::List { output } => {
                let pd_state = client.pd_status().await?;
                let table = client.routing_table().await?;
                let rows = pd::node_rows(&pd_state, &table);
                match output {
                    Output::Table => print!("{}", pd::render_nodes(&rows)),
                    Output::Json => println!(
                        "{}",
                        serde_json::to_string(&rows).map_err(|e| Error::Internal(e.to_string()))?
                    ),
                }
            }
            NodeCmd::Drain { node } => {
                client
                    .set_node_admin(node, ctxstore_client::proto::NodeAdmin::Draining)
                    .await?;
                println!("node {node} is draining: its replicas and leaderships move away (`ctxctl node list` shows the progress)");
            }
            NodeCmd::Undrain { node } => {
                client
                    .set_node_admin(node, ctxstore_client::proto::NodeAdmin::Serving)
                    .await?;
                println!("node {node} is serving again");
            }
            NodeCmd::Remove { node } => {
                client
                    .set_node_admin(node, ctxstore_client::proto::NodeAdmin::Removed)
                    .await?;
                println!("node {node} is removed from the cluster; stop its process");
            }
        },
        Cmd::Pd { cmd } => match cmd {
            PdCmd::Status { output } => {
                let st = client.pd_status().await?;
                match output {
                    Output::Table => print!("{}", pd::render_pd(&st)),
                    Output::Json => println!(
                        "{}",
                        serde_json::to_string(&PdJson::from(&st))
                            .map_err(|e| Error::Internal(e.to_string()))?
                    ),
                }
            }
            PdCmd::Pause => {
                client.set_pd_paused(true).await?;
                println!("placement driver paused");
            }
            PdCmd::Resume => {
                client.set_pd_paused(false).await?;
                println!("placement driver resumed");
            }
        },
        Cmd::Config { cmd } => config::run(&client, &cli.endpoints, cmd).await?,
        Cmd::Snapshot { cmd } => return snapshot::run(&client, cmd).await,
        Cmd::Bench(args) => {
            let read = (cli.read_mode.to_string(), cli.read_balance.to_string());
            bench::run(client, &cli.endpoints, args, read).await?
        }
        Cmd::Conv { cmd } => return conv(&client, cmd).await,
        Cmd::Threads { namespace } => threads(&client, &namespace.unwrap_or_default()).await?,
        Cmd::Svc { cmd } => svc(&client, cmd).await?,
        Cmd::Auth { cmd } => return auth::run(&client, cmd).await,
    }
    Ok(ExitCode::SUCCESS)
}

mod auth;
mod bench;
mod config;
mod pd;
mod snapshot;
mod status;

/// `ctxctl pd status -o json`.
#[derive(serde::Serialize)]
struct PdJson {
    enabled: bool,
    paused: bool,
    meta_leader: u64,
    warming_up: bool,
    finished: u64,
    cancelled: u64,
    under_replicated: Vec<u64>,
    unavailable: Vec<u64>,
    operators: Vec<PdOperatorJson>,
}

#[derive(serde::Serialize)]
struct PdOperatorJson {
    shard: u64,
    kind: String,
    from: u64,
    to: u64,
    lead: u64,
    step: String,
    age_ms: u64,
}

impl From<&ctxstore_client::proto::PdStatusResponse> for PdJson {
    fn from(p: &ctxstore_client::proto::PdStatusResponse) -> Self {
        Self {
            enabled: p.enabled,
            paused: p.paused,
            meta_leader: p.meta_leader,
            warming_up: p.warming_up,
            finished: p.finished,
            cancelled: p.cancelled,
            under_replicated: p.under_replicated.clone(),
            unavailable: p.unavailable.clone(),
            operators: p
                .operators
                .iter()
                .map(|o| PdOperatorJson {
                    shard: o.shard_id,
                    kind: o.kind.clone(),
                    from: o.from_node,
                    to: o.to_node,
                    lead: o.lead_node,
                    step: o.step.clone(),
                    age_ms: o.age_ms,
                })
                .collect(),
        }
    }
}

/// Every node's status (the endpoints given, and every node the routing table names)
/// and the routing table, for the status and shard reports.
async fn gather(
    client: &Client,
    endpoints: &[String],
) -> Result<(Vec<StatusResponse>, Option<RoutingTable>), Error> {
    let mut statuses = Vec::new();
    let mut unreachable = Vec::new();
    for ep in endpoints {
        match client.node_status(ep).await {
            Ok(s) => statuses.push(s),
            Err(e) => unreachable.push(format!("{ep}: {e}")),
        }
    }
    if statuses.is_empty() {
        return Err(Error::Transport(format!(
            "no endpoint answered ({})",
            unreachable.join("; ")
        )));
    }
    let table = client.routing_table().await.ok();
    if let Some(t) = &table {
        for n in &t.nodes {
            if statuses.iter().any(|s| s.node_id == n.node_id) {
                continue;
            }
            if let Ok(s) = client.node_status(&n.addr).await {
                statuses.push(s);
            }
        }
    }
    Ok((statuses, table))
}

/// The subset of etcd's v3 KV API that `ctxctl bench --target etcd` drives
/// (`proto/etcd/kv_min.proto`, client side only).
mod etcd {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("etcdserverpb");
}

fn role_name(r: &Replica) -> &'static str {
    if r.role == ReplicaRole::Voter as i32 {
        "voter"
    } else {
        "learner"
    }
}

/// A shard's replicas, one line each, named by shard and node (`3/n2`).
fn print_members(d: &ShardDescriptor) {
    println!("shard {} (conf_ver {}):", d.shard_id, d.conf_ver);
    for r in &d.replicas {
        let role = role_name(r);
        let name = format!("{}/n{}", d.shard_id, r.node_id);
        println!("  {name:<8} {:<22} {role}", r.addr);
    }
}

/// The gRPC health status of the node at `ep` (`SERVING`, `NOT_SERVING`, or why it
/// could not be asked).
async fn health(ep: &str, tls: Option<&ClientTls>, timeout: Duration) -> String {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};
    let ask = async {
        let ch = ctxstore_client::tls::endpoint(ep, tls)
            .map_err(|e| e.to_string())?
            .connect_timeout(timeout)
            .connect()
            .await
            .map_err(|e| format!("unreachable: {e}"))?;
        let r = HealthClient::new(ch)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .map_err(|s| format!("error: {}", s.message()))?;
        Ok::<_, String>(r.into_inner().status())
    };
    match tokio::time::timeout(timeout, ask).await {
        Ok(Ok(ServingStatus::Serving)) => "SERVING".into(),
        Ok(Ok(ServingStatus::NotServing)) => "NOT_SERVING".into(),
        Ok(Ok(other)) => other.as_str_name().to_string(),
        Ok(Err(e)) => e,
        Err(_) => format!("no answer within {timeout:?}"),
    }
}
