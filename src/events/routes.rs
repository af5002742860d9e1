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
