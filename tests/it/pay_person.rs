//! Paying a person by card number: the recipient preview, transfers by `to_card_number` (numbers with
//! spaces or dashes, idempotent replays), unknown and closed recipients answering alike, refused
//! self-payments and bad numbers, the preview's rate limit, and the counterparty shown masked.

use serde_json::{json, Value};

use crate::common::merchant::{card_balance, issue_card, merchant_settings, topup, verified, TestCard};
use crate::common::*;

fn spaced(n: &str) -> String {
    n.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(" ")
}

fn dashed(n: &str) -> String {
    n.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("-")
}

fn masked(card: &TestCard) -> String {
    format!("**** **** **** {}", &card.number[card.number.len() - 4..])
}

async fn transfer(app: &TestApp, token: &str, key: &str, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    app.call_full("POST", "/api/v1/transfers", Some(token), Some(body), &[("Idempotency-Key", key)]).await
}

/// A Luhn-valid visa number that no card has.
fn unknown_number() -> String {
    let visa = payd::cards::pan::brand("visa").unwrap();
    payd::cards::pan::generate(visa).digits().to_owned()
}

#[actix_web::test]
async fn pay_a_person_by_card_number_end_to_end() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    let (_, alice) = verified(&app, &admin, "alice.pay@example.com").await;
    let (_, bob) = verified(&app, &admin, "bob.pay@example.com").await;
    let from = issue_card(&app, &alice).await;
    let to = issue_card(&app, &bob).await;
    topup(&app, &alice, from.id, 1_000_000).await;

    // Preview: masked number and display name, never the card id.
    let (s, p) =
        app.post("/api/v1/transfers/recipient-preview", Some(&alice), json!({"card_number": spaced(&to.number)})).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["card_number"], masked(&to));
    assert_eq!(p["display_name"], "Made B.");
    assert_eq!(p.as_object().unwrap().len(), 2, "the preview shows only number and name: {p}");
    assert!(!p.to_string().contains(&to.number), "{p}");

    // The holder chooses the name payers see; null returns to the default.
    let preview_name = |token: String| {
        let (app, number) = (&app, to.number.clone());
        async move {
            let (s, p) =
                app.post("/api/v1/transfers/recipient-preview", Some(&token), json!({"card_number": number})).await;
            assert_eq!(s, 200, "{p}");
            p["display_name"].as_str().unwrap().to_owned()
        }
    };
    let (s, me) = app
        .call("PUT", "/api/v1/auth/me/display-name", Some(&bob), Some(json!({"display_name": " Bobby's Shop "})))
        .await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["display_name"], "Bobby's Shop");
    assert_eq!(preview_name(alice.clone()).await, "Bobby's Shop");
    for bad in [json!(""), json!("   "), json!("x".repeat(51)), json!("a\u{7}b"), json!(5), json!("y".repeat(10_000))] {
        let (s, b) =
            app.call("PUT", "/api/v1/auth/me/display-name", Some(&bob), Some(json!({"display_name": bad}))).await;
        assert!((400..500).contains(&s), "{bad}: {s} {b}");
        assert_eq!(b["error"]["field"], "display_name", "{bad}: {b}");
    }
    let (s, me) =
        app.call("PUT", "/api/v1/auth/me/display-name", Some(&bob), Some(json!({"display_name": null}))).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["display_name"], "Made B.");
    assert_eq!(preview_name(alice.clone()).await, "Made B.");

    // Transfer by number written with dashes.
    let body = json!({"from_card_id": from.id, "to_card_number": dashed(&to.number), "amount": 250_000});
    let (s, h, t) = transfer(&app, &alice, "pay-1", body).await;
    assert_eq!(s, 201, "{t}");
    assert!(h.get("idempotent-replayed").is_none());
    assert_eq!(t["status"], "success");
    assert_eq!(t["source_card_id"], from.id);
    assert_eq!(t["dest_card_id"], Value::Null, "another user's card id is never shown: {t}");
    assert_eq!(t["dest_card_masked"], masked(&to));
    let id = t["id"].as_str().unwrap().to_owned();

    // The same request, the number spelled with spaces: replayed, not executed again.
    let body = json!({"from_card_id": from.id, "to_card_number": spaced(&to.number), "amount": 250_000});
    let (s, h, r) = transfer(&app, &alice, "pay-1", body).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(h.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(r["id"], id.as_str());
    assert_eq!(r["dest_card_id"], Value::Null);
    // The same key with a different request: 409.
    let body = json!({"from_card_id": from.id, "to_card_number": to.number, "amount": 260_000});
    let (s, _, c) = transfer(&app, &alice, "pay-1", body).await;
    expect_error(s, &c, 409, "idempotency_conflict");

    let mut conn = app.db();
    assert_eq!(card_balance(&mut conn, from.id), 750_000);
    assert_eq!(card_balance(&mut conn, to.id), 250_000);

    // The views each side sees: the other user's card masked, their own by id.
    let (s, v) = app.get(&format!("/api/v1/transfers/{id}"), Some(&alice)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["source_card_id"].as_i64(), v["dest_card_id"].as_i64()), (Some(from.id), None));
    assert_eq!(v["dest_card_masked"], masked(&to));
    let (s, v) = app.get(&format!("/api/v1/transfers/{id}"), Some(&bob)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["source_card_id"].as_i64(), v["dest_card_id"].as_i64()), (None, Some(to.id)));
    assert_eq!(v["source_card_masked"], masked(&from));
    let (s, l) = app.get("/api/v1/transfers", Some(&alice)).await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(l["items"][0]["id"], id.as_str());
    assert_eq!(l["items"][0]["dest_card_id"], Value::Null);
    assert_eq!(l["items"][0]["dest_card_masked"], masked(&to));
    // Admins see ids.
    let (s, v) = app.get(&format!("/api/v1/transfers/{id}"), Some(&admin)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["dest_card_id"], to.id);

    // A card of one's own, paid by number, keeps its id in the answer.
    let own = issue_card(&app, &alice).await;
    let body = json!({"from_card_id": from.id, "to_card_number": own.number, "amount": 50_000});
    let (s, _, t) = transfer(&app, &alice, "pay-own", body).await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(t["dest_card_id"], own.id);
}

