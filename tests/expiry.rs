//! The node's expiry index (`storage::index`): it follows every write, delete and purge
//! of records with an expiry, through a snapshot install, a full restart and the
//! indexing of a data directory written before the index existed; the purge it drives
//! removes expired records from every replica.

mod common;

use common::{wait_for_explained, TestCluster, WAIT};
use ctxstore_client::Client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;

/// Keys the workload writes.
const KEYS: usize = 40;

/// A key's expiry as the workload last set it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ttl {
    None,
    /// Expires during the test: its record is purged.
    Short,
    /// Outlives the test.
    Long,
}

/// One random write (`short_only`: no long TTLs), recorded in `model` (key → TTL of
/// the live record; absent: deleted).
async fn random_write(
    c: &Client,
    rng: &mut StdRng,
    model: &mut BTreeMap<usize, Ttl>,
    short_only: bool,
) {
    let k = rng.random_range(0..KEYS);
    let key = format!("exp-{k:02}");
    let roll = rng.random_range(0..10);
    if roll == 0 {
        c.delete(key).await.expect("delete");
        model.remove(&k);
        return;
    }
    let ttl = match roll {
        1..=3 => Ttl::None,
        4..=6 => Ttl::Short,
        _ if short_only => Ttl::Short,
        _ => Ttl::Long,
    };
    let value = format!("v{roll}");
    match ttl {
        Ttl::None if roll < 3 => {
            // A conditional write on the version the key has now (0: absent).
            let version = c
                .get(key.clone())
                .await
                .expect("get")
                .map_or(0, |kv| kv.version);
            c.compare_and_swap(key, version, value).await.expect("cas");
        }
        Ttl::None => {
            c.put(key, value).await.expect("put");
        }
        Ttl::Short => {
            let d = Duration::from_millis(rng.random_range(200..800));
            c.put_with_ttl(key, value, Some(d)).await.expect("put");
        }
        Ttl::Long => {
            let d = Duration::from_secs(3600);
            c.put_with_ttl(key, value, Some(d)).await.expect("put");
        }
    }
    model.insert(k, ttl);
}

/// Waits until every running node's index matches its records exactly and holds one
/// entry per live long-TTL record of the model (the short ones purged).
async fn wait_exact(cluster: &TestCluster, model: &BTreeMap<usize, Ttl>, when: &str) {
    let long = model.values().filter(|t| **t == Ttl::Long).count();
    wait_for_explained(&format!("every index to be exact {when}"), WAIT, || async {
        for (i, n) in cluster.nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            let check = n.check_expiry_index().map_err(|e| e.to_string())?;
            if check.missing != 0 || check.extra != 0 || check.records != long {
                return Err(format!(
                    "node {}: {check:?}, {long} long-lived records",
                    i + 1
                ));
            }
        }
        Ok(())
    })
    .await;
}

/// 1. One shard on 3 nodes (small log GC thresholds, purge every 100 ms). Node 3 stops.
/// 2. 300 random writes over 40 keys (no TTL, a short one that expires during the
///    test, an hour; deletes, conditional writes); the leader compacts its log past
///    node 3.
/// 3. Node 3 restarts and catches up by snapshot (its log starts past what it had).
/// 4. Every node's index is exact: one entry per record with an expiry, no entry
///    without a record (the snapshot's stale leftovers purged), and, once the short
///    TTLs have passed and the purge ran, exactly the model's long-lived records.
/// 5. The same after a full restart.
/// 6. All stop; node 1's index is wiped with its "indexed" marker (a data dir of the
///    version before the index); at start it is indexed again, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expiry_index_stays_exact_through_writes_a_snapshot_and_restarts() {
    let mut cluster = TestCluster::start_with(3, |c| {
        c.initial_shards = 1;
        c.raft.log_gc_threshold = 100;
        c.raft.log_gc_keep = 10;
        c.context.purge_interval = Duration::from_millis(100);
    })
    .await;
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = BTreeMap::new();
    let c = cluster.client().await;
    // Before node 3 stops: expiries that pass during the test only, so what the
    // snapshot later replaces on node 3 is purged in time.
    for _ in 0..40 {
        random_write(&c, &mut rng, &mut model, true).await;
    }
    cluster
        .catch_up_by_snapshot(2, async {
            for _ in 0..300 {
                random_write(&c, &mut rng, &mut model, false).await;
            }
        })
        .await;
    wait_exact(&cluster, &model, "after the snapshot").await;
    cluster.restart_all().await;
    wait_exact(&cluster, &model, "after a full restart").await;

    for i in 0..3 {
        cluster.stop(i).await;
    }
    wipe_index(&cluster.dir.path().join("node1"));
    for i in 0..3 {
        cluster.restart(i).await;
    }
    let check = cluster.nodes[0]
        .as_ref()
        .expect("node 1 runs")
        .check_expiry_index()
        .expect("check");
    assert_eq!((check.missing, check.extra), (0, 0), "{check:?}");
    wait_exact(&cluster, &model, "after indexing an older data dir").await;
    cluster.shutdown().await;
}

