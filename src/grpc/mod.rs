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
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds the configured port and serves until shutdown begins (`AppState::shutdown`): then the
/// server stops accepting, in-flight calls finish and open watch streams end.
///
/// # Errors
/// When the port cannot be bound, the TLS files cannot be read, or a service cannot be built.
pub async fn start(state: &AppState) -> anyhow::Result<GrpcServer> {
    let cfg = &state.settings.grpc;
    let listener = TcpListener::bind((state.settings.server.host.as_str(), cfg.port))?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let incoming = tonic::transport::server::TcpIncoming::from(tokio::net::TcpListener::from_std(listener)?)
        .with_nodelay(Some(true));
    let mut builder = Server::builder();
    if !cfg.tls_cert_path.is_empty() {
        let cert = std::fs::read(&cfg.tls_cert_path)
            .map_err(|e| anyhow::anyhow!("grpc.tls_cert_path {}: {e}", cfg.tls_cert_path))?;
        let key = std::fs::read(&cfg.tls_key_path)
            .map_err(|e| anyhow::anyhow!("grpc.tls_key_path {}: {e}", cfg.tls_key_path))?;
        builder = builder.tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))?;
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection =
        tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(DESCRIPTOR).build_v1()?;
    let router =
        builder.layer(access::AccessLayer::new(state.clone())).add_service(health_service).add_service(reflection);
    let router = services::add(router, state);
    let shutdown = state.shutdown.clone();
    let task = tokio::spawn(async move {
        let stop = async move {
            shutdown.started().await;
            // Load balancers polling grpc.health.v1 stop sending calls while in-flight ones finish.
            health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::error!(error = %e, "gRPC server failed");
        }
    });
    tracing::info!(port, tls = !cfg.tls_cert_path.is_empty(), "payd gRPC listening");
    Ok(GrpcServer { port, task })
}
