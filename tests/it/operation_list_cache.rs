//! A card's first operation-list page answered from memory (`payments::lists`): validated by the
//! account's version and the change feed, so it is the database's page on the instance that committed
//! (at once: successes, failed attempts, archiving) and on every other instance within
//! `ledger.read_staleness_ms`. Behaviour only: the waits are the configured bound plus a margin, never
//! a measurement.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use diesel::prelude::*;
use futures::StreamExt;
use payd::storage::schema::operations;
use serde_json::{json, Value};

use crate::common::*;
use crate::reads::{issue, money, read_settings, reads_counted, MARGIN_MS};

/// The bound of these tests: the default, so the feed's heartbeats (every quarter of it) arrive in
/// time on a loaded test machine.
const BOUND_MS: u64 = 1_000;

/// An operation as compared: (id, status, archived).
type Row = (String, String, bool);

fn list_reads(outcome: &str) -> f64 {
    reads_counted("operation_list_read", outcome)
}

/// `GET /api/v1/{segment}?card_id=…&limit=…` (plus `extra`): the items and whether more follow.
async fn list(app: &TestApp, token: &str, segment: &str, card: i64, limit: i64, extra: &str) -> (Vec<Value>, bool) {
    let path = format!("/api/v1/{segment}?card_id={card}&limit={limit}{extra}");
    let (s, page) = app.get(&path, Some(token)).await;
    assert_eq!(s, 200, "{path}: {page}");
    (page["items"].as_array().unwrap().clone(), page["next_cursor"].is_string())
}

fn rows(items: &[Value]) -> Vec<Row> {
    items
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["status"].as_str().unwrap().to_owned(),
                !i["archived_at"].is_null(),
            )
        })
        .collect()
}

/// The card's operations of `kind` not archived, with a commit order at most `upto`, newest first,
/// at most `limit + 1`.
fn reference(conn: &mut PgConnection, kind: &str, card: i64, upto: i64, limit: i64) -> Vec<Row> {
    let found: Vec<(uuid::Uuid, String)> = operations::table
        .filter(operations::kind.eq(kind))
        .filter(operations::source_card_id.eq(card).or(operations::dest_card_id.eq(card)))
        .filter(operations::archived_at.is_null())
        .filter(operations::seq.le(upto))
        .order(operations::seq.desc())
        .limit(limit + 1)
        .select((operations::id, operations::status))
        .load(conn)
        .unwrap();
    found.into_iter().map(|(id, s)| (id.to_string(), s, false)).collect()
}

fn seq_of(conn: &mut PgConnection, id: &str) -> i64 {
    operations::table.find(id.parse::<uuid::Uuid>().unwrap()).select(operations::seq).first(conn).unwrap()
}

/// The page is exactly the database's page as of its newest operation: the same operations and the
/// same "more" as the card's operations up to that one.
fn assert_exact(conn: &mut PgConnection, kind: &str, card: i64, page: &(Vec<Value>, bool), limit: i64, what: &str) {
    let got = rows(&page.0);
    let upto = got.first().map_or(i64::MAX, |r| seq_of(conn, &r.0));
    let mut want = reference(conn, kind, card, upto, limit);
    let more = want.len() > usize::try_from(limit).unwrap();
    want.truncate(usize::try_from(limit).unwrap());
    assert_eq!(got, want, "{what}");
    assert_eq!(page.1, more, "{what}: next_cursor");
}

/// The id of the operation a money call answered with: the body itself (201) or its `operation` (a
/// recorded failure).
fn op_id(body: &Value) -> String {
    body["id"]
        .as_str()
        .or_else(|| body["operation"]["id"].as_str())
        .unwrap_or_else(|| panic!("no operation: {body}"))
        .to_owned()
}

