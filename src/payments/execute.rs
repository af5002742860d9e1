//! Runs one money-moving request through the actor ledger: replay by idempotency key, build the
//! success and failure records (operation row, idempotency row, outbox event), execute, answer.
//! The answer is sent only after the durable commit of one of those records.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use chrono::{DateTime, Datelike, Utc};
use payd_actors::{CardError, ExecError, FailureReason, JournalEntry, OpFailure};
use uuid::Uuid;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::request_id;
use crate::ids::{AccountId, ApiKeyId, CardId, MerchantId, UserId};
use crate::ledger::{NewEvent, NewIdempotency, OpRecord, WithdrawnDelta};
use crate::payments::idempotency::{self, Fingerprint};
use crate::payments::inflight::{self, Answer, Claim};
use crate::payments::{FailureCode, OperationEntry, OperationKind, OperationStatus, OperationView, PaymentError};

/// A money movement, fully resolved to accounts.
#[derive(Debug, Clone)]
pub struct MoneyOp {
    pub kind: OperationKind,
    pub scope: String,
    pub key: String,
    pub request_hash: Fingerprint,
    pub amount: i64,
    pub method: Option<String>,
    pub source_card: Option<CardId>,
    pub dest_card: Option<CardId>,
    pub debit_account: AccountId,
    pub credit_account: AccountId,
    /// Card that must pass the debit check (status, expiry).
    pub debit_card: Option<CardId>,
    /// Card that must pass the credit check (not closed).
    pub credit_card: Option<CardId>,
    pub reverses: Option<Uuid>,
    pub initiated_by: Option<UserId>,
    pub merchant_id: Option<MerchantId>,
    pub api_key_id: Option<ApiKeyId>,
    pub order_ref: Option<String>,
    /// For refunds: (payment, its amount).
    pub refund_of: Option<(Uuid, i64)>,
    /// For reversals: whether the reversed operation is a withdrawal (its card's withdrawal total
    /// goes down when the reversal commits).
    pub reverses_withdrawal: bool,
    /// Merchant payments: every card-data failure answers the uniform `card_declined` (the precise
    /// reason is recorded on the operation only, for the cardholder and admins).
    pub uniform_declines: bool,
    /// Transfers by card number to another user's card: the answer shows the destination masked
    /// like this, never its id (the event keeps the id for the platform's own consumers).
    pub dest_masked: Option<String>,
}

impl MoneyOp {
    /// An operation moving `amount` from `debit_account` to `credit_account` under the idempotency
    /// key `key` of `scope`, with every optional part empty; callers set the cards, method, merchant
    /// or original they involve with struct update syntax (`MoneyOp { dest_card: …, ..MoneyOp::new(…) }`).
    pub fn new(
        kind: OperationKind,
        (scope, key, request_hash): (String, String, Fingerprint),
        amount: i64,
        debit_account: AccountId,
        credit_account: AccountId,
    ) -> Self {
        Self {
            kind,
            scope,
            key,
            request_hash,
            amount,
            method: None,
            source_card: None,
            dest_card: None,
            debit_account,
            credit_account,
            debit_card: None,
            credit_card: None,
            reverses: None,
            initiated_by: None,
            merchant_id: None,
            api_key_id: None,
            order_ref: None,
            refund_of: None,
            reverses_withdrawal: false,
            uniform_declines: false,
            dest_masked: None,
        }
    }

    /// How this operation, once written, moves its card's withdrawal totals.
    fn withdrawn(&self, at: DateTime<Utc>) -> Option<WithdrawnDelta> {
        match self.kind {
            OperationKind::Withdrawal => {
                Some(WithdrawnDelta { account: self.debit_account, amount: self.amount, at: Some(at) })
            }
            OperationKind::Reversal if self.reverses_withdrawal => {
                Some(WithdrawnDelta { account: self.credit_account, amount: -self.amount, at: None })
            }
            _ => None,
        }
    }
}

/// The one answer a merchant gets for any card-data failure.
pub const DECLINED: &str = "card_declined";
const DECLINED_MESSAGE: &str = "the card was declined";

/// The body of a uniform decline: no operation, no detail.
pub fn declined_body(request_id: &str) -> serde_json::Value {
    serde_json::json!({ "error": { "code": DECLINED, "message": DECLINED_MESSAGE, "request_id": request_id } })
}

