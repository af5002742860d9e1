//! `/api/v1/merchants…`: apply, profile, admin decisions, documents (upload, download, review),
//! API keys (create, list, rotate, revoke), balance and statement.

use actix_multipart::Multipart;
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use validator::Validate;

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::pagination::PageQuery;
use crate::http::routes::{Access, Api, ADMIN};
use crate::http::Valid;
use crate::identity::admin::StatusFilter;
use crate::ids::{AccountId, ApiKeyId, DocumentId, MerchantId, UserId};
use crate::ledger::NewEvent;
use crate::merchants::documents::DocumentStatus;
use crate::merchants::{find, find_for, keys, service, Merchant, MerchantError, MerchantStatus};
use crate::storage;
use crate::storage::schema::{merchant_api_keys, merchant_documents, merchants, outbox};

pub const DOC_TYPES: &[&str] = &["business_licence", "owner_identity", "tax_id", "bank_statement"];

pub fn register(api: &mut Api) {
    use Access::Authenticated as A;
    let t = "merchants";
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/merchants",
        A,
        t,
        "Apply to become a merchant (pending)",
        web::post().to(apply),
    );
    r.body::<ApplyRequest>(s).responds::<Merchant>(201, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/merchants",
        A,
        t,
        "List merchants (own; admins: all, filter by status, search)",
        web::get().to(list),
    );
    r.query(&["status", "search", "archived", "include_total", "limit", "cursor"]).responds_page::<Merchant>(s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/merchants/restore-all",
        ADMIN,
        t,
        "Restore every archived merchant; answers how many",
        web::post().to(restore_all),
    );
    r.responds::<crate::http::RestoredAll>(200, s);
    let (r, s) =
        api.route(Method::GET, "/api/v1/merchants/{id}", A, t, "Get a merchant (owner or admin)", web::get().to(get));
    r.responds::<Merchant>(200, s);
    let (r, s) = api.route(
        Method::PATCH,
        "/api/v1/merchants/{id}",
        A,
        t,
        "Edit the profile (never status or owner)",
        web::patch().to(update),
    );
    r.body::<ProfileRequest>(s).responds::<Merchant>(200, s);
    for action in Decision::ALL {
        let path = format!("/api/v1/merchants/{{id}}/{}", action.as_str());
        let (r, s) = api.route(Method::POST, &path, ADMIN, t, "Admin decision on a merchant", web::post().to(decide));
        r.body::<DecisionRequest>(s).optional_body().responds::<Merchant>(200, s);
    }
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/merchants/{id}/documents",
        A,
        t,
        "Upload a document (multipart: doc_type, file)",
        web::post().to(upload),
    );
    r.body_as("multipart/form-data").responds::<DocumentView>(201, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/merchants/{id}/documents",
        A,
        t,
        "List the current documents (newest version of each; search: file name or type)",
        web::get().to(documents),
    );
    r.query(&["search"]).responds::<Vec<DocumentView>>(200, s);
    api.route(
        Method::GET,
        "/api/v1/merchants/{id}/documents/{doc_id}/content",
        A,
        t,
        "Download a document (owner or admin)",
        web::get().to(download),
    );
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/merchants/{id}/documents/{doc_id}/review",
        ADMIN,
        t,
        "Approve or reject a document",
        web::post().to(review),
    );
    r.body::<ReviewRequest>(s).responds::<DocumentView>(200, s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/merchants/{id}/api-keys",
        A,
        t,
        "Create an API key (secret shown once)",
        web::post().to(create_key),
    );
    r.body::<KeyRequest>(s).optional_body().responds::<CreatedKey>(201, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/merchants/{id}/api-keys",
        A,
        t,
        "List API keys (no secrets)",
        web::get().to(list_keys),
    );
    r.responds::<Vec<KeyView>>(200, s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/merchants/{id}/api-keys/{key_id}/rotate",
        A,
        t,
        "Rotate: a new key; the old one works for the overlap",
        web::post().to(rotate_key),
    );
    r.responds::<CreatedKey>(201, s);
    let (r, s) = api.route(
        Method::DELETE,
        "/api/v1/merchants/{id}/api-keys/{key_id}",
        A,
        t,
        "Revoke an API key",
        web::delete().to(revoke_key),
    );
    r.responds::<KeyView>(200, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/merchants/{id}/balance",
        A,
        t,
        "The merchant account's balance",
        web::get().to(balance),
    );
    r.responds::<MerchantBalance>(200, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/merchants/{id}/statement",
        A,
        t,
        "The merchant account's postings with running balance",
        web::get().to(statement),
    );
    r.query(&["from", "to", "limit", "cursor"]).responds_page::<crate::cards::routes::StatementLine>(s);
}

