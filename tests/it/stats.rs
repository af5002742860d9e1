//! Statistics: every family and scope reconciled against a direct SQL aggregation of operations and
//! postings over random operations spread across months; the incremental job catching up within
//! seconds; access for every statistics route; calendar edge cases in the platform time zone; bad
//! input answered 4xx naming the parameter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::common::merchant::{
    active_merchant, create_key, issue_card, keyed, merchant_settings, topup, verified, TestCard,
};
use crate::common::*;

const TZ: &str = "America/New_York";

fn stats_settings() -> payd::config::Settings {
    let mut s = merchant_settings();
    s.stats.time_zone = TZ.into();
    s.stats.interval_ms = 200;
    s
}

async fn money(app: &TestApp, token: &str, path: &str, body: Value) -> (u16, Value) {
    let key = uuid::Uuid::new_v4().simple().to_string();
    let (s, _, b) = app.call_full("POST", path, Some(token), Some(body), &[("Idempotency-Key", key.as_str())]).await;
    (s, b)
}

struct World {
    admin: String,
    alice: String,
    bob: String,
    owner: String,
    other_owner: String,
    cards: Vec<TestCard>,
    merchant: i64,
    key1: (i64, String),
    key2: (i64, String),
    other_merchant: i64,
    other_key: (i64, String),
}

async fn world(app: &TestApp) -> World {
    let admin = app.admin_token().await;
    let (_, alice) = verified(app, &admin, "alice@stats.test").await;
    let (_, bob) = verified(app, &admin, "bob@stats.test").await;
    let (_, owner) = verified(app, &admin, "owner@stats.test").await;
    let (_, other_owner) = verified(app, &admin, "other@stats.test").await;
    let mut cards = Vec::new();
    for t in [&alice, &alice, &bob] {
        cards.push(issue_card(app, t).await);
    }
    let merchant = active_merchant(app, &admin, &owner, "Stats Shop").await;
    let key1 = create_key(app, &owner, merchant, "k1").await;
    let key2 = create_key(app, &owner, merchant, "k2").await;
    let other_merchant = active_merchant(app, &admin, &other_owner, "Other Shop").await;
    let other_key = create_key(app, &other_owner, other_merchant, "k").await;
    World { admin, alice, bob, owner, other_owner, cards, merchant, key1, key2, other_merchant, other_key }
}

fn token_of(w: &World, card: usize) -> &str {
    if card < 2 {
        &w.alice
    } else {
        &w.bob
    }
}

