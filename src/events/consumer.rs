//! The consumer runtime shared by every broker adapter: parse the message, run the handler, retry
//! transient failures with back-off (the message stays unacknowledged meanwhile), dead-letter what can
//! never be processed (with a log line and a metric — never a crash loop), and the dedupe record
//! (`processed_events`) that handlers insert in the same transaction as their effects.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use uuid::Uuid;

use crate::config::EventSettings;
use crate::events::outbox::truncate;
use crate::events::schema::{dead_letters, processed_events};
use crate::events::{Backoff, Envelope, Handled, Handler, HandlerError};
use crate::storage::{self, PgPool, StorageError};

/// What the adapter should do with the message once the consumer is done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Processed (or a duplicate): acknowledge / commit the offset.
    Ack,
    /// Never processable: reject to the dead-letter queue (RabbitMQ) or skip (Kafka); already
    /// recorded in `dead_letters`.
    DeadLetter,
}

/// One consumer group: a name (queue / group id suffix) and its handler.
pub struct Consumer {
    name: String,
    handler: Arc<dyn Handler>,
    db: PgPool,
    retry_initial: Duration,
    retry_max: Duration,
}

impl Consumer {
    pub fn new(name: &str, handler: Arc<dyn Handler>, db: PgPool, settings: &EventSettings) -> Self {
        Self {
            name: name.to_owned(),
            handler,
            db,
            retry_initial: Duration::from_millis(settings.backoff_initial_ms),
            retry_max: Duration::from_millis(settings.backoff_max_ms),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Processes one raw broker message; returns only when it may be acknowledged or dead-lettered.
    pub async fn process(&self, raw: &[u8]) -> Disposition {
        match serde_json::from_slice::<Envelope>(raw) {
            Ok(event) => self.process_event(&event).await,
            Err(e) => {
                let reason = format!("malformed message: {e}");
                tracing::warn!(consumer = %self.name, error = %e, bytes = raw.len(), "malformed broker message dead-lettered");
                count(&self.name, "malformed");
                let payload = truncate(&String::from_utf8_lossy(raw), 8192);
                self.dead_letter(None, "message", &reason, Some(payload)).await;
                Disposition::DeadLetter
            }
        }
    }

    /// Processes one event, retrying transient failures with back-off until it is done.
    pub async fn process_event(&self, event: &Envelope) -> Disposition {
        let mut backoff = Backoff::new(self.retry_initial, self.retry_max);
        loop {
            match self.attempt(event).await {
                Ok(d) => return d,
                Err(reason) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(
                        consumer = %self.name, event_id = %event.id, event_type = %event.event_type,
                        error = %reason, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "event processing failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Processes several raw broker messages (what a RabbitMQ channel or a Kafka partition had ready)
    /// and returns one disposition per message, in order, once every one may be acknowledged or
    /// dead-lettered. The parsable ones go to the handler as one batch (one transaction where the
    /// handler can); after a transient failure the events not yet done are retried with back-off,
    /// in order, so per-key order holds.
    pub async fn process_many(&self, raws: &[&[u8]]) -> Vec<Disposition> {
        let mut dispositions = vec![Disposition::Ack; raws.len()];
        let mut events = Vec::with_capacity(raws.len());
        let mut slots = Vec::with_capacity(raws.len());
        for (i, raw) in raws.iter().enumerate() {
            match serde_json::from_slice::<Envelope>(raw) {
                Ok(event) => {
                    events.push(event);
                    slots.push(i);
                }
                // Malformed: dead-lettered on its own, whatever its neighbours do.
                Err(_) => dispositions[i] = self.process(raw).await,
            }
        }
        let mut backoff = Backoff::new(self.retry_initial, self.retry_max);
        let mut done = 0;
        while done < events.len() {
            match self.settle_batch(&events[done..]).await {
                Ok(ds) => {
                    for (k, d) in ds.into_iter().enumerate() {
                        dispositions[slots[done + k]] = d;
                    }
                    done = events.len();
                }
                Err((ds, reason)) => {
                    for (k, d) in ds.iter().enumerate() {
                        dispositions[slots[done + k]] = *d;
                    }
                    done += ds.len();
                    let wait = backoff.next_delay();
                    tracing::warn!(
                        consumer = %self.name, pending = events.len() - done, error = %reason,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "event processing failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
        dispositions
    }

    /// Runs the handler over `events` once and settles the outcomes in order. `Err` carries the
    /// dispositions of the leading events that are done and the transient failure that stopped it.
    async fn settle_batch(&self, events: &[Envelope]) -> Result<Vec<Disposition>, (Vec<Disposition>, String)> {
        let outcomes = self.handler.handle_batch(events).await;
        let mut done = Vec::with_capacity(events.len());
        for (event, outcome) in events.iter().zip(outcomes) {
            match self.settle(event, outcome).await {
                Ok(d) => done.push(d),
                Err(reason) => return Err((done, reason)),
            }
        }
        if done.len() < events.len() {
            return Err((done, "handler stopped before the end of the batch".into()));
        }
        Ok(done)
    }

    /// One attempt at a batch, for the in-process broker: the handler may commit the whole batch in
    /// one transaction. `Err((n, reason))`: the first `n` events are done (processed, duplicates or
    /// dead-lettered), the rest must be published again later.
    ///
    /// # Errors
    /// How many leading events are done and the transient failure's description.
    pub async fn process_batch_once(&self, events: &[Envelope]) -> Result<(), (usize, String)> {
        self.settle_batch(events).await.map(|_| ()).map_err(|(done, reason)| (done.len(), reason))
    }

    async fn attempt(&self, event: &Envelope) -> Result<Disposition, String> {
        let outcome = self.handler.handle(event).await;
        self.settle(event, outcome).await
    }

    /// Counts an outcome and dead-letters a rejected event; `Err` for a transient failure.
    async fn settle(&self, event: &Envelope, outcome: Result<Handled, HandlerError>) -> Result<Disposition, String> {
        match outcome {
            Ok(Handled::Processed) => {
                count(&self.name, "processed");
                Ok(Disposition::Ack)
            }
            Ok(Handled::Duplicate) => {
                tracing::debug!(consumer = %self.name, event_id = %event.id, "duplicate delivery acknowledged");
                count(&self.name, "duplicate");
                Ok(Disposition::Ack)
            }
            Err(HandlerError::Reject(reason)) => {
                tracing::warn!(
                    consumer = %self.name, event_id = %event.id, event_type = %event.event_type, error = %reason,
                    "event rejected by its consumer; dead-lettered"
                );
                count(&self.name, "rejected");
                self.dead_letter(Some(event.id), "message", &reason, None).await;
                Ok(Disposition::DeadLetter)
            }
            Err(HandlerError::Retry(reason)) => {
                count(&self.name, "retry");
                Err(reason)
            }
        }
    }

    async fn dead_letter(&self, event_id: Option<Uuid>, kind: &'static str, reason: &str, payload: Option<String>) {
        let row = NewDeadLetter {
            kind,
            consumer: self.name.clone(),
            reference: event_id.map_or_else(|| "unparsed".to_owned(), |id| id.to_string()),
            event_id,
            reason: truncate(reason, 1000),
            payload,
            attempts: 1,
        };
        if let Err(e) = storage::run(&self.db, move |conn| record_dead_letter(conn, &row)).await {
            tracing::error!(consumer = %self.name, error = %e, "dead letter could not be recorded");
        }
    }
}

fn count(consumer: &str, outcome: &str) {
    if let Some(m) = crate::metrics::METRICS.as_ref() {
        m.events_consumed.with_label_values(&[consumer, outcome]).inc();
    }
}

/// Records that `consumer` handled `event_id`; `false` when it already had (a redelivery). Call in
/// the transaction that commits the consumer's effects.
///
/// # Errors
/// A diesel error.
pub fn claim_event(conn: &mut PgConnection, consumer: &str, event_id: Uuid) -> QueryResult<bool> {
    let n = diesel::insert_into(processed_events::table)
        .values((processed_events::consumer.eq(consumer), processed_events::event_id.eq(event_id)))
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(n == 1)
}

/// [`claim_event`] for several events in one statement; returns the ids newly claimed (the others
/// had been handled before).
///
/// # Errors
/// A diesel error.
pub fn claim_events(
    conn: &mut PgConnection,
    consumer: &str,
    event_ids: &[Uuid],
) -> QueryResult<std::collections::HashSet<Uuid>> {
    if event_ids.is_empty() {
        return Ok(std::collections::HashSet::new());
    }
    let rows: Vec<_> = event_ids
        .iter()
        .map(|id| (processed_events::consumer.eq(consumer), processed_events::event_id.eq(*id)))
        .collect();
    let claimed: Vec<Uuid> = diesel::insert_into(processed_events::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .returning(processed_events::event_id)
        .get_results(conn)?;
    Ok(claimed.into_iter().collect())
}

/// A dead letter to record.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = dead_letters)]
pub struct NewDeadLetter {
    pub kind: &'static str,
    pub consumer: String,
    pub reference: String,
    pub event_id: Option<Uuid>,
    pub reason: String,
    pub payload: Option<String>,
    pub attempts: i32,
}

/// Inserts a dead letter and counts it.
///
/// # Errors
/// A storage error.
pub fn record_dead_letter(conn: &mut PgConnection, row: &NewDeadLetter) -> Result<(), StorageError> {
    diesel::insert_into(dead_letters::table).values(row.clone()).execute(conn)?;
    if let Some(m) = crate::metrics::METRICS.as_ref() {
        m.dead_letters.with_label_values(&[row.kind]).inc();
    }
    Ok(())
}