/// The answer to a money-moving request, as stored with its idempotency key: a status (201, or the
/// status of a recorded failure), the JSON body, and whether it replays an earlier answer. Both
/// transports send it: HTTP as is ([`reply`]), gRPC as an `Operation` or a status with details.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: serde_json::Value,
    pub replayed: bool,
}

/// The HTTP response of a [`Reply`] (`Idempotent-Replayed: true` on replays).
pub fn reply(r: Reply) -> HttpResponse {
    let mut resp = HttpResponse::build(r.status);
    if r.replayed {
        resp.insert_header(("idempotent-replayed", "true"));
    }
    resp.json(r.body)
}

/// A business failure: stable code, message, HTTP status.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: FailureCode,
    pub message: String,
    pub status: StatusCode,
}

impl Failure {
    pub fn new(code: FailureCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), status: StatusCode::PAYMENT_REQUIRED }
    }
}

impl From<&FailureReason> for Failure {
    fn from(reason: &FailureReason) -> Self {
        let message = match reason {
            FailureReason::InsufficientFunds => "insufficient funds on the source account".to_owned(),
            FailureReason::CardFrozen => "the card is frozen and cannot be debited".to_owned(),
            FailureReason::CardClosed => "the card is closed".to_owned(),
            FailureReason::CardExpired => "the card has expired".to_owned(),
            FailureReason::SameAccount => "source and destination must differ".to_owned(),
            FailureReason::RefundExceeded => "the refund exceeds what is left of the payment".to_owned(),
            FailureReason::Rejected(r) => {
                // The store's reason stays in the logs; the client gets the stable code only.
                tracing::warn!(reason = %r, "ledger integrity rule refused an operation");
                "the ledger refused the operation".to_owned()
            }
        };
        let status = match reason {
            FailureReason::SameAccount => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::PAYMENT_REQUIRED,
        };
        Self { code: FailureCode::from(reason), message, status }
    }
}

/// The records of one request, prepared before execution.
#[derive(Clone)]
struct Prepared {
    op: MoneyOp,
    row: OperationEntry,
    view: OperationView,
    request_id: String,
}

impl Prepared {
    fn new(state: &AppState, op: MoneyOp, now: DateTime<Utc>) -> Self {
        let row = OperationEntry {
            id: Uuid::now_v7(),
            kind: op.kind,
            status: OperationStatus::Success,
            failure_reason: None,
            amount: op.amount,
            currency: state.settings.money.currency.clone(),
            method: op.method.clone(),
            source_card_id: op.source_card,
            dest_card_id: op.dest_card,
            debit_account_id: op.debit_account,
            credit_account_id: op.credit_account,
            reverses_id: op.reverses,
            initiated_by: op.initiated_by,
            created_at: now,
            merchant_id: op.merchant_id,
            api_key_id: op.api_key_id,
            order_ref: op.order_ref.clone(),
        };
        let view = OperationView::new(row.clone(), None);
        Self { op, row, view, request_id: request_id::current().unwrap_or_default() }
    }

