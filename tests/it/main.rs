//! Integration tests: one test binary (faster to link, far less disk than one binary per file).
//! Each test starts the real app on a random port against a fresh database; nextest runs every
//! test in its own process, so process-global state (tracing subscribers, env) never leaks between tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod events_support;

mod abuse_limits;
mod access_matrix;
mod admin_lifecycle;
mod card_abuse;
mod console;
mod contract;
mod deployment_config;
mod deployment_runtime;
mod events_kafka;
mod events_outbox;
mod events_rabbitmq;
mod events_webhooks;
mod grpc;
mod grpc_admin;
mod grpc_coverage;
mod grpc_identity;
mod grpc_ledger;
mod grpc_merchants;
mod grpc_tls;
mod identity_abuse;
mod identity_admin;
mod identity_flow;
mod identity_tokens;
mod identity_validation;
mod ledger_crash;
mod ledger_deployed;
mod ledger_storm;
mod ledger_verify;
mod lists_lifecycle;
mod log_secrets;
mod merchant_documents;
mod merchants_authz;
mod merchants_flow;
mod merchants_key_cache;
mod merchants_storm;
mod migrations;
mod money_flow;
mod notify_preferences;
mod operation_list_cache;
mod pay_person;
mod reads;
mod route_policy;
mod secrets_scan;
mod statement_cache;
mod stats;
mod telemetry_otlp;
