//! payd: an actor-based concurrent stored-value payment platform (a modular monolith).
//!
//! Request path: `http` (route table, access policy, errors) or `grpc` (the same over gRPC) → domain module (`identity`, …) →
//! `storage` (diesel on the blocking pool). See `docs/architecture.md`.

pub mod app;
pub mod cache;
pub mod cards;
pub mod cli;
pub mod config;
pub mod console;
pub mod events;
pub mod grpc;
pub mod http;
pub mod identity;
pub mod ids;
pub mod ledger;
pub mod merchants;
pub mod metrics;
pub mod notify;
pub mod payments;
pub mod seed;
pub mod shutdown;
pub mod stats;
pub mod storage;
pub mod telemetry;

pub use app::run;
