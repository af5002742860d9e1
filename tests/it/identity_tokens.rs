//! Tokens and sessions: refresh rotation and reuse detection (including concurrent use of one token),
//! refused access tokens (expired, forged, tampered, garbage), password change and reset.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;

use base64::Engine;
use diesel::connection::SimpleConnection;
use payd::identity::tokens::{Claims, TokenKeys};
use serde_json::{json, Value};

const NEW_PASSWORD: &str = "brand-new-pass-42";

fn tokens(b: &Value) -> (String, String) {
    (b["access_token"].as_str().unwrap().to_owned(), b["refresh_token"].as_str().unwrap().to_owned())
}

async fn refresh(app: &TestApp, token: &str) -> (u16, Value) {
    app.post("/api/v1/auth/refresh", None, json!({ "refresh_token": token })).await
}

async fn me(app: &TestApp, token: &str) -> (u16, Value) {
    app.get("/api/v1/auth/me", Some(token)).await
}

#[actix_web::test]
async fn rotation_chain_and_reuse_of_an_old_token_kills_only_that_family() {
    let app = TestApp::spawn().await;
    let email = "rotate@example.com";
    let (uid, access1, rt1) = app.user(email).await;
    // A second, independent session of the same user.
    let (s, other) = app.login(email, PASSWORD).await;
    assert_eq!(s, 200);
    let (other_access, other_rt) = tokens(&other);

    let (s, b) = refresh(&app, &rt1).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["token_type"], "Bearer");
    assert!(b["expires_in"].as_i64().unwrap() > 0);
    let (access2, rt2) = tokens(&b);
    let (s, b) = refresh(&app, &rt2).await;
    assert_eq!(s, 200, "{b}");
    let (access3, rt3) = tokens(&b);
    assert!(rt1 != rt2 && rt2 != rt3 && rt1 != rt3);
    // Access tokens of the rotated chain belong to the same live session.
    for t in [&access1, &access2, &access3] {
        let (s, b) = me(&app, t).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["id"].as_i64(), Some(uid));
    }

    // Presenting the first token again (two rotations ago) is reuse: the whole family dies.
    let (s, b) = refresh(&app, &rt1).await;
    expect_error(s, &b, 401, "refresh_token_reused");
    let (s, b) = refresh(&app, &rt3).await;
    assert_eq!(s, 401, "newest token of a reused family must die: {b}");
    for t in [&access1, &access2, &access3] {
        let (s, b) = me(&app, t).await;
        expect_error(s, &b, 401, "session_revoked");
    }

    // The other session is untouched.
    let (s, b) = me(&app, &other_access).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = refresh(&app, &other_rt).await;
    assert_eq!(s, 200, "{b}");

    // The database agrees: no live token remains in the killed family.
    let mut conn = app.db();
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel::RunQueryDsl;
    let live: N = diesel::sql_query(
        "SELECT count(*) AS n FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL AND rotated_at IS NULL",
    )
    .bind::<diesel::sql_types::BigInt, _>(uid)
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(live.n, 1, "exactly the other session's newest token is live");
}

#[actix_web::test]
async fn concurrent_refresh_of_one_token_succeeds_exactly_once() {
    let app = TestApp::spawn().await;
    let (_, access, rt) = app.user("race@example.com").await;
    let attempts = 8;
    let results = futures::future::join_all((0..attempts).map(|_| refresh(&app, &rt))).await;
    let winners: Vec<&(u16, Value)> = results.iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(winners.len(), 1, "exactly one concurrent refresh may win: {results:?}");
    for (s, b) in results.iter().filter(|(s, _)| *s != 200) {
        expect_error(*s, b, 401, "refresh_token_reused");
    }
    // The losers revealed a reuse, so the family — including the winner's new token — is revoked.
    let (_, new_rt) = tokens(&winners[0].1);
    let (s, b) = refresh(&app, &new_rt).await;
    assert_eq!(s, 401, "{b}");
    let (s, b) = me(&app, &access).await;
    expect_error(s, &b, 401, "session_revoked");
}

