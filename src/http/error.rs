//! The one error body of the API and the one place where every domain error becomes an HTTP status.
//!
//! Body: `{"error": {"code", "message", "field"?, "request_id"}}`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::cards::CardsError;
use crate::events::webhooks::WebhookError;
use crate::http::request_id;
use crate::identity::IdentityError;
use crate::merchants::MerchantError;
use crate::payments::PaymentError;
use crate::storage::StorageError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `validation_failed`.
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub request_id: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status.as_u16(), self.code, self.message)
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None, retry_after: None }
    }
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", message).with_field(field)
    }
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    pub fn too_many(code: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, code, message).with_retry_after(retry_after)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).with_retry_after(1)
    }
    /// A server-side fault: the cause is logged, the client sees a generic message and the request id.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; quote the request id when reporting it",
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                field: self.field.clone(),
                request_id: request_id::current().unwrap_or_default(),
            },
        };
        let mut resp = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            resp.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        resp.json(body)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => Self::not_found("record"),
            StorageError::Conflict(c) => Self::conflict("conflict", format!("conflicts with an existing record ({c})")),
            StorageError::Referenced(c) => {
                Self::conflict("still_referenced", format!("still referenced by other records ({c})"))
            }
            StorageError::Check(c) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "rule_violated", format!("violates rule {c}"))
            }
            StorageError::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                Self::unavailable("database unavailable, retry later")
            }
            StorageError::Other(m) => Self::internal(m),
        }
    }
}

