//! `/api/v1/cards…` and `/api/v1/balances`: issue, list, lookup, lifecycle, balance, statement.

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::app::AppState;
use crate::cards::{lifecycle, service, Card, CardAction, CardStatus, CardView, CardsError};
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::pagination::{Page, PageQuery};
use crate::http::routes::{Access, Api, ADMIN};
use crate::http::Valid;
use crate::identity::admin::StatusFilter;
use crate::ids::{CardId, UserId};
use crate::ledger::NewEvent;
use crate::storage::schema::{cards, operations, outbox, postings, users};
use crate::storage::{self, StorageError};

pub fn register(api: &mut Api) {
    use Access::Authenticated as A;
    let t = "cards";
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/cards",
        A,
        t,
        "Issue a card (PAN and CVV are shown once)",
        web::post().to(issue),
    );
    r.body::<IssueCardRequest>(s).responds::<IssuedCard>(201, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/cards",
        A,
        t,
        "List cards (own; admins: all, filter by user_id)",
        web::get().to(list),
    );
    r.query(&["user_id", "status", "archived", "search", "include_total", "limit", "cursor"])
        .responds_page::<CardView>(s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/cards/restore-all",
        crate::http::routes::ADMIN,
        t,
        "Restore every archived card; answers how many",
        web::post().to(restore_all),
    );
    r.responds::<crate::http::RestoredAll>(200, s);
    let (r, s) =
        api.route(Method::POST, "/api/v1/cards/lookup", A, t, "Find a card by its number", web::post().to(lookup));
    r.body::<LookupRequest>(s).responds::<CardView>(200, s);
    let (r, s) = api.route(Method::GET, "/api/v1/cards/{id}", A, t, "Get a card", web::get().to(get));
    r.responds::<CardView>(200, s);
    let (r, s) = api.route(
        Method::PATCH,
        "/api/v1/cards/{id}",
        A,
        t,
        "Update a card's label; admins also a credit card's credit_limit (lowering it is refused below the balance)",
        web::patch().to(update),
    );
    r.body::<UpdateCardRequest>(s).responds::<CardView>(200, s);
    for (path, summary) in [
        ("/api/v1/cards/{id}/freeze", "Freeze a card (no debits)"),
        ("/api/v1/cards/{id}/unfreeze", "Unfreeze a card"),
        ("/api/v1/cards/{id}/close", "Close a card (final; balance must be zero)"),
        ("/api/v1/cards/{id}/archive", "Archive a closed card"),
        ("/api/v1/cards/{id}/restore", "Restore an archived card"),
    ] {
        let (r, s) = api.route(Method::POST, path, A, t, summary, web::post().to(lifecycle));
        r.responds::<CardView>(200, s);
    }
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/cards/{id}/unlock",
        A,
        t,
        "Unlock payments on a card locked after too many wrong card details (holder or admin)",
        web::post().to(unlock),
    );
    r.responds::<CardView>(200, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/users/{id}/cards",
        A,
        t,
        "Cards of a user (self or admin)",
        web::get().to(by_user),
    );
    r.query(&["status", "archived", "search", "include_total", "limit", "cursor"]).responds_page::<CardView>(s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/cards/{id}/balance",
        A,
        t,
        "Balance, available, total withdrawn; `at` for a point in time",
        web::get().to(balance),
    );
    r.query(&["at"]).responds::<BalanceView>(200, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/cards/{id}/statement",
        A,
        t,
        "Postings with running balance",
        web::get().to(statement),
    );
    r.query(&["from", "to", "limit", "cursor"]).responds_page::<StatementLine>(s);
    let (r, s) =
        api.route(Method::GET, "/api/v1/balances", ADMIN, t, "Balances of every card", web::get().to(all_balances));
    r.query(&["limit", "cursor"]).responds_page::<BalanceView>(s);
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"card_type": "debit", "brand": "visa", "label": "Groceries"}))]
pub struct IssueCardRequest {
    /// `debit` or `credit`.
    #[validate(custom(function = "card_type_rule"))]
    #[schema(schema_with = crate::http::schema::card_type)]
    pub card_type: String,
    /// A configured card network (`cards.networks`; by default visa, mastercard, american express,
    /// discover).
    #[validate(length(min = 1, max = 50, message = "brand must be 1-50 characters"))]
    #[schema(min_length = 1, max_length = 50, example = "visa")]
    pub brand: String,
    /// Admins only: issue for another user.
    #[schema(value_type = Option<i64>)]
    pub user_id: Option<UserId>,
    /// Admins only: credit line of a credit card (minor units).
    #[validate(range(
        min = 0,
        max = 1_000_000_000_000_i64,
        message = "credit_limit must be between 0 and 1000000000000"
    ))]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub credit_limit: Option<i64>,
    #[validate(length(max = 100, message = "label must be at most 100 characters"))]
    #[schema(max_length = 100)]
    pub label: Option<String>,
}

