//! How payd runs when deployed: the api / worker split, documents shared through PostgreSQL (and
//! the move of file-backed ones), graceful SIGTERM of the real binary, and background queries that
//! are cancelled instead of awaited at shutdown.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use serde_json::json;

use crate::common::merchant::{apply, upload, PDF};
use crate::common::*;
use payd::config::{DocumentStore, Role};

fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    crate::common::merchant::scalar(conn, sql)
}

#[actix_web::test]
async fn api_instances_leave_events_to_the_worker() {
    let mut settings = settings();
    settings.server.role = Role::Api;
    let api = TestApp::spawn_with(settings.clone()).await;
    let (s, b) = api
        .post(
            "/api/v1/auth/register",
            None,
            json!({"first_name": "Ada", "last_name": "L", "email": "ada@example.com",
                   "password": PASSWORD, "confirm_password": PASSWORD}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let mut db = api.db();
    // The API instance runs no relay: the event stays in the outbox.
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let unpublished = "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL";
    assert!(count(&mut db, unpublished) >= 1, "the api instance published its own events");
    // Nor the e-mail sender: the verification e-mail waits in its queue.
    let sent = "SELECT count(*) AS n FROM email_jobs WHERE status = 'sent'";
    assert_eq!(count(&mut db, sent), 0, "the api instance sent e-mail");

    // A worker on the same database publishes it and the notifier sends the verification e-mail.
    settings.server.role = Role::Worker;
    let worker = TestApp::spawn_with(settings).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if count(&mut db, unpublished) == 0 && count(&mut db, sent) >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the worker did not relay and deliver the event");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    // The worker answers probes and metrics, not the API.
    assert_eq!(worker.get("/healthz", None).await.0, 200);
    assert_eq!(worker.get("/readyz", None).await.0, 200);
    let metrics = worker.client.get(worker.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    assert_eq!(worker.get("/api/v1/ping", None).await.0, 404);
    assert_eq!(api.get("/api/v1/ping", None).await.0, 200);
}

async fn download(app: &TestApp, token: &str, merchant: i64, doc: i64) -> (u16, Vec<u8>) {
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/merchants/{merchant}/documents/{doc}/content")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

#[actix_web::test]
async fn documents_live_in_postgres_and_every_instance_serves_them() {
    let mut settings = settings();
    // A directory that must never be created: the default store writes nothing to disk.
    let dir = std::env::temp_dir().join(format!("payd-nodocs-{}", uuid::Uuid::new_v4()));
    settings.merchants.document_dir = dir.display().to_string();
    assert_eq!(settings.merchants.document_store, DocumentStore::Postgres);
    let one = TestApp::spawn_with(settings.clone()).await;
    let two = TestApp::spawn_with(settings).await;
    let (_, owner, _) = one.user("shop@example.com").await;
    let merchant = apply(&one, &owner, "Kopi").await;
    let (s, doc) = upload(&one, &owner, merchant, "business_licence", PDF, "application/pdf").await;
    assert_eq!(s, 201, "{doc}");
    let doc = doc["id"].as_i64().unwrap();
    assert_eq!(download(&two, &owner, merchant, doc).await, (200, PDF.to_vec()), "another replica");
    assert!(!dir.exists(), "the PostgreSQL store wrote to {}", dir.display());
    let mut db = one.db();
    assert_eq!(count(&mut db, "SELECT count(*) AS n FROM document_blobs"), 1);
}

#[actix_web::test]
async fn file_backed_documents_are_still_served_and_imported() {
    let mut settings = settings();
    let dir = std::env::temp_dir().join(format!("payd-docs-{}", uuid::Uuid::new_v4()));
    settings.merchants.document_dir = dir.display().to_string();
    settings.merchants.document_store = DocumentStore::Dir;
    let old = TestApp::spawn_with(settings.clone()).await;
    let (_, owner, _) = old.user("shop@example.com").await;
    let merchant = apply(&old, &owner, "Kopi").await;
    let (s, doc) = upload(&old, &owner, merchant, "business_licence", PDF, "application/pdf").await;
    assert_eq!(s, 201, "{doc}");
    let doc = doc["id"].as_i64().unwrap();
    let mut db = old.db();
    assert_eq!(count(&mut db, "SELECT count(*) AS n FROM document_blobs"), 0);

    // After the upgrade (PostgreSQL store), a document written before it is read from the old directory.
    settings.merchants.document_store = DocumentStore::Postgres;
    let new = TestApp::spawn_with(settings).await;
    assert_eq!(download(&new, &owner, merchant, doc).await, (200, PDF.to_vec()));

    // `payd documents import` copies it (checking its SHA-256); then the directory can go.
    let report = payd::merchants::blob::import_dir(&mut db, &dir).unwrap();
    assert_eq!((report.imported, report.present, report.missing.len(), report.corrupt.len()), (1, 0, 0, 0));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(download(&new, &owner, merchant, doc).await, (200, PDF.to_vec()));
    let again = payd::merchants::blob::import_dir(&mut db, &dir).unwrap();
    assert_eq!((again.imported, again.present), (0, 1));

    // A file that no longer matches its recorded hash is reported, not imported.
    let (s, second) = upload(&new, &owner, merchant, "owner_identity", PDF, "application/pdf").await;
    assert_eq!(s, 201, "{second}");
    diesel::sql_query(
        "DELETE FROM document_blobs WHERE key = (SELECT storage_key FROM merchant_documents WHERE id = $1)",
    )
    .bind::<diesel::sql_types::BigInt, _>(second["id"].as_i64().unwrap())
    .execute(&mut db)
    .unwrap();
    let key: String = payd::storage::schema::merchant_documents::table
        .find(second["id"].as_i64().unwrap())
        .select(payd::storage::schema::merchant_documents::storage_key)
        .first(&mut db)
        .unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&key), b"%PDF-tampered").unwrap();
    let r = payd::merchants::blob::import_dir(&mut db, &dir).unwrap();
    assert_eq!(r.corrupt, vec![key]);
    std::fs::remove_dir_all(&dir).ok();
}

#[actix_web::test]
async fn a_background_query_is_cancelled_when_shutdown_begins() {
    let url = fresh_database();
    let pool = payd::storage::pool(&url, 2).unwrap();
    let shutdown = payd::shutdown::Shutdown::new(Duration::from_secs(1));
    let (p, sd) = (pool.clone(), shutdown.clone());
    let query = actix_web::rt::spawn(async move {
        payd::shutdown::run_cancellable(&p, &sd, |conn| {
            diesel::sql_query("SELECT pg_sleep(120)").execute(conn).map_err(payd::storage::StorageError::from)
        })
        .await
    });
    let mut admin = PgConnection::establish(&url).unwrap();
    let sleeping = "SELECT count(*) AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(120)' \
                    AND state = 'active' AND datname = current_database()";
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&mut admin, sleeping) == 0 {
        assert!(Instant::now() < deadline, "the query never started");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.begin();
    let result = tokio::time::timeout(Duration::from_secs(10), query).await.expect("not cancelled").unwrap();
    assert!(result.unwrap_err().to_string().contains("shutting down"));
    // …and PostgreSQL stopped running it (pg_cancel_backend), rather than finishing two minutes later.
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&mut admin, sleeping) > 0 {
        assert!(Instant::now() < deadline, "the query still runs in PostgreSQL");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(shutdown.drain(Duration::from_secs(1)).await, 0);
}

#[test]
fn sigterm_drains_and_exits_within_the_configured_bound() {
    let url = fresh_database();
    let log_path = std::env::temp_dir().join(format!("payd-sigterm-{}.log", uuid::Uuid::new_v4().simple()));
    let log = std::fs::File::create(&log_path).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_payd"))
        .args(["serve", "--role", "all"])
        .env("PAYD_ENV", "test")
        .env("PAYD_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
        .env("PAYD_DATABASE__URL", &url)
        .env("PAYD_DATABASE__MIGRATE_ON_START", "false")
        .env("PAYD_DATABASE__CREATE_IF_MISSING", "false")
        .env("PAYD_REDIS__PREFIX", format!("payd-test:{}:", uuid::Uuid::new_v4().simple()))
        .env("PAYD_SERVER__PORT", port.to_string())
        .env("PAYD_SERVER__WORKERS", "1")
        .env("PAYD_SERVER__SHUTDOWN_TIMEOUT_SECS", "3")
        .env("PAYD_SERVER__BACKGROUND_STOP_SECS", "1")
        .env("PAYD_LEDGER__VERIFY_INTERVAL_SECS", "1")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_status(port, "/readyz") != Some(200) {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            child.kill().ok();
            panic!("payd never became ready: {}", std::fs::read_to_string(&log_path).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the periodic verify and the workers run a few rounds.
    std::thread::sleep(Duration::from_millis(2500));
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().ok();
            panic!("payd did not exit within 30 s of SIGTERM (bound: 3 s drain + 1 s background)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    std::fs::remove_file(&log_path).ok();
    assert!(exit.success(), "exit {exit:?}: {output}");
    assert_eq!(http_status(port, "/healthz"), None, "still serving after exit");
}

/// The status code of a plain HTTP/1.1 GET on 127.0.0.1:port, or None when nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}
