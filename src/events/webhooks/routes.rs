//! `/api/v1/merchants/{id}/webhooks…`: register, list, show, update, delete endpoints, rotate the
//! secret, read the delivery log and redeliver; `/api/v1/webhooks/event-types`. Callers must be the
//! merchant's owner or an admin (checked against `merchants.owner_id`).

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

use super::{signature, url, WebhookError};
use crate::app::AppState;
use crate::events::catalogue;
use crate::events::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints};
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::pagination::{Page, PageQuery};
use crate::http::routes::{Access, Api};
use crate::http::Valid;
use crate::storage::schema::merchants;
use crate::storage::{self};

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

fn validate_types(types: &[String]) -> Result<Vec<String>, WebhookError> {
    let known = catalogue::webhook_types();
    let mut out: Vec<String> = Vec::new();
    for t in types {
        let t = t.trim();
        if t != "*" && !known.contains(&t) {
            return Err(WebhookError::UnknownEventType(t.to_owned()));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    if out.is_empty() {
        return Err(WebhookError::Invalid { field: "event_types", message: "event_types must not be empty".into() });
    }
    Ok(out)
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
    page: PageQuery,
    status: Option<String>,
}

/// The caller may manage merchant `id`'s webhooks.
async fn authorize(state: &AppState, user: &AuthUser, merchant: i64) -> Result<(), WebhookError> {
    let owner: Option<i64> = storage::run(&state.db, move |conn| {
        merchants::table.find(merchant).select(merchants::owner_id).first(conn).optional().map_err(WebhookError::from)
    })
    .await?;
    match owner {
        None => Err(WebhookError::MerchantNotFound),
        Some(o) if o == user.user_id.get() || user.is_admin() => Ok(()),
        Some(_) => Err(WebhookError::NotOwner),
    }
}

fn endpoint(conn: &mut PgConnection, merchant: i64, id: i64) -> Result<EndpointView, WebhookError> {
    webhook_endpoints::table
        .filter(webhook_endpoints::id.eq(id))
        .filter(webhook_endpoints::merchant_id.eq(merchant))
        .select(EndpointView::as_select())
        .first(conn)
        .optional()?
        .ok_or(WebhookError::EndpointNotFound)
}

async fn event_types() -> HttpResponse {
    let mut types = vec!["*"];
    types.extend(catalogue::webhook_types());
    HttpResponse::Ok().json(EventTypes { event_types: types })
}

async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<i64>,
    body: Valid<CreateEndpoint>,
) -> Result<HttpResponse, ApiError> {
    let merchant = path.into_inner();
    authorize(&state, &user, merchant).await?;
    let body = body.into_inner();
    let checked = url::check(body.url.trim(), state.settings.webhooks.allow_insecure).map_err(WebhookError::from)?;
    let types = validate_types(&body.event_types)?;
    let secret = signature::new_secret();
    let s = secret.clone();
    let view = storage::run(&state.db, move |conn| {
        let id: i64 = diesel::insert_into(webhook_endpoints::table)
            .values((
                webhook_endpoints::merchant_id.eq(merchant),
                webhook_endpoints::url.eq(checked.as_str()),
                webhook_endpoints::description.eq(body.description.unwrap_or_default()),
                webhook_endpoints::event_types.eq(types),
                webhook_endpoints::secret.eq(&s),
                webhook_endpoints::created_by.eq(user.user_id),
            ))
            .returning(webhook_endpoints::id)
            .get_result(conn)?;
        endpoint(conn, merchant, id)
    })
    .await?;
    tracing::info!(merchant, endpoint = view.id, "webhook endpoint registered");
    Ok(HttpResponse::Created().json(CreatedEndpoint { endpoint: view, secret }))
}

async fn list(state: web::Data<AppState>, user: AuthUser, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let merchant = path.into_inner();
    authorize(&state, &user, merchant).await?;
    let items = storage::run(&state.db, move |conn| {
        webhook_endpoints::table
            .filter(webhook_endpoints::merchant_id.eq(merchant))
            .order(webhook_endpoints::id)
            .select(EndpointView::as_select())
            .load(conn)
            .map_err(WebhookError::from)
    })
    .await?;
    Ok(HttpResponse::Ok().json(EndpointList { items }))
}

async fn show(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (merchant, id) = path.into_inner();
    authorize(&state, &user, merchant).await?;
    let view = storage::run(&state.db, move |conn| endpoint(conn, merchant, id)).await?;
    Ok(HttpResponse::Ok().json(view))
}

async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
    body: Valid<UpdateEndpoint>,
) -> Result<HttpResponse, ApiError> {
    let (merchant, id) = path.into_inner();
    authorize(&state, &user, merchant).await?;
    let body = body.into_inner();
    let new_url = match &body.url {
        Some(u) => {
            Some(url::check(u.trim(), state.settings.webhooks.allow_insecure).map_err(WebhookError::from)?.to_string())
        }
        None => None,
    };
    let types = body.event_types.as_deref().map(validate_types).transpose()?;
    let view = storage::transaction(&state.db, move |conn| {
        endpoint(conn, merchant, id)?;
        let target = webhook_endpoints::table.find(id);
        if let Some(u) = new_url {
            diesel::update(target).set(webhook_endpoints::url.eq(u)).execute(conn)?;
        }
        if let Some(t) = types {
            diesel::update(target).set(webhook_endpoints::event_types.eq(t)).execute(conn)?;
        }
        if let Some(d) = body.description {
            diesel::update(target).set(webhook_endpoints::description.eq(d)).execute(conn)?;
        }
        match body.enabled {
            Some(true) => {
                diesel::update(target)
                    .set((
                        webhook_endpoints::status.eq("active"),
                        webhook_endpoints::disabled_reason.eq(None::<String>),
                        webhook_endpoints::consecutive_failures.eq(0),
                    ))
                    .execute(conn)?;
            }
            Some(false) => {
                diesel::update(target)
                    .set((
                        webhook_endpoints::status.eq("disabled"),
                        webhook_endpoints::disabled_reason.eq(Some("disabled by the merchant")),
                    ))
                    .execute(conn)?;
            }
            None => {}
        }
        diesel::update(target).set(webhook_endpoints::updated_at.eq(Utc::now())).execute(conn)?;
        endpoint(conn, merchant, id)
    })
    .await?;
    state.events.wake.webhooks.notify_one();
    Ok(HttpResponse::Ok().json(view))
}

