//! Merchant API keys: `pk_<key id>_<secret>`, the secret shown once and stored as a keyed hash;
//! authentication of `X-Api-Key` (only an active merchant's unrevoked, unexpired key passes).

use std::future::{ready, Ready};

use actix_web::http::header::HeaderMap;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rand::RngCore;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::merchants::MerchantError;
use crate::storage::schema::{merchant_api_keys, merchants};
use crate::storage::{self, StorageError};

pub const HEADER: &str = "x-api-key";

/// The merchant a request acts for, authenticated by its API key.
#[derive(Debug, Clone)]
pub struct MerchantPrincipal {
    pub merchant_id: i64,
    pub key_id: i64,
    pub account_id: i64,
}

/// A new key: (public key id, full key to show once).
pub fn generate() -> (String, String, String) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let key_id = hex::encode(id);
    let secret = hex::encode(secret);
    let full = format!("pk_{key_id}_{secret}");
    (key_id, secret, full)
}

fn parse(full: &str) -> Option<(&str, &str)> {
    let rest = full.strip_prefix("pk_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && secret.len() == 64 && id.chars().chain(secret.chars()).all(|c| c.is_ascii_hexdigit()))
        .then_some((id, secret))
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type KeyRow = (i64, i64, String, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<DateTime<Utc>>, String, i64);

/// Authenticates `X-Api-Key`.
///
/// # Errors
/// 401 for a missing, malformed, unknown, revoked or expired key; 403 when the merchant is not active.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<MerchantPrincipal, ApiError> {
    authenticate_key(state, headers.get(HEADER).and_then(|v| v.to_str().ok())).await
}

/// Authenticates the value of an `x-api-key` header (HTTP) or metadata entry (gRPC).
///
/// # Errors
/// As [`authenticate`].
pub async fn authenticate_key(state: &AppState, raw: Option<&str>) -> Result<MerchantPrincipal, ApiError> {
    let raw = raw.ok_or(MerchantError::MissingKey)?;
    let (key_id, secret) = parse(raw.trim()).ok_or(MerchantError::InvalidKey)?;
    let (key_id, hash) = (key_id.to_owned(), state.keys.hash(secret));
    let row: Option<KeyRow> = storage::run(&state.db, move |conn| {
        merchant_api_keys::table
            .inner_join(merchants::table)
            .filter(merchant_api_keys::key_id.eq(&key_id))
            .select((
                merchant_api_keys::id,
                merchant_api_keys::merchant_id,
                merchant_api_keys::secret_hash,
                merchant_api_keys::revoked_at,
                merchant_api_keys::expires_at,
                merchant_api_keys::last_used_at,
                merchants::status,
                merchants::account_id,
            ))
            .first(conn)
            .optional()
            .map_err(StorageError::from)
    })
    .await?;
    let (id, merchant_id, stored, revoked, expires, last_used, status, account_id) =
        row.ok_or(MerchantError::InvalidKey)?;
    if !same(&stored, &hash) {
        return Err(MerchantError::InvalidKey.into());
    }
    if revoked.is_some() {
        return Err(MerchantError::RevokedKey.into());
    }
    let now = Utc::now();
    if expires.is_some_and(|e| e <= now) {
        return Err(MerchantError::ExpiredKey.into());
    }
    if status != "active" {
        return Err(MerchantError::Inactive(status).into());
    }
    // Last-used time, at most once a minute per key (no write on every payment).
    if last_used.is_none_or(|t| now - t > chrono::Duration::seconds(60)) {
        let pool = state.db.clone();
        tokio::task::spawn_blocking(move || {
            if let Ok(mut conn) = pool.get() {
                let _ = diesel::update(merchant_api_keys::table.find(id))
                    .set(merchant_api_keys::last_used_at.eq(Utc::now()))
                    .execute(&mut conn);
            }
        });
    }
    Ok(MerchantPrincipal { merchant_id, key_id: id, account_id })
}

impl FromRequest for MerchantPrincipal {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(req.extensions().get::<MerchantPrincipal>().cloned().ok_or_else(|| MerchantError::MissingKey.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_compare() {
        let (id, secret, full) = generate();
        assert_eq!(parse(&full), Some((id.as_str(), secret.as_str())));
        assert!(parse("pk_short_x").is_none());
        assert!(parse(&full.replace("pk_", "sk_")).is_none());
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
    }
}