#[actix_web::test]
async fn unknown_and_closed_recipients_answer_alike_and_bad_numbers_name_the_field() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    let (_, alice) = verified(&app, &admin, "alice.alike@example.com").await;
    let (_, carol) = verified(&app, &admin, "carol.alike@example.com").await;
    let from = issue_card(&app, &alice).await;
    topup(&app, &alice, from.id, 1_000_000).await;
    let closed = issue_card(&app, &carol).await;
    let (s, b) = app.post(&format!("/api/v1/cards/{}/close", closed.id), Some(&carol), json!({})).await;
    assert_eq!(s, 200, "{b}");

    let answer =
        |s: u16, b: &Value| (s, b["error"]["code"].clone(), b["error"]["message"].clone(), b["error"]["field"].clone());
    let unknown = unknown_number();
    let (s1, _, u) = transfer(
        &app,
        &alice,
        "alike-1",
        json!({"from_card_id": from.id, "to_card_number": unknown, "amount": 100_000}),
    )
    .await;
    let (s2, _, c) = transfer(
        &app,
        &alice,
        "alike-2",
        json!({"from_card_id": from.id, "to_card_number": closed.number, "amount": 100_000}),
    )
    .await;
    expect_error(s1, &u, 404, "recipient_not_found");
    assert_eq!(u["error"]["field"], "to_card_number");
    assert_eq!(answer(s1, &u), answer(s2, &c), "unknown {u} vs closed {c}");

    let (s1, u) = app.post("/api/v1/transfers/recipient-preview", Some(&alice), json!({"card_number": unknown})).await;
    let (s2, c) =
        app.post("/api/v1/transfers/recipient-preview", Some(&alice), json!({"card_number": closed.number})).await;
    expect_error(s1, &u, 404, "recipient_not_found");
    assert_eq!(answer(s1, &u), answer(s2, &c), "preview: unknown {u} vs closed {c}");

    // Paying the paying card itself by its number.
    let (s, _, b) = transfer(
        &app,
        &alice,
        "self-1",
        json!({"from_card_id": from.id, "to_card_number": spaced(&from.number), "amount": 100_000}),
    )
    .await;
    expect_error(s, &b, 422, "validation_failed");
    assert_eq!(b["error"]["field"], "to_card_number");

    // A wrong Luhn digit.
    let mut bad = from.number.clone();
    let last = bad.pop().unwrap().to_digit(10).unwrap();
    bad.push(char::from_digit((last + 1) % 10, 10).unwrap());
    for (key, body) in [
        ("luhn", json!({"from_card_id": from.id, "to_card_number": bad, "amount": 100_000})),
        ("huge", json!({"from_card_id": from.id, "to_card_number": "4".repeat(10_000), "amount": 100_000})),
        (
            "both",
            json!({"from_card_id": from.id, "to_card_id": from.id + 1, "to_card_number": unknown, "amount": 100_000}),
        ),
        ("neither", json!({"from_card_id": from.id, "amount": 100_000})),
    ] {
        let (s, _, b) = transfer(&app, &alice, key, body).await;
        expect_error(s, &b, 422, "validation_failed");
        assert_eq!(b["error"]["field"], "to_card_number", "{key}: {b}");
    }
    // Wrong type: a 4xx naming the field, never a 500.
    let (s, _, b) =
        transfer(&app, &alice, "type", json!({"from_card_id": from.id, "to_card_number": 4111, "amount": 100_000}))
            .await;
    assert!((400..500).contains(&s), "{s} {b}");
    assert_eq!(b["error"]["field"], "to_card_number", "{b}");
    for body in
        [json!({}), json!({"card_number": 5}), json!({"card_number": "4".repeat(10_000)}), json!({"card_number": bad})]
    {
        let (s, b) = app.post("/api/v1/transfers/recipient-preview", Some(&alice), body.clone()).await;
        assert!((400..500).contains(&s), "{body}: {s} {b}");
        assert_eq!(b["error"]["field"], "card_number", "{body}: {b}");
    }
    // Nothing moved.
    let mut conn = app.db();
    assert_eq!(card_balance(&mut conn, from.id), 1_000_000);
}

