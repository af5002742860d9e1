//! Admin views of the events machinery: `GET /api/v1/admin/events` (outbox backlog, pending and dead
//! e-mails and webhooks) and `GET /api/v1/admin/dead-letters`.

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::events::outbox;
use crate::events::schema::{dead_letters, email_jobs, webhook_deliveries};
use crate::http::error::ApiError;
use crate::http::pagination::{Page, PageQuery};
use crate::http::routes::{Api, ADMIN};
use crate::storage::schema::outbox as outbox_rows;
use crate::storage::{self, StorageError};

pub fn register(api: &mut Api) {
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/admin/events",
        ADMIN,
        "admin",
        "Events health: outbox backlog, broker, pending and dead e-mails and webhook deliveries",
        web::get().to(status),
    );
    r.responds::<EventsStatus>(200, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/admin/dead-letters",
        ADMIN,
        "admin",
        "Dead letters: e-mails and webhooks out of attempts, malformed or rejected broker messages",
        web::get().to(list_dead_letters),
    );
    r.query(&["kind", "limit", "cursor"]).responds_page::<DeadLetterView>(s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/admin/dead-letters/{id}/redrive",
        ADMIN,
        "admin",
        "Re-queue a dead-lettered broker message for publishing (idempotent)",
        web::post().to(redrive),
    );
    r.responds::<DeadLetterView>(200, s);
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventsStatus {
    pub broker: &'static str,
    pub outbox_depth: i64,
    pub outbox_oldest_age_secs: i64,
    pub emails_pending: i64,
    pub emails_dead: i64,
    pub webhooks_pending: i64,
    pub webhooks_dead: i64,
    pub dead_letters: i64,
}

async fn status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(events_status(&state).await?))
}

/// The events health figures (both transports).
///
/// # Errors
/// A storage error.
pub async fn events_status(state: &AppState) -> Result<EventsStatus, ApiError> {
    let broker = state.events.broker.kind();
    let s = storage::run(&state.db, move |conn| {
        let o = outbox::stats(conn)?;
        let count_mail = |conn: &mut PgConnection, st: &str| -> Result<i64, StorageError> {
            Ok(email_jobs::table.filter(email_jobs::status.eq(st)).count().get_result(conn)?)
        };
        let count_hooks = |conn: &mut PgConnection, st: &str| -> Result<i64, StorageError> {
            Ok(webhook_deliveries::table.filter(webhook_deliveries::status.eq(st)).count().get_result(conn)?)
        };
        Ok::<_, StorageError>(EventsStatus {
            broker,
            outbox_depth: o.depth,
            outbox_oldest_age_secs: o.oldest_age_secs,
            emails_pending: count_mail(conn, "pending")?,
            emails_dead: count_mail(conn, "dead")?,
            webhooks_pending: count_hooks(conn, "pending")?,
            webhooks_dead: count_hooks(conn, "dead")?,
            dead_letters: dead_letters::table.count().get_result(conn)?,
        })
    })
    .await?;
    Ok(s)
}

#[derive(Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = dead_letters)]
pub struct DeadLetterView {
    pub id: i64,
    /// `email`, `webhook` or `message`.
    pub kind: String,
    pub consumer: String,
    pub reference: String,
    pub event_id: Option<uuid::Uuid>,
    pub reason: String,
    pub payload: Option<String>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    /// When an admin re-queued its event for publishing (`null`: never).
    pub redriven_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
pub struct DeadLetterQuery {
    #[serde(flatten)]
    pub page: PageQuery,
    pub kind: Option<String>,
}

async fn list_dead_letters(
    state: web::Data<AppState>,
    q: web::Query<DeadLetterQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(dead_letters_page(&state, q.into_inner()).await?))
}

/// A page of dead letters, newest first, optionally of one kind (both transports).
///
/// # Errors
/// 422 naming `kind`, 400 for a bad page; a storage error.
pub async fn dead_letters_page(state: &AppState, q: DeadLetterQuery) -> Result<Page<DeadLetterView>, ApiError> {
    let (limit, cursor) = q.page.resolve()?;
    if let Some(k) = &q.kind {
        if !["email", "webhook", "message"].contains(&k.as_str()) {
            return Err(ApiError::validation("kind", "kind must be email, webhook or message"));
        }
    }
    let rows = storage::run(&state.db, move |conn| {
        let mut query = dead_letters::table
            .order(dead_letters::id.desc())
            .limit(limit + 1)
            .select(DeadLetterView::as_select())
            .into_boxed();
        if let Some(k) = q.kind {
            query = query.filter(dead_letters::kind.eq(k));
        }
        if let Some(c) = cursor {
            query = query.filter(dead_letters::id.lt(c));
        }
        query.load(conn).map_err(StorageError::from)
    })
    .await?;
    Ok(Page::from_rows(rows, limit, |d| d.id))
}

async fn redrive(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(redrive_dead_letter(&state, id.into_inner()).await?))
}

/// Re-queues the event of a dead-lettered broker message (`kind = message`) for publishing: its
/// outbox row becomes unpublished, so the relay publishes it again and consumers that handled it
/// before skip it as a duplicate. Idempotent: a dead letter already redriven is answered as it is,
/// without queueing the event a second time (both transports).
///
/// # Errors
/// 404 unknown dead letter; 409 `not_redrivable` for e-mail and webhook dead letters (they are
/// retried by their own queues), messages without an event id, or an event no longer in the
/// outbox; a storage error.
pub async fn redrive_dead_letter(state: &AppState, id: i64) -> Result<DeadLetterView, ApiError> {
    let view = storage::transaction(&state.db, move |conn| {
        let dl: DeadLetterView = dead_letters::table
            .find(id)
            .select(DeadLetterView::as_select())
            .for_update()
            .first(conn)
            .optional()?
            .ok_or(RedriveError::NotFound)?;
        if dl.redriven_at.is_some() {
            return Ok(dl);
        }
        if dl.kind != "message" {
            return Err(RedriveError::NotRedrivable(format!(
                "a dead letter of kind {} is retried by its own queue, not redriven",
                dl.kind
            )));
        }
        let Some(event_id) = dl.event_id else {
            return Err(RedriveError::NotRedrivable("the dead-lettered message had no event id".into()));
        };
        let requeued = diesel::update(outbox_rows::table.filter(outbox_rows::event_id.eq(event_id)))
            .set(outbox_rows::published_at.eq(None::<DateTime<Utc>>))
            .execute(conn)?;
        if requeued == 0 {
            return Err(RedriveError::NotRedrivable(format!("event {event_id} is no longer in the outbox")));
        }
        Ok(diesel::update(dead_letters::table.find(id))
            .set(dead_letters::redriven_at.eq(Utc::now()))
            .returning(DeadLetterView::as_returning())
            .get_result(conn)?)
    })
    .await?;
    crate::metrics::count("dead_letter_redrive", &view.kind);
    state.events.nudge_relay();
    Ok(view)
}

/// Why a dead letter cannot be redriven; mapped to HTTP in `http::error`.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("dead letter not found")]
    NotFound,
    #[error("{0}")]
    NotRedrivable(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<diesel::result::Error> for RedriveError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Storage(e.into())
    }
}
