//! The merchant, document, payment-view and dead-letter RPCs through the generated tonic clients:
//! a merchant onboarded end to end over gRPC (apply, chunked document uploads, admin review and
//! approval, key create and rotate, the old key refused, pay with the new one, refund, list
//! refunds), the document limits, the access refusals of every new RPC class, and the redrive of
//! a dead letter (published again, idempotently).

use std::collections::HashMap;
use std::time::Duration;

use diesel::prelude::*;
use serde_json::json;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use payd::grpc::proto;
use payd::grpc::proto::admin_client::AdminClient;
use payd::grpc::proto::merchants_client::MerchantsClient;
use payd::grpc::proto::payments_client::PaymentsClient;

use crate::common::merchant;
use crate::common::TestApp;
use crate::events_support::{eventually, EvApp};
use crate::grpc::{expect_status, keyed, named_field};

async fn connect(port: u16) -> Channel {
    assert_ne!(port, 0, "the gRPC server is not running");
    Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap()
}

/// A request with a bearer token (no idempotency key).
fn authed<T>(msg: T, token: &str) -> Request<T> {
    crate::grpc::authed(msg, token, None)
}

/// A PDF of `len` bytes (the magic, then padding): larger than one chunk.
fn pdf(len: usize) -> Vec<u8> {
    let mut b = merchant::PDF.to_vec();
    b.resize(len, b' ');
    b
}

fn header(merchant_id: i64, doc_type: &str, content_type: &str) -> proto::UploadDocumentRequest {
    proto::UploadDocumentRequest {
        part: Some(proto::upload_document_request::Part::Header(proto::DocumentUploadHeader {
            merchant_id,
            doc_type: doc_type.into(),
            file_name: format!("{doc_type}.pdf"),
            content_type: content_type.into(),
        })),
    }
}

fn chunk(bytes: &[u8]) -> proto::UploadDocumentRequest {
    proto::UploadDocumentRequest { part: Some(proto::upload_document_request::Part::Chunk(bytes.to_vec())) }
}

/// The upload stream: the header, then `bytes` in chunks of `size`.
fn upload_stream(
    merchant_id: i64,
    doc_type: &str,
    content_type: &str,
    bytes: &[u8],
    size: usize,
) -> Vec<proto::UploadDocumentRequest> {
    let mut msgs = vec![header(merchant_id, doc_type, content_type)];
    msgs.extend(bytes.chunks(size).map(chunk));
    msgs
}

async fn upload(
    client: &mut MerchantsClient<Channel>,
    token: &str,
    msgs: Vec<proto::UploadDocumentRequest>,
) -> Result<proto::Document, Status> {
    client.upload_document(authed(tokio_stream::iter(msgs), token)).await.map(tonic::Response::into_inner)
}

async fn content(
    client: &mut MerchantsClient<Channel>,
    token: &str,
    merchant_id: i64,
    document_id: i64,
) -> Result<(proto::DocumentContentHeader, Vec<u8>, usize), Status> {
    use proto::document_content_chunk::Part;
    let mut stream = client
        .get_document_content(authed(proto::GetDocumentContentRequest { merchant_id, document_id }, token))
        .await?
        .into_inner();
    let mut head = None;
    let (mut bytes, mut chunks) = (Vec::new(), 0usize);
    while let Some(m) = stream.message().await? {
        match m.part {
            Some(Part::Header(h)) => head = Some(h),
            Some(Part::Chunk(c)) => {
                assert!(c.len() <= 64 * 1024, "chunk of {} bytes", c.len());
                chunks += 1;
                bytes.extend_from_slice(&c);
            }
            None => panic!("empty content message"),
        }
    }
    Ok((head.expect("a header first"), bytes, chunks))
}

