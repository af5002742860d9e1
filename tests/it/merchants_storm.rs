//! Merchant storm: ~1,500 concurrent payments and refunds into three merchants from twelve customer
//! cards — valid payments, wrong CVVs (one card past the CVV-failure limit), wrong expiry dates, an
//! expired card, concurrently duplicated order references, concurrently duplicated idempotency keys,
//! reused order references, cross-merchant refunds, concurrent refunds that together exceed their
//! payment — while cards are frozen, one merchant is suspended and one API key is revoked mid-storm.
//! Every answer is then checked against the database and the ledger invariants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::as_conversions, clippy::too_many_lines)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::Datelike;
use futures::stream::{self, StreamExt};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::common::merchant::*;
use crate::common::money::{Api, Reply};
use crate::common::TestApp;

const CUSTOMERS: usize = 6;
const CARDS_PER_CUSTOMER: usize = 2;
const INITIAL: i64 = 8_000_000;
const CONCURRENCY: usize = 48;
/// Requests per wave (copies of grouped requests included).
const WAVE1: usize = 650;
const WAVE2: usize = 850;

// Roles of cards (indexes into the card list).
const FROZEN_W1: usize = 3;
const FROZEN_W2: usize = 7;
const CVV_VICTIM: usize = 10;
const EXPIRED: usize = 11;
// Keys: 0 = merchant 0, 1 = merchant 1 (suspended mid-storm), 2 and 3 = merchant 2 (2 revoked mid-storm).
const KEY_MERCHANT: [usize; 4] = [0, 1, 2, 2];
const SUSPENDED: usize = 1;
const REVOKED_KEY: usize = 2;

// Mid-storm events (bit numbers; "sent" bits and "done" bits = event + 16).
const EV_FREEZE_W1: u32 = 0;
const EV_FREEZE_W2: u32 = 1;
const EV_SUSPEND: u32 = 2;
const EV_REVOKE: u32 = 3;
const DONE: u32 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Tag {
    Pay,
    WrongCvv,
    WrongExpiry,
    Expired,
    ReuseOrder,
    DupOrder,
    DupIdemPay,
    Refund,
    CrossRefund,
    OverRefund,
    DupIdemRefund,
}

impl Tag {
    fn is_refund(self) -> bool {
        matches!(self, Self::Refund | Self::CrossRefund | Self::OverRefund | Self::DupIdemRefund)
    }
}

#[derive(Clone, Debug)]
struct Req {
    tag: Tag,
    group: usize,
    key: usize,
    path: String,
    idem: String,
    body: Value,
    /// Payer card (payments) or the refunded payment's card (refunds).
    card: usize,
    /// For refunds: the payment and its amount.
    payment: Option<(String, i64)>,
}

#[derive(Clone, Debug)]
enum Job {
    Group(Vec<Req>),
    Event(u32),
}

#[derive(Clone, Debug)]
struct Outcome {
    req: Req,
    reply: Option<Reply>,
    start: u64,
    end: u64,
}

impl Outcome {
    fn status(&self) -> u16 {
        self.reply.as_ref().map_or(0, |r| r.status)
    }
    fn code(&self) -> String {
        self.reply.as_ref().and_then(|r| r.body["error"]["code"].as_str()).unwrap_or_default().to_owned()
    }
    fn body(&self) -> &Value {
        self.reply.as_ref().map_or(&Value::Null, |r| &r.body)
    }
}

struct World {
    api: Api,
    admin: String,
    owners: Vec<String>,
    merchants: Vec<i64>,
    keys: Vec<String>,
    key_ids: Vec<i64>,
    customers: Vec<String>,
    cards: Vec<TestCard>,
    card_owner: Vec<usize>,
    flags: Arc<AtomicU64>,
}

struct Gen {
    rng: StdRng,
    group: usize,
    seq: usize,
    wrong_cvv: Vec<u32>,
}

