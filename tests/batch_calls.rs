//! `Kv.BatchCommands`: many `Get` and `Put` calls, and the agent calls of a step, on
//! one stream (the bundled Rust client's path by default). Each call gets its own
//! answer, by id, and exactly the answer its unary form gives: its result, or the same
//! typed error; a malformed call fails alone and the stream goes on; many concurrent
//! calls of one client all land.

mod common;

use common::{shard1, wait_for, TestCluster, WAIT};
use ctxstore::proto::agent_context_client::AgentContextClient;
use ctxstore::proto::kv_client::KvClient;
use ctxstore::proto::{
    batch_command, batch_command_result, read_request, AppendRequest, BatchCommand,
    BatchCommandsRequest, ChannelBlob, ChatMessage, Checkpoint, ConversationRef,
    GetCheckpointRequest, GetRequest, PendingWrite, PutCheckpointRequest, PutRequest,
    PutWritesRequest, ReadRequest, ThreadRef, TokenBudget,
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

/// `http://` and the address of shard 1's leader.
async fn leader_of_shard1(cluster: &TestCluster) -> String {
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
    format!("http://{}", cluster.addrs()[leader])
}

/// A client of `cluster`, sending its calls on batch streams or unary.
async fn client(cluster: &TestCluster, batch_calls: bool) -> Client {
    Client::connect_with(
        &cluster.addrs(),
        ClientOptions {
            batch_calls,
            ..Default::default()
        },
    )
    .await
    .expect("client")
}

/// Waits for the answers of a stream whose request side closed to end, cleanly.
async fn assert_ends(answers: &mut tonic::Streaming<ctxstore::proto::BatchCommandsResponse>) {
    assert!(tokio::time::timeout(WAIT, answers.message())
        .await
        .expect("the stream ends in time")
        .expect("cleanly")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_on_a_stream_gets_the_answer_of_its_unary_form() {
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 1).await;
    cluster.wait_all_leaders().await;
    let addr = leader_of_shard1(&cluster).await;
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
    assert_ends(&mut answers).await;
    cluster.shutdown().await;
}

/// The status an error result carries.
fn status_of(r: &batch_command_result::Result) -> tonic::Status {
    match r {
        batch_command_result::Result::Error(s) => tonic::Status::with_details(
            tonic::Code::from_i32(s.code),
            s.message.clone(),
            s.details.clone(),
        ),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn conversation(id: &str) -> Option<ConversationRef> {
    Some(ConversationRef {
        namespace: "batch".into(),
        id: id.into(),
    })
}

fn thread(id: &str) -> Option<ThreadRef> {
    Some(ThreadRef {
        thread: id.into(),
        ..Default::default()
    })
}

fn message(role: &str, content: &str) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: content.into(),
        token_count: 5,
        ..Default::default()
    }
}

fn append(conv: &str, contents: &[&str], request_id: &[u8]) -> AppendRequest {
    AppendRequest {
        conversation: conversation(conv),
        messages: contents.iter().map(|c| message("user", c)).collect(),
        request_id: request_id.to_vec().into(),
        ..Default::default()
    }
}

fn budget_read(conv: &str) -> ReadRequest {
    ReadRequest {
        conversation: conversation(conv),
        select: Some(read_request::Select::TokenBudget(TokenBudget {
            max_tokens: 12,
            include_pinned: true,
        })),
        ..Default::default()
    }
}

fn checkpoint(thread_id: &str, id: &str, request_id: &[u8]) -> PutCheckpointRequest {
    PutCheckpointRequest {
        thread: thread(thread_id),
        checkpoint: Some(Checkpoint {
            checkpoint_id: id.into(),
            channel_versions: [("state".to_string(), "1".to_string())].into(),
            ..Default::default()
        }),
        blobs: vec![ChannelBlob {
            channel: "state".into(),
            version: "1".into(),
            value: b"state one".to_vec().into(),
        }],
        request_id: request_id.to_vec().into(),
        ..Default::default()
    }
}

/// The agent calls of a step on one stream, against their unary forms on the same
/// node: the same results, the same typed errors for bad input, and a retried append
/// (same request id) that applies once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_calls_on_a_stream_get_the_answers_of_their_unary_forms() {
    use batch_command::Cmd;
    use batch_command_result::Result as Answer;
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 1).await;
    cluster.wait_all_leaders().await;
    let addr = leader_of_shard1(&cluster).await;
    let mut unary = AgentContextClient::connect(addr.clone())
        .await
        .expect("connect");
    let mut kv = KvClient::connect(addr).await.expect("connect");
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let mut no_messages = append("c", &[], b"a-2");
    no_messages.messages.clear();
    let mut no_checkpoint = checkpoint("t", "cp-2", b"p-2");
    no_checkpoint.checkpoint = None;
    tx.unbounded_send(BatchCommandsRequest {
        commands: vec![
            call(1, Some(Cmd::Append(append("c", &["one", "two"], b"a-1")))),
            call(2, Some(Cmd::PutCheckpoint(checkpoint("t", "cp-1", b"p-1")))),
            call(3, Some(Cmd::Append(no_messages.clone()))),
            call(4, Some(Cmd::PutCheckpoint(no_checkpoint.clone()))),
        ],
    })
    .expect("send");
    let mut answers = kv.batch_commands(rx).await.expect("stream").into_inner();
    let mut results = HashMap::new();
    while results.len() < 4 {
        next(&mut answers, &mut results).await;
    }
    let appended = match &results[&1] {
        Answer::Append(a) => *a,
        other => panic!("the append: {other:?}"),
    };
    assert_eq!((appended.first_seq, appended.last_seq), (1, 2));
    assert!(!appended.replayed);
    assert!(
        matches!(&results[&2], Answer::PutCheckpoint(p) if p.version > 0),
        "the checkpoint: {:?}",
        results[&2]
    );
    let e = unary
        .append(no_messages)
        .await
        .expect_err("an append without messages is refused");
    assert_eq!(typed(status_of(&results[&3])), typed(e));
    let e = unary
        .put_checkpoint(no_checkpoint)
        .await
        .expect_err("a checkpoint put without a checkpoint is refused");
    assert_eq!(typed(status_of(&results[&4])), typed(e));

    // Reads, a retry and the writes of a task, after the writes above answered.
    let writes = PutWritesRequest {
        thread: thread("t"),
        checkpoint_id: "cp-1".into(),
        task_id: "task".into(),
        writes: vec![PendingWrite {
            channel: "out".into(),
            value: b"w".to_vec().into(),
            ..Default::default()
        }],
        request_id: b"w-1".to_vec().into(),
        ..Default::default()
    };
    tx.unbounded_send(BatchCommandsRequest {
        commands: vec![
            call(5, Some(Cmd::Append(append("c", &["one", "two"], b"a-1")))),
            call(6, Some(Cmd::PutWrites(writes))),
        ],
    })
    .expect("send");
    while results.len() < 6 {
        next(&mut answers, &mut results).await;
    }
    match &results[&5] {
        Answer::Append(a) => assert_eq!(
            a, &appended,
            "a retry under the same request id answers with the stored result"
        ),
        other => panic!("the retried append: {other:?}"),
    }
    assert!(
        matches!(&results[&6], Answer::PutWrites(_)),
        "the writes: {:?}",
        results[&6]
    );
    let latest = GetCheckpointRequest {
        thread: thread("t"),
        ..Default::default()
    };
    tx.unbounded_send(BatchCommandsRequest {
        commands: vec![
            call(7, Some(Cmd::Read(budget_read("c")))),
            call(8, Some(Cmd::GetCheckpoint(latest.clone()))),
        ],
    })
    .expect("send");
    while results.len() < 8 {
        next(&mut answers, &mut results).await;
    }
    let read = unary
        .read(budget_read("c"))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(
        read.messages.len(),
        2,
        "both messages fit the budget: {read:?}"
    );
    assert_eq!(
        read.info.as_ref().map(|i| i.message_count),
        Some(2),
        "the retried append applied once: {read:?}"
    );
    assert!(
        matches!(&results[&7], Answer::Read(r) if *r == read),
        "the batched read answers as the unary one: {:?}",
        results[&7]
    );
    let tuple = unary
        .get_checkpoint(latest)
        .await
        .expect("get checkpoint")
        .into_inner();
    let t = tuple.tuple.as_ref().expect("the checkpoint exists");
    assert_eq!(t.pending_writes.len(), 1, "with the task's write: {t:?}");
    assert!(
        matches!(&results[&8], Answer::GetCheckpoint(g) if *g == tuple),
        "the batched checkpoint read answers as the unary one: {:?}",
        results[&8]
    );
    drop(tx);
    assert_ends(&mut answers).await;
    cluster.shutdown().await;
}