#[actix_web::test]
async fn recipient_previews_are_rate_limited_per_user() {
    let mut settings = merchant_settings();
    settings.rate_limits.enabled = true;
    settings.rate_limits.recipient_previews_per_minute = 3;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let (_, alice) = verified(&app, &admin, "alice.limit@example.com").await;
    let (_, bob) = verified(&app, &admin, "bob.limit@example.com").await;
    let to = issue_card(&app, &bob).await;
    for i in 0..3 {
        let (s, b) =
            app.post("/api/v1/transfers/recipient-preview", Some(&alice), json!({"card_number": to.number})).await;
        assert_eq!(s, 200, "preview {i}: {b}");
    }
    let (s, h, b) = app
        .call_full(
            "POST",
            "/api/v1/transfers/recipient-preview",
            Some(&alice),
            Some(json!({"card_number": to.number})),
            &[],
        )
        .await;
    expect_error(s, &b, 429, "rate_limited");
    assert!(h.get("retry-after").is_some());
    // Another user has a limit of their own.
    let (s, b) = app.post("/api/v1/transfers/recipient-preview", Some(&bob), json!({"card_number": to.number})).await;
    assert_eq!(s, 200, "{b}");
}

#[actix_web::test]
async fn transfers_by_card_number_share_the_recipient_lookup_budget() {
    // With an empty source card, a transfer by number answers 404 for unknown numbers and 402 for
    // open ones: it would be a free probe if it did not count like a preview.
    let mut settings = merchant_settings();
    settings.rate_limits.enabled = true;
    settings.rate_limits.recipient_previews_per_minute = 3;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let (_, alice) = verified(&app, &admin, "alice.probe@example.com").await;
    let (_, bob) = verified(&app, &admin, "bob.probe@example.com").await;
    let empty = issue_card(&app, &alice).await;
    let to = issue_card(&app, &bob).await;
    let (s, b) = app.post("/api/v1/transfers/recipient-preview", Some(&alice), json!({"card_number": to.number})).await;
    assert_eq!(s, 200, "{b}");
    let (s, _, b) = transfer(
        &app,
        &alice,
        "probe-1",
        json!({"from_card_id": empty.id, "to_card_number": to.number, "amount": 100_000}),
    )
    .await;
    expect_error(s, &b, 402, "insufficient_funds");
    let (s, _, b) = transfer(
        &app,
        &alice,
        "probe-2",
        json!({"from_card_id": empty.id, "to_card_number": unknown_number(), "amount": 100_000}),
    )
    .await;
    expect_error(s, &b, 404, "recipient_not_found");
    // The budget of three is spent: the next lookup of either kind is refused before any answer.
    let (s, h, b) = transfer(
        &app,
        &alice,
        "probe-3",
        json!({"from_card_id": empty.id, "to_card_number": to.number, "amount": 100_000}),
    )
    .await;
    expect_error(s, &b, 429, "rate_limited");
    assert!(h.get("retry-after").is_some());
    let (s, b) = app.post("/api/v1/transfers/recipient-preview", Some(&alice), json!({"card_number": to.number})).await;
    expect_error(s, &b, 429, "rate_limited");
    // Transfers to one's own cards by id are not lookups and still run.
    let own = issue_card(&app, &alice).await;
    let (s, _, b) =
        transfer(&app, &alice, "own-1", json!({"from_card_id": empty.id, "to_card_id": own.id, "amount": 100_000}))
            .await;
    expect_error(s, &b, 402, "insufficient_funds");
}

#[actix_web::test]
async fn the_openapi_document_shows_the_new_schemas_with_their_constraints() {
    let app = TestApp::spawn().await;
    let (s, doc) = app.get("/api-docs/openapi.json", None).await;
    assert_eq!(s, 200);
    let schemas = &doc["components"]["schemas"];
    let number = &schemas["TransferRequest"]["properties"]["to_card_number"];
    assert_eq!((number["minLength"].as_u64(), number["maxLength"].as_u64()), (Some(12), Some(30)), "{number}");
    assert_eq!(number["pattern"], "^[0-9 -]{12,30}$");
    let preview = &schemas["RecipientPreviewRequest"]["properties"]["card_number"];
    assert_eq!(preview["maxLength"].as_u64(), Some(30), "{preview}");
    assert!(schemas["RecipientPreview"]["properties"]["display_name"].is_object());
    let limit = &schemas["UpdateCardRequest"]["properties"]["credit_limit"];
    assert_eq!(limit["minimum"].as_f64(), Some(0.0), "{limit}");
    assert_eq!(schemas["SetPasswordRequest"]["properties"]["password"]["minLength"].as_u64(), Some(8));
    assert!(schemas["UserRolesView"]["properties"]["roles"].is_object());
    for path in [
        "/api/v1/transfers/recipient-preview",
        "/api/v1/users/{id}/roles",
        "/api/v1/users/{id}/password",
        "/api/v1/users/{id}/password/reset",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing from the document");
    }
}
