//! Jepsen-style fault campaigns: concurrent clients record a history of gets, puts,
//! deletes and compare-and-swaps on a few colliding keys while a nemesis injects
//! faults; afterwards everything is healed, every replica of every shard must hold
//! the same data, and the whole history (with final reads) must be linearizable per
//! key (`ctxstore_check`). Alongside, a few clients append to and read two
//! conversations (agent context API); those histories must be consistent with one
//! append-only list each, numbered gap-free (`ctxstore_check::list`).
//!
//! CI runs a short campaign. A longer one (see `scripts/jepsen.sh`):
//! `JEPSEN_RUNS=10 JEPSEN_SECS=60 cargo nextest run --test jepsen --no-capture`.
//! `JEPSEN_SEED` replays a run (each run prints its seed).
//!
//! Two clusters are attacked:
//! - in-process (5 nodes, 4 shards): node crashes, crashes of a shard's leader,
//!   isolation of one node, majority/minority splits, "bridge" partitions (through
//!   the transport's `MessageFilter` seam, which cuts Raft traffic), leader transfers,
//!   whole-cluster restarts, and shard splits (also while a node is cut off); every
//!   other run serves reads from leader leases, the others run over mutual TLS with
//!   connections recycled every few seconds and node certificates rotated on disk
//!   (a half-written pair first) while the clients work;
//! - real `ctxd` processes (3 nodes, 4 shards): `kill -9` of a node or of a shard's
//!   leader, SIGSTOP/SIGCONT pauses longer than the election timeout, and shard
//!   splits; every other run (the first included) over mutual TLS with connections
//!   aged out every 3 s and the certificate files rotated under the processes;
//! - in-process with the placement driver on (5 nodes, up to 7, 4 shards): a node
//!   killed and kept down until the driver has replaced its replicas, nodes added
//!   with `join`, nodes drained and undrained, and splits.
//!
//! After healing, every replica of every shard must hold the same data (digests).
//!
//! The conversation clients read at the leader or, one in two, at any replica by
//! follower ReadIndex. The register clients read in three modes (client id mod 3): at
//! the leader, at any
//! replica by follower ReadIndex (both linearizable: their reads join the checked
//! history), and bounded-staleness (250 ms). Bounded reads are not linearizable, so
//! they are checked against the client's session instead: a key's version read is
//! never below the newest version this client wrote or read of it.

mod common;

use common::procs::{start_cluster_with, Ctxd};
use common::{
    assert_process_replicas_agree, assert_replicas_agree, meta_table, partition, set_filter,
    wait_for, TestCluster, WAIT,
};
use ctxstore::proto::{
    read_request::Select, AppendRequest, ChatMessage, ConversationRef, ReadRequest, SeqRange,
};
use ctxstore::Error;
use ctxstore_check::list::{check_list, AppendOutcome, ListOp, ListOpKind};
use ctxstore_check::{check_history, History, OpKind, Outcome, Output, Recorder, Verdict};
use ctxstore_client::{Client, ClientOptions, ReadMode};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Conversations the list clients append to and read.
const CONVERSATIONS: [&str; 2] = ["alpha", "beta"];
/// Clients appending to and reading conversations (besides the register clients).
const LIST_CLIENTS: u64 = 3;

/// Histories of the conversation clients: one list of operations per conversation,
/// timed in nanoseconds since the run started.
#[derive(Clone)]
struct ListRecorder {
    start: Instant,
    ops: Arc<Mutex<BTreeMap<String, Vec<ListOp>>>>,
}

impl ListRecorder {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            ops: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn record(&self, conv: &str, op: ListOp) {
        self.ops
            .lock()
            .expect("recorder lock")
            .entry(conv.to_string())
            .or_default()
            .push(op);
    }
}

fn conv_ref(name: &str) -> ConversationRef {
    ConversationRef {
        namespace: "jepsen".into(),
        id: name.into(),
    }
}

