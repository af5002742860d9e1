//! Merchant webhooks end to end: registration rules (owner or admin, HTTPS and public addresses only
//! unless allowed, known event types), signed deliveries that a receiving server verifies, secret
//! rotation with an overlap, tampered bodies and stale timestamps failing verification, the retry
//! schedule of a failing endpoint, dead deliveries, disabling with an e-mail to the owner, the delivery
//! log and manual redelivery.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use diesel::prelude::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::events_support::*;
use payd::events::webhooks::signature::{self, VerifyError};

/// Creates a merchant owned by `owner` directly in the database (the merchants API is another module).
fn merchant(conn: &mut PgConnection, owner: i64, name: &str, contact: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    let acc: Id = diesel::sql_query(
        "INSERT INTO accounts (kind, currency, min_balance) VALUES ('merchant', 'IDR', 0) RETURNING id",
    )
    .get_result(conn)
    .unwrap();
    let m: Id = diesel::sql_query(
        "INSERT INTO merchants (owner_id, account_id, business_name, contact_email, category, status) \
         VALUES ($1, $2, $3, $4, 'retail', 'active') RETURNING id",
    )
    .bind::<diesel::sql_types::BigInt, _>(owner)
    .bind::<diesel::sql_types::BigInt, _>(acc.id)
    .bind::<diesel::sql_types::Text, _>(name)
    .bind::<diesel::sql_types::Text, _>(contact)
    .get_result(conn)
    .unwrap();
    m.id
}

/// Writes a merchant event to the outbox the way the merchants module does (in its transaction).
fn emit(conn: &mut PgConnection, event_type: &str, merchant: i64, amount: i64) -> uuid::Uuid {
    let event = payd::events::new_event(
        event_type,
        "merchant",
        format!("merchant:{merchant}"),
        json!({"operation": {"id": uuid::Uuid::new_v4(), "kind": event_type.split('.').next(), "status": "success",
                "amount": amount, "currency": "IDR", "merchant_id": merchant, "order_ref": "order-1"},
               "initiated_by": null}),
    );
    payd::events::insert_event(conn, &event).unwrap();
    event.event_id
}

/// What the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    signature: String,
    event_id: String,
    delivery_id: String,
    attempt: String,
    body: String,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Status answered on `/flaky`.
    flaky_status: Arc<AtomicU16>,
}

