//! Who may call each RPC, declared once ([`RPCS`], in the same [`Access`] terms as the HTTP route
//! table), and the one tower layer in front of every gRPC service that enforces it with the same
//! decision as HTTP (`http::routes::authorize`: `authorization: Bearer …` or `x-api-key` metadata).
//! The layer is also the per-call envelope: request id, span (continuing a caller's `traceparent`),
//! Prometheus series per method and status, and the statuses of messages tonic cannot decode.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{HeaderName, HeaderValue};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::request_id;
use crate::http::routes::{authorize, Access, Principal, ADMIN};

use super::convert;

/// Every RPC the server answers, with its access. An RPC missing here is refused (UNIMPLEMENTED)
/// before it reaches its service; `tests/it/grpc.rs` walks the descriptor set so none is missing.
pub const RPCS: &[(&str, Access)] = &[
    ("/payd.v1.Auth/Register", Access::Public),
    ("/payd.v1.Auth/VerifyEmail", Access::Public),
    ("/payd.v1.Auth/Login", Access::Public),
    ("/payd.v1.Auth/Refresh", Access::Public),
    ("/payd.v1.Auth/Logout", Access::Authenticated),
    ("/payd.v1.Auth/Me", Access::Authenticated),
    ("/payd.v1.Auth/ResendVerification", Access::Public),
    ("/payd.v1.Auth/UpdateDisplayName", Access::Authenticated),
    ("/payd.v1.Auth/ChangePassword", Access::Authenticated),
    ("/payd.v1.Auth/ForgotPassword", Access::Public),
    ("/payd.v1.Auth/ResetPassword", Access::Public),
    ("/payd.v1.Users/GetUser", ADMIN),
    ("/payd.v1.Users/ListUsers", ADMIN),
    ("/payd.v1.Users/UpdateUser", ADMIN),
    ("/payd.v1.Users/ArchiveUser", ADMIN),
    ("/payd.v1.Users/RestoreUser", ADMIN),
    ("/payd.v1.Users/ResetUserPassword", ADMIN),
    ("/payd.v1.Users/ListUserCards", Access::Authenticated),
    ("/payd.v1.Users/RestoreAllUsers", ADMIN),
    ("/payd.v1.Users/CreateUser", ADMIN),
    ("/payd.v1.Users/SetUserPassword", ADMIN),
    ("/payd.v1.Users/PurgeUser", ADMIN),
    ("/payd.v1.Cards/IssueCard", Access::Authenticated),
    ("/payd.v1.Cards/GetCard", Access::Authenticated),
    ("/payd.v1.Cards/ListCards", Access::Authenticated),
    ("/payd.v1.Cards/GetBalance", Access::Authenticated),
    ("/payd.v1.Cards/FreezeCard", Access::Authenticated),
    ("/payd.v1.Cards/UnfreezeCard", Access::Authenticated),
    ("/payd.v1.Cards/CloseCard", Access::Authenticated),
    ("/payd.v1.Cards/ArchiveCard", Access::Authenticated),
    ("/payd.v1.Cards/RestoreCard", Access::Authenticated),
    ("/payd.v1.Cards/UnlockCard", Access::Authenticated),
    ("/payd.v1.Cards/GetStatement", Access::Authenticated),
    ("/payd.v1.Cards/ListBalances", ADMIN),
    ("/payd.v1.Cards/LookupCard", Access::Authenticated),
    ("/payd.v1.Cards/UpdateCard", Access::Authenticated),
    ("/payd.v1.Cards/RestoreAllCards", ADMIN),
    ("/payd.v1.Cards/FindCardByNumber", Access::Authenticated),
    ("/payd.v1.Ledger/TopUp", Access::Authenticated),
    ("/payd.v1.Ledger/Withdraw", Access::Authenticated),
    ("/payd.v1.Ledger/Transfer", Access::Authenticated),
    ("/payd.v1.Ledger/GetOperation", Access::Authenticated),
    ("/payd.v1.Ledger/ListOperations", Access::Authenticated),
    ("/payd.v1.Ledger/WatchOperations", Access::Authenticated),
    ("/payd.v1.Ledger/ReverseOperation", ADMIN),
    ("/payd.v1.Ledger/ArchiveOperation", ADMIN),
    ("/payd.v1.Ledger/RestoreOperation", ADMIN),
    ("/payd.v1.Payments/Pay", Access::ApiKey),
    ("/payd.v1.Payments/Refund", Access::ApiKeyOrRole(&["admin"])),
    ("/payd.v1.Payments/GetPayment", Access::Authenticated),
    ("/payd.v1.Payments/ListPayments", Access::Authenticated),
    ("/payd.v1.Payments/ListMerchantPayments", Access::ApiKey),
    ("/payd.v1.Payments/ListRefunds", Access::Authenticated),
    ("/payd.v1.Payments/ArchivePayment", ADMIN),
    ("/payd.v1.Payments/RestorePayment", ADMIN),
    ("/payd.v1.Merchants/ApplyMerchant", Access::Authenticated),
    ("/payd.v1.Merchants/GetMerchant", Access::Authenticated),
    ("/payd.v1.Merchants/CreateApiKey", Access::Authenticated),
    ("/payd.v1.Merchants/ListApiKeys", Access::Authenticated),
    ("/payd.v1.Merchants/RevokeApiKey", Access::Authenticated),
    ("/payd.v1.Merchants/ListMerchants", Access::Authenticated),
    ("/payd.v1.Merchants/UpdateMerchant", Access::Authenticated),
    ("/payd.v1.Merchants/DecideMerchant", ADMIN),
    ("/payd.v1.Merchants/GetMerchantBalance", Access::Authenticated),
    ("/payd.v1.Merchants/RotateApiKey", Access::Authenticated),
    ("/payd.v1.Merchants/UploadDocument", Access::Authenticated),
    ("/payd.v1.Merchants/ListDocuments", Access::Authenticated),
    ("/payd.v1.Merchants/GetDocumentContent", Access::Authenticated),
    ("/payd.v1.Merchants/ListDocumentVersions", Access::Authenticated),
    ("/payd.v1.Merchants/ReplaceDocument", Access::Authenticated),
    ("/payd.v1.Merchants/ReviewDocument", ADMIN),
    ("/payd.v1.Merchants/WithdrawDocument", Access::Authenticated),
    ("/payd.v1.Merchants/GetMerchantStatement", Access::Authenticated),
    ("/payd.v1.Merchants/RestoreAllMerchants", ADMIN),
    ("/payd.v1.Merchants/ListReviewQueue", ADMIN),
    ("/payd.v1.Roles/ListRoles", ADMIN),
    ("/payd.v1.Roles/GetRole", ADMIN),
    ("/payd.v1.Roles/CreateRole", ADMIN),
    ("/payd.v1.Roles/UpdateRole", ADMIN),
    ("/payd.v1.Roles/ArchiveRole", ADMIN),
    ("/payd.v1.Roles/RestoreRole", ADMIN),
    ("/payd.v1.Roles/AssignRole", ADMIN),
    ("/payd.v1.Roles/RevokeRole", ADMIN),
    ("/payd.v1.Roles/ListUserRoles", ADMIN),
    ("/payd.v1.Roles/RestoreAllRoles", ADMIN),
    ("/payd.v1.Roles/PurgeRole", ADMIN),
    ("/payd.v1.Stats/Series", crate::stats::routes::READERS),
    ("/payd.v1.Stats/Dashboard", crate::stats::routes::READERS),
    ("/payd.v1.Admin/GetEventsStatus", ADMIN),
    ("/payd.v1.Admin/ListDeadLetters", ADMIN),
    ("/payd.v1.Admin/RedriveDeadLetter", ADMIN),
    // A merchant's webhooks: its owner or an admin (checked by `events::webhooks::service`).
    ("/payd.v1.Webhooks/ListEventTypes", Access::Authenticated),
    ("/payd.v1.Webhooks/CreateWebhook", Access::Authenticated),
    ("/payd.v1.Webhooks/ListWebhooks", Access::Authenticated),
    ("/payd.v1.Webhooks/GetWebhook", Access::Authenticated),
    ("/payd.v1.Webhooks/UpdateWebhook", Access::Authenticated),
    ("/payd.v1.Webhooks/DeleteWebhook", Access::Authenticated),
    ("/payd.v1.Webhooks/RotateWebhookSecret", Access::Authenticated),
    ("/payd.v1.Webhooks/ListDeliveries", Access::Authenticated),
    ("/payd.v1.Webhooks/GetDelivery", Access::Authenticated),
    ("/payd.v1.Webhooks/Redeliver", Access::Authenticated),
    ("/payd.v1.Notifications/GetPreferences", Access::Authenticated),
    ("/payd.v1.Notifications/UpdatePreferences", Access::Authenticated),
    ("/grpc.health.v1.Health/Check", Access::Public),
    ("/grpc.health.v1.Health/Watch", Access::Public),
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", Access::Public),
];

