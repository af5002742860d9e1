//! Merchant payments and refunds: `POST /api/v1/payments` (X-Api-Key, Idempotency-Key) charges a card
//! into the merchant's account through the actor ledger; refunds (full or partial) flow back as linked
//! entries whose running total is guarded in the same transaction. Plus the payment views.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Datelike, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::app::AppState;
use crate::cache::{AttemptOutcome, CardAttempt, KeyDeclines};
use crate::cards::pan::{self, Pan};
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::pagination::{encode_cursor, search_opt, Page, PageQuery};
use crate::http::routes::{Access, Api, ADMIN};
use crate::http::Valid;
use crate::identity::admin::StatusFilter;
use crate::ids::{AccountId, ApiKeyId, CardId, MerchantId, UserId};
use crate::merchants::keys::MerchantPrincipal;
use crate::merchants::{find_for, MerchantError};
use crate::payments::execute::{self, Failure, MoneyOp, Reply};
use crate::payments::{
    idempotency, limits, methods, FailureCode, Operation, OperationKind, OperationStatus, OperationView, PaymentError,
};
use crate::storage::schema::{cards, merchant_api_keys, merchants, operations, refund_totals};
use crate::storage::{self, StorageError};

pub fn register(api: &mut Api) {
    let t = "payments";
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/payments",
        Access::ApiKey,
        t,
        "Charge a card (X-Api-Key and Idempotency-Key)",
        web::post().to(pay),
    );
    r.body::<PaymentRequest>(s).responds::<OperationView>(201, s).idempotent();
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/payments/{id}/refunds",
        Access::ApiKeyOrRole(&["admin"]),
        t,
        "Refund a payment, fully or partly (Idempotency-Key)",
        web::post().to(refund),
    );
    r.body::<RefundRequest>(s)
        .optional_body()
        .responds::<OperationView>(201, s)
        .idempotent()
        .path_param("id", crate::http::routes::uuid_schema());
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/payments",
        Access::Authenticated,
        t,
        "Payments on your cards (admins: all)",
        web::get().to(list_for_user),
    );
    r.query(&["merchant_id", "api_key_id", "card_id", "status", "from", "to", "archived", "search", "limit", "cursor"])
        .responds_page::<OperationView>(s);
    for (action, summary) in [("archive", "Hide from default lists"), ("restore", "Show again in default lists")] {
        let (r, s) = api.route(
            Method::POST,
            &format!("/api/v1/payments/{{id}}/{action}"),
            ADMIN,
            t,
            summary,
            web::post().to(archive),
        );
        r.responds::<OperationView>(200, s);
    }
    api.route(
        Method::DELETE,
        "/api/v1/payments/{id}",
        ADMIN,
        t,
        "Refused: money records are never purged",
        web::delete().to(purge),
    );
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/payments/{id}",
        Access::Authenticated,
        t,
        "A payment (customer, merchant owner or admin)",
        web::get().to(get),
    );
    r.responds::<OperationView>(200, s).path_param("id", crate::http::routes::uuid_schema());
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/payments/{id}/refunds",
        Access::Authenticated,
        t,
        "Refunds of a payment",
        web::get().to(refunds_of),
    );
    r.responds::<Vec<OperationView>>(200, s).path_param("id", crate::http::routes::uuid_schema());
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/merchants/{id}/payments",
        Access::Authenticated,
        t,
        "A merchant's payments and refunds (owner or admin)",
        web::get().to(list_for_merchant),
    );
    r.query(&["api_key_id", "card_id", "status", "kind", "from", "to", "archived", "search", "limit", "cursor"])
        .responds_page::<OperationView>(s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/merchant/payments",
        Access::ApiKey,
        t,
        "The API key's merchant's payments and refunds",
        web::get().to(list_for_key),
    );
    r.query(&["api_key_id", "card_id", "status", "kind", "from", "to", "archived", "search", "limit", "cursor"])
        .responds_page::<OperationView>(s);
}

/// Archives or restores a payment (admin), like the other operations: hidden from default lists,
/// never purged.
async fn archive(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let archive = req.path().ends_with("/archive");
    Ok(HttpResponse::Ok().json(set_payment_archived(&state, id, archive).await?))
}

