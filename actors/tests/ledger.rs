//! End-to-end tests of `Ledger::execute` against `MemoryStore`: a proptest model-based
//! test and a concurrency test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use payd_actors::{
    AccountsHandle, ActorConfig, CardSnapshot, CardStatus, CardsHandle, FailureReason, Ledger, LedgerWriter,
    MemoryRecord, MemoryStore, OpFailure, Operation, WriterConfig,
};
use proptest::prelude::*;

const FUND: i64 = 1;
const SETTLE: i64 = 2;
const TODAY: (i32, u32) = (2025, 6);

fn start_ledger(store: &MemoryStore, writers: usize) -> Ledger<MemoryRecord> {
    let cfg = ActorConfig { ask_timeout: Duration::from_secs(5), ..ActorConfig::default() };
    let accounts = AccountsHandle::new(2, store.account_loader(), cfg.clone());
    let cards = CardsHandle::new(2, store.card_loader(), cfg);
    let writer = LedgerWriter::start(
        (0..writers).map(|_| store.clone()).collect(),
        WriterConfig {
            max_batch: 32,
            max_wait: Duration::from_millis(1),
            queue_capacity: 8192,
            ..WriterConfig::default()
        },
    );
    Ledger::start(accounts, cards, writer, Duration::from_secs(30), 8192)
}

fn op(
    key: String,
    debit_card: Option<i64>,
    credit_card: Option<i64>,
    debit_account: i64,
    credit_account: i64,
    amount: i64,
) -> Operation<MemoryRecord> {
    let k2 = key.clone();
    Operation {
        debit_card,
        credit_card,
        debit_account,
        credit_account,
        amount,
        today: TODAY,
        on_success: Box::new(move || MemoryRecord { key: Some(key.clone()), outcome: "ok".into() }),
        on_failure: Box::new(move |r: FailureReason| MemoryRecord { key: Some(k2), outcome: r.code().to_string() }),
        span: tracing::info_span!("test-op"),
    }
}

// ------------------------------------------------------------ model-based proptest

const USERS: usize = 4;
fn account_of(i: usize) -> i64 {
    10 + i64::try_from(i).unwrap()
}
fn card_of(i: usize) -> i64 {
    100 + i64::try_from(i).unwrap()
}
fn floor_of(i: usize) -> i64 {
    if i == 2 {
        -500 // credit line
    } else {
        0
    }
}
fn expiry_of(i: usize) -> (i32, u32) {
    if i == 3 {
        (2024, 12) // expired: credits fine, debits refused
    } else {
        (2030, 12)
    }
}

#[derive(Clone, Debug)]
enum Step {
    TopUp { card: usize, amount: i64 },
    Withdraw { card: usize, amount: i64 },
    Transfer { from: usize, to: usize, amount: i64 },
    Replay { from: usize, to: usize, amount: i64, back: usize },
    Freeze(usize),
    Unfreeze(usize),
    Close(usize),
}

fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 1i64..=300, 1 => 1_000i64..=100_000]
}

fn step() -> impl Strategy<Value = Step> {
    let c = 0..USERS;
    prop_oneof![
        4 => (c.clone(), amount()).prop_map(|(card, amount)| Step::TopUp { card, amount }),
        3 => (c.clone(), amount()).prop_map(|(card, amount)| Step::Withdraw { card, amount }),
        6 => (c.clone(), c.clone(), amount()).prop_map(|(from, to, amount)| Step::Transfer { from, to, amount }),
        1 => (c.clone(), c.clone(), amount(), 0usize..8).prop_map(|(from, to, amount, back)| Step::Replay { from, to, amount, back }),
        1 => c.clone().prop_map(Step::Freeze),
        1 => c.clone().prop_map(Step::Unfreeze),
        1 => c.prop_map(Step::Close),
    ]
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed(&'static str),
    Duplicate,
}

struct Model {
    balances: BTreeMap<i64, i64>,
    status: Vec<CardStatus>,
}

impl Model {
    fn debit_check(&self, i: usize) -> Option<&'static str> {
        match self.status[i] {
            CardStatus::Closed => Some("card_closed"),
            CardStatus::Frozen => Some("card_frozen"),
            CardStatus::Active if expiry_of(i) < TODAY => Some("card_expired"),
            CardStatus::Active => None,
        }
    }
    fn credit_check(&self, i: usize) -> Option<&'static str> {
        (self.status[i] == CardStatus::Closed).then_some("card_closed")
    }
    fn funds(&self, i: usize, amount: i64) -> Option<&'static str> {
        (self.balances[&account_of(i)] - amount < floor_of(i)).then_some("insufficient_funds")
    }
    fn apply(&mut self, debit: i64, credit: i64, amount: i64) {
        *self.balances.get_mut(&debit).unwrap() -= amount;
        *self.balances.get_mut(&credit).unwrap() += amount;
    }
}

