//! Merchant API keys: `pk_<key id>_<secret>`, the secret shown once and stored as a keyed hash;
//! authentication of `X-Api-Key` (only an active merchant's unrevoked, unexpired key passes).
//!
//! Keys are cached in process ([`KeyCache`]), so a payment costs no database trip to authenticate.
//! Triggers on `merchant_api_keys` and `merchants` notify channel `payd_api_keys` with the key ids
//! concerned when a revocation, rotation, expiry or merchant status change commits; every instance's
//! listener drops them. The bound is `auth.revocation_staleness_ms`, proved by the listener's own
//! heartbeat (see `storage::notified`): once the revoking request has been answered, the key is refused
//! on every instance within the bound. Expiry is checked against the clock on every request.

use std::future::{ready, Ready};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use actix_web::http::header::HeaderMap;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rand::RngCore;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::ids::{AccountId, ApiKeyId, MerchantId};
use crate::merchants::{MerchantError, MerchantStatus};
use crate::storage::notified::{Listeners, Notified};
use crate::storage::schema::{merchant_api_keys, merchants};
use crate::storage::{self, StorageError};

/// The channel the key triggers notify (migration `api_key_cache`).
const CHANNEL: &str = "payd_api_keys";

/// A key as authentication needs it, by public key id.
#[derive(Debug, Clone)]
pub struct CachedKey {
    id: ApiKeyId,
    merchant_id: MerchantId,
    secret_hash: String,
    revoked: bool,
    expires_at: Option<DateTime<Utc>>,
    blocked_until: Option<DateTime<Utc>>,
    merchant_status: MerchantStatus,
    account_id: AccountId,
    /// Unix seconds of the last `last_used_at` write (shared by the clones of this entry).
    last_used: Arc<AtomicI64>,
}

/// The API keys of one instance, invalidated by the database (see the module documentation).
pub type KeyCache = Notified<String, CachedKey>;

/// Keys cached at most per instance (a full cache starts over).
const MAX_CACHED: usize = 100_000;

/// This instance's key cache, kept by its listener.
pub fn cache(listeners: &Listeners, bound: std::time::Duration) -> KeyCache {
    Notified::start(listeners, CHANNEL, bound, MAX_CACHED)
}

pub const HEADER: &str = "x-api-key";

/// The merchant a request acts for, authenticated by its API key.
#[derive(Debug, Clone)]
pub struct MerchantPrincipal {
    pub merchant_id: MerchantId,
    pub key_id: ApiKeyId,
    pub account_id: AccountId,
    /// The public key id (`pk_<key id>_…`).
    pub public_id: String,
    /// Until when the key's payments are refused for too many declined card-data attempts.
    pub blocked_until: Option<DateTime<Utc>>,
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

type KeyRow = (
    ApiKeyId,
    MerchantId,
    String,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    MerchantStatus,
    AccountId,
);

/// Authenticates `X-Api-Key`: from the instance's key cache when it is provably current, otherwise
/// from the database (and then cached).
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
    let hash = state.keys.hash(secret);
    let key = match state.api_keys.get(key_id) {
        Some(k) => k,
        None => {
            let generation = state.api_keys.generation();
            let kid = key_id.to_owned();
            let row: Option<KeyRow> = storage::run(&state.db, move |conn| {
                merchant_api_keys::table
                    .inner_join(merchants::table)
                    .filter(merchant_api_keys::key_id.eq(&kid))
                    .select((
                        merchant_api_keys::id,
                        merchant_api_keys::merchant_id,
                        merchant_api_keys::secret_hash,
                        merchant_api_keys::revoked_at,
                        merchant_api_keys::expires_at,
                        merchant_api_keys::last_used_at,
                        merchant_api_keys::blocked_until,
                        merchants::status,
                        merchants::account_id,
                    ))
                    .first(conn)
                    .optional()
                    .map_err(StorageError::from)
            })
            .await?;
            let (
                id,
                merchant_id,
                secret_hash,
                revoked,
                expires_at,
                last_used,
                blocked_until,
                merchant_status,
                account_id,
            ) = row.ok_or(MerchantError::InvalidKey)?;
            let key = CachedKey {
                id,
                merchant_id,
                secret_hash,
                revoked: revoked.is_some(),
                expires_at,
                blocked_until,
                merchant_status,
                account_id,
                last_used: Arc::new(AtomicI64::new(last_used.map_or(0, |t| t.timestamp()))),
            };
            state.api_keys.put(generation, key_id.to_owned(), key.clone());
            key
        }
    };
    if !same(&key.secret_hash, &hash) {
        return Err(MerchantError::InvalidKey.into());
    }
    if key.revoked {
        return Err(MerchantError::RevokedKey.into());
    }
    let now = Utc::now();
    if key.expires_at.is_some_and(|e| e <= now) {
        return Err(MerchantError::ExpiredKey.into());
    }
    if key.merchant_status != MerchantStatus::Active {
        return Err(MerchantError::Inactive(key.merchant_status.to_string()).into());
    }
    // Last-used time, at most once a minute per key and instance (no write on every payment; the
    // column notifies nothing, so it does not invalidate the caches).
    let last = key.last_used.load(Ordering::Relaxed);
    if now.timestamp() - last > 60
        && key.last_used.compare_exchange(last, now.timestamp(), Ordering::AcqRel, Ordering::Relaxed).is_ok()
    {
        let (pool, id) = (state.db.clone(), key.id);
        tokio::task::spawn_blocking(move || {
            if let Ok(mut conn) = pool.get() {
                let _ = diesel::update(merchant_api_keys::table.find(id))
                    .set(merchant_api_keys::last_used_at.eq(Utc::now()))
                    .execute(&mut conn);
            }
        });
    }
    Ok(MerchantPrincipal {
        merchant_id: key.merchant_id,
        key_id: key.id,
        account_id: key.account_id,
        public_id: key_id.to_owned(),
        blocked_until: key.blocked_until.filter(|t| *t > now),
    })
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
