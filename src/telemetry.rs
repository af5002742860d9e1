//! Logs and traces: the `tracing` subscriber (JSON or pretty), OTLP trace export when an endpoint is
//! configured (Jaeger ingests OTLP), and W3C trace-context propagation from incoming requests.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetrySettings};

/// Keeps the tracer provider alive; flushes pending spans on drop.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("trace exporter shutdown: {e}");
            }
        }
    }
}

/// Builds the OTLP/HTTP tracer provider for `endpoint` (e.g. `http://127.0.0.1:4318/v1/traces`).
///
/// # Errors
/// When the exporter cannot be built from the endpoint.
pub fn tracer_provider(endpoint: &str, service_name: &str) -> Result<SdkTracerProvider, anyhow::Error> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_timeout(std::time::Duration::from_secs(3))
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service_name.to_owned()).build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// Installs the global subscriber. Call once per process; later calls are ignored (tests share a process).
///
/// # Errors
/// When the OTLP exporter cannot be built.
pub fn init(settings: &TelemetrySettings) -> Result<TelemetryGuard, anyhow::Error> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{},h2=warn,hyper=warn,reqwest=warn", settings.log_level)))?;
    let provider = if settings.otlp_endpoint.is_empty() {
        None
    } else {
        Some(tracer_provider(&settings.otlp_endpoint, &settings.service_name)?)
    };
    // Traces keep the request spans (info) whatever the log level; the log filter applies to logs only.
    let otel_layer = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(settings.service_name.clone()))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let fmt_layer = match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    let installed = tracing_subscriber::registry().with(otel_layer).with(fmt_layer.with_filter(filter)).try_init();
    if installed.is_ok() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        if let Some(p) = &provider {
            opentelemetry::global::set_tracer_provider(p.clone());
        }
    }
    Ok(TelemetryGuard { provider })
}

struct ActixHeaders<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for ActixHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(actix_web::http::header::HeaderName::as_str).collect()
    }
}

/// Continues a trace started by the caller (`traceparent` header), if any.
pub fn link_remote_parent(span: &tracing::Span, headers: &actix_web::http::header::HeaderMap) {
    if headers.contains_key("traceparent") {
        let cx = TraceContextPropagator::new().extract(&ActixHeaders(headers));
        let _ = span.set_parent(cx);
    }
}

struct GrpcMetadata<'a>(&'a http::HeaderMap);

impl Extractor for GrpcMetadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Continues a trace started by a gRPC caller (`traceparent` metadata), if any.
pub fn link_remote_parent_grpc(span: &tracing::Span, headers: &http::HeaderMap) {
    if headers.contains_key("traceparent") {
        let cx = TraceContextPropagator::new().extract(&GrpcMetadata(headers));
        let _ = span.set_parent(cx);
    }
}

/// The span's OpenTelemetry trace id in hex, when tracing export is on.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}
