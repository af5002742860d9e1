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
use crate::ids::{AccountId, CardId, UserId};
use crate::payments::execute::{self, MoneyOp, Reply};
use crate::payments::routes::{OpListQuery, TopupRequest, TransferRequest, WithdrawalRequest};
use crate::payments::{
    idempotency, limits, methods, recipient, Operation, OperationKind, OperationStatus, OperationView, PaymentError,
};
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
async fn card_snapshot(state: &AppState, card: CardId) -> Result<payd_actors::CardSnapshot, PaymentError> {
    state.ledger.ledger.cards().get(card.get()).await.map_err(|e| match e {
        payd_actors::CardError::NotFound => PaymentError::CardNotFound(card),
        payd_actors::CardError::Busy => PaymentError::Busy,
        other => PaymentError::Unavailable(other.to_string()),
    })
}

/// The account of a card the caller owns (any card for an admin).
async fn owned_card(state: &AppState, user: &AuthUser, card: CardId) -> Result<AccountId, ApiError> {
    let snapshot = card_snapshot(state, card).await?;
    if UserId::new(snapshot.owner_id) != user.user_id && !user.is_admin() {
        return Err(PaymentError::NotCardOwner(card).into());
    }
    Ok(AccountId::new(snapshot.account_id))
}

/// The account of any card (the receiving side of a transfer).
async fn any_card(state: &AppState, card: CardId) -> Result<AccountId, ApiError> {
    Ok(AccountId::new(card_snapshot(state, card).await?.account_id))
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
    let funding = state
        .ledger
        .system
        .funding
        .get(method)
        .copied()
        .map(AccountId::new)
        .ok_or_else(|| ApiError::internal("funding account missing"))?;
    let op = MoneyOp {
        method: Some(method.to_owned()),
        dest_card: Some(body.card_id),
        credit_card: Some(body.card_id),
        initiated_by: Some(user.user_id),
        ..MoneyOp::new(OperationKind::Topup, (scope(user), key, hash), body.amount, funding, account)
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
        ..MoneyOp::new(
            OperationKind::Withdrawal,
            (scope(user), key, hash),
            body.amount,
            account,
            AccountId::new(state.ledger.system.withdrawals),
        )
    };
    execute::run(state, op).await
}

