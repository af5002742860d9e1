//! Merchant documents beyond upload and review: replacing a document with a new version (old versions
//! are kept for audit, never deleted), withdrawing one still waiting for review, the version history,
//! and the admin review queue across merchants.
//!
//! Versions: a replacement is a new row (`version` + 1, `replaces_id` → the old row) and the old row
//! gets `superseded_by` → the new one; lists show the current version (`superseded_by IS NULL`), reviews
//! apply to it only, and merchant approval counts only current, approved versions of the required
//! types. Replacing an approved document therefore puts that type back to waiting for review: a
//! pending merchant cannot be approved until the new version is approved too. A merchant that is
//! already active stays active — its approval was decided on the version it was approved with, which
//! stays on record — and an admin who wants the new version reviewed first suspends it explicitly.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use serde::Deserialize;

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::pagination::{search_opt, Page, PageQuery};
use crate::http::routes::{Access, Api, ADMIN};
use crate::ids::{DocumentId, MerchantId};
use crate::ledger::NewEvent;
use crate::merchants::routes::{emit, merchant_event, read_upload, DocumentView, Incoming, ReviewRequest, DOC_TYPES};
use crate::merchants::{find, find_for, Merchant, MerchantError};
use crate::storage::schema::merchant_documents;
use crate::storage::text_enum::text_enum;
use crate::storage::{self, StorageError};

text_enum! {
    /// Where a document version is in review (`merchant_documents.status`).
    DocumentStatus {
        /// Waiting for an admin's review.
        Submitted = "submitted",
        Approved = "approved",
        Rejected = "rejected",
        /// Taken back by the merchant before review.
        Withdrawn = "withdrawn",
    }
}

pub fn register(api: &mut Api) {
    let t = "merchants";
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/merchants/{id}/documents/{doc_id}/replace",
        Access::Authenticated,
        t,
        "Replace a document with a new version (multipart: file, optional doc_type); waits for review again",
        web::post().to(replace),
    );
    r.body_as("multipart/form-data").responds::<DocumentView>(201, s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/merchants/{id}/documents/{doc_id}/withdraw",
        Access::Authenticated,
        t,
        "Withdraw a document still waiting for review (owner)",
        web::post().to(withdraw),
    );
    r.responds::<DocumentView>(200, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/merchants/{id}/documents/{doc_id}/versions",
        Access::Authenticated,
        t,
        "Every version of a document, oldest first (audit)",
        web::get().to(versions),
    );
    r.responds::<Vec<DocumentView>>(200, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/merchant-documents",
        ADMIN,
        t,
        "Review queue: current documents across merchants, oldest first (default status submitted)",
        web::get().to(queue),
    );
    r.query(&["status", "doc_type", "merchant_id", "from", "to", "search", "include_total", "limit", "cursor"])
        .responds_page::<DocumentView>(s);
}

