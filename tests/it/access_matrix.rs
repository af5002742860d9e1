//! No enumeration: every route of the route table with an id in its path is called with the ids of
//! one user's real objects (card, operations, merchant, API key, document, webhook endpoint and
//! delivery, payment) and with ids that exist nowhere, as: another user, another merchant's API key,
//! anonymous — each must get exactly the same answer for both (status, code, message, field) and never
//! a success or a 5xx — and as the owner and an admin, who can read what is theirs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use diesel::prelude::*;
use serde_json::{json, Value};

use crate::common::merchant::*;
use crate::common::*;
use payd::http::routes::Access;

const MISSING_INT: &str = "987654321";

/// A caller: (who, bearer token, extra headers).
type Caller<'a> = (&'a str, Option<&'a str>, Vec<(&'a str, &'a str)>);

/// Every `{param}` of a route path, in order.
fn params(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|s| s.split(':').next().unwrap_or(s).to_owned())
        .collect()
}

fn fill(path: &str, values: &HashMap<String, String>) -> String {
    path.split('/')
        .map(|seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(p) => {
                values.get(p.split(':').next().unwrap_or(p)).cloned().unwrap_or_else(|| panic!("no value for {p}"))
            }
            None => seg.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// What must not differ between someone else's object and a missing one.
fn shape(status: u16, body: &Value, real: &HashMap<String, String>, missing: &HashMap<String, String>) -> String {
    let e = &body["error"];
    let mut message = e["message"].as_str().unwrap_or_default().to_owned();
    // A message may quote the id the caller sent; that is the caller's own input, not a leak.
    for (k, v) in real {
        if let Some(m) = missing.get(k) {
            message = message.replace(v.as_str(), m.as_str());
        }
    }
    format!("{status} {} {message} {}", e["code"], e["field"])
}

#[actix_web::test]
async fn someone_elses_object_answers_exactly_like_a_missing_one_on_every_route_with_an_id() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;

    // The owner: a cardholder and a merchant, with one of everything.
    let (owner_id, owner) = verified(&app, &admin, "matrix.owner@example.com").await;
    let merchant = active_merchant(&app, &admin, &owner, "Matrix Shop").await;
    let (s, docs) = app.get(&format!("/api/v1/merchants/{merchant}/documents"), Some(&owner)).await;
    assert_eq!(s, 200, "{docs}");
    let doc = docs[0]["id"].as_i64().unwrap();
    let (key_id, key) = create_key(&app, &owner, merchant, "pos").await;
    let (s, w) = app
        .post(
            &format!("/api/v1/merchants/{merchant}/webhooks"),
            Some(&owner),
            json!({"url": "http://127.0.0.1:9/hook", "event_types": ["*"]}),
        )
        .await;
    assert_eq!(s, 201, "{w}");
    let webhook = w["endpoint"]["id"].as_i64().unwrap();
    let card = issue_card(&app, &owner).await;
    let second = issue_card(&app, &owner).await;
    let money = |path: &'static str, idem: &'static str, body: Value| {
        let (app, owner) = (&app, &owner);
        async move {
            let (s, _, b) = app.call_full("POST", path, Some(owner), Some(body), &[("Idempotency-Key", idem)]).await;
            assert_eq!(s, 201, "{path}: {b}");
            b["id"].as_str().unwrap().to_owned()
        }
    };
    let topup =
        money("/api/v1/topups", "m-top", json!({"card_id": card.id, "amount": 2_000_000, "method": "bca"})).await;
    let withdrawal = money("/api/v1/withdrawals", "m-wd", json!({"card_id": card.id, "amount": 100_000})).await;
    let transfer = money(
        "/api/v1/transfers",
        "m-tr",
        json!({"from_card_id": card.id, "to_card_id": second.id, "amount": 100_000}),
    )
    .await;
    let (s, _, r) = app
        .call_full(
            "POST",
            &format!("/api/v1/transfers/{transfer}/reversal"),
            Some(&admin),
            Some(json!({})),
            &[("Idempotency-Key", "m-rev")],
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let reversal = r["id"].as_str().unwrap().to_owned();
    let (s, p) = keyed(&app, "POST", "/api/v1/payments", &key, "m-pay", Some(card.pay("m-order", 100_000))).await;
    assert_eq!(s, 201, "{p}");
    let payment = p["id"].as_str().unwrap().to_owned();
    // The payment's webhook delivery (created asynchronously by the dispatcher).
    let mut conn = app.db();
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let delivery = loop {
        let row: Option<Id> = diesel::sql_query("SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 LIMIT 1")
            .bind::<diesel::sql_types::BigInt, _>(webhook)
            .get_result(&mut conn)
            .optional()
            .unwrap();
        if let Some(r) = row {
            break r.id;
        }
        assert!(std::time::Instant::now() < deadline, "no webhook delivery was created");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };

    // Someone else: a user with a merchant and API key of their own.
    let (_, other) = verified(&app, &admin, "matrix.other@example.com").await;
    let other_merchant = active_merchant(&app, &admin, &other, "Other Shop").await;
    let (_, other_key) = create_key(&app, &other, other_merchant, "theirs").await;

    // Path values: the owner's objects, and ids that exist nowhere.
    let op_for = |path: &str| -> String {
        let seg = path.trim_start_matches("/api/v1/").split('/').next().unwrap_or_default();
        match seg {
            "topups" => topup.clone(),
            "withdrawals" => withdrawal.clone(),
            "transfers" => transfer.clone(),
            "reversals" => reversal.clone(),
            "payments" => payment.clone(),
            "cards" => card.id.to_string(),
            "merchants" => merchant.to_string(),
            "users" => owner_id.to_string(),
            _ => "1".to_owned(),
        }
    };
    let api = payd::http::api();
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut by_caller: HashMap<&str, usize> = HashMap::new();
    for route in api.routes.iter().filter(|r| r.path.contains('{')) {
        let names = params(&route.path);
        // `/stats/{kind}` names a statistics family, not an object: its scopes (`card_id`,
        // `merchant_id`, `api_key_id`) are query parameters, walked by tests/it/stats.rs's access test.
        if names.iter().any(|n| n == "kind") {
            continue;
        }
        let first = op_for(&route.path);
        let uuid_ids = first.contains('-');
        let mut real = HashMap::new();
        let mut missing = HashMap::new();
        for name in &names {
            let value = match name.as_str() {
                "id" => first.clone(),
                "key_id" => key_id.to_string(),
                "doc_id" => doc.to_string(),
                "webhook_id" => webhook.to_string(),
                "delivery_id" => delivery.to_string(),
                "role" => "user".to_owned(),
                other => panic!("route {} has a parameter {other} this test does not know", route.path),
            };
            let absent = match name.as_str() {
                "id" if uuid_ids => uuid::Uuid::now_v7().to_string(),
                "role" => "nosuchrole".to_owned(),
                _ => MISSING_INT.to_owned(),
            };
            real.insert(name.clone(), value);
            missing.insert(name.clone(), absent);
        }
        let (real_path, missing_path) = (fill(&route.path, &real), fill(&route.path, &missing));
        let method = route.method.as_str();
        let body = if method == "GET" || method == "DELETE" { None } else { Some(json!({})) };

        // Callers who are not the owner: the real object and a missing one must be indistinguishable.
        let callers: [Caller<'_>; 3] = [
            ("another user", Some(other.as_str()), vec![]),
            ("another merchant's key", None, vec![("X-Api-Key", other_key.as_str())]),
            ("anonymous", None, vec![]),
        ];
        for (who, token, extra) in &callers {
            let mut answers = Vec::new();
            for (i, path) in [&real_path, &missing_path].into_iter().enumerate() {
                let idem = format!("matrix-{checked}-{i}-{}", uuid::Uuid::new_v4().simple());
                let mut headers: Vec<(&str, &str)> = extra.clone();
                headers.push(("Idempotency-Key", idem.as_str()));
                let (s, _, b) = app.call_full(method, path, *token, body.clone(), &headers).await;
                answers.push((s, b));
            }
            let (rs, rb) = &answers[0];
            let (ms, mb) = &answers[1];
            if (200..300).contains(rs) {
                problems.push(format!("{who}: {method} {real_path} succeeded with {rs}: {rb}"));
            }
            if *rs >= 500 || *ms >= 500 {
                problems.push(format!("{who}: {method} {real_path} → {rs}, missing → {ms}"));
            }
            if *who == "anonymous" && (*rs != 401 || *ms != 401) {
                problems.push(format!("anonymous: {method} {real_path} → {rs} (missing: {ms})"));
            }
            let (a, b) = (shape(*rs, rb, &real, &missing), shape(*ms, mb, &real, &missing));
            if a != b {
                problems.push(format!("{who}: {method} {} tells them apart: real → {a} | missing → {b}", route.path));
            }
            *by_caller.entry(who).or_default() += 1;
        }

        // The owner and an admin read what is theirs (reads only: this walk must not change anything).
        if method == "GET" {
            let admin_only = route.access == Access::AnyRole(&["admin"]);
            let (s, b) = app.call(method, &real_path, Some(&owner), None).await;
            let owner_ok = if admin_only { s == 403 } else { s == 200 };
            if !owner_ok {
                problems.push(format!("owner: GET {real_path} → {s} {b}"));
            }
            let (s, b) = app.call(method, &real_path, Some(&admin), None).await;
            if s != 200 {
                problems.push(format!("admin: GET {real_path} → {s} {b}"));
            }
            // A missing id is a 404 for both.
            let (s, b) = app.call(method, &missing_path, Some(&admin), None).await;
            if s != 404 {
                problems.push(format!("admin: GET {missing_path} → {s} {b}"));
            }
        }
        checked += 1;
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
    assert!(checked >= 60, "only {checked} routes with ids walked");
    assert_eq!(by_caller.len(), 3);
    // The walk changed nothing of the owner's (every mutation by others was refused).
    let (s, c) = app.get(&format!("/api/v1/cards/{}", card.id), Some(&owner)).await;
    assert_eq!((s, c["status"].as_str()), (200, Some("active")), "{c}");
    let (s, m) = app.get(&format!("/api/v1/merchants/{merchant}"), Some(&owner)).await;
    assert_eq!((s, m["status"].as_str()), (200, Some("active")), "{m}");
}