#[actix_web::test]
async fn unknown_expired_and_wrong_kind_refresh_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let (uid, access, rt) = app.user("refresh-edge@example.com").await;

    let (s, b) = refresh(&app, "rt_this-token-was-never-issued").await;
    expect_error(s, &b, 401, "invalid_token");
    // An access token is not a refresh token (it is too long to even be one).
    let (s, b) = refresh(&app, &access).await;
    expect_error(s, &b, 422, "validation_failed");
    assert_eq!(b["error"]["field"], "refresh_token");
    // A refresh-shaped token that was never issued, of the maximum accepted length.
    let (s, b) = refresh(&app, &format!("rt_{}", "A".repeat(197))).await;
    expect_error(s, &b, 401, "invalid_token");
    // Neither of those harmed the real session.
    let (s, b) = me(&app, &access).await;
    assert_eq!(s, 200, "{b}");

    // An expired refresh token is refused.
    app.db()
        .batch_execute(&format!(
            "UPDATE refresh_tokens SET expires_at = now() - interval '1 minute' WHERE user_id = {uid}"
        ))
        .unwrap();
    let (s, b) = refresh(&app, &rt).await;
    expect_error(s, &b, 401, "invalid_token");
}

/// Builds keys like the server's but with one setting changed.
fn keys_with(app: &TestApp, f: impl FnOnce(&mut payd::config::AuthSettings)) -> TokenKeys {
    let mut auth = app.settings.auth.clone();
    f(&mut auth);
    TokenKeys::new(&auth)
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

#[actix_web::test]
async fn bad_access_tokens_are_refused_with_codes() {
    let app = TestApp::spawn().await;
    let (uid, access, _) = app.user("tokens@example.com").await;
    let uid = payd::ids::UserId::new(uid);
    let sid = uuid::Uuid::new_v4();

    // Sanity: a token minted with the server's own settings is accepted, so the refusals below are
    // about the one thing each case changes.
    let good = keys_with(&app, |_| {}).issue_access(uid, &["user".into()], sid).unwrap();
    let (s, b) = me(&app, &good).await;
    assert_eq!(s, 200, "{b}");

    let expired = keys_with(&app, |a| a.access_ttl_secs = -120).issue_access(uid, &["user".into()], sid).unwrap();
    let (s, b) = me(&app, &expired).await;
    expect_error(s, &b, 401, "token_expired");

    let foreign =
        keys_with(&app, |a| a.jwt_secret = payd::config::Secret::new("another-secret-another-secret-another-secret!!"))
            .issue_access(uid, &["admin".into()], sid)
            .unwrap();
    let (s, b) = me(&app, &foreign).await;
    expect_error(s, &b, 401, "invalid_token");
    let (s, b) = app.get("/api/v1/users", Some(&foreign)).await;
    expect_error(s, &b, 401, "invalid_token");

    let wrong_iss =
        keys_with(&app, |a| a.issuer = "someone-else".into()).issue_access(uid, &["user".into()], sid).unwrap();
    let (s, b) = me(&app, &wrong_iss).await;
    expect_error(s, &b, 401, "invalid_token");
    let wrong_aud =
        keys_with(&app, |a| a.audience = "other-api".into()).issue_access(uid, &["user".into()], sid).unwrap();
    let (s, b) = me(&app, &wrong_aud).await;
    expect_error(s, &b, 401, "invalid_token");

    // A real token whose payload is swapped for one claiming admin: the signature no longer matches.
    let parts: Vec<&str> = access.split('.').collect();
    assert_eq!(parts.len(), 3);
    let mut claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["roles"] = json!(["admin", "user"]);
    let tampered = format!("{}.{}.{}", parts[0], b64(claims.to_string().as_bytes()), parts[2]);
    let (s, b) = app.get("/api/v1/users", Some(&tampered)).await;
    expect_error(s, &b, 401, "invalid_token");

    // `alg: none` with the same claims.
    let none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(claims.to_string().as_bytes()));
    let (s, b) = app.get("/api/v1/users", Some(&none)).await;
    expect_error(s, &b, 401, "invalid_token");

    // Correctly signed but not an access token.
    let now = chrono::Utc::now().timestamp();
    let refresh_kind = Claims {
        sub: uid.to_string(),
        roles: vec!["user".into()],
        iat: now,
        exp: now + 600,
        jti: "j".into(),
        iss: app.settings.auth.issuer.clone(),
        aud: app.settings.auth.audience.clone(),
        sid: sid.to_string(),
        typ: "refresh".into(),
    };
    let signed = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &refresh_kind,
        &jsonwebtoken::EncodingKey::from_secret(app.settings.auth.jwt_secret.expose().as_bytes()),
    )
    .unwrap();
    let (s, b) = me(&app, &signed).await;
    expect_error(s, &b, 401, "invalid_token");

    for garbage in ["garbage", "a.b.c", "", "eyJhbGciOiJIUzI1NiJ9..", &"x".repeat(5000)] {
        let (s, b) = me(&app, garbage).await;
        assert_eq!(s, 401, "token {garbage:?}: {b}");
        let code = error_code(&b);
        assert!(code == "invalid_token" || code == "missing_token", "token {garbage:?}: {b}");
    }

    // Missing header and the wrong scheme.
    let (s, b) = app.get("/api/v1/auth/me", None).await;
    expect_error(s, &b, 401, "missing_token");
    let (s, _, b) =
        app.call_full("GET", "/api/v1/auth/me", None, None, &[("authorization", &format!("Basic {access}"))]).await;
    expect_error(s, &b, 401, "invalid_token");

    // After all of that, the real token still works.
    let (s, b) = me(&app, &access).await;
    assert_eq!(s, 200, "{b}");
}

