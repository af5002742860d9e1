//! Sessions: refresh-token families in PostgreSQL (stored hashed, rotated on every use, reuse revokes the
//! family), revoked-session flags in Redis (so access tokens of a revoked session stop at once), and
//! the Redis counters behind rate limits and login lockout.

use chrono::{Duration, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::app::AppState;
use crate::identity::tokens::opaque_token;
use crate::identity::IdentityError;
use crate::ids::UserId;
use crate::storage::schema::refresh_tokens;

type Timestamp = chrono::DateTime<Utc>;
/// id, user, family, expiry, rotated, revoked.
type TokenRow = (i64, UserId, Uuid, Timestamp, Option<Timestamp>, Option<Timestamp>);

/// What a refresh attempt found.
pub enum Rotation {
    /// The new refresh token (plaintext, to return once) and its session.
    Rotated { user_id: UserId, family: Uuid, token: String },
    /// The token had already been rotated or revoked: the family is now revoked.
    Reused { family: Uuid },
}

/// Starts a session: a new family with its first refresh token. Returns (family, plaintext token).
///
/// # Errors
/// A storage error.
pub fn start(conn: &mut PgConnection, state: &AppState, user_id: UserId) -> Result<(Uuid, String), IdentityError> {
    let family = Uuid::new_v4();
    let token = insert_token(conn, state, user_id, family)?;
    Ok((family, token))
}

fn insert_token(
    conn: &mut PgConnection,
    state: &AppState,
    user_id: UserId,
    family: Uuid,
) -> Result<String, IdentityError> {
    let token = opaque_token("rt_");
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::user_id.eq(user_id),
            refresh_tokens::family_id.eq(family),
            refresh_tokens::token_hash.eq(state.keys.hash(&token)),
            refresh_tokens::expires_at.eq(Utc::now() + Duration::seconds(state.settings.auth.refresh_ttl_secs)),
        ))
        .execute(conn)?;
    Ok(token)
}

/// Rotates a refresh token inside the caller's transaction (the row is locked first, so two concurrent
/// uses of one token cannot both succeed).
///
/// # Errors
/// `InvalidToken` for unknown or expired tokens; a storage error.
pub fn rotate(conn: &mut PgConnection, state: &AppState, presented: &str) -> Result<Rotation, IdentityError> {
    let row: Option<TokenRow> = refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(state.keys.hash(presented)))
        .select((
            refresh_tokens::id,
            refresh_tokens::user_id,
            refresh_tokens::family_id,
            refresh_tokens::expires_at,
            refresh_tokens::rotated_at,
            refresh_tokens::revoked_at,
        ))
        .for_update()
        .first(conn)
        .optional()?;
    let Some((id, user_id, family, expires_at, rotated_at, revoked_at)) = row else {
        return Err(IdentityError::InvalidToken("refresh token is invalid"));
    };
    if rotated_at.is_some() || revoked_at.is_some() {
        revoke_family(conn, family)?;
        return Ok(Rotation::Reused { family });
    }
    if expires_at <= Utc::now() {
        return Err(IdentityError::InvalidToken("refresh token expired; log in again"));
    }
    diesel::update(refresh_tokens::table.find(id)).set(refresh_tokens::rotated_at.eq(Utc::now())).execute(conn)?;
    let token = insert_token(conn, state, user_id, family)?;
    Ok(Rotation::Rotated { user_id, family, token })
}

/// Revokes every live token of a family.
///
/// # Errors
/// A storage error.
pub fn revoke_family(conn: &mut PgConnection, family: Uuid) -> Result<(), IdentityError> {
    diesel::update(
        refresh_tokens::table.filter(refresh_tokens::family_id.eq(family)).filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(Utc::now()))
    .execute(conn)?;
    Ok(())
}

