//! OpenTelemetry span export (cargo feature `otel`, off by default): every `tracing`
//! span the node's filter lets through (the `grpc` span of each call, and the records
//! inside it as span events) goes to an OTLP/gRPC collector, in batches from a
//! background thread.
//!
//! A call whose `traceparent` was valid continues the caller's trace: its span's
//! OpenTelemetry parent is the caller's span. Sampling follows the SDK's default,
//! parent-based: a caller's `sampled` flag decides, and a call without a trace
//! context is always sampled. The service name is `ctxd` unless `OTEL_SERVICE_NAME`
//! says otherwise; `OTEL_RESOURCE_ATTRIBUTES` adds attributes (a node's
//! `service.instance.id`, say).

use crate::error::{Error, Result};
use ctxstore_api::trace::TraceParent;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt as _};
use tracing_subscriber::registry::LookupSpan;

/// The running export pipeline.
pub(crate) struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Sends the spans still buffered and stops the export.
    pub(crate) fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("ctxd: span export: {e}");
        }
    }
}

/// The layer that hands spans to an OTLP exporter sending to `endpoint`
/// (`http://host:4317`). Call it inside a Tokio runtime: the exporter's gRPC
/// channel runs there.
pub(crate) fn layer<S>(endpoint: &str) -> Result<(OpenTelemetryLayer<S, SdkTracer>, Exporter)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| Error::invalid("otlp-endpoint", format!("`{endpoint}`: {e}")))?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("ctxd");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("ctxstore");
    // The source location and thread of a span, and its busy and idle times, say
    // nothing about a gRPC call that its fields do not.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false);
    Ok((layer, Exporter { provider }))
}

/// Makes the caller's span (from its `traceparent`) the OpenTelemetry parent of
/// `span`. Without the export layer installed this does nothing.
pub(crate) fn set_remote_parent(span: &tracing::Span, parent: &TraceParent) {
    let cx = SpanContext::new(
        TraceId::from(parent.trace_id.0),
        SpanId::from(parent.parent_id.0),
        TraceFlags::new(parent.flags),
        true,
        TraceState::default(),
    );
    // Err: no OpenTelemetry layer (export off), or the span is disabled.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(cx));
}
