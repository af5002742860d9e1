//! Owns the in-memory [`LedgerStore`] used by tests and local runs: shared state behind
//! `Arc<Mutex<..>>` enforcing the same guards as the PostgreSQL store (all-or-nothing
//! batches, balance floors, no debit from accounts with a non-active card, unique record
//! keys) plus failure injection.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::account::AccountLoader;
use crate::card::CardLoader;
use crate::store::{
    AccountId, AccountSnapshot, AccountState, CardId, CardSnapshot, CardStatus, EntryOutcome, JournalEntry,
    LedgerStore, Refusal, StoreError,
};

/// Records that may carry a unique (idempotency) key.
pub trait UniqueKey {
    /// The unique key, if any; a second commit with the same key is rejected as duplicate.
    fn unique_key(&self) -> Option<&str>;
}

/// A simple record for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryRecord {
    pub key: Option<String>,
    pub outcome: String,
}

impl UniqueKey for MemoryRecord {
    fn unique_key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

#[derive(Clone, Debug)]
struct MemAccount {
    balance: i64,
    version: i64,
    floor: Option<i64>,
    currency: String,
}

struct Inner<R> {
    accounts: BTreeMap<AccountId, MemAccount>,
    cards: BTreeMap<CardId, CardSnapshot>,
    records: Vec<R>,
    keys: HashSet<String>,
    fail_next: usize,
    commit_calls: u64,
}

/// Shared in-memory store; clones share state (one clone per writer thread is fine).
pub struct MemoryStore<R = MemoryRecord> {
    inner: Arc<Mutex<Inner<R>>>,
}

impl<R> Clone for MemoryStore<R> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<R> fmt::Debug for MemoryStore<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.inner.lock();
        f.debug_struct("MemoryStore")
            .field("accounts", &g.accounts.len())
            .field("cards", &g.cards.len())
            .field("records", &g.records.len())
            .finish()
    }
}

impl<R> Default for MemoryStore<R> {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                accounts: BTreeMap::new(),
                cards: BTreeMap::new(),
                records: Vec::new(),
                keys: HashSet::new(),
                fail_next: 0,
                commit_calls: 0,
            })),
        }
    }
}

impl<R: UniqueKey + Clone + Send + 'static> MemoryStore<R> {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an account with version 1.
    pub fn add_account(&self, id: AccountId, balance: i64, floor: Option<i64>) {
        self.inner.lock().accounts.insert(id, MemAccount { balance, version: 1, floor, currency: "EUR".into() });
    }

    /// Adds (or replaces) a card.
    pub fn add_card(&self, card: CardSnapshot) {
        self.inner.lock().cards.insert(card.id, card);
    }

    /// Changes a card's status; returns the new snapshot (None if unknown).
    pub fn set_card_status(&self, id: CardId, status: CardStatus) -> Option<CardSnapshot> {
        let mut g = self.inner.lock();
        let card = g.cards.get_mut(&id)?;
        card.status = status;
        Some(card.clone())
    }

    /// Committed balance of an account.
    pub fn balance(&self, id: AccountId) -> Option<i64> {
        self.inner.lock().accounts.get(&id).map(|a| a.balance)
    }

    /// `(id, balance, floor)` of every account, ordered by id.
    pub fn accounts(&self) -> Vec<(AccountId, i64, Option<i64>)> {
        self.inner.lock().accounts.iter().map(|(id, a)| (*id, a.balance, a.floor)).collect()
    }

    /// Every committed record, in commit order.
    pub fn records(&self) -> Vec<R> {
        self.inner.lock().records.clone()
    }

    /// Makes the next `n` `commit_batch` calls fail with `Unavailable`.
    pub fn fail_next_commits(&self, n: usize) {
        self.inner.lock().fail_next = n;
    }

    /// Number of `commit_batch` calls so far.
    pub fn commit_calls(&self) -> u64 {
        self.inner.lock().commit_calls
    }

    /// A loader closure for [`crate::AccountsHandle::new`].
    pub fn account_loader(&self) -> AccountLoader {
        let store = self.clone();
        Arc::new(move |id| store.clone().load_account(id))
    }

    /// A loader closure for [`crate::CardsHandle::new`].
    pub fn card_loader(&self) -> CardLoader {
        let store = self.clone();
        Arc::new(move |id| store.clone().load_card(id))
    }
}

