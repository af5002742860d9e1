//! Reads at the speed of the actors: balances answered by the account actor (read-your-writes on the
//! instance that committed, the documented staleness bound across instances), and session revocation
//! known in process (logout, password change and admin revocation stop a session on every instance
//! within the documented bound). Behaviour only: the waits below are the configured bounds plus a
//! margin, never a measurement.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::common::*;

/// The bounds configured for these tests, and the margin added to them before asserting.
pub(crate) const READ_STALENESS_MS: u64 = 300;
const REVOCATION_STALENESS_MS: u64 = 300;
pub(crate) const MARGIN_MS: u64 = 200;

pub(crate) fn read_settings() -> payd::config::Settings {
    let mut s = settings();
    s.ledger.read_staleness_ms = READ_STALENESS_MS;
    s.auth.revocation_staleness_ms = REVOCATION_STALENESS_MS;
    s
}

pub(crate) async fn money(app: &TestApp, token: &str, path: &str, key: &str, body: Value) -> (u16, Value) {
    let (s, _, b) = app.call_full("POST", path, Some(token), Some(body), &[("Idempotency-Key", key)]).await;
    (s, b)
}

pub(crate) async fn issue(app: &TestApp, token: &str) -> i64 {
    let (s, b) = app.post("/api/v1/cards", Some(token), json!({"card_type": "debit", "brand": "visa"})).await;
    assert_eq!(s, 201, "{b}");
    b["card"]["id"].as_i64().unwrap()
}

async fn balance(app: &TestApp, token: &str, card: i64) -> Value {
    let (s, b) = app.get(&format!("/api/v1/cards/{card}/balance"), Some(token)).await;
    assert_eq!(s, 200, "{b}");
    b
}

fn micros(v: &Value) -> Option<i64> {
    v.as_str().map(|t| t.parse::<DateTime<Utc>>().unwrap().timestamp_micros())
}

fn verify_clean(app: &TestApp) {
    let mut conn = app.db();
    let report = payd::ledger::verify::run(&mut conn).unwrap();
    assert!(report.is_clean(), "{report}");
}

/// Many cards, each driven by its own task through top-ups and withdrawals at once (so they share
/// batches): after every 201 the balance read on the same instance shows exactly that operation —
/// balance, available, total withdrawn and the last withdrawal's time.
#[actix_web::test]
async fn balance_reads_your_writes_storm() {
    let app = TestApp::spawn_with(read_settings()).await;
    let admin = app.admin_token().await;
    let mut cards = Vec::new();
    for _ in 0..12 {
        cards.push(issue(&app, &admin).await);
    }
    let tasks = cards.iter().map(|&card| {
        let (app, admin) = (&app, &admin);
        async move {
            let (mut bal, mut withdrawn, mut last) = (0i64, 0i64, None::<i64>);
            let mut withdrawals = Vec::new();
            for i in 0..16i64 {
                let (path, body) = if i % 3 == 2 {
                    ("/api/v1/withdrawals", json!({"card_id": card, "amount": 50_000 + i}))
                } else {
                    ("/api/v1/topups", json!({"card_id": card, "amount": 100_000 + i, "method": "ovo"}))
                };
                let (s, op) = money(app, admin, path, &format!("ryw-{card}-{i}"), body).await;
                assert_eq!(s, 201, "{op}");
                let amount = op["amount"].as_i64().unwrap();
                if op["kind"] == "withdrawal" {
                    bal -= amount;
                    withdrawn += amount;
                    last = micros(&op["created_at"]);
                    withdrawals.push((op["id"].as_str().unwrap().to_owned(), amount));
                } else {
                    bal += amount;
                }
                let b = balance(app, admin, card).await;
                assert_eq!(b["balance"], bal, "card {card} after op {i}: {b}");
                assert_eq!(b["available"], bal, "{b}");
                assert_eq!(b["total_withdrawn"], withdrawn, "{b}");
                assert_eq!(micros(&b["last_withdrawal_at"]), last, "{b}");
            }
            // A reversed withdrawal leaves the totals at once; the last withdrawal stays the last.
            let (id, amount) = withdrawals.first().cloned().unwrap();
            let (s, r) =
                money(app, admin, &format!("/api/v1/withdrawals/{id}/reversal"), &format!("rev-{card}"), json!({}))
                    .await;
            assert_eq!(s, 201, "{r}");
            let b = balance(app, admin, card).await;
            assert_eq!(b["balance"], bal + amount, "{b}");
            assert_eq!(b["total_withdrawn"], withdrawn - amount, "{b}");
            assert_eq!(micros(&b["last_withdrawal_at"]), last, "{b}");
        }
    });
    futures::future::join_all(tasks).await;
    // The maintained totals agree with the operations (verify recomputes them), and the admin list
    // and the point-in-time read (database paths) agree with the actors.
    verify_clean(&app);
    let (s, page) = app.get("/api/v1/balances?limit=100", Some(&admin)).await;
    assert_eq!(s, 200, "{page}");
    for row in page["items"].as_array().unwrap() {
        let card = row["card_id"].as_i64().unwrap();
        let b = balance(&app, &admin, card).await;
        for f in ["balance", "total_withdrawn", "last_withdrawal_at", "credit_limit"] {
            assert_eq!(row[f], b[f], "{f} of card {card}");
        }
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let (s, at) =
            app.get(&format!("/api/v1/cards/{card}/balance?at={}", now.replace('+', "%2B")), Some(&admin)).await;
        assert_eq!(s, 200, "{at}");
        assert_eq!(at["balance"], b["balance"]);
        assert_eq!(at["total_withdrawn"], b["total_withdrawn"]);
    }
}

