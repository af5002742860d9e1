//! The console (`/console`): the cookie session (HttpOnly, SameSite=Strict, Secure outside
//! development; refresh cookie limited to its path), the API accepting the access cookie, CSRF
//! refusals for cookie-authenticated changes (no token, a wrong one, another origin, a cross-site
//! fetch), bearer clients unaffected, sign-out revoking the session, and the security headers and
//! ETags of the embedded files.

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use crate::common::*;

/// The `name=value` of each `Set-Cookie` header, with the whole header line.
fn set_cookies(headers: &HeaderMap) -> Vec<(String, String, String)> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|line| {
            let first = line.split(';').next().unwrap_or_default();
            let (name, value) = first.split_once('=').unwrap_or((first, ""));
            (name.to_owned(), value.to_owned(), line.to_owned())
        })
        .collect()
}

fn cookie_value(headers: &HeaderMap, name: &str) -> (String, String) {
    let (_, value, line) =
        set_cookies(headers).into_iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("no {name} cookie"));
    (value, line)
}

async fn with_cookie(
    app: &TestApp,
    method: &str,
    path: &str,
    cookie: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, HeaderMap, Value) {
    let mut all = vec![("cookie", cookie)];
    all.extend_from_slice(headers);
    app.call_full(method, path, None, body, &all).await
}

#[actix_web::test]
async fn cookie_session_csrf_refresh_and_sign_out() {
    let app = TestApp::spawn().await;
    let email = "console.user@example.com";
    let (_, bearer, _) = app.user(email).await;

    // Sign-in from another origin is refused before the password is looked at.
    let (s, _, b) = app
        .call_full(
            "POST",
            "/console/session",
            None,
            Some(json!({"email": email, "password": PASSWORD})),
            &[("origin", "https://evil.example")],
        )
        .await;
    expect_error(s, &b, 403, "csrf_failed");
    // A wrong password answers the API's login error.
    let (s, _, b) = app
        .call_full("POST", "/console/session", None, Some(json!({"email": email, "password": "nope-1234"})), &[])
        .await;
    assert_eq!(s, 401, "{b}");

    let (s, h, session) =
        app.call_full("POST", "/console/session", None, Some(json!({"email": email, "password": PASSWORD})), &[]).await;
    assert_eq!(s, 200, "{session}");
    let csrf = session["csrf_token"].as_str().unwrap().to_owned();
    assert!(session.get("access_token").is_none() && !session.to_string().contains("rt_"), "{session}");
    let (access, line) = cookie_value(&h, "payd_at");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/;", "Secure"] {
        assert!(line.contains(attr), "access cookie lacks {attr}: {line}");
    }
    let (refresh, line) = cookie_value(&h, "payd_rt");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console/session", "Secure"] {
        assert!(line.contains(attr), "refresh cookie lacks {attr}: {line}");
    }
    assert_eq!(h.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let cookie = format!("payd_at={access}");

    // The API accepts the access cookie; the console's session view gives the same CSRF token.
    let (s, _, me) = with_cookie(&app, "GET", "/api/v1/auth/me", &cookie, &[], None).await;
    assert_eq!((s, me["email"].as_str()), (200, Some(email)), "{me}");
    let (s, _, view) = with_cookie(&app, "GET", "/console/session", &cookie, &[], None).await;
    assert_eq!((s, view["csrf_token"].as_str()), (200, Some(csrf.as_str())), "{view}");

    // Cookie-authenticated changes need the session's CSRF token, from this origin.
    let card = json!({"card_type": "debit", "brand": "visa"});
    let refusals: [&[(&str, &str)]; 5] = [
        &[],
        &[("x-csrf-token", "0000")],
        &[("x-csrf-token", &csrf[..csrf.len() - 1])],
        &[("x-csrf-token", &csrf), ("origin", "https://evil.example")],
        &[("x-csrf-token", &csrf), ("sec-fetch-site", "cross-site")],
    ];
    for headers in refusals {
        let (s, _, b) = with_cookie(&app, "POST", "/api/v1/cards", &cookie, headers, Some(card.clone())).await;
        expect_error(s, &b, 403, "csrf_failed");
    }
    let (s, _, b) = with_cookie(&app, "GET", "/api/v1/cards", &cookie, &[], None).await;
    assert_eq!((s, b["items"].as_array().map(Vec::len)), (200, Some(0)), "refused requests changed nothing: {b}");
    let origin = app.base.clone();
    let ok: [(&str, &str); 3] = [("x-csrf-token", &csrf), ("origin", &origin), ("sec-fetch-site", "same-origin")];
    let (s, _, b) = with_cookie(&app, "POST", "/api/v1/cards", &cookie, &ok, Some(card.clone())).await;
    assert_eq!(s, 201, "{b}");
    // Another session's token does not fit this one.
    let (_, h2, other) =
        app.call_full("POST", "/console/session", None, Some(json!({"email": email, "password": PASSWORD})), &[]).await;
    assert_ne!(other["csrf_token"], session["csrf_token"]);
    let (s, _, b) = with_cookie(
        &app,
        "POST",
        "/api/v1/cards",
        &cookie,
        &[("x-csrf-token", other["csrf_token"].as_str().unwrap())],
        Some(card.clone()),
    )
    .await;
    expect_error(s, &b, 403, "csrf_failed");
    drop(h2);

    // Bearer clients are unaffected (no CSRF token), also when a cookie is sent along.
    let (s, b) = app.post("/api/v1/cards", Some(&bearer), card.clone()).await;
    assert_eq!(s, 201, "{b}");
    let (s, _, b) = app.call_full("POST", "/api/v1/cards", Some(&bearer), Some(card), &[("cookie", &cookie)]).await;
    assert_eq!(s, 201, "{b}");

    // Refresh rotates the cookies and keeps the session (and its CSRF token).
    let (s, h, b) = app
        .call_full("POST", "/console/session/refresh", None, None, &[("cookie", &format!("payd_rt={refresh}"))])
        .await;
    assert_eq!((s, b["csrf_token"].as_str()), (200, Some(csrf.as_str())), "{b}");
    let (access2, _) = cookie_value(&h, "payd_at");
    let (refresh2, _) = cookie_value(&h, "payd_rt");
    assert_ne!(refresh2, refresh);
    let (s, _, b) = app.call_full("POST", "/console/session/refresh", None, None, &[]).await;
    expect_error(s, &b, 401, "missing_token");
    let cookie2 = format!("payd_at={access2}");

    // Sign-out is a change too (CSRF), revokes the session and clears both cookies.
    let (s, _, b) = with_cookie(&app, "DELETE", "/console/session", &cookie2, &[], None).await;
    expect_error(s, &b, 403, "csrf_failed");
    let (s, h, _) = with_cookie(&app, "DELETE", "/console/session", &cookie2, &[("x-csrf-token", &csrf)], None).await;
    assert_eq!(s, 204);
    let cleared = set_cookies(&h);
    for name in ["payd_at", "payd_rt"] {
        assert!(cleared.iter().any(|(n, v, l)| n == name && v.is_empty() && l.contains("Max-Age=0")), "{cleared:?}");
    }
    for c in [&cookie, &cookie2] {
        let (s, _, b) = with_cookie(&app, "GET", "/api/v1/auth/me", c, &[], None).await;
        expect_error(s, &b, 401, "session_revoked");
    }
    let (s, _, b) = app
        .call_full("POST", "/console/session/refresh", None, None, &[("cookie", &format!("payd_rt={refresh2}"))])
        .await;
    assert_eq!(s, 401, "a signed-out session does not refresh: {b}");
}

