//! `Kv.BatchCommands`: many `Get` and `Put` calls on one stream (the bundled Rust
//! client's path by default). Each call gets its own answer, by id, and exactly the
//! answer its unary form gives: its result, or the same typed error; a malformed call
//! fails alone and the stream goes on; many concurrent calls of one client all land.

mod common;

use common::{shard1, wait_for, TestCluster, WAIT};
use ctxstore::proto::kv_client::KvClient;
use ctxstore::proto::{
    batch_command, batch_command_result, BatchCommand, BatchCommandsRequest, GetRequest, PutRequest,
};
use ctxstore::Error;
use ctxstore_client::{Client, ClientOptions};
use std::collections::HashMap;

fn put(key: &[u8], value: Vec<u8>, request_id: &[u8]) -> PutRequest {
    PutRequest {
        key: key.to_vec().into(),
        value: value.into(),
        request_id: request_id.to_vec().into(),
        ..Default::default()
    }
}

fn get(key: &[u8]) -> GetRequest {
    GetRequest {
        key: key.to_vec().into(),
        ..Default::default()
    }
}

fn call(id: u64, cmd: Option<batch_command::Cmd>) -> BatchCommand {
    BatchCommand {
        id,
        traceparent: String::new(),
        cmd,
    }
}

/// The typed error of a status, as the client sees it.
fn typed(s: tonic::Status) -> String {
    format!("{:?}", Error::from(s))
}

