//! The gRPC account and card-lifecycle RPCs through the generated clients: the password change and
//! forgot/reset flow, the display name, freeze/unfreeze/close/archive/restore/unlock with the HTTP
//! API's errors (a frozen card refuses a transfer with the same code over both transports), and the
//! access policy of each new RPC class.

use serde_json::json;
use tonic::{Code, Request};

use payd::grpc::proto;
use payd::grpc::proto::auth_client::AuthClient;
use payd::grpc::proto::cards_client::CardsClient;
use payd::grpc::proto::ledger_client::LedgerClient;
use payd::grpc::proto::users_client::UsersClient;

use crate::common::{error_code, TestApp, PASSWORD};
use crate::grpc::{authed, channel, debit_card, expect_status, grpc_user, topup};

const NEW_PASSWORD: &str = "n3w-secret-pass";
const RESET_PASSWORD: &str = "r3set-secret-pass";

#[actix_web::test]
async fn password_change_and_reset_over_grpc() {
    let app = TestApp::spawn().await;
    let ch = channel(&app).await;
    let mut auth = AuthClient::new(ch.clone());
    let email = "grpc-pw@test.local";
    let (_, token) = grpc_user(&app, &mut auth, email).await;
    let login = |password: &str| proto::LoginRequest { email: email.into(), password: password.into() };
    let (_, other) = {
        let pair = auth.login(login(PASSWORD)).await.unwrap().into_inner();
        ((), pair.access_token)
    };

    // A wrong current password is refused as over HTTP; a mismatched confirmation is a bad argument.
    let change = |current: &str, new: &str, confirm: &str| proto::ChangePasswordRequest {
        current_password: current.into(),
        new_password: new.into(),
        confirm_password: confirm.into(),
    };
    let wrong = auth.change_password(authed(change("not-it-123", NEW_PASSWORD, NEW_PASSWORD), &token, None)).await;
    let (s, b) = app
        .post(
            "/api/v1/auth/password/change",
            Some(&token),
            json!({"current_password": "not-it-123", "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(error_code(&b), "wrong_password");
    let meta = expect_status(&wrong.unwrap_err(), Code::InvalidArgument, "wrong_password");
    assert_eq!(meta.get("field").map(String::as_str), Some("current_password"));
    let mismatch = auth.change_password(authed(change(PASSWORD, NEW_PASSWORD, "different-123"), &token, None)).await;
    let meta = expect_status(&mismatch.unwrap_err(), Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("confirm_password"));

    let changed = auth.change_password(authed(change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD), &token, None)).await;
    assert!(changed.unwrap().into_inner().message.contains("password changed"));
    // This session stays; the other one is revoked; only the new password logs in.
    auth.me(authed(proto::MeRequest {}, &token, None)).await.unwrap();
    let revoked = auth.me(authed(proto::MeRequest {}, &other, None)).await.unwrap_err();
    assert_eq!(revoked.code(), Code::Unauthenticated, "{revoked:?}");
    let old = auth.login(login(PASSWORD)).await.unwrap_err();
    expect_status(&old, Code::Unauthenticated, "invalid_credentials");
    auth.login(login(NEW_PASSWORD)).await.unwrap();

    // Forgot: the same answer for a registered and an unknown address; the token resets once.
    let forgot = |e: &str| proto::ForgotPasswordRequest { email: e.into() };
    let known = auth.forgot_password(forgot(email)).await.unwrap().into_inner();
    let unknown = auth.forgot_password(forgot("nobody-grpc@test.local")).await.unwrap().into_inner();
    assert_eq!(known.message, unknown.message);
    let reset_token = app.reset_token(email).await;
    let reset = |t: &str| proto::ResetPasswordRequest {
        token: t.into(),
        new_password: RESET_PASSWORD.into(),
        confirm_password: RESET_PASSWORD.into(),
    };
    auth.reset_password(reset(&reset_token)).await.unwrap();
    let again = auth.reset_password(reset(&reset_token)).await.unwrap_err();
    expect_status(&again, Code::Unauthenticated, "invalid_token");
    // Every session is revoked by a reset, the one that changed the password too.
    let after = auth.me(authed(proto::MeRequest {}, &token, None)).await.unwrap_err();
    assert_eq!(after.code(), Code::Unauthenticated, "{after:?}");
    let pair = auth.login(login(RESET_PASSWORD)).await.unwrap().into_inner();

    // Display name: set, visible in Me, cleared back to the default.
    let named = auth
        .update_display_name(authed(
            proto::UpdateDisplayNameRequest { display_name: Some("Budi S.".into()) },
            &pair.access_token,
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(named.display_name, "Budi S.");
    let blank = auth
        .update_display_name(authed(
            proto::UpdateDisplayNameRequest { display_name: Some("   ".into()) },
            &pair.access_token,
            None,
        ))
        .await
        .unwrap_err();
    expect_status(&blank, Code::InvalidArgument, "validation_failed");
    let cleared = auth
        .update_display_name(authed(proto::UpdateDisplayNameRequest { display_name: None }, &pair.access_token, None))
        .await
        .unwrap()
        .into_inner();
    // Back to the default: first name and last initial.
    assert_eq!(cleared.display_name, "Grpc U.");

    // Resend: the same answer for an already verified address and an unknown one.
    let resend = |e: &str| proto::ResendVerificationRequest { email: e.into() };
    let a = auth.resend_verification(resend(email)).await.unwrap().into_inner();
    let b = auth.resend_verification(resend("nobody-grpc@test.local")).await.unwrap().into_inner();
    assert_eq!(a.message, b.message);
}

#[actix_web::test]
async fn card_lifecycle_over_grpc_matches_http() {
    let app = TestApp::spawn().await;
    let ch = channel(&app).await;
    let mut auth = AuthClient::new(ch.clone());
    let (_, token) = grpc_user(&app, &mut auth, "grpc-life@test.local").await;
    let mut cards = CardsClient::new(ch.clone());
    let mut ledger = LedgerClient::new(ch.clone());
    let card = cards.issue_card(authed(debit_card(), &token, None)).await.unwrap().into_inner().card.unwrap();
    let other = cards.issue_card(authed(debit_card(), &token, None)).await.unwrap().into_inner().card.unwrap();
    ledger.top_up(authed(topup(card.id, 100_000), &token, Some("life-0"))).await.unwrap();
    let id = |id: i64| proto::CardActionRequest { id };

    let frozen = cards.freeze_card(authed(id(card.id), &token, None)).await.unwrap().into_inner();
    assert_eq!(frozen.status, "frozen");
    // A frozen card refuses a transfer with the same error over both transports.
    let transfer = proto::TransferRequest {
        from_card_id: card.id,
        to_card_id: other.id,
        to_card_number: String::new(),
        amount: 50_000,
        currency: String::new(),
    };
    let refused = ledger.transfer(authed(transfer.clone(), &token, Some("life-t1"))).await.unwrap_err();
    let (s, _, b) = app
        .call_full(
            "POST",
            "/api/v1/transfers",
            Some(&token),
            Some(json!({"from_card_id": card.id, "to_card_id": other.id, "amount": 50_000})),
            &[("Idempotency-Key", "life-h1")],
        )
        .await;
    assert!(s >= 400, "{b}");
    let code = error_code(&b);
    assert_eq!(code, "card_frozen", "{b}");
    let info = tonic_types::StatusExt::get_details_error_info(&refused).unwrap();
    assert_eq!(info.reason, code, "{refused:?} vs {b}");
    // Freezing twice is an invalid transition, as over HTTP.
    let twice = cards.freeze_card(authed(id(card.id), &token, None)).await.unwrap_err();
    let (s, b) = app.post(&format!("/api/v1/cards/{}/freeze", card.id), Some(&token), json!({})).await;
    assert_eq!(s, 409, "{b}");
    expect_status(&twice, Code::AlreadyExists, &error_code(&b));

    let active = cards.unfreeze_card(authed(id(card.id), &token, None)).await.unwrap().into_inner();
    assert_eq!(active.status, "active");
    ledger.transfer(authed(transfer, &token, Some("life-t2"))).await.unwrap();
    // Unlock answers the card also when it was not locked.
    let unlocked = cards.unlock_card(authed(id(card.id), &token, None)).await.unwrap().into_inner();
    assert!(unlocked.payments_locked_at.is_none());

    // Close needs a zero balance; archive needs a closed card; restore undoes the archive.
    let nonzero = cards.close_card(authed(id(card.id), &token, None)).await.unwrap_err();
    expect_status(&nonzero, Code::AlreadyExists, "non_zero_balance");
    let not_closed = cards.archive_card(authed(id(other.id), &token, None)).await.unwrap_err();
    expect_status(&not_closed, Code::AlreadyExists, "invalid_transition");
    let w = proto::WithdrawRequest { card_id: other.id, amount: 50_000, currency: String::new() };
    ledger.withdraw(authed(w, &token, Some("life-w"))).await.unwrap();
    let closed = cards.close_card(authed(id(other.id), &token, None)).await.unwrap().into_inner();
    assert_eq!(closed.status, "closed");
    let archived = cards.archive_card(authed(id(other.id), &token, None)).await.unwrap().into_inner();
    assert!(archived.archived_at.is_some());
    let restored = cards.restore_card(authed(id(other.id), &token, None)).await.unwrap().into_inner();
    assert!(restored.archived_at.is_none());
    assert_eq!(restored.status, "closed");
    let (s, b) = app.get(&format!("/api/v1/cards/{}", other.id), Some(&token)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "closed");

    // The statement over gRPC is the HTTP one, page by page with the same cursors.
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let req = proto::GetStatementRequest {
            card_id: card.id,
            page: Some(proto::PageRequest { limit: 1, cursor: cursor.clone() }),
            from: None,
            to: None,
        };
        let got = cards.get_statement(authed(req, &token, None)).await.unwrap().into_inner();
        let q = if cursor.is_empty() { String::new() } else { format!("&cursor={cursor}") };
        let (s, b) = app.get(&format!("/api/v1/cards/{}/statement?limit=1{q}", card.id), Some(&token)).await;
        assert_eq!(s, 200, "{b}");
        let http = b["items"].as_array().unwrap();
        assert_eq!(got.items.len(), http.len(), "{got:?} vs {b}");
        for (g, h) in got.items.iter().zip(http) {
            assert_eq!(g.posting_id, h["posting_id"].as_i64().unwrap());
            assert_eq!(g.operation_id, h["operation_id"].as_str().unwrap());
            assert_eq!(g.kind, h["kind"].as_str().unwrap());
            assert_eq!(g.amount, h["amount"].as_i64().unwrap());
            assert_eq!(g.balance_after, h["balance_after"].as_i64().unwrap());
        }
        assert_eq!(got.next_cursor, b["next_cursor"].as_str().unwrap_or_default());
        pages += 1;
        if got.next_cursor.is_empty() {
            break;
        }
        cursor = got.next_cursor;
    }
    assert!(pages >= 2, "the statement should span pages of one line");
    // A window that ends before the first posting is empty, as over HTTP; a bad cursor names the field.
    let early = proto::GetStatementRequest {
        card_id: card.id,
        page: None,
        from: None,
        to: Some(prost_types::Timestamp { seconds: 0, nanos: 0 }),
    };
    assert!(cards.get_statement(authed(early, &token, None)).await.unwrap().into_inner().items.is_empty());
    let bad = proto::GetStatementRequest {
        card_id: card.id,
        page: Some(proto::PageRequest { limit: 1, cursor: "%%%".into() }),
        from: None,
        to: None,
    };
    let bad = cards.get_statement(authed(bad, &token, None)).await.unwrap_err();
    let meta = expect_status(&bad, Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("cursor"));
}

#[actix_web::test]
async fn lookup_card_over_grpc_shares_the_http_preview_and_its_rate_budget() {
    let mut settings = crate::common::settings();
    settings.rate_limits.enabled = true;
    settings.rate_limits.recipient_previews_per_minute = 3;
    let app = TestApp::spawn_with(settings).await;
    let ch = channel(&app).await;
    let mut auth = AuthClient::new(ch.clone());
    let (_, holder) = grpc_user(&app, &mut auth, "grpc-look1@test.local").await;
    let (_, payer) = grpc_user(&app, &mut auth, "grpc-look2@test.local").await;
    let mut cards = CardsClient::new(ch.clone());
    let issued = cards.issue_card(authed(debit_card(), &holder, None)).await.unwrap().into_inner();
    let number = issued.card_number.clone();
    let lookup = |n: &str| proto::LookupCardRequest { card_number: n.into() };

    let got = cards.lookup_card(authed(lookup(&number), &payer, None)).await.unwrap().into_inner();
    let (s, b) = app.post("/api/v1/transfers/recipient-preview", Some(&payer), json!({"card_number": number})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(got.card_number, b["card_number"].as_str().unwrap());
    assert_eq!(got.display_name, b["display_name"].as_str().unwrap());
    assert!(!got.card_number.contains(&number[..6]), "the number must be masked: {got:?}");
    // The third preview of the minute (one over HTTP counted) is the last one allowed.
    let unknown = cards.lookup_card(authed(lookup("4111 1111 1111 1111"), &payer, None)).await.unwrap_err();
    expect_status(&unknown, Code::NotFound, "recipient_not_found");
    let limited = cards.lookup_card(authed(lookup(&number), &payer, None)).await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");
    let (s, b) = app.post("/api/v1/transfers/recipient-preview", Some(&payer), json!({"card_number": number})).await;
    assert_eq!(s, 429, "{b}");
    // Another user has their own budget; no token is refused before the budget is touched.
    cards.lookup_card(authed(lookup(&number), &holder, None)).await.unwrap();
    let none = cards.lookup_card(Request::new(lookup(&number))).await.unwrap_err();
    expect_status(&none, Code::Unauthenticated, "missing_token");
}

#[actix_web::test]
async fn access_is_enforced_for_the_new_rpc_classes() {
    let app = TestApp::spawn().await;
    let ch = channel(&app).await;
    let mut auth = AuthClient::new(ch.clone());
    let (_, token) = grpc_user(&app, &mut auth, "grpc-acc2@test.local").await;
    let (_, stranger) = grpc_user(&app, &mut auth, "grpc-acc3@test.local").await;
    let mut cards = CardsClient::new(ch.clone());
    let card = cards.issue_card(authed(debit_card(), &token, None)).await.unwrap().into_inner().card.unwrap();

    // Authenticated account RPCs: no token.
    let change = proto::ChangePasswordRequest::default();
    let none = auth.change_password(Request::new(change)).await.unwrap_err();
    expect_status(&none, Code::Unauthenticated, "missing_token");
    let none = auth.update_display_name(Request::new(proto::UpdateDisplayNameRequest::default())).await.unwrap_err();
    expect_status(&none, Code::Unauthenticated, "missing_token");
    // Public account RPCs answer without a token (validation, not authentication, refuses this one).
    let bad = auth.forgot_password(proto::ForgotPasswordRequest { email: "not-an-email".into() }).await.unwrap_err();
    expect_status(&bad, Code::InvalidArgument, "validation_failed");

    // Card lifecycle: no token; another user's card is not found (as over HTTP); an admin may.
    let id = proto::CardActionRequest { id: card.id };
    let none = cards.freeze_card(Request::new(id)).await.unwrap_err();
    expect_status(&none, Code::Unauthenticated, "missing_token");
    let hidden = cards.freeze_card(authed(id, &stranger, None)).await.unwrap_err();
    expect_status(&hidden, Code::NotFound, "not_found");
    let hidden = cards.unlock_card(authed(id, &stranger, None)).await.unwrap_err();
    expect_status(&hidden, Code::NotFound, "not_found");
    let admin = app.admin_token().await;
    let frozen = cards.freeze_card(authed(id, &admin, None)).await.unwrap().into_inner();
    assert_eq!(frozen.status, "frozen");
    // The statement is the holder's; every balance is the admins'.
    let st = proto::GetStatementRequest { card_id: card.id, ..Default::default() };
    let hidden = cards.get_statement(authed(st, &stranger, None)).await.unwrap_err();
    expect_status(&hidden, Code::NotFound, "not_found");
    let denied = cards.list_balances(authed(proto::ListBalancesRequest::default(), &token, None)).await.unwrap_err();
    expect_status(&denied, Code::PermissionDenied, "forbidden");
    let all = cards.list_balances(authed(proto::ListBalancesRequest::default(), &admin, None)).await.unwrap();
    assert!(all.into_inner().items.iter().any(|b| b.card_id == card.id));

    // Admin ledger RPCs: a user is refused before the call reaches the ledger.
    let mut ledger = LedgerClient::new(ch);
    let r = proto::OperationRef { id: uuid::Uuid::new_v4().to_string(), kind: proto::OperationKind::Topup.into() };
    let denied = ledger.reverse_operation(authed(r.clone(), &token, Some("acc-r"))).await.unwrap_err();
    expect_status(&denied, Code::PermissionDenied, "forbidden");
    let denied = ledger.archive_operation(authed(r.clone(), &token, None)).await.unwrap_err();
    expect_status(&denied, Code::PermissionDenied, "forbidden");
    let denied = ledger.restore_operation(authed(r.clone(), &token, None)).await.unwrap_err();
    expect_status(&denied, Code::PermissionDenied, "forbidden");
    let missing = ledger.archive_operation(authed(r, &admin, None)).await.unwrap_err();
    expect_status(&missing, Code::NotFound, "not_found");
}

#[actix_web::test]
async fn user_administration_over_grpc_matches_http() {
    let app = TestApp::spawn().await;
    let ch = channel(&app).await;
    let mut auth = AuthClient::new(ch.clone());
    let email = "grpc-adm@test.local";
    let (uid, token) = grpc_user(&app, &mut auth, email).await;
    let (other_id, other) = grpc_user(&app, &mut auth, "grpc-adm2@test.local").await;
    let admin = app.admin_token().await;
    let mut users = UsersClient::new(ch.clone());

    // ListUsers: the HTTP list, page by page with the same cursors.
    let mut cursor = String::new();
    let mut seen = Vec::new();
    loop {
        let req = proto::ListUsersRequest {
            page: Some(proto::PageRequest { limit: 1, cursor: cursor.clone() }),
            search: "grpc-adm".into(),
            status: String::new(),
        };
        let got = users.list_users(authed(req, &admin, None)).await.unwrap().into_inner();
        let q = if cursor.is_empty() { String::new() } else { format!("&cursor={cursor}") };
        let (s, b) = app.get(&format!("/api/v1/users?search=grpc-adm&limit=1{q}"), Some(&admin)).await;
        assert_eq!(s, 200, "{b}");
        let http: Vec<i64> = b["items"].as_array().unwrap().iter().map(|u| u["id"].as_i64().unwrap()).collect();
        assert_eq!(got.items.iter().map(|u| u.id).collect::<Vec<_>>(), http);
        assert_eq!(got.next_cursor, b["next_cursor"].as_str().unwrap_or_default());
        seen.extend(http);
        if got.next_cursor.is_empty() {
            break;
        }
        cursor = got.next_cursor;
    }
    assert_eq!(seen, [other_id, uid]);
    let bad = proto::ListUsersRequest { page: None, search: String::new(), status: "gone".into() };
    let bad = users.list_users(authed(bad, &admin, None)).await.unwrap_err();
    let meta = expect_status(&bad, Code::InvalidArgument, "validation_failed");
    assert_eq!(meta.get("field").map(String::as_str), Some("status"));

    // UpdateUser: names change; another user's e-mail is refused as over HTTP.
    let update = |e: Option<&str>| proto::UpdateUserRequest {
        id: uid,
        first_name: Some("Renamed".into()),
        last_name: None,
        email: e.map(str::to_owned),
    };
    let updated = users.update_user(authed(update(None), &admin, None)).await.unwrap().into_inner();
    assert_eq!(updated.first_name, "Renamed");
    let taken = users.update_user(authed(update(Some("grpc-adm2@test.local")), &admin, None)).await.unwrap_err();
    let (s, b) = app
        .call("PATCH", &format!("/api/v1/users/{uid}"), Some(&admin), Some(json!({"email": "grpc-adm2@test.local"})))
        .await;
    assert_eq!(s, 409, "{b}");
    expect_status(&taken, Code::AlreadyExists, &error_code(&b));

    // ListUserCards: one's own, any for an admin, nobody else's.
    let mut cards = CardsClient::new(ch.clone());
    let card = cards.issue_card(authed(debit_card(), &token, None)).await.unwrap().into_inner().card.unwrap();
    let list = |id: i64| proto::ListUserCardsRequest { user_id: id, ..Default::default() };
    let own = users.list_user_cards(authed(list(uid), &token, None)).await.unwrap().into_inner();
    assert_eq!(own.items.iter().map(|c| c.id).collect::<Vec<_>>(), [card.id]);
    let by_admin = users.list_user_cards(authed(list(uid), &admin, None)).await.unwrap().into_inner();
    assert_eq!(by_admin.items.len(), 1);
    let hidden = users.list_user_cards(authed(list(uid), &other, None)).await.unwrap_err();
    expect_status(&hidden, Code::NotFound, "not_found");

    // A user is refused every admin RPC.
    let denied = users.list_users(authed(proto::ListUsersRequest::default(), &token, None)).await.unwrap_err();
    expect_status(&denied, Code::PermissionDenied, "forbidden");
    let denied = users.archive_user(authed(proto::UserRef { id: other_id }, &token, None)).await.unwrap_err();
    expect_status(&denied, Code::PermissionDenied, "forbidden");
    let denied = users.reset_user_password(authed(proto::UserRef { id: other_id }, &token, None)).await.unwrap_err();
    expect_status(&denied, Code::PermissionDenied, "forbidden");

    // Archive revokes the sessions and refuses twice; restore brings the account back.
    let archived = users.archive_user(authed(proto::UserRef { id: other_id }, &admin, None)).await.unwrap();
    assert!(archived.into_inner().archived_at.is_some());
    let gone = auth.me(authed(proto::MeRequest {}, &other, None)).await.unwrap_err();
    assert_eq!(gone.code(), Code::Unauthenticated, "{gone:?}");
    let twice = users.archive_user(authed(proto::UserRef { id: other_id }, &admin, None)).await.unwrap_err();
    assert_eq!(twice.code(), Code::AlreadyExists, "{twice:?}");
    let restored = users.restore_user(authed(proto::UserRef { id: other_id }, &admin, None)).await.unwrap();
    assert!(restored.into_inner().archived_at.is_none());

    // A forced reset: the old password stops working, the e-mailed token sets a new one.
    users.reset_user_password(authed(proto::UserRef { id: uid }, &admin, None)).await.unwrap();
    let old = auth.login(proto::LoginRequest { email: email.into(), password: PASSWORD.into() }).await.unwrap_err();
    assert_eq!(old.code(), Code::Unauthenticated, "{old:?}");
    let reset_token = app.reset_token(email).await;
    auth.reset_password(proto::ResetPasswordRequest {
        token: reset_token,
        new_password: RESET_PASSWORD.into(),
        confirm_password: RESET_PASSWORD.into(),
    })
    .await
    .unwrap();
    auth.login(proto::LoginRequest { email: email.into(), password: RESET_PASSWORD.into() }).await.unwrap();
}
