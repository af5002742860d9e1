//! Runs one money-moving request through the actor ledger: replay by idempotency key, build the
//! success and failure records (operation row, idempotency row, outbox event), execute, answer.
//! The answer is sent only after the durable commit of one of those records.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use chrono::{Datelike, Utc};
use payd_actors::{CardError, ExecError, FailureReason, OpFailure};
use uuid::Uuid;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::request_id;
use crate::ledger::{NewEvent, NewIdempotency, NewOperation, OpRecord};
use crate::payments::idempotency;
use crate::payments::{OperationView, PaymentError};

/// A money movement, fully resolved to accounts.
#[derive(Debug, Clone)]
pub struct MoneyOp {
    pub kind: &'static str,
    pub scope: String,
    pub key: String,
    pub request_hash: String,
    pub amount: i64,
    pub method: Option<String>,
    pub source_card: Option<i64>,
    pub dest_card: Option<i64>,
    pub debit_account: i64,
    pub credit_account: i64,
    /// Card that must pass the debit check (status, expiry).
    pub debit_card: Option<i64>,
    /// Card that must pass the credit check (not closed).
    pub credit_card: Option<i64>,
    pub reverses: Option<Uuid>,
    pub initiated_by: i64,
}

fn message(reason: &FailureReason) -> String {
    match reason {
        FailureReason::InsufficientFunds => "insufficient funds on the source card".into(),
        FailureReason::CardFrozen => "the card is frozen and cannot be debited".into(),
        FailureReason::CardClosed => "the card is closed".into(),
        FailureReason::CardExpired => "the card has expired".into(),
        FailureReason::SameAccount => "source and destination must differ".into(),
        FailureReason::Rejected(r) => format!("the ledger refused the operation: {r}"),
    }
}

fn status_for(reason: &FailureReason) -> StatusCode {
    match reason {
        FailureReason::SameAccount => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::PAYMENT_REQUIRED,
    }
}

fn failure_body(view: &OperationView, reason: &FailureReason, request_id: &str) -> serde_json::Value {
    serde_json::json!({
        "error": { "code": reason.code(), "message": message(reason), "request_id": request_id },
        "operation": view,
    })
}

fn event(op: &MoneyOp, view: &OperationView) -> NewEvent {
    let card = op.source_card.or(op.dest_card).unwrap_or_default();
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: format!("{}.{}", op.kind, if view.status == "success" { "completed" } else { "failed" }),
        schema_version: 1,
        aggregate_type: "card".into(),
        aggregate_key: format!("card:{card}"),
        payload: serde_json::json!({ "operation": view, "initiated_by": op.initiated_by }),
    }
}