/// Reads a whole conversation in one page and records it; None if the read failed.
async fn read_list(client: &Client, conv: &str, rec: &ListRecorder) -> Option<()> {
    let invoke = rec.now();
    let r = client
        .read(ReadRequest {
            conversation: Some(conv_ref(conv)),
            select: Some(Select::Range(SeqRange::default())),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .ok()?;
    // One page only: a read is one snapshot (longer lists are not recorded).
    if r.next_seq != 0 {
        return None;
    }
    let items = r.messages.into_iter().map(|m| (m.seq, m.content)).collect();
    rec.record(
        conv,
        ListOp {
            invoke,
            complete: rec.now(),
            kind: ListOpKind::Read { items },
        },
    );
    Some(())
}

/// A conversation client: appends unique ids and reads whole conversations.
async fn list_loop(id: u64, client: Client, rec: ListRecorder, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id + 1000).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let conv = CONVERSATIONS[rng.random_range(0..CONVERSATIONS.len())];
        if rng.random_range(0..10) < 6 {
            n += 1;
            let item = format!("c{id}-{n}");
            let invoke = rec.now();
            let r = client
                .append(AppendRequest {
                    conversation: Some(conv_ref(conv)),
                    messages: vec![ChatMessage {
                        role: "user".into(),
                        content: item.clone(),
                        token_count: 1,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .await;
            let (outcome, complete) = match r {
                Ok(a) => (AppendOutcome::Ok(a.first_seq), rec.now()),
                // Timed out or lost with a leader: it may still be applied.
                Err(_) => (AppendOutcome::Unknown, u64::MAX),
            };
            rec.record(
                conv,
                ListOp {
                    invoke,
                    complete,
                    kind: ListOpKind::Append { id: item, outcome },
                },
            );
        } else {
            let _ = read_list(&client, conv, &rec).await;
        }
    }
}

/// Checks every conversation's history; on a violation writes it as JSON and fails.
/// Returns the operations checked.
fn judge_lists(rec: &ListRecorder, label: &str, seed: u64) -> usize {
    let all = rec.ops.lock().expect("recorder lock").clone();
    let mut checked = 0;
    for (conv, ops) in &all {
        let violations = check_list(ops);
        if !violations.is_empty() {
            let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("jepsen-{label}-{conv}-{seed}.json"));
            let saved = serde_json::to_vec_pretty(ops).map(|j| std::fs::write(&path, j));
            panic!(
                "{label} (seed {seed}): conversation {conv} is not one append-only list; history saved to {} ({saved:?}):\n{}",
                path.display(),
                violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n")
            );
        }
        // Control: dropping an element from the middle of the longest read is caught.
        let mut corrupt = ops.clone();
        let longest = corrupt
            .iter_mut()
            .filter_map(|op| match &mut op.kind {
                ListOpKind::Read { items } => Some(items),
                _ => None,
            })
            .max_by_key(|items| items.len());
        if let Some(items) = longest.filter(|i| i.len() >= 3) {
            items.remove(items.len() / 2);
            assert!(
                !check_list(&corrupt).is_empty(),
                "{label}: a corrupted list read went unnoticed"
            );
        }
        let appended = ops
            .iter()
            .filter(|op| {
                matches!(
                    op.kind,
                    ListOpKind::Append {
                        outcome: AppendOutcome::Ok(_),
                        ..
                    }
                )
            })
            .count();
        assert!(appended > 0, "{label}: no append to {conv} succeeded");
        checked += ops.len();
    }
    checked
}

/// Campaign size: runs × seconds, from the environment (defaults: CI's short run).
struct Settings {
    runs: u64,
    secs: u64,
    seed: u64,
    clients: u64,
    keys: usize,
}

impl Settings {
    fn from_env(default_runs: u64, default_secs: u64) -> Settings {
        let var = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let seed = var(
            "JEPSEN_SEED",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
        );
        Settings {
            runs: var("JEPSEN_RUNS", default_runs),
            secs: var("JEPSEN_SECS", default_secs),
            seed,
            clients: var("JEPSEN_CLIENTS", 10),
            keys: var("JEPSEN_KEYS", 6) as usize,
        }
    }
}

/// The operations one client runs until `stop`, recorded into `rec`.
/// The read mode of register client `id`.
fn read_mode_of(id: u64) -> ReadMode {
    match id % 3 {
        0 => ReadMode::Leader,
        1 => ReadMode::Follower,
        _ => ReadMode::Bounded(Duration::from_millis(250)),
    }
}

async fn client_loop(
    id: u64,
    client: Client,
    keys: Arc<Vec<String>>,
    rec: Recorder,
    stop: Arc<AtomicBool>,
    seed: u64,
    bounded_checked: Arc<AtomicU64>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut session = Session {
        bounded: matches!(read_mode_of(id), ReadMode::Bounded(_)),
        floor: BTreeMap::new(),
        checked: bounded_checked,
    };
    while !stop.load(Ordering::Relaxed) {
        let key = keys[rng.random_range(0..keys.len())].clone();
        let dice = rng.random_range(0..10);
        if dice < 4 {
            session.read(id, &client, &key, &rec).await;
        } else if dice < 7 {
            let value = rec.unique_value(id);
            let op = rec.invoke(id, key.as_bytes(), OpKind::Put(value.clone()));
            match client.put(key.clone(), value).await {
                Ok(w) => {
                    rec.ok(op, Output::Ack);
                    session.saw(&key, w.version);
                }
                Err(_) => {
                    rec.unknown(op);
                }
            };
        } else if dice < 9 {
            // Read the version, then swap on it. Written values are unique, so
            // "still at that version" is "still holds that value" (or still absent).
            let Some((expected, version)) = session.read(id, &client, &key, &rec).await else {
                continue;
            };
            let value = rec.unique_value(id);
            let kind = OpKind::Cas {
                expected,
                new: Some(value.clone()),
            };
            let op = rec.invoke(id, key.as_bytes(), kind);
            match client.compare_and_swap(key.clone(), version, value).await {
                Ok(w) => {
                    rec.ok(op, Output::Cas(true));
                    session.saw(&key, w.version);
                }
                Err(Error::VersionMismatch { .. }) => {
                    rec.ok(op, Output::Cas(false));
                }
                Err(_) => {
                    rec.unknown(op);
                }
            };
        } else {
            let op = rec.invoke(id, key.as_bytes(), OpKind::Delete);
            match client.delete(key.clone()).await {
                Ok(_) => rec.ok(op, Output::Ack),
                Err(_) => rec.unknown(op),
            };
        }
    }
}

/// What a register client knows of its own session: whether it reads in bounded
/// mode, and the newest version of each key it wrote or read.
struct Session {
    bounded: bool,
    floor: BTreeMap<String, u64>,
    /// Bounded reads checked (shared by the run's clients).
    checked: Arc<AtomicU64>,
}

impl Session {
    fn saw(&mut self, key: &str, version: u64) {
        let f = self.floor.entry(key.to_string()).or_default();
        *f = (*f).max(version);
    }

    /// A read in the client's mode: linearizable ones are recorded in the history;
    /// a bounded one is checked against the session (a key that exists is never
    /// older than this client has seen; absence is not checked, as deletes by
    /// others may explain it). Returns the value and version seen.
    async fn read(
        &mut self,
        id: u64,
        client: &Client,
        key: &str,
        rec: &Recorder,
    ) -> Option<(Option<Vec<u8>>, u64)> {
        if !self.bounded {
            return get(id, client, key, rec).await;
        }
        let kv = client.get(key.to_string()).await.ok()?;
        let floor = self.floor.get(key).copied().unwrap_or(0);
        if let Some(kv) = &kv {
            assert!(
                kv.version >= floor,
                "client {id}: a bounded read of {key} returned version {} below the {floor} this client had seen",
                kv.version
            );
            self.saw(key, kv.version);
        }
        self.checked.fetch_add(1, Ordering::Relaxed);
        Some((
            kv.as_ref().map(|kv| kv.value.to_vec()),
            kv.map_or(0, |kv| kv.version),
        ))
    }
}

/// A recorded linearizable get; returns the value and version seen.
async fn get(
    id: u64,
    client: &Client,
    key: &str,
    rec: &Recorder,
) -> Option<(Option<Vec<u8>>, u64)> {
    let op = rec.invoke(id, key.as_bytes(), OpKind::Get);
    match client.get(key.to_string()).await {
        Ok(kv) => {
            let seen = kv.as_ref().map(|kv| kv.value.to_vec());
            rec.ok(op, Output::Get(seen.clone()));
            Some((seen, kv.map_or(0, |kv| kv.version)))
        }
        // A failed read changed nothing.
        Err(_) => {
            rec.failed(op);
            None
        }
    }
}

/// Checks a history; on a violation writes it as JSON and fails.
fn judge(history: &History, label: &str, seed: u64) -> usize {
    let result = check_history(history);
    let mut undecided = 0;
    for k in &result.keys {
        if let Verdict::Unknown { reason } = &k.verdict {
            undecided += 1;
            eprintln!(
                "{label}: key {} undecided: {reason}",
                String::from_utf8_lossy(&k.key)
            );
        }
    }
    let bad: Vec<String> = result
        .violations()
        .map(|k| {
            let why = match &k.verdict {
                Verdict::NotLinearizable(v) => v.explanation.clone(),
                Verdict::Malformed { reason, .. } => reason.clone(),
                _ => String::new(),
            };
            format!("key {}: {why}", String::from_utf8_lossy(&k.key))
        })
        .collect();
    if !bad.is_empty() {
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("jepsen-{label}-{seed}.json"));
        let saved = history.to_json_file(&path);
        panic!(
            "{label} (seed {seed}): history is not linearizable; history saved to {} ({saved:?}):\n{}",
            path.display(),
            bad.join("\n")
        );
    }
    assert!(
        undecided * 2 <= result.keys.len(),
        "{label}: the checker decided too few keys ({undecided} of {} undecided)",
        result.keys.len()
    );
    // Control: the same history with one read changed to a value nobody wrote must be
    // judged not linearizable (the check above is not vacuous).
    let mut corrupt = history.clone();
    let read = corrupt.ops.iter_mut().rev().find(|op| {
        matches!(
            op.outcome,
            Outcome::Ok {
                output: Output::Get(_),
                ..
            }
        )
    });
    if let Some(op) = read {
        if let Outcome::Ok { output, .. } = &mut op.outcome {
            *output = Output::Get(Some(b"never-written".to_vec()));
        }
        assert!(
            !check_history(&corrupt).is_linearizable(),
            "{label}: a corrupted read went unnoticed"
        );
    }
    result.ops_checked
}

/// The recording clients of one run.
struct Workers {
    rec: Recorder,
    lists: ListRecorder,
    keys: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Bounded-staleness reads checked against their clients' sessions.
    bounded_checked: Arc<AtomicU64>,
}

impl Workers {
    /// Starts `s.clients` clients over `addrs`, each on its own connection.
    async fn start(
        s: &Settings,
        addrs: &[String],
        opts: &ClientOptions,
        prefix: &str,
        seed: u64,
    ) -> Workers {
        let keys: Arc<Vec<String>> =
            Arc::new((0..s.keys).map(|i| format!("{prefix}{i}")).collect());
        let rec = Recorder::new();
        let lists = ListRecorder::new();
        let stop = Arc::new(AtomicBool::new(false));
        let bounded_checked = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for c in 0..LIST_CLIENTS {
            // Odd list clients read conversations by follower ReadIndex (their reads
            // must fit the same linearizable list as the leader reads).
            let read_mode = if c % 2 == 1 {
                ReadMode::Follower
            } else {
                ReadMode::Leader
            };
            let opts = ClientOptions {
                read_mode,
                ..opts.clone()
            };
            let client = Client::connect_with(addrs, opts).await.expect("client");
            tasks.push(tokio::spawn(list_loop(
                c,
                client,
                lists.clone(),
                stop.clone(),
                seed,
            )));
        }
        for c in 0..s.clients {
            let opts = ClientOptions {
                read_mode: read_mode_of(c),
                ..opts.clone()
            };
            let client = Client::connect_with(addrs, opts).await.expect("client");
            tasks.push(tokio::spawn(client_loop(
                c,
                client,
                keys.clone(),
                rec.clone(),
                stop.clone(),
                seed,
                bounded_checked.clone(),
            )));
        }
        Workers {
            rec,
            lists,
            keys,
            stop,
            tasks,
            bounded_checked,
        }
    }

    /// Stops the clients and waits for their last operations.
    async fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            t.await.expect("client task");
        }
    }

    /// Judges the run's register and conversation histories; returns how many
    /// operations of each were checked.
    fn judge(&self, label: &str, seed: u64, run: u64) -> (usize, usize) {
        let history = self.rec.history();
        let n = judge(&history, label, seed);
        let l = judge_lists(&self.lists, label, seed);
        let b = self.bounded_checked.load(Ordering::Relaxed);
        eprintln!(
            "run {run}: {} ops recorded, {n} checked, linearizable; {l} conversation ops consistent; {b} bounded-staleness reads within their sessions",
            history.len()
        );
        assert!(b > 0, "{label}: no bounded-staleness read was checked");
        (n, l)
    }

    /// Reads every key once more (recorded) through `reader`, after healing: a lost
    /// acknowledged write shows up as a read the history cannot explain.
    async fn final_reads(&self, reader: &Client) {
        for k in self.keys.iter() {
            wait_for("a final read", WAIT, || get(999, reader, k, &self.rec)).await;
        }
        for conv in CONVERSATIONS {
            wait_for("a final conversation read", WAIT, || {
                read_list(reader, conv, &self.lists)
            })
            .await;
        }
    }
}

