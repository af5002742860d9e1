//! The gRPC Merchants, Payments and Admin services: thin adapters over `merchants::service`,
//! `merchants::payments` and `events::routes`, the functions the HTTP routes call.

use tonic::{Request, Status};

use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::payments::OperationView;

use super::convert::{self, invalid, opt, status, validated};
use super::proto;
use super::services::{ok, Answer, Api};

fn payment_kind(raw: i32) -> Result<Option<String>, Status> {
    let kind = proto::OperationKind::try_from(raw).map_err(|_| invalid("kind", format!("kind has no value {raw}")))?;
    match convert::kind_name(kind) {
        None => Ok(None),
        Some(k @ ("payment" | "refund")) => Ok(Some(k.to_owned())),
        Some(_) => Err(invalid("kind", "kind must be PAYMENT or REFUND")),
    }
}

fn payments_page(page: crate::http::pagination::Page<OperationView>) -> proto::ListPaymentsResponse {
    proto::ListPaymentsResponse {
        items: page.items.into_iter().map(convert::operation).collect(),
        next_cursor: page.next_cursor.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl proto::payments_server::Payments for Api {
    async fn pay(&self, req: Request<proto::PayRequest>) -> Answer<proto::Operation> {
        let key = convert::merchant(&req).ok_or_else(|| status(crate::merchants::MerchantError::MissingKey.into()))?;
        let idem = convert::idempotency_key(&req)?;
        let m = req.into_inner();
        let body = validated(crate::merchants::payments::PaymentRequest {
            card_number: m.card_number,
            expiry_month: m.expiry_month,
            expiry_year: m.expiry_year,
            cvv: m.cvv,
            amount: m.amount,
            method: m.method,
            order_ref: m.order_ref,
            currency: opt(m.currency),
        })?;
        convert::operation_reply(
            crate::merchants::payments::charge(&self.state, &key, idem, body).await.map_err(status)?,
        )
    }

    async fn refund(&self, req: Request<proto::RefundRequest>) -> Answer<proto::Operation> {
        let key = convert::merchant(&req);
        let admin: Option<AuthUser> = req.extensions().get::<AuthUser>().cloned();
        let idem = convert::idempotency_key(&req)?;
        let m = req.into_inner();
        let id = m.payment_id.parse().map_err(|_| status(ApiError::not_found("payment")))?;
        let body = validated(crate::merchants::payments::RefundRequest { amount: m.amount, reason: opt(m.reason) })?;
        convert::operation_reply(
            crate::merchants::payments::refund_payment(&self.state, key, admin, idem, id, body)
                .await
                .map_err(status)?,
        )
    }

    async fn get_payment(&self, req: Request<proto::GetPaymentRequest>) -> Answer<proto::Operation> {
        let user = convert::user(&req)?;
        let id = req.into_inner().id.parse().map_err(|_| status(ApiError::not_found("payment")))?;
        let view = crate::merchants::payments::payment(&self.state, user, id).await.map_err(status)?;
        ok(convert::operation(view))
    }

    async fn list_payments(&self, req: Request<proto::ListPaymentsRequest>) -> Answer<proto::ListPaymentsResponse> {
        use crate::merchants::payments::{list_for_owner, list_payments, PaymentListQuery, Viewer};
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let q = PaymentListQuery {
            page: convert::page(m.page),
            kind: payment_kind(m.kind)?,
            ..PaymentListQuery::default()
        };
        let page = match m.merchant_id {
            Some(id) => list_for_owner(&self.state, user, id.into(), q).await,
            None => {
                let viewer = if user.is_admin() { Viewer::Admin } else { Viewer::Customer(user.user_id) };
                list_payments(&self.state, viewer, q).await
            }
        };
        ok(payments_page(page.map_err(status)?))
    }

    async fn list_merchant_payments(
        &self,
        req: Request<proto::ListMerchantPaymentsRequest>,
    ) -> Answer<proto::ListPaymentsResponse> {
        use crate::merchants::payments::{list_payments, PaymentListQuery, Viewer};
        let key = convert::merchant(&req).ok_or_else(|| status(crate::merchants::MerchantError::MissingKey.into()))?;
        let m = req.into_inner();
        let q = PaymentListQuery {
            page: convert::page(m.page),
            kind: payment_kind(m.kind)?,
            ..PaymentListQuery::default()
        };
        let page = list_payments(&self.state, Viewer::Merchant(key.merchant_id), q).await.map_err(status)?;
        ok(payments_page(page))
    }

    async fn list_refunds(&self, req: Request<proto::ListRefundsRequest>) -> Answer<proto::ListRefundsResponse> {
        let user = convert::user(&req)?;
        let id = payment_id(&req.into_inner().payment_id)?;
        let rows = crate::merchants::payments::refunds(&self.state, user, id).await.map_err(status)?;
        ok(proto::ListRefundsResponse { items: rows.into_iter().map(convert::operation).collect() })
    }

    async fn archive_payment(&self, req: Request<proto::ArchivePaymentRequest>) -> Answer<proto::Operation> {
        let id = payment_id(&req.into_inner().id)?;
        let view = crate::merchants::payments::set_payment_archived(&self.state, id, true).await.map_err(status)?;
        ok(convert::operation(view))
    }

    async fn restore_payment(&self, req: Request<proto::RestorePaymentRequest>) -> Answer<proto::Operation> {
        let id = payment_id(&req.into_inner().id)?;
        let view = crate::merchants::payments::set_payment_archived(&self.state, id, false).await.map_err(status)?;
        ok(convert::operation(view))
    }
}

#[tonic::async_trait]
impl proto::merchants_server::Merchants for Api {
    async fn apply_merchant(&self, req: Request<proto::ApplyMerchantRequest>) -> Answer<proto::Merchant> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let body = validated(crate::merchants::routes::ApplyRequest {
            business_name: m.business_name,
            contact_email: m.contact_email,
            category: m.category,
            website: opt(m.website),
            description: opt(m.description),
        })?;
        ok(convert::merchant_message(crate::merchants::service::apply(&self.state, user, body).await.map_err(status)?))
    }

    async fn get_merchant(&self, req: Request<proto::GetMerchantRequest>) -> Answer<proto::Merchant> {
        let user = convert::user(&req)?;
        let id = req.into_inner().id;
        ok(convert::merchant_message(
            crate::merchants::service::get(&self.state, user, id.into()).await.map_err(status)?,
        ))
    }

    async fn create_api_key(&self, req: Request<proto::CreateApiKeyRequest>) -> Answer<proto::CreatedApiKey> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let body = validated(crate::merchants::routes::KeyRequest { label: opt(m.label) })?;
        let created = crate::merchants::service::create_key(&self.state, user, m.merchant_id.into(), body)
            .await
            .map_err(status)?;
        ok(proto::CreatedApiKey { key: Some(convert::api_key(created.key)), api_key: created.api_key })
    }

    async fn list_api_keys(&self, req: Request<proto::ListApiKeysRequest>) -> Answer<proto::ListApiKeysResponse> {
        let user = convert::user(&req)?;
        let id = req.into_inner().merchant_id;
        let keys = crate::merchants::service::list_keys(&self.state, user, id.into()).await.map_err(status)?;
        ok(proto::ListApiKeysResponse { items: keys.into_iter().map(convert::api_key).collect() })
    }

    async fn revoke_api_key(&self, req: Request<proto::RevokeApiKeyRequest>) -> Answer<proto::ApiKey> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let view = crate::merchants::service::revoke_key(&self.state, user, m.merchant_id.into(), m.id.into())
            .await
            .map_err(status)?;
        ok(convert::api_key(view))
    }

    async fn list_merchants(&self, req: Request<proto::ListMerchantsRequest>) -> Answer<proto::ListMerchantsResponse> {
        use crate::identity::admin::StatusFilter;
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let archived = match m.archived.as_str() {
            "" | "active" => StatusFilter::Active,
            "archived" => StatusFilter::Archived,
            "all" => StatusFilter::All,
            _ => return Err(invalid("archived", "archived must be active, archived or all")),
        };
        let mut page = convert::page(m.page);
        page.include_total = m.include_total.then(|| "true".to_owned());
        let q = crate::merchants::routes::MerchantListQuery {
            page,
            status: opt(m.status),
            search: opt(m.search),
            archived,
        };
        let page = crate::merchants::service::list(&self.state, user, q).await.map_err(status)?;
        ok(proto::ListMerchantsResponse {
            items: page.items.into_iter().map(convert::merchant_message).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
            total: page.total,
        })
    }

    async fn update_merchant(&self, req: Request<proto::UpdateMerchantRequest>) -> Answer<proto::Merchant> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let body = validated(crate::merchants::routes::ProfileRequest {
            business_name: m.business_name,
            contact_email: m.contact_email,
            category: m.category,
            website: m.website,
            description: m.description,
        })?;
        let merchant = crate::merchants::service::update(&self.state, user, m.id.into(), body).await.map_err(status)?;
        ok(convert::merchant_message(merchant))
    }

    async fn decide_merchant(&self, req: Request<proto::DecideMerchantRequest>) -> Answer<proto::Merchant> {
        use crate::merchants::routes::Decision;
        use proto::MerchantDecision as D;
        let admin = convert::user(&req)?;
        let m = req.into_inner();
        let decision = match convert::required_enum::<D>("decision", m.decision)? {
            D::Approve => Decision::Approve,
            D::Reject => Decision::Reject,
            D::Suspend => Decision::Suspend,
            D::Reactivate => Decision::Reactivate,
            D::Close => Decision::Close,
            D::Archive => Decision::Archive,
            D::Restore => Decision::Restore,
            D::Unspecified => return Err(invalid("decision", "decision is required")),
        };
        let body = validated(crate::merchants::routes::DecisionRequest { reason: opt(m.reason) })?;
        let merchant = crate::merchants::service::decide(&self.state, admin, m.id.into(), decision, body.reason)
            .await
            .map_err(status)?;
        ok(convert::merchant_message(merchant))
    }

    async fn get_merchant_balance(
        &self,
        req: Request<proto::GetMerchantBalanceRequest>,
    ) -> Answer<proto::MerchantBalance> {
        let user = convert::user(&req)?;
        let id = req.into_inner().id;
        let b = crate::merchants::service::balance(&self.state, user, id.into()).await.map_err(status)?;
        ok(proto::MerchantBalance {
            merchant_id: b.merchant_id.get(),
            account_id: b.account_id.get(),
            currency: b.currency,
            balance: b.balance,
        })
    }

    async fn rotate_api_key(&self, req: Request<proto::RotateApiKeyRequest>) -> Answer<proto::CreatedApiKey> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let created = crate::merchants::service::rotate_key(&self.state, user, m.merchant_id.into(), m.id.into())
            .await
            .map_err(status)?;
        ok(proto::CreatedApiKey { key: Some(convert::api_key(created.key)), api_key: created.api_key })
    }

    async fn upload_document(
        &self,
        req: Request<tonic::Streaming<proto::UploadDocumentRequest>>,
    ) -> Answer<proto::Document> {
        use proto::upload_document_request::Part as P;
        let user = convert::user(&req)?;
        let mut stream = req.into_inner();
        let header = match next_part(&mut stream, |m: proto::UploadDocumentRequest| m.part).await? {
            Some(P::Header(h)) => h,
            Some(P::Chunk(_)) | None => return Err(header_first()),
        };
        let id = header.merchant_id.into();
        crate::merchants::documents::check_visible(&self.state, user, id).await.map_err(status)?;
        let max = self.state.settings.merchants.max_document_bytes;
        let bytes = receive_chunks(&mut stream, max, |m: proto::UploadDocumentRequest| match m.part {
            Some(P::Chunk(c)) => Ok(c),
            Some(P::Header(_)) => Err(header_twice()),
            None => Err(invalid("part", "a message after the header must carry a chunk")),
        })
        .await?;
        let file = received(header.file_name, header.content_type, bytes);
        let stored = crate::merchants::routes::store_upload(&self.state, id, opt(header.doc_type), Some(file), None)
            .await
            .map_err(status)?;
        let doc = crate::merchants::documents::upload_document(&self.state, id, stored).await.map_err(status)?;
        ok(document(doc))
    }

    async fn list_documents(&self, req: Request<proto::ListDocumentsRequest>) -> Answer<proto::ListDocumentsResponse> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let docs = crate::merchants::documents::list_documents(&self.state, user, m.merchant_id.into(), opt(m.search))
            .await
            .map_err(status)?;
        ok(proto::ListDocumentsResponse { items: docs.into_iter().map(document).collect() })
    }

    type GetDocumentContentStream = tokio_stream::Iter<std::vec::IntoIter<Result<proto::DocumentContentChunk, Status>>>;

    async fn get_document_content(
        &self,
        req: Request<proto::GetDocumentContentRequest>,
    ) -> Answer<Self::GetDocumentContentStream> {
        use proto::document_content_chunk::Part as P;
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let c = crate::merchants::documents::document_content(
            &self.state,
            user,
            m.merchant_id.into(),
            m.document_id.into(),
        )
        .await
        .map_err(status)?;
        let header = proto::DocumentContentHeader {
            content_type: c.content_type,
            file_name: c.file_name,
            size_bytes: i64::try_from(c.bytes.len()).unwrap_or(i64::MAX),
        };
        let mut parts = vec![Ok(proto::DocumentContentChunk { part: Some(P::Header(header)) })];
        parts.extend(
            c.bytes.chunks(CHUNK_BYTES).map(|b| Ok(proto::DocumentContentChunk { part: Some(P::Chunk(b.to_vec())) })),
        );
        ok(tokio_stream::iter(parts))
    }

    async fn list_document_versions(
        &self,
        req: Request<proto::ListDocumentVersionsRequest>,
    ) -> Answer<proto::ListDocumentsResponse> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let docs = crate::merchants::documents::document_versions(
            &self.state,
            user,
            m.merchant_id.into(),
            m.document_id.into(),
        )
        .await
        .map_err(status)?;
        ok(proto::ListDocumentsResponse { items: docs.into_iter().map(document).collect() })
    }

    async fn replace_document(
        &self,
        req: Request<tonic::Streaming<proto::ReplaceDocumentRequest>>,
    ) -> Answer<proto::Document> {
        use proto::replace_document_request::Part as P;
        let user = convert::user(&req)?;
        let mut stream = req.into_inner();
        let header = match next_part(&mut stream, |m: proto::ReplaceDocumentRequest| m.part).await? {
            Some(P::Header(h)) => h,
            Some(P::Chunk(_)) | None => return Err(header_first()),
        };
        let (id, doc_id) = (header.merchant_id.into(), header.document_id.into());
        let old_type = crate::merchants::documents::replaceable(&self.state, user, id, doc_id).await.map_err(status)?;
        let max = self.state.settings.merchants.max_document_bytes;
        let bytes = receive_chunks(&mut stream, max, |m: proto::ReplaceDocumentRequest| match m.part {
            Some(P::Chunk(c)) => Ok(c),
            Some(P::Header(_)) => Err(header_twice()),
            None => Err(invalid("part", "a message after the header must carry a chunk")),
        })
        .await?;
        let file = received(header.file_name, header.content_type, bytes);
        let stored =
            crate::merchants::routes::store_upload(&self.state, id, opt(header.doc_type), Some(file), Some(&old_type))
                .await
                .map_err(status)?;
        let doc =
            crate::merchants::documents::replace_document(&self.state, id, doc_id, stored).await.map_err(status)?;
        ok(document(doc))
    }

    async fn review_document(&self, req: Request<proto::ReviewDocumentRequest>) -> Answer<proto::Document> {
        use proto::DocumentDecision as D;
        let admin = convert::user(&req)?;
        let m = req.into_inner();
        let decision = match convert::required_enum::<D>("decision", m.decision)? {
            D::Approve => "approve",
            D::Reject => "reject",
            D::Unspecified => return Err(invalid("decision", "decision is required")),
        };
        let body =
            validated(crate::merchants::routes::ReviewRequest { decision: decision.to_owned(), note: opt(m.note) })?;
        let doc = crate::merchants::documents::review_document(
            &self.state,
            admin,
            m.merchant_id.into(),
            m.document_id.into(),
            body,
        )
        .await
        .map_err(status)?;
        ok(document(doc))
    }

    async fn withdraw_document(&self, req: Request<proto::WithdrawDocumentRequest>) -> Answer<proto::Document> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let doc = crate::merchants::documents::withdraw_document(
            &self.state,
            user,
            m.merchant_id.into(),
            m.document_id.into(),
        )
        .await
        .map_err(status)?;
        ok(document(doc))
    }

    async fn restore_all_merchants(
        &self,
        _req: Request<proto::RestoreAllRequest>,
    ) -> Answer<proto::RestoreAllResponse> {
        ok(convert::restored(crate::merchants::service::restore_all(&self.state).await.map_err(status)?))
    }

    async fn list_review_queue(
        &self,
        req: Request<proto::ListReviewQueueRequest>,
    ) -> Answer<proto::ListReviewQueueResponse> {
        let m = req.into_inner();
        let mut page = convert::page(m.page);
        page.include_total = m.include_total.then(|| "true".to_owned());
        let q = crate::merchants::documents::QueueQuery {
            page,
            status: opt(m.status),
            doc_type: opt(m.doc_type),
            merchant_id: m.merchant_id.map(|id| id.to_string()),
            from: m.from.map(|t| convert::instant("from", t)).transpose()?,
            to: m.to.map(|t| convert::instant("to", t)).transpose()?,
            search: opt(m.search),
        };
        let page = crate::merchants::documents::review_queue(&self.state, q).await.map_err(status)?;
        ok(proto::ListReviewQueueResponse {
            items: page.items.into_iter().map(document).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
            total: page.total,
        })
    }

    async fn get_merchant_statement(
        &self,
        req: Request<proto::GetMerchantStatementRequest>,
    ) -> Answer<proto::GetStatementResponse> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let q = convert::statement_query(m.page, m.from, m.to)?;
        let page = crate::merchants::service::statement(&self.state, user, m.id.into(), &q).await.map_err(status)?;
        ok(convert::statement(page))
    }
}

