//! The span of each gRPC call (`server::grpc_trace`; docs/operations.md, "Tracing and
//! logs"): its fields, the W3C `traceparent` it takes from the request metadata, and
//! the one the bundled client sends. A `tracing` layer in this process captures every
//! `grpc` span the test nodes close, with the fields recorded on it.

mod common;

use common::{wait_for, TestCluster, WAIT};
use ctxstore::proto::agent_context_client::AgentContextClient;
use ctxstore::proto::kv_client::KvClient;
use ctxstore::proto::{DeleteRequest, GetRequest, PutRequest, WatchModelsRequest};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Once;
use tonic::transport::Channel;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// A closed `grpc` span: field name → value as text.
type Fields = BTreeMap<String, String>;

/// Every `grpc` span closed so far in this process (the tests share it, so each
/// looks for its own trace ids or method).
static CLOSED: Mutex<Vec<Fields>> = Mutex::new(Vec::new());

/// The fields of a `grpc` span while it is open (kept in its extensions).
#[derive(Default)]
struct Recorded(Fields);

impl Visit for Recorded {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

/// Captures `grpc` spans into [`CLOSED`].
struct Capture;

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if attrs.metadata().name() != "grpc" {
            return;
        }
        let mut r = Recorded::default();
        attrs.record(&mut r);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(r);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            if let Some(r) = span.extensions_mut().get_mut::<Recorded>() {
                values.record(r);
            }
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            if let Some(r) = span.extensions_mut().remove::<Recorded>() {
                CLOSED.lock().push(r.0);
            }
        }
    }
}

/// Installs the capturing subscriber (once per process, before any node starts;
/// the harness's own log setup then finds a subscriber in place and does nothing).
fn capture_spans() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let targets = tracing_subscriber::filter::Targets::new()
            .with_target("ctxstore", tracing::Level::INFO);
        let subscriber = tracing_subscriber::registry().with(Capture.with_filter(targets));
        tracing::subscriber::set_global_default(subscriber).expect("the first subscriber");
    });
}

/// Waits until the closed spans include those `pick` selects and `done` accepts, and
/// returns them.
async fn wait_spans(
    what: &str,
    pick: impl Fn(&Fields) -> bool,
    done: impl Fn(&[Fields]) -> bool,
) -> Vec<Fields> {
    wait_for(what, WAIT, || {
        let spans: Vec<Fields> = CLOSED.lock().iter().filter(|f| pick(f)).cloned().collect();
        let ok = done(&spans);
        async move { ok.then_some(spans) }
    })
    .await
}

/// The closed spans of trace `trace_id`, once there are at least `n`.
async fn trace_spans(trace_id: &str, n: usize) -> Vec<Fields> {
    let id = trace_id.to_string();
    wait_spans(
        &format!("{n} closed spans of trace {trace_id}"),
        move |f| f.get("trace_id") == Some(&id),
        |s| s.len() >= n,
    )
    .await
}

fn field<'a>(f: &'a Fields, name: &str) -> &'a str {
    f.get(name)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no `{name}` in {f:?}"))
}

/// A request carrying `traceparent` (as given, valid or not).
fn traced<T>(msg: T, traceparent: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "traceparent",
        traceparent.parse().expect("a valid metadata value"),
    );
    req
}

async fn channel(cluster: &TestCluster) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.addrs()[0]))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

/// 1. A one-node cluster; a `Put` with a valid `traceparent`.
/// 2. The put succeeds, and the node's span for it has the header's trace id and
///    parent span id, the service and method, the shard, and status 0 (from the
///    trailers at the end of the body).
/// 3. A `Get` of an empty key with another valid `traceparent` fails with
///    InvalidArgument, and its span has status 3 (from the headers of a
///    trailers-only answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_span_of_a_call_takes_its_traceparent_and_status() {
    capture_spans();
    let cluster = TestCluster::start(1).await;
    let mut kv = KvClient::new(channel(&cluster).await);

    let trace = "0af7651916cd43dd8448eb211c80319c";
    let put = PutRequest {
        key: "traced".into(),
        value: "v".into(),
        ..Default::default()
    };
    kv.put(traced(put, &format!("00-{trace}-b7ad6b7169203331-01")))
        .await
        .expect("put");
    let spans = trace_spans(trace, 1).await;
    assert_eq!(spans.len(), 1, "{spans:?}");
    let s = &spans[0];
    assert_eq!(field(s, "parent_span_id"), "b7ad6b7169203331");
    assert_eq!(field(s, "rpc.service"), "ctxstore.v1.Kv");
    assert_eq!(field(s, "rpc.method"), "Put");
    assert_eq!(field(s, "rpc.grpc.status_code"), "0");
    assert!(
        field(s, "shard").parse::<u64>().expect("a shard id") > 0,
        "{s:?}"
    );

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let get = GetRequest::default();
    let err = kv
        .get(traced(get, &format!("00-{trace}-00f067aa0ba902b7-00")))
        .await
        .expect_err("an empty key is refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let spans = trace_spans(trace, 1).await;
    assert_eq!(field(&spans[0], "rpc.method"), "Get");
    assert_eq!(field(&spans[0], "rpc.grpc.status_code"), "3");
    // Stop the nodes before the process exits, so RocksDB closes in order.
    cluster.shutdown().await;
}

