//! `/api/v1/topups`, `/api/v1/withdrawals`, `/api/v1/transfers`: create (idempotent), list, get,
//! reverse (admin), archive/restore (admin). Money records are never purged.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::pagination::{Page, PageQuery};
use crate::http::routes::{Access, Api, ADMIN};
use crate::http::Valid;
use crate::identity::admin::StatusFilter;
use crate::payments::execute::{self, MoneyOp};
use crate::payments::{idempotency, limits, methods, Operation, OperationView, PaymentError};
use crate::storage::schema::{cards, operations};
use crate::storage::{self, StorageError};

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
    r.body::<TopupRequest>(s).responds::<OperationView>(201, s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/withdrawals",
        A,
        "withdrawals",
        "Withdraw from a card (Idempotency-Key required)",
        web::post().to(withdraw),
    );
    r.body::<WithdrawalRequest>(s).responds::<OperationView>(201, s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/transfers",
        A,
        "transfers",
        "Transfer between cards (Idempotency-Key required)",
        web::post().to(transfer),
    );
    r.body::<TransferRequest>(s).responds::<OperationView>(201, s);
    for (segment, _) in KINDS {
        let base = format!("/api/v1/{segment}");
        let (r, s) = api.route(Method::GET, &base, A, segment, "List (own cards; admins: all)", web::get().to(list));
        r.query(&["card_id", "from_card_id", "to_card_id", "status", "from", "to", "archived", "limit", "cursor"])
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
        r.responds::<OperationView>(201, s);
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
pub struct TopupRequest {
    pub card_id: i64,
    /// Minor units.
    pub amount: i64,
    #[validate(custom(function = "methods::validate"))]
    pub method: String,
    /// Optional; must equal the platform currency.
    pub currency: Option<String>,
}

#[derive(Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequest {
    pub card_id: i64,
    pub amount: i64,
    pub currency: Option<String>,
}

#[derive(Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[validate(schema(function = "distinct_cards", skip_on_field_errors = false))]
pub struct TransferRequest {
    pub from_card_id: i64,
    pub to_card_id: i64,
    pub amount: i64,
    pub currency: Option<String>,
}

fn distinct_cards(t: &TransferRequest) -> Result<(), validator::ValidationError> {
    if t.from_card_id == t.to_card_id {
        let mut e = validator::ValidationError::new("same_card")
            .with_message("to_card_id must differ from from_card_id".into());
        e.add_param("field".into(), &"to_card_id");
        return Err(e);
    }
    Ok(())
}

/// Checks amount and currency against the configured limits (every money-moving route uses it).
///
/// # Errors
/// 422 naming `currency` or `amount`.
pub(crate) fn check_money(state: &AppState, amount: i64, currency: Option<&str>) -> Result<(), ApiError> {
    let m = &state.settings.money;
    if let Some(c) = currency {
        if c != m.currency {
            return Err(ApiError::validation("currency", format!("currency must be {}", m.currency)));
        }
    }
    if amount < m.min_amount {
        return Err(ApiError::validation("amount", format!("amount must be at least {} (minor units)", m.min_amount)));
    }
    if amount > m.max_amount {
        return Err(ApiError::validation("amount", format!("amount must be at most {} (minor units)", m.max_amount)));
    }
    Ok(())
}

/// The card's account, if the caller may debit or fund it.
async fn card_snapshot(state: &AppState, card: i64) -> Result<payd_actors::CardSnapshot, PaymentError> {
    state.ledger.ledger.cards().get(card).await.map_err(|e| match e {
        payd_actors::CardError::NotFound => PaymentError::CardNotFound(card),
        payd_actors::CardError::Busy => PaymentError::Busy,
        other => PaymentError::Unavailable(other.to_string()),
    })
}

