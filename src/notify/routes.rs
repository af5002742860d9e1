//! `GET /api/v1/admin/mailbox`: the development mailbox, for admins.

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::pagination::{Page, PageQuery};
use crate::http::routes::{Api, ADMIN};
use crate::storage::{self, schema::mailbox, StorageError};

#[derive(Serialize, Queryable, utoipa::ToSchema)]
pub struct MailView {
    pub id: i64,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Deserialize)]
pub struct MailboxQuery {
    #[serde(flatten)]
    page: PageQuery,
    to: Option<String>,
}

pub fn register(api: &mut Api) {
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/admin/mailbox",
        ADMIN,
        "admin",
        "List messages in the development mailbox (newest first)",
        web::get().to(list),
    );
    r.query(&["to", "limit", "cursor"])
        .path_param("to", crate::http::routes::string_schema())
        .responds_page::<MailView>(s);
}

async fn list(state: web::Data<AppState>, q: web::Query<MailboxQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let (limit, cursor) = q.page.resolve()?;
    let rows: Vec<MailView> = storage::run(&state.db, move |conn| {
        let mut query = mailbox::table
            .select((
                mailbox::id,
                mailbox::to_address,
                mailbox::subject,
                mailbox::text_body,
                mailbox::html_body,
                mailbox::created_at,
            ))
            .order(mailbox::id.desc())
            .limit(limit + 1)
            .into_boxed();
        if let Some(to) = q.to {
            query = query.filter(mailbox::to_address.eq(to.to_lowercase()));
        }
        if let Some(c) = cursor {
            query = query.filter(mailbox::id.lt(c));
        }
        query.load(conn).map_err(StorageError::from)
    })
    .await?;
    Ok(HttpResponse::Ok().json(Page::from_rows(rows, limit, |m| m.id)))
}
