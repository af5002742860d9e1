//! Brute-force protection: account lockout after repeated wrong passwords, the per-client rate limit on
//! the auth routes, and the attempt limit and expiry of e-mail verification codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;

use diesel::connection::SimpleConnection;
use serde_json::json;

fn retry_after(headers: &reqwest::header::HeaderMap) -> u64 {
    headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After header in {headers:?}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn login_full(
    app: &TestApp,
    email: &str,
    password: &str,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    app.call_full("POST", "/api/v1/auth/login", None, Some(json!({"email": email, "password": password})), &[]).await
}

/// A code that is certainly not `code`.
fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

#[actix_web::test]
async fn five_wrong_passwords_lock_the_account_even_for_the_right_password() {
    let app = TestApp::spawn().await;
    let email = "victim@example.com";
    app.user(email).await;
    let bystander = "bystander@example.com";
    app.user(bystander).await;
    let threshold = app.settings.auth.lockout_threshold;
    assert_eq!(threshold, 5);

    for i in 1..threshold {
        let (s, _, b) = login_full(&app, email, "wrong-pass-1").await;
        assert_eq!(s, 401, "failure {i}: {b}");
        assert_eq!(error_code(&b), "invalid_credentials");
    }
    // The failure that reaches the threshold already answers with the lock.
    let (s, h, b) = login_full(&app, email, "wrong-pass-1").await;
    expect_error(s, &b, 429, "account_locked");
    assert!(retry_after(&h) >= 1);

    // Now even the right password is refused, with a Retry-After within the lockout window …
    let (s, h, b) = login_full(&app, email, PASSWORD).await;
    expect_error(s, &b, 429, "account_locked");
    let secs = retry_after(&h);
    assert!((1..=app.settings.auth.lockout_secs).contains(&secs), "Retry-After {secs}");
    // … however the address is spelled.
    let (s, h, b) = login_full(&app, "VICTIM@Example.COM", PASSWORD).await;
    expect_error(s, &b, 429, "account_locked");
    assert!(retry_after(&h) >= 1);

    // Other accounts are unaffected.
    let (s, b) = app.login(bystander, PASSWORD).await;
    assert_eq!(s, 200, "{b}");
}

#[actix_web::test]
async fn a_successful_login_resets_the_failure_count() {
    let app = TestApp::spawn().await;
    let email = "forgetful@example.com";
    app.user(email).await;
    for _ in 0..4 {
        let (s, _) = app.login(email, "wrong-pass-1").await;
        assert_eq!(s, 401);
    }
    let (s, b) = app.login(email, PASSWORD).await;
    assert_eq!(s, 200, "{b}");
    // The counter started over: four more failures still do not lock.
    for _ in 0..4 {
        let (s, b) = app.login(email, "wrong-pass-1").await;
        expect_error(s, &b, 401, "invalid_credentials");
    }
    let (s, b) = app.login(email, PASSWORD).await;
    assert_eq!(s, 200, "{b}");
}

#[actix_web::test]
async fn unknown_addresses_lock_the_same_way() {
    // Locking must not reveal whether an address is registered.
    let app = TestApp::spawn().await;
    for _ in 0..4 {
        let (s, b) = app.login("ghost@example.com", "wrong-pass-1").await;
        expect_error(s, &b, 401, "invalid_credentials");
    }
    let (s, b) = app.login("ghost@example.com", "wrong-pass-1").await;
    expect_error(s, &b, 429, "account_locked");
}

#[actix_web::test]
async fn auth_routes_are_rate_limited_per_client() {
    let mut settings = settings();
    settings.auth.auth_rate_limit_per_minute = 5;
    let app = TestApp::spawn_with(settings).await;

    // Mixed auth calls share the per-client budget.
    let calls: [(&str, serde_json::Value); 5] = [
        ("/api/v1/auth/password/forgot", json!({"email": "a@example.com"})),
        ("/api/v1/auth/login", json!({"email": "a@example.com", "password": "wrong-pass-1"})),
        ("/api/v1/auth/verify-email/resend", json!({"email": "a@example.com"})),
        ("/api/v1/auth/refresh", json!({"refresh_token": "rt_nope"})),
        ("/api/v1/auth/password/forgot", json!({"email": "b@example.com"})),
    ];
    for (path, body) in calls {
        let (s, _, b) = app.call_full("POST", path, None, Some(body), &[]).await;
        assert_ne!(s, 429, "{path} was limited before the budget was spent: {b}");
        assert!(s < 500, "{path}: {s} {b}");
    }
    // The 6th call within the minute is refused, whichever auth route it hits.
    let (s, h, b) =
        app.call_full("POST", "/api/v1/auth/password/forgot", None, Some(json!({"email": "c@example.com"})), &[]).await;
    expect_error(s, &b, 429, "rate_limited");
    let secs = retry_after(&h);
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    let (s, h, b) = login_full(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    expect_error(s, &b, 429, "rate_limited");
    assert!(retry_after(&h) >= 1);
    let (s, _, b) = app
        .call_full(
            "POST",
            "/api/v1/auth/register",
            None,
            Some(json!({"first_name": "R", "last_name": "L", "email": "r@example.com", "password": PASSWORD, "confirm_password": PASSWORD})),
            &[],
        )
        .await;
    expect_error(s, &b, 429, "rate_limited");
    // A refused registration did not create the account.
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let n: N = diesel::sql_query("SELECT count(*) AS n FROM users WHERE email = 'r@example.com'")
        .get_result(&mut app.db())
        .unwrap();
    assert_eq!(n.n, 0);
    // Non-auth routes are not part of that budget.
    let (s, _) = app.get("/api/v1/ping", None).await;
    assert_eq!(s, 200);
}

#[actix_web::test]
async fn five_wrong_codes_burn_the_verification_code() {
    let app = TestApp::spawn().await;
    let email = "guesser@example.com";
    app.register(email).await;
    let code = app.verification_code(email).await;
    for i in 0..5 {
        let (s, b) = app.post("/api/v1/auth/verify-email", None, json!({"email": email, "code": wrong(&code)})).await;
        expect_error(s, &b, 400, "invalid_code");
        assert_eq!(b["error"]["field"], "code", "attempt {i}");
    }
    let (s, b) = app.post("/api/v1/auth/verify-email", None, json!({"email": email, "code": code})).await;
    expect_error(s, &b, 400, "invalid_code");
    let (s, b) = app.login(email, PASSWORD).await;
    expect_error(s, &b, 403, "email_not_verified");

    // A new code (resend) works.
    let (s, b) = app.post("/api/v1/auth/verify-email/resend", None, json!({"email": email})).await;
    assert_eq!(s, 200, "{b}");
    let fresh = app.verification_code(email).await;
    // The burnt code stays dead even though a new one exists (unless they happen to coincide).
    if fresh != code {
        let (s, b) = app.post("/api/v1/auth/verify-email", None, json!({"email": email, "code": code})).await;
        expect_error(s, &b, 400, "invalid_code");
    }
    let (s, b) = app.post("/api/v1/auth/verify-email", None, json!({"email": email, "code": fresh})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app.login(email, PASSWORD).await;
    assert_eq!(s, 200, "{b}");
}

#[actix_web::test]
async fn four_wrong_codes_still_leave_the_right_one_usable() {
    let app = TestApp::spawn().await;
    let email = "almost@example.com";
    app.register(email).await;
    let code = app.verification_code(email).await;
    for _ in 0..4 {
        let (s, b) = app.post("/api/v1/auth/verify-email", None, json!({"email": email, "code": wrong(&code)})).await;
        expect_error(s, &b, 400, "invalid_code");
    }
    let (s, b) = app.post("/api/v1/auth/verify-email", None, json!({"email": email, "code": code})).await;
    assert_eq!(s, 200, "{b}");
}

#[actix_web::test]
async fn an_expired_code_is_refused() {
    let app = TestApp::spawn().await;
    let email = "slow@example.com";
    let user = app.register(email).await;
    let code = app.verification_code(email).await;
    let uid = user["id"].as_i64().unwrap();
    app.db()
        .batch_execute(&format!(
            "UPDATE email_verifications SET expires_at = now() - interval '1 second' WHERE user_id = {uid}"
        ))
        .unwrap();
    let (s, b) = app.post("/api/v1/auth/verify-email", None, json!({"email": email, "code": code})).await;
    expect_error(s, &b, 400, "invalid_code");
    let (s, b) = app.login(email, PASSWORD).await;
    expect_error(s, &b, 403, "email_not_verified");
}

#[actix_web::test]
async fn resend_replaces_the_previous_code_and_answers_alike_for_unknown_addresses() {
    let app = TestApp::spawn().await;
    let email = "resend@example.com";
    app.register(email).await;
    let first = app.verification_code(email).await;
    let (s1, b1) = app.post("/api/v1/auth/verify-email/resend", None, json!({"email": email})).await;
    let (s2, b2) = app.post("/api/v1/auth/verify-email/resend", None, json!({"email": "nobody@example.com"})).await;
    assert_eq!(s1, 200, "{b1}");
    assert_eq!((s1, &b1), (s2, &b2));
    let second = app.verification_code(email).await;
    if first != second {
        let (s, b) = app.post("/api/v1/auth/verify-email", None, json!({"email": email, "code": first})).await;
        expect_error(s, &b, 400, "invalid_code");
    }
    let (s, b) = app.post("/api/v1/auth/verify-email", None, json!({"email": email, "code": second})).await;
    assert_eq!(s, 200, "{b}");
}

async fn forgot_from(app: &TestApp, forwarded_for: &str) -> (u16, serde_json::Value) {
    let (s, _, b) = app
        .call_full(
            "POST",
            "/api/v1/auth/password/forgot",
            None,
            Some(json!({"email": "a@example.com"})),
            &[("x-forwarded-for", forwarded_for)],
        )
        .await;
    (s, b)
}

#[actix_web::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let mut settings = settings();
    settings.auth.auth_rate_limit_per_minute = 2;
    settings.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let app = TestApp::spawn_with(settings).await;
    for _ in 0..2 {
        let (s, b) = forgot_from(&app, "203.0.113.1").await;
        assert!(s < 300, "{s} {b}");
    }
    let (s, b) = forgot_from(&app, "203.0.113.1").await;
    expect_error(s, &b, 429, "rate_limited");
    // Another client behind the same proxy is not affected.
    let (s, b) = forgot_from(&app, "203.0.113.2").await;
    assert!(s < 300, "{s} {b}");
    // A client cannot escape by writing its own entry: the proxy-appended address is the rightmost.
    let (s, b) = forgot_from(&app, "198.51.100.77, 203.0.113.1").await;
    expect_error(s, &b, 429, "rate_limited");
}

#[actix_web::test]
async fn an_untrusted_peer_cannot_pick_its_address_with_x_forwarded_for() {
    let mut settings = settings();
    settings.auth.auth_rate_limit_per_minute = 2;
    let app = TestApp::spawn_with(settings).await;
    for ip in ["203.0.113.1", "203.0.113.2"] {
        let (s, b) = forgot_from(&app, ip).await;
        assert!(s < 300, "{s} {b}");
    }
    let (s, b) = forgot_from(&app, "203.0.113.3").await;
    expect_error(s, &b, 429, "rate_limited");
}
