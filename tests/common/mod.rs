//! The shared in-process cluster harness: N real nodes on loopback ports chosen by the
//! OS, each with its own temp data dir, fast Raft ticks, and helpers that wait for
//! conditions with a deadline (never fixed sleeps).

#![allow(dead_code)]

pub mod procs;

use ctxstore::proto::{ReplicaRole, RoutingTable, ShardStatus, StatusResponse};
use ctxstore::Node;
use ctxstore::NodeConfig;
use ctxstore::{MessageFilter, NodeId};
use ctxstore_client::{Client, ClientOptions};
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Drops all raft traffic to and from one node (install it on every node, or on all
/// but that one: each node filters both directions of its own traffic).
pub struct Isolate(pub ctxstore::NodeId);

impl ctxstore::MessageFilter for Isolate {
    fn allow(&self, from: ctxstore::NodeId, to: ctxstore::NodeId) -> bool {
        from != self.0 && to != self.0
    }
}

/// A GET over plain HTTP/1.1; the status code and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
}

/// [`http_get`], or why there was no answer (nothing listening, a cut connection).
pub async fn try_http_get(addr: std::net::SocketAddr, path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP response: {raw:?}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status code in {head:?}"))?;
    Ok((code, body.to_string()))
}

/// Default deadline for waits in tests.
pub const WAIT: Duration = Duration::from_secs(30);

/// Waits until `f` returns `Some`, polling every 20 ms, or panics at the deadline.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_explained(what, within, || {
        let attempt = f();
        async move { attempt.await.ok_or_else(|| "not yet".to_string()) }
    })
    .await
}

/// Like `wait_for`, but `f` says why the condition does not hold yet, and a timeout
/// shows the last reason (which state the cluster was stuck in).
pub async fn wait_for_explained<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let why = match f().await {
            Ok(v) => return v,
            Err(why) => why,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}; last seen: {why}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A cluster of in-process nodes.
pub struct TestCluster {
    /// Running nodes by index (None = stopped).
    pub nodes: Vec<Option<Node>>,
    /// Each node's config (restart reuses it).
    pub configs: Vec<NodeConfig>,
    /// Holds every data dir; removed on drop.
    pub dir: tempfile::TempDir,
}

/// A node's replica of `shard`, if it hosts one.
pub fn shard(s: &StatusResponse, shard: u64) -> Option<&ShardStatus> {
    s.shards
        .iter()
        .find(|x| x.descriptor.as_ref().map(|d| d.shard_id) == Some(shard))
}

/// A node's replica of shard 1 (the data shard of one-shard clusters).
pub fn shard1(s: &StatusResponse) -> &ShardStatus {
    shard(s, 1).expect("the node hosts shard 1")
}

/// Test-speed Raft settings.
pub fn fast_config(cfg: &mut NodeConfig) {
    cfg.raft.tick_interval = Duration::from_millis(30);
    cfg.raft.election_ticks = 10;
    cfg.raft.heartbeat_ticks = 2;
    // Tests that count shards must not see automatic splits; the split tests turn
    // them on.
    cfg.split.enabled = false;
    // Tests that place replicas by hand must not see the placement driver move them;
    // the driver's tests turn it on.
    cfg.pd.enabled = false;
}

impl TestCluster {
    /// Starts `n` nodes and waits for a leader.
    pub async fn start(n: usize) -> TestCluster {
        Self::start_with(n, |_| {}).await
    }

