//! The gRPC API (`proto/payd/v1`): tonic on its own port, in the same process, runtime and state as
//! the HTTP API. Every method is a thin adapter over the same domain functions as the HTTP routes
//! (parse → call → map); who may call it is declared once in [`access::RPCS`] and enforced by one
//! tower layer; errors are gRPC statuses carrying `google.rpc.ErrorInfo` (reason = the HTTP error
//! code) and `google.rpc.RequestInfo` (the request id). See `docs/grpc.md`.

pub mod access;
pub mod convert;
mod identity;
mod ledger;
mod merchants;
mod services;
mod webhooks;

use std::net::TcpListener;

use tokio_stream::StreamExt;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::app::AppState;

/// The generated messages, clients and servers of `payd.v1`.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::as_conversions, missing_docs)]
pub mod proto {
    tonic::include_proto!("payd.v1");
}

/// The encoded descriptor set of every proto (reflection, and the backward-compatibility test).
pub const DESCRIPTOR: &[u8] = tonic::include_file_descriptor_set!("payd_descriptor");

/// A running gRPC server.
pub struct GrpcServer {
    pub port: u16,
    /// Ends when every serving thread has drained its calls after shutdown began.
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds the configured port and serves until shutdown begins (`AppState::shutdown`): then the
/// server stops accepting, in-flight calls finish and open watch streams end.
///
/// Connections are served by `grpc.workers` threads (actix arbiters, like the HTTP workers): one
/// accept loop hands each new connection to the next thread in turn, and that thread runs the
/// connection's HTTP/2 framing, decoding and calls. (A single serving thread made gRPC slower than
/// HTTP/JSON, which has a worker per core.)
///
/// # Errors
/// When the port cannot be bound, the TLS files cannot be read, or a service cannot be built.
pub async fn start(state: &AppState) -> anyhow::Result<GrpcServer> {
    let cfg = &state.settings.grpc;
    let listener = TcpListener::bind((state.settings.server.host.as_str(), cfg.port))?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let tls = if cfg.tls_cert_path.is_empty() {
        None
    } else {
        let cert = std::fs::read(&cfg.tls_cert_path)
            .map_err(|e| anyhow::anyhow!("grpc.tls_cert_path {}: {e}", cfg.tls_cert_path))?;
        let key = std::fs::read(&cfg.tls_key_path)
            .map_err(|e| anyhow::anyhow!("grpc.tls_key_path {}: {e}", cfg.tls_key_path))?;
        Some(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    let threads = match cfg.workers {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n,
    };

    let mut lanes = Vec::with_capacity(threads);
    let mut finished = Vec::with_capacity(threads);
    for _ in 0..threads {
        let mut builder = Server::builder();
        if let Some(tls) = tls.clone() {
            builder = builder.tls_config(tls)?;
        }
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(DESCRIPTOR)
            .build_v1()?;
        let router = builder
            .layer(access::AccessLayer::new(state.clone()))
            .add_service(health_service.clone())
            .add_service(reflection);
        let router = services::add(router, state);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<std::net::TcpStream>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let arbiter = actix_rt::Arbiter::new();
        let shutdown = state.shutdown.clone();
        let spawned = arbiter.spawn(async move {
            // Registered with this thread's reactor, so the connection's I/O is driven here.
            let incoming =
                tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(tokio::net::TcpStream::from_std);
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, shutdown.started()).await {
                tracing::error!(error = %e, "gRPC server failed");
            }
            let _ = done_tx.send(());
        });
        if !spawned {
            anyhow::bail!("a gRPC serving thread could not be started");
        }
        lanes.push(tx);
        finished.push((arbiter, done_rx));
    }

    let shutdown = state.shutdown.clone();
    let accept = tokio::spawn(async move {
        let mut next = 0usize;
        loop {
            tokio::select! {
                () = shutdown.started() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let handed = stream.set_nodelay(true).and_then(|()| stream.into_std());
                        match handed {
                            Ok(stream) => {
                                // A lane whose thread has ended drops the connection (shutdown only).
                                let _ = lanes[next % lanes.len()].send(stream);
                                next = next.wrapping_add(1);
                            }
                            Err(e) => tracing::warn!(error = %e, "gRPC connection not handed over"),
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment instead of spinning.
                        tracing::warn!(error = %e, "gRPC accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
        // Load balancers polling grpc.health.v1 stop sending calls while in-flight ones finish.
        health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
    });
    let task = tokio::spawn(async move {
        let _ = accept.await;
        for (arbiter, done) in finished {
            let _ = done.await;
            arbiter.stop();
        }
    });
    tracing::info!(port, threads, tls = tls.is_some(), "payd gRPC listening");
    Ok(GrpcServer { port, task })
}
