//! `/api/v1/auth/*`: register, verify e-mail, login, refresh, logout, me, password change/forgot/reset.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Duration, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::app::AppState;
use crate::events;
use crate::http::auth::AuthUser;
use crate::http::client_ip;
use crate::http::error::ApiError;
use crate::http::routes::{Access, Api};
use crate::http::Valid;
use crate::identity::model::{self, UserView};
use crate::identity::sessions;
use crate::identity::tokens::{opaque_token, six_digit_code};
use crate::identity::{account, password, service, IdentityError};
use crate::ids::UserId;
use crate::notify::jobs::{self as mail_jobs, NewMailJob};
use crate::storage::schema::{email_verifications, password_resets};

const TAG: &str = "auth";
/// Wrong codes allowed per verification code before a new one must be requested.
pub(super) const MAX_CODE_ATTEMPTS: i32 = 5;

pub fn register(api: &mut Api) {
    use Access::{Authenticated, Public};
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/auth/register",
        Public,
        TAG,
        "Register; a verification code is e-mailed",
        web::post().to(register_user),
    );
    r.body::<RegisterRequest>(s).responds::<UserView>(201, s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/auth/verify-email",
        Public,
        TAG,
        "Verify the e-mail with the 6-digit code",
        web::post().to(verify_email),
    );
    r.body::<VerifyEmailRequest>(s).responds::<MessageResponse>(200, s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/auth/verify-email/resend",
        Public,
        TAG,
        "Send a new verification code",
        web::post().to(resend_code),
    );
    r.body::<EmailRequest>(s).responds::<MessageResponse>(200, s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/auth/login",
        Public,
        TAG,
        "Log in: access token + refresh token",
        web::post().to(login),
    );
    r.body::<LoginRequest>(s).responds::<TokenPair>(200, s).errors(&[401, 403]);
    let (r, s) =
        api.route(Method::POST, "/api/v1/auth/refresh", Public, TAG, "Rotate a refresh token", web::post().to(refresh));
    r.body::<RefreshRequest>(s).responds::<TokenPair>(200, s).errors(&[401, 403]);
    let (r, _) = api.route(
        Method::POST,
        "/api/v1/auth/logout",
        Authenticated,
        TAG,
        "Revoke the current session",
        web::post().to(logout),
    );
    r.no_content();
    let (r, s) = api.route(Method::GET, "/api/v1/auth/me", Authenticated, TAG, "The current user", web::get().to(me));
    r.responds::<UserView>(200, s);
    let (r, s) = api.route(
        Method::PUT,
        "/api/v1/auth/me/display-name",
        Authenticated,
        TAG,
        "Choose the name people paying you by card number see (null: first name and last initial)",
        web::put().to(set_display_name),
    );
    r.body::<DisplayNameRequest>(s).responds::<UserView>(200, s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/auth/password/change",
        Authenticated,
        TAG,
        "Change password; other sessions are revoked",
        web::post().to(change_password),
    );
    r.body::<ChangePasswordRequest>(s).responds::<MessageResponse>(200, s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/auth/password/forgot",
        Public,
        TAG,
        "E-mail a reset token (same answer for unknown e-mails)",
        web::post().to(forgot_password),
    );
    r.body::<EmailRequest>(s).responds::<MessageResponse>(200, s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/auth/password/reset",
        Public,
        TAG,
        "Reset the password with the e-mailed token; all sessions are revoked",
        web::post().to(reset_password),
    );
    r.body::<ResetPasswordRequest>(s).responds::<MessageResponse>(200, s).errors(&[401]);
}

fn not_blank(s: &str) -> Result<(), validator::ValidationError> {
    if s.trim().is_empty() {
        return Err(validator::ValidationError::new("blank").with_message("must not be blank".into()));
    }
    Ok(())
}

fn password_policy(s: &str) -> Result<(), validator::ValidationError> {
    password::policy(s)
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"first_name": "Ayu", "last_name": "Lestari", "email": "ayu@example.com",
    "password": "s3cret-pass", "confirm_password": "s3cret-pass"}))]
pub struct RegisterRequest {
    #[validate(
        length(min = 1, max = 100, message = "first_name must be 1-100 characters"),
        custom(function = "not_blank")
    )]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    pub first_name: String,
    #[validate(
        length(min = 1, max = 100, message = "last_name must be 1-100 characters"),
        custom(function = "not_blank")
    )]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    pub last_name: String,
    #[validate(
        email(message = "email must be a valid e-mail address"),
        length(max = 254, message = "email is too long")
    )]
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 8-128 characters with at least one letter and one digit.
    #[validate(custom(function = "password_policy"))]
    #[schema(min_length = 8, max_length = 128, pattern = "[A-Za-z][\\s\\S]*[0-9]|[0-9][\\s\\S]*[A-Za-z]")]
    pub password: String,
    #[validate(must_match(other = "password", message = "confirm_password must match password"))]
    pub confirm_password: String,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ayu@example.com", "code": "123456"}))]
