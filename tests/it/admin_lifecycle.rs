//! Admin lifecycle routes: a credit card's credit_limit (lowering guarded by the balance, the account
//! actor's floor refreshed), a user's roles, and admin password set / forced reset.

use serde_json::{json, Value};

use crate::common::merchant::{card_balance, issue_card, merchant_settings, verified};
use crate::common::*;

async fn money(app: &TestApp, token: &str, path: &str, key: &str, body: Value) -> (u16, Value) {
    let (s, _, b) = app.call_full("POST", path, Some(token), Some(body), &[("Idempotency-Key", key)]).await;
    (s, b)
}

#[actix_web::test]
async fn credit_limit_changes_are_admin_only_and_never_below_what_is_owed() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    let (alice_id, alice) = verified(&app, &admin, "alice.credit@example.com").await;
    let (s, c) = app
        .post(
            "/api/v1/cards",
            Some(&admin),
            json!({"card_type": "credit", "brand": "visa", "user_id": alice_id, "credit_limit": 500_000}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let card = c["card"]["id"].as_i64().unwrap();
    let path = format!("/api/v1/cards/{card}");
    // Owe 300,000.
    let (s, b) = money(&app, &alice, "/api/v1/withdrawals", "cw-1", json!({"card_id": card, "amount": 300_000})).await;
    assert_eq!(s, 201, "{b}");

    // The holder may relabel but not change the limit.
    let (s, b) = app.call("PATCH", &path, Some(&alice), Some(json!({"label": "mine"}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["label"], "mine");
    let (s, b) = app.call("PATCH", &path, Some(&alice), Some(json!({"credit_limit": 900_000}))).await;
    expect_error(s, &b, 403, "forbidden");
    // Bad input names the field.
    for bad in [json!({"credit_limit": -1}), json!({"credit_limit": "lots"}), json!({"label": "x".repeat(10_000)})] {
        let (s, b) = app.call("PATCH", &path, Some(&admin), Some(bad.clone())).await;
        assert!((400..500).contains(&s), "{bad}: {s} {b}");
    }
    let (s, b) = app.call("PATCH", &path, Some(&admin), Some(json!({"credit_limit": -1}))).await;
    expect_error(s, &b, 422, "validation_failed");
    assert_eq!(b["error"]["field"], "credit_limit");

    // Lowering below what is owed: refused, nothing changed.
    let (s, b) = app.call("PATCH", &path, Some(&admin), Some(json!({"credit_limit": 200_000}))).await;
    expect_error(s, &b, 409, "credit_limit_below_balance");
    assert_eq!(b["error"]["field"], "credit_limit");
    let (s, b) = app.get(&path, Some(&alice)).await;
    assert_eq!((s, b["credit_limit"].as_i64()), (200, Some(500_000)), "{b}");

    // Lowering to 400,000 applies at once: 150,000 more would owe 450,000.
    let (s, b) = app.call("PATCH", &path, Some(&admin), Some(json!({"credit_limit": 400_000}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["credit_limit"], 400_000);
    let (s, b) = money(&app, &alice, "/api/v1/withdrawals", "cw-2", json!({"card_id": card, "amount": 150_000})).await;
    assert_eq!(s, 402, "{b}");
    assert_eq!(b["error"]["code"], "insufficient_funds");
    let (s, b) = app.get(&format!("{path}/balance"), Some(&alice)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!((b["credit_limit"].as_i64(), b["available"].as_i64()), (Some(400_000), Some(100_000)), "{b}");
    // Raising it lets the same debit through (the account actor's cached floor was refreshed).
    let (s, b) = app.call("PATCH", &path, Some(&admin), Some(json!({"credit_limit": 1_000_000}))).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = money(&app, &alice, "/api/v1/withdrawals", "cw-3", json!({"card_id": card, "amount": 150_000})).await;
    assert_eq!(s, 201, "{b}");
    let mut conn = app.db();
    assert_eq!(card_balance(&mut conn, card), -450_000);

    // A debit card has no credit line.
    let debit = issue_card(&app, &alice).await;
    let (s, b) = app
        .call("PATCH", &format!("/api/v1/cards/{}", debit.id), Some(&admin), Some(json!({"credit_limit": 10_000})))
        .await;
    expect_error(s, &b, 422, "validation_failed");
    assert_eq!(b["error"]["field"], "credit_limit");
}

#[actix_web::test]
async fn user_roles_are_listed_for_admins_only() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (alice_id, alice) = verified(&app, &admin, "alice.roles@example.com").await;
    let (bob_id, _) = verified(&app, &admin, "bob.roles@example.com").await;
    let (s, b) = app.post(&format!("/api/v1/users/{bob_id}/roles"), Some(&admin), json!({"role": "merchant"})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app.get(&format!("/api/v1/users/{bob_id}/roles"), Some(&admin)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, json!({"user_id": bob_id, "roles": ["merchant", "user"]}));
    // Another user: 403; a user reads their own roles in /auth/me, not here.
    let (s, b) = app.get(&format!("/api/v1/users/{bob_id}/roles"), Some(&alice)).await;
    expect_error(s, &b, 403, "forbidden");
    let (s, b) = app.get(&format!("/api/v1/users/{alice_id}/roles"), Some(&alice)).await;
    expect_error(s, &b, 403, "forbidden");
    let (s, b) = app.get("/api/v1/auth/me", Some(&alice)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["roles"], json!(["user"]));
    let (s, b) = app.get("/api/v1/users/987654321/roles", Some(&admin)).await;
    assert_eq!(s, 404, "{b}");
    let (s, _) = app.get(&format!("/api/v1/users/{bob_id}/roles"), None).await;
    assert_eq!(s, 401);
}
