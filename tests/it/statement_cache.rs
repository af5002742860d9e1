//! The first statement page answered from memory (`cards::statements`): validated by the account's
//! version as its actor knows it, so it is the database's page on the instance that committed (at
//! once) and on every other instance within `ledger.read_staleness_ms`; and the search within a card
//! whose match is older than the card's newest 2,000 operations (`payd_operation_page`'s second step).
//! Behaviour only: the waits are the configured bound plus a margin, never a measurement.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use diesel::prelude::*;
use futures::StreamExt;
use payd::storage::schema::{cards, operations, postings};
use serde_json::{json, Value};

use crate::common::*;
use crate::reads::{issue, money, read_settings, MARGIN_MS, READ_STALENESS_MS};

/// A statement line as compared: (posting, operation, kind, amount, balance after).
type Line = (i64, String, String, i64, i64);

fn account_of(conn: &mut PgConnection, card: i64) -> i64 {
    cards::table.find(card).select(cards::account_id).first(conn).unwrap()
}

/// The account's postings with an id at most `upto`, newest first, at most `limit + 1` of them.
fn reference(conn: &mut PgConnection, account: i64, upto: i64, limit: i64) -> Vec<Line> {
    let rows: Vec<(i64, uuid::Uuid, String, i64, i64)> = postings::table
        .inner_join(operations::table)
        .filter(postings::account_id.eq(account))
        .filter(postings::id.le(upto))
        .order(postings::id.desc())
        .limit(limit + 1)
        .select((postings::id, postings::operation_id, operations::kind, postings::amount, postings::balance_after))
        .load(conn)
        .unwrap();
    rows.into_iter().map(|(p, o, k, a, b)| (p, o.to_string(), k, a, b)).collect()
}

/// The first page of the card's statement (`limit` as given, or the default 20).
async fn first_page(app: &TestApp, token: &str, card: i64, limit: Option<i64>) -> (Vec<Line>, bool) {
    let path = match limit {
        Some(l) => format!("/api/v1/cards/{card}/statement?limit={l}"),
        None => format!("/api/v1/cards/{card}/statement"),
    };
    let (s, page) = app.get(&path, Some(token)).await;
    assert_eq!(s, 200, "{path}: {page}");
    let lines = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["posting_id"].as_i64().unwrap(),
                i["operation_id"].as_str().unwrap().to_owned(),
                i["kind"].as_str().unwrap().to_owned(),
                i["amount"].as_i64().unwrap(),
                i["balance_after"].as_i64().unwrap(),
            )
        })
        .collect();
    (lines, page["next_cursor"].is_string())
}

/// The page is exactly the database's page as of its newest posting: the same lines and the same
/// "more" as the account's postings up to that one.
fn assert_exact(conn: &mut PgConnection, account: i64, page: &(Vec<Line>, bool), limit: i64, what: &str) {
    let Some(newest) = page.0.first() else {
        assert!(
            reference(conn, account, i64::MAX, limit).is_empty(),
            "{what}: empty page for an account with postings"
        );
        return;
    };
    let mut want = reference(conn, account, newest.0, limit);
    let more = want.len() > usize::try_from(limit).unwrap();
    want.truncate(usize::try_from(limit).unwrap());
    assert_eq!(page.0, want, "{what}");
    assert_eq!(page.1, more, "{what}: next_cursor");
}

fn posting_of(conn: &mut PgConnection, account: i64, op: &str) -> i64 {
    postings::table
        .filter(postings::account_id.eq(account))
        .filter(postings::operation_id.eq(op.parse::<uuid::Uuid>().unwrap()))
        .select(postings::id)
        .first(conn)
        .unwrap()
}