/// Two instances on one database: a balance read on one instance shows a commit made through the
/// other once the documented bound (`ledger.read_staleness_ms`) has passed, both ways.
#[actix_web::test]
async fn balance_across_instances_within_the_bound() {
    let settings = read_settings();
    let a = TestApp::spawn_with(settings.clone()).await;
    let b = TestApp::spawn_with(settings).await;
    let admin = a.admin_token().await;
    let card = issue(&a, &admin).await;
    let (s, op) =
        money(&a, &admin, "/api/v1/topups", "x-1", json!({"card_id": card, "amount": 500_000, "method": "ovo"})).await;
    assert_eq!(s, 201, "{op}");
    // B's actor loads the card's account (committed before it existed).
    assert_eq!(balance(&b, &admin, card).await["balance"], 500_000);
    assert_eq!(balance(&a, &admin, card).await["balance"], 500_000);
    let bound = Duration::from_millis(READ_STALENESS_MS + MARGIN_MS);
    for (i, (writer, reader)) in [(&a, &b), (&b, &a), (&a, &b)].into_iter().enumerate() {
        let (s, op) = money(
            writer,
            &admin,
            "/api/v1/withdrawals",
            &format!("x-w{i}"),
            json!({"card_id": card, "amount": 60_000}),
        )
        .await;
        assert_eq!(s, 201, "{op}");
        // Read-your-writes on the writer at once.
        let mine = balance(writer, &admin, card).await;
        actix_web::rt::time::sleep(bound).await;
        let theirs = balance(reader, &admin, card).await;
        for f in ["balance", "available", "total_withdrawn", "last_withdrawal_at"] {
            assert_eq!(theirs[f], mine[f], "{f} on the other instance after the bound (round {i})");
        }
    }
    assert_eq!(balance(&a, &admin, card).await["balance"], 500_000 - 3 * 60_000);
    verify_clean(&a);
}

/// The bound of the change-feed tests below (the default).
const FEED_STALENESS_MS: u64 = 1_000;

