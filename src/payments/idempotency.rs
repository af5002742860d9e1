//! Idempotency keys: the key and a hash of the request are stored with the response in the same
//! transaction as the operation. Same key + same request → the original response; same key +
//! different request → 409.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;
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
    let s = raw.to_str().map_err(|_| PaymentError::BadIdempotencyKey)?;
    if s.is_empty() || s.len() > 128 || !s.chars().all(|c| c.is_ascii_graphic()) {
        return Err(PaymentError::BadIdempotencyKey);
    }
    Ok(s.to_owned())
}

/// Hash of what the request asks for: operation kind, target and the body in canonical form (a JSON
/// value, so object keys are sorted whatever the field order of `body`).
///
/// # Errors
/// `ApiError::internal` when the body cannot be serialised.
pub fn request_hash<T: serde::Serialize>(kind: &str, target: &str, body: &T) -> Result<String, ApiError> {
    let canonical = serde_json::to_value(body).map_err(ApiError::internal)?;
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(target.as_bytes());
    h.update([0]);
    h.update(canonical.to_string().as_bytes());
    Ok(hex::encode(h.finalize()))
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
    pub fn replay(self, request_hash: &str) -> Result<HttpResponse, PaymentError> {
        if self.request_hash != request_hash {
            return Err(PaymentError::IdempotencyConflict);
        }
        let status = StatusCode::from_u16(u16::try_from(self.status).unwrap_or(200)).unwrap_or(StatusCode::OK);
        Ok(HttpResponse::build(status).insert_header(("idempotent-replayed", "true")).json(self.body))
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