fn not_blank(s: &str) -> Result<(), validator::ValidationError> {
    if s.trim().is_empty() {
        return Err(validator::ValidationError::new("blank").with_message("must not be blank".into()));
    }
    Ok(())
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"business_name": "Toko Makmur", "contact_email": "owner@tokomakmur.example",
    "category": "retail", "website": "https://tokomakmur.example", "description": "Groceries"}))]
pub struct ApplyRequest {
    #[validate(
        length(min = 2, max = 200, message = "business_name must be 2-200 characters"),
        custom(function = "not_blank")
    )]
    #[schema(
        min_length = 2,
        max_length = 200,
        pattern = "[^\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    pub business_name: String,
    #[validate(email(message = "contact_email must be a valid e-mail address"))]
    #[schema(format = Email)]
    pub contact_email: String,
    #[validate(length(min = 2, max = 60, message = "category must be 2-60 characters"))]
    #[schema(min_length = 2, max_length = 60)]
    pub category: String,
    #[validate(url(message = "website must be a URL"), length(max = 300, message = "website is too long"))]
    #[schema(format = "uri", max_length = 300)]
    pub website: Option<String>,
    #[validate(length(max = 2000, message = "description must be at most 2000 characters"))]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"category": "groceries", "website": "https://tokomakmur.example"}))]
pub struct ProfileRequest {
    #[validate(length(min = 2, max = 200, message = "business_name must be 2-200 characters"))]
    #[schema(min_length = 2, max_length = 200)]
    pub business_name: Option<String>,
    #[validate(email(message = "contact_email must be a valid e-mail address"))]
    #[schema(format = Email)]
    pub contact_email: Option<String>,
    #[validate(length(min = 2, max = 60, message = "category must be 2-60 characters"))]
    #[schema(min_length = 2, max_length = 60)]
    pub category: Option<String>,
    #[validate(url(message = "website must be a URL"))]
    #[schema(format = "uri")]
    pub website: Option<String>,
    #[validate(length(max = 2000, message = "description must be at most 2000 characters"))]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
}

#[derive(Deserialize, Validate, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "documents do not match the business name"}))]
pub struct DecisionRequest {
    /// Required for `reject` and `suspend`.
    #[validate(length(max = 500, message = "reason must be at most 500 characters"))]
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct MerchantListQuery {
    #[serde(flatten)]
    pub page: PageQuery,
    pub status: Option<String>,
    pub search: Option<String>,
    #[serde(default)]
    pub archived: StatusFilter,
}

/// An admin decision on a merchant (`POST /api/v1/merchants/{id}/{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
    Suspend,
    Reactivate,
    Close,
    Archive,
    Restore,
}

impl Decision {
    pub const ALL: [Decision; 7] = [
        Decision::Approve,
        Decision::Reject,
        Decision::Suspend,
        Decision::Reactivate,
        Decision::Close,
        Decision::Archive,
        Decision::Restore,
    ];