/// Archives (`archive`) or restores a payment (admin; both transports).
///
/// # Errors
/// 404 unknown payment, 409 already in that state; a storage error.
pub async fn set_payment_archived(state: &AppState, id: uuid::Uuid, archive: bool) -> Result<OperationView, ApiError> {
    let op = storage::run(&state.db, move |conn| {
        let p = find_payment(conn, id)?;
        crate::payments::service::set_archived(conn, &p, archive).map_err(ApiError::from)
    })
    .await?;
    Ok(OperationView::from(op))
}

async fn purge() -> Result<HttpResponse, ApiError> {
    Err(PaymentError::NeverPurged.into())
}

#[derive(Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"card_number": "4111 1111 1111 1111", "expiry_month": 12, "expiry_year": 2030,
    "cvv": "123", "amount": 250000, "method": "visa", "order_ref": "order-2026-0001"}))]
pub struct PaymentRequest {
    /// 12-19 digits; spaces and dashes between them are ignored.
    #[validate(length(min = 12, max = 23, message = "card_number must be 12-19 digits"))]
    #[schema(min_length = 12, max_length = 23)]
    pub card_number: String,
    #[validate(range(min = 1, max = 12, message = "expiry_month must be 1-12"))]
    #[schema(minimum = 1, maximum = 12)]
    pub expiry_month: i32,
    #[validate(range(min = 2000, max = 2200, message = "expiry_year must be a four-digit year"))]
    #[schema(minimum = 2000, maximum = 2200)]
    pub expiry_year: i32,
    #[validate(length(min = 3, max = 4, message = "cvv must be 3 or 4 digits"))]
    #[schema(min_length = 3, max_length = 4)]
    pub cvv: String,
    /// Minor units, within `money.min_amount`..`money.max_amount`.
    pub amount: i64,
    #[validate(custom(function = "methods::validate"))]
    #[schema(schema_with = crate::http::schema::method)]
    pub method: String,
    /// The merchant's own order reference, paid at most once.
    #[validate(length(min = 1, max = 100, message = "order_ref must be 1-100 characters"))]
    #[schema(min_length = 1, max_length = 100)]
    pub order_ref: String,
    pub currency: Option<String>,
}

#[derive(Deserialize, Serialize, Validate, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": 50000, "reason": "item returned"}))]
pub struct RefundRequest {
    /// Minor units; defaults to everything still refundable.
    pub amount: Option<i64>,
    #[validate(length(max = 500, message = "reason must be at most 500 characters"))]
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

type CardRow = (CardId, AccountId, String, i32, i32, Option<DateTime<Utc>>);

/// What the payment fingerprint covers: the card only as its keyed PAN hash (never number, expiry or
/// CVV), so a stored fingerprint gives nothing back about the card.
#[derive(Serialize)]
struct PaymentFingerprint<'a> {
    card: &'a str,
    amount: i64,
    method: &'a str,
    order_ref: &'a str,
    currency: Option<&'a str>,
}

async fn pay(
    state: web::Data<AppState>,
    req: HttpRequest,
    key: MerchantPrincipal,
    body: Valid<PaymentRequest>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency::key(&req)?;
    Ok(execute::reply(charge(&state, &key, idem, body.into_inner()).await?))
}

