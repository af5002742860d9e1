//! The console: the web interface served at `/console` (static HTML, CSS and ES modules embedded in
//! the binary) and its cookie session. The console's scripts call the JSON API under `/api/v1` like
//! any other client, so every page obeys the API's route table: there is no second set of rules.
//!
//! Security model (see docs/console.md):
//! - `POST /console/session` signs in with the API's login (same rate limits and lockout) and sets the
//!   access token (`payd_at`, `Path=/`) and the refresh token (`payd_rt`, `Path=/console/session`) as
//!   `HttpOnly; SameSite=Strict` cookies (`Secure` outside development). Scripts never see a token.
//! - The API's access check (`http::routes::enforce`) accepts the access cookie when a request has no
//!   `Authorization` header and no API key. A cookie-authenticated request with an unsafe method must
//!   carry `X-CSRF-Token`, an HMAC of the session id (constant-time compare), and must not come from
//!   another origin (`Origin`, `Sec-Fetch-Site`). Bearer and API-key clients are unaffected.
//! - Console responses carry a strict Content-Security-Policy (no inline script or style) and
//!   `nosniff`, `no-referrer`, `frame-ancestors 'none'`; assets are revalidated by ETag.

pub mod assets;
pub mod session;

use actix_web::dev::ServiceRequest;
use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::routes::Api;

/// The access-token cookie (sent to every path: the console's API calls use it).
pub const ACCESS_COOKIE: &str = "payd_at";
/// The refresh-token cookie (sent only to `/console/session…`).
pub const REFRESH_COOKIE: &str = "payd_rt";
/// The path the refresh cookie is limited to.
pub const REFRESH_PATH: &str = "/console/session";
/// The header that carries the CSRF token on unsafe cookie-authenticated requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Declares the console's routes in the API's route table (undocumented in OpenAPI: they are not API).
pub fn register(api: &mut Api) {
    assets::register(api);
    session::register(api);
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The CSRF token of a session: a keyed hash of its id, so it needs no storage and lives as long as
/// the session (refresh rotations keep the session id).
pub fn csrf_token(state: &AppState, session: &uuid::Uuid) -> String {
    state.keys.hash(&format!("console csrf v1:{session}"))
}

/// Constant-time equality of two byte strings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn csrf_refused(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "csrf_failed", message.to_owned())
}

/// Refuses a request a browser marks as coming from another site or origin: `Sec-Fetch-Site` (when
/// sent) must be `same-origin`, and `Origin` (when sent) must name this host.
///
/// # Errors
/// 403 `csrf_failed`.
pub fn check_same_origin(headers: &HeaderMap, host: &str) -> Result<(), ApiError> {
    if let Some(site) = headers.get("sec-fetch-site") {
        if site.to_str().ok() != Some("same-origin") {
            return Err(csrf_refused("cross-site request refused"));
        }
    }
    if let Some(origin) = headers.get(actix_web::http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let mut origin_host = origin.split_once("://").map_or("", |(_, rest)| rest).trim_end_matches('/');
        // A reverse proxy that forwards `Host` without the port (nginx's `$host`): compare the names.
        if !host.contains(':') || host.ends_with(']') {
            origin_host = strip_port(origin_host);
        }
        if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Err(csrf_refused("cross-origin request refused"));
        }
    }
    Ok(())
}

/// `name:port` → `name` (`[v6]:port` → `[v6]`).
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') && (!host.starts_with('[') || host[..i].ends_with(']')) => &host[..i],
        _ => host,
    }
}

/// The CSRF check of a cookie-authenticated request with an unsafe method (called by the API's
/// access middleware): same origin, and the session's token in `X-CSRF-Token`.
///
/// # Errors
/// 403 `csrf_failed`.
pub fn check_csrf(state: &AppState, req: &ServiceRequest, user: &AuthUser) -> Result<(), ApiError> {
    let host = req.connection_info().host().to_owned();
    check_same_origin(req.headers(), &host)?;
    let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if sent.is_empty() {
        return Err(csrf_refused("X-CSRF-Token header required for cookie-authenticated changes"));
    }
    if !constant_time_eq(sent.as_bytes(), csrf_token(state, &user.session).as_bytes()) {
        return Err(csrf_refused("X-CSRF-Token does not match this session"));
    }
    Ok(())
}

/// A `Set-Cookie` value for a console cookie (`max_age` 0 clears it).
pub fn set_cookie(state: &AppState, name: &str, value: &str, path: &str, max_age: i64) -> String {
    let secure = if state.settings.environment == crate::config::Environment::Development { "" } else { "; Secure" };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn reads_cookies() {
        let h = headers(&[("cookie", "a=1; payd_at=tok.en; b=2")]);
        assert_eq!(cookie(&h, "payd_at"), Some("tok.en"));
        assert_eq!(cookie(&h, "payd_rt"), None);
        assert_eq!(cookie(&headers(&[("cookie", "payd_at=")]), "payd_at"), None);
    }

    #[test]
    fn same_origin_rules() {
        assert!(check_same_origin(&headers(&[]), "a.test").is_ok());
        assert!(check_same_origin(&headers(&[("origin", "https://a.test")]), "a.test").is_ok());
        assert!(check_same_origin(&headers(&[("origin", "https://evil.test")]), "a.test").is_err());
        assert!(check_same_origin(&headers(&[("origin", "null")]), "a.test").is_err());
        assert!(check_same_origin(&headers(&[("origin", "http://a.test:8000")]), "a.test:8000").is_ok());
        assert!(check_same_origin(&headers(&[("origin", "http://a.test:9000")]), "a.test:8000").is_err());
        // Behind a proxy that forwards the name only.
        assert!(check_same_origin(&headers(&[("origin", "http://a.test:8000")]), "a.test").is_ok());
        assert!(check_same_origin(&headers(&[("origin", "http://evil.test:8000")]), "a.test").is_err());
        assert!(check_same_origin(&headers(&[("origin", "http://[::1]:8000")]), "[::1]").is_ok());
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "same-origin")]), "a.test").is_ok());
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "cross-site")]), "a.test").is_err());
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "same-site")]), "a.test").is_err());
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
