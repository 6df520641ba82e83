//! The status listener: plaintext HTTP beside the gRPC port, for Prometheus and for
//! probes that cannot speak gRPC or TLS (docs/operations.md, "Metrics and health").
//!
//! - `/metrics`: the node's metrics as OpenMetrics text; the replicas' term, indexes
//!   and leaders are read at scrape time.
//! - `/livez`: 200 while the process answers; it never depends on a quorum.
//! - `/readyz`: 200 when the node serves and every replica it hosts knows a leader
//!   and has applied close to its commit index, else 503; `?verbose` lists each check.
//!
//! The same readiness drives the gRPC health service: `NOT_SERVING` until the node is
//! ready, and again once it stops.

use crate::node::ctx::NodeCtx;
use crate::proto::kv_server::KvServer;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic_health::server::HealthReporter;

/// A replica this far behind its commit index is not ready (it is catching up).
const MAX_APPLY_LAG: u64 = 1_000;

/// How often the gRPC health status follows readiness.
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);

/// One readiness check.
struct Check {
    name: &'static str,
    ok: bool,
    /// What failed, when it did.
    detail: String,
}

/// Whether the node is ready, check by check.
async fn readiness(ctx: &NodeCtx) -> Vec<Check> {
    let stopping = ctx.stopping.load(std::sync::atomic::Ordering::Relaxed);
    let serving = !ctx.cancel.is_cancelled() && !stopping;
    // From each replica's shared epoch, not by asking each replica: this runs every
    // HEALTH_INTERVAL, and a node with a thousand shards would otherwise send its
    // replicas two thousand status requests a second (waking none of them, but
    // running each actor).
    let mut leaderless = Vec::new();
    let mut lagging = Vec::new();
    ctx.for_each_peer(|p| {
        if p.epoch.leader_id() == 0 {
            leaderless.push(p.shard.0);
        }
        let (committed, applied) = (p.epoch.committed(), p.epoch.applied());
        if committed > applied + MAX_APPLY_LAG {
            lagging.push((p.shard.0, committed - applied));
        }
    });
    leaderless.sort_unstable();
    lagging.sort_unstable();
    let leaderless: Vec<String> = leaderless.iter().map(u64::to_string).collect();
    let lagging: Vec<String> = lagging
        .iter()
        .map(|(shard, behind)| format!("{shard} ({behind} behind)"))
        .collect();
    vec![
        Check {
            name: "auth",
            ok: ctx.auth.learned(),
            detail: "the cluster's auth settings are not known yet (the meta shard has not \
                     answered since this node started without them)"
                .into(),
        },
        Check {
            name: "serving",
            ok: serving,
            detail: if stopping {
                "the node is stopping (handing its leaderships away)".into()
            } else {
                "the node is shutting down".into()
            },
        },
        Check {
            name: "leaders",
            ok: leaderless.is_empty(),
            detail: format!("no known leader for shards {}", leaderless.join(", ")),
        },
        Check {
            name: "applied",
            ok: lagging.is_empty(),
            detail: format!(
                "applying far behind the commit index: shards {}",
                lagging.join(", ")
            ),
        },
    ]
}

/// Starts the status listener; it stops when the node is cancelled.
pub(crate) fn spawn(ctx: Arc<NodeCtx>, listener: TcpListener) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(ctx.clone());
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "status listener failed");
        }
    })
}

async fn metrics(State(ctx): State<Arc<NodeCtx>>) -> impl IntoResponse {
    let status = ctx.status().await;
    let m = &ctx.metrics;
    let text = {
        // One scrape at a time sets the per-shard values and encodes them.
        let _scrape = m.scrape.lock().await;
        m.clear_shards();
        for s in &status.shards {
            let label = crate::metrics::ShardLabel {
                shard: s.descriptor.as_ref().map_or(0, |d| d.shard_id),
            };
            let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            m.shard_has_leader
                .get_or_create(&label)
                .set(i64::from(s.leader_id != 0));
            m.shard_is_leader
                .get_or_create(&label)
                .set(i64::from(s.role == "leader"));
            m.shard_term.get_or_create(&label).set(gauge(s.term));
            m.shard_commit_index
                .get_or_create(&label)
                .set(gauge(s.commit_index));
            m.shard_applied_index
                .get_or_create(&label)
                .set(gauge(s.applied_index));
        }
        let used = ctx.engine.used_bytes();
        m.rocksdb_used_bytes
            .set(i64::try_from(used).unwrap_or(i64::MAX));
        let pending = ctx.engine.pending_compaction_bytes();
        m.rocksdb_pending_compaction_bytes
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        let proposals: u64 = status.shards.iter().map(|s| s.pending_proposals).sum();
        m.proposals_pending
            .set(i64::try_from(proposals).unwrap_or(i64::MAX));
        let hibernating = status.shards.iter().filter(|s| s.hibernating).count();
        m.replicas_hibernating
            .set(i64::try_from(hibernating).unwrap_or(i64::MAX));
        m.encode()
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

async fn readyz(
    State(ctx): State<Arc<NodeCtx>>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let checks = readiness(&ctx).await;
    let ready = checks.iter().all(|c| c.ok);
    let mut body = String::new();
    if q.contains_key("verbose") {
        for c in &checks {
            if c.ok {
                let _ = writeln!(body, "[+] {} ok", c.name);
            } else {
                let _ = writeln!(body, "[-] {} failed: {}", c.name, c.detail);
            }
        }
    }
    let _ = writeln!(body, "{}", if ready { "ok" } else { "not ready" });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body)
}

/// Keeps the gRPC health status (the server's overall status and `Kv`'s) equal to
/// the node's readiness until the node stops, then `NOT_SERVING`.
pub(crate) fn spawn_health(ctx: Arc<NodeCtx>, reporter: HealthReporter) {
    let cancel = ctx.cancel.clone();
    ctx.tracker.clone().spawn(async move {
        let mut last = None;
        loop {
            let ready = readiness(&ctx).await.iter().all(|c| c.ok);
            if last != Some(ready) {
                let status = if ready {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                };
                reporter.set_service_status("", status).await;
                if ready {
                    reporter
                        .set_serving::<KvServer<super::kv::KvService>>()
                        .await;
                } else {
                    reporter
                        .set_not_serving::<KvServer<super::kv::KvService>>()
                        .await;
                }
                last = Some(ready);
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
            }
        }
        reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        reporter
            .set_not_serving::<KvServer<super::kv::KvService>>()
            .await;
    });
}
