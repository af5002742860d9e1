//! Merchant authorization matrix: API keys only reach their own merchant's payments, owners only
//! their own merchant's keys, documents, payments, balance and statement; only admins decide; keys
//! need an active merchant; invalid transitions name the current state; the profile never carries
//! status or owner; customers see only their own payments; forged, revoked, rotated-and-expired keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::too_many_lines)]

use diesel::prelude::*;
use serde_json::{json, Value};

use crate::common::merchant::*;
use crate::common::{error_code, expect_error, TestApp};

/// A payment with a fresh idempotency key.
async fn pay(app: &TestApp, key: &str, card: &TestCard, order: &str, amount: i64) -> (u16, Value) {
    let idem = format!("pay-{}", uuid::Uuid::new_v4().simple());
    keyed(app, "POST", "/api/v1/payments", key, &idem, Some(card.pay(order, amount))).await
}

async fn refund(app: &TestApp, key: &str, payment: &str, body: Value) -> (u16, Value) {
    let idem = format!("ref-{}", uuid::Uuid::new_v4().simple());
    keyed(app, "POST", &format!("/api/v1/payments/{payment}/refunds"), key, &idem, Some(body)).await
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect()
}

fn expect_transition(s: u16, e: &Value, current: &str) {
    expect_error(s, e, 409, "invalid_transition");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains(current), "message should name the current state `{current}`: {msg}");
}

