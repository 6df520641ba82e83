//! A tower layer that counts every gRPC call the node answers and times it to its
//! response headers (`grpc_server_handled_total`, `grpc_server_handling_seconds`, the
//! names go-grpc-prometheus uses, so existing dashboards work).
//!
//! The code is the `grpc-status` of the response headers (errors before any message
//! are trailers-only responses, with the status in the headers), else `OK`: a
//! streaming call that fails after its first message counts as `OK`. A call to a
//! service or method the node does not serve counts under `unknown`, so clients
//! cannot grow the label set.

use crate::metrics::{GrpcCode, GrpcMethod, Metrics};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::codegen::{http, BoxFuture, Service};

/// Wraps the node's gRPC services.
#[derive(Clone)]
pub(crate) struct GrpcMetricsLayer {
    metrics: Arc<Metrics>,
}

impl GrpcMetricsLayer {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service the layer makes.
#[derive(Clone)]
pub(crate) struct GrpcMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, RB> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            let code = match &r {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32),
                Err(_) => tonic::Code::Unknown,
            };
            let (service, method) = match code {
                tonic::Code::Unimplemented => ("unknown", "unknown"),
                _ => split_path(&path),
            };
            record(&metrics, service, method, code, started);
            r
        })
    }
}

/// Counts one call of `service`/`method` that ended with `code`, timed from `started`
/// (the layer's calls, and each call a `Kv.BatchCommands` stream carries).
pub(crate) fn record(
    metrics: &Metrics,
    service: &str,
    method: &str,
    code: tonic::Code,
    started: Instant,
) {
    let m = GrpcMethod {
        grpc_service: service.to_string(),
        grpc_method: method.to_string(),
    };
    metrics
        .grpc_seconds
        .get_or_create(&m)
        .observe(started.elapsed().as_secs_f64());
    metrics
        .grpc_handled
        .get_or_create(&GrpcCode {
            grpc_service: m.grpc_service,
            grpc_method: m.grpc_method,
            grpc_code: code_name(code).to_string(),
        })
        .inc();
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
pub(super) fn split_path(path: &str) -> (&str, &str) {
    let p = path.trim_start_matches('/');
    p.split_once('/').unwrap_or(("unknown", "unknown"))
}

/// The code's name as gRPC spells it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(split_path("/ctxstore.v1.Kv/Get"), ("ctxstore.v1.Kv", "Get"));
        assert_eq!(split_path("/nonsense"), ("unknown", "unknown"));
        assert_eq!(code_name(tonic::Code::Unavailable), "UNAVAILABLE");
    }
}