/// Prints a campaign's totals and checks that every fault kind was injected and
/// enough operations were checked.
fn report<F: std::fmt::Debug + Ord>(
    injected: &BTreeMap<F, usize>,
    kinds: &[F],
    checked: usize,
    list_checked: usize,
    runs: u64,
) {
    eprintln!("faults injected: {injected:?}; ops checked: {checked}; conversation ops checked: {list_checked}");
    for f in kinds {
        assert!(
            injected.get(f).is_some_and(|c| *c > 0),
            "{f:?} never injected"
        );
    }
    assert!(
        checked >= 100 * runs as usize,
        "too few operations checked: {checked}"
    );
}

/// The order faults come in: every kind once in a shuffled order, then random kinds
/// until the run's time is up.
struct Plan<T> {
    kinds: Vec<T>,
    first: Vec<T>,
    end: Instant,
}

impl<T: Copy> Plan<T> {
    fn new(kinds: &[T], rng: &mut StdRng, secs: u64) -> Plan<T> {
        let mut first = kinds.to_vec();
        first.shuffle(rng);
        first.reverse();
        Plan {
            kinds: kinds.to_vec(),
            first,
            end: Instant::now() + Duration::from_secs(secs),
        }
    }

    fn next(&mut self, rng: &mut StdRng) -> Option<T> {
        if let Some(k) = self.first.pop() {
            return Some(k);
        }
        (Instant::now() < self.end).then(|| self.kinds[rng.random_range(0..self.kinds.len())])
    }
}

