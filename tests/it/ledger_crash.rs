//! "Crash": the real `payd` binary is SIGKILLed in the middle of a storm of transfers and
//! withdrawals, then restarted on the same database. Every answer given before the kill must be
//! durable and replayable; requests that got no answer resolve exactly once when replayed; the
//! ledger invariants hold throughout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use diesel::prelude::*;
use futures::stream::{self, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::common::money::*;
use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD};

const USERS: usize = 3;
const CARDS_PER_USER: usize = 3;
const INITIAL: i64 = 3_000_000;
const CREDIT_LIMIT: i64 = 1_000_000;
const OPS: usize = 1_200;
const KILL_AFTER: usize = OPS * 2 / 5;
const CONCURRENCY: usize = 32;

/// The `payd` child process; killed (SIGKILL) and reaped when dropped, so a failing test never
/// leaves it running.
pub(crate) struct Payd {
    child: std::process::Child,
}

impl Payd {
    pub(crate) fn start(db_url: &str, port: u16, prefix: &str, log: &PathBuf) -> Self {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_payd"))
            .arg("serve")
            .env("PAYD_ENV", "test")
            .env("PAYD_CONFIG_DIR", manifest.join("config"))
            .env("PAYD_DATABASE__URL", db_url)
            .env("PAYD_DATABASE__CREATE_IF_MISSING", "false")
            .env("PAYD_SERVER__PORT", port.to_string())
            .env("PAYD_REDIS__PREFIX", prefix)
            .env("PAYD_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("PAYD_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("PAYD_AUTH__AUTH_RATE_LIMIT_PER_MINUTE", "100000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("payd binary starts");
        Self { child }
    }

    /// SIGKILL (on Unix `Child::kill` sends SIGKILL) and reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Payd {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[derive(Clone, Debug)]
struct Req {
    user: usize,
    path: &'static str,
    key: String,
    body: Value,
}

/// Answers that count as "replied": the outcome is durably decided.
fn definitive(r: &Reply) -> bool {
    matches!(r.status, 201 | 402)
}

/// Replays `req` until a definitive answer (503 = busy / outcome unknown: retry with the same key).
async fn settle(api: &Api, tokens: &[String], req: &Req) -> Reply {
    for _ in 0..20 {
        let r = api.money(&tokens[req.user], req.path, &req.key, &req.body).await;
        match r {
            Ok(r) if definitive(&r) => return r,
            Ok(r) => assert_eq!(r.status, 503, "replay of {}: {}", req.key, r.body),
            Err(e) => panic!("replay of {} after restart: transport error {e}", req.key),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("no definitive answer for {}", req.key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_survives_sigkill() {
    let started = std::time::Instant::now();
    let db_url = common::fresh_database();
    let port = free_port();
    let prefix = format!("payd-crash:{}:", uuid::Uuid::new_v4().simple());
    let log = std::env::temp_dir().join(format!("payd-crash-{}.log", uuid::Uuid::new_v4().simple()));
    eprintln!("payd log: {}", log.display());
    let api = Api::new(format!("http://127.0.0.1:{port}"));
    let bound = std::time::Duration::from_secs(120);

    let first = Arc::new(Mutex::new(Payd::start(&db_url, port, &prefix, &log)));
    api.wait_ready(bound).await;

    // Users, cards (user 0 also holds an admin-issued credit card), funding.
    let admin = api.admin_token().await;
    let mut tokens = Vec::new();
    let mut emails = Vec::new();
    let mut cards: Vec<Vec<i64>> = Vec::new();
    for u in 0..USERS {
        let email = format!("crash{u}@example.com");
        let (id, token) = api.verified_user(&admin, &email).await;
        let mut cs = Vec::new();
        for _ in 0..CARDS_PER_USER {
            cs.push(api.issue_card(&token, "debit", None, None).await);
        }
        if u == 0 {
            cs.push(api.issue_card(&admin, "credit", Some(id), Some(CREDIT_LIMIT)).await);
        }
        tokens.push(token);
        emails.push(email);
        cards.push(cs);
    }
    let all: Vec<i64> = cards.iter().flatten().copied().collect();
    let mut funding = Vec::new();
    for (u, cs) in cards.iter().enumerate() {
        for c in cs.iter().take(CARDS_PER_USER) {
            let req = Req {
                user: u,
                path: "/api/v1/topups",
                key: format!("crash-fund-{c}"),
                body: json!({"card_id": c, "amount": INITIAL, "method": "bca"}),
            };
            let r = api.money(&tokens[u], req.path, &req.key, &req.body).await.unwrap();
            assert_eq!(r.status, 201, "funding: {}", r.body);
            funding.push((req, r));
        }
    }

    // The storm: unique keys, transfers both ways and withdrawals.
    let mut rng = StdRng::seed_from_u64(0xc0ffee);
    let reqs: Vec<Req> = (0..OPS)
        .map(|i| {
            let u = rng.gen_range(0..USERS);
            let from = cards[u][rng.gen_range(0..cards[u].len())];
            let amount = rng.gen_range(1..=8) * 50_000;
            if rng.gen_bool(0.3) {
                Req {
                    user: u,
                    path: "/api/v1/withdrawals",
                    key: format!("crash-{i}"),
                    body: json!({"card_id": from, "amount": amount}),
                }
            } else {
                let to = loop {
                    let c = all[rng.gen_range(0..all.len())];
                    if c != from {
                        break c;
                    }
                };
                Req {
                    user: u,
                    path: "/api/v1/transfers",
                    key: format!("crash-{i}"),
                    body: json!({"from_card_id": from, "to_card_id": to, "amount": amount}),
                }
            }
        })
        .collect();

    // Kill when the KILL_AFTER-th request is being sent (CONCURRENCY-1 others are in flight then).
    let launched = Arc::new(AtomicUsize::new(0));
    let kill_signal = Arc::new(tokio::sync::Notify::new());
    let killed_at = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (first, kill_signal, launched, killed_at) =
            (first.clone(), kill_signal.clone(), launched.clone(), killed_at.clone());
        async move {
            kill_signal.notified().await;
            first.lock().unwrap().kill();
            killed_at.store(launched.load(Ordering::SeqCst), Ordering::SeqCst);
        }
    };
    let storm = stream::iter(reqs.iter().enumerate())
        .map(|(i, req)| {
            let (api, tokens, launched, kill_signal) = (&api, &tokens, launched.clone(), kill_signal.clone());
            async move {
                if launched.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                    kill_signal.notify_one();
                }
                (i, api.money(&tokens[req.user], req.path, &req.key, &req.body).await.ok())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>();
    let ((), mut answers) = futures::join!(killer, storm);
    answers.sort_by_key(|(i, _)| *i);
    let answers: Vec<Option<Reply>> = answers.into_iter().map(|(_, r)| r).collect();
    drop(first);

    let replied: Vec<usize> = (0..OPS).filter(|i| answers[*i].as_ref().is_some_and(definitive)).collect();
    let unanswered: Vec<usize> = (0..OPS).filter(|i| !answers[*i].as_ref().is_some_and(definitive)).collect();
    for i in &unanswered {
        if let Some(r) = &answers[*i] {
            assert_eq!(r.status, 503, "unexpected answer before the kill: {}", r.body);
        }
    }
    eprintln!(
        "killed after {} launched requests; {} definitive answers, {} without one ({:?})",
        killed_at.load(Ordering::SeqCst),
        replied.len(),
        unanswered.len(),
        started.elapsed()
    );
    assert!(replied.len() >= KILL_AFTER / 2, "too few answers before the kill: {}", replied.len());
    assert!(!unanswered.is_empty(), "the kill happened after every request was answered");

    // Straight after the crash (nothing running): the database is consistent, and every answer
    // given is durable.
    let mut conn = PgConnection::establish(&db_url).unwrap();
    assert_verify_clean(&mut conn, "after SIGKILL");
    assert_money_supply(&mut conn);
    let ops = operations(&mut conn);
    let keys_after_crash = idempotency_keys(&mut conn);
    for i in &replied {
        let (req, reply) = (&reqs[*i], answers[*i].as_ref().unwrap());
        let row = &keys_after_crash.get(&req.key).unwrap_or_else(|| panic!("answered {} not stored", req.key))[0];
        let stored: Value = serde_json::from_str(&row.response_body).unwrap();
        assert_eq!(stored, reply.body, "stored answer of {}", req.key);
        let op = &ops[row.operation_id.as_ref().unwrap()];
        match reply.status {
            201 => {
                assert_eq!(reply.body["id"].as_str(), Some(op.id.as_str()));
                assert_eq!((op.status.as_str(), op.postings), ("success", 2), "{}", req.key);
            }
            _ => {
                assert_eq!(reply.body["operation"]["id"].as_str(), Some(op.id.as_str()));
                assert_eq!((op.status.as_str(), op.postings), ("failed", 0), "{}", req.key);
            }
        }
    }
    let applied_unanswered: HashSet<usize> =
        unanswered.iter().copied().filter(|i| keys_after_crash.contains_key(&reqs[*i].key)).collect();

    // Restart on the same database and port.
    let _second = Payd::start(&db_url, port, &prefix, &log);
    api.wait_ready(bound).await;
    assert_verify_clean(&mut conn, "after restart");
    let mut tokens = Vec::new();
    for e in &emails {
        tokens.push(api.login(e, common::PASSWORD).await);
    }

    // Every answer given before the kill replays identically.
    for i in &replied {
        let (req, before) = (&reqs[*i], answers[*i].as_ref().unwrap());
        let again = api.money(&tokens[req.user], req.path, &req.key, &req.body).await.unwrap();
        assert_eq!(again.status, before.status, "replay of {}: {}", req.key, again.body);
        assert!(again.replayed, "replay of {} was executed again", req.key);
        if before.status == 201 {
            assert_eq!(again.body, before.body, "replay of {}", req.key);
        } else {
            assert_eq!(again.body["operation"], before.body["operation"], "replay of {}", req.key);
            assert_eq!(again.body["error"]["code"], before.body["error"]["code"]);
        }
        // Same key, another body: still a conflict after the restart.
        let mut other = req.body.clone();
        other["amount"] = json!(other["amount"].as_i64().unwrap() + 50_000);
        let c = api.money(&tokens[req.user], req.path, &req.key, &other).await.unwrap();
        assert_eq!(c.status, 409, "{}", c.body);
    }

    // Requests without an answer: replaying resolves each exactly once.
    let mut final_answers: HashMap<usize, Reply> = replied.iter().map(|i| (*i, answers[*i].clone().unwrap())).collect();
    let mut executed_on_replay = 0;
    for i in &unanswered {
        let req = &reqs[*i];
        let r = settle(&api, &tokens, req).await;
        if applied_unanswered.contains(i) {
            assert!(r.replayed, "{} was applied before the crash; the replay must return it", req.key);
            let stored: Value = serde_json::from_str(&keys_after_crash[&req.key][0].response_body).unwrap();
            assert_eq!(r.body, stored, "{}", req.key);
        } else if !r.replayed {
            executed_on_replay += 1;
        }
        let again = settle(&api, &tokens, req).await;
        assert!(again.replayed);
        assert_eq!((again.status, &again.body), (r.status, &r.body), "second replay of {}", req.key);
        final_answers.insert(*i, r);
    }
    eprintln!(
        "unanswered: {} were applied before the crash, {executed_on_replay} executed on replay",
        applied_unanswered.len()
    );

    // Final state: clean, one operation per key, balances equal to what the answers say.
    assert_verify_clean(&mut conn, "after replaying everything");
    assert_money_supply(&mut conn);
    let ops = operations(&mut conn);
    let keys = idempotency_keys(&mut conn);
    let mut mapped = HashSet::new();
    let mut expected: HashMap<i64, i64> = all.iter().map(|c| (*c, 0)).collect();
    let every: Vec<(&Req, &Reply)> =
        funding.iter().map(|(q, r)| (q, r)).chain((0..OPS).map(|i| (&reqs[i], &final_answers[&i]))).collect();
    for (req, reply) in &every {
        let rows = &keys[&req.key];
        assert_eq!(rows.len(), 1, "{}", req.key);
        let op_id = rows[0].operation_id.clone().unwrap();
        assert!(mapped.insert(op_id.clone()), "operation {op_id} has two keys");
        let op = &ops[&op_id];
        if reply.status == 201 {
            assert_eq!(reply.body["id"].as_str(), Some(op_id.as_str()));
            assert_eq!(op.status, "success");
            if let Some(s) = op.source_card_id {
                *expected.get_mut(&s).unwrap() -= op.amount;
            }
            if let Some(d) = op.dest_card_id {
                *expected.get_mut(&d).unwrap() += op.amount;
            }
        } else {
            assert_eq!(reply.body["operation"]["id"].as_str(), Some(op_id.as_str()));
            assert_eq!((op.status.as_str(), op.postings), ("failed", 0));
        }
    }
    assert_eq!(mapped.len(), ops.len(), "operations without a request behind them");
    let db_cards = common::money::cards(&mut conn);
    for c in &all {
        assert_eq!(db_cards[c].balance, expected[c], "card {c}");
    }
    let ok = final_answers.values().filter(|r| r.status == 201).count();
    eprintln!("crash test: {} operations ({ok} storm successes) in {:?}", ops.len(), started.elapsed());
    let _ = std::fs::remove_file(&log);
}