/// Charges a card for a merchant (the API key `key`) under the idempotency key `idem`: the one
/// payment rule set both transports call. `body` is validated already.
///
/// # Errors
/// Validation (422), rate and decline limits (429), conflicts (409), back-pressure (503).
pub async fn charge(
    state: &AppState,
    key: &MerchantPrincipal,
    idem: String,
    body: PaymentRequest,
) -> Result<Reply, ApiError> {
    limits::check(state, limits::Caller::ApiKey(key.key_id)).await?;
    let scope = format!("merchant:{}", key.merchant_id);
    crate::payments::service::check_money(state, body.amount, body.currency.as_deref())?;
    if !body.cvv.chars().all(|c| c.is_ascii_digit()) {
        return Err(ApiError::validation("cvv", "cvv must be digits"));
    }
    let method = methods::canonical(&body.method).ok_or_else(|| ApiError::validation("method", "unknown method"))?;
    let number = Pan::parse(&body.card_number)
        .ok_or_else(|| ApiError::validation("card_number", "card_number is not a valid card number"))?;
    let pan_hash = pan::pan_hash(state.settings.cards.pan_key.expose(), &number);
    let hash = idempotency::request_hash(
        &state.settings.idempotency,
        "payment",
        "",
        &PaymentFingerprint {
            card: &pan_hash,
            amount: body.amount,
            method: &body.method,
            order_ref: &body.order_ref,
            currency: body.currency.as_deref(),
        },
    )?;
    let (merchant_id, order_ref, sc, ik) = (key.merchant_id, body.order_ref.clone(), scope.clone(), idem.clone());
    // One trip to the database for the stored answer, the card and the order reference.
    let (stored, card, paid) = storage::run(&state.db, move |conn| {
        let stored = idempotency::find(conn, &sc, &ik)?;
        if stored.is_some() {
            return Ok((stored, None, false));
        }
        let card: Option<CardRow> = cards::table
            .filter(cards::pan_hash.eq(pan_hash))
            .select((
                cards::id,
                cards::account_id,
                cards::brand,
                cards::expiry_month,
                cards::expiry_year,
                cards::payments_locked_at,
            ))
            .first(conn)
            .optional()?;
        // EXISTS over exactly the predicate of the partial unique index `operations_order_ref`, with
        // `kind` and `status` as literals: bound as parameters they cannot prove the index's predicate
        // in a generic plan, and PostgreSQL falls back to a bitmap AND over every payment of the
        // merchant (measured on a never-analysed database: 962 payments/s before, 2,419 after).
        #[derive(QueryableByName)]
        struct Paid {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            paid: bool,
        }
        let paid = diesel::sql_query(ORDER_REF_PAID)
            .bind::<diesel::sql_types::BigInt, _>(merchant_id)
            .bind::<diesel::sql_types::Text, _>(order_ref)
            .get_result::<Paid>(conn)?
            .paid;
        Ok::<_, StorageError>((None, card, paid))
    })
    .await?;
    if let Some(stored) = stored {
        return Ok(stored.replay(&hash)?);
    }
    if paid {
        // A concurrent request with this same key may have just paid the order: answer as it did.
        if let Some(stored) = idempotency::lookup(&state.db, scope.clone(), idem.clone()).await? {
            return Ok(stored.replay(&hash)?);
        }
        return Err(PaymentError::OrderRefTaken.into());
    }
    let m = &state.settings.merchants;
    let key_counter = format!("keyfail:{}", key.key_id);
    let key_limits = (key_counter.as_str(), m.key_failure_limit, m.key_failure_window_secs);
    let Some((card_id, account, brand, month, year, locked_at)) = card else {
        // No card has this number. The answer is the same as for every other card-data failure, and is
        // stored like theirs, so a retry replays it too; only the API key's counter records it.
        let (verdict, declines) = state
            .cache
            .card_attempt(key_limits, None, AttemptOutcome::Unknown)
            .await
            .map_err(|e| PaymentError::Unavailable(e.0))?;
        note_key_declines(state, key, declines).await;
        if let CardAttempt::KeyBlocked { retry_after } = verdict {
            return Err(key_blocked(retry_after));
        }
        crate::metrics::count("payment", "card_unknown");
        let answer = execute::declined_body(&crate::http::request_id::current().unwrap_or_default());
        let (sc, ik, fp, body) = (scope.clone(), idem.clone(), hash.clone(), answer.clone());
        let stored = storage::run(&state.db, move |conn| {
            idempotency::store(conn, &sc, &ik, &fp, actix_web::http::StatusCode::PAYMENT_REQUIRED, &body)
        })
        .await?;
        if !stored {
            if let Some(stored) = idempotency::lookup(&state.db, scope, idem).await? {
                return Ok(stored.replay(&hash)?);
            }
        }
        return Ok(Reply { status: actix_web::http::StatusCode::PAYMENT_REQUIRED, body: answer, replayed: false });
    };
    let op = MoneyOp {
        method: Some(method.to_owned()),
        source_card: Some(card_id),
        debit_card: Some(card_id),
        merchant_id: Some(key.merchant_id),
        api_key_id: Some(key.key_id),
        order_ref: Some(body.order_ref.clone()),
        uniform_declines: true,
        ..MoneyOp::new(OperationKind::Payment, (scope, idem, hash), body.amount, account, key.account_id)
    };
    // Decide the presented data first (pure computation), then let the counters rule on it atomically:
    // concurrent guesses are decided one after another, so no more than the limit are ever evaluated.
    let expiry_ok = body.expiry_month == month && body.expiry_year == year;
    // A card keeps its network's CVV length even if the network was since removed from the configuration.
    let cvv_len = state
        .settings
        .cards
        .network(&brand)
        .map(|n| n.cvv_length)
        .or_else(|| pan::brand(&brand).map(|b| b.3))
        .unwrap_or(3);
    let cvv_ok = pan::cvv_matches(state.settings.cards.cvv_key.expose(), &number, month, year, cvv_len, &body.cvv);
    let outcome = match (locked_at.is_some(), expiry_ok && cvv_ok) {
        (true, _) => AttemptOutcome::Locked,
        (false, true) => AttemptOutcome::Ok,
        (false, false) => AttemptOutcome::Wrong,
    };
    // A key blocked in the database (every instance's key cache knows it) is refused without a Redis
    // round trip. Every other attempt, correct card data included, goes through the counters: a
    // correct guess sent in the same burst as the wrong ones that reach the card's limit must be
    // decided after them (the lock those write in the database could still be uncommitted when this
    // request read the card).
    if let Some(until) = key.blocked_until {
        let secs = u64::try_from((until - Utc::now()).num_seconds()).unwrap_or(0).max(1);
        return Err(key_blocked(secs));
    }
    let card_counter = format!("cardfail:{card_id}");
    let (verdict, declines) = state
        .cache
        .card_attempt(key_limits, Some((&card_counter, m.card_failure_limit, m.card_failure_window_secs)), outcome)
        .await
        .map_err(|e| PaymentError::Unavailable(e.0))?;
    note_key_declines(state, key, declines).await;
    match verdict {
        CardAttempt::KeyBlocked { retry_after } => return Err(key_blocked(retry_after)),
        CardAttempt::Locked | CardAttempt::Declined => {
            if locked_at.is_none() {
                lock_card(state, card_id).await?;
            }
            return execute::record_failed(
                state,
                op,
                Failure::new(
                    FailureCode::CardLocked,
                    "payments on this card are locked after too many wrong card details",
                ),
            )
            .await;
        }
        CardAttempt::Failed { failures } => {
            if failures >= u64::from(m.card_failure_limit) {
                lock_card(state, card_id).await?;
            }
            let f = if expiry_ok {
                Failure::new(FailureCode::InvalidCvv, "the security code is wrong")
            } else {
                Failure::new(FailureCode::InvalidExpiry, "the expiry date does not match the card")
            };
            return execute::record_failed(state, op, f).await;
        }
        CardAttempt::Ok => {}
    }
    let now = Utc::now();
    if (year, u32::try_from(month).unwrap_or(12)) < (now.year(), now.month()) {
        return execute::record_failed(state, op, Failure::new(FailureCode::CardExpired, "the card has expired")).await;
    }
    execute::run(state, op).await
}

