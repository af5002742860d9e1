//! Admin lifecycle routes: a credit card's credit_limit (lowering guarded by the balance, the account
//! actor's floor refreshed), a user's roles, and admin password set / forced reset.

use serde_json::{json, Value};

use crate::common::merchant::{card_balance, issue_card, merchant_settings, verified};
use crate::common::*;

async fn money(app: &TestApp, token: &str, path: &str, key: &str, body: Value) -> (u16, Value) {
    let (s, _, b) = app.call_full("POST", path, Some(token), Some(body), &[("Idempotency-Key", key)]).await;
    (s, b)
}

#[actix_web::test]
async fn credit_limit_changes_are_admin_only_and_never_below_what_is_owed() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    let (alice_id, alice) = verified(&app, &admin, "alice.credit@example.com").await;
    let (s, c) = app
        .post(
            "/api/v1/cards",
            Some(&admin),
            json!({"card_type": "credit", "brand": "visa", "user_id": alice_id, "credit_limit": 500_000}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let card = c["card"]["id"].as_i64().unwrap();
    let path = format!("/api/v1/cards/{card}");
    // Owe 300,000.
    let (s, b) = money(&app, &alice, "/api/v1/withdrawals", "cw-1", json!({"card_id": card, "amount": 300_000})).await;
    assert_eq!(s, 201, "{b}");

    // The holder may relabel but not change the limit.
    let (s, b) = app.call("PATCH", &path, Some(&alice), Some(json!({"label": "mine"}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["label"], "mine");
    let (s, b) = app.call("PATCH", &path, Some(&alice), Some(json!({"credit_limit": 900_000}))).await;
    expect_error(s, &b, 403, "forbidden");
    // Bad input names the field.
    for bad in [json!({"credit_limit": -1}), json!({"credit_limit": "lots"}), json!({"label": "x".repeat(10_000)})] {
        let (s, b) = app.call("PATCH", &path, Some(&admin), Some(bad.clone())).await;
        assert!((400..500).contains(&s), "{bad}: {s} {b}");
    }
    let (s, b) = app.call("PATCH", &path, Some(&admin), Some(json!({"credit_limit": -1}))).await;
    expect_error(s, &b, 422, "validation_failed");
    assert_eq!(b["error"]["field"], "credit_limit");

    // Lowering below what is owed: refused, nothing changed.
    let (s, b) = app.call("PATCH", &path, Some(&admin), Some(json!({"credit_limit": 200_000}))).await;
    expect_error(s, &b, 409, "credit_limit_below_balance");
    assert_eq!(b["error"]["field"], "credit_limit");
    let (s, b) = app.get(&path, Some(&alice)).await;
    assert_eq!((s, b["credit_limit"].as_i64()), (200, Some(500_000)), "{b}");

    // Lowering to 400,000 applies at once: 150,000 more would owe 450,000.
    let (s, b) = app.call("PATCH", &path, Some(&admin), Some(json!({"credit_limit": 400_000}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["credit_limit"], 400_000);
    let (s, b) = money(&app, &alice, "/api/v1/withdrawals", "cw-2", json!({"card_id": card, "amount": 150_000})).await;
    assert_eq!(s, 402, "{b}");
    assert_eq!(b["error"]["code"], "insufficient_funds");
    let (s, b) = app.get(&format!("{path}/balance"), Some(&alice)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!((b["credit_limit"].as_i64(), b["available"].as_i64()), (Some(400_000), Some(100_000)), "{b}");
    // Raising it lets the same debit through (the account actor's cached floor was refreshed).
    let (s, b) = app.call("PATCH", &path, Some(&admin), Some(json!({"credit_limit": 1_000_000}))).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = money(&app, &alice, "/api/v1/withdrawals", "cw-3", json!({"card_id": card, "amount": 150_000})).await;
    assert_eq!(s, 201, "{b}");
    let mut conn = app.db();
    assert_eq!(card_balance(&mut conn, card), -450_000);

    // A debit card has no credit line.
    let debit = issue_card(&app, &alice).await;
    let (s, b) = app
        .call("PATCH", &format!("/api/v1/cards/{}", debit.id), Some(&admin), Some(json!({"credit_limit": 10_000})))
        .await;
    expect_error(s, &b, 422, "validation_failed");
    assert_eq!(b["error"]["field"], "credit_limit");
}

#[actix_web::test]
async fn user_roles_are_listed_for_admins_only() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (alice_id, alice) = verified(&app, &admin, "alice.roles@example.com").await;
    let (bob_id, _) = verified(&app, &admin, "bob.roles@example.com").await;
    let (s, b) = app.post(&format!("/api/v1/users/{bob_id}/roles"), Some(&admin), json!({"role": "merchant"})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app.get(&format!("/api/v1/users/{bob_id}/roles"), Some(&admin)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, json!({"user_id": bob_id, "roles": ["merchant", "user"]}));
    // Another user: 403; a user reads their own roles in /auth/me, not here.
    let (s, b) = app.get(&format!("/api/v1/users/{bob_id}/roles"), Some(&alice)).await;
    expect_error(s, &b, 403, "forbidden");
    let (s, b) = app.get(&format!("/api/v1/users/{alice_id}/roles"), Some(&alice)).await;
    expect_error(s, &b, 403, "forbidden");
    let (s, b) = app.get("/api/v1/auth/me", Some(&alice)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["roles"], json!(["user"]));
    let (s, b) = app.get("/api/v1/users/987654321/roles", Some(&admin)).await;
    assert_eq!(s, 404, "{b}");
    let (s, _) = app.get(&format!("/api/v1/users/{bob_id}/roles"), None).await;
    assert_eq!(s, 401);
}

#[actix_web::test]
async fn admin_password_set_revokes_sessions_and_mails_the_user() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let email = "dora.pw@example.com";
    let (id, access, refresh) = app.user(email).await;
    let path = format!("/api/v1/users/{id}/password");

    // Not for users (themselves included), and bad passwords name the field.
    let (s, b) = app.post(&path, Some(&access), json!({"password": "New-pass-456"})).await;
    expect_error(s, &b, 403, "forbidden");
    for bad in
        [json!({"password": "short"}), json!({"password": "x".repeat(10_000)}), json!({"password": 5}), json!({})]
    {
        let (s, b) = app.post(&path, Some(&admin), bad.clone()).await;
        assert!((400..500).contains(&s), "{bad}: {s} {b}");
        assert_eq!(b["error"]["field"], "password", "{bad}: {b}");
    }
    let (s, b) = app.post("/api/v1/users/987654321/password", Some(&admin), json!({"password": "New-pass-456"})).await;
    assert_eq!(s, 404, "{b}");

    let (s, b) = app.post(&path, Some(&admin), json!({"password": "New-pass-456"})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["id"], id);
    // Every session ends: the old refresh token and access token no longer work.
    let (s, b) = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(s, 401, "{b}");
    let (s, _) = app.get("/api/v1/auth/me", Some(&access)).await;
    assert_eq!(s, 401);
    // The old password is refused, the new one works.
    let (s, _) = app.login(email, PASSWORD).await;
    assert_eq!(s, 401);
    let (s, b) = app.login(email, "New-pass-456").await;
    assert_eq!(s, 200, "{b}");
    // The user is told, in both parts of the e-mail, and the password itself is not in it.
    let mail = app.last_mail(email).await;
    let (text, html) = (mail["text"].as_str().unwrap(), mail["html"].as_str().unwrap());
    assert!(text.contains("An administrator set a new password"), "{mail}");
    assert!(html.contains("An administrator set a new password"), "{mail}");
    assert!(!text.contains("New-pass-456") && !html.contains("New-pass-456"), "{mail}");
    // Audited.
    let mut conn = app.db();
    let n = crate::common::merchant::scalar(
        &mut conn,
        &format!(
            "SELECT count(*) AS n FROM outbox WHERE event_type = 'password.changed' AND payload->>'via' = 'admin' \
             AND (payload->>'user_id')::bigint = {id}"
        ),
    );
    assert_eq!(n, 1);
}

#[actix_web::test]
async fn admin_forced_reset_locks_the_password_until_the_user_resets_it() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let email = "erin.reset@example.com";
    let (id, access, refresh) = app.user(email).await;

    let (s, b) = app.post(&format!("/api/v1/users/{id}/password/reset"), Some(&access), json!({})).await;
    expect_error(s, &b, 403, "forbidden");
    let (s, b) = app.post(&format!("/api/v1/users/{id}/password/reset"), Some(&admin), json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(s, 401);
    // The old password no longer works.
    let (s, b) = app.login(email, PASSWORD).await;
    assert_eq!(s, 401, "{b}");
    // The reset token e-mailed to the user sets a new one.
    let token = app.reset_token(email).await;
    let (s, b) = app
        .post(
            "/api/v1/auth/password/reset",
            None,
            json!({"token": token, "new_password": "Fresh-pass-789", "confirm_password": "Fresh-pass-789"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app.login(email, "Fresh-pass-789").await;
    assert_eq!(s, 200, "{b}");
    // Told why, in the notice.
    let (s, b) = app.get(&format!("/api/v1/admin/mailbox?to={email}&limit=50"), Some(&admin)).await;
    assert_eq!(s, 200, "{b}");
    assert!(
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["text"].as_str().unwrap_or_default().contains("An administrator reset your password")),
        "{b}"
    );
}

#[actix_web::test]
async fn card_networks_are_configuration() {
    // The default list: today's four networks, as they were.
    let defaults = settings();
    let names: Vec<&str> = defaults.cards.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["visa", "mastercard", "american express", "discover"]);
    defaults.validate().unwrap();
    // Start-up refuses a bad list, naming the key.
    type Spoil = fn(&mut payd::config::Settings);
    let bad_lists: [Spoil; 5] = [
        |s| s.cards.networks.clear(),
        |s| s.cards.networks[0].pan_length = 40,
        |s| s.cards.networks[0].prefixes = vec!["4x".into()],
        |s| s.cards.networks[0].cvv_length = 7,
        |s| s.cards.networks[1].name = "visa".into(),
    ];
    for (i, spoil) in bad_lists.iter().enumerate() {
        let mut s = settings();
        spoil(&mut s);
        let e = s.validate().expect_err(&format!("bad list {i} was accepted"));
        assert!(e.to_string().contains("cards.networks"), "{i}: {e}");
    }

    // A network added by configuration issues cards; anything else is refused naming `brand`.
    let mut s = merchant_settings();
    s.cards.networks.push(payd::config::CardNetwork {
        name: "jcb".into(),
        prefixes: vec!["3528".into()],
        pan_length: 16,
        cvv_length: 3,
    });
    let app = TestApp::spawn_with(s).await;
    let admin = app.admin_token().await;
    let (_, alice) = verified(&app, &admin, "alice.networks@example.com").await;
    let (s, c) = app.post("/api/v1/cards", Some(&alice), json!({"card_type": "debit", "brand": "JCB"})).await;
    assert_eq!(s, 201, "{c}");
    let number = c["card_number"].as_str().unwrap();
    assert!(number.starts_with("3528") && number.len() == 16, "{number}");
    assert!(payd::cards::pan::luhn_valid(number));
    assert_eq!(c["card"]["brand"], "jcb");
    assert_eq!(c["cvv"].as_str().unwrap().len(), 3);
    for brand in [json!("dana"), json!("alfamart"), json!(""), json!("x".repeat(10_000)), json!(7)] {
        let (s, b) = app.post("/api/v1/cards", Some(&alice), json!({"card_type": "debit", "brand": brand})).await;
        assert!((400..500).contains(&s), "{brand}: {s} {b}");
        assert_eq!(b["error"]["field"], "brand", "{brand}: {b}");
    }
    let (s, b) = app.post("/api/v1/cards", Some(&alice), json!({"card_type": "debit", "brand": "ovo"})).await;
    expect_error(s, &b, 422, "validation_failed");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("visa, mastercard, american express, discover, jcb"),
        "{b}"
    );
}

#[actix_web::test]
async fn lowering_a_credit_limit_while_debits_run_never_leaves_a_card_below_its_floor() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    let (alice_id, alice) = verified(&app, &admin, "alice.race@example.com").await;
    let (s, c) = app
        .post(
            "/api/v1/cards",
            Some(&admin),
            json!({"card_type": "credit", "brand": "visa", "user_id": alice_id, "credit_limit": 2_000_000}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let card = c["card"]["id"].as_i64().unwrap();
    // Twenty 60,000 withdrawals (1,200,000 in all) race limit changes down to 500,000.
    let debits = (0..20).map(|i| {
        let (app, alice) = (&app, &alice);
        async move {
            let key = format!("race-{i}");
            money(app, alice, "/api/v1/withdrawals", &key, json!({"card_id": card, "amount": 60_000})).await.0
        }
    });
    let limits = [1_500_000, 1_000_000, 700_000, 500_000].map(|l| {
        let (app, admin) = (&app, &admin);
        async move {
            app.call("PATCH", &format!("/api/v1/cards/{card}"), Some(admin), Some(json!({"credit_limit": l}))).await.0
        }
    });
    let (debits, limits) = tokio::join!(futures::future::join_all(debits), futures::future::join_all(limits));
    assert!(debits.iter().all(|s| *s == 201 || *s == 402), "{debits:?}");
    assert!(limits.iter().all(|s| *s == 200 || *s == 409), "{limits:?}");
    let mut conn = app.db();
    let below = crate::common::merchant::scalar(
        &mut conn,
        &format!(
            "SELECT count(*) AS n FROM cards c JOIN accounts a ON a.id = c.account_id \
             WHERE c.id = {card} AND (a.balance < a.min_balance OR a.min_balance <> -c.credit_limit)"
        ),
    );
    assert_eq!(below, 0, "the card's balance went below its floor, or card and account disagree");
    let paid = i64::try_from(debits.iter().filter(|s| **s == 201).count()).unwrap() * 60_000;
    assert_eq!(card_balance(&mut conn, card), -paid);
}