impl<R: UniqueKey + Clone + Send + 'static> LedgerStore for MemoryStore<R> {
    type Record = R;

    fn load_account(&mut self, id: AccountId) -> Result<AccountSnapshot, StoreError> {
        let g = self.inner.lock();
        let a = g.accounts.get(&id).ok_or(StoreError::NotFound)?;
        Ok(AccountSnapshot {
            state: AccountState { id, balance: a.balance, version: a.version, ..Default::default() },
            floor: a.floor,
            currency: a.currency.clone(),
        })
    }

    fn load_card(&mut self, id: CardId) -> Result<CardSnapshot, StoreError> {
        self.inner.lock().cards.get(&id).cloned().ok_or(StoreError::NotFound)
    }

    fn commit_batch(&mut self, entries: &[JournalEntry<R>]) -> Result<Vec<EntryOutcome>, StoreError> {
        let mut g = self.inner.lock();
        g.commit_calls += 1;
        if g.fail_next > 0 {
            g.fail_next -= 1;
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        // Per entry, in batch order, like the PostgreSQL store: a duplicate key or a refused guard
        // skips that entry only; every posting keeps its account at or above its floor.
        let mut work: BTreeMap<AccountId, (i64, i64)> = BTreeMap::new();
        let mut batch_keys: HashSet<String> = HashSet::new();
        let mut decided: Vec<Result<(), EntryOutcome>> = Vec::with_capacity(entries.len());
        for entry in entries {
            if let Some(k) = entry.record.unique_key() {
                if g.keys.contains(k) || !batch_keys.insert(k.to_owned()) {
                    decided.push(Err(EntryOutcome::Duplicate));
                    continue;
                }
            }
            let mut trial = work.clone();
            let mut refusal = None;
            for p in &entry.postings {
                let Some(acct) = g.accounts.get(&p.account) else {
                    refusal = Some(Refusal::UnknownAccount { account: p.account });
                    break;
                };
                if p.amount < 0 {
                    if let Some(c) =
                        g.cards.values().find(|c| c.account_id == p.account && c.status != CardStatus::Active)
                    {
                        refusal = Some(if c.status == CardStatus::Closed {
                            Refusal::Closed { account: p.account }
                        } else {
                            Refusal::Frozen { account: p.account }
                        });
                        break;
                    }
                }
                let (balance, _) = trial.entry(p.account).or_insert((acct.balance, acct.version));
                let Some(next) = balance.checked_add(p.amount) else {
                    refusal = Some(Refusal::InsufficientFunds { account: p.account });
                    break;
                };
                if acct.floor.is_some_and(|f| next < f) {
                    refusal = Some(Refusal::InsufficientFunds { account: p.account });
                    break;
                }
                *balance = next;
            }
            match refusal {
                Some(refusal) => {
                    if let Some(k) = entry.record.unique_key() {
                        batch_keys.remove(k);
                    }
                    let current = entry
                        .accounts()
                        .iter()
                        .filter_map(|id| {
                            g.accounts.get(id).map(|a| AccountState {
                                id: *id,
                                balance: a.balance,
                                version: a.version,
                                ..Default::default()
                            })
                        })
                        .collect();
                    decided.push(Err(EntryOutcome::Refused { refusal, current }));
                }
                None => {
                    work = trial;
                    decided.push(Ok(()));
                }
            }
        }
        let mut finals: BTreeMap<AccountId, AccountState> = BTreeMap::new();
        for (id, (balance, _)) in &work {
            if let Some(a) = g.accounts.get_mut(id) {
                a.balance = *balance;
                a.version += 1;
                finals.insert(
                    *id,
                    AccountState { id: *id, balance: a.balance, version: a.version, ..Default::default() },
                );
            }
        }
        let mut out = Vec::with_capacity(entries.len());
        for (entry, d) in entries.iter().zip(decided) {
            match d {
                Ok(()) => {
                    if let Some(k) = entry.record.unique_key() {
                        g.keys.insert(k.to_string());
                    }
                    g.records.push(entry.record.clone());
                    out.push(EntryOutcome::Committed(
                        entry.accounts().iter().filter_map(|id| finals.get(id).copied()).collect(),
                    ));
                }
                Err(o) => out.push(o),
            }
        }
        Ok(out)
    }

    fn account_states(&mut self, ids: &[AccountId]) -> Result<Vec<AccountState>, StoreError> {
        let g = self.inner.lock();
        Ok(ids
            .iter()
            .filter_map(|id| {
                g.accounts.get(id).map(|a| AccountState {
                    id: *id,
                    balance: a.balance,
                    version: a.version,
                    ..Default::default()
                })
            })
            .collect())
    }
}