/// Faults the in-process nemesis injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillNode,
    KillShardLeader,
    IsolateNode,
    MajorityMinority,
    Bridge,
    TransferLeader,
    RestartCluster,
    /// Split a random shard at a random hash inside it.
    Split,
    /// Split a random shard while one node is cut off (it learns of the split later,
    /// from its log or a snapshot).
    SplitDuringPartition,
    /// A graceful stop (drain: leaderships handed away, then shutdown) of a shard
    /// leader's node, and its restart.
    GracefulRestart,
    /// A backup of a random shard streamed while the other faults go on (it must not
    /// disturb the shard, and its file must arrive whole).
    Backup,
    /// (TLS runs) Every node's certificate replaced on disk by a new one of the same
    /// CA: the key first, so for a moment the pair does not match and the nodes must
    /// keep serving the old one; new connections (every few seconds, as connections
    /// age out) then use the new pair.
    RotateCerts,
}

const ALL_FAULTS: [Fault; 11] = [
    Fault::KillNode,
    Fault::KillShardLeader,
    Fault::IsolateNode,
    Fault::MajorityMinority,
    Fault::Bridge,
    Fault::TransferLeader,
    Fault::RestartCluster,
    Fault::Split,
    Fault::SplitDuringPartition,
    Fault::GracefulRestart,
    Fault::Backup,
];

/// Turns auth on (auth still off; the cluster serves): users root (role root),
/// worker (read-write on every kv key and conversation, no administration) and churn
/// (for the `ChurnTokens` nemesis). Returns the root and worker tokens.
async fn enable_auth(addrs: &[String], opts: &ClientOptions) -> (String, String) {
    use ctxstore_client::proto::{
        auth_change::Op, Access, AuthChange, Permission, ResourceKind, RolePermission, UserRole,
    };
    // An auth change waits for every up node (up to 5 s on the server).
    let admin = &Client::connect_with(
        addrs,
        ClientOptions {
            timeout: Duration::from_secs(30),
            ..opts.clone()
        },
    )
    .await
    .expect("client");
    // A change retried after a lost answer (a meta election) applies once: its
    // request id says so.
    let change = |op: Op| async move {
        admin
            .auth_change(AuthChange { op: Some(op) })
            .await
            .expect("auth change")
    };
    let grant_role = |user: &str, role: &str| {
        Op::GrantRole(UserRole {
            user: user.into(),
            role: role.into(),
        })
    };
    change(Op::AddUser("root".into())).await;
    change(grant_role("root", "root")).await;
    change(Op::AddRole("jepsen".into())).await;
    for kind in [ResourceKind::Kv, ResourceKind::Conversation] {
        change(Op::GrantPermission(RolePermission {
            role: "jepsen".into(),
            permission: Some(Permission {
                kind: kind as i32,
                prefix: Default::default(),
                access: Access::Readwrite as i32,
            }),
        }))
        .await;
    }
    change(Op::AddUser("worker".into())).await;
    change(grant_role("worker", "jepsen")).await;
    change(Op::AddUser("churn".into())).await;
    let root = change(Op::CreateToken("root".into())).await.token;
    let worker = change(Op::CreateToken("worker".into())).await.token;
    change(Op::SetEnabled(true)).await;
    (root, worker)
}

/// The `ChurnTokens` nemesis: a new token for user churn, then the previous one
/// (if any) revoked.
async fn churn_tokens(admin: &Client, last: &mut Option<String>) {
    use ctxstore_client::proto::{auth_change::Op, AuthChange};
    match admin
        .auth_change(AuthChange {
            op: Some(Op::CreateToken("churn".into())),
        })
        .await
    {
        Ok(r) => {
            let id = r.token[4..20].to_string();
            if let Some(old) = last.replace(id) {
                match admin
                    .auth_change(AuthChange {
                        op: Some(Op::RevokeToken(old.clone())),
                    })
                    .await
                {
                    Ok(r) => eprintln!(
                        "  nemesis: token churn, revision {} (behind: {:?})",
                        r.revision, r.nodes_behind
                    ),
                    Err(e) => eprintln!("  nemesis: revoking token {old} failed: {e}"),
                }
            }
        }
        Err(e) => eprintln!("  nemesis: making a token failed: {e}"),
    }
}

/// Splits a random data shard at a random hash strictly inside its arcs. Errors (no
/// leader during a fault, a split already in progress) are part of the chaos.
async fn split_random_shard(client: &Client, rng: &mut StdRng) {
    let routes = client.routing().await;
    let data: Vec<_> = routes.iter().filter(|(d, _)| d.shard_id != 0).collect();
    if data.is_empty() {
        return;
    }
    let (d, _) = data[rng.random_range(0..data.len())];
    let arcs = ctxstore::ranges::arcs_of(d);
    let Some(&(lo, hi)) = arcs.get(rng.random_range(0..arcs.len().max(1))) else {
        return;
    };
    if hi <= lo {
        return;
    }
    let at = lo + 1 + rng.random_range(0..hi - lo);
    match client.split_shard(d.shard_id, Some(at)).await {
        Ok((_, c)) => eprintln!(
            "  nemesis: split shard {} -> new shard {}",
            d.shard_id, c.shard_id
        ),
        Err(e) => eprintln!("  nemesis: split of shard {} refused: {e}", d.shard_id),
    }
}

