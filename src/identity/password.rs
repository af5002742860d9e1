//! Password hashing (argon2id, off the async executor) and the password policy.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::borrow::Cow;
use validator::ValidationError;

/// A hash of a password nobody knows, verified against when the user does not exist so that
/// unknown and known e-mails take the same time.
const DECOY_PASSWORD: &str = "decoy-password-for-timing-equalisation";

/// Hashes a password with argon2id on the blocking pool.
///
/// # Errors
/// A message when hashing fails (out of memory) or the blocking pool is gone.
pub async fn hash(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Verifies a password against a stored hash (or against a decoy when `stored` is `None`).
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let real = stored.is_some();
        let decoy;
        let stored = match &stored {
            Some(s) => s.as_str(),
            None => {
                let salt = SaltString::generate(&mut OsRng);
                decoy = Argon2::default()
                    .hash_password(DECOY_PASSWORD.as_bytes(), &salt)
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                decoy.as_str()
            }
        };
        let Ok(parsed) = PasswordHash::new(stored) else { return false };
        // A decoy comparison is done for its timing only and never succeeds.
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && real
    })
    .await
    .unwrap_or(false)
}

/// Password policy: 8–128 characters, at least one letter and one digit, not only whitespace.
///
/// # Errors
/// A `ValidationError` whose message says what is missing.
pub fn policy(password: &str) -> Result<(), ValidationError> {
    let len = password.chars().count();
    let fail = |msg: &'static str| Err(ValidationError::new("weak_password").with_message(Cow::Borrowed(msg)));
    if len < 8 {
        return fail("password must be at least 8 characters");
    }
    if len > 128 {
        return fail("password must be at most 128 characters");
    }
    if !password.chars().any(char::is_alphabetic) || !password.chars().any(|c| c.is_ascii_digit()) {
        return fail("password must contain at least one letter and one digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let h1 = hash("s3cret-pass".into()).await.unwrap();
        let h2 = hash("s3cret-pass".into()).await.unwrap();
        assert_ne!(h1, h2);
        assert!(h1.starts_with("$argon2id$"));
        assert!(verify("s3cret-pass".into(), Some(h1.clone())).await);
        assert!(!verify("wrong-pass1".into(), Some(h1)).await);
        assert!(!verify(DECOY_PASSWORD.into(), None).await);
    }

    #[test]
    fn policy_names_the_problem() {
        assert!(policy("short1").is_err());
        assert!(policy("lettersonly").is_err());
        assert!(policy("12345678").is_err());
        assert!(policy("good pass 1").is_ok());
    }
}
