//! "Storm": thousands of concurrent money requests over a few dozen cards — top-ups, withdrawals,
//! transfers both ways, self-transfers, overdraws, concurrently duplicated idempotency keys (same
//! body and different body), cards frozen and unfrozen mid-storm — then every answer is checked
//! against the database and the ledger invariants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::as_conversions)]

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::stream::{self, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::common::money::*;
use crate::common::TestApp;

const USERS: usize = 4;
const DEBIT_PER_USER: usize = 5;
const CREDIT_LIMIT: i64 = 2_000_000;
const INITIAL: i64 = 1_000_000;
const PHASE_OPS: usize = 1_250;
const CONCURRENCY: usize = 64;
const OVERDRAW: i64 = 50_000_000;
const METHODS: &[&str] = &["ovo", "bca", "alfamart", "indomart"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Topup,
    Withdrawal,
    Transfer,
    SelfTransfer,
    Overdraw,
    Freeze,
    Unfreeze,
}

#[derive(Clone, Debug)]
struct Req {
    kind: Kind,
    user: usize,
    path: String,
    key: String,
    body: Value,
    /// Extra concurrent sends with the same key and body.
    copies: usize,
    /// A concurrent send with the same key and a different body.
    conflict: Option<Value>,
    /// Freeze / unfreeze target.
    card: i64,
}

/// One answer to one send.
#[derive(Clone, Debug)]
struct Sent {
    /// 0 = the request's body, 1 = the conflicting body.
    variant: u8,
    reply: Reply,
}

struct World {
    tokens: Vec<String>,
    /// Cards per user; the last one is the credit card.
    cards: Vec<Vec<i64>>,
    all: Vec<i64>,
}

impl World {
    fn own_card(&self, rng: &mut StdRng, u: usize) -> i64 {
        self.cards[u][rng.gen_range(0..self.cards[u].len())]
    }
}

fn money_req(kind: Kind, user: usize, path: &str, key: String, body: Value) -> Req {
    Req { kind, user, path: path.to_owned(), key, body, copies: 0, conflict: None, card: 0 }
}

fn gen_op(rng: &mut StdRng, w: &World, key: String) -> Req {
    let u = rng.gen_range(0..USERS);
    let roll = rng.gen_range(0..100);
    let mut r = if roll < 25 {
        let card = w.own_card(rng, u);
        let method = METHODS[rng.gen_range(0..METHODS.len())];
        let amount = rng.gen_range(1..=8) * 50_000;
        money_req(Kind::Topup, u, "/api/v1/topups", key, json!({"card_id": card, "amount": amount, "method": method}))
    } else if roll < 45 {
        let card = w.own_card(rng, u);
        let amount = rng.gen_range(1..=6) * 50_000;
        money_req(Kind::Withdrawal, u, "/api/v1/withdrawals", key, json!({"card_id": card, "amount": amount}))
    } else if roll < 87 {
        let from = w.own_card(rng, u);
        let to = loop {
            let c = w.all[rng.gen_range(0..w.all.len())];
            if c != from {
                break c;
            }
        };
        let amount = rng.gen_range(1..=8) * 50_000;
        money_req(
            Kind::Transfer,
            u,
            "/api/v1/transfers",
            key,
            json!({"from_card_id": from, "to_card_id": to, "amount": amount}),
        )
    } else if roll < 92 {
        let c = w.own_card(rng, u);
        money_req(
            Kind::SelfTransfer,
            u,
            "/api/v1/transfers",
            key,
            json!({"from_card_id": c, "to_card_id": c, "amount": 60_000}),
        )
    } else {
        let from = w.own_card(rng, u);
        if rng.gen_bool(0.5) {
            money_req(Kind::Overdraw, u, "/api/v1/withdrawals", key, json!({"card_id": from, "amount": OVERDRAW}))
        } else {
            let to = w.all[(w.all.iter().position(|c| *c == from).unwrap() + 1) % w.all.len()];
            money_req(
                Kind::Overdraw,
                u,
                "/api/v1/transfers",
                key,
                json!({"from_card_id": from, "to_card_id": to, "amount": OVERDRAW}),
            )
        }
    };
    if r.kind != Kind::SelfTransfer {
        let dup = rng.gen_range(0..100);
        if dup < 8 {
            r.copies = rng.gen_range(1..=2);
        } else if dup < 11 {
            r.copies = rng.gen_range(0..=1);
            let mut other = r.body.clone();
            other["amount"] = json!(other["amount"].as_i64().unwrap() + 50_000);
            r.conflict = Some(other);
        }
    }
    r
}

async fn fire(api: &Api, w: &World, r: &Req) -> Vec<Sent> {
    let token = w.tokens[r.user].as_str();
    match r.kind {
        Kind::Freeze | Kind::Unfreeze => {
            let action = if r.kind == Kind::Freeze { "freeze" } else { "unfreeze" };
            let reply =
                api.call("POST", &format!("/api/v1/cards/{}/{action}", r.card), Some(token), Some(&json!({}))).await;
            assert_eq!(reply.status, 200, "{action} card {}: {}", r.card, reply.body);
            vec![Sent { variant: 0, reply }]
        }
        _ => {
            let mut sends: Vec<(u8, &Value)> = vec![(0, &r.body); r.copies + 1];
            if let Some(c) = &r.conflict {
                sends.push((1, c));
            }
            let futs = sends.into_iter().map(|(variant, body)| async move {
                let reply = api
                    .money(token, &r.path, &r.key, body)
                    .await
                    .unwrap_or_else(|e| panic!("{} {}: transport error {e:?}", r.path, r.key));
                Sent { variant, reply }
            });
            futures::future::join_all(futs).await
        }
    }
}

async fn run_all(api: &Api, w: &World, reqs: &[Req], concurrency: usize) -> Vec<Vec<Sent>> {
    let mut out: Vec<(usize, Vec<Sent>)> = stream::iter(reqs.iter().enumerate())
        .map(|(i, r)| async move { (i, fire(api, w, r).await) })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, s)| s).collect()
}

