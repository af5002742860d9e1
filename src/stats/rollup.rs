//! The rollups behind every statistics figure: daily aggregates of committed operations and of card
//! balances, maintained incrementally from `operations` in `seq` order behind a watermark
//! ([`round`], every `stats.interval_ms` inside the service), recomputed from scratch by
//! [`rebuild`] (`payd stats rebuild`) and checked against a fresh aggregation by [`verify`]
//! (`payd verify`).
//!
//! A round runs in one REPEATABLE READ transaction that first takes the watermark row with
//! `FOR UPDATE SKIP LOCKED`: with several instances exactly one works at a time, the others skip the
//! round. Everything it reads (new operations, gaps) and writes (rollups, watermark, gaps) belongs to
//! one snapshot and one commit, so a crash at any point leaves the rollups at the old watermark and
//! the next round redoes the work: each committed operation is counted exactly once.
//!
//! `seq` values are taken before commit, so a lower seq can become visible after a higher one. A
//! round counts every visible operation with `upto < seq <= hi` and records the unseen seqs of that
//! window as gaps; later rounds look the gaps up again and count them when they appear. A gap older
//! than `stats.gap_grace_secs` is forgotten (a rolled-back batch never uses its seqs).

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Text};

use crate::ledger::verify::Check;

/// Operation kinds counted by the statistics.
pub const KINDS: &[&str] = &["topup", "withdrawal", "transfer", "payment", "refund", "reversal"];

/// The operations of one round, as rows the rollups are built from. `$1` time zone, `$2` < seq <= `$3`
/// or seq in `$4`. A reversal or refund is filed under the kind, method, merchant and API key of the
/// operation it corrects, with the cards in the roles of the original (money flows back, so its
/// source is the original's destination), on the day it happens.
const BATCH_COLUMNS: &str = "b AS ( \
    SELECT o.id, o.status, COALESCE(o.failure_reason, '') AS reason, \
           COALESCE(CASE WHEN o.reverses_id IS NULL THEN o.method ELSE orig.method END, '') AS method, \
           o.currency, o.amount, (o.created_at AT TIME ZONE $1)::date AS day, \
           CASE WHEN o.reverses_id IS NULL THEN o.kind ELSE COALESCE(orig.kind, o.kind) END AS kind, \
           o.reverses_id IS NOT NULL AS correction, \
           CASE WHEN o.reverses_id IS NULL THEN o.source_card_id ELSE o.dest_card_id END AS src_card, \
           CASE WHEN o.reverses_id IS NULL THEN o.dest_card_id ELSE o.source_card_id END AS dst_card, \
           CASE WHEN o.reverses_id IS NULL THEN o.merchant_id ELSE orig.merchant_id END AS merchant_id, \
           CASE WHEN o.reverses_id IS NULL THEN o.api_key_id ELSE orig.api_key_id END AS api_key_id \
    FROM ";

/// `BATCH_COLUMNS` over the operations of a round: `$2` < seq <= `$3`, plus the gaps `$4` (two index
/// range scans on `(kind, seq)`, never a scan of the table).
const ROUND_OPS: &str = "(SELECT * FROM operations \
      WHERE kind = ANY('{topup,withdrawal,transfer,payment,refund,reversal}'::text[]) AND seq > $2 AND seq <= $3 \
      UNION ALL \
      SELECT * FROM operations \
      WHERE kind = ANY('{topup,withdrawal,transfer,payment,refund,reversal}'::text[]) AND seq = ANY($4)) o";

/// For `verify`: every operation the rollups cover, seq in (`$2`, `$3`] minus the open gaps `$4`.
const COVERED_OPS: &str = "(SELECT * FROM operations \
      WHERE kind = ANY('{topup,withdrawal,transfer,payment,refund,reversal}'::text[]) AND seq > $2 AND seq <= $3 \
        AND NOT (seq = ANY($4))) o";

fn batch(ops: &str) -> String {
    format!("{BATCH_COLUMNS}{ops} LEFT JOIN operations orig ON orig.id = o.reverses_id)")
}

