//! `ctxctl bench`: closed-loop load through the bundled client (or against etcd with
//! the same loop, for comparisons).

use super::BenchArgs;
use crate::etcd::kv_client::KvClient as EtcdKv;
use crate::etcd::{PutRequest as EtcdPut, RangeRequest as EtcdRange};
use ctxstore_client::Client;
use ctxstore_client::Error;
use rand::Rng;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The machine-readable result (`--json`).
#[derive(serde::Serialize)]
struct Report {
    target: String,
    workload: String,
    clients: usize,
    ops_per_sec: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    p999_us: u64,
    errors: u64,
    /// The client's read mode and balancing policy (`--read`, `--balance`).
    read: String,
    balance: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Put,
    Get,
    GetStale,
    /// Share of writes in a read/write mix (reads are linearizable).
    Mix(f64),
    /// One agent step on the client's own conversation: read the newest messages
    /// that fit a token budget, append a user and an assistant message, store a
    /// checkpoint.
    AgentStep,
    /// One conversation `Append` of one --value-size message per op, each client on
    /// its own conversation (on etcd: one put under the next numbered key).
    Append,
    /// Writes every key once (client `i` takes keys `i`, `i + clients`, ...), then
    /// stops: a bulk load of `keys × value-size` bytes.
    Load,
    /// Lists the first page (`LIST_PAGE` conversations) of namespace `bench`, the
    /// conversations `append` made (on etcd: the first `LIST_PAGE` keys under
    /// `conv/`).
    List,
    /// Reads the newest messages that fit `STEP_BUDGET` tokens of conversation
    /// `bench/budget-<keys>`, first filled with `keys` messages (ctxstore only).
    Budget,
    /// A task queue: even clients enqueue --value-size tasks, odd ones lease one task
    /// and ack it; an op is one task acked (what is counted and timed). On etcd the
    /// same loop with transactions over keys: a put under `q/ready/`, then a range
    /// for the first 16 ready keys, a transaction that moves one of them (by client)
    /// to `q/leased/` if its mod revision is unchanged, and a delete as the ack.
    Queue,
}

/// The queue the `queue` workload uses.
const BENCH_QUEUE: &str = "bench";

/// Messages one append of the `budget` fill carries.
const FILL_BATCH: u64 = 500;

/// Conversations one `list` op asks for.
const LIST_PAGE: u32 = 100;

/// Tokens of context an agent step reads.
const STEP_BUDGET: u64 = 2_000;

/// The system under load.
#[derive(Clone)]
enum Target {
    Ctxstore(Client),
    /// One channel per etcd member; client `i` uses member `i % n` (etcd forwards
    /// writes to its leader itself).
    Etcd(Vec<Channel>),
}

impl Target {
    async fn connect(a: &BenchArgs, client: Client, endpoints: &[String]) -> Result<Target, Error> {
        match a.target.as_str() {
            "ctxstore" => Ok(Target::Ctxstore(client)),
            "etcd" => {
                let mut chans = Vec::new();
                for ep in endpoints {
                    let ch = tonic::transport::Endpoint::from_shared(format!("http://{ep}"))
                        .map_err(|e| Error::invalid("endpoints", e.to_string()))?
                        .tcp_nodelay(true)
                        .connect()
                        .await
                        .map_err(|e| Error::Transport(format!("etcd at {ep}: {e}")))?;
                    chans.push(ch);
                }
                Ok(Target::Etcd(chans))
            }
            other => Err(Error::invalid(
                "target",
                format!("`{other}` is not one of ctxstore, etcd"),
            )),
        }
    }

    async fn put(&self, i: usize, key: String, value: bytes::Bytes) -> Result<(), Error> {
        match self {
            Target::Ctxstore(c) => c.put(key, value).await.map(|_| ()),
            Target::Etcd(chans) => {
                let req = EtcdPut {
                    key: key.into_bytes().into(),
                    value,
                    ..Default::default()
                };
                EtcdKv::new(chans[i % chans.len()].clone())
                    .put(req)
                    .await
                    .map(|_| ())
                    .map_err(|s| Error::Transport(format!("etcd put: {s}")))
            }
        }
    }

