//! Unit-level tests of account actors, card actors and the ledger writer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use payd_actors::{
    AccountError, AccountState, AccountsHandle, ActorConfig, CardError, CardSnapshot, CardStatus, CardsHandle,
    CommitError, EntryOutcome, JournalEntry, LedgerStore, LedgerWriter, MemoryRecord, MemoryStore, Posting,
    ReservationId, StoreError, WriterConfig,
};

fn cfg() -> ActorConfig {
    ActorConfig { ask_timeout: Duration::from_secs(2), ..ActorConfig::default() }
}

fn store_with(accounts: &[(i64, i64, Option<i64>)]) -> MemoryStore {
    let s = MemoryStore::new();
    for (id, bal, floor) in accounts {
        s.add_account(*id, *bal, *floor);
    }
    s
}

#[actix_rt::test]
async fn reserve_release_and_floor() {
    let s = store_with(&[(1, 100, Some(0))]);
    let h = AccountsHandle::new(2, s.account_loader(), cfg());
    h.reserve(1, ReservationId(1), 60).await.unwrap();
    assert_eq!(h.reserve(1, ReservationId(2), 50).await, Err(AccountError::InsufficientFunds { available: 40 }));
    // Duplicate reservation id is idempotent and does not double-count.
    h.reserve(1, ReservationId(1), 60).await.unwrap();
    assert_eq!(h.available(1).await.unwrap(), (100, 60, 40));
    h.reserve(1, ReservationId(3), 40).await.unwrap();
    assert_eq!(h.available(1).await.unwrap(), (100, 100, 0));
    h.release(1, ReservationId(1), vec![]).await;
    h.release(1, ReservationId(99), vec![]).await; // unknown id: no-op
    assert_eq!(h.available(1).await.unwrap(), (100, 40, 60));
    assert_eq!(h.reserve(1, ReservationId(4), 0).await, Err(AccountError::InvalidAmount));
    assert_eq!(h.reserve(1, ReservationId(4), -5).await, Err(AccountError::InvalidAmount));
    assert_eq!(h.reserve(99, ReservationId(5), 1).await, Err(AccountError::NotFound));
    assert_eq!(h.live_actors(), 1);
    h.shutdown();
}

#[actix_rt::test]
async fn negative_floor_unbounded_and_overflow() {
    let s = store_with(&[(1, 0, Some(-50)), (2, 0, None), (3, i64::MAX, Some(-10)), (4, i64::MIN, Some(i64::MIN))]);
    let h = AccountsHandle::new(1, s.account_loader(), cfg());
    h.reserve(1, ReservationId(1), 50).await.unwrap();
    assert_eq!(h.reserve(1, ReservationId(2), 1).await, Err(AccountError::InsufficientFunds { available: 0 }));
    // Unbounded: always OK, still tracked; reserved total overflow refuses.
    h.reserve(2, ReservationId(3), i64::MAX).await.unwrap();
    assert_eq!(h.available(2).await.unwrap(), (0, i64::MAX, i64::MAX));
    assert!(matches!(h.reserve(2, ReservationId(4), 1).await, Err(AccountError::InsufficientFunds { .. })));
    // balance - reserved - floor overflows -> refuse.
    assert!(matches!(h.reserve(3, ReservationId(5), 1).await, Err(AccountError::InsufficientFunds { .. })));
    assert!(matches!(h.reserve(4, ReservationId(6), 1).await, Err(AccountError::InsufficientFunds { .. })));
    h.shutdown();
}

#[actix_rt::test]
async fn observe_and_release_apply_only_newer_versions() {
    let s = store_with(&[(1, 100, Some(0))]);
    let h = AccountsHandle::new(1, s.account_loader(), cfg());
    // observe on a non-live actor does nothing (and does not load it)
    h.observe(AccountState { id: 1, balance: 5, version: 9, ..Default::default() });
    assert_eq!(h.live_actors(), 0);
    h.reserve(1, ReservationId(1), 10).await.unwrap();
    h.release(
        1,
        ReservationId(1),
        vec![
            AccountState { id: 1, balance: 90, version: 2, ..Default::default() },
            AccountState { id: 7, balance: 1, version: 50, ..Default::default() },
        ],
    )
    .await;
    assert_eq!(h.available(1).await.unwrap(), (90, 0, 90));
    h.observe(AccountState { id: 1, balance: 10, version: 1, ..Default::default() }); // older: ignored
    assert_eq!(h.available(1).await.unwrap(), (90, 0, 90));
    h.observe(AccountState { id: 1, balance: 150, version: 3, ..Default::default() });
    assert_eq!(h.available(1).await.unwrap(), (150, 0, 150));
    h.shutdown();
}

#[actix_rt::test]
async fn ttl_sweep_drops_old_reservations() {
    let s = store_with(&[(1, 100, Some(0))]);
    let c =
        ActorConfig { reservation_ttl: Duration::from_millis(60), sweep_interval: Duration::from_millis(10), ..cfg() };
    let h = AccountsHandle::new(1, s.account_loader(), c);
    h.reserve(1, ReservationId(1), 70).await.unwrap();
    assert_eq!(h.available(1).await.unwrap(), (100, 70, 30));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.available(1).await.unwrap(), (100, 0, 100));
    h.shutdown();
}