/// The figure rows of a batch, one per scope an operation belongs to, plus the platform's card-balance
/// rows: kind `balance`, role `src` / `dst` for the card side of each successful operation, which
/// aggregate to a handful of rows per day. Card balances need no rollup of their own: a card's money
/// moves only through the operations counted here, so its daily net flow is [`NET`] over its own rows.
const FACTS: &str = "f AS ( \
    SELECT 'all'::text AS scope, 0::bigint AS scope_id, ''::text AS role, kind, correction, status, reason, \
           method, currency, day, amount FROM b \
    UNION ALL SELECT 'card', src_card, 'src', kind, correction, status, '', method, currency, day, amount \
           FROM b WHERE src_card IS NOT NULL \
    UNION ALL SELECT 'card', dst_card, 'dst', kind, correction, status, '', method, currency, day, amount \
           FROM b WHERE dst_card IS NOT NULL \
    UNION ALL SELECT 'merchant', merchant_id, '', kind, correction, status, '', method, currency, day, amount \
           FROM b WHERE merchant_id IS NOT NULL \
    UNION ALL SELECT 'api_key', api_key_id, '', kind, correction, status, '', method, currency, day, amount \
           FROM b WHERE api_key_id IS NOT NULL \
    UNION ALL SELECT 'all', 0, 'src', 'balance', correction, status, '', '', currency, day, amount \
           FROM b WHERE src_card IS NOT NULL AND status = 'success' \
    UNION ALL SELECT 'all', 0, 'dst', 'balance', correction, status, '', '', currency, day, amount \
           FROM b WHERE dst_card IS NOT NULL AND status = 'success')";

const FACT_GROUP: &str = "SELECT scope, scope_id, role, kind, correction, status, reason, method, currency, day, \
           count(*)::bigint AS n, sum(amount)::bigint AS amount FROM f \
    GROUP BY scope, scope_id, role, kind, correction, status, reason, method, currency, day";

/// The signed amount of a `stats_daily` row for the balance of the card it belongs to: the card side
/// that receives money is `dst` of an operation, `src` of a correction (money flows back).
pub const NET: &str = "CASE WHEN (role = 'dst') <> correction THEN amount ELSE -amount END";

/// `verify` only: the card-account postings of the covered operations, straight from the ledger.
const POSTINGS: &str = "p AS ( \
    SELECT c.id AS card_id, a.currency, b.day, p.amount \
    FROM b JOIN postings p ON p.operation_id = b.id \
    JOIN accounts a ON a.id = p.account_id AND a.kind = 'card' \
    JOIN cards c ON c.account_id = a.id)";

/// `verify` only: daily postings and net flow per card and for the platform, from the postings.
const POSTED: &str = "SELECT 'card'::text AS scope, card_id AS scope_id, currency, day, count(*)::bigint AS postings, \
           sum(amount)::bigint AS net FROM p GROUP BY card_id, currency, day \
    UNION ALL \
    SELECT 'all', 0, currency, day, count(*)::bigint, sum(amount)::bigint FROM p GROUP BY currency, day";

/// One statement per round: the batch is read once and every figure upserted from it.
fn apply_sql() -> String {
    let b = batch(ROUND_OPS);
    format!(
        "WITH {b}, {FACTS} \
         INSERT INTO stats_daily (scope, scope_id, role, kind, correction, status, reason, method, currency, day, n, amount) \
         {FACT_GROUP} \
         ON CONFLICT (scope, scope_id, kind, day, role, correction, status, reason, method, currency) \
         DO UPDATE SET n = stats_daily.n + EXCLUDED.n, amount = stats_daily.amount + EXCLUDED.amount"
    )
}

#[derive(QueryableByName)]
struct Watermark {
    #[diesel(sql_type = BigInt)]
    upto: i64,
    #[diesel(sql_type = Text)]
    time_zone: String,
}