    /// One agent step of client `i` (its `step`-th). On etcd the same work is the
    /// obvious key layout: a descending prefix range of the newest 20 messages, one
    /// put per message (etcd has no server-side sequence or atomic multi-append
    /// without a transaction, so this does less than ctxstore's append), and a
    /// checkpoint put.
    async fn agent_step(&self, i: usize, step: u64, value: bytes::Bytes) -> Result<(), Error> {
        use ctxstore_client::proto::{
            read_request::Select, AppendRequest, ChannelBlob, Checkpoint, ConversationRef,
            PutCheckpointRequest, ReadRequest, ThreadRef, TokenBudget,
        };
        match self {
            Target::Ctxstore(c) => {
                let conv = ConversationRef {
                    namespace: "bench".into(),
                    id: format!("agent-{i}"),
                };
                c.read(ReadRequest {
                    conversation: Some(conv.clone()),
                    select: Some(Select::TokenBudget(TokenBudget {
                        max_tokens: STEP_BUDGET,
                        include_pinned: true,
                    })),
                    ..Default::default()
                })
                .await?;
                let answer = String::from_utf8_lossy(&value).into_owned();
                c.append(AppendRequest {
                    conversation: Some(conv),
                    messages: vec![
                        chat_message("user", format!("step {step}: what next?")),
                        chat_message("assistant", answer),
                    ],
                    ..Default::default()
                })
                .await?;
                c.put_checkpoint(PutCheckpointRequest {
                    thread: Some(ThreadRef {
                        thread: format!("bench-agent-{i}"),
                        ns: String::new(),
                        namespace: String::new(),
                    }),
                    checkpoint: Some(Checkpoint {
                        checkpoint_id: format!("{step:012}"),
                        channel_versions: [("state".to_string(), step.to_string())].into(),
                        ..Default::default()
                    }),
                    blobs: vec![ChannelBlob {
                        channel: "state".into(),
                        version: step.to_string(),
                        value,
                    }],
                    ..Default::default()
                })
                .await?;
                Ok(())
            }
            Target::Etcd(chans) => {
                let prefix = format!("conv/agent-{i}/");
                let req = EtcdRange {
                    key: prefix.clone().into_bytes().into(),
                    range_end: format!("conv/agent-{i}0").into_bytes().into(),
                    limit: 20,
                    sort_order: 2,
                    ..Default::default()
                };
                etcd_range(chans, i, req).await?;
                self.put(
                    i,
                    format!("{prefix}{:012}", 2 * step),
                    bytes::Bytes::from(format!("step {step}: what next?")),
                )
                .await?;
                self.put(i, format!("{prefix}{:012}", 2 * step + 1), value.clone())
                    .await?;
                self.put(i, format!("ckpt/agent-{i}/{step:012}"), value)
                    .await
            }
        }
    }