fn card_type_rule(t: &str) -> Result<(), validator::ValidationError> {
    if t == "debit" || t == "credit" {
        Ok(())
    } else {
        Err(validator::ValidationError::new("card_type").with_message("card_type must be `debit` or `credit`".into()))
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IssuedCard {
    pub card: CardView,
    /// The full card number: shown only in this response.
    pub card_number: String,
    /// The security code: shown only in this response, never stored.
    pub cvv: String,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"card_number": "4111 1111 1111 1111"}))]
pub struct LookupRequest {
    /// 12-19 digits; spaces and dashes between them are ignored.
    #[validate(length(min = 12, max = 23, message = "card_number must be 12-19 digits"))]
    #[schema(min_length = 12, max_length = 23)]
    pub card_number: String,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"label": "Travel"}))]
pub struct UpdateCardRequest {
    #[validate(length(max = 100, message = "label must be at most 100 characters"))]
    #[schema(max_length = 100)]
    pub label: Option<String>,
    /// Admins only, credit cards only: the new credit line (minor units). The card's account may then
    /// go down to `-credit_limit`; lowering it below what the card already owes is refused (409).
    #[validate(range(
        min = 0,
        max = 1_000_000_000_000_i64,
        message = "credit_limit must be between 0 and 1000000000000"
    ))]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub credit_limit: Option<i64>,
}

#[derive(Deserialize)]
pub struct CardListQuery {
    #[serde(flatten)]
    pub page: PageQuery,
    pub user_id: Option<String>,
    pub status: Option<String>,
    #[serde(default)]
    pub archived: StatusFilter,
    /// Free text matched in the label or the last four digits.
    pub search: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BalanceView {
    pub card_id: i64,
    pub account_id: i64,
    pub currency: String,
    pub balance: i64,
    /// What may be spent now: balance + credit line − outstanding reservations.
    pub available: i64,
    pub credit_limit: i64,
    pub total_withdrawn: i64,
    pub last_withdrawal_at: Option<DateTime<Utc>>,
    /// Set when the balance is for a point in time (`at`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, Queryable, QueryableByName, utoipa::ToSchema)]
pub struct StatementLine {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub posting_id: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub operation_id: uuid::Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub kind: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub amount: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub balance_after: i64,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub created_at: DateTime<Utc>,
}

pub(crate) fn card_event(event_type: &str, card: &Card) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        aggregate_type: "card".into(),
        aggregate_key: format!("card:{}", card.id),
        payload: serde_json::json!({
            "card_id": card.id, "user_id": card.user_id, "brand": card.brand, "card_type": card.card_type,
            "card_number": card.pan_masked, "status": card.status,
        }),
    }
}

pub(crate) fn insert_event(conn: &mut PgConnection, e: &NewEvent) -> Result<(), CardsError> {
    diesel::insert_into(outbox::table).values(e.clone()).execute(conn)?;
    Ok(())
}

async fn issue(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Valid<IssueCardRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::issue(&state, &user, body.into_inner()).await?))
}

