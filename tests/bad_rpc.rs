//! Bad-input campaign against real `ctxd` processes: every RPC gets random bytes,
//! bit-flipped valid requests, empty and huge messages, invalid UTF-8 where strings
//! are expected, wrong shard ids and epochs, truncated client streams and a corrupted
//! snapshot chunk. Every server must keep running and answering, and the data written
//! before the campaign must be unchanged. Prints the campaign's table.

mod common;

use common::procs::start_cluster;
use common::{wait_for, WAIT};
use ctxstore::proto::raft_client::RaftClient;
use ctxstore::proto::{
    AddMemberRequest, AppendRequest, ChannelBlob, ChatMessage, Checkpoint, CompareAndSwapRequest,
    ConversationRef, GetRequest, PutCheckpointRequest, PutRequest, RaftEnvelope, ReadRequest,
    RequestHeader, ScanRequest, SnapshotChunk, ThreadRef,
};
use ctxstore_client::Client;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

/// Passes message bytes through unchanged, so any bytes can be sent as a request.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

const UNARY: [&str; 46] = [
    "/ctxstore.v1.Kv/Get",
    "/ctxstore.v1.Kv/Put",
    "/ctxstore.v1.Kv/Delete",
    "/ctxstore.v1.Kv/CompareAndSwap",
    "/ctxstore.v1.Kv/Batch",
    "/ctxstore.v1.Kv/Scan",
    "/ctxstore.v1.Lease/Grant",
    "/ctxstore.v1.Lease/Revoke",
    "/ctxstore.v1.Lease/Info",
    "/ctxstore.v1.Queue/Enqueue",
    "/ctxstore.v1.Queue/Lease",
    "/ctxstore.v1.Queue/Ack",
    "/ctxstore.v1.Queue/Nack",
    "/ctxstore.v1.Queue/Extend",
    "/ctxstore.v1.Queue/Stats",
    "/ctxstore.v1.Cluster/Status",
    "/ctxstore.v1.Cluster/AddMember",
    "/ctxstore.v1.Cluster/RemoveMember",
    "/ctxstore.v1.Cluster/GetRoutingTable",
    "/ctxstore.v1.Cluster/Heartbeat",
    "/ctxstore.v1.AgentContext/Append",
    "/ctxstore.v1.AgentContext/Read",
    "/ctxstore.v1.AgentContext/Trim",
    "/ctxstore.v1.AgentContext/Compact",
    "/ctxstore.v1.AgentContext/DeleteConversation",
    "/ctxstore.v1.AgentContext/GetConversation",
    "/ctxstore.v1.AgentContext/SetConversationMetadata",
    "/ctxstore.v1.AgentContext/ListConversations",
    "/ctxstore.v1.AgentContext/PutCheckpoint",
    "/ctxstore.v1.AgentContext/PutWrites",
    "/ctxstore.v1.AgentContext/GetCheckpoint",
    "/ctxstore.v1.AgentContext/ListCheckpoints",
    "/ctxstore.v1.AgentContext/PruneCheckpoints",
    "/ctxstore.v1.AgentContext/DeleteThread",
    "/ctxstore.v1.AgentContext/PutModel",
    "/ctxstore.v1.AgentContext/GetModel",
    "/ctxstore.v1.AgentContext/ListModels",
    "/ctxstore.v1.AgentContext/DeleteModel",
    "/ctxstore.v1.AgentContext/ListCheckpointNamespaces",
    "/ctxstore.v1.AgentContext/ListAllCheckpoints",
    "/ctxstore.v1.AgentContext/ListThreads",
    "/ctxstore.v1.AgentContext/DeleteForRuns",
    "/ctxstore.v1.AgentContext/CopyThread",
    "/ctxstore.v1.Auth/Change",
    "/ctxstore.v1.Auth/Get",
    "/ctxstore.v1.Auth/WhoAmI",
];
const STREAMING: [&str; 3] = [
    "/ctxstore.v1.Raft/Send",
    "/ctxstore.v1.Raft/SendSnapshot",
    "/ctxstore.v1.Lease/KeepAlive",
];

/// Outcomes per RPC: (inputs, answered OK, answered with an error status).
type Table = BTreeMap<String, (u64, u64, u64)>;