#[derive(QueryableByName)]
struct Seq {
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Another instance held the watermark: nothing done.
    pub skipped: bool,
    /// Operations counted (new ones and late ones that filled a gap).
    pub counted: i64,
    /// Seqs passed over that are not (yet) visible.
    pub gaps: i64,
    /// The watermark after the round.
    pub upto: i64,
    /// The round rebuilt everything (the configured time zone changed).
    pub rebuilt: bool,
}

fn apply(conn: &mut PgConnection, tz: &str, lo: i64, hi: i64, gaps: &[i64]) -> QueryResult<()> {
    diesel::sql_query(apply_sql())
        .bind::<Text, _>(tz)
        .bind::<BigInt, _>(lo)
        .bind::<BigInt, _>(hi)
        .bind::<Array<BigInt>, _>(gaps)
        .execute(conn)?;
    Ok(())
}

/// Checks that PostgreSQL knows the time zone.
///
/// # Errors
/// A diesel error; `Ok(false)` for an unknown zone.
pub fn time_zone_known(conn: &mut PgConnection, tz: &str) -> QueryResult<bool> {
    diesel::sql_query("SELECT count(*) AS n FROM pg_timezone_names WHERE name = $1")
        .bind::<Text, _>(tz)
        .get_result::<Count>(conn)
        .map(|c| c.n > 0)
}

