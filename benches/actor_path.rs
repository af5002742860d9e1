//! Actor-path micro-benchmarks (no PostgreSQL): the account actor's reserve + release round trip,
//! and `Ledger::execute` end to end against the in-memory `MemoryStore` (card checks, reservation,
//! group commit through the writer thread, release).
//!
//! `cargo bench --bench actor_path` (add `-- --quick` for a short run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use actix_web::rt::System;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::future::join_all;
use payd_actors::{
    AccountsHandle, ActorConfig, CardSnapshot, CardStatus, CardsHandle, FailureReason, Ledger, LedgerWriter,
    MemoryRecord, MemoryStore, Operation, ReservationId, WriterConfig,
};

const FUND: i64 = 1;
/// Card accounts are 1000.., cards 5000.. (kept small: MemoryStore scans its cards on every debit).
const ACCOUNTS: i64 = 64;
const CONCURRENT: usize = 256;

fn account(i: i64) -> i64 {
    1000 + i
}
fn card(i: i64) -> i64 {
    5000 + i
}

fn store() -> MemoryStore {
    let store: MemoryStore = MemoryStore::new();
    store.add_account(FUND, 0, None);
    for i in 0..ACCOUNTS {
        store.add_account(account(i), 1_000_000_000_000_000, Some(0));
        store.add_card(CardSnapshot {
            id: card(i),
            account_id: account(i),
            owner_id: 1,
            status: CardStatus::Active,
            expiry: (2100, 12),
        });
    }
    store
}

fn cfg() -> ActorConfig {
    ActorConfig { ask_timeout: Duration::from_secs(10), mailbox_capacity: 4096, ..ActorConfig::default() }
}

fn reserve_release(c: &mut Criterion) {
    let sys = System::new();
    let store = store();
    let accounts = sys.block_on(async { AccountsHandle::new(2, store.account_loader(), cfg()) });
    // Load the actors once so the benchmark measures the warm path.
    sys.block_on(async {
        for i in 0..ACCOUNTS {
            accounts.available(account(i)).await.unwrap();
        }
    });
    let mut g = c.benchmark_group("accounts");
    g.throughput(Throughput::Elements(1));
    g.bench_function("reserve+release (sequential, one account)", |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let rid = ReservationId::next();
                    accounts.reserve(account(0), rid, 50_000).await.unwrap();
                    accounts.release(account(0), rid, Vec::new()).await;
                }
                start.elapsed()
            })
        });
    });
    g.throughput(Throughput::Elements(u64::try_from(CONCURRENT).unwrap()));
    g.bench_function(format!("reserve+release ({CONCURRENT} concurrent over {ACCOUNTS} accounts)"), |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    join_all((0..CONCURRENT).map(|n| {
                        let accounts = accounts.clone();
                        async move {
                            let a = account(i64::try_from(n).unwrap() % ACCOUNTS);
                            let rid = ReservationId::next();
                            accounts.reserve(a, rid, 50_000).await.unwrap();
                            accounts.release(a, rid, Vec::new()).await;
                        }
                    }))
                    .await;
                }
                start.elapsed()
            })
        });
    });
    g.finish();
    accounts.shutdown();
}

fn transfer(n: u64, from: i64, to: i64) -> Operation<MemoryRecord> {
    let key = format!("bench-{n}");
    let k2 = key.clone();
    Operation {
        debit_card: Some(card(from)),
        credit_card: Some(card(to)),
        debit_account: account(from),
        credit_account: account(to),
        amount: 50_000,
        today: (2026, 1),
        on_success: Box::new(move || MemoryRecord { key: Some(key.clone()), outcome: "ok".into() }),
        on_failure: Box::new(move |r: FailureReason| MemoryRecord { key: Some(k2), outcome: r.code().into() }),
        span: tracing::Span::none(),
    }
}

fn ledger_execute(c: &mut Criterion) {
    let sys = System::new();
    let store = store();
    let ledger = sys.block_on(async {
        let accounts = AccountsHandle::new(2, store.account_loader(), cfg());
        let cards = CardsHandle::new(2, store.card_loader(), cfg());
        let writer = LedgerWriter::start(
            vec![store.clone()],
            WriterConfig {
                max_batch: 512,
                max_wait: Duration::from_micros(1000),
                queue_capacity: 20_000,
                ..WriterConfig::default()
            },
        );
        Ledger::start(accounts, cards, writer, Duration::from_secs(30), 65_536)
    });
    let mut seq = 0u64;
    let mut g = c.benchmark_group("ledger_execute_memory");
    g.throughput(Throughput::Elements(1));
    g.bench_function("transfer (sequential; includes the writer's max_wait)", |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    seq += 1;
                    ledger.execute(transfer(seq, 0, 1)).await.unwrap();
                }
                start.elapsed()
            })
        });
    });
    g.throughput(Throughput::Elements(u64::try_from(CONCURRENT).unwrap()));
    g.bench_function(format!("transfer ({CONCURRENT} concurrent over {ACCOUNTS} accounts)"), |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let ops: Vec<_> = (0..CONCURRENT)
                        .map(|n| {
                            seq += 1;
                            let from = i64::try_from(n).unwrap() % ACCOUNTS;
                            let to = (from + 1 + i64::try_from(seq).unwrap() % (ACCOUNTS - 1)) % ACCOUNTS;
                            transfer(seq, from, to)
                        })
                        .collect();
                    let results = join_all(ops.into_iter().map(|op| ledger.execute(op))).await;
                    assert!(results.iter().all(Result::is_ok));
                }
                start.elapsed()
            })
        });
    });
    g.finish();
    ledger.shutdown();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = reserve_release, ledger_execute
}
criterion_main!(benches);
