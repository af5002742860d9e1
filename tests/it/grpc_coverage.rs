//! The merchant statement, merchant webhooks, notification preferences, card updates and the
//! per-merchant watch stream through the generated tonic clients: each answers what the HTTP route answers (parity),
//! refuses what it refuses (unauthenticated; someone else's merchant is NOT_FOUND, as a missing
//! one), and names the bad field of a refused message.

use std::time::Duration;

use serde_json::{json, Value};
use tonic::{Code, Request};
use tonic_types::StatusExt;

use payd::grpc::proto;
use payd::grpc::proto::cards_client::CardsClient;
use payd::grpc::proto::ledger_client::LedgerClient;
use payd::grpc::proto::merchants_client::MerchantsClient;
use payd::grpc::proto::notifications_client::NotificationsClient;
use payd::grpc::proto::payments_client::PaymentsClient;
use payd::grpc::proto::webhooks_client::WebhooksClient;

use crate::common::{merchant, TestApp, PASSWORD};
use crate::grpc::{authed, channel, expect_status, keyed};

/// The merchant statement's rows as HTTP shows them: (posting id, operation id, amount, balance after).
fn http_lines(v: &Value) -> Vec<(i64, String, i64, i64)> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["posting_id"].as_i64().unwrap(),
                l["operation_id"].as_str().unwrap().to_owned(),
                l["amount"].as_i64().unwrap(),
                l["balance_after"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn grpc_lines(r: &proto::GetStatementResponse) -> Vec<(i64, String, i64, i64)> {
    r.items.iter().map(|l| (l.posting_id, l.operation_id.clone(), l.amount, l.balance_after)).collect()
}

/// The next event of a watch stream; the bound only keeps a broken stream from hanging the test.
async fn next_event(stream: &mut tonic::Streaming<proto::OperationEvent>) -> proto::OperationEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("no event within 10 s")
        .unwrap()
        .expect("the stream ended")
}

