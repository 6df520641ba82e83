//! Process-level tests: real `ctxd` processes killed with SIGKILL, and the `ctxctl`
//! command line as a shell user sees it.

mod common;

use common::procs::{free_port, start_cluster, Ctxd};
use common::{must_read, wait_for, WAIT};
use ctxstore_client::{Client, ClientOptions};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

async fn leader_index(client: &Client, addrs: &[String]) -> Option<usize> {
    for (i, a) in addrs.iter().enumerate() {
        if let Ok(s) = client.node_status(a).await {
            if common::shard(&s, 1).is_some_and(|s| s.role == "leader") {
                return Some(i);
            }
        }
    }
    None
}

/// SIGKILL of the leader process loses no acknowledged write.
///
/// 1. Start three `ctxd` processes; write 300 keys.
/// 2. SIGKILL the leader; keep writing through the client until 300 more are
///    acknowledged by the survivors.
/// 3. Restart the killed process with the same flags; wait until it applied the
///    leader's commit index.
/// 4. Every acknowledged key reads back; the restarted node serves them (stale reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_leader_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut procs, addrs) = start_cluster(dir.path(), 3, &[]);
    let client = Client::connect_with(
        &addrs,
        ClientOptions {
            timeout: Duration::from_secs(20),
            ..Default::default()
        },
    )
    .await
    .expect("client");
    let leader = wait_for("a leader among the processes", WAIT, || {
        leader_index(&client, &addrs)
    })
    .await;
    let mut acked = BTreeMap::new();
    for i in 0..300 {
        let (k, v) = (format!("p-{i:04}"), format!("v{i}"));
        client.put(k.clone(), v.clone()).await.expect("put");
        acked.insert(k, v);
    }
    let killed = std::time::Instant::now();
    procs[leader].kill9();
    let (k, v) = ("p-0300".to_string(), "v300".to_string());
    client
        .put(k.clone(), v.clone())
        .await
        .expect("first put after kill");
    acked.insert(k, v);
    // Default Raft timing (100 ms ticks, election after 10-20 ticks).
    eprintln!(
        "failover (SIGKILL of the leader -> first acknowledged write): {:?}",
        killed.elapsed()
    );
    for i in 301..600 {
        let (k, v) = (format!("p-{i:04}"), format!("v{i}"));
        client
            .put(k.clone(), v.clone())
            .await
            .expect("put after kill");
        acked.insert(k, v);
    }
    procs[leader].restart();
    let new_leader = wait_for("a leader", WAIT, || leader_index(&client, &addrs)).await;
    let commit = common::shard1(
        &client
            .node_status(&addrs[new_leader])
            .await
            .expect("status"),
    )
    .commit_index;
    wait_for("the restarted node to catch up", WAIT, || async {
        let s = client.node_status(&addrs[leader]).await.ok()?;
        (common::shard(&s, 1)?.applied_index >= commit).then_some(())
    })
    .await;
    let restarted = Client::connect(&[addrs[leader].clone()])
        .await
        .expect("client");
    for (k, v) in &acked {
        must_read(&client, k, v.as_bytes(), false).await;
        must_read(&restarted, k, v.as_bytes(), true).await;
    }
}