/// Reads of `kind` (`balance_read`, `operation_list_read`, …) counted by how they were answered
/// (`memory`, `reloaded`, `database`), across every instance of this test process.
pub(crate) fn reads_counted(kind: &str, outcome: &str) -> f64 {
    let (kind, outcome) = (format!("kind=\"{kind}\""), format!("outcome=\"{outcome}\""));
    payd::metrics::render()
        .lines()
        .filter(|l| l.contains("operations_total{") && l.contains(&kind) && l.contains(&outcome))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn balance_reads(outcome: &str) -> f64 {
    reads_counted("balance_read", outcome)
}

/// One balance read on `app`, and whether it reloaded the account from the database.
async fn balance_reloaded(app: &TestApp, token: &str, card: i64) -> (Value, bool) {
    let before = balance_reads("reloaded");
    let b = balance(app, token, card).await;
    (b, balance_reads("reloaded") > before)
}

/// The account change feed (`ledger::feed`) with two instances on one database: once the bound has
/// passed, an instance answers a balance read from its actor's memory when no instance changed the
/// account (no reload once per bound), and reloads — showing the other instance's commit — when one
/// did, whether the change raised the account's version (a withdrawal) or not (a credit limit, which
/// moves `available` only).
#[actix_web::test]
async fn balance_reads_follow_the_change_feed_across_instances() {
    // The default bound, not this file's 300 ms: that no reload happens depends on the listener's
    // heartbeats (every quarter of the bound) arriving in time on a loaded test machine.
    let mut settings = read_settings();
    settings.ledger.read_staleness_ms = FEED_STALENESS_MS;
    assert!(settings.ledger.change_feed, "the feed is on by default");
    let a = TestApp::spawn_with(settings.clone()).await;
    let b = TestApp::spawn_with(settings).await;
    let admin = a.admin_token().await;
    let (s, c) = a
        .post("/api/v1/cards", Some(&admin), json!({"card_type": "credit", "brand": "visa", "credit_limit": 100_000}))
        .await;
    assert_eq!(s, 201, "{c}");
    let card = c["card"]["id"].as_i64().unwrap();
    let (s, op) =
        money(&a, &admin, "/api/v1/topups", "f-1", json!({"card_id": card, "amount": 500_000, "method": "ovo"})).await;
    assert_eq!(s, 201, "{op}");
    let bound = Duration::from_millis(FEED_STALENESS_MS + MARGIN_MS);
    // Both instances hold the account. An actor loaded before its instance's feed was subscribed
    // (just after start) is not vouched for: past the bound it reloads once.
    actix_web::rt::time::sleep(bound * 2).await;
    balance(&b, &admin, card).await;
    balance(&a, &admin, card).await;
    actix_web::rt::time::sleep(bound * 2).await;
    for round in 0..3 {
        // Nothing changed: past the bound, still from memory on both instances.
        for (name, app) in [("a", &a), ("b", &b)] {
            let (_, reloaded) = balance_reloaded(app, &admin, card).await;
            assert!(!reloaded, "round {round}: instance {name} reloaded an account nobody changed");
        }
        // A withdrawal through A: B shows it after the bound, by reloading.
        let (s, op) = money(
            &a,
            &admin,
            "/api/v1/withdrawals",
            &format!("f-w{round}"),
            json!({"card_id": card, "amount": 50_000}),
        )
        .await;
        assert_eq!(s, 201, "{op}");
        let (mine, reloaded) = balance_reloaded(&a, &admin, card).await;
        assert!(!reloaded, "round {round}: the committing instance knows its own write");
        actix_web::rt::time::sleep(bound).await;
        let (theirs, reloaded) = balance_reloaded(&b, &admin, card).await;
        assert!(reloaded, "round {round}: B answered from a state the feed showed to be behind");
        assert_eq!(theirs["balance"], mine["balance"], "round {round}");
        assert_eq!(theirs["total_withdrawn"], mine["total_withdrawn"], "round {round}");
        actix_web::rt::time::sleep(bound).await;
    }
    // A credit limit raised through B (the version does not move): A's `available` follows.
    let (s, body) =
        b.call("PATCH", &format!("/api/v1/cards/{card}"), Some(&admin), Some(json!({"credit_limit": 300_000}))).await;
    assert_eq!(s, 200, "{body}");
    actix_web::rt::time::sleep(bound).await;
    let (on_a, reloaded) = balance_reloaded(&a, &admin, card).await;
    assert!(reloaded, "a floor change elsewhere reloads the account");
    assert_eq!(on_a["available"], balance(&b, &admin, card).await["available"]);
    assert_eq!(on_a["available"].as_i64(), Some(500_000 - 3 * 50_000 + 300_000), "{on_a}");
    verify_clean(&a);
}

/// The instances' listener connections are terminated under them (both instances of this test
/// share one database; nothing else is touched). While they reconnect nothing is served on the
/// listener's word: a withdrawal and a card change made through A meanwhile show on B after the
/// bound. Once they are back, B answers from memory again when nothing changed.
#[actix_web::test]
async fn reads_hold_the_bound_while_the_listener_reconnects() {
    let mut settings = read_settings();
    settings.ledger.read_staleness_ms = FEED_STALENESS_MS;
    let a = TestApp::spawn_with(settings.clone()).await;
    let b = TestApp::spawn_with(settings).await;
    let admin = a.admin_token().await;
    let id = issue(&a, &admin).await;
    let (s, op) =
        money(&a, &admin, "/api/v1/topups", "l-1", json!({"card_id": id, "amount": 500_000, "method": "ovo"})).await;
    assert_eq!(s, 201, "{op}");
    let bound = Duration::from_millis(FEED_STALENESS_MS + MARGIN_MS);
    actix_web::rt::time::sleep(bound * 2).await;
    balance(&b, &admin, id).await;
    assert_eq!(card(&b, &admin, id).await["label"], "");
    let mut conn = a.db();
    let killed = scalar(
        &mut conn,
        "SELECT count(pg_terminate_backend(pid))::bigint AS n FROM pg_stat_activity \
         WHERE application_name = 'payd-listen' AND datname = current_database()",
    );
    assert_eq!(killed, 2, "one listener connection per instance");
    let (s, op) = money(&a, &admin, "/api/v1/withdrawals", "l-w", json!({"card_id": id, "amount": 50_000})).await;
    assert_eq!(s, 201, "{op}");
    let (s, body) =
        a.call("PATCH", &format!("/api/v1/cards/{id}"), Some(&admin), Some(json!({"label": "renamed"}))).await;
    assert_eq!(s, 200, "{body}");
    actix_web::rt::time::sleep(bound).await;
    assert_eq!(balance(&b, &admin, id).await["balance"], 450_000, "the withdrawal on B after the bound");
    assert_eq!(card(&b, &admin, id).await["label"], "renamed", "the card change on B after the bound");
    // Back: every listener reconnected, and B's actor is vouched for again.
    actix_web::rt::time::sleep(bound * 2).await;
    let listening = scalar(
        &mut conn,
        "SELECT count(*)::bigint AS n FROM pg_stat_activity \
         WHERE application_name = 'payd-listen' AND datname = current_database()",
    );
    assert_eq!(listening, 2, "both listeners reconnected");
    balance(&b, &admin, id).await;
    actix_web::rt::time::sleep(bound * 2).await;
    let (seen, reloaded) = balance_reloaded(&b, &admin, id).await;
    assert!(!reloaded, "after the reconnect B answers from memory again: {seen}");
    assert_eq!(seen["balance"], 450_000);
    verify_clean(&a);
}

async fn me(app: &TestApp, token: &str) -> (u16, Value) {
    app.get("/api/v1/auth/me", Some(token)).await
}

async fn login(app: &TestApp, email: &str, password: &str) -> String {
    let (s, b) = app.login(email, password).await;
    assert_eq!(s, 200, "{b}");
    b["access_token"].as_str().unwrap().to_owned()
}

async fn assert_revoked_everywhere(apps: &[&TestApp], token: &str, what: &str) {
    actix_web::rt::time::sleep(Duration::from_millis(REVOCATION_STALENESS_MS + MARGIN_MS)).await;
    for (i, app) in apps.iter().enumerate() {
        let (s, b) = me(app, token).await;
        assert_eq!(s, 401, "{what}: instance {i} still accepts the session: {b}");
        assert_eq!(error_code(&b), "session_revoked", "{what}: instance {i}");
    }
}

/// Logout, password change and admin revocation on one instance stop the session on every instance
/// within `auth.revocation_staleness_ms` (at once on the instance that revoked it); sessions not
/// revoked keep working everywhere.
#[actix_web::test]
async fn revocation_reaches_every_instance_within_the_bound() {
    let settings = read_settings();
    let a = TestApp::spawn_with(settings.clone()).await;
    let b = TestApp::spawn_with(settings.clone()).await;
    let c = TestApp::spawn_with(settings).await;
    let all = [&a, &b, &c];
    let email = "revoked@example.com";
    let (uid, first, _) = a.user(email).await;
    let second = login(&b, email, PASSWORD).await;
    let third = login(&c, email, PASSWORD).await;
    for app in all {
        for t in [&first, &second, &third] {
            assert_eq!(me(app, t).await.0, 200);
        }
    }

    // 1. Logout on A.
    let (s, _) = a.call("POST", "/api/v1/auth/logout", Some(&first), None).await;
    assert_eq!(s, 204);
    assert_eq!(me(&a, &first).await.0, 401, "at once on the instance that revoked");
    assert_revoked_everywhere(&all, &first, "logout").await;
    assert_eq!(me(&b, &second).await.0, 200, "other sessions keep working");

    // 2. Password change through B: every other session (the third) stops; B's own stays.
    let new_password = "changed-pass-456";
    let (s, body) = b
        .post(
            "/api/v1/auth/password/change",
            Some(&second),
            json!({"current_password": PASSWORD, "new_password": new_password, "confirm_password": new_password}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_revoked_everywhere(&all, &third, "password change").await;
    for app in all {
        assert_eq!(me(app, &second).await.0, 200, "the session that changed the password stays");
    }

    // 3. An admin, through C, revokes the user's role: every session of the user stops.
    let fourth = login(&a, email, new_password).await;
    assert_eq!(me(&c, &fourth).await.0, 200);
    let admin = c.admin_token().await;
    let (s, body) = c.call("DELETE", &format!("/api/v1/users/{uid}/roles/user"), Some(&admin), None).await;
    assert!(s == 200 || s == 204, "{s} {body}");
    assert_revoked_everywhere(&all, &second, "admin revocation").await;
    assert_revoked_everywhere(&all, &fourth, "admin revocation").await;
    for app in all {
        assert_eq!(me(app, &admin).await.0, 200, "the admin's own session is untouched");
    }
}

/// `/auth/me` is cached per instance and invalidated by the database: a profile or role change made
/// through one instance shows on every instance within `auth.revocation_staleness_ms`.
#[actix_web::test]
async fn profile_changes_reach_every_instance_within_the_bound() {
    let settings = read_settings();
    let a = TestApp::spawn_with(settings.clone()).await;
    let b = TestApp::spawn_with(settings).await;
    let email = "profile@example.com";
    let (uid, token, _) = a.user(email).await;
    let admin = a.admin_token().await;
    // Warm both caches.
    for app in [&a, &b] {
        for _ in 0..3 {
            let (s, v) = me(app, &token).await;
            assert_eq!(s, 200, "{v}");
            assert_eq!(v["first_name"], "Test");
        }
    }
    let (s, v) =
        a.call("PATCH", &format!("/api/v1/users/{uid}"), Some(&admin), Some(json!({"first_name": "Renamed"}))).await;
    assert_eq!(s, 200, "{v}");
    actix_web::rt::time::sleep(Duration::from_millis(REVOCATION_STALENESS_MS + MARGIN_MS)).await;
    for app in [&a, &b] {
        let (s, v) = me(app, &token).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["first_name"], "Renamed", "{v}");
    }
    // A role granted through B shows on A (the cache on A still holds the old roles).
    let (s, v) = b.post(&format!("/api/v1/users/{uid}/roles"), Some(&admin), json!({"role": "admin"})).await;
    assert_eq!(s, 200, "{v}");
    actix_web::rt::time::sleep(Duration::from_millis(REVOCATION_STALENESS_MS + MARGIN_MS)).await;
    let fresh = login(&b, email, PASSWORD).await;
    let (s, v) = me(&a, &fresh).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["roles"].as_array().unwrap().iter().any(|r| r == "admin"), "{v}");
}

async fn card(app: &TestApp, token: &str, card: i64) -> Value {
    let (s, b) = app.get(&format!("/api/v1/cards/{card}"), Some(token)).await;
    assert_eq!(s, 200, "{b}");
    b
}

/// Two instances on one database, both caching a card: a change made through one instance shows on
/// that instance at once and on the other within `ledger.read_staleness_ms`, whichever field changed
/// and whichever instance changed it; the statement (which reads the card first) follows the owner's
/// access as before.
#[actix_web::test]
async fn card_changes_reach_every_instance_within_the_bound() {
    let settings = read_settings();
    let a = TestApp::spawn_with(settings.clone()).await;
    let b = TestApp::spawn_with(settings).await;
    let (_, owner) = {
        let (uid, token, _) = a.user("cardholder@example.com").await;
        (uid, token)
    };
    let (_, stranger, _) = a.user("stranger@example.com").await;
    let id = issue(&a, &owner).await;
    // Warm both caches.
    for app in [&a, &b] {
        for _ in 0..3 {
            assert_eq!(card(app, &owner, id).await["status"], "active");
        }
    }
    let bound = Duration::from_millis(READ_STALENESS_MS + MARGIN_MS);
    // (writer, reader, lifecycle action or a PATCH body, the field that changes, its new value)
    type Step<'a> = (&'a TestApp, &'a TestApp, &'a str, Option<Value>, &'a str, Value);
    let steps: [Step; 4] = [
        (&a, &b, "freeze", None, "status", json!("frozen")),
        (&b, &a, "unfreeze", None, "status", json!("active")),
        (&a, &b, "", Some(json!({"label": "groceries"})), "label", json!("groceries")),
        (&b, &a, "close", None, "status", json!("closed")),
    ];
    for (i, (writer, reader, action, patch, field, want)) in steps.into_iter().enumerate() {
        let (s, v) = match patch {
            Some(body) => writer.call("PATCH", &format!("/api/v1/cards/{id}"), Some(&owner), Some(body)).await,
            None => writer.post(&format!("/api/v1/cards/{id}/{action}"), Some(&owner), json!({})).await,
        };
        assert_eq!(s, 200, "step {i}: {v}");
        assert_eq!(card(writer, &owner, id).await[field], want, "step {i}: at once on the writer");
        actix_web::rt::time::sleep(bound).await;
        let seen = card(reader, &owner, id).await;
        assert_eq!(seen[field], want, "step {i}: on the other instance after the bound: {seen}");
        assert_eq!(seen, card(writer, &owner, id).await, "step {i}: both instances answer the same card");
    }
    // Someone else's card stays invisible through the cache (and its statement too).
    for app in [&a, &b] {
        let (s, _) = app.get(&format!("/api/v1/cards/{id}"), Some(&stranger)).await;
        assert_eq!(s, 404);
        let (s, _) = app.get(&format!("/api/v1/cards/{id}/statement"), Some(&stranger)).await;
        assert_eq!(s, 404);
        let (s, v) = app.get(&format!("/api/v1/cards/{id}/statement"), Some(&owner)).await;
        assert_eq!(s, 200, "{v}");
    }
    // A card changed behind the service's back (any code path, here plain SQL) is dropped too.
    {
        use diesel::RunQueryDsl;
        let mut conn = a.db();
        diesel::sql_query(format!("UPDATE cards SET label = 'by sql' WHERE id = {id}")).execute(&mut conn).unwrap();
    }
    actix_web::rt::time::sleep(bound).await;
    for app in [&a, &b] {
        assert_eq!(card(app, &owner, id).await["label"], "by sql");
    }
}

/// The operation lists as they were answered before they became one fixed statement: the same
/// filters as a query built per request (the former implementation, kept here as the reference),
/// page by page, for an admin and for card holders.
#[actix_web::test]
async fn operation_lists_answer_as_the_reference_query() {
    use diesel::prelude::*;
    use payd::payments::Operation;
    use payd::storage::schema::{cards, operations};

    let app = TestApp::spawn_with(read_settings()).await;
    let admin = app.admin_token().await;
    let (u1, t1, _) = app.user("lists-one@example.com").await;
    let (u2, t2, _) = app.user("lists-two@example.com").await;
    let (ca, cb, cc) = (issue(&app, &t1).await, issue(&app, &t1).await, issue(&app, &t2).await);
    let mut n = 0;
    let mut op = |token: String, path: &'static str, body: Value| {
        n += 1;
        let key = format!("list-{n}");
        let app = &app;
        async move { money(app, &token, path, &key, body).await }
    };
    for c in [ca, cb, cc] {
        let (s, v) =
            op(admin.clone(), "/api/v1/topups", json!({"card_id": c, "amount": 3_000_000, "method": "ovo"})).await;
        assert_eq!(s, 201, "{v}");
    }
    let mut transfer_ids = Vec::new();
    for (token, from, to, amount) in [
        (&t1, ca, cb, 100_000),
        (&t1, ca, cc, 200_000),
        (&t2, cc, ca, 50_000),
        (&t1, cb, cc, 70_000),
        (&t1, ca, cc, 90_000_000),
        (&t2, cc, cb, 60_000),
        (&t1, cb, ca, 80_000),
    ] {
        let (s, v) =
            op(token.clone(), "/api/v1/transfers", json!({"from_card_id": from, "to_card_id": to, "amount": amount}))
                .await;
        assert_eq!(s, if amount == 90_000_000 { 402 } else { 201 }, "{v}");
        if let Some(id) = v["id"].as_str() {
            transfer_ids.push(id.to_owned());
        }
    }
    let (s, v) = op(admin.clone(), "/api/v1/withdrawals", json!({"card_id": ca, "amount": 55_000})).await;
    assert_eq!(s, 201, "{v}");
    let first = transfer_ids.first().cloned().unwrap();
    let (s, v) = app.post(&format!("/api/v1/transfers/{first}/archive"), Some(&admin), json!({})).await;
    assert_eq!(s, 200, "{v}");

    // The former per-request query.
    struct Filter {
        kind: &'static str,
        user: Option<i64>,
        card: Option<i64>,
        from_card: Option<i64>,
        to_card: Option<i64>,
        status: Option<&'static str>,
        archived: Option<bool>,
    }
    let mut conn = app.db();
    let mut reference = |f: &Filter| -> Vec<String> {
        let mut q = operations::table
            .select(Operation::as_select())
            .filter(operations::kind.eq(f.kind))
            .order(operations::seq.desc())
            .into_boxed();
        if let Some(u) = f.user {
            let mine = cards::table.filter(cards::user_id.eq(u)).select(cards::id.nullable());
            q = q.filter(operations::source_card_id.eq_any(mine).or(operations::dest_card_id.eq_any(mine)));
        }
        if let Some(c) = f.card {
            q = q.filter(operations::source_card_id.eq(c).or(operations::dest_card_id.eq(c)));
        }
        if let Some(c) = f.from_card {
            q = q.filter(operations::source_card_id.eq(c));
        }
        if let Some(c) = f.to_card {
            q = q.filter(operations::dest_card_id.eq(c));
        }
        if let Some(s) = f.status {
            q = q.filter(operations::status.eq(s));
        }
        q = match f.archived {
            Some(false) => q.filter(operations::archived_at.is_null()),
            Some(true) => q.filter(operations::archived_at.is_not_null()),
            None => q,
        };
        q.load::<Operation>(&mut conn).unwrap().into_iter().map(|o| o.id.to_string()).collect()
    };
    let (mut checked, mut paged) = (0, 0);
    for (token, user) in [(&admin, None), (&t1, Some(u1)), (&t2, Some(u2))] {
        for kind in ["transfer", "topup", "withdrawal"] {
            for card in [None, Some(ca), Some(cb), Some(cc)] {
                for (from_card, to_card) in [(None, None), (Some(ca), None), (None, Some(cc)), (Some(cb), Some(ca))] {
                    for status in [None, Some("success"), Some("failed")] {
                        for archived in [Some(false), Some(true), None] {
                            let f = Filter { kind, user, card, from_card, to_card, status, archived };
                            let want = reference(&f);
                            let mut query = vec![format!("limit={}", if checked % 2 == 0 { 2 } else { 20 })];
                            let params = [("card_id", card), ("from_card_id", from_card), ("to_card_id", to_card)];
                            for (name, v) in params {
                                if let Some(v) = v {
                                    query.push(format!("{name}={v}"));
                                }
                            }
                            if let Some(s) = status {
                                query.push(format!("status={s}"));
                            }
                            query.push(
                                match archived {
                                    Some(false) => "archived=active",
                                    Some(true) => "archived=archived",
                                    None => "archived=all",
                                }
                                .to_owned(),
                            );
                            let segment = format!("{kind}s");
                            let mut got = Vec::new();
                            let mut cursor: Option<String> = None;
                            loop {
                                let mut q = query.clone();
                                if let Some(c) = &cursor {
                                    q.push(format!("cursor={c}"));
                                }
                                let path = format!("/api/v1/{segment}?{}", q.join("&"));
                                let (s, page) = app.get(&path, Some(token)).await;
                                assert_eq!(s, 200, "{path}: {page}");
                                for item in page["items"].as_array().unwrap() {
                                    got.push(item["id"].as_str().unwrap().to_owned());
                                }
                                match page["next_cursor"].as_str() {
                                    Some(c) => cursor = Some(c.to_owned()),
                                    None => break,
                                }
                            }
                            assert_eq!(got, want, "{segment}?{} as user {user:?}", query.join("&"));
                            checked += 1;
                            if got.len() > 2 {
                                paged += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 3 * 3 * 4 * 4 * 3 * 3);
    assert!(paged > 50, "only {paged} lists longer than a page: the data does not exercise the lists");
}

/// Follows `next_cursor` from `path` (which has a query string) to the end; every item's `field`.
async fn all_pages(app: &TestApp, token: &str, path: &str, field: &str) -> Vec<Value> {
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_owned(),
        };
        let (s, page) = app.get(&url, Some(token)).await;
        assert_eq!(s, 200, "{url}: {page}");
        got.extend(page["items"].as_array().unwrap().iter().map(|i| i[field].clone()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return got,
        }
    }
}

/// Card lists (two fixed statements now) and statements (the card from the cache, then one fixed
/// statement) answer as the queries built per request did (kept here as the reference), page by page.
#[actix_web::test]
async fn card_lists_and_statements_answer_as_the_reference_queries() {
    use diesel::prelude::*;
    use payd::storage::schema::{cards, operations, postings};

    let app = TestApp::spawn_with(read_settings()).await;
    let admin = app.admin_token().await;
    let (u1, t1, _) = app.user("cards-one@example.com").await;
    let (u2, t2, _) = app.user("cards-two@example.com").await;
    let mut mine = Vec::new();
    for t in [&t1, &t1, &t2, &t1, &t2, &t1] {
        mine.push(issue(&app, t).await);
    }
    let (s, v) = app.post(&format!("/api/v1/cards/{}/freeze", mine[1]), Some(&t1), json!({})).await;
    assert_eq!(s, 200, "{v}");
    for action in ["close", "archive"] {
        let (s, v) = app.post(&format!("/api/v1/cards/{}/{action}", mine[3]), Some(&t1), json!({})).await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = app.post(&format!("/api/v1/cards/{}/close", mine[4]), Some(&t2), json!({})).await;
    assert_eq!(s, 200, "{v}");

    let mut conn = app.db();
    let mut checked = 0;
    for (token, user, path_user) in
        [(&admin, None, None), (&admin, Some(u1), None), (&t1, Some(u1), None), (&t2, Some(u2), Some(u2))]
    {
        for status in [None, Some("active"), Some("frozen"), Some("closed")] {
            for archived in ["active", "archived", "all"] {
                let mut q = cards::table.select(cards::id).order(cards::id.desc()).into_boxed();
                if let Some(u) = user {
                    q = q.filter(cards::user_id.eq(u));
                }
                if let Some(s) = status {
                    q = q.filter(cards::status.eq(s));
                }
                q = match archived {
                    "active" => q.filter(cards::archived_at.is_null()),
                    "archived" => q.filter(cards::archived_at.is_not_null()),
                    _ => q,
                };
                let want: Vec<Value> = q.load::<i64>(&mut conn).unwrap().into_iter().map(Value::from).collect();
                let mut query = format!("limit=2&archived={archived}");
                if let Some(s) = status {
                    query.push_str(&format!("&status={s}"));
                }
                let path = match (path_user, user) {
                    (Some(u), _) => format!("/api/v1/users/{u}/cards?{query}"),
                    (None, Some(u)) if token == &admin => format!("/api/v1/cards?user_id={u}&{query}"),
                    _ => format!("/api/v1/cards?{query}"),
                };
                assert_eq!(all_pages(&app, token, &path, "id").await, want, "{path}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4 * 4 * 3);

    // Statements: a card with postings on both sides, whole and in time windows.
    let (a, b) = (mine[0], mine[2]);
    let mut n = 0;
    for (token, path, body) in [
        (&admin, "/api/v1/topups", json!({"card_id": a, "amount": 1_000_000, "method": "ovo"})),
        (&admin, "/api/v1/topups", json!({"card_id": b, "amount": 1_000_000, "method": "ovo"})),
        (&t1, "/api/v1/transfers", json!({"from_card_id": a, "to_card_id": b, "amount": 100_000})),
        (&t2, "/api/v1/transfers", json!({"from_card_id": b, "to_card_id": a, "amount": 60_000})),
        (&admin, "/api/v1/withdrawals", json!({"card_id": a, "amount": 70_000})),
        (&t1, "/api/v1/transfers", json!({"from_card_id": a, "to_card_id": b, "amount": 50_000})),
    ] {
        n += 1;
        let (s, v) = money(&app, token, path, &format!("st-{n}"), body).await;
        assert_eq!(s, 201, "{v}");
    }
    let account: i64 = cards::table.find(a).select(cards::account_id).first(&mut conn).unwrap();
    let times: Vec<DateTime<Utc>> = postings::table
        .filter(postings::account_id.eq(account))
        .order(postings::id)
        .select(postings::created_at)
        .load(&mut conn)
        .unwrap();
    assert_eq!(times.len(), 5);
    let param = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true).replace('+', "%2B");
    for (from, to) in [(None, None), (Some(times[1]), None), (None, Some(times[3])), (Some(times[2]), Some(times[4]))] {
        let mut q = postings::table
            .inner_join(operations::table)
            .filter(postings::account_id.eq(account))
            .select((postings::id, operations::kind, postings::amount, postings::balance_after))
            .order(postings::id.desc())
            .into_boxed();
        if let Some(f) = from {
            q = q.filter(postings::created_at.ge(f));
        }
        if let Some(t) = to {
            q = q.filter(postings::created_at.le(t));
        }
        let want: Vec<(i64, String, i64, i64)> = q.load(&mut conn).unwrap();
        assert!(!want.is_empty());
        let mut path = format!("/api/v1/cards/{a}/statement?limit=2");
        if let Some(f) = &from {
            path.push_str(&format!("&from={}", param(f)));
        }
        if let Some(t) = &to {
            path.push_str(&format!("&to={}", param(t)));
        }
        for token in [&admin, &t1] {
            let ids = all_pages(&app, token, &path, "posting_id").await;
            let kinds = all_pages(&app, token, &path, "kind").await;
            let amounts = all_pages(&app, token, &path, "amount").await;
            let after = all_pages(&app, token, &path, "balance_after").await;
            let got: Vec<(i64, String, i64, i64)> = (0..ids.len())
                .map(|i| {
                    (
                        ids[i].as_i64().unwrap(),
                        kinds[i].as_str().unwrap().to_owned(),
                        amounts[i].as_i64().unwrap(),
                        after[i].as_i64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{path}");
        }
        let (s, _) = app.get(&path, Some(&t2)).await;
        assert_eq!(s, 404, "someone else's statement");
    }
}

/// A statement window far behind the newest posting (`to` days back, on a card with newer postings)
/// returns that window's postings, newest first, page by page — with and without `from` — and the
/// newer postings stay out of it (`payd_statement_page` walks `postings (account_id, created_at, id)`
/// from `to`).
#[actix_web::test]
async fn statement_far_back_window_returns_its_own_postings() {
    use diesel::prelude::*;
    use payd::storage::schema::{cards, postings};

    let app = TestApp::spawn_with(read_settings()).await;
    let admin = app.admin_token().await;
    let (_, t1, _) = app.user("far-back@example.com").await;
    let card = issue(&app, &t1).await;
    for n in 0..7 {
        let body = json!({"card_id": card, "amount": 100_000 + n, "method": "ovo"});
        let (s, v) = money(&app, &admin, "/api/v1/topups", &format!("far-{n}"), body).await;
        assert_eq!(s, 201, "{v}");
    }
    let mut conn = app.db();
    let account: i64 = cards::table.find(card).select(cards::account_id).first(&mut conn).unwrap();
    let ids: Vec<i64> = postings::table
        .filter(postings::account_id.eq(account))
        .order(postings::id)
        .select(postings::id)
        .load(&mut conn)
        .unwrap();
    assert_eq!(ids.len(), 7);
    // The three oldest postings move three days back, one minute apart; the four newer stay now.
    let base = Utc::now() - chrono::Duration::days(3);
    for (i, id) in ids[..3].iter().enumerate() {
        let at = base + chrono::Duration::minutes(i64::try_from(i).unwrap());
        diesel::update(postings::table.find(id)).set(postings::created_at.eq(at)).execute(&mut conn).unwrap();
    }
    let param = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true).replace('+', "%2B");
    let want = |lo: usize, hi: usize| -> Vec<Value> { ids[lo..hi].iter().rev().map(|i| Value::from(*i)).collect() };
    let cases = [
        // a day around the moved postings
        (Some(base - chrono::Duration::hours(12)), base + chrono::Duration::hours(12), want(0, 3)),
        // up to the second moved posting, no lower bound
        (None, base + chrono::Duration::seconds(90), want(0, 2)),
        // from the second moved posting to the third, both bounds inclusive
        (Some(base + chrono::Duration::minutes(1)), base + chrono::Duration::minutes(2), want(1, 3)),
        // before every posting
        (None, base - chrono::Duration::days(1), Vec::new()),
    ];
    for (from, to, want) in cases {
        let mut path = format!("/api/v1/cards/{card}/statement?limit=2&to={}", param(to));
        if let Some(f) = from {
            path.push_str(&format!("&from={}", param(f)));
        }
        assert_eq!(all_pages(&app, &t1, &path, "posting_id").await, want, "{path}");
    }
    // Without a window the page is the newest postings, the moved ones last.
    let path = format!("/api/v1/cards/{card}/statement?limit=3");
    assert_eq!(all_pages(&app, &t1, &path, "posting_id").await, want(0, 7));
}