impl From<validator::ValidationErrors> for ApiError {
    fn from(errors: validator::ValidationErrors) -> Self {
        // Report the first failing field (sorted for a stable answer).
        let mut fields: Vec<_> = errors.field_errors().into_iter().collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        match fields.first() {
            Some((field, errs)) => {
                let message = errs
                    .first()
                    .and_then(|e| e.message.as_ref().map(ToString::to_string))
                    .unwrap_or_else(|| format!("{field} is invalid"));
                // A schema-level rule (`__all__`) may name the field it is about.
                let named = errs.first().and_then(|e| e.params.get("field")).and_then(|v| v.as_str());
                let field = named.map_or_else(|| field.to_string(), ToOwned::to_owned);
                Self::validation(field, message)
            }
            None => Self::validation("body", errors.to_string()),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        use IdentityError as E;
        let msg = e.to_string();
        match e {
            E::EmailTaken => Self::conflict("email_taken", msg).with_field("email"),
            E::InvalidCredentials => Self::unauthorized("invalid_credentials", msg),
            E::EmailNotVerified => Self::new(StatusCode::FORBIDDEN, "email_not_verified", msg),
            E::AccountArchived => Self::new(StatusCode::FORBIDDEN, "account_archived", msg),
            E::Locked { retry_after } => Self::too_many("account_locked", msg, retry_after),
            E::RateLimited { retry_after } => Self::too_many("rate_limited", msg, retry_after),
            E::InvalidCode => Self::bad_request("invalid_code", msg).with_field("code"),
            E::AlreadyVerified => Self::conflict("already_verified", msg),
            E::InvalidToken(_) => Self::unauthorized("invalid_token", msg),
            E::TokenReuse => Self::unauthorized("refresh_token_reused", msg),
            E::WrongPassword => Self::bad_request("wrong_password", msg).with_field("current_password"),
            E::UserNotFound => Self::not_found("user"),
            E::RoleNotFound(_) => Self::not_found("role"),
            E::RoleTaken => Self::conflict("role_taken", msg).with_field("name"),
            E::BuiltinRole(_) => Self::conflict("builtin_role", msg),
            E::RoleInUse(_) => Self::conflict("role_in_use", msg),
            E::LastAdmin => Self::conflict("last_admin", msg),
            E::NotArchived | E::AlreadyArchived => Self::conflict("archive_state", msg),
            E::UserHasRecords => Self::conflict("user_has_records", msg),
            E::Mail(m) => Self::internal(m),
            E::Cache(m) => {
                tracing::warn!(error = %m, "redis unavailable");
                Self::unavailable("rate-limit store unavailable, retry later")
            }
            E::Storage(s) => s.into(),
        }
    }
}

impl From<CardsError> for ApiError {
    fn from(e: CardsError) -> Self {
        use CardsError as E;
        let msg = e.to_string();
        match e {
            // Someone else's card answers exactly like a missing one.
            E::NotFound | E::NotOwner => Self::not_found("card"),
            E::AdminOnly(_) => Self::forbidden(msg),
            E::UnknownUser => Self::validation("user_id", msg),
            E::InvalidTransition { .. } => Self::conflict("invalid_transition", msg),
            E::NonZeroBalance(_) => Self::conflict("non_zero_balance", msg),
            E::Invalid(_) => Self::bad_request("invalid", msg),
            E::PanExhausted => Self::unavailable(msg),
            E::NotCreditCard => Self::validation("credit_limit", msg),
            E::CreditLimitBelowBalance { .. } => {
                Self::conflict("credit_limit_below_balance", msg).with_field("credit_limit")
            }
            E::Storage(s) => s.into(),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        use PaymentError as E;
        let msg = e.to_string();
        match e {
            E::MissingIdempotencyKey | E::BadIdempotencyKey => {
                Self::bad_request("idempotency_key_required", msg).with_field("Idempotency-Key")
            }
            E::IdempotencyConflict => Self::conflict("idempotency_conflict", msg),
            E::CardNotFound(_) => Self::new(StatusCode::NOT_FOUND, "card_not_found", msg),
            // Someone else's card answers exactly like a missing one.
            E::NotCardOwner(id) => {
                Self::new(StatusCode::NOT_FOUND, "card_not_found", PaymentError::CardNotFound(id).to_string())
            }
            E::OperationNotFound => Self::not_found("operation"),
            E::RecipientNotFound(field) => {
                Self::new(StatusCode::NOT_FOUND, "recipient_not_found", msg).with_field(field)
            }
            E::SelfPayment => Self::validation("to_card_number", msg),
            E::NotReversible(_) => Self::conflict("not_reversible", msg),
            E::NeverPurged => Self::conflict("never_purged", msg),
            E::ArchiveState(_) => Self::conflict("archive_state", msg),
            E::OrderRefTaken => Self::conflict("order_ref_taken", msg).with_field("order_ref"),
            E::Busy => Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", msg).with_retry_after(1),
            E::OutcomeUnknown => Self::new(StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown", msg).with_retry_after(1),
            E::Unavailable(m) => {
                tracing::warn!(error = %m, "ledger unavailable");
                Self::unavailable("ledger unavailable, retry later")
            }
            E::Storage(s) => s.into(),
        }
    }
}

impl From<MerchantError> for ApiError {
    fn from(e: MerchantError) -> Self {
        use MerchantError as E;
        let msg = e.to_string();
        match e {
            // Someone else's merchant answers exactly like a missing one.
            E::NotFound | E::NotOwner => Self::not_found("merchant"),
            E::InvalidTransition { .. } => Self::conflict("invalid_transition", msg),
            E::DocumentsMissing(_) => Self::conflict("documents_missing", msg),
            E::DocumentNotFound => Self::not_found("document"),
            E::DocumentSuperseded(_) => Self::conflict("document_superseded", msg),
            E::DocumentReviewed(_) => Self::conflict("document_already_reviewed", msg),
            E::DocumentWithdrawn => Self::conflict("document_withdrawn", msg),
            E::DocumentChanged => Self::conflict("document_changed", msg),
            E::DocumentTooLarge(_) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", msg).with_field("file")
            }
            E::UnsupportedDocument(_) => {
                Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", msg).with_field("file")
            }
            E::BadUpload(_) => Self::bad_request("invalid_upload", msg),
            E::KeyNotFound => Self::not_found("API key"),
            E::MissingKey | E::InvalidKey => Self::unauthorized("invalid_api_key", msg),
            E::RevokedKey => Self::unauthorized("api_key_revoked", msg),
            E::ExpiredKey => Self::unauthorized("api_key_expired", msg),
            E::Inactive(_) => Self::new(StatusCode::FORBIDDEN, "merchant_inactive", msg),
            E::PaymentNotFound => Self::not_found("payment"),
            E::NotRefundable(_) => Self::conflict("not_refundable", msg),
            E::Blob(m) => Self::internal(m),
            E::Storage(s) => s.into(),
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        use WebhookError as E;
        let msg = e.to_string();
        match e {
            // Someone else's merchant answers exactly like a missing one.
            E::MerchantNotFound | E::NotOwner => Self::not_found("merchant"),
            E::EndpointNotFound => Self::not_found("webhook endpoint"),
            E::DeliveryNotFound => Self::not_found("webhook delivery"),
            E::Url(_) => Self::validation("url", msg),
            E::UnknownEventType(_) => Self::validation("event_types", msg),
            E::Invalid { field, .. } => Self::validation(field, msg),
            E::Storage(s) => s.into(),
        }
    }
}

impl From<crate::events::routes::RedriveError> for ApiError {
    fn from(e: crate::events::routes::RedriveError) -> Self {
        use crate::events::routes::RedriveError as E;
        let msg = e.to_string();
        match e {
            E::NotFound => Self::not_found("dead letter"),
            E::NotRedrivable(_) => Self::conflict("not_redrivable", msg),
            E::Storage(s) => s.into(),
        }
    }
}

impl From<crate::stats::StatsError> for ApiError {
    fn from(e: crate::stats::StatsError) -> Self {
        use crate::stats::StatsError as E;
        let msg = e.to_string();
        match e {
            E::Invalid { field, .. } => Self::validation(field, msg),
            E::Forbidden(_) => Self::forbidden(msg),
            E::NotFound { field, what } => Self::not_found(what).with_field(field),
            E::Storage(s) => s.into(),
        }
    }
}