/// 1. A one-node cluster; `Delete` calls (a method no other test here uses) with
///    malformed `traceparent` values: another version, all-zero ids, uppercase, bad
///    lengths and separators, garbage.
/// 2. Every call succeeds, and each one's span has no trace id and status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_traceparent_is_ignored() {
    capture_spans();
    let cluster = TestCluster::start(1).await;
    let mut kv = KvClient::new(channel(&cluster).await);
    let malformed = [
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
        "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
        "garbage",
        "",
    ];
    for tp in malformed {
        let del = DeleteRequest {
            key: "absent".into(),
            ..Default::default()
        };
        kv.delete(traced(del, tp))
            .await
            .unwrap_or_else(|e| panic!("delete with traceparent {tp:?}: {e}"));
    }
    let spans = wait_spans(
        "the spans of the deletes",
        |f| f.get("rpc.method").map(String::as_str) == Some("Delete"),
        |s| s.len() >= malformed.len(),
    )
    .await;
    for s in &spans {
        assert!(!s.contains_key("trace_id"), "{s:?}");
        assert!(!s.contains_key("parent_span_id"), "{s:?}");
        assert_eq!(field(s, "rpc.grpc.status_code"), "0");
    }
    // Stop the nodes before the process exits, so RocksDB closes in order.
    cluster.shutdown().await;
}

/// 1. A one-node cluster; a `WatchModels` stream opened with a valid `traceparent`.
/// 2. The span stays open while the stream does.
/// 3. The client drops the stream: the span closes with status 1 (CANCELLED), as no
///    trailers were sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_call_dropped_by_its_client_is_cancelled() {
    capture_spans();
    let cluster = TestCluster::start(1).await;
    let mut agent = AgentContextClient::new(channel(&cluster).await);
    let trace = "5c3c9e4c8ab2d0f1a7e64b2f9d8c1e03";
    let req = traced(
        WatchModelsRequest::default(),
        &format!("00-{trace}-1111111111111111-01"),
    );
    let stream = agent.watch_models(req).await.expect("watch").into_inner();
    assert!(
        CLOSED
            .lock()
            .iter()
            .all(|f| f.get("trace_id").map(String::as_str) != Some(trace)),
        "the span closed while its stream is open"
    );
    drop(stream);
    let spans = trace_spans(trace, 1).await;
    assert_eq!(field(&spans[0], "rpc.service"), "ctxstore.v1.AgentContext");
    assert_eq!(field(&spans[0], "rpc.method"), "WatchModels");
    assert_eq!(field(&spans[0], "rpc.grpc.status_code"), "1");
    // Stop the nodes before the process exits, so RocksDB closes in order.
    cluster.shutdown().await;
}

/// 1. A three-node cluster; a client's first put teaches it shard 1's leader.
/// 2. Another client moves that leadership to another node; the wait ends when the
///    old leader's node knows the new leader.
/// 3. The first client puts again inside `in_trace(parent, …)`: the attempt at the
///    old leader is refused (`NotLeader`), and the redirect succeeds.
/// 4. Every attempt's span, on two nodes, carries the parent's trace id and span id;
///    the last ends with status 0, the others with errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_sends_one_trace_per_call_across_its_retries() {
    capture_spans();
    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    // The client learns the routing table on its first call (a loaded machine can
    // make that fetch time out, and the next call tries again), and the leader it
    // follows when a put is redirected. On a loaded machine an election may also
    // move the leadership after the cluster started: wait until the client's belief
    // and the nodes agree on one leader.
    let old = wait_for("the client to know shard 1's leader", WAIT, || async {
        client.put("retried", "1").await.ok()?;
        let old = cluster.wait_leader().await;
        let (shard, believed) = client.route(b"retried").await;
        (shard == 1 && believed.as_deref() == Some(cluster.addrs()[old].as_str())).then_some(old)
    })
    .await;

    let new = (old + 1) % 3;
    cluster
        .client()
        .await
        .transfer_shard_leader(1, new as u64 + 1)
        .await
        .expect("transfer");
    wait_for("the old leader to know the new one", WAIT, || async {
        let s = cluster.status(old).await;
        (common::shard1(&s).leader_id == new as u64 + 1).then_some(())
    })
    .await;

    let trace = "7d3c1a5e9b2f4c6d8e0a1b2c3d4e5f60";
    let parent = ctxstore_client::trace::TraceParent::parse(
        format!("00-{trace}-2222222222222222-01").as_bytes(),
    )
    .expect("valid");
    ctxstore_client::trace::in_trace(parent, client.put("retried", "2"))
        .await
        .expect("put after the transfer");
    // The successful attempt's span may close after the client has its answer.
    let spans = wait_spans(
        "the spans of both attempts",
        |f| f.get("trace_id").map(String::as_str) == Some(trace),
        |s| s.len() >= 2 && s.iter().any(|f| field(f, "rpc.grpc.status_code") == "0"),
    )
    .await;
    let ok = spans
        .iter()
        .filter(|s| field(s, "rpc.grpc.status_code") == "0")
        .count();
    assert_eq!(ok, 1, "{spans:?}");
    for s in &spans {
        assert_eq!(field(s, "rpc.method"), "Put");
        assert_eq!(field(s, "parent_span_id"), "2222222222222222");
    }
    // Stop the nodes before the process exits, so RocksDB closes in order.
    cluster.shutdown().await;
}
