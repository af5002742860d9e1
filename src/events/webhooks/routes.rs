//! `/api/v1/merchants/{id}/webhooks…`: register, list, show, update, delete endpoints, rotate the
//! secret, read the delivery log and redeliver; `/api/v1/webhooks/event-types`. Callers must be the
//! merchant's owner or an admin (checked against `merchants.owner_id`). Each handler is a thin
//! adapter over [`super::service`], which the gRPC `Webhooks` service calls too.

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

use super::service;
use crate::app::AppState;
use crate::events::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints};
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::pagination::PageQuery;
use crate::http::routes::{Access, Api};
use crate::http::Valid;

const TAG: &str = "webhooks";
const BASE: &str = "/api/v1/merchants/{id}/webhooks";

pub fn register(api: &mut Api) {
    use Access::Authenticated;
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/webhooks/event-types",
        Authenticated,
        TAG,
        "Event types a webhook endpoint may subscribe to",
        web::get().to(event_types),
    );
    r.responds::<EventTypes>(200, s);
    let (r, s) = api.route(
        Method::POST,
        BASE,
        Authenticated,
        TAG,
        "Register a webhook endpoint (owner or admin); the signing secret is shown only in this answer",
        web::post().to(create),
    );
    r.body::<CreateEndpoint>(s).responds::<CreatedEndpoint>(201, s);
    let (r, s) =
        api.route(Method::GET, BASE, Authenticated, TAG, "List the merchant's webhook endpoints", web::get().to(list));
    r.responds::<EndpointList>(200, s);
    let one = "/api/v1/merchants/{id}/webhooks/{webhook_id}";
    let (r, s) = api.route(Method::GET, one, Authenticated, TAG, "A webhook endpoint", web::get().to(show));
    r.responds::<EndpointView>(200, s);
    let (r, s) = api.route(
        Method::PATCH,
        one,
        Authenticated,
        TAG,
        "Change URL, event types or description; `enabled: true` re-enables a disabled endpoint",
        web::patch().to(update),
    );
    r.body::<UpdateEndpoint>(s).responds::<EndpointView>(200, s);
    let (r, _) = api.route(
        Method::DELETE,
        one,
        Authenticated,
        TAG,
        "Delete a webhook endpoint and its log",
        web::delete().to(delete),
    );
    r.no_content();
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/merchants/{id}/webhooks/{webhook_id}/rotate-secret",
        Authenticated,
        TAG,
        "Rotate the signing secret; the old one keeps signing for the overlap",
        web::post().to(rotate),
    );
    r.body::<RotateSecret>(s).responds::<RotatedSecret>(200, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/merchants/{id}/webhooks/{webhook_id}/deliveries",
        Authenticated,
        TAG,
        "Delivery log of an endpoint (newest first)",
        web::get().to(deliveries),
    );
    r.query(&["status", "limit", "cursor"]).responds_page::<DeliveryView>(s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/merchants/{id}/webhooks/{webhook_id}/deliveries/{delivery_id}",
        Authenticated,
        TAG,
        "One delivery with its body and every attempt",
        web::get().to(delivery),
    );
    r.responds::<DeliveryDetail>(200, s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/merchants/{id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
        Authenticated,
        TAG,
        "Send a delivery again now (a fresh retry window)",
        web::post().to(redeliver),
    );
    r.responds::<DeliveryView>(202, s);
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventTypes {
    /// Subscribable types; `*` subscribes to all of them.
    pub event_types: Vec<&'static str>,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://shop.example.com/payd/webhooks", "event_types": ["payment.succeeded"],
    "description": "Order system"}))]
