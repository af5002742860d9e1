//! The gRPC ledger administration RPCs through the generated clients: reversal with the
//! idempotency-key semantics of HTTP (replay, conflict, a concurrent same-key retry applied once),
//! reversals read back by kind, archive/restore, and the per-card watch stream (a committed transfer
//! on the watched card arrives; one between other cards does not).

use diesel::prelude::*;
use serde_json::json;
use tonic::Code;

use payd::grpc::proto;
use payd::grpc::proto::auth_client::AuthClient;
use payd::grpc::proto::cards_client::CardsClient;
use payd::grpc::proto::ledger_client::LedgerClient;

use crate::common::{error_code, TestApp};
use crate::grpc::{authed, channel, debit_card, expect_status, grpc_user, topup};

fn op_ref(id: &str, kind: proto::OperationKind) -> proto::OperationRef {
    proto::OperationRef { id: id.to_owned(), kind: kind.into() }
}

#[actix_web::test]
async fn reversal_over_grpc_replays_conflicts_and_applies_a_concurrent_retry_once() {
    let app = TestApp::spawn().await;
    let ch = channel(&app).await;
    let mut auth = AuthClient::new(ch.clone());
    let (_, token) = grpc_user(&app, &mut auth, "grpc-rev@test.local").await;
    let admin = app.admin_token().await;
    let card = CardsClient::new(ch.clone())
        .issue_card(authed(debit_card(), &token, None))
        .await
        .unwrap()
        .into_inner()
        .card
        .unwrap();
    let mut ledger = LedgerClient::new(ch.clone());
    let a = ledger.top_up(authed(topup(card.id, 100_000), &token, Some("rev-a"))).await.unwrap().into_inner();
    let b = ledger.top_up(authed(topup(card.id, 50_000), &token, Some("rev-b"))).await.unwrap().into_inner();

    // A missing idempotency key is refused as over HTTP.
    let no_key = ledger.reverse_operation(authed(op_ref(&a.id, proto::OperationKind::Topup), &admin, None)).await;
    assert_eq!(no_key.unwrap_err().code(), Code::InvalidArgument);

    // The same key sent twice at once: the reversal is applied once.
    let call = || {
        let mut l = ledger.clone();
        let r = authed(op_ref(&a.id, proto::OperationKind::Topup), &admin, Some("rev-k1"));
        async move { l.reverse_operation(r).await }
    };
    let (first, second) = tokio::join!(call(), call());
    let ok: Vec<proto::Operation> =
        [first, second].into_iter().filter_map(Result::ok).map(tonic::Response::into_inner).collect();
    assert!(!ok.is_empty(), "neither concurrent call succeeded");
    assert!(ok.iter().all(|o| o.id == ok[0].id), "two different reversals: {ok:?}");
    let reversal = ok[0].clone();
    assert_eq!(reversal.kind(), proto::OperationKind::Reversal);
    let mut conn = app.db();
    let a_id: uuid::Uuid = a.id.parse().unwrap();
    let count: i64 = payd::storage::schema::operations::table
        .filter(payd::storage::schema::operations::reverses_id.eq(a_id))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(count, 1, "the reversal must be recorded once");

    // A later retry with the key replays the stored result.
    let replay = ledger
        .reverse_operation(authed(op_ref(&a.id, proto::OperationKind::Topup), &admin, Some("rev-k1")))
        .await
        .unwrap();
    assert_eq!(replay.metadata().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(replay.into_inner().id, reversal.id);

    // The key with another operation: the same conflict as over HTTP.
    let (s, _, body) = app
        .call_full(
            "POST",
            &format!("/api/v1/topups/{}/reversal", b.id),
            Some(&admin),
            None,
            &[("Idempotency-Key", "rev-k1")],
        )
        .await;
    assert_eq!(s, 409, "{body}");
    let conflict = ledger
        .reverse_operation(authed(op_ref(&b.id, proto::OperationKind::Topup), &admin, Some("rev-k1")))
        .await
        .unwrap_err();
    expect_status(&conflict, Code::AlreadyExists, &error_code(&body));
    // Reversing it again under a new key: refused as over HTTP.
    let (s, _, body) = app
        .call_full(
            "POST",
            &format!("/api/v1/topups/{}/reversal", a.id),
            Some(&admin),
            None,
            &[("Idempotency-Key", "rev-h2")],
        )
        .await;
    assert_eq!(s, 409, "{body}");
    let twice = ledger
        .reverse_operation(authed(op_ref(&a.id, proto::OperationKind::Topup), &admin, Some("rev-k2")))
        .await
        .unwrap_err();
    expect_status(&twice, Code::AlreadyExists, &error_code(&body));

    // Reversals are read with the REVERSAL kind, by the card's holder too.
    let got = ledger
        .get_operation(authed(
            proto::GetOperationRequest { id: reversal.id.clone(), kind: proto::OperationKind::Reversal.into() },
            &token,
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.id, reversal.id);
    let list = proto::ListOperationsRequest {
        kind: proto::OperationKind::Reversal.into(),
        page: None,
        card_id: Some(card.id),
    };
    let listed = ledger.list_operations(authed(list, &token, None)).await.unwrap().into_inner();
    assert_eq!(listed.items.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), [reversal.id.as_str()]);
    let balance = CardsClient::new(ch)
        .get_balance(authed(proto::GetBalanceRequest { card_id: card.id }, &token, None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(balance.balance, 50_000);

    // Archive hides from the default list, restore shows it again; twice is refused as over HTTP.
    let archived = ledger.archive_operation(authed(op_ref(&b.id, proto::OperationKind::Topup), &admin, None)).await;
    assert!(archived.unwrap().into_inner().archived_at.is_some());
    let (s, body) = app.post(&format!("/api/v1/topups/{}/archive", b.id), Some(&admin), json!({})).await;
    assert_eq!(s, 409, "{body}");
    let again = ledger.archive_operation(authed(op_ref(&b.id, proto::OperationKind::Topup), &admin, None)).await;
    expect_status(&again.unwrap_err(), Code::AlreadyExists, &error_code(&body));
    let (s, body) = app.get(&format!("/api/v1/topups?card_id={}", card.id), Some(&token)).await;
    assert_eq!(s, 200, "{body}");
    assert!(body["items"].as_array().unwrap().iter().all(|o| o["id"] != b.id.as_str()), "{body}");
    let restored = ledger.restore_operation(authed(op_ref(&b.id, proto::OperationKind::Topup), &admin, None)).await;
    assert!(restored.unwrap().into_inner().archived_at.is_none());
    // The kind must match the operation's, as the HTTP path's segment.
    let wrong = ledger.archive_operation(authed(op_ref(&b.id, proto::OperationKind::Transfer), &admin, None)).await;
    expect_status(&wrong.unwrap_err(), Code::NotFound, "not_found");
}

#[actix_web::test]
async fn watch_sends_the_watched_cards_transfers_and_not_other_cards() {
    let app = TestApp::spawn().await;
    let ch = channel(&app).await;
    let mut auth = AuthClient::new(ch.clone());
    let (_, alice) = grpc_user(&app, &mut auth, "grpc-wa@test.local").await;
    let cards = CardsClient::new(ch.clone());
    let issue = |token: String| {
        let mut c = cards.clone();
        async move { c.issue_card(authed(debit_card(), &token, None)).await.unwrap().into_inner().card.unwrap() }
    };
    let watched = issue(alice.clone()).await;
    let other = issue(alice.clone()).await;
    let third = issue(alice.clone()).await;
    let mut ledger = LedgerClient::new(ch.clone());
    ledger.top_up(authed(topup(watched.id, 100_000), &alice, Some("wa-0"))).await.unwrap();
    ledger.top_up(authed(topup(other.id, 100_000), &alice, Some("wa-1"))).await.unwrap();

    let req = proto::WatchOperationsRequest { card_id: watched.id, cursor: String::new(), merchant_id: None };
    let mut stream = ledger.watch_operations(authed(req, &alice, None)).await.unwrap().into_inner();
    let transfer = |from: i64, to: i64| proto::TransferRequest {
        from_card_id: from,
        to_card_id: to,
        to_card_number: String::new(),
        amount: 50_000,
        currency: String::new(),
    };
    // Committed first, between two other cards: never sent on this stream (it is older, so it
    // would arrive first if it were).
    ledger.transfer(authed(transfer(other.id, third.id), &alice, Some("wa-t1"))).await.unwrap();
    let mine = ledger.transfer(authed(transfer(watched.id, third.id), &alice, Some("wa-t2"))).await.unwrap();
    let mine = mine.into_inner();
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .expect("no event within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(event.operation.unwrap().id, mine.id);
    let more = tokio::time::timeout(std::time::Duration::from_millis(1_500), stream.message()).await;
    assert!(more.is_err(), "an operation of another card was sent: {more:?}");
}
