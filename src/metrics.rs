//! Prometheus metrics: one process-wide registry, the HTTP series, and the business and actor series.
//! Labels are route templates and fixed vocabularies only — never ids, raw paths or secrets.

use once_cell::sync::Lazy;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_errors: IntCounterVec,
    pub http_latency: HistogramVec,
    /// gRPC calls by full method name and status code name.
    pub grpc_requests: IntCounterVec,
    pub grpc_latency: HistogramVec,
    /// Business counters: `kind` (register, login, topup, transfer, …) × `outcome`.
    pub operations: IntCounterVec,
    pub gauges: IntGaugeVec,
    pub ledger_batch_size: HistogramVec,
    pub ledger_commit_seconds: HistogramVec,
    pub invariant_violations: IntGauge,
    /// Periodic invariant-check rounds by `outcome` (clean, violations, failed), and when the last one
    /// completed (Unix seconds): the alerts on a failed or missing check read these.
    pub verify_runs: IntCounterVec,
    pub verify_last_success: IntGauge,
    /// Events: outbox rows not yet published, and the age of the oldest one.
    pub outbox_depth: IntGauge,
    pub outbox_oldest_age_seconds: IntGauge,
    /// Events published / publish failures, by broker.
    pub events_published: IntCounterVec,
    pub events_publish_failures: IntCounterVec,
    /// Events handled by a consumer: `outcome` ∈ processed, duplicate, rejected, malformed, retry.
    pub events_consumed: IntCounterVec,
    /// Dead letters by kind (email, webhook, message).
    pub dead_letters: IntCounterVec,
    /// E-mail sends: `outcome` ∈ sent, failed, dead.
    pub emails: IntCounterVec,
    /// Webhook attempts: `outcome` ∈ succeeded, failed, dead, disabled.
    pub webhooks: IntCounterVec,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new_custom(Some("payd".into()), None)?;
    let http_requests = IntCounterVec::new(
        Opts::new("http_requests_total", "HTTP requests by route template and status"),
        &["method", "route", "status"],
    )?;
    let http_errors = IntCounterVec::new(
        Opts::new("http_errors_total", "HTTP responses with status >= 400 by route template"),
        &["method", "route", "status"],
    )?;
    let http_latency = HistogramVec::new(
        HistogramOpts::new("http_request_duration_seconds", "HTTP latency by route template")
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        &["method", "route"],
    )?;
    let grpc_requests = IntCounterVec::new(
        Opts::new("grpc_requests_total", "gRPC calls by method and status code"),
        &["method", "code"],
    )?;
    let grpc_latency = HistogramVec::new(
        HistogramOpts::new("grpc_request_duration_seconds", "gRPC latency (until the response headers) by method")
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        &["method"],
    )?;
    let operations = IntCounterVec::new(
        Opts::new("operations_total", "Business operations by kind and outcome"),
        &["kind", "outcome"],
    )?;
    let gauges = IntGaugeVec::new(Opts::new("state", "Point-in-time gauges by name"), &["name"])?;
    let ledger_batch_size = HistogramVec::new(
        HistogramOpts::new("ledger_batch_size", "Journal entries per committed batch")
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]),
        &["writer"],
    )?;
    let ledger_commit_seconds = HistogramVec::new(
        HistogramOpts::new("ledger_commit_seconds", "Ledger batch commit latency")
            .buckets(vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0]),
        &["writer"],
    )?;
    let invariant_violations = IntGauge::new("ledger_invariant_violations", "Violations found by the last verify run")?;
    let outbox_depth = IntGauge::new("events_outbox_depth", "Outbox rows not yet published")?;
    let outbox_oldest_age_seconds =
        IntGauge::new("events_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row")?;
    let events_published =
        IntCounterVec::new(Opts::new("events_published_total", "Events published, by broker"), &["broker"])?;
    let events_publish_failures = IntCounterVec::new(
        Opts::new("events_publish_failures_total", "Failed publish rounds, by broker"),
        &["broker"],
    )?;
    let events_consumed = IntCounterVec::new(
        Opts::new("events_consumed_total", "Events handled by consumers, by consumer and outcome"),
        &["consumer", "outcome"],
    )?;
    let dead_letters = IntCounterVec::new(Opts::new("dead_letters_total", "Dead letters by kind"), &["kind"])?;
    let emails = IntCounterVec::new(Opts::new("emails_total", "E-mail send attempts by outcome"), &["outcome"])?;
    let webhooks =
        IntCounterVec::new(Opts::new("webhook_attempts_total", "Webhook delivery attempts by outcome"), &["outcome"])?;
    let verify_runs = IntCounterVec::new(
        Opts::new("ledger_verify_runs_total", "Periodic invariant-check rounds by outcome"),
        &["outcome"],
    )?;
    let verify_last_success = IntGauge::new(
        "ledger_verify_last_success_timestamp_seconds",
        "When the last periodic invariant-check round completed (Unix time)",
    )?;
    registry.register(Box::new(verify_runs.clone()))?;
    registry.register(Box::new(verify_last_success.clone()))?;
    registry.register(Box::new(outbox_depth.clone()))?;
    registry.register(Box::new(outbox_oldest_age_seconds.clone()))?;
    registry.register(Box::new(events_published.clone()))?;
    registry.register(Box::new(events_publish_failures.clone()))?;
    registry.register(Box::new(events_consumed.clone()))?;
    registry.register(Box::new(dead_letters.clone()))?;
    registry.register(Box::new(emails.clone()))?;
    registry.register(Box::new(webhooks.clone()))?;
    registry.register(Box::new(http_requests.clone()))?;
    registry.register(Box::new(http_errors.clone()))?;
    registry.register(Box::new(http_latency.clone()))?;
    registry.register(Box::new(grpc_requests.clone()))?;
    registry.register(Box::new(grpc_latency.clone()))?;
    registry.register(Box::new(operations.clone()))?;
    registry.register(Box::new(gauges.clone()))?;
    registry.register(Box::new(ledger_batch_size.clone()))?;
    registry.register(Box::new(ledger_commit_seconds.clone()))?;
    registry.register(Box::new(invariant_violations.clone()))?;
    Ok(Metrics {
        registry,
        http_requests,
        http_errors,
        http_latency,
        grpc_requests,
        grpc_latency,
        operations,
        gauges,
        ledger_batch_size,
        ledger_commit_seconds,
        invariant_violations,
        verify_runs,
        verify_last_success,
        outbox_depth,
        outbox_oldest_age_seconds,
        events_published,
        events_publish_failures,
        events_consumed,
        dead_letters,
        emails,
        webhooks,
    })
}