/// The account of a card the caller owns (any card for an admin).
async fn owned_card(state: &AppState, user: &AuthUser, card: i64) -> Result<i64, ApiError> {
    let snapshot = card_snapshot(state, card).await?;
    if snapshot.owner_id != user.user_id && !user.is_admin() {
        return Err(PaymentError::NotCardOwner(card).into());
    }
    Ok(snapshot.account_id)
}

/// The account of any card (the receiving side of a transfer).
async fn any_card(state: &AppState, card: i64) -> Result<i64, ApiError> {
    Ok(card_snapshot(state, card).await?.account_id)
}

fn scope(user: &AuthUser) -> String {
    format!("user:{}", user.user_id)
}

async fn topup(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    body: Valid<TopupRequest>,
) -> Result<HttpResponse, ApiError> {
    limits::check(&state, limits::Caller::User(user.user_id)).await?;
    let key = idempotency::key(&req)?;
    let body = body.into_inner();
    check_money(&state, body.amount, body.currency.as_deref())?;
    let method = methods::canonical(&body.method).ok_or_else(|| ApiError::validation("method", "unknown method"))?;
    let hash = idempotency::request_hash(&state.settings.idempotency, "topup", "", &body)?;
    let account = owned_card(&state, &user, body.card_id).await?;
    let funding =
        *state.ledger.system.funding.get(method).ok_or_else(|| ApiError::internal("funding account missing"))?;
    let op = MoneyOp {
        method: Some(method.to_owned()),
        dest_card: Some(body.card_id),
        credit_card: Some(body.card_id),
        initiated_by: Some(user.user_id),
        ..MoneyOp::new("topup", (scope(&user), key, hash), body.amount, funding, account)
    };
    execute::run(&state, op).await
}

async fn withdraw(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    body: Valid<WithdrawalRequest>,
) -> Result<HttpResponse, ApiError> {
    limits::check(&state, limits::Caller::User(user.user_id)).await?;
    let key = idempotency::key(&req)?;
    let body = body.into_inner();
    check_money(&state, body.amount, body.currency.as_deref())?;
    let hash = idempotency::request_hash(&state.settings.idempotency, "withdrawal", "", &body)?;
    let account = owned_card(&state, &user, body.card_id).await?;
    let op = MoneyOp {
        source_card: Some(body.card_id),
        debit_card: Some(body.card_id),
        initiated_by: Some(user.user_id),
        ..MoneyOp::new("withdrawal", (scope(&user), key, hash), body.amount, account, state.ledger.system.withdrawals)
    };
    execute::run(&state, op).await
}

async fn transfer(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    body: Valid<TransferRequest>,
) -> Result<HttpResponse, ApiError> {
    limits::check(&state, limits::Caller::User(user.user_id)).await?;
    let key = idempotency::key(&req)?;
    let body = body.into_inner();
    check_money(&state, body.amount, body.currency.as_deref())?;
    let hash = idempotency::request_hash(&state.settings.idempotency, "transfer", "", &body)?;
    let (from, to) = tokio::join!(owned_card(&state, &user, body.from_card_id), any_card(&state, body.to_card_id));
    let (from, to) = (from?, to?);
    let op = MoneyOp {
        source_card: Some(body.from_card_id),
        dest_card: Some(body.to_card_id),
        debit_card: Some(body.from_card_id),
        credit_card: Some(body.to_card_id),
        initiated_by: Some(user.user_id),
        ..MoneyOp::new("transfer", (scope(&user), key, hash), body.amount, from, to)
    };
    execute::run(&state, op).await
}

/// The kind named by the path (`/api/v1/<segment>/…`).
fn kind_of(req: &HttpRequest) -> Result<&'static str, ApiError> {
    let segment = req.path().trim_start_matches("/api/v1/").split('/').next().unwrap_or_default();
    KINDS.iter().find(|(s, _)| *s == segment).map(|(_, k)| *k).ok_or_else(|| ApiError::not_found("route"))
}

fn parse_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("operation"))
}

