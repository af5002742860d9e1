//! The PostgreSQL side of the actor ledger: `PgLedgerStore` implements the actors' `LedgerStore`
//! over diesel. One store per ledger-writer thread, each owning its connection. A batch is one
//! transaction: guarded balance updates (one row update per account per batch), operation rows,
//! postings with running balances, idempotency rows and outbox rows — all or nothing.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Array, BigInt};
use payd_actors::{
    AccountId, AccountSnapshot, AccountState, CardId, CardSnapshot, CardStatus, EntryOutcome, JournalEntry,
    LedgerStore, Refusal, StoreError, Totals,
};
use uuid::Uuid;

use crate::payments::{FailureCode, OperationEntry};
use crate::storage::schema::{accounts, cards, idempotency_keys, outbox};
use crate::storage::PgPool;

/// The stored answer to an idempotent request.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = idempotency_keys)]
pub struct NewIdempotency {
    pub scope: String,
    pub key: String,
    pub request_hash: String,
    pub operation_id: Option<Uuid>,
    pub response_status: i16,
    pub response_body: serde_json::Value,
}

/// An event for the outbox (relayed to the broker by the events module).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = outbox)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub aggregate_type: String,
    pub aggregate_key: String,
    pub payload: serde_json::Value,
}

/// Everything a journal entry writes besides its postings.
#[derive(Debug, Clone)]
pub struct OpRecord {
    pub operation: OperationEntry,
    pub idempotency: Option<NewIdempotency>,
    pub events: Vec<NewEvent>,
    /// For refunds: (payment, its amount). The refund total is raised in the same transaction and
    /// may never exceed the payment.
    pub refund_of: Option<(Uuid, i64)>,
    /// How a written entry moves its card's withdrawal totals (withdrawals and their reversals).
    pub withdrawn: Option<WithdrawnDelta>,
}

/// A change of an account's maintained withdrawal totals, applied in the batch's row update.
#[derive(Debug, Clone, Copy)]
pub struct WithdrawnDelta {
    pub account: crate::ids::AccountId,
    /// Added to `total_withdrawn` (negative for a reversal).
    pub amount: i64,
    /// The withdrawal's time (`None` for a reversal: the last withdrawal stays the last).
    pub at: Option<DateTime<Utc>>,
}

struct NewPosting {
    operation_id: Uuid,
    account_id: i64,
    amount: i64,
    balance_after: i64,
    created_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct UpdatedAccount {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    balance: i64,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = BigInt)]
    total_withdrawn: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    last_withdrawal_at: Option<DateTime<Utc>>,
}

/// The actors' form of an account's maintained totals.
pub fn totals(total_withdrawn: i64, last_withdrawal_at: Option<DateTime<Utc>>) -> Totals {
    Totals { withdrawn: total_withdrawn, last_withdrawal_us: last_withdrawal_at.map(|t| t.timestamp_micros()) }
}

/// The time of the last withdrawal carried in [`Totals`].
pub fn last_withdrawal_at(t: &Totals) -> Option<DateTime<Utc>> {
    t.last_withdrawal_us.and_then(DateTime::from_timestamp_micros)
}

/// Why a batch transaction failed as a whole.
enum TxError {
    Guard(String),
    Db(DieselError),
}

impl From<DieselError> for TxError {
    fn from(e: DieselError) -> Self {
        Self::Db(e)
    }
}

/// Locks the batch's accounts in ascending id order (one global order for every writer and every
/// instance, so they cannot deadlock) and reads what the per-posting guard needs.
const LOCK_ACCOUNTS: &str = "\
SELECT id, balance, version, min_balance, status, total_withdrawn, last_withdrawal_at FROM accounts \
WHERE id = ANY($1) ORDER BY id FOR UPDATE";

