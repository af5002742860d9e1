//! Money movement: top-ups, withdrawals, card-to-card transfers and reversals, each an idempotent
//! request run through the actor ledger (card checks → reservation → group commit → reply), plus
//! the queries over operations.

pub mod archive;
pub mod execute;
pub mod idempotency;
pub mod inflight;
pub mod kind;
pub mod limits;
pub mod lists;
pub mod methods;
pub mod recipient;
pub mod routes;
pub mod service;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

pub use kind::{FailureCode, OperationKind, OperationStatus};

use crate::ids::{AccountId, ApiKeyId, CardId, MerchantId, UserId};
use crate::storage::schema::operations;
use crate::storage::StorageError;

/// Everything that can go wrong moving money; mapped to HTTP in `http::error`.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("Idempotency-Key header is required for money-moving requests")]
    MissingIdempotencyKey,
    #[error("Idempotency-Key must be 1-128 visible ASCII characters")]
    BadIdempotencyKey,
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyConflict,
    #[error("card {0} not found")]
    CardNotFound(CardId),
    #[error("card {0} belongs to another user")]
    NotCardOwner(CardId),
    #[error("operation not found")]
    OperationNotFound,
    /// Unknown and closed recipients alike (the field named is the one that carried the number).
    #[error("no open card has this number")]
    RecipientNotFound(&'static str),
    #[error("to_card_number must not be the paying card")]
    SelfPayment,
    #[error("{0}")]
    NotReversible(String),
    #[error("this order_ref was already paid")]
    OrderRefTaken,
    #[error("money records are never purged; archive them instead")]
    NeverPurged,
    #[error("the record is {0}")]
    ArchiveState(&'static str),
    #[error("the ledger is busy; retry shortly")]
    Busy,
    #[error("the outcome is not known yet; retry with the same Idempotency-Key")]
    OutcomeUnknown,
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<diesel::result::Error> for PaymentError {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::NotFound => Self::OperationNotFound,
            other => Self::Storage(other.into()),
        }
    }
}

/// A money operation as the ledger writer records it: the header of one journal entry (its postings
/// are in `postings`), immutable once committed — corrections are reversals.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = operations)]
pub struct OperationEntry {
    pub id: uuid::Uuid,
    pub kind: OperationKind,
    pub status: OperationStatus,
    pub failure_reason: Option<FailureCode>,
    pub amount: i64,
    pub currency: String,
    pub method: Option<String>,
    pub source_card_id: Option<CardId>,
    pub dest_card_id: Option<CardId>,
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub reverses_id: Option<uuid::Uuid>,
    pub initiated_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub merchant_id: Option<MerchantId>,
    pub api_key_id: Option<ApiKeyId>,
    pub order_ref: Option<String>,
}

/// A recorded operation: its entry and what the database adds to it — the commit order (`seq`, the
/// cursor of lists and of the statistics rollups) and the archive mark (the one thing that changes).
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = operations)]
pub struct Operation {
    pub seq: i64,
    #[diesel(embed)]
    pub entry: OperationEntry,
    pub archived_at: Option<DateTime<Utc>>,
}

/// An operation reads as its entry (`op.kind`, `op.amount`, …); `seq` and `archived_at` are its own.
impl std::ops::Deref for Operation {
    type Target = OperationEntry;
    fn deref(&self) -> &OperationEntry {
        &self.entry
    }
}

/// An operation as the API shows it (and as stored with its idempotency key, read back by gRPC).
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct OperationView {
    pub id: uuid::Uuid,
    pub kind: OperationKind,
    pub status: OperationStatus,
    pub failure_reason: Option<FailureCode>,
    pub amount: i64,
    pub currency: String,
    pub method: Option<String>,
    #[schema(value_type = Option<i64>)]
    pub source_card_id: Option<CardId>,
    #[schema(value_type = Option<i64>)]
    pub dest_card_id: Option<CardId>,
    /// Another user's source card, masked (`**** **** **** 1234`); `source_card_id` is then null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_card_masked: Option<String>,
    /// Another user's destination card, masked (`**** **** **** 1234`); `dest_card_id` is then null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_card_masked: Option<String>,
    pub reverses_id: Option<uuid::Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub merchant_id: Option<MerchantId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
}

impl OperationView {
    /// The view of an entry (not yet archived: `archived_at` as given).
    pub fn new(e: OperationEntry, archived_at: Option<DateTime<Utc>>) -> Self {
        Self {
            id: e.id,
            kind: e.kind,
            status: e.status,
            failure_reason: e.failure_reason,
            amount: e.amount,
            currency: e.currency,
            method: e.method,
            source_card_id: e.source_card_id,
            dest_card_id: e.dest_card_id,
            source_card_masked: None,
            dest_card_masked: None,
            reverses_id: e.reverses_id,
            merchant_id: e.merchant_id,
            order_ref: e.order_ref,
            created_at: e.created_at,
            archived_at,
        }
    }
}

impl From<Operation> for OperationView {
    fn from(o: Operation) -> Self {
        Self::new(o.entry, o.archived_at)
    }
}
