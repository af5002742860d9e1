//! Identity as plain functions both transports call: registration, e-mail verification, login,
//! refresh, logout and the current user. Inputs are the validated request types of
//! `identity::routes` plus the caller (its address for rate limits, or its identity).

use chrono::Utc;
use diesel::prelude::*;

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::identity::model::{self, normalise_email, UserView, ROLE_USER};
use crate::identity::routes::{
    issue_pair, limit, new_verification_code, nudge, queue_secret_mail, user_event, verification_context, LoginRequest,
    MessageResponse, RefreshRequest, RegisterRequest, TokenPair, VerifyEmailRequest, MAX_CODE_ATTEMPTS,
};
use crate::identity::sessions::{self, Rotation};
use crate::identity::{password, IdentityError};
use crate::ids::UserId;
use crate::storage::schema::{email_verifications, users};
use crate::storage::{self, StorageError};

/// `register` for a client at `client` (its rate limit); `body` is validated already.
///
/// # Errors
/// The identity errors of the HTTP route (422, 401, 409, 429, …).
pub async fn register(state: &AppState, client: &str, body: RegisterRequest) -> Result<UserView, ApiError> {
    limit(state, client).await?;
    let email = normalise_email(&body.email);
    let hash = password::hash(body.password).await.map_err(ApiError::internal)?;
    let st = state.clone();
    let (first, last, em) = (body.first_name.trim().to_owned(), body.last_name.trim().to_owned(), email.clone());
    let view = storage::transaction(&state.db, move |conn| {
        let id: UserId = diesel::insert_into(users::table)
            .values((
                users::first_name.eq(&first),
                users::last_name.eq(&last),
                users::email.eq(&em),
                users::password_hash.eq(&hash),
            ))
            .returning(users::id)
            .get_result(conn)
            .map_err(|e| match StorageError::from(e) {
                StorageError::Conflict(_) => IdentityError::EmailTaken,
                other => other.into(),
            })?;
        // Least privilege: a self-registered user gets `user` and nothing else.
        model::grant_role(conn, id, ROLE_USER)?;
        let code = new_verification_code(conn, &st, id)?;
        user_event(conn, "user.registered", id, serde_json::json!({}))?;
        queue_secret_mail(conn, "verify_email", &em, &first, verification_context(&st, &code))?;
        model::user_view(conn, id)
    })
    .await?;
    crate::metrics::count("register", "success");
    tracing::info!(user_id = %view.id, "user registered");
    nudge(state);
    Ok(view)
}

/// `verify_email` for a client at `client` (its rate limit); `body` is validated already.
///
/// # Errors
/// The identity errors of the HTTP route (422, 401, 409, 429, …).
pub async fn verify_email(
    state: &AppState,
    client: &str,
    body: VerifyEmailRequest,
) -> Result<MessageResponse, ApiError> {
    limit(state, client).await?;
    let st = state.clone();
    let user = storage::transaction(&state.db, move |conn| {
        let user = model::find_user_by_email(conn, &body.email)?.ok_or(IdentityError::InvalidCode)?;
        if user.email_verified_at.is_some() {
            return Err(IdentityError::AlreadyVerified);
        }
        let pending: Option<(i64, String, i32)> = email_verifications::table
            .filter(email_verifications::user_id.eq(user.id))
            .filter(email_verifications::used_at.is_null())
            .filter(email_verifications::expires_at.gt(Utc::now()))
            .order(email_verifications::id.desc())
            .select((email_verifications::id, email_verifications::code_hash, email_verifications::attempts))
            .for_update()
            .first(conn)
            .optional()?;
        let Some((id, hash, attempts)) = pending else { return Ok(Err(IdentityError::InvalidCode)) };
        if attempts >= MAX_CODE_ATTEMPTS || hash != st.keys.hash(&body.code) {
            // Count the wrong guess (committed), then refuse.
            diesel::update(email_verifications::table.find(id))
                .set(email_verifications::attempts.eq(attempts + 1))
                .execute(conn)?;
            return Ok(Err(IdentityError::InvalidCode));
        }
        diesel::update(email_verifications::table.find(id))
            .set(email_verifications::used_at.eq(Utc::now()))
            .execute(conn)?;
        diesel::update(users::table.find(user.id))
            .set((users::email_verified_at.eq(Utc::now()), users::updated_at.eq(Utc::now())))
            .execute(conn)?;
        user_event(conn, "user.verified", user.id, serde_json::json!({}))?;
        Ok(Ok(user))
    })
    .await??;
    tracing::info!(user_id = %user.id, "e-mail verified");
    nudge(state);
    Ok(MessageResponse { message: "e-mail verified".into() })
}