    /// The action's name, as in the route path.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
            Decision::Suspend => "suspend",
            Decision::Reactivate => "reactivate",
            Decision::Close => "close",
            Decision::Archive => "archive",
            Decision::Restore => "restore",
        }
    }

    pub fn parse(s: &str) -> Option<Decision> {
        Decision::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

#[derive(Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = merchant_documents)]
pub struct DocumentView {
    #[schema(value_type = i64)]
    pub id: DocumentId,
    #[schema(value_type = i64)]
    pub merchant_id: MerchantId,
    pub doc_type: String,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub status: DocumentStatus,
    pub review_note: Option<String>,
    #[schema(value_type = Option<i64>)]
    pub reviewed_by: Option<UserId>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// 1 for the first upload, +1 for each replacement.
    pub version: i32,
    /// The version this one replaced.
    #[schema(value_type = Option<i64>)]
    pub replaces_id: Option<DocumentId>,
    /// The newer version that replaced this one (`null`: this is the current version).
    #[schema(value_type = Option<i64>)]
    pub superseded_by: Option<DocumentId>,
    pub withdrawn_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"decision": "approve", "note": "matches the registry"}))]
pub struct ReviewRequest {
    /// `approve` or `reject`.
    #[validate(custom(function = "decision_rule"))]
    #[schema(schema_with = crate::http::schema::decision)]
    pub decision: String,
    #[validate(length(max = 1000, message = "note must be at most 1000 characters"))]
    #[schema(max_length = 1000)]
    pub note: Option<String>,
}

fn decision_rule(d: &str) -> Result<(), validator::ValidationError> {
    if d == "approve" || d == "reject" {
        Ok(())
    } else {
        Err(validator::ValidationError::new("decision").with_message("decision must be `approve` or `reject`".into()))
    }
}

#[derive(Deserialize, Validate, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"label": "checkout server"}))]
pub struct KeyRequest {
    #[validate(length(max = 100, message = "label must be at most 100 characters"))]
    #[schema(max_length = 100)]
    pub label: Option<String>,
}

#[derive(Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = merchant_api_keys)]
pub struct KeyView {
    #[schema(value_type = i64)]
    pub id: ApiKeyId,
    #[schema(value_type = i64)]
    pub merchant_id: MerchantId,
    pub label: String,
    /// The public part of the key (`pk_<key_id>_…`).
    pub key_id: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    pub key: KeyView,
    /// The full API key: shown only in this response.
    pub api_key: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MerchantBalance {
    #[schema(value_type = i64)]
    pub merchant_id: MerchantId,
    #[schema(value_type = i64)]
    pub account_id: AccountId,
    pub currency: String,
    pub balance: i64,
}

pub fn merchant_event(event_type: &str, m: &Merchant, extra: serde_json::Value) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        aggregate_type: "merchant".into(),
        aggregate_key: format!("merchant:{}", m.id),
        payload: serde_json::json!({
            "merchant_id": m.id, "owner_id": m.owner_id, "business_name": m.business_name,
            "contact_email": m.contact_email, "status": m.status, "reason": m.status_reason, "details": extra,
        }),
    }
}

pub(super) fn emit(conn: &mut PgConnection, e: NewEvent) -> Result<(), MerchantError> {
    diesel::insert_into(outbox::table).values(e).execute(conn)?;
    Ok(())
}

async fn apply(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Valid<ApplyRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::apply(&state, user, body.into_inner()).await?))
}

pub(super) fn merchants_matching(
    user: &AuthUser,
    status: Option<String>,
    pattern: Option<String>,
    archived: StatusFilter,
) -> merchants::BoxedQuery<'static, diesel::pg::Pg> {
    let mut query = merchants::table.into_boxed();
    if !user.is_admin() {
        query = query.filter(merchants::owner_id.eq(user.user_id));
    }
    if let Some(s) = status {
        query = query.filter(merchants::status.eq(s));
    }
    if let Some(p) = pattern {
        query = query.filter(merchants::business_name.ilike(p));
    }
    match archived {
        StatusFilter::Active => query.filter(merchants::archived_at.is_null()),
        StatusFilter::Archived => query.filter(merchants::archived_at.is_not_null()),
        StatusFilter::All => query,
    }
}

/// Restores every archived merchant (admin); their status is untouched.
async fn restore_all(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::restore_all(&state).await?))
}

async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<MerchantListQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::list(&state, user, q.into_inner()).await?))
}

async fn get(state: web::Data<AppState>, user: AuthUser, id: web::Path<MerchantId>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::get(&state, user, id.into_inner()).await?))
}

