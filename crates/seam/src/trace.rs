//! Traces across services: every journal entry and published event carries a W3C
//! `traceparent`, so one command is one trace through every service its events reach: the
//! command's span, each publish, and each consumer's apply (whose own events carry its context
//! on). A trace starts at a command over HTTP (continuing the caller's `traceparent` header if it
//! sent one); events without one (older entries, a simulator's) start none.
//!
//! Export is off by default and on when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (OTLP over HTTP/protobuf; the other standard
//! `OTEL_*` variables apply). The spans' `service.name` is `OTEL_SERVICE_NAME`, else the name
//! after `serve` on the command line. With export off, ids are still made and passed on, so a
//! trace is whole in the headers whichever services export.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use seam_core::envelope::TRACEPARENT;

/// The target of the spans that are exported (and of nothing else).
pub const TARGET: &str = "seam::trace";

static EXPORTING: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether spans are exported (the OTLP variables were set when logging started).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Whether the environment asks for export.
pub fn export_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
        && std::env::var("OTEL_SDK_DISABLED").map_or(true, |v| v != "true")
}

/// The name spans are exported under: `OTEL_SERVICE_NAME`, else the argument after `serve`
/// (`<binary> serve <service>`, as every seam service starts), else the binary's name.
fn service_name() -> String {
    if let Ok(name) = std::env::var("OTEL_SERVICE_NAME") {
        if !name.is_empty() {
            return name;
        }
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "serve" || a == "adapter") {
        if let Some(name) = args.get(at + 1).filter(|a| !a.starts_with('-')) {
            return name.clone();
        }
    }
    args.first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map_or_else(|| "seam".into(), |n| n.to_string_lossy().into_owned())
}

/// The tracing layer that exports seam's spans over OTLP, when the environment asks for it;
/// `None` otherwise. Installed once, by [`crate::serve::init_logging`].
pub fn export_layer<S>() -> Result<Option<impl tracing_subscriber::Layer<S>>, opentelemetry_otlp::ExporterBuildError>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use tracing_subscriber::Layer as _;
    if !export_configured() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("seam");
    let _ = PROVIDER.set(provider);
    EXPORTING.store(true, Ordering::Relaxed);
    let only_ours = tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::INFO);
    Ok(Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(only_ours),
    ))
}

/// Sends the spans not exported yet; called when a service stops.
pub fn flush() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.force_flush();
    }
}

/// A parsed `traceparent` (version 00): the trace, the parent span, and the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// 16 bytes, not all zero.
    pub trace_id: u128,
    /// 8 bytes, not all zero.
    pub span_id: u64,
    /// Bit 0: sampled.
    pub flags: u8,
}

impl TraceParent {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; anything else (or all-zero ids) is `None`, and
    /// the receiver starts no trace from it rather than failing.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let lower_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !lower_hex(trace) || !lower_hex(span) || !lower_hex(flags) {
            return None;
        }
        let parsed = Self {
            trace_id: u128::from_str_radix(trace, 16).ok()?,
            span_id: u64::from_str_radix(span, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
        };
        (parsed.trace_id != 0 && parsed.span_id != 0).then_some(parsed)
    }

    /// A new span of the same trace.
    pub fn child(&self) -> Self {
        Self {
            span_id: u64::from_be_bytes(RandomIdGenerator::default().new_span_id().to_bytes()),
            ..*self
        }
    }

    /// The first span of a new trace (sampled).
    pub fn root() -> Self {
        let ids = RandomIdGenerator::default();
        Self {
            trace_id: u128::from_be_bytes(ids.new_trace_id().to_bytes()),
            span_id: u64::from_be_bytes(ids.new_span_id().to_bytes()),
            flags: 1,
        }
    }

    /// The 32 hex digits of the trace id.
    pub fn trace_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

/// Makes `span` continue `parent` (a remote `traceparent`; `None` starts a new trace when
/// `root` is set) and returns the `traceparent` that what happens inside it carries on:
/// the exported span's own context when exporting, else a fresh span id in the same trace.
/// `None` when there is no trace to continue and `root` is not set.
pub fn continue_in(span: &tracing::Span, parent: Option<&str>, root: bool) -> Option<String> {
    let parsed = parent.and_then(TraceParent::parse);
    if parsed.is_none() && !root {
        return None;
    }
    if exporting() && !span.is_disabled() {
        if let Some(p) = parsed {
            let carrier = HashMap::from([(TRACEPARENT.to_string(), p.to_string())]);
            let cx = TraceContextPropagator::new().extract(&carrier);
            let _ = span.set_parent(cx);
        }
        let cx = span.context();
        let own = cx.span().span_context().clone();
        if own.is_valid() {
            return Some(format_context(&own));
        }
    }
    Some(parsed.map_or_else(TraceParent::root, |p| p.child()).to_string())
}

fn format_context(cx: &SpanContext) -> String {
    format!("00-{}-{}-{:02x}", cx.trace_id(), cx.span_id(), cx.trace_flags().to_u8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_children_keep_the_trace() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = TraceParent::parse(text).expect("valid");
        assert_eq!(p.to_string(), text);
        let child = p.child();
        assert_eq!(child.trace_id, p.trace_id);
        assert_ne!(child.span_id, p.span_id);
        assert_eq!(child.flags, 1);
        let root = TraceParent::root();
        assert_ne!(root.trace_id, 0);
        assert_eq!(TraceParent::parse(&root.to_string()), Some(root));
    }

    #[test]
    fn malformed_traceparents_start_nothing() {
        for bad in [
            "",
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
            assert_eq!(continue_in(&tracing::Span::none(), Some(bad), false), None, "{bad:?}");
        }
    }

    #[test]
    fn without_export_a_continued_trace_keeps_its_id_and_a_root_starts_one() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let next = continue_in(&tracing::Span::none(), Some(parent), false).expect("continued");
        let next = TraceParent::parse(&next).expect("valid");
        assert_eq!(next.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(continue_in(&tracing::Span::none(), None, true).is_some());
        assert_eq!(continue_in(&tracing::Span::none(), None, false), None);
    }
}