impl Gen {
    fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{}", self.seq)
    }
    fn amount(&mut self) -> i64 {
        self.rng.gen_range(50..=300) * 1_000
    }
    fn key(&mut self) -> usize {
        self.rng.gen_range(0..KEY_MERCHANT.len())
    }
    /// A card for an ordinary payment (not the expired one).
    fn card(&mut self) -> usize {
        self.rng.gen_range(0..EXPIRED)
    }
    fn pay_req(&mut self, tag: Tag, key: usize, card: usize, body: Value) -> Req {
        Req {
            tag,
            group: self.group,
            key,
            path: "/api/v1/payments".into(),
            idem: self.next_id("p"),
            body,
            card,
            payment: None,
        }
    }
}

/// Generates one wave of jobs with about `budget` requests; `refundable` are earlier successful
/// payments (id, amount, key, card, order_ref), each used by at most one refund job.
fn gen_wave(
    g: &mut Gen,
    w: &World,
    budget: usize,
    wave: u8,
    refundable: &mut Vec<(String, i64, usize, usize, String)>,
    events: &[(f64, u32)],
) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut sent = 0usize;
    let mut pending_events: Vec<(usize, u32)> =
        events.iter().map(|(f, e)| ((budget as f64 * f) as usize, *e)).collect();
    while sent < budget {
        if let Some(pos) = pending_events.iter().position(|(at, _)| *at <= sent) {
            jobs.push(Job::Event(pending_events.remove(pos).1));
            continue;
        }
        g.group += 1;
        let roll: u32 = g.rng.gen_range(0..100);
        let refunds_allowed = wave == 2 && !refundable.is_empty();
        let reqs: Vec<Req> = match roll {
            0..=7 => {
                // Wrong CVV: at most 3 per ordinary card (below the limit); the rest on the victim card.
                let mut card = g.card();
                if card != CVV_VICTIM && g.wrong_cvv[card] >= 3 {
                    card = CVV_VICTIM;
                }
                g.wrong_cvv[card] += 1;
                let c = &w.cards[card];
                let order = g.next_id(&format!("w{wave}-cvv"));
                let mut body = c.pay(&order, g.amount());
                body["cvv"] = json!(c.wrong_cvv());
                let key = g.key();
                vec![g.pay_req(Tag::WrongCvv, key, card, body)]
            }
            8..=11 => {
                // Extra wrong CVVs on the victim card, to push it past the limit.
                let c = &w.cards[CVV_VICTIM];
                g.wrong_cvv[CVV_VICTIM] += 1;
                let order = g.next_id(&format!("w{wave}-victim"));
                let mut body = c.pay(&order, g.amount());
                body["cvv"] = json!(c.wrong_cvv());
                let key = g.key();
                vec![g.pay_req(Tag::WrongCvv, key, CVV_VICTIM, body)]
            }
            12..=16 => {
                // Wrong expiry (another month, or the expired card's original date).
                // Wrong expiry dates count towards the card's failure limit like wrong CVVs.
                let mut card = if g.rng.gen_bool(0.25) { EXPIRED } else { g.card() };
                if card != CVV_VICTIM && g.wrong_cvv[card] >= 3 {
                    card = CVV_VICTIM;
                }
                g.wrong_cvv[card] += 1;
                let c = &w.cards[card];
                let order = g.next_id(&format!("w{wave}-exp"));
                let mut body = c.pay(&order, g.amount());
                if card == EXPIRED {
                    body["expiry_year"] = json!(c.year + 5);
                } else {
                    body["expiry_month"] = json!(if c.month == 12 { 1 } else { c.month + 1 });
                }
                let key = g.key();
                vec![g.pay_req(Tag::WrongExpiry, key, card, body)]
            }
            17..=20 => {
                // The expired card with its (new, past) expiry and the matching CVV.
                let order = g.next_id(&format!("w{wave}-expired"));
                let body = w.cards[EXPIRED].pay(&order, g.amount());
                let key = g.key();
                vec![g.pay_req(Tag::Expired, key, EXPIRED, body)]
            }
            21..=25 => {
                // One order reference paid concurrently three times (different keys of one merchant
                // where it has two, different cards).
                let key = g.key();
                let m = KEY_MERCHANT[key];
                let order = g.next_id(&format!("w{wave}-duporder"));
                let amount = g.amount();
                (0..3)
                    .map(|_| {
                        let card = g.card();
                        let k = if m == 2 { 2 + g.rng.gen_range(0..2) } else { key };
                        let body = w.cards[card].pay(&order, amount);
                        g.pay_req(Tag::DupOrder, k, card, body)
                    })
                    .collect()
            }
            26..=30 => {
                // One idempotency key sent concurrently three times with the same body.
                let key = g.key();
                let card = g.card();
                let order = g.next_id(&format!("w{wave}-dupidem"));
                let body = w.cards[card].pay(&order, g.amount());
                let r = g.pay_req(Tag::DupIdemPay, key, card, body);
                vec![r.clone(), r.clone(), r]
            }
            31..=33 if refunds_allowed => {
                // An order reference that was already paid.
                let i = g.rng.gen_range(0..refundable.len());
                let (_, _, key, _, order) = refundable[i].clone();
                let card = g.card();
                let body = w.cards[card].pay(&order, g.amount());
                vec![g.pay_req(Tag::ReuseOrder, key, card, body)]
            }
            34..=51 if refunds_allowed => {
                // A refund, full or partial.
                let (pid, amount, key, card, _) = refundable.pop().unwrap();
                let body = if g.rng.gen_bool(0.5) { json!({}) } else { json!({"amount": (amount / 2).max(1)}) };
                vec![refund_req(g, Tag::Refund, key, card, &pid, amount, body)]
            }
            52..=54 if refunds_allowed => {
                // Another merchant's key refunding a payment: indistinguishable from an unknown one.
                let i = g.rng.gen_range(0..refundable.len());
                let (pid, amount, key, card, _) = refundable[i].clone();
                let other = if KEY_MERCHANT[key] == 0 { 3 } else { 0 };
                vec![refund_req(g, Tag::CrossRefund, other, card, &pid, amount, json!({}))]
            }
            55..=61 if refunds_allowed => {
                // Four concurrent refunds of 40% each: at most two can succeed.
                let (pid, amount, key, card, _) = refundable.pop().unwrap();
                let part = amount * 2 / 5;
                (0..4)
                    .map(|_| refund_req(g, Tag::OverRefund, key, card, &pid, amount, json!({"amount": part})))
                    .collect()
            }
            62..=65 if refunds_allowed => {
                // One refund idempotency key sent concurrently three times.
                let (pid, amount, key, card, _) = refundable.pop().unwrap();
                let r = refund_req(g, Tag::DupIdemRefund, key, card, &pid, amount, json!({}));
                vec![r.clone(), r.clone(), r]
            }
            _ => {
                let key = g.key();
                let card = g.card();
                let order = g.next_id(&format!("w{wave}-pay"));
                let body = w.cards[card].pay(&order, g.amount());
                vec![g.pay_req(Tag::Pay, key, card, body)]
            }
        };
        sent += reqs.len();
        jobs.push(Job::Group(reqs));
    }
    jobs.extend(pending_events.into_iter().map(|(_, e)| Job::Event(e)));
    jobs
}

