//! Nothing stored or logged gives back a secret: after a storm that registers users, issues cards,
//! pays merchants (good, wrong and unknown card data, concurrently), refunds, refreshes sessions and
//! resets passwords — with events going through the real RabbitMQ — a `pg_dump` of the whole database,
//! the captured logs (debug level, JSON, with spans) and every message the broker carried (captured by a
//! queue bound to the whole exchange) hold no full card number, no CVV beside its card, no password, no
//! refresh or reset token and no API key secret.
//!
//! Keep this the only test in the file: it installs the process-wide subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

use crate::common::merchant::*;
use crate::common::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The database as `pg_dump` writes it (data only, plain SQL with COPY blocks).
fn pg_dump(url: &str) -> String {
    let out = std::process::Command::new("pg_dump")
        .args(["--data-only", "--no-owner", "--no-privileges", url])
        .output()
        .expect("pg_dump must be installed (postgresql-client)");
    assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[actix_web::test]
async fn a_storm_leaves_no_card_data_password_token_or_key_in_the_database_or_the_logs() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(tracing_subscriber::EnvFilter::new("info,payd=debug")).with(
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(true)
            .with_writer(capture.clone()),
    );
    tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in this process");

    // Events through RabbitMQ, with a capture queue bound to everything the exchange carries.
    const RABBIT: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let exchange = format!("payd-scan.{}", uuid::Uuid::new_v4().simple());
    let broker = Connection::connect(RABBIT, ConnectionProperties::default()).await.expect("RabbitMQ on 5672");
    let ch = broker.create_channel().await.unwrap();
    payd::events::broker::rabbitmq::declare_topology(&ch, &exchange, &["scan".to_owned()]).await.unwrap();
    let mut settings = merchant_settings();
    settings.events.broker = payd::config::BrokerKind::RabbitMq;
    settings.events.rabbitmq_url = payd::config::Secret::new(RABBIT);
    settings.events.rabbitmq_exchange = exchange.clone();
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    // (what, secret) pairs that must appear nowhere.
    let mut secrets: Vec<(String, String)> = vec![
        ("admin password".into(), ADMIN_PASSWORD.into()),
        ("user password".into(), PASSWORD.into()),
        ("jwt secret".into(), app.settings.auth.jwt_secret.expose().to_owned()),
        ("pan key".into(), app.settings.cards.pan_key.expose().to_owned()),
        ("cvv key".into(), app.settings.cards.cvv_key.expose().to_owned()),
        ("idempotency key".into(), app.settings.idempotency.mac_key.expose().to_owned()),
    ];

    // Customers registered through the public flow, each with two cards.
    let mut customers = Vec::new();
    let mut cards: Vec<TestCard> = Vec::new();
    for i in 0..3 {
        let email = format!("scan.customer{i}@example.com");
        let (_, access, refresh) = app.user(&email).await;
        secrets.push((format!("refresh token {i}"), refresh.clone()));
        // A refresh rotates the token: both the old and the new one must stay secret.
        let (s, t) = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
        assert_eq!(s, 200, "{t}");
        secrets.push((format!("rotated refresh token {i}"), t["refresh_token"].as_str().unwrap().to_owned()));
        for _ in 0..2 {
            let c = issue_card(&app, &access).await;
            topup(&app, &access, c.id, 3_000_000).await;
            cards.push(c);
        }
        customers.push((email, access));
    }
    for (i, c) in cards.iter().enumerate() {
        secrets.push((format!("card number {i}"), c.number.clone()));
    }

    // A merchant with two API keys.
    let (_, owner) = verified(&app, &admin, "scan.owner@example.com").await;
    let merchant = active_merchant(&app, &admin, &owner, "Scan Shop").await;
    let mut keys = Vec::new();
    for label in ["a", "b"] {
        let (_, key) = create_key(&app, &owner, merchant, label).await;
        secrets.push((format!("API key {label}"), key.clone()));
        secrets.push((format!("API key {label} secret"), key.rsplit('_').next().unwrap().to_owned()));
        keys.push(key);
    }

    // Payments, concurrently: good ones, wrong CVVs, wrong expiry dates, unknown numbers.
    let mut bodies = Vec::new();
    for i in 0..48 {
        let c = &cards[i % cards.len()];
        let mut b = c.pay(&format!("scan-{i}"), 100_000);
        match i % 8 {
            5 => b["cvv"] = json!(c.wrong_cvv()),
            6 => b["expiry_month"] = json!(if c.month == 12 { 1 } else { c.month + 1 }),
            7 => b["card_number"] = json!(payd::cards::pan::generate(&payd::cards::pan::BRANDS[0]).digits()),
            _ => {}
        }
        if i % 8 == 7 {
            secrets.push((format!("probed number {i}"), b["card_number"].as_str().unwrap().to_owned()));
        }
        bodies.push((keys[i % 2].clone(), format!("scan-{i}"), b));
    }
    let answers = futures::future::join_all(
        bodies.iter().map(|(key, idem, b)| keyed(&app, "POST", "/api/v1/payments", key, idem, Some(b.clone()))),
    )
    .await;
    let mut paid = Vec::new();
    for (s, b) in &answers {
        assert!(*s == 201 || *s == 402, "{s} {b}");
        if *s == 201 {
            paid.push(b["id"].as_str().unwrap().to_owned());
        }
    }
    assert!(paid.len() >= 20, "only {} payments succeeded", paid.len());
    // Refunds, full and partial.
    for (i, p) in paid.iter().take(10).enumerate() {
        let body = if i % 2 == 0 { json!({}) } else { json!({"amount": 50_000, "reason": "partial"}) };
        let (s, r) =
            keyed(&app, "POST", &format!("/api/v1/payments/{p}/refunds"), &keys[0], &format!("ref-{i}"), Some(body))
                .await;
        assert_eq!(s, 201, "{r}");
    }

    // Password resets and a change.
    for (i, (email, access)) in customers.iter().enumerate().take(2) {
        let (s, _) = app.post("/api/v1/auth/password/forgot", None, json!({"email": email})).await;
        assert_eq!(s, 200);
        let token = app.reset_token(email).await;
        let new = format!("Reset-Secret-{i}-97531");
        let (s, b) = app
            .post(
                "/api/v1/auth/password/reset",
                None,
                json!({"token": token, "new_password": new, "confirm_password": new}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let (s, _) = app.login(email, &new).await;
        assert_eq!(s, 200);
        secrets.push((format!("reset token {i}"), token));
        secrets.push((format!("reset password {i}"), new));
        let _ = access;
    }
    let (email, _) = &customers[2];
    let (_, t) = app.login(email, PASSWORD).await;
    let changed = "Changed-Secret-86420";
    let (s, b) = app
        .post(
            "/api/v1/auth/password/change",
            t["access_token"].as_str(),
            json!({"current_password": PASSWORD, "new_password": changed, "confirm_password": changed}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    secrets.push(("changed password".into(), changed.into()));
    // Let the events (e-mails, outbox) settle so their rows are in the dump.
    app.settle_mail(email).await;
    app.handle.stop(true).await;

    let dump = pg_dump(app.settings.database.url.expose());
    assert!(dump.contains("COPY public.cards"), "the dump has no cards table");
    assert!(dump.contains("COPY public.idempotency_keys"), "the dump has no idempotency keys");
    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(logs.contains("card issued"), "the capture is not the app's log");
    // Everything the broker carried: bodies and properties (headers) of every message.
    let queue = payd::events::broker::rabbitmq::queue_name(&exchange, "scan");
    let mut messages = String::new();
    let mut carried: i64 = 0;
    while let Some(m) = ch.basic_get(queue.clone().into(), BasicGetOptions { no_ack: true }).await.unwrap() {
        messages.push_str(&String::from_utf8_lossy(&m.delivery.data));
        // Headers as text (their Debug form would print strings as byte lists).
        let props = &m.delivery.properties;
        for (k, v) in props.headers().as_ref().map(|h| h.inner().clone()).unwrap_or_default() {
            let value = match v {
                lapin::types::AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                other => format!("{other:?}"),
            };
            messages.push_str(&format!(" {k}={value}"));
        }
        messages.push_str(&format!(" kind={:?} id={:?}\n", props.kind(), props.message_id()));
        carried += 1;
    }
    let published =
        crate::events_support::count(&mut app.db(), "SELECT count(*) AS n FROM outbox WHERE published_at IS NOT NULL");
    assert!(carried >= 50 && carried >= published, "{carried} messages captured, {published} published");
    assert!(messages.contains("payment.completed") && messages.contains("card.issued"), "capture misses events");
    let _ = ch.queue_delete(queue.into(), QueueDeleteOptions::default()).await;
    for g in ["notifier", "webhooks"] {
        let q = payd::events::broker::rabbitmq::queue_name(&exchange, g);
        let _ = ch.queue_delete(q.into(), QueueDeleteOptions::default()).await;
    }
    let dlq = payd::events::broker::rabbitmq::dead_letter_queue(&exchange);
    let _ = ch.queue_delete(dlq.into(), QueueDeleteOptions::default()).await;
    let _ = ch.exchange_delete(exchange.clone().into(), Default::default()).await;
    let _ = ch.exchange_delete(format!("{exchange}.dlx").into(), Default::default()).await;
    let _ = broker.close(200, "bye".into()).await;

    // The development mailbox (the tests' mail transport; production sends by SMTP and has no such
    // table content) holds the e-mails as sent, reset links included: everything else is checked.
    let without_mailbox: String = {
        let mut out = String::new();
        let mut in_mailbox = false;
        for line in dump.lines() {
            if line.starts_with("COPY public.mailbox ") {
                in_mailbox = true;
            } else if in_mailbox && line == "\\." {
                in_mailbox = false;
                continue;
            }
            if !in_mailbox {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    };
    assert!(without_mailbox.len() < dump.len(), "the mailbox section was not found");
    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        assert!(secret.len() >= 12, "{what} is too short to search for");
        let dump = if what.starts_with("reset token") { &without_mailbox } else { &dump };
        if dump.contains(secret.as_str()) {
            leaks.push(format!("{what} in the database dump"));
        }
        if logs.contains(secret.as_str()) {
            leaks.push(format!("{what} in the logs"));
        }
        if messages.contains(secret.as_str()) {
            leaks.push(format!("{what} in a broker message"));
        }
    }
    // No security code anywhere as a field, and none on its card's row or beside its card's number.
    let noise = regex::Regex::new(
        r"(\d{1,3}\.){3}\d{1,3}(:\d+)?|\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}(:\d{2})?|Z)?",
    )
    .unwrap();
    for (place, text) in [("database dump", &dump), ("logs", &logs), ("broker messages", &messages)] {
        if text.to_lowercase().contains("\"cvv\"") {
            leaks.push(format!("a `cvv` field in the {place}"));
        }
        for c in &cards {
            let masked = format!("{}******{}", &c.number[..6], &c.number[c.number.len() - 4..]);
            for line in text.lines().filter(|l| l.contains(&masked) || l.contains(&c.number[6..12])) {
                // Addresses and timestamps are numeric noise, not data beside the card.
                let line = noise.replace_all(line, " ");
                // Alphanumeric tokens: a digit run inside a UUID or hex id ("729a") is not a CVV.
                let tokens = line.split(|ch: char| !ch.is_ascii_alphanumeric());
                if tokens.into_iter().any(|t| t == c.cvv) {
                    leaks.push(format!("card {}'s CVV beside its number in the {place}: {line}", c.id));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "secrets found:\n{}", leaks.join("\n"));
}
