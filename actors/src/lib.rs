//! payd's actor system: account and card actors, the payments coordinator and the
//! group-commit ledger writer. PostgreSQL (behind [`LedgerStore`]) is the authority;
//! actors only serialise per-account / per-card decisions and cache committed state.
//!
//! Money is always `i64` minor units. A success reply is only produced after the
//! writer's durable commit returned.

pub mod account;
pub mod card;
pub mod coordinator;
pub mod faults;
pub mod feed;
pub mod gauges;
/// The in-memory [`LedgerStore`] the actor tests, the model tests and the actor-path benchmark run
/// against; not part of the service (feature `memory-store`).
#[cfg(feature = "memory-store")]
pub mod memory;
pub mod registry;
mod shard;
pub mod store;
pub mod writer;

pub use account::{
    AccountActor, AccountError, AccountLoader, AccountRead, AccountsHandle, ActorConfig, Available, Observe, Read,
    Release, Reservation, ReservationId, Reserve,
};
pub use card::{CardActor, CardError, CardLoader, CardsHandle, CheckCredit, CheckDebit, Get, Refresh};
pub use feed::ChangeFeed;

pub use coordinator::{
    Committed, ExecError, Execute, FailureReason, Ledger, OpFailure, Operation, PaymentsCoordinator,
};
#[cfg(feature = "memory-store")]
pub use memory::{MemoryRecord, MemoryStore, UniqueKey};
pub use store::{
    AccountId, AccountSnapshot, AccountState, CardId, CardSnapshot, CardStatus, EntryOutcome, JournalEntry,
    LedgerStore, Posting, Refusal, StoreError, Totals,
};
pub use writer::{BatchHook, CommitError, LedgerWriter, WriterConfig, WriterHandle, WriterStats};
