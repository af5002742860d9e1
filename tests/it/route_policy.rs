//! The route table is the policy: every route under /api/v1 declares who may call it, the middleware
//! enforces the declaration for every route (401 anonymous, 403 without the role), the OpenAPI document
//! lists every route, and the operational endpoints answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;

use payd::http::routes::Access;

/// The only routes under /api/v1 that may be called without credentials. A new public route must be
/// added here on purpose.
const PUBLIC_API: &[(&str, &str)] = &[
    ("GET", "/api/v1/ping"),
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/verify-email"),
    ("POST", "/api/v1/auth/verify-email/resend"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/password/forgot"),
    ("POST", "/api/v1/auth/password/reset"),
];

/// Public routes outside /api/v1 (operations and docs).
const PUBLIC_OPS: &[(&str, &str)] = &[("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")];

/// The console's session routes (outside /api/v1, left out of the OpenAPI document): sign-in and
/// refresh are public (they take a password or the refresh cookie), the rest need a session. Its
/// static files (`GET /console…`) are public.
const CONSOLE_SESSION: &[(&str, &str, bool)] = &[
    ("POST", "/console/session", true),
    ("POST", "/console/session/refresh", true),
    ("GET", "/console/session", false),
    ("DELETE", "/console/session", false),
];

/// Identity's user-management routes: admin only, every method.
const USER_ADMIN_PATHS: &[&str] = &[
    "/api/v1/users",
    "/api/v1/users/{id}",
    "/api/v1/users/restore-all",
    "/api/v1/users/{id}/archive",
    "/api/v1/users/{id}/restore",
    "/api/v1/users/{id}/password",
    "/api/v1/users/{id}/password/reset",
    "/api/v1/users/{id}/roles",
    "/api/v1/users/{id}/roles/{role}",
];

/// Admin-only routes outside the admin surfaces: bulk restores, the document review queue, archiving
/// payments (money records: never purged, the purge route only refuses).
const ADMIN_ONLY: &[(&str, &str)] = &[
    ("POST", "/api/v1/users/restore-all"),
    ("POST", "/api/v1/roles/restore-all"),
    ("POST", "/api/v1/cards/restore-all"),
    ("POST", "/api/v1/merchants/restore-all"),
    ("GET", "/api/v1/merchant-documents"),
    ("POST", "/api/v1/payments/{id}/archive"),
    ("POST", "/api/v1/payments/{id}/restore"),
    ("DELETE", "/api/v1/payments/{id}"),
];

const KNOWN_ROLES: &[&str] = &["admin", "merchant", "user"];

/// `{id}` → 1, any other `{x}` (with or without a `:regex`) → `x`.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(p) => {
                let name = p.split(':').next().unwrap_or(p);
                if name == "id" {
                    "1".to_owned()
                } else {
                    name.to_owned()
                }
            }
            None => seg.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_route_declares_sensible_access() {
    let api = payd::http::api();
    assert!(api.routes.len() >= PUBLIC_API.len() + PUBLIC_OPS.len(), "route table suspiciously small");
    let mut seen = std::collections::HashSet::new();
    let mut problems = Vec::new();
    for r in &api.routes {
        let key = (r.method.as_str().to_owned(), r.path.clone());
        if !seen.insert(key.clone()) {
            problems.push(format!("{} {} is declared twice", key.0, key.1));
        }
        let listed = |list: &[(&str, &str)]| list.iter().any(|(m, p)| *m == r.method.as_str() && *p == r.path);
        if r.path.starts_with("/api/v1/") {
            match r.access {
                Access::Public if !listed(PUBLIC_API) => {
                    problems.push(format!("{} {} is Public but not in the explicit public list", r.method, r.path));
                }
                Access::AnyRole(roles) | Access::ApiKeyOrRole(roles) => {
                    if roles.is_empty() {
                        problems.push(format!("{} {} requires {:?} — no user can call it", r.method, r.path, r.access));
                    }
                    for role in roles {
                        if !KNOWN_ROLES.contains(role) {
                            problems.push(format!("{} {} requires unknown role {role}", r.method, r.path));
                        }
                    }
                }
                _ => {}
            }
            // Admin surfaces must be admin-only. (Other domains may nest owner-checked routes under
            // /api/v1/users/{id}/…, so only identity's own user-management paths are listed.)
            let admin_surface = r.path.starts_with("/api/v1/admin")
                || r.path.starts_with("/api/v1/roles")
                || USER_ADMIN_PATHS.contains(&r.path.as_str());
            let admin_surface = admin_surface || listed(ADMIN_ONLY);
            if admin_surface && r.access != Access::AnyRole(&["admin"]) {
                problems.push(format!("{} {} is an admin surface but declares {:?}", r.method, r.path, r.access));
            }
        } else if r.path == "/console" || r.path.starts_with("/console/") {
            let session = CONSOLE_SESSION.iter().find(|(m, p, _)| *m == r.method.as_str() && *p == r.path);
            let public = match session {
                Some((_, _, public)) => *public,
                None if r.method == actix_web::http::Method::GET => true,
                None => {
                    problems.push(format!("{} {} is an undeclared console route", r.method, r.path));
                    continue;
                }
            };
            if public != (r.access == Access::Public) || !r.undocumented {
                problems.push(format!(
                    "{} {} declares {:?} (undocumented: {})",
                    r.method, r.path, r.access, r.undocumented
                ));
            }
        } else if !listed(PUBLIC_OPS) {
            problems.push(format!("{} {} is outside /api/v1 and not a known operations route", r.method, r.path));
        } else if r.access != Access::Public {
            problems.push(format!("{} {} should be public", r.method, r.path));
        }
        assert!(!r.summary.is_empty(), "{} {} has no summary", r.method, r.path);
    }
    // Every explicitly public route really exists and really is public (the list does not go stale).
    for (m, p) in PUBLIC_API.iter().chain(PUBLIC_OPS) {
        let found = api.routes.iter().find(|r| r.method.as_str() == *m && r.path == *p);
        match found {
            Some(r) if r.access == Access::Public => {}
            Some(r) => problems.push(format!("{m} {p} is in the public list but declares {:?}", r.access)),
            None => problems.push(format!("{m} {p} is in the public list but not in the route table")),
        }
    }
    for (m, p) in ADMIN_ONLY {
        if !api.routes.iter().any(|r| r.method.as_str() == *m && r.path == *p) {
            problems.push(format!("{m} {p} is in the admin-only list but not in the route table"));
        }
    }
    assert!(problems.is_empty(), "route policy problems:\n{}", problems.join("\n"));
}