#[actix_rt::test]
async fn idle_actor_stops_and_reloads() {
    let s = store_with(&[(1, 100, Some(0)), (2, 5, Some(0))]);
    let c = ActorConfig { idle_timeout: Duration::from_millis(50), sweep_interval: Duration::from_millis(10), ..cfg() };
    let h = AccountsHandle::new(2, s.account_loader(), c);
    h.reserve(1, ReservationId(1), 10).await.unwrap();
    h.available(2).await.unwrap();
    assert_eq!(h.live_actors(), 2);
    tokio::time::sleep(Duration::from_millis(250)).await;
    // Account 1 holds a reservation: it must stay; account 2 is idle and stops.
    assert_eq!(h.live_actors(), 1);
    h.release(1, ReservationId(1), vec![]).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(h.live_actors(), 0);
    assert_eq!(h.available(1).await.unwrap(), (100, 0, 100));
    assert_eq!(h.live_actors(), 1);
    h.shutdown();
}

#[actix_rt::test]
async fn concurrent_reserves_never_overcommit() {
    let s = store_with(&[(1, 1_000, Some(0))]);
    let h = AccountsHandle::new(2, s.account_loader(), cfg());
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let h = h.clone();
        tasks.push(actix_rt::spawn(async move { h.reserve(1, ReservationId(i), 7).await }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 1_000 / 7);
    assert_eq!(h.live_actors(), 1);
    h.shutdown();
}

fn card(id: i64, status: CardStatus, expiry: (i32, u32)) -> CardSnapshot {
    CardSnapshot { id, account_id: id + 1000, owner_id: 7, status, expiry }
}

#[actix_rt::test]
async fn card_checks_refresh_and_evict() {
    let s: MemoryStore = MemoryStore::new();
    s.add_card(card(1, CardStatus::Active, (2030, 1)));
    s.add_card(card(2, CardStatus::Frozen, (2030, 1)));
    s.add_card(card(3, CardStatus::Closed, (2030, 1)));
    s.add_card(card(4, CardStatus::Active, (2025, 5)));
    let h = CardsHandle::new(2, s.card_loader(), cfg());
    let today = (2025, 6);
    assert_eq!(h.check_debit(1, today).await, Ok(1001));
    assert_eq!(h.check_debit(2, today).await, Err(CardError::Frozen));
    assert_eq!(h.check_debit(3, today).await, Err(CardError::Closed));
    assert_eq!(h.check_debit(4, today).await, Err(CardError::Expired));
    assert_eq!(h.check_debit(4, (2025, 5)).await, Ok(1004)); // valid through its month
    assert_eq!(h.check_credit(2).await, Ok(1002));
    assert_eq!(h.check_credit(3).await, Err(CardError::Closed));
    assert_eq!(h.check_credit(4).await, Ok(1004));
    assert_eq!(h.check_credit(9).await, Err(CardError::NotFound));

    // Refresh goes to the live actor.
    let frozen = s.set_card_status(1, CardStatus::Frozen).unwrap();
    assert_eq!(h.check_debit(1, today).await, Ok(1001)); // stale cache until refreshed
    h.refresh(frozen.clone());
    assert_eq!(h.check_debit(1, today).await, Err(CardError::Frozen));
    assert_eq!(h.get(1).await.unwrap(), frozen);

    // Evict: the next use reloads from the store.
    s.set_card_status(1, CardStatus::Closed).unwrap();
    let live = h.live_actors();
    h.evict(1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.live_actors(), live - 1);
    assert_eq!(h.check_debit(1, today).await, Err(CardError::Closed));
    h.shutdown();
}

// ---------------------------------------------------------------- writer

fn entry(postings: &[(i64, i64)], key: &str) -> JournalEntry<MemoryRecord> {
    JournalEntry {
        postings: postings.iter().map(|(a, m)| Posting { account: *a, amount: *m }).collect(),
        record: MemoryRecord { key: Some(key.to_string()), outcome: "ok".into() },
    }
}

#[actix_rt::test]
async fn writer_batch_split_isolates_bad_entries() {
    let s = store_with(&[(1, 100, Some(0)), (2, 0, Some(0)), (3, 0, None)]);
    let sizes = Arc::new(AtomicUsize::new(0));
    let sizes2 = Arc::clone(&sizes);
    let w = LedgerWriter::start(
        vec![s.clone()],
        WriterConfig {
            max_batch: 16,
            max_wait: Duration::from_millis(500),
            queue_capacity: 64,
            on_batch: Some(Arc::new(move |n, _lat| {
                sizes2.fetch_add(n, Ordering::Relaxed);
            })),
            ..WriterConfig::default()
        },
    );
    let mut tasks = Vec::new();
    for i in 0..8 {
        let e = match i {
            3 => entry(&[(2, -50), (3, 50)], "bad-floor"), // account 2 has 0
            5 => entry(&[(1, -1), (3, 1)], "k0"),          // duplicate key of entry 0
            _ => entry(&[(1, -1), (3, 1)], &format!("k{i}")),
        };
        let w = w.clone();
        tasks.push(actix_rt::spawn(async move { w.commit(e).await }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    for (i, r) in results.iter().enumerate() {
        match i {
            3 => match r {
                Err(CommitError::Refused { refusal, current }) => {
                    assert_eq!(*refusal, payd_actors::Refusal::InsufficientFunds { account: 2 });
                    assert_eq!(current.len(), 2);
                }
                other => panic!("entry 3: {other:?}"),
            },
            5 => assert_eq!(r, &Err(CommitError::Duplicate), "entry 5"),
            _ => {
                let states = r.as_ref().unwrap();
                assert_eq!(states.len(), 2);
                assert!(states.iter().all(|st| st.id == 1 || st.id == 3));
            }
        }
    }
    assert_eq!(s.balance(1), Some(94));
    assert_eq!(s.balance(2), Some(0));
    assert_eq!(s.balance(3), Some(6));
    assert_eq!(s.records().len(), 6);
    let st = w.stats();
    assert_eq!(st.entries(), 6);
    assert_eq!(st.rejected(), 1);
    assert_eq!(st.duplicates(), 1);
    // The batch hook runs right after the replies of its batch were sent.
    for _ in 0..100 {
        if sizes.load(Ordering::Relaxed) == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(st.batches() < 8, "entries should have been batched: {}", st.batches());
    assert_eq!(sizes.load(Ordering::Relaxed), 8);
}

#[actix_rt::test]
async fn writer_retries_unavailable_then_gives_up() {
    let s = store_with(&[(1, 100, Some(0)), (3, 0, None)]);
    let w = LedgerWriter::start(
        vec![s.clone()],
        WriterConfig { unavailable_retries: 2, retry_backoff: Duration::from_millis(1), ..WriterConfig::default() },
    );
    s.fail_next_commits(2);
    assert!(w.commit(entry(&[(1, -1), (3, 1)], "a")).await.is_ok());
    s.fail_next_commits(3);
    assert!(matches!(w.commit(entry(&[(1, -1), (3, 1)], "b")).await, Err(CommitError::Unavailable(_))));
    assert_eq!(s.balance(1), Some(99));
    assert_eq!(w.stats().unavailable(), 1);
}

/// A store whose commits block until the test opens the gate.
struct GateStore {
    entered: mpsc::Sender<()>,
    gate: mpsc::Receiver<()>,
}

impl LedgerStore for GateStore {
    type Record = ();
    fn load_account(&mut self, _id: i64) -> Result<payd_actors::AccountSnapshot, StoreError> {
        Err(StoreError::NotFound)
    }
    fn load_card(&mut self, _id: i64) -> Result<CardSnapshot, StoreError> {
        Err(StoreError::NotFound)
    }
    fn commit_batch(&mut self, entries: &[JournalEntry<()>]) -> Result<Vec<EntryOutcome>, StoreError> {
        let _ = self.entered.send(());
        self.gate.recv().map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(entries
            .iter()
            .map(|e| {
                EntryOutcome::Committed(
                    e.postings
                        .iter()
                        .map(|p| AccountState { id: p.account, balance: 0, version: 2, ..Default::default() })
                        .collect(),
                )
            })
            .collect())
    }
    fn account_states(&mut self, _ids: &[i64]) -> Result<Vec<AccountState>, StoreError> {
        Ok(vec![])
    }
}

#[actix_rt::test]
async fn writer_replies_after_commit_and_is_busy_when_full() {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (gate_tx, gate_rx) = mpsc::channel();
    let w = LedgerWriter::start(
        vec![GateStore { entered: entered_tx, gate: gate_rx }],
        WriterConfig { max_batch: 1, max_wait: Duration::ZERO, queue_capacity: 2, ..WriterConfig::default() },
    );
    let unit = |a: i64| JournalEntry { postings: vec![Posting { account: a, amount: 1 }], record: () };
    let w1 = w.clone();
    let first = actix_rt::spawn(async move { w1.commit(unit(1)).await });
    // Wait until the writer thread is inside commit_batch.
    tokio::task::spawn_blocking(move || entered_rx.recv().unwrap()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!first.is_finished(), "reply must wait for the commit");

    // Fill the queue (capacity 2), then the next submit is Busy immediately.
    let mut queued = Vec::new();
    for a in 2..4 {
        let w = w.clone();
        queued.push(actix_rt::spawn(async move { w.commit(unit(a)).await }));
    }
    while w.queued() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(w.commit(unit(9)).await, Err(CommitError::Busy));
    assert_eq!(w.stats().busy(), 1);

    for _ in 0..3 {
        gate_tx.send(()).unwrap();
    }
    let r = first.await.unwrap().unwrap();
    assert_eq!(r, vec![AccountState { id: 1, balance: 0, version: 2, ..Default::default() }]);
    for q in queued {
        assert!(q.await.unwrap().is_ok());
    }
    assert_eq!(w.stats().entries(), 3);
}
