//! The per-request envelope: request id (`x-request-id`), the request's tracing span (with trace id),
//! and the per-route Prometheus series.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

use crate::metrics;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `fut` as the request `id` (gRPC calls use the same task-local id as HTTP requests).
pub async fn scope<F: std::future::Future>(id: String, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// Whether a client-sent request id is acceptable (1-64 of `[A-Za-z0-9_-]`).
pub fn valid(v: &str) -> bool {
    !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The id of the request being served on this task, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

fn incoming_id(req: &ServiceRequest) -> Option<String> {
    let v = req.headers().get(HEADER)?.to_str().ok()?;
    valid(v).then(|| v.to_owned())
}

/// Middleware: assigns the request id, opens the request span, records metrics, echoes the id.
///
/// # Errors
/// Passes through the inner service's error.
pub async fn envelope(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = incoming_id(&req).unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let method = req.method().as_str().to_owned();
    let span = tracing::info_span!(
        "http_request",
        request_id = %id,
        trace_id = tracing::field::Empty,
        http.method = %method,
        http.route = tracing::field::Empty,
        http.status = tracing::field::Empty,
        otel.kind = "server",
    );
    crate::telemetry::link_remote_parent(&span, req.headers());
    if let Some(trace_id) = crate::telemetry::trace_id(&span) {
        span.record("trace_id", trace_id.as_str());
    }
    let started = Instant::now();
    let fut = REQUEST_ID.scope(id.clone(), next.call(req));
    let result = fut.instrument(span.clone()).await;
    let elapsed = started.elapsed().as_secs_f64();
    match result {
        Ok(mut res) => {
            let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
            let status = res.status().as_u16();
            span.record("http.route", route.as_str());
            span.record("http.status", status);
            metrics::observe_http(&method, &route, status, elapsed);
            if let Ok(v) = HeaderValue::from_str(&id) {
                res.headers_mut().insert(HeaderName::from_static(HEADER), v);
            }
            let _g = span.enter();
            if status >= 500 {
                tracing::error!(status, elapsed_ms = elapsed * 1000.0, "request failed");
            } else {
                tracing::debug!(status, elapsed_ms = elapsed * 1000.0, "request served");
            }
            Ok(res)
        }
        Err(e) => {
            metrics::observe_http(&method, "unmatched", e.as_response_error().status_code().as_u16(), elapsed);
            Err(e)
        }
    }
}