fn key_blocked(retry_after: u64) -> ApiError {
    ApiError::too_many(
        "too_many_declines",
        "too many declined card payments from this API key; retry later",
        retry_after,
    )
}

/// Records in the database that an API key has reached its limit of declined attempts, until its
/// counter's window ends, so its payments with correct card data are refused too without a Redis
/// round trip (every instance's key cache learns it through `payd_api_keys`). A failure to record it
/// is logged: the counter in Redis still refuses the key's declines.
async fn note_key_declines(state: &AppState, key: &MerchantPrincipal, declines: KeyDeclines) {
    let m = &state.settings.merchants;
    if declines.count < u64::from(m.key_failure_limit) || key.blocked_until.is_some() {
        return;
    }
    // Until the key's window ends (never longer than a whole window).
    let window = m.key_failure_window_secs.max(1);
    let secs = if declines.ttl_secs == 0 { window } else { declines.ttl_secs.min(window) };
    let Some(until) =
        i64::try_from(secs).ok().and_then(chrono::Duration::try_seconds).and_then(|d| Utc::now().checked_add_signed(d))
    else {
        return;
    };
    let id = key.key_id;
    let stored = storage::run(&state.db, move |conn| {
        diesel::update(
            merchant_api_keys::table
                .find(id)
                .filter(merchant_api_keys::blocked_until.is_null().or(merchant_api_keys::blocked_until.lt(until))),
        )
        .set(merchant_api_keys::blocked_until.eq(until))
        .execute(conn)
        .map_err(StorageError::from)
    })
    .await;
    state.api_keys.invalidate(&key.public_id);
    match stored {
        Ok(_) => {
            tracing::warn!(api_key_id = %id, until = %until, "API key blocked after too many declined card-data attempts")
        }
        Err(e) => tracing::warn!(api_key_id = %id, error = %e, "could not record an API key's block"),
    }
}