    fn event(&self, view: &OperationView) -> NewEvent {
        let key = match (self.op.merchant_id, self.op.source_card.or(self.op.dest_card)) {
            (Some(m), _) => format!("merchant:{m}"),
            (None, Some(c)) => format!("card:{c}"),
            (None, None) => "platform".to_owned(),
        };
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: format!(
                "{}.{}",
                self.op.kind,
                if view.status == OperationStatus::Success { "completed" } else { "failed" }
            ),
            schema_version: 1,
            aggregate_type: if self.op.merchant_id.is_some() { "merchant".into() } else { "card".into() },
            aggregate_key: key,
            payload: serde_json::json!({ "operation": view, "initiated_by": self.op.initiated_by }),
        }
    }

    fn idempotency(&self, status: StatusCode, body: serde_json::Value) -> NewIdempotency {
        NewIdempotency {
            scope: self.op.scope.clone(),
            key: self.op.key.clone(),
            request_hash: self.op.request_hash.current.clone(),
            operation_id: Some(self.row.id),
            response_status: i16::try_from(status.as_u16()).unwrap_or(500),
            response_body: body,
        }
    }

    /// The view as the caller sees it (a recipient paid by number appears masked).
    fn client_view(&self, view: OperationView) -> OperationView {
        match &self.op.dest_masked {
            Some(m) => OperationView { dest_card_id: None, dest_card_masked: Some(m.clone()), ..view },
            None => view,
        }
    }

    fn success_body(&self) -> serde_json::Value {
        serde_json::to_value(self.client_view(self.view.clone())).unwrap_or_default()
    }

    fn success(&self) -> OpRecord {
        OpRecord {
            operation: self.row.clone(),
            idempotency: Some(self.idempotency(StatusCode::CREATED, self.success_body())),
            events: vec![self.event(&self.view)],
            refund_of: self.op.refund_of,
            withdrawn: self.op.withdrawn(self.row.created_at),
        }
    }

    fn failed_view(&self, f: &Failure) -> OperationView {
        OperationView { status: OperationStatus::Failed, failure_reason: Some(f.code), ..self.view.clone() }
    }

    fn failure_body(&self, f: &Failure) -> serde_json::Value {
        if self.op.uniform_declines && f.code.is_card_decline() {
            return declined_body(&self.request_id);
        }
        serde_json::json!({
            "error": { "code": f.code, "message": f.message, "request_id": self.request_id },
            "operation": self.client_view(self.failed_view(f)),
        })
    }

    fn failure(&self, f: &Failure) -> OpRecord {
        let view = self.failed_view(f);
        OpRecord {
            operation: OperationEntry {
                status: OperationStatus::Failed,
                failure_reason: Some(f.code),
                ..self.row.clone()
            },
            idempotency: Some(self.idempotency(f.status, self.failure_body(f))),
            events: vec![self.event(&view)],
            refund_of: None,
            withdrawn: None,
        }
    }
}

/// Executes `op` (or replays its stored answer).
///
/// There is no lookup of the key before executing: every outcome that answers is committed together
/// with its idempotency row, so a repeated key loses at the unique index and its stored answer is
/// replayed (or refused with 409 when the request differs). New keys pay no extra query. A repeat
/// that arrives while the first request still runs on this instance waits for its answer instead.
///
/// # Errors
/// `ApiError` for conflicts, unknown cards, back-pressure (503) and unknown outcomes (503, retry with the same key).
pub async fn run(state: &AppState, op: MoneyOp) -> Result<Reply, ApiError> {
    let op = &op;
    once(state, op, |leader| async move {
        let answer = execute(state, op).await;
        finish(leader, answer)
    })
    .await
}

/// Records a failed attempt decided before the ledger path (e.g. a wrong CVV), with no postings.
///
/// # Errors
/// As [`run`].
pub async fn record_failed(state: &AppState, op: MoneyOp, failure: Failure) -> Result<Reply, ApiError> {
    let (op, failure) = (&op, &failure);
    once(state, op, |leader| async move {
        let answer = record(state, op, failure).await;
        finish(leader, answer)
    })
    .await
}

/// Runs `body` unless the same key is already in flight here: then waits for that request's answer.
/// A different request under a running key waits for it to end, then runs (the database answers 409
/// if the key belongs to another request).
async fn once<F, Fut>(state: &AppState, op: &MoneyOp, body: F) -> Result<Reply, ApiError>
where
    F: FnOnce(inflight::Leader) -> Fut,
    Fut: std::future::Future<Output = Result<Reply, ApiError>>,
{
    loop {
        match state.ledger.inflight.claim(&op.scope, &op.key, &op.request_hash.current) {
            Claim::Leader(leader) => return body(leader).await,
            // Another body runs under this key: once it has ended, the database decides (409 when the
            // key's stored request is not this one, a replay when it is).
            Claim::Wait(rx) => {
                let _ = inflight::wait(rx).await;
            }
            Claim::Follower(rx) => match inflight::wait(rx).await {
                Some(Answer::Json(status, body, _)) => {
                    crate::metrics::count(op.kind.as_str(), "inflight_replay");
                    return Ok(Reply { status, body, replayed: true });
                }
                Some(Answer::Error(e)) => return Err(e),
                // The first request went away without an answer: try again (as leader, or behind
                // the next one); the database decides between concurrent attempts.
                None => {}
            },
        }
    }
}

fn finish(leader: inflight::Leader, answer: Result<Answer, ApiError>) -> Result<Reply, ApiError> {
    let answer = answer.unwrap_or_else(Answer::Error);
    leader.finish(&answer);
    match answer {
        Answer::Json(status, body, replayed) => Ok(Reply { status, body, replayed }),
        Answer::Error(e) => Err(e),
    }
}