/// Cards driven at once through top-ups, withdrawals and transfers to each other (so each card's
/// account also moves under other tasks): after every 201 the first statement page read on the same
/// instance — from memory or not, at the default limit and at smaller ones — holds that operation's
/// posting (or newer ones) and is exactly the database's page. Reversals and archiving/restoring an
/// operation are reflected as the database answers them (archiving does not change a statement).
#[actix_web::test]
async fn statement_first_page_reads_your_writes_storm() {
    let app = TestApp::spawn_with(read_settings()).await;
    let admin = app.admin_token().await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(issue(&app, &admin).await);
    }
    let accounts: Vec<i64> = {
        let mut conn = app.db();
        ids.iter().map(|&c| account_of(&mut conn, c)).collect()
    };
    let tasks = ids.iter().enumerate().map(|(n, &card)| {
        let (app, admin, ids, account) = (&app, &admin, &ids, accounts[n]);
        async move {
            let mut conn = app.db();
            for i in 0..14usize {
                let (path, body) = match i % 4 {
                    0 | 1 => ("/api/v1/topups", json!({"card_id": card, "amount": 400_000, "method": "ovo"})),
                    2 => ("/api/v1/withdrawals", json!({"card_id": card, "amount": 60_000})),
                    _ => (
                        "/api/v1/transfers",
                        json!({"from_card_id": card, "to_card_id": ids[(n + 1) % ids.len()], "amount": 70_000}),
                    ),
                };
                let (s, op) = money(app, admin, path, &format!("st-{card}-{i}"), body).await;
                assert_eq!(s, 201, "{op}");
                let mine = posting_of(&mut conn, account, op["id"].as_str().unwrap());
                for limit in [None, Some(3), Some(1), Some(20)] {
                    let page = first_page(app, admin, card, limit).await;
                    let what = format!("card {card} after op {i}, limit {limit:?}");
                    assert!(page.0.first().is_some_and(|l| l.0 >= mine), "{what}: the new posting is missing");
                    assert_exact(&mut conn, account, &page, limit.unwrap_or(20), &what);
                }
            }
        }
    });
    futures::future::join_all(tasks).await;

    // Quiet now: every card's page (cached) is the database's newest page, page after page too.
    let mut conn = app.db();
    for (&card, &account) in ids.iter().zip(&accounts) {
        for _ in 0..2 {
            let page = first_page(&app, &admin, card, Some(5)).await;
            assert_eq!(page.0.first().map(|l| l.0), reference(&mut conn, account, i64::MAX, 0).first().map(|l| l.0));
            assert_exact(&mut conn, account, &page, 5, "quiet");
        }
    }

    // A reversal adds postings: on the first page at once. Archiving and restoring an operation do
    // not change a statement, which answers as the database does.
    let (card, account) = (ids[0], accounts[0]);
    let (s, w) =
        money(&app, &admin, "/api/v1/withdrawals", "st-last-w", json!({"card_id": card, "amount": 55_000})).await;
    assert_eq!(s, 201, "{w}");
    let wid = w["id"].as_str().unwrap().to_owned();
    let before = first_page(&app, &admin, card, Some(4)).await;
    let (s, r) = money(&app, &admin, &format!("/api/v1/withdrawals/{wid}/reversal"), "st-rev", json!({})).await;
    assert_eq!(s, 201, "{r}");
    let after = first_page(&app, &admin, card, Some(4)).await;
    assert_eq!(after.0[0].1, r["id"].as_str().unwrap(), "the reversal heads the page");
    assert_eq!(after.0[0].4, before.0[0].4 + 55_000);
    assert_exact(&mut conn, account, &after, 4, "after the reversal");
    for action in ["archive", "restore"] {
        let (s, v) = app.post(&format!("/api/v1/withdrawals/{wid}/{action}"), Some(&admin), json!({})).await;
        assert_eq!(s, 200, "{action}: {v}");
        let page = first_page(&app, &admin, card, Some(4)).await;
        assert_eq!(page, after, "{action} leaves the statement as it was");
        assert_exact(&mut conn, account, &page, 4, action);
    }
    let verify = payd::ledger::verify::run(&mut conn).unwrap();
    assert!(verify.is_clean(), "{verify}");
}

/// Two instances on one database, both serving the card's first page from memory: a commit made
/// through one shows on its first page at once there, and on the other within
/// `ledger.read_staleness_ms`, both ways; the card's owner and an admin see the same page, someone
/// else gets 404 as before.
#[actix_web::test]
async fn statement_across_instances_within_the_bound() {
    let settings = read_settings();
    let a = TestApp::spawn_with(settings.clone()).await;
    let b = TestApp::spawn_with(settings).await;
    let admin = a.admin_token().await;
    let (_, owner, _) = a.user("statement-owner@example.com").await;
    let (_, stranger, _) = a.user("statement-stranger@example.com").await;
    let card = issue(&a, &owner).await;
    let mut conn = a.db();
    let account = account_of(&mut conn, card);
    let (s, op) =
        money(&a, &admin, "/api/v1/topups", "x-1", json!({"card_id": card, "amount": 900_000, "method": "ovo"})).await;
    assert_eq!(s, 201, "{op}");
    // Both instances cache the page.
    for app in [&a, &b] {
        for _ in 0..3 {
            let page = first_page(app, &owner, card, None).await;
            assert_eq!(page.0.len(), 1);
            assert_exact(&mut conn, account, &page, 20, "warm");
        }
    }
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
        let mine = first_page(writer, &owner, card, None).await;
        assert_eq!(mine.0[0].1, op["id"].as_str().unwrap(), "round {i}: at once on the writer");
        assert_exact(&mut conn, account, &mine, 20, "writer");
        actix_web::rt::time::sleep(bound).await;
        let theirs = first_page(reader, &owner, card, None).await;
        assert_eq!(theirs, mine, "round {i}: on the other instance after the bound");
        assert_eq!(first_page(reader, &admin, card, Some(2)).await.0, mine.0[..2].to_vec());
    }
    for app in [&a, &b] {
        let (s, _) = app.get(&format!("/api/v1/cards/{card}/statement"), Some(&stranger)).await;
        assert_eq!(s, 404, "someone else's statement");
    }
}

