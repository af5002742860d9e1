//! The transactional outbox: how domains add events (in their own transaction), and how the relay
//! claims, marks and releases rows. Claims take a lease (owner + expiry) under one advisory lock, and
//! never take a row while an earlier unpublished row of the same aggregate key is leased by anyone —
//! so per-key order holds even with several relays, and a crashed relay's rows come back after the lease.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Text, Timestamptz, Uuid as SqlUuid};
use uuid::Uuid;

use crate::events::{catalogue, Envelope};
use crate::ledger::NewEvent;
use crate::storage::schema::outbox;

/// Key of the advisory lock that serialises claims (not publishing) across relays.
const CLAIM_LOCK: i64 = 0x7061_7964_6f75_7462; // "paydoutb"

/// An event for `event_type` with a fresh time-ordered id and the catalogue's schema version.
pub fn new_event(
    event_type: &str,
    aggregate_type: &str,
    aggregate_key: String,
    payload: serde_json::Value,
) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: catalogue::find(event_type).map_or(1, |s| s.schema_version),
        aggregate_type: aggregate_type.to_owned(),
        aggregate_key,
        payload,
    }
}

/// Adds an event to the outbox; call inside the transaction of the change it describes.
///
/// # Errors
/// A diesel error (the caller's transaction then rolls back with it).
pub fn insert(conn: &mut PgConnection, event: &NewEvent) -> QueryResult<()> {
    diesel::insert_into(outbox::table).values(event.clone()).execute(conn).map(|_| ())
}

/// A claimed row: the outbox id (publish order) and the event.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub event: Envelope,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = SqlUuid)]
    event_id: Uuid,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Integer)]
    schema_version: i32,
    #[diesel(sql_type = Text)]
    aggregate_type: String,
    #[diesel(sql_type = Text)]
    aggregate_key: String,
    #[diesel(sql_type = Jsonb)]
    payload: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

const CLAIM: &str = "\
WITH c AS ( \
  SELECT o.id FROM outbox o \
  WHERE o.published_at IS NULL \
    AND (o.lease_until IS NULL OR o.lease_until < now()) \
    AND NOT EXISTS ( \
      SELECT 1 FROM outbox p \
      WHERE p.aggregate_key = o.aggregate_key AND p.published_at IS NULL AND p.id < o.id \
        AND p.lease_until >= now()) \
  ORDER BY o.id \
  LIMIT $2 \
  FOR UPDATE SKIP LOCKED) \
UPDATE outbox SET lease_owner = $1, lease_until = now() + make_interval(secs => $3), \
       publish_attempts = outbox.publish_attempts + 1 \
FROM c WHERE outbox.id = c.id \
RETURNING outbox.id, outbox.event_id, outbox.event_type, outbox.schema_version, outbox.aggregate_type, \
          outbox.aggregate_key, outbox.payload, outbox.created_at";

/// Claims up to `limit` unpublished rows for `owner` for `lease_secs`, in id order.
///
/// # Errors
/// A diesel error.
pub fn claim(conn: &mut PgConnection, owner: Uuid, limit: i64, lease_secs: i64) -> QueryResult<Vec<Claimed>> {
    conn.transaction(|conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)").bind::<BigInt, _>(CLAIM_LOCK).execute(conn)?;
        let mut rows: Vec<Row> = diesel::sql_query(CLAIM)
            .bind::<SqlUuid, _>(owner)
            .bind::<BigInt, _>(limit)
            .bind::<BigInt, _>(lease_secs)
            .load(conn)?;
        rows.sort_by_key(|r| r.id);
        Ok(rows
            .into_iter()
            .map(|r| Claimed {
                id: r.id,
                event: Envelope {
                    id: r.event_id,
                    event_type: r.event_type,
                    schema_version: r.schema_version,
                    occurred_at: r.created_at,
                    aggregate_type: r.aggregate_type,
                    aggregate_key: r.aggregate_key,
                    payload: r.payload,
                },
            })
            .collect())
    })
}

/// Marks rows published (the broker confirmed them).
///
/// # Errors
/// A diesel error.
pub fn mark_published(conn: &mut PgConnection, ids: &[i64]) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::sql_query(
        "UPDATE outbox SET published_at = now(), lease_owner = NULL, lease_until = NULL, last_error = NULL \
         WHERE id = ANY($1)",
    )
    .bind::<Array<BigInt>, _>(ids)
    .execute(conn)
}