/// A ready raw gRPC client for `path`.
async fn raw_client(
    ch: &Channel,
    path: &str,
) -> Result<(tonic::client::Grpc<Channel>, PathAndQuery), Status> {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path =
        PathAndQuery::try_from(path.to_string()).map_err(|e| Status::internal(e.to_string()))?;
    Ok((grpc, path))
}

/// `call`'s result, or `DeadlineExceeded` (the call abandoned) after `within`.
async fn within<T>(
    within: Duration,
    call: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(within, call)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("abandoned")))
}

async fn unary(ch: &Channel, path: &str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let (mut grpc, path) = raw_client(ch, path).await?;
    within(Duration::from_secs(5), async move {
        grpc.unary(tonic::Request::new(body), path, RawCodec)
            .await
            .map(|r| r.into_inner())
    })
    .await
}

/// A client stream of `msgs`; with `truncate`, the stream stalls after them and the
/// call is abandoned after 300 ms (the server sees the stream cut mid-way).
async fn streaming(
    ch: &Channel,
    path: &str,
    msgs: Vec<Vec<u8>>,
    truncate: bool,
) -> Result<(), Status> {
    let (mut grpc, path) = raw_client(ch, path).await?;
    let items = futures::stream::iter(msgs);
    if truncate {
        let stalled = futures::StreamExt::chain(items, futures::stream::pending());
        let call = grpc.client_streaming(tonic::Request::new(stalled), path, RawCodec);
        return within(
            Duration::from_millis(300),
            async move { call.await.map(|_| ()) },
        )
        .await;
    }
    let call = grpc.client_streaming(tonic::Request::new(items), path, RawCodec);
    within(
        Duration::from_secs(5),
        async move { call.await.map(|_| ()) },
    )
    .await
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = rng.random_range(0..max);
    (0..n).map(|_| rng.random()).collect()
}