async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<MerchantId>,
    body: Valid<ProfileRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::update(&state, user, id.into_inner(), body.into_inner()).await?))
}

async fn decide(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AuthUser,
    id: web::Path<MerchantId>,
    body: crate::http::MaybeValid<DecisionRequest>,
) -> Result<HttpResponse, ApiError> {
    let reason = body.into_inner().and_then(|b| b.reason);
    let action =
        req.path().rsplit('/').next().and_then(Decision::parse).ok_or_else(|| ApiError::not_found("action"))?;
    Ok(HttpResponse::Ok().json(service::decide(&state, admin, id.into_inner(), action, reason).await?))
}

/// Headers a multipart part may carry (Content-Disposition, Content-Type and a few more).
const MAX_PART_HEADERS: usize = 8;
/// Room for the part headers and boundaries around the file in the whole body.
const MULTIPART_OVERHEAD: usize = 16 * 1024;

fn multipart_error(e: actix_multipart::MultipartError, max: usize) -> ApiError {
    match e {
        actix_multipart::MultipartError::Payload(actix_web::error::PayloadError::Overflow) => {
            MerchantError::DocumentTooLarge(max).into()
        }
        other => MerchantError::BadUpload(format!("malformed multipart body: {other}")).into(),
    }
}

/// A document file received and stored in the blob store, not yet recorded.
pub struct Incoming {
    /// The `doc_type` form field, checked against [`DOC_TYPES`] when sent.
    pub doc_type: Option<String>,
    pub file_name: String,
    pub content_type: &'static str,
    pub sha256: String,
    pub size: i64,
    pub storage_key: String,
}

/// Reads a multipart document upload (`doc_type`, `file`) for merchant `id` after checking the caller
/// may see the merchant: bounded body, type sniffed, blob stored. `replacing`: the type of the
/// document being replaced — a different `doc_type` is refused before anything is stored.
///
/// # Errors
/// 404 not the caller's merchant; 413, 415, 400 or 422 for a bad upload; a blob store error.
pub(super) async fn read_upload(
    state: &AppState,
    req: &HttpRequest,
    user: &AuthUser,
    id: MerchantId,
    payload: web::Payload,
    replacing: Option<&str>,
) -> Result<Incoming, ApiError> {
    let m = &state.settings.merchants;
    let (max, max_parts, max_field) = (m.max_document_bytes, m.max_upload_parts, m.max_upload_field_bytes);
    let owner_check_user = user.clone();
    storage::run(&state.db, move |conn| find_for(conn, id, &owner_check_user)).await?;
    // The whole body is bounded (file + part headers + fields): a declared length is refused at once,
    // a chunked body as soon as it passes the bound. Part headers therefore cannot grow without end.
    let limit = max.saturating_add(MULTIPART_OVERHEAD);
    let declared_len = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared_len.is_some_and(|n| n > limit) {
        return Err(MerchantError::DocumentTooLarge(max).into());
    }
    let mut seen = 0usize;
    let limited = payload.map(move |chunk| {
        let chunk = chunk?;
        seen = seen.saturating_add(chunk.len());
        if seen > limit {
            return Err(actix_web::error::PayloadError::Overflow);
        }
        Ok(chunk)
    });
    let mut form = Multipart::new(req.headers(), limited);
    let mut doc_type: Option<String> = None;
    let mut file: Option<ReceivedFile> = None;
    let mut parts = 0usize;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| multipart_error(e, max))?;
        parts += 1;
        if parts > max_parts {
            return Err(MerchantError::BadUpload(format!("too many parts (at most {max_parts})")).into());
        }
        if field.headers().len() > MAX_PART_HEADERS {
            return Err(MerchantError::BadUpload(format!("too many part headers (at most {MAX_PART_HEADERS})")).into());
        }
        let name = field.name().unwrap_or_default().to_owned();
        if (name == "doc_type" && doc_type.is_some()) || (name == "file" && file.is_some()) {
            return Err(MerchantError::BadUpload(format!("form field `{name}` sent twice")).into());
        }
        match name.as_str() {
            "doc_type" => {
                let mut buf = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|e| multipart_error(e, max))?;
                    if buf.len() + chunk.len() > max_field {
                        return Err(ApiError::validation("doc_type", "doc_type is too long"));
                    }
                    buf.extend_from_slice(&chunk);
                }
                doc_type = Some(String::from_utf8_lossy(&buf).trim().to_owned());
            }
            "file" => {
                let declared = field.content_type().map(|m| m.essence_str().to_owned()).unwrap_or_default();
                let file_name = field
                    .content_disposition()
                    .and_then(|cd| cd.get_filename().map(str::to_owned))
                    .unwrap_or_else(|| "document".to_owned());
                let mut buf = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|e| multipart_error(e, max))?;
                    if buf.len() + chunk.len() > max {
                        return Err(MerchantError::DocumentTooLarge(max).into());
                    }
                    buf.extend_from_slice(&chunk);
                }
                file = Some((file_name, declared, buf));
            }
            other => {
                return Err(MerchantError::BadUpload(format!(
                    "unexpected form field `{other}`; send doc_type and file"
                ))
                .into())
            }
        }
    }
    store_upload(state, id, doc_type, file, replacing).await
}