/// Records in the database that a card's payments are locked (the counter in Redis already refuses
/// them); shown to the cardholder, who unlocks it.
async fn lock_card(state: &AppState, card_id: CardId) -> Result<(), ApiError> {
    let n = storage::run(&state.db, move |conn| {
        diesel::update(cards::table.find(card_id).filter(cards::payments_locked_at.is_null()))
            .set(cards::payments_locked_at.eq(Some(Utc::now())))
            .execute(conn)
            .map_err(StorageError::from)
    })
    .await?;
    if n > 0 {
        state.cards.changed(card_id);
        crate::metrics::count("card_lock", "locked");
        tracing::warn!(card_id = %card_id, "card locked for payments after too many wrong card details");
    }
    Ok(())
}

/// Whether an order reference of a merchant is already paid: a probe of `operations_order_ref`.
const ORDER_REF_PAID: &str = "SELECT EXISTS (SELECT 1 FROM operations WHERE merchant_id = $1 AND order_ref = $2 \
     AND kind = 'payment' AND status = 'success') AS paid";

fn find_payment(conn: &mut PgConnection, id: uuid::Uuid) -> Result<Operation, MerchantError> {
    operations::table
        .find(id)
        .filter(operations::kind.eq("payment"))
        .select(Operation::as_select())
        .first(conn)
        .optional()?
        .ok_or(MerchantError::PaymentNotFound)
}

pub(crate) fn parse_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("payment"))
}

async fn refund(
    state: web::Data<AppState>,
    req: HttpRequest,
    key: Option<MerchantPrincipal>,
    admin: Option<AuthUser>,
    id: web::Path<String>,
    body: crate::http::MaybeValid<RefundRequest>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency::key(&req)?;
    let id = parse_id(&id)?;
    let body = body.into_inner().unwrap_or_default();
    Ok(execute::reply(refund_payment(&state, key, admin, idem, id, body).await?))
}