    /// Starts `n` nodes with `tweak` applied to every config.
    pub async fn start_with(n: usize, tweak: impl Fn(&mut NodeConfig)) -> TestCluster {
        init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
        }
        let addrs: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().expect("addr").to_string())
            .collect();
        let initial = ctxstore::config::format_initial_cluster(&addrs);
        let mut configs = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let mut cfg = NodeConfig {
                node_id: i as u64 + 1,
                listen: addr.clone(),
                data_dir: dir.path().join(format!("node{}", i + 1)),
                initial_cluster: initial.clone(),
                ..Default::default()
            };
            fast_config(&mut cfg);
            tweak(&mut cfg);
            configs.push(cfg);
        }
        let starts =
            listeners
                .into_iter()
                .zip(configs.iter().cloned())
                .map(|(l, cfg)| async move {
                    Node::start_with_listener(cfg, l)
                        .await
                        .expect("node starts")
                });
        let nodes = futures::future::join_all(starts)
            .await
            .into_iter()
            .map(Some)
            .collect();
        let cluster = TestCluster {
            nodes,
            configs,
            dir,
        };
        cluster.wait_leader().await;
        cluster
    }

    /// Every node's address.
    pub fn addrs(&self) -> Vec<String> {
        self.configs.iter().map(|c| c.listen.clone()).collect()
    }

    /// A client over every node.
    pub async fn client(&self) -> Client {
        Client::connect(&self.addrs()).await.expect("client")
    }

    /// A client that only knows node `i`.
    pub async fn client_of(&self, i: usize) -> Client {
        Client::connect_with(
            &[self.configs[i].listen.clone()],
            ClientOptions {
                timeout: Duration::from_secs(15),
                ..Default::default()
            },
        )
        .await
        .expect("client")
    }

    /// Status of node `i` (which must be running).
    pub async fn status(&self, i: usize) -> StatusResponse {
        self.nodes[i].as_ref().expect("node running").status().await
    }

    /// Index of the node whose replica leads shard 1, waiting for one. A
    /// deposed leader that has not heard of the new term yet loses to the newer term.
    pub async fn wait_leader(&self) -> usize {
        wait_for("a leader", WAIT, || async {
            let mut best: Option<(u64, usize)> = None;
            for (i, n) in self.nodes.iter().enumerate() {
                if let Some(n) = n {
                    let s = n.status().await;
                    if let Some(sh) = shard(&s, 1).filter(|s| s.role == "leader") {
                        if best.is_none_or(|(t, _)| sh.term > t) {
                            best = Some((sh.term, i));
                        }
                    }
                }
            }
            best.map(|(_, i)| i)
        })
        .await
    }

    /// Waits until every shard hosted anywhere has a leader.
    pub async fn wait_all_leaders(&self) {
        wait_for("every shard to have a leader", WAIT, || async {
            let mut shards = std::collections::BTreeSet::new();
            let mut led = std::collections::BTreeSet::new();
            for n in self.nodes.iter().flatten() {
                for sh in n.status().await.shards {
                    let id = sh.descriptor.as_ref().map_or(0, |d| d.shard_id);
                    shards.insert(id);
                    if sh.role == "leader" {
                        led.insert(id);
                    }
                }
            }
            (!shards.is_empty() && shards == led).then_some(())
        })
        .await
    }

    /// Stops node `i` (in-process crash: tasks cancelled, RocksDB closed).
    pub async fn stop(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.shutdown().await;
        }
    }

    /// Stops every node, starts them all again, and waits for a leader.
    pub async fn restart_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
        for i in 0..self.nodes.len() {
            self.restart(i).await;
        }
        self.wait_leader().await;
    }

    /// Restarts node `i` with its config and data dir.
    pub async fn restart(&mut self, i: usize) {
        let n = self.try_restart(i).await.expect("node restarts");
        self.nodes[i] = Some(n);
    }

    /// Starts node `i` again, returning the error if it refuses.
    pub async fn try_restart(&mut self, i: usize) -> ctxstore::Result<Node> {
        let cfg = self.configs[i].clone();
        let l = TcpListener::bind(&cfg.listen)
            .await
            .expect("rebind the same port");
        Node::start_with_listener(cfg, l).await
    }

    /// Has node `i` miss what `write` writes and catch up by snapshot: stops it (after
    /// the replicas converged), runs `write` (which must log more than shard 1's
    /// `raft.log-gc-threshold`), waits until shard 1's leader compacted its log past
    /// what node `i` had, restarts it, and checks that it caught up by snapshot (its
    /// log starts after what it had).
    pub async fn catch_up_by_snapshot(&mut self, i: usize, write: impl Future<Output = ()>) {
        self.wait_converged().await;
        let had = shard1(&self.status(i).await).last_index;
        self.stop(i).await;
        write.await;
        let leader = self.wait_leader().await;
        wait_for_explained(
            "shard 1's leader to compact its log past the stopped node",
            WAIT,
            || async {
                let first = shard1(&self.status(leader).await).first_index;
                (first > had + 1)
                    .then_some(())
                    .ok_or(format!("first index {first}, node {} had {had}", i + 1))
            },
        )
        .await;
        self.restart(i).await;
        self.wait_converged().await;
        let first = shard1(&self.status(i).await).first_index;
        assert!(
            first > had + 1,
            "node {} caught up from its log, not a snapshot",
            i + 1
        );
    }

    /// Waits until every running node has applied at least the leader's commit index.
    pub async fn wait_converged(&self) {
        let leader = self.wait_leader().await;
        let commit = shard1(&self.status(leader).await).commit_index;
        wait_for("replicas to apply the leader's commit", WAIT, || async {
            for n in self.nodes.iter().flatten() {
                let s = n.status().await;
                if shard(&s, 1).is_none_or(|s| s.applied_index < commit) {
                    return None;
                }
            }
            Some(())
        })
        .await
    }

    /// Waits until, for every shard, every running replica applied the commit index
    /// its leader reported.
    pub async fn wait_converged_all(&self) {
        let mut commits = std::collections::BTreeMap::new();
        for n in self.nodes.iter().flatten() {
            for sh in n.status().await.shards {
                if sh.role == "leader" {
                    commits.insert(
                        sh.descriptor.as_ref().map_or(0, |d| d.shard_id),
                        sh.commit_index,
                    );
                }
            }
        }
        wait_for_explained(
            "every replica to apply its leader's commit",
            WAIT,
            || async {
                let mut behind = Vec::new();
                for n in self.nodes.iter().flatten() {
                    for sh in n.status().await.shards {
                        let id = sh.descriptor.as_ref().map_or(0, |d| d.shard_id);
                        let commit = commits.get(&id).copied().unwrap_or(0);
                        if sh.applied_index < commit {
                            behind.push(format!(
                                "node {} shard {id} replica {} ({}, leader {}): applied {} < {commit}",
                                n.id(),
                                sh.replica_id,
                                sh.role,
                                sh.leader_id,
                                sh.applied_index
                            ));
                        }
                    }
                }
                if behind.is_empty() {
                    Ok(())
                } else {
                    Err(behind.join("; "))
                }
            },
        )
        .await
    }

    /// Stops every running node.
    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }
}

