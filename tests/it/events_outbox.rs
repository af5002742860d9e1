//! Events with the in-process broker: the outbox relay (several relays, flaky broker: each event
//! published once, in order per aggregate key), the notifier (e-mails for the identity and money flow,
//! dedupe of a redelivered event), the secret-bearing e-mail path, SMTP failures (retried, then
//! dead-lettered) and malformed messages (dead-lettered, never a crash loop).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::events_support::*;
use payd::events::consumer::Disposition;
use payd::events::relay::{Relay, RelayConfig, Round};
use payd::events::{Broker, BrokerError, Consumer, Envelope, Handled, Handler, PublishError};

fn mails(conn: &mut PgConnection, to: &str) -> Vec<(String, String)> {
    #[derive(QueryableByName)]
    struct M {
        #[diesel(sql_type = diesel::sql_types::Text)]
        subject: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        text_body: String,
    }
    let rows: Vec<M> = diesel::sql_query("SELECT subject, text_body FROM mailbox WHERE to_address = $1 ORDER BY id")
        .bind::<diesel::sql_types::Text, _>(to)
        .load(conn)
        .unwrap();
    rows.into_iter().map(|m| (m.subject, m.text_body)).collect()
}

/// A verified user with one debit card, topped up once with idempotency key `k1`; returns the
/// admin's token, the user's token and the card.
async fn topped_up_card(api: common::money::Api, email: &str) -> (String, String, i64) {
    let admin = api.admin_token().await;
    let (_, token) = api.verified_user(&admin, email).await;
    let card = api.issue_card(&token, "debit", None, None).await;
    let r = api
        .money(&token, "/api/v1/topups", "k1", &json!({"card_id": card, "amount": 500_000, "method": "ovo"}))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    (admin, token, card)
}

