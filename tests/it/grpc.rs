//! The gRPC API through its generated tonic clients: identity, cards, money movement with
//! idempotent replay, merchant payments with an API key, the watch stream, the access policy for
//! every RPC class, bad input, parity with the HTTP API, and the proto contract (every RPC declared,
//! the descriptor set backward compatible with the committed one).

use std::collections::HashMap;

use prost::Message;
use serde_json::json;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use payd::grpc::proto;
use payd::grpc::proto::auth_client::AuthClient;
use payd::grpc::proto::cards_client::CardsClient;
use payd::grpc::proto::ledger_client::LedgerClient;
use payd::grpc::proto::payments_client::PaymentsClient;
use payd::grpc::proto::users_client::UsersClient;

use crate::common::merchant;
use crate::common::{TestApp, PASSWORD};

pub(crate) async fn channel(app: &TestApp) -> Channel {
    assert_ne!(app.grpc_port, 0, "the gRPC server is not running");
    Channel::from_shared(format!("http://127.0.0.1:{}", app.grpc_port)).unwrap().connect().await.unwrap()
}

/// A request with a bearer token and optional idempotency key.
pub(crate) fn authed<T>(msg: T, token: &str, key: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    if let Some(k) = key {
        r.metadata_mut().insert("idempotency-key", k.parse().unwrap());
    }
    r
}

/// A request with a merchant API key and an idempotency key.
pub(crate) fn keyed<T>(msg: T, api_key: &str, key: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("x-api-key", api_key.parse().unwrap());
    r.metadata_mut().insert("idempotency-key", key.parse().unwrap());
    r
}

/// Asserts the code and the ErrorInfo reason (the HTTP error code) of a refused call, and that
/// the details carry the request id; returns the ErrorInfo metadata.
pub(crate) fn expect_status(s: &Status, code: Code, reason: &str) -> HashMap<String, String> {
    assert_eq!(s.code(), code, "{s:?}");
    let info = s.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo in {s:?}"));
    assert_eq!(info.reason, reason, "{s:?}");
    assert_eq!(info.domain, "payd");
    let req = s.get_details_request_info().unwrap_or_else(|| panic!("no RequestInfo in {s:?}"));
    assert!(!req.request_id.is_empty(), "{s:?}");
    info.metadata
}

/// The field a refused INVALID_ARGUMENT names (BadRequest field violation or ErrorInfo metadata).
pub(crate) fn named_field(s: &Status) -> String {
    if let Some(br) = s.get_details_bad_request() {
        if let Some(v) = br.field_violations.first() {
            return v.field.clone();
        }
    }
    s.get_details_error_info().and_then(|i| i.metadata.get("field").cloned()).unwrap_or_default()
}

pub(crate) fn topup(card: i64, amount: i64) -> proto::TopUpRequest {
    proto::TopUpRequest { card_id: card, amount, method: "bca".into(), currency: String::new() }
}

pub(crate) fn debit_card() -> proto::IssueCardRequest {
    proto::IssueCardRequest {
        card_type: proto::CardType::Debit.into(),
        brand: "visa".into(),
        user_id: None,
        credit_limit: None,
        label: String::new(),
    }
}

