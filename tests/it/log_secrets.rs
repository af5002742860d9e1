//! Secrets never reach the logs: a full identity flow runs with debug logging captured in memory, and
//! no password, code, token or the signing secret appears in what was written.
//!
//! Keep this the only test in the file: it installs the process-wide subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

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

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[actix_web::test]
async fn a_full_identity_flow_logs_no_secrets() {
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
    // The app's own initialisation must not replace ours.
    let _guard = payd::telemetry::init(
        &payd::config::Settings::load_from(
            "test",
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
            false,
        )
        .unwrap()
        .telemetry,
    );

    let app = TestApp::spawn().await;
    let mut secrets: Vec<(String, String)> = vec![
        ("jwt secret".into(), app.settings.auth.jwt_secret.expose().to_owned()),
        ("admin password".into(), ADMIN_PASSWORD.into()),
        ("user password".into(), PASSWORD.into()),
    ];
    let mut add = |what: &str, token: &str| {
        secrets.push((what.to_owned(), token.to_owned()));
        // The signature of a JWT alone is enough to matter.
        if let Some(sig) = token.rsplit('.').next().filter(|s| s.len() >= 20 && token.matches('.').count() == 2) {
            secrets.push((format!("{what} (signature)"), sig.to_owned()));
        }
    };

    let email = "secretive@example.com";
    app.register(email).await;
    // A wrong code first (its handling is logged too), then the right one.
    let code = app.verification_code(email).await;
    let (s, _) = app.post("/api/v1/auth/verify-email", None, json!({"email": email, "code": "000000"})).await;
    assert!(s == 400 || s == 200);
    let (s, b) = app.post("/api/v1/auth/verify-email", None, json!({"email": email, "code": code})).await;
    if s != 200 {
        // "000000" happened to be the code (1 in a million): it was consumed above.
        assert_eq!(code, "000000", "{b}");
    }

    // A failed login with a wrong password, then the real one.
    let wrong_password = "Wrong-Guess-98765";
    let (s, _) = app.login(email, wrong_password).await;
    assert_eq!(s, 401);
    let (s, t) = app.login(email, PASSWORD).await;
    assert_eq!(s, 200, "{t}");
    let access1 = t["access_token"].as_str().unwrap().to_owned();
    let refresh1 = t["refresh_token"].as_str().unwrap().to_owned();
    add("access token 1", &access1);
    add("refresh token 1", &refresh1);
    let (s, _) = app.get("/api/v1/auth/me", Some(&access1)).await;
    assert_eq!(s, 200);

    let (s, t) = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh1})).await;
    assert_eq!(s, 200, "{t}");
    let access2 = t["access_token"].as_str().unwrap().to_owned();
    let refresh2 = t["refresh_token"].as_str().unwrap().to_owned();
    add("access token 2", &access2);
    add("refresh token 2", &refresh2);
    // Reuse detection is logged (as a warning): it must not log the token either.
    let (s, _) = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh1})).await;
    assert_eq!(s, 401);

    let (s, t) = app.login(email, PASSWORD).await;
    assert_eq!(s, 200, "{t}");
    let access3 = t["access_token"].as_str().unwrap().to_owned();
    add("access token 3", &access3);
    add("refresh token 3", t["refresh_token"].as_str().unwrap());

    let changed = "Changed-Pass-24680";
    let (s, b) = app
        .post(
            "/api/v1/auth/password/change",
            Some(&access3),
            json!({"current_password": PASSWORD, "new_password": changed, "confirm_password": changed}),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    let (s, _) = app.post("/api/v1/auth/password/forgot", None, json!({"email": email})).await;
    assert_eq!(s, 200);
    let reset_token = app.reset_token(email).await;
    let after_reset = "After-Reset-13579";
    let (s, b) = app
        .post(
            "/api/v1/auth/password/reset",
            None,
            json!({"token": reset_token, "new_password": after_reset, "confirm_password": after_reset}),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    let (s, t) = app.login(email, after_reset).await;
    assert_eq!(s, 200, "{t}");
    let access4 = t["access_token"].as_str().unwrap().to_owned();
    add("access token 4", &access4);
    add("refresh token 4", t["refresh_token"].as_str().unwrap());
    let (s, _) = app.call("POST", "/api/v1/auth/logout", Some(&access4), None).await;
    assert_eq!(s, 204);
    // A request with a garbage bearer token: the presented credential is not logged either.
    let (s, _) = app.get("/api/v1/auth/me", Some("garbage-token-SHOULD-NOT-BE-LOGGED")).await;
    assert_eq!(s, 401);
    // The admin token used to read the mailbox.
    add("admin access token", &app.admin_token().await);

    secrets.push(("wrong password".into(), wrong_password.into()));
    secrets.push(("changed password".into(), changed.into()));
    secrets.push(("reset password".into(), after_reset.into()));
    secrets.push(("reset token".into(), reset_token.clone()));
    secrets.push(("garbage bearer".into(), "garbage-token-SHOULD-NOT-BE-LOGGED".into()));

    app.handle.stop(true).await;
    let logs = capture.text();
    assert!(!logs.trim().is_empty(), "nothing was captured");
    // The capture really is the app's log: its events are there, as JSON lines.
    assert!(logs.contains("user registered"), "app events missing from capture:\n{logs}");
    assert!(logs.contains("refresh token reuse"), "reuse warning missing:\n{logs}");
    assert!(logs.contains("request served"), "debug request events missing:\n{logs}");
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not a JSON log line: {line}");
    }

    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        assert!(secret.len() >= 8, "{what} is too short to search for");
        if logs.contains(secret.as_str()) {
            leaks.push(what.clone());
        }
    }
    // The 6-digit code must not appear as a standalone number. Timestamps (microsecond fractions) and
    // durations are numeric noise that could contain any six digits, so they are left out of this check.
    let numeric_noise_free: String = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("timestamp");
                o.remove("elapsed_ms");
            }
            v.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    let code_re = regex::Regex::new(&format!(r"(^|[^0-9]){code}([^0-9]|$)")).unwrap();
    if code_re.is_match(&numeric_noise_free) {
        leaks.push(format!("verification code {code}"));
    }
    assert!(leaks.is_empty(), "secrets found in the logs: {leaks:?}\n{logs}");
}