/// Transfers between cards under the idempotency key `key`; `body` is validated already. The
/// recipient is a card id or, for anyone's card, a card number: that one is resolved by its keyed
/// hash, and another user's card is answered masked, never by id.
///
/// # Errors
/// Validation (422, e.g. a number failing the Luhn check or naming the paying card), unknown or
/// another user's card (404/403), unknown or closed recipient by number (404 `recipient_not_found`,
/// alike), key conflict (409), back-pressure (503).
pub async fn transfer(
    state: &AppState,
    user: &AuthUser,
    key: String,
    body: TransferRequest,
) -> Result<Reply, ApiError> {
    limits::check(state, limits::Caller::User(user.user_id)).await?;
    check_money(state, body.amount, body.currency.as_deref())?;
    let Some(raw) = body.to_card_number.as_deref() else {
        let to_card = body.to_card_id.ok_or_else(|| ApiError::validation("to_card_id", "to_card_id is required"))?;
        let hash = idempotency::request_hash(&state.settings.idempotency, "transfer", "", &body)?;
        let (from, to) = tokio::join!(owned_card(state, user, body.from_card_id), any_card(state, to_card));
        let (from, to) = (from?, to?);
        let op = MoneyOp {
            source_card: Some(body.from_card_id),
            dest_card: Some(to_card),
            debit_card: Some(body.from_card_id),
            credit_card: Some(to_card),
            initiated_by: Some(user.user_id),
            ..MoneyOp::new(OperationKind::Transfer, (scope(user), key, hash), body.amount, from, to)
        };
        return execute::run(state, op).await;
    };
    let number = recipient::parse("to_card_number", raw)?;
    // A transfer by number tells whether the number is open as a preview does (404 for unknown and
    // closed cards, a 402 from an empty source card for open ones), so both draw on the caller's one
    // budget of recipient lookups: numbers cannot be probed faster through transfers than previews.
    limits::check_recipient_preview(state, user.user_id).await?;
    // The fingerprint carries the number's keyed hash, not its digits: spelled with or without
    // spaces or dashes, it is the same request.
    let canonical = TransferRequest { to_card_number: Some(recipient::fingerprint(state, &number)), ..body };
    let hash = idempotency::request_hash(&state.settings.idempotency, "transfer", "", &canonical)?;
    let (from, to) = tokio::join!(
        owned_card(state, user, canonical.from_card_id),
        recipient::resolve(state, "to_card_number", &number)
    );
    let from = from?;
    let to = match to {
        Ok(to) => to,
        Err(e @ PaymentError::RecipientNotFound(_)) => {
            // The card may have closed since this request was first answered: a retry replays that answer.
            if let Some(stored) = idempotency::lookup(&state.db, scope(user), key.clone()).await? {
                return Ok(stored.replay(&hash)?);
            }
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    if to.card_id == canonical.from_card_id {
        return Err(PaymentError::SelfPayment.into());
    }
    let to_account = any_card(state, to.card_id).await?;
    let op = MoneyOp {
        source_card: Some(canonical.from_card_id),
        dest_card: Some(to.card_id),
        debit_card: Some(canonical.from_card_id),
        credit_card: Some(to.card_id),
        initiated_by: Some(user.user_id),
        dest_masked: (to.user_id != user.user_id).then_some(to.masked),
        ..MoneyOp::new(OperationKind::Transfer, (scope(user), key, hash), canonical.amount, from, to_account)
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

/// The free-text filter on operations: `pattern` (from `search_opt`) in the order reference or the
/// method. The expression is the one `operations_search_trgm` indexes, so a search is answered from
/// the trigram index (and, within a card's or merchant's scope, combined with that scope's index); the
/// index is partial (rows with a reference or a method), and the filter repeats its condition.
pub fn search_matches(
    pattern: String,
) -> Box<dyn BoxableExpression<operations::table, diesel::pg::Pg, SqlType = diesel::sql_types::Bool>> {
    Box::new(
        diesel::dsl::sql::<diesel::sql_types::Bool>(
            "(operations.order_ref IS NOT NULL OR operations.method IS NOT NULL) \
             AND (coalesce(operations.order_ref, '') || ' ' || coalesce(operations.method, '')) ILIKE ",
        )
        .bind::<diesel::sql_types::Text, _>(pattern),
    )
}

/// Archives (hides from default lists) or restores an operation; never deletes it. Guarded on the
/// current state, so archiving twice or restoring what is not archived answers 409 `archive_state`.
///
/// # Errors
/// `ArchiveState`; a storage error.
pub(crate) fn set_archived(conn: &mut PgConnection, op: &Operation, archive: bool) -> Result<Operation, PaymentError> {
    match (archive, op.archived_at.is_some()) {
        (true, true) => return Err(PaymentError::ArchiveState("already archived")),
        (false, false) => return Err(PaymentError::ArchiveState("not archived; nothing to restore")),
        _ => {}
    }
    let at = archive.then(chrono::Utc::now);
    let q = operations::table.find(op.id);
    let updated = if archive {
        diesel::update(q.filter(operations::archived_at.is_null()))
            .set(operations::archived_at.eq(at))
            .returning(Operation::as_returning())
            .get_result(conn)
            .optional()?
    } else {
        diesel::update(q.filter(operations::archived_at.is_not_null()))
            .set(operations::archived_at.eq(at))
            .returning(Operation::as_returning())
            .get_result(conn)
            .optional()?
    };
    updated.ok_or(PaymentError::ArchiveState("changing"))
}

pub(crate) fn may_see(conn: &mut PgConnection, user: &AuthUser, op: &Operation) -> Result<bool, PaymentError> {
    if user.is_admin() {
        return Ok(true);
    }
    let ids: Vec<CardId> = [op.source_card_id, op.dest_card_id].into_iter().flatten().collect();
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
        let mut views = recipient::present(conn, &user, vec![op])?;
        views.pop().ok_or(PaymentError::OperationNotFound)
    })
    .await?;
    Ok(op)
}

/// The `status` filter of an operation or payment list.
///
/// # Errors
/// 422 naming `status` for anything but `success` or `failed`.
pub fn parse_status(raw: Option<&str>) -> Result<Option<OperationStatus>, ApiError> {
    raw.map(str::parse::<OperationStatus>)
        .transpose()
        .map_err(|_| ApiError::validation("status", "status must be success or failed"))
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
    status: Option<OperationStatus>,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// 0 = not archived, 1 = archived only, 2 = both.
    archived: i16,
    /// Operations with `seq` below this one.
    cursor: i64,
    limit: i64,
    /// The `ILIKE` pattern of a free-text search (order reference or method).
    search: Option<String>,
}

impl OperationPage {
    fn load(self, conn: &mut PgConnection) -> Result<Vec<Operation>, diesel::result::Error> {
        RunQueryDsl::load(self, conn)
    }
}

/// `SELECT * FROM payd_operation_page($1, …, $12)`: fixed text and a static query id, so diesel keeps
/// it prepared per connection (a `diesel::sql_query` is parsed again on every call).
impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for OperationPage {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Nullable, SmallInt, Text, Timestamptz};
        out.push_sql("SELECT * FROM payd_operation_page(");
        out.push_bind_param::<Text, str>(self.kind)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<BigInt>, _>(&self.user)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<BigInt>, _>(&self.card)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<BigInt>, _>(&self.from_card)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<BigInt>, _>(&self.to_card)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.status)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&self.from)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&self.to)?;
        out.push_sql(", ");
        out.push_bind_param::<SmallInt, _>(&self.archived)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.cursor)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.search)?;
        out.push_sql(")");
        Ok(())
    }
}