/// Deletes every expiry index entry and the "indexed" marker of a stopped node's data
/// dir: what a data dir written before the index looks like.
fn wipe_index(dir: &std::path::Path) {
    let cfs = ["raft", "data", "meta"];
    let db =
        rocksdb::DB::open_cf(&rocksdb::Options::default(), dir, cfs).expect("open the data dir");
    let meta = db.cf_handle("meta").expect("meta cf");
    let mut batch = rocksdb::WriteBatch::default();
    batch.delete_range_cf(
        meta,
        b"\xff\xffexpiry/".as_slice(),
        b"\xff\xffexpiry0".as_slice(),
    );
    batch.delete_cf(meta, b"\xff\xffexpiry-indexed");
    db.write(batch).expect("wipe");
    let left = db
        .iterator_cf(
            meta,
            rocksdb::IteratorMode::From(b"\xff\xffexpiry", rocksdb::Direction::Forward),
        )
        .filter_map(|kv| kv.ok())
        .take_while(|(k, _)| k.starts_with(b"\xff\xffexpiry"))
        .count();
    assert_eq!(left, 0, "the index is wiped");
}

/// The purge finds each expired record's shard among several led on a node: with 4
/// shards spread over 3 nodes, 60 keys that expire during the test leave every node's
/// disk and index, and the 20 that do not stay indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_records_of_every_shard_are_purged_from_every_node() {
    let cluster = TestCluster::start_with(3, |c| {
        c.initial_shards = 4;
        c.context.purge_interval = Duration::from_millis(100);
    })
    .await;
    cluster.wait_all_leaders().await;
    let data_shards = cluster
        .status(0)
        .await
        .shards
        .iter()
        .filter(|s| s.descriptor.as_ref().is_some_and(|d| d.shard_id != 0))
        .count();
    assert_eq!(
        data_shards, 4,
        "node 1 hosts a replica of each of the 4 data shards"
    );
    let c = cluster.client().await;
    for i in 0..60 {
        c.put_with_ttl(
            format!("brief-{i:02}"),
            "v",
            Some(Duration::from_millis(300)),
        )
        .await
        .expect("put");
    }
    for i in 0..20 {
        c.put_with_ttl(format!("kept-{i:02}"), "v", Some(Duration::from_secs(3600)))
            .await
            .expect("put");
    }
    wait_for_explained(
        "the brief records to be purged everywhere",
        WAIT,
        || async {
            for (i, n) in cluster.nodes.iter().enumerate() {
                let Some(n) = n else { continue };
                let check = n.check_expiry_index().map_err(|e| e.to_string())?;
                let brief = n
                    .data_keys()
                    .map_err(|e| e.to_string())?
                    .iter()
                    .filter(|k| k.starts_with(b"brief-"))
                    .count();
                if brief != 0 || check.missing != 0 || check.extra != 0 || check.records != 20 {
                    return Err(format!(
                        "node {}: {brief} brief records left, {check:?}",
                        i + 1
                    ));
                }
            }
            Ok(())
        },
    )
    .await;
    cluster.shutdown().await;
}

/// `Status` counts, per node, the records whose expiry has passed and that the purge
/// has not removed (here: a purge interval longer than the test), as `ctxctl status`
/// shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_the_expired_records_waiting_for_the_purge() {
    let cluster = TestCluster::start_with(3, |c| {
        c.initial_shards = 2;
        c.context.purge_interval = Duration::from_secs(3600);
    })
    .await;
    cluster.wait_all_leaders().await;
    let c = cluster.client().await;
    for i in 0..10 {
        c.put_with_ttl(format!("soon-{i}"), "v", Some(Duration::from_millis(100)))
            .await
            .expect("put");
    }
    c.put_with_ttl("later", "v", Some(Duration::from_secs(3600)))
        .await
        .expect("put");
    wait_for_explained("every node to count 10 expired records", WAIT, || async {
        let mut seen = Vec::new();
        for addr in cluster.addrs() {
            let s = c.node_status(&addr).await.map_err(|e| e.to_string())?;
            seen.push(s.expired_waiting);
        }
        if seen == [10, 10, 10] {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    cluster.shutdown().await;
}
