//! The real group commit: `LedgerWriter` + `PgLedgerStore` against a fresh PostgreSQL database
//! (created and migrated here, dropped at the end). Each iteration submits `BATCH` concurrent
//! transfer entries through `WriterHandle::commit` — with an `OpRecord` (operation row,
//! idempotency row, outbox event) built like `src/payments/execute.rs` does — and waits for all.
//!
//! Server: `PAYD_BENCH_PG` or `PAYD_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`).
//! Skipped with a message when the server is unreachable.
//! `cargo bench --bench ledger_writer` (add `-- --quick` for a short run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use futures::future::join_all;
use payd::ids::{AccountId, CardId, UserId};
use payd::ledger::store::PgLedgerStore;
use payd::ledger::{NewEvent, NewIdempotency, OpRecord};
use payd::payments::OperationEntry;
use payd_actors::{JournalEntry, LedgerWriter, Posting, WriterConfig, WriterHandle};
use uuid::Uuid;

/// Entries submitted concurrently per iteration.
const BATCH: usize = 1000;
/// Card accounts in the "distinct" setup (one pair per entry of a batch).
const DISTINCT: usize = 2 * BATCH;

fn server() -> String {
    std::env::var("PAYD_BENCH_PG")
        .or_else(|_| std::env::var("PAYD_TEST_PG"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

struct Db {
    name: String,
    url: String,
    user: i64,
    /// (account id, card id), ordered by account id.
    cards: Vec<(i64, i64)>,
}

/// Creates `payd_bench_w_<uuid>`, migrates it, inserts one user and `n` funded card accounts.
fn fresh_db(n: usize) -> Option<Db> {
    let mut admin = match PgConnection::establish(&format!("{}/postgres", server())) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ledger_writer: PostgreSQL unreachable at {} ({e}); skipping", server());
            return None;
        }
    };
    let name = format!("payd_bench_w_{}", Uuid::new_v4().simple());
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = format!("{}/{name}", server());
    let mut conn = PgConnection::establish(&url).unwrap();
    payd::storage::migrate_up(&mut conn).unwrap();
    let user: Id = diesel::sql_query(
        "INSERT INTO users (first_name, last_name, email, password_hash) \
         VALUES ('Bench', 'Writer', 'bench-writer@payd.local', 'x') RETURNING id",
    )
    .get_result(&mut conn)
    .unwrap();
    let n = i64::try_from(n).unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO accounts (kind, currency, balance, min_balance) \
           SELECT 'card', 'IDR', 1000000000000000, 0 FROM generate_series(1, {n}); \
         INSERT INTO cards (user_id, account_id, card_type, brand, pan_hash, pan_masked, pan_last4, expiry_month, expiry_year) \
           SELECT {user}, a.id, 'debit', 'visa', 'bench-' || a.id, '400000******' || lpad((a.id % 10000)::text, 4, '0'), \
                  lpad((a.id % 10000)::text, 4, '0'), 12, 2100 \
           FROM accounts a WHERE a.kind = 'card'; \
         ANALYZE",
        user = user.id
    ))
    .unwrap();
    let cards: Vec<(i64, i64)> =
        diesel::sql_query("SELECT account_id AS id, id AS card FROM cards ORDER BY account_id")
            .load::<CardRow>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|r| (r.id, r.card))
            .collect();
    Some(Db { name, url, user: user.id, cards })
}

#[derive(QueryableByName)]
struct CardRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    card: i64,
}

