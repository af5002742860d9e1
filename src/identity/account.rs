//! The caller's own account as plain functions both transports call: a new verification code, the
//! display name, password change, and the forgot/reset password flow. Inputs are the validated
//! request types of `identity::routes` plus the caller (its address for rate limits, or its identity).

use chrono::Utc;
use diesel::prelude::*;

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::identity::model::{self, UserView};
use crate::identity::routes::{
    issue_reset_token, limit, new_verification_code, nudge, queue_secret_mail, user_event, verification_context,
    ChangePasswordRequest, DisplayNameRequest, EmailRequest, MessageResponse, ResetPasswordRequest,
};
use crate::identity::sessions;
use crate::identity::{password, IdentityError};
use crate::ids::UserId;
use crate::storage;
use crate::storage::schema::{password_resets, users};

fn message(m: &str) -> MessageResponse {
    MessageResponse { message: m.to_owned() }
}

/// Sends a new verification code to an unverified, active address; the same answer whether or not
/// the address is registered.
///
/// # Errors
/// The rate limit (429) or a storage error.
pub async fn resend_verification(
    state: &AppState,
    client: &str,
    body: EmailRequest,
) -> Result<MessageResponse, ApiError> {
    limit(state, client).await?;
    let email = body.email;
    let st = state.clone();
    let sent = storage::transaction(&state.db, move |conn| {
        let Some(user) = model::find_user_by_email(conn, &email)? else { return Ok(None) };
        if user.email_verified_at.is_some() || user.archived_at.is_some() {
            return Ok(None);
        }
        let code = new_verification_code(conn, &st, user.id)?;
        queue_secret_mail(conn, "verification_code", &user.email, &user.first_name, verification_context(&st, &code))?;
        Ok::<_, IdentityError>(Some(()))
    })
    .await?;
    if sent.is_some() {
        nudge(state);
    }
    Ok(message("if the address is registered and not yet verified, a new code has been sent"))
}

/// Sets (or with `None` clears) the caller's display name.
///
/// # Errors
/// A storage error.
pub async fn set_display_name(
    state: &AppState,
    user: &AuthUser,
    body: DisplayNameRequest,
) -> Result<UserView, ApiError> {
    let name = body.display_name.map(|n| n.trim().to_owned());
    let uid = user.user_id;
    let view = storage::transaction(&state.db, move |conn| {
        diesel::update(users::table.find(uid))
            .set((users::display_name.eq(name), users::updated_at.eq(Utc::now())))
            .execute(conn)?;
        model::user_view(conn, uid)
    })
    .await?;
    Ok(view)
}

/// Changes the caller's password after checking the current one; every other session is revoked.
///
/// # Errors
/// A wrong current password (401) or a storage error.
pub async fn change_password(
    state: &AppState,
    user: &AuthUser,
    body: ChangePasswordRequest,
) -> Result<MessageResponse, ApiError> {
    let uid = user.user_id;
    let current = storage::run(&state.db, move |conn| model::find_user(conn, uid)).await?;
    if !password::verify(body.current_password, Some(current.password_hash)).await {
        return Err(IdentityError::WrongPassword.into());
    }
    let hash = password::hash(body.new_password).await.map_err(ApiError::internal)?;
    let keep = user.session;
    let revoked = storage::transaction(&state.db, move |conn| {
        diesel::update(users::table.find(uid))
            .set((users::password_hash.eq(&hash), users::updated_at.eq(Utc::now())))
            .execute(conn)?;
        let revoked = sessions::revoke_user_sessions(conn, uid, Some(keep))?;
        user_event(conn, "password.changed", uid, serde_json::json!({ "via": "change" }))?;
        Ok::<_, IdentityError>(revoked)
    })
    .await?;
    sessions::flag_revoked(state, &revoked).await?;
    nudge(state);
    Ok(message("password changed; other sessions were signed out"))
}

/// E-mails a reset token to an active registered address; the same answer for unknown ones.
///
/// # Errors
/// The rate limit (429) or a storage error.
pub async fn forgot_password(state: &AppState, client: &str, body: EmailRequest) -> Result<MessageResponse, ApiError> {
    limit(state, client).await?;
    let email = body.email;
    let st = state.clone();
    let issued = storage::transaction(&state.db, move |conn| {
        let Some(user) = model::find_user_by_email(conn, &email)? else { return Ok(None) };
        if user.archived_at.is_some() {
            return Ok(None);
        }
        issue_reset_token(conn, &st, &user)?;
        Ok::<_, IdentityError>(Some(()))
    })
    .await?;
    if issued.is_some() {
        nudge(state);
    }
    Ok(message("if the address is registered, a password reset token has been sent"))
}

/// Sets a new password with an e-mailed reset token (used once); every session is revoked and the
/// address counts as verified.
///
/// # Errors
/// An invalid, used or expired token (401), the rate limit (429) or a storage error.
pub async fn reset_password(
    state: &AppState,
    client: &str,
    body: ResetPasswordRequest,
) -> Result<MessageResponse, ApiError> {
    limit(state, client).await?;
    let hash = password::hash(body.new_password).await.map_err(ApiError::internal)?;
    let token_hash = state.keys.hash(&body.token);
    let (user, revoked) = storage::transaction(&state.db, move |conn| {
        let row: Option<(i64, UserId)> = password_resets::table
            .filter(password_resets::token_hash.eq(&token_hash))
            .filter(password_resets::used_at.is_null())
            .filter(password_resets::expires_at.gt(Utc::now()))
            .select((password_resets::id, password_resets::user_id))
            .for_update()
            .first(conn)
            .optional()?;
        let Some((id, uid)) = row else {
            return Err(IdentityError::InvalidToken("reset token is invalid, used or expired"));
        };
        diesel::update(password_resets::table.find(id)).set(password_resets::used_at.eq(Utc::now())).execute(conn)?;
        // The e-mail round trip also proves the address.
        diesel::update(users::table.find(uid))
            .set((users::password_hash.eq(&hash), users::updated_at.eq(Utc::now())))
            .execute(conn)?;
        diesel::update(users::table.find(uid).filter(users::email_verified_at.is_null()))
            .set(users::email_verified_at.eq(Utc::now()))
            .execute(conn)?;
        let revoked = sessions::revoke_user_sessions(conn, uid, None)?;
        user_event(conn, "password.changed", uid, serde_json::json!({ "via": "reset" }))?;
        Ok((model::find_user(conn, uid)?, revoked))
    })
    .await?;
    sessions::flag_revoked(state, &revoked).await?;
    sessions::clear_failures(state, &user.email).await?;
    nudge(state);
    Ok(message("password reset; log in with the new password"))
}
