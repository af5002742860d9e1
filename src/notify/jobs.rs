//! E-mail jobs: how an e-mail is queued (inside the transaction of what caused it) and the sender
//! worker that delivers it — claim due jobs with a lease (`FOR UPDATE SKIP LOCKED`), render, send,
//! mark sent; on failure retry with exponential back-off, and after `events.max_attempts` attempts
//! move it to `dead_letters`. Contexts that hold a secret are scrubbed once the job is sent or dead.
//!
//! Delivery to SMTP is at-least-once: a crash after the SMTP server accepted a message but before
//! the job is marked sent resends it once the lease expires (same `Message-ID`, so receivers can
//! drop it). Everything before that point — a redelivered event, a replayed request — is deduplicated.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Nullable, Text, Uuid as SqlUuid};
use uuid::Uuid;

use crate::app::AppState;
use crate::events::consumer::{record_dead_letter, NewDeadLetter};
use crate::events::outbox::truncate;
use crate::events::schema::email_jobs;
use crate::notify::{templates, MailError, Mailer};
use crate::storage::{self, PgPool, StorageError};

/// An e-mail to send.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = email_jobs)]
pub struct NewMailJob {
    /// Unique per e-mail (e.g. `<event id>:<kind>:<recipient>`): queuing twice sends once.
    pub dedupe_key: String,
    pub event_id: Option<Uuid>,
    pub template: String,
    pub to_address: String,
    pub context: serde_json::Value,
    /// The context holds a secret (code, token): scrubbed after delivery, never logged.
    pub sensitive: bool,
}

/// Queues a job; `false` when a job with the same dedupe key exists already.
///
/// # Errors
/// A diesel error.
pub fn enqueue(conn: &mut PgConnection, job: &NewMailJob) -> QueryResult<bool> {
    let n = diesel::insert_into(email_jobs::table).values(job.clone()).on_conflict_do_nothing().execute(conn)?;
    Ok(n == 1)
}

/// Queues several jobs in one statement (those whose dedupe key exists already are skipped);
/// returns how many were queued.
///
/// # Errors
/// A diesel error.
pub fn enqueue_all(conn: &mut PgConnection, jobs: &[NewMailJob]) -> QueryResult<usize> {
    if jobs.is_empty() {
        return Ok(0);
    }
    diesel::insert_into(email_jobs::table).values(jobs).on_conflict_do_nothing().execute(conn)
}

#[derive(QueryableByName, Debug)]
struct Job {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    event_id: Option<Uuid>,
    #[diesel(sql_type = Text)]
    template: String,
    #[diesel(sql_type = Text)]
    to_address: String,
    #[diesel(sql_type = Jsonb)]
    context: serde_json::Value,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

const CLAIM: &str = "\
UPDATE email_jobs SET lease_until = now() + make_interval(secs => $2), attempts = email_jobs.attempts + 1 \
WHERE id IN ( \
  SELECT id FROM email_jobs \
  WHERE status = 'pending' AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until < now()) \
  ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) \
RETURNING id, event_id, template, to_address, context, attempts";

fn claim(conn: &mut PgConnection, limit: i64, lease_secs: i64) -> Result<Vec<Job>, StorageError> {
    let mut jobs: Vec<Job> =
        diesel::sql_query(CLAIM).bind::<BigInt, _>(limit).bind::<BigInt, _>(lease_secs).load(conn)?;
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}

/// Jobs claimed per round.
const CLAIM_BATCH: i64 = 64;
/// E-mails handed to the transport at once (SMTP connections in flight; the mailbox writes a
/// round's messages in one statement).
const SEND_CONCURRENCY: usize = 8;

const SCRUBBED: &str = r#"{"scrubbed": true}"#;

fn mark_sent(conn: &mut PgConnection, ids: &[i64]) -> Result<(), StorageError> {
    if ids.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "UPDATE email_jobs SET status = 'sent', sent_at = now(), lease_until = NULL, last_error = NULL, \
         context = CASE WHEN sensitive THEN $2::jsonb ELSE context END WHERE id = ANY($1)",
    )
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Text, _>(SCRUBBED)
    .execute(conn)?;
    Ok(())
}

/// Schedules the next attempt or, out of attempts (or never deliverable), dead-letters the job.
fn mark_failed(
    conn: &mut PgConnection,
    job: &Job,
    error: &str,
    permanent: bool,
    max_attempts: i32,
    next: DateTime<Utc>,
) -> Result<bool, StorageError> {
    let error = truncate(error, 500);
    if permanent || job.attempts >= max_attempts {
        conn.transaction(|conn| {
            diesel::sql_query(
                "UPDATE email_jobs SET status = 'dead', lease_until = NULL, last_error = $2, \
                 context = CASE WHEN sensitive THEN $3::jsonb ELSE context END WHERE id = $1",
            )
            .bind::<BigInt, _>(job.id)
            .bind::<Text, _>(&error)
            .bind::<Text, _>(SCRUBBED)
            .execute(conn)?;
            record_dead_letter(
                conn,
                &NewDeadLetter {
                    kind: "email",
                    consumer: "mailer".into(),
                    reference: format!("email_job:{}", job.id),
                    event_id: job.event_id,
                    reason: error.clone(),
                    payload: None,
                    attempts: job.attempts,
                },
            )
        })?;
        return Ok(true);
    }
    diesel::update(email_jobs::table.find(job.id))
        .set((
            email_jobs::next_attempt_at.eq(next),
            email_jobs::lease_until.eq(None::<DateTime<Utc>>),
            email_jobs::last_error.eq(error),
        ))
        .execute(conn)?;
    Ok(false)
}

