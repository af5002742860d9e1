//! The console's cookie session: sign in, refresh, who am I (with the CSRF token), sign out. Each
//! calls the same identity functions as `/api/v1/auth/*` (rate limits, lockout, revocation).

use actix_web::http::header::{CACHE_CONTROL, SET_COOKIE};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::routes::{Access, Api};
use crate::http::Valid;
use crate::identity::routes::{LoginRequest, RefreshRequest, TokenPair};
use crate::identity::service;

use super::{check_same_origin, csrf_token, set_cookie, ACCESS_COOKIE, REFRESH_COOKIE, REFRESH_PATH};

const TAG: &str = "console";

pub fn register(api: &mut Api) {
    let (r, _) = api.route(
        Method::POST,
        "/console/session",
        Access::Public,
        TAG,
        "Console sign-in: the API's login, tokens set as HttpOnly cookies",
        web::post().to(sign_in),
    );
    r.undocumented();
    let (r, _) = api.route(
        Method::POST,
        "/console/session/refresh",
        Access::Public,
        TAG,
        "Console: rotate the refresh-token cookie",
        web::post().to(refresh),
    );
    r.undocumented();
    let (r, _) = api.route(
        Method::GET,
        "/console/session",
        Access::Authenticated,
        TAG,
        "Console: the signed-in user and the session's CSRF token",
        web::get().to(current),
    );
    r.undocumented();
    let (r, _) = api.route(
        Method::DELETE,
        "/console/session",
        Access::Authenticated,
        TAG,
        "Console sign-out: revokes the session and clears the cookies",
        web::delete().to(sign_out),
    );
    r.undocumented();
}

/// What the console's scripts learn about the session (never a token that authenticates).
#[derive(Serialize)]
pub struct SessionView {
    pub user_id: i64,
    pub roles: Vec<String>,
    /// Send as `X-CSRF-Token` on every state-changing request.
    pub csrf_token: String,
}

fn host(req: &HttpRequest) -> String {
    req.connection_info().host().to_owned()
}

fn with_tokens(state: &AppState, pair: &TokenPair) -> Result<HttpResponse, ApiError> {
    let claims =
        state.keys.verify_access(&pair.access_token).map_err(|_| ApiError::internal("issued token does not verify"))?;
    let session: uuid::Uuid = claims.sid.parse().map_err(|_| ApiError::internal("issued token has no session"))?;
    let user_id: i64 = claims.sub.parse().map_err(|_| ApiError::internal("issued token has no subject"))?;
    let view = SessionView { user_id, roles: claims.roles, csrf_token: csrf_token(state, &session) };
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .append_header((SET_COOKIE, set_cookie(state, ACCESS_COOKIE, &pair.access_token, "/", pair.expires_in)))
        .append_header((
            SET_COOKIE,
            set_cookie(state, REFRESH_COOKIE, &pair.refresh_token, REFRESH_PATH, pair.refresh_expires_in),
        ))
        .json(view))
}

async fn sign_in(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Valid<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    check_same_origin(req.headers(), &host(&req))?;
    let client = crate::identity::routes::client(&state, &req);
    let pair = service::login(&state, &client, body.into_inner()).await?;
    with_tokens(&state, &pair)
}

async fn refresh(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    check_same_origin(req.headers(), &host(&req))?;
    let Some(token) = super::cookie(req.headers(), REFRESH_COOKIE).map(str::to_owned) else {
        return Err(ApiError::unauthorized("missing_token", "not signed in"));
    };
    let client = crate::identity::routes::client(&state, &req);
    let pair = service::refresh(&state, &client, RefreshRequest { refresh_token: token }).await?;
    with_tokens(&state, &pair)
}

async fn current(state: web::Data<AppState>, user: AuthUser) -> HttpResponse {
    let csrf_token = csrf_token(&state, &user.session);
    HttpResponse::Ok().insert_header((CACHE_CONTROL, "no-store")).json(SessionView {
        user_id: user.user_id.get(),
        roles: user.roles,
        csrf_token,
    })
}

async fn sign_out(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    service::logout(&state, &user).await?;
    Ok(HttpResponse::NoContent()
        .insert_header((CACHE_CONTROL, "no-store"))
        .append_header((SET_COOKIE, set_cookie(&state, ACCESS_COOKIE, "", "/", 0)))
        .append_header((SET_COOKIE, set_cookie(&state, REFRESH_COOKIE, "", REFRESH_PATH, 0)))
        .finish())
}
