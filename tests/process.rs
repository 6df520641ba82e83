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

/// A leader that stops answering without closing its connections (SIGSTOP) does not
/// hold a client's calls until their deadline: the client's HTTP/2 keepalive gives up
/// the connection, and the calls fail over to the new leader within the default
/// 10 s deadline. Without the keepalive, the put to the paused leader's open batch
/// stream waited for its whole deadline and failed with `Timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_does_not_hold_calls_until_their_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (procs, addrs) = start_cluster(dir.path(), 3, &[]);
    let client = Client::connect(&addrs).await.expect("client");
    let leader = wait_for("a leader among the processes", WAIT, || {
        leader_index(&client, &addrs)
    })
    .await;
    // The client knows the leader and has its batch stream open.
    client.put("before", "v0").await.expect("put");
    procs[leader].pause();
    let paused = std::time::Instant::now();
    let put = client.put("during", "v1").await;
    let get = client.get("before").await;
    eprintln!(
        "a put and a get with the leader paused took {:?}",
        paused.elapsed()
    );
    procs[leader].resume();
    let version = put.expect("a put while the leader is paused").version;
    let kv = get
        .expect("a linearizable get while the leader is paused")
        .expect("the key exists");
    assert_eq!(kv.value.as_ref(), b"v0");
    let kv = client.get("during").await.expect("get").expect("exists");
    assert_eq!((kv.value.as_ref(), kv.version), (b"v1".as_ref(), version));
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
    let version: u64 = out
        .trim_start_matches("OK version=")
        .split(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a version");
    let from = (version - 1).to_string();
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
            ctxctl(
                &eps2,
                &["watch", "greeting", "--from", &from, "--count", "1"],
            ),
            ctxctl(&eps2, &["watch", "greeting", "--prefix"]),
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
    // `watch --from` replays the put; a prefix without a whole hash tag is refused.
    assert_eq!(
        (results[9].0, results[9].1.as_str()),
        (
            0,
            format!("PUT\tgreeting\thello\tversion={version}\n").as_str()
        ),
        "{}",
        results[9].2
    );
    assert_eq!(results[10].0, 2, "{}", results[10].2);
    assert!(results[10].2.contains("hash tag"), "{}", results[10].2);
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
        "list",
        "budget",
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

/// Whether every status listener answers `/readyz` with 200.
async fn all_ready(status: &[std::net::SocketAddr]) -> Option<()> {
    for a in status {
        match common::try_http_get(*a, "/readyz").await {
            Ok((200, _)) => {}
            _ => return None,
        }
    }
    Some(())
}

/// What the writers of [`rolling_restart_by_sigterm_shows_clients_no_error`] saw.
#[derive(Default)]
struct Writes {
    acked: Vec<(String, String)>,
    errors: Vec<String>,
    /// The slowest acknowledged put since the last reset.
    slowest: Duration,
}

/// A rolling restart by SIGTERM: each node in turn hands its shards' leaderships to
/// the others, exits 0 and comes back, while 16 clients write. No client sees an
/// error, and every acknowledged write reads back. The same round with SIGKILL is
/// measured for comparison (its errors are reported, not asserted: a killed leader
/// leaves its shards leaderless for an election timeout).
///
/// 1. Start three `ctxd` processes with 4 shards and status listeners; wait until
///    every `/readyz` is 200; start 16 writers (default client options).
/// 2. For each node: wait for 50 more acknowledged writes; SIGTERM it; it exits with
///    status 0 within 30 s and logs that it handed over every leadership (none
///    left); start it again; wait until every node is ready.
/// 3. Stop the writers: no error; every acknowledged key reads back.
/// 4. The same round with SIGKILL; every acknowledged key reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_by_sigterm_shows_clients_no_error() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let status: Vec<std::net::SocketAddr> =
        ports.iter().map(|p| ([127, 0, 0, 1], *p).into()).collect();
    let (mut procs, addrs) = common::procs::start_cluster_with(dir.path(), 3, true, |i| {
        vec![
            "--initial-shards".into(),
            "4".into(),
            "--status-listen".into(),
            status[i].to_string(),
        ]
    });
    wait_for("every node ready", WAIT, || all_ready(&status)).await;
    let client = Client::connect(&addrs).await.expect("client");
    let writes = Arc::new(parking_lot::Mutex::new(Writes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..16)
        .map(|t| {
            let (client, writes, stop) = (client.clone(), writes.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (k, v) = (format!("roll-{t:02}-{i:06}"), format!("v{i}"));
                    let started = std::time::Instant::now();
                    let r = client.put(k.clone(), v.clone()).await;
                    let mut w = writes.lock();
                    match r {
                        Ok(_) => {
                            w.slowest = w.slowest.max(started.elapsed());
                            w.acked.push((k, v));
                        }
                        Err(e) => w.errors.push(format!("{k}: {e}")),
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let progress = |n: usize| {
        let writes = writes.clone();
        async move {
            let start = writes.lock().acked.len();
            wait_for("50 more acknowledged writes", WAIT, || async {
                (writes.lock().acked.len() >= start + n).then_some(())
            })
            .await;
        }
    };
    let mut handed_over = 0;
    for (i, p) in procs.iter_mut().enumerate() {
        progress(50).await;
        let exit = p.terminate(Duration::from_secs(30)).await;
        assert!(exit.success(), "node {} exited with {exit}", i + 1);
        let log = p.log_text();
        let n: Option<u32> = log
            .lines()
            .find_map(|l| l.strip_prefix("ctxd: handed over "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok());
        assert!(
            n.is_some() && !log.contains("still leading"),
            "node {} did not hand every leadership over:\n{log}",
            i + 1
        );
        handed_over += n.unwrap_or(0);
        p.restart();
        wait_for("every node ready after the restart", WAIT, || {
            all_ready(&status)
        })
        .await;
    }
    progress(50).await;
    // Node 1 led shards at the start, at least.
    assert!(handed_over >= 1, "no drain had a leadership to hand over");
    let graceful = {
        let mut w = writes.lock();
        std::mem::take(&mut w.slowest)
    };
    {
        let w = writes.lock();
        assert!(
            w.errors.is_empty(),
            "clients saw {} errors during the SIGTERM round, first: {:?}",
            w.errors.len(),
            w.errors.first()
        );
    }
    for p in procs.iter_mut() {
        p.kill9();
        p.restart();
        wait_for("every node ready after the restart", WAIT, || {
            all_ready(&status)
        })
        .await;
        progress(50).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let w = std::mem::take(&mut *writes.lock());
    eprintln!(
        "rolling restart, 16 writers, {} writes acknowledged: slowest put {:?} with SIGTERM, \
         {:?} with SIGKILL ({} errors with SIGKILL)",
        w.acked.len(),
        graceful,
        w.slowest,
        w.errors.len()
    );
    // One linearizable scan over every shard, page by page.
    let mut stored = std::collections::HashMap::new();
    let mut after = bytes::Bytes::new();
    loop {
        let page = client
            .scan("roll-", after.clone(), 5_000)
            .await
            .expect("scan");
        for kv in &page.kvs {
            stored.insert(kv.key.clone(), kv.value.clone());
        }
        match page.kvs.last() {
            Some(last) if page.more => after = last.key.clone(),
            _ => break,
        }
    }
    for (k, v) in &w.acked {
        let got = stored
            .get(k.as_bytes())
            .unwrap_or_else(|| panic!("{k} lost"));
        assert_eq!(got.as_ref(), v.as_bytes(), "value of {k}");
    }
}

/// The `-o json` settings of node `node` from `ctxctl config show`: key → (value,
/// source).
fn node_settings(eps: &str, node: u64) -> BTreeMap<String, (String, String)> {
    let (code, out, err) = ctxctl(
        eps,
        &["config", "show", "--node", &node.to_string(), "-o", "json"],
    );
    assert_eq!(code, 0, "config show --node {node}: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("config show prints JSON");
    v["settings"]
        .as_array()
        .expect("a settings list")
        .iter()
        .map(|s| {
            let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            (text("key"), (text("value"), text("source")))
        })
        .collect()
}

/// `ctxctl config`: a cluster-wide setting reaches every node without a restart; a
/// bad value, a restart-only key and an unknown key are refused by name and change
/// nothing; `config show --node` names each value's source.
///
/// 1. Three `ctxd` processes with 4 shards; node 1 also reads a config file setting
///    `[context] purge-interval` and gets `--read-weight 150`.
/// 2. `config set limits.max-value-size 2KiB`: every node reports 2048 from the
///    cluster; 3 KiB puts (8 keys over the shards) fail with `LimitExceeded`, 1 KiB
///    puts succeed.
/// 3. `lots` as a size, `raft.tick-interval`, `limits.nope`: exit 2, each message
///    names the key; the cluster's version stays 1.
/// 4. Node 1 lists sources cluster, file, flag and default; `config get` agrees.
/// 5. `config unset`: every node is back at the default, and a 3 KiB put succeeds.
/// 6. `config set log.level info,ctxstore=debug`: every process logs that its log
///    filter changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_config_reaches_every_node_and_refuses_bad_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("n1.toml");
    std::fs::write(&file, "[context]\npurge-interval = \"2s\"\n").expect("write config");
    let file = file.display().to_string();
    let (procs, addrs) = common::procs::start_cluster_with(dir.path(), 3, true, |i| {
        let mut a = vec!["--initial-shards".to_string(), "4".into()];
        if i == 0 {
            a.extend([
                "--config".into(),
                file.clone(),
                "--read-weight".into(),
                "150".into(),
            ]);
        }
        a
    });
    let client = Client::connect(&addrs).await.expect("client");
    wait_for("a leader", WAIT, || leader_index(&client, &addrs)).await;
    let eps = addrs.join(",");
    let eps2 = eps.clone();
    let ctl = move |args: Vec<&'static str>| {
        let eps = eps2.clone();
        async move {
            tokio::task::spawn_blocking(move || ctxctl(&eps, &args))
                .await
                .expect("ctxctl")
        }
    };
    let set_at = std::time::Instant::now();
    let (code, out, err) = ctl(vec!["config", "set", "limits.max-value-size", "2KiB"]).await;
    assert_eq!(code, 0, "config set: {out}{err}");
    let everywhere = |want: &'static str, source: &'static str| {
        let eps = eps.clone();
        async move {
            wait_for("every node to apply the setting", WAIT, || {
                let eps = eps.clone();
                async move {
                    tokio::task::spawn_blocking(move || {
                        (1..=3).all(|n| {
                            node_settings(&eps, n).get("limits.max-value-size")
                                == Some(&(want.to_string(), source.to_string()))
                        })
                    })
                    .await
                    .expect("config show")
                    .then_some(())
                }
            })
            .await;
        }
    };
    everywhere("2048", "cluster").await;
    eprintln!(
        "config set -> every node reports the value: {:?}",
        set_at.elapsed()
    );
    for i in 0..8 {
        let key = format!("cfg-{i}");
        match client.put(key.clone(), vec![b'x'; 3 << 10]).await {
            Err(ctxstore_client::Error::LimitExceeded { limit, max, .. }) => {
                assert_eq!((limit.as_str(), max), ("max-value-size", 2048), "{key}");
            }
            other => panic!("a 3 KiB put of {key} under a 2 KiB limit: {other:?}"),
        }
        client
            .put(key, vec![b'x'; 1 << 10])
            .await
            .expect("a 1 KiB put");
    }
    for (args, names) in [
        (
            vec!["config", "set", "limits.max-value-size", "lots"],
            "limits.max-value-size",
        ),
        (
            vec!["config", "set", "raft.tick-interval", "50ms"],
            "raft.tick-interval",
        ),
        (vec!["config", "set", "limits.nope", "1"], "limits.nope"),
    ] {
        let (code, _, err) = ctl(args.clone()).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(names), "{args:?} should name {names}: {err}");
    }
    let (code, out, err) = ctl(vec!["config", "show", "-o", "json"]).await;
    assert_eq!(code, 0, "config show: {err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        doc["version"], 1,
        "refused changes must not change the settings: {doc}"
    );
    assert!(err.is_empty() || !err.contains("error"), "{err}");
    let n1 = {
        let eps = eps.clone();
        tokio::task::spawn_blocking(move || node_settings(&eps, 1))
            .await
            .expect("show")
    };
    let source = |k: &str| n1.get(k).map(|(_, s)| s.as_str()).unwrap_or("missing");
    assert_eq!(source("limits.max-value-size"), "cluster");
    assert_eq!(source("context.purge-interval"), "file");
    assert_eq!(source("read-weight"), "flag");
    assert_eq!(source("node-id"), "flag");
    assert_eq!(source("limits.max-key-size"), "default");
    assert_eq!(n1.get("read-weight").map(|(v, _)| v.as_str()), Some("150"));
    let (code, out, err) = ctl(vec!["config", "get", "context.purge-interval"]).await;
    assert_eq!((code, out.trim()), (0, "\"2s\" (file)"), "{err}");
    let (code, _, err) = ctl(vec!["config", "unset", "limits.max-value-size"]).await;
    assert_eq!(code, 0, "config unset: {err}");
    everywhere("4194304", "default").await;
    client
        .put("cfg-big", vec![b'x'; 3 << 10])
        .await
        .expect("a 3 KiB put once the cluster's limit is unset");
    // The log filter of every process follows the cluster's `log.level`.
    let (code, _, err) = ctl(vec!["config", "set", "log.level", "info,ctxstore=debug"]).await;
    assert_eq!(code, 0, "config set log.level: {err}");
    wait_for("every node to change its log filter", WAIT, || async {
        procs
            .iter()
            .all(|p| p.log_text().contains("log filter changed"))
            .then_some(())
    })
    .await;
}

/// Runs `ctxd` with `args` to completion: exit code and stderr.
fn ctxd_run(args: &[String]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ctxd"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ctxd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ctxd restore` of node `id` from `from` into `data` for the cluster `initial`.
fn restore_args(
    from: &std::path::Path,
    id: u64,
    data: &std::path::Path,
    initial: &str,
) -> Vec<String> {
    [
        "restore",
        "--from",
        &from.display().to_string(),
        "--node-id",
        &id.to_string(),
        "--data-dir",
        &data.display().to_string(),
        "--initial-cluster",
        initial,
        "--bump-index",
        "1000000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A backup taken while clients write restores into a new cluster with every write
/// acknowledged before the save started; a corrupted backup is refused.
///
/// 1. Three `ctxd` processes with 4 shards; 8 clients write unique keys.
/// 2. `ctxctl snapshot save DIR` while they write; they go on for 100 more writes.
///    `snapshot status DIR` exits 0 and the manifest lists 5 shards.
/// 3. `ctxd restore` of 3 new nodes (other ports, `--bump-index 1000000`); start them.
///    Every replica's data digest equals the manifest's for its shard; every write
///    acknowledged before the save started reads back; a new write's version is above
///    every version the old cluster acknowledged.
/// 4. A copy of the backup with one byte of shard 1's file flipped: `snapshot status`
///    exits 1 naming it; `ctxd restore` from it exits 2 naming shard 1 and writes
///    nothing; a restore into a non-empty data dir is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_restores_into_a_new_cluster() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_old, addrs) = start_cluster(&dir.path().join("old"), 3, &["--initial-shards", "4"]);
    let client = Client::connect(&addrs).await.expect("client");
    wait_for("a leader", WAIT, || leader_index(&client, &addrs)).await;
    // (key, value, version, acknowledged at)
    type Ack = (String, String, u64, std::time::Instant);
    let acks: Arc<parking_lot::Mutex<Vec<Ack>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let (client, acks, stop) = (client.clone(), acks.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (k, v) = (format!("bk-{t}-{i:05}"), format!("value {t} {i}"));
                    let w = client.put(k.clone(), v.clone()).await.expect("put");
                    acks.lock()
                        .push((k, v, w.version, std::time::Instant::now()));
                    i += 1;
                }
            })
        })
        .collect();
    let more = |n: usize| {
        let acks = acks.clone();
        async move {
            let start = acks.lock().len();
            wait_for("more acknowledged writes", WAIT, || async {
                (acks.lock().len() >= start + n).then_some(())
            })
            .await;
        }
    };
    more(200).await;
    let backup = dir.path().join("backup");
    let save_started = std::time::Instant::now();
    let eps = addrs.join(",");
    let (code, out, err) = {
        let (eps, b) = (eps.clone(), backup.display().to_string());
        tokio::task::spawn_blocking(move || ctxctl(&eps, &["snapshot", "save", &b]))
            .await
            .expect("ctxctl")
    };
    assert_eq!(code, 0, "snapshot save: {out}{err}");
    more(100).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let acks = std::mem::take(&mut *acks.lock());
    let before: Vec<&Ack> = acks.iter().filter(|a| a.3 < save_started).collect();
    let max_version = acks.iter().map(|a| a.2).max().unwrap_or(0);
    let (code, out, err) = ctxctl(&eps, &["snapshot", "status", &backup.display().to_string()]);
    assert_eq!(code, 0, "snapshot status: {out}{err}");
    let manifest = ctxstore_client::backup::Manifest::read(&backup).expect("manifest");
    assert_eq!(manifest.shards.len(), 5, "{manifest:?}");

    // A new cluster from the backup.
    let new_addrs: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let initial = ctxstore::config::format_initial_cluster(&new_addrs);
    let data = |i: u64| dir.path().join(format!("new/n{i}"));
    for i in 1..=3 {
        let (code, err) = ctxd_run(&restore_args(&backup, i, &data(i), &initial));
        assert_eq!(code, 0, "restore of node {i}: {err}");
    }
    let _new: Vec<Ctxd> = (1..=3)
        .map(|i| {
            Ctxd::spawn(vec![
                "--node-id".into(),
                i.to_string(),
                "--listen".into(),
                new_addrs[i as usize - 1].clone(),
                "--data-dir".into(),
                data(i).display().to_string(),
            ])
        })
        .collect();
    let restored = Client::connect(&new_addrs)
        .await
        .expect("client of the new cluster");
    let digests: BTreeMap<u64, u64> = manifest
        .shards
        .iter()
        .map(|s| (s.shard_id, s.data_digest))
        .collect();
    let mut replicas = 0;
    for a in &new_addrs {
        let s = wait_for("a restored node to answer", WAIT, || async {
            restored.node_status_with(a, true).await.ok()
        })
        .await;
        for r in &s.shards {
            let id = r.descriptor.as_ref().map_or(0, |d| d.shard_id);
            assert_eq!(r.digest, digests.get(&id).copied(), "shard {id} on {a}");
            replicas += 1;
        }
    }
    assert_eq!(replicas, 15, "5 shards with 3 replicas each");
    for (k, v, _, _) in &before {
        must_read(&restored, k, v.as_bytes(), false).await;
    }
    let w = restored
        .put("after-restore", "v")
        .await
        .expect("a write to the new cluster");
    assert!(
        w.version > max_version,
        "new version {} must be above the old cluster's {max_version}",
        w.version
    );
    eprintln!(
        "backup: {} writes acknowledged before the save, {} in all; {} shards, {} keys, {} bytes, saved in {} ms",
        before.len(),
        acks.len(),
        manifest.shards.len(),
        manifest.shards.iter().map(|s| s.keys).sum::<u64>(),
        manifest.shards.iter().map(|s| s.bytes).sum::<u64>(),
        manifest.finished_ms - manifest.started_ms
    );

    // A corrupted copy is refused, and nothing is written.
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).expect("mkdir");
    for entry in std::fs::read_dir(&backup).expect("read backup") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, bad.join(p.file_name().expect("name"))).expect("copy");
    }
    let victim = bad.join("shard-1.snap");
    let mut bytes = std::fs::read(&victim).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&victim, bytes).expect("write");
    let (code, out, _) = ctxctl(&eps, &["snapshot", "status", &bad.display().to_string()]);
    assert_eq!(code, 1, "status of a corrupted backup: {out}");
    assert!(out.contains("does not match"), "{out}");
    let fresh = dir.path().join("fresh");
    let (code, err) = ctxd_run(&restore_args(&bad, 1, &fresh, &initial));
    assert_eq!(code, 2, "restore from a corrupted backup: {err}");
    assert!(err.contains("shard 1") && err.contains("sha256"), "{err}");
    assert!(
        std::fs::read_dir(&fresh).map_or(true, |mut d| d.next().is_none()),
        "a refused restore wrote nothing"
    );
    let (code, err) = ctxd_run(&restore_args(&backup, 1, &data(1), &initial));
    assert_eq!(code, 2, "restore into a used data dir: {err}");
    assert!(err.contains("not empty"), "{err}");
}