#[actix_web::test]
async fn merchant_statement_and_watch_over_grpc_match_http() {
    let app = TestApp::spawn_with(merchant::merchant_settings()).await;
    let admin = app.admin_token().await;
    let (_, owner) = merchant::verified(&app, &admin, "grpc-statement-owner@test.local").await;
    let merchant_id = merchant::active_merchant(&app, &admin, &owner, "Statement Shop").await;
    let (_, api_key) = merchant::create_key(&app, &owner, merchant_id, "statement").await;
    let (_, buyer) = merchant::verified(&app, &admin, "grpc-statement-buyer@test.local").await;
    let card = merchant::issue_card(&app, &buyer).await;
    merchant::topup(&app, &buyer, card.id, 5_000_000).await;
    for i in 0..3 {
        let (s, b) = merchant::keyed(
            &app,
            "POST",
            "/api/v1/payments",
            &api_key,
            &format!("st-{i}"),
            Some(card.pay(&format!("st-{i}"), 100_000 + i)),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }

    let ch = channel(&app).await;
    let mut merchants = MerchantsClient::new(ch.clone());
    let req = |cursor: String| proto::GetMerchantStatementRequest {
        id: merchant_id,
        page: Some(proto::PageRequest { limit: 2, cursor }),
        from: None,
        to: None,
    };
    // Statement parity: the same rows and cursors, page by page.
    let p1 = merchants.get_merchant_statement(authed(req(String::new()), &owner, None)).await.unwrap().into_inner();
    let (s, h1) = app.get(&format!("/api/v1/merchants/{merchant_id}/statement?limit=2"), Some(&owner)).await;
    assert_eq!(s, 200, "{h1}");
    assert_eq!(grpc_lines(&p1), http_lines(&h1));
    assert_eq!(Some(p1.next_cursor.as_str()), h1["next_cursor"].as_str());
    assert_eq!(p1.items.len(), 2);
    assert!(p1.items.iter().all(|l| l.kind == "payment" && l.amount > 0), "{p1:?}");
    let p2 =
        merchants.get_merchant_statement(authed(req(p1.next_cursor.clone()), &owner, None)).await.unwrap().into_inner();
    let (_, h2) = app
        .get(&format!("/api/v1/merchants/{merchant_id}/statement?limit=2&cursor={}", p1.next_cursor), Some(&owner))
        .await;
    assert_eq!(grpc_lines(&p2), http_lines(&h2));
    assert_eq!((p2.items.len(), p2.next_cursor.as_str()), (1, ""));
    // An admin reads any merchant's statement; a stranger's answer is a missing merchant, as HTTP.
    let by_admin = merchants.get_merchant_statement(authed(req(String::new()), &admin, None)).await.unwrap();
    assert_eq!(grpc_lines(&by_admin.into_inner()), grpc_lines(&p1));
    let hidden = merchants.get_merchant_statement(authed(req(String::new()), &buyer, None)).await.unwrap_err();
    expect_status(&hidden, Code::NotFound, "not_found");
    let (s, _) = app.get(&format!("/api/v1/merchants/{merchant_id}/statement"), Some(&buyer)).await;
    assert_eq!(s, 404);
    let anonymous = merchants.get_merchant_statement(Request::new(req(String::new()))).await.unwrap_err();
    expect_status(&anonymous, Code::Unauthenticated, "missing_token");
    let window = proto::GetMerchantStatementRequest {
        from: Some(prost_types::Timestamp { seconds: 2_000_000_000, nanos: 0 }),
        to: Some(prost_types::Timestamp { seconds: 1_000_000_000, nanos: 0 }),
        ..req(String::new())
    };
    let bad = merchants.get_merchant_statement(authed(window, &owner, None)).await.unwrap_err();
    let meta = expect_status(&bad, Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("from"));

    // The merchant's watch: a payment committed after it opened arrives (the older ones do not).
    let mut ledger = LedgerClient::new(ch.clone());
    let watch = |cursor: String| proto::WatchOperationsRequest { card_id: 0, cursor, merchant_id: Some(merchant_id) };
    let mut stream = ledger.watch_operations(authed(watch(String::new()), &owner, None)).await.unwrap().into_inner();
    let mut payments = PaymentsClient::new(ch.clone());
    let pay = |order: &str, cvv: &str| proto::PayRequest {
        card_number: card.number.clone(),
        expiry_month: card.month,
        expiry_year: card.year,
        cvv: cvv.to_owned(),
        amount: 250_000,
        method: "visa".into(),
        order_ref: order.into(),
        currency: String::new(),
    };
    let paid = payments.pay(keyed(pay("watched-1", &card.cvv), &api_key, "w-pay-1")).await.unwrap().into_inner();
    let event = next_event(&mut stream).await;
    let op = event.operation.clone().unwrap();
    assert_eq!(
        (op.id.as_str(), op.kind(), op.merchant_id, op.amount),
        (paid.id.as_str(), proto::OperationKind::Payment, Some(merchant_id), 250_000)
    );
    assert!(!event.cursor.is_empty());
    drop(stream);
    // A card-data decline is the cardholder's business: not on the merchant's watch. A refund is.
    let declined = payments.pay(keyed(pay("watched-2", &card.wrong_cvv()), &api_key, "w-pay-2")).await.unwrap_err();
    expect_status(&declined, Code::FailedPrecondition, "card_declined");
    let refund = proto::RefundRequest { payment_id: paid.id.clone(), amount: Some(50_000), reason: String::new() };
    let refunded = payments.refund(keyed(refund, &api_key, "w-ref-1")).await.unwrap().into_inner();
    // Resuming from the payment's cursor starts strictly after it: the refund comes next.
    let mut resumed = ledger.watch_operations(authed(watch(event.cursor), &owner, None)).await.unwrap().into_inner();
    let next = next_event(&mut resumed).await.operation.unwrap();
    assert_eq!((next.id.as_str(), next.kind()), (refunded.id.as_str(), proto::OperationKind::Refund));
    // The watched operations read the same as the merchant's payment list over HTTP.
    let (_, listed) = app.get(&format!("/api/v1/merchants/{merchant_id}/payments?limit=2"), Some(&owner)).await;
    assert_eq!(listed["items"][0]["id"].as_str(), Some(refunded.id.as_str()), "{listed}");
    assert_eq!(listed["items"][1]["id"].as_str(), Some(paid.id.as_str()), "{listed}");
    assert_eq!(listed["items"][0]["amount"].as_i64(), Some(next.amount));

    // Access: the statement's rules — a stranger's watch is a missing merchant; an admin may watch.
    let refused = ledger.watch_operations(authed(watch(String::new()), &buyer, None)).await.unwrap_err();
    expect_status(&refused, Code::NotFound, "not_found");
    let unknown = proto::WatchOperationsRequest { merchant_id: Some(999_999), ..watch(String::new()) };
    let missing = ledger.watch_operations(authed(unknown, &admin, None)).await.unwrap_err();
    expect_status(&missing, Code::NotFound, "not_found");
    ledger.watch_operations(authed(watch(String::new()), &admin, None)).await.unwrap();
    let anonymous = ledger.watch_operations(Request::new(watch(String::new()))).await.unwrap_err();
    expect_status(&anonymous, Code::Unauthenticated, "missing_token");
    let both = proto::WatchOperationsRequest { card_id: card.id, ..watch(String::new()) };
    let bad = ledger.watch_operations(authed(both, &owner, None)).await.unwrap_err();
    let meta = expect_status(&bad, Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("merchant_id"));
}

fn webhook_ids(v: &Value) -> Vec<i64> {
    v["items"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

#[actix_web::test]
async fn webhooks_over_grpc_match_http() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, owner) = merchant::verified(&app, &admin, "grpc-hooks-owner@test.local").await;
    let (_, stranger) = merchant::verified(&app, &admin, "grpc-hooks-stranger@test.local").await;
    let merchant_id = merchant::apply(&app, &owner, "Hooks Shop").await;
    let path = format!("/api/v1/merchants/{merchant_id}/webhooks");
    let mut hooks = WebhooksClient::new(channel(&app).await);

    // Event types: the HTTP list.
    let types = hooks.list_event_types(authed(proto::ListEventTypesRequest {}, &stranger, None)).await;
    let types = types.unwrap().into_inner().event_types;
    let (_, ht) = app.get("/api/v1/webhooks/event-types", Some(&stranger)).await;
    let http_types: Vec<&str> = ht["event_types"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(types.iter().map(String::as_str).collect::<Vec<_>>(), http_types);
    assert_eq!(types[0], "*");
    assert!(types.iter().any(|t| t == "payment.completed"), "{types:?}");

    // Create over gRPC; read over HTTP. The secret is in the creation answer only.
    let create = |url: &str, types: &[&str]| proto::CreateWebhookRequest {
        merchant_id,
        url: url.into(),
        event_types: types.iter().map(|t| (*t).to_owned()).collect(),
        description: "orders".into(),
    };
    let created = hooks
        .create_webhook(authed(create("https://shop.example.com/payd/hooks", &["payment.completed"]), &owner, None))
        .await
        .unwrap()
        .into_inner();
    let hook = created.webhook.unwrap();
    assert!(created.secret.starts_with("whsec_"));
    assert_eq!((hook.merchant_id, hook.status.as_str(), hook.description.as_str()), (merchant_id, "active", "orders"));
    let (s, h) = app.get(&format!("{path}/{}", hook.id), Some(&owner)).await;
    assert_eq!(s, 200, "{h}");
    assert_eq!((h["url"].as_str(), h["event_types"].clone()), (Some(hook.url.as_str()), json!(hook.event_types)));
    assert!(!h.to_string().contains(&created.secret));
    // Create over HTTP; both list the same endpoints, in the same order.
    let (s, hb) = app
        .post(&path, Some(&owner), json!({"url": "https://shop.example.com/payd/refunds", "event_types": ["*"]}))
        .await;
    assert_eq!(s, 201, "{hb}");
    let second = hb["endpoint"]["id"].as_i64().unwrap();
    let listed = hooks.list_webhooks(authed(proto::ListWebhooksRequest { merchant_id }, &owner, None)).await;
    let listed = listed.unwrap().into_inner().items;
    let (_, hl) = app.get(&path, Some(&owner)).await;
    assert_eq!(listed.iter().map(|w| w.id).collect::<Vec<_>>(), webhook_ids(&hl));
    assert_eq!(listed.iter().map(|w| w.id).collect::<Vec<_>>(), vec![hook.id, second]);
    let got = hooks.get_webhook(authed(proto::WebhookRef { merchant_id, id: second }, &admin, None)).await;
    assert_eq!(got.unwrap().into_inner().event_types, vec!["*".to_owned()]);

    // Update: disable and subscribe to more types over gRPC; HTTP shows the change.
    let update = proto::UpdateWebhookRequest {
        merchant_id,
        id: hook.id,
        url: None,
        event_types: Some(proto::EventTypeList {
            event_types: vec!["payment.completed".into(), "refund.completed".into(), "payment.completed".into()],
        }),
        description: None,
        enabled: Some(false),
    };
    let updated = hooks.update_webhook(authed(update.clone(), &owner, None)).await.unwrap().into_inner();
    assert_eq!(updated.event_types, vec!["payment.completed".to_owned(), "refund.completed".to_owned()]);
    assert_eq!((updated.status.as_str(), updated.description.as_str()), ("disabled", "orders"));
    assert_eq!(updated.disabled_reason, "disabled by the merchant");
    let (_, h) = app.get(&format!("{path}/{}", hook.id), Some(&owner)).await;
    assert_eq!((h["status"].as_str(), h["event_types"].clone()), (Some("disabled"), json!(updated.event_types)));
    let enable = proto::UpdateWebhookRequest { event_types: None, enabled: Some(true), ..update.clone() };
    let enabled = hooks.update_webhook(authed(enable, &owner, None)).await.unwrap().into_inner();
    assert_eq!((enabled.status.as_str(), enabled.disabled_reason.as_str()), ("active", ""));
    // Bad input names its field, as HTTP: an unknown event type, a non-URL, an overlap out of range.
    let unknown = proto::UpdateWebhookRequest {
        event_types: Some(proto::EventTypeList { event_types: vec!["payment.exploded".into()] }),
        enabled: None,
        ..update.clone()
    };
    let e = hooks.update_webhook(authed(unknown, &owner, None)).await.unwrap_err();
    let meta = expect_status(&e, Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("event_types"));
    let e = hooks.create_webhook(authed(create("not a url at all", &["*"]), &owner, None)).await.unwrap_err();
    let meta = expect_status(&e, Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("url"));
    let e = hooks
        .create_webhook(authed(create("https://shop.example.com/payd/none", &[]), &owner, None))
        .await
        .unwrap_err();
    let meta = expect_status(&e, Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("event_types"));
    let far = proto::RotateWebhookSecretRequest { merchant_id, id: hook.id, overlap_secs: Some(10_000_000) };
    let e = hooks.rotate_webhook_secret(authed(far, &owner, None)).await.unwrap_err();
    let meta = expect_status(&e, Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("overlap_secs"));

    // Rotate: a new secret; the old one keeps signing for the overlap, as HTTP shows.
    let rotate = proto::RotateWebhookSecretRequest { merchant_id, id: hook.id, overlap_secs: Some(3600) };
    let rotated = hooks.rotate_webhook_secret(authed(rotate, &owner, None)).await.unwrap().into_inner();
    assert!(rotated.secret.starts_with("whsec_") && rotated.secret != created.secret);
    let until = rotated.previous_secret_expires_at.unwrap();
    let (_, h) = app.get(&format!("{path}/{}", hook.id), Some(&owner)).await;
    let http_until = chrono::DateTime::parse_from_rfc3339(h["previous_secret_expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(http_until.timestamp(), until.seconds);

    // The delivery log: empty, with the HTTP validation of its status filter and unknown deliveries.
    let deliveries = |status: &str| proto::ListDeliveriesRequest {
        merchant_id,
        webhook_id: hook.id,
        page: None,
        status: status.into(),
    };
    let log = hooks.list_deliveries(authed(deliveries("dead"), &owner, None)).await.unwrap().into_inner();
    assert!(log.items.is_empty() && log.next_cursor.is_empty(), "{log:?}");
    let (s, hd) = app.get(&format!("{path}/{}/deliveries?status=dead", hook.id), Some(&owner)).await;
    assert_eq!((s, hd["items"].as_array().map(Vec::len)), (200, Some(0)));
    let e = hooks.list_deliveries(authed(deliveries("lost"), &owner, None)).await.unwrap_err();
    let meta = expect_status(&e, Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("status"));
    let one = proto::DeliveryRef { merchant_id, webhook_id: hook.id, id: 999_999 };
    let e = hooks.get_delivery(authed(one, &owner, None)).await.unwrap_err();
    expect_status(&e, Code::NotFound, "not_found");
    let e = hooks.redeliver(authed(one, &owner, None)).await.unwrap_err();
    expect_status(&e, Code::NotFound, "not_found");

    // A delivery that ran out of attempts: the log, its detail and a redelivery read as over HTTP.
    let mut conn = app.db();
    let event = uuid::Uuid::new_v4();
    let dead = merchant::scalar(
        &mut conn,
        &format!(
            "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, body, status, attempts, last_status, \
             last_error, completed_at) VALUES ({second}, '{event}', 'payment.completed', '{{\"id\":1}}', 'dead', 3, \
             500, 'server error', now()) RETURNING id AS n"
        ),
    );
    merchant::scalar(
        &mut conn,
        &format!(
            "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, duration_ms) \
             VALUES ({dead}, 1, 500, 12) RETURNING id AS n"
        ),
    );
    let log = proto::ListDeliveriesRequest { merchant_id, webhook_id: second, page: None, status: "dead".into() };
    let log = hooks.list_deliveries(authed(log, &owner, None)).await.unwrap().into_inner();
    let (_, hd) = app.get(&format!("{path}/{second}/deliveries?status=dead"), Some(&owner)).await;
    assert_eq!(log.items.iter().map(|d| d.id).collect::<Vec<_>>(), webhook_ids(&hd));
    assert_eq!((log.items[0].event_id.clone(), log.items[0].last_status), (event.to_string(), Some(500)));
    let one = proto::DeliveryRef { merchant_id, webhook_id: second, id: dead };
    let detail = hooks.get_delivery(authed(one, &owner, None)).await.unwrap().into_inner();
    let (_, hd) = app.get(&format!("{path}/{second}/deliveries/{dead}"), Some(&owner)).await;
    assert_eq!((detail.body.as_str(), hd["body"].as_str()), ("{\"id\":1}", Some("{\"id\":1}")));
    assert_eq!(detail.attempts.len(), hd["attempts"].as_array().unwrap().len());
    assert_eq!((detail.attempts[0].status_code, detail.attempts[0].duration_ms), (Some(500), 12));
    let again = hooks.redeliver(authed(one, &owner, None)).await.unwrap().into_inner();
    assert_eq!((again.id, again.status.as_str(), again.attempts), (dead, "pending", 0));
    assert_eq!(again.completed_at, None);

    // Someone else's merchant is a missing one, for every call; no token is UNAUTHENTICATED.
    let theirs = proto::WebhookRef { merchant_id, id: hook.id };
    let e = hooks.get_webhook(authed(theirs, &stranger, None)).await.unwrap_err();
    expect_status(&e, Code::NotFound, "not_found");
    let e = hooks.list_webhooks(authed(proto::ListWebhooksRequest { merchant_id }, &stranger, None)).await;
    expect_status(&e.unwrap_err(), Code::NotFound, "not_found");
    let e = hooks.delete_webhook(authed(theirs, &stranger, None)).await.unwrap_err();
    expect_status(&e, Code::NotFound, "not_found");
    let (s, _) = app.get(&format!("{path}/{}", hook.id), Some(&stranger)).await;
    assert_eq!(s, 404);
    let e = hooks.get_webhook(Request::new(theirs)).await.unwrap_err();
    expect_status(&e, Code::Unauthenticated, "missing_token");

    // Delete over gRPC: gone over HTTP too; a second delete is NOT_FOUND.
    hooks.delete_webhook(authed(theirs, &owner, None)).await.unwrap();
    let (s, _) = app.get(&format!("{path}/{}", hook.id), Some(&owner)).await;
    assert_eq!(s, 404);
    let e = hooks.delete_webhook(authed(theirs, &owner, None)).await.unwrap_err();
    expect_status(&e, Code::NotFound, "not_found");
    let (_, hl) = app.get(&path, Some(&owner)).await;
    assert_eq!(webhook_ids(&hl), vec![second]);
}

#[actix_web::test]
async fn notification_preferences_over_grpc_match_http() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, token) = merchant::verified(&app, &admin, "grpc-prefs@test.local").await;
    let mut notifications = NotificationsClient::new(channel(&app).await);
    let path = "/api/v1/notifications/preferences";
    let as_http = |p: &proto::NotificationPreferences| {
        json!({"topups": p.topups, "withdrawals": p.withdrawals, "payments": p.payments, "transfers": p.transfers,
               "transfer_min_amount": p.transfer_min_amount, "default": p.uses_defaults})
    };

    // The defaults until the user chooses, as HTTP shows them.
    let defaults = notifications.get_preferences(authed(proto::GetPreferencesRequest {}, &token, None)).await;
    let defaults = defaults.unwrap().into_inner();
    assert!(defaults.uses_defaults && defaults.topups && defaults.transfers, "{defaults:?}");
    let (s, h) = app.get(path, Some(&token)).await;
    assert_eq!((s, h), (200, as_http(&defaults)));

    // A choice over gRPC is the one HTTP reads, and the other way round.
    let choice = proto::UpdatePreferencesRequest {
        topups: false,
        withdrawals: true,
        payments: true,
        transfers: false,
        transfer_min_amount: 0,
    };
    let chosen = notifications.update_preferences(authed(choice, &token, None)).await.unwrap().into_inner();
    assert!(!chosen.uses_defaults && !chosen.topups && !chosen.transfers, "{chosen:?}");
    let (_, h) = app.get(path, Some(&token)).await;
    assert_eq!(h, as_http(&chosen));
    let (s, h) = app
        .call(
            "PUT",
            path,
            Some(&token),
            Some(json!({"topups": true, "withdrawals": false, "payments": true, "transfers": true,
                        "transfer_min_amount": 500_000})),
        )
        .await;
    assert_eq!(s, 200, "{h}");
    let read = notifications.get_preferences(authed(proto::GetPreferencesRequest {}, &token, None)).await;
    assert_eq!(as_http(&read.unwrap().into_inner()), h);

    // Validation: the field named, as HTTP; nothing stored.
    for amount in [-1, 100_000_000_001] {
        let bad = proto::UpdatePreferencesRequest { transfer_min_amount: amount, ..choice };
        let e = notifications.update_preferences(authed(bad, &token, None)).await.unwrap_err();
        let meta = expect_status(&e, Code::InvalidArgument, "validation_failed");
        assert_eq!(meta.get("field").map(String::as_str), Some("transfer_min_amount"), "{e:?}");
        let (s, hb) = app
            .call(
                "PUT",
                path,
                Some(&token),
                Some(json!({"topups": true, "withdrawals": true, "payments": true, "transfers": true,
                            "transfer_min_amount": amount})),
            )
            .await;
        assert_eq!((s, hb["error"]["field"].as_str()), (422, Some("transfer_min_amount")), "{hb}");
    }
    let (_, after) = app.get(path, Some(&token)).await;
    assert_eq!(after, h);
    let e = notifications.get_preferences(Request::new(proto::GetPreferencesRequest {})).await.unwrap_err();
    expect_status(&e, Code::Unauthenticated, "missing_token");
}

#[actix_web::test]
async fn card_update_over_grpc_matches_http() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, holder) = merchant::verified(&app, &admin, "grpc-card-update@test.local").await;
    let (_, stranger) = merchant::verified(&app, &admin, "grpc-card-stranger@test.local").await;
    let card = merchant::issue_card(&app, &holder).await;
    let mut cards = CardsClient::new(channel(&app).await);
    let label = |id: i64, label: &str| proto::UpdateCardRequest { id, label: Some(label.into()), credit_limit: None };

    let updated = cards.update_card(authed(label(card.id, "Travel"), &holder, None)).await.unwrap().into_inner();
    assert_eq!((updated.id, updated.label.as_str()), (card.id, "Travel"));
    let (s, h) = app.get(&format!("/api/v1/cards/{}", card.id), Some(&holder)).await;
    assert_eq!((s, h["label"].as_str()), (200, Some("Travel")), "{h}");
    // Absent fields stay; an HTTP change reads the same over gRPC.
    let (s, h) =
        app.call("PATCH", &format!("/api/v1/cards/{}", card.id), Some(&holder), Some(json!({"label": "Bills"}))).await;
    assert_eq!(s, 200, "{h}");
    let same = proto::UpdateCardRequest { id: card.id, label: None, credit_limit: None };
    let read = cards.update_card(authed(same, &holder, None)).await.unwrap().into_inner();
    assert_eq!((read.label.as_str(), read.card_number.as_str()), ("Bills", h["card_number"].as_str().unwrap()));
    // The HTTP refusals: a too-long label names its field; someone else's card is NOT_FOUND;
    // a holder may not set a credit line; no token is UNAUTHENTICATED.
    let e = cards.update_card(authed(label(card.id, &"x".repeat(101)), &holder, None)).await.unwrap_err();
    let meta = expect_status(&e, Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("label"));
    let e = cards.update_card(authed(label(card.id, "Mine now"), &stranger, None)).await.unwrap_err();
    expect_status(&e, Code::NotFound, "not_found");
    let (s, _) =
        app.call("PATCH", &format!("/api/v1/cards/{}", card.id), Some(&stranger), Some(json!({"label": "x"}))).await;
    assert_eq!(s, 404);
    let credit = proto::UpdateCardRequest { id: card.id, label: None, credit_limit: Some(1_000) };
    let e = cards.update_card(authed(credit, &holder, None)).await.unwrap_err();
    let (s, hb) = app
        .call("PATCH", &format!("/api/v1/cards/{}", card.id), Some(&holder), Some(json!({"credit_limit": 1_000})))
        .await;
    assert_eq!(
        e.code(),
        payd::grpc::convert::code_for(actix_web::http::StatusCode::from_u16(s).unwrap()),
        "{e:?} {hb}"
    );
    assert_eq!(e.get_details_error_info().unwrap().reason, hb["error"]["code"].as_str().unwrap());
    let e = cards.update_card(Request::new(label(card.id, "anon"))).await.unwrap_err();
    expect_status(&e, Code::Unauthenticated, "missing_token");
}