/// Streams a backup of `shard`: the bytes received and the size its last message
/// announced.
async fn backup_bytes(client: &Client, shard: u64) -> ctxstore_client::Result<(u64, u64)> {
    let mut stream = client.backup_shard(shard).await?;
    let mut got = 0;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(ctxstore_client::Error::from)?
    {
        if let Some(info) = chunk.done {
            return Ok((got, info.size));
        }
        got += chunk.data.len() as u64;
    }
    Err(ctxstore_client::Error::Transport(
        "backup stream ended early".into(),
    ))
}

/// Node index leading `shard`, if any node says so.
async fn leader_of(cluster: &TestCluster, shard: u64) -> Option<usize> {
    for (i, n) in cluster.nodes.iter().enumerate() {
        let Some(n) = n else { continue };
        if common::shard(&n.status().await, shard).is_some_and(|s| s.role == "leader") {
            return Some(i);
        }
    }
    None
}

/// The certificates of a TLS run: the CA that signs the rotated node certificates,
/// and the files the nodes read.
struct RunTls {
    ca: ctxstore::pki::Ca,
    files: ctxstore::pki::DevPki,
    _dir: tempfile::TempDir,
}

impl RunTls {
    fn new() -> RunTls {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, ca) = ctxstore::pki::DevPki::write_with_ca(dir.path()).expect("certificates");
        RunTls {
            ca,
            files,
            _dir: dir,
        }
    }

    fn secure(&self, c: &mut ctxstore::NodeConfig) {
        c.security = ctxstore::config::SecurityConfig {
            // Connections age out every few seconds, so reconnects (with whatever
            // files are on disk) happen all through the run.
            max_connection_age: Some(Duration::from_secs(3)),
            ..self.files.node_security()
        };
    }

    /// `ctxd` flags for the same setup, with a config file (in `dir`) for the
    /// connection age, which has no flag.
    fn flags(&self, dir: &std::path::Path) -> Vec<String> {
        let file = dir.join("security.toml");
        std::fs::write(&file, "[security]\nmax-connection-age = \"3s\"\n").expect("write");
        let p = |p: &std::path::Path| p.display().to_string();
        vec![
            "--config".into(),
            p(&file),
            "--ca-path".into(),
            p(&self.files.ca),
            "--cert-path".into(),
            p(&self.files.node_cert),
            "--key-path".into(),
            p(&self.files.node_key),
            "--peer-cert-allowed-cn".into(),
            ctxstore::pki::DEV_NODE_CN.into(),
        ]
    }

    fn client(&self) -> ctxstore_client::ClientTls {
        self.files.client()
    }

    /// Writes a new node certificate of the same CA: key first, then certificate,
    /// each replaced in one step.
    fn rotate(&self) {
        let next = self
            .ca
            .issue(ctxstore::pki::DEV_NODE_CN, true)
            .expect("node cert");
        for (path, pem) in [
            (&self.files.node_key, next.key_pem()),
            (&self.files.node_cert, next.cert_pem()),
        ] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, pem).expect("write");
            std::fs::rename(&tmp, path).expect("rename");
        }
    }
}

/// Injects one fault, holds it, and heals it.
async fn inject(
    cluster: &mut TestCluster,
    fault: Fault,
    rng: &mut StdRng,
    client: &Client,
    tls: Option<&RunTls>,
) {
    let n = cluster.nodes.len();
    let hold = Duration::from_millis(rng.random_range(400..1500));
    let mut ids: Vec<u64> = (1..=n as u64).collect();
    ids.shuffle(rng);
    match fault {
        Fault::KillNode | Fault::KillShardLeader => {
            let victim = if fault == Fault::KillShardLeader {
                let shard = rng.random_range(1..=4);
                leader_of(cluster, shard).await
            } else {
                None
            }
            .unwrap_or((ids[0] - 1) as usize);
            cluster.stop(victim).await;
            tokio::time::sleep(hold).await;
            cluster.restart(victim).await;
        }
        Fault::IsolateNode => {
            let rest: Vec<u64> = ids[1..].to_vec();
            set_filter(
                cluster,
                Some(Arc::new(partition(&[vec![ids[0]], rest], None))),
            );
            tokio::time::sleep(hold).await;
            set_filter(cluster, None);
        }
        Fault::MajorityMinority => {
            let minority = ids[..n / 2].to_vec();
            let majority = ids[n / 2..].to_vec();
            set_filter(
                cluster,
                Some(Arc::new(partition(&[minority, majority], None))),
            );
            tokio::time::sleep(hold).await;
            set_filter(cluster, None);
        }
        Fault::Bridge => {
            // Two halves that both see the bridge node, but not each other.
            let bridge = ids[0];
            let half = (n - 1) / 2;
            let a = ids[1..=half].to_vec();
            let b = ids[half + 1..].to_vec();
            set_filter(
                cluster,
                Some(Arc::new(partition(&[a, b, vec![bridge]], Some(bridge)))),
            );
            tokio::time::sleep(hold).await;
            set_filter(cluster, None);
        }
        Fault::GracefulRestart => {
            let shard = rng.random_range(1..=4);
            let victim = leader_of(cluster, shard)
                .await
                .unwrap_or((ids[0] - 1) as usize);
            if let Some(node) = &cluster.nodes[victim] {
                let r = node.drain(Duration::from_secs(5)).await;
                eprintln!(
                    "  nemesis: drained node {}: led {:?}, still led {:?}",
                    victim + 1,
                    r.led,
                    r.still_led
                );
            }
            cluster.stop(victim).await;
            tokio::time::sleep(hold).await;
            cluster.restart(victim).await;
        }
        Fault::Backup => {
            let shard = rng.random_range(0..=4);
            match backup_bytes(client, shard).await {
                Ok((got, size)) => {
                    assert_eq!(got, size, "shard {shard}: backup stream lost bytes");
                    eprintln!("  nemesis: backed up shard {shard}: {size} bytes");
                }
                // No leader during a fault, a lost connection: part of the chaos.
                Err(e) => eprintln!("  nemesis: backup of shard {shard} failed: {e}"),
            }
            tokio::time::sleep(hold).await;
        }
        Fault::TransferLeader => {
            let shard = rng.random_range(1..=4);
            // Any replica; an error (not hosted, no leader) is part of the chaos.
            let _ = client.transfer_shard_leader(shard, ids[0]).await;
            tokio::time::sleep(hold).await;
        }
        Fault::Split => {
            split_random_shard(client, rng).await;
            tokio::time::sleep(hold).await;
        }
        Fault::SplitDuringPartition => {
            let rest: Vec<u64> = ids[1..].to_vec();
            set_filter(
                cluster,
                Some(Arc::new(partition(&[vec![ids[0]], rest], None))),
            );
            split_random_shard(client, rng).await;
            tokio::time::sleep(hold).await;
            set_filter(cluster, None);
        }
        Fault::RotateCerts => {
            let tls = tls.expect("RotateCerts is only planned in TLS runs");
            tls.rotate();
            eprintln!("  nemesis: node certificates rotated");
            tokio::time::sleep(hold).await;
        }
        Fault::RestartCluster => {
            for i in 0..n {
                cluster.stop(i).await;
            }
            let restarts = (0..n).map(|i| {
                let cfg = cluster.configs[i].clone();
                async move {
                    let l = tokio::net::TcpListener::bind(&cfg.listen)
                        .await
                        .expect("rebind");
                    ctxstore::Node::start_with_listener(cfg, l)
                        .await
                        .expect("restart")
                }
            });
            let nodes = futures::future::join_all(restarts).await;
            for (i, node) in nodes.into_iter().enumerate() {
                cluster.nodes[i] = Some(node);
            }
        }
    }
}