/// A received file: (file name, declared content type, bytes).
pub type ReceivedFile = (String, String, Vec<u8>);

/// Checks a received document upload of merchant `id` (either transport) — `doc_type` known and
/// matching the replaced document's, a non-empty file of an accepted type (sniffed, and agreeing
/// with the declared type) — and stores it in the blob store. The size bound is enforced while
/// receiving ([`MerchantError::DocumentTooLarge`]).
///
/// # Errors
/// 422 naming `doc_type` or `file`, 400 a mismatched `doc_type`, 415 an unaccepted type; a blob
/// store error.
pub async fn store_upload(
    state: &AppState,
    id: MerchantId,
    doc_type: Option<String>,
    file: Option<ReceivedFile>,
    replacing: Option<&str>,
) -> Result<Incoming, ApiError> {
    if doc_type.as_ref().is_some_and(|d| !DOC_TYPES.contains(&d.as_str())) {
        return Err(ApiError::validation("doc_type", format!("doc_type must be one of: {}", DOC_TYPES.join(", "))));
    }
    if let (Some(t), Some(old)) = (doc_type.as_deref(), replacing) {
        if t != old {
            return Err(MerchantError::BadUpload(format!(
                "doc_type {t} does not match the replaced document ({old}); upload a new document instead"
            ))
            .into());
        }
    }
    let (file_name, declared, bytes) = file.ok_or_else(|| ApiError::validation("file", "file is required"))?;
    if bytes.is_empty() {
        return Err(ApiError::validation("file", "file is empty"));
    }
    let sniffed = crate::merchants::blob::sniff(&bytes)
        .ok_or_else(|| MerchantError::UnsupportedDocument("only PDF, PNG and JPEG documents are accepted".into()))?;
    if !declared.is_empty() && declared != "application/octet-stream" && declared != sniffed {
        return Err(MerchantError::UnsupportedDocument(format!("file is {sniffed} but was labelled {declared}")).into());
    }
    let safe_name: String =
        file_name.chars().filter(|c| !c.is_control() && *c != '/' && *c != '\\').take(200).collect();
    let sha = hex::encode(Sha256::digest(&bytes));
    let key = format!("m{id}-{}", uuid::Uuid::new_v4().simple());
    let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    {
        let (blobs, key) = (state.blobs.clone(), key.clone());
        tokio::task::spawn_blocking(move || blobs.put(&key, &bytes))
            .await
            .map_err(|e| MerchantError::Blob(e.to_string()))?
            .map_err(MerchantError::Blob)?;
    }
    Ok(Incoming { doc_type, file_name: safe_name, content_type: sniffed, sha256: sha, size, storage_key: key })
}

async fn upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<MerchantId>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let file = read_upload(&state, &req, &user, id, payload, None).await?;
    Ok(HttpResponse::Created().json(super::documents::upload_document(&state, id, file).await?))
}