async fn receive(rx: web::Data<Receiver>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    rx.got.lock().unwrap().push(Received {
        path: req.path().to_owned(),
        signature: h("payd-signature"),
        event_id: h("payd-event-id"),
        delivery_id: h("payd-delivery-id"),
        attempt: h("payd-delivery-attempt"),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let status = match req.path() {
        "/ok" => 200,
        "/flaky" => rx.flaky_status.load(Ordering::SeqCst),
        _ => 500,
    };
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

impl Receiver {
    fn start(&self) -> String {
        self.flaky_status.store(503, Ordering::SeqCst);
        let data = web::Data::new(self.clone());
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new().app_data(data.clone()).default_service(web::to(receive))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        actix_web::rt::spawn(server.run());
        format!("http://127.0.0.1:{port}")
    }

    fn on(&self, path: &str) -> Vec<Received> {
        self.got.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }
}

/// The receiver side of docs/webhooks.md, written independently of payd's own helper: every `v1`
/// that is a valid HMAC-SHA256 of "t.body" under `secret`.
fn valid_v1(header: &str, body: &str, secret: &str) -> bool {
    let t = header.split(',').find_map(|p| p.strip_prefix("t=")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let expected = hex::encode(mac.finalize().into_bytes());
    header.split(',').filter_map(|p| p.strip_prefix("v1=")).any(|v| v == expected)
}

fn timestamp(header: &str) -> i64 {
    header.split(',').find_map(|p| p.strip_prefix("t=")).unwrap().parse().unwrap()
}

struct Setup {
    app: EvApp,
    owner: String,
    admin: String,
    merchant: i64,
    base: String,
    rx: Receiver,
}

async fn setup(settings: payd::config::Settings) -> Setup {
    let app = EvApp::spawn(settings).await;
    let admin = app.api.admin_token().await;
    let (owner_id, owner) = app.api.verified_user(&admin, "owner.hooks@example.com").await;
    let merchant = merchant(&mut app.db(), owner_id, "Toko <Hooks> & Co", "shop.hooks@example.com");
    let rx = Receiver::default();
    let base = rx.start();
    Setup { app, owner, admin, merchant, base, rx }
}

#[actix_web::test]
async fn deliveries_are_signed_rotation_overlaps_and_redelivery_resends() {
    let s = setup(common::settings()).await;
    let api = &s.app.api;
    let path = format!("/api/v1/merchants/{}/webhooks", s.merchant);

    // Registration rules.
    let body = json!({"url": format!("{}/ok", s.base), "event_types": ["payment.completed", "refund.completed"]});
    let (stranger_id, stranger) = api.verified_user(&s.admin, "stranger.hooks@example.com").await;
    let r = api.call("POST", &path, Some(&stranger), Some(&body)).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = api.call("POST", "/api/v1/merchants/999999/webhooks", Some(&s.owner), Some(&body)).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = api
        .call(
            "POST",
            &path,
            Some(&s.owner),
            Some(&json!({"url": format!("{}/ok", s.base), "event_types": ["payment.exploded"]})),
        )
        .await;
    assert_eq!((r.status, r.body["error"]["field"].as_str()), (422, Some("event_types")), "{}", r.body);
    let r = api.call("POST", &path, Some(&s.owner), Some(&body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let endpoint = r.body["endpoint"]["id"].as_i64().unwrap();
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let one = format!("{path}/{endpoint}");
    let r = api.call("GET", &one, Some(&s.owner), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.to_string().contains(&secret), "the secret is shown only once");
    let r = api.call("GET", &path, Some(&s.admin), None).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "admins see it too: {}", r.body);
    let r = api.call("GET", "/api/v1/webhooks/event-types", Some(&stranger), None).await;
    assert!(r.body["event_types"].as_array().unwrap().contains(&json!("payment.completed")), "{}", r.body);

    // A subscribed event is delivered, signed; others (unsubscribed type, other merchant) are not.
    let mut conn = s.app.db();
    let other = merchant(&mut conn, stranger_id, "Elsewhere", "else@example.com");
    let paid = emit(&mut conn, "payment.completed", s.merchant, 120_000);
    emit(&mut conn, "refund.failed", s.merchant, 1);
    emit(&mut conn, "payment.completed", other, 1);
    eventually(Duration::from_secs(20), "first delivery", || s.rx.on("/ok").len() == 1).await;
    let d = s.rx.on("/ok")[0].clone();
    assert!(valid_v1(&d.signature, &d.body, &secret), "signature does not verify: {d:?}");
    assert_eq!(d.event_id, paid.to_string());
    let payload: Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(payload["id"], json!(paid));
    assert_eq!(payload["type"], "payment.completed");
    assert_eq!(payload["data"]["operation"]["amount"], 120_000);
    let t = timestamp(&d.signature);
    assert_eq!(signature::verify(&d.signature, d.body.as_bytes(), &[&secret], t, 300), Ok(()));
    // A tampered body or a stale timestamp fails verification.
    let tampered = d.body.replace("120000", "999999");
    assert!(!valid_v1(&d.signature, &tampered, &secret));
    assert_eq!(signature::verify(&d.signature, tampered.as_bytes(), &[&secret], t, 300), Err(VerifyError::Mismatch));
    assert_eq!(signature::verify(&d.signature, d.body.as_bytes(), &[&secret], t + 301, 300), Err(VerifyError::Stale));
    assert_eq!(
        signature::verify(&d.signature, d.body.as_bytes(), &["whsec_wrong"], t, 300),
        Err(VerifyError::Mismatch)
    );

    // Rotation: during the overlap both secrets sign.
    let r =
        api.call("POST", &format!("{one}/rotate-secret"), Some(&s.owner), Some(&json!({"overlap_secs": 3600}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new_secret = r.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert!(r.body["previous_secret_expires_at"].is_string());
    emit(&mut conn, "refund.completed", s.merchant, 5_000);
    eventually(Duration::from_secs(20), "delivery after rotation", || s.rx.on("/ok").len() == 2).await;
    let d2 = s.rx.on("/ok")[1].clone();
    assert_eq!(d2.signature.matches("v1=").count(), 2, "{}", d2.signature);
    assert!(valid_v1(&d2.signature, &d2.body, &new_secret));
    assert!(valid_v1(&d2.signature, &d2.body, &secret), "the old secret still verifies during the overlap");
    // Rotating without overlap: only the new secret signs.
    let r = api.call("POST", &format!("{one}/rotate-secret"), Some(&s.owner), Some(&json!({"overlap_secs": 0}))).await;
    let newest = r.body["secret"].as_str().unwrap().to_owned();
    emit(&mut conn, "payment.completed", s.merchant, 7_000);
    eventually(Duration::from_secs(20), "delivery after second rotation", || s.rx.on("/ok").len() == 3).await;
    let d3 = s.rx.on("/ok")[2].clone();
    assert_eq!(d3.signature.matches("v1=").count(), 1);
    assert!(valid_v1(&d3.signature, &d3.body, &newest));
    assert!(!valid_v1(&d3.signature, &d3.body, &new_secret));

    // Delivery log and manual redelivery (same body, a fresh signature).
    let r = api.call("GET", &format!("{one}/deliveries"), Some(&s.owner), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let items = r.body["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 3, "{}", r.body);
    assert!(items.iter().all(|i| i["status"] == "succeeded"), "{}", r.body);
    let first = items.iter().find(|i| i["event_id"] == json!(paid)).unwrap()["id"].as_i64().unwrap();
    let r = api.call("POST", &format!("{one}/deliveries/{first}/redeliver"), Some(&s.owner), None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    eventually(Duration::from_secs(20), "redelivery", || s.rx.on("/ok").len() == 4).await;
    let again = s.rx.on("/ok")[3].clone();
    assert_eq!((again.body.as_str(), again.event_id.as_str()), (d.body.as_str(), d.event_id.as_str()));
    assert_eq!(again.delivery_id, d.delivery_id, "a redelivery of the same delivery");
    assert!(valid_v1(&again.signature, &again.body, &newest));
    let r = api.call("GET", &format!("{one}/deliveries/{first}"), Some(&s.owner), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let attempts = r.body["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{}", r.body);
    assert_eq!(attempts[1]["manual"], true, "{}", r.body);
    assert_eq!(r.body["body"].as_str().unwrap(), d.body);
    let r = api.call("GET", &format!("{one}/deliveries"), Some(&stranger), None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = api.call("DELETE", &one, Some(&s.owner), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
}

#[actix_web::test]
async fn a_failing_endpoint_is_retried_on_schedule_then_dead_then_disabled_with_an_email() {
    let mut settings = common::settings();
    settings.webhooks.backoff_initial_ms = 200;
    settings.webhooks.backoff_max_ms = 800;
    settings.webhooks.max_age_secs = 2;
    settings.webhooks.disable_after_failures = 6;
    let s = setup(settings).await;
    let api = &s.app.api;
    let path = format!("/api/v1/merchants/{}/webhooks", s.merchant);
    let r = api
        .call("POST", &path, Some(&s.owner), Some(&json!({"url": format!("{}/flaky", s.base), "event_types": ["*"]})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let endpoint = r.body["endpoint"]["id"].as_i64().unwrap();
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    let mut conn = s.app.db();

    let first = emit(&mut conn, "payment.completed", s.merchant, 10_000);
    eventually(Duration::from_secs(30), "first delivery dead", || {
        count(&mut conn, "SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'dead'") == 1
    })
    .await;
    let tries: Vec<Received> = s.rx.on("/flaky").into_iter().filter(|r| r.event_id == first.to_string()).collect();
    assert!(tries.len() >= 3, "retried: {}", tries.len());
    for (i, t) in tries.iter().enumerate() {
        assert_eq!(t.attempt, (i + 1).to_string());
        assert_eq!(t.body, tries[0].body, "every attempt sends the same body");
        assert!(valid_v1(&t.signature, &t.body, &secret));
    }
    // The schedule: attempt k+1 never comes before 200 ms · 2^(k-1) (capped at 800 ms) after attempt k.
    #[derive(QueryableByName)]
    struct Gap {
        #[diesel(sql_type = diesel::sql_types::Double)]
        ms: f64,
    }
    let gaps: Vec<Gap> = diesel::sql_query(
        "SELECT (EXTRACT(EPOCH FROM a.created_at - lag(a.created_at) OVER (ORDER BY a.attempt)) * 1000)::float8 AS ms \
         FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id \
         WHERE d.event_id = $1 ORDER BY a.attempt OFFSET 1",
    )
    .bind::<diesel::sql_types::Uuid, _>(first)
    .load(&mut conn)
    .unwrap();
    assert_eq!(gaps.len() + 1, tries.len());
    for (k, g) in gaps.iter().enumerate() {
        let want = (200.0 * 2f64.powi(i32::try_from(k).unwrap())).min(800.0);
        assert!(g.ms >= want - 50.0, "retry {} came after {} ms, schedule says {want} ms", k + 1, g.ms);
    }
    assert_eq!(
        count(
            &mut conn,
            &format!("SELECT count(*) AS n FROM dead_letters WHERE kind = 'webhook' AND event_id = '{first}'")
        ),
        1
    );

    // More failures: the endpoint is disabled and the owner is e-mailed.
    let second = emit(&mut conn, "refund.completed", s.merchant, 20_000);
    eventually(Duration::from_secs(30), "endpoint disabled", || {
        count(
            &mut conn,
            &format!("SELECT count(*) AS n FROM webhook_endpoints WHERE id = {endpoint} AND status = 'disabled'"),
        ) == 1
    })
    .await;
    eventually(Duration::from_secs(30), "owner e-mailed", || {
        count(
            &mut conn,
            "SELECT count(*) AS n FROM mailbox WHERE to_address = 'owner.hooks@example.com' \
             AND subject = 'Webhook endpoint disabled for Toko <Hooks> & Co'",
        ) == 1
    })
    .await;
    let html: String = {
        #[derive(QueryableByName)]
        struct H {
            #[diesel(sql_type = diesel::sql_types::Text)]
            html_body: String,
        }
        let h: H = diesel::sql_query("SELECT html_body FROM mailbox WHERE subject LIKE 'Webhook endpoint disabled%'")
            .get_result(&mut conn)
            .unwrap();
        h.html_body
    };
    assert!(html.contains("Toko &lt;Hooks&gt; &amp; Co") && !html.contains("<Hooks>"), "HTML escaped: {html}");
    let r = api.call("GET", &format!("{path}/{endpoint}"), Some(&s.owner), None).await;
    assert_eq!(r.body["status"], "disabled", "{}", r.body);
    let attempts_when_disabled = s.rx.on("/flaky").len();

    // Fixed and re-enabled: the waiting delivery goes out.
    s.rx.flaky_status.store(200, Ordering::SeqCst);
    let r = api.call("PATCH", &format!("{path}/{endpoint}"), Some(&s.owner), Some(&json!({"enabled": true}))).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("active")), "{}", r.body);
    eventually(Duration::from_secs(30), "waiting delivery succeeded after re-enable", || {
        count(
            &mut conn,
            &format!(
                "SELECT count(*) AS n FROM webhook_deliveries WHERE event_id = '{second}' AND status = 'succeeded'"
            ),
        ) == 1
    })
    .await;
    assert!(s.rx.on("/flaky").len() > attempts_when_disabled);
}

#[actix_web::test]
async fn insecure_and_private_urls_are_refused_unless_allowed() {
    let mut settings = common::settings();
    settings.webhooks.allow_insecure = false;
    let s = setup(settings).await;
    let api = &s.app.api;
    let path = format!("/api/v1/merchants/{}/webhooks", s.merchant);
    for url in [
        "http://hooks.example.com/payd",
        "https://127.0.0.1/payd",
        "https://10.0.0.8/payd",
        "https://192.168.1.20/payd",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/payd",
        "https://localhost/payd",
        "https://user:pass@hooks.example.com/payd",
        "not a url at all",
    ] {
        let r = api.call("POST", &path, Some(&s.owner), Some(&json!({"url": url, "event_types": ["*"]}))).await;
        assert_eq!((r.status, r.body["error"]["field"].as_str()), (422, Some("url")), "{url}: {}", r.body);
    }
    // A public HTTPS URL is accepted (nothing is ever sent to it in this test: no events flow).
    let r = api
        .call(
            "POST",
            &path,
            Some(&s.owner),
            Some(&json!({"url": "https://hooks.example.com/payd", "event_types": ["*"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["endpoint"]["id"].as_i64().unwrap();
    let r = api
        .call("PATCH", &format!("{path}/{id}"), Some(&s.owner), Some(&json!({"url": "http://hooks.example.com/x"})))
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = api.call("PATCH", &format!("{path}/{id}"), Some(&s.owner), Some(&json!({"event_types": []}))).await;
    assert_eq!(r.status, 422, "{}", r.body);
}

/// Writes a merchant lifecycle event shaped like the merchants module's (`merchant_event`).
fn lifecycle(conn: &mut PgConnection, event_type: &str, merchant: i64, owner: i64, status: &str, details: Value) {
    let event = payd::events::new_event(
        event_type,
        "merchant",
        format!("merchant:{merchant}"),
        json!({"merchant_id": merchant, "owner_id": owner, "business_name": "Toko <Hooks> & Co",
               "contact_email": "shop.hooks@example.com", "status": status, "reason": "documents complete",
               "details": details}),
    );
    payd::events::insert_event(conn, &event).unwrap();
}

#[actix_web::test]
async fn merchant_lifecycle_events_email_the_merchant_and_reach_subscribed_endpoints() {
    let s = setup(common::settings()).await;
    let api = &s.app.api;
    let path = format!("/api/v1/merchants/{}/webhooks", s.merchant);
    let r = api
        .call(
            "POST",
            &path,
            Some(&s.owner),
            Some(&json!({"url": format!("{}/ok", s.base), "event_types": ["merchant.status_changed", "document.reviewed"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut conn = s.app.db();
    let owner = 0; // not read by the consumers
    lifecycle(&mut conn, "merchant.applied", s.merchant, owner, "pending", Value::Null);
    lifecycle(
        &mut conn,
        "document.reviewed",
        s.merchant,
        owner,
        "pending",
        json!({"document_id": 3, "doc_type": "tax_id", "status": "approved", "note": "looks <fine>"}),
    );
    lifecycle(
        &mut conn,
        "merchant.status_changed",
        s.merchant,
        owner,
        "active",
        json!({"from": "pending", "to": "active", "action": "approve"}),
    );
    eventually(Duration::from_secs(20), "merchant e-mails and webhooks", || {
        s.rx.on("/ok").len() == 2
            && count(&mut conn, "SELECT count(*) AS n FROM mailbox WHERE to_address = 'shop.hooks@example.com'") == 3
    })
    .await;
    #[derive(QueryableByName, Debug)]
    struct M {
        #[diesel(sql_type = diesel::sql_types::Text)]
        subject: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        text_body: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        html_body: String,
    }
    let mails: Vec<M> = diesel::sql_query(
        "SELECT subject, text_body, html_body FROM mailbox WHERE to_address = 'shop.hooks@example.com' ORDER BY id",
    )
    .load(&mut conn)
    .unwrap();
    let subjects: Vec<&str> = mails.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        vec![
            "We received the application of Toko <Hooks> & Co",
            "Document approved for Toko <Hooks> & Co",
            "Toko <Hooks> & Co is now active",
        ]
    );
    assert!(mails[1].text_body.contains("(tax_id)") && mails[1].text_body.contains("looks <fine>"), "{mails:?}");
    assert!(mails[1].html_body.contains("looks &lt;fine&gt;"), "{mails:?}");
    assert!(mails[2].text_body.contains("from pending to active"), "{mails:?}");
    let mut types: Vec<String> =
        s.rx.on("/ok")
            .iter()
            .map(|d| serde_json::from_str::<Value>(&d.body).unwrap()["type"].as_str().unwrap().to_owned())
            .collect();
    types.sort();
    assert_eq!(types, vec!["document.reviewed", "merchant.status_changed"], "only the subscribed types");
}