fn kind_name(k: Kind, path: &str) -> &'static str {
    match k {
        Kind::Topup => "topup",
        Kind::Withdrawal => "withdrawal",
        Kind::Transfer | Kind::SelfTransfer => "transfer",
        Kind::Overdraw if path.ends_with("withdrawals") => "withdrawal",
        Kind::Overdraw => "transfer",
        Kind::Freeze => "freeze",
        Kind::Unfreeze => "unfreeze",
    }
}

#[actix_web::test]
async fn ledger_storm() {
    let started = std::time::Instant::now();
    let app = TestApp::spawn().await;
    let api = app.api();
    let admin = api.admin_token().await;
    let seed: u64 = std::env::var("STORM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2024);
    eprintln!("storm seed {seed} (override with STORM_SEED)");
    let mut rng = StdRng::seed_from_u64(seed);

    // 4 users × (5 debit cards + 1 admin-issued credit card).
    let mut world = World { tokens: Vec::new(), cards: Vec::new(), all: Vec::new() };
    for u in 0..USERS {
        let (id, token) = api.verified_user(&admin, &format!("storm{u}@example.com")).await;
        let mut cs = Vec::new();
        for _ in 0..DEBIT_PER_USER {
            cs.push(api.issue_card(&token, "debit", None, None).await);
        }
        cs.push(api.issue_card(&admin, "credit", Some(id), Some(CREDIT_LIMIT)).await);
        world.all.extend(&cs);
        world.tokens.push(token);
        world.cards.push(cs);
    }
    let credit_cards: HashSet<i64> = world.cards.iter().map(|c| *c.last().unwrap()).collect();

    // Every request, in order: initial funding, phase 1 (with freezes), a deterministic frozen check,
    // phase 2 (with unfreezes).
    let mut reqs: Vec<Req> = Vec::new();
    let mut answers: Vec<Vec<Sent>> = Vec::new();
    let mut n = 0usize;
    let mut next_key = |prefix: &str| {
        n += 1;
        format!("storm-{prefix}-{n}")
    };

    let funding: Vec<Req> = (0..USERS)
        .flat_map(|u| world.cards[u][..DEBIT_PER_USER].iter().map(move |c| (u, *c)).collect::<Vec<_>>())
        .map(|(u, c)| {
            money_req(
                Kind::Topup,
                u,
                "/api/v1/topups",
                next_key("fund"),
                json!({"card_id": c, "amount": INITIAL, "method": "bca"}),
            )
        })
        .collect();
    let got = run_all(&api, &world, &funding, 8).await;
    for s in &got {
        assert_eq!(s[0].reply.status, 201, "initial funding: {}", s[0].reply.body);
    }
    reqs.extend(funding);
    answers.extend(got);

    // Frozen mid-storm: one debit card of user 0, one of user 2, and user 1's credit card.
    let frozen = [(0usize, world.cards[0][1]), (2, world.cards[2][3]), (1, world.cards[1][DEBIT_PER_USER])];
    let lifecycle = |kind: Kind, (u, c): (usize, i64)| Req {
        kind,
        user: u,
        path: String::new(),
        key: String::new(),
        body: Value::Null,
        copies: 0,
        conflict: None,
        card: c,
    };

    let mut phase1: Vec<Req> = (0..PHASE_OPS).map(|_| gen_op(&mut rng, &world, next_key("a"))).collect();
    for (i, f) in frozen.iter().enumerate() {
        phase1.insert(PHASE_OPS / 3 + i * 20, lifecycle(Kind::Freeze, *f));
    }
    let got = run_all(&api, &world, &phase1, CONCURRENCY).await;
    reqs.extend(phase1);
    answers.extend(got);
    eprintln!("phase 1 done after {:?}", started.elapsed());

    // Between the phases the cards are certainly frozen: a debit is a recorded 402 card_frozen,
    // a credit still lands.
    let mut checks = Vec::new();
    for (u, c) in frozen {
        checks.push(money_req(
            Kind::Withdrawal,
            u,
            "/api/v1/withdrawals",
            next_key("frozen-w"),
            json!({"card_id": c, "amount": 50_000}),
        ));
        checks.push(money_req(
            Kind::Topup,
            u,
            "/api/v1/topups",
            next_key("frozen-t"),
            json!({"card_id": c, "amount": 50_000, "method": "ovo"}),
        ));
    }
    let got = run_all(&api, &world, &checks, 1).await;
    for (r, s) in checks.iter().zip(&got) {
        let rep = &s[0].reply;
        if r.kind == Kind::Withdrawal {
            assert_eq!((rep.status, rep.body["error"]["code"].as_str()), (402, Some("card_frozen")), "{}", rep.body);
            assert_eq!(rep.body["operation"]["status"], "failed");
        } else {
            assert_eq!(rep.status, 201, "credit to a frozen card: {}", rep.body);
        }
    }
    reqs.extend(checks);
    answers.extend(got);

    let mut phase2: Vec<Req> = (0..PHASE_OPS).map(|_| gen_op(&mut rng, &world, next_key("b"))).collect();
    for (i, f) in frozen.iter().enumerate() {
        phase2.insert(PHASE_OPS / 3 + i * 20, lifecycle(Kind::Unfreeze, *f));
    }
    let got = run_all(&api, &world, &phase2, CONCURRENCY).await;
    reqs.extend(phase2);
    answers.extend(got);
    let sends: usize = answers.iter().map(Vec::len).sum();
    eprintln!("storm: {} requests, {sends} HTTP sends, done after {:?}", reqs.len(), started.elapsed());

    // ---- Everything below is checked against the database. ----
    let mut conn = app.db();
    assert_verify_clean(&mut conn, "after the storm");
    assert_money_supply(&mut conn);
    let ops = operations(&mut conn);
    let keys = idempotency_keys(&mut conn);
    let db_cards = cards(&mut conn);

    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut expected: HashMap<i64, i64> = world.all.iter().map(|c| (*c, 0)).collect();
    let mut seen_ops: HashSet<String> = HashSet::new();
    let frozen_cards: HashSet<i64> = frozen.iter().map(|(_, c)| *c).collect();

    for (r, sent) in reqs.iter().zip(&answers) {
        let kind = kind_name(r.kind, &r.path);
        for s in sent {
            let code = s.reply.body["error"]["code"].as_str().unwrap_or("-");
            let dup = if r.copies > 0 || r.conflict.is_some() { " (dup-key group)" } else { "" };
            *outcomes.entry(format!("{kind:<10} {} {code}{dup}", s.reply.status)).or_default() += 1;
        }
        match r.kind {
            Kind::Freeze | Kind::Unfreeze => continue,
            Kind::SelfTransfer => {
                for s in sent {
                    assert_eq!(s.reply.status, 422, "self-transfer {}: {}", r.key, s.reply.body);
                    assert_eq!(s.reply.body["error"]["field"], "to_card_id", "{}", s.reply.body);
                }
                assert!(!keys.contains_key(&r.key), "a refused self-transfer left an idempotency row: {}", r.key);
                continue;
            }
            _ => {}
        }
        for s in sent {
            assert!(
                matches!(s.reply.status, 201 | 402 | 409),
                "{} {} answered {}: {}",
                r.path,
                r.key,
                s.reply.status,
                s.reply.body
            );
        }
        // Exactly one stored answer and one operation for the key.
        let rows = keys.get(&r.key).unwrap_or_else(|| panic!("no idempotency row for {} {:?}", r.key, sent));
        assert_eq!(rows.len(), 1, "key {} stored {} times", r.key, rows.len());
        let row = &rows[0];
        assert_eq!(row.scope, format!("user:{}", db_user_of(&db_cards, &world, r.user)), "scope of {}", r.key);
        let op_id = row.operation_id.clone().unwrap_or_else(|| panic!("key {} has no operation", r.key));
        let op = ops.get(&op_id).unwrap_or_else(|| panic!("key {} → missing operation {op_id}", r.key));
        assert!(seen_ops.insert(op_id.clone()), "operation {op_id} is mapped from two keys");
        assert_eq!(op.kind, kind, "{}", r.key);
        let stored_body: Value = serde_json::from_str(&row.response_body).unwrap();

        // Which body won the key: the operation carries its amount.
        let winner: u8 = if op.amount == r.body["amount"].as_i64().unwrap() {
            0
        } else {
            let c = r.conflict.as_ref().unwrap_or_else(|| panic!("{}: amount {} not requested", r.key, op.amount));
            assert_eq!(op.amount, c["amount"].as_i64().unwrap(), "{}", r.key);
            1
        };
        let (win, lose): (Vec<&Sent>, Vec<&Sent>) = sent.iter().partition(|s| s.variant == winner);
        for s in &lose {
            assert_eq!(s.reply.status, 409, "{}: the losing body must get 409: {}", r.key, s.reply.body);
            assert_eq!(s.reply.body["error"]["code"], "idempotency_conflict");
        }
        assert_eq!(
            win.iter().filter(|s| !s.reply.replayed).count(),
            1,
            "{}: exactly one send executes, the others replay: {:?}",
            r.key,
            win
        );
        for s in &win {
            assert_eq!(s.reply.status, u16::try_from(row.response_status).unwrap(), "{}", r.key);
            assert_eq!(s.reply.body, stored_body, "{}: every answer equals the stored answer", r.key);
        }
        let reply = &win[0].reply;
        match reply.status {
            201 => {
                assert_eq!(reply.body["id"].as_str(), Some(op_id.as_str()), "{}", r.key);
                assert_eq!(reply.body["status"], "success");
                assert_eq!(op.status, "success", "{}", r.key);
                assert_eq!(op.postings, 2, "{}", r.key);
                assert_eq!(reply.body["amount"].as_i64(), Some(op.amount));
                assert_eq!(reply.body["source_card_id"].as_i64(), op.source_card_id);
                assert_eq!(reply.body["dest_card_id"].as_i64(), op.dest_card_id);
                assert_ne!(r.kind, Kind::Overdraw, "an overdraw succeeded: {}", reply.body);
                if let Some(src) = op.source_card_id {
                    *expected.get_mut(&src).unwrap() -= op.amount;
                }
                if let Some(dst) = op.dest_card_id {
                    *expected.get_mut(&dst).unwrap() += op.amount;
                }
            }
            402 => {
                let code = reply.body["error"]["code"].as_str().unwrap();
                assert_eq!(reply.body["operation"]["id"].as_str(), Some(op_id.as_str()), "{}", r.key);
                assert_eq!(reply.body["operation"]["status"], "failed");
                assert_eq!(op.status, "failed", "{}", r.key);
                assert_eq!(op.postings, 0, "failed operation {op_id} has postings");
                assert_eq!(op.failure_reason.as_deref(), Some(code), "{}", r.key);
                match code {
                    "insufficient_funds" => {}
                    "card_frozen" | "rejected" => assert!(
                        op.source_card_id.is_some_and(|c| frozen_cards.contains(&c)),
                        "{code} on a card that was never frozen: {}",
                        reply.body
                    ),
                    other => panic!("unexpected failure code {other}: {}", reply.body),
                }
            }
            other => panic!("{}: winning answer {other}", r.key),
        }
    }

    // No operation without a request behind it; expected balances match the database.
    assert_eq!(seen_ops.len(), ops.len(), "operations in the database that no request produced");
    for c in &world.all {
        let db = &db_cards[c];
        assert_eq!(db.balance, expected[c], "card {c}: balance from the answers vs the database");
        assert_eq!(db.status, "active", "card {c} should be unfrozen again");
        assert_eq!(credit_cards.contains(c), db.card_type == "credit");
    }

    // The balance endpoint agrees with the database (and no reservation is left behind).
    for (u, cs) in world.cards.iter().enumerate() {
        for c in cs {
            let r = api.call("GET", &format!("/api/v1/cards/{c}/balance"), Some(&world.tokens[u]), None).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let db = &db_cards[c];
            assert_eq!(r.body["balance"].as_i64(), Some(db.balance), "balance endpoint, card {c}");
            assert_eq!(r.body["credit_limit"].as_i64(), Some(db.credit_limit));
            assert_eq!(r.body["available"].as_i64(), Some(db.balance + db.credit_limit), "available, card {c}");
        }
    }
    // The service's own view after the storm is still clean.
    assert_verify_clean(&mut conn, "at the end");

    eprintln!("storm outcomes (kind, status, code):");
    for (k, v) in &outcomes {
        eprintln!("  {k:<60} {v}");
    }
    let successes = ops.values().filter(|o| o.status == "success").count();
    eprintln!(
        "storm: {} operations ({successes} success, {} failed) in {:?}",
        ops.len(),
        ops.len() - successes,
        started.elapsed()
    );
    // Stop the server before the process exits, so no worker is still closing database
    // connections while the process tears down (see the report: rare SIGABRT at exit).
    drop(conn);
    app.handle.stop(true).await;
    // The mix really exercised every path.
    for want in
        ["201 -", "402 insufficient_funds", "402 card_frozen", "409 idempotency_conflict", "422 validation_failed"]
    {
        assert!(outcomes.keys().any(|k| k.contains(want)), "no `{want}` outcome in the storm: {outcomes:?}");
    }
}

/// The user id of test user `u` (owner of its first card).
fn db_user_of(cards: &HashMap<i64, DbCard>, w: &World, u: usize) -> i64 {
    cards[&w.cards[u][0]].user_id
}