#[derive(Deserialize)]
pub struct DocumentsQuery {
    search: Option<String>,
}

/// The merchant's current documents (the newest version of each; older versions are listed by
/// `…/documents/{doc_id}/versions`), oldest first.
async fn documents(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<MerchantId>,
    q: web::Query<DocumentsQuery>,
) -> Result<HttpResponse, ApiError> {
    let search = q.into_inner().search;
    Ok(HttpResponse::Ok().json(super::documents::list_documents(&state, user, id.into_inner(), search).await?))
}

async fn download(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(MerchantId, DocumentId)>,
) -> Result<HttpResponse, ApiError> {
    let (id, doc_id) = path.into_inner();
    let c = super::documents::document_content(&state, user, id, doc_id).await?;
    let ascii: String = c.file_name.chars().filter(|c| c.is_ascii_graphic() && *c != '"').collect();
    Ok(HttpResponse::Ok()
        .content_type(c.content_type)
        .insert_header(("content-disposition", format!("attachment; filename=\"{ascii}\"")))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(c.bytes))
}

async fn review(
    state: web::Data<AppState>,
    admin: AuthUser,
    path: web::Path<(MerchantId, DocumentId)>,
    body: Valid<ReviewRequest>,
) -> Result<HttpResponse, ApiError> {
    let (id, doc_id) = path.into_inner();
    Ok(HttpResponse::Ok().json(super::documents::review_document(&state, admin, id, doc_id, body.into_inner()).await?))
}

pub(super) fn owned_active(
    conn: &mut PgConnection,
    id: MerchantId,
    user: &AuthUser,
) -> Result<Merchant, MerchantError> {
    let m = find(conn, id)?;
    if m.owner_id != user.user_id {
        return Err(MerchantError::NotOwner);
    }
    if m.status != MerchantStatus::Active {
        return Err(MerchantError::Inactive(m.status.to_string()));
    }
    Ok(m)
}

pub(super) fn insert_key(
    conn: &mut PgConnection,
    state: &AppState,
    m: &Merchant,
    label: &str,
    by: UserId,
) -> Result<CreatedKey, MerchantError> {
    let (key_id, secret, full) = keys::generate();
    let key: KeyView = diesel::insert_into(merchant_api_keys::table)
        .values((
            merchant_api_keys::merchant_id.eq(m.id),
            merchant_api_keys::label.eq(label),
            merchant_api_keys::key_id.eq(&key_id),
            merchant_api_keys::secret_hash.eq(state.keys.hash(&secret)),
            merchant_api_keys::created_by.eq(by),
        ))
        .returning(KeyView::as_returning())
        .get_result(conn)?;
    emit(
        conn,
        merchant_event(
            "api_key.created",
            m,
            serde_json::json!({"api_key_id": key.id, "key_id": key.key_id, "label": key.label}),
        ),
    )?;
    Ok(CreatedKey { key, api_key: full })
}

async fn create_key(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<MerchantId>,
    body: crate::http::MaybeValid<KeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner().unwrap_or_default();
    Ok(HttpResponse::Created().json(service::create_key(&state, user, id.into_inner(), body).await?))
}

async fn list_keys(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<MerchantId>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::list_keys(&state, user, id.into_inner()).await?))
}

async fn rotate_key(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(MerchantId, ApiKeyId)>,
) -> Result<HttpResponse, ApiError> {
    let (id, key) = path.into_inner();
    Ok(HttpResponse::Created().json(service::rotate_key(&state, user, id, key).await?))
}

async fn revoke_key(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(MerchantId, ApiKeyId)>,
) -> Result<HttpResponse, ApiError> {
    let (id, key) = path.into_inner();
    Ok(HttpResponse::Ok().json(service::revoke_key(&state, user, id, key).await?))
}

async fn balance(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<MerchantId>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::balance(&state, user, id.into_inner()).await?))
}

async fn statement(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<MerchantId>,
    q: web::Query<crate::cards::routes::StatementQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::statement(&state, user, id.into_inner(), &q).await?))
}
