//! The Ledger service: money movement, operations, reversals, and the watch stream of a card's (or
//! a merchant's) operations as they commit. Thin adapters over the same domain functions as the HTTP routes.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::pagination::encode_cursor;
use crate::payments::Operation;
use crate::storage::schema::operations;
use crate::storage::{self, StorageError};

use super::convert::{self, invalid, opt, status, validated};
use super::proto;
use super::services::{ok, Answer, Api};

/// The kinds the Ledger service serves (payments and refunds are the Payments service's).
fn ledger_kind(raw: i32) -> Result<&'static str, Status> {
    let kind = convert::required_enum::<proto::OperationKind>("kind", raw)?;
    match convert::kind_name(kind) {
        Some(k @ ("topup" | "withdrawal" | "transfer" | "reversal")) => Ok(k),
        _ => Err(invalid("kind", "kind must be TOPUP, WITHDRAWAL, TRANSFER or REVERSAL")),
    }
}

fn operation_id(raw: &str) -> Result<uuid::Uuid, Status> {
    raw.parse().map_err(|_| status(ApiError::not_found("operation")))
}

#[tonic::async_trait]
impl proto::ledger_server::Ledger for Api {
    async fn top_up(&self, req: Request<proto::TopUpRequest>) -> Answer<proto::Operation> {
        let user = convert::user(&req)?;
        let key = convert::idempotency_key(&req)?;
        let m = req.into_inner();
        let body = validated(crate::payments::routes::TopupRequest {
            card_id: m.card_id.into(),
            amount: m.amount,
            method: m.method,
            currency: opt(m.currency),
        })?;
        convert::operation_reply(crate::payments::service::topup(&self.state, &user, key, body).await.map_err(status)?)
    }

    async fn withdraw(&self, req: Request<proto::WithdrawRequest>) -> Answer<proto::Operation> {
        let user = convert::user(&req)?;
        let key = convert::idempotency_key(&req)?;
        let m = req.into_inner();
        let body = validated(crate::payments::routes::WithdrawalRequest {
            card_id: m.card_id.into(),
            amount: m.amount,
            currency: opt(m.currency),
        })?;
        convert::operation_reply(
            crate::payments::service::withdraw(&self.state, &user, key, body).await.map_err(status)?,
        )
    }

    async fn transfer(&self, req: Request<proto::TransferRequest>) -> Answer<proto::Operation> {
        let user = convert::user(&req)?;
        let key = convert::idempotency_key(&req)?;
        let m = req.into_inner();
        let body = validated(crate::payments::routes::TransferRequest {
            from_card_id: m.from_card_id.into(),
            // Proto3 has no absent integer: 0 (never a card id) and "" mean "not given".
            to_card_id: (m.to_card_id != 0).then_some(m.to_card_id.into()),
            to_card_number: (!m.to_card_number.is_empty()).then_some(m.to_card_number),
            amount: m.amount,
            currency: opt(m.currency),
        })?;
        convert::operation_reply(
            crate::payments::service::transfer(&self.state, &user, key, body).await.map_err(status)?,
        )
    }

    async fn get_operation(&self, req: Request<proto::GetOperationRequest>) -> Answer<proto::Operation> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let kind = ledger_kind(m.kind)?;
        let id = operation_id(&m.id)?;
        let view = crate::payments::service::get_operation(&self.state, user, kind, id).await.map_err(status)?;
        ok(convert::operation(view))
    }

    async fn list_operations(
        &self,
        req: Request<proto::ListOperationsRequest>,
    ) -> Answer<proto::ListOperationsResponse> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let kind = ledger_kind(m.kind)?;
        let q = crate::payments::routes::OpListQuery {
            page: convert::page(m.page),
            card_id: m.card_id.map(|c| c.to_string()),
            from_card_id: None,
            to_card_id: None,
            status: None,
            from: None,
            to: None,
            archived: crate::identity::admin::StatusFilter::Active,
            search: None,
        };
        let page = crate::payments::service::list_operations(&self.state, user, kind, q).await.map_err(status)?;
        ok(proto::ListOperationsResponse {
            items: page.items.into_iter().map(convert::operation).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        })
    }

    async fn reverse_operation(&self, req: Request<proto::OperationRef>) -> Answer<proto::Operation> {
        let user = convert::user(&req)?;
        let key = convert::idempotency_key(&req)?;
        let m = req.into_inner();
        let kind = ledger_kind(m.kind)?;
        let id = operation_id(&m.id)?;
        convert::operation_reply(
            crate::payments::service::reverse(&self.state, &user, kind, key, id).await.map_err(status)?,
        )
    }

    async fn archive_operation(&self, req: Request<proto::OperationRef>) -> Answer<proto::Operation> {
        self.set_archived(req.into_inner(), true).await
    }

    async fn restore_operation(&self, req: Request<proto::OperationRef>) -> Answer<proto::Operation> {
        self.set_archived(req.into_inner(), false).await
    }

    type WatchOperationsStream = ReceiverStream<Result<proto::OperationEvent, Status>>;

    async fn watch_operations(
        &self,
        req: Request<proto::WatchOperationsRequest>,
    ) -> Answer<Self::WatchOperationsStream> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let cursor = crate::http::pagination::PageQuery { limit: None, cursor: opt(m.cursor), include_total: None }
            .resolve()
            .map_err(status)?
            .1;
        // The card must be the caller's, the merchant the caller's own (any for an admin, as the
        // merchant statement): answered before the stream opens.
        let target = match (m.card_id, m.merchant_id) {
            (card, None) => {
                crate::cards::service::get(&self.state, &user, card.into()).await.map_err(status)?;
                Target::Card(card)
            }
            (0, Some(merchant)) => {
                crate::merchants::service::get(&self.state, user.clone(), merchant.into()).await.map_err(status)?;
                Target::Merchant(merchant.into())
            }
            (_, Some(_)) => return Err(invalid("merchant_id", "give either card_id or merchant_id, not both")),
        };
        let state = self.state.clone();
        let start = match cursor {
            Some(c) => c,
            None => storage::run(&state.db, |conn| {
                operations::table
                    .select(diesel::dsl::max(operations::seq))
                    .first::<Option<i64>>(conn)
                    .map_err(StorageError::from)
            })
            .await
            .map_err(|e| status(e.into()))?
            .unwrap_or(0),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move { watch(&state, &user, target, start, &tx).await });
        ok(ReceiverStream::new(rx))
    }
}