#[tonic::async_trait]
impl proto::admin_server::Admin for Api {
    async fn get_events_status(&self, _req: Request<proto::GetEventsStatusRequest>) -> Answer<proto::EventsStatus> {
        let s = crate::events::routes::events_status(&self.state).await.map_err(status)?;
        ok(proto::EventsStatus {
            broker: s.broker.to_owned(),
            outbox_depth: s.outbox_depth,
            outbox_oldest_age_secs: s.outbox_oldest_age_secs,
            emails_pending: s.emails_pending,
            emails_dead: s.emails_dead,
            webhooks_pending: s.webhooks_pending,
            webhooks_dead: s.webhooks_dead,
            dead_letters: s.dead_letters,
        })
    }

    async fn list_dead_letters(
        &self,
        req: Request<proto::ListDeadLettersRequest>,
    ) -> Answer<proto::ListDeadLettersResponse> {
        let m = req.into_inner();
        let q = crate::events::routes::DeadLetterQuery { page: convert::page(m.page), kind: opt(m.kind) };
        let page = crate::events::routes::dead_letters_page(&self.state, q).await.map_err(status)?;
        ok(proto::ListDeadLettersResponse {
            items: page.items.into_iter().map(dead_letter).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        })
    }

    async fn redrive_dead_letter(&self, req: Request<proto::RedriveDeadLetterRequest>) -> Answer<proto::DeadLetter> {
        let id = req.into_inner().id;
        let view = crate::events::routes::redrive_dead_letter(&self.state, id).await.map_err(status)?;
        ok(dead_letter(view))
    }
}

