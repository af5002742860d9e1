//! Owns the storage contract: identifiers, committed-state snapshots, journal entries and
//! the blocking [`LedgerStore`] trait that the PostgreSQL layer implements elsewhere.

/// Identifier of an account (ledger row).
pub type AccountId = i64;
/// Identifier of a card.
pub type CardId = i64;

/// Committed state of an account as the store knows it. `version` increases by >= 1 on
/// every committed change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountState {
    pub id: AccountId,
    pub balance: i64,
    pub version: i64,
    /// Running totals the store maintains on the account row in the same update as the balance
    /// (same version); the actors only carry them, so reads can answer from memory.
    pub totals: Totals,
}

/// Totals maintained by the store with the balance (see [`AccountState::totals`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Net amount withdrawn (successful withdrawals minus their successful reversals).
    pub withdrawn: i64,
    /// Time of the last successful withdrawal, in microseconds since the Unix epoch.
    pub last_withdrawal_us: Option<i64>,
}

/// What an account actor is started from.
#[derive(Clone, Debug)]
pub struct AccountSnapshot {
    pub state: AccountState,
    /// Lowest balance allowed; `None` = unbounded (system accounts).
    pub floor: Option<i64>,
    pub currency: String,
}

/// Lifecycle of a card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardStatus {
    Active,
    Frozen,
    Closed,
}

/// What a card actor caches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardSnapshot {
    pub id: CardId,
    pub account_id: AccountId,
    /// Owning user id.
    pub owner_id: i64,
    pub status: CardStatus,
    /// `(year, month)`; the card is valid through the end of that month.
    pub expiry: (i32, u32),
}

/// One signed movement: negative = debit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posting {
    pub account: AccountId,
    pub amount: i64,
}

/// What the writer commits: postings (may be EMPTY for a recorded failed attempt) and an
/// opaque record `R` (operation row, idempotency row, outbox rows — built by the service).
#[derive(Clone, Debug)]
pub struct JournalEntry<R> {
    pub postings: Vec<Posting>,
    pub record: R,
}

impl<R> JournalEntry<R> {
    /// Distinct accounts touched by this entry, in first-seen order.
    pub fn accounts(&self) -> Vec<AccountId> {
        let mut ids: Vec<AccountId> = Vec::with_capacity(self.postings.len());
        for p in &self.postings {
            if !ids.contains(&p.account) {
                ids.push(p.account);
            }
        }
        ids
    }
}

/// Why the store refused one entry of a batch (nothing was written for it; the rest of the batch
/// committed). Decided by the store on rows it locked, so it is the committed truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A posting would take `account` below its floor.
    InsufficientFunds { account: AccountId },
    /// `account` may not be debited: it is frozen.
    Frozen { account: AccountId },
    /// `account` is closed: it may neither be debited nor credited.
    Closed { account: AccountId },
    /// `account` does not exist.
    UnknownAccount { account: AccountId },
    /// A refund would exceed what is left of its payment.
    RefundExceeded,
}

/// What happened to one entry of a committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    /// Written; the committed states of the entry's accounts after the batch.
    Committed(Vec<AccountState>),
    /// Its unique (idempotency) key was already taken; nothing was written for it.
    Duplicate,
    /// The store refused it; `current` is the committed state of its accounts.
    Refused { refusal: Refusal, current: Vec<AccountState> },
}

/// Errors of a [`LedgerStore`].
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The requested account / card does not exist.
    #[error("not found")]
    NotFound,
    /// An integrity rule refused the batch as a whole (e.g. a unique index raced by another
    /// writer). Nothing was written; the writer isolates the entry by splitting the batch.
    #[error("rejected: {reason}")]
    Rejected { reason: String },
    /// A uniqueness rule of an operation (unique index `constraint`, e.g. one successful payment
    /// per order reference) refused the batch; the writer isolates the entry by splitting the batch.
    #[error("conflict with {constraint}")]
    Conflict { constraint: String },
    /// The connection is gone or cannot be made; the write may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A transient failure of the statement or transaction (deadlock, serialization failure, lock or
    /// statement timeout, ...); nothing was written and the same batch may be retried.
    #[error("transient store failure: {0}")]
    Transient(String),
}

impl StoreError {
    /// Whether retrying the same batch may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Transient(_))
    }
}

/// Blocking access to the authoritative store. Every method is called from a dedicated
/// OS thread (writer) or `spawn_blocking` (loaders), never from the async executor.
pub trait LedgerStore: Send + 'static {
    /// Opaque record committed alongside postings.
    type Record: Send + 'static;

    /// Loads an account.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Unavailable`].
    fn load_account(&mut self, id: AccountId) -> Result<AccountSnapshot, StoreError>;

    /// Loads a card.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Unavailable`].
    fn load_card(&mut self, id: CardId) -> Result<CardSnapshot, StoreError>;

    /// Commits the batch in ONE transaction. Each entry is decided on its own: written
    /// ([`EntryOutcome::Committed`]), skipped as a duplicate key, or refused by a guard — a
    /// duplicate or a refused entry never fails the others. Every posting keeps its account at or
    /// above its floor (checked posting by posting, in batch order), and accounts are locked in
    /// ascending id order so concurrent writers cannot deadlock. One outcome per entry, in order.
    ///
    /// # Errors
    /// [`StoreError::Rejected`] when an integrity rule refused the batch (nothing written);
    /// [`StoreError::Unavailable`] / [`StoreError::Transient`] for retryable trouble.
    fn commit_batch(&mut self, entries: &[JournalEntry<Self::Record>]) -> Result<Vec<EntryOutcome>, StoreError>;

    /// Current state of these accounts (used after a rejection so actors can resync).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; unknown ids are simply omitted.
    fn account_states(&mut self, ids: &[AccountId]) -> Result<Vec<AccountState>, StoreError>;

    /// Drops any connection or session state (called after a writer thread recovered from a panic,
    /// so a half-done transaction is rolled back by the server).
    fn reset(&mut self) {}
}
