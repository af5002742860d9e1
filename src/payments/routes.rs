//! `/api/v1/topups`, `/api/v1/withdrawals`, `/api/v1/transfers`: create (idempotent), list, get,
//! reverse (admin), archive/restore (admin). Money records are never purged.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::pagination::PageQuery;
use crate::http::routes::{Access, Api, ADMIN};
use crate::http::Valid;
use crate::identity::admin::StatusFilter;
use crate::ids::CardId;
use crate::payments::execute;
use crate::payments::recipient::{self, RecipientPreview, RecipientPreviewRequest};
use crate::payments::service;
use crate::payments::{idempotency, methods, OperationView, PaymentError};

/// The operation kinds with their URL segment.
const KINDS: &[(&str, &str)] =
    &[("topups", "topup"), ("withdrawals", "withdrawal"), ("transfers", "transfer"), ("reversals", "reversal")];

pub fn register(api: &mut Api) {
    use Access::Authenticated as A;
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/topups",
        A,
        "topups",
        "Top up a card (Idempotency-Key required)",
        web::post().to(topup),
    );
    r.body::<TopupRequest>(s).responds::<OperationView>(201, s).idempotent();
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/withdrawals",
        A,
        "withdrawals",
        "Withdraw from a card (Idempotency-Key required)",
        web::post().to(withdraw),
    );
    r.body::<WithdrawalRequest>(s).responds::<OperationView>(201, s).idempotent();
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/transfers",
        A,
        "transfers",
        "Transfer to a card: one of the caller's by `to_card_id`, anyone's by `to_card_number` (Idempotency-Key required)",
        web::post().to(transfer),
    );
    r.body::<TransferRequest>(s).responds::<OperationView>(201, s).idempotent();
    // Before `/transfers/{id}…` so the literal segment is matched first.
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/transfers/recipient-preview",
        A,
        "transfers",
        "Masked number and display name of a card number's holder, to confirm before paying (rate-limited)",
        web::post().to(preview),
    );
    r.body::<RecipientPreviewRequest>(s).responds::<RecipientPreview>(200, s);
    for (segment, _) in KINDS {
        let base = format!("/api/v1/{segment}");
        let (r, s) = api.route(Method::GET, &base, A, segment, "List (own cards; admins: all)", web::get().to(list));
        r.query(&[
            "card_id",
            "from_card_id",
            "to_card_id",
            "status",
            "from",
            "to",
            "archived",
            "search",
            "limit",
            "cursor",
        ])
        .responds_page::<OperationView>(s);
        let (r, s) = api.route(Method::GET, &format!("{base}/{{id}}"), A, segment, "Get by id", web::get().to(get));
        r.responds::<OperationView>(200, s);
        let (r, s) = api.route(
            Method::POST,
            &format!("{base}/{{id}}/reversal"),
            ADMIN,
            segment,
            "Reverse (a new, linked, balanced entry; Idempotency-Key required)",
            web::post().to(reverse),
        );
        r.responds::<OperationView>(201, s).idempotent();
        let (r, s) = api.route(
            Method::POST,
            &format!("{base}/{{id}}/archive"),
            ADMIN,
            segment,
            "Hide from default lists",
            web::post().to(archive),
        );
        r.responds::<OperationView>(200, s);
        let (r, s) = api.route(
            Method::POST,
            &format!("{base}/{{id}}/restore"),
            ADMIN,
            segment,
            "Show again in default lists",
            web::post().to(archive),
        );
        r.responds::<OperationView>(200, s);
        api.route(
            Method::DELETE,
            &format!("{base}/{{id}}"),
            ADMIN,
            segment,
            "Refused: money records are never purged",
            web::delete().to(purge),
        );
    }
}

#[derive(Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"card_id": 42, "amount": 150000, "method": "bca", "currency": "IDR"}))]
pub struct TopupRequest {
    #[schema(value_type = i64)]
    pub card_id: CardId,
    /// Minor units, within `money.min_amount`..`money.max_amount`.
    pub amount: i64,
    #[validate(custom(function = "methods::validate"))]
    #[schema(schema_with = crate::http::schema::method)]
    pub method: String,
    /// Optional; must equal the platform currency.
    pub currency: Option<String>,
}

#[derive(Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"card_id": 42, "amount": 75000}))]
pub struct WithdrawalRequest {
    #[schema(value_type = i64)]
    pub card_id: CardId,
    pub amount: i64,
    pub currency: Option<String>,
}

