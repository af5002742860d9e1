//! Helpers for the money-flow correctness tests (storm, crash): a non-panicking HTTP client that
//! works against an in-process `TestApp` or an external `payd` process, and read-only database
//! snapshots of operations, idempotency keys, postings and card balances.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, SmallInt, Text};
use serde_json::{json, Value};

use super::{ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD};

/// One HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    /// `idempotent-replayed: true` was present.
    pub replayed: bool,
    pub body: Value,
}

/// A minimal client; transport errors are returned, not panicked on.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            // No idle connection reuse: a pooled keep-alive connection that the server closes just
            // as it is reused fails with a transport error, which would blur "no answer" in the tests.
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Self { base: base.into(), client }
    }

    /// Sends a request; `Err` on any transport failure (refused, reset, truncated body).
    pub async fn try_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, reqwest::Error> {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(m, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let replayed = resp.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()) == Some("true");
        let text = resp.text().await?;
        Ok(Reply { status, replayed, body: serde_json::from_str(&text).unwrap_or(Value::Null) })
    }

    /// Like `try_call`, panicking on a transport failure.
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
        self.try_call(method, path, token, body, &[])
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: transport error {e}"))
    }

    /// A money-moving POST with an `Idempotency-Key`.
    pub async fn money(&self, token: &str, path: &str, key: &str, body: &Value) -> Result<Reply, reqwest::Error> {
        self.try_call("POST", path, Some(token), Some(body), &[("Idempotency-Key", key)]).await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let r =
            self.call("POST", "/api/v1/auth/login", None, Some(&json!({"email": email, "password": password}))).await;
        assert_eq!(r.status, 200, "login {email}: {}", r.body);
        r.body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Creates a verified user through the admin API, logs in; returns (user id, access token).
    pub async fn verified_user(&self, admin: &str, email: &str) -> (i64, String) {
        let r = self
            .call(
                "POST",
                "/api/v1/users",
                Some(admin),
                Some(&json!({"first_name": "Storm", "last_name": "User", "email": email, "password": PASSWORD,
                              "roles": ["user"], "email_verified": true})),
            )
            .await;
        assert_eq!(r.status, 201, "admin create user: {}", r.body);
        let id = r.body["id"].as_i64().unwrap();
        (id, self.login(email, PASSWORD).await)
    }

    /// Issues a card; `for_user` + `credit_limit` need an admin token. Returns the card id.
    pub async fn issue_card(
        &self,
        token: &str,
        card_type: &str,
        for_user: Option<i64>,
        credit_limit: Option<i64>,
    ) -> i64 {
        let mut body = json!({"card_type": card_type, "brand": "visa"});
        if let Some(u) = for_user {
            body["user_id"] = json!(u);
        }
        if let Some(l) = credit_limit {
            body["credit_limit"] = json!(l);
        }
        let r = self.call("POST", "/api/v1/cards", Some(token), Some(&body)).await;
        assert_eq!(r.status, 201, "issue card: {}", r.body);
        r.body["card"]["id"].as_i64().unwrap()
    }

    /// Waits until `/readyz` answers 200 (bounded, so a dead server fails the test instead of hanging).
    pub async fn wait_ready(&self, bound: std::time::Duration) {
        let start = std::time::Instant::now();
        loop {
            if let Ok(r) = self.try_call("GET", "/readyz", None, None, &[]).await {
                if r.status == 200 {
                    return;
                }
            }
            assert!(start.elapsed() < bound, "payd at {} did not become ready", self.base);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl super::TestApp {
    /// A non-panicking client for this app.
    pub fn api(&self) -> Api {
        Api::new(self.base.clone())
    }
}

/// Runs `payd verify` logic and asserts a clean report.
pub fn assert_verify_clean(conn: &mut PgConnection, when: &str) {
    let report = payd::ledger::verify::run(conn).unwrap();
    assert!(report.is_clean(), "verify {when}:\n{report}");
}

/// An operation row.
#[derive(Debug, Clone, QueryableByName)]
pub struct DbOp {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub failure_reason: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub amount: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub source_card_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub dest_card_id: Option<i64>,
    #[diesel(sql_type = BigInt)]
    pub postings: i64,
}

/// Every operation by id, with its posting count.
pub fn operations(conn: &mut PgConnection) -> HashMap<String, DbOp> {
    let rows: Vec<DbOp> = diesel::sql_query(
        "SELECT o.id::text AS id, o.kind, o.status, o.failure_reason, o.amount, o.source_card_id, o.dest_card_id, \
                (SELECT count(*) FROM postings p WHERE p.operation_id = o.id) AS postings \
         FROM operations o",
    )
    .load(conn)
    .unwrap();
    rows.into_iter().map(|o| (o.id.clone(), o)).collect()
}

/// An idempotency row.
#[derive(Debug, Clone, QueryableByName)]
pub struct DbKey {
    #[diesel(sql_type = Text)]
    pub scope: String,
    #[diesel(sql_type = Text)]
    pub key: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub operation_id: Option<String>,
    #[diesel(sql_type = SmallInt)]
    pub response_status: i16,
    #[diesel(sql_type = Text)]
    pub response_body: String,
}

/// Every idempotency row by key (keys used by the tests are globally unique, across scopes).
pub fn idempotency_keys(conn: &mut PgConnection) -> HashMap<String, Vec<DbKey>> {
    let rows: Vec<DbKey> = diesel::sql_query(
        "SELECT scope, key, operation_id::text AS operation_id, response_status, response_body::text AS response_body \
         FROM idempotency_keys",
    )
    .load(conn)
    .unwrap();
    let mut out: HashMap<String, Vec<DbKey>> = HashMap::new();
    for r in rows {
        out.entry(r.key.clone()).or_default().push(r);
    }
    out
}

/// A card with its account balance and floor.
#[derive(Debug, Clone, QueryableByName)]
pub struct DbCard {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub user_id: i64,
    #[diesel(sql_type = Text)]
    pub card_type: String,
    #[diesel(sql_type = BigInt)]
    pub credit_limit: i64,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = BigInt)]
    pub balance: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub min_balance: Option<i64>,
}

pub fn cards(conn: &mut PgConnection) -> HashMap<i64, DbCard> {
    let rows: Vec<DbCard> = diesel::sql_query(
        "SELECT c.id, c.user_id, c.card_type, c.credit_limit, c.status, a.balance, a.min_balance \
         FROM cards c JOIN accounts a ON a.id = c.account_id",
    )
    .load(conn)
    .unwrap();
    rows.into_iter().map(|c| (c.id, c)).collect()
}

#[derive(QueryableByName)]
struct Sum {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Sum of all card account balances.
pub fn card_balance_total(conn: &mut PgConnection) -> i64 {
    diesel::sql_query("SELECT COALESCE(sum(a.balance), 0)::bigint AS n FROM accounts a WHERE a.kind = 'card'")
        .get_result::<Sum>(conn)
        .unwrap()
        .n
}

/// Sum of the amounts of successful operations of `kind`.
pub fn success_total(conn: &mut PgConnection, kind: &str) -> i64 {
    diesel::sql_query(
        "SELECT COALESCE(sum(amount), 0)::bigint AS n FROM operations WHERE kind = $1 AND status = 'success'",
    )
    .bind::<Text, _>(kind)
    .get_result::<Sum>(conn)
    .unwrap()
    .n
}

/// Asserts the money-supply and floor invariants over the card accounts:
/// Σ card balances = top-ups − withdrawals (no reversals are made by the tests), no debit card
/// below zero and no credit card below −credit_limit (and the account floor matches the card).
pub fn assert_money_supply(conn: &mut PgConnection) {
    let total = card_balance_total(conn);
    let topups = success_total(conn, "topup");
    let withdrawals = success_total(conn, "withdrawal");
    assert_eq!(success_total(conn, "reversal"), 0, "these tests make no reversals");
    assert_eq!(total, topups - withdrawals, "Σ card balances must equal top-ups − withdrawals");
    for c in cards(conn).values() {
        assert_eq!(c.min_balance, Some(-c.credit_limit), "account floor of card {}", c.id);
        if c.card_type == "debit" {
            assert!(c.balance >= 0, "debit card {} is negative: {}", c.id, c.balance);
        } else {
            assert!(c.balance >= -c.credit_limit, "credit card {} below its limit: {c:?}", c.id);
        }
    }
}