#[actix_web::test]
async fn merchant_authorization_matrix() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    let (a_id, owner_a) = verified(&app, &admin, "owner-a@example.com").await;
    let (b_id, owner_b) = verified(&app, &admin, "owner-b@example.com").await;
    let (_, customer1) = verified(&app, &admin, "customer1@example.com").await;
    let (_, customer2) = verified(&app, &admin, "customer2@example.com").await;

    let ma = active_merchant(&app, &admin, &owner_a, "Shop A").await;
    let mb = active_merchant(&app, &admin, &owner_b, "Shop B").await;
    let (ka_id, ka) = create_key(&app, &owner_a, ma, "a").await;
    let (kb_id, kb) = create_key(&app, &owner_b, mb, "b").await;
    let (s, docs_b) = app.get(&format!("/api/v1/merchants/{mb}/documents"), Some(&owner_b)).await;
    assert_eq!(s, 200);
    let doc_b = docs_b[0]["id"].as_i64().unwrap();

    let c1 = issue_card(&app, &customer1).await;
    let c2 = issue_card(&app, &customer2).await;
    topup(&app, &customer1, c1.id, 5_000_000).await;
    topup(&app, &customer2, c2.id, 5_000_000).await;
    let (s, pa) = pay(&app, &ka, &c1, "a-1", 200_000).await;
    assert_eq!(s, 201, "{pa}");
    let (s, pb) = pay(&app, &kb, &c2, "b-1", 300_000).await;
    assert_eq!(s, 201, "{pb}");
    let (s, pb2) = pay(&app, &kb, &c1, "b-2", 100_000).await;
    assert_eq!(s, 201, "{pb2}");
    let (pa, pb, pb2) = (
        pa["id"].as_str().unwrap().to_owned(),
        pb["id"].as_str().unwrap().to_owned(),
        pb2["id"].as_str().unwrap().to_owned(),
    );

    // --- API keys only reach their own merchant's payments.
    let (s, e) = refund(&app, &ka, &pb, json!({"amount": 50_000})).await;
    expect_error(s, &e, 404, "not_found");
    let (s, unknown) = refund(&app, &ka, &uuid::Uuid::now_v7().to_string(), json!({"amount": 50_000})).await;
    expect_error(s, &unknown, 404, "not_found");
    assert_eq!(
        e["error"]["message"], unknown["error"]["message"],
        "another merchant's payment looks like an unknown one"
    );
    let (s, r) = app.get(&format!("/api/v1/payments/{pb}/refunds"), Some(&owner_b)).await;
    assert_eq!((s, r.as_array().map(Vec::len)), (200, Some(0)), "nothing was refunded: {r}");
    let (s, _, list) =
        app.call_full("GET", "/api/v1/merchant/payments", None, None, &[("X-Api-Key", ka.as_str())]).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(ids(&list), vec![pa.clone()], "A's key lists only A's payments");
    assert!(list["items"].as_array().unwrap().iter().all(|p| p["merchant_id"] == ma));
    let path = format!("/api/v1/merchant/payments?merchant_id={mb}");
    let (s, _, list) = app.call_full("GET", &path, None, None, &[("X-Api-Key", ka.as_str())]).await;
    assert_eq!((s, ids(&list).len()), (200, 0), "filtering by another merchant shows nothing: {list}");
    let (s, _, list) =
        app.call_full("GET", "/api/v1/merchant/payments", None, None, &[("X-Api-Key", kb.as_str())]).await;
    let mut got = ids(&list);
    got.sort();
    let mut want = vec![pb.clone(), pb2.clone()];
    want.sort();
    assert_eq!((s, got), (200, want));
    // A bearer token of a non-admin cannot refund (refunds take an API key or the admin role).
    let (s, _, e) = app
        .call_full(
            "POST",
            &format!("/api/v1/payments/{pa}/refunds"),
            Some(&owner_a),
            Some(json!({})),
            &[("Idempotency-Key", "bearer-1")],
        )
        .await;
    assert_eq!(s, 403, "{e}");

    // --- Owners see only their own merchant's keys, documents, payments, balance, statement.
    let b = format!("/api/v1/merchants/{mb}");
    for path in [
        b.clone(),
        format!("{b}/api-keys"),
        format!("{b}/documents"),
        format!("{b}/documents/{doc_b}/content"),
        format!("{b}/payments"),
        format!("{b}/balance"),
        format!("{b}/statement"),
    ] {
        for token in [&owner_a, &customer1] {
            let (s, e) = app.get(&path, Some(token)).await;
            expect_error(s, &e, 404, "not_found");
            assert!(!e.to_string().contains(&kb[20..]), "{e}");
        }
        let (s, _) = app.get(&path, Some(&owner_b)).await;
        assert_eq!(s, 200, "the owner sees {path}");
        let (s, _) = app.get(&path, Some(&admin)).await;
        assert_eq!(s, 200, "an admin sees {path}");
    }
    // B's document is not reachable through A's merchant either.
    let (s, e) = app.get(&format!("/api/v1/merchants/{ma}/documents/{doc_b}/content"), Some(&owner_a)).await;
    expect_error(s, &e, 404, "not_found");
    // Nor can A act on B's keys, documents or profile.
    let (s, e) = app.post(&format!("{b}/api-keys"), Some(&owner_a), json!({"label": "mine now"})).await;
    expect_error(s, &e, 404, "not_found");
    let (s, e) = app.post(&format!("{b}/api-keys/{kb_id}/rotate"), Some(&owner_a), json!({})).await;
    expect_error(s, &e, 404, "not_found");
    let (s, e) = app.call("DELETE", &format!("{b}/api-keys/{kb_id}"), Some(&owner_a), None).await;
    expect_error(s, &e, 404, "not_found");
    let (s, e) = upload(&app, &owner_a, mb, "tax_id", PDF, "application/pdf").await;
    expect_error(s, &e, 404, "not_found");
    let (s, e) = app.call("PATCH", &b, Some(&owner_a), Some(json!({"business_name": "Taken Over"}))).await;
    expect_error(s, &e, 404, "not_found");
    let (s, e) = app.get("/api/v1/merchants/999999/balance", Some(&owner_a)).await;
    expect_error(s, &e, 404, "not_found");
    let (s, list) = app.get("/api/v1/merchants", Some(&owner_a)).await;
    assert_eq!(s, 200);
    assert!(list["items"].as_array().unwrap().iter().all(|m| m["owner_id"] == a_id), "{list}");
    // B's key still works and B's merchant is untouched.
    let (s, p) = pay(&app, &kb, &c2, "b-3", 50_000).await;
    assert_eq!(s, 201, "{p}");
    let (_, m) = app.get(&b, Some(&owner_b)).await;
    assert_eq!((m["business_name"].as_str(), m["owner_id"].as_i64()), (Some("Shop B"), Some(b_id)));

    // --- Only admins decide.
    let a = format!("/api/v1/merchants/{ma}");
    for action in ["approve", "reject", "suspend", "reactivate", "close", "archive", "restore"] {
        for token in [&owner_a, &customer1] {
            let (s, e) = decide(&app, token, ma, action, Some("because")).await;
            expect_error(s, &e, 403, "forbidden");
        }
    }
    let (_, m) = app.get(&a, Some(&owner_a)).await;
    assert_eq!((m["status"].as_str(), &m["archived_at"]), (Some("active"), &Value::Null), "{m}");

    // --- Invalid transitions name the current state.
    let (s, e) = decide(&app, &admin, ma, "reactivate", None).await;
    expect_transition(s, &e, "active");
    let (s, e) = decide(&app, &admin, ma, "approve", None).await;
    expect_transition(s, &e, "active");
    let (s, e) = decide(&app, &admin, ma, "reject", Some("late")).await;
    expect_transition(s, &e, "active");
    let (s, e) = decide(&app, &admin, ma, "restore", None).await;
    expect_transition(s, &e, "not archived");

    // --- Keys need an active merchant: pending, suspended, closed, rejected.
    let (_, owner_p) = verified(&app, &admin, "owner-p@example.com").await;
    let mp = apply(&app, &owner_p, "Pending Shop").await;
    let (s, e) = app.post(&format!("/api/v1/merchants/{mp}/api-keys"), Some(&owner_p), json!({"label": "x"})).await;
    expect_error(s, &e, 403, "merchant_inactive");
    let (s, e) = decide(&app, &admin, mp, "suspend", Some("no")).await;
    expect_transition(s, &e, "pending");
    let (s, e) = decide(&app, &admin, mp, "reactivate", None).await;
    expect_transition(s, &e, "pending");
    let (s, e) = decide(&app, &admin, mp, "approve", None).await;
    expect_error(s, &e, 409, "documents_missing");

    let (_, owner_s) = verified(&app, &admin, "owner-s@example.com").await;
    let ms = active_merchant(&app, &admin, &owner_s, "Suspended Shop").await;
    let (ks_id, ks) = create_key(&app, &owner_s, ms, "s").await;
    let (s, e) = decide(&app, &admin, ms, "suspend", None).await;
    expect_error(s, &e, 422, "validation_failed");
    let (s, m) = decide(&app, &admin, ms, "suspend", Some("chargebacks")).await;
    assert_eq!((s, m["status"].as_str()), (200, Some("suspended")), "{m}");
    let (s, e) = app.post(&format!("/api/v1/merchants/{ms}/api-keys"), Some(&owner_s), json!({"label": "y"})).await;
    expect_error(s, &e, 403, "merchant_inactive");
    let (s, e) = app.post(&format!("/api/v1/merchants/{ms}/api-keys/{ks_id}/rotate"), Some(&owner_s), json!({})).await;
    expect_error(s, &e, 403, "merchant_inactive");
    let (s, e) = pay(&app, &ks, &c1, "s-1", 50_000).await;
    expect_error(s, &e, 403, "merchant_inactive");
    let (s, e) = decide(&app, &admin, ms, "suspend", Some("again")).await;
    expect_transition(s, &e, "suspended");
    let (s, e) = decide(&app, &admin, ms, "approve", None).await;
    expect_transition(s, &e, "suspended");
    let (s, m) = decide(&app, &admin, ms, "reactivate", None).await;
    assert_eq!((s, m["status"].as_str()), (200, Some("active")), "{m}");
    let (s, p) = pay(&app, &ks, &c1, "s-1", 50_000).await;
    assert_eq!(s, 201, "reactivated merchant's key works again: {p}");
    let (s, m) = decide(&app, &admin, ms, "close", None).await;
    assert_eq!((s, m["status"].as_str()), (200, Some("closed")), "{m}");
    let (s, e) = pay(&app, &ks, &c1, "s-2", 50_000).await;
    expect_error(s, &e, 403, "merchant_inactive");
    let (s, e) = app.post(&format!("/api/v1/merchants/{ms}/api-keys"), Some(&owner_s), json!({})).await;
    expect_error(s, &e, 403, "merchant_inactive");
    let (s, e) = decide(&app, &admin, ms, "close", None).await;
    expect_transition(s, &e, "closed");
    let (s, e) = decide(&app, &admin, ms, "reactivate", None).await;
    expect_transition(s, &e, "closed");
    let (s, e) =
        app.call("PATCH", &format!("/api/v1/merchants/{ms}"), Some(&owner_s), Some(json!({"description": "x"}))).await;
    expect_transition(s, &e, "closed");
    let (s, m) = decide(&app, &admin, ms, "archive", None).await;
    assert_eq!(s, 200, "{m}");
    let (s, e) = decide(&app, &admin, ms, "archive", None).await;
    expect_transition(s, &e, "archived");

    // A rejected merchant: keys cannot be created, and a key that exists anyway (written directly to
    // the database, as if left over) is refused with 403.
    let (_, owner_r) = verified(&app, &admin, "owner-r@example.com").await;
    let mr = apply(&app, &owner_r, "Rejected Shop").await;
    let (s, m) = decide(&app, &admin, mr, "reject", Some("incomplete")).await;
    assert_eq!((s, m["status"].as_str()), (200, Some("rejected")), "{m}");
    let (s, e) = decide(&app, &admin, mr, "reject", Some("again")).await;
    expect_transition(s, &e, "rejected");
    let (s, e) = decide(&app, &admin, mr, "approve", None).await;
    expect_transition(s, &e, "rejected");
    let (s, e) = app.post(&format!("/api/v1/merchants/{mr}/api-keys"), Some(&owner_r), json!({})).await;
    expect_error(s, &e, 403, "merchant_inactive");
    let (key_id, secret, kr) = payd::merchants::keys::generate();
    let hash = payd::identity::tokens::TokenKeys::new(&app.settings.auth).hash(&secret);
    diesel::sql_query(
        "INSERT INTO merchant_api_keys (merchant_id, label, key_id, secret_hash) VALUES ($1, 'left over', $2, $3)",
    )
    .bind::<diesel::sql_types::BigInt, _>(mr)
    .bind::<diesel::sql_types::Text, _>(&key_id)
    .bind::<diesel::sql_types::Text, _>(&hash)
    .execute(&mut app.db())
    .unwrap();
    let (s, e) = pay(&app, &kr, &c1, "r-1", 50_000).await;
    expect_error(s, &e, 403, "merchant_inactive");
    let (s, _, e) = app.call_full("GET", "/api/v1/merchant/payments", None, None, &[("X-Api-Key", kr.as_str())]).await;
    expect_error(s, &e, 403, "merchant_inactive");

    // --- The profile never carries status or owner.
    for body in [
        json!({"status": "suspended"}),
        json!({"owner_id": b_id}),
        json!({"account_id": 1}),
        json!({"business_name": "A2", "status": "closed"}),
    ] {
        for token in [&owner_a, &admin] {
            let (s, e) = app.call("PATCH", &a, Some(token), Some(body.clone())).await;
            assert_eq!(s, 400, "{body}: {e}");
            error_code(&e);
        }
    }
    let (s, m) = app
        .call("PATCH", &a, Some(&owner_a), Some(json!({"business_name": "Shop A Renamed", "category": "books"})))
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(
        (m["business_name"].as_str(), m["status"].as_str(), m["owner_id"].as_i64()),
        (Some("Shop A Renamed"), Some("active"), Some(a_id))
    );

    // --- Customers see their own payments only.
    let (s, list) = app.get("/api/v1/payments", Some(&customer1)).await;
    assert_eq!(s, 200, "{list}");
    let mine = ids(&list);
    assert!(mine.contains(&pa) && mine.contains(&pb2), "{list}");
    assert!(!mine.contains(&pb), "customer 1 must not see customer 2's payment: {list}");
    let (_, list) = app.get("/api/v1/payments", Some(&customer2)).await;
    let theirs = ids(&list);
    assert!(theirs.contains(&pb) && !theirs.contains(&pa) && !theirs.contains(&pb2), "{list}");
    let (_, list) = app.get(&format!("/api/v1/payments?merchant_id={ma}"), Some(&customer2)).await;
    assert!(ids(&list).is_empty(), "{list}");
    for path in [format!("/api/v1/payments/{pa}"), format!("/api/v1/payments/{pa}/refunds")] {
        let (s, e) = app.get(&path, Some(&customer2)).await;
        expect_error(s, &e, 404, "not_found");
    }
    let (s, e) = app.get(&format!("/api/v1/payments/{pb}"), Some(&owner_a)).await;
    expect_error(s, &e, 404, "not_found");
    let (s, _) = app.get(&format!("/api/v1/payments/{pb}"), Some(&owner_b)).await;
    assert_eq!(s, 200);
    let (s, list) = app.get("/api/v1/payments", Some(&admin)).await;
    assert!(s == 200 && ids(&list).contains(&pa) && ids(&list).contains(&pb), "{list}");

    // --- Forged and unknown keys.
    let ka_public = ka.split('_').nth(1).unwrap().to_owned();
    let forged = format!("pk_{ka_public}_{}", "ab".repeat(32));
    assert_ne!(forged, ka);
    let (s, e) = pay(&app, &forged, &c1, "a-forged", 50_000).await;
    expect_error(s, &e, 401, "invalid_api_key");
    let (s, e) = pay(&app, &format!("pk_{}_{}", "0".repeat(16), "ab".repeat(32)), &c1, "a-unknown", 50_000).await;
    expect_error(s, &e, 401, "invalid_api_key");
    let (s, _, e) = app.call_full("GET", "/api/v1/merchant/payments", Some(&owner_a), None, &[]).await;
    expect_error(s, &e, 401, "invalid_api_key");

    // --- Rotation with the default overlap: the old key keeps working, and only rotates once.
    let (s, rotated) = app.post(&format!("{a}/api-keys/{ka_id}/rotate"), Some(&owner_a), json!({})).await;
    assert_eq!(s, 201, "{rotated}");
    let ka2 = rotated["api_key"].as_str().unwrap().to_owned();
    let (s, p) = pay(&app, &ka, &c1, "a-old-key", 50_000).await;
    assert_eq!(s, 201, "old key within the overlap: {p}");
    let (s, p) = pay(&app, &ka2, &c1, "a-new-key", 50_000).await;
    assert_eq!(s, 201, "new key: {p}");
    let (s, e) = app.post(&format!("{a}/api-keys/{ka_id}/rotate"), Some(&owner_a), json!({})).await;
    expect_error(s, &e, 409, "invalid_transition");
    let (_, keys) = app.get(&format!("{a}/api-keys"), Some(&owner_a)).await;
    let old = keys.as_array().unwrap().iter().find(|k| k["id"] == ka_id).unwrap();
    assert!(old["expires_at"].is_string(), "{keys}");
    assert!(!keys.to_string().contains(&ka2[20..]), "no secret in the listing");
    // Revoking the old key ends the overlap at once.
    let (s, _) = app.call("DELETE", &format!("{a}/api-keys/{ka_id}"), Some(&owner_a), None).await;
    assert_eq!(s, 200);
    let (s, e) = pay(&app, &ka, &c1, "a-revoked", 50_000).await;
    expect_error(s, &e, 401, "api_key_revoked");
    let (s, p) = pay(&app, &ka2, &c1, "a-after-revoke", 50_000).await;
    assert_eq!(s, 201, "{p}");

    let report = payd::ledger::verify::run(&mut app.db()).unwrap();
    assert!(report.is_clean(), "{report}");
}