    /// One step of client `i` of the `queue` workload: a producer's enqueue (its
    /// `step`-th), or a consumer's lease and ack; whether a task was acked.
    async fn queue_step(&self, i: usize, step: u64, value: bytes::Bytes) -> Result<bool, Error> {
        use crate::etcd::{
            compare, request_op, Compare, DeleteRangeRequest, RequestOp, TxnRequest,
        };
        let producer = i.is_multiple_of(2);
        match self {
            Target::Ctxstore(c) if producer => c.enqueue(BENCH_QUEUE, value).await.map(|_| false),
            Target::Ctxstore(c) => {
                let tasks = c
                    .lease_tasks(BENCH_QUEUE, 1, Duration::from_secs(30))
                    .await?;
                let Some(t) = tasks.first() else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    return Ok(false);
                };
                c.ack(BENCH_QUEUE, t).await
            }
            Target::Etcd(_) if producer => self
                .put(i, format!("q/ready/{i:04}-{step:012}"), value)
                .await
                .map(|_| false),
            Target::Etcd(chans) => {
                let kv = || EtcdKv::new(chans[i % chans.len()].clone());
                let etcd = |what: &'static str| {
                    move |s: tonic::Status| Error::Transport(format!("etcd {what}: {s}"))
                };
                let first = kv()
                    .range(EtcdRange {
                        key: "q/ready/".into(),
                        range_end: "q/ready0".into(),
                        limit: 16,
                        ..Default::default()
                    })
                    .await
                    .map_err(etcd("range"))?
                    .into_inner();
                // Consumers spread over the first ready tasks, or they would all race
                // for the first one and most transactions would fail.
                let n = first.kvs.len().max(1);
                let Some(task) = first.kvs.into_iter().nth((i / 2) % n) else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    return Ok(false);
                };
                let leased = [&b"q/leased/"[..], &task.key[b"q/ready/".len()..]].concat();
                let taken = kv()
                    .txn(TxnRequest {
                        compare: vec![Compare {
                            result: 0,
                            target: 2,
                            key: task.key.clone(),
                            target_union: Some(compare::TargetUnion::ModRevision(
                                task.mod_revision,
                            )),
                        }],
                        success: vec![
                            RequestOp {
                                request: Some(request_op::Request::RequestDeleteRange(
                                    DeleteRangeRequest {
                                        key: task.key.clone(),
                                        ..Default::default()
                                    },
                                )),
                            },
                            RequestOp {
                                request: Some(request_op::Request::RequestPut(EtcdPut {
                                    key: leased.clone().into(),
                                    value: task.value.clone(),
                                    ..Default::default()
                                })),
                            },
                        ],
                        failure: vec![],
                    })
                    .await
                    .map_err(etcd("txn"))?
                    .into_inner()
                    .succeeded;
                if !taken {
                    // Another consumer took it first.
                    return Ok(false);
                }
                kv().delete_range(DeleteRangeRequest {
                    key: leased.into(),
                    ..Default::default()
                })
                .await
                .map_err(etcd("delete"))?;
                Ok(true)
            }
        }
    }

    /// Client `i` appends its `step`-th message to its own conversation.
    async fn append(&self, i: usize, step: u64, value: bytes::Bytes) -> Result<(), Error> {
        use ctxstore_client::proto::{AppendRequest, ConversationRef};
        match self {
            Target::Ctxstore(c) => {
                let content = String::from_utf8_lossy(&value).into_owned();
                c.append(AppendRequest {
                    conversation: Some(ConversationRef {
                        namespace: "bench".into(),
                        id: format!("append-{i}"),
                    }),
                    messages: vec![chat_message("assistant", content)],
                    ..Default::default()
                })
                .await
                .map(|_| ())
            }
            Target::Etcd(_) => {
                self.put(i, format!("conv/append-{i}/{step:012}"), value)
                    .await
            }
        }
    }

    /// The ctxstore client, or the error that the `budget` workload has no etcd form.
    fn budget_client(&self) -> Result<&Client, Error> {
        match self {
            Target::Ctxstore(c) => Ok(c),
            Target::Etcd(_) => Err(Error::invalid(
                "target",
                "the budget workload runs on ctxstore only",
            )),
        }
    }

    /// The newest messages of `bench/budget-<messages>` that fit `STEP_BUDGET` tokens.
    async fn budget(&self, messages: u64) -> Result<(), Error> {
        use ctxstore_client::proto::{read_request::Select, ReadRequest, TokenBudget};
        let r = self
            .budget_client()?
            .read(ReadRequest {
                conversation: Some(budget_conversation(messages)),
                select: Some(Select::TokenBudget(TokenBudget {
                    max_tokens: STEP_BUDGET,
                    include_pinned: true,
                })),
                ..Default::default()
            })
            .await?;
        if r.messages.is_empty() {
            return Err(Error::Internal("a budget read returned no message".into()));
        }
        Ok(())
    }

    /// One page of conversations, as client `i`.
    async fn list(&self, i: usize) -> Result<(), Error> {
        match self {
            Target::Ctxstore(c) => c
                .list_conversations("bench", "", LIST_PAGE)
                .await
                .map(|_| ()),
            Target::Etcd(chans) => {
                let req = EtcdRange {
                    key: b"conv/".to_vec().into(),
                    range_end: b"conv0".to_vec().into(),
                    limit: LIST_PAGE.into(),
                    ..Default::default()
                };
                etcd_range(chans, i, req).await
            }
        }
    }

    async fn get(&self, i: usize, key: String, stale: bool) -> Result<(), Error> {
        match self {
            Target::Ctxstore(c) if stale => c.get_stale(key).await.map(|_| ()),
            Target::Ctxstore(c) => c.get(key).await.map(|_| ()),
            Target::Etcd(chans) => {
                let req = EtcdRange {
                    key: key.into_bytes().into(),
                    serializable: stale,
                    ..Default::default()
                };
                etcd_range(chans, i, req).await
            }
        }
    }
}

/// The conversation the `budget` workload reads: one per length, so lengths can be
/// measured one after another on one cluster.
fn budget_conversation(messages: u64) -> ctxstore_client::proto::ConversationRef {
    ctxstore_client::proto::ConversationRef {
        namespace: "bench".into(),
        id: format!("budget-{messages}"),
    }
}

