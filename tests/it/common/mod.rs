//! Test harness: the real app on a random port, a fresh database per test (cloned from a migrated
//! template), a per-test Redis key prefix, and HTTP helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use serde_json::{json, Value};

use payd::config::Settings;

pub const ADMIN_EMAIL: &str = "admin@test.local";
pub const ADMIN_PASSWORD: &str = "admin-pass-123";
pub const PASSWORD: &str = "user-pass-123";

fn server_url() -> String {
    std::env::var("PAYD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Name of the template database for the current set of migrations.
fn template_name() -> String {
    use sha2::{Digest, Sha256};
    let mut entries: Vec<PathBuf> = walk(&manifest().join("migrations"));
    entries.sort();
    let mut h = Sha256::new();
    for p in entries {
        h.update(p.to_string_lossy().as_bytes());
        h.update(std::fs::read(&p).unwrap());
    }
    format!("payd_tpl_{}", &hex::encode(h.finalize())[..16])
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Creates a fresh, migrated database and returns its URL.
pub fn fresh_database() -> String {
    let admin_url = format!("{}/postgres", server_url());
    let mut conn = PgConnection::establish(&admin_url).expect("PostgreSQL must be running on 127.0.0.1:5432");
    let tpl = template_name();
    conn.batch_execute("SELECT pg_advisory_lock(727274)").unwrap();
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let exists: N = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(&tpl)
        .get_result(&mut conn)
        .unwrap();
    if exists.n == 0 {
        let building = format!("{tpl}_build");
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {building}")).unwrap();
        conn.batch_execute(&format!("CREATE DATABASE {building}")).unwrap();
        {
            let mut c = PgConnection::establish(&format!("{}/{building}", server_url())).unwrap();
            payd::storage::migrate_up(&mut c).unwrap();
        }
        conn.batch_execute(&format!("ALTER DATABASE {building} RENAME TO {tpl}")).unwrap();
    }
    conn.batch_execute("SELECT pg_advisory_unlock(727274)").unwrap();
    let name = format!("payd_t_{}", uuid::Uuid::new_v4().simple());
    // Concurrent clones of one template can collide briefly; retry.
    let mut last = None;
    for _ in 0..50 {
        match conn.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {tpl}")) {
            Ok(()) => {
                let url = format!("{}/{name}?sslmode=disable", server_url());
                // A template built by a test binary of another build of this tree (same migration files,
                // older embedded migrations) may lack the newest migrations: apply whatever is missing.
                let mut c = PgConnection::establish(&url).unwrap();
                payd::storage::migrate_up(&mut c).unwrap();
                return url;
            }
            Err(e) => {
                last = Some(e);
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    panic!("could not clone the template database: {last:?}");
}

/// Test settings: fresh database, isolated Redis keys, bootstrap admin, random port.
pub fn settings() -> Settings {
    let mut s = Settings::load_from("test", &manifest().join("config"), false).unwrap();
    s.database.url = payd::config::Secret::new(fresh_database());
    s.database.create_if_missing = false;
    s.database.migrate_on_start = false;
    s.database.pool_size = 8;
    s.redis.prefix = format!("payd-test:{}:", uuid::Uuid::new_v4().simple());
    s.server.port = 0;
    s.server.workers = 2;
    s.auth.bootstrap_admin_email = ADMIN_EMAIL.into();
    s.auth.bootstrap_admin_password = payd::config::Secret::new(ADMIN_PASSWORD);
    s.auth.auth_rate_limit_per_minute = 1000;
    s
}

pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub handle: actix_web::dev::ServerHandle,
    /// The gRPC port (0 when `grpc.enabled` is off).
    pub grpc_port: u16,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(settings()).await
    }

    pub async fn spawn_with(settings: Settings) -> Self {
        // `PAYD_TEST_LOG=debug cargo test …` shows the app's logs.
        if let Ok(level) = std::env::var("PAYD_TEST_LOG") {
            let mut t = settings.telemetry.clone();
            t.log_level = level;
            t.log_format = payd::config::LogFormat::Pretty;
            std::mem::forget(payd::telemetry::init(&t));
        }
        let running = payd::run(settings.clone()).await.expect("app starts");
        let handle = running.handle.clone();
        actix_web::rt::spawn(running.server);
        let base = format!("http://127.0.0.1:{}", running.port);
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build().unwrap();
        let grpc_port = running.grpc.as_ref().map_or(0, |g| g.port);
        Self { base, port: running.port, client, settings, handle, grpc_port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request with an optional bearer token and JSON body; returns (status, JSON body or Null).
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let (status, _, body) = self.call_full(method, path, token, body, &[]).await;
        (status, body)
    }

    pub async fn call_full(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(m, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, headers, value)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call("GET", path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call("POST", path, token, Some(body)).await
    }

    pub async fn login(&self, email: &str, password: &str) -> (u16, Value) {
        self.post("/api/v1/auth/login", None, json!({"email": email, "password": password})).await
    }

    pub async fn admin_token(&self) -> String {
        let (s, b) = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        assert_eq!(s, 200, "admin login: {b}");
        b["access_token"].as_str().unwrap().to_owned()
    }

    /// Waits (up to ~10 s) until e-mail delivery has caught up: every outbox event is published (so
    /// the in-process notifier has queued its e-mails) and no e-mail job to `to` is still pending.
    /// E-mails are delivered asynchronously by the events workers since the events issue.
    pub async fn settle_mail(&self, to: &str) {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut conn = self.db();
        loop {
            let unpublished: N = diesel::sql_query("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
                .get_result(&mut conn)
                .unwrap();
            let pending: N = diesel::sql_query(
                "SELECT count(*) AS n FROM email_jobs WHERE to_address = lower($1) AND status = 'pending'",
            )
            .bind::<diesel::sql_types::Text, _>(to)
            .get_result(&mut conn)
            .unwrap();
            if unpublished.n == 0 && pending.n == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "e-mail to {to} not delivered in time ({} unpublished events, {} pending jobs)",
                unpublished.n,
                pending.n
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// The newest message to `to` in the development mailbox (after delivery has caught up).
    pub async fn last_mail(&self, to: &str) -> Value {
        self.settle_mail(to).await;
        let admin = self.admin_token().await;
        let (s, b) = self.get(&format!("/api/v1/admin/mailbox?to={to}&limit=1"), Some(&admin)).await;
        assert_eq!(s, 200, "{b}");
        b["items"][0].clone()
    }

    /// The 6-digit code in the newest verification e-mail to `to`.
    pub async fn verification_code(&self, to: &str) -> String {
        let mail = self.last_mail(to).await;
        let text = mail["text"].as_str().unwrap_or_default();
        text.split_whitespace()
            .find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit()))
            .unwrap_or_else(|| panic!("no code in {mail}"))
            .to_owned()
    }

    pub async fn register(&self, email: &str) -> Value {
        let (s, b) = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"first_name": "Test", "last_name": "User", "email": email, "password": PASSWORD, "confirm_password": PASSWORD}),
            )
            .await;
        assert_eq!(s, 201, "register: {b}");
        b
    }

    /// Registers, verifies and logs in; returns (user id, access token, refresh token).
    pub async fn user(&self, email: &str) -> (i64, String, String) {
        let user = self.register(email).await;
        let code = self.verification_code(email).await;
        let (s, b) = self.post("/api/v1/auth/verify-email", None, json!({"email": email, "code": code})).await;
        assert_eq!(s, 200, "verify: {b}");
        let (s, b) = self.login(email, PASSWORD).await;
        assert_eq!(s, 200, "login: {b}");
        (
            user["id"].as_i64().unwrap(),
            b["access_token"].as_str().unwrap().to_owned(),
            b["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    /// A direct connection to this test's database, for invariant checks.
    pub fn db(&self) -> PgConnection {
        PgConnection::establish(self.settings.database.url.expose()).unwrap()
    }
}

/// The one `bigint` column `n` of the one row `sql` returns.
pub fn scalar(conn: &mut PgConnection, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(sql).get_result::<N>(conn).unwrap().n
}

/// Asserts the standard error body shape and returns its code.
pub fn error_code(body: &Value) -> String {
    let e = &body["error"];
    assert!(e["message"].is_string(), "error body without message: {body}");
    assert!(e["request_id"].as_str().is_some_and(|s| !s.is_empty()), "error body without request_id: {body}");
    e["code"].as_str().unwrap_or_default().to_owned()
}

impl TestApp {
    /// Sends a raw body with an explicit Content-Type (or none); returns (status, headers, JSON body or Null).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(m, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The password-reset token (`pr_…`) in the newest reset e-mail to `to` (other notifications, e.g.
    /// "password changed", may be delivered after it, so the newest message is not necessarily it).
    pub async fn reset_token(&self, to: &str) -> String {
        self.settle_mail(to).await;
        let admin = self.admin_token().await;
        let (s, b) = self.get(&format!("/api/v1/admin/mailbox?to={to}&limit=50"), Some(&admin)).await;
        assert_eq!(s, 200, "{b}");
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|m| {
                m["text"]
                    .as_str()
                    .unwrap_or_default()
                    .split_whitespace()
                    .find(|w| w.starts_with("pr_"))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no reset token in the mailbox of {to}: {b}"))
    }

    /// Creates a verified user through the admin API with the given roles; returns its id.
    pub async fn admin_create_user(&self, admin: &str, email: &str, roles: &[&str]) -> i64 {
        let (s, b) = self
            .post(
                "/api/v1/users",
                Some(admin),
                json!({"first_name": "Made", "last_name": "ByAdmin", "email": email, "password": PASSWORD,
                       "roles": roles, "email_verified": true}),
            )
            .await;
        assert_eq!(s, 201, "admin create user: {b}");
        b["id"].as_i64().unwrap()
    }
}

/// Asserts status and error code together, with the body in the failure message.
pub fn expect_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "expected {want_status} {want_code}, got {status}: {body}");
    assert_eq!(error_code(body), want_code, "unexpected error code: {body}");
}
pub mod merchant;
pub mod money;
