//! The service's incremental invariant check (`ledger::verify::run_recent`): each round covers exactly
//! the postings committed since the previous one, and it catches a stored balance or a running
//! balance that does not match the postings.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use serde_json::json;

use crate::common::*;
use payd::ledger::verify::{last_posting, run, run_recent, run_recent_bounded};

fn failing(report: &payd::ledger::verify::Report) -> Vec<&'static str> {
    report.checks.iter().filter(|c| c.violations > 0).map(|c| c.name).collect()
}

#[actix_web::test]
async fn incremental_rounds_cover_new_postings_and_catch_tampering() {
    let app = TestApp::spawn().await;
    let api = app.api();
    let admin = api.admin_token().await;
    let (_, token) = api.verified_user(&admin, "vera@example.com").await;
    let a = api.issue_card(&token, "debit", None, None).await;
    let b = api.issue_card(&token, "debit", None, None).await;
    let mut conn = app.db();
    let start = last_posting(&mut conn).unwrap();

    let pay = |key: &'static str, path: &'static str, body: serde_json::Value| {
        let (api, token) = (api.clone(), token.clone());
        async move {
            let r = api.money(&token, path, key, &body).await.unwrap();
            assert_eq!(r.status, 201, "{}", r.body);
        }
    };
    pay("v1", "/api/v1/topups", json!({"card_id": a, "amount": 900_000, "method": "ovo"})).await;
    pay("v2", "/api/v1/transfers", json!({"from_card_id": a, "to_card_id": b, "amount": 200_000})).await;

    // The first round covers the four new postings and finds nothing wrong.
    let (report, next) = run_recent(&mut conn, start).unwrap();
    assert_eq!(report.postings, 4, "{report}");
    assert!(report.is_clean(), "{report}");
    assert!(next > start);
    // Nothing new: an empty round.
    let (report, again) = run_recent(&mut conn, next).unwrap();
    assert_eq!((report.postings, again), (0, next));

    pay("v3", "/api/v1/withdrawals", json!({"card_id": b, "amount": 100_000})).await;
    let (report, next2) = run_recent(&mut conn, next).unwrap();
    assert_eq!(report.postings, 2, "{report}");
    assert!(report.is_clean(), "{report}");

    // Tamper with card a's stored balance: a round that covers a's postings sees it, the full verify
    // too; a round over a window without a's postings does not look at a.
    let account_a = scalar(&mut conn, &format!("SELECT account_id AS n FROM cards WHERE id = {a}"));
    conn.batch_execute(&format!("UPDATE accounts SET balance = balance + 1 WHERE id = {account_a}")).unwrap();
    assert_eq!(
        failing(&run_recent(&mut conn, start).unwrap().0),
        vec!["touched accounts store their latest running balance"]
    );
    assert!(run_recent(&mut conn, next2).unwrap().0.is_clean());
    assert!(!run(&mut conn).unwrap().is_clean());
    conn.batch_execute(&format!("UPDATE accounts SET balance = balance - 1 WHERE id = {account_a}")).unwrap();
    assert!(run_recent(&mut conn, start).unwrap().0.is_clean());

    // Tamper with a running balance in the middle of b's history: that posting breaks the chain.
    let mid = scalar(
        &mut conn,
        &format!(
            "SELECT p.id AS n FROM postings p JOIN cards c ON c.account_id = p.account_id \
             WHERE c.id = {b} ORDER BY p.id LIMIT 1"
        ),
    );
    conn.batch_execute(&format!("UPDATE postings SET balance_after = balance_after + 5 WHERE id = {mid}")).unwrap();
    let (report, _) = run_recent(&mut conn, start).unwrap();
    assert!(failing(&report).contains(&"new postings continue their account's running balance"), "{report}");
}

/// A posting whose running balance dips below its account's floor is caught by the full check and by
/// the incremental round, even when the account ends above its floor (a debit covered later by a
/// credit would otherwise pass unnoticed).
#[actix_web::test]
async fn a_posting_below_its_floor_is_caught() {
    let app = TestApp::spawn().await;
    let api = app.api();
    let admin = api.admin_token().await;
    let (_, token) = api.verified_user(&admin, "flora@example.com").await;
    let a = api.issue_card(&token, "debit", None, None).await;
    let mut conn = app.db();
    let start = last_posting(&mut conn).unwrap();
    let r = api.money(&token, "/api/v1/topups", "f1", &json!({"card_id": a, "amount": 300_000, "method": "ovo"})).await;
    assert_eq!(r.unwrap().status, 201);
    assert!(run(&mut conn).unwrap().is_clean());

    // Rewrite the card's only posting as if it had first gone 1 below the floor (0 for a debit card):
    // the running-balance chain is broken too, but the floor check must name it on its own.
    let account = scalar(&mut conn, &format!("SELECT account_id AS n FROM cards WHERE id = {a}"));
    conn.batch_execute(&format!("UPDATE postings SET balance_after = -1 WHERE account_id = {account}")).unwrap();
    let full = run(&mut conn).unwrap();
    assert!(failing(&full).contains(&"no posting leaves its account below its floor"), "{full}");
    let (recent, _) = run_recent(&mut conn, start).unwrap();
    assert!(failing(&recent).contains(&"new postings keep their account at or above its floor"), "{recent}");
}

#[actix_web::test]
async fn a_bounded_round_stops_at_its_window_and_the_next_rounds_catch_up() {
    let app = TestApp::spawn().await;
    let api = app.api();
    let admin = api.admin_token().await;
    let (_, token) = api.verified_user(&admin, "bounded@example.com").await;
    let a = api.issue_card(&token, "debit", None, None).await;
    let b = api.issue_card(&token, "debit", None, None).await;
    let mut conn = app.db();
    let start = last_posting(&mut conn).unwrap();
    for (key, path, body) in [
        ("b1", "/api/v1/topups", json!({"card_id": a, "amount": 900_000, "method": "ovo"})),
        ("b2", "/api/v1/transfers", json!({"from_card_id": a, "to_card_id": b, "amount": 200_000})),
        ("b3", "/api/v1/withdrawals", json!({"card_id": b, "amount": 100_000})),
    ] {
        let r = api.money(&token, path, key, &body).await.unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let end = last_posting(&mut conn).unwrap();
    assert_eq!(scalar(&mut conn, &format!("SELECT count(*) AS n FROM postings WHERE id > {start}")), 6);

    // Windows of one posting id: a window cuts an entry in half, and its check still reads the whole
    // entry (clean); each round but the last says more is already committed.
    let (mut from, mut covered, mut rounds) = (start, 0, 0);
    loop {
        let (report, next, more) = run_recent_bounded(&mut conn, from, 1).unwrap();
        assert!(report.is_clean(), "{report}");
        assert!(next > from || !more, "a round that is behind must advance");
        covered += report.postings;
        rounds += 1;
        from = next;
        if !more {
            break;
        }
        assert!(rounds < 100, "the rounds never caught up");
    }
    assert_eq!((from, covered), (end, 6));
    assert!(rounds >= 6, "six one-id windows at least, got {rounds}");
    // Caught up: an empty round that is not behind.
    let (report, next, more) = run_recent_bounded(&mut conn, from, 1).unwrap();
    assert_eq!((report.postings, next, more), (0, end, false));

    // A one-id window over a tampered posting sees it.
    diesel::sql_query(format!("UPDATE postings SET balance_after = balance_after + 1 WHERE id = {end}"))
        .execute(&mut conn)
        .unwrap();
    let (report, _, _) = run_recent_bounded(&mut conn, end - 1, 1).unwrap();
    assert!(failing(&report).contains(&"new postings continue their account's running balance"), "{report}");
}