#[actix_web::test]
async fn every_protected_route_refuses_anonymous_and_wrong_role_callers() {
    let app = TestApp::spawn().await;
    let (_, user_token, _) = app.user("plain@example.com").await;
    let api = payd::http::api();
    let mut checked_401 = 0;
    let mut checked_403 = 0;
    let mut failures = Vec::new();
    for r in &api.routes {
        if r.access == Access::Public {
            continue;
        }
        let path = concrete(&r.path);
        let method = r.method.as_str();

        // Bearer-token routes name the missing/invalid token; API-key-only routes their own key error.
        let bearer = r.access != Access::ApiKey;

        // Anonymous: 401 with the standard error body.
        let (s, b) = app.call(method, &path, None, None).await;
        if s == 401 {
            let code = error_code(&b);
            assert!(!bearer || code == "missing_token", "{method} {path}: {b}");
        } else {
            failures.push(format!("anonymous {method} {path} → {s} {b}"));
        }
        // A garbage token is refused the same way.
        let (s, b) = app.call(method, &path, Some("not-a-jwt"), None).await;
        if s == 401 {
            let code = error_code(&b);
            assert!(!bearer || code == "invalid_token", "{method} {path}: {b}");
        } else {
            failures.push(format!("garbage-token {method} {path} → {s} {b}"));
        }
        // A user's valid access token is not an API key.
        if !bearer {
            let (s, b) = app.call(method, &path, Some(&user_token), None).await;
            if s != 401 {
                failures.push(format!("user-token on API-key route {method} {path} → {s} {b}"));
            }
        }
        // A made-up API key is refused on every route that takes keys.
        if matches!(r.access, Access::ApiKey | Access::ApiKeyOrRole(_)) {
            let (s, _, b) =
                app.call_full(method, &path, None, None, &[("x-api-key", "pk_made_up_key_1234567890")]).await;
            if s != 401 {
                failures.push(format!("made-up API key {method} {path} → {s} {b}"));
            }
        }
        checked_401 += 1;

        // A plain user lacking every role the route accepts: 403.
        if let Access::AnyRole(roles) | Access::ApiKeyOrRole(roles) = r.access {
            if roles.contains(&"user") {
                continue;
            }
            let (s, b) = app.call(method, &path, Some(&user_token), None).await;
            if s == 403 {
                assert_eq!(error_code(&b), "forbidden", "{method} {path}: {b}");
            } else {
                failures.push(format!("user-token {method} {path} → {s} {b}"));
            }
            checked_403 += 1;
        }
    }
    assert!(failures.is_empty(), "access policy not enforced:\n{}", failures.join("\n"));
    assert!(checked_401 >= 20, "only {checked_401} protected routes checked");
    assert!(checked_403 >= 17, "only {checked_403} admin routes checked");
    // The plain user's token still works (the 403s were about roles, not a broken token).
    let (s, me) = app.get("/api/v1/auth/me", Some(&user_token)).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["roles"], serde_json::json!(["user"]));
}