/// Revokes every session of a user except `keep`; returns the revoked families.
///
/// # Errors
/// A storage error.
pub fn revoke_user_sessions(
    conn: &mut PgConnection,
    user_id: UserId,
    keep: Option<Uuid>,
) -> Result<Vec<Uuid>, IdentityError> {
    let mut q = diesel::update(
        refresh_tokens::table.filter(refresh_tokens::user_id.eq(user_id)).filter(refresh_tokens::revoked_at.is_null()),
    )
    .into_boxed();
    if let Some(k) = keep {
        q = q.filter(refresh_tokens::family_id.ne(k));
    }
    let mut families: Vec<Uuid> =
        q.set(refresh_tokens::revoked_at.eq(Utc::now())).returning(refresh_tokens::family_id).get_results(conn)?;
    families.sort();
    families.dedup();
    Ok(families)
}

fn revoked_key(family: &Uuid) -> String {
    format!("sess:revoked:{family}")
}

/// Marks sessions revoked in Redis for the lifetime of an access token, so their access tokens stop working.
///
/// # Errors
/// `Cache` when Redis is unavailable.
pub async fn flag_revoked(state: &AppState, families: &[Uuid]) -> Result<(), IdentityError> {
    let keys: Vec<String> = families.iter().map(revoked_key).collect();
    let ttl = u64::try_from(state.settings.auth.access_ttl_secs).unwrap_or(900) + 60;
    state.cache.set_flags(&keys, ttl).await?;
    // Every instance's in-process list (and this one's at once); answered only after the publish.
    state.revocations.revoke(families).await?;
    Ok(())
}

/// Whether the session of an access token has been revoked.
///
/// # Errors
/// `Cache` when Redis is unavailable.
pub async fn is_revoked(state: &AppState, family: &Uuid) -> Result<bool, IdentityError> {
    use crate::identity::revocations::Known;
    match state.revocations.known(family) {
        Known::Revoked => Ok(true),
        Known::Valid => Ok(false),
        // The in-process list is not known to be current: the Redis flag decides.
        Known::Unknown => Ok(state.cache.has_flag(&revoked_key(family)).await?),
    }
}

/// Per-client rate limit on a route group.
///
/// # Errors
/// `RateLimited` with the seconds until the window ends; `Cache` when Redis is unavailable.
pub async fn rate_limit(state: &AppState, group: &str, client: &str, per_minute: u32) -> Result<(), IdentityError> {
    let (count, ttl) = state.cache.hit(&format!("rl:{group}:{client}"), 60).await?;
    if count > u64::from(per_minute) {
        return Err(IdentityError::RateLimited { retry_after: ttl.max(1) });
    }
    Ok(())
}

fn lock_key(email: &str) -> String {
    format!(
        "lock:{}",
        hex::encode(sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(email.as_bytes())))
    )
}

/// Refuses a login while the account is locked.
///
/// # Errors
/// `Locked` with the seconds left; `Cache` when Redis is unavailable.
pub async fn check_lock(state: &AppState, email: &str) -> Result<(), IdentityError> {
    let (count, ttl) = state.cache.count(&lock_key(email)).await?;
    if count >= u64::from(state.settings.auth.lockout_threshold) {
        return Err(IdentityError::Locked { retry_after: ttl.max(1) });
    }
    Ok(())
}

/// Records a failed login; returns `Locked` when this failure reaches the threshold.
///
/// # Errors
/// `Locked` or `InvalidCredentials`; `Cache` when Redis is unavailable.
pub async fn record_failure(state: &AppState, email: &str) -> IdentityError {
    match state.cache.hit(&lock_key(email), state.settings.auth.lockout_secs).await {
        Ok((count, ttl)) if count >= u64::from(state.settings.auth.lockout_threshold) => {
            IdentityError::Locked { retry_after: ttl.max(1) }
        }
        Ok(_) => IdentityError::InvalidCredentials,
        Err(e) => e.into(),
    }
}

/// Clears the failure counter after a successful login or password reset.
///
/// # Errors
/// `Cache` when Redis is unavailable.
pub async fn clear_failures(state: &AppState, email: &str) -> Result<(), IdentityError> {
    Ok(state.cache.delete(&lock_key(email)).await?)
}