/// One incremental round: counts at most `max_ops` new operations and every late one that fills a gap.
///
/// # Errors
/// A diesel error (a serialization failure when another instance moved the watermark meanwhile: the
/// next round simply tries again).
pub fn round(conn: &mut PgConnection, tz: &str, max_ops: i64, gap_grace_secs: i64) -> QueryResult<Round> {
    conn.build_transaction().repeatable_read().run(|conn| {
        let wm: Option<Watermark> =
            diesel::sql_query("SELECT upto, time_zone FROM stats_watermark WHERE id = 1 FOR UPDATE SKIP LOCKED")
                .get_result(conn)
                .optional()?;
        let Some(wm) = wm else {
            return Ok(Round { skipped: true, ..Round::default() });
        };
        if wm.time_zone != tz {
            let empty: Count =
                diesel::sql_query("SELECT count(*) AS n FROM stats_daily").get_result(conn)?;
            if wm.upto > 0 || empty.n > 0 {
                let r = rebuild_locked(conn, tz)?;
                return Ok(Round { rebuilt: true, ..r });
            }
            diesel::sql_query("UPDATE stats_watermark SET time_zone = $1 WHERE id = 1")
                .bind::<Text, _>(tz)
                .execute(conn)?;
        }
        diesel::sql_query("DELETE FROM stats_gaps WHERE noticed_at < now() - make_interval(secs => $1)")
            .bind::<Integer, _>(i32::try_from(gap_grace_secs).unwrap_or(i32::MAX))
            .execute(conn)?;
        let old_gaps: Vec<i64> = diesel::sql_query("SELECT seq FROM stats_gaps ORDER BY seq")
            .load::<Seq>(conn)?
            .into_iter()
            .map(|s| s.seq)
            .collect();
        let found: Vec<i64> = if old_gaps.is_empty() {
            Vec::new()
        } else {
            diesel::sql_query(
                "SELECT seq FROM operations WHERE kind = ANY('{topup,withdrawal,transfer,payment,refund,reversal}'::text[]) \
                 AND seq = ANY($1)",
            )
            .bind::<Array<BigInt>, _>(&old_gaps)
            .load::<Seq>(conn)?
            .into_iter()
            .map(|s| s.seq)
            .collect()
        };
        let new: Vec<i64> = diesel::sql_query(
            "SELECT seq FROM operations WHERE kind = ANY('{topup,withdrawal,transfer,payment,refund,reversal}'::text[]) \
             AND seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind::<BigInt, _>(wm.upto)
        .bind::<BigInt, _>(max_ops)
        .load::<Seq>(conn)?
        .into_iter()
        .map(|s| s.seq)
        .collect();
        let hi = new.last().copied().unwrap_or(wm.upto).max(wm.upto);
        // Seqs of the window that are not visible: an uncommitted (or rolled-back) transaction took them.
        let mut missing = Vec::new();
        let mut expect = wm.upto + 1;
        for &s in &new {
            missing.extend(expect..s);
            expect = s + 1;
        }
        if !found.is_empty() {
            diesel::sql_query("DELETE FROM stats_gaps WHERE seq = ANY($1)")
                .bind::<Array<BigInt>, _>(&found)
                .execute(conn)?;
        }
        if !missing.is_empty() {
            diesel::sql_query("INSERT INTO stats_gaps (seq) SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING")
                .bind::<Array<BigInt>, _>(&missing)
                .execute(conn)?;
        }
        let counted = i64::try_from(new.len() + found.len()).unwrap_or(i64::MAX);
        if counted > 0 {
            apply(conn, tz, wm.upto, hi, &found)?;
        }
        if hi != wm.upto || counted > 0 {
            diesel::sql_query("UPDATE stats_watermark SET upto = $1, updated_at = now() WHERE id = 1")
                .bind::<BigInt, _>(hi)
                .execute(conn)?;
        }
        let gaps = i64::try_from(old_gaps.len() - found.len() + missing.len()).unwrap_or(i64::MAX);
        Ok(Round { skipped: false, counted, gaps, upto: hi, rebuilt: false })
    })
}

/// Recomputes every rollup from the ledger in `tz` (`payd stats rebuild`). Waits for a running round.
///
/// # Errors
/// A diesel error.
pub fn rebuild(conn: &mut PgConnection, tz: &str) -> QueryResult<Round> {
    conn.build_transaction().repeatable_read().run(|conn| {
        // Taken first, so the snapshot is not older than the last round's commit.
        diesel::sql_query("SELECT upto, time_zone FROM stats_watermark WHERE id = 1 FOR UPDATE")
            .get_result::<Watermark>(conn)?;
        rebuild_locked(conn, tz)
    })
}

/// How far below the highest visible seq a rebuild records unseen seqs as gaps: a transaction still in
/// flight holds one of the most recent seqs.
const REBUILD_GAP_WINDOW: i64 = 10_000;

fn rebuild_locked(conn: &mut PgConnection, tz: &str) -> QueryResult<Round> {
    diesel::sql_query("DELETE FROM stats_daily").execute(conn)?;
    diesel::sql_query("DELETE FROM stats_gaps").execute(conn)?;
    let hi: Count = diesel::sql_query("SELECT COALESCE(max(seq), 0) AS n FROM operations").get_result(conn)?;
    let hi = hi.n;
    apply(conn, tz, 0, hi, &[])?;
    let gaps = diesel::sql_query(
        "INSERT INTO stats_gaps (seq) SELECT s FROM generate_series(GREATEST($1 - $2, 0) + 1, $1) s \
         WHERE NOT EXISTS (SELECT 1 FROM operations o \
           WHERE o.kind = ANY('{topup,withdrawal,transfer,payment,refund,reversal}'::text[]) AND o.seq = s)",
    )
    .bind::<BigInt, _>(hi)
    .bind::<BigInt, _>(REBUILD_GAP_WINDOW)
    .execute(conn)?;
    diesel::sql_query(
        "UPDATE stats_watermark SET upto = $1, time_zone = $2, rebuilt_at = now(), updated_at = now() WHERE id = 1",
    )
    .bind::<BigInt, _>(hi)
    .bind::<Text, _>(tz)
    .execute(conn)?;
    let counted: Count = diesel::sql_query("SELECT count(*) AS n FROM operations").get_result(conn)?;
    Ok(Round {
        skipped: false,
        counted: counted.n,
        gaps: i64::try_from(gaps).unwrap_or(i64::MAX),
        upto: hi,
        rebuilt: true,
    })
}

#[derive(QueryableByName)]
struct Example {
    #[diesel(sql_type = Text)]
    example: String,
}

/// The rollups equal a fresh aggregation of the operations they cover (seq <= watermark, minus the
/// open gaps), and the daily card-balance flows derived from them equal those of the ledger's postings
/// on card accounts (an independent source: the postings' running balances are checked by the ledger's
/// own `verify`, so a card's balance figure is its ledger balance). Runs in one snapshot: a round commits rollups and watermark together, so no false alarm while it runs.
///
/// # Errors
/// A diesel error.
pub fn verify(conn: &mut PgConnection) -> QueryResult<Vec<Check>> {
    conn.build_transaction().repeatable_read().read_only().run(|conn| {
        let wm: Watermark = diesel::sql_query("SELECT upto, time_zone FROM stats_watermark WHERE id = 1").get_result(conn)?;
        let covered = batch(COVERED_OPS);
        let gaps: Vec<i64> = diesel::sql_query("SELECT seq FROM stats_gaps")
            .load::<Seq>(conn)?
            .into_iter()
            .map(|s| s.seq)
            .collect();
        let figures = format!(
            "WITH {covered}, {FACTS}, fresh AS ({FACT_GROUP}), \
             stored AS (SELECT scope, scope_id, role, kind, correction, status, reason, method, currency, day, n, amount \
                        FROM stats_daily), \
             diff AS ((SELECT * FROM fresh EXCEPT ALL SELECT * FROM stored) UNION ALL \
                      (SELECT * FROM stored EXCEPT ALL SELECT * FROM fresh)) \
             SELECT scope || ' ' || scope_id::text || ' ' || kind || ' ' || day::text || ' n ' || n::text \
                    || ' amount ' || amount::text AS example FROM diff"
        );
        let balances = format!(
            "WITH {covered}, {POSTINGS}, fresh AS ({POSTED}), \
             stored AS (SELECT scope, scope_id, currency, day, sum(n)::bigint AS postings, sum({NET})::bigint AS net \
                        FROM stats_daily WHERE status = 'success' \
                          AND ((scope = 'card' AND role <> '') OR (scope = 'all' AND kind = 'balance')) \
                        GROUP BY scope, scope_id, currency, day), \
             diff AS ((SELECT * FROM fresh EXCEPT ALL SELECT * FROM stored) UNION ALL \
                      (SELECT * FROM stored EXCEPT ALL SELECT * FROM fresh)) \
             SELECT scope || ' ' || scope_id::text || ' ' || day::text || ' net ' || net::text AS example FROM diff"
        );
        let mut checks = Vec::new();
        for (name, sql) in [
            ("statistics rollups equal a fresh aggregation", figures),
            ("card balance flows equal the ledger's postings", balances),
        ] {
            let q = |limit: &str| {
                let base = if limit.is_empty() {
                    format!("SELECT count(*) AS n FROM ({sql}) v")
                } else {
                    format!("{sql} {limit}")
                };
                diesel::sql_query(base)
                    .bind::<Text, _>(&wm.time_zone)
                    .bind::<BigInt, _>(0)
                    .bind::<BigInt, _>(wm.upto)
                    .bind::<Array<BigInt>, _>(&gaps)
            };
            let count: Count = q("").get_result(conn)?;
            let examples: Vec<Example> = q("LIMIT 5").load(conn)?;
            checks.push(Check {
                name,
                violations: count.n,
                examples: examples.into_iter().map(|e| e.example).collect(),
            });
        }
        Ok(checks)
    })
}

/// The watermark as statistics responses report it.
#[derive(QueryableByName, Debug, Clone)]
pub struct Freshness {
    /// Every operation with seq <= upto (except open gaps) is counted.
    #[diesel(sql_type = BigInt)]
    pub upto: i64,
    /// The zone the rollups' days are in.
    #[diesel(sql_type = Text)]
    pub time_zone: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Today in that zone.
    #[diesel(sql_type = diesel::sql_types::Date)]
    pub today: chrono::NaiveDate,
}

/// Reads the watermark.
///
/// # Errors
/// A diesel error.
pub fn freshness(conn: &mut PgConnection) -> QueryResult<Freshness> {
    diesel::sql_query(
        "SELECT upto, time_zone, updated_at, (now() AT TIME ZONE time_zone)::date AS today FROM stats_watermark WHERE id = 1",
    )
    .get_result(conn)
}
