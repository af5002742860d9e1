//! Card data and abuse: merchants cannot tell card-data failures apart (one uniform `card_declined`,
//! the precise reason recorded for the cardholder), concurrent probing is counted exactly and locks the
//! card at the threshold until its holder unlocks it, API keys that keep failing are throttled, stored
//! request fingerprints are keyed MACs without card data and expire, and card transitions stay final
//! under races.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use serde_json::{json, Value};

use crate::common::merchant::*;
use crate::common::*;

/// A shop with an API key, and a customer with a funded card.
struct Shop {
    app: TestApp,
    owner: String,
    merchant: i64,
    key: String,
    key_id: i64,
    customer: String,
    card: TestCard,
}

async fn shop(settings: payd::config::Settings) -> Shop {
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let (_, owner) = verified(&app, &admin, "abuse.owner@example.com").await;
    let merchant = active_merchant(&app, &admin, &owner, "Abuse Shop").await;
    let (key_id, key) = create_key(&app, &owner, merchant, "pos").await;
    let (_, customer) = verified(&app, &admin, "abuse.holder@example.com").await;
    let card = issue_card(&app, &customer).await;
    topup(&app, &customer, card.id, 5_000_000).await;
    Shop { app, owner, merchant, key, key_id, customer, card }
}

/// A card number that passes the Luhn check but was never issued.
fn unknown_number() -> String {
    payd::cards::pan::generate(&payd::cards::pan::BRANDS[0]).digits().to_owned()
}

fn another_month(m: i32) -> i32 {
    if m == 12 {
        1
    } else {
        m + 1
    }
}

/// The answer without its request id (which differs per request by design).
fn normalised(body: &Value) -> Value {
    let mut b = body.clone();
    if let Some(e) = b.get_mut("error").and_then(Value::as_object_mut) {
        e.remove("request_id");
    }
    b
}

fn uniform() -> Value {
    json!({"error": {"code": "card_declined", "message": "the card was declined"}})
}

async fn pay(s: &Shop, key: &str, idem: &str, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    s.app
        .call_full("POST", "/api/v1/payments", None, Some(body), &[("X-Api-Key", key), ("Idempotency-Key", idem)])
        .await
}

