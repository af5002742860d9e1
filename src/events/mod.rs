//! Events: the transactional outbox, the relay that publishes it, the broker adapters (in-process,
//! RabbitMQ, Kafka) behind one trait, the consumer runtime (dedupe, retries, dead letters), and
//! merchant webhooks. E-mail notifications are a consumer in `crate::notify`.
//!
//! Path of an event: a domain transaction inserts an `outbox` row (`outbox::insert`) → the relay
//! claims unpublished rows with a lease and publishes them in id order → the broker → each consumer
//! group handles it idempotently (`processed_events`) and acknowledges only after its own commit.
//! See `docs/events.md`.

pub mod broker;
pub mod catalogue;
pub mod consumer;
pub mod outbox;
pub mod relay;
pub mod routes;
pub mod schema;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::{BrokerKind, Settings};
pub use broker::{Broker, BrokerError, Handled, Handler, HandlerError, PublishError};
pub use consumer::Consumer;
pub use outbox::{insert as insert_event, new_event};

/// Consumer group of the e-mail notifier.
pub const NOTIFIER: &str = "notifier";
/// Consumer group of the webhook dispatcher.
pub const WEBHOOKS: &str = "webhooks";
/// The consumer groups payd itself runs (their queues are declared by publishers too, so nothing
/// published while a consumer is down is lost).
pub const GROUPS: &[&str] = &[NOTIFIER, WEBHOOKS];

/// An event on the wire: the outbox row minus its bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: i32,
    pub occurred_at: DateTime<Utc>,
    pub aggregate_type: String,
    pub aggregate_key: String,
    pub payload: serde_json::Value,
}