async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (merchant, id) = path.into_inner();
    authorize(&state, &user, merchant).await?;
    storage::transaction(&state.db, move |conn| {
        endpoint(conn, merchant, id)?;
        diesel::delete(webhook_endpoints::table.find(id)).execute(conn)?;
        Ok::<_, WebhookError>(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn rotate(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
    body: Valid<RotateSecret>,
) -> Result<HttpResponse, ApiError> {
    let (merchant, id) = path.into_inner();
    authorize(&state, &user, merchant).await?;
    let overlap = body.into_inner().overlap_secs.unwrap_or(state.settings.webhooks.rotation_overlap_secs);
    let secret = signature::new_secret();
    let s = secret.clone();
    let expires = storage::transaction(&state.db, move |conn| {
        endpoint(conn, merchant, id)?;
        let old: String =
            webhook_endpoints::table.find(id).select(webhook_endpoints::secret).for_update().first(conn)?;
        let until = (overlap > 0).then(|| Utc::now() + chrono::Duration::seconds(overlap));
        diesel::update(webhook_endpoints::table.find(id))
            .set((
                webhook_endpoints::secret.eq(&s),
                webhook_endpoints::previous_secret.eq(until.map(|_| old)),
                webhook_endpoints::previous_expires_at.eq(until),
                webhook_endpoints::updated_at.eq(Utc::now()),
            ))
            .execute(conn)?;
        Ok::<_, WebhookError>(until)
    })
    .await?;
    tracing::info!(merchant, endpoint = id, "webhook secret rotated");
    Ok(HttpResponse::Ok().json(RotatedSecret { secret, previous_secret_expires_at: expires }))
}

async fn deliveries(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64)>,
    q: web::Query<DeliveryQuery>,
) -> Result<HttpResponse, ApiError> {
    let (merchant, id) = path.into_inner();
    authorize(&state, &user, merchant).await?;
    let q = q.into_inner();
    let (limit, cursor) = q.page.resolve()?;
    if let Some(s) = &q.status {
        if !["pending", "succeeded", "dead"].contains(&s.as_str()) {
            return Err(ApiError::validation("status", "status must be pending, succeeded or dead"));
        }
    }
    let rows = storage::run(&state.db, move |conn| {
        endpoint(conn, merchant, id)?;
        let mut query = webhook_deliveries::table
            .filter(webhook_deliveries::endpoint_id.eq(id))
            .order(webhook_deliveries::id.desc())
            .limit(limit + 1)
            .select(DeliveryView::as_select())
            .into_boxed();
        if let Some(s) = q.status {
            query = query.filter(webhook_deliveries::status.eq(s));
        }
        if let Some(c) = cursor {
            query = query.filter(webhook_deliveries::id.lt(c));
        }
        query.load(conn).map_err(WebhookError::from)
    })
    .await?;
    Ok(HttpResponse::Ok().json(Page::from_rows(rows, limit, |d| d.id)))
}

fn find_delivery(conn: &mut PgConnection, endpoint_id: i64, id: i64) -> Result<DeliveryView, WebhookError> {
    webhook_deliveries::table
        .filter(webhook_deliveries::id.eq(id))
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .select(DeliveryView::as_select())
        .first(conn)
        .optional()?
        .ok_or(WebhookError::DeliveryNotFound)
}

async fn delivery(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (merchant, endpoint_id, id) = path.into_inner();
    authorize(&state, &user, merchant).await?;
    let detail = storage::run(&state.db, move |conn| {
        endpoint(conn, merchant, endpoint_id)?;
        let delivery = find_delivery(conn, endpoint_id, id)?;
        let body: String = webhook_deliveries::table.find(id).select(webhook_deliveries::body).first(conn)?;
        let attempts = webhook_attempts::table
            .filter(webhook_attempts::delivery_id.eq(id))
            .order(webhook_attempts::id)
            .select(AttemptView::as_select())
            .load(conn)?;
        Ok::<_, WebhookError>(DeliveryDetail { delivery, body, attempts })
    })
    .await?;
    Ok(HttpResponse::Ok().json(detail))
}

async fn redeliver(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(i64, i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (merchant, endpoint_id, id) = path.into_inner();
    authorize(&state, &user, merchant).await?;
    let view = storage::transaction(&state.db, move |conn| {
        endpoint(conn, merchant, endpoint_id)?;
        find_delivery(conn, endpoint_id, id)?;
        let now = Utc::now();
        diesel::update(webhook_deliveries::table.find(id))
            .set((
                webhook_deliveries::status.eq("pending"),
                webhook_deliveries::attempts.eq(0),
                webhook_deliveries::manual.eq(true),
                webhook_deliveries::next_attempt_at.eq(now),
                webhook_deliveries::window_start.eq(now),
                webhook_deliveries::completed_at.eq(None::<DateTime<Utc>>),
                webhook_deliveries::lease_until.eq(None::<DateTime<Utc>>),
            ))
            .execute(conn)?;
        find_delivery(conn, endpoint_id, id)
    })
    .await?;
    state.events.wake.webhooks.notify_one();
    Ok(HttpResponse::Accepted().json(view))
}