/// Reads `key` (stale from any replica, or linearizable) and checks its value.
pub async fn must_read(client: &Client, key: &str, value: &[u8], stale: bool) {
    let got = if stale {
        client.get_stale(key.to_string()).await
    } else {
        client.get(key.to_string()).await
    };
    let kv = got
        .expect("read")
        .unwrap_or_else(|| panic!("{key} lost (stale read: {stale})"));
    assert_eq!(kv.value.as_ref(), value, "value of {key}");
}

/// Sends logs to the test output when `RUST_LOG` is set.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Waits until every running node has applied its leaders' commits and every replica
/// of every shard holds the same data (digests read from one RocksDB snapshot each).
pub async fn assert_replicas_agree(cluster: &TestCluster) {
    cluster.wait_converged_all().await;
    wait_for(
        "every replica of every shard to hold the same data",
        WAIT,
        || async {
            let mut per_shard: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
            for n in cluster.nodes.iter().flatten() {
                for (shard, d) in n.shard_digests().ok()? {
                    per_shard.entry(shard).or_default().push(d);
                }
            }
            per_shard
                .values()
                .all(|ds| ds.windows(2).all(|w| w[0] == w[1]))
                .then_some(())
        },
    )
    .await;
}

/// The same for `ctxd` processes at `addrs` (digests through `Cluster.Status`):
/// waits until every shard's replicas hold the same data at the same index; returns
/// the number of shards.
pub async fn assert_process_replicas_agree(client: &Client, addrs: &[String]) -> usize {
    wait_for_explained(
        "every shard's replicas to hold the same data",
        WAIT,
        || async {
            // Shard → (node, digest index, digest) of each replica.
            let mut per_shard: BTreeMap<u64, Vec<(usize, u64, Option<u64>)>> = BTreeMap::new();
            for (i, a) in addrs.iter().enumerate() {
                let status = client
                    .node_status_with(a, true)
                    .await
                    .map_err(|e| format!("node {}: {e}", i + 1))?;
                for sh in status.shards {
                    let id = sh.descriptor.as_ref().map_or(0, |d| d.shard_id);
                    per_shard
                        .entry(id)
                        .or_default()
                        .push((i + 1, sh.digest_index, sh.digest));
                }
            }
            let apart: Vec<String> = per_shard
                .iter()
                .filter(|(_, ds)| {
                    ds.iter().any(|d| d.2.is_none())
                        || ds.windows(2).any(|w| (w[0].1, w[0].2) != (w[1].1, w[1].2))
                })
                .map(|(s, ds)| format!("shard {s}: {ds:?}"))
                .collect();
            if apart.is_empty() {
                Ok(per_shard.len())
            } else {
                Err(apart.join("; "))
            }
        },
    )
    .await
}

/// The routing table from the meta leader, if one answers (not a node's cache).
pub async fn meta_table(client: &Client) -> Option<RoutingTable> {
    client
        .routing_table()
        .await
        .ok()
        .filter(|t| t.source == "meta-leader")
}

/// Whether every shard of `t` has exactly three voters, no learner, and no replica on
/// the nodes in `not_on`.
pub fn fully_replicated(t: &RoutingTable, not_on: &[u64]) -> bool {
    !t.shards.is_empty()
        && t.shards.iter().all(|s| {
            s.descriptor.as_ref().is_some_and(|d| {
                d.replicas.len() == 3
                    && d.replicas.iter().all(|r| {
                        r.role == ReplicaRole::Voter as i32 && !not_on.contains(&r.node_id)
                    })
            })
        })
}

/// Blocks Raft traffic on the listed directed links.
pub struct Net {
    blocked: HashSet<(u64, u64)>,
}

impl MessageFilter for Net {
    fn allow(&self, from: NodeId, to: NodeId) -> bool {
        !self.blocked.contains(&(from.0, to.0))
    }
}

/// A partition into groups that cannot talk to each other; `bridge` (if any) talks to
/// every group.
pub fn partition(groups: &[Vec<u64>], bridge: Option<u64>) -> Net {
    let mut blocked = HashSet::new();
    for (i, a) in groups.iter().enumerate() {
        for (j, b) in groups.iter().enumerate() {
            if i == j {
                continue;
            }
            for x in a {
                for y in b {
                    if Some(*x) != bridge && Some(*y) != bridge {
                        blocked.insert((*x, *y));
                    }
                }
            }
        }
    }
    Net { blocked }
}

/// Sets (or, with None, clears) every running node's transport filter.
pub fn set_filter(cluster: &TestCluster, f: Option<Arc<dyn MessageFilter>>) {
    for n in cluster.nodes.iter().flatten() {
        n.set_message_filter(f.clone());
    }
}
