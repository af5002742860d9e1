//! The edges of the gRPC adapters: domain errors → gRPC statuses with details, the ledger's
//! [`Reply`] → an `Operation` or a status, views → messages, and the callers and metadata a method
//! reads from its request.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use chrono::{DateTime, Utc};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::cards::routes::BalanceView;
use crate::cards::CardView;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::request_id;
use crate::identity::model::UserView;
use crate::merchants::keys::MerchantPrincipal;
use crate::payments::execute::Reply;
use crate::payments::{OperationKind, OperationView};

use super::proto;

/// The `google.rpc.ErrorInfo` domain of every payd error.
pub const DOMAIN: &str = "payd";

/// The gRPC code for an HTTP status of the API (the same error, the other transport).
pub fn code_for(status: StatusCode) -> Code {
    match status.as_u16() {
        400 | 415 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        402 | 423 => Code::FailedPrecondition,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::AlreadyExists,
        413 | 429 => Code::ResourceExhausted,
        501 => Code::Unimplemented,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        s if s >= 500 => Code::Internal,
        _ => Code::FailedPrecondition,
    }
}

/// A status with `ErrorInfo` (reason = the HTTP error code; metadata: `http_status`, and `field`,
/// `retry_after_secs` and `extra` entries when known) and `RequestInfo` (the request id).
pub fn error_status(
    http: StatusCode,
    reason: &str,
    message: &str,
    field: Option<&str>,
    retry_after: Option<u64>,
    extra: &[(&str, String)],
) -> Status {
    let mut metadata = HashMap::from([("http_status".to_owned(), http.as_u16().to_string())]);
    if let Some(f) = field {
        metadata.insert("field".into(), f.to_owned());
    }
    if let Some(secs) = retry_after {
        metadata.insert("retry_after_secs".into(), secs.to_string());
    }
    for (k, v) in extra {
        metadata.insert((*k).to_owned(), v.clone());
    }
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, metadata);
    details.set_request_info(request_id::current().unwrap_or_default(), "");
    Status::with_error_details(code_for(http), message, details)
}

/// The status of a domain error.
pub fn status(e: ApiError) -> Status {
    error_status(e.status, e.code, &e.message, e.field.as_deref(), e.retry_after, &[])
}

/// A bad field of a request message (422 `validation_failed` naming the field).
pub fn invalid(field: &str, message: impl Into<String>) -> Status {
    status(ApiError::validation(field, message))
}

/// Checks a request message converted into the HTTP route's request type, with the same rules.
///
/// # Errors
/// `INVALID_ARGUMENT` naming the first bad field.
pub fn validated<T: validator::Validate>(value: T) -> Result<T, Status> {
    value.validate().map_err(|e| status(ApiError::from(e)))?;
    Ok(value)
}

/// The authenticated user the access layer put on the request.
///
/// # Errors
/// `UNAUTHENTICATED` when there is none (an RPC declared public that reads a user).
pub fn user<T>(req: &Request<T>) -> Result<AuthUser, Status> {
    req.extensions()
        .get::<AuthUser>()
        .cloned()
        .ok_or_else(|| status(ApiError::unauthorized("missing_token", "authentication required")))
}

/// The merchant API key the access layer put on the request, if the call was made with one.
pub fn merchant<T>(req: &Request<T>) -> Option<MerchantPrincipal> {
    req.extensions().get::<MerchantPrincipal>().cloned()
}

/// The `idempotency-key` metadata entry, checked as the HTTP header is.
///
/// # Errors
/// `INVALID_ARGUMENT` when missing or malformed.
pub fn idempotency_key<T>(req: &Request<T>) -> Result<String, Status> {
    let key = match req.metadata().get(crate::payments::idempotency::HEADER) {
        None => Err(crate::payments::PaymentError::MissingIdempotencyKey),
        Some(v) => crate::payments::idempotency::check_key(v.to_str().ok()),
    };
    key.map_err(|e| status(e.into()))
}

/// The client address for rate limits: the peer, or behind a trusted proxy the address it forwarded.
pub fn client<T>(req: &Request<T>, trusted: &[ipnet::IpNet]) -> String {
    let Some(peer) = req.remote_addr() else { return "unknown".into() };
    let forwarded: Vec<&str> =
        req.metadata().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    crate::http::client_ip::client_ip_from(peer.ip(), &forwarded, trusted).to_string()
}

