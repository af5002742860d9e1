//! The webhook sender: claims due deliveries with a lease, signs and POSTs them (bounded
//! concurrency), and records every attempt. A 2xx answer succeeds; anything else (status, timeout,
//! refused address) is retried on the schedule `backoff_initial · 2^(n-1)` capped at `backoff_max`,
//! until the delivery is older than `max_age_secs` — then it is dead (and dead-lettered). After
//! `disable_after_failures` consecutive failed attempts the endpoint is disabled and a
//! `webhook_endpoint.disabled` event is written (the notifier e-mails the merchant's owner).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

use super::{signature, url};
use crate::app::AppState;
use crate::config::WebhookSettings;
use crate::events::consumer::{record_dead_letter, NewDeadLetter};
use crate::events::outbox::{self, truncate};
use crate::events::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints};
use crate::storage::{self, PgPool, StorageError};

#[derive(QueryableByName, Debug, Clone)]
pub struct Due {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub endpoint_id: i64,
    #[diesel(sql_type = SqlUuid)]
    pub event_id: Uuid,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = Text)]
    pub body: String,
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    pub window_start: DateTime<Utc>,
    #[diesel(sql_type = Bool)]
    pub manual: bool,
    #[diesel(sql_type = Text)]
    pub url: String,
    #[diesel(sql_type = Text)]
    pub secret: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub previous_secret: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub previous_expires_at: Option<DateTime<Utc>>,
}

const CLAIM: &str = "\
WITH c AS ( \
  SELECT d.id, d.manual AS was_manual FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
  WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND e.status = 'active' \
    AND (d.lease_until IS NULL OR d.lease_until < now()) \
  ORDER BY d.next_attempt_at, d.id LIMIT $1 FOR UPDATE OF d SKIP LOCKED) \
UPDATE webhook_deliveries d SET lease_until = now() + make_interval(secs => $2), attempts = d.attempts + 1, \
       manual = FALSE \
FROM c, webhook_endpoints e WHERE d.id = c.id AND e.id = d.endpoint_id \
RETURNING d.id, d.endpoint_id, d.event_id, d.event_type, d.body, d.attempts, d.window_start, c.was_manual AS manual, \
          e.url, e.secret, e.previous_secret, e.previous_expires_at";

fn claim(conn: &mut PgConnection, limit: i64, lease_secs: i64) -> Result<Vec<Due>, StorageError> {
    Ok(diesel::sql_query(CLAIM).bind::<BigInt, _>(limit).bind::<BigInt, _>(lease_secs).load(conn)?)
}

/// What one attempt got.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration: Duration,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// The HTTP client for deliveries: timeout, no redirects, and (unless insecure targets are allowed)
/// DNS answers restricted to public addresses.
///
/// # Errors
/// When the TLS backend cannot be initialised.
pub fn client(cfg: &WebhookSettings) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_millis(cfg.timeout_ms))
        .connect_timeout(Duration::from_millis(cfg.timeout_ms.min(5000)))
        .redirect(reqwest::redirect::Policy::none())
        // Never through a proxy from the environment (HTTP_PROXY, …): the proxy would resolve and
        // connect to the target itself, bypassing the public-address check of `SafeResolver`.
        .no_proxy()
        .user_agent(concat!("payd-webhooks/", env!("CARGO_PKG_VERSION")));
    if !cfg.allow_insecure {
        b = b.dns_resolver(std::sync::Arc::new(url::SafeResolver)).https_only(true);
    }
    b.build()
}

