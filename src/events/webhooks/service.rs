//! Managing a merchant's webhook endpoints — register, list, show, update, delete, rotate the
//! secret, read the delivery log, redeliver — for its owner or an admin. The one implementation
//! behind `/api/v1/merchants/{id}/webhooks…` and the gRPC `payd.v1.Webhooks` service.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::routes::{
    AttemptView, CreateEndpoint, CreatedEndpoint, DeliveryDetail, DeliveryQuery, DeliveryView, EndpointList,
    EndpointView, EventTypes, RotateSecret, RotatedSecret, UpdateEndpoint,
};
use super::{signature, url, WebhookError};
use crate::app::AppState;
use crate::events::catalogue;
use crate::events::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints};
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::pagination::Page;
use crate::storage;
use crate::storage::schema::merchants;

/// The event types an endpoint may subscribe to, `*` (all of them) first.
pub fn event_types() -> EventTypes {
    let mut types = vec!["*"];
    types.extend(catalogue::webhook_types());
    EventTypes { event_types: types }
}

/// The known, de-duplicated event types of a request.
///
/// # Errors
/// `UnknownEventType`, or `Invalid` (`event_types`) for an empty list.
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

/// The caller may manage merchant `merchant`'s webhooks (its owner or an admin).
///
/// # Errors
/// `MerchantNotFound` or `NotOwner` (both answered as a missing merchant), or a storage error.
pub async fn authorize(state: &AppState, user: &AuthUser, merchant: i64) -> Result<(), WebhookError> {
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

fn find_delivery(conn: &mut PgConnection, endpoint_id: i64, id: i64) -> Result<DeliveryView, WebhookError> {
    webhook_deliveries::table
        .filter(webhook_deliveries::id.eq(id))
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .select(DeliveryView::as_select())
        .first(conn)
        .optional()?
        .ok_or(WebhookError::DeliveryNotFound)
}

/// Registers an endpoint; the signing secret is in this answer only.
///
/// # Errors
/// As [`authorize`]; a bad URL or event type; a storage error.
pub async fn create(
    state: &AppState,
    user: &AuthUser,
    merchant: i64,
    body: CreateEndpoint,
) -> Result<CreatedEndpoint, WebhookError> {
    authorize(state, user, merchant).await?;
    let checked = url::check(body.url.trim(), state.settings.webhooks.allow_insecure)?;
    let types = validate_types(&body.event_types)?;
    let secret = signature::new_secret();
    let s = secret.clone();
    let by = user.user_id;
    let view = storage::run(&state.db, move |conn| {
        let id: i64 = diesel::insert_into(webhook_endpoints::table)
            .values((
                webhook_endpoints::merchant_id.eq(merchant),
                webhook_endpoints::url.eq(checked.as_str()),
                webhook_endpoints::description.eq(body.description.unwrap_or_default()),
                webhook_endpoints::event_types.eq(types),
                webhook_endpoints::secret.eq(&s),
                webhook_endpoints::created_by.eq(by),
            ))
            .returning(webhook_endpoints::id)
            .get_result(conn)?;
        endpoint(conn, merchant, id)
    })
    .await?;
    tracing::info!(merchant, endpoint = view.id, "webhook endpoint registered");
    Ok(CreatedEndpoint { endpoint: view, secret })
}

/// The merchant's endpoints, oldest first.
///
/// # Errors
/// As [`authorize`]; a storage error.
pub async fn list(state: &AppState, user: &AuthUser, merchant: i64) -> Result<EndpointList, WebhookError> {
    authorize(state, user, merchant).await?;
    let items = storage::run(&state.db, move |conn| {
        webhook_endpoints::table
            .filter(webhook_endpoints::merchant_id.eq(merchant))
            .order(webhook_endpoints::id)
            .select(EndpointView::as_select())
            .load(conn)
            .map_err(WebhookError::from)
    })
    .await?;
    Ok(EndpointList { items })
}

/// One endpoint of the merchant.
///
/// # Errors
/// As [`authorize`]; `EndpointNotFound`; a storage error.
pub async fn show(state: &AppState, user: &AuthUser, merchant: i64, id: i64) -> Result<EndpointView, WebhookError> {
    authorize(state, user, merchant).await?;
    storage::run(&state.db, move |conn| endpoint(conn, merchant, id)).await
}

/// Changes URL, event types or description; `enabled` turns the endpoint on (failure count reset)
/// or off. Absent fields stay as they are.
///
/// # Errors
/// As [`authorize`]; `EndpointNotFound`; a bad URL or event type; a storage error.
pub async fn update(
    state: &AppState,
    user: &AuthUser,
    merchant: i64,
    id: i64,
    body: UpdateEndpoint,
) -> Result<EndpointView, WebhookError> {
    authorize(state, user, merchant).await?;
    let new_url = match &body.url {
        Some(u) => Some(url::check(u.trim(), state.settings.webhooks.allow_insecure)?.to_string()),
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
    Ok(view)
}

/// Deletes an endpoint and its delivery log.
///
/// # Errors
/// As [`authorize`]; `EndpointNotFound`; a storage error.
pub async fn delete(state: &AppState, user: &AuthUser, merchant: i64, id: i64) -> Result<(), WebhookError> {
    authorize(state, user, merchant).await?;
    storage::transaction(&state.db, move |conn| {
        endpoint(conn, merchant, id)?;
        diesel::delete(webhook_endpoints::table.find(id)).execute(conn)?;
        Ok::<_, WebhookError>(())
    })
    .await
}

/// A new signing secret (in this answer only); the old one keeps signing for the overlap
/// (default `webhooks.rotation_overlap_secs`).
///
/// # Errors
/// As [`authorize`]; `EndpointNotFound`; a storage error.
pub async fn rotate(
    state: &AppState,
    user: &AuthUser,
    merchant: i64,
    id: i64,
    body: RotateSecret,
) -> Result<RotatedSecret, WebhookError> {
    authorize(state, user, merchant).await?;
    let overlap = body.overlap_secs.unwrap_or(state.settings.webhooks.rotation_overlap_secs);
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
    Ok(RotatedSecret { secret, previous_secret_expires_at: expires })
}

/// One page of an endpoint's delivery log, newest first.
///
/// # Errors
/// As [`authorize`]; 422 for a bad page or status; `EndpointNotFound`; a storage error.
pub async fn deliveries(
    state: &AppState,
    user: &AuthUser,
    merchant: i64,
    id: i64,
    q: DeliveryQuery,
) -> Result<Page<DeliveryView>, ApiError> {
    authorize(state, user, merchant).await?;
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
    Ok(Page::from_rows(rows, limit, |d| d.id))
}

/// One delivery with the exact body it signs and sends, and every attempt.
///
/// # Errors
/// As [`authorize`]; `EndpointNotFound`, `DeliveryNotFound`; a storage error.
pub async fn delivery(
    state: &AppState,
    user: &AuthUser,
    merchant: i64,
    endpoint_id: i64,
    id: i64,
) -> Result<DeliveryDetail, WebhookError> {
    authorize(state, user, merchant).await?;
    storage::run(&state.db, move |conn| {
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
    .await
}

/// Queues a delivery again now, with a fresh retry window.
///
/// # Errors
/// As [`authorize`]; `EndpointNotFound`, `DeliveryNotFound`; a storage error.
pub async fn redeliver(
    state: &AppState,
    user: &AuthUser,
    merchant: i64,
    endpoint_id: i64,
    id: i64,
) -> Result<DeliveryView, WebhookError> {
    authorize(state, user, merchant).await?;
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
    Ok(view)
}
