//! Shared harness of the events tests: the real app with access to its `AppState`, a probe consumer
//! that records every delivery, a money storm, and checks of exactly-once / per-key order against the
//! outbox.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use diesel::prelude::*;
use futures::StreamExt;
use serde_json::{json, Value};

use payd::app::AppState;
use payd::config::Settings;
use payd::events::{Consumer, Envelope, Handled, Handler, HandlerError};

use crate::common::money::Api;

/// A running app with its state.
pub struct EvApp {
    pub api: Api,
    pub state: AppState,
    pub settings: Settings,
    pub handle: actix_web::dev::ServerHandle,
    /// The gRPC port (0 when `grpc.enabled` is off).
    pub grpc_port: u16,
}

impl EvApp {
    pub async fn spawn(settings: Settings) -> Self {
        if let Ok(filter) = std::env::var("PAYD_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let running = payd::run(settings.clone()).await.expect("app starts");
        let handle = running.handle.clone();
        let state = running.state.clone();
        let grpc_port = running.grpc.as_ref().map_or(0, |g| g.port);
        actix_web::rt::spawn(running.server);
        let api = Api::new(format!("http://127.0.0.1:{}", running.port));
        Self { api, state, settings, handle, grpc_port }
    }

    pub fn db(&self) -> PgConnection {
        PgConnection::establish(self.settings.database.url.expose()).unwrap()
    }

    /// Subscribes a probe consumer group through the app's broker adapter.
    pub async fn probe(&self, name: &str) -> Probe {
        let probe = Probe::default();
        let consumer = Consumer::new(name, Arc::new(probe.clone()), self.state.db.clone(), &self.settings.events);
        self.state.events.broker.subscribe(consumer).await.unwrap();
        probe
    }
}

/// Records every event delivered to it (duplicates included), in arrival order.
#[derive(Clone, Default)]
pub struct Probe {
    pub seen: Arc<Mutex<Vec<Envelope>>>,
}

#[async_trait]
impl Handler for Probe {
    async fn handle(&self, event: &Envelope) -> Result<Handled, HandlerError> {
        self.seen.lock().unwrap().push(event.clone());
        Ok(Handled::Processed)
    }
}

impl Probe {
    pub fn distinct(&self) -> HashSet<uuid::Uuid> {
        self.seen.lock().unwrap().iter().map(|e| e.id).collect()
    }
    pub fn total(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// One outbox row as the checks need it.
#[derive(Debug, Clone, QueryableByName)]
pub struct Row {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub id: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub event_id: uuid::Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub aggregate_key: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub event_type: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub published: bool,
}

pub fn outbox(conn: &mut PgConnection) -> Vec<Row> {
    diesel::sql_query(
        "SELECT id, event_id, aggregate_key, event_type, published_at IS NOT NULL AS published FROM outbox ORDER BY id",
    )
    .load(conn)
    .unwrap()
}

pub fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let n: N = diesel::sql_query(sql).get_result(conn).unwrap();
    n.n
}

/// How many published events the notifier turns into e-mail — and so records as processed — when
/// every user gets every money notification (`notifications.transfer_min_amount = 0`, nobody opted
/// out). Events that send nothing leave no dedupe row.
pub fn mailed_events(conn: &mut PgConnection) -> i64 {
    count(
        conn,
        "SELECT count(*) AS n FROM outbox WHERE event_type IN ('user.verified', 'password.changed', \
         'topup.completed', 'withdrawal.completed', 'transfer.completed', 'payment.completed', 'refund.completed')",
    )
}

/// Waits until `done()` holds, polling; panics with `what` after `bound`.
pub async fn eventually<F: FnMut() -> bool>(bound: Duration, what: &str, mut done: F) {
    let start = Instant::now();
    loop {
        if done() {
            return;
        }
        assert!(start.elapsed() < bound, "not reached within {bound:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the probe has seen every outbox event and the outbox is fully published.
pub async fn all_delivered(app: &EvApp, probe: &Probe, bound: Duration) {
    let mut conn = app.db();
    let start = Instant::now();
    loop {
        let rows = outbox(&mut conn);
        let seen = probe.distinct();
        let published = rows.iter().filter(|r| r.published).count();
        let delivered = rows.iter().filter(|r| seen.contains(&r.event_id)).count();
        if published == rows.len() && delivered == rows.len() {
            return;
        }
        assert!(
            start.elapsed() < bound,
            "not every outbox event reached the probe within {bound:?}: {} events, {published} published, \
             {delivered} delivered ({} deliveries in all)",
            rows.len(),
            probe.total()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every outbox event arrived (at least once; exactly once after dedupe by id), nothing else
/// arrived, and — per aggregate key — first arrivals follow outbox order.
pub fn assert_exactly_once_in_order(rows: &[Row], probe: &Probe) {
    let seen = probe.seen.lock().unwrap().clone();
    let ids: HashSet<uuid::Uuid> = rows.iter().map(|r| r.event_id).collect();
    let mut first: Vec<&Envelope> = Vec::new();
    let mut dedupe = HashSet::new();
    for e in &seen {
        assert!(ids.contains(&e.id), "delivered event {} ({}) is not in the outbox", e.id, e.event_type);
        if dedupe.insert(e.id) {
            first.push(e);
        }
    }
    assert_eq!(dedupe.len(), ids.len(), "distinct deliveries vs outbox events");
    let order: HashMap<uuid::Uuid, i64> = rows.iter().map(|r| (r.event_id, r.id)).collect();
    let mut last: HashMap<&str, i64> = HashMap::new();
    for e in first {
        let id = order[&e.id];
        if let Some(prev) = last.insert(e.aggregate_key.as_str(), id) {
            assert!(prev < id, "order broken for {}: outbox row {id} arrived after row {prev}", e.aggregate_key);
        }
    }
}

/// Cards and tokens of a storm's participants.
pub struct Crowd {
    pub admin: String,
    pub tokens: Vec<String>,
    pub cards: Vec<i64>,
}

/// Creates `n` verified users with one funded debit card each.
pub async fn crowd(api: &Api, n: usize) -> Crowd {
    let admin = api.admin_token().await;
    let mut tokens = Vec::new();
    let mut cards = Vec::new();
    for i in 0..n {
        let email = format!("storm{i}-{}@example.com", uuid::Uuid::new_v4().simple());
        let (_, token) = api.verified_user(&admin, &email).await;
        let card = api.issue_card(&token, "debit", None, None).await;
        let r = api
            .money(
                &token,
                "/api/v1/topups",
                &format!("seed-{card}"),
                &json!({"card_id": card, "amount": 50_000_000, "method": "ovo"}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "seed top-up: {}", r.body);
        tokens.push(token);
        cards.push(card);
    }
    Crowd { admin, tokens, cards }
}

/// Fires `ops` money operations (top-ups, withdrawals, transfers) with bounded concurrency; counts
/// completions in `done`. Returns the number of answers with status 201 (every op should succeed).
pub async fn storm(api: &Api, crowd: &Crowd, ops: usize, tag: &str, done: Arc<AtomicUsize>) -> usize {
    let n = crowd.cards.len();
    let results = futures::stream::iter(0..ops)
        .map(|i| {
            let api = api.clone();
            let (from, to) = (i % n, (i * 7 + 1) % n);
            let token = crowd.tokens[from].clone();
            let (card, other) = (crowd.cards[from], crowd.cards[if to == from { (from + 1) % n } else { to }]);
            let done = done.clone();
            let key = format!("{tag}-{i}");
            async move {
                let (path, body): (&str, Value) = match i % 3 {
                    0 => ("/api/v1/topups", json!({"card_id": card, "amount": 100_000, "method": "ovo"})),
                    1 => ("/api/v1/withdrawals", json!({"card_id": card, "amount": 60_000})),
                    _ => ("/api/v1/transfers", json!({"from_card_id": card, "to_card_id": other, "amount": 70_000})),
                };
                let r = api.money(&token, path, &key, &body).await;
                done.fetch_add(1, Ordering::SeqCst);
                match r {
                    Ok(r) if r.status == 201 => 1,
                    Ok(r) => panic!("{path} answered {}: {}", r.status, r.body),
                    Err(e) => panic!("{path}: {e}"),
                }
            }
        })
        .buffer_unordered(12)
        .collect::<Vec<usize>>()
        .await;
    results.into_iter().sum()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}