fn dead_letter(d: crate::events::routes::DeadLetterView) -> proto::DeadLetter {
    proto::DeadLetter {
        id: d.id,
        kind: d.kind,
        consumer: d.consumer,
        reference: d.reference,
        event_id: d.event_id.map(|e| e.to_string()).unwrap_or_default(),
        reason: d.reason,
        payload: d.payload,
        attempts: d.attempts,
        created_at: Some(convert::timestamp(d.created_at)),
        redriven_at: d.redriven_at.map(convert::timestamp),
    }
}

fn payment_id(raw: &str) -> Result<uuid::Uuid, Status> {
    raw.parse().map_err(|_| status(ApiError::not_found("payment")))
}

/// The largest document chunk a stream message may carry, both ways.
pub const CHUNK_BYTES: usize = 64 * 1024;

fn header_first() -> Status {
    invalid("header", "the first message of a document upload must be its header (merchant, doc_type, file name)")
}

fn header_twice() -> Status {
    invalid("header", "the header may be sent only once, as the first message")
}

/// The `part` of the next message of an upload stream (`None` at its end).
async fn next_part<M, P>(stream: &mut tonic::Streaming<M>, part: impl Fn(M) -> Option<P>) -> Result<Option<P>, Status> {
    Ok(stream.message().await?.and_then(part))
}