impl Api {
    /// Archives or restores an operation, as `POST /{kind}s/{id}/archive` and `/restore`.
    async fn set_archived(&self, m: proto::OperationRef, archive: bool) -> Answer<proto::Operation> {
        let kind = ledger_kind(m.kind)?;
        let id = operation_id(&m.id)?;
        ok(convert::operation(crate::payments::archive::set(&self.state, kind, id, archive).await.map_err(status)?))
    }
}

/// How often a watch looks for new operations.
const WATCH_POLL: Duration = Duration::from_millis(200);
/// How long a watch keeps looking behind its newest operation for ones that committed late (a
/// transaction holding a lower `seq` can commit after a higher one was seen).
const WATCH_LATE: chrono::Duration = chrono::Duration::seconds(10);
/// Most operations one poll takes in.
const WATCH_BATCH: i64 = 500;

/// What a watch follows.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// Every operation on the card (as source or destination).
    Card(i64),
    /// The merchant's payments and refunds, as its payment lists show them.
    Merchant(crate::ids::MerchantId),
}

/// Sends the target's operations with `seq > start` as they commit, oldest first, until the
/// client goes away or shutdown begins. Each event's cursor resumes after it.
async fn watch(
    state: &AppState,
    user: &crate::http::auth::AuthUser,
    target: Target,
    start: i64,
    tx: &tokio::sync::mpsc::Sender<Result<proto::OperationEvent, Status>>,
) {
    // Operations at or below `floor` are settled; `sent` holds the newer ones already sent, with
    // their creation time, until they are older than WATCH_LATE.
    let mut floor = start;
    let mut sent: BTreeMap<i64, DateTime<Utc>> = BTreeMap::new();
    loop {
        let from = floor;
        let viewer = user.clone();
        let rows = storage::run(&state.db, move |conn| {
            let (meta, views) = match target {
                Target::Card(card) => {
                    let rows = operations::table
                        .select(Operation::as_select())
                        .filter(operations::source_card_id.eq(card).or(operations::dest_card_id.eq(card)))
                        .filter(operations::seq.gt(from))
                        .order(operations::seq.asc())
                        .limit(WATCH_BATCH)
                        .load::<Operation>(conn)
                        .map_err(StorageError::from)?;
                    let meta: Vec<(i64, DateTime<Utc>)> = rows.iter().map(|o| (o.seq, o.created_at)).collect();
                    // Other users' cards masked, as in every view a non-admin sees.
                    (meta, crate::payments::recipient::present(conn, &viewer, rows)?)
                }
                Target::Merchant(merchant) => {
                    let rows = operations::table
                        .select(Operation::as_select())
                        .filter(operations::kind.eq_any(["payment", "refund"]))
                        .filter(operations::seq.gt(from))
                        .order(operations::seq.asc())
                        .limit(WATCH_BATCH)
                        .into_boxed()
                        .filter(crate::merchants::payments::merchant_sees(merchant))
                        .load::<Operation>(conn)
                        .map_err(StorageError::from)?;
                    let meta: Vec<(i64, DateTime<Utc>)> = rows.iter().map(|o| (o.seq, o.created_at)).collect();
                    // As the merchant's payment lists show them.
                    (meta, rows.into_iter().map(crate::payments::OperationView::from).collect())
                }
            };
            Ok::<_, StorageError>(meta.into_iter().zip(views).collect::<Vec<_>>())
        })
        .await;
        match rows {
            Ok(rows) => {
                for ((seq, at), view) in rows {
                    if sent.contains_key(&seq) {
                        continue;
                    }
                    let event =
                        proto::OperationEvent { operation: Some(convert::operation(view)), cursor: encode_cursor(seq) };
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                    sent.insert(seq, at);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, ?target, "watch could not read operations");
                let _ = tx.send(Err(status(e.into()))).await;
                return;
            }
        }
        let settled = Utc::now() - WATCH_LATE;
        while let Some((&seq, &at)) = sent.first_key_value() {
            if at >= settled {
                break;
            }
            floor = seq;
            sent.remove(&seq);
        }
        tokio::select! {
            () = tx.closed() => return,
            stop = state.shutdown.sleep(WATCH_POLL) => if stop { return },
        }
    }
}