/// Signs and sends one delivery.
pub async fn attempt(client: &reqwest::Client, cfg: &WebhookSettings, d: &Due) -> Outcome {
    let started = Instant::now();
    let fail = |e: String| Outcome { status: None, error: Some(e), duration: started.elapsed() };
    if let Err(e) = url::check(&d.url, cfg.allow_insecure) {
        return fail(format!("refused: {e}"));
    }
    let now = Utc::now();
    let mut secrets = vec![d.secret.as_str()];
    if let (Some(prev), Some(until)) = (&d.previous_secret, d.previous_expires_at) {
        if until > now {
            secrets.push(prev.as_str());
        }
    }
    let header = signature::header(&secrets, now.timestamp(), d.body.as_bytes());
    let sent = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header(signature::HEADER, header)
        .header("Payd-Event-Id", d.event_id.to_string())
        .header("Payd-Event-Type", &d.event_type)
        .header("Payd-Delivery-Id", d.id.to_string())
        .header("Payd-Delivery-Attempt", d.attempts.to_string())
        .body(d.body.clone())
        .send()
        .await;
    match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let error = (!resp.status().is_success()).then(|| format!("HTTP {status}"));
            Outcome { status: Some(status), error, duration: started.elapsed() }
        }
        Err(e) => fail(if e.is_timeout() { "timed out".to_owned() } else { format!("request failed: {e}") }),
    }
}

/// What recording an outcome decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Succeeded,
    Retry,
    Dead,
}

/// Records an attempt and schedules what comes next, in one transaction.
///
/// # Errors
/// A storage error.
pub fn record(
    conn: &mut PgConnection,
    cfg: &WebhookSettings,
    d: &Due,
    o: &Outcome,
) -> Result<(Recorded, bool), StorageError> {
    conn.transaction(|conn| {
        let now = Utc::now();
        diesel::insert_into(webhook_attempts::table)
            .values((
                webhook_attempts::delivery_id.eq(d.id),
                webhook_attempts::attempt.eq(d.attempts),
                webhook_attempts::status_code.eq(o.status.map(i32::from)),
                webhook_attempts::error.eq(o.error.as_deref().map(|e| truncate(e, 500))),
                webhook_attempts::duration_ms.eq(i64::try_from(o.duration.as_millis()).unwrap_or(i64::MAX)),
                webhook_attempts::manual.eq(d.manual),
            ))
            .execute(conn)?;
        if o.succeeded() {
            diesel::update(webhook_deliveries::table.find(d.id))
                .set((
                    webhook_deliveries::status.eq("succeeded"),
                    webhook_deliveries::completed_at.eq(now),
                    webhook_deliveries::lease_until.eq(None::<DateTime<Utc>>),
                    webhook_deliveries::last_status.eq(o.status.map(i32::from)),
                    webhook_deliveries::last_error.eq(None::<String>),
                ))
                .execute(conn)?;
            diesel::update(webhook_endpoints::table.find(d.endpoint_id))
                .set(webhook_endpoints::consecutive_failures.eq(0))
                .execute(conn)?;
            return Ok((Recorded::Succeeded, false));
        }
        let error = truncate(o.error.as_deref().unwrap_or("failed"), 500);
        let retry = u32::try_from(d.attempts.saturating_sub(1)).unwrap_or(0);
        let wait = crate::events::delay(
            retry,
            Duration::from_millis(cfg.backoff_initial_ms),
            Duration::from_millis(cfg.backoff_max_ms),
        );
        let next = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
        let expired = next > d.window_start + chrono::Duration::seconds(cfg.max_age_secs);
        let status = if expired { "dead" } else { "pending" };
        diesel::update(webhook_deliveries::table.find(d.id))
            .set((
                webhook_deliveries::status.eq(status),
                webhook_deliveries::next_attempt_at.eq(next),
                webhook_deliveries::lease_until.eq(None::<DateTime<Utc>>),
                webhook_deliveries::last_status.eq(o.status.map(i32::from)),
                webhook_deliveries::last_error.eq(&error),
                webhook_deliveries::completed_at.eq(expired.then_some(now)),
            ))
            .execute(conn)?;
        if expired {
            record_dead_letter(
                conn,
                &NewDeadLetter {
                    kind: "webhook",
                    consumer: "webhooks".into(),
                    reference: format!("webhook_delivery:{}", d.id),
                    event_id: Some(d.event_id),
                    reason: error.clone(),
                    payload: None,
                    attempts: d.attempts,
                },
            )?;
        }
        let (failures, merchant_id, status, url): (i32, i64, String, String) =
            diesel::update(webhook_endpoints::table.find(d.endpoint_id))
                .set(webhook_endpoints::consecutive_failures.eq(webhook_endpoints::consecutive_failures + 1))
                .returning((
                    webhook_endpoints::consecutive_failures,
                    webhook_endpoints::merchant_id,
                    webhook_endpoints::status,
                    webhook_endpoints::url,
                ))
                .get_result(conn)?;
        let disable = status == "active" && failures >= cfg.disable_after_failures;
        if disable {
            diesel::update(webhook_endpoints::table.find(d.endpoint_id))
                .set((
                    webhook_endpoints::status.eq("disabled"),
                    webhook_endpoints::disabled_reason
                        .eq(format!("{failures} consecutive failed delivery attempts; last: {error}")),
                    webhook_endpoints::updated_at.eq(now),
                ))
                .execute(conn)?;
            outbox::insert(
                conn,
                &outbox::new_event(
                    "webhook_endpoint.disabled",
                    "merchant",
                    format!("merchant:{merchant_id}"),
                    json!({ "merchant_id": merchant_id, "endpoint_id": d.endpoint_id, "url": url, "failures": failures }),
                ),
            )?;
        }
        Ok((if expired { Recorded::Dead } else { Recorded::Retry }, disable))
    })
}