/// The file of an upload stream after its header: chunks of at most [`CHUNK_BYTES`], at most
/// `max` bytes in all (the HTTP bound, refused as soon as it is passed).
async fn receive_chunks<M>(
    stream: &mut tonic::Streaming<M>,
    max: usize,
    chunk: impl Fn(M) -> Result<Vec<u8>, Status>,
) -> Result<Vec<u8>, Status> {
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await? {
        let c = chunk(message)?;
        if c.len() > CHUNK_BYTES {
            return Err(invalid("chunk", format!("a chunk must be at most {CHUNK_BYTES} bytes; got {}", c.len())));
        }
        if bytes.len().saturating_add(c.len()) > max {
            return Err(status(crate::merchants::MerchantError::DocumentTooLarge(max).into()));
        }
        bytes.extend_from_slice(&c);
    }
    Ok(bytes)
}

fn received(file_name: String, content_type: String, bytes: Vec<u8>) -> crate::merchants::routes::ReceivedFile {
    (opt(file_name).unwrap_or_else(|| "document".to_owned()), content_type, bytes)
}

fn document(d: crate::merchants::routes::DocumentView) -> proto::Document {
    proto::Document {
        id: d.id.get(),
        merchant_id: d.merchant_id.get(),
        doc_type: d.doc_type,
        file_name: d.file_name,
        content_type: d.content_type,
        size_bytes: d.size_bytes,
        sha256: d.sha256,
        status: d.status.to_string(),
        review_note: d.review_note,
        reviewed_by: d.reviewed_by.map(|u| u.get()),
        reviewed_at: d.reviewed_at.map(convert::timestamp),
        created_at: Some(convert::timestamp(d.created_at)),
        version: d.version,
        replaces_id: d.replaces_id.map(|r| r.get()),
        superseded_by: d.superseded_by.map(|r| r.get()),
        withdrawn_at: d.withdrawn_at.map(convert::timestamp),
    }
}