/// Appends messages of `value` to the `budget` workload's conversation until it holds
/// `messages` (it may already: a second run reuses it).
async fn fill_conversation(
    target: &Target,
    messages: u64,
    value: &bytes::Bytes,
) -> Result<(), Error> {
    use ctxstore_client::proto::AppendRequest;
    let c = target.budget_client()?;
    let conversation = budget_conversation(messages);
    let mut have = c
        .conversation(conversation.clone())
        .await?
        .map_or(0, |i| i.message_count);
    if have < messages {
        eprintln!("bench: filling conversation bench/budget-{messages} ({have} messages so far)");
    }
    let content = String::from_utf8_lossy(value).into_owned();
    while have < messages {
        let n = (messages - have).min(FILL_BATCH);
        c.append(AppendRequest {
            conversation: Some(conversation.clone()),
            messages: (0..n)
                .map(|_| chat_message("assistant", content.clone()))
                .collect(),
            ..Default::default()
        })
        .await?;
        have += n;
    }
    Ok(())
}

/// A chat message with the usual estimate of a token per 4 bytes.
fn chat_message(role: &str, content: String) -> ctxstore_client::proto::ChatMessage {
    ctxstore_client::proto::ChatMessage {
        role: role.into(),
        token_count: content.len() as u64 / 4 + 1,
        content,
        ..Default::default()
    }
}

/// A `KV.Range` through the member client `i` uses.
async fn etcd_range(chans: &[Channel], i: usize, req: EtcdRange) -> Result<(), Error> {
    EtcdKv::new(chans[i % chans.len()].clone())
        .range(req)
        .await
        .map(|_| ())
        .map_err(|s| Error::Transport(format!("etcd range: {s}")))
}