impl diesel::query_builder::QueryId for OperationPage {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for OperationPage {
    type SqlType = diesel::sql_types::Untyped;
}

impl RunQueryDsl<PgConnection> for OperationPage {}

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
    let status = parse_status(q.status.as_deref())?;
    if let (Some(f), Some(t)) = (q.from, q.to) {
        if f > t {
            return Err(ApiError::validation("from", "from must not be after to"));
        }
    }
    let archived = match q.archived {
        StatusFilter::Active => 0,
        StatusFilter::Archived => 1,
        StatusFilter::All => 2,
    };
    let search = crate::http::pagination::search_opt(q.search.as_deref())?;
    // One card's first page and nothing else asked: from memory when the change feed allows it.
    let plain = from_card.is_none()
        && to_card.is_none()
        && status.is_none()
        && q.from.is_none()
        && q.to.is_none()
        && archived == 0
        && cursor.is_none()
        && search.is_none();
    if let (Some(card), true) = (card, plain) {
        if let Some(page) = first_page(state, &user, kind, card, limit).await? {
            return Ok(page);
        }
    }
    let page = OperationPage {
        kind,
        user: if user.is_admin() { None } else { Some(user.user_id.get()) },
        card,
        from_card,
        to_card,
        status,
        from: q.from,
        to: q.to,
        archived,
        cursor: cursor.unwrap_or(i64::MAX),
        limit: limit + 1,
        search,
    };
    let (seqs, views) = storage::run(&state.db, move |conn| {
        let rows = page.load(conn).map_err(StorageError::from)?;
        let seqs: Vec<i64> = rows.iter().map(|o| o.seq).collect();
        Ok::<_, StorageError>((seqs, recipient::present(conn, &user, rows)?))
    })
    .await?;
    Ok(page_of(&seqs, views, limit))
}

/// The page of `views` (at most `limit + 1`, the last only telling that more follow) whose rows have
/// the commit orders `seqs`.
fn page_of(seqs: &[i64], views: Vec<OperationView>, limit: i64) -> Page<OperationView> {
    let mut page = Page::from_rows(views, limit, |_| 0);
    if page.next_cursor.is_some() {
        page.next_cursor =
            seqs.get(usize::try_from(limit - 1).unwrap_or(0)).map(|s| crate::http::pagination::encode_cursor(*s));
    }
    page
}

/// The first page of card `card_id`'s operations of `kind` (no other filter), for its holder or an
/// admin, from the instance's cache (`payments::lists`) while the change feed vouches for it, else
/// from the database (then cached). `None` when the cache cannot answer: no feed reporting operation
/// changes, a limit above the depth, an unknown card or another user's (the caller's own operations
/// with that card are then read from the database, as before).
async fn first_page(
    state: &AppState,
    user: &AuthUser,
    kind: &'static str,
    card_id: i64,
    limit: i64,
) -> Result<Option<Page<OperationView>>, ApiError> {
    let (Some(feed), Some(depth)) = (state.ledger.operations_feed(), state.operation_lists.depth_for(limit)) else {
        return Ok(None);
    };
    let card = match state.cards.get(&state.db, CardId::new(card_id)).await {
        Ok(card) => card,
        Err(crate::cards::CardsError::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if card.user_id != user.user_id && !user.is_admin() {
        return Ok(None);
    }
    let account = card.account_id.get();
    let max_age = std::time::Duration::from_millis(state.settings.ledger.read_staleness_ms);
    let read_at = std::time::Instant::now();
    let version = state
        .ledger
        .ledger
        .accounts()
        .read(account, max_age)
        .await
        .map_err(crate::cards::balance::account_error)?
        .state
        .version;
    let rows = if let Some(rows) = state.operation_lists.get(&feed, max_age, account, kind, version, limit) {
        crate::metrics::count("operation_list_read", "memory");
        rows
    } else {
        crate::metrics::count("operation_list_read", "database");
        let page = OperationPage {
            kind,
            user: None,
            card: Some(card_id),
            from_card: None,
            to_card: None,
            status: None,
            from: None,
            to: None,
            archived: 0,
            cursor: i64::MAX,
            limit: depth + 1,
            search: None,
        };
        let rows = storage::run(&state.db, move |conn| page.load(conn).map_err(StorageError::from)).await?;
        let n = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX).min(rows.len());
        let head = rows[..n].to_vec();
        state.operation_lists.put(account, kind, version, read_at, rows);
        head
    };
    let seqs: Vec<i64> = rows.iter().map(|o| o.seq).collect();
    let views = recipient::present_cached(state, user, rows).await?;
    Ok(Some(page_of(&seqs, views, limit)))
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
            .filter(operations::status.eq(OperationStatus::Success))
            .count()
            .get_result(conn)?;
        Ok::<_, PaymentError>((op, reversed > 0))
    })
    .await?;
    let (op, reversed) = original;
    if op.kind == OperationKind::Reversal {
        return Err(PaymentError::NotReversible("a reversal cannot itself be reversed".into()).into());
    }
    if op.status != OperationStatus::Success {
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
        reverses_withdrawal: op.kind == OperationKind::Withdrawal,
        initiated_by: Some(user.user_id),
        ..MoneyOp::new(
            OperationKind::Reversal,
            (scope(user), key, hash),
            op.amount,
            op.credit_account_id,
            op.debit_account_id,
        )
    };
    execute::run(state, reversal).await
}