/// Writes the balances decided on the locked rows, and the withdrawal totals with them (same row
/// update, same version). The floor CHECK constraint still holds the line should the decision ever
/// be wrong; `expected` makes any change behind the lock fail the batch.
const SET_BALANCES: &str = "\
UPDATE accounts a SET balance = d.balance, version = a.version + 1, updated_at = now(), \
  total_withdrawn = a.total_withdrawn + d.withdrawn, \
  last_withdrawal_at = GREATEST(a.last_withdrawal_at, d.withdrawn_at) \
FROM (SELECT unnest($1::bigint[]) AS id, unnest($2::bigint[]) AS balance, unnest($3::bigint[]) AS expected, \
  unnest($4::bigint[]) AS withdrawn, unnest($5::timestamptz[]) AS withdrawn_at) d \
WHERE a.id = d.id AND a.balance = d.expected \
RETURNING a.id, a.balance, a.version, a.total_withdrawn, a.last_withdrawal_at";

const REFUND_TOTAL: &str = "\
INSERT INTO refund_totals (payment_id, cap, refunded) VALUES ($1, $2, $3) \
ON CONFLICT (payment_id) DO UPDATE SET refunded = refund_totals.refunded + EXCLUDED.refunded \
  WHERE refund_totals.refunded + EXCLUDED.refunded <= refund_totals.cap \
RETURNING refunded";

#[derive(QueryableByName)]
struct Refunded {
    #[diesel(sql_type = BigInt)]
    refunded: i64,
}

#[derive(QueryableByName)]
struct LockedAccount {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    balance: i64,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    min_balance: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    total_withdrawn: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    last_withdrawal_at: Option<DateTime<Utc>>,
}

#[derive(QueryableByName)]
struct InsertedKey {
    #[diesel(sql_type = diesel::sql_types::Text)]
    scope: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    key: String,
}

// Fixed statements (one prepared statement each, whatever the batch size): every column travels as
// one array parameter and UNNEST turns them back into rows.
const INSERT_OPERATIONS: &str = "\
INSERT INTO operations (id, kind, status, failure_reason, amount, currency, method, source_card_id, dest_card_id, \
  debit_account_id, credit_account_id, reverses_id, initiated_by, created_at, merchant_id, api_key_id, order_ref) \
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], \
  $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::uuid[], $13::bigint[], $14::timestamptz[], \
  $15::bigint[], $16::bigint[], $17::text[])";

const INSERT_POSTINGS: &str = "\
INSERT INTO postings (operation_id, account_id, amount, balance_after, created_at) \
SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::timestamptz[])";

const INSERT_KEYS: &str = "\
INSERT INTO idempotency_keys (scope, key, request_hash, operation_id, response_status, response_body) \
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::int2[], $6::jsonb[]) \
ON CONFLICT (scope, key) DO NOTHING RETURNING scope, key";

const DELETE_KEYS: &str = "\
DELETE FROM idempotency_keys WHERE (scope, key) IN (SELECT unnest($1::text[]), unnest($2::text[]))";

const INSERT_EVENTS: &str = "\
INSERT INTO outbox (event_id, event_type, schema_version, aggregate_type, aggregate_key, payload) \
SELECT * FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::text[], $5::text[], $6::jsonb[])";