/// One page of cards, newest first. Two fixed statements (prepared once per connection): a user's
/// cards walk `cards (user_id, id)` backwards, every card (admins) the primary key; the status and
/// archive filters are parameters whose absent value lets every row through. A `search` (`pattern`,
/// from `search_opt`) adds the label/last-four filter `cards_search_trgm` indexes. With `with_total`
/// the matching cards are counted too (a user's cards: a handful, on the same index).
pub(super) fn list_query(
    conn: &mut PgConnection,
    user_filter: Option<UserId>,
    q: &CardListQuery,
    pattern: Option<String>,
    page: (i64, Option<i64>, bool),
) -> Result<(Vec<Card>, Option<i64>), CardsError> {
    let (limit, cursor, with_total) = page;
    let status = q.status.as_deref().map(str::parse::<CardStatus>).transpose();
    let statuses: Vec<CardStatus> =
        match status.map_err(|_| CardsError::Invalid("status must be active, frozen or closed"))? {
            Some(s) => vec![s],
            None => CardStatus::ALL.to_vec(),
        };
    let archived: Vec<bool> = match q.archived {
        StatusFilter::Active => vec![false],
        StatusFilter::Archived => vec![true],
        StatusFilter::All => vec![false, true],
    };
    let total = if with_total {
        let mut count = cards::table
            .filter(cards::status.eq_any(statuses.clone()))
            .filter(cards::archived_at.is_not_null().eq_any(archived.clone()))
            .into_boxed();
        if let Some(u) = user_filter {
            count = count.filter(cards::user_id.eq(u));
        }
        if let Some(p) = pattern.clone() {
            count = count.filter(search_matches(p));
        }
        Some(count.count().get_result::<i64>(conn)?)
    } else {
        None
    };
    let cursor = cursor.unwrap_or(i64::MAX);
    let base = cards::table
        .select(Card::as_select())
        .filter(cards::id.lt(cursor))
        .filter(cards::status.eq_any(statuses))
        .filter(cards::archived_at.is_not_null().eq_any(archived))
        .order(cards::id.desc())
        .limit(limit + 1);
    let rows = match (user_filter, pattern) {
        (Some(u), None) => base.filter(cards::user_id.eq(u)).load(conn)?,
        (None, None) => base.load(conn)?,
        (u, Some(p)) => {
            let mut q = base.into_boxed().filter(search_matches(p));
            if let Some(u) = u {
                q = q.filter(cards::user_id.eq(u));
            }
            q.load(conn)?
        }
    };
    Ok((rows, total))
}

/// The free-text filter on cards: the label or the last four digits (the expression
/// `cards_search_trgm` indexes).
fn search_matches(
    pattern: String,
) -> Box<dyn BoxableExpression<cards::table, diesel::pg::Pg, SqlType = diesel::sql_types::Bool>> {
    Box::new(
        diesel::dsl::sql::<diesel::sql_types::Bool>("(cards.label || ' ' || cards.pan_last4) ILIKE ")
            .bind::<diesel::sql_types::Text, _>(pattern),
    )
}

async fn restore_all(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::restore_all(&state).await?))
}

/// The list's `status` filter.
///
/// # Errors
/// 422 naming `status` for anything but `active`, `frozen` or `closed`.
pub(super) fn status_filter(q: &CardListQuery) -> Result<Option<CardStatus>, ApiError> {
    q.status
        .as_deref()
        .map(str::parse::<CardStatus>)
        .transpose()
        .map_err(|_| ApiError::validation("status", "status must be active, frozen or closed"))
}

async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    q: web::Query<CardListQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::list(&state, &user, q.into_inner()).await?))
}

async fn by_user(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<UserId>,
    q: web::Query<CardListQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(user_cards(&state, &user, id.into_inner(), q.into_inner()).await?))
}

