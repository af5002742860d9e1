//! Typed ids: a user id cannot be passed where a card id is expected. Each is a `bigint` in the
//! database and a plain integer in JSON; the bare `i64` appears only at those edges (request and
//! response bodies, path segments, raw SQL binds).

use std::fmt;
use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::BigInt;
use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($($(#[$meta:meta])* $name:ident;)+) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[derive(AsExpression, FromSqlRow)]
        #[diesel(sql_type = BigInt)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The id as stored.
            pub const fn new(raw: i64) -> Self {
                Self(raw)
            }
            /// The stored value, for the JSON and SQL edges.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl From<i64> for $name {
            fn from(raw: i64) -> Self {
                Self(raw)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }

        impl ToSql<BigInt, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <i64 as ToSql<BigInt, Pg>>::to_sql(&self.0, out)
            }
        }

        impl FromSql<BigInt, Pg> for $name {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                <i64 as FromSql<BigInt, Pg>>::from_sql(bytes).map(Self)
            }
        }
    )+};
}

id_type! {
    /// A user (`users.id`).
    UserId;
    /// A card (`cards.id`).
    CardId;
    /// A balance account (`accounts.id`): a card's, a merchant's or a platform account.
    AccountId;
    /// A merchant (`merchants.id`).
    MerchantId;
    /// A merchant API key (`merchant_api_keys.id`).
    ApiKeyId;
    /// A merchant document version (`merchant_documents.id`).
    DocumentId;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_are_plain_integers_in_json_and_text() {
        let id = CardId::new(42);
        assert_eq!(serde_json::to_value(id).unwrap(), serde_json::json!(42));
        assert_eq!(serde_json::from_value::<CardId>(serde_json::json!(42)).unwrap(), id);
        assert_eq!(id.to_string(), "42");
        assert_eq!("42".parse::<CardId>().unwrap(), id);
        assert!("4x".parse::<CardId>().is_err());
        assert_eq!(i64::from(UserId::from(7)), 7);
    }
}