pub struct VerifyEmailRequest {
    #[validate(email(message = "email must be a valid e-mail address"))]
    #[schema(format = Email)]
    pub email: String,
    /// The 6-digit code from the e-mail.
    #[validate(length(equal = 6, message = "code must be 6 digits"))]
    #[schema(min_length = 6, max_length = 6)]
    pub code: String,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ayu@example.com"}))]
pub struct EmailRequest {
    #[validate(email(message = "email must be a valid e-mail address"))]
    #[schema(format = Email)]
    pub email: String,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ayu@example.com", "password": "s3cret-pass"}))]
pub struct LoginRequest {
    #[validate(email(message = "email must be a valid e-mail address"))]
    #[schema(format = Email)]
    pub email: String,
    #[validate(length(min = 1, max = 128, message = "password must be 1-128 characters"))]
    #[schema(min_length = 1, max_length = 128)]
    pub password: String,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"refresh_token": "rt_2f1c9a…"}))]
pub struct RefreshRequest {
    #[validate(length(min = 1, max = 200, message = "refresh_token must be 1-200 characters"))]
    #[schema(min_length = 1, max_length = 200)]
    pub refresh_token: String,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"current_password": "s3cret-pass", "new_password": "n3w-secret-pass",
    "confirm_password": "n3w-secret-pass"}))]
pub struct ChangePasswordRequest {
    #[validate(length(min = 1, max = 128, message = "current_password is required"))]
    #[schema(min_length = 1, max_length = 128)]
    pub current_password: String,
    /// 8-128 characters with at least one letter and one digit.
    #[validate(custom(function = "password_policy"))]
    #[schema(min_length = 8, max_length = 128, pattern = "[A-Za-z][\\s\\S]*[0-9]|[0-9][\\s\\S]*[A-Za-z]")]
    pub new_password: String,
    #[validate(must_match(other = "new_password", message = "confirm_password must match new_password"))]
    pub confirm_password: String,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"token": "the-token-from-the-e-mail", "new_password": "n3w-secret-pass",
    "confirm_password": "n3w-secret-pass"}))]
pub struct ResetPasswordRequest {
    #[validate(length(min = 1, max = 200, message = "token must be 1-200 characters"))]
    #[schema(min_length = 1, max_length = 200)]
    pub token: String,
    /// 8-128 characters with at least one letter and one digit.
    #[validate(custom(function = "password_policy"))]
    #[schema(min_length = 8, max_length = 128, pattern = "[A-Za-z][\\s\\S]*[0-9]|[0-9][\\s\\S]*[A-Za-z]")]
    pub new_password: String,
    #[validate(must_match(other = "new_password", message = "confirm_password must match new_password"))]
    pub confirm_password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MessageResponse {
    pub message: String,
}

/// The client address used for rate limits: the TCP peer, or behind a trusted reverse proxy the
/// address it forwarded (`server.trusted_proxies`, see `http::client_ip`).
pub(crate) fn client(state: &AppState, req: &HttpRequest) -> String {
    client_ip::client_ip(req, &state.settings.server.trusted_proxies)
        .map_or_else(|| "unknown".into(), |ip| ip.to_string())
}

pub(super) async fn limit(state: &AppState, client: &str) -> Result<(), IdentityError> {
    sessions::rate_limit(state, "auth", client, state.settings.auth.auth_rate_limit_per_minute).await
}

/// Creates a fresh verification code for a user (older unused codes stop working); returns the plaintext.
pub(super) fn new_verification_code(
    conn: &mut PgConnection,
    state: &AppState,
    user_id: UserId,
) -> Result<String, IdentityError> {
    diesel::update(
        email_verifications::table
            .filter(email_verifications::user_id.eq(user_id))
            .filter(email_verifications::used_at.is_null()),
    )
    .set(email_verifications::used_at.eq(Utc::now()))
    .execute(conn)?;
    let code = six_digit_code();
    diesel::insert_into(email_verifications::table)
        .values((
            email_verifications::user_id.eq(user_id),
            email_verifications::code_hash.eq(state.keys.hash(&code)),
            email_verifications::expires_at
                .eq(Utc::now() + Duration::seconds(state.settings.auth.verification_ttl_secs)),
        ))
        .execute(conn)?;
    Ok(code)
}

/// Queues an e-mail that carries a secret (code, token) in the caller's transaction. It never goes
/// through the broker: the e-mail sender delivers it from `email_jobs` and scrubs the secret after.
pub(super) fn queue_secret_mail(
    conn: &mut PgConnection,
    kind: &str,
    to: &str,
    name: &str,
    context: serde_json::Value,
) -> Result<(), IdentityError> {
    let mut context = context;
    if let Some(obj) = context.as_object_mut() {
        obj.insert("name".into(), serde_json::json!(name));
    }
    mail_jobs::enqueue(
        conn,
        &NewMailJob {
            dedupe_key: format!("identity:{kind}:{}", uuid::Uuid::new_v4()),
            event_id: None,
            template: kind.to_owned(),
            to_address: to.to_owned(),
            context,
            sensitive: true,
        },
    )?;
    Ok(())
}

/// Adds an identity event (`user:<id>` aggregate) to the outbox in the caller's transaction.
pub(super) fn user_event(
    conn: &mut PgConnection,
    event_type: &str,
    user_id: UserId,
    extra: serde_json::Value,
) -> Result<(), IdentityError> {
    let mut payload = serde_json::json!({ "user_id": user_id });
    if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    events::insert_event(conn, &events::new_event(event_type, "user", format!("user:{user_id}"), payload))?;
    Ok(())
}

/// Issues a password-reset token for `user` and queues the e-mail carrying it (the forgot-password
/// flow and an admin's forced reset).
pub(super) fn issue_reset_token(
    conn: &mut PgConnection,
    st: &AppState,
    user: &model::User,
) -> Result<(), IdentityError> {
    let token = opaque_token("pr_");
    diesel::insert_into(password_resets::table)
        .values((
            password_resets::user_id.eq(user.id),
            password_resets::token_hash.eq(st.keys.hash(&token)),
            password_resets::expires_at.eq(Utc::now() + Duration::seconds(st.settings.auth.reset_ttl_secs)),
        ))
        .execute(conn)?;
    user_event(conn, "password.reset_requested", user.id, serde_json::json!({}))?;
    let minutes = st.settings.auth.reset_ttl_secs / 60;
    let context = serde_json::json!({ "token": token, "minutes": minutes });
    queue_secret_mail(conn, "password_reset", &user.email, &user.first_name, context)
}

/// Wakes the relay and the e-mail sender after a commit (they would find the rows on their next poll).
pub(super) fn nudge(state: &AppState) {
    state.events.nudge_relay();
    state.events.nudge_mail();
}

pub(super) fn verification_context(state: &AppState, code: &str) -> serde_json::Value {
    serde_json::json!({ "code": code, "minutes": state.settings.auth.verification_ttl_secs / 60 })
}

async fn register_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Valid<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let client = client(&state, &req);
    Ok(HttpResponse::Created().json(service::register(&state, &client, body.into_inner()).await?))
}

