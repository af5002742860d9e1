//! What an operation is and how it ended: enums inside the domain, text only at the database and
//! JSON edges (`operations.kind` / `operations.status` are `text` columns with CHECK constraints).

use crate::storage::text_enum::text_enum;
pub use crate::storage::text_enum::UnknownValue;

text_enum! {
    /// The kind of a money operation.
    OperationKind {
        Topup = "topup",
        Withdrawal = "withdrawal",
        Transfer = "transfer",
        /// A correction of a top-up, withdrawal or transfer: the original's postings mirrored.
        Reversal = "reversal",
        /// A merchant payment charged to a card.
        Payment = "payment",
        /// A (partial) refund of a merchant payment.
        Refund = "refund",
    }
}

text_enum! {
    /// How an operation ended: `success` moved money, `failed` is recorded with a reason and no postings.
    OperationStatus {
        Success = "success",
        Failed = "failed",
    }
}

text_enum! {
    /// Why a recorded operation failed (`operations.failure_reason`, set exactly when the status is
    /// `failed`). The card-data codes are shown to a merchant as one `card_declined`.
    FailureCode {
        /// Source and destination are the same account.
        SameAccount = "same_account",
        CardFrozen = "card_frozen",
        CardClosed = "card_closed",
        CardExpired = "card_expired",
        InsufficientFunds = "insufficient_funds",
        /// A refund would exceed what is left of its payment.
        RefundExceeded = "refund_exceeded",
        /// An integrity rule of the ledger refused the entry.
        Rejected = "rejected",
        /// No card has the number a payment named.
        CardUnknown = "card_unknown",
        InvalidExpiry = "invalid_expiry",
        InvalidCvv = "invalid_cvv",
        /// Payments on the card are locked after too many wrong card details.
        CardLocked = "card_locked",
    }
}

impl FailureCode {
    /// Failure codes about the card's data or state: a merchant sees them all as `card_declined`.
    pub const CARD_DECLINES: &'static [Self] = &[
        Self::CardUnknown,
        Self::InvalidExpiry,
        Self::InvalidCvv,
        Self::CardLocked,
        Self::CardFrozen,
        Self::CardClosed,
        Self::CardExpired,
    ];

    /// Whether a merchant sees this failure as `card_declined`.
    pub fn is_card_decline(self) -> bool {
        Self::CARD_DECLINES.contains(&self)
    }
}

impl From<&payd_actors::FailureReason> for FailureCode {
    fn from(reason: &payd_actors::FailureReason) -> Self {
        use payd_actors::FailureReason as R;
        match reason {
            R::SameAccount => Self::SameAccount,
            R::CardFrozen => Self::CardFrozen,
            R::CardClosed => Self::CardClosed,
            R::CardExpired => Self::CardExpired,
            R::InsufficientFunds => Self::InsufficientFunds,
            R::RefundExceeded => Self::RefundExceeded,
            R::Rejected(_) => Self::Rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn text_round_trips_and_unknown_values_are_refused() {
        for k in OperationKind::ALL {
            assert_eq!(k.as_str().parse::<OperationKind>(), Ok(*k));
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.as_str()));
        }
        for s in OperationStatus::ALL {
            assert_eq!(s.as_str().parse::<OperationStatus>(), Ok(*s));
        }
        assert!("pending".parse::<OperationStatus>().is_err());
        for c in FailureCode::ALL {
            assert_eq!(c.as_str().parse::<FailureCode>(), Ok(*c));
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::json!(c.as_str()));
        }
        assert_eq!(serde_json::to_value(FailureCode::InsufficientFunds).unwrap(), "insufficient_funds");
        fn agree<T: serde::Serialize + Copy + std::fmt::Display>(all: &[T]) {
            for v in all {
                assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(v.to_string()));
            }
        }
        agree(crate::cards::CardStatus::ALL);
        agree(crate::cards::CardType::ALL);
        agree(crate::merchants::MerchantStatus::ALL);
        agree(crate::merchants::documents::DocumentStatus::ALL);
        assert!("Topup".parse::<OperationKind>().is_err());
    }
}
