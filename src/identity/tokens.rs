//! Credentials: access tokens (JWT, HS256), opaque refresh and reset tokens, one-time codes, and the
//! keyed hashes under which they are stored. Nothing here is ever logged.

use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::AuthSettings;
use crate::ids::UserId;

/// Access-token claims. `typ` is always `access`, so no other token kind can pass as one.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub roles: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
    /// The session (refresh-token family) this token belongs to.
    pub sid: String,
    pub typ: String,
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    access_ttl: i64,
    /// Key for hashing short codes and tokens before storage.
    pepper: Vec<u8>,
}

/// Why a token was refused (kept vague toward clients).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("access token expired")]
    Expired,
    #[error("access token invalid")]
    Invalid,
}

impl TokenKeys {
    pub fn new(auth: &AuthSettings) -> Self {
        let secret = auth.jwt_secret.expose().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[auth.issuer.as_str()]);
        validation.set_audience(&[auth.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        let mut pepper = Sha256::new();
        pepper.update(b"payd token pepper v1:");
        pepper.update(secret);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            access_ttl: auth.access_ttl_secs,
            pepper: pepper.finalize().to_vec(),
        }
    }

    pub fn access_ttl(&self) -> i64 {
        self.access_ttl
    }

    /// Issues an access token for a user and session.
    ///
    /// # Errors
    /// `TokenError::Invalid` if signing fails (it does not with HS256 and a valid key).
    pub fn issue_access(&self, user_id: UserId, roles: &[String], session: uuid::Uuid) -> Result<String, TokenError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            roles: roles.to_vec(),
            iat: now,
            exp: now + self.access_ttl,
            jti: uuid::Uuid::new_v4().to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sid: session.to_string(),
            typ: "access".into(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|_| TokenError::Invalid)
    }

    /// Verifies signature, issuer, audience, expiry and type.
    ///
    /// # Errors
    /// `TokenError::Expired` or `TokenError::Invalid`.
    pub fn verify_access(&self, token: &str) -> Result<Claims, TokenError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })?;
        if data.claims.typ != "access" {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
    }

    /// Keyed hash (HMAC-SHA256, hex) under which codes and tokens are stored.
    pub fn hash(&self, value: &str) -> String {
        match <Hmac<Sha256> as Mac>::new_from_slice(&self.pepper) {
            Ok(mut mac) => {
                mac.update(value.as_bytes());
                hex::encode(mac.finalize().into_bytes())
            }
            Err(_) => hex::encode(Sha256::digest(value.as_bytes())),
        }
    }
}

/// A random opaque token with a recognisable prefix (`rt_` refresh, `pr_` password reset, …).
pub fn opaque_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A uniformly random 6-digit code.
pub fn six_digit_code() -> String {
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::Settings;

    fn keys() -> TokenKeys {
        let s = Settings::load_from("test", std::path::Path::new("config"), false).unwrap();
        TokenKeys::new(&s.auth)
    }

    #[test]
    fn access_token_round_trip() {
        let k = keys();
        let sid = uuid::Uuid::new_v4();
        let t = k.issue_access(UserId::new(7), &["user".into()], sid).unwrap();
        let c = k.verify_access(&t).unwrap();
        assert_eq!(c.sub, "7");
        assert_eq!(c.sid, sid.to_string());
    }

    #[test]
    fn tampered_and_foreign_tokens_fail() {
        let k = keys();
        let t = k.issue_access(UserId::new(7), &["user".into()], uuid::Uuid::new_v4()).unwrap();
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            br#"{"sub":"1","roles":["admin"],"iat":0,"exp":9999999999,"jti":"x","iss":"payd","aud":"payd-api","sid":"x","typ":"access"}"#,
        );
        assert_eq!(k.verify_access(&parts.join(".")).err(), Some(TokenError::Invalid));
        assert_eq!(k.verify_access(&opaque_token("rt_")).err(), Some(TokenError::Invalid));
    }

    #[test]
    fn codes_are_six_digits_and_hashes_are_keyed() {
        let k = keys();
        let c = six_digit_code();
        assert_eq!(c.len(), 6);
        assert!(c.chars().all(|d| d.is_ascii_digit()));
        assert_ne!(k.hash("123456"), hex::encode(Sha256::digest(b"123456")));
        assert_eq!(k.hash("a"), k.hash("a"));
    }
}
