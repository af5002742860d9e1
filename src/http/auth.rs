//! Who is calling: verification of the bearer access token (and of its session), and the `AuthUser`
//! extractor that handlers use. Enforcement of each route's declared access lives in `http::routes`.

use std::future::{ready, Ready};

use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::identity::sessions;
use crate::identity::tokens::TokenError;
use crate::ids::UserId;

/// The authenticated caller, put in the request by the access middleware.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: UserId,
    pub roles: Vec<String>,
    pub session: uuid::Uuid,
}

impl AuthUser {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
    pub fn is_admin(&self) -> bool {
        self.has_role(crate::identity::model::ROLE_ADMIN)
    }
}

/// Verifies `Authorization: Bearer <access token>` and that its session is not revoked.
///
/// # Errors
/// 401 `missing_token`, `token_expired` or `invalid_token`; 503 when the session store is unreachable.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<AuthUser, ApiError> {
    authenticate_bearer(state, headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())).await
}

/// Verifies the value of an `authorization` header (HTTP) or metadata entry (gRPC).
///
/// # Errors
/// As [`authenticate`].
pub async fn authenticate_bearer(state: &AppState, raw: Option<&str>) -> Result<AuthUser, ApiError> {
    let raw = raw.ok_or_else(|| {
        ApiError::unauthorized("missing_token", "authentication required: send Authorization: Bearer <access token>")
    })?;
    let token = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "Authorization header must use the Bearer scheme"))?;
    let claims = state.keys.verify_access(token.trim()).map_err(|e| match e {
        TokenError::Expired => ApiError::unauthorized("token_expired", "access token expired; refresh it"),
        TokenError::Invalid => ApiError::unauthorized("invalid_token", "access token is invalid"),
    })?;
    let user_id: UserId =
        claims.sub.parse().map_err(|_| ApiError::unauthorized("invalid_token", "access token is invalid"))?;
    let session: uuid::Uuid =
        claims.sid.parse().map_err(|_| ApiError::unauthorized("invalid_token", "access token is invalid"))?;
    if state.settings.auth.check_revoked_sessions && sessions::is_revoked(state, &session).await? {
        return Err(ApiError::unauthorized("session_revoked", "this session was signed out; log in again"));
    }
    Ok(AuthUser { user_id, roles: claims.roles, session })
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<AuthUser>()
                .cloned()
                .ok_or_else(|| ApiError::unauthorized("missing_token", "authentication required")),
        )
    }
}