/// Cards driven at once through transfers to each other (some refused for want of funds, recorded as
/// failed attempts) and top-ups: after every answer, the card's first transfer page read on the same
/// instance — at the default limit and at smaller ones — holds that operation and is exactly the
/// database's page. Archiving and restoring a transfer show at once. Most reads came from memory.
#[actix_web::test]
async fn operation_list_first_page_reads_your_writes_storm() {
    let mut settings = read_settings();
    settings.ledger.read_staleness_ms = BOUND_MS;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(issue(&app, &admin).await);
    }
    // The feed vouches once its listener is subscribed and a heartbeat is back.
    actix_web::rt::time::sleep(Duration::from_millis(2 * (BOUND_MS + MARGIN_MS))).await;
    let memory_before = list_reads("memory");
    let tasks = ids.iter().enumerate().map(|(n, &card)| {
        let (app, admin, ids) = (&app, &admin, &ids);
        async move {
            let mut conn = app.db();
            let mut failed = 0;
            for i in 0..16usize {
                let to = ids[(n + 1 + i % 3) % ids.len()];
                let (path, body) = match i % 4 {
                    0 => ("/api/v1/topups", json!({"card_id": card, "amount": 300_000, "method": "ovo"})),
                    // More than the card can ever hold: a failed attempt, recorded.
                    3 => ("/api/v1/transfers", json!({"from_card_id": card, "to_card_id": to, "amount": 90_000_000})),
                    _ => ("/api/v1/transfers", json!({"from_card_id": card, "to_card_id": to, "amount": 60_000})),
                };
                let (s, op) = money(app, admin, path, &format!("ol-{card}-{i}"), body).await;
                let id = op_id(&op);
                if i % 4 == 3 {
                    assert_eq!(s, 402, "{op}");
                    failed += 1;
                } else {
                    assert_eq!(s, 201, "{op}");
                }
                let segment = if i % 4 == 0 { "topups" } else { "transfers" };
                let kind = if i % 4 == 0 { "topup" } else { "transfer" };
                for limit in [20, 4] {
                    // Twice: the second read of an unchanged page comes from memory.
                    for _ in 0..2 {
                        let page = list(app, admin, segment, card, limit, "").await;
                        let what = format!("card {card}, step {i}, limit {limit}");
                        assert!(
                            rows(&page.0).iter().any(|r| r.0 == id),
                            "{what}: the operation just answered is missing: {:?}",
                            rows(&page.0)
                        );
                        assert_exact(&mut conn, kind, card, &page, limit, &what);
                    }
                }
            }
            failed
        }
    });
    let failed: i32 = futures::stream::iter(tasks).buffer_unordered(6).collect::<Vec<_>>().await.into_iter().sum();
    assert_eq!(failed, 6 * 4);
    let mut conn = app.db();
    // Archiving hides a transfer at once, restoring shows it again.
    let card = ids[0];
    let (page, _) = list(&app, &admin, "transfers", card, 20, "").await;
    let target = page.iter().find(|i| i["status"] == "success").unwrap()["id"].as_str().unwrap().to_owned();
    let (s, v) = app.post(&format!("/api/v1/transfers/{target}/archive"), Some(&admin), json!({})).await;
    assert_eq!(s, 200, "{v}");
    let page = list(&app, &admin, "transfers", card, 20, "").await;
    assert!(!rows(&page.0).iter().any(|r| r.0 == target), "archived, still listed");
    assert_exact(&mut conn, "transfer", card, &page, 20, "after archiving");
    let (s, v) = app.post(&format!("/api/v1/transfers/{target}/restore"), Some(&admin), json!({})).await;
    assert_eq!(s, 200, "{v}");
    let page = list(&app, &admin, "transfers", card, 20, "").await;
    assert!(rows(&page.0).iter().any(|r| r.0 == target), "restored, not listed");
    assert_exact(&mut conn, "transfer", card, &page, 20, "after restoring");
    let served = list_reads("memory") - memory_before;
    assert!(served >= 6.0 * 16.0, "the second read of each unchanged page comes from memory: {served}");
}

