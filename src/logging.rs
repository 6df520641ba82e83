//! The process's logs: one `tracing` subscriber that writes records to stderr, as
//! text for people or as one JSON object per line for log collectors, filtered by
//! `RUST_LOG`. Spans give the records inside them their context (a gRPC call's
//! service, method, shard and trace id); with the `otel` cargo feature they can also
//! be exported over OTLP (`crate::otel`).
//!
//! `ctxd` installs it once, first thing; tests and embedders install their own
//! subscriber instead.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// The filter when `RUST_LOG` is not set: ctxstore's own records from INFO (which
/// includes the span of each gRPC call), raft-rs's only from WARN (its INFO lines
/// describe every election and conf change of every shard).
pub const DEFAULT_LOG_FILTER: &str = "info,raft=warn";

/// How records are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// tracing's human-readable lines (colours only at a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`, and the
    /// record's `span` and `spans` with their fields (a gRPC call's `trace_id`).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("`{other}`: expected `text` or `json`")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// What [`init`] sets up.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    /// Text or JSON lines (default text).
    pub format: LogFormat,
    /// Where to export spans over OTLP/gRPC (`http://host:4317`); `None`: no export.
    /// Needs the `otel` cargo feature; a build without it refuses the setting.
    pub otlp_endpoint: Option<String>,
}

/// Keeps the span export running; dropping it sends the spans still buffered.
#[must_use = "dropping the guard stops the span export"]
pub struct LogGuard {
    /// The OTLP pipeline, shut down (flushed) on drop.
    #[cfg(feature = "otel")]
    otel: Option<crate::otel::Exporter>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(e) = self.otel.take() {
            e.shutdown();
        }
    }
}

/// The installed subscriber's filter, and the directives it started with.
type FilterHandle = tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>;
static FILTER: std::sync::OnceLock<(FilterHandle, String)> = std::sync::OnceLock::new();

/// Checks log filter directives (`info,raft=warn`, as in `RUST_LOG`).
pub fn check_filter(directives: &str) -> Result<()> {
    EnvFilter::try_new(directives)
        .map(|_| ())
        .map_err(|e| Error::config("log.level", format!("`{directives}`: {e}")))
}

/// Replaces the filter of the subscriber [`init`] installed (`log.level`, which the
/// cluster's settings may change while the node runs); `""` restores the one it
/// started with (`RUST_LOG`, else [`DEFAULT_LOG_FILTER`]). Without [`init`] (tests,
/// embedders with their own subscriber) it changes nothing.
pub fn set_filter(directives: &str) -> Result<()> {
    let Some((handle, startup)) = FILTER.get() else {
        return Ok(());
    };
    let wanted = if directives.is_empty() {
        startup.as_str()
    } else {
        directives
    };
    let filter = EnvFilter::try_new(wanted)
        .map_err(|e| Error::config("log.level", format!("`{wanted}`: {e}")))?;
    handle
        .reload(filter)
        .map_err(|e| Error::Internal(format!("reloading the log filter: {e}")))?;
    tracing::info!(filter = wanted, "log filter changed");
    Ok(())
}

/// Installs the process's subscriber, writing to stderr. With an OTLP endpoint it
/// must run inside a Tokio runtime (the exporter's gRPC channel lives there), and
/// the guard it returns must live until the process ends.
pub fn init(opts: &LogOptions) -> Result<LogGuard> {
    use std::io::IsTerminal as _;
    let startup = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| EnvFilter::try_new(s).is_ok())
        .unwrap_or_else(|| DEFAULT_LOG_FILTER.to_string());
    let (filter, handle) = tracing_subscriber::reload::Layer::new(EnvFilter::new(startup.as_str()));
    // A second init fails below; the first handle stays.
    let _ = FILTER.set((handle, startup));
    // Colour codes only for a person at a terminal, never into files or pipes.
    let ansi = std::io::stderr().is_terminal();
    let subscriber = tracing_subscriber::registry().with(filter).with(fmt_layer(
        opts.format,
        std::io::stderr,
        ansi,
    ));
    #[cfg(feature = "otel")]
    let (subscriber, guard) = {
        let (layer, exporter) = match &opts.otlp_endpoint {
            Some(url) => {
                let (layer, exporter) = crate::otel::layer(url)?;
                (Some(layer), Some(exporter))
            }
            None => (None, None),
        };
        (subscriber.with(layer), LogGuard { otel: exporter })
    };
    #[cfg(not(feature = "otel"))]
    let guard = match opts.otlp_endpoint {
        Some(_) => {
            return Err(Error::invalid(
                "otlp-endpoint",
                "this ctxd was built without span export (cargo feature `otel`)",
            ))
        }
        None => LogGuard {},
    };
    subscriber
        .try_init()
        .map_err(|e| Error::Internal(format!("installing the log subscriber: {e}")))?;
    Ok(guard)
}

/// The layer that writes records in `format` to `writer`.
fn fmt_layer<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => layer.with_ansi(ansi).boxed(),
        LogFormat::Json => layer.json().boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::sync::Arc;

    /// Collects what a layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;

        fn make_writer(&'w self) -> Captured {
            self.clone()
        }
    }

    /// 1. Log two records, one inside a span with a `trace_id`, in the JSON format.
    /// 2. Every line parses as one JSON object; the record in the span carries the
    ///    span's fields, the other its own fields.
    #[test]
    fn json_format_writes_one_object_per_line() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::Registry::default().with(fmt_layer(
            LogFormat::Json,
            out.clone(),
            false,
        ));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "grpc",
                rpc.method = "Put",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            span.in_scope(|| tracing::warn!(shard = 3, "a \"quoted\"\nmessage"));
            tracing::info!(answer = 42, "outside");
        });
        let text = String::from_utf8(out.0.lock().clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["fields"]["message"], "a \"quoted\"\nmessage");
        assert_eq!(lines[0]["fields"]["shard"], 3);
        assert_eq!(lines[0]["span"]["name"], "grpc");
        assert_eq!(lines[0]["span"]["rpc.method"], "Put");
        assert_eq!(
            lines[0]["span"]["trace_id"],
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(lines[1]["fields"]["answer"], 42);
        assert!(lines[1].get("span").is_none(), "{}", lines[1]);
    }

    #[test]
    fn formats_parse_by_name() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("JSON".parse::<LogFormat>().is_err());
        assert_eq!(LogFormat::default().to_string(), "text");
    }
}