/// Waits until every data shard's replica on every running node hibernates.
async fn wait_all_hibernating(cluster: &TestCluster) {
    wait_for("every data shard to hibernate", WAIT, || async {
        for n in cluster.nodes.iter().flatten() {
            let awake =
                n.status().await.shards.into_iter().any(|s| {
                    s.descriptor.as_ref().is_some_and(|d| d.shard_id != 0) && !s.hibernating
                });
            if awake {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// In-process campaign: all fault kinds, 5 nodes, 4 shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_campaign_is_linearizable() {
    let s = Settings::from_env(2, 12);
    let mut injected: BTreeMap<Fault, usize> = BTreeMap::new();
    let mut checked = 0;
    let mut list_checked = 0;
    for run in 0..s.runs {
        let seed = s.seed.wrapping_add(run);
        // Every other run serves linearizable reads from leader leases; the others
        // run over mutual TLS, with certificate rotations among the faults, and let
        // idle shards hibernate (which leases rule out).
        let lease_reads = run % 2 == 1;
        let tls = (!lease_reads).then(RunTls::new);
        let hibernate = !lease_reads;
        eprintln!(
            "jepsen in-process run {run}: seed {seed} ({} s, lease reads: {lease_reads}, TLS: {}, hibernation: {hibernate})",
            s.secs,
            tls.is_some()
        );
        let mut rng = StdRng::seed_from_u64(seed);
        let mut cluster = TestCluster::start_with(5, |c| {
            c.initial_shards = 4;
            c.raft.lease_reads = lease_reads;
            c.raft.hibernate = hibernate;
            if let Some(t) = &tls {
                t.secure(c);
            }
        })
        .await;
        cluster.wait_all_leaders().await;
        let opts = ClientOptions {
            timeout: Duration::from_secs(2),
            tls: tls.as_ref().map(RunTls::client),
            ..Default::default()
        };
        let faults: Vec<Fault> = match &tls {
            Some(_) => ALL_FAULTS
                .iter()
                .copied()
                .chain([Fault::RotateCerts])
                .collect(),
            None => ALL_FAULTS.to_vec(),
        };
        let mut workers = Workers::start(&s, &cluster.addrs(), &opts, "jk", seed).await;
        let admin = Client::connect_with(&cluster.addrs(), opts.clone())
            .await
            .expect("client");
        let mut plan = Plan::new(&faults, &mut rng, s.secs);
        while let Some(fault) = plan.next(&mut rng) {
            inject(&mut cluster, fault, &mut rng, &admin, tls.as_ref()).await;
            *injected.entry(fault).or_default() += 1;
            // Let the cluster serve between faults.
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..800))).await;
        }
        workers.stop().await;
        set_filter(&cluster, None);
        cluster.wait_all_leaders().await;
        if hibernate {
            // The final reads wake shards that slept after the faults.
            wait_all_hibernating(&cluster).await;
        }
        workers.final_reads(&admin).await;
        assert_replicas_agree(&cluster).await;
        let (n, l) = workers.judge("in-process", seed, run);
        checked += n;
        list_checked += l;
        cluster.shutdown().await;
    }
    let mut kinds = ALL_FAULTS.to_vec();
    if s.runs > 0 {
        // Run 0 is always a TLS run.
        kinds.push(Fault::RotateCerts);
    }
    report(&injected, &kinds, checked, list_checked, s.runs);
}

/// Faults the process nemesis injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ProcFault {
    Kill9Node,
    Kill9ShardLeader,
    Pause,
    /// Split a random shard at a random hash inside it.
    Split,
    /// SIGTERM a shard leader's process (a graceful stop: it hands its leaderships
    /// away and exits 0), then start it again.
    TermShardLeader,
    /// (TLS runs) The node certificate files replaced under the running processes.
    RotateCerts,
    /// (TLS runs, auth on) A token made for a spare user and the previous one
    /// revoked: a new auth revision travels to every node among the other faults,
    /// while the workers' own token must keep working.
    ChurnTokens,
}

const PROC_FAULTS: [ProcFault; 5] = [
    ProcFault::Kill9Node,
    ProcFault::Kill9ShardLeader,
    ProcFault::Pause,
    ProcFault::Split,
    ProcFault::TermShardLeader,
];

async fn proc_leader_of(
    client: &Client,
    addrs: &[String],
    procs: &[Ctxd],
    shard: u64,
) -> Option<usize> {
    for (i, a) in addrs.iter().enumerate() {
        if !procs[i].is_running() {
            continue;
        }
        if let Ok(s) = client.node_status(a).await {
            if common::shard(&s, shard).is_some_and(|s| s.role == "leader") {
                return Some(i);
            }
        }
    }
    None
}

