//! The PostgreSQL side of the actor ledger: `PgLedgerStore` implements the actors' `LedgerStore`
//! over diesel. One store per ledger-writer thread, each owning its connection. A batch is one
//! transaction: guarded balance updates (one row update per account per batch), operation rows,
//! postings with running balances, idempotency rows and outbox rows — all or nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Array, BigInt, Bool};
use payd_actors::{
    AccountId, AccountSnapshot, AccountState, CardId, CardSnapshot, CardStatus, JournalEntry, LedgerStore, StoreError,
};
use uuid::Uuid;

use crate::storage::schema::{accounts, cards, idempotency_keys, operations, outbox};
use crate::storage::PgPool;

/// An operation row (the journal entry's header).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = operations)]
pub struct NewOperation {
    pub id: Uuid,
    pub kind: String,
    pub status: String,
    pub failure_reason: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub method: Option<String>,
    pub source_card_id: Option<i64>,
    pub dest_card_id: Option<i64>,
    pub debit_account_id: i64,
    pub credit_account_id: i64,
    pub reverses_id: Option<Uuid>,
    pub initiated_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub merchant_id: Option<i64>,
    pub api_key_id: Option<i64>,
    pub order_ref: Option<String>,
}

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
    pub operation: NewOperation,
    pub idempotency: Option<NewIdempotency>,
    pub events: Vec<NewEvent>,
    /// For refunds: (payment, its amount). The refund total is raised in the same transaction and
    /// may never exceed the payment.
    pub refund_of: Option<(Uuid, i64)>,
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
}

/// Why a batch transaction failed.
enum TxError {
    Guard(String),
    Db(DieselError),
}

impl From<DieselError> for TxError {
    fn from(e: DieselError) -> Self {
        Self::Db(e)
    }
}

/// The guarded balance update: one statement for every account of the batch. An account is only
/// updated when its new balance stays at or above its floor, it is not closed, and — when the batch
/// debits it — it is active. Rows that fail the guard are simply not returned.
const GUARDED_UPDATE: &str = "\
UPDATE accounts a SET balance = a.balance + d.delta, version = a.version + 1, updated_at = now() \
FROM (SELECT unnest($1::bigint[]) AS id, unnest($2::bigint[]) AS delta, unnest($3::bool[]) AS has_debit) d \
WHERE a.id = d.id \
  AND (a.min_balance IS NULL OR a.balance + d.delta >= a.min_balance) \
  AND a.status <> 'closed' \
  AND (NOT d.has_debit OR a.status = 'active') \
RETURNING a.id, a.balance, a.version";

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
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::int2[], $6::jsonb[])";

const INSERT_EVENTS: &str = "\
INSERT INTO outbox (event_id, event_type, schema_version, aggregate_type, aggregate_key, payload) \
SELECT * FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::text[], $5::text[], $6::jsonb[])";