#[actix_web::test]
async fn restore_all_over_grpc_matches_http() {
    use payd::grpc::proto::roles_client::RolesClient;
    use payd::grpc::proto::users_client::UsersClient;
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (user_id, holder) = merchant::verified(&app, &admin, "grpc-restore-all@test.local").await;
    let card = merchant::issue_card(&app, &holder).await;
    let merchant_id = merchant::apply(&app, &holder, "Restore Shop").await;
    let (s, role) = app.post("/api/v1/roles", Some(&admin), json!({"name": "auditor", "description": "reads"})).await;
    assert_eq!(s, 201, "{role}");
    let role_id = role["id"].as_i64().unwrap();
    // One archived record of each kind, archived over HTTP.
    for (path, token) in [
        (format!("/api/v1/cards/{}/close", card.id), &holder),
        (format!("/api/v1/cards/{}/archive", card.id), &holder),
        (format!("/api/v1/merchants/{merchant_id}/archive"), &admin),
        (format!("/api/v1/roles/{role_id}/archive"), &admin),
        (format!("/api/v1/users/{user_id}/archive"), &admin),
    ] {
        let (s, b) = app.post(&path, Some(token), json!({})).await;
        assert_eq!(s, 200, "{path}: {b}");
    }
    let ch = channel(&app).await;
    let (mut cards, mut merchants) = (CardsClient::new(ch.clone()), MerchantsClient::new(ch.clone()));
    let (mut users, mut roles) = (UsersClient::new(ch.clone()), RolesClient::new(ch));
    let all = || proto::RestoreAllRequest {};

    // Admins only, as HTTP: a signed-in user is PERMISSION_DENIED (the holder signs in again first).
    let (_, other) = merchant::verified(&app, &admin, "grpc-restore-all-other@test.local").await;
    let e = cards.restore_all_cards(authed(all(), &other, None)).await.unwrap_err();
    expect_status(&e, Code::PermissionDenied, "forbidden");
    let (s, _) = app.post("/api/v1/cards/restore-all", Some(&other), json!({})).await;
    assert_eq!(s, 403);

    let n = cards.restore_all_cards(authed(all(), &admin, None)).await.unwrap().into_inner().restored;
    assert_eq!(n, 1);
    let (_, c) = app.get(&format!("/api/v1/cards/{}", card.id), Some(&admin)).await;
    assert_eq!((c["archived_at"].clone(), c["status"].as_str()), (Value::Null, Some("closed")), "{c}");
    let n = merchants.restore_all_merchants(authed(all(), &admin, None)).await.unwrap().into_inner().restored;
    assert_eq!(n, 1);
    let (_, m) = app.get(&format!("/api/v1/merchants/{merchant_id}"), Some(&admin)).await;
    assert_eq!(m["archived_at"], Value::Null, "{m}");
    let n = roles.restore_all_roles(authed(all(), &admin, None)).await.unwrap().into_inner().restored;
    assert_eq!(n, 1);
    let (_, r) = app.get(&format!("/api/v1/roles/{role_id}"), Some(&admin)).await;
    assert_eq!(r["archived_at"], Value::Null, "{r}");
    let n = users.restore_all_users(authed(all(), &admin, None)).await.unwrap().into_inner().restored;
    assert_eq!(n, 1);
    let (_, u) = app.get(&format!("/api/v1/users/{user_id}"), Some(&admin)).await;
    assert_eq!(u["archived_at"], Value::Null, "{u}");
    // Nothing left: the HTTP route answers 0, as a second gRPC call does.
    let (s, b) = app.post("/api/v1/users/restore-all", Some(&admin), json!({})).await;
    assert_eq!((s, b["restored"].as_i64()), (200, Some(0)), "{b}");
    let n = users.restore_all_users(authed(all(), &admin, None)).await.unwrap().into_inner().restored;
    assert_eq!(n, 0);
}