/// Process campaign: `kill -9` and SIGSTOP/SIGCONT of real `ctxd` processes
/// (default timing: 100 ms ticks, elections after 1–2 s; pauses last 2.5–3.5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_campaign_is_linearizable() {
    let s = Settings::from_env(1, 15);
    let mut injected: BTreeMap<ProcFault, usize> = BTreeMap::new();
    let mut checked = 0;
    let mut list_checked = 0;
    for run in 0..s.runs {
        let seed = s.seed.wrapping_add(run);
        // Every other run (the first included) runs over mutual TLS with auth on,
        // with the certificate files rotated and tokens churned under the processes
        // among the faults, and lets idle shards hibernate.
        let tls = (run % 2 == 0).then(RunTls::new);
        eprintln!(
            "jepsen process run {run}: seed {seed} ({} s, TLS and hibernation: {})",
            s.secs,
            tls.is_some()
        );
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut extra: Vec<String> = vec!["--initial-shards".into(), "4".into()];
        if let Some(t) = &tls {
            extra.extend(t.flags(dir.path()));
            extra.push("--hibernate".into());
        }
        let (mut procs, addrs) = start_cluster_with(dir.path(), 3, false, |_| extra.clone());
        let mut opts = ClientOptions {
            timeout: Duration::from_secs(3),
            tls: tls.as_ref().map(RunTls::client),
            ..Default::default()
        };
        let faults: Vec<ProcFault> = match &tls {
            Some(_) => PROC_FAULTS
                .iter()
                .copied()
                .chain([ProcFault::RotateCerts, ProcFault::ChurnTokens])
                .collect(),
            None => PROC_FAULTS.to_vec(),
        };
        let mut admin = Client::connect_with(&addrs, opts.clone())
            .await
            .expect("client");
        wait_for("every shard to have a leader", WAIT, || async {
            for shard in 0..=4 {
                proc_leader_of(&admin, &addrs, &procs, shard).await?;
            }
            Some(())
        })
        .await;
        // The checker reads as root; the workers with a token that may only read and
        // write data.
        let mut checker_opts = opts.clone();
        if tls.is_some() {
            let (root, worker) = enable_auth(&addrs, &opts).await;
            checker_opts.token = Some(root);
            opts.token = Some(worker);
            admin = Client::connect_with(&addrs, checker_opts.clone())
                .await
                .expect("client");
        }
        let mut churned = None;
        let mut workers = Workers::start(&s, &addrs, &opts, "pk", seed).await;
        let mut plan = Plan::new(&faults, &mut rng, s.secs);
        while let Some(fault) = plan.next(&mut rng) {
            let random = rng.random_range(0..procs.len());
            match fault {
                ProcFault::Kill9Node | ProcFault::Kill9ShardLeader => {
                    let victim = if fault == ProcFault::Kill9ShardLeader {
                        let shard = rng.random_range(1..=4);
                        proc_leader_of(&admin, &addrs, &procs, shard).await
                    } else {
                        None
                    }
                    .unwrap_or(random);
                    procs[victim].kill9();
                    tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
                    procs[victim].restart();
                }
                ProcFault::Pause => {
                    procs[random].pause();
                    tokio::time::sleep(Duration::from_millis(rng.random_range(2500..3500))).await;
                    procs[random].resume();
                }
                ProcFault::Split => split_random_shard(&admin, &mut rng).await,
                ProcFault::TermShardLeader => {
                    let shard = rng.random_range(1..=4);
                    let victim = proc_leader_of(&admin, &addrs, &procs, shard)
                        .await
                        .unwrap_or(random);
                    let exit = procs[victim].terminate(Duration::from_secs(30)).await;
                    assert!(
                        exit.success(),
                        "node {} exited with {exit} on SIGTERM",
                        victim + 1
                    );
                    tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
                    procs[victim].restart();
                }
                ProcFault::RotateCerts => {
                    tls.as_ref()
                        .expect("RotateCerts is only planned in TLS runs")
                        .rotate();
                    eprintln!("  nemesis: node certificates rotated");
                }
                ProcFault::ChurnTokens => churn_tokens(&admin, &mut churned).await,
            }
            *injected.entry(fault).or_default() += 1;
            tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
        }
        workers.stop().await;
        let checker = Client::connect_with(&addrs, checker_opts.clone())
            .await
            .expect("client");
        workers.final_reads(&checker).await;
        assert_process_replicas_agree(&checker, &addrs).await;
        let (n, l) = workers.judge("process", seed, run);
        checked += n;
        list_checked += l;
        drop(procs);
    }
    let mut kinds = PROC_FAULTS.to_vec();
    if s.runs > 0 {
        // Run 0 is always a TLS run, with auth on.
        kinds.push(ProcFault::RotateCerts);
        kinds.push(ProcFault::ChurnTokens);
    }
    report(&injected, &kinds, checked, list_checked, s.runs);
}

/// Faults of the placement-driver campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PdFault {
    /// Stop a node and keep it down until the driver has replaced every replica it
    /// hosted; then restart it (it destroys its stale replicas and is filled again).
    KillAndRepair,
    /// Start a new node with `join` and `peers`; the driver fills it.
    AddNode,
    /// Drain a node until it holds no replica and no leader, then undrain it.
    DrainNode,
    /// Split a random shard (the driver then places and balances more shards).
    Split,
}

const PD_FAULTS: [PdFault; 4] = [
    PdFault::KillAndRepair,
    PdFault::AddNode,
    PdFault::DrainNode,
    PdFault::Split,
];

/// How long a PD nemesis waits for the driver to finish its work.
const PD_WAIT: Duration = Duration::from_secs(60);

/// Whether every shard has three voters, no learner, and neither a replica nor the
/// leadership on `not_on`.
fn replicated_off(t: &ctxstore::proto::RoutingTable, not_on: u64) -> bool {
    common::fully_replicated(t, &[not_on])
        && t.shards
            .iter()
            .all(|s| s.leader.as_ref().is_none_or(|l| l.node_id != not_on))
}