/// Two instances on one database: a successful transfer, a failed attempt (no version change) and
/// archiving or restoring made through A show in B's cached page after the bound; in between, B
/// answers unchanged pages from memory. A holder sees the page the database path gives (the other
/// user's card masked).
#[actix_web::test]
async fn operation_lists_across_instances_within_the_bound() {
    let mut settings = read_settings();
    settings.ledger.read_staleness_ms = BOUND_MS;
    let a = TestApp::spawn_with(settings.clone()).await;
    let b = TestApp::spawn_with(settings).await;
    let admin = a.admin_token().await;
    let (_, holder, _) = a.user("list-cache-holder@example.com").await;
    let mine = issue(&a, &holder).await;
    let theirs = issue(&a, &admin).await;
    for (card, key) in [(mine, "x-1"), (theirs, "x-2")] {
        let (s, op) =
            money(&a, &admin, "/api/v1/topups", key, json!({"card_id": card, "amount": 500_000, "method": "ovo"}))
                .await;
        assert_eq!(s, 201, "{op}");
    }
    let bound = Duration::from_millis(BOUND_MS + MARGIN_MS);
    actix_web::rt::time::sleep(bound * 2).await;
    let mut conn = a.db();
    // Reads B twice after the bound: the page is the database's, and the second read came from memory.
    let settled = |step: &'static str| {
        let (b, admin) = (&b, &admin);
        async move {
            actix_web::rt::time::sleep(bound).await;
            let first = list(b, admin, "transfers", mine, 20, "").await;
            let memory = list_reads("memory");
            let second = list(b, admin, "transfers", mine, 20, "").await;
            assert!(list_reads("memory") > memory, "{step}: an unchanged page is read from the database again");
            assert_eq!(rows(&first.0), rows(&second.0), "{step}");
            first
        }
    };
    let (s, ok) = money(
        &a,
        &admin,
        "/api/v1/transfers",
        "x-t1",
        json!({"from_card_id": mine, "to_card_id": theirs, "amount": 70_000}),
    )
    .await;
    assert_eq!(s, 201, "{ok}");
    let ok = op_id(&ok);
    let page = settled("before").await;
    assert_eq!(rows(&page.0), vec![(ok.clone(), "success".to_owned(), false)]);
    // A failed attempt through A: no account version moves, the trigger tells B.
    let (s, refused) = money(
        &a,
        &admin,
        "/api/v1/transfers",
        "x-t2",
        json!({"from_card_id": mine, "to_card_id": theirs, "amount": 90_000_000}),
    )
    .await;
    assert_eq!(s, 402, "{refused}");
    let refused = op_id(&refused);
    let page = settled("after the failed attempt").await;
    assert_eq!(
        rows(&page.0),
        vec![(refused.clone(), "failed".to_owned(), false), (ok.clone(), "success".to_owned(), false)],
        "B shows A's failed attempt after the bound"
    );
    assert_exact(&mut conn, "transfer", mine, &page, 20, "B after the failed attempt");
    // Archived through A: hidden on B after the bound; restored: back.
    let (s, v) = a.post(&format!("/api/v1/transfers/{ok}/archive"), Some(&admin), json!({})).await;
    assert_eq!(s, 200, "{v}");
    let page = settled("after archiving").await;
    assert_eq!(rows(&page.0), vec![(refused.clone(), "failed".to_owned(), false)], "archived on A, hidden on B");
    let (s, v) = a.post(&format!("/api/v1/transfers/{ok}/restore"), Some(&admin), json!({})).await;
    assert_eq!(s, 200, "{v}");
    let page = settled("after restoring").await;
    assert_eq!(rows(&page.0).len(), 2, "restored on A, listed on B");
    // A transfer into the card through A: listed on B after the bound.
    let (s, back) = money(
        &a,
        &admin,
        "/api/v1/transfers",
        "x-t3",
        json!({"from_card_id": theirs, "to_card_id": mine, "amount": 50_000}),
    )
    .await;
    assert_eq!(s, 201, "{back}");
    let back = op_id(&back);
    let page = settled("after a transfer in").await;
    assert_eq!(rows(&page.0)[0].0, back);
    assert_exact(&mut conn, "transfer", mine, &page, 20, "B after a transfer in");
    // The holder, on B: the cached page (twice, the second from memory) is what the database path
    // answers (a window forces it), with the other user's card masked.
    let cached = list(&b, &holder, "transfers", mine, 20, "").await;
    let memory = list_reads("memory");
    let again = list(&b, &holder, "transfers", mine, 20, "").await;
    assert!(list_reads("memory") > memory, "the holder's page from memory");
    let database = list(&b, &holder, "transfers", mine, 20, "&to=2999-01-01T00:00:00Z").await;
    assert_eq!(cached.0, database.0, "the holder's cached page and the database's");
    assert_eq!(again.0, database.0);
    for item in &cached.0 {
        assert!(item["dest_card_id"] != json!(theirs) && item["source_card_id"] != json!(theirs), "{item}");
    }
    assert!(cached.0.iter().any(|i| i["dest_card_masked"].is_string() || i["source_card_masked"].is_string()));
}