/// One page of a user's cards (the caller's own, or any user's for an admin).
///
/// # Errors
/// 404 unknown or another user, 422 a bad filter, cursor or limit, a storage error.
pub async fn user_cards(
    state: &AppState,
    user: &AuthUser,
    id: UserId,
    q: CardListQuery,
) -> Result<Page<CardView>, ApiError> {
    // Someone else's id answers like a missing one (and an admin asking for a missing user gets 404 too).
    if id != user.user_id && !user.is_admin() {
        return Err(ApiError::not_found("user"));
    }
    status_filter(&q)?;
    let page = q.page.resolve_with_total()?;
    let pattern = crate::http::pagination::search_opt(q.search.as_deref())?;
    let (rows, total) = storage::run(&state.db, move |conn| {
        let exists: i64 = users::table.filter(users::id.eq(id)).count().get_result(conn)?;
        if exists == 0 {
            return Ok(None);
        }
        list_query(conn, Some(id), &q, pattern, page).map(Some)
    })
    .await?
    .ok_or_else(|| ApiError::not_found("user"))?;
    let currency = state.settings.money.currency.clone();
    let views: Vec<CardView> = rows.into_iter().map(|c| CardView::new(c, &currency)).collect();
    Ok(Page::from_rows(views, page.0, |c| c.id).with_total(total))
}

async fn get(state: web::Data<AppState>, user: AuthUser, id: web::Path<CardId>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::get(&state, &user, id.into_inner()).await?))
}

async fn lookup(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Valid<LookupRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::find_by_number(&state, &user, body.into_inner()).await?))
}

async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<CardId>,
    body: Valid<UpdateCardRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::update(&state, &user, id.into_inner(), body.into_inner()).await?))
}

async fn lifecycle(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<CardId>,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let Some(action) = req.path().rsplit('/').next().and_then(CardAction::from_segment) else {
        return Err(ApiError::not_found("action"));
    };
    Ok(HttpResponse::Ok().json(lifecycle::apply(&state, user, id.into_inner(), action).await?))
}

/// Clears a card's payment lock and its failure counter; answers the card (also when it was not locked).
async fn unlock(state: web::Data<AppState>, user: AuthUser, id: web::Path<CardId>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(lifecycle::unlock(&state, user, id.into_inner()).await?))
}

#[derive(Deserialize)]
pub struct BalanceQuery {
    at: Option<DateTime<Utc>>,
}

async fn balance(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<CardId>,
    q: web::Query<BalanceQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let view = match q.into_inner().at {
        None => crate::cards::balance::current(&state, &user, id).await?,
        Some(at) => crate::cards::balance::at(&state, user, id, at).await?,
    };
    Ok(HttpResponse::Ok().json(view))
}

/// A statement's time window: (from, to), both inclusive and optional.
pub type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