/// Gives rows back (publishing failed) so the next round — of any relay — takes them again.
///
/// # Errors
/// A diesel error.
pub fn release(conn: &mut PgConnection, owner: Uuid, ids: &[i64], error: &str) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::sql_query(
        "UPDATE outbox SET lease_owner = NULL, lease_until = NULL, last_error = $3 \
         WHERE id = ANY($1) AND lease_owner = $2 AND published_at IS NULL",
    )
    .bind::<Array<BigInt>, _>(ids)
    .bind::<SqlUuid, _>(owner)
    .bind::<Text, _>(truncate(error, 500))
    .execute(conn)
}

/// The outbox's backlog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub depth: i64,
    pub oldest_age_secs: i64,
}

#[derive(QueryableByName)]
struct StatsRow {
    #[diesel(sql_type = BigInt)]
    depth: i64,
    #[diesel(sql_type = BigInt)]
    oldest: i64,
}

/// Number of unpublished rows and the age of the oldest, in seconds.
///
/// # Errors
/// A diesel error (as `StorageError`).
pub fn stats(conn: &mut PgConnection) -> Result<Stats, crate::storage::StorageError> {
    let r: StatsRow = diesel::sql_query(
        "SELECT count(*)::bigint AS depth, \
                COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::bigint AS oldest \
         FROM outbox WHERE published_at IS NULL",
    )
    .get_result(conn)?;
    Ok(Stats { depth: r.depth, oldest_age_secs: r.oldest })
}

/// Work waiting in the e-mail and webhook queues (the alerts' backlog gauges).
#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct Backlog {
    #[diesel(sql_type = BigInt)]
    pub emails_pending: i64,
    #[diesel(sql_type = BigInt)]
    pub emails_oldest_age_secs: i64,
    #[diesel(sql_type = BigInt)]
    pub webhooks_pending: i64,
    #[diesel(sql_type = BigInt)]
    pub webhooks_oldest_age_secs: i64,
}

/// Pending e-mail jobs and webhook deliveries, and the age of the oldest of each (both counted on
/// their partial `status = 'pending'` indexes).
///
/// # Errors
/// A diesel error (as `StorageError`).
pub fn backlog(conn: &mut PgConnection) -> Result<Backlog, crate::storage::StorageError> {
    Ok(diesel::sql_query(
        "SELECT e.n AS emails_pending, e.age AS emails_oldest_age_secs, \
                w.n AS webhooks_pending, w.age AS webhooks_oldest_age_secs \
         FROM (SELECT count(*)::bigint AS n, \
                      COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::bigint AS age \
               FROM email_jobs WHERE status = 'pending') e, \
              (SELECT count(*)::bigint AS n, \
                      COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::bigint AS age \
               FROM webhook_deliveries WHERE status = 'pending') w",
    )
    .get_result(conn)?)
}

/// Deletes published outbox rows, dedupe records, sent e-mail jobs and succeeded webhook deliveries
/// older than `hours`; returns how many rows went.
///
/// # Errors
/// A diesel error (as `StorageError`).
pub fn purge(conn: &mut PgConnection, hours: i64) -> Result<usize, crate::storage::StorageError> {
    let a = diesel::sql_query(
        "DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < now() - make_interval(hours => $1)",
    )
    .bind::<Integer, _>(i32::try_from(hours).unwrap_or(i32::MAX))
    .execute(conn)?;
    let b = diesel::sql_query("DELETE FROM processed_events WHERE processed_at < now() - make_interval(hours => $1)")
        .bind::<Integer, _>(i32::try_from(hours).unwrap_or(i32::MAX))
        .execute(conn)?;
    // Delivered e-mails and webhook deliveries (with their attempt log, by cascade). Pending and dead
    // ones stay: the first still have work to do, the second are for an operator (see dead_letters).
    let c = diesel::sql_query(
        "DELETE FROM email_jobs WHERE status = 'sent' AND sent_at < now() - make_interval(hours => $1)",
    )
    .bind::<Integer, _>(i32::try_from(hours).unwrap_or(i32::MAX))
    .execute(conn)?;
    let d = diesel::sql_query(
        "DELETE FROM webhook_deliveries WHERE status = 'succeeded' AND completed_at < now() - make_interval(hours => $1)",
    )
    .bind::<Integer, _>(i32::try_from(hours).unwrap_or(i32::MAX))
    .execute(conn)?;
    Ok(a + b + c + d)
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
