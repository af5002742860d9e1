//! Notification preferences: the defaults (top-ups, withdrawals and payments e-mailed; transfers from
//! the configured threshold), validation of `PUT /api/v1/notifications/preferences`, and what an
//! opt-out costs: no e-mail job and no dedupe row for an event that sends nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use diesel::prelude::*;
use serde_json::{json, Value};

use crate::common;
use crate::events_support::*;

const PATH: &str = "/api/v1/notifications/preferences";
/// The test configuration's threshold (IDR 10,000.00), so the test moves small amounts.
const THRESHOLD: i64 = 1_000_000;

fn prefs_settings() -> payd::config::Settings {
    let mut s = common::settings();
    s.notifications.transfer_min_amount = THRESHOLD;
    s
}

/// Waits until every event is published (with the in-process broker, once its consumers handled it)
/// and every e-mail sent.
async fn settled(app: &EvApp) {
    let mut conn = app.db();
    eventually(Duration::from_secs(20), "outbox published and handled", || {
        count(&mut conn, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL") == 0
            && count(&mut conn, "SELECT count(*) AS n FROM email_jobs WHERE status = 'pending'") == 0
    })
    .await;
}

/// Jobs and notifier dedupe rows of the newest event of `event_type`.
fn written_for(conn: &mut PgConnection, event_type: &str) -> (i64, i64) {
    let id = format!("(SELECT event_id FROM outbox WHERE event_type = '{event_type}' ORDER BY id DESC LIMIT 1)");
    (
        count(conn, &format!("SELECT count(*) AS n FROM email_jobs WHERE event_id = {id}")),
        count(
            conn,
            &format!("SELECT count(*) AS n FROM processed_events WHERE consumer = 'notifier' AND event_id = {id}"),
        ),
    )
}

async fn money(app: &EvApp, token: &str, path: &str, key: &str, body: Value) {
    let r = app.api.money(token, path, key, &body).await.unwrap();
    assert_eq!(r.status, 201, "{path}: {}", r.body);
}

#[actix_web::test]
async fn defaults_follow_the_configuration_and_bad_choices_are_refused() {
    let app = EvApp::spawn(prefs_settings()).await;
    let api = &app.api;
    let admin = api.admin_token().await;
    let (_, token) = api.verified_user(&admin, "prefs.defaults@example.com").await;

    let r = api.call("GET", PATH, None, None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = api.call("GET", PATH, Some(&token), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"topups": true, "withdrawals": true, "payments": true, "transfers": true,
               "transfer_min_amount": THRESHOLD, "default": true})
    );

    let good =
        json!({"topups": false, "withdrawals": true, "payments": true, "transfers": true, "transfer_min_amount": 0});
    for (bad, field) in [
        (
            json!({"topups": false, "withdrawals": true, "payments": true, "transfers": true, "transfer_min_amount": -1}),
            Some("transfer_min_amount"),
        ),
        (
            json!({"topups": false, "withdrawals": true, "payments": true, "transfers": true,
                "transfer_min_amount": app.settings.money.max_amount + 1}),
            Some("transfer_min_amount"),
        ),
        (json!({"topups": false, "withdrawals": true, "payments": true, "transfers": true}), None),
        (
            json!({"topups": false, "withdrawals": true, "payments": true, "transfers": true, "transfer_min_amount": 0,
                "sms": true}),
            None,
        ),
        (
            json!({"topups": "no", "withdrawals": true, "payments": true, "transfers": true, "transfer_min_amount": 0}),
            None,
        ),
    ] {
        let r = api.call("PUT", PATH, Some(&token), Some(&bad)).await;
        assert!(r.status == 422 || r.status == 400, "{bad}: {} {}", r.status, r.body);
        assert!(r.body["error"]["code"].is_string(), "{}", r.body);
        if let Some(f) = field {
            assert_eq!(r.status, 422, "{}", r.body);
            assert_eq!(r.body["error"]["field"], f, "{}", r.body);
        }
    }
    // Nothing was stored by the refused requests.
    let r = api.call("GET", PATH, Some(&token), None).await;
    assert_eq!(r.body["default"], true, "{}", r.body);

    let r = api.call("PUT", PATH, Some(&token), Some(&good)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api.call("GET", PATH, Some(&token), None).await;
    assert_eq!(
        r.body,
        json!({"topups": false, "withdrawals": true, "payments": true, "transfers": true,
               "transfer_min_amount": 0, "default": false})
    );
}

#[actix_web::test]
async fn an_opt_out_writes_nothing_and_transfers_are_mailed_from_the_threshold() {
    let app = EvApp::spawn(prefs_settings()).await;
    let api = &app.api;
    let admin = api.admin_token().await;
    let (_, ann) = api.verified_user(&admin, "prefs.ann@example.com").await;
    let (_, ben) = api.verified_user(&admin, "prefs.ben@example.com").await;
    let a = api.issue_card(&ann, "debit", None, None).await;
    let b = api.issue_card(&ben, "debit", None, None).await;
    let mut conn = app.db();

    // Defaults: a top-up is e-mailed.
    money(&app, &ann, "/api/v1/topups", "t1", json!({"card_id": a, "amount": 5_000_000, "method": "ovo"})).await;
    settled(&app).await;
    assert_eq!(written_for(&mut conn, "topup.completed"), (1, 1));

    // Ann opts out of top-ups: her next top-up leaves no job and no dedupe row.
    let off = json!({"topups": false, "withdrawals": true, "payments": true, "transfers": true,
                     "transfer_min_amount": THRESHOLD});
    let r = api.call("PUT", PATH, Some(&ann), Some(&off)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    money(&app, &ann, "/api/v1/topups", "t2", json!({"card_id": a, "amount": 60_000, "method": "ovo"})).await;
    settled(&app).await;
    assert_eq!(written_for(&mut conn, "topup.completed"), (0, 0));

    // A transfer below both users' threshold: nothing written.
    money(&app, &ann, "/api/v1/transfers", "x1", json!({"from_card_id": a, "to_card_id": b, "amount": THRESHOLD - 1}))
        .await;
    settled(&app).await;
    assert_eq!(written_for(&mut conn, "transfer.completed"), (0, 0));

    // At the threshold: sender and receiver are both e-mailed, one dedupe row.
    money(&app, &ann, "/api/v1/transfers", "x2", json!({"from_card_id": a, "to_card_id": b, "amount": THRESHOLD}))
        .await;
    settled(&app).await;
    assert_eq!(written_for(&mut conn, "transfer.completed"), (2, 1));

    // Ben turns transfers off: only Ann (sender) hears of the next one.
    let no_transfers = json!({"topups": true, "withdrawals": true, "payments": true, "transfers": false,
                              "transfer_min_amount": 0});
    let r = api.call("PUT", PATH, Some(&ben), Some(&no_transfers)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    money(&app, &ann, "/api/v1/transfers", "x3", json!({"from_card_id": a, "to_card_id": b, "amount": THRESHOLD}))
        .await;
    settled(&app).await;
    assert_eq!(written_for(&mut conn, "transfer.completed"), (1, 1));
    let to_ben = count(
        &mut conn,
        "SELECT count(*) AS n FROM email_jobs WHERE to_address = 'prefs.ben@example.com' AND template LIKE 'transfer%'",
    );
    assert_eq!(to_ben, 1, "only the transfer before Ben opted out");
}