#[actix_web::test]
async fn console_files_are_embedded_with_a_strict_policy() {
    let app = TestApp::spawn().await;
    let mut etags = Vec::new();
    for (file, content_type, body) in payd::console::assets::ASSETS {
        let path = if *file == "index.html" { "/console".to_owned() } else { format!("/console/{file}") };
        let resp = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let h = resp.headers().clone();
        let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert_eq!(header("content-type"), *content_type, "{path}");
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(directive), "{path}: CSP lacks {directive}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("referrer-policy"), "no-referrer");
        assert_eq!(header("cache-control"), "no-cache");
        let etag = header("etag");
        assert!(etag.starts_with('"') && etag.len() > 10, "{path}: {etag}");
        assert_eq!(resp.bytes().await.unwrap().as_ref(), *body, "{path}");
        let again = app.client.get(app.url(&path)).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(again.status().as_u16(), 304, "{path}");
        assert!(again.headers().get("content-security-policy").is_some());
        etags.push(etag);

        // No inline script or style in the page; no script-visible token storage anywhere.
        let text = String::from_utf8_lossy(body);
        if file.ends_with(".html") {
            assert!(!text.contains("<script>") && !text.contains(" style="), "{file} has inline code");
            for script in text.split("<script").skip(1) {
                assert!(script.trim_start().starts_with("type=\"module\" src=\"/console/"), "{file}: {script}");
            }
        }
        if file.ends_with(".js") {
            for banned in ["localStorage", "sessionStorage", "innerHTML", "eval(", "document.write"] {
                assert!(!text.contains(banned), "{file} uses {banned}");
            }
        }
    }
    etags.sort();
    etags.dedup();
    assert_eq!(etags.len(), payd::console::assets::ASSETS.len(), "ETags are per file");
    let (s, b) = app.get("/console/nope.js", None).await;
    assert_eq!(s, 404, "{b}");
    // The console is not part of the API document.
    let (_, doc) = app.get("/api-docs/openapi.json", None).await;
    assert!(!doc["paths"].as_object().unwrap().keys().any(|p| p.starts_with("/console")));
}

#[actix_web::test]
async fn console_sign_in_has_the_api_login_limits() {
    let mut settings = settings();
    settings.auth.auth_rate_limit_per_minute = 3;
    settings.auth.lockout_threshold = 1000;
    let app = TestApp::spawn_with(settings).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (s, _, b) = app
            .call_full(
                "POST",
                "/console/session",
                None,
                Some(json!({"email": "nobody@example.com", "password": "wrong-pass-1"})),
                &[],
            )
            .await;
        statuses.push(s);
        if s == 429 {
            assert_eq!(error_code(&b), "rate_limited", "{b}");
        }
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429], "the auth group's per-client limit");
    // The API's login shares the budget: the console is not a way around it.
    let (s, b) = app.login("nobody@example.com", "wrong-pass-1").await;
    assert_eq!(s, 429, "{b}");
}