/// The process-wide metrics. Construction only fails on a programming error (duplicate names); then the
/// process keeps running with an empty registry rather than refusing to serve.
pub static METRICS: Lazy<Option<Metrics>> = Lazy::new(|| match build() {
    Ok(m) => Some(m),
    Err(e) => {
        tracing::error!(error = %e, "metrics registry could not be built");
        None
    }
});

pub fn observe_http(method: &str, route: &str, status: u16, seconds: f64) {
    if let Some(m) = METRICS.as_ref() {
        let status_s = status.to_string();
        m.http_requests.with_label_values(&[method, route, &status_s]).inc();
        if status >= 400 {
            m.http_errors.with_label_values(&[method, route, &status_s]).inc();
        }
        m.http_latency.with_label_values(&[method, route]).observe(seconds);
    }
}

/// Records one gRPC call: `method` is a declared full method name (or `unmatched`), `code` a status name.
pub fn observe_grpc(method: &str, code: &str, seconds: f64) {
    if let Some(m) = METRICS.as_ref() {
        m.grpc_requests.with_label_values(&[method, code]).inc();
        m.grpc_latency.with_label_values(&[method]).observe(seconds);
    }
}

/// Counts one business operation outcome (`kind` and `outcome` come from fixed vocabularies).
pub fn count(kind: &str, outcome: &str) {
    if let Some(m) = METRICS.as_ref() {
        m.operations.with_label_values(&[kind, outcome]).inc();
    }
}

pub fn set_gauge(name: &str, value: i64) {
    if let Some(m) = METRICS.as_ref() {
        m.gauges.with_label_values(&[name]).set(value);
    }
}

/// The text exposition of every metric.
pub fn render() -> String {
    let Some(m) = METRICS.as_ref() else { return String::new() };
    let mut buf = Vec::new();
    if TextEncoder::new().encode(&m.registry.gather(), &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}
