//! Logging and tracing set-up: one subscriber per process, pretty for people or JSON for
//! collectors, and every span also an OpenTelemetry span.
//!
//! Spans always carry W3C trace context, so that a trace passes from an HTTP request through the
//! outbox and JetStream to the consumer's handling, and JSON log lines name their trace id. They
//! are exported (OTLP over HTTP) only when `log.otlp_endpoint` is set.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::infra::config::{LogFormat, LogSettings};

/// The W3C trace context header, on HTTP requests and on NATS messages alike.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// Keeps the tracer provider of the process; dropping it flushes the spans not yet exported.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("spans not flushed at exit: {error}");
        }
    }
}

/// Installs the global subscriber and returns what must live as long as the process. A second
/// call (several apps in one test process) keeps the first subscriber, which is what the tests
/// want, and returns None.
#[must_use = "dropping the guard shuts the tracer down"]
pub fn init(settings: &LogSettings, service: &'static str) -> Option<Telemetry> {
    let provider = tracer_provider(settings, service);
    let directives = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|directives| EnvFilter::try_new(directives).is_ok())
        .unwrap_or_else(|| settings.filter.clone());
    let (filter, handle) = reload::Layer::new(EnvFilter::new(&directives));
    // Colours only for a terminal: logs written to files (scripts/dev.sh) stay plain text.
    let logs = match settings.format {
        LogFormat::Json => json_logs(std::io::stdout),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .boxed(),
    };
    let spans = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(spans)
        .try_init()
        .ok()
        .map(|()| {
            // Only the subscriber actually installed may be steered.
            let _ = LOG_FILTER.set(LogFilter {
                handle,
                directives: Mutex::new(directives),
            });
            Telemetry { provider }
        })
}

/// The process's log filter, which the control plane changes while the process runs
/// (`opd-nats control log-filter`).
struct LogFilter {
    handle: reload::Handle<EnvFilter, Registry>,
    /// What it was last set to, as written.
    directives: Mutex<String>,
}

static LOG_FILTER: OnceLock<LogFilter> = OnceLock::new();

/// The log filter in force (`RUST_LOG` syntax), or None where [`init`] installed no subscriber.
pub fn log_filter() -> Option<String> {
    let filter = LOG_FILTER.get()?;
    Some(
        filter
            .directives
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
    )
}

/// Replaces the log filter of the whole process with `directives` (`RUST_LOG` syntax, e.g.
/// `info,opd_shared=debug`). Directives that do not parse change nothing.
pub fn set_log_filter(directives: &str) -> Result<(), String> {
    let filter = LOG_FILTER
        .get()
        .ok_or("this process has no log filter to change")?;
    let parsed = EnvFilter::try_new(directives)
        .map_err(|error| format!("{directives:?} is not a log filter: {error}"))?;
    let mut current = filter
        .directives
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    filter
        .handle
        .reload(parsed)
        .map_err(|error| format!("the log filter could not be changed: {error}"))?;
    *current = directives.to_owned();
    Ok(())
}

/// The JSON log format: one object per line, with the fields of the span the event happened in
/// and of each span around it, so that every line names its request id and trace id. Public so
/// that tests read exactly what a log collector would.
pub fn json_logs<S, W>(writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(writer)
        .boxed()
}

fn tracer_provider(settings: &LogSettings, service: &'static str) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service).build());
    let Some(endpoint) = &settings.otlp_endpoint else {
        return builder.build();
    };
    match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
    {
        Ok(exporter) => builder.with_batch_exporter(exporter).build(),
        Err(error) => {
            // Traces are a diagnostic aid: the service runs without them rather than not at all.
            eprintln!("traces will not be exported to {endpoint}: {error}");
            builder.build()
        }
    }
}

/// The `traceparent` of the current span, to travel with an event; None outside a trace.
pub(crate) fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the trace named by `traceparent` (from an HTTP request or a NATS
/// message), and records its trace id in the span's `trace_id` field for the logs. Without a
/// valid `traceparent` the span starts a trace of its own.
pub(crate) fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        let parent = TraceContextPropagator::new().extract(&OneHeader(traceparent));
        if parent.span().span_context().is_valid() {
            // Fails only where no OpenTelemetry layer is installed: nothing to continue then.
            let _ = span.set_parent(parent);
        }
    }
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// A carrier holding the one header the trace context propagator reads.
struct OneHeader<'a>(&'a str);

impl Extractor for OneHeader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// Masks what logs must not hold whole in a message built from outside data (a parse error of
/// an event quotes the value it refused): the contents of quoted strings become `…`, and every
/// number of three digits or more keeps only its last two, as [`crate::domain::PatientId::masked`] shows ids.
pub(crate) fn mask_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' || c == '`' {
            out.push(c);
            out.push('…');
            let mut escaped = false;
            for inner in chars.by_ref() {
                if inner == c && !escaped {
                    out.push(c);
                    break;
                }
                escaped = inner == '\\' && !escaped;
            }
        } else if c.is_ascii_digit() {
            let mut digits = String::from(c);
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                digits.push(d);
            }
            if digits.len() >= 3 {
                out.push_str("**");
                out.push_str(&digits[digits.len() - 2..]);
            } else {
                out.push_str(&digits);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::mask_values;

    #[test]
    fn values_quoted_in_a_message_are_masked() {
        assert_eq!(
            mask_values(
                r#"invalid type: string "Kusum \"K\" Perera", expected i64 at line 1 column 120"#
            ),
            r#"invalid type: string "…", expected i64 at line 1 column **20"#
        );
        assert_eq!(
            mask_values("a patient id is a positive integer, got -987654321 for `id`"),
            "a patient id is a positive integer, got -**21 for `…`"
        );
    }
}