/// Executes `op` (or replays its stored answer).
///
/// # Errors
/// `ApiError` for conflicts, unknown cards, back-pressure (503) and unknown outcomes (503, retry with the same key).
pub async fn run(state: &AppState, op: MoneyOp) -> Result<HttpResponse, ApiError> {
    if let Some(stored) = idempotency::lookup(&state.db, op.scope.clone(), op.key.clone()).await? {
        return Ok(stored.replay(&op.request_hash)?);
    }
    let now = Utc::now();
    let request_id = request_id::current().unwrap_or_default();
    let row = NewOperation {
        id: Uuid::now_v7(),
        kind: op.kind.to_owned(),
        status: "success".into(),
        failure_reason: None,
        amount: op.amount,
        currency: state.settings.money.currency.clone(),
        method: op.method.clone(),
        source_card_id: op.source_card,
        dest_card_id: op.dest_card,
        debit_account_id: op.debit_account,
        credit_account_id: op.credit_account,
        reverses_id: op.reverses,
        initiated_by: Some(op.initiated_by),
        created_at: now,
        merchant_id: None,
        api_key_id: None,
        order_ref: None,
    };
    let view = OperationView {
        id: row.id,
        kind: row.kind.clone(),
        status: row.status.clone(),
        failure_reason: None,
        amount: row.amount,
        currency: row.currency.clone(),
        method: row.method.clone(),
        source_card_id: row.source_card_id,
        dest_card_id: row.dest_card_id,
        reverses_id: row.reverses_id,
        created_at: now,
        archived_at: None,
    };
    let idem = |status: StatusCode, body: serde_json::Value, id: Uuid| NewIdempotency {
        scope: op.scope.clone(),
        key: op.key.clone(),
        request_hash: op.request_hash.clone(),
        operation_id: Some(id),
        response_status: i16::try_from(status.as_u16()).unwrap_or(500),
        response_body: body,
    };
    let success_body = serde_json::to_value(&view).map_err(ApiError::internal)?;
    let success = OpRecord {
        operation: row.clone(),
        idempotency: Some(idem(StatusCode::CREATED, success_body.clone(), row.id)),
        events: vec![event(&op, &view)],
    };
    let failed_view = |reason: &FailureReason| OperationView {
        status: "failed".into(),
        failure_reason: Some(reason.code().to_owned()),
        ..view.clone()
    };
    let on_failure = {
        let (op, row, request_id) = (op.clone(), row.clone(), request_id.clone());
        let idem_parts = (op.scope.clone(), op.key.clone(), op.request_hash.clone());
        let view = view.clone();
        move |reason: FailureReason| {
            let fv = OperationView { status: "failed".into(), failure_reason: Some(reason.code().to_owned()), ..view };
            OpRecord {
                operation: NewOperation {
                    status: "failed".into(),
                    failure_reason: Some(reason.code().to_owned()),
                    ..row.clone()
                },
                idempotency: Some(NewIdempotency {
                    scope: idem_parts.0,
                    key: idem_parts.1,
                    request_hash: idem_parts.2,
                    operation_id: Some(row.id),
                    response_status: i16::try_from(status_for(&reason).as_u16()).unwrap_or(402),
                    response_body: failure_body(&fv, &reason, &request_id),
                }),
                events: vec![event(&op, &fv)],
            }
        }
    };
    let today = (now.year(), now.month());
    let operation = payd_actors::Operation {
        debit_card: op.debit_card,
        credit_card: op.credit_card,
        debit_account: op.debit_account,
        credit_account: op.credit_account,
        amount: op.amount,
        today,
        on_success: Box::new(move || success),
        on_failure: Box::new(on_failure),
        span: tracing::Span::current(),
    };
    match state.ledger.ledger.execute(operation).await {
        Ok(_) => {
            crate::metrics::count(op.kind, "success");
            Ok(HttpResponse::Created().json(success_body))
        }
        Err(OpFailure::Recorded { reason }) => {
            crate::metrics::count(op.kind, reason.code());
            let body = failure_body(&failed_view(&reason), &reason, &request_id);
            Ok(HttpResponse::build(status_for(&reason)).json(body))
        }
        Err(OpFailure::Duplicate) => {
            // A concurrent request with the same key won (or the operation was already reversed).
            match idempotency::lookup(&state.db, op.scope.clone(), op.key.clone()).await? {
                Some(stored) => Ok(stored.replay(&op.request_hash)?),
                None if op.reverses.is_some() => {
                    Err(PaymentError::NotReversible("the operation was already reversed".into()).into())
                }
                None => Err(PaymentError::OutcomeUnknown.into()),
            }
        }
        Err(OpFailure::NotRecorded(e)) => Err(exec_error(e, &op).into()),
        Err(OpFailure::Unrecorded { error, .. }) => Err(exec_error(error, &op).into()),
        Err(OpFailure::Unknown(m)) => {
            tracing::warn!(reason = %m, "money operation outcome unknown");
            Err(PaymentError::OutcomeUnknown.into())
        }
    }
}

fn exec_error(e: ExecError, op: &MoneyOp) -> PaymentError {
    match e {
        ExecError::Card(CardError::NotFound) => {
            PaymentError::CardNotFound(op.source_card.or(op.dest_card).unwrap_or_default())
        }
        ExecError::Card(CardError::Busy)
        | ExecError::Account(payd_actors::AccountError::Busy)
        | ExecError::Commit(payd_actors::CommitError::Busy) => PaymentError::Busy,
        other => PaymentError::Unavailable(other.to_string()),
    }
}
