//! `payd verify`: recomputes every balance from postings and checks every ledger invariant.
//!
//! Inside the service the same invariants are checked continuously but incrementally ([`run_recent`]):
//! each round looks only at the postings committed since the previous round and at what they touch
//! (their operations and accounts), so its cost follows the write rate, not the size of the ledger —
//! the full check reads every posting (tens of seconds of database time at a few hundred thousand
//! operations) and is for `payd verify`. The violation count is exported as a metric.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde::Serialize;

/// One invariant and what was found.
#[derive(Debug, Serialize, Clone)]
pub struct Check {
    pub name: &'static str,
    pub violations: i64,
    /// Up to five examples, for the report.
    pub examples: Vec<String>,
}

#[derive(Debug, Serialize, Clone)]
pub struct Report {
    /// An incremental round (`run_recent`): `postings` counts the new postings it covered and the
    /// account and operation totals are not counted.
    pub incremental: bool,
    pub checks: Vec<Check>,
    pub accounts: i64,
    pub operations: i64,
    pub postings: i64,
}

impl Report {
    pub fn violations(&self) -> i64 {
        self.checks.iter().map(|c| c.violations).sum()
    }
    pub fn is_clean(&self) -> bool {
        self.violations() == 0
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.incremental {
            writeln!(f, "ledger verify (incremental): {} new postings", self.postings)?;
        } else {
            writeln!(
                f,
                "ledger verify: {} accounts, {} operations, {} postings",
                self.accounts, self.operations, self.postings
            )?;
        }
        for c in &self.checks {
            let mark = if c.violations == 0 { "ok  " } else { "FAIL" };
            writeln!(f, "  [{mark}] {:<48} {}", c.name, c.violations)?;
            for e in &c.examples {
                writeln!(f, "         {e}")?;
            }
        }
        write!(f, "{}", if self.is_clean() { "all invariants hold" } else { "INVARIANT VIOLATIONS FOUND" })
    }
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    example: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Each check is a query returning one text row per violation.
const CHECKS: &[(&str, &str)] = &[
    (
        "every journal entry balances",
        "SELECT 'operation ' || operation_id::text || ' sums to ' || sum(amount)::text AS example \
         FROM postings GROUP BY operation_id HAVING sum(amount) <> 0",
    ),
    (
        "postings sum to zero per currency",
        "SELECT a.currency::text || ' sums to ' || sum(p.amount)::text AS example \
         FROM postings p JOIN accounts a ON a.id = p.account_id GROUP BY a.currency HAVING sum(p.amount) <> 0",
    ),
    (
        "stored balance equals recomputed balance",
        "SELECT 'account ' || a.id::text || ' stored ' || a.balance::text || ' recomputed ' || COALESCE(s.total, 0)::text AS example \
         FROM accounts a LEFT JOIN (SELECT account_id, sum(amount) AS total FROM postings GROUP BY account_id) s \
           ON s.account_id = a.id WHERE a.balance <> COALESCE(s.total, 0)",
    ),
    (
        "no balance below its floor",
        "SELECT 'account ' || id::text || ' balance ' || balance::text || ' floor ' || min_balance::text AS example \
         FROM accounts WHERE min_balance IS NOT NULL AND balance < min_balance",
    ),
    (
        "no posting leaves its account below its floor",
        "SELECT 'posting ' || p.id::text || ' balance_after ' || p.balance_after::text || ' floor ' \
                || a.min_balance::text AS example \
         FROM postings p JOIN accounts a ON a.id = p.account_id \
         WHERE a.min_balance IS NOT NULL AND p.balance_after < a.min_balance",
    ),
    (
        "running balance of the last posting equals balance",
        "SELECT 'account ' || a.id::text AS example FROM accounts a \
         JOIN LATERAL (SELECT balance_after FROM postings p WHERE p.account_id = a.id ORDER BY p.id DESC LIMIT 1) l ON TRUE \
         WHERE l.balance_after <> a.balance",
    ),
    (
        "withdrawal totals equal withdrawals minus their reversals",
        "SELECT 'account ' || a.id::text || ' total_withdrawn ' || a.total_withdrawn::text || ' recomputed ' \
                || (COALESCE(w.total, 0) - COALESCE(r.total, 0))::text AS example \
         FROM accounts a \
         LEFT JOIN (SELECT debit_account_id AS account_id, sum(amount) AS total, max(created_at) AS last \
                    FROM operations WHERE kind = 'withdrawal' AND status = 'success' GROUP BY debit_account_id) w \
           ON w.account_id = a.id \
         LEFT JOIN (SELECT o.debit_account_id AS account_id, sum(x.amount) AS total FROM operations x \
                    JOIN operations o ON o.id = x.reverses_id \
                    WHERE o.kind = 'withdrawal' AND x.status = 'success' GROUP BY o.debit_account_id) r \
           ON r.account_id = a.id \
         WHERE a.total_withdrawn <> COALESCE(w.total, 0) - COALESCE(r.total, 0) \
            OR a.last_withdrawal_at IS DISTINCT FROM w.last",
    ),
    (
        "failed operations have no postings",
        "SELECT 'operation ' || o.id::text AS example FROM operations o \
         WHERE o.status = 'failed' AND EXISTS (SELECT 1 FROM postings p WHERE p.operation_id = o.id)",
    ),
    (
        "successful operations move exactly their amount",
        "SELECT 'operation ' || o.id::text AS example FROM operations o \
         LEFT JOIN postings d ON d.operation_id = o.id AND d.account_id = o.debit_account_id AND d.amount = -o.amount \
         LEFT JOIN postings c ON c.operation_id = o.id AND c.account_id = o.credit_account_id AND c.amount = o.amount \
         WHERE o.status = 'success' AND (d.id IS NULL OR c.id IS NULL \
           OR (SELECT count(*) FROM postings x WHERE x.operation_id = o.id) <> 2)",
    ),
    (
        "each operation has at most one idempotency key",
        "SELECT 'operation ' || operation_id::text AS example FROM idempotency_keys \
         WHERE operation_id IS NOT NULL GROUP BY operation_id HAVING count(*) > 1",
    ),
    (
        "reversals mirror their original",
        "SELECT 'reversal ' || r.id::text AS example FROM operations r JOIN operations o ON o.id = r.reverses_id \
         WHERE r.status = 'success' AND (o.status <> 'success' OR r.amount > o.amount \
           OR r.debit_account_id <> o.credit_account_id OR r.credit_account_id <> o.debit_account_id)",
    ),
    (
        "refunds never exceed their payment",
        "SELECT 'payment ' || p.id::text || ' refunded ' || sum(r.amount)::text AS example FROM operations p \
         JOIN operations r ON r.reverses_id = p.id AND r.kind = 'refund' AND r.status = 'success' \
         GROUP BY p.id, p.amount HAVING sum(r.amount) > p.amount",
    ),
    (
        "refund totals equal successful refunds",
        "SELECT 'payment ' || t.payment_id::text AS example FROM refund_totals t \
         LEFT JOIN (SELECT reverses_id, sum(amount) AS total FROM operations \
                    WHERE kind = 'refund' AND status = 'success' GROUP BY reverses_id) r \
           ON r.reverses_id = t.payment_id \
         WHERE t.refunded <> COALESCE(r.total, 0)",
    ),
    (
        "every posting belongs to an operation and an account",
        "SELECT 'posting ' || p.id::text AS example FROM postings p \
         WHERE NOT EXISTS (SELECT 1 FROM operations o WHERE o.id = p.operation_id) \
            OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = p.account_id)",
    ),
    (
        "every operation names existing accounts, cards and originals",
        "SELECT 'operation ' || o.id::text AS example FROM operations o \
         WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = o.debit_account_id) \
            OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = o.credit_account_id) \
            OR (o.source_card_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM cards c WHERE c.id = o.source_card_id)) \
            OR (o.dest_card_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM cards c WHERE c.id = o.dest_card_id)) \
            OR (o.reverses_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM operations r WHERE r.id = o.reverses_id)) \
            OR (o.merchant_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM merchants m WHERE m.id = o.merchant_id))",
    ),
    (
        "every idempotency key points at an existing operation",
        "SELECT 'key ' || k.scope || '/' || k.key AS example FROM idempotency_keys k \
         WHERE k.operation_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.id = k.operation_id)",
    ),
];

/// The incremental checks: `$1` < posting id <= `$2` is the window of new postings. Together, round
/// after round, they cover every posting the service sees committed: each new posting continues its
/// account's running balance, each account it touches stores exactly its latest running balance and
/// respects its floor, and each operation it belongs to is a successful, balanced, two-posting entry
/// between the accounts it names for exactly its amount.
const RECENT_CHECKS: &[(&str, &str)] = &[
    (
        "new postings continue their account's running balance",
        "SELECT 'posting ' || p.id::text || ' balance_after ' || p.balance_after::text || ' expected ' \
                || (COALESCE(prev.balance_after, 0) + p.amount)::text AS example \
         FROM postings p \
         LEFT JOIN LATERAL (SELECT q.balance_after FROM postings q \
                            WHERE q.account_id = p.account_id AND q.id < p.id ORDER BY q.id DESC LIMIT 1) prev ON TRUE \
         WHERE p.id > $1 AND p.id <= $2 AND p.balance_after <> COALESCE(prev.balance_after, 0) + p.amount",
    ),
    (
        "touched accounts store their latest running balance",
        "SELECT 'account ' || a.id::text || ' stored ' || a.balance::text || ' last posting ' || l.balance_after::text AS example \
         FROM accounts a \
         JOIN LATERAL (SELECT balance_after FROM postings q WHERE q.account_id = a.id ORDER BY q.id DESC LIMIT 1) l ON TRUE \
         WHERE a.id IN (SELECT account_id FROM postings WHERE id > $1 AND id <= $2) AND l.balance_after <> a.balance",
    ),
    (
        "new postings keep their account at or above its floor",
        "SELECT 'posting ' || p.id::text || ' balance_after ' || p.balance_after::text || ' floor ' \
                || a.min_balance::text AS example \
         FROM postings p JOIN accounts a ON a.id = p.account_id \
         WHERE p.id > $1 AND p.id <= $2 AND a.min_balance IS NOT NULL AND p.balance_after < a.min_balance",
    ),
    (
        "touched accounts are at or above their floor",
        "SELECT 'account ' || id::text || ' balance ' || balance::text || ' floor ' || min_balance::text AS example \
         FROM accounts WHERE id IN (SELECT account_id FROM postings WHERE id > $1 AND id <= $2) \
           AND min_balance IS NOT NULL AND balance < min_balance",
    ),
    (
        "new entries are successful, balanced and move their amount",
        "SELECT 'operation ' || o.id::text AS example FROM operations o \
         WHERE o.id IN (SELECT operation_id FROM postings WHERE id > $1 AND id <= $2) \
           AND (o.status <> 'success' \
             OR (SELECT count(*) FROM postings x WHERE x.operation_id = o.id) <> 2 \
             OR NOT EXISTS (SELECT 1 FROM postings d WHERE d.operation_id = o.id \
                            AND d.account_id = o.debit_account_id AND d.amount = -o.amount) \
             OR NOT EXISTS (SELECT 1 FROM postings c WHERE c.operation_id = o.id \
                            AND c.account_id = o.credit_account_id AND c.amount = o.amount))",
    ),
    (
        "new postings belong to an operation and an account",
        "SELECT 'posting ' || p.id::text AS example FROM postings p \
         WHERE p.id > $1 AND p.id <= $2 \
           AND (NOT EXISTS (SELECT 1 FROM operations o WHERE o.id = p.operation_id) \
             OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = p.account_id))",
    ),
];

/// The highest posting id committed so far (0 for an empty ledger): where the service's first
/// incremental round starts.
///
/// # Errors
/// A diesel error.
pub fn last_posting(conn: &mut PgConnection) -> Result<i64, diesel::result::Error> {
    diesel::sql_query("SELECT COALESCE(max(id), 0) AS n FROM postings").get_result::<Count>(conn).map(|c| c.n)
}

/// One incremental round over the postings with id > `after`, in one snapshot. Returns the report
/// (its `postings` is how many postings the round covered) and where the next round starts.
///
/// A posting id can commit after a higher one (sequence values are taken before commit); the window
/// ends at the highest id of the snapshot, and a lower id committed later is not revisited. The
/// writer commits a batch's postings in one transaction, so such gaps are rare; `payd verify` covers
/// them and everything else.
///
/// # Errors
/// A diesel error when a query fails.
pub fn run_recent(conn: &mut PgConnection, after: i64) -> Result<(Report, i64), diesel::result::Error> {
    run_recent_bounded(conn, after, i64::MAX).map(|(report, next, _)| (report, next))
}

/// [`run_recent`] over at most `max_postings` posting ids (`after < id <= after + max_postings`), so
/// one round's statements stay bounded however far the check has fallen behind (a burst of load, a
/// round cancelled by its timeout). The third value is true when postings beyond the window were
/// already committed: the caller runs the next round at once instead of waiting for its interval.
/// Every check holds on any window: the per-entry check reads all of an operation's postings, wherever
/// the window cuts.
///
/// # Errors
/// A diesel error when a query fails.
pub fn run_recent_bounded(
    conn: &mut PgConnection,
    after: i64,
    max_postings: i64,
) -> Result<(Report, i64, bool), diesel::result::Error> {
    conn.build_transaction().repeatable_read().read_only().run(|conn| {
        let last = last_posting(conn)?.max(after);
        let upto = last.min(after.saturating_add(max_postings.max(1)));
        let mut checks = Vec::with_capacity(RECENT_CHECKS.len());
        for (name, sql) in RECENT_CHECKS {
            let count: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM ({sql}) v"))
                .bind::<BigInt, _>(after)
                .bind::<BigInt, _>(upto)
                .get_result(conn)?;
            let examples: Vec<Row> = if count.n > 0 {
                diesel::sql_query(format!("{sql} LIMIT 5"))
                    .bind::<BigInt, _>(after)
                    .bind::<BigInt, _>(upto)
                    .load(conn)?
            } else {
                Vec::new()
            };
            checks.push(Check {
                name,
                violations: count.n,
                examples: examples.into_iter().map(|r| r.example).collect(),
            });
        }
        let covered: Count = diesel::sql_query("SELECT count(*) AS n FROM postings WHERE id > $1 AND id <= $2")
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(upto)
            .get_result(conn)?;
        Ok((Report { incremental: true, checks, accounts: 0, operations: 0, postings: covered.n }, upto, upto < last))
    })
}

/// Runs every check.
///
/// # Errors
/// A diesel error when a query fails.
pub fn run(conn: &mut PgConnection) -> Result<Report, diesel::result::Error> {
    // One snapshot for all checks, so concurrent commits cannot produce false alarms.
    conn.build_transaction().repeatable_read().read_only().run(|conn| {
        let mut checks = Vec::with_capacity(CHECKS.len());
        for (name, sql) in CHECKS {
            let count: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM ({sql}) v")).get_result(conn)?;
            let examples: Vec<Row> = diesel::sql_query(format!("{sql} LIMIT 5")).load(conn)?;
            checks.push(Check {
                name,
                violations: count.n,
                examples: examples.into_iter().map(|r| r.example).collect(),
            });
        }
        let n = |sql: &str, conn: &mut PgConnection| diesel::sql_query(sql).get_result::<Count>(conn).map(|c| c.n);
        Ok(Report {
            incremental: false,
            accounts: n("SELECT count(*) AS n FROM accounts", conn)?,
            operations: n("SELECT count(*) AS n FROM operations", conn)?,
            postings: n("SELECT count(*) AS n FROM postings", conn)?,
            checks,
        })
    })
}