/// A document event: the merchant as it is, the document in `details`.
pub fn document_event(event_type: &str, m: &Merchant, doc: &DocumentView, extra: serde_json::Value) -> NewEvent {
    let mut details = serde_json::json!({
        "document_id": doc.id, "doc_type": doc.doc_type, "file_name": doc.file_name,
        "version": doc.version, "replaces_id": doc.replaces_id, "status": doc.status,
    });
    if let (Some(d), Some(e)) = (details.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    merchant_event(event_type, m, details)
}

/// The free-text filter on documents (file name or type); `pattern` comes from [`search_opt`]. The
/// expression is the one `merchant_documents_search_trgm` indexes.
pub fn matches(pattern: String) -> Box<dyn BoxableExpression<merchant_documents::table, Pg, SqlType = Bool>> {
    Box::new(
        sql::<Bool>("(merchant_documents.file_name || ' ' || merchant_documents.doc_type) ILIKE ")
            .bind::<Text, _>(pattern),
    )
}

/// Document `doc_id` of merchant `id` (any version).
///
/// # Errors
/// `DocumentNotFound`; a storage error.
pub fn find_doc(conn: &mut PgConnection, id: MerchantId, doc_id: DocumentId) -> Result<DocumentView, MerchantError> {
    merchant_documents::table
        .filter(merchant_documents::id.eq(doc_id))
        .filter(merchant_documents::merchant_id.eq(id))
        .select(DocumentView::as_select())
        .first(conn)
        .optional()?
        .ok_or(MerchantError::DocumentNotFound)
}

/// Whether an admin may review `doc`: its current version, not withdrawn.
///
/// # Errors
/// `DocumentSuperseded`, `DocumentWithdrawn`.
pub fn reviewable(doc: &DocumentView) -> Result<(), MerchantError> {
    if let Some(newer) = doc.superseded_by {
        return Err(MerchantError::DocumentSuperseded(newer));
    }
    if doc.status == DocumentStatus::Withdrawn {
        return Err(MerchantError::DocumentWithdrawn);
    }
    Ok(())
}

/// Replaces document `doc_id` of merchant `id` with the uploaded file: a new version waiting for
/// review; the old version stays, marked superseded. Owner or admin, like uploads.
async fn replace(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    path: web::Path<(MerchantId, DocumentId)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (id, doc_id) = path.into_inner();
    let old_type = replaceable(&state, user.clone(), id, doc_id).await?;
    let file = read_upload(&state, &req, &user, id, payload, Some(&old_type)).await?;
    Ok(HttpResponse::Created().json(replace_document(&state, id, doc_id, file).await?))
}

/// Refuses early (before a replacement file is read and stored) what [`replace_document`] would
/// refuse after; answers the replaced document's type.
///
/// # Errors
/// 404 not the caller's merchant or unknown document, 409 superseded; a storage error.
pub async fn replaceable(
    state: &AppState,
    user: AuthUser,
    id: MerchantId,
    doc_id: DocumentId,
) -> Result<String, ApiError> {
    let old_type = storage::run(&state.db, move |conn| {
        find_for(conn, id, &user)?;
        let old = find_doc(conn, id, doc_id)?;
        match old.superseded_by {
            Some(newer) => Err(MerchantError::DocumentSuperseded(newer)),
            None => Ok(old.doc_type),
        }
    })
    .await?;
    Ok(old_type)
}

/// Records a stored replacement file as the new version of document `doc_id` (both transports).
///
/// # Errors
/// 404, 409 superseded, 400 a different `doc_type`; a storage error.
pub async fn replace_document(
    state: &AppState,
    id: MerchantId,
    doc_id: DocumentId,
    file: Incoming,
) -> Result<DocumentView, ApiError> {
    let doc = storage::transaction(&state.db, move |conn| {
        let m = find(conn, id)?;
        let old: DocumentView = merchant_documents::table
            .filter(merchant_documents::id.eq(doc_id))
            .filter(merchant_documents::merchant_id.eq(id))
            .select(DocumentView::as_select())
            .for_update()
            .first(conn)
            .optional()?
            .ok_or(MerchantError::DocumentNotFound)?;
        if let Some(newer) = old.superseded_by {
            return Err(MerchantError::DocumentSuperseded(newer));
        }
        if let Some(t) = file.doc_type.as_ref().filter(|t| **t != old.doc_type) {
            return Err(MerchantError::BadUpload(format!(
                "doc_type {t} does not match the replaced document ({}); upload a new document instead",
                old.doc_type
            )));
        }
        let new: DocumentView = diesel::insert_into(merchant_documents::table)
            .values((
                merchant_documents::merchant_id.eq(id),
                merchant_documents::doc_type.eq(&old.doc_type),
                merchant_documents::file_name.eq(&file.file_name),
                merchant_documents::content_type.eq(file.content_type),
                merchant_documents::size_bytes.eq(file.size),
                merchant_documents::sha256.eq(&file.sha256),
                merchant_documents::storage_key.eq(&file.storage_key),
                merchant_documents::version.eq(old.version.saturating_add(1)),
                merchant_documents::replaces_id.eq(old.id),
            ))
            .returning(DocumentView::as_returning())
            .get_result(conn)?;
        diesel::update(merchant_documents::table.find(old.id))
            .set(merchant_documents::superseded_by.eq(new.id))
            .execute(conn)?;
        let extra = serde_json::json!({"replaced_status": old.status});
        emit(conn, document_event("document.replaced", &m, &new, extra))?;
        Ok::<_, MerchantError>(new)
    })
    .await?;
    crate::metrics::count("merchant_document", "replaced");
    Ok(doc)
}

/// Withdraws a document still waiting for review (the merchant's owner only; anyone else's answers
/// like a missing merchant). It stays listed, `withdrawn`, and is never reviewed.
async fn withdraw(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(MerchantId, DocumentId)>,
) -> Result<HttpResponse, ApiError> {
    let (id, doc_id) = path.into_inner();
    Ok(HttpResponse::Ok().json(withdraw_document(&state, user, id, doc_id).await?))
}

/// Withdraws a document still waiting for review (the merchant's owner only; both transports).
///
/// # Errors
/// 404, 409 superseded, reviewed or already withdrawn; a storage error.
pub async fn withdraw_document(
    state: &AppState,
    user: AuthUser,
    id: MerchantId,
    doc_id: DocumentId,
) -> Result<DocumentView, ApiError> {
    let doc = storage::transaction(&state.db, move |conn| {
        let m = find(conn, id)?;
        if m.owner_id != user.user_id {
            return Err(MerchantError::NotOwner);
        }
        let doc = find_doc(conn, id, doc_id)?;
        if let Some(newer) = doc.superseded_by {
            return Err(MerchantError::DocumentSuperseded(newer));
        }
        match doc.status {
            DocumentStatus::Submitted => {}
            DocumentStatus::Withdrawn => return Err(MerchantError::DocumentWithdrawn),
            other => return Err(MerchantError::DocumentReviewed(other.to_string())),
        }
        let now = Utc::now();
        // Guarded on the status, so a review committing meanwhile wins and this answers 409.
        let doc: DocumentView = diesel::update(
            merchant_documents::table
                .filter(merchant_documents::id.eq(doc_id))
                .filter(merchant_documents::status.eq(DocumentStatus::Submitted))
                .filter(merchant_documents::superseded_by.is_null()),
        )
        .set((merchant_documents::status.eq(DocumentStatus::Withdrawn), merchant_documents::withdrawn_at.eq(now)))
        .returning(DocumentView::as_returning())
        .get_result(conn)
        .optional()?
        .ok_or(MerchantError::DocumentChanged)?;
        emit(conn, document_event("document.withdrawn", &m, &doc, serde_json::Value::Null))?;
        Ok::<_, MerchantError>(doc)
    })
    .await?;
    Ok(doc)
}

/// Every version of the document chain `doc_id` belongs to, oldest first (owner or admin).
async fn versions(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(MerchantId, DocumentId)>,
) -> Result<HttpResponse, ApiError> {
    let (id, doc_id) = path.into_inner();
    Ok(HttpResponse::Ok().json(document_versions(&state, user, id, doc_id).await?))
}

/// Every version of the document chain `doc_id` belongs to, oldest first (owner or admin; both
/// transports).
///
/// # Errors
/// 404; a storage error.
pub async fn document_versions(
    state: &AppState,
    user: AuthUser,
    id: MerchantId,
    doc_id: DocumentId,
) -> Result<Vec<DocumentView>, ApiError> {
    let docs = storage::run(&state.db, move |conn| {
        find_for(conn, id, &user)?;
        let doc = find_doc(conn, id, doc_id)?;
        // A merchant has a handful of documents: the chain is walked in memory from the merchant's
        // rows (index `merchant_documents_merchant_idx`), not by one query per version.
        let all: Vec<DocumentView> = merchant_documents::table
            .filter(merchant_documents::merchant_id.eq(id))
            .filter(merchant_documents::doc_type.eq(&doc.doc_type))
            .select(DocumentView::as_select())
            .order(merchant_documents::id.asc())
            .load(conn)?;
        Ok::<_, MerchantError>(chain(all, doc_id))
    })
    .await?;
    Ok(docs)
}

/// The versions linked to `doc_id` (through `replaces_id`/`superseded_by`), oldest first.
fn chain(all: Vec<DocumentView>, doc_id: DocumentId) -> Vec<DocumentView> {
    let by_id: std::collections::HashMap<DocumentId, usize> = all.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
    let mut first = doc_id;
    let mut guard = all.len();
    while let Some(prev) = by_id.get(&first).and_then(|i| all.get(*i)).and_then(|d| d.replaces_id) {
        first = prev;
        guard = guard.saturating_sub(1);
        if guard == 0 {
            break;
        }
    }
    let mut ids = Vec::new();
    let mut next = Some(first);
    while let Some(id) = next {
        if ids.contains(&id) || ids.len() > all.len() {
            break;
        }
        ids.push(id);
        next = by_id.get(&id).and_then(|i| all.get(*i)).and_then(|d| d.superseded_by);
    }
    let mut out: Vec<DocumentView> = all.into_iter().filter(|d| ids.contains(&d.id)).collect();
    out.sort_by_key(|d| d.version);
    out
}

/// The review queue's filters (`GET /api/v1/merchant-documents`, `Merchants.ListReviewQueue`).
#[derive(Deserialize, Default)]
pub struct QueueQuery {
    #[serde(flatten)]
    pub page: PageQuery,
    /// A document status; absent: `submitted`.
    pub status: Option<String>,
    pub doc_type: Option<String>,
    pub merchant_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub search: Option<String>,
}

fn queue_matching(
    status: DocumentStatus,
    doc_type: Option<String>,
    merchant: Option<i64>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    pattern: Option<String>,
) -> merchant_documents::BoxedQuery<'static, Pg> {
    let mut q = merchant_documents::table
        .filter(merchant_documents::superseded_by.is_null())
        .filter(merchant_documents::status.eq(status))
        .into_boxed();
    if let Some(t) = doc_type {
        q = q.filter(merchant_documents::doc_type.eq(t));
    }
    if let Some(m) = merchant {
        q = q.filter(merchant_documents::merchant_id.eq(m));
    }
    if let Some(f) = from {
        q = q.filter(merchant_documents::created_at.ge(f));
    }
    if let Some(t) = to {
        q = q.filter(merchant_documents::created_at.le(t));
    }
    if let Some(p) = pattern {
        q = q.filter(matches(p));
    }
    q
}