/// The answer of a money-moving call: the operation (response metadata `idempotent-replayed: true`
/// on a replay), or, for a recorded failure, a status naming the failure code and the failed
/// operation's id.
///
/// # Errors
/// The failure's status.
pub fn operation_reply(reply: Reply) -> Result<Response<proto::Operation>, Status> {
    let mut extra = Vec::new();
    if reply.replayed {
        extra.push(("idempotent_replayed", "true".to_owned()));
    }
    if !reply.status.is_success() {
        let error = &reply.body["error"];
        let reason = error["code"].as_str().unwrap_or("failed");
        let message = error["message"].as_str().unwrap_or("the operation failed");
        if let Some(id) = reply.body["operation"]["id"].as_str() {
            extra.push(("operation_id", id.to_owned()));
        }
        return Err(error_status(reply.status, reason, message, None, None, &extra));
    }
    let view: OperationView = serde_json::from_value(reply.body).map_err(|e| status(ApiError::internal(e)))?;
    let mut resp = Response::new(operation(view));
    if reply.replayed {
        resp.metadata_mut().insert("idempotent-replayed", tonic::metadata::MetadataValue::from_static("true"));
    }
    Ok(resp)
}

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0) }
}

fn ts(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(timestamp)
}

/// The kind of an operation as the API names it.
pub fn kind_name(kind: proto::OperationKind) -> Option<&'static str> {
    use proto::OperationKind as K;
    match kind {
        K::Unspecified => None,
        K::Topup => Some("topup"),
        K::Withdrawal => Some("withdrawal"),
        K::Transfer => Some("transfer"),
        K::Reversal => Some("reversal"),
        K::Payment => Some("payment"),
        K::Refund => Some("refund"),
    }
}

fn kind_of(kind: OperationKind) -> proto::OperationKind {
    use proto::OperationKind as K;
    match kind {
        OperationKind::Topup => K::Topup,
        OperationKind::Withdrawal => K::Withdrawal,
        OperationKind::Transfer => K::Transfer,
        OperationKind::Reversal => K::Reversal,
        OperationKind::Payment => K::Payment,
        OperationKind::Refund => K::Refund,
    }
}

/// An enum field of a request: a known, specified value.
///
/// # Errors
/// `INVALID_ARGUMENT` naming `field` for an unknown value or UNSPECIFIED.
pub fn required_enum<E: TryFrom<i32> + PartialEq + Default>(field: &str, raw: i32) -> Result<E, Status> {
    let value = E::try_from(raw).map_err(|_| invalid(field, format!("{field} has no value {raw}")))?;
    if value == E::default() {
        return Err(invalid(field, format!("{field} is required")));
    }
    Ok(value)
}

pub fn operation(o: OperationView) -> proto::Operation {
    let status = match o.status.as_str() {
        "success" => proto::OperationStatus::Success,
        "failed" => proto::OperationStatus::Failed,
        _ => proto::OperationStatus::Unspecified,
    };
    proto::Operation {
        id: o.id.to_string(),
        kind: kind_of(o.kind).into(),
        status: status.into(),
        failure_reason: o.failure_reason.map(|c| c.as_str().to_owned()).unwrap_or_default(),
        amount: o.amount,
        currency: o.currency,
        method: o.method.unwrap_or_default(),
        source_card_id: o.source_card_id.map(i64::from),
        dest_card_id: o.dest_card_id.map(i64::from),
        source_card_masked: o.source_card_masked.unwrap_or_default(),
        dest_card_masked: o.dest_card_masked.unwrap_or_default(),
        reverses_id: o.reverses_id.map(|u| u.to_string()).unwrap_or_default(),
        merchant_id: o.merchant_id.map(i64::from),
        order_ref: o.order_ref.unwrap_or_default(),
        created_at: Some(timestamp(o.created_at)),
        archived_at: ts(o.archived_at),
    }
}

pub fn card(c: CardView) -> proto::Card {
    let card_type = match c.card_type.as_str() {
        "debit" => proto::CardType::Debit,
        "credit" => proto::CardType::Credit,
        _ => proto::CardType::Unspecified,
    };
    proto::Card {
        id: c.id,
        user_id: c.user_id,
        account_id: c.account_id,
        card_type: card_type.into(),
        brand: c.brand,
        card_number: c.card_number,
        last4: c.last4,
        expiry_month: c.expiry_month,
        expiry_year: c.expiry_year,
        credit_limit: c.credit_limit,
        currency: c.currency,
        label: c.label,
        status: c.status.to_string(),
        created_at: Some(timestamp(c.created_at)),
        updated_at: Some(timestamp(c.updated_at)),
        archived_at: ts(c.archived_at),
        payments_locked_at: ts(c.payments_locked_at),
    }
}