/// Refunds (part of) a payment, for its merchant's API key or an admin, under the idempotency key
/// `idem`: the one refund rule set both transports call. `body` is validated already.
///
/// # Errors
/// 404 unknown (or another merchant's) payment, 409 not refundable or key conflict, 422 bad amount.
pub async fn refund_payment(
    state: &AppState,
    key: Option<MerchantPrincipal>,
    admin: Option<AuthUser>,
    idem: String,
    id: uuid::Uuid,
    body: RefundRequest,
) -> Result<Reply, ApiError> {
    match (&key, &admin) {
        (Some(k), _) => limits::check(state, limits::Caller::ApiKey(k.key_id)).await?,
        (None, Some(a)) => limits::check(state, limits::Caller::User(a.user_id)).await?,
        (None, None) => {}
    }
    let scope = match (&key, &admin) {
        (Some(k), _) => format!("merchant:{}", k.merchant_id),
        (None, Some(a)) => format!("user:{}", a.user_id),
        (None, None) => return Err(MerchantError::MissingKey.into()),
    };
    let hash = idempotency::request_hash(&state.settings.idempotency, "refund", &id.to_string(), &body)?;
    if let Some(stored) = idempotency::lookup(&state.db, scope.clone(), idem.clone()).await? {
        return Ok(stored.replay(&hash)?);
    }
    let (payment, refunded) = storage::run(&state.db, move |conn| {
        let p = find_payment(conn, id)?;
        let refunded: Option<i64> =
            refund_totals::table.find(id).select(refund_totals::refunded).first(conn).optional()?;
        Ok::<_, MerchantError>((p, refunded.unwrap_or(0)))
    })
    .await?;
    if key.as_ref().is_some_and(|k| Some(k.merchant_id) != payment.merchant_id) {
        // Another merchant's payment: indistinguishable from an unknown one.
        return Err(MerchantError::PaymentNotFound.into());
    }
    if payment.status != OperationStatus::Success {
        return Err(MerchantError::NotRefundable(format!(
            "only successful payments can be refunded; this one is {}",
            payment.status
        ))
        .into());
    }
    let remaining = payment.amount - refunded;
    let amount = body.amount.unwrap_or(remaining);
    if amount <= 0 || amount > remaining {
        // A concurrent request with this same key may have just refunded: answer as it did.
        if let Some(stored) = idempotency::lookup(&state.db, scope.clone(), idem.clone()).await? {
            return Ok(stored.replay(&hash)?);
        }
    }
    if amount <= 0 {
        if remaining == 0 {
            return Err(MerchantError::NotRefundable("the payment is already fully refunded".into()).into());
        }
        return Err(ApiError::validation("amount", "amount must be positive"));
    }
    if amount > remaining {
        return Err(MerchantError::NotRefundable(format!("amount exceeds the refundable amount ({remaining})")).into());
    }
    let refund = MoneyOp {
        method: payment.method.clone(),
        dest_card: payment.source_card_id,
        credit_card: payment.source_card_id,
        reverses: Some(payment.id),
        initiated_by: admin.map(|a| a.user_id),
        merchant_id: payment.merchant_id,
        api_key_id: key.map(|k| k.key_id),
        order_ref: payment.order_ref.clone(),
        refund_of: Some((payment.id, payment.amount)),
        ..MoneyOp::new(
            OperationKind::Refund,
            (scope, idem, hash),
            amount,
            payment.credit_account_id,
            payment.debit_account_id,
        )
    };
    execute::run(state, refund).await
}

#[derive(Deserialize, Default)]
pub struct PaymentListQuery {
    #[serde(flatten)]
    pub page: PageQuery,
    pub merchant_id: Option<String>,
    pub api_key_id: Option<String>,
    pub card_id: Option<String>,
    pub status: Option<String>,
    pub kind: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// `active` (default), `archived` or `all`.
    #[serde(default)]
    pub archived: StatusFilter,
    /// Free text matched in the order reference or the method.
    pub search: Option<String>,
}

fn int<T: std::str::FromStr>(v: &Option<String>, field: &'static str) -> Result<Option<T>, ApiError> {
    // An empty value is not an integer: the parameter is left out instead.
    match v.as_deref() {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| ApiError::validation(field, format!("{field} must be an integer"))),
    }
}

/// The condition on `operations` of what merchant `m` sees as its own: its payments and refunds,
/// without card-data declines — those are the cardholder's business: the merchant got
/// `card_declined` and does not learn them apart from numbers that matched no card. Shared by the
/// merchant's payment lists and its watch stream (`Ledger.WatchOperations` with `merchant_id`).
pub fn merchant_sees(
    m: MerchantId,
) -> Box<
    dyn BoxableExpression<
        operations::table,
        diesel::pg::Pg,
        SqlType = diesel::sql_types::Nullable<diesel::sql_types::Bool>,
    >,
> {
    Box::new(
        operations::merchant_id.eq(m).and(
            operations::status
                .eq(OperationStatus::Success)
                .or(operations::failure_reason.is_null())
                .or(operations::failure_reason.ne_all(FailureCode::CARD_DECLINES)),
        ),
    )
}