/// Random operations of every kind: top-ups (several methods), withdrawals, transfers, payments
/// through two keys, refunds, reversals, and failures (insufficient funds, wrong CVV).
async fn random_operations(app: &TestApp, w: &World, rng: &mut StdRng, n: usize) {
    let methods = ["bca", "ovo", "dana"];
    for (i, _) in w.cards.iter().enumerate() {
        topup(app, token_of(w, i), w.cards[i].id, 5_000_000).await;
    }
    let mut topups = Vec::new();
    let mut transfers = Vec::new();
    let mut payments: Vec<(String, String, i64)> = Vec::new();
    for step in 0..n {
        let c = rng.gen_range(0..w.cards.len());
        let t = token_of(w, c);
        let amount = rng.gen_range(50_000..400_000_i64);
        match rng.gen_range(0..10) {
            0 | 1 => {
                let m = methods[rng.gen_range(0..methods.len())];
                let (s, b) =
                    money(app, t, "/api/v1/topups", json!({"card_id": w.cards[c].id, "amount": amount, "method": m}))
                        .await;
                if s == 201 {
                    topups.push(b["id"].as_str().unwrap().to_owned());
                }
            }
            2 => {
                // Sometimes more than the balance: a failed withdrawal.
                let amount = if rng.gen_bool(0.2) { 900_000_000 } else { amount };
                money(app, t, "/api/v1/withdrawals", json!({"card_id": w.cards[c].id, "amount": amount})).await;
            }
            3 | 4 => {
                let d = (c + rng.gen_range(1..w.cards.len())) % w.cards.len();
                let amount = if rng.gen_bool(0.15) { 900_000_000 } else { amount };
                let (s, b) = money(
                    app,
                    t,
                    "/api/v1/transfers",
                    json!({"from_card_id": w.cards[c].id, "to_card_id": w.cards[d].id, "amount": amount}),
                )
                .await;
                if s == 201 {
                    transfers.push(b["id"].as_str().unwrap().to_owned());
                }
            }
            5..=7 => {
                let key = if rng.gen_bool(0.5) { &w.key1.1 } else { &w.key2.1 };
                let mut body = w.cards[c].pay(&format!("order-{step}"), amount);
                if rng.gen_bool(0.5) {
                    body["method"] = json!("mastercard");
                }
                if rng.gen_bool(0.1) {
                    body["cvv"] = json!(w.cards[c].wrong_cvv());
                }
                let (s, b) = keyed(app, "POST", "/api/v1/payments", key, &format!("p-{step}"), Some(body)).await;
                if s == 201 {
                    payments.push((b["id"].as_str().unwrap().to_owned(), key.clone(), amount));
                }
            }
            8 => {
                if let Some((id, key, amount)) = payments.pop() {
                    let part = if rng.gen_bool(0.5) { amount } else { amount / 2 };
                    keyed(
                        app,
                        "POST",
                        &format!("/api/v1/payments/{id}/refunds"),
                        &key,
                        &format!("r-{step}"),
                        Some(json!({"amount": part})),
                    )
                    .await;
                }
            }
            _ => {
                let (path, list) =
                    if rng.gen_bool(0.5) { ("topups", &mut topups) } else { ("transfers", &mut transfers) };
                if let Some(id) = list.pop() {
                    money(app, &w.admin, &format!("/api/v1/{path}/{id}/reversal"), json!({})).await;
                }
            }
        }
    }
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn stats_checks_clean(conn: &mut PgConnection) {
    for c in payd::stats::rollup::verify(conn).unwrap() {
        assert_eq!(c.violations, 0, "{}: {:?}", c.name, c.examples);
    }
}

/// Waits until the job has taken in every committed operation.
async fn caught_up(app: &TestApp) {
    let mut conn = app.db();
    for _ in 0..100 {
        let max = scalar(&mut conn, "SELECT COALESCE(max(seq), 0) AS n FROM operations");
        let upto = scalar(&mut conn, "SELECT upto AS n FROM stats_watermark");
        let gaps = scalar(&mut conn, "SELECT count(*) AS n FROM stats_gaps s JOIN operations o ON o.seq = s.seq");
        if upto >= max && gaps == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the stats job did not catch up within 10 s");
}

/// Spreads the operations over Nov 2023 – Feb 2025, in seq order, with some on the platform zone's
/// month and year boundaries and on the leap day; postings take their operation's time.
fn spread_over_months(conn: &mut PgConnection, rng: &mut StdRng) {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: uuid::Uuid,
    }
    let ids: Vec<Id> = diesel::sql_query("SELECT id FROM operations ORDER BY seq").load(conn).unwrap();
    let start = NaiveDate::from_ymd_opt(2023, 11, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    let end = NaiveDate::from_ymd_opt(2025, 2, 28).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    let boundaries = [
        "2024-01-01 04:59:59", // 2023-12-31 23:59:59 in New York
        "2024-01-01 05:00:00", // 2024-01-01 00:00:00 in New York
        "2024-02-29 12:00:00", // leap day
        "2024-03-01 04:30:00", // still 29 February in New York
        "2024-12-01 04:59:00", // 30 November in New York
        "2025-01-01 04:30:00", // 2024-12-31 in New York
        "2025-01-01 05:30:00", // 2025-01-01 in New York
    ];
    let mut times: Vec<i64> = (0..ids.len()).map(|_| rng.gen_range(start..end)).collect();
    for (i, b) in boundaries.iter().enumerate() {
        if let Some(t) = times.get_mut(i * 7 + 3) {
            *t = NaiveDateTime::parse_from_str(b, "%Y-%m-%d %H:%M:%S").unwrap().and_utc().timestamp();
        }
    }
    times.sort_unstable();
    for (id, t) in ids.iter().zip(times) {
        diesel::sql_query("UPDATE operations SET created_at = to_timestamp($1) WHERE id = $2")
            .bind::<BigInt, _>(t)
            .bind::<diesel::sql_types::Uuid, _>(id.id)
            .execute(conn)
            .unwrap();
    }
    diesel::sql_query("UPDATE postings p SET created_at = o.created_at FROM operations o WHERE o.id = p.operation_id")
        .execute(conn)
        .unwrap();
}

#[derive(QueryableByName, Debug)]
struct Agg {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    method: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    amount: i64,
}

/// What direct SQL says for one kind, scope condition (on the original operation `o`) and window.
#[derive(Default, Debug)]
struct Expected {
    gross: (i64, i64),
    reversed: (i64, i64),
    success: (i64, i64),
    failed: (i64, i64),
    /// method → (successful count, net amount)
    methods: HashMap<String, (i64, i64)>,
}

fn expected(conn: &mut PgConnection, kind: &str, cond: &str, from: NaiveDate, to: NaiveDate) -> Expected {
    let (f, t) = (from.and_hms_opt(0, 0, 0).unwrap(), to.and_hms_opt(0, 0, 0).unwrap());
    let direct: Vec<Agg> = diesel::sql_query(format!(
        "SELECT o.status, COALESCE(o.method, '') AS method, count(*)::bigint AS n, sum(o.amount)::bigint AS amount \
         FROM operations o WHERE o.kind = $1 AND {cond} \
           AND (o.created_at AT TIME ZONE '{TZ}') >= $2 AND (o.created_at AT TIME ZONE '{TZ}') < $3 \
         GROUP BY 1, 2"
    ))
    .bind::<Text, _>(kind)
    .bind::<Timestamp, _>(f)
    .bind::<Timestamp, _>(t)
    .load(conn)
    .unwrap();
    let corrections: Vec<Agg> = diesel::sql_query(format!(
        "SELECT r.status, COALESCE(o.method, '') AS method, count(*)::bigint AS n, sum(r.amount)::bigint AS amount \
         FROM operations r JOIN operations o ON o.id = r.reverses_id WHERE o.kind = $1 AND {cond} \
           AND (r.created_at AT TIME ZONE '{TZ}') >= $2 AND (r.created_at AT TIME ZONE '{TZ}') < $3 \
         GROUP BY 1, 2"
    ))
    .bind::<Text, _>(kind)
    .bind::<Timestamp, _>(f)
    .bind::<Timestamp, _>(t)
    .load(conn)
    .unwrap();
    let mut e = Expected::default();
    for a in direct {
        let slot = if a.status == "success" { &mut e.success } else { &mut e.failed };
        slot.0 += a.n;
        slot.1 += a.amount;
        if a.status == "success" {
            e.gross.0 += a.n;
            e.gross.1 += a.amount;
            let m = e.methods.entry(if a.method.is_empty() { "none".into() } else { a.method }).or_default();
            m.0 += a.n;
            m.1 += a.amount;
        }
    }
    for a in corrections.into_iter().filter(|a| a.status == "success") {
        e.reversed.0 += a.n;
        e.reversed.1 += a.amount;
        let m = e.methods.entry(if a.method.is_empty() { "none".into() } else { a.method }).or_default();
        m.1 -= a.amount;
    }
    e
}

/// End-of-period balance from the ledger's running balances: per card account the `balance_after`
/// of its last posting before `to` (platform: summed over card accounts).
fn expected_balance(conn: &mut PgConnection, card: Option<i64>, to: NaiveDate) -> i64 {
    let cond = card.map_or_else(|| "TRUE".to_owned(), |c| format!("c.id = {c}"));
    diesel::sql_query(format!(
        "SELECT COALESCE(sum(last), 0)::bigint AS n FROM ( \
           SELECT DISTINCT ON (p.account_id) p.balance_after AS last FROM postings p \
           JOIN cards c ON c.account_id = p.account_id WHERE {cond} \
             AND (p.created_at AT TIME ZONE '{TZ}') < $1 ORDER BY p.account_id, p.id DESC) x"
    ))
    .bind::<Timestamp, _>(to.and_hms_opt(0, 0, 0).unwrap())
    .get_result::<N>(conn)
    .unwrap()
    .n
}

fn series<'a>(body: &'a Value, name: &str, direction: Option<&str>) -> &'a Vec<Value> {
    body["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name && s["direction"].as_str() == direction)
        .unwrap_or_else(|| panic!("series {name} {direction:?} missing: {body}"))["points"]
        .as_array()
        .unwrap()
}

fn point(p: &Value) -> (i64, i64) {
    (p["count"].as_i64().unwrap(), p["amount"].as_i64().unwrap())
}

fn periods(body: &Value) -> Vec<(NaiveDate, NaiveDate)> {
    body["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["from"].as_str().unwrap().parse().unwrap(), p["to"].as_str().unwrap().parse().unwrap()))
        .collect()
}

/// Compares one API answer (every series and period) with direct SQL.
fn reconcile(conn: &mut PgConnection, body: &Value, kind: &str, metric: &str, cond: &str, direction: Option<&str>) {
    for (i, (from, to)) in periods(body).into_iter().enumerate() {
        let e = expected(conn, kind, cond, from, to);
        let at = format!("{kind} {metric} {cond} {direction:?} {from}");
        match metric {
            "amount" => {
                assert_eq!(point(&series(body, "gross", direction)[i]), e.gross, "gross {at}");
                assert_eq!(point(&series(body, "reversed", direction)[i]), e.reversed, "reversed {at}");
                assert_eq!(
                    point(&series(body, "net", direction)[i]),
                    (e.gross.0, e.gross.1 - e.reversed.1),
                    "net {at}"
                );
            }
            "status" => {
                assert_eq!(point(&series(body, "success", direction)[i]), e.success, "success {at}");
                assert_eq!(point(&series(body, "failed", direction)[i]), e.failed, "failed {at}");
            }
            "method" => {
                for (m, want) in &e.methods {
                    assert_eq!(point(&series(body, m, direction)[i]), *want, "method {m} {at}");
                }
                for s in body["series"].as_array().unwrap() {
                    let m = s["name"].as_str().unwrap();
                    if !e.methods.contains_key(m) {
                        assert_eq!(point(&s["points"][i]), (0, 0), "method {m} {at}");
                    }
                }
            }
            _ => unreachable!(),
        }
    }
}

#[actix_web::test]
async fn statistics_reconcile_with_the_ledger_across_months() {
    let app = TestApp::spawn_with(stats_settings()).await;
    let w = world(&app).await;
    let mut rng = StdRng::seed_from_u64(11);
    random_operations(&app, &w, &mut rng, 160).await;
    let mut conn = app.db();

    // The incremental job has taken in every committed operation, exactly once.
    caught_up(&app).await;
    stats_checks_clean(&mut conn);
    let today_total = scalar(
        &mut conn,
        "SELECT COALESCE(sum(amount), 0)::bigint AS n FROM operations WHERE kind = 'topup' AND status = 'success'",
    );
    let (s, b) =
        app.get(&format!("/api/v1/stats/topup?period=year&year={}", chrono::Utc::now().year()), Some(&w.admin)).await;
    assert_eq!(s, 200, "{b}");
    let gross: i64 = series(&b, "gross", None).iter().map(|p| p["amount"].as_i64().unwrap()).sum();
    assert_eq!(gross, today_total, "the job's figures equal the ledger's");

    // History: the same operations spread over 16 months, rollups rebuilt from the ledger.
    spread_over_months(&mut conn, &mut rng);
    payd::stats::rollup::rebuild(&mut conn, TZ).unwrap();
    stats_checks_clean(&mut conn);
    let kinds = scalar(&mut conn, "SELECT count(DISTINCT kind)::bigint AS n FROM operations");
    assert_eq!(kinds, 6, "the random operations cover every kind");
    let failed = scalar(&mut conn, "SELECT count(*) AS n FROM operations WHERE status = 'failed'");
    assert!(failed > 0, "some operations failed");

    let c: Vec<i64> = w.cards.iter().map(|c| c.id).collect();
    let mut queries: Vec<(String, &str, &str, String, Option<&str>)> = Vec::new();
    for kind in ["topup", "withdrawal", "transfer", "payment"] {
        for metric in ["amount", "status", "method"] {
            if kind == "transfer" && metric == "method" {
                continue;
            }
            queries.push((String::new(), kind, metric, "TRUE".into(), None));
            for id in &c {
                let role = match kind {
                    "topup" => "dest_card_id",
                    _ => "source_card_id",
                };
                if kind == "transfer" {
                    queries.push((
                        format!("&card_id={id}&direction=sent"),
                        kind,
                        metric,
                        format!("o.source_card_id = {id}"),
                        Some("sent"),
                    ));
                    queries.push((
                        format!("&card_id={id}&direction=received"),
                        kind,
                        metric,
                        format!("o.dest_card_id = {id}"),
                        Some("received"),
                    ));
                    queries.push((
                        format!("&card_id={id}"),
                        kind,
                        metric,
                        format!("o.source_card_id = {id}"),
                        Some("sent"),
                    ));
                    queries.push((
                        format!("&card_id={id}"),
                        kind,
                        metric,
                        format!("o.dest_card_id = {id}"),
                        Some("received"),
                    ));
                } else {
                    queries.push((format!("&card_id={id}"), kind, metric, format!("o.{role} = {id}"), None));
                }
            }
            if kind == "payment" {
                queries.push((
                    format!("&merchant_id={}", w.merchant),
                    kind,
                    metric,
                    format!("o.merchant_id = {}", w.merchant),
                    None,
                ));
                for k in [w.key1.0, w.key2.0] {
                    queries.push((format!("&api_key_id={k}"), kind, metric, format!("o.api_key_id = {k}"), None));
                }
            }
        }
    }
    let mut compared = 0;
    for (scope, kind, metric, cond, direction) in &queries {
        for (period, year) in [("month", 2023), ("month", 2024), ("month", 2025), ("year", 2025)] {
            let (s, body) = app
                .get(
                    &format!("/api/v1/stats/{kind}?metric={metric}&period={period}&year={year}{scope}"),
                    Some(&w.admin),
                )
                .await;
            assert_eq!(s, 200, "{kind} {metric} {scope}: {body}");
            assert_eq!(body["time_zone"], TZ);
            assert_eq!(body["periods"].as_array().unwrap().len(), if period == "month" { 12 } else { 5 });
            reconcile(&mut conn, &body, kind, metric, cond, *direction);
            compared += 1;
        }
    }
    assert!(compared > 100);

    // Balances: end of every month and year, platform-wide and per card.
    for card in [None, Some(c[0]), Some(c[2])] {
        for (period, year) in [("month", 2023), ("month", 2024), ("month", 2025), ("year", 2025)] {
            let scope = card.map(|id| format!("&card_id={id}")).unwrap_or_default();
            let (s, body) =
                app.get(&format!("/api/v1/stats/balance?period={period}&year={year}{scope}"), Some(&w.admin)).await;
            assert_eq!(s, 200, "{body}");
            let closing = series(&body, "closing", None);
            let change = series(&body, "change", None);
            for (i, (from, to)) in periods(&body).into_iter().enumerate() {
                let end = expected_balance(&mut conn, card, to);
                let start = expected_balance(&mut conn, card, from);
                assert_eq!(closing[i]["amount"].as_i64().unwrap(), end, "closing {card:?} {from}");
                assert_eq!(change[i]["amount"].as_i64().unwrap(), end - start, "change {card:?} {from}");
            }
        }
    }

    // Dashboards: all-time net totals equal the ledger's.
    let (s, d) = app.get("/api/v1/stats/dashboard", Some(&w.admin)).await;
    assert_eq!(s, 200, "{d}");
    let total = &d["totals"][0];
    let balance =
        scalar(&mut conn, "SELECT COALESCE(sum(a.balance), 0)::bigint AS n FROM accounts a WHERE a.kind = 'card'");
    assert_eq!(total["balance"].as_i64().unwrap(), balance);
    let far = NaiveDate::from_ymd_opt(2100, 1, 1).unwrap();
    let past = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
    for f in total["figures"].as_array().unwrap() {
        let e = expected(&mut conn, f["name"].as_str().unwrap(), "TRUE", past, far);
        assert_eq!(f["amount"].as_i64().unwrap(), e.gross.1 - e.reversed.1, "{f}");
        assert_eq!(f["count"].as_i64().unwrap(), e.gross.0, "{f}");
        assert_eq!(f["failed"].as_i64().unwrap(), e.failed.0, "{f}");
    }
    let (s, d) = app.get(&format!("/api/v1/cards/{}/dashboard", c[0]), Some(&w.alice)).await;
    assert_eq!(s, 200, "{d}");
    for f in d["totals"][0]["figures"].as_array().unwrap() {
        let (kind, cond) = match f["name"].as_str().unwrap() {
            "topup" => ("topup", format!("o.dest_card_id = {}", c[0])),
            "transfer_received" => ("transfer", format!("o.dest_card_id = {}", c[0])),
            "transfer_sent" => ("transfer", format!("o.source_card_id = {}", c[0])),
            other => (other, format!("o.source_card_id = {}", c[0])),
        };
        let e = expected(&mut conn, kind, &cond, past, far);
        assert_eq!(f["amount"].as_i64().unwrap(), e.gross.1 - e.reversed.1, "{f}");
    }
    let (s, d) = app.get(&format!("/api/v1/merchants/{}/dashboard", w.merchant), Some(&w.owner)).await;
    assert_eq!(s, 200, "{d}");
    let e = expected(&mut conn, "payment", &format!("o.merchant_id = {}", w.merchant), past, far);
    assert_eq!(d["totals"][0]["figures"][0]["amount"].as_i64().unwrap(), e.gross.1 - e.reversed.1, "{d}");
    assert_eq!(d["totals"][0]["figures"][0]["reversed"].as_i64().unwrap(), e.reversed.1, "{d}");

    // `payd verify`'s statistics checks notice a tampered rollup: a platform balance row disagrees with
    // the fresh aggregation and with the ledger's postings on card accounts.
    for c in payd::stats::rollup::verify(&mut conn).unwrap() {
        assert_eq!(c.violations, 0, "{}: {:?}", c.name, c.examples);
    }
    let tampered = diesel::sql_query(
        "UPDATE stats_daily SET amount = amount + 1 \
         WHERE ctid = (SELECT ctid FROM stats_daily WHERE scope = 'all' AND kind = 'balance' LIMIT 1)",
    )
    .execute(&mut conn)
    .unwrap();
    assert_eq!(tampered, 1);
    let checks = payd::stats::rollup::verify(&mut conn).unwrap();
    assert!(checks[0].violations > 0, "tampered figures not detected");
    assert!(checks[1].violations > 0, "tampered balance flow not detected");
    app.handle.stop(false).await;
}

#[actix_web::test]
async fn calendar_edges_in_the_platform_time_zone() {
    let app = TestApp::spawn_with(stats_settings()).await;
    let w = world(&app).await;
    let card = w.cards[0].id;
    let mut conn = app.db();
    let topups = [
        ("2024-01-01 04:59:59", 100_000), // 2023-12-31 in New York
        ("2024-01-01 05:00:00", 200_000), // 2024-01-01 in New York
        ("2024-02-29 12:00:00", 300_000), // leap day
        ("2024-03-01 04:30:00", 400_000), // still 29 February in New York
        ("2024-07-15 12:00:00", 500_000), // reversed in September
    ];
    for (_, amount) in topups {
        topup(&app, &w.alice, card, amount).await;
    }
    let (s, _) = money(&app, &w.alice, "/api/v1/withdrawals", json!({"card_id": card, "amount": 900_000_000})).await;
    assert!(s >= 400, "the withdrawal fails");
    caught_up(&app).await;
    let (s, r) = {
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: uuid::Uuid,
        }
        let id: Id = diesel::sql_query("SELECT id FROM operations WHERE kind = 'topup' AND amount = 500000")
            .get_result(&mut conn)
            .unwrap();
        money(&app, &w.admin, &format!("/api/v1/topups/{}/reversal", id.id), json!({})).await
    };
    assert_eq!(s, 201, "{r}");
    // Times: the top-ups as listed (in seq order), the failed withdrawal in August, the reversal in September.
    let times = [
        "2024-01-01 04:59:59",
        "2024-01-01 05:00:00",
        "2024-02-29 12:00:00",
        "2024-03-01 04:30:00",
        "2024-07-15 12:00:00",
        "2024-08-10 12:00:00",
        "2024-09-30 23:00:00",
    ];
    diesel::sql_query(
        "WITH t AS (SELECT id, row_number() OVER (ORDER BY seq) AS i FROM operations) \
         UPDATE operations o SET created_at = (($1::text[])[t.i])::timestamp AT TIME ZONE 'UTC' FROM t WHERE t.id = o.id",
    )
    .bind::<diesel::sql_types::Array<Text>, _>(times.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    .execute(&mut conn)
    .unwrap();
    diesel::sql_query("UPDATE postings p SET created_at = o.created_at FROM operations o WHERE o.id = p.operation_id")
        .execute(&mut conn)
        .unwrap();
    payd::stats::rollup::rebuild(&mut conn, TZ).unwrap();

    let q = |path: String| {
        let app = &app;
        let t = w.alice.clone();
        async move {
            let (s, b) = app.get(&path, Some(&t)).await;
            assert_eq!(s, 200, "{path}: {b}");
            b
        }
    };
    let b = q(format!("/api/v1/stats/topup?year=2024&card_id={card}")).await;
    let net: Vec<i64> = series(&b, "net", None).iter().map(|p| p["amount"].as_i64().unwrap()).collect();
    // Jan: 200k; Feb (leap day + the New York evening of the 29th): 700k; Jul: 500k; Sep: −500k (reversal).
    assert_eq!(net, vec![200_000, 700_000, 0, 0, 0, 0, 500_000, 0, -500_000, 0, 0, 0]);
    let reversed: Vec<i64> = series(&b, "reversed", None).iter().map(|p| p["amount"].as_i64().unwrap()).collect();
    assert_eq!(reversed[8], 500_000);
    assert_eq!(b["periods"][1]["to"], "2024-03-01");
    // December 2023 holds the first top-up; 2023 has 11 empty months, zero-filled.
    let b = q(format!("/api/v1/stats/topup?year=2023&card_id={card}")).await;
    let gross = series(&b, "gross", None);
    assert_eq!(gross.len(), 12);
    assert_eq!(point(&gross[11]), (1, 100_000));
    assert!(gross[..11].iter().all(|p| point(p) == (0, 0)));
    // Yearly: 2023 100k, 2024 1.4M gross.
    let b = q(format!("/api/v1/stats/topup?period=year&year=2024&card_id={card}")).await;
    let gross: Vec<(i64, i64)> = series(&b, "gross", None).iter().map(point).collect();
    assert_eq!(gross, vec![(0, 0), (0, 0), (0, 0), (1, 100_000), (4, 1_400_000)]);
    // The failed withdrawal is counted by status only.
    let b = q(format!("/api/v1/stats/withdrawal?year=2024&card_id={card}&metric=status")).await;
    assert_eq!(point(&series(&b, "failed", None)[7]), (1, 900_000_000));
    let b = q(format!("/api/v1/stats/withdrawal?year=2024&card_id={card}")).await;
    assert!(series(&b, "gross", None).iter().all(|p| point(p) == (0, 0)));
    // End-of-month balances: Dec 2023 100k, Jan 300k, Feb 1M, Jul 1.5M, Sep 1M (carried forward).
    let b = q(format!("/api/v1/stats/balance?year=2024&card_id={card}")).await;
    let closing: Vec<i64> = series(&b, "closing", None).iter().map(|p| p["amount"].as_i64().unwrap()).collect();
    assert_eq!(
        closing,
        vec![
            300_000, 1_000_000, 1_000_000, 1_000_000, 1_000_000, 1_000_000, 1_500_000, 1_500_000, 1_000_000, 1_000_000,
            1_000_000, 1_000_000
        ]
    );
    // Empty year: zero-filled, every period present.
    let b = q(format!("/api/v1/stats/transfer?year=2030&card_id={card}")).await;
    for d in ["sent", "received"] {
        let p = series(&b, "net", Some(d));
        assert_eq!(p.len(), 12);
        assert!(p.iter().all(|p| point(p) == (0, 0)));
    }
    app.handle.stop(false).await;
}

#[actix_web::test]
async fn every_statistics_route_enforces_access() {
    let app = TestApp::spawn_with(stats_settings()).await;
    let w = world(&app).await;
    let card = w.cards[0].id;
    let (m, k, ok_key, other_key) = (w.merchant, w.key1.0, w.key1.1.clone(), w.other_key.1.clone());
    enum Who<'a> {
        Token(&'a str),
        Key(&'a str),
        Anonymous,
    }
    let get = |path: String, who: Who<'_>| {
        let app = &app;
        let (token, key) = match who {
            Who::Token(t) => (Some(t.to_owned()), None),
            Who::Key(k) => (None, Some(k.to_owned())),
            Who::Anonymous => (None, None),
        };
        async move {
            let headers: Vec<(&str, &str)> = key.as_deref().map(|k| vec![("X-Api-Key", k)]).unwrap_or_default();
            let (s, _, b) = app.call_full("GET", &path, token.as_deref(), None, &headers).await;
            (s, b)
        }
    };
    // (path, owner, other user, merchant key (of the merchant concerned, if any), admin)
    let platform = [
        "/api/v1/stats/topup".to_owned(),
        "/api/v1/stats/balance?period=year".to_owned(),
        "/api/v1/stats/dashboard".to_owned(),
    ];
    for p in &platform {
        assert_eq!(get(p.clone(), Who::Token(&w.admin)).await.0, 200, "{p} admin");
        assert_eq!(get(p.clone(), Who::Token(&w.alice)).await.0, 403, "{p} user");
        assert!(matches!(get(p.clone(), Who::Key(&ok_key)).await.0, 401 | 403), "{p} key");
        assert_eq!(get(p.clone(), Who::Anonymous).await.0, 401, "{p} anonymous");
    }
    for p in [
        format!("/api/v1/stats/topup?card_id={card}"),
        format!("/api/v1/stats/transfer?card_id={card}&direction=sent&metric=status"),
        format!("/api/v1/stats/balance?card_id={card}"),
        format!("/api/v1/cards/{card}/dashboard"),
    ] {
        assert_eq!(get(p.clone(), Who::Token(&w.alice)).await.0, 200, "{p} owner");
        assert_eq!(get(p.clone(), Who::Token(&w.admin)).await.0, 200, "{p} admin");
        let (s, b) = get(p.clone(), Who::Token(&w.bob)).await;
        assert_eq!(s, 404, "{p} other user: {b}");
        assert!(matches!(get(p.clone(), Who::Key(&ok_key)).await.0, 401 | 404), "{p} key");
        assert_eq!(get(p.clone(), Who::Anonymous).await.0, 401, "{p} anonymous");
    }
    for p in [
        format!("/api/v1/stats/payment?merchant_id={m}"),
        format!("/api/v1/stats/payment?merchant_id={m}&metric=method&period=year"),
        format!("/api/v1/stats/payment?api_key_id={k}&metric=status"),
        format!("/api/v1/merchants/{m}/dashboard"),
    ] {
        assert_eq!(get(p.clone(), Who::Token(&w.owner)).await.0, 200, "{p} owner");
        assert_eq!(get(p.clone(), Who::Token(&w.admin)).await.0, 200, "{p} admin");
        assert_eq!(get(p.clone(), Who::Key(&ok_key)).await.0, 200, "{p} its key");
        let (s, b) = get(p.clone(), Who::Key(&other_key)).await;
        assert_eq!(s, 404, "{p} another merchant's key: {b}");
        assert_eq!(get(p.clone(), Who::Token(&w.other_owner)).await.0, 404, "{p} another owner");
        assert_eq!(get(p.clone(), Who::Token(&w.alice)).await.0, 404, "{p} a cardholder");
        assert_eq!(get(p.clone(), Who::Anonymous).await.0, 401, "{p} anonymous");
    }
    // The other merchant's own figures are its own.
    let (s, _) = get(format!("/api/v1/stats/payment?merchant_id={}", w.other_merchant), Who::Key(&other_key)).await;
    assert_eq!(s, 200);
    app.handle.stop(false).await;
}

#[actix_web::test]
async fn bad_statistics_input_is_a_4xx_naming_the_parameter() {
    let app = TestApp::spawn_with(stats_settings()).await;
    let w = world(&app).await;
    let card = w.cards[0].id;
    let bob_card = w.cards[2].id;
    let cases: Vec<(String, u16, &str)> = vec![
        ("/api/v1/stats/teleport".into(), 422, "kind"),
        ("/api/v1/stats/topup?metric=median".into(), 422, "metric"),
        ("/api/v1/stats/topup?period=week".into(), 422, "period"),
        ("/api/v1/stats/topup?year=1999".into(), 422, "year"),
        ("/api/v1/stats/topup?year=2101".into(), 422, "year"),
        ("/api/v1/stats/topup?year=twenty".into(), 422, "year"),
        ("/api/v1/stats/topup?card_id=abc".into(), 422, "card_id"),
        ("/api/v1/stats/topup?card_id=-4".into(), 422, "card_id"),
        (format!("/api/v1/stats/payment?card_id={card}&merchant_id={}", w.merchant), 422, "merchant_id"),
        (format!("/api/v1/stats/topup?merchant_id={}", w.merchant), 422, "merchant_id"),
        (format!("/api/v1/stats/withdrawal?api_key_id={}", w.key1.0), 422, "api_key_id"),
        ("/api/v1/stats/transfer?direction=sent".into(), 422, "direction"),
        (format!("/api/v1/stats/topup?card_id={card}&direction=sent"), 422, "direction"),
        (format!("/api/v1/stats/transfer?card_id={card}&direction=up"), 422, "direction"),
        ("/api/v1/stats/transfer?metric=method".into(), 422, "metric"),
        ("/api/v1/stats/balance?metric=status".into(), 422, "metric"),
        ("/api/v1/stats/topup?currency=idr".into(), 422, "currency"),
        ("/api/v1/stats/topup?colour=red".into(), 422, "colour"),
        (format!("/api/v1/stats/topup?card_id={bob_card}"), 404, "card_id"),
        ("/api/v1/stats/topup?card_id=999999".into(), 404, "card_id"),
        ("/api/v1/stats/payment?merchant_id=999999".into(), 404, "merchant_id"),
        ("/api/v1/stats/payment?api_key_id=999999".into(), 404, "api_key_id"),
        ("/api/v1/cards/999999/dashboard".into(), 404, "id"),
        ("/api/v1/cards/abc/dashboard".into(), 404, "id"),
        ("/api/v1/merchants/999999/dashboard".into(), 404, "id"),
    ];
    for (path, status, field) in cases {
        // Cardholder Alice asks; for platform-only shapes the admin asks so validation is what answers.
        let token = if path.contains("card_id") || path.contains("/cards/") { &w.alice } else { &w.admin };
        let (s, b) = app.get(&path, Some(token)).await;
        assert_eq!(s, status, "{path}: {b}");
        error_code(&b);
        assert_eq!(b["error"]["field"], field, "{path}: {b}");
    }
    app.handle.stop(false).await;
}