fn drop_db(name: &str) {
    if let Ok(mut admin) = PgConnection::establish(&format!("{}/postgres", server())) {
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
}

/// A transfer entry shaped like the service's (see `payments::execute::run`).
fn entry(user: i64, seq: u64, from: (i64, i64), to: (i64, i64)) -> JournalEntry<OpRecord> {
    let now = Utc::now();
    let amount = 50_000;
    let op = OperationEntry {
        id: Uuid::now_v7(),
        kind: payd::payments::OperationKind::Transfer,
        status: payd::payments::OperationStatus::Success,
        failure_reason: None,
        amount,
        currency: "IDR".into(),
        method: None,
        source_card_id: Some(CardId::new(from.1)),
        dest_card_id: Some(CardId::new(to.1)),
        debit_account_id: AccountId::new(from.0),
        credit_account_id: AccountId::new(to.0),
        reverses_id: None,
        initiated_by: Some(UserId::new(user)),
        created_at: now,
        merchant_id: None,
        api_key_id: None,
        order_ref: None,
    };
    let view = serde_json::json!({
        "id": op.id, "kind": "transfer", "status": "success", "failure_reason": null, "amount": amount,
        "currency": "IDR", "method": null, "source_card_id": from.1, "dest_card_id": to.1,
        "reverses_id": null, "created_at": now, "archived_at": null,
    });
    let record = OpRecord {
        idempotency: Some(NewIdempotency {
            scope: format!("user:{user}"),
            key: format!("bench-{seq}-{}", Uuid::new_v4().simple()),
            request_hash: "0".repeat(64),
            operation_id: Some(op.id),
            response_status: 201,
            response_body: view.clone(),
        }),
        events: vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "transfer.completed".into(),
            schema_version: 1,
            aggregate_type: "card".into(),
            aggregate_key: format!("card:{}", from.1),
            payload: serde_json::json!({ "operation": view, "initiated_by": user }),
        }],
        operation: op,
        refund_of: None,
        withdrawn: None,
    };
    JournalEntry {
        postings: vec![Posting { account: from.0, amount: -amount }, Posting { account: to.0, amount }],
        record,
    }
}

fn start_writer(url: &str, writers: usize, max_batch: usize) -> WriterHandle<OpRecord> {
    LedgerWriter::start(
        (0..writers).map(|_| PgLedgerStore::new(url)).collect(),
        WriterConfig {
            max_batch,
            max_wait: Duration::from_micros(1000),
            queue_capacity: 20_000,
            ..WriterConfig::default()
        },
    )
}

fn bench_commit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(db) = fresh_db(DISTINCT) else { return };
    let mut seq = 0u64;
    let mut g = c.benchmark_group("ledger_writer_pg");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::try_from(BATCH).unwrap()));
    // (label, writers, max_batch, distinct accounts?)
    let cases: [(&str, usize, usize, bool); 4] = [
        ("two_accounts", 1, 512, false),
        ("distinct_accounts", 1, 512, true),
        ("distinct_accounts", 2, 512, true),
        ("distinct_accounts", 1, 64, true),
    ];
    for (label, writers, max_batch, distinct) in cases {
        let writer = start_writer(&db.url, writers, max_batch);
        let id = BenchmarkId::new(label, format!("{BATCH}_concurrent/writers={writers}/max_batch={max_batch}"));
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let entries: Vec<_> = (0..BATCH)
                            .map(|i| {
                                seq += 1;
                                let (from, to) = if distinct {
                                    (db.cards[2 * i], db.cards[2 * i + 1])
                                } else {
                                    (db.cards[0], db.cards[1])
                                };
                                entry(db.user, seq, from, to)
                            })
                            .collect();
                        let results = join_all(entries.into_iter().map(|e| writer.commit(e))).await;
                        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                            panic!("commit failed: {e}");
                        }
                    }
                    start.elapsed()
                })
            });
        });
        let s = writer.stats();
        eprintln!(
            "ledger_writer: {label} writers={writers} max_batch={max_batch}: {} entries in {} batches (avg {:.0}/batch)",
            s.entries(),
            s.batches(),
            f64::from(u32::try_from(s.entries()).unwrap_or(0)) / f64::from(u32::try_from(s.batches().max(1)).unwrap_or(1))
        );
        drop(writer);
    }
    g.finish();
    // Give the writer threads a moment to close their connections before the DROP.
    std::thread::sleep(Duration::from_millis(200));
    drop_db(&db.name);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = bench_commit
}
criterion_main!(benches);
