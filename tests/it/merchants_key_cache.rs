//! API keys are cached per instance and invalidated by the database: a key revoked, rotated (once
//! its overlap ends) or whose merchant is suspended through one instance is refused on every other
//! instance within `auth.revocation_staleness_ms` — and so is a key blocked for too many declined
//! card-data attempts, whose correct payments are refused without asking Redis. Behaviour only: the waits are the configured bound
//! plus a margin, never a measurement.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::common::merchant::{active_merchant, create_key, decide, issue_card, keyed, merchant_settings, topup};
use crate::common::*;

const STALENESS_MS: u64 = 300;
const MARGIN_MS: u64 = 200;
const OVERLAP_SECS: i64 = 1;

/// An API-key request that reads nothing but the key's own merchant's payments.
async fn with_key(app: &TestApp, key: &str) -> u16 {
    let (s, _, b) = app.call_full("GET", "/api/v1/merchant/payments", None, None, &[("X-Api-Key", key)]).await;
    assert!(matches!(s, 200 | 401 | 403), "{s}: {b}");
    s
}

async fn wait_bound() {
    actix_web::rt::time::sleep(Duration::from_millis(STALENESS_MS + MARGIN_MS)).await;
}

#[actix_web::test]
async fn revoked_rotated_and_suspended_keys_stop_on_every_instance_within_the_bound() {
    let mut settings = merchant_settings();
    settings.auth.revocation_staleness_ms = STALENESS_MS;
    settings.merchants.key_rotation_overlap_secs = OVERLAP_SECS;
    let a = TestApp::spawn_with(settings.clone()).await;
    let b = TestApp::spawn_with(settings).await;
    let admin = a.admin_token().await;
    let (_, owner, _) = a.user("keys.owner@example.com").await;
    let mid = active_merchant(&a, &admin, &owner, "Warung Cache").await;
    let (revoked_id, revoked) = create_key(&a, &owner, mid, "to revoke").await;
    let (rotated_id, rotated) = create_key(&a, &owner, mid, "to rotate").await;
    let (_, kept) = create_key(&a, &owner, mid, "kept").await;

    // Warm both instances' caches with every key.
    wait_bound().await;
    for app in [&a, &b] {
        for key in [&revoked, &rotated, &kept] {
            for _ in 0..3 {
                assert_eq!(with_key(app, key).await, 200);
            }
        }
    }

    // Revoked through A: refused on B (and A) within the bound.
    let (s, v) = a.call("DELETE", &format!("/api/v1/merchants/{mid}/api-keys/{revoked_id}"), Some(&owner), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(with_key(&a, &revoked).await, 401, "the revoking instance refuses at once");
    wait_bound().await;
    assert_eq!(with_key(&b, &revoked).await, 401);
    assert_eq!(with_key(&b, &kept).await, 200);

    // Rotated through B: the old key works through the overlap, then A refuses it although A had it
    // cached without an expiry; the new key works on A.
    let (s, v) = b
        .post(&format!("/api/v1/merchants/{mid}/api-keys/{rotated_id}/rotate"), Some(&owner), serde_json::json!({}))
        .await;
    assert_eq!(s, 201, "{v}");
    let new_key = v["api_key"].as_str().unwrap().to_owned();
    assert_eq!(with_key(&a, &new_key).await, 200);
    actix_web::rt::time::sleep(
        Duration::from_millis(u64::try_from(OVERLAP_SECS).unwrap() * 1000) + Duration::from_millis(MARGIN_MS),
    )
    .await;
    assert_eq!(with_key(&a, &rotated).await, 401);
    assert_eq!(with_key(&b, &rotated).await, 401);
    assert_eq!(with_key(&a, &new_key).await, 200);

    // The merchant suspended through A: every key refused on B within the bound.
    let (s, v) = decide(&a, &admin, mid, "suspend", Some("checks")).await;
    assert_eq!(s, 200, "{v}");
    wait_bound().await;
    assert_eq!(with_key(&b, &kept).await, 403);
    assert_eq!(with_key(&b, &new_key).await, 403);
}

#[actix_web::test]
async fn a_key_blocked_for_declines_on_one_instance_refuses_correct_payments_on_the_other() {
    let mut settings = merchant_settings();
    settings.auth.revocation_staleness_ms = STALENESS_MS;
    settings.merchants.key_failure_limit = 3;
    let a = TestApp::spawn_with(settings.clone()).await;
    let b = TestApp::spawn_with(settings).await;
    let admin = a.admin_token().await;
    let (_, owner, _) = a.user("block.owner@example.com").await;
    let (_, customer, _) = a.user("block.customer@example.com").await;
    let mid = active_merchant(&a, &admin, &owner, "Warung Blok").await;
    let (_, key) = create_key(&a, &owner, mid, "busy").await;
    let card = issue_card(&a, &customer).await;
    topup(&a, &customer, card.id, 10_000_000).await;
    let pay = "/api/v1/payments";

    // B has the key cached and pays with it.
    wait_bound().await;
    let (s, v) = keyed(&b, "POST", pay, &key, "ok-1", Some(card.pay("order-1", 100_000))).await;
    assert_eq!(s, 201, "{v}");

    // Three wrong CVVs through A reach the key's limit (the card's limit is higher: not locked).
    for i in 0..3 {
        let mut body = card.pay(&format!("wrong-{i}"), 100_000);
        body["cvv"] = serde_json::json!(card.wrong_cvv());
        let (s, v) = keyed(&a, "POST", pay, &key, &format!("wrong-{i}"), Some(body)).await;
        assert_eq!(s, 402, "{v}");
    }
    // Correct details: refused at once on A, within the bound on B.
    let (s, v) = keyed(&a, "POST", pay, &key, "ok-2", Some(card.pay("order-2", 100_000))).await;
    assert_eq!((s, error_code(&v).as_str()), (429, "too_many_declines"), "{v}");
    wait_bound().await;
    let (s, v) = keyed(&b, "POST", pay, &key, "ok-3", Some(card.pay("order-3", 100_000))).await;
    assert_eq!((s, error_code(&v).as_str()), (429, "too_many_declines"), "{v}");
}
