//! The HTTP surface: the route table of every domain, JSON/path/query error handling, the validated
//! JSON extractor, health, readiness, metrics and API docs.

pub mod auth;
pub mod client_ip;
pub mod error;
pub mod pagination;
pub mod request_id;
pub mod routes;
pub mod schema;

use std::future::Future;
use std::pin::Pin;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::Method;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;
use validator::Validate;

use crate::app::AppState;
use error::ApiError;
use routes::{Access, Api};

/// JSON body that is deserialised strictly and then validated; errors name the field.
pub struct Valid<T>(pub T);

impl<T> Valid<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + Validate + 'static> FromRequest for Valid<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        // The body is checked to be well-formed JSON (with the JSON config's size limit, content type
        // and errors) without building a tree, then read once into `T`. It must be an object: serde's
        // derived structs would also accept an array (fields by position).
        let fut = web::Json::<Box<serde_json::value::RawValue>>::from_request(req, payload);
        Box::pin(async move {
            let raw = fut.await?.into_inner();
            if !raw.get().trim_start().starts_with('{') {
                return Err(ApiError::bad_request("invalid_json", "request body must be a JSON object").into());
            }
            let mut de = serde_json::Deserializer::from_str(raw.get());
            let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| deserialize_error(&e))?;
            value.validate().map_err(ApiError::from)?;
            Ok(Valid(value))
        })
    }
}

/// An optional JSON body: no body at all (no `Content-Length` or `Content-Length: 0`, no chunked
/// transfer) is `None`; a body that is present is parsed and validated like [`Valid`], and a bad one
/// is refused (actix's `Option<Valid<T>>` would turn every failure into `None` and drop the body).
pub struct MaybeValid<T>(pub Option<T>);

impl<T> MaybeValid<T> {
    pub fn into_inner(self) -> Option<T> {
        self.0
    }
}

impl<T: DeserializeOwned + Validate + 'static> FromRequest for MaybeValid<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        use actix_web::http::header;
        let headers = req.headers();
        let chunked = headers.contains_key(header::TRANSFER_ENCODING);
        let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).map(str::trim);
        if !chunked && matches!(length, None | Some("0")) {
            return Box::pin(async { Ok(MaybeValid(None)) });
        }
        let fut = Valid::<T>::from_request(req, payload);
        Box::pin(async move { Ok(MaybeValid(Some(fut.await?.into_inner()))) })
    }
}

/// A body that is JSON but not the request's shape: an error inside a field ("invalid type: integer `5`,
/// expected a string") is reported as "field `password`: …", so it names the field.
fn deserialize_error(e: &serde_path_to_error::Error<serde_json::Error>) -> actix_web::Error {
    let path = e.path().to_string();
    let inner = e.inner().to_string();
    // The deserializer appends the position ("at line 1 column 42"): the field path says more.
    let inner = inner.rfind(" at line ").map_or(inner.as_str(), |i| &inner[..i]);
    let msg = if path.is_empty() || path == "." { inner.to_owned() } else { format!("field `{path}`: {inner}") };
    let mut api = ApiError::bad_request("invalid_json", format!("request body is not valid: {msg}"));
    if e.inner().is_data() {
        if let Some(f) = serde_field(&msg) {
            api = api.with_field(f);
        }
    }
    api.into()
}

/// Pulls the field name out of serde's messages ("missing field `x`", "unknown field `x`", "duplicate
/// field `x`", and "field `x`: …" from [`deserialize_error`]).
fn serde_field(msg: &str) -> Option<String> {
    if !["missing field `", "unknown field `", "duplicate field `", "field `"].iter().any(|p| msg.starts_with(p)) {
        return None;
    }
    let start = msg.find('`')? + 1;
    let end = msg[start..].find('`')? + start;
    Some(msg[start..end].to_owned())
}

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    use actix_web::http::StatusCode;
    let api = match &err {
        JsonPayloadError::Overflow { limit } | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds {limit} bytes"),
        ),
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        ),
        JsonPayloadError::Deserialize(e) => {
            let msg = e.to_string();
            let mut api = ApiError::bad_request("invalid_json", format!("request body is not valid: {msg}"));
            if e.is_data() {
                if let Some(f) = serde_field(&msg) {
                    api = api.with_field(f);
                }
            }
            api
        }
        other => ApiError::bad_request("invalid_body", format!("request body could not be read: {other}")),
    };
    api.into()
}

fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::not_found(&format!("resource ({err})")).into()
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let msg = err.to_string();
    let mut api = ApiError::validation("query", format!("query string is invalid: {msg}"));
    if let Some(f) = serde_field(&msg) {
        api = api.with_field(f);
    }
    api.into()
}

/// Registers extractor configuration on the app.
pub fn extractor_config(cfg: &mut web::ServiceConfig, json_limit: usize) {
    cfg.app_data(web::JsonConfig::default().limit(json_limit).error_handler(json_error))
        .app_data(web::PathConfig::default().error_handler(path_error))
        .app_data(web::QueryConfig::default().error_handler(query_error));
}

/// The whole route table, from every domain, as development and the tests serve it.
pub fn api() -> Api {
    api_for(crate::config::Environment::Development)
}

/// The route table an environment serves: production has no development mailbox.
pub fn api_for(env: crate::config::Environment) -> Api {
    let mut api = Api::default();
    operations(&mut api);
    crate::identity::routes::register(&mut api);
    crate::identity::admin::register(&mut api);
    if env != crate::config::Environment::Production {
        crate::notify::routes::register(&mut api);
    }
    crate::notify::preferences::register(&mut api);
    crate::cards::routes::register(&mut api);
    crate::payments::routes::register(&mut api);
    crate::events::routes::register(&mut api);
    crate::events::webhooks::routes::register(&mut api);
    crate::merchants::routes::register(&mut api);
    crate::merchants::documents::register(&mut api);
    crate::merchants::payments::register(&mut api);
    crate::stats::routes::register(&mut api);
    crate::console::register(&mut api);
    api
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Checks>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Checks {
    pub postgres: &'static str,
    pub redis: &'static str,
    /// Every ledger-writer thread running and every account/card registry answering.
    pub ledger: &'static str,
}

fn operations(api: &mut Api) {
    let t = "operations";
    let (r, s) = api.route(Method::GET, "/healthz", Access::Public, t, "Liveness", web::get().to(healthz));
    r.responds::<Health>(200, s).infallible();
    let (r, s) = api.route(
        Method::GET,
        "/readyz",
        Access::Public,
        t,
        "Readiness: PostgreSQL and Redis reachable, ledger writers and actor registries alive",
        web::get().to(readyz),
    );
    r.responds::<Health>(200, s).also::<Health>(503, s).infallible();
    let (r, s) = api.route(Method::GET, "/api/v1/ping", Access::Public, t, "Ping", web::get().to(ping));
    r.responds::<crate::identity::routes::MessageResponse>(200, s).infallible();
    let (r, _) = api.route(Method::GET, "/metrics", Access::Public, t, "Prometheus metrics", web::get().to(metrics));
    r.infallible();
}

/// The routes a worker instance serves: probes and metrics.
pub fn operations_only(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok", checks: None })
}

async fn ping() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "message": "pong" }))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // Shutting down: leave the load balancer's rotation while in-flight requests finish.
    if state.shutdown.is_started() {
        return HttpResponse::ServiceUnavailable().json(Health { status: "shutting_down", checks: None });
    }
    let pg = crate::storage::run(&state.db, crate::storage::ping).await;
    let redis = state.cache.ping().await;
    let ledger = state.ledger.healthy().await;
    let checks = Checks {
        postgres: if pg.is_ok() { "ok" } else { "unavailable" },
        redis: if redis.is_ok() { "ok" } else { "unavailable" },
        ledger: if ledger { "ok" } else { "unavailable" },
    };
    if pg.is_ok() && redis.is_ok() && ledger {
        HttpResponse::Ok().json(Health { status: "ready", checks: Some(checks) })
    } else {
        HttpResponse::ServiceUnavailable().json(Health { status: "unavailable", checks: Some(checks) })
    }
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(crate::metrics::render())
}

/// Unknown paths answer a JSON 404.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    ApiError::not_found(&format!("route {} {}", req.method(), req.path())).error_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_serde_field_names() {
        assert_eq!(serde_field("missing field `email` at line 1 column 2").as_deref(), Some("email"));
        assert_eq!(serde_field("unknown field `admin`, expected one of").as_deref(), Some("admin"));
        assert_eq!(serde_field("expected value at line 1"), None);
        assert_eq!(serde_field("invalid type: integer `5`, expected a string at line 1 column 11"), None);
    }
}

/// The answer of a `restore-all` route: how many archived records were restored.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RestoredAll {
    pub restored: usize,
}