#[actix_web::test]
async fn rotated_key_without_overlap_expires_at_once() {
    let mut settings = merchant_settings();
    settings.merchants.key_rotation_overlap_secs = 0;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let (_, owner) = verified(&app, &admin, "owner@example.com").await;
    let (_, customer) = verified(&app, &admin, "customer@example.com").await;
    let m = active_merchant(&app, &admin, &owner, "Rotating Shop").await;
    let (kid, key) = create_key(&app, &owner, m, "main").await;
    let card = issue_card(&app, &customer).await;
    topup(&app, &customer, card.id, 1_000_000).await;
    let (s, p) = pay(&app, &key, &card, "o-1", 50_000).await;
    assert_eq!(s, 201, "{p}");

    let (s, rotated) = app.post(&format!("/api/v1/merchants/{m}/api-keys/{kid}/rotate"), Some(&owner), json!({})).await;
    assert_eq!(s, 201, "{rotated}");
    let new_key = rotated["api_key"].as_str().unwrap().to_owned();
    let (s, e) = pay(&app, &key, &card, "o-2", 50_000).await;
    expect_error(s, &e, 401, "api_key_expired");
    let (s, e) = refund(&app, &key, p["id"].as_str().unwrap(), json!({})).await;
    expect_error(s, &e, 401, "api_key_expired");
    let (s, p2) = pay(&app, &new_key, &card, "o-2", 50_000).await;
    assert_eq!(s, 201, "{p2}");
    let (s, r) = refund(&app, &new_key, p["id"].as_str().unwrap(), json!({})).await;
    assert_eq!((s, r["amount"].as_i64()), (201, Some(50_000)), "the new key refunds the old key's payment: {r}");
    // The expired key cannot be rotated again.
    let (s, e) = app.post(&format!("/api/v1/merchants/{m}/api-keys/{kid}/rotate"), Some(&owner), json!({})).await;
    expect_error(s, &e, 409, "invalid_transition");

    let report = payd::ledger::verify::run(&mut app.db()).unwrap();
    assert!(report.is_clean(), "{report}");
}
