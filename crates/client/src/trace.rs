//! The W3C `traceparent` on every request, so the server's span for each call
//! (`rpc.service`, `rpc.method`, `shard`, status) names the client's trace.
//!
//! Each call through [`Client`](crate::Client) has one trace context, sent on every
//! attempt of the call (its retries and redirects), so the server-side spans and log
//! records of one call share a trace id. The context is, in order:
//! 1. the caller's, when the call runs inside [`in_trace`]: its trace id, with the
//!    caller's span as the parent (an application using OpenTelemetry passes its
//!    current span context here);
//! 2. else a new random trace id per call (sampled).
//!
//! Requests made outside a call (a watch's stream, a node's status) get a new one
//! each. The channels carry it in a thin service wrapper ([`Traced`]) that reads a
//! task-local; a request that already has a `traceparent` keeps it.

use crate::batch::Batcher;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codegen::http::{HeaderName, HeaderValue, Request};
use tonic::codegen::Service;

pub use ctxstore_api::trace::{SpanId, TraceId, TraceParent, SAMPLED, TRACEPARENT};

tokio::task_local! {
    /// The caller's trace context ([`in_trace`]).
    static PARENT: TraceParent;
    /// The header value of the call in progress ([`CallTrace::scope`]).
    static CALL: HeaderValue;
}

/// Runs `f` with `parent` as the trace context of every call it makes through a
/// [`Client`](crate::Client): each request carries `parent` (its trace id, and its
/// span id as the parent of the server's span).
pub async fn in_trace<F: Future>(parent: TraceParent, f: F) -> F::Output {
    PARENT.scope(parent, f).await
}

/// The trace context of one client call, the same header on each of its attempts.
#[derive(Clone)]
pub(crate) struct CallTrace {
    header: HeaderValue,
}

impl CallTrace {
    /// The context of a call starting now: the enclosing call's (the parts of a
    /// scan are one call), else the caller's ([`in_trace`]), else a new trace.
    pub(crate) fn new() -> CallTrace {
        let header = CALL.try_with(HeaderValue::clone).unwrap_or_else(|_| {
            header_value(
                PARENT
                    .try_with(|p| *p)
                    .unwrap_or_else(|_| TraceParent::random()),
            )
        });
        CallTrace { header }
    }

    /// Runs one attempt of the call, its requests carrying the call's header.
    pub(crate) async fn scope<F: Future>(&self, f: F) -> F::Output {
        CALL.scope(self.header.clone(), f).await
    }
}

fn header_value(t: TraceParent) -> HeaderValue {
    HeaderValue::try_from(t.to_string()).expect("hex digits and dashes make a valid header value")
}

/// The `traceparent` of the call in progress (a new trace outside a call).
pub(crate) fn current_header() -> HeaderValue {
    CALL.try_with(HeaderValue::clone)
        .unwrap_or_else(|_| CallTrace::new().header)
}

/// The client's channel to a node: tonic's, with the `traceparent` (and the bearer
/// token, when the client has one) added.
pub(crate) type Channel = Traced<tonic::transport::Channel>;

/// Adds the `traceparent` of the call in progress (a new trace outside a call) to
/// every request that has none, and the client's `authorization` header.
#[derive(Clone)]
pub(crate) struct Traced<S> {
    inner: S,
    authorization: Option<HeaderValue>,
    /// The node's `Kv.BatchCommands` stream, when the client batches its calls (it
    /// opens its streams on a copy of this channel without one).
    batch: Option<Arc<Batcher>>,
}

impl<S> Traced<S> {
    pub(crate) fn new(inner: S) -> Self {
        Traced {
            inner,
            authorization: None,
            batch: None,
        }
    }

    /// The channel's batch stream, if it has one.
    pub(crate) fn batcher(&self) -> Option<&Batcher> {
        self.batch.as_deref()
    }

    /// Also sends `authorization` (a sensitive header value) on every request.
    pub(crate) fn with_authorization(mut self, authorization: Option<HeaderValue>) -> Self {
        self.authorization = authorization;
        self
    }
}

impl<S, B> Service<Request<B>> for Traced<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let name = HeaderName::from_static(TRACEPARENT);
        if !req.headers().contains_key(&name) {
            req.headers_mut().insert(name, current_header());
        }
        if let Some(a) = &self.authorization {
            req.headers_mut()
                .insert(tonic::codegen::http::header::AUTHORIZATION, a.clone());
        }
        self.inner.call(req)
    }
}

impl Channel {
    /// Sends this channel's `Get` and `Put` calls on a `Kv.BatchCommands` stream.
    pub(crate) fn with_batching(mut self) -> Self {
        self.batch = Some(Arc::new(Batcher::new(self.clone())));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::future::{ready, Ready};

    /// Answers every request with its `traceparent`.
    #[derive(Clone)]
    struct Echo;

    impl Service<Request<()>> for Echo {
        type Response = Option<String>;
        type Error = Infallible;
        type Future = Ready<Result<Option<String>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Request<()>) -> Self::Future {
            let tp = req
                .headers()
                .get(TRACEPARENT)
                .map(|v| v.to_str().expect("ascii").to_string());
            ready(Ok(tp))
        }
    }

    async fn send(req: Request<()>) -> TraceParent {
        let tp = Traced::new(Echo)
            .call(req)
            .await
            .expect("infallible")
            .expect("a traceparent");
        TraceParent::parse(tp.as_bytes()).expect("a valid traceparent")
    }

    async fn send_one() -> TraceParent {
        send(Request::new(())).await
    }

    #[tokio::test]
    async fn requests_outside_a_call_get_new_traces() {
        let (a, b) = (send_one().await, send_one().await);
        assert_ne!(a.trace_id, b.trace_id);
        assert!(a.sampled());
    }

    #[tokio::test]
    async fn the_attempts_of_a_call_share_its_trace() {
        let call = CallTrace::new();
        let a = call.scope(send_one()).await;
        let b = call.scope(send_one()).await;
        assert_eq!(a, b);
        // A call inside the call (a scan's parts) keeps it too.
        let inner = call.scope(async { CallTrace::new().scope(send_one()).await });
        assert_eq!(inner.await, a);
        assert_ne!(CallTrace::new().scope(send_one()).await, a);
    }

    #[tokio::test]
    async fn calls_in_a_callers_trace_carry_it() {
        let parent = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
            .expect("valid");
        let (first, second) = in_trace(parent, async {
            let first = CallTrace::new().scope(send_one()).await;
            (first, send_one().await)
        })
        .await;
        assert_eq!(first, parent);
        assert_eq!(second, parent);
    }

    #[tokio::test]
    async fn a_request_with_its_own_traceparent_keeps_it() {
        let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut req = Request::new(());
        req.headers_mut()
            .insert(TRACEPARENT, HeaderValue::from_static(own));
        let call = CallTrace::new();
        assert_eq!(call.scope(send(req)).await.to_string(), own);
    }
}
