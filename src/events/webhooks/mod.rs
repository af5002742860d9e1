//! Merchant webhooks: endpoints (HTTPS URL, subscribed event types, a signing secret shown once and
//! rotated with an overlap), the dispatcher consumer that turns merchant events into deliveries, the
//! sender that signs and POSTs them with exponential back-off for up to `webhooks.max_age_secs`, the
//! delivery log with manual redelivery, and disabling of endpoints that keep failing (with an e-mail
//! to the merchant's owner through the `webhook_endpoint.disabled` event). See `docs/webhooks.md`.

pub mod routes;
pub mod sender;
pub mod service;
pub mod signature;
pub mod url;

use std::sync::Arc;

use async_trait::async_trait;
use diesel::prelude::*;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::events::broker::one_by_one;
use crate::events::consumer::{claim_event, claim_events};
use crate::events::schema::{webhook_deliveries, webhook_endpoints};
use crate::events::{catalogue, Envelope, Handled, Handler, HandlerError, WEBHOOKS};
use crate::storage::{self, PgPool, StorageError};

/// Everything that can go wrong with webhook endpoints; mapped to HTTP in `http::error`.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("merchant not found")]
    MerchantNotFound,
    #[error("only the merchant's owner or an admin may manage its webhooks")]
    NotOwner,
    #[error("webhook endpoint not found")]
    EndpointNotFound,
    #[error("webhook delivery not found")]
    DeliveryNotFound,
    #[error("{0}")]
    Url(#[from] url::UrlError),
    #[error("unknown event type `{0}`; see GET /api/v1/webhooks/event-types")]
    UnknownEventType(String),
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<diesel::result::Error> for WebhookError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Storage(e.into())
    }
}

/// The merchant an event concerns, if any: `merchant_id` in the payload or its operation, or a
/// `merchant:<id>` aggregate key.
pub fn merchant_of(event: &Envelope) -> Option<i64> {
    let p = &event.payload;
    p.get("merchant_id")
        .and_then(Value::as_i64)
        .or_else(|| p.get("operation").and_then(|o| o.get("merchant_id")).and_then(Value::as_i64))
        .or_else(|| event.aggregate_key.strip_prefix("merchant:").and_then(|s| s.parse().ok()))
}

/// The JSON body a webhook delivers (stored once, so every attempt sends — and signs — the same bytes).
pub fn body(event: &Envelope) -> String {
    json!({
        "id": event.id,
        "type": event.event_type,
        "schema_version": event.schema_version,
        "created_at": event.occurred_at,
        "data": event.payload,
    })
    .to_string()
}

/// The consumer that creates one delivery per subscribed, active endpoint of the event's merchant.
pub struct Dispatcher {
    db: PgPool,
    wake: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(db: PgPool, wake: Arc<Notify>) -> Self {
        Self { db, wake }
    }
}

/// Records `event` as handled by the dispatcher and creates its deliveries; returns `None` for a
/// duplicate, else how many deliveries were created. An event no merchant can receive is not
/// recorded at all (it writes nothing; handling it again costs nothing). Call inside a transaction.
fn dispatch(conn: &mut PgConnection, ev: &Envelope) -> Result<Option<usize>, HandlerError> {
    if recipient(ev).is_none() {
        return Ok(Some(0));
    }
    if !claim_event(conn, WEBHOOKS, ev.id)? {
        return Ok(None);
    }
    deliveries(conn, ev).map(Some)
}

/// The merchant that may receive `ev` as a webhook, if any (decided from the event alone).
fn recipient(ev: &Envelope) -> Option<i64> {
    let subscribable = catalogue::find(&ev.event_type).is_some_and(|s| s.webhook);
    let merchant = merchant_of(ev).filter(|_| subscribable)?;
    // A card-data decline is not the merchant's to see in detail (it got `card_declined`), and a
    // number that matched no card makes no event: sending these would tell the two apart.
    let reason = ev.payload.get("operation").and_then(|o| o.get("failure_reason")).and_then(Value::as_str);
    if ev.event_type == "payment.failed"
        && reason
            .and_then(|r| r.parse::<crate::payments::FailureCode>().ok())
            .is_some_and(crate::payments::FailureCode::is_card_decline)
    {
        return None;
    }
    Some(merchant)
}

/// Creates one delivery per active endpoint of the event's merchant subscribed to its type.
fn deliveries(conn: &mut PgConnection, ev: &Envelope) -> Result<usize, HandlerError> {
    let Some(merchant) = recipient(ev) else {
        return Ok(0);
    };
    let endpoints: Vec<i64> = webhook_endpoints::table
        .filter(webhook_endpoints::merchant_id.eq(merchant))
        .filter(webhook_endpoints::status.eq("active"))
        .filter(
            webhook_endpoints::event_types
                .contains(vec![ev.event_type.clone()])
                .or(webhook_endpoints::event_types.contains(vec!["*".to_owned()])),
        )
        .select(webhook_endpoints::id)
        .load(conn)?;
    let body = body(ev);
    let mut created = 0;
    for endpoint in endpoints {
        created += diesel::insert_into(webhook_deliveries::table)
            .values((
                webhook_deliveries::endpoint_id.eq(endpoint),
                webhook_deliveries::event_id.eq(ev.id),
                webhook_deliveries::event_type.eq(&ev.event_type),
                webhook_deliveries::body.eq(&body),
            ))
            .on_conflict_do_nothing()
            .execute(conn)?;
    }
    Ok(created)
}

#[async_trait]
impl Handler for Dispatcher {
    async fn handle(&self, event: &Envelope) -> Result<Handled, HandlerError> {
        let ev = event.clone();
        let done = storage::transaction(&self.db, move |conn| dispatch(conn, &ev)).await?;
        if done.is_some_and(|n| n > 0) {
            self.wake.notify_one();
        }
        Ok(if done.is_some() { Handled::Processed } else { Handled::Duplicate })
    }

    /// The whole batch in one transaction; on a database error it is handled event by event.
    async fn handle_batch(&self, events: &[Envelope]) -> Vec<Result<Handled, HandlerError>> {
        if events.len() < 2 {
            return one_by_one(self, events).await;
        }
        let evs = events.to_vec();
        let batch = storage::transaction(&self.db, move |conn| {
            let ids: Vec<uuid::Uuid> = evs.iter().filter(|e| recipient(e).is_some()).map(|e| e.id).collect();
            let claimed = claim_events(conn, WEBHOOKS, &ids)?;
            evs.iter()
                .map(|ev| match recipient(ev) {
                    None => Ok(Some(0)),
                    Some(_) if claimed.contains(&ev.id) => deliveries(conn, ev).map(Some),
                    Some(_) => Ok(None),
                })
                .collect::<Result<Vec<_>, HandlerError>>()
        })
        .await;
        match batch {
            Ok(done) => {
                if done.iter().any(|d| d.is_some_and(|n| n > 0)) {
                    self.wake.notify_one();
                }
                done.into_iter()
                    .map(|d| Ok(if d.is_some() { Handled::Processed } else { Handled::Duplicate }))
                    .collect()
            }
            Err(e) => {
                tracing::debug!(error = %e, events = events.len(), "webhook batch failed; handling its events one by one");
                one_by_one(self, events).await
            }
        }
    }
}