pub struct CreateEndpoint {
    /// An `https` URL (plain `http` only outside production).
    #[validate(length(min = 8, max = 2048, message = "url must be 8-2048 characters"))]
    #[schema(min_length = 8, max_length = 2048)]
    pub url: String,
    /// Event types (see `/api/v1/webhooks/event-types`), or `["*"]` for all.
    #[validate(length(min = 1, max = 50, message = "event_types must list 1-50 types"))]
    #[schema(min_items = 1, max_items = 50)]
    pub event_types: Vec<String>,
    #[validate(length(max = 500, message = "description must be at most 500 characters"))]
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"event_types": ["*"], "enabled": true}))]
pub struct UpdateEndpoint {
    #[validate(length(min = 8, max = 2048, message = "url must be 8-2048 characters"))]
    #[schema(min_length = 8, max_length = 2048)]
    pub url: Option<String>,
    #[validate(length(min = 1, max = 50, message = "event_types must list 1-50 types"))]
    #[schema(min_items = 1, max_items = 50)]
    pub event_types: Option<Vec<String>>,
    #[validate(length(max = 500, message = "description must be at most 500 characters"))]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// `true` re-enables a disabled endpoint (failure count reset); `false` disables it.
    pub enabled: Option<bool>,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"overlap_secs": 3600}))]
pub struct RotateSecret {
    /// How long the old secret keeps signing (default `webhooks.rotation_overlap_secs`, at most 7 days).
    #[validate(range(min = 0, max = 604800, message = "overlap_secs must be between 0 and 604800"))]
    #[schema(minimum = 0, maximum = 604800)]
    pub overlap_secs: Option<i64>,
}

#[derive(Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = webhook_endpoints)]
pub struct EndpointView {
    pub id: i64,
    pub merchant_id: i64,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    /// `active` or `disabled`.
    pub status: String,
    pub disabled_reason: Option<String>,
    pub consecutive_failures: i32,
    /// Until when the previous secret also signs deliveries (after a rotation).
    #[diesel(column_name = previous_expires_at)]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedEndpoint {
    pub endpoint: EndpointView,
    /// The signing secret. Shown only here: store it now.
    pub secret: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointList {
    pub items: Vec<EndpointView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RotatedSecret {
    pub secret: String,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = webhook_deliveries)]
pub struct DeliveryView {
    pub id: i64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    /// `pending`, `succeeded` or `dead`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = webhook_attempts)]
pub struct AttemptView {
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub manual: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryDetail {
    pub delivery: DeliveryView,
    /// The exact body that is signed and sent.
    pub body: String,
    pub attempts: Vec<AttemptView>,
}

#[derive(Deserialize)]
pub struct DeliveryQuery {
    #[serde(flatten)]
    pub page: PageQuery,
    /// `pending`, `succeeded` or `dead`; absent: every delivery.
    pub status: Option<String>,
}

async fn event_types() -> HttpResponse {
    HttpResponse::Ok().json(service::event_types())
}

async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<i64>,
    body: Valid<CreateEndpoint>,
) -> Result<HttpResponse, ApiError> {
    let created = service::create(&state, &user, path.into_inner(), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(created))
}

async fn list(state: web::Data<AppState>, user: AuthUser, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::list(&state, &user, path.into_inner()).await?))
}

async fn show(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (merchant, id) = path.into_inner();
    Ok(HttpResponse::Ok().json(service::show(&state, &user, merchant, id).await?))
}

async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
    body: Valid<UpdateEndpoint>,
) -> Result<HttpResponse, ApiError> {
    let (merchant, id) = path.into_inner();
    Ok(HttpResponse::Ok().json(service::update(&state, &user, merchant, id, body.into_inner()).await?))
}

async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (merchant, id) = path.into_inner();
    service::delete(&state, &user, merchant, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn rotate(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
    body: Valid<RotateSecret>,
) -> Result<HttpResponse, ApiError> {
    let (merchant, id) = path.into_inner();
    Ok(HttpResponse::Ok().json(service::rotate(&state, &user, merchant, id, body.into_inner()).await?))
}

async fn deliveries(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
    q: web::Query<DeliveryQuery>,
) -> Result<HttpResponse, ApiError> {
    let (merchant, id) = path.into_inner();
    Ok(HttpResponse::Ok().json(service::deliveries(&state, &user, merchant, id, q.into_inner()).await?))
}

async fn delivery(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (merchant, endpoint_id, id) = path.into_inner();
    Ok(HttpResponse::Ok().json(service::delivery(&state, &user, merchant, endpoint_id, id).await?))
}

async fn redeliver(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (merchant, endpoint_id, id) = path.into_inner();
    Ok(HttpResponse::Accepted().json(service::redeliver(&state, &user, merchant, endpoint_id, id).await?))
}
