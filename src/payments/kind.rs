//! What an operation is and how it ended: enums inside the domain, text only at the database and
//! JSON edges (`operations.kind` / `operations.status` are `text` columns with CHECK constraints).

use std::fmt;
use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[derive(AsExpression, FromSqlRow)]
        #[diesel(sql_type = Text)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The stored and serialised text.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(UnknownValue(stringify!($name))),
                }
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl ToSql<Text, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
            }
        }

        impl FromSql<Text, Pg> for $name {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                let s = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
                s.parse().map_err(|e: UnknownValue| format!("{e}: {s:?}").into())
            }
        }
    };
}

/// A text value the enum does not know (a database row or request outside the CHECK list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown {0}")]
pub struct UnknownValue(&'static str);

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
        assert!("Topup".parse::<OperationKind>().is_err());
    }
}