fn ctxctl(endpoints: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::procs::ctxctl_bin())
        .arg("--endpoints")
        .arg(endpoints)
        .arg("--timeout")
        .arg("5s")
        .args(args)
        .output()
        .expect("run ctxctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Three `ctxd` processes under `dir` once one of them leads, and their addresses as
/// one `--endpoints` value.
async fn three_with_leader(dir: &std::path::Path) -> (Vec<Ctxd>, String) {
    let (procs, addrs) = start_cluster(dir, 3, &[]);
    let client = Client::connect(&addrs).await.expect("client");
    wait_for("a leader", WAIT, || leader_index(&client, &addrs)).await;
    (procs, addrs.join(","))
}

/// `ctxctl` prints what a shell user expects and exits with the documented codes.
///
/// 1. Start three `ctxd` processes.
/// 2. put → 0; get → 0 and the value; get of a missing key → 1; CAS with a wrong
///    version → 1 and a message naming the versions; empty key → 2; status → 0 and a
///    leader; an endpoint where nothing listens → 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctxctl_exit_codes_and_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_procs, eps) = three_with_leader(dir.path()).await;
    let (code, out, _) = tokio::task::spawn_blocking({
        let eps = eps.clone();
        move || ctxctl(&eps, &["put", "greeting", "hello"])
    })
    .await
    .expect("join");
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK version="), "{out}");
    let eps2 = eps.clone();
    let results = tokio::task::spawn_blocking(move || {
        vec![
            ctxctl(&eps2, &["get", "greeting"]),
            ctxctl(&eps2, &["get", "nope"]),
            ctxctl(&eps2, &["cas", "greeting", "999", "x"]),
            ctxctl(&eps2, &["put", "", "x"]),
            ctxctl(&eps2, &["status"]),
            ctxctl(&format!("127.0.0.1:{}", free_port()), &["get", "k"]),
            ctxctl(&eps2, &["transfer-leader", "0", "2"]),
            ctxctl(&eps2, &["transfer-leader", "0", "2", "--shard", "1"]),
            ctxctl(&eps2, &["member", "--shard", "0", "list"]),
        ]
    })
    .await
    .expect("join");
    assert_eq!((results[0].0, results[0].1.trim()), (0, "hello"));
    assert_eq!(results[1].0, 1);
    assert!(results[1].2.contains("not found"));
    assert_eq!(results[2].0, 1);
    assert!(
        results[2].2.contains("version mismatch"),
        "{}",
        results[2].2
    );
    assert_eq!(results[3].0, 2, "{}", results[3].2);
    assert_eq!(results[4].0, 0);
    assert!(results[4].1.contains("leader"), "{}", results[4].1);
    assert_eq!(results[5].0, 3, "{}", results[5].2);
    // `transfer-leader SHARD NODE` on the meta shard; the shard given twice is refused.
    assert_eq!(results[6].0, 0, "{}", results[6].2);
    assert!(results[6].1.contains("requested"), "{}", results[6].1);
    assert_eq!(results[7].0, 2, "{}", results[7].2);
    assert_eq!(results[8].0, 0, "{}", results[8].2);
    assert!(results[8].1.contains("shard 0"), "{}", results[8].1);
    // The status is a table per shard and per node, with the routing table's
    // version; `-o json` gives the same for scripts.
    assert!(
        results[4].1.contains("routing table version")
            && results[4].1.starts_with("SHARD")
            && results[4].1.contains("NODE"),
        "{}",
        results[4].1
    );
    let eps4 = eps.clone();
    let json = tokio::task::spawn_blocking(move || ctxctl(&eps4, &["status", "-o", "json"]))
        .await
        .expect("join");
    assert_eq!(json.0, 0, "{}", json.2);
    let doc: serde_json::Value = serde_json::from_str(json.1.trim()).expect("status -o json");
    assert_eq!(doc["shards"].as_array().map(Vec::len), Some(2), "{doc}");
    assert_eq!(doc["nodes"].as_array().map(Vec::len), Some(3), "{doc}");
    assert!(
        doc["routing_version"].as_u64().is_some_and(|v| v > 0),
        "{doc}"
    );
    // Conversations: append with and without an expectation, read, info, list.
    let eps3 = eps.clone();
    let conv = tokio::task::spawn_blocking(move || {
        vec![
            ctxctl(&eps3, &["conv", "append", "demo/c1", "user", "hello there"]),
            ctxctl(
                &eps3,
                &[
                    "conv",
                    "append",
                    "demo/c1",
                    "assistant",
                    "hi",
                    "--expect-last",
                    "1",
                ],
            ),
            ctxctl(
                &eps3,
                &[
                    "conv",
                    "append",
                    "demo/c1",
                    "user",
                    "late",
                    "--expect-last",
                    "1",
                ],
            ),
            ctxctl(&eps3, &["conv", "read", "demo/c1"]),
            ctxctl(&eps3, &["conv", "info", "demo/c1"]),
            ctxctl(&eps3, &["conv", "list", "demo"]),
            ctxctl(&eps3, &["conv", "info", "demo/none"]),
            ctxctl(&eps3, &["conv", "append", "no-slash", "user", "x"]),
        ]
    })
    .await
    .expect("join");
    assert_eq!(conv[0].0, 0, "{:?}", conv[0]);
    assert!(conv[0].1.starts_with("OK seq=1 "), "{:?}", conv[0]);
    assert!(conv[1].1.starts_with("OK seq=2 "), "{:?}", conv[1]);
    assert_eq!(conv[2].0, 1, "a stale expectation exits 1: {:?}", conv[2]);
    assert!(conv[2].2.contains("actual 2"), "{:?}", conv[2]);
    assert_eq!(conv[3].0, 0);
    assert!(
        conv[3].1.contains("hello there") && conv[3].1.contains("hi"),
        "{}",
        conv[3].1
    );
    assert!(conv[4].1.contains("messages=2"), "{}", conv[4].1);
    assert!(conv[5].1.starts_with("c1\t2 messages"), "{}", conv[5].1);
    assert_eq!(conv[6].0, 1, "{:?}", conv[6]);
    assert_eq!(conv[7].0, 2, "{:?}", conv[7]);
}

/// `ctxctl bench` runs every workload against a live cluster and reports it in the
/// documented JSON line; a workload it does not know is refused with exit code 2.
///
/// 1. Start three `ctxd` processes.
/// 2. Run each workload for 1 s with 2 clients and `--json`.
/// 3. Each last line parses, names its workload and client count, completed some
///    operations with no errors, and has ordered percentiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctxctl_bench_runs_every_workload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_procs, eps) = three_with_leader(dir.path()).await;
    let workloads = [
        "put",
        "get",
        "get-stale",
        "mixed",
        "ycsb-a",
        "ycsb-b",
        "ycsb-c",
        "append",
        "agent-step",
    ];
    let mut runs = tokio::task::spawn_blocking(move || {
        let mut runs: Vec<_> = workloads
            .iter()
            .map(|w| {
                let args = [
                    "bench",
                    "--workload",
                    w,
                    "--clients",
                    "2",
                    "--keys",
                    "50",
                    "--duration",
                    "1s",
                    "--warmup",
                    "0s",
                    "--json",
                ];
                (w.to_string(), ctxctl(&eps, &args))
            })
            .collect();
        runs.push((
            "nope".into(),
            ctxctl(&eps, &["bench", "--workload", "nope"]),
        ));
        runs
    })
    .await
    .expect("join");
    let (_, (code, _, err)) = runs.pop().expect("the refused run");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("workload"), "{err}");
    for (w, (code, out, err)) in runs {
        assert_eq!(code, 0, "{w}: {err}");
        let last = out.lines().last().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(last).expect("a JSON last line");
        assert_eq!(v["workload"], w.as_str(), "{last}");
        assert_eq!(v["clients"], 2, "{last}");
        assert_eq!(v["errors"], 0, "{w}: {last}");
        assert!(
            v["ops_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
            "{w}: {last}"
        );
        let p = |k: &str| v[k].as_u64().unwrap_or(0);
        assert!(
            0 < p("p50_us") && p("p50_us") <= p("p90_us") && p("p90_us") <= p("p99_us"),
            "{w}: {last}"
        );
        assert!(p("p99_us") <= p("p999_us"), "{w}: {last}");
    }
}