fn insert_operations<'a>(
    conn: &mut PgConnection,
    ops: impl Iterator<Item = &'a NewOperation>,
) -> Result<(), DieselError> {
    use diesel::sql_types::{Nullable, Text, Timestamptz, Uuid as SqlUuid};
    let ops: Vec<&NewOperation> = ops.collect();
    if ops.is_empty() {
        return Ok(());
    }
    diesel::sql_query(INSERT_OPERATIONS)
        .bind::<Array<SqlUuid>, _>(ops.iter().map(|o| o.id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(ops.iter().map(|o| o.kind.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(ops.iter().map(|o| o.status.as_str()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(ops.iter().map(|o| o.failure_reason.as_deref()).collect::<Vec<_>>())
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

fn insert_keys<'a>(conn: &mut PgConnection, keys: impl Iterator<Item = &'a NewIdempotency>) -> Result<(), DieselError> {
    use diesel::sql_types::{Int2, Jsonb, Nullable, Text, Uuid as SqlUuid};
    let keys: Vec<&NewIdempotency> = keys.collect();
    if keys.is_empty() {
        return Ok(());
    }
    diesel::sql_query(INSERT_KEYS)
        .bind::<Array<Text>, _>(keys.iter().map(|k| k.scope.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(keys.iter().map(|k| k.key.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(keys.iter().map(|k| k.request_hash.as_str()).collect::<Vec<_>>())
        .bind::<Array<Nullable<SqlUuid>>, _>(keys.iter().map(|k| k.operation_id).collect::<Vec<_>>())
        .bind::<Array<Int2>, _>(keys.iter().map(|k| k.response_status).collect::<Vec<_>>())
        .bind::<Array<Jsonb>, _>(keys.iter().map(|k| &k.response_body).collect::<Vec<_>>())
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

pub struct PgLedgerStore {
    url: String,
    conn: Option<PgConnection>,
}

impl PgLedgerStore {
    pub fn new(url: &str) -> Self {
        Self { url: url.to_owned(), conn: None }
    }

    fn conn(&mut self) -> Result<&mut PgConnection, StoreError> {
        if self.conn.is_none() {
            let c = PgConnection::establish(&self.url).map_err(|e| StoreError::Unavailable(e.to_string()))?;
            self.conn = Some(c);
        }
        self.conn.as_mut().ok_or_else(|| StoreError::Unavailable("no connection".into()))
    }

    /// Maps a database failure; connection-level failures drop the connection so the next call reconnects.
    fn fail(&mut self, e: DieselError) -> StoreError {
        match &e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => StoreError::Rejected {
                reason: format!("duplicate: unique constraint {}", info.constraint_name().unwrap_or("unknown")),
            },
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )
            | DieselError::BrokenTransactionManager => {
                self.conn = None;
                StoreError::Unavailable(e.to_string())
            }
            DieselError::DatabaseError(_, info) => StoreError::Rejected { reason: info.message().to_owned() },
            DieselError::NotFound => StoreError::NotFound,
            _ => {
                self.conn = None;
                StoreError::Unavailable(e.to_string())
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
    let (balance, version, floor, currency): (i64, i64, Option<i64>, String) = accounts::table
        .find(id)
        .select((accounts::balance, accounts::version, accounts::min_balance, accounts::currency))
        .first(conn)?;
    Ok(AccountSnapshot { state: AccountState { id, balance, version }, floor, currency })
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

fn commit(conn: &mut PgConnection, entries: &[JournalEntry<OpRecord>]) -> Result<Vec<AccountState>, TxError> {
    // Net delta per account (sorted by id, so concurrent writers lock rows in one order).
    let mut deltas: BTreeMap<i64, (i64, bool)> = BTreeMap::new();
    for entry in entries {
        let sum = entry.postings.iter().try_fold(0i64, |acc, p| acc.checked_add(p.amount));
        if sum != Some(0) {
            return Err(TxError::Guard(format!(
                "unbalanced journal entry for operation {}",
                entry.record.operation.id
            )));
        }
        for p in &entry.postings {
            let slot = deltas.entry(p.account).or_insert((0, false));
            slot.0 = slot.0.checked_add(p.amount).ok_or_else(|| TxError::Guard("amount overflow".into()))?;
            slot.1 |= p.amount < 0;
        }
    }
    let mut states = Vec::with_capacity(deltas.len());
    if !deltas.is_empty() {
        let ids: Vec<i64> = deltas.keys().copied().collect();
        let ds: Vec<i64> = deltas.values().map(|d| d.0).collect();
        let debits: Vec<bool> = deltas.values().map(|d| d.1).collect();
        let updated: Vec<UpdatedAccount> = diesel::sql_query(GUARDED_UPDATE)
            .bind::<Array<BigInt>, _>(&ids)
            .bind::<Array<BigInt>, _>(&ds)
            .bind::<Array<Bool>, _>(&debits)
            .load(conn)?;
        if updated.len() != ids.len() {
            let refused: Vec<i64> = ids.iter().copied().filter(|id| !updated.iter().any(|u| u.id == *id)).collect();
            return Err(TxError::Guard(format!(
                "ledger guard refused account(s) {refused:?}: insufficient funds or card not active"
            )));
        }
        states.extend(updated.into_iter().map(|u| AccountState { id: u.id, balance: u.balance, version: u.version }));
    }

    // Refund totals: guarded per refund, so concurrent refunds can never exceed their payment.
    for entry in entries.iter().filter(|e| !e.postings.is_empty()) {
        if let Some((payment, cap)) = entry.record.refund_of {
            let raised: Option<i64> = diesel::sql_query(REFUND_TOTAL)
                .bind::<diesel::sql_types::Uuid, _>(payment)
                .bind::<BigInt, _>(cap)
                .bind::<BigInt, _>(entry.record.operation.amount)
                .get_result::<Refunded>(conn)
                .optional()?
                .map(|r| r.refunded);
            if raised.is_none() {
                return Err(TxError::Guard(format!("refund exceeds the refundable amount of payment {payment}")));
            }
        }
    }

    // Running balances: walk the batch backwards from each account's final balance.
    let mut running: BTreeMap<i64, i64> = states.iter().map(|s| (s.id, s.balance)).collect();
    let mut rows: Vec<NewPosting> = Vec::with_capacity(entries.len() * 2);
    for entry in entries.iter().rev() {
        for p in entry.postings.iter().rev() {
            let after = running.get(&p.account).copied().unwrap_or_default();
            running.insert(p.account, after - p.amount);
            rows.push(NewPosting {
                operation_id: entry.record.operation.id,
                account_id: p.account,
                amount: p.amount,
                balance_after: after,
                created_at: entry.record.operation.created_at,
            });
        }
    }
    rows.reverse();

    insert_operations(conn, entries.iter().map(|e| &e.record.operation))?;
    insert_postings(conn, &rows)?;
    insert_keys(conn, entries.iter().filter_map(|e| e.record.idempotency.as_ref()))?;
    insert_events(conn, entries.iter().flat_map(|e| e.record.events.iter()))?;
    Ok(states)
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

    fn commit_batch(&mut self, entries: &[JournalEntry<OpRecord>]) -> Result<Vec<AccountState>, StoreError> {
        let conn = self.conn()?;
        let result = conn.transaction::<_, TxError, _>(|conn| commit(conn, entries));
        match result {
            Ok(states) => Ok(states),
            Err(TxError::Guard(reason)) => Err(StoreError::Rejected { reason }),
            Err(TxError::Db(e)) => Err(self.fail(e)),
        }
    }

    fn account_states(&mut self, ids: &[AccountId]) -> Result<Vec<AccountState>, StoreError> {
        let rows: Result<Vec<(i64, i64, i64)>, DieselError> = accounts::table
            .filter(accounts::id.eq_any(ids))
            .select((accounts::id, accounts::balance, accounts::version))
            .load(self.conn()?);
        rows.map(|r| r.into_iter().map(|(id, balance, version)| AccountState { id, balance, version }).collect())
            .map_err(|e| self.fail(e))
    }
}