/// Who is asking, for the payment lists.
#[derive(Clone, Copy)]
pub enum Viewer {
    Admin,
    Customer(UserId),
    Merchant(MerchantId),
}

/// Payments and refunds as `viewer` may see them, newest first (both transports).
///
/// # Errors
/// 422 for a bad filter or page; a storage error.
pub async fn list_payments(
    state: &AppState,
    viewer: Viewer,
    q: PaymentListQuery,
) -> Result<Page<OperationView>, ApiError> {
    let (limit, cursor) = q.page.resolve()?;
    let merchant: Option<MerchantId> = int(&q.merchant_id, "merchant_id")?;
    let api_key: Option<ApiKeyId> = int(&q.api_key_id, "api_key_id")?;
    let card: Option<CardId> = int(&q.card_id, "card_id")?;
    let status = crate::payments::service::parse_status(q.status.as_deref())?;
    let kinds: Vec<String> = match q.kind.as_deref() {
        None | Some("") => vec!["payment".into(), "refund".into()],
        Some(k @ ("payment" | "refund")) => vec![k.to_owned()],
        Some(_) => return Err(ApiError::validation("kind", "kind must be payment or refund")),
    };
    let pattern = search_opt(q.search.as_deref())?;
    let rows = storage::run(&state.db, move |conn| {
        // A customer's cards as an array (`= ANY`), so the planner reads them through the card indexes.
        let mine: Option<Vec<CardId>> = match viewer {
            Viewer::Customer(u) => Some(cards::table.filter(cards::user_id.eq(u)).select(cards::id).load(conn)?),
            Viewer::Admin | Viewer::Merchant(_) => None,
        };
        // One query per kind, each `kind = $1 … ORDER BY seq DESC LIMIT n`, merged here: `(kind, seq)`
        // serves that order for one kind, while `kind = ANY (payment, refund)` made PostgreSQL read
        // every payment and refund and sort them (a sequential scan at 1,000,000 operations).
        let mut rows: Vec<Operation> = Vec::new();
        for kind in kinds {
            let mut query = operations::table
                .select(Operation::as_select())
                .filter(operations::kind.eq(kind))
                .order(operations::seq.desc())
                .limit(limit + 1)
                .into_boxed();
            match viewer {
                Viewer::Admin | Viewer::Customer(_) => {}
                Viewer::Merchant(m) => query = query.filter(merchant_sees(m)),
            }
            if let Some(mine) = mine.clone() {
                query = query
                    .filter(operations::source_card_id.eq_any(mine.clone()).or(operations::dest_card_id.eq_any(mine)));
            }
            if let Some(m) = merchant {
                query = query.filter(operations::merchant_id.eq(m));
            }
            if let Some(k) = api_key {
                query = query.filter(operations::api_key_id.eq(k));
            }
            if let Some(c) = card {
                query = query.filter(operations::source_card_id.eq(c).or(operations::dest_card_id.eq(c)));
            }
            if let Some(s) = status {
                query = query.filter(operations::status.eq(s));
            }
            if let Some(f) = q.from {
                query = query.filter(operations::created_at.ge(f));
            }
            if let Some(t) = q.to {
                query = query.filter(operations::created_at.le(t));
            }
            query = match q.archived {
                StatusFilter::Active => query.filter(operations::archived_at.is_null()),
                StatusFilter::Archived => query.filter(operations::archived_at.is_not_null()),
                StatusFilter::All => query,
            };
            if let Some(p) = pattern.clone() {
                query = query.filter(crate::payments::service::search_matches(p));
            }
            if let Some(c) = cursor {
                query = query.filter(operations::seq.lt(c));
            }
            rows.extend(query.load::<Operation>(conn).map_err(StorageError::from)?);
        }
        rows.sort_unstable_by_key(|o| std::cmp::Reverse(o.seq));
        rows.truncate(usize::try_from(limit + 1).unwrap_or(usize::MAX));
        Ok::<_, StorageError>(rows)
    })
    .await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    let mut items: Vec<Operation> = rows;
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = if more { items.last().map(|o| encode_cursor(o.seq)) } else { None };
    Ok(Page { items: items.into_iter().map(OperationView::from).collect(), next_cursor, total: None })
}

