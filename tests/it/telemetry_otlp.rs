//! Traces leave the service over OTLP/HTTP when an endpoint is configured: a small local OTLP receiver
//! gets the spans of a request (Jaeger ingests the same protocol).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::*;
use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::test]
async fn request_spans_are_exported_over_otlp() {
    // The receiver: counts POST /v1/traces bodies.
    let received = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicUsize::new(0));
    let (r, b) = (received.clone(), bytes.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let (r, b) = (r.clone(), b.clone());
        App::new().route(
            "/v1/traces",
            web::post().to(move |body: web::Bytes, req: actix_web::HttpRequest| {
                let (r, b) = (r.clone(), b.clone());
                async move {
                    assert_eq!(
                        req.headers().get("content-type").and_then(|v| v.to_str().ok()),
                        Some("application/x-protobuf")
                    );
                    r.fetch_add(1, Ordering::SeqCst);
                    b.fetch_add(body.len(), Ordering::SeqCst);
                    HttpResponse::Ok().finish()
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);

    let mut s = settings();
    s.telemetry.otlp_endpoint = format!("http://127.0.0.1:{port}/v1/traces");
    let guard = payd::telemetry::init(&s.telemetry).unwrap();
    let app = TestApp::spawn_with(s).await;
    let (status, _, _) = app
        .call_full(
            "GET",
            "/api/v1/ping",
            None,
            None,
            &[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
        )
        .await;
    assert_eq!(status, 200);
    // Shutting the provider down flushes the batch exporter (on its own thread).
    tokio::task::spawn_blocking(move || drop(guard)).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while received.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(received.load(Ordering::SeqCst) >= 1, "no OTLP export reached the receiver");
    assert!(bytes.load(Ordering::SeqCst) > 0, "empty OTLP export");
}
