//! Owns the storage contract: identifiers, committed-state snapshots, journal entries and
//! the blocking [`LedgerStore`] trait that the PostgreSQL layer implements elsewhere.

/// Identifier of an account (ledger row).
pub type AccountId = i64;
/// Identifier of a card.
pub type CardId = i64;

/// Committed state of an account as the store knows it. `version` increases by >= 1 on
/// every committed change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountState {
    pub id: AccountId,
    pub balance: i64,
    pub version: i64,
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

/// Errors of a [`LedgerStore`].
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The requested account / card does not exist.
    #[error("not found")]
    NotFound,
    /// A guard or constraint refused the write (balance below floor, debit from a
    /// non-active account, duplicate idempotency key, ...). Nothing was written.
    #[error("rejected: {reason}")]
    Rejected { reason: String },
    /// Connection / infrastructure trouble; the write may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
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

    /// All-or-nothing: commits every entry of the batch in ONE transaction, or nothing.
    /// Returns the new committed state of every account touched.
    ///
    /// # Errors
    /// [`StoreError::Rejected`] when a guard/constraint refused (nothing written);
    /// [`StoreError::Unavailable`] for connection trouble.
    fn commit_batch(&mut self, entries: &[JournalEntry<Self::Record>]) -> Result<Vec<AccountState>, StoreError>;

    /// Current state of these accounts (used after a rejection so actors can resync).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; unknown ids are simply omitted.
    fn account_states(&mut self, ids: &[AccountId]) -> Result<Vec<AccountState>, StoreError>;
}