fn refund_req(g: &mut Gen, tag: Tag, key: usize, card: usize, pid: &str, amount: i64, body: Value) -> Req {
    Req {
        tag,
        group: g.group,
        key,
        path: format!("/api/v1/payments/{pid}/refunds"),
        idem: g.next_id("r"),
        body,
        card,
        payment: Some((pid.to_owned(), amount)),
    }
}

async fn send(w: &World, r: Req) -> Outcome {
    let start = w.flags.load(Ordering::SeqCst);
    let reply = w
        .api
        .try_call(
            "POST",
            &r.path,
            None,
            Some(&r.body),
            &[("X-Api-Key", w.keys[r.key].as_str()), ("Idempotency-Key", r.idem.as_str())],
        )
        .await
        .ok();
    let end = w.flags.load(Ordering::SeqCst);
    Outcome { req: r, reply, start, end }
}

async fn event(w: &World, ev: u32) {
    w.flags.fetch_or(1 << ev, Ordering::SeqCst);
    let reply = match ev {
        EV_FREEZE_W1 | EV_FREEZE_W2 => {
            let card = if ev == EV_FREEZE_W1 { FROZEN_W1 } else { FROZEN_W2 };
            let token = &w.customers[w.card_owner[card]];
            w.api.call("POST", &format!("/api/v1/cards/{}/freeze", w.cards[card].id), Some(token), None).await
        }
        EV_SUSPEND => {
            let path = format!("/api/v1/merchants/{}/suspend", w.merchants[SUSPENDED]);
            w.api.call("POST", &path, Some(&w.admin), Some(&json!({"reason": "storm review"}))).await
        }
        _ => {
            let path = format!(
                "/api/v1/merchants/{}/api-keys/{}",
                w.merchants[KEY_MERCHANT[REVOKED_KEY]], w.key_ids[REVOKED_KEY]
            );
            w.api.call("DELETE", &path, Some(&w.owners[KEY_MERCHANT[REVOKED_KEY]]), None).await
        }
    };
    assert_eq!(reply.status, 200, "event {ev}: {}", reply.body);
    w.flags.fetch_or(1 << (ev + DONE), Ordering::SeqCst);
}

