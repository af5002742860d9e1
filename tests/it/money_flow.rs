//! Cards and money movement end to end: issue, top-up, withdraw, transfer, idempotency, failures,
//! reversal, lifecycle, statement, and `verify` afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use serde_json::{json, Value};

async fn issue(app: &TestApp, token: &str, card_type: &str) -> Value {
    let (s, b) = app.post("/api/v1/cards", Some(token), json!({"card_type": card_type, "brand": "visa"})).await;
    assert_eq!(s, 201, "{b}");
    b
}

async fn money(app: &TestApp, token: &str, path: &str, key: &str, body: Value) -> (u16, Value) {
    let (s, _, b) = app.call_full("POST", path, Some(token), Some(body), &[("Idempotency-Key", key)]).await;
    (s, b)
}

fn verify_clean(app: &TestApp) {
    let mut conn = app.db();
    let report = payd::ledger::verify::run(&mut conn).unwrap();
    assert!(report.is_clean(), "{report}");
}

#[actix_web::test]
async fn cards_and_money_end_to_end() {
    let app = TestApp::spawn().await;
    let (_, alice, _) = app.user("alice@example.com").await;
    let (_, bob, _) = app.user("bob@example.com").await;
    let a = issue(&app, &alice, "debit").await;
    let b = issue(&app, &bob, "debit").await;
    let a_id = a["card"]["id"].as_i64().unwrap();
    let b_id = b["card"]["id"].as_i64().unwrap();
    let pan = a["card_number"].as_str().unwrap();
    assert_eq!(pan.len(), 16);
    assert_eq!(a["cvv"].as_str().unwrap().len(), 3);
    assert!(!a["card"]["card_number"].as_str().unwrap().contains(&pan[6..12]), "listing masks the PAN");

    // Top-up requires an idempotency key.
    let (s, e) =
        app.post("/api/v1/topups", Some(&alice), json!({"card_id": a_id, "amount": 100_000, "method": "ovo"})).await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(error_code(&e), "idempotency_key_required");

    let (s, t) =
        money(&app, &alice, "/api/v1/topups", "t1", json!({"card_id": a_id, "amount": 500_000, "method": "ovo"})).await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(t["status"], "success");
    // Same key, same body: the original answer.
    let (s, t2) =
        money(&app, &alice, "/api/v1/topups", "t1", json!({"card_id": a_id, "amount": 500_000, "method": "ovo"})).await;
    assert_eq!(s, 201);
    assert_eq!(t2["id"], t["id"]);
    // Same key, different body: conflict.
    let (s, e) =
        money(&app, &alice, "/api/v1/topups", "t1", json!({"card_id": a_id, "amount": 600_000, "method": "ovo"})).await;
    assert_eq!(s, 409, "{e}");

    // Below minimum, unknown method, wrong currency, float amount.
    let (s, e) =
        money(&app, &alice, "/api/v1/topups", "t2", json!({"card_id": a_id, "amount": 10, "method": "ovo"})).await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("amount")), "{e}");
    let (s, e) =
        money(&app, &alice, "/api/v1/topups", "t3", json!({"card_id": a_id, "amount": 60_000, "method": "cash"})).await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("method")), "{e}");
    let (s, e) = money(
        &app,
        &alice,
        "/api/v1/topups",
        "t4",
        json!({"card_id": a_id, "amount": 60_000, "method": "ovo", "currency": "USD"}),
    )
    .await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("currency")), "{e}");
    let (s, e) =
        money(&app, &alice, "/api/v1/topups", "t5", json!({"card_id": a_id, "amount": 60000.5, "method": "ovo"})).await;
    assert_eq!(s, 400, "{e}");
    let (s, e) =
        money(&app, &alice, "/api/v1/topups", "t6", json!({"card_id": a_id, "amount": 1e20, "method": "ovo"})).await;
    assert_eq!(s, 400, "{e}");

    // Someone else's card.
    let (s, e) = money(&app, &bob, "/api/v1/withdrawals", "w0", json!({"card_id": a_id, "amount": 50_000})).await;
    assert_eq!(s, 404, "{e}");
    // Unknown card.
    let (s, e) = money(&app, &alice, "/api/v1/withdrawals", "w00", json!({"card_id": 999_999, "amount": 50_000})).await;
    assert_eq!(s, 404, "{e}");

    let (s, w) = money(&app, &alice, "/api/v1/withdrawals", "w1", json!({"card_id": a_id, "amount": 100_000})).await;
    assert_eq!(s, 201, "{w}");
    let (s, tr) = money(
        &app,
        &alice,
        "/api/v1/transfers",
        "x1",
        json!({"from_card_id": a_id, "to_card_id": b_id, "amount": 150_000}),
    )
    .await;
    assert_eq!(s, 201, "{tr}");
    // Overdraw: recorded as failed, 402, no money moved.
    let (s, f) = money(
        &app,
        &alice,
        "/api/v1/transfers",
        "x2",
        json!({"from_card_id": a_id, "to_card_id": b_id, "amount": 300_000}),
    )
    .await;
    assert_eq!(s, 402, "{f}");
    assert_eq!(f["error"]["code"], "insufficient_funds");
    assert_eq!(f["operation"]["status"], "failed");
    // Self-transfer refused at the edge.
    let (s, e) = money(
        &app,
        &alice,
        "/api/v1/transfers",
        "x3",
        json!({"from_card_id": a_id, "to_card_id": a_id, "amount": 60_000}),
    )
    .await;
    assert_eq!(s, 422, "{e}");

    let (s, bal) = app.get(&format!("/api/v1/cards/{a_id}/balance"), Some(&alice)).await;
    assert_eq!(s, 200, "{bal}");
    assert_eq!(bal["balance"], 250_000);
    assert_eq!(bal["available"], 250_000);
    assert_eq!(bal["total_withdrawn"], 100_000);
    let (_, bal) = app.get(&format!("/api/v1/cards/{b_id}/balance"), Some(&bob)).await;
    assert_eq!(bal["balance"], 150_000);

    // Statement with running balance.
    let (s, st) = app.get(&format!("/api/v1/cards/{a_id}/statement"), Some(&alice)).await;
    assert_eq!(s, 200, "{st}");
    let lines = st["items"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["balance_after"], 250_000);

    // Frozen card cannot be debited but can be credited.
    let (s, c) = app.post(&format!("/api/v1/cards/{a_id}/freeze"), Some(&alice), json!({})).await;
    assert_eq!((s, c["status"].as_str()), (200, Some("frozen")), "{c}");
    let (s, f) = money(&app, &alice, "/api/v1/withdrawals", "w2", json!({"card_id": a_id, "amount": 50_000})).await;
    assert_eq!((s, f["error"]["code"].as_str()), (402, Some("card_frozen")), "{f}");
    let (s, _) = money(
        &app,
        &bob,
        "/api/v1/transfers",
        "x4",
        json!({"from_card_id": b_id, "to_card_id": a_id, "amount": 50_000}),
    )
    .await;
    assert_eq!(s, 201);
    let (s, e) = app.post(&format!("/api/v1/cards/{a_id}/freeze"), Some(&alice), json!({})).await;
    assert_eq!(s, 409, "{e}");
    let (s, _) = app.post(&format!("/api/v1/cards/{a_id}/unfreeze"), Some(&alice), json!({})).await;
    assert_eq!(s, 200);
    // Closing needs a zero balance.
    let (s, e) = app.post(&format!("/api/v1/cards/{a_id}/close"), Some(&alice), json!({})).await;
    assert_eq!((s, error_code(&e).as_str()), (409, "non_zero_balance"));

    // Reversal (admin): money goes back, once.
    let admin = app.admin_token().await;
    let tid = tr["id"].as_str().unwrap();
    // Bob has spent part of it: the reversal would overdraw his card, so it is refused and recorded.
    let (s, r) = money(&app, &admin, &format!("/api/v1/transfers/{tid}/reversal"), "r0", json!({})).await;
    assert_eq!((s, r["error"]["code"].as_str()), (402, Some("insufficient_funds")), "{r}");
    let (s, _) =
        money(&app, &bob, "/api/v1/topups", "tb", json!({"card_id": b_id, "amount": 100_000, "method": "bca"})).await;
    assert_eq!(s, 201);
    let (s, r) = money(&app, &admin, &format!("/api/v1/transfers/{tid}/reversal"), "r1", json!({})).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["reverses_id"], tr["id"]);
    let (s, e) = money(&app, &admin, &format!("/api/v1/transfers/{tid}/reversal"), "r2", json!({})).await;
    assert_eq!(s, 409, "{e}");
    let (s, e) = money(&app, &alice, &format!("/api/v1/transfers/{tid}/reversal"), "r3", json!({})).await;
    assert_eq!(s, 403, "{e}");
    let (_, bal) = app.get(&format!("/api/v1/cards/{b_id}/balance"), Some(&bob)).await;
    assert_eq!(bal["balance"], 50_000);

    // Lists.
    let (s, l) = app.get("/api/v1/transfers", Some(&alice)).await;
    assert_eq!(s, 200);
    assert_eq!(l["items"].as_array().unwrap().len(), 3, "{l}");
    let (s, l) = app.get("/api/v1/transfers?status=failed", Some(&alice)).await;
    assert_eq!((s, l["items"].as_array().unwrap().len()), (200, 1));
    let (s, e) = app.call("DELETE", &format!("/api/v1/transfers/{tid}"), Some(&admin), None).await;
    assert_eq!((s, error_code(&e).as_str()), (409, "never_purged"));

    verify_clean(&app);
}