#[derive(Deserialize)]
pub struct StatementQuery {
    #[serde(flatten)]
    pub page: PageQuery,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl StatementQuery {
    /// Page size, cursor and time window.
    ///
    /// # Errors
    /// 422 naming `limit`, `cursor` or `from`.
    pub fn resolve(&self) -> Result<(i64, Option<i64>, Window), ApiError> {
        let (limit, cursor) = self.page.resolve()?;
        if let (Some(f), Some(t)) = (self.from, self.to) {
            if f > t {
                return Err(ApiError::validation("from", "from must not be after to"));
            }
        }
        Ok((limit, cursor, (self.from, self.to)))
    }
}

/// An account's postings, newest first, with the running balance after each (cards and merchants).
///
/// Without an upper bound (`to`): one fixed, prepared statement whatever the other filters, walking
/// `postings (account_id, id)` backwards from the cursor and stopping after `limit + 1` rows, also in
/// its generic plan ([`account_postings_below`]). With `to`: `payd_statement_page` (migration
/// `2026-12-08-000101_statement_page`) walks `postings (account_id, created_at, id)` backwards from
/// `to` (or the cursor's posting), so a window far in the past reads its own postings only; that
/// page is ordered by `(created_at, id)`. The function is not used for the common page: at
/// 1,000,000 operations a PL/pgSQL call cost more than the plain prepared statement it wraps
/// (docs/benchmarks.md, "Reads at 1,000,000 operations, fourth round").
///
/// # Errors
/// A diesel error.
pub fn statement_lines(
    conn: &mut PgConnection,
    account_id: i64,
    window: Window,
    limit: i64,
    cursor: Option<i64>,
) -> Result<Vec<StatementLine>, diesel::result::Error> {
    if let Some(to) = window.1 {
        return RunQueryDsl::load(
            StatementPage {
                account: account_id,
                cursor: cursor.unwrap_or(i64::MAX),
                from: window.0,
                to,
                limit: limit + 1,
            },
            conn,
        );
    }
    let from = window.0.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    postings::table
        .inner_join(operations::table)
        .filter(account_postings_below(account_id, cursor.unwrap_or(i64::MAX)))
        .filter(postings::created_at.ge(from))
        .filter(postings::created_at.le(*LATEST))
        .select((
            postings::id,
            postings::operation_id,
            operations::kind,
            postings::amount,
            postings::balance_after,
            postings::created_at,
        ))
        .order((postings::account_id.desc(), postings::id.desc()))
        .limit(limit + 1)
        .load::<StatementLine>(conn)
}

/// `SELECT * FROM payd_statement_page($1, …, $5)`: fixed text and a static query id, so diesel keeps
/// it prepared per connection.
struct StatementPage {
    account: i64,
    /// Postings older than this one.
    cursor: i64,
    from: Option<DateTime<Utc>>,
    to: DateTime<Utc>,
    limit: i64,
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for StatementPage {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Nullable, Timestamptz};
        out.push_sql("SELECT * FROM payd_statement_page(");
        out.push_bind_param::<BigInt, _>(&self.account)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.cursor)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&self.from)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.to)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        out.push_sql(")");
        Ok(())
    }
}

impl diesel::query_builder::QueryId for StatementPage {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for StatementPage {
    type SqlType = diesel::sql_types::Untyped;
}

impl RunQueryDsl<PgConnection> for StatementPage {}

/// The postings of `account` with an id below `cursor`, as a range of the index key
/// `postings (account_id, id)`: `(account_id, id) < (account, cursor) AND (account_id, id) >
/// (account, 0)`, to be ordered by `(account_id DESC, id DESC)`.
///
/// Why not `account_id = $1 AND id < $2 ORDER BY id DESC`: a prepared statement settles on a generic
/// plan, which estimates `account_id = $1` from the column's distinct values. When a few accounts
/// hold most postings (merchants, settlement accounts) that estimate is huge, and the generic plan
/// walks the primary key backwards filtering on the account — 1 s for a card at 1,000,000 postings.
/// A key range has no equality, so the order `(account_id, id)` is served only by
/// `postings (account_id, id)`, walked backwards from the cursor in every plan.
pub fn account_postings_below(account: i64, cursor: i64) -> AccountPostingsBelow {
    AccountPostingsBelow { account, cursor }
}

/// The expression [`account_postings_below`] builds: fixed SQL text with three bound values and a
/// static query id, so a query using it stays in diesel's per-connection cache of prepared statements
/// (a `diesel::dsl::sql` fragment would mark the whole query as not cacheable: parsed and planned again
/// on every call).
#[derive(Debug, Clone, Copy)]
pub struct AccountPostingsBelow {
    account: i64,
    cursor: i64,
}

impl diesel::Expression for AccountPostingsBelow {
    type SqlType = diesel::sql_types::Bool;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for AccountPostingsBelow {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::BigInt;
        out.push_sql("(postings.account_id, postings.id) < (");
        out.push_bind_param::<BigInt, _>(&self.account)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.cursor)?;
        out.push_sql(") AND (postings.account_id, postings.id) > (");
        out.push_bind_param::<BigInt, _>(&self.account)?;
        out.push_sql(", 0)");
        Ok(())
    }
}