fn find_op(conn: &mut PgConnection, kind: &str, id: uuid::Uuid) -> Result<Operation, PaymentError> {
    let op: Operation = operations::table.find(id).select(Operation::as_select()).first(conn)?;
    // A reversal is listed under its original's kind as well as visible by id.
    if op.kind != kind {
        return Err(PaymentError::OperationNotFound);
    }
    Ok(op)
}

fn may_see(conn: &mut PgConnection, user: &AuthUser, op: &Operation) -> Result<bool, PaymentError> {
    if user.is_admin() {
        return Ok(true);
    }
    let ids: Vec<i64> = [op.source_card_id, op.dest_card_id].into_iter().flatten().collect();
    let owned: i64 =
        cards::table.filter(cards::id.eq_any(ids)).filter(cards::user_id.eq(user.user_id)).count().get_result(conn)?;
    Ok(owned > 0)
}

async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let kind = kind_of(&req)?;
    let id = parse_id(&id)?;
    let op = storage::run(&state.db, move |conn| {
        let op = find_op(conn, kind, id)?;
        if !may_see(conn, &user, &op)? {
            return Err(PaymentError::OperationNotFound);
        }
        Ok(op)
    })
    .await?;
    Ok(HttpResponse::Ok().json(OperationView::from(op)))
}

#[derive(Deserialize)]
pub struct OpListQuery {
    #[serde(flatten)]
    page: PageQuery,
    card_id: Option<String>,
    from_card_id: Option<String>,
    to_card_id: Option<String>,
    status: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    #[serde(default)]
    archived: StatusFilter,
}

fn int_param(v: &Option<String>, field: &'static str) -> Result<Option<i64>, ApiError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| ApiError::validation(field, format!("{field} must be an integer"))),
    }
}

/// One page of an operation list: `payd_operation_page` (a migration) picks the index that bounds the
/// walk from the filters present and runs one of its fixed, plan-cached queries, so the statement text
/// sent is the same whatever the filters.
struct OperationPage {
    kind: &'static str,
    /// The caller when not an admin: only operations touching the caller's cards.
    user: Option<i64>,
    card: Option<i64>,
    from_card: Option<i64>,
    to_card: Option<i64>,
    status: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// 0 = not archived, 1 = archived only, 2 = both.
    archived: i16,
    /// Operations with `seq` below this one.
    cursor: i64,
    limit: i64,
}

const OPERATION_PAGE: &str = "SELECT * FROM payd_operation_page($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

impl OperationPage {
    fn load(self, conn: &mut PgConnection) -> Result<Vec<Operation>, diesel::result::Error> {
        use diesel::sql_types::{BigInt, Nullable, SmallInt, Text, Timestamptz};
        diesel::sql_query(OPERATION_PAGE)
            .bind::<Text, _>(self.kind)
            .bind::<Nullable<BigInt>, _>(self.user)
            .bind::<Nullable<BigInt>, _>(self.card)
            .bind::<Nullable<BigInt>, _>(self.from_card)
            .bind::<Nullable<BigInt>, _>(self.to_card)
            .bind::<Nullable<Text>, _>(self.status)
            .bind::<Nullable<Timestamptz>, _>(self.from)
            .bind::<Nullable<Timestamptz>, _>(self.to)
            .bind::<SmallInt, _>(self.archived)
            .bind::<BigInt, _>(self.cursor)
            .bind::<BigInt, _>(self.limit)
            .load(conn)
    }
}