async fn list_for_user(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<PaymentListQuery>,
) -> Result<HttpResponse, ApiError> {
    let viewer = if user.is_admin() { Viewer::Admin } else { Viewer::Customer(user.user_id) };
    Ok(HttpResponse::Ok().json(list_payments(&state, viewer, q.into_inner()).await?))
}

async fn list_for_merchant(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<MerchantId>,
    q: web::Query<PaymentListQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(list_for_owner(&state, user, id.into_inner(), q.into_inner()).await?))
}

/// The payments of merchant `id` for its owner (or an admin).
///
/// # Errors
/// 404 unknown or another owner's merchant; as [`list_payments`].
pub async fn list_for_owner(
    state: &AppState,
    user: AuthUser,
    id: MerchantId,
    q: PaymentListQuery,
) -> Result<Page<OperationView>, ApiError> {
    storage::run(&state.db, move |conn| find_for(conn, id, &user)).await?;
    list_payments(state, Viewer::Merchant(id), q).await
}

async fn list_for_key(
    state: web::Data<AppState>,
    key: MerchantPrincipal,
    q: web::Query<PaymentListQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(list_payments(&state, Viewer::Merchant(key.merchant_id), q.into_inner()).await?))
}

/// Whether a user may see a payment: admin, the card's owner, or the merchant's owner.
fn may_see(conn: &mut PgConnection, user: &AuthUser, p: &Operation) -> Result<bool, MerchantError> {
    if user.is_admin() {
        return Ok(true);
    }
    let ids: Vec<CardId> = [p.source_card_id, p.dest_card_id].into_iter().flatten().collect();
    let owns_card: i64 =
        cards::table.filter(cards::id.eq_any(ids)).filter(cards::user_id.eq(user.user_id)).count().get_result(conn)?;
    if owns_card > 0 {
        return Ok(true);
    }
    // The merchant side never sees card-data declines (see `list_payments`).
    if p.status == OperationStatus::Failed && p.failure_reason.is_some_and(FailureCode::is_card_decline) {
        return Ok(false);
    }
    let owns_merchant: i64 = merchants::table
        .filter(merchants::id.nullable().eq(p.merchant_id))
        .filter(merchants::owner_id.eq(user.user_id))
        .count()
        .get_result(conn)?;
    Ok(owns_card + owns_merchant > 0)
}

async fn get(state: web::Data<AppState>, user: AuthUser, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    Ok(HttpResponse::Ok().json(payment(&state, user, id).await?))
}

/// A payment the user may see (admin, the card's holder, the merchant's owner); others answer 404.
///
/// # Errors
/// 404; a storage error.
pub async fn payment(state: &AppState, user: AuthUser, id: uuid::Uuid) -> Result<OperationView, ApiError> {
    let p = storage::run(&state.db, move |conn| {
        let p = find_payment(conn, id)?;
        if !may_see(conn, &user, &p)? {
            return Err(MerchantError::PaymentNotFound);
        }
        Ok(p)
    })
    .await?;
    Ok(OperationView::from(p))
}

async fn refunds_of(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    Ok(HttpResponse::Ok().json(refunds(&state, user, id).await?))
}

/// The refunds of a payment the caller may see, oldest first (both transports).
///
/// # Errors
/// 404 unknown payment or not visible to the caller; a storage error.
pub async fn refunds(state: &AppState, user: AuthUser, id: uuid::Uuid) -> Result<Vec<OperationView>, ApiError> {
    let rows = storage::run(&state.db, move |conn| {
        let p = find_payment(conn, id)?;
        if !may_see(conn, &user, &p)? {
            return Err(MerchantError::PaymentNotFound);
        }
        Ok(operations::table
            .filter(operations::reverses_id.eq(id))
            .filter(operations::kind.eq("refund"))
            .select(Operation::as_select())
            .order(operations::seq.asc())
            .load::<Operation>(conn)?)
    })
    .await?;
    Ok(rows.into_iter().map(OperationView::from).collect())
}
