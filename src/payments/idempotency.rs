//! Idempotency keys: the key and a fingerprint of the request are stored with the response in the same
//! transaction as the operation. Same key + same request → the original response; same key +
//! different request → 409. The fingerprint is a keyed MAC (HMAC-SHA256 under
//! `idempotency.mac_key`, its id stored in front: `<id>:<hex>`) over a canonical body in which card
//! data never appears (payments put the card's keyed PAN hash in place of number, expiry and CVV), so a
//! stored row cannot be brute-forced back into a card. Rows older than `idempotency.ttl_hours` are purged.

use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use diesel::prelude::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::IdempotencySettings;

use crate::http::error::ApiError;
use crate::payments::execute::Reply;
use crate::payments::PaymentError;
use crate::storage::schema::idempotency_keys;
use crate::storage::{self, PgPool, StorageError};

pub const HEADER: &str = "idempotency-key";

/// The caller's key from the `Idempotency-Key` header.
///
/// # Errors
/// `MissingIdempotencyKey` or `BadIdempotencyKey`.
pub fn key(req: &HttpRequest) -> Result<String, PaymentError> {
    let raw = req.headers().get(HEADER).ok_or(PaymentError::MissingIdempotencyKey)?;
    check_key(raw.to_str().ok())
}

/// Checks a key as received by either transport (`None`: present but not visible ASCII).
///
/// # Errors
/// `BadIdempotencyKey`.
pub fn check_key(raw: Option<&str>) -> Result<String, PaymentError> {
    let s = raw.ok_or(PaymentError::BadIdempotencyKey)?;
    if s.is_empty() || s.len() > 128 || !s.chars().all(|c| c.is_ascii_graphic()) {
        return Err(PaymentError::BadIdempotencyKey);
    }
    Ok(s.to_owned())
}

/// Fingerprints made before keyed MACs were introduced: their plain hash was destroyed by the
/// migration; the stored answer is still replayed (never executed twice) until the row is purged.
pub const LEGACY: &str = "legacy";

/// The fingerprint of one request: under the current key (what is stored) and, during a key
/// rotation, under the previous key (what rows stored before the rotation carry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub current: String,
    previous: Option<String>,
}

impl Fingerprint {
    /// Whether a stored fingerprint is this request's.
    pub fn matches(&self, stored: &str) -> bool {
        stored == self.current || self.previous.as_deref() == Some(stored) || stored == LEGACY
    }
}

fn mac(key: &str, id: &str, kind: &str, target: &str, canonical: &str) -> Result<String, ApiError> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).map_err(ApiError::internal)?;
    for part in [kind, target, canonical] {
        m.update(part.as_bytes());
        m.update(&[0]);
    }
    Ok(format!("{id}:{}", hex::encode(m.finalize().into_bytes())))
}

/// Fingerprint of what the request asks for: operation kind, target and the body in canonical form
/// (a JSON value, so object keys are sorted whatever the field order of `body`). Callers must not
/// pass card data in `body` (payments pass [`card_body`]).
///
/// # Errors
/// `ApiError::internal` when the body cannot be serialised.
pub fn request_hash<T: serde::Serialize>(
    cfg: &IdempotencySettings,
    kind: &str,
    target: &str,
    body: &T,
) -> Result<Fingerprint, ApiError> {
    let canonical = serde_json::to_value(body).map_err(ApiError::internal)?.to_string();
    let current = mac(cfg.mac_key.expose(), &cfg.mac_key_id, kind, target, &canonical)?;
    let previous = if cfg.previous_mac_key.is_empty() {
        None
    } else {
        Some(mac(cfg.previous_mac_key.expose(), &cfg.previous_mac_key_id, kind, target, &canonical)?)
    };
    Ok(Fingerprint { current, previous })
}

/// A stored response.
pub struct Stored {
    pub request_hash: String,
    pub status: i16,
    pub body: serde_json::Value,
}

impl Stored {
    /// Replays the stored response, or refuses when the key was used for another request.
    ///
    /// # Errors
    /// `IdempotencyConflict` when the request differs.
    pub fn replay(self, fingerprint: &Fingerprint) -> Result<Reply, PaymentError> {
        if !fingerprint.matches(&self.request_hash) {
            return Err(PaymentError::IdempotencyConflict);
        }
        let status = StatusCode::from_u16(u16::try_from(self.status).unwrap_or(200)).unwrap_or(StatusCode::OK);
        Ok(Reply { status, body: self.body, replayed: true })
    }
}