/// `login` for a client at `client` (its rate limit); `body` is validated already.
///
/// # Errors
/// The identity errors of the HTTP route (422, 401, 409, 429, …).
pub async fn login(state: &AppState, client: &str, body: LoginRequest) -> Result<TokenPair, ApiError> {
    limit(state, client).await?;
    let email = normalise_email(&body.email);
    sessions::check_lock(state, &email).await?;
    let lookup = email.clone();
    let user = storage::run(&state.db, move |conn| model::find_user_by_email(conn, &lookup)).await?;
    let ok = password::verify(body.password, user.as_ref().map(|u| u.password_hash.clone())).await;
    let user = match (ok, user) {
        (true, Some(u)) => u,
        _ => {
            crate::metrics::count("login", "failed");
            return Err(sessions::record_failure(state, &email).await.into());
        }
    };
    sessions::clear_failures(state, &email).await?;
    if user.archived_at.is_some() {
        return Err(IdentityError::AccountArchived.into());
    }
    if user.email_verified_at.is_none() {
        return Err(IdentityError::EmailNotVerified.into());
    }
    let st = state.clone();
    let uid = user.id;
    let (family, token, roles) = storage::transaction(&state.db, move |conn| {
        let (family, token) = sessions::start(conn, &st, uid)?;
        Ok::<_, IdentityError>((family, token, model::role_names(conn, uid)?))
    })
    .await?;
    crate::metrics::count("login", "success");
    tracing::info!(user_id = %uid, "login");
    issue_pair(state, uid, family, token, &roles).await
}

/// `refresh` for a client at `client` (its rate limit); `body` is validated already.
///
/// # Errors
/// The identity errors of the HTTP route (422, 401, 409, 429, …).
pub async fn refresh(state: &AppState, client: &str, body: RefreshRequest) -> Result<TokenPair, ApiError> {
    limit(state, client).await?;
    let presented = body.refresh_token;
    let st = state.clone();
    let outcome = storage::transaction(&state.db, move |conn| {
        let rotation = sessions::rotate(conn, &st, &presented)?;
        let extra = match &rotation {
            Rotation::Rotated { user_id, .. } => {
                let user = model::find_user(conn, *user_id)?;
                Some((user.archived_at.is_some(), model::role_names(conn, *user_id)?))
            }
            Rotation::Reused { .. } => None,
        };
        Ok::<_, IdentityError>((rotation, extra))
    })
    .await?;
    match outcome {
        (Rotation::Reused { family }, _) => {
            sessions::flag_revoked(state, &[family]).await?;
            tracing::warn!(session = %family, "refresh token reuse: session revoked");
            crate::metrics::count("refresh", "reuse");
            Err(IdentityError::TokenReuse.into())
        }
        (Rotation::Rotated { user_id, family, token }, Some((archived, roles))) => {
            if archived {
                let fam = family;
                storage::run(&state.db, move |conn| sessions::revoke_family(conn, fam)).await?;
                return Err(IdentityError::AccountArchived.into());
            }
            crate::metrics::count("refresh", "success");
            issue_pair(state, user_id, family, token, &roles).await
        }
        (Rotation::Rotated { .. }, None) => Err(ApiError::internal("rotation without user")),
    }
}

/// Revokes the caller's session (this instance at once, others within the revocation bound).
///
/// # Errors
/// A storage or session-store error.
pub async fn logout(state: &AppState, user: &AuthUser) -> Result<(), ApiError> {
    let family = user.session;
    storage::run(&state.db, move |conn| sessions::revoke_family(conn, family)).await?;
    sessions::flag_revoked(state, &[family]).await?;
    Ok(())
}

/// The caller's profile (from the in-process cache while it is fresh).
///
/// # Errors
/// A storage error.
pub async fn me(state: &AppState, user: &AuthUser) -> Result<UserView, ApiError> {
    let id = user.user_id;
    if let Some(view) = state.profiles.get(id) {
        return Ok(view);
    }
    let generation = state.profiles.generation();
    let view = storage::run(&state.db, move |conn| model::user_view(conn, id)).await?;
    state.profiles.put(generation, view.clone());
    Ok(view)
}