pub fn user_message(u: UserView) -> proto::User {
    proto::User {
        id: u.id.get(),
        first_name: u.first_name,
        last_name: u.last_name,
        email: u.email,
        email_verified: u.email_verified,
        roles: u.roles,
        created_at: Some(timestamp(u.created_at)),
        updated_at: Some(timestamp(u.updated_at)),
        archived_at: ts(u.archived_at),
        display_name: u.display_name,
    }
}

pub fn balance(b: BalanceView) -> proto::Balance {
    proto::Balance {
        card_id: b.card_id,
        account_id: b.account_id,
        currency: b.currency,
        balance: b.balance,
        available: b.available,
        credit_limit: b.credit_limit,
        total_withdrawn: b.total_withdrawn,
        last_withdrawal_at: ts(b.last_withdrawal_at),
    }
}

/// A page request as the HTTP query's `limit` and `cursor` (so both transports share the cursors).
pub fn page(p: Option<proto::PageRequest>) -> crate::http::pagination::PageQuery {
    let p = p.unwrap_or_default();
    crate::http::pagination::PageQuery {
        limit: (p.limit != 0).then(|| p.limit.to_string()),
        cursor: (!p.cursor.is_empty()).then_some(p.cursor),
        include_total: None,
    }
}

/// An optional string field: empty means absent.
pub fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

pub fn merchant_message(m: crate::merchants::Merchant) -> proto::Merchant {
    proto::Merchant {
        id: m.id.get(),
        owner_id: m.owner_id.get(),
        account_id: m.account_id.get(),
        business_name: m.business_name,
        contact_email: m.contact_email,
        category: m.category,
        website: m.website,
        description: m.description,
        status: m.status.to_string(),
        status_reason: m.status_reason.unwrap_or_default(),
        created_at: Some(timestamp(m.created_at)),
        updated_at: Some(timestamp(m.updated_at)),
    }
}

pub fn api_key(k: crate::merchants::routes::KeyView) -> proto::ApiKey {
    proto::ApiKey {
        id: k.id.get(),
        merchant_id: k.merchant_id.get(),
        label: k.label,
        key_id: k.key_id,
        created_at: Some(timestamp(k.created_at)),
        expires_at: ts(k.expires_at),
        revoked_at: ts(k.revoked_at),
        last_used_at: ts(k.last_used_at),
    }
}

/// A timestamp field of a request.
///
/// # Errors
/// `INVALID_ARGUMENT` naming `field` when it is no valid instant.
/// A statement query (card or merchant) from an RPC's page and optional window.
///
/// # Errors
/// INVALID_ARGUMENT naming `from` or `to` when a timestamp is out of range.
pub fn statement_query(
    page: Option<proto::PageRequest>,
    from: Option<prost_types::Timestamp>,
    to: Option<prost_types::Timestamp>,
) -> Result<crate::cards::routes::StatementQuery, Status> {
    Ok(crate::cards::routes::StatementQuery {
        page: self::page(page),
        from: from.map(|t| instant("from", t)).transpose()?,
        to: to.map(|t| instant("to", t)).transpose()?,
    })
}

pub fn instant(field: &str, t: prost_types::Timestamp) -> Result<chrono::DateTime<chrono::Utc>, Status> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|n| chrono::DateTime::from_timestamp(t.seconds, n))
        .ok_or_else(|| invalid(field, format!("{field} is not a valid timestamp")))
}

/// A statement page (a card's or a merchant's).
pub fn statement(
    page: crate::http::pagination::Page<crate::cards::routes::StatementLine>,
) -> proto::GetStatementResponse {
    proto::GetStatementResponse {
        items: page
            .items
            .into_iter()
            .map(|l| proto::StatementLine {
                posting_id: l.posting_id,
                operation_id: l.operation_id.to_string(),
                kind: l.kind,
                amount: l.amount,
                balance_after: l.balance_after,
                created_at: Some(timestamp(l.created_at)),
            })
            .collect(),
        next_cursor: page.next_cursor.unwrap_or_default(),
    }
}

/// A bulk restore's answer.
pub fn restored(r: crate::http::RestoredAll) -> proto::RestoreAllResponse {
    proto::RestoreAllResponse { restored: i64::try_from(r.restored).unwrap_or(i64::MAX) }
}