/// Settings of the sender.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub max_attempts: i32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub poll: Duration,
    pub lease_secs: i64,
}

/// Starts the e-mail sender for this instance.
pub fn spawn_sender(state: &AppState) {
    let ev = &state.settings.events;
    let cfg = SenderConfig {
        max_attempts: ev.max_attempts,
        backoff_initial: Duration::from_millis(ev.mail_backoff_initial_ms),
        backoff_max: Duration::from_millis(ev.mail_backoff_max_ms),
        poll: Duration::from_millis(ev.poll_interval_ms),
        // Long enough for a claimed batch to be sent even with slow SMTP answers (up to 20 s each,
        // SEND_CONCURRENCY at a time).
        lease_secs: ev.lease_secs.max((CLAIM_BATCH / i64::try_from(SEND_CONCURRENCY).unwrap_or(1) + 1) * 20),
    };
    // Several loops: each round waits on a few commits, so rounds overlap; claims skip each other's
    // leased rows (`FOR UPDATE SKIP LOCKED`), as they do across instances.
    for _ in 0..ev.mail_senders.max(1) {
        let (db, mailer, wake, cfg) =
            (state.db.clone(), state.mailer.clone(), state.events.wake.mail.clone(), cfg.clone());
        let shutdown = state.shutdown.clone();
        state.shutdown.spawn("email-sender", async move {
            while !shutdown.is_started() {
                match round(&db, &mailer, &cfg).await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "e-mail sender could not reach the database"),
                }
                shutdown.wait_for(&wake, cfg.poll).await;
            }
        });
    }
}

/// One round: claims due jobs and tries each once (several at a time); returns how many were claimed.
///
/// # Errors
/// A storage error while claiming or recording an outcome.
pub async fn round(db: &PgPool, mailer: &Mailer, cfg: &SenderConfig) -> Result<usize, StorageError> {
    let lease = cfg.lease_secs;
    let jobs = storage::run(db, move |conn| claim(conn, CLAIM_BATCH, lease)).await?;
    let n = jobs.len();
    if n == 0 {
        return Ok(0);
    }
    // Render every job; the ones that rendered go to the transport together, in claim order.
    let mut outcomes: Vec<Option<Result<(), (String, bool)>>> = Vec::with_capacity(n);
    let mut emails = Vec::with_capacity(n);
    for job in &jobs {
        match templates::render(&job.template, &job.to_address, &job.context) {
            Err(e) => outcomes.push(Some(Err((e.to_string(), true)))),
            Ok(mut email) => {
                email.message_id = Some(format!("<email-job-{}@payd>", job.id));
                emails.push(email);
                outcomes.push(None);
            }
        }
    }
    let mut sent = mailer.send_all(emails, SEND_CONCURRENCY).await.into_iter();
    for slot in outcomes.iter_mut().filter(|o| o.is_none()) {
        *slot = Some(match sent.next() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err((e.to_string(), matches!(e, MailError::Address(_)))),
            None => Err(("the transport gave no answer".to_owned(), false)),
        });
    }
    let sent: Vec<&Job> =
        jobs.iter().zip(&outcomes).filter(|(_, o)| matches!(o, Some(Ok(())))).map(|(j, _)| j).collect();
    if !sent.is_empty() {
        let ids: Vec<i64> = sent.iter().map(|j| j.id).collect();
        storage::run(db, move |conn| mark_sent(conn, &ids)).await?;
        for job in &sent {
            tracing::debug!(job = job.id, template = %job.template, "e-mail sent");
        }
        count_n("sent", sent.len());
    }
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        let Some(Err((error, permanent))) = outcome else { continue };
        let retry = u32::try_from(job.attempts.saturating_sub(1)).unwrap_or(0);
        let wait = crate::events::delay(retry, cfg.backoff_initial, cfg.backoff_max);
        let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(60));
        let max = cfg.max_attempts;
        let (id, template, attempts) = (job.id, job.template.clone(), job.attempts);
        let err_text = error.clone();
        let dead = storage::run(db, move |conn| mark_failed(conn, &job, &err_text, permanent, max, next)).await?;
        if dead {
            tracing::error!(job = id, template = %template, attempts, error = %error, "e-mail dead-lettered");
            count("dead");
        } else {
            tracing::warn!(job = id, template = %template, attempts, error = %error,
                retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "e-mail failed; will retry");
            count("failed");
        }
    }
    Ok(n)
}

fn count_n(outcome: &str, n: usize) {
    if let Some(m) = crate::metrics::METRICS.as_ref() {
        m.emails.with_label_values(&[outcome]).inc_by(u64::try_from(n).unwrap_or(0));
    }
}

fn count(outcome: &str) {
    if let Some(m) = crate::metrics::METRICS.as_ref() {
        m.emails.with_label_values(&[outcome]).inc();
    }
}