/// Exponential back-off with jitter: `initial`, `2·initial`, … capped at `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, failures: 0 }
    }

    /// The next wait (with up to 25 % jitter subtracted, so instances do not retry in lock step).
    pub fn next_delay(&mut self) -> Duration {
        let base = delay(self.failures, self.initial, self.max);
        self.failures = self.failures.saturating_add(1);
        let jitter = rand::random::<f64>() * 0.25;
        base.mul_f64(1.0 - jitter)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// `initial · 2^n`, capped at `max` (no jitter): the schedule of the n-th retry (n from 0).
pub fn delay(n: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 2u32.checked_pow(n.min(31)).unwrap_or(u32::MAX);
    initial.checked_mul(factor).map_or(max, |d| d.min(max))
}

/// Wake-up signals: a committed change nudges the worker that handles it instead of waiting for
/// the next poll.
#[derive(Clone, Default)]
pub struct Wakers {
    pub relay: Arc<Notify>,
    pub mail: Arc<Notify>,
    pub webhooks: Arc<Notify>,
}

/// The events subsystem of one payd instance.
#[derive(Clone)]
pub struct EventsService {
    pub broker: Arc<dyn Broker>,
    pub wake: Wakers,
    /// This instance's relay identity (the lease owner of the rows it claims).
    pub instance: Uuid,
}

impl EventsService {
    /// Builds the configured broker adapter (connections are opened lazily by the workers).
    ///
    /// # Errors
    /// `BrokerError::Config` when the Kafka client cannot be configured.
    pub fn new(settings: &Settings) -> Result<Self, BrokerError> {
        let broker = broker::build(&settings.events)?;
        if settings.events.broker == BrokerKind::InProcess {
            tracing::info!(
                "events.broker = \"inprocess\": no message broker is configured; events are delivered only to \
                 this instance's in-process consumers (set events.broker to \"rabbitmq\" or \"kafka\" to publish)"
            );
        }
        Ok(Self { broker, wake: Wakers::default(), instance: Uuid::new_v4() })
    }

    /// Wakes the relay (an outbox row was committed).
    pub fn nudge_relay(&self) {
        self.wake.relay.notify_one();
    }

    /// Wakes the e-mail sender (an e-mail job was committed).
    pub fn nudge_mail(&self) {
        self.wake.mail.notify_one();
    }
}

/// Starts this instance's workers as configured: relay, consumers (notifier, webhook dispatcher),
/// e-mail sender, webhook sender and the outbox gauges. Must run inside the actix System.
pub fn spawn(state: &crate::app::AppState) {
    let ev = &state.settings.events;
    if !state.settings.server.role.runs_workers() {
        tracing::info!(role = state.settings.server.role.as_str(), "events workers run on worker instances");
        return;
    }
    if ev.relay_enabled {
        spawn_relay(state);
    }
    if ev.consumers_enabled {
        spawn_consumers(state);
    } else if ev.broker == BrokerKind::InProcess && ev.relay_enabled {
        tracing::warn!(
            "events.consumers_enabled = false with the in-process broker: published events reach no consumer"
        );
    }
}

/// Starts the outbox relay and the outbox gauges.
pub fn spawn_relay(state: &crate::app::AppState) {
    let ev = &state.settings.events;
    relay::Relay::new(state.db.clone(), state.events.broker.clone(), relay::RelayConfig::from(ev))
        .with_owner(state.events.instance)
        .with_wake(state.events.wake.relay.clone())
        .spawn_until(&state.shutdown);
    spawn_gauges(state, ev.retention_hours);
}

/// Subscribes the notifier and the webhook dispatcher and starts the e-mail and webhook senders.
pub fn spawn_consumers(state: &crate::app::AppState) {
    let ev = &state.settings.events;
    let notifier = crate::notify::notifier::Notifier::new(
        state.db.clone(),
        state.events.wake.mail.clone(),
        crate::notify::preferences::Preferences::defaults(&state.settings.notifications),
    );
    let webhooks = webhooks::Dispatcher::new(state.db.clone(), state.events.wake.webhooks.clone());
    for consumer in [
        Consumer::new(NOTIFIER, Arc::new(notifier), state.db.clone(), ev),
        Consumer::new(WEBHOOKS, Arc::new(webhooks), state.db.clone(), ev),
    ] {
        let broker = state.events.broker.clone();
        let name = consumer.name().to_owned();
        // The broker adapters' consume loops have no stop of their own: they are dropped after
        // `server.background_stop_secs`; a message handled but not yet acknowledged is redelivered
        // and deduplicated (`processed_events`).
        state.shutdown.spawn("consumer", async move {
            if let Err(e) = broker.subscribe(consumer).await {
                tracing::error!(consumer = %name, error = %e, "consumer could not start");
            }
        });
    }
    crate::notify::jobs::spawn_sender(state);
    webhooks::sender::spawn(state);
}

/// Every few seconds: outbox depth and oldest age, pending e-mail jobs and webhook deliveries into
/// the gauges; hourly, the retention purge; every five minutes, stored idempotent answers older than
/// `idempotency.ttl_hours`.
fn spawn_gauges(state: &crate::app::AppState, retention_hours: i64) {
    let (db, shutdown) = (state.db.clone(), state.shutdown.clone());
    let idempotency_ttl_hours = state.settings.idempotency.ttl_hours;
    state.shutdown.spawn("outbox-gauges", async move {
        let mut rounds: u64 = 0;
        loop {
            match crate::storage::run(&db, outbox::stats).await {
                Ok(s) => {
                    if let Some(m) = crate::metrics::METRICS.as_ref() {
                        m.outbox_depth.set(s.depth);
                        m.outbox_oldest_age_seconds.set(s.oldest_age_secs);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "outbox stats unavailable"),
            }
            match crate::storage::run(&db, outbox::backlog).await {
                Ok(b) => {
                    crate::metrics::set_gauge("email_jobs_pending", b.emails_pending);
                    crate::metrics::set_gauge("email_jobs_oldest_age_seconds", b.emails_oldest_age_secs);
                    crate::metrics::set_gauge("webhook_deliveries_pending", b.webhooks_pending);
                    crate::metrics::set_gauge("webhook_deliveries_oldest_age_seconds", b.webhooks_oldest_age_secs);
                }
                Err(e) => tracing::debug!(error = %e, "backlog stats unavailable"),
            }
            rounds = rounds.wrapping_add(1);
            if rounds % 150 == 1 {
                match crate::storage::run(&db, move |c| crate::payments::idempotency::purge(c, idempotency_ttl_hours))
                    .await
                {
                    Ok(n) if n > 0 => tracing::info!(rows = n, "purged expired idempotency keys"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "idempotency purge failed"),
                }
            }
            if retention_hours > 0 && rounds % 1800 == 1 {
                match crate::storage::run(&db, move |c| outbox::purge(c, retention_hours)).await {
                    Ok(n) if n > 0 => tracing::info!(rows = n, "purged published outbox rows and old dedupe records"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "outbox purge failed"),
                }
            }
            if shutdown.sleep(Duration::from_secs(2)).await {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_and_caps() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(delay(0, i, m), Duration::from_millis(100));
        assert_eq!(delay(3, i, m), Duration::from_millis(800));
        assert_eq!(delay(4, i, m), Duration::from_secs(1));
        assert_eq!(delay(200, i, m), Duration::from_secs(1));
        let mut b = Backoff::new(i, m);
        assert!(b.next_delay() <= i);
        assert!(b.next_delay() <= i * 2);
        b.reset();
        assert_eq!(b.failures(), 0);
    }
}
