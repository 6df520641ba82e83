//! A tower layer that opens one `tracing` span per gRPC call the node answers (INFO,
//! named `grpc`), so every record a handler logs carries the call's service, method
//! and shard, and a call can be followed from the client that made it.
//!
//! Fields: `rpc.service` and `rpc.method` (from the path), `shard` (recorded by the
//! request path when it resolves the local replica: `RequestPath::replica`),
//! `rpc.grpc.status_code` (from the response headers of a trailers-only answer,
//! else from the trailers at the end of the body, unary and streaming alike; `1`,
//! CANCELLED, when the call is dropped before its trailers: the client went away),
//! and `trace_id` and `parent_span_id` from a W3C `traceparent` in the request
//! metadata. A malformed `traceparent` is ignored. The span stays open until the
//! response body ends, so a watch's span lasts as long as the watch.
//!
//! Cost per call: the span (nothing when INFO is filtered out for this target), a
//! header lookup, and no allocation of its own (no boxed future, no copied path).

use ctxstore_api::trace::{TraceParent, TRACEPARENT};
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tonic::codegen::{http, Service};
use tracing::field::Empty;
use tracing::Span;

/// Wraps the node's gRPC services.
#[derive(Clone, Copy, Default)]
pub(crate) struct GrpcTraceLayer;

impl<S> tower_layer::Layer<S> for GrpcTraceLayer {
    type Service = GrpcTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTrace { inner }
    }
}

/// The service the layer makes.
#[derive(Clone)]
pub(crate) struct GrpcTrace<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for GrpcTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = http::Response<TracedBody<RB>>;
    type Error = S::Error;
    type Future = TracedCall<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let span = call_span(&req);
        let call = span.in_scope(|| self.inner.call(req));
        TracedCall { call, span }
    }
}

/// The span of one call, with the fields known from its request.
fn call_span<B>(req: &http::Request<B>) -> Span {
    let parent = req
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| TraceParent::parse(v.as_bytes()));
    span_for(req.uri().path(), parent)
}

/// The span of a call to `path` (`/pkg.Service/Method`) in trace `parent`: the
/// layer's calls, and each call a `Kv.BatchCommands` stream carries.
pub(crate) fn span_for(path: &str, parent: Option<TraceParent>) -> Span {
    let (service, method) = super::grpc_metrics::split_path(path);
    #[cfg(not(feature = "otel"))]
    let span = tracing::info_span!(
        "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = Empty,
        shard = Empty,
        trace_id = parent.map(|p| display(p.trace_id)),
        parent_span_id = parent.map(|p| display(p.parent_id)),
    );
    // The same, plus the OpenTelemetry span name, kind and RPC system, and the
    // caller's span as the OpenTelemetry parent.
    #[cfg(feature = "otel")]
    let span = {
        let span = tracing::info_span!(
            "grpc",
            otel.name = path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            shard = Empty,
            trace_id = parent.map(|p| display(p.trace_id)),
            parent_span_id = parent.map(|p| display(p.parent_id)),
        );
        if let Some(p) = &parent {
            crate::otel::set_remote_parent(&span, p);
        }
        span
    };
    span
}

/// Records the call's gRPC status code on its span.
pub(crate) fn record_status(span: &Span, code: i32) {
    span.record("rpc.grpc.status_code", code);
}

/// The `grpc-status` in `headers`, if there is one.
fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

pin_project_lite::pin_project! {
    /// The inner service's future, polled inside the call's span.
    pub(crate) struct TracedCall<F> {
        #[pin]
        call: F,
        // The call's span until the response is ready, then `Span::none()`.
        span: Span,
    }

    impl<F> PinnedDrop for TracedCall<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before its response: the client cancelled while the handler
            // ran (after the response, the span is gone and this does nothing).
            record_status(this.project().span, tonic::Code::Cancelled as i32);
        }
    }
}

impl<F, RB, E> Future for TracedCall<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = Result<http::Response<TracedBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let r = {
            let _in = this.span.enter();
            ready!(this.call.poll(cx))
        };
        let span = std::mem::replace(this.span, Span::none());
        Poll::Ready(match r {
            Ok(resp) => {
                // A trailers-only answer (an error before any message) has its status
                // in the headers; any other gets it in the trailers.
                let status = grpc_status(resp.headers());
                if let Some(code) = status {
                    record_status(&span, code);
                }
                Ok(resp.map(|inner| TracedBody {
                    inner,
                    span,
                    recorded: status.is_some(),
                }))
            }
            Err(e) => {
                record_status(&span, tonic::Code::Unknown as i32);
                Err(e)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// The response body, which records the status when the trailers pass and keeps
    /// the span open until the body is dropped.
    pub(crate) struct TracedBody<B> {
        #[pin]
        inner: B,
        span: Span,
        // Whether the span has its status code.
        recorded: bool,
    }

    impl<B> PinnedDrop for TracedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.recorded {
                // Dropped before its trailers were sent: the client cancelled (or
                // the connection broke).
                record_status(this.span, tonic::Code::Cancelled as i32);
            }
        }
    }
}

impl<B: Body> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if !*this.recorded {
            let code = match &frame {
                Some(Ok(f)) => f
                    .trailers_ref()
                    .map(|t| grpc_status(t).unwrap_or(tonic::Code::Unknown as i32)),
                Some(Err(_)) => Some(tonic::Code::Internal as i32),
                // The end without trailers (no gRPC answer does that).
                None => Some(tonic::Code::Unknown as i32),
            };
            if let Some(code) = code {
                record_status(this.span, code);
                *this.recorded = true;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