/// A search within a card (`card_id` + `search`) whose match is older than the card's newest 2,000
/// operations: `payd_operation_page` finds the newer matches among those 2,000 and the older one
/// through `operations_card_search`, page by page, as a query over all of the card's operations.
#[actix_web::test]
async fn card_search_finds_matches_older_than_the_newest_2000() {
    let app = TestApp::spawn_with(settings()).await;
    let admin = app.admin_token().await;
    let (_, holder, _) = app.user("search-holder@example.com").await;
    let card = issue(&app, &holder).await;
    let topup = |key: String, method: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let body = json!({"card_id": card, "amount": 50_000, "method": method});
            let (s, v) = money(app, admin, "/api/v1/topups", &key, body).await;
            assert_eq!(s, 201, "{v}");
            v["id"].as_str().unwrap().to_owned()
        }
    };
    let oldest = topup("old-ovo".into(), "ovo").await;
    // 2,050 newer top-ups by another method, at once (the ledger batches them), one more "ovo" among
    // the newest.
    let bulk: Vec<String> =
        futures::stream::iter(0..2050).map(|i| topup(format!("bulk-{i}"), "bca")).buffer_unordered(32).collect().await;
    assert_eq!(bulk.len(), 2050);
    let newer = topup("new-ovo".into(), "ovo").await;
    for _ in 0..5 {
        topup(uuid::Uuid::new_v4().to_string(), "bca").await;
    }
    let mut conn = app.db();
    let oldest_seq: i64 =
        operations::table.find(oldest.parse::<uuid::Uuid>().unwrap()).select(operations::seq).first(&mut conn).unwrap();
    let newer_than_oldest: i64 = operations::table
        .filter(operations::dest_card_id.eq(card))
        .filter(operations::seq.gt(oldest_seq))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert!(newer_than_oldest > 2000, "the oldest match is behind the newest 2,000 ({newer_than_oldest})");

    let ids = |p: &Value| -> Vec<String> {
        p["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
    };
    for token in [&holder, &admin] {
        // Both matches on one page: the newer from the first step, the older from the index.
        let (s, p) = app.get(&format!("/api/v1/topups?card_id={card}&search=ovo"), Some(token)).await;
        assert_eq!(s, 200, "{p}");
        assert_eq!(ids(&p), vec![newer.clone(), oldest.clone()], "{p}");
        assert!(p["next_cursor"].is_null(), "{p}");
        // One per page: the second page is the older match alone.
        let (s, p) = app.get(&format!("/api/v1/topups?card_id={card}&search=ovo&limit=1"), Some(token)).await;
        assert_eq!((s, ids(&p)), (200, vec![newer.clone()]), "{p}");
        let cursor = p["next_cursor"].as_str().unwrap().to_owned();
        let (s, p) =
            app.get(&format!("/api/v1/topups?card_id={card}&search=ovo&limit=1&cursor={cursor}"), Some(token)).await;
        assert_eq!((s, ids(&p)), (200, vec![oldest.clone()]), "{p}");
        // A term nothing matches: an empty page, not an error.
        let (s, p) = app.get(&format!("/api/v1/topups?card_id={card}&search=nomatch"), Some(token)).await;
        assert_eq!((s, ids(&p)), (200, Vec::<String>::new()), "{p}");
        // A common term fills the page from the newest 2,000 alone.
        let (s, p) = app.get(&format!("/api/v1/topups?card_id={card}&search=bca&limit=7"), Some(token)).await;
        assert_eq!(s, 200, "{p}");
        let want: Vec<String> = operations::table
            .filter(operations::dest_card_id.eq(card))
            .filter(operations::method.eq("bca"))
            .order(operations::seq.desc())
            .limit(7)
            .select(operations::id)
            .load::<uuid::Uuid>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(ids(&p), want, "{p}");
    }
}