async fn run_wave(w: &World, jobs: Vec<Job>) -> Vec<Outcome> {
    let results: Vec<Vec<Outcome>> = stream::iter(jobs)
        .map(|job| async move {
            match job {
                Job::Event(ev) => {
                    event(w, ev).await;
                    Vec::new()
                }
                Job::Group(reqs) => futures::future::join_all(reqs.into_iter().map(|r| send(w, r))).await,
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().flatten().collect()
}

fn has(flags: u64, bit: u32) -> bool {
    flags & (1 << bit) != 0
}

fn freeze_event(card: usize) -> Option<u32> {
    match card {
        FROZEN_W1 => Some(EV_FREEZE_W1),
        FROZEN_W2 => Some(EV_FREEZE_W2),
        _ => None,
    }
}

/// Checks one answer against what its request may get; `Err` describes a violation.
fn check(o: &Outcome) -> Result<(), String> {
    let Some(reply) = &o.reply else { return Err("transport error".into()) };
    let (status, code) = (reply.status, o.code());
    let got = (status, code.as_str());
    // The API key layer comes first.
    let merchant = KEY_MERCHANT[o.req.key];
    if merchant == SUSPENDED {
        if has(o.start, EV_SUSPEND + DONE) {
            return if got == (403, "merchant_inactive") {
                Ok(())
            } else {
                Err("suspended merchant's key accepted".into())
            };
        }
        if has(o.end, EV_SUSPEND) && got == (403, "merchant_inactive") {
            return Ok(());
        }
    }
    if o.req.key == REVOKED_KEY {
        if has(o.start, EV_REVOKE + DONE) {
            return if got == (401, "api_key_revoked") { Ok(()) } else { Err("revoked key accepted".into()) };
        }
        if has(o.end, EV_REVOKE) && got == (401, "api_key_revoked") {
            return Ok(());
        }
    }
    // Back-pressure is an honest answer under load (counted and reported, never a silent success).
    if status == 503 && ["busy", "outcome_unknown", "unavailable"].contains(&code.as_str()) {
        return Ok(());
    }
    let victim = o.req.card == CVV_VICTIM;
    let mut ok: Vec<(u16, &str)> = Vec::new();
    match o.req.tag {
        Tag::Pay | Tag::DupOrder | Tag::DupIdemPay => {
            let frozen = freeze_event(o.req.card);
            let frozen_before = frozen.is_some_and(|e| has(o.start, e + DONE));
            let maybe_frozen = frozen.is_some_and(|e| has(o.end, e));
            if !frozen_before {
                ok.extend([(201, ""), (402, "insufficient_funds")]);
            }
            if maybe_frozen {
                // A merchant sees every card-data failure as the same `card_declined`.
                ok.extend([(402, "card_declined"), (402, "rejected")]);
            }
            if victim {
                ok.push((402, "card_declined"));
            }
            if o.req.tag == Tag::DupOrder {
                ok.push((409, "order_ref_taken"));
            }
        }
        Tag::WrongCvv | Tag::WrongExpiry | Tag::Expired => ok.push((402, "card_declined")),
        Tag::ReuseOrder => ok.push((409, "order_ref_taken")),
        Tag::Refund | Tag::DupIdemRefund => ok.push((201, "")),
        Tag::CrossRefund => ok.push((404, "not_found")),
        Tag::OverRefund => ok.extend([(201, ""), (409, "not_refundable"), (402, "refund_exceeded")]),
    }
    if ok.contains(&got) {
        Ok(())
    } else {
        Err(format!("unexpected answer, allowed {ok:?}"))
    }
}

#[actix_web::test]
async fn merchant_payment_and_refund_storm() {
    let started = std::time::Instant::now();
    let mut settings = merchant_settings();
    settings.database.pool_size = 16;
    // The storm's wrong details come from a handful of keys: the per-key decline limit is not under test here.
    settings.merchants.key_failure_limit = 1_000_000;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;

    // Three active merchants, four keys.
    let mut owners = Vec::new();
    let mut merchants = Vec::new();
    for i in 0..3 {
        let (_, owner) = verified(&app, &admin, &format!("owner{i}@example.com")).await;
        merchants.push(active_merchant(&app, &admin, &owner, &format!("Storm Shop {i}")).await);
        owners.push(owner);
    }
    let mut keys = Vec::new();
    let mut key_ids = Vec::new();
    for (i, m) in KEY_MERCHANT.iter().enumerate() {
        let (id, key) = create_key(&app, &owners[*m], merchants[*m], &format!("key{i}")).await;
        keys.push(key);
        key_ids.push(id);
    }

    // Twelve funded debit cards; the last one expired (in the database, with its new CVV).
    let mut customers = Vec::new();
    let mut cards = Vec::new();
    let mut card_owner = Vec::new();
    for u in 0..CUSTOMERS {
        let (_, token) = verified(&app, &admin, &format!("customer{u}@example.com")).await;
        for _ in 0..CARDS_PER_CUSTOMER {
            let c = issue_card(&app, &token).await;
            topup(&app, &token, c.id, INITIAL).await;
            cards.push(c);
            card_owner.push(u);
        }
        customers.push(token);
    }
    let last_year = chrono::Utc::now().year() - 1;
    set_expiry(&app, &mut cards[EXPIRED], 6, last_year);

    let w = World {
        api: app.api(),
        admin: admin.clone(),
        owners,
        merchants: merchants.clone(),
        keys,
        key_ids,
        customers,
        cards,
        card_owner,
        flags: Arc::new(AtomicU64::new(0)),
    };
    let setup = started.elapsed();

    // Wave 1: payments (one card frozen mid-wave). Wave 2: payments and refunds of wave-1 payments,
    // another card frozen, merchant 1 suspended and one of merchant 2's keys revoked mid-wave.
    let mut g = Gen { rng: StdRng::seed_from_u64(0x5eed_3e7c), group: 0, seq: 0, wrong_cvv: vec![0; EXPIRED + 1] };
    let mut none = Vec::new();
    let jobs = gen_wave(&mut g, &w, WAVE1, 1, &mut none, &[(0.35, EV_FREEZE_W1)]);
    let mut outcomes = run_wave(&w, jobs).await;
    let mut refundable: Vec<(String, i64, usize, usize, String)> = Vec::new();
    let mut seen = HashSet::new();
    for o in &outcomes {
        if o.req.tag.is_refund() || o.status() != 201 {
            continue;
        }
        let id = o.body()["id"].as_str().unwrap().to_owned();
        if seen.insert(id.clone()) {
            let order = o.req.body["order_ref"].as_str().unwrap().to_owned();
            refundable.push((id, o.body()["amount"].as_i64().unwrap(), o.req.key, o.req.card, order));
        }
    }
    assert!(refundable.len() > 150, "wave 1 made only {} payments", refundable.len());
    refundable.shuffle(&mut g.rng);
    let jobs =
        gen_wave(&mut g, &w, WAVE2, 2, &mut refundable, &[(0.3, EV_FREEZE_W2), (0.4, EV_SUSPEND), (0.5, EV_REVOKE)]);
    outcomes.extend(run_wave(&w, jobs).await);
    let storm = started.elapsed() - setup;

    // 1. Every answer is one its request may get.
    let mut violations: Vec<String> = Vec::new();
    let mut tally: BTreeMap<(Tag, u16, String), usize> = BTreeMap::new();
    for o in &outcomes {
        *tally.entry((o.req.tag, o.status(), o.code())).or_default() += 1;
        if let Err(e) = check(o) {
            violations.push(format!(
                "{e}: {:?} key {} card {} {} {} → {} {}",
                o.req.tag,
                o.req.key,
                o.req.card,
                o.req.path,
                o.req.body,
                o.status(),
                o.body()
            ));
        }
    }
    let summary: String = tally.iter().map(|((t, s, c), n)| format!("  {t:?} {s} {c}: {n}\n")).collect();
    eprintln!("merchant storm: {} requests, setup {setup:?}, storm {storm:?}\n{summary}", outcomes.len());

    // 2. Every 201 exists as a success, every 402 as a failure with no postings, every
    //    order_ref_taken names a paid order.
    let mut conn = app.db();
    let ops = all_ops(&mut conn);
    let paid_orders: HashSet<(i64, String)> = ops
        .values()
        .filter(|o| o.kind == "payment" && o.status == "success")
        .map(|o| (o.merchant_id.unwrap(), o.order_ref.clone().unwrap()))
        .collect();
    let idem_ops: HashMap<(String, String), Option<String>> = crate::common::money::idempotency_keys(&mut conn)
        .into_values()
        .flatten()
        .map(|k| ((k.scope, k.key), k.operation_id))
        .collect();
    for o in &outcomes {
        let merchant = merchants[KEY_MERCHANT[o.req.key]];
        let kind = if o.req.tag.is_refund() { "refund" } else { "payment" };
        match o.status() {
            201 => {
                let id = o.body()["id"].as_str().unwrap_or_default();
                match ops.get(id) {
                    Some(op)
                        if op.status == "success"
                            && op.kind == kind
                            && op.amount == o.body()["amount"].as_i64().unwrap_or(-1)
                            && op.merchant_id == Some(merchant)
                            && op.postings == 2
                            && (kind == "payment"
                                || op.reverses_id.as_deref() == o.req.payment.as_ref().map(|p| p.0.as_str())) => {}
                    other => violations.push(format!("201 {} not in the database as a success: {other:?}", o.body())),
                }
            }
            402 if o.code() == "card_declined" => {
                // The uniform decline carries no operation; its stored answer points at the failed
                // operation with the precise reason (every storm card exists, so one was recorded).
                let op = idem_ops
                    .get(&(format!("merchant:{merchant}"), o.req.idem.clone()))
                    .and_then(|id| id.as_ref())
                    .and_then(|id| ops.get(id));
                match op {
                    Some(op)
                        if op.status == "failed"
                            && op.postings == 0
                            && op
                                .failure_reason
                                .as_deref()
                                .and_then(|r| r.parse::<payd::payments::FailureCode>().ok())
                                .is_some_and(payd::payments::FailureCode::is_card_decline) => {}
                    other => violations.push(format!("402 {} not in the database as a decline: {other:?}", o.body())),
                }
            }
            402 => {
                let id = o.body()["operation"]["id"].as_str().unwrap_or_default();
                match ops.get(id) {
                    Some(op)
                        if op.status == "failed"
                            && op.postings == 0
                            && op.failure_reason.as_deref() == Some(o.code().as_str()) => {}
                    other => violations.push(format!("402 {} not in the database as a failure: {other:?}", o.body())),
                }
            }
            409 if o.code() == "order_ref_taken" => {
                let order = o.req.body["order_ref"].as_str().unwrap().to_owned();
                if !paid_orders.contains(&(merchant, order.clone())) {
                    violations.push(format!("order_ref_taken for {order} of merchant {merchant}, which is not paid"));
                }
            }
            _ => {}
        }
    }

    // 3. Groups: concurrent order references pay at most once; concurrent idempotency keys give
    //    identical answers and one operation; concurrent refunds never exceed their payment.
    let mut groups: HashMap<usize, Vec<&Outcome>> = HashMap::new();
    for o in &outcomes {
        groups.entry(o.req.group).or_default().push(o);
    }
    let mut over_refund_groups = 0;
    for members in groups.values() {
        let tag = members[0].req.tag;
        let stored: Vec<&Outcome> =
            members.iter().copied().filter(|o| ![0, 401, 403, 503].contains(&o.status())).collect();
        match tag {
            Tag::DupOrder => {
                let wins = members.iter().filter(|o| o.status() == 201).count();
                if wins > 1 {
                    violations.push(format!("order {} paid {wins} times", members[0].req.body["order_ref"]));
                }
            }
            Tag::DupIdemPay | Tag::DupIdemRefund => {
                if let Some(first) = stored.first() {
                    for o in &stored[1..] {
                        if (o.status(), o.body()) != (first.status(), first.body()) {
                            violations.push(format!(
                                "idempotency key {} answered differently: {} {} vs {} {}",
                                first.req.idem,
                                first.status(),
                                first.body(),
                                o.status(),
                                o.body()
                            ));
                        }
                    }
                    let count = if tag == Tag::DupIdemPay {
                        let (m, order) =
                            (Some(merchants[KEY_MERCHANT[first.req.key]]), first.req.body["order_ref"].as_str());
                        ops.values()
                            .filter(|op| {
                                op.merchant_id == m && op.order_ref.as_deref() == order && op.kind == "payment"
                            })
                            .count()
                    } else {
                        let pid = first.req.payment.as_ref().map(|p| p.0.as_str());
                        ops.values().filter(|op| op.reverses_id.as_deref() == pid).count()
                    };
                    if count != 1 {
                        violations.push(format!("idempotency key {} made {count} operations", first.req.idem));
                    }
                }
            }
            Tag::OverRefund => {
                over_refund_groups += 1;
                let (pid, amount) = members[0].req.payment.clone().unwrap();
                let refunded: i64 =
                    members.iter().filter(|o| o.status() == 201).map(|o| o.body()["amount"].as_i64().unwrap()).sum();
                let in_db: i64 = ops
                    .values()
                    .filter(|op| op.reverses_id.as_deref() == Some(pid.as_str()) && op.status == "success")
                    .map(|op| op.amount)
                    .sum();
                if refunded > amount || in_db > amount || refunded != in_db {
                    violations
                        .push(format!("payment {pid} of {amount}: answered {refunded} refunded, database {in_db}"));
                }
            }
            _ => {}
        }
    }

    // 4. Ledger invariants and per-merchant, per-card, per-order totals.
    let report = payd::ledger::verify::run(&mut conn).unwrap();
    if !report.is_clean() {
        violations.push(format!("{report}"));
    }
    for m in &merchants {
        let sum = |kind: &str| -> i64 {
            ops.values()
                .filter(|o| o.merchant_id == Some(*m) && o.kind == kind && o.status == "success")
                .map(|o| o.amount)
                .sum()
        };
        let (balance, payments, refunds) = (merchant_balance(&mut conn, *m), sum("payment"), sum("refund"));
        if balance != payments - refunds {
            violations.push(format!("merchant {m}: balance {balance} ≠ payments {payments} − refunds {refunds}"));
        }
    }
    let over = scalar(
        &mut conn,
        "SELECT count(*) AS n FROM (SELECT p.id FROM operations p JOIN operations r ON r.reverses_id = p.id \
         AND r.kind = 'refund' AND r.status = 'success' WHERE p.kind = 'payment' GROUP BY p.id, p.amount HAVING sum(r.amount) > p.amount) v",
    );
    let twice = scalar(
        &mut conn,
        "SELECT count(*) AS n FROM (SELECT merchant_id, order_ref FROM operations WHERE kind = 'payment' AND status = 'success' \
         GROUP BY merchant_id, order_ref HAVING count(*) > 1) v",
    );
    if over != 0 || twice != 0 {
        violations.push(format!("{over} payments over-refunded, {twice} order references paid twice"));
    }
    for c in &w.cards {
        let balance = card_balance(&mut conn, c.id);
        let paid: i64 = ops
            .values()
            .filter(|o| o.kind == "payment" && o.status == "success" && o.source_card_id == Some(c.id))
            .map(|o| o.amount)
            .sum();
        let back: i64 = ops
            .values()
            .filter(|o| o.kind == "refund" && o.status == "success" && o.dest_card_id == Some(c.id))
            .map(|o| o.amount)
            .sum();
        if balance < 0 || balance != INITIAL - paid + back {
            violations
                .push(format!("card {}: balance {balance}, top-up {INITIAL} − paid {paid} + refunded {back}", c.id));
        }
    }

    // 5. The storm really exercised what it claims to.
    let count = |tag: Option<Tag>, status: u16, code: &str| -> usize {
        tally
            .iter()
            .filter(|((t, s, c), _)| tag.is_none_or(|x| x == *t) && *s == status && c == code)
            .map(|(_, n)| n)
            .sum()
    };
    let after =
        |bit: u32, f: &dyn Fn(&Outcome) -> bool| outcomes.iter().filter(|o| has(o.start, bit + DONE) && f(o)).count();
    let post_suspend = after(EV_SUSPEND, &|o| KEY_MERCHANT[o.req.key] == SUSPENDED);
    let post_revoke = after(EV_REVOKE, &|o| o.req.key == REVOKED_KEY);
    let post_freeze =
        after(EV_FREEZE_W1, &|o| o.req.card == FROZEN_W1 && o.status() == 402 && o.code() == "card_declined");
    // The precise reasons behind the uniform answers are recorded for the cardholder and admins.
    let reason =
        |r: &str| ops.values().filter(|o| o.kind == "payment" && o.failure_reason.as_deref() == Some(r)).count();
    let expectations = [
        ("successful payments", count(Some(Tag::Pay), 201, "") > 200),
        ("successful refunds", count(Some(Tag::Refund), 201, "") > 20),
        ("wrong CVVs", count(Some(Tag::WrongCvv), 402, "card_declined") > 10 && reason("invalid_cvv") > 0),
        ("card locked after wrong details", reason("card_locked") > 0),
        ("wrong expiry", count(Some(Tag::WrongExpiry), 402, "card_declined") > 10 && reason("invalid_expiry") > 0),
        ("expired card", count(Some(Tag::Expired), 402, "card_declined") > 10 && reason("card_expired") > 10),
        ("duplicate orders refused", count(Some(Tag::DupOrder), 409, "order_ref_taken") > 10),
        ("reused orders refused", count(Some(Tag::ReuseOrder), 409, "order_ref_taken") > 5),
        ("cross-merchant refunds refused", count(Some(Tag::CrossRefund), 404, "not_found") > 5),
        (
            "over-refunds refused",
            count(Some(Tag::OverRefund), 409, "not_refundable") + count(Some(Tag::OverRefund), 402, "refund_exceeded")
                >= over_refund_groups,
        ),
        ("requests after suspension", post_suspend > 20),
        ("requests after revocation", post_revoke > 10),
        ("payments refused on the frozen card", post_freeze > 0),
    ];
    for (what, ok) in expectations {
        if !ok {
            violations.push(format!("the storm did not exercise: {what}"));
        }
    }
    let shown: Vec<&String> = violations.iter().take(25).collect();
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        shown.iter().map(|s| format!("  {s}\n")).collect::<String>()
    );
    eprintln!("merchant storm: clean in {:?}", started.elapsed());
}