#[actix_web::test]
async fn password_change_revokes_other_sessions_and_keeps_the_current_one() {
    let app = TestApp::spawn().await;
    let email = "change@example.com";
    let (_, access_a, rt_a) = app.user(email).await;
    let (_, b) = app.login(email, PASSWORD).await;
    let (access_b, rt_b) = tokens(&b);

    let change = |current: &str, new: &str, confirm: &str| json!({"current_password": current, "new_password": new, "confirm_password": confirm});
    let (s, b) = app
        .post("/api/v1/auth/password/change", Some(&access_a), change("not-my-pass-1", NEW_PASSWORD, NEW_PASSWORD))
        .await;
    expect_error(s, &b, 400, "wrong_password");
    assert_eq!(b["error"]["field"], "current_password");
    let (s, b) = app.post("/api/v1/auth/password/change", Some(&access_a), change(PASSWORD, "weak", "weak")).await;
    expect_error(s, &b, 422, "validation_failed");
    assert_eq!(b["error"]["field"], "new_password");
    // Failed attempts changed nothing: both sessions alive.
    assert_eq!(me(&app, &access_b).await.0, 200);

    let (s, b) =
        app.post("/api/v1/auth/password/change", Some(&access_a), change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD)).await;
    assert_eq!(s, 200, "{b}");

    // Current session survives, access and refresh.
    let (s, b) = me(&app, &access_a).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = refresh(&app, &rt_a).await;
    assert_eq!(s, 200, "{b}");
    // The other session is gone, access and refresh.
    let (s, b) = me(&app, &access_b).await;
    expect_error(s, &b, 401, "session_revoked");
    let (s, b) = refresh(&app, &rt_b).await;
    assert_eq!(s, 401, "{b}");

    let (s, b) = app.login(email, PASSWORD).await;
    expect_error(s, &b, 401, "invalid_credentials");
    let (s, b) = app.login(email, NEW_PASSWORD).await;
    assert_eq!(s, 200, "{b}");
    // The user is told.
    let mail = app.last_mail(email).await;
    assert!(mail["subject"].as_str().unwrap().contains("password was changed"), "{mail}");
}

