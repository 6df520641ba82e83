//! `ctxd dev`: a local multi-node cluster in one process, for trying ctxstore out.

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::node::Node;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;

/// Options of the dev cluster.
#[derive(Clone, Debug)]
pub struct DevOptions {
    /// Number of nodes (default 3).
    pub nodes: u64,
    /// First port; node i listens on `base_port + i - 1`; 0 lets the OS choose.
    pub base_port: u16,
    /// Where node data goes (default: a new directory under the system temp dir).
    pub data_dir: Option<PathBuf>,
    /// Raft tick (default 100 ms).
    pub tick: Duration,
    /// Data shards (default 8).
    pub shards: u64,
    /// Serve over mutual TLS with a throwaway CA written to `<data dir>/tls`.
    pub tls: bool,
}

impl Default for DevOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            base_port: 7001,
            data_dir: None,
            tick: Duration::from_millis(100),
            shards: 8,
            tls: false,
        }
    }
}

/// A running dev cluster.
pub struct DevCluster {
    /// The nodes, in id order.
    pub nodes: Vec<Node>,
    /// Their data directory.
    pub data_dir: PathBuf,
    /// With `tls`: the CA, node and client certificates.
    pub tls: Option<crate::pki::DevPki>,
}

impl DevCluster {
    /// Starts the nodes and waits until the cluster has a leader.
    pub async fn start(opts: DevOptions) -> Result<DevCluster> {
        if opts.nodes == 0 {
            return Err(Error::config("nodes", "must be at least 1"));
        }
        let data_dir = match &opts.data_dir {
            Some(d) => d.clone(),
            None => std::env::temp_dir().join(format!(
                "ctxstore-dev-{}-{}",
                std::process::id(),
                crate::util::now_ms()
            )),
        };
        let mut listeners = Vec::new();
        for i in 0..opts.nodes {
            let port = if opts.base_port == 0 {
                0
            } else {
                opts.base_port + i as u16
            };
            let addr = format!("127.0.0.1:{port}");
            let l = TcpListener::bind(&addr).await.map_err(|e| {
                Error::config(
                    "base-port",
                    format!("cannot bind {addr}: {e} (try --base-port 0)"),
                )
            })?;
            listeners.push(l);
        }
        let addrs: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.to_string()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let initial = crate::config::format_initial_cluster(&addrs);
        let tls = if opts.tls {
            Some(crate::pki::DevPki::write(&data_dir.join("tls"))?)
        } else {
            None
        };
        // All at once: a starting node asks its peers whether they know it (the
        // lost-data guard), and a peer whose port is bound but not yet served would
        // make it wait out that question.
        let mut starts = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            let mut cfg = NodeConfig {
                node_id: i as u64 + 1,
                listen: addrs[i].clone(),
                data_dir: data_dir.join(format!("node{}", i + 1)),
                initial_cluster: initial.clone(),
                ..Default::default()
            };
            cfg.raft.tick_interval = opts.tick;
            cfg.initial_shards = opts.shards;
            if let Some(t) = &tls {
                cfg.security = t.node_security();
            }
            starts.push(Node::start_with_listener(cfg, l));
        }
        let mut nodes = Vec::new();
        let mut failed = None;
        for r in futures::future::join_all(starts).await {
            match r {
                Ok(n) => nodes.push(n),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            for n in nodes {
                n.shutdown().await;
            }
            return Err(e);
        }
        let cluster = DevCluster {
            nodes,
            data_dir,
            tls,
        };
        cluster.wait_for_leader(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// The nodes' addresses.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr().to_string()).collect()
    }

    /// Waits until every shard has a leader; returns how many shards there are.
    pub async fn wait_for_leader(&self, within: Duration) -> Result<u64> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut shards = std::collections::BTreeSet::new();
            let mut led = std::collections::BTreeSet::new();
            for n in &self.nodes {
                for sh in n.status().await.shards {
                    let id = sh.descriptor.as_ref().map_or(0, |d| d.shard_id);
                    shards.insert(id);
                    if sh.role == "leader" {
                        led.insert(id);
                    }
                }
            }
            if !shards.is_empty() && shards == led {
                return Ok(shards.len() as u64);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::ShardUnavailable {
                    shard: crate::types::DEFAULT_SHARD,
                    reason: format!("no leader elected within {within:?}"),
                    outcome_unknown: false,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
    }
}
