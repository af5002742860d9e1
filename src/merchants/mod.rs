//! Merchants: onboarding (apply → admin decision, an explicit state machine), documents in a blob
//! store, API keys (shown once, stored hashed, rotate/revoke), merchant payments and refunds.

pub mod blob;
pub mod documents;
pub mod keys;
pub mod payments;
pub mod routes;
pub mod service;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::http::auth::AuthUser;
use crate::ids::{AccountId, DocumentId, MerchantId, UserId};
use crate::storage::schema::merchants;
use crate::storage::text_enum::text_enum;
use crate::storage::StorageError;

/// Everything that can go wrong with merchants; mapped to HTTP in `http::error`.
#[derive(Debug, thiserror::Error)]
pub enum MerchantError {
    #[error("merchant not found")]
    NotFound,
    #[error("you do not own this merchant")]
    NotOwner,
    #[error("cannot {action} a merchant that is {current}")]
    InvalidTransition { action: &'static str, current: String },
    #[error("required documents are not approved: {0}")]
    DocumentsMissing(String),
    #[error("document not found")]
    DocumentNotFound,
    #[error("this document was replaced by version {0}; act on the current version")]
    DocumentSuperseded(DocumentId),
    #[error("document is {0}; only a document waiting for review can be withdrawn")]
    DocumentReviewed(String),
    #[error("document was withdrawn; upload or replace it instead")]
    DocumentWithdrawn,
    #[error("document changed meanwhile; read it again")]
    DocumentChanged,
    #[error("document is larger than {0} bytes")]
    DocumentTooLarge(usize),
    #[error("{0}")]
    UnsupportedDocument(String),
    #[error("{0}")]
    BadUpload(String),
    #[error("API key not found")]
    KeyNotFound,
    #[error("API key required: send X-Api-Key")]
    MissingKey,
    #[error("API key is invalid")]
    InvalidKey,
    #[error("API key has been revoked")]
    RevokedKey,
    #[error("API key has expired (rotated)")]
    ExpiredKey,
    #[error("merchant is {0}; only active merchants may do this")]
    Inactive(String),
    #[error("payment not found")]
    PaymentNotFound,
    #[error("{0}")]
    NotRefundable(String),
    #[error("blob store: {0}")]
    Blob(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<diesel::result::Error> for MerchantError {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::NotFound => Self::NotFound,
            other => Self::Storage(other.into()),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = merchants)]
pub struct Merchant {
    #[schema(value_type = i64)]
    pub id: MerchantId,
    #[schema(value_type = i64)]
    pub owner_id: UserId,
    #[schema(value_type = i64)]
    pub account_id: AccountId,
    pub business_name: String,
    pub contact_email: String,
    pub category: String,
    pub website: String,
    pub description: String,
    pub status: MerchantStatus,
    pub status_reason: Option<String>,
    #[schema(value_type = Option<i64>)]
    pub decided_by: Option<UserId>,
    pub decided_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
}

text_enum! {
    /// Where a merchant is in onboarding and after (`merchants.status`).
    MerchantStatus {
        /// Applied; waiting for an admin's decision.
        Pending = "pending",
        /// Approved: may take payments.
        Active = "active",
        Rejected = "rejected",
        /// Payments stopped until reactivated.
        Suspended = "suspended",
        Closed = "closed",
    }
}

/// Admin decisions and where each may lead: (action, from states, to state).
pub const TRANSITIONS: &[(&str, &[MerchantStatus], MerchantStatus)] = {
    use MerchantStatus::{Active, Closed, Pending, Rejected, Suspended};
    &[
        ("approve", &[Pending], Active),
        ("reject", &[Pending], Rejected),
        ("suspend", &[Active], Suspended),
        ("reactivate", &[Suspended], Active),
        ("close", &[Pending, Active, Suspended, Rejected], Closed),
    ]
};

/// The state a decision leads to from `current`.
///
/// # Errors
/// `InvalidTransition` naming the current state.
pub fn transition(action: &'static str, current: MerchantStatus) -> Result<MerchantStatus, MerchantError> {
    TRANSITIONS
        .iter()
        .find(|(a, from, _)| *a == action && from.contains(&current))
        .map(|(_, _, to)| *to)
        .ok_or_else(|| MerchantError::InvalidTransition { action, current: current.to_string() })
}

/// # Errors
/// `NotFound` or a storage error.
pub fn find(conn: &mut PgConnection, id: MerchantId) -> Result<Merchant, MerchantError> {
    Ok(merchants::table.find(id).select(Merchant::as_select()).first(conn)?)
}

/// The merchant, if the caller owns it or is an admin.
///
/// # Errors
/// `NotFound`, `NotOwner` or a storage error.
pub fn find_for(conn: &mut PgConnection, id: MerchantId, user: &AuthUser) -> Result<Merchant, MerchantError> {
    let m = find(conn, id)?;
    if m.owner_id != user.user_id && !user.is_admin() {
        return Err(MerchantError::NotOwner);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_machine() {
        use MerchantStatus::{Active, Closed, Pending, Suspended};
        assert_eq!(transition("approve", Pending).ok(), Some(Active));
        assert_eq!(transition("reactivate", Suspended).ok(), Some(Active));
        assert!(transition("approve", Active).is_err());
        assert!(transition("reactivate", Closed).is_err());
        assert!(transition("close", Closed).is_err());
        let e = transition("suspend", Pending).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("pending"), "{e}");
    }
}