/// The admin review queue: current documents of one status (default `submitted`) across merchants,
/// oldest first, walked on `merchant_documents_queue_idx` (status, id) with keyset pagination.
async fn queue(state: web::Data<AppState>, q: web::Query<QueueQuery>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(review_queue(&state, q.into_inner()).await?))
}

/// One page of the admin review queue (both transports).
///
/// # Errors
/// 422 naming a bad filter or page; a storage error.
pub async fn review_queue(state: &AppState, q: QueueQuery) -> Result<Page<DocumentView>, ApiError> {
    let (limit, cursor, with_total) = q.page.resolve_with_total()?;
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => DocumentStatus::Submitted,
        Some(s) => s.parse().map_err(|_| {
            let all: Vec<&str> = DocumentStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::validation("status", format!("status must be one of: {}", all.join(", ")))
        })?,
    };
    let doc_type = q.doc_type.filter(|s| !s.is_empty());
    if doc_type.as_deref().is_some_and(|t| !DOC_TYPES.contains(&t)) {
        return Err(ApiError::validation("doc_type", format!("doc_type must be one of: {}", DOC_TYPES.join(", "))));
    }
    let merchant = match q.merchant_id.as_deref() {
        None | Some("") => None,
        Some(m) => {
            Some(m.parse::<i64>().map_err(|_| ApiError::validation("merchant_id", "merchant_id must be an integer"))?)
        }
    };
    if let (Some(f), Some(t)) = (q.from, q.to) {
        if f > t {
            return Err(ApiError::validation("from", "from must not be after to"));
        }
    }
    let pattern = search_opt(q.search.as_deref())?;
    let (from, to) = (q.from, q.to);
    let (rows, total) = storage::run(&state.db, move |conn| {
        let total: Option<i64> = if with_total {
            Some(
                queue_matching(status, doc_type.clone(), merchant, from, to, pattern.clone())
                    .count()
                    .get_result(conn)?,
            )
        } else {
            None
        };
        let mut query = queue_matching(status, doc_type, merchant, from, to, pattern)
            .select(DocumentView::as_select())
            .order(merchant_documents::id.asc())
            .limit(limit + 1);
        if let Some(c) = cursor {
            query = query.filter(merchant_documents::id.gt(c));
        }
        Ok::<_, StorageError>((query.load::<DocumentView>(conn)?, total))
    })
    .await?;
    Ok(Page::from_rows(rows, limit, |d| d.id.get()).with_total(total))
}