#[actix_web::test]
async fn user_and_role_administration_over_grpc_matches_http() {
    use payd::grpc::proto::roles_client::RolesClient;
    use payd::grpc::proto::users_client::UsersClient;
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, plain) = merchant::verified(&app, &admin, "grpc-admin-plain@test.local").await;
    let ch = channel(&app).await;
    let (mut users, mut roles) = (UsersClient::new(ch.clone()), RolesClient::new(ch));
    let create = |email: &str, password: &str| proto::CreateUserRequest {
        first_name: "Sari".into(),
        last_name: "Dewi".into(),
        email: email.into(),
        password: password.into(),
        roles: Vec::new(),
        email_verified: true,
    };

    // Create over gRPC: the default role, readable over HTTP, able to sign in.
    let made = users.create_user(authed(create("grpc-made@test.local", PASSWORD), &admin, None)).await;
    let made = made.unwrap().into_inner();
    assert_eq!((made.roles.clone(), made.email_verified), (vec!["user".to_owned()], true));
    let (s, h) = app.get(&format!("/api/v1/users/{}", made.id), Some(&admin)).await;
    assert_eq!((s, h["email"].as_str(), h["roles"].clone()), (200, Some("grpc-made@test.local"), json!(["user"])));
    let (s, _) = app.login("grpc-made@test.local", PASSWORD).await;
    assert_eq!(s, 200);
    // The HTTP refusals: a taken e-mail, a weak password (named), a non-admin caller.
    let e = users.create_user(authed(create("grpc-made@test.local", PASSWORD), &admin, None)).await.unwrap_err();
    let meta = expect_status(&e, Code::AlreadyExists, "email_taken");
    assert_eq!(meta.get("field").map(String::as_str), Some("email"));
    let e = users.create_user(authed(create("grpc-weak@test.local", "short"), &admin, None)).await.unwrap_err();
    let meta = expect_status(&e, Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("password"));
    let e = users.create_user(authed(create("grpc-denied@test.local", PASSWORD), &plain, None)).await.unwrap_err();
    expect_status(&e, Code::PermissionDenied, "forbidden");

    // Set the password over gRPC: the new one signs in over HTTP, the old one no longer does.
    let set = proto::SetUserPasswordRequest { id: made.id, password: "n3w-grpc-pass".into() };
    users.set_user_password(authed(set, &admin, None)).await.unwrap();
    let (s, _) = app.login("grpc-made@test.local", "n3w-grpc-pass").await;
    assert_eq!(s, 200);
    let (s, _) = app.login("grpc-made@test.local", PASSWORD).await;
    assert_eq!(s, 401);

    // Purge: only archived users, never oneself; then gone over HTTP too.
    let target = proto::UserRef { id: made.id };
    let e = users.purge_user(authed(target, &admin, None)).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    let (s, _) = app.post(&format!("/api/v1/users/{}/archive", made.id), Some(&admin), json!({})).await;
    assert_eq!(s, 200);
    users.purge_user(authed(target, &admin, None)).await.unwrap();
    let (s, _) = app.get(&format!("/api/v1/users/{}", made.id), Some(&admin)).await;
    assert_eq!(s, 404);
    let e = users.purge_user(authed(target, &admin, None)).await.unwrap_err();
    expect_status(&e, Code::NotFound, "not_found");
    let (_, me) = app.get("/api/v1/auth/me", Some(&admin)).await;
    let e = users.purge_user(authed(proto::UserRef { id: me["id"].as_i64().unwrap() }, &admin, None)).await;
    expect_status(&e.unwrap_err(), Code::AlreadyExists, "self_purge");

    // Roles: a built-in role is never purged; an unassigned one is, and HTTP no longer finds it.
    let (s, role) = app.post("/api/v1/roles", Some(&admin), json!({"name": "purgeable", "description": "x"})).await;
    assert_eq!(s, 201, "{role}");
    let role_id = role["id"].as_i64().unwrap();
    roles.purge_role(authed(proto::PurgeRoleRequest { id: role_id }, &admin, None)).await.unwrap();
    let (s, _) = app.get(&format!("/api/v1/roles/{role_id}"), Some(&admin)).await;
    assert_eq!(s, 404);
    let (_, all) = app.get("/api/v1/roles", Some(&admin)).await;
    let builtin = all["items"].as_array().unwrap().iter().find(|r| r["builtin"] == json!(true)).unwrap()["id"].as_i64();
    let e = roles.purge_role(authed(proto::PurgeRoleRequest { id: builtin.unwrap() }, &admin, None)).await;
    expect_status(&e.unwrap_err(), Code::AlreadyExists, "builtin_role");
    let e = roles.purge_role(authed(proto::PurgeRoleRequest { id: role_id }, &plain, None)).await;
    expect_status(&e.unwrap_err(), Code::PermissionDenied, "forbidden");
}

