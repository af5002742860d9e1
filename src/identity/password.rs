//! Password hashing (argon2id, off the async executor) and the password policy.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use once_cell::sync::OnceCell;
use std::borrow::Cow;
use validator::ValidationError;

/// A password nobody knows. Its hash (made once, with the configured parameters) is verified against
/// when the e-mail is unknown, so unknown and known e-mails cost the same single Argon2 verification.
const DECOY_PASSWORD: &str = "decoy-password-for-timing-equalisation";

/// Argon2id cost parameters: (memory KiB, iterations, lanes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// OWASP's current recommendation for argon2id: 19 MiB, 2 iterations, 1 lane.
pub const OWASP: Cost = Cost { memory_kib: 19_456, iterations: 2, parallelism: 1 };

static COST: OnceCell<Cost> = OnceCell::new();
static DECOY: OnceCell<String> = OnceCell::new();

/// Sets the cost of new hashes (once per process, at start-up; later calls keep the first value)
/// and precomputes the decoy hash with it.
pub fn configure(auth: &crate::config::AuthSettings) {
    let _ = COST.set(Cost {
        memory_kib: auth.argon2_memory_kib,
        iterations: auth.argon2_iterations,
        parallelism: auth.argon2_parallelism,
    });
    let _ = decoy();
}

fn argon2() -> Argon2<'static> {
    let c = COST.get().copied().unwrap_or(OWASP);
    match Params::new(c.memory_kib, c.iterations, c.parallelism, None) {
        Ok(p) => Argon2::new(Algorithm::Argon2id, Version::V0x13, p),
        Err(_) => Argon2::default(),
    }
}

fn hash_now(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

fn decoy() -> &'static str {
    DECOY.get_or_init(|| hash_now(DECOY_PASSWORD).unwrap_or_default())
}

/// Hashes a password with argon2id (the configured cost) on the blocking pool.
///
/// # Errors
/// A message when hashing fails (out of memory) or the blocking pool is gone.
pub async fn hash(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || hash_now(&password)).await.map_err(|e| e.to_string())?
}

/// Verifies a password against a stored hash, or against the precomputed decoy when `stored` is
/// `None`: exactly one Argon2 verification either way. (The stored hash carries its own parameters.)
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let real = stored.is_some();
        let stored: &str = match &stored {
            Some(s) => s,
            None => decoy(),
        };
        let Ok(parsed) = PasswordHash::new(stored) else { return false };
        // A decoy comparison is done for its timing only and never succeeds.
        argon2().verify_password(password.as_bytes(), &parsed).is_ok() && real
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
    fn default_cost_is_at_least_owasp_and_the_decoy_uses_it() {
        // Without `configure`, new hashes use OWASP's recommendation.
        let h = hash_now("s3cret-pass").unwrap();
        let parsed = PasswordHash::new(&h).unwrap();
        let p = Params::try_from(&parsed).unwrap();
        assert!(p.m_cost() >= 19_456 && p.t_cost() >= 2 && p.p_cost() >= 1, "{h}");
        assert!(decoy().starts_with("$argon2id$v=19$m="), "{}", decoy());
        // The decoy is computed once.
        assert!(std::ptr::eq(decoy(), decoy()));
    }

    #[test]
    fn policy_names_the_problem() {
        assert!(policy("short1").is_err());
        assert!(policy("lettersonly").is_err());
        assert!(policy("12345678").is_err());
        assert!(policy("good pass 1").is_ok());
    }
}
