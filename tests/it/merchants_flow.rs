//! Merchants end to end: apply, documents (upload checks, download, review), approval, API keys,
//! payments with card checks, refunds, revocation and suspension — then `verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::merchant::{keyed, upload, PDF, PNG};
use crate::common::*;
use serde_json::json;

#[actix_web::test]
async fn merchant_onboarding_payments_and_refunds() {
    let mut settings = settings();
    settings.merchants.max_document_bytes = 4096;
    settings.merchants.document_dir =
        std::env::temp_dir().join(format!("payd-docs-{}", uuid::Uuid::new_v4())).display().to_string();
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let (owner_id, owner, _) = app.user("shop@example.com").await;
    let (_, stranger, _) = app.user("stranger@example.com").await;
    let (_, customer, _) = app.user("customer@example.com").await;

    let (s, m) = app
        .post(
            "/api/v1/merchants",
            Some(&owner),
            json!({"business_name": "Kopi Kita", "contact_email": "shop@example.com", "category": "food"}),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["status"], "pending");
    let mid = m["id"].as_i64().unwrap();
    // Status is not part of the profile.
    let (s, e) =
        app.call("PATCH", &format!("/api/v1/merchants/{mid}"), Some(&owner), Some(json!({"status": "active"}))).await;
    assert_eq!(s, 400, "{e}");
    let (s, _) = app.get(&format!("/api/v1/merchants/{mid}"), Some(&stranger)).await;
    assert_eq!(s, 404);
    let (s, _) = app.post(&format!("/api/v1/merchants/{mid}/approve"), Some(&owner), json!({})).await;
    assert_eq!(s, 403, "only admins decide");
    let (s, e) = app.post(&format!("/api/v1/merchants/{mid}/approve"), Some(&admin), json!({})).await;
    assert_eq!((s, error_code(&e).as_str()), (409, "documents_missing"), "{e}");

    // Documents: type and size checks.
    let (s, e) = upload(&app, &owner, mid, "business_licence", PNG, "application/pdf").await;
    assert_eq!(s, 415, "mislabelled file: {e}");
    let (s, e) = upload(&app, &owner, mid, "business_licence", b"GIF89a....", "image/gif").await;
    assert_eq!(s, 415, "{e}");
    let big = [PDF, &vec![b'x'; 5000]].concat();
    let (s, e) = upload(&app, &owner, mid, "business_licence", &big, "application/pdf").await;
    assert_eq!(s, 413, "{e}");
    let (s, e) = upload(&app, &owner, mid, "passport_scan", PDF, "application/pdf").await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("doc_type")), "{e}");
    let (s, e) = upload(&app, &stranger, mid, "business_licence", PDF, "application/pdf").await;
    assert_eq!(s, 404, "{e}");
    let (s, d1) = upload(&app, &owner, mid, "business_licence", PDF, "application/pdf").await;
    assert_eq!(s, 201, "{d1}");
    let (s, d2) = upload(&app, &owner, mid, "owner_identity", PNG, "image/png").await;
    assert_eq!(s, 201, "{d2}");
    let d1id = d1["id"].as_i64().unwrap();
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/merchants/{mid}/documents/{d1id}/content")))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), PDF);
    let (s, _) = app.get(&format!("/api/v1/merchants/{mid}/documents/{d1id}/content"), Some(&stranger)).await;
    assert_eq!(s, 404);
    for d in [&d1, &d2] {
        let (s, r) = app
            .post(
                &format!("/api/v1/merchants/{mid}/documents/{}/review", d["id"]),
                Some(&admin),
                json!({"decision": "approve", "note": "ok"}),
            )
            .await;
        assert_eq!((s, r["status"].as_str()), (200, Some("approved")), "{r}");
    }
    let (s, m) = app.post(&format!("/api/v1/merchants/{mid}/approve"), Some(&admin), json!({})).await;
    assert_eq!((s, m["status"].as_str()), (200, Some("active")), "{m}");
    let (s, e) = app.post(&format!("/api/v1/merchants/{mid}/approve"), Some(&admin), json!({})).await;
    assert_eq!((s, error_code(&e).as_str()), (409, "invalid_transition"), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("active"));
    let (_, me) = app.login("shop@example.com", PASSWORD).await;
    let (_, profile) = app.get("/api/v1/auth/me", me["access_token"].as_str()).await;
    assert!(profile["roles"].as_array().unwrap().contains(&json!("merchant")), "{profile}");
    let _ = owner_id;

    // API keys: created by the owner, secret shown once.
    let (s, e) = app.post(&format!("/api/v1/merchants/{mid}/api-keys"), Some(&stranger), json!({"label": "x"})).await;
    assert_eq!(s, 404, "{e}");
    let (s, k) = app.post(&format!("/api/v1/merchants/{mid}/api-keys"), Some(&owner), json!({"label": "pos"})).await;
    assert_eq!(s, 201, "{k}");
    let key = k["api_key"].as_str().unwrap().to_owned();
    let (s, list) = app.get(&format!("/api/v1/merchants/{mid}/api-keys"), Some(&owner)).await;
    assert_eq!(s, 200);
    assert!(!list.to_string().contains(&key[20..]), "listing never shows the secret");

    // A customer card with money.
    let (s, c) = app.post("/api/v1/cards", Some(&customer), json!({"card_type": "debit", "brand": "visa"})).await;
    assert_eq!(s, 201);
    let card_id = c["card"]["id"].as_i64().unwrap();
    let (number, cvv) = (c["card_number"].as_str().unwrap().to_owned(), c["cvv"].as_str().unwrap().to_owned());
    let (month, year) = (c["card"]["expiry_month"].as_i64().unwrap(), c["card"]["expiry_year"].as_i64().unwrap());
    let (s, _, _) = app
        .call_full(
            "POST",
            "/api/v1/topups",
            Some(&customer),
            Some(json!({"card_id": card_id, "amount": 1_000_000, "method": "bca"})),
            &[("Idempotency-Key", "fund")],
        )
        .await;
    assert_eq!(s, 201);
    let pay = |order: &str, amount: i64, cvv: &str, month: i64| json!({"card_number": number, "expiry_month": month, "expiry_year": year, "cvv": cvv, "amount": amount, "method": "visa", "order_ref": order});

    // Payments: bad key, wrong CVV, wrong expiry, success, duplicate order, idempotent replay.
    let (s, e) =
        keyed(&app, "POST", "/api/v1/payments", "pk_0000000000000000_00", "p0", Some(pay("o1", 100_000, &cvv, month)))
            .await;
    assert_eq!((s, error_code(&e).as_str()), (401, "invalid_api_key"), "{e}");
    let wrong = if cvv == "000" { "111" } else { "000" };
    let (s, e) = keyed(&app, "POST", "/api/v1/payments", &key, "p1", Some(pay("o1", 100_000, wrong, month))).await;
    // Every card-data failure answers the merchant the same `card_declined`, with no operation.
    assert_eq!((s, e["error"]["code"].as_str()), (402, Some("card_declined")), "{e}");
    assert!(e.get("operation").is_none(), "{e}");
    let other_month = if month == 12 { 1 } else { month + 1 };
    let (s, e) = keyed(&app, "POST", "/api/v1/payments", &key, "p2", Some(pay("o1", 100_000, &cvv, other_month))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (402, Some("card_declined")), "{e}");
    let (s, p) = keyed(&app, "POST", "/api/v1/payments", &key, "p3", Some(pay("o1", 300_000, &cvv, month))).await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["merchant_id"], mid);
    let (s, p_again) = keyed(&app, "POST", "/api/v1/payments", &key, "p3", Some(pay("o1", 300_000, &cvv, month))).await;
    assert_eq!((s, &p_again["id"]), (201, &p["id"]));
    let (s, e) = keyed(&app, "POST", "/api/v1/payments", &key, "p4", Some(pay("o1", 300_000, &cvv, month))).await;
    assert_eq!((s, error_code(&e).as_str()), (409, "order_ref_taken"), "{e}");
    let (_, bal) = app.get(&format!("/api/v1/merchants/{mid}/balance"), Some(&owner)).await;
    assert_eq!(bal["balance"], 300_000);
    let (_, cb) = app.get(&format!("/api/v1/cards/{card_id}/balance"), Some(&customer)).await;
    assert_eq!(cb["balance"], 700_000);
    // The customer and the merchant both see it; a stranger does not.
    let pid = p["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get(&format!("/api/v1/payments/{pid}"), Some(&customer)).await.0, 200);
    assert_eq!(app.get(&format!("/api/v1/payments/{pid}"), Some(&owner)).await.0, 200);
    assert_eq!(app.get(&format!("/api/v1/payments/{pid}"), Some(&stranger)).await.0, 404);

    // Refunds: partial, too much, the rest, nothing left.
    let refund = format!("/api/v1/payments/{pid}/refunds");
    let (s, r) = keyed(&app, "POST", &refund, &key, "r1", Some(json!({"amount": 100_000}))).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["kind"], "refund");
    let (s, e) = keyed(&app, "POST", &refund, &key, "r2", Some(json!({"amount": 250_000}))).await;
    assert_eq!((s, error_code(&e).as_str()), (409, "not_refundable"), "{e}");
    let (s, r) = keyed(&app, "POST", &refund, &key, "r3", Some(json!({}))).await;
    assert_eq!((s, r["amount"].as_i64()), (201, Some(200_000)), "{r}");
    let (s, e) = keyed(&app, "POST", &refund, &key, "r4", Some(json!({}))).await;
    assert_eq!(s, 409, "{e}");
    let (_, bal) = app.get(&format!("/api/v1/merchants/{mid}/balance"), Some(&owner)).await;
    assert_eq!(bal["balance"], 0);
    let (s, list) = app.get(&format!("/api/v1/payments/{pid}/refunds"), Some(&customer)).await;
    assert_eq!((s, list.as_array().unwrap().len()), (200, 2));

    // Revoked keys stop working; a suspended merchant's keys are refused.
    let (s, k2) = app.post(&format!("/api/v1/merchants/{mid}/api-keys"), Some(&owner), json!({"label": "web"})).await;
    assert_eq!(s, 201);
    let key2 = k2["api_key"].as_str().unwrap().to_owned();
    let (s, _) =
        app.call("DELETE", &format!("/api/v1/merchants/{mid}/api-keys/{}", k["key"]["id"]), Some(&owner), None).await;
    assert_eq!(s, 200);
    let (s, e) = keyed(&app, "POST", "/api/v1/payments", &key, "p5", Some(pay("o2", 100_000, &cvv, month))).await;
    assert_eq!((s, error_code(&e).as_str()), (401, "api_key_revoked"), "{e}");
    let (s, _) = app.post(&format!("/api/v1/merchants/{mid}/suspend"), Some(&admin), json!({"reason": "review"})).await;
    assert_eq!(s, 200);
    let (s, e) = keyed(&app, "POST", "/api/v1/payments", &key2, "p6", Some(pay("o2", 100_000, &cvv, month))).await;
    assert_eq!((s, error_code(&e).as_str()), (403, "merchant_inactive"), "{e}");

    let mut conn = app.db();
    let report = payd::ledger::verify::run(&mut conn).unwrap();
    assert!(report.is_clean(), "{report}");
}
