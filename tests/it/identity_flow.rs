//! The identity flow end to end: register → code from the mailbox → verify → login → me → refresh →
//! reuse of the rotated refresh token kills the family → logout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use serde_json::json;

#[actix_web::test]
async fn full_identity_flow() {
    let app = TestApp::spawn().await;
    let email = "flow@example.com";
    let user = app.register(email).await;
    assert_eq!(user["roles"], json!(["user"]), "self-registered users get least privilege");
    assert_eq!(user["email_verified"], json!(false));

    // Login before verification is refused with a clear error.
    let (s, b) = app.login(email, PASSWORD).await;
    assert_eq!(s, 403);
    assert_eq!(error_code(&b), "email_not_verified");

    let code = app.verification_code(email).await;
    let (s, b) = app.post("/api/v1/auth/verify-email", None, json!({"email": email, "code": code})).await;
    assert_eq!(s, 200, "{b}");
    // The code works once.
    let (s, b) = app.post("/api/v1/auth/verify-email", None, json!({"email": email, "code": code})).await;
    assert_eq!(s, 409, "{b}");

    let (s, tokens) = app.login(email, PASSWORD).await;
    assert_eq!(s, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    let refresh1 = tokens["refresh_token"].as_str().unwrap().to_owned();

    let (s, me) = app.get("/api/v1/auth/me", Some(access)).await;
    assert_eq!(s, 200);
    assert_eq!(me["email"], email);

    // A refresh token is never accepted as an access token.
    let (s, _) = app.get("/api/v1/auth/me", Some(&refresh1)).await;
    assert_eq!(s, 401);

    let (s, rotated) = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh1})).await;
    assert_eq!(s, 200, "{rotated}");
    let refresh2 = rotated["refresh_token"].as_str().unwrap().to_owned();
    let access2 = rotated["access_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh1, refresh2);

    // Reusing the rotated token fails and revokes the whole family: the new token dies too.
    let (s, b) = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh1})).await;
    assert_eq!(s, 401);
    assert_eq!(error_code(&b), "refresh_token_reused");
    let (s, b) = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh2})).await;
    assert_eq!(s, 401, "{b}");
    // …and so do the family's access tokens.
    let (s, b) = app.get("/api/v1/auth/me", Some(&access2)).await;
    assert_eq!(s, 401);
    assert_eq!(error_code(&b), "session_revoked");

    // A fresh session, then logout revokes it.
    let (_, t) = app.login(email, PASSWORD).await;
    let access3 = t["access_token"].as_str().unwrap();
    let refresh3 = t["refresh_token"].as_str().unwrap();
    let (s, _) = app.call("POST", "/api/v1/auth/logout", Some(access3), None).await;
    assert_eq!(s, 204);
    let (s, _) = app.get("/api/v1/auth/me", Some(access3)).await;
    assert_eq!(s, 401);
    let (s, _) = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh3})).await;
    assert_eq!(s, 401);
}