async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    q: web::Query<OpListQuery>,
) -> Result<HttpResponse, ApiError> {
    let kind = kind_of(&req)?;
    let q = q.into_inner();
    let (limit, cursor) = q.page.resolve()?;
    let card = int_param(&q.card_id, "card_id")?;
    let from_card = int_param(&q.from_card_id, "from_card_id")?;
    let to_card = int_param(&q.to_card_id, "to_card_id")?;
    if let Some(s) = q.status.as_deref() {
        if s != "success" && s != "failed" {
            return Err(ApiError::validation("status", "status must be success or failed"));
        }
    }
    if let (Some(f), Some(t)) = (q.from, q.to) {
        if f > t {
            return Err(ApiError::validation("from", "from must not be after to"));
        }
    }
    let page = OperationPage {
        kind,
        user: if user.is_admin() { None } else { Some(user.user_id) },
        card,
        from_card,
        to_card,
        status: q.status,
        from: q.from,
        to: q.to,
        archived: match q.archived {
            StatusFilter::Active => 0,
            StatusFilter::Archived => 1,
            StatusFilter::All => 2,
        },
        cursor: cursor.unwrap_or(i64::MAX),
        limit: limit + 1,
    };
    let rows = storage::run(&state.db, move |conn| page.load(conn).map_err(StorageError::from)).await?;
    let seqs: Vec<i64> = rows.iter().map(|o| o.seq).collect();
    let mut page = Page::from_rows(rows.into_iter().map(OperationView::from).collect::<Vec<_>>(), limit, |_| 0);
    if page.next_cursor.is_some() {
        page.next_cursor =
            seqs.get(usize::try_from(limit - 1).unwrap_or(0)).map(|s| crate::http::pagination::encode_cursor(*s));
    }
    Ok(HttpResponse::Ok().json(page))
}

async fn reverse(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    limits::check(&state, limits::Caller::User(user.user_id)).await?;
    let kind = kind_of(&req)?;
    let key = idempotency::key(&req)?;
    let id = parse_id(&id)?;
    let hash = idempotency::request_hash(&state.settings.idempotency, "reversal", &id.to_string(), &())?;
    if let Some(stored) = idempotency::lookup(&state.db, scope(&user), key.clone()).await? {
        return Ok(stored.replay(&hash)?);
    }
    let original = storage::run(&state.db, move |conn| {
        let op = find_op(conn, kind, id)?;
        let reversed: i64 = operations::table
            .filter(operations::reverses_id.eq(id))
            .filter(operations::status.eq("success"))
            .count()
            .get_result(conn)?;
        Ok::<_, PaymentError>((op, reversed > 0))
    })
    .await?;
    let (op, reversed) = original;
    if op.kind == "reversal" {
        return Err(PaymentError::NotReversible("a reversal cannot itself be reversed".into()).into());
    }
    if op.status != "success" {
        return Err(PaymentError::NotReversible(format!(
            "only successful operations can be reversed; this one is {}",
            op.status
        ))
        .into());
    }
    if reversed {
        return Err(PaymentError::NotReversible("the operation was already reversed".into()).into());
    }
    // Money flows back: from the card that received it to the card that paid.
    let reversal = MoneyOp {
        method: op.method.clone(),
        source_card: op.dest_card_id,
        dest_card: op.source_card_id,
        debit_card: op.dest_card_id,
        credit_card: op.source_card_id,
        reverses: Some(op.id),
        reverses_withdrawal: op.kind == "withdrawal",
        initiated_by: Some(user.user_id),
        ..MoneyOp::new("reversal", (scope(&user), key, hash), op.amount, op.credit_account_id, op.debit_account_id)
    };
    execute::run(&state, reversal).await
}

async fn archive(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let kind = kind_of(&req)?;
    let id = parse_id(&id)?;
    let archive = req.path().ends_with("/archive");
    let op = storage::run(&state.db, move |conn| {
        find_op(conn, kind, id)?;
        let at = archive.then(Utc::now);
        Ok::<_, PaymentError>(
            diesel::update(operations::table.find(id))
                .set(operations::archived_at.eq(at))
                .returning(Operation::as_returning())
                .get_result(conn)?,
        )
    })
    .await?;
    Ok(HttpResponse::Ok().json(OperationView::from(op)))
}

async fn purge() -> Result<HttpResponse, ApiError> {
    Err(PaymentError::NeverPurged.into())
}