async fn settled(app: &EvApp) {
    let mut conn = app.db();
    eventually(Duration::from_secs(20), "outbox published and e-mails sent", || {
        count(&mut conn, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL") == 0
            && count(&mut conn, "SELECT count(*) AS n FROM email_jobs WHERE status = 'pending'") == 0
    })
    .await;
}

#[actix_web::test]
async fn the_identity_and_money_flow_sends_each_email_once_and_keeps_secrets_off_the_outbox() {
    let app = EvApp::spawn(common::settings()).await;
    let api = &app.api;
    let alice = "alice.events@example.com";
    let r = api
        .call(
            "POST",
            "/api/v1/auth/register",
            None,
            Some(&json!({"first_name": "Alice", "last_name": "E", "email": alice,
                          "password": common::PASSWORD, "confirm_password": common::PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    settled(&app).await;
    let mut conn = app.db();
    let welcome = mails(&mut conn, alice);
    assert_eq!(welcome.len(), 1, "{welcome:?}");
    let code = welcome[0].1.split_whitespace().find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit())).unwrap();
    let r = api.call("POST", "/api/v1/auth/verify-email", None, Some(&json!({"email": alice, "code": code}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api.call("POST", "/api/v1/auth/password/forgot", None, Some(&json!({"email": alice}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let alice_token = api.login(alice, common::PASSWORD).await;
    let admin = api.admin_token().await;
    let (_, bob_token) = api.verified_user(&admin, "bob.events@example.com").await;
    let a = api.issue_card(&alice_token, "debit", None, None).await;
    let b = api.issue_card(&bob_token, "debit", None, None).await;
    // Alice wants every transfer e-mailed; Bob keeps the defaults (transfers from IDR 1,000,000.00).
    let all =
        json!({"topups": true, "withdrawals": true, "payments": true, "transfers": true, "transfer_min_amount": 0});
    let r = api.call("PUT", "/api/v1/notifications/preferences", Some(&alice_token), Some(&all)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for (path, key, body) in [
        ("/api/v1/topups", "t1", json!({"card_id": a, "amount": 1_000_000, "method": "ovo"})),
        ("/api/v1/withdrawals", "w1", json!({"card_id": a, "amount": 100_000})),
        ("/api/v1/transfers", "x1", json!({"from_card_id": a, "to_card_id": b, "amount": 250_000})),
    ] {
        let r = api.money(&alice_token, path, key, &body).await.unwrap();
        assert_eq!(r.status, 201, "{path}: {}", r.body);
        // A replay of the same request changes nothing and sends nothing.
        let r = api.money(&alice_token, path, key, &body).await.unwrap();
        assert_eq!(r.status, 201, "{path} replay: {}", r.body);
    }
    settled(&app).await;

    let subjects = |to: &str, conn: &mut PgConnection| mails(conn, to).into_iter().map(|m| m.0).collect::<Vec<_>>();
    let got = subjects(alice, &mut conn);
    for want in [
        "Welcome to payd — verify your e-mail",
        "Your e-mail is verified",
        "Reset your payd password",
        "Top-up of IDR 10,000.00 completed",
        "Withdrawal of IDR 1,000.00 completed",
        "You sent IDR 2,500.00",
    ] {
        assert_eq!(got.iter().filter(|s| s.as_str() == want).count(), 1, "{want} once in {got:?}");
    }
    assert_eq!(got.len(), 6, "{got:?}");
    // Below Bob's threshold: nothing for him.
    assert_eq!(subjects("bob.events@example.com", &mut conn), Vec::<String>::new());

    // Every event was handled exactly once by each consumer; the notifier recorded only the events
    // that sent e-mail (one dedupe row each), none for events that send nothing (cards issued).
    let events = count(&mut conn, "SELECT count(*) AS n FROM outbox");
    assert!(events >= 8, "{events} events");
    // No merchant took part: the webhook dispatcher recorded nothing either.
    let n = count(&mut conn, "SELECT count(*) AS n FROM processed_events WHERE consumer = 'webhooks'");
    assert_eq!(n, 0, "no event here can become a webhook");
    let mailed = count(&mut conn, "SELECT count(DISTINCT event_id) AS n FROM email_jobs WHERE event_id IS NOT NULL");
    assert_eq!(mailed, 4, "verified, top-up, withdrawal, transfer");
    let n = count(&mut conn, "SELECT count(*) AS n FROM processed_events WHERE consumer = 'notifier'");
    assert_eq!(n, mailed, "the notifier recorded exactly the events that sent e-mail");
    let silent = count(
        &mut conn,
        "SELECT count(*) AS n FROM processed_events p JOIN outbox o ON o.event_id = p.event_id \
         WHERE p.consumer = 'notifier' AND o.event_type = 'card.issued'",
    );
    assert_eq!(silent, 0);
    for t in [
        "user.registered",
        "user.verified",
        "password.reset_requested",
        "card.issued",
        "topup.completed",
        "withdrawal.completed",
        "transfer.completed",
    ] {
        assert!(count(&mut conn, &format!("SELECT count(*) AS n FROM outbox WHERE event_type = '{t}'")) >= 1, "{t}");
    }
    // Secrets never enter the outbox, and are scrubbed from delivered e-mail jobs.
    let token = mails(&mut conn, alice)
        .into_iter()
        .find_map(|m| m.1.split_whitespace().find(|w| w.starts_with("pr_")).map(str::to_owned))
        .unwrap();
    let leaked = count(
        &mut conn,
        &format!(
            "SELECT count(*) AS n FROM outbox WHERE payload::text LIKE '%{code}%' OR payload::text LIKE '%{token}%'"
        ),
    );
    assert_eq!(leaked, 0, "a secret reached the outbox");
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM email_jobs WHERE sensitive AND context::text NOT LIKE '%scrubbed%'"
        ),
        0,
        "sensitive e-mail contexts are scrubbed after delivery"
    );
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM email_jobs WHERE sensitive"), 2);

    let r = api.call("GET", "/api/v1/admin/events", Some(&admin), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["broker"], "inprocess");
    assert_eq!(r.body["outbox_depth"], 0);
}

/// A broker that records what it confirmed, and fails now and then after a random prefix.
#[derive(Clone, Default)]
struct Recording {
    confirmed: Arc<Mutex<Vec<Envelope>>>,
    rounds: Arc<AtomicUsize>,
}

#[async_trait]
impl Broker for Recording {
    fn kind(&self) -> &'static str {
        "recording"
    }
    async fn publish(&self, events: &[Envelope]) -> Result<(), PublishError> {
        let round = self.rounds.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(3)).await;
        // Every third round fails after confirming only part of the batch.
        let ok = if round % 3 == 2 { events.len() / 2 } else { events.len() };
        self.confirmed.lock().unwrap().extend(events[..ok].iter().cloned());
        if ok < events.len() {
            return Err(PublishError { published: ok, error: BrokerError::Unavailable("flaky".into()) });
        }
        Ok(())
    }
    async fn subscribe(&self, _consumer: Consumer) -> Result<(), BrokerError> {
        Ok(())
    }
}

#[actix_web::test]
async fn several_relays_publish_each_event_once_in_order_per_key() {
    let mut settings = common::settings();
    settings.events.relay_enabled = false;
    settings.events.consumers_enabled = false;
    let app = EvApp::spawn(settings).await;
    let mut conn = app.db();
    // 600 events over 12 aggregate keys, interleaved.
    conn.batch_execute(
        "INSERT INTO outbox (event_id, event_type, schema_version, aggregate_type, aggregate_key, payload) \
         SELECT gen_random_uuid(), 'card.frozen', 1, 'card', 'card:' || (i % 12), jsonb_build_object('i', i) \
         FROM generate_series(1, 600) AS i",
    )
    .unwrap();
    let broker = Recording::default();
    let cfg = RelayConfig {
        batch: 25,
        poll: Duration::from_millis(10),
        lease_secs: 30,
        backoff_initial: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
    };
    let relays: Vec<Arc<Relay>> =
        (0..3).map(|_| Arc::new(Relay::new(app.state.db.clone(), Arc::new(broker.clone()), cfg.clone()))).collect();
    let tasks: Vec<_> = relays
        .iter()
        .map(|r| {
            let r = r.clone();
            tokio::spawn(async move {
                let mut idle = 0;
                while idle < 5 {
                    match r.round().await.unwrap() {
                        Round::Idle => {
                            idle += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        _ => idle = 0,
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rows = outbox(&mut conn);
    assert!(rows.iter().all(|r| r.published), "everything published");
    let confirmed = broker.confirmed.lock().unwrap().clone();
    let mut times: HashMap<uuid::Uuid, usize> = HashMap::new();
    for e in &confirmed {
        *times.entry(e.id).or_default() += 1;
    }
    assert_eq!(times.len(), 600);
    assert!(times.values().all(|n| *n == 1), "an event was published twice");
    let probe = Probe { seen: Arc::new(Mutex::new(confirmed)) };
    assert_exactly_once_in_order(&rows, &probe);
    assert!(broker.rounds.load(Ordering::SeqCst) >= 24, "several rounds, some failed");
}

struct Rejecting;

#[async_trait]
impl Handler for Rejecting {
    async fn handle(&self, _event: &Envelope) -> Result<Handled, payd::events::HandlerError> {
        Err(payd::events::HandlerError::Reject("cannot be processed".into()))
    }
}

#[actix_web::test]
async fn redelivered_events_queue_no_second_email_and_bad_messages_are_dead_lettered() {
    let mut settings = common::settings();
    settings.events.consumers_enabled = false;
    settings.events.relay_enabled = false;
    let app = EvApp::spawn(settings).await;
    let api = &app.api;
    let (admin, _, _) = topped_up_card(app.api.clone(), "carol.events@example.com").await;
    // Read the event as the relay would publish it.
    let mut conn = app.db();
    let claimed = payd::events::outbox::claim(&mut conn, uuid::Uuid::new_v4(), 100, 30).unwrap();
    let topup = claimed.iter().find(|c| c.event.event_type == "topup.completed").unwrap().event.clone();

    let defaults = payd::notify::preferences::Preferences::defaults(&app.settings.notifications);
    let notifier =
        payd::notify::notifier::Notifier::new(app.state.db.clone(), Arc::new(tokio::sync::Notify::new()), defaults);
    assert_eq!(notifier.handle(&topup).await.unwrap(), Handled::Processed);
    // The broker redelivers it (consumer crashed before its ack): nothing is queued again.
    assert_eq!(notifier.handle(&topup).await.unwrap(), Handled::Duplicate);
    let jobs = count(&mut conn, &format!("SELECT count(*) AS n FROM email_jobs WHERE event_id = '{}'", topup.id));
    assert_eq!(jobs, 1);

    // Through the consumer runtime: a duplicate is acknowledged, garbage and rejected events are
    // dead-lettered (recorded, never retried forever).
    let consumer = Consumer::new("notifier", Arc::new(notifier), app.state.db.clone(), &app.settings.events);
    assert_eq!(consumer.process(&serde_json::to_vec(&topup).unwrap()).await, Disposition::Ack);
    assert_eq!(consumer.process(b"{not json").await, Disposition::DeadLetter);
    let mut broken = topup.clone();
    broken.id = uuid::Uuid::new_v4();
    broken.payload = json!({"no": "operation"});
    assert_eq!(consumer.process(&serde_json::to_vec(&broken).unwrap()).await, Disposition::DeadLetter);
    let rejecting = Consumer::new("rejecting", Arc::new(Rejecting), app.state.db.clone(), &app.settings.events);
    assert_eq!(rejecting.process_event(&topup).await, Disposition::DeadLetter);
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM dead_letters WHERE kind = 'message'"), 3);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM dead_letters WHERE reference = 'unparsed' AND payload = '{not json'"
        ),
        1
    );
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM email_jobs"), 1);
    let r = api.call("GET", "/api/v1/admin/dead-letters?kind=message", Some(&admin), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 3);
}

/// A tiny SMTP server: accepts everything, and answers the end of DATA with a temporary failure
/// while `fail` is positive (decrementing it) or negative (always); counts messages it was offered.
#[derive(Clone, Default)]
struct FakeSmtp {
    fail: Arc<AtomicI32>,
    offered: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

impl FakeSmtp {
    async fn start(&self) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    w.write_all(b"220 fake ESMTP\r\n").await.ok();
                    let mut in_data = false;
                    while let Ok(Some(line)) = lines.next_line().await {
                        if in_data {
                            if line == "." {
                                in_data = false;
                                me.offered.fetch_add(1, Ordering::SeqCst);
                                let f = me.fail.load(Ordering::SeqCst);
                                if f != 0 {
                                    if f > 0 {
                                        me.fail.fetch_sub(1, Ordering::SeqCst);
                                    }
                                    w.write_all(b"451 4.3.0 try again later\r\n").await.ok();
                                } else {
                                    me.accepted.fetch_add(1, Ordering::SeqCst);
                                    w.write_all(b"250 2.0.0 queued\r\n").await.ok();
                                }
                            }
                            continue;
                        }
                        let cmd = line.to_ascii_uppercase();
                        let reply: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                            b"250 fake\r\n"
                        } else if cmd.starts_with("DATA") {
                            in_data = true;
                            b"354 go ahead\r\n"
                        } else if cmd.starts_with("QUIT") {
                            w.write_all(b"221 bye\r\n").await.ok();
                            break;
                        } else {
                            b"250 OK\r\n"
                        };
                        w.write_all(reply).await.ok();
                    }
                });
            }
        });
        port
    }
}

#[actix_web::test]
async fn smtp_failures_are_retried_with_backoff_then_dead_lettered() {
    let smtp = FakeSmtp::default();
    smtp.fail.store(2, Ordering::SeqCst);
    let port = smtp.start().await;
    let mut settings = common::settings();
    settings.mail.transport = payd::config::MailTransport::Smtp;
    settings.mail.smtp_host = "127.0.0.1".into();
    settings.mail.smtp_port = port;
    settings.mail.smtp_tls = payd::config::SmtpTls::None;
    settings.events.max_attempts = 3;
    settings.events.mail_backoff_initial_ms = 100;
    settings.events.mail_backoff_max_ms = 300;
    let app = EvApp::spawn(settings).await;
    let api = &app.api;
    let (_, token, card) = topped_up_card(app.api.clone(), "dave.events@example.com").await;
    let mut conn = app.db();
    // Two temporary failures, then accepted on the third attempt.
    eventually(Duration::from_secs(30), "top-up e-mail sent after retries", || {
        count(&mut conn, "SELECT count(*) AS n FROM email_jobs WHERE status = 'sent' AND attempts = 3") == 1
    })
    .await;
    assert_eq!(smtp.offered.load(Ordering::SeqCst), 3);
    assert_eq!(smtp.accepted.load(Ordering::SeqCst), 1);

    // Now the server refuses everything: three attempts, then a dead letter (and no fourth try).
    smtp.fail.store(-1, Ordering::SeqCst);
    let r = api.money(&token, "/api/v1/withdrawals", "k2", &json!({"card_id": card, "amount": 60_000})).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    eventually(Duration::from_secs(30), "withdrawal e-mail dead-lettered", || {
        count(&mut conn, "SELECT count(*) AS n FROM dead_letters WHERE kind = 'email'") == 1
    })
    .await;
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM email_jobs WHERE status = 'dead' AND attempts = 3"), 1);
    assert_eq!(smtp.offered.load(Ordering::SeqCst), 6);
    let dead_reason = count(
        &mut conn,
        "SELECT count(*) AS n FROM dead_letters WHERE kind = 'email' AND reason LIKE '%451%' AND attempts = 3",
    );
    assert_eq!(dead_reason, 1);
    let text = reqwest::get(format!("{}/metrics", api.base)).await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"payd_emails_total{outcome="dead"} 1"#), "{text}");
    assert!(text.contains(r#"payd_dead_letters_total{kind="email"} 1"#), "{text}");
}

#[actix_web::test]
async fn retention_purges_only_finished_rows_older_than_the_window() {
    let mut settings = common::settings();
    settings.events.relay_enabled = false;
    settings.events.consumers_enabled = false;
    let app = EvApp::spawn(settings).await;
    let mut conn = app.db();
    conn.batch_execute(
        "INSERT INTO outbox (event_id, event_type, aggregate_type, aggregate_key, payload, created_at, published_at) VALUES
           (gen_random_uuid(), 'x.old_published', 'user', 'user:1', '{}', now() - interval '3 hours', now() - interval '3 hours'),
           (gen_random_uuid(), 'x.new_published', 'user', 'user:1', '{}', now(), now()),
           (gen_random_uuid(), 'x.old_unpublished', 'user', 'user:1', '{}', now() - interval '3 hours', NULL);
         INSERT INTO processed_events (consumer, event_id, processed_at) VALUES
           ('notifier', gen_random_uuid(), now() - interval '3 hours'),
           ('notifier', gen_random_uuid(), now());
         INSERT INTO email_jobs (dedupe_key, template, to_address, context, status, next_attempt_at, created_at, sent_at) VALUES
           ('old-sent', 'welcome', 'a@example.com', '{}', 'sent', now(), now() - interval '3 hours', now() - interval '3 hours'),
           ('new-sent', 'welcome', 'a@example.com', '{}', 'sent', now(), now(), now()),
           ('old-dead', 'welcome', 'a@example.com', '{}', 'dead', now(), now() - interval '3 hours', NULL),
           ('old-pending', 'welcome', 'a@example.com', '{}', 'pending', now() + interval '1 day', now() - interval '3 hours', NULL);",
    )
    .unwrap();
    let gone = payd::events::outbox::purge(&mut conn, 1).unwrap();
    assert_eq!(gone, 3, "one published outbox row, one dedupe record, one sent e-mail");
    let left = |conn: &mut PgConnection, sql: &str| count(conn, sql);
    assert_eq!(left(&mut conn, "SELECT count(*) AS n FROM outbox WHERE event_type LIKE 'x.%'"), 2);
    assert_eq!(left(&mut conn, "SELECT count(*) AS n FROM outbox WHERE event_type = 'x.old_published'"), 0);
    assert_eq!(left(&mut conn, "SELECT count(*) AS n FROM processed_events"), 1);
    assert_eq!(
        left(
            &mut conn,
            "SELECT count(*) AS n FROM email_jobs WHERE dedupe_key IN ('new-sent', 'old-dead', 'old-pending')"
        ),
        3
    );
    assert_eq!(left(&mut conn, "SELECT count(*) AS n FROM email_jobs WHERE dedupe_key = 'old-sent'"), 0);
    // A second pass finds nothing more.
    assert_eq!(payd::events::outbox::purge(&mut conn, 1).unwrap(), 0);
}

#[actix_web::test]
async fn a_batch_commits_its_good_events_together_skips_duplicates_and_dead_letters_only_the_bad_one() {
    let mut settings = common::settings();
    settings.events.consumers_enabled = false;
    settings.events.relay_enabled = false;
    let app = EvApp::spawn(settings).await;
    let api = &app.api;
    let (_, token, card) = topped_up_card(app.api.clone(), "dan.events@example.com").await;
    let other = api.issue_card(&token, "debit", None, None).await;
    let r = api
        .money(&token, "/api/v1/topups", "b2", &json!({"card_id": card, "amount": 700_000, "method": "dana"}))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api
        .money(
            &token,
            "/api/v1/transfers",
            "b3",
            &json!({"from_card_id": card, "to_card_id": other, "amount": 100_000}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let mut conn = app.db();
    let claimed = payd::events::outbox::claim(&mut conn, uuid::Uuid::new_v4(), 100, 30).unwrap();
    let money: Vec<Envelope> = claimed
        .iter()
        .map(|c| c.event.clone())
        .filter(|e| e.event_type == "topup.completed" || e.event_type == "transfer.completed")
        .collect();
    assert_eq!(money.len(), 3);

    // Every transfer e-mailed (as for a user who chose so), so the transfer queues two jobs.
    let every = payd::notify::preferences::Preferences {
        transfer_min_amount: 0,
        ..payd::notify::preferences::Preferences::defaults(&app.settings.notifications)
    };
    let notifier = Arc::new(payd::notify::notifier::Notifier::new(
        app.state.db.clone(),
        Arc::new(tokio::sync::Notify::new()),
        every,
    ));
    // The first top-up was handled before (a redelivery); one event in the batch is unprocessable.
    assert_eq!(notifier.handle(&money[0]).await.unwrap(), Handled::Processed);
    let mut broken = money[1].clone();
    broken.id = uuid::Uuid::new_v4();
    broken.payload = json!({"no": "operation"});
    let batch = vec![money[0].clone(), broken.clone(), money[1].clone(), money[2].clone()];

    let outcomes = notifier.handle_batch(&batch).await;
    assert_eq!(outcomes.len(), 4);
    assert!(matches!(outcomes[0], Ok(Handled::Duplicate)), "{:?}", outcomes[0]);
    assert!(matches!(outcomes[1], Err(payd::events::HandlerError::Reject(_))), "{:?}", outcomes[1]);
    assert!(matches!(outcomes[2], Ok(Handled::Processed)), "{:?}", outcomes[2]);
    assert!(matches!(outcomes[3], Ok(Handled::Processed)), "{:?}", outcomes[3]);
    // One job per top-up, two for the transfer (sender and receiver are both dan); none for the broken one.
    let jobs = |conn: &mut PgConnection, id: uuid::Uuid| {
        count(conn, &format!("SELECT count(*) AS n FROM email_jobs WHERE event_id = '{id}'"))
    };
    assert_eq!(jobs(&mut conn, money[0].id), 1);
    assert_eq!(jobs(&mut conn, money[1].id), 1);
    assert_eq!(jobs(&mut conn, money[2].id), 2);
    assert_eq!(jobs(&mut conn, broken.id), 0);
    // The rejected event left no dedupe row: it is not "processed".
    let dedupe = |conn: &mut PgConnection, id: uuid::Uuid| {
        count(
            conn,
            &format!("SELECT count(*) AS n FROM processed_events WHERE consumer = 'notifier' AND event_id = '{id}'"),
        )
    };
    assert_eq!(dedupe(&mut conn, broken.id), 0);
    assert_eq!(dedupe(&mut conn, money[2].id), 1);

    // The whole batch again (the relay republished it): all duplicates, nothing new queued.
    let again = notifier.handle_batch(&[money[0].clone(), money[1].clone(), money[2].clone()]).await;
    assert!(again.iter().all(|o| matches!(o, Ok(Handled::Duplicate))), "{again:?}");
    let queued: Vec<i64> = money.iter().map(|e| jobs(&mut conn, e.id)).collect();
    assert_eq!(queued, vec![1, 1, 2]);

    // Through the consumer runtime: the rejected event is dead-lettered, the batch counts as done.
    let consumer = Consumer::new("notifier", notifier, app.state.db.clone(), &app.settings.events);
    let mut broken2 = broken.clone();
    broken2.id = uuid::Uuid::new_v4();
    assert_eq!(consumer.process_batch_once(&[money[2].clone(), broken2.clone()]).await, Ok(()));
    assert_eq!(
        count(&mut conn, &format!("SELECT count(*) AS n FROM dead_letters WHERE event_id = '{}'", broken2.id)),
        1
    );
}

/// Records what it handled; the event whose id is `flaky` fails transiently `failures` times first.
struct Flaky {
    flaky: uuid::Uuid,
    failures: AtomicUsize,
    seen: Mutex<Vec<uuid::Uuid>>,
}

#[async_trait]
impl Handler for Flaky {
    async fn handle(&self, event: &Envelope) -> Result<Handled, payd::events::HandlerError> {
        if event.id == self.flaky
            && self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            return Err(payd::events::HandlerError::Retry("database briefly unavailable".into()));
        }
        self.seen.lock().unwrap().push(event.id);
        Ok(Handled::Processed)
    }
}

#[actix_web::test]
async fn broker_messages_taken_together_keep_their_order_through_a_transient_failure() {
    let mut settings = common::settings();
    settings.events.consumers_enabled = false;
    settings.events.relay_enabled = false;
    settings.events.backoff_initial_ms = 20;
    settings.events.backoff_max_ms = 50;
    let app = EvApp::spawn(settings).await;
    let event = |n: i64| Envelope {
        id: uuid::Uuid::new_v4(),
        event_type: "card.frozen".into(),
        schema_version: 1,
        occurred_at: chrono::Utc::now(),
        aggregate_type: "card".into(),
        aggregate_key: "card:7".into(),
        payload: json!({"card_id": 7, "n": n}),
    };
    let evs: Vec<Envelope> = (0..4).map(event).collect();
    let handler = Arc::new(Flaky { flaky: evs[2].id, failures: AtomicUsize::new(2), seen: Mutex::new(Vec::new()) });
    let consumer = Consumer::new("flaky", handler.clone(), app.state.db.clone(), &app.settings.events);
    let raw: Vec<Vec<u8>> = vec![
        serde_json::to_vec(&evs[0]).unwrap(),
        serde_json::to_vec(&evs[1]).unwrap(),
        b"{\"truncated".to_vec(),
        serde_json::to_vec(&evs[2]).unwrap(),
        serde_json::to_vec(&evs[3]).unwrap(),
    ];
    let raws: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
    let dispositions = consumer.process_many(&raws).await;
    assert_eq!(
        dispositions,
        vec![Disposition::Ack, Disposition::Ack, Disposition::DeadLetter, Disposition::Ack, Disposition::Ack]
    );
    // Each event handled once, in order, although the third failed twice before it went through.
    let seen = handler.seen.lock().unwrap().clone();
    assert_eq!(seen, evs.iter().map(|e| e.id).collect::<Vec<_>>());
    assert_eq!(handler.failures.load(Ordering::SeqCst), 0);
    let mut conn = app.db();
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM dead_letters WHERE consumer = 'flaky'"), 1);
}