/// Valid requests for each unary RPC, to be mutated.
fn seeds() -> BTreeMap<&'static str, Vec<u8>> {
    let header = Some(RequestHeader {
        shard_id: 0,
        conf_ver: 1,
        ring_ver: 1,
        ..Default::default()
    });
    let mut m = BTreeMap::new();
    m.insert(
        "/ctxstore.v1.Kv/Get",
        GetRequest {
            header,
            key: b"fuzz-key".to_vec().into(),
            stale: false,
        }
        .encode_to_vec(),
    );
    m.insert(
        "/ctxstore.v1.Kv/Put",
        PutRequest {
            header,
            key: b"fuzz-key".to_vec().into(),
            value: b"fuzz-value".to_vec().into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    m.insert(
        "/ctxstore.v1.Kv/CompareAndSwap",
        CompareAndSwapRequest {
            header,
            key: b"fuzz-key".to_vec().into(),
            expected_version: 3,
            value: b"v".to_vec().into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    m.insert(
        "/ctxstore.v1.Kv/Scan",
        ScanRequest {
            header,
            prefix: b"{t}".to_vec().into(),
            limit: 10,
            ..Default::default()
        }
        .encode_to_vec(),
    );
    m.insert(
        "/ctxstore.v1.Cluster/AddMember",
        AddMemberRequest {
            shard_id: Some(1),
            node_id: 77,
            addr: "127.0.0.1:1".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let conv = Some(ConversationRef {
        namespace: "fuzz".into(),
        id: "c".into(),
    });
    m.insert(
        "/ctxstore.v1.AgentContext/Append",
        AppendRequest {
            conversation: conv.clone(),
            messages: vec![ChatMessage {
                role: "user".into(),
                content: "hello".into(),
                token_count: 2,
                metadata: [("tool_call_id".to_string(), "a,b".to_string())].into(),
                ..Default::default()
            }],
            expected_last_seq: Some(0),
            idempotency_key: "k".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    m.insert(
        "/ctxstore.v1.AgentContext/Read",
        ReadRequest {
            conversation: conv,
            select: Some(ctxstore::proto::read_request::Select::LastN(5)),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    m.insert(
        "/ctxstore.v1.AgentContext/PutCheckpoint",
        PutCheckpointRequest {
            thread: Some(ThreadRef {
                thread: "fuzz".into(),
                ns: String::new(),
                namespace: String::new(),
            }),
            checkpoint: Some(Checkpoint {
                checkpoint_id: "0001".into(),
                channel_versions: [("a".to_string(), "1".to_string())].into(),
                ..Default::default()
            }),
            blobs: vec![ChannelBlob {
                channel: "a".into(),
                version: "1".into(),
                value: b"v".to_vec().into(),
            }],
            ..Default::default()
        }
        .encode_to_vec(),
    );
    m
}

fn flip_bits(rng: &mut StdRng, mut b: Vec<u8>) -> Vec<u8> {
    if b.is_empty() {
        return b;
    }
    for _ in 0..rng.random_range(1..4) {
        let i = rng.random_range(0..b.len());
        b[i] ^= 1 << rng.random_range(0..8);
    }
    if rng.random_bool(0.3) {
        let cut = rng.random_range(0..b.len());
        b.truncate(cut);
    }
    b
}

/// The campaign: real processes, a fixed seed (printed), every kind of bad input.
/// What the campaign found: per input kind (tried, answered OK, answered with an
/// error), and how many answers had each status code.
#[derive(Default)]
struct Outcomes {
    table: Table,
    codes: BTreeMap<String, u64>,
}

impl Outcomes {
    fn record<T>(&mut self, name: &str, r: &Result<T, Status>) {
        let e = self.table.entry(name.to_string()).or_default();
        e.0 += 1;
        match r {
            Ok(_) => e.1 += 1,
            Err(s) => {
                e.2 += 1;
                *self.codes.entry(format!("{:?}", s.code())).or_default() += 1;
            }
        }
    }

    fn print(&self) -> u64 {
        eprintln!("{:<40} {:>7} {:>6} {:>7}", "input", "tried", "ok", "errors");
        let mut total = 0;
        for (name, (n, ok, err)) in &self.table {
            total += n;
            eprintln!("{name:<40} {n:>7} {ok:>6} {err:>7}");
        }
        eprintln!("status codes of the errors: {:?}", self.codes);
        total
    }
}

/// Data the campaign must not change: 50 keys and a conversation of 5 messages.
struct Protected {
    keys: BTreeMap<String, (String, u64)>,
    conversation: ConversationRef,
}

async fn protect(client: &Client) -> Protected {
    let mut keys = BTreeMap::new();
    for i in 0..50 {
        let k = format!("keep-{i:03}");
        let r = wait_for("a write", WAIT, || {
            let (c, k) = (client.clone(), k.clone());
            async move { c.put(k, format!("value-{i}")).await.ok() }
        })
        .await;
        keys.insert(k, (format!("value-{i}"), r.version));
    }
    let conversation = ConversationRef {
        namespace: "keep".into(),
        id: "conversation".into(),
    };
    wait_for("a conversation append", WAIT, || {
        let (c, kept) = (client.clone(), conversation.clone());
        async move {
            c.append(AppendRequest {
                conversation: Some(kept),
                messages: (0..5)
                    .map(|i| ChatMessage {
                        role: "user".into(),
                        content: format!("kept {i}"),
                        token_count: 1,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .await
            .ok()
        }
    })
    .await;
    Protected { keys, conversation }
}

/// What of `p` changed, read through `client`.
async fn changed(client: &Client, p: &Protected) -> Vec<String> {
    let mut changed = Vec::new();
    for (k, (v, version)) in &p.keys {
        let got = wait_for("a read after the campaign", WAIT, || {
            let (c, k) = (client.clone(), k.clone());
            async move { c.get(k).await.ok() }
        })
        .await;
        match got {
            Some(kv) if kv.value.as_ref() == v.as_bytes() && kv.version == *version => {}
            other => changed.push(format!("{k}: {other:?}")),
        }
    }
    let conv_after = wait_for("a conversation read after the campaign", WAIT, || {
        let (c, kept) = (client.clone(), p.conversation.clone());
        async move {
            c.read(ReadRequest {
                conversation: Some(kept),
                ..Default::default()
            })
            .await
            .ok()
        }
    })
    .await;
    let msgs: Vec<(u64, String)> = conv_after
        .messages
        .iter()
        .map(|m| (m.seq, m.content.clone()))
        .collect();
    if msgs
        != (0..5)
            .map(|i| (i + 1, format!("kept {i}")))
            .collect::<Vec<_>>()
    {
        changed.push(format!("conversation keep/conversation: {msgs:?}"));
    }
    changed
}

/// Sends every bad input over `chans` (round robin).
async fn campaign(rng: &mut StdRng, chans: &[Channel]) -> Outcomes {
    let mut out = Outcomes::default();
    let seeds = seeds();
    // 1. Every unary RPC: random bytes, empty, mutated valid requests, a huge message.
    for path in UNARY {
        for round in 0..60 {
            let ch = &chans[round % chans.len()];
            let body = match round {
                0 => Vec::new(),
                1 => vec![0u8; 5 << 20],
                r if r % 2 == 0 => random_bytes(rng, 256),
                _ => match seeds.get(path) {
                    Some(s) => flip_bits(rng, s.clone()),
                    None => random_bytes(rng, 64),
                },
            };
            let r = unary(ch, path, body).await;
            out.record(path, &r);
        }
    }
    // 2. Invalid UTF-8 in a string field: AddMember.addr (field 3).
    let mut bad_utf8 = vec![0x08, 0x01, 0x10, 0x05, 0x1a, 0x02, 0xff, 0xfe];
    for ch in chans {
        let r = unary(ch, "/ctxstore.v1.Cluster/AddMember", bad_utf8.clone()).await;
        out.record("invalid UTF-8 (AddMember.addr)", &r);
        bad_utf8.push(0xc3);
    }
    // 3. Wrong shard ids and epochs.
    for (i, ch) in chans.iter().enumerate() {
        for (shard, conf_ver, ring_ver) in [(999, 0, 0), (2, 77, 77), (u64::MAX, 1, 1), (3, 0, 9)] {
            let req = GetRequest {
                header: Some(RequestHeader {
                    shard_id: shard,
                    conf_ver,
                    ring_ver,
                    ..Default::default()
                }),
                key: format!("keep-{i:03}").into_bytes().into(),
                stale: false,
            };
            let r = unary(ch, "/ctxstore.v1.Kv/Get", req.encode_to_vec()).await;
            out.record("wrong shard / epoch (Kv/Get)", &r);
        }
    }
    // 4. Streams: random batches, truncated streams, a corrupted snapshot chunk.
    for path in STREAMING {
        for round in 0..20 {
            let ch = &chans[round % chans.len()];
            let msgs: Vec<Vec<u8>> = (0..rng.random_range(1..4))
                .map(|_| random_bytes(rng, 512))
                .collect();
            let r = streaming(ch, path, msgs, round % 3 == 0).await;
            out.record(path, &r);
        }
    }
    for ch in chans {
        let chunk = SnapshotChunk {
            envelope: Some(RaftEnvelope {
                shard_id: 1,
                from_node: 2,
                to_node: 1,
                message: random_bytes(rng, 128).into(),
                ..Default::default()
            }),
            from_addr: "127.0.0.1:1".into(),
            data: random_bytes(rng, 4096).into(),
            last: true,
            checksum: 12345,
        };
        let r = RaftClient::new(ch.clone())
            .send_snapshot(futures::stream::iter(vec![chunk]))
            .await;
        out.record("corrupted snapshot chunk", &r);
    }
    out
}

fn seed() -> u64 {
    let seed: u64 = std::env::var("BAD_INPUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00c0_ffee);
    eprintln!("bad-input campaign seed {seed}");
    seed
}

/// Prints the campaign's table, then checks that every process is alive and the
/// protected data unchanged (read through `client`).
async fn assert_survived(
    out: &Outcomes,
    procs: &mut [common::procs::Ctxd],
    client: &Client,
    protected: &Protected,
) {
    let crashes = procs
        .iter_mut()
        .map(|p| p.exited())
        .filter(|dead| *dead)
        .count();
    let changed = changed(client, protected).await;
    let total = out.print();
    eprintln!(
        "inputs tried: {total}; server crashes: {crashes}; protected keys changed: {}",
        changed.len()
    );
    assert_eq!(crashes, 0, "a server process died");
    assert!(changed.is_empty(), "data changed: {changed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_campaign_crashes_nothing_and_changes_no_data() {
    let mut rng = StdRng::seed_from_u64(seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut procs, addrs) = start_cluster(dir.path(), 3, &["--initial-shards", "4"]);
    let client = Client::connect(&addrs).await.expect("client");
    let protected = protect(&client).await;
    let chans: Vec<Channel> = addrs
        .iter()
        .map(|a| {
            tonic::transport::Endpoint::from_shared(format!("http://{a}"))
                .expect("endpoint")
                .connect_lazy()
        })
        .collect();
    let out = campaign(&mut rng, &chans).await;
    assert_survived(&out, &mut procs, &client, &protected).await;
    // The servers still serve.
    client.put("after-campaign", "ok").await.expect("put after");
    for a in &addrs {
        client
            .node_status(a)
            .await
            .expect("status after the campaign");
    }
}

/// The same campaign on a mutual-TLS cluster with auth on, from a caller that
/// trusts the CA but has no token and no certificate: every input is refused with
/// UNAUTHENTICATED (or, for the node-only calls, PERMISSION_DENIED) before the
/// server decodes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_on_an_unauthenticated_campaign_is_refused_whole() {
    use ctxstore_client::proto::{auth_change::Op, AuthChange, UserRole};
    let mut rng = StdRng::seed_from_u64(seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = ctxstore::pki::DevPki::write(&dir.path().join("tls")).expect("pki");
    let tls_flags: Vec<String> = [
        "--initial-shards".to_string(),
        "4".into(),
        "--ca-path".into(),
        pki.ca.display().to_string(),
        "--cert-path".into(),
        pki.node_cert.display().to_string(),
        "--key-path".into(),
        pki.node_key.display().to_string(),
        "--peer-cert-allowed-cn".into(),
        ctxstore::pki::DEV_NODE_CN.into(),
    ]
    .into();
    let (mut procs, addrs) =
        common::procs::start_cluster_with(dir.path(), 3, false, |_| tls_flags.clone());
    let connect = |token: Option<String>| {
        Client::connect_with(
            &addrs,
            ctxstore_client::ClientOptions {
                tls: Some(pki.client()),
                token,
                // An auth change waits for every up node (up to 5 s on the server).
                timeout: Duration::from_secs(30),
                ..Default::default()
            },
        )
    };
    let setup = connect(None).await.expect("client");
    wait_for("the cluster to serve", WAIT, || {
        let c = setup.clone();
        async move { c.put("ready", "1").await.ok() }
    })
    .await;
    // A change retried after a lost answer (a meta election while the cluster
    // starts) applies once: its request id says so.
    let change = |op: Op| {
        let setup = setup.clone();
        async move {
            setup
                .auth_change(AuthChange { op: Some(op) })
                .await
                .expect("auth change")
        }
    };
    change(Op::AddUser("root".into())).await;
    change(Op::GrantRole(UserRole {
        user: "root".into(),
        role: "root".into(),
    }))
    .await;
    let token = change(Op::CreateToken("root".into())).await.token;
    change(Op::SetEnabled(true)).await;
    let root = connect(Some(token)).await.expect("root client");
    let protected = protect(&root).await;
    let anonymous = ctxstore_client::ClientTls::new(&pki.ca);
    let chans: Vec<Channel> = addrs
        .iter()
        .map(|a| {
            ctxstore_api::tls::endpoint(a, Some(&anonymous))
                .expect("endpoint")
                .connect_lazy()
        })
        .collect();
    let out = campaign(&mut rng, &chans).await;
    assert_survived(&out, &mut procs, &root, &protected).await;
    let served: Vec<&String> = out
        .table
        .iter()
        .filter(|(_, (_, ok, _))| *ok > 0)
        .map(|(name, _)| name)
        .collect();
    assert!(served.is_empty(), "served without credentials: {served:?}");
    let others: Vec<(&String, &u64)> = out
        .codes
        .iter()
        .filter(|(code, _)| !matches!(code.as_str(), "Unauthenticated" | "PermissionDenied"))
        .collect();
    assert!(others.is_empty(), "refused other than by auth: {others:?}");
    root.put("after-campaign", "ok").await.expect("put after");
}