/// Registers, verifies and logs in over gRPC; returns (user id, access token).
pub(crate) async fn grpc_user(app: &TestApp, auth: &mut AuthClient<Channel>, email: &str) -> (i64, String) {
    let user = auth
        .register(proto::RegisterRequest {
            first_name: "Grpc".into(),
            last_name: "User".into(),
            email: email.into(),
            password: PASSWORD.into(),
            confirm_password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user.email, email);
    assert!(!user.email_verified);
    let refused = auth.login(proto::LoginRequest { email: email.into(), password: PASSWORD.into() }).await.unwrap_err();
    expect_status(&refused, Code::PermissionDenied, "email_not_verified");
    let code = app.verification_code(email).await;
    auth.verify_email(proto::VerifyEmailRequest { email: email.into(), code }).await.unwrap();
    let pair =
        auth.login(proto::LoginRequest { email: email.into(), password: PASSWORD.into() }).await.unwrap().into_inner();
    assert_eq!(pair.token_type, "Bearer");
    (user.id, pair.access_token)
}

#[actix_web::test]
async fn identity_cards_and_money_over_grpc_match_http() {
    let app = TestApp::spawn().await;
    let ch = channel(&app).await;
    let (mut auth, mut cards, mut ledger) =
        (AuthClient::new(ch.clone()), CardsClient::new(ch.clone()), LedgerClient::new(ch.clone()));
    let (uid, token) = grpc_user(&app, &mut auth, "grpc-flow@test.local").await;
    let me = auth.me(authed(proto::MeRequest {}, &token, None)).await.unwrap().into_inner();
    assert_eq!((me.id, me.email_verified, me.roles.clone()), (uid, true, vec!["user".to_owned()]));

    let issued = cards.issue_card(authed(debit_card(), &token, None)).await.unwrap().into_inner();
    let card = issued.card.unwrap();
    assert_eq!((card.user_id, card.card_type()), (uid, proto::CardType::Debit));
    assert_eq!(issued.card_number.len(), 16);
    let other = cards.issue_card(authed(debit_card(), &token, None)).await.unwrap().into_inner().card.unwrap();

    // Top-up, then the same key again: the same operation, marked as a replay.
    let first = ledger.top_up(authed(topup(card.id, 500_000), &token, Some("g-top-1"))).await.unwrap();
    assert!(first.metadata().get("idempotent-replayed").is_none());
    let first = first.into_inner();
    assert_eq!(
        (first.kind(), first.status(), first.amount),
        (proto::OperationKind::Topup, proto::OperationStatus::Success, 500_000)
    );
    let again = ledger.top_up(authed(topup(card.id, 500_000), &token, Some("g-top-1"))).await.unwrap();
    assert_eq!(again.metadata().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(again.into_inner().id, first.id);
    // The same key for another request: 409 → ALREADY_EXISTS, reason idempotency_conflict.
    let conflict = ledger.top_up(authed(topup(card.id, 600_000), &token, Some("g-top-1"))).await.unwrap_err();
    expect_status(&conflict, Code::AlreadyExists, "idempotency_conflict");
    // The key is shared with HTTP: an HTTP replay of the gRPC top-up answers the same operation.
    let (s, h, b) = app
        .call_full(
            "POST",
            "/api/v1/topups",
            Some(&token),
            Some(json!({"card_id": card.id, "amount": 500_000, "method": "bca"})),
            &[("Idempotency-Key", "g-top-1")],
        )
        .await;
    assert_eq!((s, b["id"].as_str()), (201, Some(first.id.as_str())), "{b}");
    assert_eq!(h.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));

    let t = proto::TransferRequest {
        from_card_id: card.id,
        to_card_id: other.id,
        amount: 100_000,
        currency: String::new(),
        to_card_number: String::new(),
    };
    let transfer = ledger.transfer(authed(t, &token, Some("g-tr-1"))).await.unwrap().into_inner();
    assert_eq!((transfer.source_card_id, transfer.dest_card_id), (Some(card.id), Some(other.id)));
    let w = proto::WithdrawRequest { card_id: card.id, amount: 50_000, currency: String::new() };
    let withdrawal = ledger.withdraw(authed(w, &token, Some("g-wd-1"))).await.unwrap().into_inner();
    assert_eq!(withdrawal.kind(), proto::OperationKind::Withdrawal);
    // A recorded failure: FAILED_PRECONDITION naming the failure and the failed operation.
    let w = proto::WithdrawRequest { card_id: card.id, amount: 9_000_000, currency: String::new() };
    let failed = ledger.withdraw(authed(w, &token, Some("g-wd-2"))).await.unwrap_err();
    let meta = expect_status(&failed, Code::FailedPrecondition, "insufficient_funds");
    assert!(meta.get("operation_id").is_some_and(|id| !id.is_empty()), "{meta:?}");

    // Parity: the balance, the operation and the lists read the same over both transports.
    let balance = cards.get_balance(authed(proto::GetBalanceRequest { card_id: card.id }, &token, None)).await;
    let balance = balance.unwrap().into_inner();
    assert_eq!(balance.balance, 350_000);
    let (s, hb) = app.get(&format!("/api/v1/cards/{}/balance", card.id), Some(&token)).await;
    assert_eq!(s, 200);
    assert_eq!(
        (hb["balance"].as_i64(), hb["available"].as_i64(), hb["total_withdrawn"].as_i64()),
        (Some(balance.balance), Some(balance.available), Some(balance.total_withdrawn))
    );
    let got = ledger
        .get_operation(authed(
            proto::GetOperationRequest { id: transfer.id.clone(), kind: proto::OperationKind::Transfer.into() },
            &token,
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    let (s, ho) = app.get(&format!("/api/v1/transfers/{}", transfer.id), Some(&token)).await;
    assert_eq!(s, 200);
    assert_eq!(ho["id"].as_str(), Some(got.id.as_str()));
    assert_eq!(ho["amount"].as_i64(), Some(got.amount));
    assert_eq!((ho["source_card_id"].as_i64(), ho["dest_card_id"].as_i64()), (got.source_card_id, got.dest_card_id));
    assert_eq!(
        ho["created_at"].as_str().map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp()),
        got.created_at.map(|t| t.seconds)
    );
    // Operations made over HTTP list over gRPC with the same cursors.
    for i in 0..3 {
        let (s, _, b) = app
            .call_full(
                "POST",
                "/api/v1/topups",
                Some(&token),
                Some(json!({"card_id": other.id, "amount": 60_000 + i, "method": "ovo"})),
                &[("Idempotency-Key", format!("h-top-{i}").as_str())],
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let list = |cursor: String| proto::ListOperationsRequest {
        kind: proto::OperationKind::Topup.into(),
        page: Some(proto::PageRequest { limit: 2, cursor }),
        card_id: None,
    };
    let p1 = ledger.list_operations(authed(list(String::new()), &token, None)).await.unwrap().into_inner();
    let (s, h1) = app.get("/api/v1/topups?limit=2", Some(&token)).await;
    assert_eq!(s, 200);
    let ids = |items: &[proto::Operation]| items.iter().map(|o| o.id.clone()).collect::<Vec<_>>();
    let http_ids = |v: &serde_json::Value| {
        v["items"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&p1.items), http_ids(&h1));
    assert_eq!(Some(p1.next_cursor.as_str()), h1["next_cursor"].as_str());
    let p2 = ledger.list_operations(authed(list(p1.next_cursor.clone()), &token, None)).await.unwrap().into_inner();
    let (_, h2) = app.get(&format!("/api/v1/topups?limit=2&cursor={}", p1.next_cursor), Some(&token)).await;
    assert_eq!(ids(&p2.items), http_ids(&h2));
    assert_eq!(p1.items.len() + p2.items.len(), 4);
    let listed = cards
        .list_cards(authed(proto::ListCardsRequest { page: None, user_id: None, status: String::new() }, &token, None))
        .await
        .unwrap()
        .into_inner();
    let (_, hc) = app.get("/api/v1/cards", Some(&token)).await;
    assert_eq!(
        listed.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        hc["items"].as_array().unwrap().iter().map(|c| c["id"].as_i64().unwrap()).collect::<Vec<_>>()
    );
    assert_eq!(listed.items[0].card_number, hc["items"][0]["card_number"].as_str().unwrap());

    // Logout over gRPC ends the session for both transports.
    auth.logout(authed(proto::LogoutRequest {}, &token, None)).await.unwrap();
    let after = auth.me(authed(proto::MeRequest {}, &token, None)).await.unwrap_err();
    expect_status(&after, Code::Unauthenticated, "session_revoked");
    let (s, _) = app.get("/api/v1/auth/me", Some(&token)).await;
    assert_eq!(s, 401);

    // Per-method Prometheus series.
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        text.contains(r#"payd_grpc_requests_total{code="Ok",method="/payd.v1.Ledger/TopUp"}"#),
        "no gRPC series in /metrics"
    );
    assert!(text.contains(r#"payd_grpc_requests_total{code="AlreadyExists",method="/payd.v1.Ledger/TopUp"}"#));
}

#[actix_web::test]
async fn transfer_by_card_number_over_grpc_masks_the_recipient() {
    let app = TestApp::spawn_with(merchant::merchant_settings()).await;
    let admin = app.admin_token().await;
    let (_, alice) = merchant::verified(&app, &admin, "alice.grpc.pay@example.com").await;
    let (_, bob) = merchant::verified(&app, &admin, "bob.grpc.pay@example.com").await;
    let from = merchant::issue_card(&app, &alice).await;
    let to = merchant::issue_card(&app, &bob).await;
    merchant::topup(&app, &alice, from.id, 500_000).await;
    let mut ledger = LedgerClient::new(channel(&app).await);
    let spaced: String = to
        .number
        .chars()
        .enumerate()
        .flat_map(|(i, c)| (i > 0 && i % 4 == 0).then_some(' ').into_iter().chain([c]))
        .collect();
    let t = proto::TransferRequest {
        from_card_id: from.id,
        to_card_id: 0,
        amount: 100_000,
        currency: String::new(),
        to_card_number: spaced,
    };
    let op = ledger.transfer(authed(t.clone(), &alice, Some("g-num-1"))).await.unwrap().into_inner();
    assert_eq!((op.source_card_id, op.dest_card_id), (Some(from.id), None));
    assert_eq!(op.dest_card_masked, format!("**** **** **** {}", &to.number[to.number.len() - 4..]));
    // The recipient sees the sender masked.
    let got = ledger
        .get_operation(authed(
            proto::GetOperationRequest { id: op.id.clone(), kind: proto::OperationKind::Transfer.into() },
            &bob,
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((got.source_card_id, got.dest_card_id), (None, Some(to.id)));
    assert_eq!(got.source_card_masked, format!("**** **** **** {}", &from.number[from.number.len() - 4..]));
    // An unknown number: NOT_FOUND recipient_not_found; both forms at once: INVALID_ARGUMENT.
    let unknown = payd::cards::pan::generate(&payd::cards::pan::BRANDS[0]).digits().to_owned();
    let e = ledger
        .transfer(authed(proto::TransferRequest { to_card_number: unknown, ..t.clone() }, &alice, Some("g-num-2")))
        .await
        .unwrap_err();
    expect_status(&e, Code::NotFound, "recipient_not_found");
    let e = ledger
        .transfer(authed(proto::TransferRequest { to_card_id: to.id, ..t }, &alice, Some("g-num-3")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}

#[actix_web::test]
async fn merchant_payment_and_refund_with_an_api_key() {
    let app = TestApp::spawn_with(merchant::merchant_settings()).await;
    let admin = app.admin_token().await;
    let (_, owner) = merchant::verified(&app, &admin, "grpc-shop@test.local").await;
    let merchant_id = merchant::active_merchant(&app, &admin, &owner, "Grpc Shop").await;
    let (_, api_key) = merchant::create_key(&app, &owner, merchant_id, "grpc").await;
    let (_, buyer) = merchant::verified(&app, &admin, "grpc-buyer@test.local").await;
    let card = merchant::issue_card(&app, &buyer).await;
    merchant::topup(&app, &buyer, card.id, 1_000_000).await;

    let ch = channel(&app).await;
    let mut payments = PaymentsClient::new(ch);
    let pay = |order: &str, cvv: &str| proto::PayRequest {
        card_number: card.number.clone(),
        expiry_month: card.month,
        expiry_year: card.year,
        cvv: cvv.to_owned(),
        amount: 300_000,
        method: "visa".into(),
        order_ref: order.into(),
        currency: String::new(),
    };
    let paid = payments.pay(keyed(pay("order-1", &card.cvv), &api_key, "p-1")).await.unwrap().into_inner();
    assert_eq!(
        (paid.kind(), paid.status(), paid.merchant_id),
        (proto::OperationKind::Payment, proto::OperationStatus::Success, Some(merchant_id))
    );
    let replay = payments.pay(keyed(pay("order-1", &card.cvv), &api_key, "p-1")).await.unwrap();
    assert_eq!(replay.metadata().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(replay.into_inner().id, paid.id);
    // A wrong CVV is the uniform decline.
    let declined = payments.pay(keyed(pay("order-2", &card.wrong_cvv()), &api_key, "p-2")).await.unwrap_err();
    expect_status(&declined, Code::FailedPrecondition, "card_declined");

    let refund =
        |amount: Option<i64>| proto::RefundRequest { payment_id: paid.id.clone(), amount, reason: String::new() };
    let part = payments.refund(keyed(refund(Some(100_000)), &api_key, "r-1")).await.unwrap().into_inner();
    assert_eq!(
        (part.kind(), part.amount, part.reverses_id.as_str()),
        (proto::OperationKind::Refund, 100_000, paid.id.as_str())
    );
    let rest = payments.refund(keyed(refund(None), &api_key, "r-2")).await.unwrap().into_inner();
    assert_eq!(rest.amount, 200_000);
    let done = payments.refund(keyed(refund(None), &api_key, "r-3")).await.unwrap_err();
    expect_status(&done, Code::AlreadyExists, "not_refundable");
    // The same payment over HTTP.
    let (s, hp) = app.get(&format!("/api/v1/payments/{}", paid.id), Some(&admin)).await;
    assert_eq!((s, hp["amount"].as_i64(), hp["order_ref"].as_str()), (200, Some(paid.amount), Some("order-1")));

    // The payment views: the buyer and the owner see it; a stranger does not.
    let got = payments.get_payment(authed(proto::GetPaymentRequest { id: paid.id.clone() }, &buyer, None)).await;
    assert_eq!(got.unwrap().into_inner().order_ref, "order-1");
    let (_, stranger) = merchant::verified(&app, &admin, "grpc-stranger@test.local").await;
    let hidden = payments.get_payment(authed(proto::GetPaymentRequest { id: paid.id.clone() }, &stranger, None));
    expect_status(&hidden.await.unwrap_err(), Code::NotFound, "not_found");
    let mine = proto::ListPaymentsRequest { page: None, merchant_id: None, kind: 0 };
    let buyer_list = payments.list_payments(authed(mine, &buyer, None)).await.unwrap().into_inner();
    let (_, http_list) = app.get("/api/v1/payments", Some(&buyer)).await;
    let http_ids: Vec<&str> =
        http_list["items"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(buyer_list.items.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), http_ids);
    // 1 payment + 2 refunds, and the buyer also sees the declined attempt on their card.
    assert_eq!(buyer_list.items.len(), 4, "{buyer_list:?}");
    let owned = proto::ListPaymentsRequest {
        page: None,
        merchant_id: Some(merchant_id),
        kind: proto::OperationKind::Refund.into(),
    };
    let refunds = payments.list_payments(authed(owned.clone(), &owner, None)).await.unwrap().into_inner();
    assert_eq!(refunds.items.len(), 2);
    let not_owner = payments.list_payments(authed(owned, &buyer, None)).await.unwrap_err();
    assert_eq!(not_owner.code(), Code::NotFound, "{not_owner:?}");
    let mut r = Request::new(proto::ListMerchantPaymentsRequest {
        page: Some(proto::PageRequest { limit: 1, cursor: String::new() }),
        kind: 0,
    });
    r.metadata_mut().insert("x-api-key", api_key.parse().unwrap());
    let by_key = payments.list_merchant_payments(r).await.unwrap().into_inner();
    // The merchant never sees the card-data decline: refunds and the payment only, one per page.
    assert_eq!(by_key.items.len(), 1);
    assert!(!by_key.next_cursor.is_empty());
    // Merchants over gRPC: an application, and a key made, used and revoked.
    let mut merchants = payd::grpc::proto::merchants_client::MerchantsClient::new(channel(&app).await);
    let apply = proto::ApplyMerchantRequest {
        business_name: "Second Shop".into(),
        contact_email: "second@test.local".into(),
        category: "retail".into(),
        website: String::new(),
        description: String::new(),
    };
    let applied = merchants.apply_merchant(authed(apply, &owner, None)).await.unwrap().into_inner();
    assert_eq!(applied.status, "pending");
    let (s, hm) = app.get(&format!("/api/v1/merchants/{}", applied.id), Some(&owner)).await;
    assert_eq!((s, hm["business_name"].as_str()), (200, Some("Second Shop")));
    let got = merchants.get_merchant(authed(proto::GetMerchantRequest { id: merchant_id }, &owner, None)).await;
    assert_eq!(got.unwrap().into_inner().status, "active");
    let hidden = merchants.get_merchant(authed(proto::GetMerchantRequest { id: merchant_id }, &buyer, None)).await;
    expect_status(&hidden.unwrap_err(), Code::NotFound, "not_found");
    let made = merchants
        .create_api_key(authed(proto::CreateApiKeyRequest { merchant_id, label: "grpc-made".into() }, &owner, None))
        .await
        .unwrap()
        .into_inner();
    let new_key = made.api_key.clone();
    let new_id = made.key.unwrap().id;
    let keys = merchants.list_api_keys(authed(proto::ListApiKeysRequest { merchant_id }, &owner, None)).await;
    let keys = keys.unwrap().into_inner().items;
    assert_eq!(keys.iter().map(|k| k.label.as_str()).collect::<Vec<_>>(), vec!["grpc", "grpc-made"]);
    payments.pay(keyed(pay("order-3", &card.cvv), &new_key, "p-3")).await.unwrap();
    let revoked = merchants
        .revoke_api_key(authed(proto::RevokeApiKeyRequest { merchant_id, id: new_id }, &owner, None))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked_at.is_some());
    let refused = payments.pay(keyed(pay("order-4", &card.cvv), &new_key, "p-4")).await.unwrap_err();
    expect_status(&refused, Code::Unauthenticated, "api_key_revoked");
    let bad = merchants.apply_merchant(authed(proto::ApplyMerchantRequest::default(), &owner, None)).await;
    expect_status(&bad.unwrap_err(), Code::InvalidArgument, "validation_failed");

    let bad_kind =
        proto::ListPaymentsRequest { page: None, merchant_id: None, kind: proto::OperationKind::Topup.into() };
    let s = payments.list_payments(authed(bad_kind, &buyer, None)).await.unwrap_err();
    expect_status(&s, Code::InvalidArgument, "validation_failed");
}

#[actix_web::test]
async fn watch_streams_operations_as_they_commit_and_resumes_from_a_cursor() {
    let app = TestApp::spawn().await;
    let ch = channel(&app).await;
    let mut auth = AuthClient::new(ch.clone());
    let (_, token) = grpc_user(&app, &mut auth, "grpc-watch@test.local").await;
    let mut cards = CardsClient::new(ch.clone());
    let card = cards.issue_card(authed(debit_card(), &token, None)).await.unwrap().into_inner().card.unwrap();
    let mut ledger = LedgerClient::new(ch.clone());
    let before = ledger.top_up(authed(topup(card.id, 100_000), &token, Some("w-0"))).await.unwrap().into_inner();

    let watch = |cursor: String| proto::WatchOperationsRequest { card_id: card.id, cursor, merchant_id: None };
    let mut stream = ledger.watch_operations(authed(watch(String::new()), &token, None)).await.unwrap().into_inner();
    // Committed after the watch opened, over HTTP: the stream receives it (and not the older one).
    let (s, _, b) = app
        .call_full(
            "POST",
            "/api/v1/topups",
            Some(&token),
            Some(json!({"card_id": card.id, "amount": 70_000, "method": "dana"})),
            &[("Idempotency-Key", "w-1")],
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .expect("no event within 10 s")
        .unwrap()
        .unwrap();
    let op = event.operation.unwrap();
    assert_eq!(op.id, b["id"].as_str().unwrap());
    assert_ne!(op.id, before.id);
    assert!(!event.cursor.is_empty());
    drop(stream);
    // Resuming from the start replays both, oldest first; resuming after the newest waits for more.
    let mut from_start =
        ledger.watch_operations(authed(watch(String::new()), &token, None)).await.unwrap().into_inner();
    let w2 = ledger.top_up(authed(topup(card.id, 80_000), &token, Some("w-2"))).await.unwrap().into_inner();
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), from_start.message()).await.unwrap();
    assert_eq!(next.unwrap().unwrap().operation.unwrap().id, w2.id);
    let mut resumed =
        ledger.watch_operations(authed(watch(event.cursor.clone()), &token, None)).await.unwrap().into_inner();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), resumed.message()).await.unwrap();
    assert_eq!(first.unwrap().unwrap().operation.unwrap().id, w2.id, "resume must start after the cursor");

    // Another user's card cannot be watched; a malformed cursor is a bad argument.
    let (_, stranger) = grpc_user(&app, &mut auth, "grpc-stranger@test.local").await;
    let refused = ledger.watch_operations(authed(watch(String::new()), &stranger, None)).await.unwrap_err();
    expect_status(&refused, Code::NotFound, "not_found");
    let bad = ledger.watch_operations(authed(watch("%%%".into()), &token, None)).await.unwrap_err();
    let meta = expect_status(&bad, Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("cursor"));
}

#[actix_web::test]
async fn access_is_enforced_for_every_rpc_class() {
    let app = TestApp::spawn().await;
    let ch = channel(&app).await;
    let mut auth = AuthClient::new(ch.clone());
    let (uid, token) = grpc_user(&app, &mut auth, "grpc-access@test.local").await;
    // Authenticated: no token, a bad token.
    let mut cards = CardsClient::new(ch.clone());
    let none = cards.get_card(Request::new(proto::GetCardRequest { id: 1 })).await.unwrap_err();
    expect_status(&none, Code::Unauthenticated, "missing_token");
    let bad = cards.get_card(authed(proto::GetCardRequest { id: 1 }, "not-a-token", None)).await.unwrap_err();
    expect_status(&bad, Code::Unauthenticated, "invalid_token");
    // Roles: a user is refused an admin RPC; an admin gets it.
    let mut users = UsersClient::new(ch.clone());
    let denied = users.get_user(authed(proto::GetUserRequest { id: uid }, &token, None)).await.unwrap_err();
    expect_status(&denied, Code::PermissionDenied, "forbidden");
    let admin = app.admin_token().await;
    let user = users.get_user(authed(proto::GetUserRequest { id: uid }, &admin, None)).await.unwrap().into_inner();
    assert_eq!(user.email, "grpc-access@test.local");
    // API key: a bearer token is not a merchant key; a malformed key is refused.
    let mut payments = PaymentsClient::new(ch.clone());
    let pay = proto::PayRequest::default();
    let no_key = payments.pay(authed(pay.clone(), &token, Some("k"))).await.unwrap_err();
    expect_status(&no_key, Code::Unauthenticated, "invalid_api_key");
    let bad_key = payments.pay(keyed(pay, "pk_nope", "k")).await.unwrap_err();
    expect_status(&bad_key, Code::Unauthenticated, "invalid_api_key");
    // API key or role: a plain user is refused a refund.
    let refund =
        proto::RefundRequest { payment_id: uuid::Uuid::new_v4().to_string(), amount: None, reason: String::new() };
    let user_refund = payments.refund(authed(refund, &token, Some("k"))).await.unwrap_err();
    expect_status(&user_refund, Code::PermissionDenied, "forbidden");
    // Public: health needs nothing, and answers SERVING.
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let h = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(h.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
    // An RPC no table declares does not exist.
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<proto::MeRequest, proto::User>::default();
    let path = http::uri::PathAndQuery::from_static("/payd.v1.Auth/Impersonate");
    let unknown = grpc.unary(authed(proto::MeRequest {}, &admin, None), path, codec).await.unwrap_err();
    assert_eq!(unknown.code(), Code::Unimplemented, "{unknown:?}");
}

#[actix_web::test]
async fn bad_input_gets_the_right_status_never_internal() {
    let mut settings = crate::common::settings();
    settings.grpc.max_message_bytes = 2048;
    let app = TestApp::spawn_with(settings).await;
    let ch = channel(&app).await;
    let mut auth = AuthClient::new(ch.clone());
    let (_, token) = grpc_user(&app, &mut auth, "grpc-bad@test.local").await;
    let mut cards = CardsClient::new(ch.clone());
    // Unknown and missing enum values.
    let unknown = proto::IssueCardRequest { card_type: 7, ..debit_card() };
    let s = cards.issue_card(authed(unknown, &token, None)).await.unwrap_err();
    let meta = expect_status(&s, Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("card_type"));
    let missing = proto::IssueCardRequest { card_type: 0, ..debit_card() };
    let s = cards.issue_card(authed(missing, &token, None)).await.unwrap_err();
    expect_status(&s, Code::InvalidArgument, "validation_failed");
    // The HTTP validation rules: an unknown brand names its field.
    let s = cards.issue_card(authed(proto::IssueCardRequest { brand: "acme".into(), ..debit_card() }, &token, None));
    let meta = expect_status(&s.await.unwrap_err(), Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("brand"));
    // Missing metadata: no idempotency key on a money-moving call.
    let mut ledger = LedgerClient::new(ch.clone());
    let s = ledger.top_up(authed(topup(1, 100_000), &token, None)).await.unwrap_err();
    expect_status(&s, Code::InvalidArgument, "idempotency_key_required");
    let mut r = authed(topup(1, 100_000), &token, None);
    r.metadata_mut().insert("idempotency-key", MetadataValue::from_static(""));
    expect_status(&ledger.top_up(r).await.unwrap_err(), Code::InvalidArgument, "idempotency_key_required");
    // A bad amount and an unknown kind.
    let s = ledger.top_up(authed(topup(1, 1), &token, Some("tiny"))).await.unwrap_err();
    let meta = expect_status(&s, Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("amount"));
    let q = proto::ListOperationsRequest { kind: 42, page: None, card_id: None };
    expect_status(
        &ledger.list_operations(authed(q, &token, None)).await.unwrap_err(),
        Code::InvalidArgument,
        "validation_failed",
    );
    let q = proto::ListOperationsRequest {
        kind: proto::OperationKind::Topup.into(),
        page: Some(proto::PageRequest { limit: 1000, cursor: String::new() }),
        card_id: None,
    };
    let meta = expect_status(
        &ledger.list_operations(authed(q, &token, None)).await.unwrap_err(),
        Code::InvalidArgument,
        "validation_failed",
    );
    assert_eq!(meta.get("field").map(String::as_str), Some("limit"));
    // A malformed message: bytes that are not a GetCardRequest (a string where an int64 is).
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<proto::VerifyEmailResponse, proto::Card>::default();
    let path = http::uri::PathAndQuery::from_static("/payd.v1.Cards/GetCard");
    let garbage = proto::VerifyEmailResponse { message: "not a card id".into() };
    let s = grpc.unary(authed(garbage, &token, None), path, codec).await.unwrap_err();
    expect_status(&s, Code::InvalidArgument, "invalid_message");
    // An oversized message (grpc.max_message_bytes = 2048).
    let big = proto::LoginRequest { email: "x".repeat(4096), password: "p".into() };
    let s = auth.login(big).await.unwrap_err();
    expect_status(&s, Code::ResourceExhausted, "payload_too_large");
    // An expired deadline is the client's: DEADLINE_EXCEEDED or CANCELLED, never INTERNAL.
    let mut r = authed(proto::MeRequest {}, &token, None);
    r.set_timeout(std::time::Duration::from_nanos(1));
    let s = auth.me(r).await.unwrap_err();
    assert!(matches!(s.code(), Code::DeadlineExceeded | Code::Cancelled), "{s:?}");
    // A well-formed but empty request is a validation error, not a crash.
    let s = auth.register(proto::RegisterRequest::default()).await.unwrap_err();
    expect_status(&s, Code::InvalidArgument, "validation_failed");
}

/// Connections are dealt to the serving threads in turn: with three threads, six connections
/// reach each thread twice, and every one of them answers calls, concurrently.
#[actix_web::test]
async fn every_serving_thread_answers_its_connections() {
    let mut settings = crate::common::settings();
    settings.grpc.workers = 3;
    let app = TestApp::spawn_with(settings).await;
    let mut channels = Vec::new();
    for _ in 0..6 {
        channels.push(channel(&app).await);
    }
    let mut auth = AuthClient::new(channels[0].clone());
    let (_, token) = grpc_user(&app, &mut auth, "grpc-lanes@test.local").await;
    let calls = channels.iter().map(|ch| {
        let (mut auth, token) = (AuthClient::new(ch.clone()), token.clone());
        async move {
            let mut emails = Vec::new();
            for _ in 0..5 {
                emails.push(
                    auth.me(authed(proto::MeRequest::default(), &token, None)).await.map(|r| r.into_inner().email),
                );
            }
            emails
        }
    });
    let answers = futures::future::join_all(calls).await;
    assert_eq!(answers.len(), 6);
    for (i, emails) in answers.into_iter().enumerate() {
        for email in emails {
            assert_eq!(email.as_deref().map_err(Status::code), Ok("grpc-lanes@test.local"), "connection {i}");
        }
    }
}

#[actix_web::test]
async fn shutdown_ends_watch_streams_and_stops_the_server() {
    let running = payd::run(crate::common::settings()).await.unwrap();
    actix_web::rt::spawn(running.server);
    let grpc = running.grpc.unwrap();
    let ch = Channel::from_shared(format!("http://127.0.0.1:{}", grpc.port)).unwrap().connect().await.unwrap();
    let mut auth = AuthClient::new(ch.clone());
    let login = proto::LoginRequest {
        email: crate::common::ADMIN_EMAIL.into(),
        password: crate::common::ADMIN_PASSWORD.into(),
    };
    let admin = auth.login(login).await.unwrap().into_inner().access_token;
    let card = CardsClient::new(ch.clone()).issue_card(authed(debit_card(), &admin, None)).await.unwrap();
    let card = card.into_inner().card.unwrap();
    let watch = proto::WatchOperationsRequest { card_id: card.id, cursor: String::new(), merchant_id: None };
    let mut stream = LedgerClient::new(ch).watch_operations(authed(watch, &admin, None)).await.unwrap().into_inner();
    running.state.shutdown.begin();
    // The open stream ends cleanly, then the server stops.
    let end =
        tokio::time::timeout(std::time::Duration::from_secs(5), stream.message()).await.expect("stream still open");
    assert!(matches!(end, Ok(None)), "{end:?}");
    tokio::time::timeout(std::time::Duration::from_secs(5), grpc.task).await.expect("server still running").unwrap();
    running.handle.stop(true).await;
}

fn descriptor(bytes: &[u8]) -> prost_types::FileDescriptorSet {
    prost_types::FileDescriptorSet::decode(bytes).unwrap()
}

/// Every RPC of the protos is declared in the access table, and every declared payd RPC exists.
#[test]
fn every_rpc_is_declared_in_the_access_table() {
    let set = descriptor(payd::grpc::DESCRIPTOR);
    let mut rpcs = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "payd.v1") {
        for service in &file.service {
            for method in &service.method {
                rpcs.push(format!("/payd.v1.{}/{}", service.name(), method.name()));
            }
        }
    }
    assert!(rpcs.len() >= 19, "{rpcs:?}");
    for rpc in &rpcs {
        assert!(payd::grpc::access::access_of(rpc).is_some(), "{rpc} has no declared access in grpc::access::RPCS");
    }
    for (path, _) in payd::grpc::access::RPCS.iter().filter(|(p, _)| p.starts_with("/payd.")) {
        assert!(rpcs.iter().any(|r| r == path), "{path} is declared but is no RPC of the protos");
    }
}

/// The lint the protos keep: enums start with a zero `*_UNSPECIFIED` value prefixed by the enum's
/// name, field numbers are unique and positive, names are snake_case / PascalCase.
#[test]
fn protos_follow_the_lint_rules() {
    let set = descriptor(payd::grpc::DESCRIPTOR);
    for file in set.file.iter().filter(|f| f.package() == "payd.v1") {
        for e in &file.enum_type {
            let prefix = upper_snake(e.name());
            let first = &e.value[0];
            assert_eq!((first.number(), first.name()), (0, format!("{prefix}_UNSPECIFIED").as_str()), "{}", e.name());
            for v in &e.value {
                assert!(v.name().starts_with(&format!("{prefix}_")), "{} in {}", v.name(), e.name());
            }
        }
        for m in &file.message_type {
            assert!(m.name().chars().next().is_some_and(|c| c.is_ascii_uppercase()), "{}", m.name());
            let mut numbers: Vec<i32> = m.field.iter().map(|f| f.number()).collect();
            numbers.sort_unstable();
            numbers.dedup();
            assert_eq!(numbers.len(), m.field.len(), "duplicate field numbers in {}", m.name());
            for f in &m.field {
                assert!(f.number() > 0);
                assert!(
                    f.name().chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{}",
                    f.name()
                );
            }
        }
    }
}

fn upper_snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The built descriptor set is backward compatible with the committed `proto/descriptor.bin`:
/// no service, method, message, field or enum value is removed or changed (type, number, label,
/// name); additions are fine. `PAYD_UPDATE_DESCRIPTOR=1` refreshes the committed file after an
/// intended, compatible change.
#[test]
fn descriptor_set_stays_backward_compatible() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/descriptor.bin");
    if std::env::var("PAYD_UPDATE_DESCRIPTOR").is_ok_and(|v| v == "1") {
        std::fs::write(&path, payd::grpc::DESCRIPTOR).unwrap();
    }
    let committed = descriptor(&std::fs::read(&path).expect("proto/descriptor.bin is committed"));
    let current = descriptor(payd::grpc::DESCRIPTOR);
    let problems = incompatibilities(&committed, &current);
    assert!(problems.is_empty(), "breaking proto changes:\n{}", problems.join("\n"));
    // The check itself catches a removed field and a renumbered one.
    let mut broken = current.clone();
    let file = broken.file.iter_mut().find(|f| f.name() == "payd/v1/ledger.proto").unwrap();
    let msg = file.message_type.iter_mut().find(|m| m.name() == "TopUpRequest").unwrap();
    msg.field.retain(|f| f.name() != "method");
    msg.field[0].number = Some(99);
    assert_eq!(incompatibilities(&committed, &broken).len(), 2, "{:?}", incompatibilities(&committed, &broken));
}

fn incompatibilities(old: &prost_types::FileDescriptorSet, new: &prost_types::FileDescriptorSet) -> Vec<String> {
    let mut problems = Vec::new();
    for of in old.file.iter().filter(|f| f.package() == "payd.v1") {
        let Some(nf) = new.file.iter().find(|f| f.name() == of.name()) else {
            problems.push(format!("file {} removed", of.name()));
            continue;
        };
        for om in &of.message_type {
            let Some(nm) = nf.message_type.iter().find(|m| m.name() == om.name()) else {
                problems.push(format!("message {} removed", om.name()));
                continue;
            };
            for ofield in &om.field {
                match nm.field.iter().find(|f| f.number() == ofield.number()) {
                    None => {
                        problems.push(format!("{}.{} (field {}) removed", om.name(), ofield.name(), ofield.number()))
                    }
                    Some(nfield)
                        if (nfield.name(), nfield.r#type, nfield.label, nfield.type_name(), nfield.proto3_optional)
                            != (
                                ofield.name(),
                                ofield.r#type,
                                ofield.label,
                                ofield.type_name(),
                                ofield.proto3_optional,
                            ) =>
                    {
                        problems.push(format!("{}.{} (field {}) changed", om.name(), ofield.name(), ofield.number()));
                    }
                    Some(_) => {}
                }
            }
        }
        for oe in &of.enum_type {
            let Some(ne) = nf.enum_type.iter().find(|e| e.name() == oe.name()) else {
                problems.push(format!("enum {} removed", oe.name()));
                continue;
            };
            for ov in &oe.value {
                if !ne.value.iter().any(|v| v.number() == ov.number() && v.name() == ov.name()) {
                    problems.push(format!("{}.{} removed or renumbered", oe.name(), ov.name()));
                }
            }
        }
        for os in &of.service {
            let Some(ns) = nf.service.iter().find(|s| s.name() == os.name()) else {
                problems.push(format!("service {} removed", os.name()));
                continue;
            };
            for om in &os.method {
                match ns.method.iter().find(|m| m.name() == om.name()) {
                    None => problems.push(format!("{}.{} removed", os.name(), om.name())),
                    Some(nm)
                        if (nm.input_type(), nm.output_type(), nm.server_streaming(), nm.client_streaming())
                            != (om.input_type(), om.output_type(), om.server_streaming(), om.client_streaming()) =>
                    {
                        problems.push(format!("{}.{} signature changed", os.name(), om.name()));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    problems
}

/// The "HTTP route → RPC" inventory of `docs/grpc.md` lists every operation of `docs/openapi.json`,
/// and every RPC it names exists (declared in the access table).
#[test]
fn every_http_operation_is_in_the_grpc_inventory() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("docs/openapi.json")).unwrap()).unwrap();
    let doc = std::fs::read_to_string(root.join("docs/grpc.md")).unwrap();
    let rows: HashMap<String, String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` | "))
        .map(|(route, rest)| (route.to_owned(), rest.split(" | ").next().unwrap_or_default().to_owned()))
        .collect();
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let route = format!("{} {path}", method.to_uppercase());
            let rpcs = rows.get(&route).unwrap_or_else(|| panic!("{route} is not in the docs/grpc.md inventory"));
            for rpc in rpcs.split('`').skip(1).step_by(2) {
                let full = if rpc.starts_with("grpc.") { format!("/{rpc}") } else { format!("/payd.v1.{rpc}") };
                assert!(payd::grpc::access::access_of(&full).is_some(), "{route}: {rpc} is no declared RPC");
            }
        }
    }
    assert!(operations >= 135, "{operations}");
}