/// Records a stored upload as a new document waiting for review (both transports).
///
/// # Errors
/// 422 naming `doc_type` when it was not sent, 404; a storage error.
pub async fn upload_document(state: &AppState, id: MerchantId, file: Incoming) -> Result<DocumentView, ApiError> {
    let doc_type = file.doc_type.clone().ok_or_else(|| ApiError::validation("doc_type", "doc_type is required"))?;
    let doc = storage::transaction(&state.db, move |conn| {
        let m = find(conn, id)?;
        let doc: DocumentView = diesel::insert_into(merchant_documents::table)
            .values((
                merchant_documents::merchant_id.eq(id),
                merchant_documents::doc_type.eq(&doc_type),
                merchant_documents::file_name.eq(&file.file_name),
                merchant_documents::content_type.eq(file.content_type),
                merchant_documents::size_bytes.eq(file.size),
                merchant_documents::sha256.eq(&file.sha256),
                merchant_documents::storage_key.eq(&file.storage_key),
            ))
            .returning(DocumentView::as_returning())
            .get_result(conn)?;
        emit(conn, document_event("document.submitted", &m, &doc, serde_json::Value::Null))?;
        Ok::<_, MerchantError>(doc)
    })
    .await?;
    Ok(doc)
}

/// Refuses a caller who may not see merchant `id` (owner or admin) before an upload is received.
///
/// # Errors
/// 404; a storage error.
pub async fn check_visible(state: &AppState, user: AuthUser, id: MerchantId) -> Result<(), ApiError> {
    storage::run(&state.db, move |conn| find_for(conn, id, &user)).await?;
    Ok(())
}