/// Stores an answer that has no operation (a request refused before any card was found), unless the
/// key is already taken. Returns whether this call stored it.
///
/// # Errors
/// A storage error.
pub fn store(
    conn: &mut PgConnection,
    scope: &str,
    key: &str,
    fingerprint: &Fingerprint,
    status: StatusCode,
    body: &serde_json::Value,
) -> Result<bool, StorageError> {
    let n = diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::scope.eq(scope),
            idempotency_keys::key.eq(key),
            idempotency_keys::request_hash.eq(&fingerprint.current),
            idempotency_keys::response_status.eq(i16::try_from(status.as_u16()).unwrap_or(500)),
            idempotency_keys::response_body.eq(body),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(n == 1)
}

/// Deletes stored answers older than `ttl_hours`, in bounded batches; returns how many.
///
/// # Errors
/// A storage error.
pub fn purge(conn: &mut PgConnection, ttl_hours: i64) -> Result<usize, StorageError> {
    let hours = i32::try_from(ttl_hours).unwrap_or(i32::MAX);
    let mut total = 0;
    loop {
        let n = diesel::sql_query(
            "DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys \
             WHERE created_at < now() - make_interval(hours => $1) LIMIT 5000)",
        )
        .bind::<diesel::sql_types::Integer, _>(hours)
        .execute(conn)?;
        total += n;
        if n < 5000 {
            return Ok(total);
        }
    }
}

/// Looks up a key in a scope, on a connection the caller already holds.
///
/// # Errors
/// A storage error.
pub fn find(conn: &mut PgConnection, scope: &str, key: &str) -> Result<Option<Stored>, StorageError> {
    idempotency_keys::table
        .find((scope, key))
        .select((idempotency_keys::request_hash, idempotency_keys::response_status, idempotency_keys::response_body))
        .first::<(String, i16, serde_json::Value)>(conn)
        .optional()
        .map(|o| o.map(|(request_hash, status, body)| Stored { request_hash, status, body }))
        .map_err(StorageError::from)
}

/// Looks up a key in a scope.
///
/// # Errors
/// A storage error.
pub async fn lookup(pool: &PgPool, scope: String, key: String) -> Result<Option<Stored>, PaymentError> {
    storage::run(pool, move |conn| {
        idempotency_keys::table
            .find((scope, key))
            .select((
                idempotency_keys::request_hash,
                idempotency_keys::response_status,
                idempotency_keys::response_body,
            ))
            .first::<(String, i16, serde_json::Value)>(conn)
            .optional()
            .map(|o| o.map(|(request_hash, status, body)| Stored { request_hash, status, body }))
            .map_err(StorageError::from)
    })
    .await
    .map_err(PaymentError::from)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Secret;

    fn cfg() -> IdempotencySettings {
        IdempotencySettings {
            mac_key: Secret::new("k2-0123456789abcdef0123456789abcdef"),
            mac_key_id: "2".into(),
            ..IdempotencySettings::default()
        }
    }

    #[test]
    fn fingerprints_are_keyed_tagged_and_canonical() {
        let c = cfg();
        let a = request_hash(&c, "payment", "", &serde_json::json!({"a": 1, "b": "x"})).unwrap();
        let b = request_hash(&c, "payment", "", &serde_json::json!({"b": "x", "a": 1})).unwrap();
        assert_eq!(a, b);
        assert!(a.current.starts_with("2:") && a.current.len() == 66, "{}", a.current);
        assert_ne!(a, request_hash(&c, "payment", "", &serde_json::json!({"a": 2, "b": "x"})).unwrap());
        assert_ne!(a, request_hash(&c, "refund", "", &serde_json::json!({"a": 1, "b": "x"})).unwrap());
        // Another key gives another MAC: without the key nothing can be recomputed.
        let other = IdempotencySettings { mac_key: Secret::new("another-key-0123456789abcdef01234567"), ..c.clone() };
        let o = request_hash(&other, "payment", "", &serde_json::json!({"a": 1, "b": "x"})).unwrap();
        assert_ne!(a.current, o.current);
        assert!(a.matches(&a.current) && a.matches(LEGACY) && !a.matches(&o.current));
    }

    #[test]
    fn a_rotated_key_still_matches_rows_made_under_the_previous_one() {
        let old = cfg();
        let stored = request_hash(&old, "topup", "", &serde_json::json!({"amount": 5})).unwrap().current;
        let rotated = IdempotencySettings {
            mac_key: Secret::new("k3-fedcba9876543210fedcba9876543210"),
            mac_key_id: "3".into(),
            previous_mac_key: old.mac_key.clone(),
            previous_mac_key_id: old.mac_key_id.clone(),
            ttl_hours: 24,
        };
        let now = request_hash(&rotated, "topup", "", &serde_json::json!({"amount": 5})).unwrap();
        assert!(now.current.starts_with("3:"));
        assert!(now.matches(&stored), "previous-key fingerprint refused");
        let different = request_hash(&rotated, "topup", "", &serde_json::json!({"amount": 6})).unwrap();
        assert!(!different.matches(&stored));
    }
}