/// Takes the next answer message into `results` (each call answered once).
async fn next(
    answers: &mut tonic::Streaming<ctxstore::proto::BatchCommandsResponse>,
    results: &mut HashMap<u64, batch_command_result::Result>,
) {
    let m = tokio::time::timeout(WAIT, answers.message())
        .await
        .expect("an answer in time")
        .expect("the stream is fine")
        .expect("the stream is open");
    assert!(!m.results.is_empty(), "an answer message carries results");
    for r in m.results {
        let prev = results.insert(r.id, r.result.expect("a result"));
        assert!(prev.is_none(), "call {} answered twice", r.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_on_a_stream_gets_the_answer_of_its_unary_form() {
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 1).await;
    cluster.wait_all_leaders().await;
    let leader = wait_for("the leader of shard 1", WAIT, || async {
        for (i, n) in cluster.nodes.iter().enumerate() {
            let s = n.as_ref().expect("running").status().await;
            if shard1(&s).role == "leader" {
                return Some(i);
            }
        }
        None
    })
    .await;
    let addr = format!("http://{}", cluster.addrs()[leader]);
    let mut unary = KvClient::connect(addr.clone()).await.expect("connect");
    let mut kv = KvClient::connect(addr).await.expect("connect");
    // Over `limits.max-value-size` (4 MiB), within the gRPC message limit.
    let oversized = vec![0u8; 5 << 20];
    let (tx, rx) = futures::channel::mpsc::unbounded();
    tx.unbounded_send(BatchCommandsRequest {
        commands: vec![
            call(1, Some(batch_command::Cmd::Get(get(b"missing")))),
            call(
                2,
                Some(batch_command::Cmd::Put(put(b"k", b"v1".to_vec(), b"r-1"))),
            ),
            call(3, None),
            call(
                4,
                Some(batch_command::Cmd::Put(put(b"", b"v".to_vec(), b"r-2"))),
            ),
            call(
                5,
                Some(batch_command::Cmd::Put(put(
                    b"big",
                    oversized.clone(),
                    b"r-3",
                ))),
            ),
        ],
    })
    .expect("send");
    let mut answers = kv.batch_commands(rx).await.expect("stream").into_inner();
    let mut results = HashMap::new();
    while results.len() < 5 {
        next(&mut answers, &mut results).await;
    }
    assert!(
        matches!(&results[&1], batch_command_result::Result::Get(g) if g.kv.is_none()),
        "a missing key reads as none: {:?}",
        results[&1]
    );
    let version = match &results[&2] {
        batch_command_result::Result::Put(p) => p.version,
        other => panic!("the put: {other:?}"),
    };
    let status = |r: &batch_command_result::Result| match r {
        batch_command_result::Result::Error(s) => tonic::Status::with_details(
            tonic::Code::from_i32(s.code),
            s.message.clone(),
            s.details.clone(),
        ),
        other => panic!("expected an error, got {other:?}"),
    };
    assert!(
        matches!(
            Error::from(status(&results[&3])),
            Error::InvalidArgument { .. }
        ),
        "a call naming nothing is refused: {:?}",
        results[&3]
    );
    // Bad input gets the error its unary form gets.
    let e = unary
        .put(put(b"", b"v".to_vec(), b"r-2"))
        .await
        .expect_err("an empty key is refused");
    assert_eq!(typed(status(&results[&4])), typed(e));
    let e = unary
        .put(put(b"big", oversized, b"r-3"))
        .await
        .expect_err("an oversized value is refused");
    assert_eq!(typed(status(&results[&5])), typed(e));
    // The stream goes on after the refused calls; a retry of the put with its request
    // id answers with the stored result, and the value is there.
    tx.unbounded_send(BatchCommandsRequest {
        commands: vec![
            call(
                6,
                Some(batch_command::Cmd::Put(put(b"k", b"v1".to_vec(), b"r-1"))),
            ),
            call(7, Some(batch_command::Cmd::Get(get(b"k")))),
        ],
    })
    .expect("send");
    while results.len() < 7 {
        next(&mut answers, &mut results).await;
    }
    assert!(
        matches!(&results[&6], batch_command_result::Result::Put(p) if p.version == version),
        "the retried put applies once: {:?}",
        results[&6]
    );
    match &results[&7] {
        batch_command_result::Result::Get(g) => {
            let kv = g.kv.as_ref().expect("the key exists");
            assert_eq!(kv.value.as_ref(), b"v1");
            assert_eq!(kv.version, version);
        }
        other => panic!("the get: {other:?}"),
    }
    assert!(
        unary
            .get(get(b"big"))
            .await
            .expect("get")
            .into_inner()
            .kv
            .is_none(),
        "the refused put changed nothing"
    );
    // Closing the request side ends the answers once every call has answered.
    drop(tx);
    assert!(tokio::time::timeout(WAIT, answers.message())
        .await
        .expect("the stream ends in time")
        .expect("cleanly")
        .is_none());
    cluster.shutdown().await;
}

/// 400 concurrent calls of one client, over 4 shards: every put lands once and every
/// get reads its own key's value, batched and unary alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_of_one_client_each_get_their_own_answer() {
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 4).await;
    cluster.wait_all_leaders().await;
    for batch_calls in [true, false] {
        let c = Client::connect_with(
            &cluster.addrs(),
            ClientOptions {
                batch_calls,
                ..Default::default()
            },
        )
        .await
        .expect("client");
        let tasks: Vec<_> = (0..400)
            .map(|i| {
                let c: Client = c.clone();
                tokio::spawn(async move {
                    let key = format!("{batch_calls}-k{i}");
                    let value = format!("value of {key}");
                    let w = c.put(key.clone(), value.clone()).await.expect("put");
                    let kv = c.get(key.clone()).await.expect("get").expect("exists");
                    assert_eq!(kv.value.as_ref(), value.as_bytes(), "{key}");
                    assert_eq!(kv.version, w.version, "{key}");
                    assert!(
                        c.get(format!("{key}-absent")).await.expect("get").is_none(),
                        "{key}-absent"
                    );
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("the task ran");
        }
    }
    cluster.shutdown().await;
}

/// Calls with large values never make a message over the gRPC limit (80 MiB)
/// together: 24 concurrent puts of 4.5 MiB (over `max-value-size`, so refused
/// without writing) each get their own `LimitExceeded`, and 32 concurrent gets of
/// one 3 MiB value each get the value; batched together they would make messages of
/// about 108 and 96 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_go_over_several_messages() {
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 1).await;
    cluster.wait_all_leaders().await;
    let c = cluster.client().await;
    let too_big = bytes::Bytes::from(vec![7u8; 4608 << 10]);
    let puts: Vec<_> = (0..24)
        .map(|i| {
            let (c, v) = (c.clone(), too_big.clone());
            tokio::spawn(async move { c.put(format!("big-{i}"), v).await })
        })
        .collect();
    for p in puts {
        let r = p.await.expect("the task ran");
        assert!(
            matches!(&r, Err(Error::LimitExceeded { limit, .. }) if limit == "max-value-size"),
            "an oversized value is refused by name: {r:?}"
        );
    }
    let value = bytes::Bytes::from(vec![9u8; 3 << 20]);
    c.put("large", value.clone()).await.expect("put");
    let gets: Vec<_> = (0..32)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.get("large").await })
        })
        .collect();
    for g in gets {
        let kv = g
            .await
            .expect("the task ran")
            .expect("get")
            .expect("exists");
        assert!(kv.value == value, "each get has the whole value");
    }
    cluster.shutdown().await;
}