fn insert_operations<'a>(
    conn: &mut PgConnection,
    ops: impl Iterator<Item = &'a OperationEntry>,
) -> Result<(), DieselError> {
    use diesel::sql_types::{Nullable, Text, Timestamptz, Uuid as SqlUuid};
    let ops: Vec<&OperationEntry> = ops.collect();
    if ops.is_empty() {
        return Ok(());
    }
    diesel::sql_query(INSERT_OPERATIONS)
        .bind::<Array<SqlUuid>, _>(ops.iter().map(|o| o.id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(ops.iter().map(|o| o.kind.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(ops.iter().map(|o| o.status.as_str()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            ops.iter().map(|o| o.failure_reason.map(FailureCode::as_str)).collect::<Vec<_>>(),
        )
        .bind::<Array<BigInt>, _>(ops.iter().map(|o| o.amount).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(ops.iter().map(|o| o.currency.as_str()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(ops.iter().map(|o| o.method.as_deref()).collect::<Vec<_>>())
        .bind::<Array<Nullable<BigInt>>, _>(ops.iter().map(|o| o.source_card_id).collect::<Vec<_>>())
        .bind::<Array<Nullable<BigInt>>, _>(ops.iter().map(|o| o.dest_card_id).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(ops.iter().map(|o| o.debit_account_id).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(ops.iter().map(|o| o.credit_account_id).collect::<Vec<_>>())
        .bind::<Array<Nullable<SqlUuid>>, _>(ops.iter().map(|o| o.reverses_id).collect::<Vec<_>>())
        .bind::<Array<Nullable<BigInt>>, _>(ops.iter().map(|o| o.initiated_by).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(ops.iter().map(|o| o.created_at).collect::<Vec<_>>())
        .bind::<Array<Nullable<BigInt>>, _>(ops.iter().map(|o| o.merchant_id).collect::<Vec<_>>())
        .bind::<Array<Nullable<BigInt>>, _>(ops.iter().map(|o| o.api_key_id).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(ops.iter().map(|o| o.order_ref.as_deref()).collect::<Vec<_>>())
        .execute(conn)?;
    Ok(())
}

fn insert_postings(conn: &mut PgConnection, rows: &[NewPosting]) -> Result<(), DieselError> {
    use diesel::sql_types::{Timestamptz, Uuid as SqlUuid};
    if rows.is_empty() {
        return Ok(());
    }
    diesel::sql_query(INSERT_POSTINGS)
        .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.operation_id).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.account_id).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.amount).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.balance_after).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .execute(conn)?;
    Ok(())
}

/// Inserts the idempotency rows of the batch, in (scope, key) order so two writers waiting on each
/// other's keys cannot deadlock, skipping keys that already exist (committed by an earlier request,
/// or by a concurrent transaction that commits first: PostgreSQL waits for it and then skips).
/// Returns the keys this batch now owns.
fn insert_keys<'a>(
    conn: &mut PgConnection,
    keys: impl Iterator<Item = &'a NewIdempotency>,
) -> Result<HashSet<(String, String)>, DieselError> {
    use diesel::sql_types::{Int2, Jsonb, Nullable, Text, Uuid as SqlUuid};
    let keys: Vec<&NewIdempotency> = keys.collect();
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let inserted: Vec<InsertedKey> = diesel::sql_query(INSERT_KEYS)
        .bind::<Array<Text>, _>(keys.iter().map(|k| k.scope.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(keys.iter().map(|k| k.key.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(keys.iter().map(|k| k.request_hash.as_str()).collect::<Vec<_>>())
        .bind::<Array<Nullable<SqlUuid>>, _>(keys.iter().map(|k| k.operation_id).collect::<Vec<_>>())
        .bind::<Array<Int2>, _>(keys.iter().map(|k| k.response_status).collect::<Vec<_>>())
        .bind::<Array<Jsonb>, _>(keys.iter().map(|k| &k.response_body).collect::<Vec<_>>())
        .load(conn)?;
    Ok(inserted.into_iter().map(|k| (k.scope, k.key)).collect())
}

fn delete_keys(conn: &mut PgConnection, keys: &[(String, String)]) -> Result<(), DieselError> {
    use diesel::sql_types::Text;
    if keys.is_empty() {
        return Ok(());
    }
    diesel::sql_query(DELETE_KEYS)
        .bind::<Array<Text>, _>(keys.iter().map(|k| k.0.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(keys.iter().map(|k| k.1.as_str()).collect::<Vec<_>>())
        .execute(conn)?;
    Ok(())
}

fn insert_events<'a>(conn: &mut PgConnection, events: impl Iterator<Item = &'a NewEvent>) -> Result<(), DieselError> {
    use diesel::sql_types::{Int4, Jsonb, Text, Uuid as SqlUuid};
    let events: Vec<&NewEvent> = events.collect();
    if events.is_empty() {
        return Ok(());
    }
    diesel::sql_query(INSERT_EVENTS)
        .bind::<Array<SqlUuid>, _>(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(events.iter().map(|e| e.schema_version).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(events.iter().map(|e| e.aggregate_type.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(events.iter().map(|e| e.aggregate_key.as_str()).collect::<Vec<_>>())
        .bind::<Array<Jsonb>, _>(events.iter().map(|e| &e.payload).collect::<Vec<_>>())
        .execute(conn)?;
    Ok(())
}

/// Session settings of a ledger writer's connection.
#[derive(Debug, Clone, Copy)]
pub struct WriterSession {
    /// `lock_timeout`: how long a statement waits for a row lock before the batch is retried.
    pub lock_timeout_ms: u64,
    /// `statement_timeout`: the longest a writer statement may run before the batch is retried.
    pub statement_timeout_ms: u64,
}

impl Default for WriterSession {
    fn default() -> Self {
        Self { lock_timeout_ms: 2_000, statement_timeout_ms: 10_000 }
    }
}

pub struct PgLedgerStore {
    url: String,
    session: WriterSession,
    conn: Option<PgConnection>,
}

impl PgLedgerStore {
    pub fn new(url: &str) -> Self {
        Self::with_session(url, WriterSession::default())
    }

    pub fn with_session(url: &str, session: WriterSession) -> Self {
        Self { url: url.to_owned(), session, conn: None }
    }

    fn conn(&mut self) -> Result<&mut PgConnection, StoreError> {
        if self.conn.is_none() {
            use diesel::connection::SimpleConnection;
            let mut c = PgConnection::establish(&self.url).map_err(|e| {
                tracing::warn!(error = %e, "ledger writer cannot connect");
                StoreError::Unavailable("cannot connect to the database".into())
            })?;
            let setup = format!(
                "SET application_name = 'payd-ledger-writer'; SET lock_timeout = {}; SET statement_timeout = {};",
                self.session.lock_timeout_ms, self.session.statement_timeout_ms
            );
            c.batch_execute(&setup).map_err(|e| {
                tracing::warn!(error = %e, "ledger writer session setup failed");
                StoreError::Unavailable("cannot set up the writer session".into())
            })?;
            self.conn = Some(c);
        }
        self.conn.as_mut().ok_or_else(|| StoreError::Unavailable("no connection".into()))
    }

    /// Classifies a database failure. diesel exposes the SQLSTATE classes it knows as kinds:
    /// unique violations (23505) are conflicts of one entry, other integrity violations (23xxx) are
    /// rejections of one entry, serialization failures (40001) are transient, connection failures
    /// (08xxx, or a connection gone bad) drop the connection. Every other server error — deadlock
    /// (40P01), lock not available (55P03), statement or lock timeout (57014), administrator
    /// shutdown (57P01), out of resources (53xxx) — is treated as transient: the batch is retried
    /// and, if it still fails, nothing is recorded and the clients are told to retry (503). The
    /// server's text is logged here and never reaches a client.
    fn fail(&mut self, e: DieselError) -> StoreError {
        tracing::warn!(error = %e, "ledger writer database error");
        match &e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                StoreError::Conflict { constraint: info.constraint_name().unwrap_or("unique").to_owned() }
            }
            DieselError::DatabaseError(
                DatabaseErrorKind::CheckViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::RestrictViolation
                | DatabaseErrorKind::ExclusionViolation,
                info,
            ) => StoreError::Rejected {
                reason: format!("integrity rule {}", info.constraint_name().unwrap_or("unknown")),
            },
            DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
                StoreError::Transient("serialization failure".into())
            }
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )
            | DieselError::BrokenTransactionManager => {
                self.conn = None;
                StoreError::Unavailable("database connection lost".into())
            }
            DieselError::DatabaseError(_, _) => StoreError::Transient("transient database error".into()),
            DieselError::NotFound => StoreError::NotFound,
            _ => {
                self.conn = None;
                StoreError::Unavailable("database error".into())
            }
        }
    }
}

fn card_status(s: &str) -> CardStatus {
    match s {
        "active" => CardStatus::Active,
        "frozen" => CardStatus::Frozen,
        _ => CardStatus::Closed,
    }
}

/// Reads an account's committed state and floor.
///
/// # Errors
/// `NotFound`, or a diesel error.
pub fn load_account(conn: &mut PgConnection, id: AccountId) -> Result<AccountSnapshot, DieselError> {
    type Row = (i64, i64, Option<i64>, String, i64, Option<DateTime<Utc>>);
    let (balance, version, floor, currency, withdrawn, last): Row = accounts::table
        .find(id)
        .select((
            accounts::balance,
            accounts::version,
            accounts::min_balance,
            accounts::currency,
            accounts::total_withdrawn,
            accounts::last_withdrawal_at,
        ))
        .first(conn)?;
    Ok(AccountSnapshot {
        state: AccountState { id, balance, version, totals: totals(withdrawn, last) },
        floor,
        currency,
    })
}

/// Reads what a card actor needs.
///
/// # Errors
/// `NotFound`, or a diesel error.
pub fn load_card(conn: &mut PgConnection, id: CardId) -> Result<CardSnapshot, DieselError> {
    let (account_id, owner_id, status, month, year): (i64, i64, String, i32, i32) = cards::table
        .find(id)
        .select((cards::account_id, cards::user_id, cards::status, cards::expiry_month, cards::expiry_year))
        .first(conn)?;
    Ok(CardSnapshot {
        id,
        account_id,
        owner_id,
        status: card_status(&status),
        expiry: (year, u32::try_from(month).unwrap_or(12)),
    })
}

fn map_load(e: DieselError) -> StoreError {
    match e {
        DieselError::NotFound => StoreError::NotFound,
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// Loader closures for the actor registries, over the shared pool (called on the blocking pool).
pub fn account_loader(pool: PgPool) -> payd_actors::AccountLoader {
    std::sync::Arc::new(move |id| {
        let mut conn = pool.get().map_err(|e| StoreError::Unavailable(e.to_string()))?;
        load_account(&mut conn, id).map_err(map_load)
    })
}

pub fn card_loader(pool: PgPool) -> payd_actors::CardLoader {
    std::sync::Arc::new(move |id| {
        let mut conn = pool.get().map_err(|e| StoreError::Unavailable(e.to_string()))?;
        load_card(&mut conn, id).map_err(map_load)
    })
}

/// What the batch decided for one entry before anything but its key was written.
enum Decision {
    Write,
    Duplicate,
    Refused(Refusal),
}

fn state_of(a: &LockedAccount) -> AccountState {
    AccountState {
        id: a.id,
        balance: a.balance,
        version: a.version,
        totals: totals(a.total_withdrawn, a.last_withdrawal_at),
    }
}

/// Checks every posting of `entry` against the working balances (in batch order, posting by
/// posting): the account exists, a debited account is active, a credited one is not closed, and no
/// posting takes its account below its floor. Returns the balance after each posting.
fn check_postings(
    entry: &JournalEntry<OpRecord>,
    locked: &BTreeMap<i64, LockedAccount>,
    work: &BTreeMap<i64, i64>,
) -> Result<Vec<i64>, Refusal> {
    let mut trial: BTreeMap<i64, i64> = BTreeMap::new();
    let mut afters = Vec::with_capacity(entry.postings.len());
    for p in &entry.postings {
        let account = p.account;
        let a = locked.get(&account).ok_or(Refusal::UnknownAccount { account })?;
        match (a.status.as_str(), p.amount < 0) {
            ("closed", _) => return Err(Refusal::Closed { account }),
            ("frozen", true) => return Err(Refusal::Frozen { account }),
            _ => {}
        }
        let current = trial.get(&account).or_else(|| work.get(&account)).copied().unwrap_or(a.balance);
        let next = current.checked_add(p.amount).ok_or(Refusal::InsufficientFunds { account })?;
        if a.min_balance.is_some_and(|floor| next < floor) {
            return Err(Refusal::InsufficientFunds { account });
        }
        trial.insert(account, next);
        afters.push(next);
    }
    Ok(afters)
}

fn commit(conn: &mut PgConnection, entries: &[JournalEntry<OpRecord>]) -> Result<Vec<EntryOutcome>, TxError> {
    for entry in entries {
        let sum = entry.postings.iter().try_fold(0i64, |acc, p| acc.checked_add(p.amount));
        if sum != Some(0) {
            return Err(TxError::Guard(format!(
                "unbalanced journal entry for operation {}",
                entry.record.operation.id
            )));
        }
    }

    // 1. Idempotency keys first: a key taken by an earlier or concurrent request makes its entry a
    //    duplicate here, without failing the batch. Within the batch, the first entry of a key wins.
    let mut decisions: Vec<Decision> = Vec::with_capacity(entries.len());
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut firsts: Vec<&NewIdempotency> = Vec::new();
    for entry in entries {
        match &entry.record.idempotency {
            Some(k) if !seen.insert((k.scope.as_str(), k.key.as_str())) => decisions.push(Decision::Duplicate),
            Some(k) => {
                firsts.push(k);
                decisions.push(Decision::Write);
            }
            None => decisions.push(Decision::Write),
        }
    }
    firsts.sort_by(|a, b| (a.scope.as_str(), a.key.as_str()).cmp(&(b.scope.as_str(), b.key.as_str())));
    let owned = insert_keys(conn, firsts.into_iter())?;
    for (entry, decision) in entries.iter().zip(decisions.iter_mut()) {
        if let (Decision::Write, Some(k)) = (&decision, &entry.record.idempotency) {
            if !owned.contains(&(k.scope.clone(), k.key.clone())) {
                *decision = Decision::Duplicate;
            }
        }
    }

    // 2. Lock every account the remaining entries touch, in id order, and decide each entry on the
    //    locked rows, posting by posting.
    let ids: Vec<i64> = entries
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| matches!(d, Decision::Write))
        .flat_map(|(e, _)| e.postings.iter().map(|p| p.account))
        .collect::<std::collections::BTreeSet<i64>>()
        .into_iter()
        .collect();
    let locked: BTreeMap<i64, LockedAccount> = if ids.is_empty() {
        BTreeMap::new()
    } else {
        diesel::sql_query(LOCK_ACCOUNTS)
            .bind::<Array<BigInt>, _>(&ids)
            .load::<LockedAccount>(conn)?
            .into_iter()
            .map(|a| (a.id, a))
            .collect()
    };
    let mut work: BTreeMap<i64, i64> = BTreeMap::new();
    let mut withdrawn: BTreeMap<i64, (i64, Option<DateTime<Utc>>)> = BTreeMap::new();
    let mut rows: Vec<NewPosting> = Vec::with_capacity(entries.len() * 2);
    let mut refused_keys: Vec<(String, String)> = Vec::new();
    for (entry, decision) in entries.iter().zip(decisions.iter_mut()) {
        if !matches!(decision, Decision::Write) || entry.postings.is_empty() {
            continue;
        }
        let mut verdict = check_postings(entry, &locked, &work);
        if verdict.is_ok() {
            if let Some((payment, cap)) = entry.record.refund_of {
                // Refund totals: guarded per refund, so concurrent refunds can never exceed their payment.
                let raised = diesel::sql_query(REFUND_TOTAL)
                    .bind::<diesel::sql_types::Uuid, _>(payment)
                    .bind::<BigInt, _>(cap)
                    .bind::<BigInt, _>(entry.record.operation.amount)
                    .get_result::<Refunded>(conn)
                    .optional()?
                    .map(|r| r.refunded);
                if raised.is_none() {
                    verdict = Err(Refusal::RefundExceeded);
                }
            }
        }
        match verdict {
            Ok(afters) => {
                if let Some(d) = entry.record.withdrawn {
                    let t = withdrawn.entry(d.account.get()).or_insert((0, None));
                    t.0 =
                        t.0.checked_add(d.amount).ok_or_else(|| TxError::Guard("withdrawal total overflow".into()))?;
                    t.1 = t.1.max(d.at);
                }
                for (p, after) in entry.postings.iter().zip(afters) {
                    work.insert(p.account, after);
                    rows.push(NewPosting {
                        operation_id: entry.record.operation.id,
                        account_id: p.account,
                        amount: p.amount,
                        balance_after: after,
                        created_at: entry.record.operation.created_at,
                    });
                }
            }
            Err(refusal) => {
                if let Some(k) = &entry.record.idempotency {
                    refused_keys.push((k.scope.clone(), k.key.clone()));
                }
                *decision = Decision::Refused(refusal);
            }
        }
    }
    delete_keys(conn, &refused_keys)?;

    // 3. The balances, once per account, then the rows of every written entry.
    let mut finals: BTreeMap<i64, AccountState> = BTreeMap::new();
    if !work.is_empty() {
        let ids: Vec<i64> = work.keys().copied().collect();
        let balances: Vec<i64> = work.values().copied().collect();
        let expected: Vec<i64> = ids.iter().map(|id| locked.get(id).map_or(0, |a| a.balance)).collect();
        let w_amounts: Vec<i64> = ids.iter().map(|id| withdrawn.get(id).map_or(0, |w| w.0)).collect();
        let w_times: Vec<Option<DateTime<Utc>>> = ids.iter().map(|id| withdrawn.get(id).and_then(|w| w.1)).collect();
        let updated: Vec<UpdatedAccount> = diesel::sql_query(SET_BALANCES)
            .bind::<Array<BigInt>, _>(&ids)
            .bind::<Array<BigInt>, _>(&balances)
            .bind::<Array<BigInt>, _>(&expected)
            .bind::<Array<BigInt>, _>(&w_amounts)
            .bind::<Array<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>>, _>(&w_times)
            .load(conn)?;
        if updated.len() != ids.len() {
            return Err(TxError::Guard("an account changed behind its row lock".into()));
        }
        finals.extend(updated.into_iter().map(|u| {
            let totals = totals(u.total_withdrawn, u.last_withdrawal_at);
            (u.id, AccountState { id: u.id, balance: u.balance, version: u.version, totals })
        }));
    }
    let written = || entries.iter().zip(&decisions).filter(|(_, d)| matches!(d, Decision::Write)).map(|(e, _)| e);
    insert_operations(conn, written().map(|e| &e.record.operation))?;
    insert_postings(conn, &rows)?;
    insert_events(conn, written().flat_map(|e| e.record.events.iter()))?;

    Ok(entries
        .iter()
        .zip(decisions)
        .map(|(entry, decision)| match decision {
            Decision::Write => {
                EntryOutcome::Committed(entry.accounts().iter().filter_map(|id| finals.get(id).copied()).collect())
            }
            Decision::Duplicate => EntryOutcome::Duplicate,
            Decision::Refused(refusal) => EntryOutcome::Refused {
                refusal,
                current: entry.accounts().iter().filter_map(|id| locked.get(id).map(state_of)).collect(),
            },
        })
        .collect())
}

impl LedgerStore for PgLedgerStore {
    type Record = OpRecord;

    fn load_account(&mut self, id: AccountId) -> Result<AccountSnapshot, StoreError> {
        let r = load_account(self.conn()?, id);
        r.map_err(|e| self.fail(e))
    }

    fn load_card(&mut self, id: CardId) -> Result<CardSnapshot, StoreError> {
        let r = load_card(self.conn()?, id);
        r.map_err(|e| self.fail(e))
    }

    fn commit_batch(&mut self, entries: &[JournalEntry<OpRecord>]) -> Result<Vec<EntryOutcome>, StoreError> {
        let conn = self.conn()?;
        let result = conn.transaction::<_, TxError, _>(|conn| commit(conn, entries));
        match result {
            Ok(outcomes) => Ok(outcomes),
            Err(TxError::Guard(reason)) => Err(StoreError::Rejected { reason }),
            Err(TxError::Db(e)) => Err(self.fail(e)),
        }
    }

    fn reset(&mut self) {
        self.conn = None;
    }

    fn account_states(&mut self, ids: &[AccountId]) -> Result<Vec<AccountState>, StoreError> {
        type Row = (i64, i64, i64, i64, Option<DateTime<Utc>>);
        let rows: Result<Vec<Row>, DieselError> = accounts::table
            .filter(accounts::id.eq_any(ids))
            .select((
                accounts::id,
                accounts::balance,
                accounts::version,
                accounts::total_withdrawn,
                accounts::last_withdrawal_at,
            ))
            .load(self.conn()?);
        rows.map(|r| {
            r.into_iter()
                .map(|(id, balance, version, w, last)| AccountState { id, balance, version, totals: totals(w, last) })
                .collect()
        })
        .map_err(|e| self.fail(e))
    }
}