async fn execute(state: &AppState, op: &MoneyOp) -> Result<Answer, ApiError> {
    let now = Utc::now();
    let prepared = Prepared::new(state, op.clone(), now);
    let on_failure = {
        let p = prepared.clone();
        move |reason: FailureReason| p.failure(&Failure::from(&reason))
    };
    let success = prepared.success();
    let operation = payd_actors::Operation {
        debit_card: op.debit_card.map(CardId::get),
        credit_card: op.credit_card.map(CardId::get),
        debit_account: op.debit_account.get(),
        credit_account: op.credit_account.get(),
        amount: op.amount,
        today: (now.year(), now.month()),
        on_success: Box::new(move || success.clone()),
        on_failure: Box::new(on_failure),
        span: tracing::Span::current(),
    };
    match state.ledger.ledger.execute(operation).await {
        Ok(_) => {
            crate::metrics::count(op.kind.as_str(), "success");
            Ok(Answer::Json(StatusCode::CREATED, prepared.success_body(), false))
        }
        Err(OpFailure::Recorded { reason }) => {
            recorded_failure(state, op);
            let f = Failure::from(&reason);
            crate::metrics::count(op.kind.as_str(), reason.code());
            Ok(Answer::Json(f.status, prepared.failure_body(&f), false))
        }
        Err(OpFailure::Duplicate | OpFailure::Conflict(_)) => duplicate(state, op).await,
        Err(OpFailure::NotRecorded(e)) => Err(exec_error(e, op).into()),
        Err(OpFailure::Unrecorded { error, .. }) => Err(exec_error(error, op).into()),
        Err(OpFailure::Unknown(m)) => {
            tracing::warn!(reason = %m, "money operation outcome unknown");
            Err(PaymentError::OutcomeUnknown.into())
        }
    }
}

async fn record(state: &AppState, op: &MoneyOp, failure: &Failure) -> Result<Answer, ApiError> {
    let prepared = Prepared::new(state, op.clone(), Utc::now());
    let entry = JournalEntry { postings: Vec::new(), record: prepared.failure(failure) };
    match state.ledger.ledger.writer().commit(entry).await {
        Ok(_) => {
            recorded_failure(state, op);
            crate::metrics::count(op.kind.as_str(), "failed");
            Ok(Answer::Json(failure.status, prepared.failure_body(failure), false))
        }
        Err(payd_actors::CommitError::Duplicate | payd_actors::CommitError::Conflict { .. }) => {
            duplicate(state, op).await
        }
        Err(e) => Err(exec_error(ExecError::Commit(e), op).into()),
    }
}

/// A failed attempt of `op` was committed: its accounts' versions did not move, so lists read before
/// it must not be served here any more (`payments::lists`); other instances learn it from the trigger.
fn recorded_failure(state: &AppState, op: &MoneyOp) {
    state.ledger.changed_here(&[op.debit_account.get(), op.credit_account.get()]);
}

async fn duplicate(state: &AppState, op: &MoneyOp) -> Result<Answer, ApiError> {
    // A concurrent request with the same key won, or a uniqueness rule of the operation itself refused it.
    match idempotency::lookup(&state.db, op.scope.clone(), op.key.clone()).await? {
        Some(stored) if op.request_hash.matches(&stored.request_hash) => {
            crate::metrics::count(op.kind.as_str(), "replay");
            let status = StatusCode::from_u16(u16::try_from(stored.status).unwrap_or(200)).unwrap_or(StatusCode::OK);
            Ok(Answer::Json(status, stored.body, true))
        }
        Some(_) => Err(PaymentError::IdempotencyConflict.into()),
        None if op.kind == OperationKind::Reversal => {
            Err(PaymentError::NotReversible("the operation was already reversed".into()).into())
        }
        None if op.kind == OperationKind::Payment => Err(PaymentError::OrderRefTaken.into()),
        None => Err(PaymentError::OutcomeUnknown.into()),
    }
}

fn exec_error(e: ExecError, op: &MoneyOp) -> PaymentError {
    match e {
        ExecError::Card(CardError::NotFound) => {
            PaymentError::CardNotFound(op.source_card.or(op.dest_card).unwrap_or(CardId::new(0)))
        }
        ExecError::Card(CardError::Busy)
        | ExecError::Account(payd_actors::AccountError::Busy)
        | ExecError::Commit(payd_actors::CommitError::Busy) => PaymentError::Busy,
        other => PaymentError::Unavailable(other.to_string()),
    }
}