pub(super) async fn run(
    client: Client,
    endpoints: &[String],
    a: BenchArgs,
    read: (String, String),
) -> Result<(), Error> {
    let workload = match a.workload.as_str() {
        "put" => Workload::Put,
        "get" | "ycsb-c" => Workload::Get,
        "get-stale" => Workload::GetStale,
        "mixed" | "ycsb-a" => Workload::Mix(0.5),
        "ycsb-b" => Workload::Mix(0.05),
        "agent-step" => Workload::AgentStep,
        "append" => Workload::Append,
        "load" => Workload::Load,
        "list" => Workload::List,
        "budget" => Workload::Budget,
        "queue" => Workload::Queue,
        other => {
            return Err(Error::invalid(
                "workload",
                format!(
                    "`{other}` is not one of put, get, get-stale, mixed, ycsb-a, ycsb-b, ycsb-c, append, agent-step, load, list, budget, queue"
                ),
            ))
        }
    };
    let target = Target::connect(&a, client.clone(), endpoints).await?;
    if a.clients == 0 || a.keys == 0 {
        return Err(Error::invalid(
            "clients",
            "clients and keys must be greater than 0",
        ));
    }
    // A bulk load measures disk use, so its values do not compress (RocksDB's LZ4
    // would shrink repeated bytes to almost nothing); other workloads keep the same
    // repeated byte the earlier results used.
    let value = if workload == Workload::Load {
        let mut v = vec![0u8; a.value_size];
        rand::Rng::fill(&mut rand::rng(), &mut v[..]);
        bytes::Bytes::from(v)
    } else {
        bytes::Bytes::from(vec![b'x'; a.value_size])
    };
    if workload == Workload::Budget {
        fill_conversation(&target, a.keys, &value).await?;
    }
    if !matches!(
        workload,
        Workload::Put
            | Workload::AgentStep
            | Workload::Append
            | Workload::Load
            | Workload::List
            | Workload::Budget
            | Workload::Queue
    ) {
        // Reads need something to read.
        let n = a.keys.min(10_000);
        eprintln!("bench: preloading {n} keys");
        let mut tasks = Vec::new();
        for c in 0..a.clients.min(64) as u64 {
            let (target, value) = (target.clone(), value.clone());
            let step = a.clients.min(64) as u64;
            tasks.push(tokio::spawn(async move {
                let mut k = c;
                while k < n {
                    target
                        .put(c as usize, format!("bench-{k:08}"), value.clone())
                        .await?;
                    k += step;
                }
                Ok::<_, Error>(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| Error::Internal(e.to_string()))??;
        }
    }
    let keys = if matches!(workload, Workload::Put | Workload::Load | Workload::Budget) {
        a.keys
    } else {
        a.keys.min(10_000)
    };
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let clients = a.clients as u64;
    for i in 0..a.clients {
        let (target, value) = (target.clone(), value.clone());
        let (measuring, stop, errors) = (measuring.clone(), stop.clone(), errors.clone());
        let completed = completed.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut step = 0u64;
            let mut next_key = i as u64;
            while !stop.load(Ordering::Relaxed) {
                if workload == Workload::Load && next_key >= keys {
                    break;
                }
                let t = Instant::now();
                let r = if workload == Workload::Load {
                    next_key += clients;
                    target
                        .put(i, format!("bench-{:08}", next_key - clients), value.clone())
                        .await
                } else if workload == Workload::AgentStep {
                    step += 1;
                    target.agent_step(i, step, value.clone()).await
                } else if workload == Workload::Append {
                    step += 1;
                    target.append(i, step, value.clone()).await
                } else if workload == Workload::List {
                    target.list(i).await
                } else if workload == Workload::Budget {
                    target.budget(keys).await
                } else if workload == Workload::Queue {
                    step += 1;
                    match target.queue_step(i, step, value.clone()).await {
                        // Only acked tasks count (and are timed).
                        Ok(false) => continue,
                        Ok(true) => Ok(()),
                        Err(e) => Err(e),
                    }
                } else {
                    let (k, is_put) = {
                        let mut rng = rand::rng();
                        let k = format!("bench-{:08}", rng.random_range(0..keys));
                        let is_put = match workload {
                            Workload::Put => true,
                            Workload::Mix(p) => rng.random_bool(p),
                            _ => false,
                        };
                        (k, is_put)
                    };
                    if is_put {
                        target.put(i, k, value.clone()).await
                    } else {
                        target.get(i, k, workload == Workload::GetStale).await
                    }
                };
                let us = t.elapsed().as_micros() as u64;
                if measuring.load(Ordering::Relaxed) {
                    match r {
                        Ok(()) => {
                            lat.push(us);
                            completed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            lat
        }));
    }
    tokio::time::sleep(a.warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let mut next = Duration::from_secs(1);
    let mut last_done = 0;
    while started.elapsed() < a.duration && !tasks.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() >= next {
            // Throughput of the last second, so stalls and drifts show while it runs.
            let done = completed.load(Ordering::Relaxed);
            eprint!(
                "\rbench: {:>3}s / {}s  {:>8} ops/s  errors {}  ",
                next.as_secs(),
                a.duration.as_secs(),
                done - last_done,
                errors.load(Ordering::Relaxed)
            );
            last_done = done;
            next += Duration::from_secs(1);
        }
    }
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    eprintln!();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| Error::Internal(e.to_string()))?);
    }
    all.sort_unstable();
    let pct = |p: f64| -> u64 {
        if all.is_empty() {
            return 0;
        }
        all[((all.len() as f64 * p) as usize).min(all.len() - 1)]
    };
    let ops = all.len() as f64 / elapsed.as_secs_f64();
    let report = Report {
        target: a.target.clone(),
        workload: a.workload.clone(),
        clients: a.clients,
        ops_per_sec: (ops * 10.0).round() / 10.0,
        p50_us: pct(0.50),
        p90_us: pct(0.90),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        errors: errors.load(Ordering::Relaxed),
        read: read.0,
        balance: read.1,
    };
    println!(
        "{} clients, {}: {:.0} ops/s  p50 {} us  p90 {} us  p99 {} us  p99.9 {} us  errors {}",
        report.clients,
        report.workload,
        report.ops_per_sec,
        report.p50_us,
        report.p90_us,
        report.p99_us,
        report.p999_us,
        report.errors
    );
    let loads = client.endpoint_loads();
    if a.target == "ctxstore" && !loads.is_empty() {
        // What the balancer saw of each replica (reads any replica may serve).
        eprintln!("read {} balanced by {}:", report.read, report.balance);
        for l in &loads {
            eprintln!(
                "  {:<22} requests {:>9}  errors {:>6}  outstanding {:>3}  peak-ewma {:>8.2} ms",
                l.addr,
                l.requests,
                l.errors,
                l.outstanding,
                l.ewma.as_secs_f64() * 1e3
            );
        }
    }
    if a.json {
        let line = serde_json::to_string(&report)
            .map_err(|e| Error::Internal(format!("encoding the report: {e}")))?;
        println!("{line}");
    }
    Ok(())
}