#[actix_web::test]
async fn forgot_password_answers_the_same_for_known_and_unknown_addresses() {
    let app = TestApp::spawn().await;
    let known = "known@example.com";
    app.user(known).await;
    let (s1, b1) = app.post("/api/v1/auth/password/forgot", None, json!({"email": known})).await;
    let (s2, b2) = app.post("/api/v1/auth/password/forgot", None, json!({"email": "unknown@example.com"})).await;
    let (s3, b3) = app.post("/api/v1/auth/password/forgot", None, json!({"email": "KNOWN@Example.com"})).await;
    assert_eq!(s1, 200, "{b1}");
    assert_eq!((s1, &b1), (s2, &b2), "known and unknown addresses must be indistinguishable");
    assert_eq!((s1, &b1), (s3, &b3));
    // Only the real account got mail (twice: exact and differently-cased address).
    assert!(app.reset_token(known).await.starts_with("pr_"));
    assert!(app.last_mail("unknown@example.com").await.is_null());
    let mut conn = app.db();
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel::RunQueryDsl;
    let n: N = diesel::sql_query("SELECT count(*) AS n FROM password_resets").get_result(&mut conn).unwrap();
    assert_eq!(n.n, 2);
}

#[actix_web::test]
async fn reset_works_once_and_revokes_every_session() {
    let app = TestApp::spawn().await;
    let email = "reset@example.com";
    let (_, access_a, rt_a) = app.user(email).await;
    let (_, b) = app.login(email, PASSWORD).await;
    let (access_b, rt_b) = tokens(&b);

    let (s, _) = app.post("/api/v1/auth/password/forgot", None, json!({"email": email})).await;
    assert_eq!(s, 200);
    let token = app.reset_token(email).await;
    let reset = |t: &str, p: &str, c: &str| json!({"token": t, "new_password": p, "confirm_password": c});

    // Invalid requests do not consume the token.
    let (s, b) = app.post("/api/v1/auth/password/reset", None, reset(&token, NEW_PASSWORD, "different-pass-9")).await;
    expect_error(s, &b, 422, "validation_failed");
    assert_eq!(b["error"]["field"], "confirm_password");
    let (s, b) =
        app.post("/api/v1/auth/password/reset", None, reset("pr_not-a-real-token", NEW_PASSWORD, NEW_PASSWORD)).await;
    expect_error(s, &b, 401, "invalid_token");

    let (s, b) = app.post("/api/v1/auth/password/reset", None, reset(&token, NEW_PASSWORD, NEW_PASSWORD)).await;
    assert_eq!(s, 200, "{b}");

    // Every session is revoked.
    for t in [&access_a, &access_b] {
        let (s, b) = me(&app, t).await;
        expect_error(s, &b, 401, "session_revoked");
    }
    for t in [&rt_a, &rt_b] {
        let (s, b) = refresh(&app, t).await;
        assert_eq!(s, 401, "{b}");
    }
    // The token works once.
    let (s, b) =
        app.post("/api/v1/auth/password/reset", None, reset(&token, "yet-another-pass-7", "yet-another-pass-7")).await;
    expect_error(s, &b, 401, "invalid_token");

    let (s, b) = app.login(email, PASSWORD).await;
    expect_error(s, &b, 401, "invalid_credentials");
    let (s, b) = app.login(email, NEW_PASSWORD).await;
    assert_eq!(s, 200, "{b}");
}

#[actix_web::test]
async fn expired_reset_token_is_refused() {
    let app = TestApp::spawn().await;
    let email = "reset-expired@example.com";
    app.user(email).await;
    let (s, _) = app.post("/api/v1/auth/password/forgot", None, json!({"email": email})).await;
    assert_eq!(s, 200);
    let token = app.reset_token(email).await;
    app.db().batch_execute("UPDATE password_resets SET expires_at = now() - interval '1 minute'").unwrap();
    let (s, b) = app
        .post(
            "/api/v1/auth/password/reset",
            None,
            json!({"token": token, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}),
        )
        .await;
    expect_error(s, &b, 401, "invalid_token");
    let (s, b) = app.login(email, PASSWORD).await;
    assert_eq!(s, 200, "old password still valid: {b}");
}