/// Agent steps of 48 concurrent tasks of one client over 4 shards, batched and unary
/// alike: each conversation holds exactly its own task's messages, in order, and each
/// thread's latest checkpoint is its task's last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_agent_steps_of_one_client_each_land_once() {
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 4).await;
    cluster.wait_all_leaders().await;
    for batch_calls in [true, false] {
        let c = client(&cluster, batch_calls).await;
        let tasks: Vec<_> = (0..48)
            .map(|i| {
                let c: Client = c.clone();
                tokio::spawn(async move {
                    let conv = format!("{batch_calls}-c{i}");
                    let th = format!("{batch_calls}-t{i}");
                    for step in 0..3u64 {
                        let said = format!("{conv} step {step}");
                        let a = append(&conv, &[said.as_str()], b"");
                        let r = c.append(a).await.expect("append");
                        assert_eq!(r.first_seq, step + 1, "{conv}");
                        let cp = checkpoint(&th, &format!("cp-{step}"), b"");
                        c.put_checkpoint(cp).await.expect("checkpoint");
                    }
                    let read = c.read(budget_read(&conv)).await.expect("read");
                    let contents: Vec<_> =
                        read.messages.iter().map(|m| m.content.clone()).collect();
                    assert_eq!(
                        contents,
                        [1u64, 2].map(|s| format!("{conv} step {s}")),
                        "the newest messages within the budget, in order"
                    );
                    let latest = c
                        .get_checkpoint(GetCheckpointRequest {
                            thread: thread(&th),
                            ..Default::default()
                        })
                        .await
                        .expect("get checkpoint")
                        .expect("exists");
                    assert_eq!(
                        latest.checkpoint.as_ref().map(|c| c.checkpoint_id.as_str()),
                        Some("cp-2"),
                        "{th}"
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

/// 400 concurrent calls of one client, over 4 shards: every put lands once and every
/// get reads its own key's value, batched and unary alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_of_one_client_each_get_their_own_answer() {
    let cluster = TestCluster::start_with(3, |c| c.initial_shards = 4).await;
    cluster.wait_all_leaders().await;
    for batch_calls in [true, false] {
        let c = client(&cluster, batch_calls).await;
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
