//! Cards and their balance accounts: issue (PAN, CVV shown once), lifecycle (active → frozen ↔ active
//! → closed), archive/restore, lookups, balances and statements.

pub mod balance;
pub mod cache;
pub mod lifecycle;
pub mod pan;
pub mod routes;
pub mod service;
pub mod statements;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::http::auth::AuthUser;
use crate::ids::{AccountId, CardId, UserId};
use crate::storage::schema::{accounts, cards};
use crate::storage::text_enum::text_enum;
use crate::storage::StorageError;

text_enum! {
    /// Where a card is in its life (`cards.status`, and its account's `accounts.status`).
    CardStatus {
        Active = "active",
        /// Cannot be debited until unfrozen; can still receive money.
        Frozen = "frozen",
        /// For good; only a card with a zero balance closes.
        Closed = "closed",
    }
}

text_enum! {
    /// Debit cards spend their balance; credit cards may go below zero down to their credit limit.
    CardType {
        Debit = "debit",
        Credit = "credit",
    }
}

/// A holder's or an admin's lifecycle action on a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardAction {
    Freeze,
    Unfreeze,
    Close,
    Archive,
    Restore,
}

/// What a lifecycle action does: the new status, and the archive mark to set (`None`: unchanged;
/// `Some(None)`: cleared; `Some(Some(t))`: set).
pub type CardChange = (CardStatus, Option<Option<DateTime<Utc>>>);

impl CardAction {
    /// The path segment that names the action (`/cards/{id}/freeze`).
    pub fn from_segment(segment: &str) -> Option<Self> {
        Some(match segment {
            "freeze" => Self::Freeze,
            "unfreeze" => Self::Unfreeze,
            "close" => Self::Close,
            "archive" => Self::Archive,
            "restore" => Self::Restore,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Freeze => "freeze",
            Self::Unfreeze => "unfreeze",
            Self::Close => "close",
            Self::Archive => "archive",
            Self::Restore => "restore",
        }
    }

    /// The event recorded when the action applies.
    pub const fn event_type(self) -> &'static str {
        match self {
            Self::Freeze => "card.frozen",
            Self::Unfreeze => "card.unfrozen",
            Self::Close => "card.closed",
            Self::Archive => "card.archived",
            Self::Restore => "card.restored",
        }
    }

    /// The change this action makes to a card in `status` (archived or not), or `None` when the
    /// action does not apply there: active ⇄ frozen, active/frozen → closed, closed → archived,
    /// archived → restored (same status).
    pub fn apply(self, status: CardStatus, archived: bool, now: DateTime<Utc>) -> Option<CardChange> {
        use CardStatus::{Active, Closed, Frozen};
        match (self, status, archived) {
            (Self::Freeze, Active, false) => Some((Frozen, None)),
            (Self::Unfreeze, Frozen, false) => Some((Active, None)),
            (Self::Close, Active | Frozen, false) => Some((Closed, None)),
            (Self::Archive, Closed, false) => Some((Closed, Some(Some(now)))),
            (Self::Restore, s, true) => Some((s, Some(None))),
            _ => None,
        }
    }
}

/// Everything that can go wrong with cards; mapped to HTTP in `http::error`.
#[derive(Debug, thiserror::Error)]
pub enum CardsError {
    #[error("card not found")]
    NotFound,
    #[error("card belongs to another user")]
    NotOwner,
    #[error("only admins may {0}")]
    AdminOnly(&'static str),
    #[error("user not found or archived")]
    UnknownUser,
    #[error("cannot {action} a card that is {current}")]
    InvalidTransition { action: &'static str, current: String },
    #[error("card balance must be zero to close it (balance: {0})")]
    NonZeroBalance(i64),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("only credit cards have a credit_limit")]
    NotCreditCard,
    #[error("the card owes more than the new credit_limit allows (balance {balance}, credit_limit {limit})")]
    CreditLimitBelowBalance { balance: i64, limit: i64 },
    #[error("could not generate a unique card number; retry")]
    PanExhausted,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<diesel::result::Error> for CardsError {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::NotFound => Self::NotFound,
            other => Self::Storage(other.into()),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = cards)]
pub struct Card {
    pub id: CardId,
    pub user_id: UserId,
    pub account_id: AccountId,
    pub card_type: CardType,
    pub brand: String,
    pub pan_masked: String,
    pub pan_last4: String,
    pub expiry_month: i32,
    pub expiry_year: i32,
    pub credit_limit: i64,
    pub label: String,
    pub status: CardStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
    /// Set when payments were locked after too many wrong expiry dates or CVVs; the holder unlocks.
    pub payments_locked_at: Option<DateTime<Utc>>,
}

/// A card as the API shows it: the PAN is always masked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CardView {
    pub id: i64,
    pub user_id: i64,
    pub account_id: i64,
    pub card_type: CardType,
    pub brand: String,
    pub card_number: String,
    pub last4: String,
    pub expiry_month: i32,
    pub expiry_year: i32,
    pub credit_limit: i64,
    pub currency: String,
    pub label: String,
    pub status: CardStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
    /// Set when payments were locked after too many wrong expiry dates or CVVs; the holder unlocks.
    pub payments_locked_at: Option<DateTime<Utc>>,
}

impl CardView {
    pub fn new(c: Card, currency: &str) -> Self {
        Self {
            id: c.id.get(),
            user_id: c.user_id.get(),
            account_id: c.account_id.get(),
            card_type: c.card_type,
            brand: c.brand,
            card_number: c.pan_masked,
            last4: c.pan_last4,
            expiry_month: c.expiry_month,
            expiry_year: c.expiry_year,
            credit_limit: c.credit_limit,
            currency: currency.to_owned(),
            label: c.label,
            status: c.status,
            created_at: c.created_at,
            updated_at: c.updated_at,
            archived_at: c.archived_at,
            payments_locked_at: c.payments_locked_at,
        }
    }
}

/// # Errors
/// `NotFound` or a storage error.
pub fn find(conn: &mut PgConnection, id: CardId) -> Result<Card, CardsError> {
    Ok(cards::table.find(id).select(Card::as_select()).first(conn)?)
}

/// The card, if the caller owns it or is an admin. Someone else's card is `NotFound`, exactly like a
/// missing one, so ids cannot be enumerated.
///
/// # Errors
/// `NotFound` or a storage error.
pub fn find_for(conn: &mut PgConnection, id: CardId, user: &AuthUser) -> Result<Card, CardsError> {
    let card = find(conn, id)?;
    if card.user_id != user.user_id && !user.is_admin() {
        return Err(CardsError::NotFound);
    }
    Ok(card)
}

/// Current balance and floor of an account.
///
/// # Errors
/// `NotFound` or a storage error.
pub fn account_balance(conn: &mut PgConnection, account_id: AccountId) -> Result<(i64, Option<i64>), CardsError> {
    Ok(accounts::table.find(account_id).select((accounts::balance, accounts::min_balance)).first(conn)?)
}