/// One round: claims due deliveries and attempts them concurrently; returns how many were claimed.
///
/// # Errors
/// A storage error while claiming.
pub async fn round(db: &PgPool, client: &reqwest::Client, cfg: &WebhookSettings) -> Result<usize, StorageError> {
    let limit = i64::try_from(cfg.concurrency.saturating_mul(4)).unwrap_or(32);
    // Long enough for every claimed delivery to time out, `concurrency` at a time, twice over.
    let rounds = limit / i64::try_from(cfg.concurrency).unwrap_or(1).max(1) + 1;
    let timeout = i64::try_from(cfg.timeout_ms / 1000).unwrap_or(10).max(1);
    let lease = timeout.saturating_mul(rounds).saturating_mul(2).max(30);
    let due = storage::run(db, move |conn| claim(conn, limit, lease)).await?;
    let n = due.len();
    futures::stream::iter(due)
        .for_each_concurrent(cfg.concurrency, |d| async move {
            let o = attempt(client, cfg, &d).await;
            let (cfg2, d2, o2) = (cfg.clone(), d.clone(), o.clone());
            match storage::run(db, move |conn| record(conn, &cfg2, &d2, &o2)).await {
                Ok((recorded, disabled)) => {
                    let label = match recorded {
                        Recorded::Succeeded => "succeeded",
                        Recorded::Retry => "failed",
                        Recorded::Dead => "dead",
                    };
                    count(label);
                    if recorded != Recorded::Succeeded {
                        tracing::warn!(delivery = d.id, endpoint = d.endpoint_id, attempt = d.attempts,
                            status = ?o.status, error = ?o.error, outcome = label, "webhook delivery failed");
                    }
                    if disabled {
                        count("disabled");
                        tracing::warn!(endpoint = d.endpoint_id, "webhook endpoint disabled after repeated failures");
                    }
                }
                Err(e) => tracing::error!(delivery = d.id, error = %e, "webhook attempt could not be recorded"),
            }
        })
        .await;
    Ok(n)
}

fn count(outcome: &str) {
    if let Some(m) = crate::metrics::METRICS.as_ref() {
        m.webhooks.with_label_values(&[outcome]).inc();
    }
}

/// Starts the sender for this instance.
pub fn spawn(state: &AppState) {
    let cfg = state.settings.webhooks.clone();
    let client = match client(&cfg) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook client could not be built; webhooks are not sent");
            return;
        }
    };
    let (db, wake) = (state.db.clone(), state.events.wake.webhooks.clone());
    let poll = Duration::from_millis(state.settings.events.poll_interval_ms);
    actix_web::rt::spawn(async move {
        loop {
            match round(&db, &client, &cfg).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "webhook sender could not reach the database"),
            }
            let _ = tokio::time::timeout(poll, wake.notified()).await;
        }
    });
}