#[actix_web::test]
async fn openapi_lists_every_route_and_docs_are_served() {
    let app = TestApp::spawn().await;
    let (s, doc) = app.get("/api-docs/openapi.json", None).await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths object");
    let api = payd::http::api();
    let mut missing = Vec::new();
    for r in api.routes.iter().filter(|r| !r.undocumented) {
        let op = &doc["paths"][&r.path][r.method.as_str().to_lowercase()];
        if !op.is_object() {
            missing.push(format!("{} {}", r.method, r.path));
            continue;
        }
        // Protected operations advertise the bearer scheme; public ones do not.
        let secured = op["security"].as_array().is_some_and(|a| !a.is_empty());
        assert_eq!(secured, r.access != Access::Public, "{} {} security in OpenAPI: {op}", r.method, r.path);
    }
    assert!(missing.is_empty(), "routes missing from /api-docs/openapi.json: {missing:?}");
    let documented: usize = paths.values().map(|item| item.as_object().map_or(0, |o| o.len())).sum();
    let routes = api.routes.iter().filter(|r| !r.undocumented).count();
    assert!(documented >= routes, "OpenAPI has {documented} operations for {routes} routes");
    assert!(!paths.keys().any(|p| p.starts_with("/console")), "console routes are not API");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let resp = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(ct.starts_with("text/html"), "docs content type {ct}");
    let html = resp.text().await.unwrap();
    assert!(html.to_lowercase().contains("swagger"), "docs page is not Swagger UI");
}

#[actix_web::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::spawn().await;
    let (s, b) = app.get("/healthz", None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "ok");
    let (s, b) = app.get("/readyz", None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["checks"]["postgres"], "ok", "{b}");
    assert_eq!(b["checks"]["redis"], "ok", "{b}");

    // Traffic with ids in the path, matched and unmatched.
    let (s, _) = app.login("nobody@example.com", "wrong-pass-1").await;
    assert_eq!(s, 401);
    let admin = app.admin_token().await;
    let (s, _) = app.get("/api/v1/users/987654", Some(&admin)).await;
    assert_eq!(s, 404);
    let (s, _) = app.get("/api/v1/roles/876543", None).await;
    assert_eq!(s, 401);
    let (s, _) = app.get("/no/such/route/765432", None).await;
    assert_eq!(s, 404);

    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("payd_http_requests_total"), "no request counter:\n{text}");
    assert!(
        text.lines().any(|l| l.starts_with("payd_http_requests_total{")
            && l.contains(r#"route="/api/v1/auth/login""#)
            && l.contains(r#"status="401""#)),
        "no series for the failed login by route template:\n{text}"
    );
    assert!(text.contains(r#"route="/api/v1/users/{id}""#), "templated user route missing:\n{text}");
    let raw_id = regex::Regex::new(r#"route="[^"]*/[0-9]+(/[^"]*)?""#).unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(!raw_id.is_match(line), "metric label carries a raw id path: {line}");
        assert!(
            !line.contains("765432") && !line.contains("987654") && !line.contains("876543"),
            "raw id leaked: {line}"
        );
    }
}