async fn verify_email(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Valid<VerifyEmailRequest>,
) -> Result<HttpResponse, ApiError> {
    let client = client(&state, &req);
    Ok(HttpResponse::Ok().json(service::verify_email(&state, &client, body.into_inner()).await?))
}

async fn resend_code(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Valid<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    let client = client(&state, &req);
    Ok(HttpResponse::Ok().json(account::resend_verification(&state, &client, body.into_inner()).await?))
}

pub(super) async fn issue_pair(
    state: &AppState,
    user_id: UserId,
    family: uuid::Uuid,
    refresh_token: String,
    roles: &[String],
) -> Result<TokenPair, ApiError> {
    let access = state.keys.issue_access(user_id, roles, family).map_err(ApiError::internal)?;
    Ok(TokenPair {
        access_token: access,
        token_type: "Bearer",
        expires_in: state.keys.access_ttl(),
        refresh_token,
        refresh_expires_in: state.settings.auth.refresh_ttl_secs,
    })
}

async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Valid<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let client = client(&state, &req);
    Ok(HttpResponse::Ok().json(service::login(&state, &client, body.into_inner()).await?))
}

async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Valid<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let client = client(&state, &req);
    Ok(HttpResponse::Ok().json(service::refresh(&state, &client, body.into_inner()).await?))
}

async fn logout(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    service::logout(&state, &user).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn me(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::me(&state, &user).await?))
}

/// `PUT /auth/me/display-name`.
#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"display_name": "Budi S."}))]
pub struct DisplayNameRequest {
    /// 1-50 characters, not blank, no control characters; `null` returns to the default.
    #[validate(
        length(min = 1, max = 50, message = "display_name must be 1-50 characters"),
        custom(function = "not_blank"),
        custom(function = "no_control")
    )]
    #[schema(min_length = 1, max_length = 50, example = "Budi S.")]
    pub display_name: Option<String>,
}

fn no_control(s: &str) -> Result<(), validator::ValidationError> {
    if s.chars().any(char::is_control) {
        return Err(
            validator::ValidationError::new("control").with_message("must not contain control characters".into())
        );
    }
    Ok(())
}

async fn set_display_name(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Valid<DisplayNameRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(account::set_display_name(&state, &user, body.into_inner()).await?))
}

async fn change_password(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Valid<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(account::change_password(&state, &user, body.into_inner()).await?))
}

async fn forgot_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Valid<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    let client = client(&state, &req);
    Ok(HttpResponse::Ok().json(account::forgot_password(&state, &client, body.into_inner()).await?))
}

async fn reset_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Valid<ResetPasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let client = client(&state, &req);
    Ok(HttpResponse::Ok().json(account::reset_password(&state, &client, body.into_inner()).await?))
}