#[derive(Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[validate(schema(function = "distinct_cards", skip_on_field_errors = false))]
#[schema(example = json!({"from_card_id": 42, "to_card_id": 43, "amount": 100000}))]
pub struct TransferRequest {
    /// The paying card (the caller's own).
    #[schema(value_type = i64)]
    pub from_card_id: CardId,
    /// A card of the caller's own, by id. Exactly one of `to_card_id` and `to_card_number`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = i64, nullable = false)]
    pub to_card_id: Option<CardId>,
    /// Anyone's card, by its number (spaces and dashes ignored). Exactly one of `to_card_id` and
    /// `to_card_number`. The answer shows another user's card masked, never its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(
        min = 12,
        max = 30,
        message = "to_card_number must be 12-19 digits (spaces and dashes allowed)"
    ))]
    #[schema(
        nullable = false,
        min_length = 12,
        max_length = 30,
        pattern = "^[0-9 -]{12,30}$",
        example = "4111 1111 1111 1111"
    )]
    pub to_card_number: Option<String>,
    pub amount: i64,
    pub currency: Option<String>,
}

fn distinct_cards(t: &TransferRequest) -> Result<(), validator::ValidationError> {
    if t.to_card_id.is_some() == t.to_card_number.is_some() {
        let mut e = validator::ValidationError::new("one_recipient")
            .with_message("exactly one of to_card_id and to_card_number is required".into());
        e.add_param("field".into(), &"to_card_number");
        return Err(e);
    }
    if t.to_card_id == Some(t.from_card_id) {
        let mut e = validator::ValidationError::new("same_card")
            .with_message("to_card_id must differ from from_card_id".into());
        e.add_param("field".into(), &"to_card_id");
        return Err(e);
    }
    Ok(())
}

async fn topup(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    body: Valid<TopupRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency::key(&req)?;
    Ok(execute::reply(service::topup(&state, &user, key, body.into_inner()).await?))
}

async fn withdraw(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    body: Valid<WithdrawalRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency::key(&req)?;
    Ok(execute::reply(service::withdraw(&state, &user, key, body.into_inner()).await?))
}

async fn transfer(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    body: Valid<TransferRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency::key(&req)?;
    Ok(execute::reply(service::transfer(&state, &user, key, body.into_inner()).await?))
}

async fn preview(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Valid<RecipientPreviewRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(recipient::preview(&state, &user, body.into_inner()).await?))
}

/// The kind named by the path (`/api/v1/<segment>/…`).
fn kind_of(req: &HttpRequest) -> Result<&'static str, ApiError> {
    let segment = req.path().trim_start_matches("/api/v1/").split('/').next().unwrap_or_default();
    KINDS.iter().find(|(s, _)| *s == segment).map(|(_, k)| *k).ok_or_else(|| ApiError::not_found("route"))
}

fn parse_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("operation"))
}

async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let kind = kind_of(&req)?;
    let id = parse_id(&id)?;
    Ok(HttpResponse::Ok().json(service::get_operation(&state, user, kind, id).await?))
}

#[derive(Deserialize)]
pub struct OpListQuery {
    #[serde(flatten)]
    pub page: PageQuery,
    pub card_id: Option<String>,
    pub from_card_id: Option<String>,
    pub to_card_id: Option<String>,
    pub status: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    #[serde(default)]
    pub archived: StatusFilter,
    /// Free text matched in the order reference or the method.
    pub search: Option<String>,
}

async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    q: web::Query<OpListQuery>,
) -> Result<HttpResponse, ApiError> {
    let kind = kind_of(&req)?;
    Ok(HttpResponse::Ok().json(service::list_operations(&state, user, kind, q.into_inner()).await?))
}

async fn reverse(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let kind = kind_of(&req)?;
    let key = idempotency::key(&req)?;
    let id = parse_id(&id)?;
    Ok(execute::reply(service::reverse(&state, &user, kind, key, id).await?))
}

async fn archive(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let kind = kind_of(&req)?;
    let id = parse_id(&id)?;
    let archive = req.path().ends_with("/archive");
    Ok(HttpResponse::Ok().json(crate::payments::archive::set(&state, kind, id, archive).await?))
}

async fn purge() -> Result<HttpResponse, ApiError> {
    Err(PaymentError::NeverPurged.into())
}
