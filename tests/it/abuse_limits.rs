//! The production surface: per-user and per-API-key rate limits on the money routes (429 with
//! `Retry-After`, off by configuration), no development mailbox in production, logins that answer an
//! unknown e-mail exactly like a wrong password, and multipart uploads with capped parts and headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use crate::common::merchant::*;
use crate::common::*;

#[actix_web::test]
async fn money_routes_are_rate_limited_per_user_and_per_api_key() {
    let mut settings = merchant_settings();
    settings.rate_limits.enabled = true;
    settings.rate_limits.user_money_per_minute = 3;
    settings.rate_limits.key_money_per_minute = 3;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let (_, alice) = verified(&app, &admin, "limited.alice@example.com").await;
    let (_, bob) = verified(&app, &admin, "limited.bob@example.com").await;
    let card = issue_card(&app, &alice).await;
    let bob_card = issue_card(&app, &bob).await;
    let topup = |token: &str, card: i64, idem: String| {
        let (app, token) = (&app, token.to_owned());
        async move {
            app.call_full(
                "POST",
                "/api/v1/topups",
                Some(&token),
                Some(json!({"card_id": card, "amount": 1_000_000, "method": "bca"})),
                &[("Idempotency-Key", idem.as_str())],
            )
            .await
        }
    };
    for i in 0..3 {
        let (s, _, b) = topup(&alice, card.id, format!("a-{i}")).await;
        assert_eq!(s, 201, "{b}");
    }
    let (s, headers, b) = topup(&alice, card.id, "a-3".into()).await;
    assert_eq!((s, error_code(&b).as_str()), (429, "rate_limited"), "{b}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another user is counted on their own.
    let (s, _, b) = topup(&bob, bob_card.id, "b-0".into()).await;
    assert_eq!(s, 201, "{b}");

    // Per API key: payments (good or declined) count alike; another key is not affected.
    let (_, owner) = verified(&app, &admin, "limited.shop@example.com").await;
    let merchant = active_merchant(&app, &admin, &owner, "Limited Shop").await;
    let (_, key) = create_key(&app, &owner, merchant, "a").await;
    let (_, other) = create_key(&app, &owner, merchant, "b").await;
    for i in 0..3 {
        let (s, b) = keyed(
            &app,
            "POST",
            "/api/v1/payments",
            &key,
            &format!("p-{i}"),
            Some(card.pay(&format!("o-{i}"), 100_000)),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    let (s, headers, b) = app
        .call_full(
            "POST",
            "/api/v1/payments",
            None,
            Some(card.pay("o-3", 100_000)),
            &[("X-Api-Key", key.as_str()), ("Idempotency-Key", "p-3")],
        )
        .await;
    assert_eq!((s, error_code(&b).as_str()), (429, "rate_limited"), "{b}");
    assert!(headers.contains_key("retry-after"));
    let (s, b) = keyed(&app, "POST", "/api/v1/payments", &other, "q-0", Some(card.pay("o-4", 100_000))).await;
    assert_eq!(s, 201, "{b}");
}

#[actix_web::test]
async fn production_serves_no_mailbox() {
    let routes =
        |env| payd::http::api_for(env).routes.iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>();
    let dev = routes(payd::config::Environment::Development);
    let prod = routes(payd::config::Environment::Production);
    assert!(dev.contains(&"GET /api/v1/admin/mailbox".to_owned()));
    assert!(!prod.iter().any(|r| r.contains("mailbox")), "{prod:?}");
    assert_eq!(dev.len(), prod.len() + 1, "production lacks only the mailbox");

    // And the running app: as production, the route does not exist (404 route, not 403).
    let mut settings = settings();
    settings.environment = payd::config::Environment::Production;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let (s, b) = app.get("/api/v1/admin/mailbox", Some(&admin)).await;
    assert_eq!((s, error_code(&b).as_str()), (404, "not_found"), "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("route"), "{b}");
    let (s, doc) = app.get("/api-docs/openapi.json", None).await;
    assert_eq!(s, 200);
    assert!(doc["paths"].get("/api/v1/admin/mailbox").is_none(), "the mailbox is still documented");
}

#[actix_web::test]
async fn an_unknown_email_logs_in_exactly_like_a_wrong_password() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    let _ = verified(&app, &admin, "known@example.com").await;
    let (s1, wrong) = app.login("known@example.com", "Wrong-Pass-123").await;
    let (s2, unknown) = app.login("nobody-here@example.com", "Wrong-Pass-123").await;
    assert_eq!((s1, s2), (401, 401));
    let strip = |mut v: serde_json::Value| {
        v["error"].as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(strip(wrong), strip(unknown));
}

/// A multipart body by hand (reqwest's builder cannot send duplicate or oversized headers).
fn multipart(parts: &[(&str, Vec<String>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "payd-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, extra_headers, content) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let file = if *name == "file" { "; filename=\"doc.pdf\"" } else { "" };
        body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"{file}\r\n").as_bytes());
        if *name == "file" {
            body.extend_from_slice(b"Content-Type: application/pdf\r\n");
        }
        for h in extra_headers {
            body.extend_from_slice(format!("{h}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[actix_web::test]
async fn document_uploads_cap_parts_headers_and_size() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    let (_, owner) = verified(&app, &admin, "uploader@example.com").await;
    let merchant = apply(&app, &owner, "Upload Shop").await;
    let path = format!("/api/v1/merchants/{merchant}/documents");
    let send = |ct: String, body: Vec<u8>| {
        let (app, owner, path) = (&app, &owner, &path);
        async move { app.raw("POST", path, Some(owner), Some(&ct), body).await }
    };
    let doc_type: &[u8] = b"business_licence";

    // The well-formed upload works.
    let (ct, body) = multipart(&[("doc_type", vec![], doc_type), ("file", vec![], PDF)]);
    let (s, _, b) = send(ct, body).await;
    assert_eq!(s, 201, "{b}");

    // Too many parts (repeating a field is refused even below the cap).
    let many: Vec<(&str, Vec<String>, &[u8])> = (0..10).map(|_| ("doc_type", vec![], doc_type)).collect();
    let (ct, body) = multipart(&many);
    let (s, _, b) = send(ct, body).await;
    assert_eq!((s, error_code(&b).as_str()), (400, "invalid_upload"), "{b}");
    let (ct, body) =
        multipart(&[("doc_type", vec![], doc_type), ("doc_type", vec![], doc_type), ("file", vec![], PDF)]);
    let (s, _, b) = send(ct, body).await;
    assert_eq!((s, error_code(&b).as_str()), (400, "invalid_upload"), "{b}");
    // Too many headers on a part.
    let headers: Vec<String> = (0..12).map(|i| format!("X-Extra-{i}: {i}")).collect();
    let (ct, body) = multipart(&[("doc_type", headers, doc_type), ("file", vec![], PDF)]);
    let (s, _, b) = send(ct, body).await;
    assert_eq!((s, error_code(&b).as_str()), (400, "invalid_upload"), "{b}");
    // A header block that never ends is cut off by the body bound (413), never buffered without end.
    let huge = vec!["X-Pad: ".to_owned() + &"a".repeat(app.settings.merchants.max_document_bytes + 32 * 1024)];
    let (ct, body) = multipart(&[("doc_type", huge, doc_type), ("file", vec![], PDF)]);
    let (s, _, b) = send(ct, body).await;
    assert_eq!((s, error_code(&b).as_str()), (413, "payload_too_large"), "{b}");
    // A long doc_type field.
    let long = vec![b'x'; 1000];
    let (ct, body) = multipart(&[("doc_type", vec![], &long), ("file", vec![], PDF)]);
    let (s, _, b) = send(ct, body).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("doc_type")), "{b}");
    // Not multipart at all: a clear 400, never a 500.
    let (s, _, b) = send("application/json".into(), b"{}".to_vec()).await;
    assert_eq!((s, error_code(&b).as_str()), (400, "invalid_upload"), "{b}");
}