/// The merchant's current documents (the newest version of each), oldest first; `search`: file
/// name or type (both transports).
///
/// # Errors
/// 404, 422 naming `search`; a storage error.
pub async fn list_documents(
    state: &AppState,
    user: AuthUser,
    id: MerchantId,
    search: Option<String>,
) -> Result<Vec<DocumentView>, ApiError> {
    let pattern = search_opt(search.as_deref())?;
    let docs = storage::run(&state.db, move |conn| {
        find_for(conn, id, &user)?;
        let mut query = merchant_documents::table
            .filter(merchant_documents::merchant_id.eq(id))
            .filter(merchant_documents::superseded_by.is_null())
            .select(DocumentView::as_select())
            .order(merchant_documents::id.asc())
            .into_boxed();
        if let Some(p) = pattern {
            query = query.filter(matches(p));
        }
        Ok::<_, MerchantError>(query.load(conn)?)
    })
    .await?;
    Ok(docs)
}

/// A document's stored file.
pub struct DocumentContent {
    pub content_type: String,
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// The file of a document version (owner or admin; both transports).
///
/// # Errors
/// 404; a storage or blob store error.
pub async fn document_content(
    state: &AppState,
    user: AuthUser,
    id: MerchantId,
    doc_id: DocumentId,
) -> Result<DocumentContent, ApiError> {
    let (content_type, file_name, key) = storage::run(&state.db, move |conn| {
        find_for(conn, id, &user)?;
        merchant_documents::table
            .filter(merchant_documents::id.eq(doc_id))
            .filter(merchant_documents::merchant_id.eq(id))
            .select((merchant_documents::content_type, merchant_documents::file_name, merchant_documents::storage_key))
            .first::<(String, String, String)>(conn)
            .optional()?
            .ok_or(MerchantError::DocumentNotFound)
    })
    .await?;
    let blobs = state.blobs.clone();
    let bytes = tokio::task::spawn_blocking(move || blobs.get(&key))
        .await
        .map_err(|e| MerchantError::Blob(e.to_string()))?
        .map_err(MerchantError::Blob)?;
    Ok(DocumentContent { content_type, file_name, bytes })
}

/// An admin's review of the current version of a document: approve or reject (both transports).
///
/// # Errors
/// 404, 409 superseded, withdrawn or changed meanwhile; a storage error.
pub async fn review_document(
    state: &AppState,
    admin: AuthUser,
    id: MerchantId,
    doc_id: DocumentId,
    b: ReviewRequest,
) -> Result<DocumentView, ApiError> {
    let doc = storage::transaction(&state.db, move |conn| {
        let m = find(conn, id)?;
        let status = if b.decision == "approve" { DocumentStatus::Approved } else { DocumentStatus::Rejected };
        // Reviews apply to the current version only, and a withdrawn document is not reviewed.
        let current = find_doc(conn, id, doc_id)?;
        reviewable(&current)?;
        let doc: DocumentView = diesel::update(
            merchant_documents::table
                .filter(merchant_documents::id.eq(doc_id))
                .filter(merchant_documents::merchant_id.eq(id))
                .filter(merchant_documents::superseded_by.is_null())
                .filter(merchant_documents::status.ne(DocumentStatus::Withdrawn)),
        )
        .set((
            merchant_documents::status.eq(status),
            merchant_documents::review_note.eq(b.note.clone()),
            merchant_documents::reviewed_by.eq(admin.user_id),
            merchant_documents::reviewed_at.eq(Utc::now()),
        ))
        .returning(DocumentView::as_returning())
        .get_result(conn)
        .optional()?
        .ok_or(MerchantError::DocumentChanged)?;
        emit(
            conn,
            merchant_event(
                "document.reviewed",
                &m,
                serde_json::json!({"document_id": doc.id, "doc_type": doc.doc_type, "status": status, "note": b.note}),
            ),
        )?;
        Ok::<_, MerchantError>(doc)
    })
    .await?;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn doc(id: i64, version: i32, replaces: Option<i64>, superseded: Option<i64>) -> DocumentView {
        DocumentView {
            id: DocumentId::new(id),
            merchant_id: MerchantId::new(1),
            doc_type: "tax_id".into(),
            file_name: format!("v{version}.pdf"),
            content_type: "application/pdf".into(),
            size_bytes: 1,
            sha256: String::new(),
            status: DocumentStatus::Submitted,
            review_note: None,
            reviewed_by: None,
            reviewed_at: None,
            created_at: Utc::now(),
            version,
            replaces_id: replaces.map(DocumentId::new),
            superseded_by: superseded.map(DocumentId::new),
            withdrawn_at: None,
        }
    }

    #[test]
    fn chain_follows_links_from_any_version_and_skips_other_chains() {
        let all = || {
            vec![doc(1, 1, None, Some(3)), doc(2, 1, None, None), doc(3, 2, Some(1), Some(7)), doc(7, 3, Some(3), None)]
        };
        for from in [1, 3, 7] {
            let ids: Vec<i64> = chain(all(), DocumentId::new(from)).iter().map(|d| d.id.get()).collect();
            assert_eq!(ids, vec![1, 3, 7], "from {from}");
        }
        assert_eq!(chain(all(), DocumentId::new(2)).iter().map(|d| d.id.get()).collect::<Vec<_>>(), vec![2]);
        // A broken loop ends instead of spinning.
        let looped = vec![doc(1, 1, Some(2), Some(2)), doc(2, 2, Some(1), Some(1))];
        assert!(chain(looped, DocumentId::new(1)).len() <= 2);
    }

    #[test]
    fn only_current_unwithdrawn_documents_are_reviewable() {
        assert!(reviewable(&doc(1, 1, None, None)).is_ok());
        assert!(
            matches!(reviewable(&doc(1, 1, None, Some(5))), Err(MerchantError::DocumentSuperseded(d)) if d.get() == 5)
        );
        let mut w = doc(1, 1, None, None);
        w.status = DocumentStatus::Withdrawn;
        assert!(matches!(reviewable(&w), Err(MerchantError::DocumentWithdrawn)));
    }
}