#[derive(QueryableByName, Debug)]
struct Reason {
    #[diesel(sql_type = Nullable<Text>)]
    failure_reason: Option<String>,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Failed payment operations per recorded reason.
fn reasons(conn: &mut PgConnection) -> HashMap<String, i64> {
    diesel::sql_query(
        "SELECT failure_reason, count(*) AS n FROM operations WHERE kind = 'payment' AND status = 'failed' \
         GROUP BY failure_reason",
    )
    .load::<Reason>(conn)
    .unwrap()
    .into_iter()
    .map(|r| (r.failure_reason.unwrap_or_default(), r.n))
    .collect()
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    payments_locked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A counter in Redis (under the test's key prefix), if set.
async fn counter(app: &TestApp, key: &str) -> Option<i64> {
    let client = redis::Client::open(app.settings.redis.url.expose()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET").arg(format!("{}{key}", app.settings.redis.prefix)).query_async(&mut conn).await.unwrap()
}

fn locked(conn: &mut PgConnection, card: i64) -> bool {
    diesel::sql_query("SELECT payments_locked_at FROM cards WHERE id = $1")
        .bind::<BigInt, _>(card)
        .get_result::<Locked>(conn)
        .unwrap()
        .payments_locked_at
        .is_some()
}

#[actix_web::test]
async fn every_card_data_failure_answers_the_merchant_alike_and_the_reason_is_kept_for_the_holder() {
    let s = shop(merchant_settings()).await;
    let app = &s.app;
    // The merchant listens to every event.
    let (st, w) = app
        .post(
            &format!("/api/v1/merchants/{}/webhooks", s.merchant),
            Some(&s.owner),
            json!({"url": "http://127.0.0.1:9/hook", "event_types": ["*"]}),
        )
        .await;
    assert_eq!(st, 201, "{w}");
    // A frozen card, a closed card and an expired card of the same customer.
    let frozen = issue_card(app, &s.customer).await;
    let (st, b) = app.post(&format!("/api/v1/cards/{}/freeze", frozen.id), Some(&s.customer), json!({})).await;
    assert_eq!(st, 200, "{b}");
    let closed = issue_card(app, &s.customer).await;
    let (st, b) = app.post(&format!("/api/v1/cards/{}/close", closed.id), Some(&s.customer), json!({})).await;
    assert_eq!(st, 200, "{b}");
    let mut expired = issue_card(app, &s.customer).await;
    set_expiry(app, &mut expired, 1, 2021);

    let c = &s.card;
    let mut wrong_expiry = c.pay("o-exp", 100_000);
    wrong_expiry["expiry_month"] = json!(another_month(c.month));
    let mut wrong_cvv = c.pay("o-cvv", 100_000);
    wrong_cvv["cvv"] = json!(c.wrong_cvv());
    let mut unknown = c.pay("o-unknown", 100_000);
    unknown["card_number"] = json!(unknown_number());
    let cases = [
        ("unknown number", unknown, None),
        ("wrong expiry", wrong_expiry, Some("invalid_expiry")),
        ("wrong CVV", wrong_cvv, Some("invalid_cvv")),
        ("frozen card", frozen.pay("o-frozen", 100_000), Some("card_frozen")),
        ("closed card", closed.pay("o-closed", 100_000), Some("card_closed")),
        ("expired card", expired.pay("o-expired", 100_000), Some("card_expired")),
    ];
    for (i, (what, body, _)) in cases.iter().enumerate() {
        let idem = format!("decline-{i}");
        let (st, headers, b) = pay(&s, &s.key, &idem, body.clone()).await;
        assert_eq!((st, normalised(&b)), (402, uniform()), "{what}: {b}");
        assert!(headers.get("idempotent-replayed").is_none(), "{what}");
        assert_eq!(error_code(&b), "card_declined");
        // A retry replays the same answer, for a number that matched no card as for the others.
        let (st, headers, again) = pay(&s, &s.key, &idem, body.clone()).await;
        assert_eq!((st, normalised(&again)), (402, uniform()), "{what} replay: {again}");
        assert_eq!(headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"), "{what}");
    }

    // The precise reasons are recorded (a number that matched no card has nothing to record against).
    let mut conn = app.db();
    let got = reasons(&mut conn);
    let want: HashMap<String, i64> =
        cases.iter().filter_map(|(_, _, r)| r.map(|r| (r.to_owned(), 1))).collect::<HashMap<_, _>>();
    assert_eq!(got, want);

    // The merchant's views do not list them, by key or as the owner; the cardholder's do, with reasons.
    let (st, _, list) =
        app.call_full("GET", "/api/v1/merchant/payments", None, None, &[("X-Api-Key", s.key.as_str())]).await;
    assert_eq!(st, 200, "{list}");
    assert_eq!(list["items"], json!([]), "{list}");
    let (st, list) = app.get(&format!("/api/v1/merchants/{}/payments", s.merchant), Some(&s.owner)).await;
    assert_eq!((st, &list["items"]), (200, &json!([])), "{list}");
    let (st, mine) = app.get("/api/v1/payments?status=failed", Some(&s.customer)).await;
    assert_eq!(st, 200, "{mine}");
    let mut seen: Vec<String> =
        mine["items"].as_array().unwrap().iter().map(|o| o["failure_reason"].as_str().unwrap().to_owned()).collect();
    seen.sort();
    let mut expected: Vec<String> = want.keys().cloned().collect();
    expected.sort();
    assert_eq!(seen, expected, "{mine}");
    // Nor can the merchant's owner open one by id.
    let one = mine["items"][0]["id"].as_str().unwrap();
    let (st, e) = app.get(&format!("/api/v1/payments/{one}"), Some(&s.owner)).await;
    assert_eq!((st, error_code(&e).as_str()), (404, "not_found"), "{e}");

    // Good data still pays, and that the merchant sees.
    let (st, _, p) = pay(&s, &s.key, "good", c.pay("o-good", 100_000)).await;
    assert_eq!(st, 201, "{p}");
    let (_, _, list) =
        app.call_full("GET", "/api/v1/merchant/payments", None, None, &[("X-Api-Key", s.key.as_str())]).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");

    // Nor do its webhooks carry the declines: once the completed payment's delivery exists, every
    // earlier event of the merchant (same aggregate, delivered in order) has been dispatched.
    #[derive(QueryableByName)]
    struct Delivery {
        #[diesel(sql_type = Text)]
        event_type: String,
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let types = loop {
        let rows: Vec<Delivery> =
            diesel::sql_query("SELECT event_type FROM webhook_deliveries").load(&mut conn).unwrap();
        let types: Vec<String> = rows.into_iter().map(|d| d.event_type).collect();
        if types.iter().any(|t| t == "payment.completed") {
            break types;
        }
        assert!(std::time::Instant::now() < deadline, "no delivery of the completed payment: {types:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(!types.iter().any(|t| t == "payment.failed"), "a decline reached the merchant's webhook: {types:?}");
}

#[actix_web::test]
async fn concurrent_probing_is_counted_exactly_and_locks_the_card_until_its_holder_unlocks_it() {
    let mut settings = merchant_settings();
    settings.merchants.card_failure_limit = 5;
    settings.merchants.key_failure_limit = 100_000;
    let s = shop(settings).await;
    let c = s.card.clone();
    // 20 wrong CVVs, 20 wrong expiry dates and 20 unknown numbers, all at once.
    let mut bodies = Vec::new();
    for i in 0..60 {
        let mut b = c.pay(&format!("probe-{i}"), 100_000);
        match i % 3 {
            0 => b["cvv"] = json!(format!("{:03}", (i * 7) % 1000)),
            1 => b["expiry_month"] = json!(another_month(c.month)),
            _ => b["card_number"] = json!(unknown_number()),
        }
        if i % 3 == 0 && b["cvv"] == json!(c.cvv) {
            b["cvv"] = json!(c.wrong_cvv());
        }
        bodies.push(b);
    }
    let answers = futures::future::join_all(bodies.into_iter().enumerate().map(|(i, b)| {
        let s = &s;
        async move { pay(s, &s.key, &format!("probe-{i}"), b).await }
    }))
    .await;
    for (st, _, b) in &answers {
        assert_eq!((*st, normalised(b)), (402, uniform()), "{b}");
    }

    // Exactly the limit of wrong details was evaluated; every later attempt on the card was refused.
    let mut conn = s.app.db();
    let got = reasons(&mut conn);
    let evaluated = got.get("invalid_cvv").copied().unwrap_or(0) + got.get("invalid_expiry").copied().unwrap_or(0);
    assert_eq!(evaluated, 5, "{got:?}");
    assert_eq!(got.get("card_locked").copied().unwrap_or(0), 35, "{got:?}");
    assert!(locked(&mut conn, c.id), "the card is locked for payments");
    // The counters are exact: the card's holds the evaluated failures, the key's every declined attempt.
    assert_eq!(counter(&s.app, &format!("cardfail:{}", c.id)).await, Some(5));
    assert_eq!(counter(&s.app, &format!("keyfail:{}", s.key_id)).await, Some(60));

    // Locked: even the right details are declined (and look the same to the merchant).
    let (st, _, b) = pay(&s, &s.key, "right-while-locked", c.pay("right-1", 100_000)).await;
    assert_eq!((st, normalised(&b)), (402, uniform()), "{b}");
    assert_eq!(reasons(&mut conn).get("card_locked").copied(), Some(36));
    // The holder sees the lock; someone else cannot unlock it (404 as for a missing card).
    let (st, card) = s.app.get(&format!("/api/v1/cards/{}", c.id), Some(&s.customer)).await;
    assert!(st == 200 && card["payments_locked_at"].is_string(), "{card}");
    let (st, e) = s.app.post(&format!("/api/v1/cards/{}/unlock", c.id), Some(&s.owner), json!({})).await;
    assert_eq!((st, error_code(&e).as_str()), (404, "not_found"), "{e}");
    let (st, card) = s.app.post(&format!("/api/v1/cards/{}/unlock", c.id), Some(&s.customer), json!({})).await;
    assert_eq!((st, &card["payments_locked_at"]), (200, &Value::Null), "{card}");
    assert!(!locked(&mut conn, c.id));
    assert_eq!(counter(&s.app, &format!("cardfail:{}", c.id)).await, None);

    // Unlocked: the counter starts again from zero (four more wrong CVVs do not lock it), and it pays.
    for i in 0..4 {
        let mut b = c.pay(&format!("after-{i}"), 100_000);
        b["cvv"] = json!(c.wrong_cvv());
        let (st, _, b) = pay(&s, &s.key, &format!("after-{i}"), b).await;
        assert_eq!(st, 402, "{b}");
    }
    let (st, _, p) = pay(&s, &s.key, "right-after-unlock", c.pay("right-2", 100_000)).await;
    assert_eq!(st, 201, "{p}");
    assert!(!locked(&mut conn, c.id));
}

#[actix_web::test]
async fn an_api_key_that_keeps_failing_is_throttled_and_other_keys_are_not() {
    let mut settings = merchant_settings();
    settings.merchants.key_failure_limit = 3;
    let s = shop(settings).await;
    for i in 0..3 {
        let mut b = s.card.pay(&format!("k-{i}"), 100_000);
        b["card_number"] = json!(unknown_number());
        let (st, _, b) = pay(&s, &s.key, &format!("k-{i}"), b).await;
        assert_eq!(st, 402, "{b}");
    }
    let (st, headers, b) = pay(&s, &s.key, "k-3", s.card.pay("k-3", 100_000)).await;
    assert_eq!((st, error_code(&b).as_str()), (429, "too_many_declines"), "{b}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1 && retry <= s.app.settings.merchants.key_failure_window_secs, "{retry}");
    // Another key of the same merchant is counted on its own.
    let (_, other) = create_key(&s.app, &s.owner, s.merchant, "second").await;
    let (st, _, p) = pay(&s, &other, "k-other", s.card.pay("k-other", 100_000)).await;
    assert_eq!(st, 201, "{p}");
    let _ = s.key_id;
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Text)]
    request_hash: String,
}

#[actix_web::test]
async fn stored_fingerprints_are_keyed_macs_without_card_data_and_expire() {
    let s = shop(merchant_settings()).await;
    let c = &s.card;
    let body = c.pay("fp-1", 100_000);
    let (st, _, p) = pay(&s, &s.key, "fp-1", body.clone()).await;
    assert_eq!(st, 201, "{p}");
    // Same key, same request: replayed. Same key, another amount (or another card): 409.
    let (st, h, again) = pay(&s, &s.key, "fp-1", body.clone()).await;
    assert_eq!((st, &again["id"], h.get("idempotent-replayed").is_some()), (201, &p["id"], true));
    let (st, _, e) = pay(&s, &s.key, "fp-1", c.pay("fp-1", 100_001)).await;
    assert_eq!((st, error_code(&e).as_str()), (409, "idempotency_conflict"), "{e}");

    let mut conn = s.app.db();
    let rows: Vec<KeyRow> =
        diesel::sql_query("SELECT key, request_hash FROM idempotency_keys").load(&mut conn).unwrap();
    let fp = rows.iter().find(|r| r.key == "fp-1").unwrap();
    let (id, mac) = fp.request_hash.split_once(':').unwrap();
    assert_eq!((id, mac.len()), (s.app.settings.idempotency.mac_key_id.as_str(), 64), "{}", fp.request_hash);
    // Not the plain SHA-256 of the body (the old, brute-forceable fingerprint), nor anything with the
    // card's digits in it.
    use sha2::{Digest, Sha256};
    for candidate in [body.to_string(), format!("payment\0\0{body}")] {
        assert_ne!(mac, hex::encode(Sha256::digest(candidate.as_bytes())));
    }
    let stored: Vec<String> =
        diesel::sql_query("SELECT key, request_hash || response_body::text AS request_hash FROM idempotency_keys")
            .load::<KeyRow>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|r| r.request_hash)
            .collect();
    for text in &stored {
        assert!(!text.contains(&c.number) && !text.contains(&c.number[6..12]), "card digits stored: {text}");
    }

    // A row from before the keyed MAC (the migration replaced its hash by `legacy`) still replays.
    diesel::sql_query("UPDATE idempotency_keys SET request_hash = 'legacy' WHERE key = 'fp-1'")
        .execute(&mut conn)
        .unwrap();
    let (st, _, again) = pay(&s, &s.key, "fp-1", body.clone()).await;
    assert_eq!((st, &again["id"]), (201, &p["id"]), "{again}");

    // Expiry: rows older than idempotency.ttl_hours are purged by the retention job's function.
    diesel::sql_query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'fp-1'")
        .execute(&mut conn)
        .unwrap();
    let before = rows.len();
    let purged = payd::payments::idempotency::purge(&mut conn, s.app.settings.idempotency.ttl_hours).unwrap();
    assert_eq!(purged, 1);
    let left: Vec<KeyRow> =
        diesel::sql_query("SELECT key, request_hash FROM idempotency_keys").load(&mut conn).unwrap();
    assert_eq!(left.len(), before - 1);
    assert!(left.iter().all(|r| r.key != "fp-1"));
}

#[actix_web::test]
async fn close_stays_final_whatever_races_it() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.user("racer@example.com").await;
    let mut closed_rounds = 0;
    for round in 0..12 {
        let id = app.api().issue_card(&token, "debit", None, None).await;
        let (st, b) = app.post(&format!("/api/v1/cards/{id}/freeze"), Some(&token), json!({})).await;
        assert_eq!(st, 200, "{b}");
        // One close against several unfreezes and freezes, all at once.
        let mut actions = vec!["close"];
        actions.extend(std::iter::repeat_n("unfreeze", 3));
        actions.extend(std::iter::repeat_n("freeze", 2));
        if round % 2 == 1 {
            actions.reverse();
        }
        let answers = futures::future::join_all(actions.iter().map(|a| {
            let (app, token) = (&app, &token);
            async move { (*a, app.post(&format!("/api/v1/cards/{id}/{a}"), Some(token), json!({})).await) }
        }))
        .await;
        let mut close_ok = false;
        for (a, (st, b)) in &answers {
            assert!(*st == 200 || (*st == 409 && error_code(b) == "invalid_transition"), "{a}: {st} {b}");
            close_ok |= *a == "close" && *st == 200;
        }
        // `close` always wins eventually from active or frozen: it was refused only if it found neither.
        let mut conn = app.db();
        let c = crate::common::money::cards(&mut conn).remove(&id).unwrap();
        #[derive(QueryableByName)]
        struct S {
            #[diesel(sql_type = Text)]
            status: String,
        }
        let account: S =
            diesel::sql_query("SELECT a.status FROM cards c JOIN accounts a ON a.id = c.account_id WHERE c.id = $1")
                .bind::<BigInt, _>(id)
                .get_result(&mut conn)
                .unwrap();
        assert_eq!(c.status, account.status, "card and account status agree");
        if close_ok {
            closed_rounds += 1;
            assert_eq!(c.status, "closed", "round {round}: a close answered 200 but the card is {}", c.status);
            // And nothing brings it back.
            for a in ["unfreeze", "freeze"] {
                let (st, b) = app.post(&format!("/api/v1/cards/{id}/{a}"), Some(&token), json!({})).await;
                assert_eq!((st, error_code(&b).as_str()), (409, "invalid_transition"), "{b}");
            }
        } else {
            assert_ne!(c.status, "closed");
        }
    }
    assert!(closed_rounds > 0, "no round closed the card");
}