#[actix_web::test]
async fn a_merchant_is_onboarded_paid_and_refunded_over_grpc() {
    let mut settings = merchant::merchant_settings();
    // A rotated key stops at once, so the old key is refused right after the rotation.
    settings.merchants.key_rotation_overlap_secs = 0;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let (_, owner) = merchant::verified(&app, &admin, "grpc-onboard@test.local").await;
    let ch = connect(app.grpc_port).await;
    let mut merchants = MerchantsClient::new(ch.clone());
    let mut payments = PaymentsClient::new(ch);

    let apply = proto::ApplyMerchantRequest {
        business_name: "Grpc Onboard".into(),
        contact_email: "shop@grpc-onboard.example".into(),
        category: "retail".into(),
        website: String::new(),
        description: String::new(),
    };
    let m = merchants.apply_merchant(authed(apply, &owner)).await.unwrap().into_inner();
    assert_eq!(m.status, "pending");
    // Not approvable before its documents are.
    let approve = proto::DecideMerchantRequest {
        id: m.id,
        decision: proto::MerchantDecision::Approve.into(),
        reason: String::new(),
    };
    let early = merchants.decide_merchant(authed(approve.clone(), &admin)).await.unwrap_err();
    expect_status(&early, Code::AlreadyExists, "documents_missing");

    // The required documents, uploaded in chunks, read back in chunks, reviewed by the admin.
    let required = app.settings.merchants.required_documents.clone();
    assert!(!required.is_empty());
    let file = pdf(150 * 1024);
    let mut ids = Vec::new();
    for doc_type in &required {
        let doc = upload(&mut merchants, &owner, upload_stream(m.id, doc_type, "application/pdf", &file, 64 * 1024))
            .await
            .unwrap();
        assert_eq!(
            (doc.doc_type.as_str(), doc.status.as_str(), doc.size_bytes, doc.content_type.as_str(), doc.version),
            (doc_type.as_str(), "submitted", 150 * 1024, "application/pdf", 1)
        );
        ids.push(doc.id);
    }
    let listed = merchants
        .list_documents(authed(proto::ListDocumentsRequest { merchant_id: m.id, search: String::new() }, &owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.items.iter().map(|d| d.id).collect::<Vec<_>>(), ids);
    let (s, http) = app.get(&format!("/api/v1/merchants/{}/documents", m.id), Some(&owner)).await;
    assert_eq!(s, 200, "{http}");
    let http_ids: Vec<i64> = http.as_array().unwrap().iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert_eq!(http_ids, ids);
    let (head, bytes, chunks) = content(&mut merchants, &owner, m.id, ids[0]).await.unwrap();
    assert_eq!((head.content_type.as_str(), head.size_bytes, chunks), ("application/pdf", 150 * 1024, 3));
    assert_eq!(bytes, file);
    for id in &ids {
        let review = proto::ReviewDocumentRequest {
            merchant_id: m.id,
            document_id: *id,
            decision: proto::DocumentDecision::Approve.into(),
            note: "matches".into(),
        };
        let d = merchants.review_document(authed(review, &admin)).await.unwrap().into_inner();
        assert_eq!((d.status.as_str(), d.review_note.as_deref()), ("approved", Some("matches")));
    }
    let versions = merchants
        .list_document_versions(authed(
            proto::ListDocumentVersionsRequest { merchant_id: m.id, document_id: ids[0] },
            &owner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(versions.items.len(), 1);

    let active = merchants.decide_merchant(authed(approve.clone(), &admin)).await.unwrap().into_inner();
    assert_eq!(active.status, "active");
    let again = merchants.decide_merchant(authed(approve, &admin)).await.unwrap_err();
    expect_status(&again, Code::AlreadyExists, "invalid_transition");
    let reject_without_reason = proto::DecideMerchantRequest {
        id: m.id,
        decision: proto::MerchantDecision::Suspend.into(),
        reason: "  ".into(),
    };
    let e = merchants.decide_merchant(authed(reject_without_reason, &admin)).await.unwrap_err();
    assert_eq!((e.code(), named_field(&e).as_str()), (Code::InvalidArgument, "reason"), "{e:?}");
    let unspecified = proto::DecideMerchantRequest { id: m.id, decision: 0, reason: String::new() };
    let e = merchants.decide_merchant(authed(unspecified, &admin)).await.unwrap_err();
    assert_eq!((e.code(), named_field(&e).as_str()), (Code::InvalidArgument, "decision"), "{e:?}");

    // The profile, the lists (admin: all with a total; owner: own), the balance.
    let upd = proto::UpdateMerchantRequest {
        id: m.id,
        category: Some("groceries".into()),
        ..proto::UpdateMerchantRequest::default()
    };
    let updated = merchants.update_merchant(authed(upd, &owner)).await.unwrap().into_inner();
    assert_eq!((updated.category.as_str(), updated.business_name.as_str()), ("groceries", "Grpc Onboard"));
    let bad = proto::UpdateMerchantRequest {
        id: m.id,
        contact_email: Some("not-an-email".into()),
        ..proto::UpdateMerchantRequest::default()
    };
    let e = merchants.update_merchant(authed(bad, &owner)).await.unwrap_err();
    assert_eq!((e.code(), named_field(&e).as_str()), (Code::InvalidArgument, "contact_email"), "{e:?}");
    let all = proto::ListMerchantsRequest { include_total: true, ..proto::ListMerchantsRequest::default() };
    let page = merchants.list_merchants(authed(all, &admin)).await.unwrap().into_inner();
    let (_, http) = app.get("/api/v1/merchants?include_total=true", Some(&admin)).await;
    let http_ids: Vec<i64> = http["items"].as_array().unwrap().iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert_eq!(page.items.iter().map(|m| m.id).collect::<Vec<_>>(), http_ids);
    assert_eq!(page.total, http["total"].as_i64());
    let (_, other) = merchant::verified(&app, &admin, "grpc-onboard-other@test.local").await;
    let other_m = merchant::apply(&app, &other, "Other Shop").await;
    let own = merchants.list_merchants(authed(proto::ListMerchantsRequest::default(), &owner)).await.unwrap();
    assert_eq!(own.into_inner().items.iter().map(|m| m.id).collect::<Vec<_>>(), vec![m.id]);
    let first = proto::ListMerchantsRequest {
        page: Some(proto::PageRequest { limit: 1, cursor: String::new() }),
        ..proto::ListMerchantsRequest::default()
    };
    let p1 = merchants.list_merchants(authed(first, &admin)).await.unwrap().into_inner();
    assert_eq!(p1.items.iter().map(|m| m.id).collect::<Vec<_>>(), vec![other_m]);
    let next = proto::ListMerchantsRequest {
        page: Some(proto::PageRequest { limit: 1, cursor: p1.next_cursor.clone() }),
        ..proto::ListMerchantsRequest::default()
    };
    let p2 = merchants.list_merchants(authed(next, &admin)).await.unwrap().into_inner();
    assert_eq!(p2.items.iter().map(|m| m.id).collect::<Vec<_>>(), vec![m.id]);
    let bad_status = proto::ListMerchantsRequest { status: "dormant".into(), ..proto::ListMerchantsRequest::default() };
    let e = merchants.list_merchants(authed(bad_status, &admin)).await.unwrap_err();
    assert_eq!((e.code(), named_field(&e).as_str()), (Code::InvalidArgument, "status"), "{e:?}");

    // Keys: create, rotate; the old key is refused, the new one pays.
    let created = merchants
        .create_api_key(authed(proto::CreateApiKeyRequest { merchant_id: m.id, label: "till".into() }, &owner))
        .await
        .unwrap()
        .into_inner();
    let old_key = created.key.unwrap();
    let rotated = merchants
        .rotate_api_key(authed(proto::RotateApiKeyRequest { merchant_id: m.id, id: old_key.id }, &owner))
        .await
        .unwrap()
        .into_inner();
    let new_key = rotated.key.clone().unwrap();
    assert_ne!(new_key.key_id, old_key.key_id);
    assert_eq!(new_key.label, "till");
    let twice = merchants
        .rotate_api_key(authed(proto::RotateApiKeyRequest { merchant_id: m.id, id: old_key.id }, &owner))
        .await
        .unwrap_err();
    expect_status(&twice, Code::AlreadyExists, "invalid_transition");

    let (_, buyer) = merchant::verified(&app, &admin, "grpc-onboard-buyer@test.local").await;
    let card = merchant::issue_card(&app, &buyer).await;
    merchant::topup(&app, &buyer, card.id, 1_000_000).await;
    let pay = proto::PayRequest {
        card_number: card.number.clone(),
        expiry_month: card.month,
        expiry_year: card.year,
        cvv: card.cvv.clone(),
        amount: 250_000,
        method: "visa".into(),
        order_ref: "onboard-1".into(),
        currency: String::new(),
    };
    let refused = payments.pay(keyed(pay.clone(), &created.api_key, "old-1")).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let paid = payments.pay(keyed(pay, &rotated.api_key, "new-1")).await.unwrap().into_inner();
    assert_eq!((paid.merchant_id, paid.amount), (Some(m.id), 250_000));
    let refund = proto::RefundRequest { payment_id: paid.id.clone(), amount: Some(50_000), reason: "damaged".into() };
    let refunded = payments.refund(keyed(refund, &rotated.api_key, "ref-1")).await.unwrap().into_inner();
    let refunds = payments
        .list_refunds(authed(proto::ListRefundsRequest { payment_id: paid.id.clone() }, &owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        refunds.items.iter().map(|r| (r.id.as_str(), r.amount)).collect::<Vec<_>>(),
        vec![(refunded.id.as_str(), 50_000)]
    );
    let (s, http) = app.get(&format!("/api/v1/payments/{}/refunds", paid.id), Some(&buyer)).await;
    assert_eq!((s, http[0]["id"].as_str()), (200, Some(refunded.id.as_str())), "{http}");
    let balance = merchants
        .get_merchant_balance(authed(proto::GetMerchantBalanceRequest { id: m.id }, &owner))
        .await
        .unwrap()
        .into_inner();
    let (_, http) = app.get(&format!("/api/v1/merchants/{}/balance", m.id), Some(&owner)).await;
    assert_eq!(balance.balance, http["balance"].as_i64().unwrap());
    assert_eq!((balance.merchant_id, balance.currency.as_str()), (m.id, http["currency"].as_str().unwrap()));
    assert!(balance.balance > 0, "{balance:?}");

    // Archive and restore of the payment (admin).
    let archived = payments
        .archive_payment(authed(proto::ArchivePaymentRequest { id: paid.id.clone() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(archived.archived_at.is_some(), "{archived:?}");
    let e = payments.archive_payment(authed(proto::ArchivePaymentRequest { id: paid.id.clone() }, &admin)).await;
    assert_eq!(e.unwrap_err().code(), Code::AlreadyExists);
    let restored = payments
        .restore_payment(authed(proto::RestorePaymentRequest { id: paid.id.clone() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(restored.archived_at.is_none(), "{restored:?}");

    // A pending document is withdrawn by the owner; a replacement is a new version.
    let extra = upload(&mut merchants, &owner, upload_stream(m.id, "tax_id", "", merchant::PNG, 1024)).await.unwrap();
    assert_eq!(extra.content_type, "image/png");
    let replace = vec![
        proto::ReplaceDocumentRequest {
            part: Some(proto::replace_document_request::Part::Header(proto::DocumentReplaceHeader {
                merchant_id: m.id,
                document_id: extra.id,
                doc_type: String::new(),
                file_name: "tax-v2.pdf".into(),
                content_type: "application/pdf".into(),
            })),
        },
        proto::ReplaceDocumentRequest {
            part: Some(proto::replace_document_request::Part::Chunk(merchant::PDF.to_vec())),
        },
    ];
    let v2 = merchants.replace_document(authed(tokio_stream::iter(replace), &owner)).await.unwrap().into_inner();
    assert_eq!((v2.version, v2.replaces_id, v2.doc_type.as_str()), (2, Some(extra.id), "tax_id"));
    let withdrawn = merchants
        .withdraw_document(authed(proto::WithdrawDocumentRequest { merchant_id: m.id, document_id: v2.id }, &owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(withdrawn.status, "withdrawn");
    let stale = merchants
        .withdraw_document(authed(proto::WithdrawDocumentRequest { merchant_id: m.id, document_id: extra.id }, &owner))
        .await
        .unwrap_err();
    expect_status(&stale, Code::AlreadyExists, "document_superseded");
}

#[actix_web::test]
async fn document_uploads_keep_the_http_limits() {
    let mut settings = merchant::merchant_settings();
    settings.merchants.max_document_bytes = 100 * 1024;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let (_, owner) = merchant::verified(&app, &admin, "grpc-doc-limits@test.local").await;
    let id = merchant::apply(&app, &owner, "Limits Shop").await;
    let mut merchants = MerchantsClient::new(connect(app.grpc_port).await);
    let pdf_type = "application/pdf";

    // Too large in all: refused as the bound is passed, like HTTP (413 payload_too_large).
    let big = pdf(100 * 1024 + 1);
    let e = upload(&mut merchants, &owner, upload_stream(id, "tax_id", pdf_type, &big, 50 * 1024)).await.unwrap_err();
    let meta = expect_status(&e, Code::ResourceExhausted, "payload_too_large");
    assert_eq!(meta.get("field").map(String::as_str), Some("file"), "{e:?}");
    // One chunk over 64 KiB.
    let e = upload(&mut merchants, &owner, upload_stream(id, "tax_id", pdf_type, &pdf(70 * 1024), 70 * 1024))
        .await
        .unwrap_err();
    assert_eq!((e.code(), named_field(&e).as_str()), (Code::InvalidArgument, "chunk"), "{e:?}");
    assert!(e.message().contains("65536"), "{e:?}");
    // Not an accepted type, and a type other than the declared one.
    let e = upload(&mut merchants, &owner, upload_stream(id, "tax_id", "text/plain", b"hello, plain text", 1024))
        .await
        .unwrap_err();
    let meta = expect_status(&e, Code::InvalidArgument, "unsupported_media_type");
    assert_eq!(meta.get("field").map(String::as_str), Some("file"));
    let e =
        upload(&mut merchants, &owner, upload_stream(id, "tax_id", pdf_type, merchant::PNG, 1024)).await.unwrap_err();
    expect_status(&e, Code::InvalidArgument, "unsupported_media_type");
    assert!(e.message().contains("image/png"), "{e:?}");
    // Unknown type of document, no file, no header, two headers.
    let e =
        upload(&mut merchants, &owner, upload_stream(id, "passport", pdf_type, merchant::PDF, 1024)).await.unwrap_err();
    assert_eq!((e.code(), named_field(&e).as_str()), (Code::InvalidArgument, "doc_type"), "{e:?}");
    let e = upload(&mut merchants, &owner, vec![header(id, "tax_id", pdf_type)]).await.unwrap_err();
    assert_eq!((e.code(), named_field(&e).as_str()), (Code::InvalidArgument, "file"), "{e:?}");
    let e = upload(&mut merchants, &owner, vec![chunk(merchant::PDF)]).await.unwrap_err();
    assert_eq!((e.code(), named_field(&e).as_str()), (Code::InvalidArgument, "header"), "{e:?}");
    let e = upload(&mut merchants, &owner, vec![]).await.unwrap_err();
    assert_eq!((e.code(), named_field(&e).as_str()), (Code::InvalidArgument, "header"), "{e:?}");
    let two = vec![header(id, "tax_id", pdf_type), chunk(merchant::PDF), header(id, "tax_id", pdf_type)];
    let e = upload(&mut merchants, &owner, two).await.unwrap_err();
    assert_eq!((e.code(), named_field(&e).as_str()), (Code::InvalidArgument, "header"), "{e:?}");
    // Nothing was recorded; a good upload still works.
    let (_, http) = app.get(&format!("/api/v1/merchants/{id}/documents"), Some(&owner)).await;
    assert_eq!(http.as_array().map(Vec::len), Some(0), "{http}");
    let ok = upload(&mut merchants, &owner, upload_stream(id, "tax_id", pdf_type, &pdf(100 * 1024), 64 * 1024)).await;
    assert_eq!(ok.unwrap().size_bytes, 100 * 1024);
}

#[actix_web::test]
async fn every_new_rpc_class_refuses_strangers_non_admins_and_anonymous_callers() {
    let app = TestApp::spawn_with(merchant::merchant_settings()).await;
    let admin = app.admin_token().await;
    let (_, owner) = merchant::verified(&app, &admin, "grpc-acl-owner@test.local").await;
    let (_, stranger) = merchant::verified(&app, &admin, "grpc-acl-stranger@test.local").await;
    let id = merchant::active_merchant(&app, &admin, &owner, "Acl Shop").await;
    let (key_id, api_key) = merchant::create_key(&app, &owner, id, "acl").await;
    let (s, docs) = app.get(&format!("/api/v1/merchants/{id}/documents"), Some(&owner)).await;
    assert_eq!(s, 200);
    let doc = docs[0]["id"].as_i64().unwrap();
    let (_, buyer) = merchant::verified(&app, &admin, "grpc-acl-buyer@test.local").await;
    let card = merchant::issue_card(&app, &buyer).await;
    merchant::topup(&app, &buyer, card.id, 200_000).await;
    let (s, paid) = merchant::keyed(
        &app,
        "POST",
        "/api/v1/payments",
        &api_key,
        "acl-pay",
        Some(json!({"card_number": card.number, "expiry_month": card.month, "expiry_year": card.year,
                    "cvv": card.cvv, "amount": 60_000, "method": "visa", "order_ref": "acl-1"})),
    )
    .await;
    assert_eq!(s, 201, "{paid}");
    let payment = paid["id"].as_str().unwrap().to_owned();
    let ch = connect(app.grpc_port).await;
    let mut merchants = MerchantsClient::new(ch.clone());
    let mut payments = PaymentsClient::new(ch.clone());
    let mut adm = AdminClient::new(ch);

    // Someone else's merchant answers like a missing one (owner or admin RPCs).
    let not_found = |r: Result<(), Status>, what: &str| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{what}: {e:?}");
    };
    let upd = proto::UpdateMerchantRequest { id, category: Some("x-category".into()), ..Default::default() };
    not_found(merchants.update_merchant(authed(upd.clone(), &stranger)).await.map(drop), "update");
    not_found(
        merchants.get_merchant_balance(authed(proto::GetMerchantBalanceRequest { id }, &stranger)).await.map(drop),
        "balance",
    );
    not_found(
        merchants
            .rotate_api_key(authed(proto::RotateApiKeyRequest { merchant_id: id, id: key_id }, &stranger))
            .await
            .map(drop),
        "rotate",
    );
    not_found(
        merchants
            .list_documents(authed(proto::ListDocumentsRequest { merchant_id: id, search: String::new() }, &stranger))
            .await
            .map(drop),
        "documents",
    );
    not_found(content(&mut merchants, &stranger, id, doc).await.map(drop), "content");
    not_found(
        merchants
            .list_document_versions(authed(
                proto::ListDocumentVersionsRequest { merchant_id: id, document_id: doc },
                &stranger,
            ))
            .await
            .map(drop),
        "versions",
    );
    not_found(
        upload(&mut merchants, &stranger, upload_stream(id, "tax_id", "application/pdf", merchant::PDF, 1024))
            .await
            .map(drop),
        "upload",
    );
    not_found(
        merchants
            .withdraw_document(authed(proto::WithdrawDocumentRequest { merchant_id: id, document_id: doc }, &stranger))
            .await
            .map(drop),
        "withdraw",
    );
    not_found(
        payments
            .list_refunds(authed(proto::ListRefundsRequest { payment_id: payment.clone() }, &stranger))
            .await
            .map(drop),
        "refunds",
    );
    let own = merchants.list_merchants(authed(proto::ListMerchantsRequest::default(), &stranger)).await.unwrap();
    assert!(own.into_inner().items.is_empty());

    // Admin-only RPCs refuse the owner (PERMISSION_DENIED) and every RPC refuses no token.
    let decide =
        proto::DecideMerchantRequest { id, decision: proto::MerchantDecision::Suspend.into(), reason: "checks".into() };
    let review = proto::ReviewDocumentRequest {
        merchant_id: id,
        document_id: doc,
        decision: proto::DocumentDecision::Reject.into(),
        note: String::new(),
    };
    let denied = |r: Result<(), Status>, what: &str| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{what}: {e:?}");
    };
    denied(merchants.decide_merchant(authed(decide.clone(), &owner)).await.map(drop), "decide");
    denied(merchants.review_document(authed(review.clone(), &owner)).await.map(drop), "review");
    denied(
        payments.archive_payment(authed(proto::ArchivePaymentRequest { id: payment.clone() }, &owner)).await.map(drop),
        "archive",
    );
    denied(
        payments.restore_payment(authed(proto::RestorePaymentRequest { id: payment.clone() }, &owner)).await.map(drop),
        "restore",
    );
    denied(
        adm.redrive_dead_letter(authed(proto::RedriveDeadLetterRequest { id: 1 }, &owner)).await.map(drop),
        "redrive",
    );
    let anon = |r: Result<(), Status>, what: &str| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{what}: {e:?}");
    };
    anon(merchants.list_merchants(proto::ListMerchantsRequest::default()).await.map(drop), "list");
    anon(merchants.update_merchant(upd).await.map(drop), "update");
    anon(merchants.decide_merchant(decide).await.map(drop), "decide");
    anon(merchants.get_merchant_balance(proto::GetMerchantBalanceRequest { id }).await.map(drop), "balance");
    anon(
        merchants.rotate_api_key(proto::RotateApiKeyRequest { merchant_id: id, id: key_id }).await.map(drop),
        "rotate",
    );
    anon(
        merchants
            .upload_document(tokio_stream::iter(upload_stream(id, "tax_id", "application/pdf", merchant::PDF, 1024)))
            .await
            .map(drop),
        "upload",
    );
    anon(
        merchants
            .list_documents(proto::ListDocumentsRequest { merchant_id: id, search: String::new() })
            .await
            .map(drop),
        "documents",
    );
    anon(
        merchants
            .get_document_content(proto::GetDocumentContentRequest { merchant_id: id, document_id: doc })
            .await
            .map(drop),
        "content",
    );
    anon(merchants.review_document(review).await.map(drop), "review");
    anon(
        merchants
            .withdraw_document(proto::WithdrawDocumentRequest { merchant_id: id, document_id: doc })
            .await
            .map(drop),
        "withdraw",
    );
    anon(payments.list_refunds(proto::ListRefundsRequest { payment_id: payment.clone() }).await.map(drop), "refunds");
    anon(payments.archive_payment(proto::ArchivePaymentRequest { id: payment }).await.map(drop), "archive");
    anon(adm.redrive_dead_letter(proto::RedriveDeadLetterRequest { id: 1 }).await.map(drop), "redrive");
    // Nothing changed.
    let (_, m) = app.get(&format!("/api/v1/merchants/{id}"), Some(&admin)).await;
    assert_eq!((m["status"].as_str(), m["category"].as_str()), (Some("active"), Some("retail")), "{m}");
}

fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(sql).get_result::<N>(conn).unwrap().n
}

#[actix_web::test]
async fn a_dead_letter_is_redriven_once_and_its_event_published_again() {
    let app = EvApp::spawn(crate::common::settings()).await;
    let admin = app.api.admin_token().await;
    let (_, user) = app.api.verified_user(&admin, "grpc-redrive@test.local").await;
    let probe = app.probe("redrive-probe").await;
    let event = uuid::Uuid::now_v7();
    let mut conn = app.db();
    diesel::sql_query(format!(
        "INSERT INTO outbox (event_id, event_type, schema_version, aggregate_type, aggregate_key, payload) \
         VALUES ('{event}', 'probe.checked', 1, 'probe', 'probe:1', '{{}}')"
    ))
    .execute(&mut conn)
    .unwrap();
    app.state.events.nudge_relay();
    let delivered = |p: &crate::events_support::Probe| p.seen.lock().unwrap().iter().filter(|e| e.id == event).count();
    eventually(Duration::from_secs(20), "the event is published", || delivered(&probe) == 1).await;
    // The consumer rejected it: dead-lettered, as the consumer runtime records it.
    let row = payd::events::consumer::NewDeadLetter {
        kind: "message",
        consumer: "redrive-probe".into(),
        reference: event.to_string(),
        event_id: Some(event),
        reason: "rejected by the probe".into(),
        payload: None,
        attempts: 1,
    };
    payd::events::consumer::record_dead_letter(&mut conn, &row).unwrap();
    let email = payd::events::consumer::NewDeadLetter {
        kind: "email",
        reference: "job-9".into(),
        event_id: None,
        ..row.clone()
    };
    payd::events::consumer::record_dead_letter(&mut conn, &email).unwrap();
    let ids: Vec<i64> = {
        use payd::events::schema::dead_letters;
        dead_letters::table.select(dead_letters::id).order(dead_letters::id.asc()).load(&mut conn).unwrap()
    };
    let (message_dl, email_dl) = (ids[0], ids[1]);

    let mut adm = AdminClient::new(connect(app.grpc_port).await);
    let redriven =
        adm.redrive_dead_letter(authed(proto::RedriveDeadLetterRequest { id: message_dl }, &admin)).await.unwrap();
    let redriven = redriven.into_inner();
    assert!(redriven.redriven_at.is_some(), "{redriven:?}");
    assert_eq!(redriven.event_id, event.to_string());
    eventually(Duration::from_secs(20), "the event is published again", || delivered(&probe) == 2).await;
    // Idempotent: a second redrive (either transport) answers the same and queues nothing.
    let again = adm
        .redrive_dead_letter(authed(proto::RedriveDeadLetterRequest { id: message_dl }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, redriven);
    let r = app.api.call("POST", &format!("/api/v1/admin/dead-letters/{message_dl}/redrive"), Some(&admin), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["redriven_at"].is_string(), "{}", r.body);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(delivered(&probe), 2);
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL"), 0);
    // What cannot be redriven, or is not there; and who may not.
    let e = adm.redrive_dead_letter(authed(proto::RedriveDeadLetterRequest { id: email_dl }, &admin)).await;
    expect_status(&e.unwrap_err(), Code::AlreadyExists, "not_redrivable");
    let e = adm.redrive_dead_letter(authed(proto::RedriveDeadLetterRequest { id: 999_999 }, &admin)).await;
    assert_eq!(e.unwrap_err().code(), Code::NotFound);
    let e = adm.redrive_dead_letter(authed(proto::RedriveDeadLetterRequest { id: message_dl }, &user)).await;
    assert_eq!(e.unwrap_err().code(), Code::PermissionDenied);
    let r = app.api.call("POST", &format!("/api/v1/admin/dead-letters/{email_dl}/redrive"), Some(&user), None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let listed =
        adm.list_dead_letters(authed(proto::ListDeadLettersRequest::default(), &admin)).await.unwrap().into_inner();
    let by_id: HashMap<i64, bool> = listed.items.iter().map(|d| (d.id, d.redriven_at.is_some())).collect();
    assert_eq!((by_id.get(&message_dl), by_id.get(&email_dl)), (Some(&true), Some(&false)));
}
