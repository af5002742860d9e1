//! Statistics routes: one parameterised series route, three dashboards. Each handler parses, calls
//! [`query::authorize`] with the caller's identity and one query function, and maps the result.

use std::collections::HashMap;

use actix_web::http::Method;
use actix_web::{web, HttpResponse};

use super::query::{self, Caller, DashboardView, Scope, SeriesQuery, StatsView};
use super::StatsError;
use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::routes::{Access, Api, ADMIN};
use crate::merchants::keys::MerchantPrincipal;
use crate::storage;

/// Cardholders, merchant owners and admins with a token; merchants with their API key.
pub const READERS: Access = Access::ApiKeyOrRole(&["admin", "merchant", "user"]);

pub fn register(api: &mut Api) {
    let t = "statistics";
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/stats/dashboard",
        ADMIN,
        t,
        "Platform dashboard: total balance and net totals of top-ups, withdrawals, payments, transfers",
        web::get().to(platform_dashboard),
    );
    r.responds::<DashboardView>(200, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/stats/{kind}",
        READERS,
        t,
        "Monthly or yearly figures of topup, withdrawal, transfer, payment or balance (platform: admins; \
         card_id: its holder; merchant_id / api_key_id: the merchant's owner or API key)",
        web::get().to(series),
    );
    r.query(query::PARAMS).responds::<StatsView>(200, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/cards/{id}/dashboard",
        Access::Authenticated,
        t,
        "Card dashboard: balance, top-ups, withdrawals, payments, transfers sent and received",
        web::get().to(card_dashboard),
    );
    r.responds::<DashboardView>(200, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/merchants/{id}/dashboard",
        READERS,
        t,
        "Merchant dashboard: payments, refunds and net per method (owner, admins or the merchant's API key)",
        web::get().to(merchant_dashboard),
    );
    r.responds::<DashboardView>(200, s);
}

/// Who is asking: the merchant API key if the call carried one, else the signed-in user (both
/// transports).
///
/// # Errors
/// 401 when neither is present.
pub fn caller(user: Option<AuthUser>, key: Option<MerchantPrincipal>) -> Result<Caller, ApiError> {
    match (user, key) {
        (_, Some(k)) => Ok(Caller::Key { merchant_id: k.merchant_id.get() }),
        (Some(u), None) => Ok(Caller::User { id: u.user_id.get(), admin: u.is_admin() }),
        (None, None) => Err(ApiError::unauthorized("missing_token", "authentication required")),
    }
}

fn path_id(raw: &str, what: &'static str) -> Result<i64, StatsError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or(StatsError::NotFound { field: "id", what })
}

async fn series(
    state: web::Data<AppState>,
    user: Option<AuthUser>,
    key: Option<MerchantPrincipal>,
    kind: web::Path<String>,
    params: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(user, key)?;
    let q = SeriesQuery::parse(&kind, &params)?;
    Ok(HttpResponse::Ok().json(read_series(&state, caller, q).await?))
}

/// A statistics series, after the caller's access to its scope is checked (both transports).
///
/// # Errors
/// 403 for platform figures without the admin role, 404 naming the parameter for what is not the
/// caller's; a storage error.
pub async fn read_series(state: &AppState, caller: Caller, q: SeriesQuery) -> Result<StatsView, ApiError> {
    let currency = state.settings.money.currency.clone();
    Ok(storage::run(&state.db, move |conn| {
        query::authorize(conn, caller, q.scope)?;
        query::series(conn, &q, &currency)
    })
    .await?)
}

async fn dashboard(state: &AppState, caller: Caller, scope: Scope) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(read_dashboard(state, caller, scope).await?))
}

/// A dashboard, after the caller's access is checked; the card or merchant is the request's `id`,
/// so "not yours" names `id` (both transports).
///
/// # Errors
/// 403 for the platform without the admin role, 404 naming `id`; a storage error.
pub async fn read_dashboard(state: &AppState, caller: Caller, scope: Scope) -> Result<DashboardView, ApiError> {
    let currency = state.settings.money.currency.clone();
    let view = storage::run(&state.db, move |conn| {
        query::authorize(conn, caller, scope).map_err(|e| match e {
            StatsError::NotFound { what, .. } => StatsError::NotFound { field: "id", what },
            other => other,
        })?;
        query::dashboard(conn, scope, &currency)
    })
    .await?;
    Ok(view)
}

async fn platform_dashboard(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    dashboard(&state, Caller::User { id: user.user_id.get(), admin: user.is_admin() }, Scope::Platform).await
}

async fn card_dashboard(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&id, "card")?;
    dashboard(&state, Caller::User { id: user.user_id.get(), admin: user.is_admin() }, Scope::Card(id)).await
}

async fn merchant_dashboard(
    state: web::Data<AppState>,
    user: Option<AuthUser>,
    key: Option<MerchantPrincipal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(user, key)?;
    let id = path_id(&id, "merchant")?;
    dashboard(&state, caller, Scope::Merchant(id)).await
}