/// The declared access of a full method path (`/package.Service/Method`).
pub fn access_of(path: &str) -> Option<Access> {
    RPCS.iter().find(|(p, _)| *p == path).map(|(_, a)| *a)
}

/// The layer wrapped around every gRPC service.
#[derive(Clone)]
pub struct AccessLayer {
    state: AppState,
}

impl AccessLayer {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessService { inner, state: self.state.clone() }
    }
}

#[derive(Clone)]
pub struct AccessService<S> {
    inner: S,
    state: AppState,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> Service<http::Request<B>> for AccessService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone that was made ready is the one that serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let declared = access_of(&path);
            let method = if declared.is_some() { path.clone() } else { "unmatched".to_owned() };
            let id = req
                .headers()
                .get(request_id::HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|v| request_id::valid(v))
                .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
            let span = tracing::info_span!(
                "grpc_request",
                request_id = %id,
                trace_id = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.method = %method,
                rpc.grpc.status_code = tracing::field::Empty,
                otel.kind = "server",
            );
            crate::telemetry::link_remote_parent_grpc(&span, req.headers());
            if let Some(trace_id) = crate::telemetry::trace_id(&span) {
                span.record("trace_id", trace_id.as_str());
            }
            let started = Instant::now();
            let call = async move {
                let Some(access) = declared else {
                    return Ok(tonic::Status::unimplemented(format!("unknown method {path}")).into_http());
                };
                let headers = req.headers();
                let bearer = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let key =
                    headers.get(crate::merchants::keys::HEADER).map(|v| v.to_str().unwrap_or_default().to_owned());
                match authorize(&state, access, bearer.as_deref(), key.as_deref()).await {
                    Ok(Principal::User(user)) => {
                        req.extensions_mut().insert(user);
                    }
                    Ok(Principal::Merchant(principal)) => {
                        req.extensions_mut().insert(principal);
                    }
                    Ok(Principal::Anonymous) => {}
                    Err(e) => return Ok(convert::status(e).into_http()),
                }
                let resp = inner.call(req).await?;
                Ok(client_mistakes(resp))
            };
            let result = request_id::scope(id.clone(), call).instrument(span.clone()).await;
            let elapsed = started.elapsed().as_secs_f64();
            result.map(|mut resp| {
                // Trailers-only answers (every error) carry the status in the headers; a call that
                // answers with a message carries it in the trailers, after the body: OK here.
                let code = resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32);
                span.record("rpc.grpc.status_code", i32::from(code));
                crate::metrics::observe_grpc(&method, &format!("{code:?}"), elapsed);
                if let Ok(v) = HeaderValue::from_str(&id) {
                    resp.headers_mut().insert(HeaderName::from_static(request_id::HEADER), v);
                }
                resp
            })
        })
    }
}

/// tonic answers a message it cannot decode with INTERNAL and an oversized one with OUT_OF_RANGE;
/// both are the client's mistake: INVALID_ARGUMENT (`invalid_message`) and RESOURCE_EXHAUSTED
/// (`payload_too_large`), with the same details as every other error.
fn client_mistakes(resp: http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    let Some(status) = tonic::Status::from_header_map(resp.headers()) else { return resp };
    let message = status.message();
    let replaced = match status.code() {
        tonic::Code::Internal if message.starts_with("failed to decode") => ApiError::bad_request(
            "invalid_message",
            format!("the request message is not a valid protobuf message of this method: {message}"),
        ),
        tonic::Code::OutOfRange if message.contains("message length too large") => ApiError::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request message is too large: {message}"),
        ),
        _ => return resp,
    };
    convert::status(replaced).into_http()
}