fn outcome(r: &Result<payd_actors::Committed, OpFailure<MemoryRecord>>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(OpFailure::Recorded { reason }) => Outcome::Failed(reason.code()),
        Err(OpFailure::Duplicate) => Outcome::Duplicate,
        Err(other) => panic!("unexpected failure: {other:?}"),
    }
}

fn run_model(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let store: MemoryStore = MemoryStore::new();
    store.add_account(FUND, 0, None);
    store.add_account(SETTLE, 0, None);
    let mut model = Model { balances: BTreeMap::new(), status: vec![CardStatus::Active; USERS] };
    model.balances.insert(FUND, 0);
    model.balances.insert(SETTLE, 0);
    for i in 0..USERS {
        store.add_account(account_of(i), 0, Some(floor_of(i)));
        store.add_card(CardSnapshot {
            id: card_of(i),
            account_id: account_of(i),
            owner_id: 1,
            status: CardStatus::Active,
            expiry: expiry_of(i),
        });
        model.balances.insert(account_of(i), 0);
    }

    actix_rt::System::new().block_on(async move {
        let ledger = start_ledger(&store, 2);
        let mut keys: Vec<String> = Vec::new();
        for (n, s) in steps.into_iter().enumerate() {
            let fresh = format!("op-{n}");
            let records_before = store.records().len();
            let (expected, result, move_money) = match s {
                Step::TopUp { card, amount } => {
                    let exp = model.credit_check(card).map_or(Outcome::Ok, Outcome::Failed);
                    let r = ledger
                        .execute(op(fresh.clone(), None, Some(card_of(card)), FUND, account_of(card), amount))
                        .await;
                    (exp, r, (FUND, account_of(card), amount))
                }
                Step::Withdraw { card, amount } => {
                    let exp = model
                        .debit_check(card)
                        .or_else(|| model.funds(card, amount))
                        .map_or(Outcome::Ok, Outcome::Failed);
                    let r = ledger
                        .execute(op(fresh.clone(), Some(card_of(card)), None, account_of(card), SETTLE, amount))
                        .await;
                    (exp, r, (account_of(card), SETTLE, amount))
                }
                Step::Transfer { from, to, amount } | Step::Replay { from, to, amount, .. } => {
                    let key = match (&s, keys.is_empty()) {
                        (Step::Replay { back, .. }, false) => keys[keys.len() - 1 - back % keys.len()].clone(),
                        _ => fresh.clone(),
                    };
                    let exp = if key != fresh {
                        Outcome::Duplicate
                    } else if from == to {
                        Outcome::Failed("same_account")
                    } else {
                        model
                            .debit_check(from)
                            .or_else(|| model.credit_check(to))
                            .or_else(|| model.funds(from, amount))
                            .map_or(Outcome::Ok, Outcome::Failed)
                    };
                    let r = ledger
                        .execute(op(
                            key,
                            Some(card_of(from)),
                            Some(card_of(to)),
                            account_of(from),
                            account_of(to),
                            amount,
                        ))
                        .await;
                    (exp, r, (account_of(from), account_of(to), amount))
                }
                Step::Freeze(c) | Step::Unfreeze(c) | Step::Close(c) => {
                    let new = match (&s, model.status[c]) {
                        (_, CardStatus::Closed) => CardStatus::Closed,
                        (Step::Freeze(_), _) => CardStatus::Frozen,
                        (Step::Unfreeze(_), _) => CardStatus::Active,
                        _ => CardStatus::Closed,
                    };
                    model.status[c] = new;
                    let snap = store.set_card_status(card_of(c), new).unwrap();
                    ledger.cards().refresh(snap);
                    continue;
                }
            };
            let got = outcome(&result);
            prop_assert_eq!(&got, &expected, "step {}", n);
            let added = store.records().len() - records_before;
            match got {
                Outcome::Ok => {
                    let (d, c, a) = move_money;
                    model.apply(d, c, a);
                    prop_assert_eq!(added, 1);
                    prop_assert_eq!(store.records().last().unwrap().outcome.clone(), "ok".to_string());
                    keys.push(fresh);
                }
                Outcome::Failed(code) => {
                    prop_assert_eq!(added, 1);
                    prop_assert_eq!(store.records().last().unwrap().outcome.clone(), code.to_string());
                    keys.push(fresh);
                }
                Outcome::Duplicate => prop_assert_eq!(added, 0),
            }
            for (id, bal, _) in store.accounts() {
                prop_assert_eq!(bal, model.balances[&id], "account {} after step {}", id, n);
            }
        }
        // Final invariants.
        let accounts = store.accounts();
        prop_assert_eq!(accounts.iter().map(|(_, b, _)| *b).sum::<i64>(), 0);
        for (id, bal, floor) in &accounts {
            prop_assert!(floor.is_none_or(|f| *bal >= f), "account {} below floor", id);
            prop_assert_eq!(*bal, model.balances[id]);
        }
        // Live actor caches agree with the store and hold no reservations.
        for i in 0..USERS {
            let (bal, reserved, _) = ledger.accounts().available(account_of(i)).await.unwrap();
            prop_assert_eq!(bal, model.balances[&account_of(i)]);
            prop_assert_eq!(reserved, 0);
        }
        ledger.shutdown();
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn ledger_matches_reference_model(steps in proptest::collection::vec(step(), 1..40)) {
        run_model(steps)?;
    }
}

// ------------------------------------------------------------ concurrency

#[actix_rt::test]
async fn concurrent_transfers_conserve_money() {
    const N: usize = 20;
    let store: MemoryStore = MemoryStore::new();
    store.add_account(FUND, -20_000, None);
    for i in 0..N {
        store.add_account(account_of(i), 1_000, Some(0));
        store.add_card(CardSnapshot {
            id: card_of(i),
            account_id: account_of(i),
            owner_id: 1,
            status: CardStatus::Active,
            expiry: (2030, 1),
        });
    }
    let ledger = start_ledger(&store, 2);
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    let mut tasks = Vec::new();
    for n in 0..2_000u32 {
        let from = usize::try_from(next(20)).unwrap();
        let to = usize::try_from(next(20)).unwrap();
        let amount = i64::try_from(next(100) + 1).unwrap();
        let ledger = ledger.clone();
        tasks.push(actix_rt::spawn(async move {
            let r = ledger
                .execute(op(
                    format!("c-{n}"),
                    Some(card_of(from)),
                    Some(card_of(to)),
                    account_of(from),
                    account_of(to),
                    amount,
                ))
                .await;
            (from, to, amount, r)
        }));
    }
    let mut expected: BTreeMap<i64, i64> = (0..N).map(|i| (account_of(i), 1_000)).collect();
    let (mut ok, mut failed) = (0usize, 0usize);
    let mut reasons = HashSet::new();
    for t in tasks {
        let (from, to, amount, r) = t.await.unwrap();
        match r {
            Ok(_) => {
                ok += 1;
                *expected.get_mut(&account_of(from)).unwrap() -= amount;
                *expected.get_mut(&account_of(to)).unwrap() += amount;
            }
            Err(OpFailure::Recorded { reason }) => {
                failed += 1;
                reasons.insert(reason.code());
            }
            Err(other) => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(ok + failed, 2_000);
    println!("ok={ok} failed={failed} reasons={reasons:?}");
    assert!(ok > 200, "too few successes: {ok}");
    assert!(reasons.iter().all(|r| ["same_account", "insufficient_funds", "rejected"].contains(r)), "{reasons:?}");
    assert_eq!(store.records().len(), 2_000);
    let accounts = store.accounts();
    assert_eq!(accounts.iter().map(|(_, b, _)| *b).sum::<i64>(), 0);
    for (id, bal, floor) in accounts {
        assert!(floor.is_none_or(|f| bal >= f), "account {id} below floor");
        if id != FUND {
            assert_eq!(bal, expected[&id], "account {id}");
        }
    }
    let stats = ledger.writer().stats();
    assert!(stats.batches() <= stats.entries() + stats.rejected());
    ledger.shutdown();
}
