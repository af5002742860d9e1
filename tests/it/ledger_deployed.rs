//! The money path as it is deployed: several instances on one database, clients that retry the same
//! Idempotency-Key while the first request still runs, transient database failures and faults inside
//! actors and writer threads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use futures::future::join_all;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::common::money::*;
use crate::common::{self, scalar, TestApp};
use crate::ledger_crash::{free_port, Payd};

fn deadlocks(conn: &mut PgConnection) -> i64 {
    scalar(conn, "SELECT COALESCE(sum(deadlocks), 0)::bigint AS n FROM pg_stat_database")
}

/// Sends `body` under `key` to each of `apis` at once (a client retrying on another instance while its
/// first attempt still runs); retries a 503 with the same key. Returns every final reply.
async fn send_everywhere(apis: &[&Api], token: &str, path: &str, key: &str, body: &Value) -> Vec<Reply> {
    join_all(apis.iter().map(|api| async move {
        for _ in 0..50 {
            let r = api.money(token, path, key, body).await.unwrap();
            if r.status != 503 {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{path} {key}: still 503 after retries");
    }))
    .await
}

/// Three `payd` processes on one database. Every card is funded through one instance and spent through
/// the others at once, each request sent to two random instances concurrently (a client retrying
/// elsewhere). Funded operations are never declined, every key is applied once, the ledger verifies,
/// and PostgreSQL saw no deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_ledger_without_false_declines() {
    let db_url = common::fresh_database();
    let prefix = format!("payd-multi:{}:", uuid::Uuid::new_v4().simple());
    let log = std::env::temp_dir().join(format!("payd-multi-{}.log", uuid::Uuid::new_v4().simple()));
    eprintln!("payd logs: {}", log.display());
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut procs = Vec::new();
    for p in &ports {
        procs.push(Payd::start(&db_url, *p, &prefix, &log));
    }
    let apis: Vec<Api> = ports.iter().map(|p| Api::new(format!("http://127.0.0.1:{p}"))).collect();
    for a in &apis {
        a.wait_ready(Duration::from_secs(120)).await;
    }
    let mut conn = PgConnection::establish(&db_url).unwrap();
    let deadlocks_before = deadlocks(&mut conn);

    let admin = apis[0].admin_token().await;
    let mut users = Vec::new();
    for u in 0..4 {
        let (_, token) = apis[u % 3].verified_user(&admin, &format!("multi{u}@example.com")).await;
        let mut cards = Vec::new();
        for _ in 0..2 {
            cards.push(apis[u % 3].issue_card(&token, "debit", None, None).await);
        }
        users.push((token, cards));
    }

    let mut rng = StdRng::seed_from_u64(8);
    let mut declined = Vec::new();
    let mut keys = 0usize;
    for round in 0..6 {
        // Fund every card through one instance...
        let mut funding = Vec::new();
        for (u, (token, cards)) in users.iter().enumerate() {
            for (c, card) in cards.iter().enumerate() {
                let api = &apis[(u + c + round) % 3];
                let key = format!("fund-{round}-{u}-{c}");
                funding.push(async move {
                    let r = api
                        .money(
                            token,
                            "/api/v1/topups",
                            &key,
                            &json!({"card_id": card, "amount": 400_000, "method": "ovo"}),
                        )
                        .await
                        .unwrap();
                    assert_eq!(r.status, 201, "{key}: {}", r.body);
                });
                keys += 1;
            }
        }
        join_all(funding).await;
        // ...then spend exactly that money through the other instances, each request twice at once.
        let mut spending = Vec::new();
        for (u, (token, cards)) in users.iter().enumerate() {
            for (c, card) in cards.iter().enumerate() {
                let home = (u + c + round) % 3;
                let other = |k: usize| &apis[(home + 1 + k) % 3];
                let (a, b) = (other(rng.gen_range(0..2)), other(rng.gen_range(0..2)));
                let dest = cards[(c + 1) % cards.len()];
                let (first_key, second_key) = (format!("spend-{round}-{u}-{c}-a"), format!("spend-{round}-{u}-{c}-b"));
                let token = token.as_str();
                let card = *card;
                spending.push(async move {
                    let w = send_everywhere(
                        &[a, b],
                        token,
                        "/api/v1/withdrawals",
                        &first_key,
                        &json!({"card_id": card, "amount": 150_000}),
                    )
                    .await;
                    let t = send_everywhere(
                        &[b, a],
                        token,
                        "/api/v1/transfers",
                        &second_key,
                        &json!({"from_card_id": card, "to_card_id": dest, "amount": 250_000}),
                    )
                    .await;
                    (first_key, w, second_key, t)
                });
                keys += 2;
            }
        }
        for (k1, w, k2, t) in join_all(spending).await {
            for (k, replies) in [(k1, w), (k2, t)] {
                let originals: Vec<&Reply> = replies.iter().filter(|r| !r.replayed).collect();
                assert_eq!(originals.len(), 1, "{k}: exactly one attempt executes: {replies:?}");
                for r in &replies {
                    assert_eq!(r.body["id"], replies[0].body["id"], "{k}: every attempt answers the same operation");
                    assert_eq!(r.status, replies[0].status, "{k}");
                    if r.status != 201 {
                        declined.push(format!("{k}: {} {}", r.status, r.body));
                    }
                }
            }
        }
    }
    // Each card received 400,000 per round and sent 400,000 (incoming transfers only add).
    assert!(declined.is_empty(), "funded operations were declined: {declined:#?}");

    // A card frozen through one instance is refused through another; unfrozen, it is spendable there at once.
    let (token, cards) = &users[0];
    let card = cards[0];
    for api in &apis[1..] {
        let r = api
            .money(
                token,
                "/api/v1/withdrawals",
                &format!("warm-{}", api.base),
                &json!({"card_id": card, "amount": 50_000}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = apis[0].call("POST", &format!("/api/v1/cards/{card}/freeze"), Some(token), Some(&json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = apis[1]
        .money(token, "/api/v1/withdrawals", "frozen-1", &json!({"card_id": card, "amount": 50_000}))
        .await
        .unwrap();
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (402, Some("card_frozen")), "{}", r.body);
    let r = apis[0].call("POST", &format!("/api/v1/cards/{card}/unfreeze"), Some(token), Some(&json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = apis[2]
        .money(token, "/api/v1/withdrawals", "thawed-1", &json!({"card_id": card, "amount": 50_000}))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "a card unfrozen elsewhere is spendable at once: {}", r.body);
    let r = apis[1]
        .money(token, "/api/v1/withdrawals", "thawed-2", &json!({"card_id": card, "amount": 50_000}))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "an instance that saw the card frozen reloads it: {}", r.body);

    // Every key applied once, money conserved, every invariant holds, no deadlock.
    let applied = scalar(
        &mut conn,
        "SELECT count(*)::bigint AS n FROM idempotency_keys k JOIN operations o ON o.id = k.operation_id \
         WHERE k.key LIKE 'fund-%' OR k.key LIKE 'spend-%'",
    );
    assert_eq!(usize::try_from(applied).unwrap(), keys);
    let ops = scalar(&mut conn, "SELECT count(*)::bigint AS n FROM operations");
    let with_keys =
        scalar(&mut conn, "SELECT count(*)::bigint AS n FROM idempotency_keys WHERE operation_id IS NOT NULL");
    assert_eq!(ops, with_keys, "one operation per key");
    assert_verify_clean(&mut conn, "after the three-instance storm");
    assert_money_supply(&mut conn);
    assert_eq!(deadlocks(&mut conn), deadlocks_before, "PostgreSQL reported deadlocks");
    drop(procs);
}

/// The same request sent many times at once answers the same operation every time, executes once, and
/// a different body under the key is refused; the same holds across two instances on one database.
#[actix_web::test]
async fn concurrent_retries_answer_the_original_result() {
    let settings = common::settings();
    let first = TestApp::spawn_with(settings.clone()).await;
    let second = TestApp::spawn_with(settings).await;
    let (a, b) = (first.api(), second.api());
    let admin = a.admin_token().await;
    let (_, token) = a.verified_user(&admin, "retry@example.com").await;
    let card = a.issue_card(&token, "debit", None, None).await;
    let dest = a.issue_card(&token, "debit", None, None).await;
    let r = a
        .money(&token, "/api/v1/topups", "seed", &json!({"card_id": card, "amount": 1_000_000, "method": "ovo"}))
        .await
        .unwrap();
    assert_eq!(r.status, 201);

    for (round, apis) in [(0, vec![&a]), (1, vec![&a, &b])] {
        let key = format!("same-{round}");
        let body = json!({"from_card_id": card, "to_card_id": dest, "amount": 100_000});
        let other = json!({"from_card_id": card, "to_card_id": dest, "amount": 200_000});
        let sends = (0..16).map(|i| {
            let (api, key, token) = (apis[i % apis.len()], key.clone(), token.clone());
            let body = if i == 7 { other.clone() } else { body.clone() };
            async move { (i, api.money(&token, "/api/v1/transfers", &key, &body).await.unwrap()) }
        });
        let replies: Vec<(usize, Reply)> = join_all(sends).await;
        let winner =
            replies.iter().find(|(_, r)| r.status == 201).map(|(i, r)| (*i == 7, r.body["id"].clone())).unwrap();
        let mut executed = 0;
        for (i, r) in &replies {
            let same_body = (*i == 7) == winner.0;
            if same_body {
                assert_eq!(r.status, 201, "round {round} send {i}: {}", r.body);
                assert_eq!(r.body["id"], winner.1, "round {round} send {i}: the original answer");
                executed += usize::from(!r.replayed);
            } else {
                assert_eq!(
                    (r.status, r.body["error"]["code"].as_str()),
                    (409, Some("idempotency_conflict")),
                    "{}",
                    r.body
                );
            }
        }
        assert_eq!(executed, 1, "round {round}: exactly one execution");
    }
    let mut conn = first.db();
    assert_eq!(scalar(&mut conn, "SELECT count(*)::bigint AS n FROM operations WHERE kind = 'transfer'"), 2);
    assert_eq!(scalar(&mut conn, "SELECT count(*)::bigint AS n FROM operations WHERE status = 'failed'"), 0);
    assert_verify_clean(&mut conn, "after concurrent retries");
}

fn topup(card: i64, amount: i64) -> Value {
    json!({"card_id": card, "amount": amount, "method": "ovo"})
}

/// Transient failures of the writer's connection are retried, or answered 503 with nothing recorded;
/// a retry of the same key then succeeds. No database text reaches the client.
#[actix_web::test]
async fn transient_database_failures_record_nothing() {
    let mut settings = common::settings();
    settings.ledger.writer_lock_timeout_ms = 200;
    settings.ledger.commit_retries = 1;
    let app = TestApp::spawn_with(settings).await;
    let api = app.api();
    let admin = api.admin_token().await;
    let (_, token) = api.verified_user(&admin, "transient@example.com").await;
    let card = api.issue_card(&token, "debit", None, None).await;
    let mut conn = app.db();
    assert_eq!(api.money(&token, "/api/v1/topups", "t0", &topup(card, 100_000)).await.unwrap().status, 201);

    // The writer's connection is terminated under it: the batch is retried on a new connection.
    let killed = scalar(
        &mut conn,
        "SELECT count(pg_terminate_backend(pid))::bigint AS n FROM pg_stat_activity \
         WHERE application_name = 'payd-ledger-writer' AND datname = current_database()",
    );
    assert!(killed >= 1, "the writer's connection is visible by its application_name");
    let r = api.money(&token, "/api/v1/topups", "t1", &topup(card, 100_000)).await.unwrap();
    assert_eq!(r.status, 201, "after a lost connection: {}", r.body);

    // A lock held past the writer's lock timeout: 503 with Retry-After, nothing recorded under the key.
    let account = scalar(&mut conn, &format!("SELECT account_id AS n FROM cards WHERE id = {card}"));
    let mut locker = PgConnection::establish(app.settings.database.url.expose()).unwrap();
    locker.batch_execute(&format!("BEGIN; SELECT 1 FROM accounts WHERE id = {account} FOR UPDATE;")).unwrap();
    let (status, headers, body) = app
        .call_full("POST", "/api/v1/topups", Some(&token), Some(topup(card, 100_000)), &[("Idempotency-Key", "t2")])
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(headers.get("retry-after").is_some(), "503 carries Retry-After");
    let text = body.to_string().to_lowercase();
    assert!(
        !text.contains("lock") && !text.contains("timeout") && !text.contains("statement"),
        "no database text: {body}"
    );
    assert_eq!(scalar(&mut conn, "SELECT count(*)::bigint AS n FROM idempotency_keys WHERE key = 't2'"), 0);
    assert_eq!(scalar(&mut conn, "SELECT count(*)::bigint AS n FROM operations WHERE status = 'failed'"), 0);
    locker.batch_execute("ROLLBACK").unwrap();
    let r = api.money(&token, "/api/v1/topups", "t2", &topup(card, 100_000)).await.unwrap();
    assert_eq!((r.status, r.replayed), (201, false), "the retried key executes: {}", r.body);
    assert_eq!(scalar(&mut conn, &format!("SELECT balance AS n FROM accounts WHERE id = {account}")), 300_000);
    assert_verify_clean(&mut conn, "after transient failures");
}

/// A panic inside an account actor restarts it with its state reloaded and its reservations
/// released; a panicking writer thread resumes; neither leaves anything half-applied, and the
/// instance stays ready.
#[actix_web::test]
async fn actor_and_writer_panics_are_recovered() {
    let app = TestApp::spawn().await;
    let api = app.api();
    let admin = api.admin_token().await;
    let (_, token) = api.verified_user(&admin, "faults@example.com").await;
    let card = api.issue_card(&token, "debit", None, None).await;
    let mut conn = app.db();
    let account = scalar(&mut conn, &format!("SELECT account_id AS n FROM cards WHERE id = {card}"));
    assert_eq!(api.money(&token, "/api/v1/topups", "f0", &topup(card, 500_000)).await.unwrap().status, 201);

    payd_actors::faults::panic_next_reserve(account);
    let r = api.money(&token, "/api/v1/withdrawals", "f1", &json!({"card_id": card, "amount": 200_000})).await.unwrap();
    assert_eq!(r.status, 503, "the request whose handler panicked: {}", r.body);
    assert_eq!(scalar(&mut conn, "SELECT count(*)::bigint AS n FROM idempotency_keys WHERE key = 'f1'"), 0);
    // The restarted actor reloaded its balance and holds no reservation: the whole balance is spendable.
    let r = api.money(&token, "/api/v1/withdrawals", "f1", &json!({"card_id": card, "amount": 200_000})).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api.money(&token, "/api/v1/withdrawals", "f2", &json!({"card_id": card, "amount": 300_000})).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);

    payd_actors::faults::panic_next_writer_batches(1);
    let r = api.money(&token, "/api/v1/topups", "f3", &topup(card, 100_000)).await.unwrap();
    assert_eq!(r.status, 503, "the batch whose writer panicked: {}", r.body);
    assert_eq!(scalar(&mut conn, "SELECT count(*)::bigint AS n FROM idempotency_keys WHERE key = 'f3'"), 0);
    let r = api.money(&token, "/api/v1/topups", "f3", &topup(card, 100_000)).await.unwrap();
    assert_eq!(r.status, 201, "the writer resumed: {}", r.body);
    let ready = api.call("GET", "/readyz", None, None).await;
    assert_eq!((ready.status, ready.body["checks"]["ledger"].as_str()), (200, Some("ok")), "{}", ready.body);
    assert_eq!(scalar(&mut conn, &format!("SELECT balance AS n FROM accounts WHERE id = {account}")), 100_000);
    assert_verify_clean(&mut conn, "after faults");
}