impl diesel::query_builder::QueryId for AccountPostingsBelow {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<QS> diesel::AppearsOnTable<QS> for AccountPostingsBelow where QS: diesel::query_source::QuerySource {}

impl<QS> diesel::SelectableExpression<QS> for AccountPostingsBelow where QS: diesel::query_source::QuerySource {}

impl<GB> diesel::expression::ValidGrouping<GB> for AccountPostingsBelow {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

/// The open upper bound of the page without `to` (9999-12-31, within PostgreSQL's range). Kept in the
/// statement: without it the generic plan's estimate for the key range grows enough to choose a
/// parallel plan (15 ms to start two workers for 21 rows, benches/explain-1m.sh).
static LATEST: std::sync::LazyLock<DateTime<Utc>> =
    std::sync::LazyLock::new(|| DateTime::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::UNIX_EPOCH));

async fn statement(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<CardId>,
    q: web::Query<StatementQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(statement_page(&state, &user, id.into_inner(), &q).await?))
}

/// One page of a card's statement (the holder's or, for an admin, any card's), newest posting first.
///
/// The first page (no cursor, no window, `limit` ≤ `cards.statement_cache_depth`) is answered from
/// memory while the account's version, as its actor answers it, is the one the page was read at
/// ([`crate::cards::statements`]): read-your-writes on the instance that committed, and every commit
/// acknowledged on any instance at least `ledger.read_staleness_ms` before the read (the balance
/// read's rule). Other pages are read from the database.
///
/// # Errors
/// 422 a bad cursor, limit or window, 404 unknown or another user's card, a storage error.
pub async fn statement_page(
    state: &AppState,
    user: &AuthUser,
    id: CardId,
    q: &StatementQuery,
) -> Result<Page<StatementLine>, ApiError> {
    let (limit, cursor, window) = q.resolve()?;
    let account_id = state.cards.get_for(&state.db, id, user).await?.account_id.get();
    let first_page = cursor.is_none() && window == (None, None);
    let Some(depth) = state.statements.depth_for(limit, first_page) else {
        let lines = storage::run(&state.db, move |conn| {
            statement_lines(conn, account_id, window, limit, cursor).map_err(StorageError::from)
        })
        .await?;
        return Ok(Page::from_rows(lines, limit, |l| l.posting_id));
    };
    // The first page, from memory when the account's committed version (as its actor knows it, the
    // freshness rule of the balance read) is the one it was cached at (`cards::statements`).
    let max_age = std::time::Duration::from_millis(state.settings.ledger.read_staleness_ms);
    let version = state
        .ledger
        .ledger
        .accounts()
        .read(account_id, max_age)
        .await
        .map_err(crate::cards::balance::account_error)?
        .state
        .version;
    if let Some(lines) = state.statements.get(account_id, version, limit) {
        crate::metrics::count("statement_read", "memory");
        return Ok(Page::from_rows(lines, limit, |l| l.posting_id));
    }
    crate::metrics::count("statement_read", "database");
    let lines = storage::run(&state.db, move |conn| {
        statement_lines(conn, account_id, (None, None), depth, None).map_err(StorageError::from)
    })
    .await?;
    let n = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX).min(lines.len());
    let page = lines[..n].to_vec();
    state.statements.put(account_id, version, lines);
    Ok(Page::from_rows(page, limit, |l| l.posting_id))
}

/// One page of every card's balance (admins), by card id.
///
/// # Errors
/// 422 a bad cursor or limit, a storage error.
pub async fn balances_page(state: &AppState, q: PageQuery) -> Result<Page<BalanceView>, ApiError> {
    let (limit, cursor) = q.resolve()?;
    let views = crate::cards::balance::all(state, limit, cursor).await?;
    Ok(Page::from_rows(views, limit, |b| b.card_id))
}

async fn all_balances(state: web::Data<AppState>, q: web::Query<PageQuery>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(balances_page(&state, q.into_inner()).await?))
}
