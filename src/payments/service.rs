//! Money movement as plain functions both transports call: top-ups, withdrawals and transfers
//! (each idempotent, run through the actor ledger), and the queries over operations. Inputs are the
//! validated request types of `payments::routes`, the caller's identity and the idempotency key;
//! results are the ledger's [`Reply`] or views.

use diesel::prelude::*;

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::pagination::Page;
use crate::identity::admin::StatusFilter;
use crate::payments::execute::{self, MoneyOp, Reply};
use crate::payments::routes::{OpListQuery, TopupRequest, TransferRequest, WithdrawalRequest};
use crate::payments::{idempotency, limits, methods, Operation, OperationView, PaymentError};
use crate::storage::schema::{cards, operations};
use crate::storage::{self, StorageError};

/// Checks amount and currency against the configured limits (every money-moving route uses it).
///
/// # Errors
/// 422 naming `currency` or `amount`.
pub fn check_money(state: &AppState, amount: i64, currency: Option<&str>) -> Result<(), ApiError> {
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

pub(crate) fn scope(user: &AuthUser) -> String {
    format!("user:{}", user.user_id)
}

/// Tops up a card under the idempotency key `key`; `body` is validated already.
///
/// # Errors
/// Validation (422), unknown or another user's card (404/403), key conflict (409), back-pressure (503).
pub async fn topup(state: &AppState, user: &AuthUser, key: String, body: TopupRequest) -> Result<Reply, ApiError> {
    limits::check(state, limits::Caller::User(user.user_id)).await?;
    check_money(state, body.amount, body.currency.as_deref())?;
    let method = methods::canonical(&body.method).ok_or_else(|| ApiError::validation("method", "unknown method"))?;
    let hash = idempotency::request_hash(&state.settings.idempotency, "topup", "", &body)?;
    let account = owned_card(state, user, body.card_id).await?;
    let funding =
        *state.ledger.system.funding.get(method).ok_or_else(|| ApiError::internal("funding account missing"))?;
    let op = MoneyOp {
        method: Some(method.to_owned()),
        dest_card: Some(body.card_id),
        credit_card: Some(body.card_id),
        initiated_by: Some(user.user_id),
        ..MoneyOp::new("topup", (scope(user), key, hash), body.amount, funding, account)
    };
    execute::run(state, op).await
}

/// Withdraws from a card under the idempotency key `key`; `body` is validated already.
///
/// # Errors
/// Validation (422), unknown or another user's card (404/403), key conflict (409), back-pressure (503).
pub async fn withdraw(
    state: &AppState,
    user: &AuthUser,
    key: String,
    body: WithdrawalRequest,
) -> Result<Reply, ApiError> {
    limits::check(state, limits::Caller::User(user.user_id)).await?;
    check_money(state, body.amount, body.currency.as_deref())?;
    let hash = idempotency::request_hash(&state.settings.idempotency, "withdrawal", "", &body)?;
    let account = owned_card(state, user, body.card_id).await?;
    let op = MoneyOp {
        source_card: Some(body.card_id),
        debit_card: Some(body.card_id),
        initiated_by: Some(user.user_id),
        ..MoneyOp::new("withdrawal", (scope(user), key, hash), body.amount, account, state.ledger.system.withdrawals)
    };
    execute::run(state, op).await
}

/// Transfers between cards under the idempotency key `key`; `body` is validated already.
///
/// # Errors
/// Validation (422), unknown or another user's card (404/403), key conflict (409), back-pressure (503).
pub async fn transfer(
    state: &AppState,
    user: &AuthUser,
    key: String,
    body: TransferRequest,
) -> Result<Reply, ApiError> {
    limits::check(state, limits::Caller::User(user.user_id)).await?;
    check_money(state, body.amount, body.currency.as_deref())?;
    let hash = idempotency::request_hash(&state.settings.idempotency, "transfer", "", &body)?;
    let (from, to) = tokio::join!(owned_card(state, user, body.from_card_id), any_card(state, body.to_card_id));
    let (from, to) = (from?, to?);
    let op = MoneyOp {
        source_card: Some(body.from_card_id),
        dest_card: Some(body.to_card_id),
        debit_card: Some(body.from_card_id),
        credit_card: Some(body.to_card_id),
        initiated_by: Some(user.user_id),
        ..MoneyOp::new("transfer", (scope(user), key, hash), body.amount, from, to)
    };
    execute::run(state, op).await
}

pub(crate) fn find_op(conn: &mut PgConnection, kind: &str, id: uuid::Uuid) -> Result<Operation, PaymentError> {
    let op: Operation = operations::table.find(id).select(Operation::as_select()).first(conn)?;
    // A reversal is listed under its original's kind as well as visible by id.
    if op.kind != kind {
        return Err(PaymentError::OperationNotFound);
    }
    Ok(op)
}

pub(crate) fn may_see(conn: &mut PgConnection, user: &AuthUser, op: &Operation) -> Result<bool, PaymentError> {
    if user.is_admin() {
        return Ok(true);
    }
    let ids: Vec<i64> = [op.source_card_id, op.dest_card_id].into_iter().flatten().collect();
    let owned: i64 =
        cards::table.filter(cards::id.eq_any(ids)).filter(cards::user_id.eq(user.user_id)).count().get_result(conn)?;
    Ok(owned > 0)
}

fn int_param(v: &Option<String>, field: &'static str) -> Result<Option<i64>, ApiError> {
    // An empty value is not an integer: the parameter is left out instead.
    match v.as_deref() {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| ApiError::validation(field, format!("{field} must be an integer"))),
    }
}

/// An operation of `kind` the caller may see (another user's answers like a missing one).
///
/// # Errors
/// 404; a storage error.
pub async fn get_operation(
    state: &AppState,
    user: AuthUser,
    kind: &'static str,
    id: uuid::Uuid,
) -> Result<OperationView, ApiError> {
    let op = storage::run(&state.db, move |conn| {
        let op = find_op(conn, kind, id)?;
        if !may_see(conn, &user, &op)? {
            return Err(PaymentError::OperationNotFound);
        }
        Ok(op)
    })
    .await?;
    Ok(OperationView::from(op))
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
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
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

/// Operations of one kind the caller may see (own cards; admins: all), newest first, with the
/// cursors of the HTTP API.
///
/// # Errors
/// 422 for a bad filter or page; a storage error.
pub async fn list_operations(
    state: &AppState,
    user: AuthUser,
    kind: &'static str,
    q: OpListQuery,
) -> Result<Page<OperationView>, ApiError> {
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
    Ok(page)
}

/// Reverses an operation of `kind` (admin): a new, linked, balanced entry under the idempotency key `key`.
///
/// # Errors
/// 404 unknown operation, 409 not reversible or key conflict, 503 back-pressure.
pub async fn reverse(
    state: &AppState,
    user: &AuthUser,
    kind: &'static str,
    key: String,
    id: uuid::Uuid,
) -> Result<Reply, ApiError> {
    limits::check(state, limits::Caller::User(user.user_id)).await?;
    let hash = idempotency::request_hash(&state.settings.idempotency, "reversal", &id.to_string(), &())?;
    if let Some(stored) = idempotency::lookup(&state.db, scope(user), key.clone()).await? {
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
        ..MoneyOp::new("reversal", (scope(user), key, hash), op.amount, op.credit_account_id, op.debit_account_id)
    };
    execute::run(state, reversal).await
}