#[actix_web::test]
async fn card_lookup_and_review_queue_over_grpc_match_http() {
    let app = TestApp::spawn_with(merchant::merchant_settings()).await;
    let admin = app.admin_token().await;
    let (_, holder) = merchant::verified(&app, &admin, "grpc-lookup-holder@test.local").await;
    let (_, stranger) = merchant::verified(&app, &admin, "grpc-lookup-stranger@test.local").await;
    let card = merchant::issue_card(&app, &holder).await;
    let ch = channel(&app).await;
    let mut cards = CardsClient::new(ch.clone());
    let find = |number: &str| proto::FindCardByNumberRequest { card_number: number.into() };

    // One's own card by its number (spaces ignored), as HTTP finds it.
    let spaced: String = card
        .number
        .chars()
        .enumerate()
        .flat_map(|(i, c)| (i > 0 && i % 4 == 0).then_some(' ').into_iter().chain([c]))
        .collect();
    let found = cards.find_card_by_number(authed(find(&spaced), &holder, None)).await.unwrap().into_inner();
    let (s, h) = app.post("/api/v1/cards/lookup", Some(&holder), json!({"card_number": spaced})).await;
    assert_eq!(
        (s, h["id"].as_i64(), h["card_number"].as_str()),
        (200, Some(found.id), Some(found.card_number.as_str()))
    );
    assert_eq!(found.id, card.id);
    // Someone else's number is a missing card; a malformed one names the field; no token is refused.
    let e = cards.find_card_by_number(authed(find(&card.number), &stranger, None)).await.unwrap_err();
    expect_status(&e, Code::NotFound, "not_found");
    let (s, _) = app.post("/api/v1/cards/lookup", Some(&stranger), json!({"card_number": card.number})).await;
    assert_eq!(s, 404);
    for bad in ["1234", "abcd-efgh-ijkl-mnop"] {
        let e = cards.find_card_by_number(authed(find(bad), &holder, None)).await.unwrap_err();
        let meta = expect_status(&e, Code::InvalidArgument, "validation_failed");
        assert_eq!(meta.get("field").map(String::as_str), Some("card_number"), "{bad}");
    }
    let e = cards.find_card_by_number(Request::new(find(&card.number))).await.unwrap_err();
    expect_status(&e, Code::Unauthenticated, "missing_token");

    // The review queue: documents waiting for review across merchants, oldest first, as HTTP lists them.
    let first = merchant::apply(&app, &holder, "Queue One").await;
    let second = merchant::apply(&app, &stranger, "Queue Two").await;
    for (token, id, doc_type) in
        [(&holder, first, "business_licence"), (&stranger, second, "tax_id"), (&holder, first, "tax_id")]
    {
        let (s, b) = merchant::upload(&app, token, id, doc_type, merchant::PDF, "application/pdf").await;
        assert_eq!(s, 201, "{b}");
    }
    let mut merchants = MerchantsClient::new(ch);
    let queue = |cursor: String| proto::ListReviewQueueRequest {
        page: Some(proto::PageRequest { limit: 2, cursor }),
        include_total: true,
        ..proto::ListReviewQueueRequest::default()
    };
    let p1 = merchants.list_review_queue(authed(queue(String::new()), &admin, None)).await.unwrap().into_inner();
    let (s, h1) = app.get("/api/v1/merchant-documents?limit=2&include_total=true", Some(&admin)).await;
    assert_eq!(s, 200, "{h1}");
    let http_ids =
        |v: &Value| v["items"].as_array().unwrap().iter().map(|d| d["id"].as_i64().unwrap()).collect::<Vec<_>>();
    assert_eq!(p1.items.iter().map(|d| d.id).collect::<Vec<_>>(), http_ids(&h1));
    assert_eq!((p1.total, h1["total"].as_i64()), (Some(3), Some(3)));
    assert_eq!(Some(p1.next_cursor.as_str()), h1["next_cursor"].as_str());
    let p2 =
        merchants.list_review_queue(authed(queue(p1.next_cursor.clone()), &admin, None)).await.unwrap().into_inner();
    assert_eq!((p2.items.len(), p2.items[0].merchant_id, p2.next_cursor.as_str()), (1, first, ""));
    let only = proto::ListReviewQueueRequest { merchant_id: Some(second), ..queue(String::new()) };
    let theirs = merchants.list_review_queue(authed(only, &admin, None)).await.unwrap().into_inner();
    assert_eq!(theirs.items.iter().map(|d| d.doc_type.as_str()).collect::<Vec<_>>(), vec!["tax_id"]);
    // The HTTP refusals: a bad status names its field; only admins read the queue.
    let bad = proto::ListReviewQueueRequest { status: "lost".into(), ..queue(String::new()) };
    let e = merchants.list_review_queue(authed(bad, &admin, None)).await.unwrap_err();
    let meta = expect_status(&e, Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("status"));
    let e = merchants.list_review_queue(authed(queue(String::new()), &holder, None)).await.unwrap_err();
    expect_status(&e, Code::PermissionDenied, "forbidden");
}