/// Waits until the meta leader's table satisfies `done`; on a timeout, fails showing
/// the last table seen (which shard is stuck, and how).
async fn wait_for_driver(
    what: &str,
    client: &Client,
    done: impl Fn(&ctxstore::proto::RoutingTable) -> bool,
) {
    common::wait_for_explained(what, PD_WAIT, || async {
        match meta_table(client).await {
            Some(t) if done(&t) => Ok(()),
            Some(t) => Err(format!("the table\n{}", show_table(&t))),
            None => Err("no table from the meta leader".into()),
        }
    })
    .await
}

/// One line per shard: id, versions, replicas (node and role), leader.
fn show_table(t: &ctxstore::proto::RoutingTable) -> String {
    let mut out = format!("  routing version {}\n", t.routing_version);
    for n in &t.nodes {
        out += &format!(
            "  node {} state {} admin {} last seen {} ms ago\n",
            n.node_id, n.state, n.admin, n.last_seen_ms_ago
        );
    }
    for s in &t.shards {
        let Some(d) = &s.descriptor else { continue };
        let replicas: Vec<String> = d
            .replicas
            .iter()
            .map(|r| format!("{}:{}", r.node_id, r.role))
            .collect();
        out += &format!(
            "  shard {} conf_ver {} ring_ver {} replicas [{}] leader {:?}\n",
            d.shard_id,
            d.conf_ver,
            d.ring_ver,
            replicas.join(" "),
            s.leader.as_ref().map(|l| l.node_id)
        );
    }
    out
}

/// Injects one placement-driver fault and waits for the driver to deal with it.
async fn inject_pd(cluster: &mut TestCluster, fault: PdFault, rng: &mut StdRng, client: &Client) {
    let n = cluster.nodes.len();
    match fault {
        PdFault::KillAndRepair => {
            let victim = rng.random_range(0..n);
            let id = victim as u64 + 1;
            cluster.stop(victim).await;
            let started = Instant::now();
            eprintln!("  nemesis: node {id} killed");
            wait_for_driver(
                "the driver to replace a dead node's replicas",
                client,
                |t| replicated_off(t, id),
            )
            .await;
            eprintln!(
                "  nemesis: node {id}'s replicas replaced in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            cluster.restart(victim).await;
        }
        PdFault::AddNode => {
            if n >= 7 {
                return;
            }
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let mut cfg = cluster.configs[0].clone();
            cfg.node_id = n as u64 + 1;
            cfg.listen = listener.local_addr().expect("addr").to_string();
            cfg.data_dir = cluster.dir.path().join(format!("node{}", n + 1));
            cfg.join = true;
            cfg.initial_cluster = String::new();
            cfg.peers = cluster.addrs().join(",");
            let node = ctxstore::Node::start_with_listener(cfg.clone(), listener)
                .await
                .expect("a new node starts");
            cluster.nodes.push(Some(node));
            cluster.configs.push(cfg);
            eprintln!("  nemesis: node {} added", n + 1);
        }
        PdFault::DrainNode => {
            let id = rng.random_range(1..=n as u64);
            match client
                .set_node_admin(id, ctxstore::proto::NodeAdmin::Draining)
                .await
            {
                Ok(_) => {
                    let started = Instant::now();
                    wait_for_driver("the driver to empty a draining node", client, |t| {
                        replicated_off(t, id)
                    })
                    .await;
                    eprintln!(
                        "  nemesis: node {id} drained in {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                    client
                        .set_node_admin(id, ctxstore::proto::NodeAdmin::Serving)
                        .await
                        .expect("undrain");
                }
                // Refused (too few serving nodes would be left, or a node just added
                // has not reached the meta shard yet): nothing changed.
                Err(e) => eprintln!("  nemesis: drain of node {id} refused: {e}"),
            }
        }
        PdFault::Split => split_random_shard(client, rng).await,
    }
}

/// Placement-driver campaign: 5 in-process nodes (up to 7 as nodes are added), 4
/// shards, the driver on with a node down after 1.5 s; nodes are killed and repaired,
/// added, drained, and shards split, while the recorded clients run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_driver_campaign_is_linearizable() {
    let s = Settings::from_env(1, 15);
    let mut injected: BTreeMap<PdFault, usize> = BTreeMap::new();
    let mut checked = 0;
    let mut list_checked = 0;
    for run in 0..s.runs {
        let seed = s.seed.wrapping_add(run);
        eprintln!(
            "jepsen placement-driver run {run}: seed {seed} ({} s)",
            s.secs
        );
        let mut rng = StdRng::seed_from_u64(seed);
        let mut cluster = TestCluster::start_with(5, |c| {
            c.initial_shards = 4;
            c.pd.enabled = true;
            c.pd.node_down_after = Duration::from_millis(1500);
            c.pd.interval = Duration::from_millis(200);
            c.pd.min_free_bytes = 0;
        })
        .await;
        cluster.wait_all_leaders().await;
        let opts = ClientOptions {
            timeout: Duration::from_secs(3),
            ..Default::default()
        };
        let mut workers = Workers::start(&s, &cluster.addrs(), &opts, "dk", seed).await;
        let admin = Client::connect_with(&cluster.addrs(), opts.clone())
            .await
            .expect("client");
        let mut plan = Plan::new(&PD_FAULTS, &mut rng, s.secs);
        while let Some(fault) = plan.next(&mut rng) {
            inject_pd(&mut cluster, fault, &mut rng, &admin).await;
            *injected.entry(fault).or_default() += 1;
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..800))).await;
        }
        workers.stop().await;
        cluster.wait_all_leaders().await;
        let reader = cluster.client().await;
        workers.final_reads(&reader).await;
        // The driver settles (stale replicas destroyed, moves finished) before the
        // replicas are compared.
        wait_for("the driver to settle", PD_WAIT, || async {
            let pd = reader.pd_status().await.ok()?;
            let t = meta_table(&reader).await?;
            (pd.operators.is_empty() && replicated_off(&t, 0)).then_some(())
        })
        .await;
        assert_replicas_agree(&cluster).await;
        let (n, l) = workers.judge("placement-driver", seed, run);
        checked += n;
        list_checked += l;
        cluster.shutdown().await;
    }
    report(&injected, &PD_FAULTS, checked, list_checked, s.runs);
}
