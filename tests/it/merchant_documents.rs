//! Merchant documents: replacing (versions kept for audit, reviews on the newest, approval counting
//! current versions only), withdrawing before and after review, the admin review queue (filters,
//! order, pages, totals, access) and the reviewers' e-mail on submit and replace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::merchant::{apply, decide, merchant_settings, upload, verified, PDF, PNG};
use crate::common::*;
use serde_json::{json, Value};

/// A multipart upload to `path` with a chosen file name; `doc_type` only when given.
async fn send_file(
    app: &TestApp,
    token: &str,
    path: &str,
    doc_type: Option<&str>,
    bytes: &[u8],
    mime: &str,
    file_name: &str,
) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(file_name.to_owned()).mime_str(mime).unwrap();
    let mut form = reqwest::multipart::Form::new();
    if let Some(t) = doc_type {
        form = form.text("doc_type", t.to_owned());
    }
    let resp =
        app.client.post(app.url(path)).bearer_auth(token).multipart(form.part("file", part)).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn replace(app: &TestApp, token: &str, merchant: i64, doc: i64, bytes: &[u8], mime: &str) -> (u16, Value) {
    let path = format!("/api/v1/merchants/{merchant}/documents/{doc}/replace");
    send_file(app, token, &path, None, bytes, mime, "replacement.bin").await
}

async fn review(app: &TestApp, admin: &str, merchant: i64, doc: i64, decision: &str) -> (u16, Value) {
    app.post(
        &format!("/api/v1/merchants/{merchant}/documents/{doc}/review"),
        Some(admin),
        json!({"decision": decision}),
    )
    .await
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array().unwrap().iter().map(|d| d["id"].as_i64().unwrap()).collect()
}

#[actix_web::test]
async fn replace_keeps_versions_and_review_and_approval_follow_the_newest() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    let (_, owner) = verified(&app, &admin, "docs.owner@example.com").await;
    let (_, stranger) = verified(&app, &admin, "docs.stranger@example.com").await;
    let mid = apply(&app, &owner, "Versioned Shop").await;

    let (s, v1) = upload(&app, &owner, mid, "business_licence", PDF, "application/pdf").await;
    assert_eq!((s, v1["version"].as_i64()), (201, Some(1)), "{v1}");
    let v1id = v1["id"].as_i64().unwrap();
    let (s, r) = review(&app, &admin, mid, v1id, "approve").await;
    assert_eq!((s, r["status"].as_str()), (200, Some("approved")), "{r}");

    // Someone else's merchant answers like a missing one; a different doc_type is refused.
    let (s, e) = replace(&app, &stranger, mid, v1id, PNG, "image/png").await;
    expect_error(s, &e, 404, "not_found");
    let path = format!("/api/v1/merchants/{mid}/documents/{v1id}/replace");
    let (s, e) = send_file(&app, &owner, &path, Some("tax_id"), PNG, "image/png", "x.png").await;
    expect_error(s, &e, 400, "invalid_upload");

    // Replacing an approved document: a new version waiting for review, the old one kept.
    let (s, v2) = replace(&app, &owner, mid, v1id, PNG, "image/png").await;
    assert_eq!(s, 201, "{v2}");
    let v2id = v2["id"].as_i64().unwrap();
    assert_eq!((v2["version"].as_i64(), v2["replaces_id"].as_i64()), (Some(2), Some(v1id)), "{v2}");
    assert_eq!((v2["status"].as_str(), v2["doc_type"].as_str()), (Some("submitted"), Some("business_licence")));

    // The current set shows the newest version only; the version view shows both.
    let (s, docs) = app.get(&format!("/api/v1/merchants/{mid}/documents"), Some(&owner)).await;
    assert_eq!((s, ids(&docs)), (200, vec![v2id]), "{docs}");
    for id in [v1id, v2id] {
        let (s, vs) = app.get(&format!("/api/v1/merchants/{mid}/documents/{id}/versions"), Some(&owner)).await;
        assert_eq!((s, ids(&vs)), (200, vec![v1id, v2id]), "{vs}");
        assert_eq!(vs[0]["status"], "approved", "the old version keeps its review: {vs}");
        assert_eq!(vs[0]["superseded_by"].as_i64(), Some(v2id));
        assert_eq!(vs[1]["superseded_by"], Value::Null);
    }
    let (s, _) = app.get(&format!("/api/v1/merchants/{mid}/documents/{v1id}/versions"), Some(&stranger)).await;
    assert_eq!(s, 404);
    // The old version's content is still there for audit.
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/merchants/{mid}/documents/{v1id}/content")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), PDF);

    // Reviews and replacements apply to the newest version only.
    let (s, e) = review(&app, &admin, mid, v1id, "reject").await;
    expect_error(s, &e, 409, "document_superseded");
    let (s, e) = replace(&app, &owner, mid, v1id, PDF, "application/pdf").await;
    expect_error(s, &e, 409, "document_superseded");

    // Approval counts current versions only: the replaced licence is waiting again.
    let (s, d) = upload(&app, &owner, mid, "owner_identity", PDF, "application/pdf").await;
    assert_eq!(s, 201, "{d}");
    let (s, _) = review(&app, &admin, mid, d["id"].as_i64().unwrap(), "approve").await;
    assert_eq!(s, 200);
    let (s, e) = decide(&app, &admin, mid, "approve", None).await;
    expect_error(s, &e, 409, "documents_missing");
    assert!(e["error"]["message"].as_str().unwrap().contains("business_licence"), "{e}");
    let (s, _) = review(&app, &admin, mid, v2id, "approve").await;
    assert_eq!(s, 200);
    let (s, m) = decide(&app, &admin, mid, "approve", None).await;
    assert_eq!((s, m["status"].as_str()), (200, Some("active")), "{m}");

    // Nothing was deleted: three rows, two of them current.
    let mut conn = app.db();
    let total = crate::common::merchant::scalar(
        &mut conn,
        &format!("SELECT count(*) AS n FROM merchant_documents WHERE merchant_id = {mid}"),
    );
    let current = crate::common::merchant::scalar(
        &mut conn,
        &format!("SELECT count(*) AS n FROM merchant_documents WHERE merchant_id = {mid} AND superseded_by IS NULL"),
    );
    assert_eq!((total, current), (3, 2));
}

#[actix_web::test]
async fn withdraw_only_before_review_and_only_by_the_owner() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    let (_, owner) = verified(&app, &admin, "wd.owner@example.com").await;
    let (_, stranger) = verified(&app, &admin, "wd.stranger@example.com").await;
    let mid = apply(&app, &owner, "Withdrawing Shop").await;
    let (_, pending) = upload(&app, &owner, mid, "tax_id", PDF, "application/pdf").await;
    let (_, reviewed) = upload(&app, &owner, mid, "bank_statement", PDF, "application/pdf").await;
    let (pending, reviewed) = (pending["id"].as_i64().unwrap(), reviewed["id"].as_i64().unwrap());
    let (s, _) = review(&app, &admin, mid, reviewed, "reject").await;
    assert_eq!(s, 200);
    let withdraw = |token: String, doc: i64| {
        let app = &app;
        async move { app.post(&format!("/api/v1/merchants/{mid}/documents/{doc}/withdraw"), Some(&token), json!({})).await }
    };

    // Someone else's document answers like a missing merchant; a missing document is 404 too.
    let (s, e) = withdraw(stranger.clone(), pending).await;
    expect_error(s, &e, 404, "not_found");
    let (s, e) = withdraw(owner.clone(), 999_999_999).await;
    expect_error(s, &e, 404, "not_found");
    // After review: 409 with a clear code.
    let (s, e) = withdraw(owner.clone(), reviewed).await;
    expect_error(s, &e, 409, "document_already_reviewed");
    assert!(e["error"]["message"].as_str().unwrap().contains("rejected"), "{e}");

    // Before review: withdrawn, still listed, no longer reviewable.
    let (s, d) = withdraw(owner.clone(), pending).await;
    assert_eq!((s, d["status"].as_str()), (200, Some("withdrawn")), "{d}");
    assert!(d["withdrawn_at"].is_string(), "{d}");
    let (s, e) = withdraw(owner.clone(), pending).await;
    expect_error(s, &e, 409, "document_withdrawn");
    let (s, e) = review(&app, &admin, mid, pending, "approve").await;
    expect_error(s, &e, 409, "document_withdrawn");
    let (s, docs) = app.get(&format!("/api/v1/merchants/{mid}/documents"), Some(&owner)).await;
    assert_eq!(s, 200);
    let statuses: Vec<&str> = docs.as_array().unwrap().iter().map(|d| d["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["withdrawn", "rejected"], "{docs}");
    // The review queue no longer shows it.
    let (s, q) = app.get(&format!("/api/v1/merchant-documents?merchant_id={mid}"), Some(&admin)).await;
    assert_eq!((s, q["items"].as_array().unwrap().len()), (200, 0), "{q}");
}

#[actix_web::test]
async fn review_queue_filters_orders_pages_and_is_admin_only() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    let (_, a) = verified(&app, &admin, "queue.a@example.com").await;
    let (_, b) = verified(&app, &admin, "queue.b@example.com").await;
    let ma = apply(&app, &a, "Queue A").await;
    let mb = apply(&app, &b, "Queue B").await;
    let up = |token: String, m: i64, t: &'static str, name: &'static str| {
        let app = &app;
        async move {
            let path = format!("/api/v1/merchants/{m}/documents");
            let (s, d) = send_file(app, &token, &path, Some(t), PDF, "application/pdf", name).await;
            assert_eq!(s, 201, "{d}");
            d["id"].as_i64().unwrap()
        }
    };
    let a1 = up(a.clone(), ma, "business_licence", "50%_off licence.pdf").await;
    let b1 = up(b.clone(), mb, "business_licence", "500 off licence.pdf").await;
    let a2 = up(a.clone(), ma, "owner_identity", "passport.pdf").await;
    let b2 = up(b.clone(), mb, "tax_id", "npwp.pdf").await;
    let (s, _) = review(&app, &admin, mb, b2, "approve").await;
    assert_eq!(s, 200);
    // A replaced document leaves the queue; its new version joins at the end.
    let (s, a1v2) = replace(&app, &a, ma, a1, PDF, "application/pdf").await;
    assert_eq!(s, 201, "{a1v2}");
    let a1v2 = a1v2["id"].as_i64().unwrap();

    let queue = |query: &'static str| {
        let (app, admin) = (&app, admin.clone());
        async move {
            let (s, p) = app.get(&format!("/api/v1/merchant-documents{query}"), Some(&admin)).await;
            assert_eq!(s, 200, "{query}: {p}");
            p
        }
    };
    // Default: waiting for review, oldest first, current versions only.
    let p = queue("").await;
    assert_eq!(ids(&p["items"]), vec![b1, a2, a1v2], "{p}");
    assert!(p.get("total").is_none(), "no count without include_total: {p}");
    let p = queue("?include_total=true&limit=1").await;
    assert_eq!((ids(&p["items"]), p["total"].as_i64()), (vec![b1], Some(3)), "{p}");
    let cursor = p["next_cursor"].as_str().unwrap().to_owned();
    let (s, p2) = app.get(&format!("/api/v1/merchant-documents?limit=1&cursor={cursor}"), Some(&admin)).await;
    assert_eq!((s, ids(&p2["items"])), (200, vec![a2]), "{p2}");
    assert_eq!(ids(&queue("?status=approved").await["items"]), vec![b2]);
    assert_eq!(ids(&queue("?doc_type=business_licence").await["items"]), vec![b1, a1v2]);
    let (s, p) = app.get(&format!("/api/v1/merchant-documents?merchant_id={ma}"), Some(&admin)).await;
    assert_eq!((s, ids(&p["items"])), (200, vec![a2, a1v2]), "{p}");
    assert_eq!(ids(&queue("?from=2999-01-01T00:00:00Z").await["items"]), Vec::<i64>::new());
    assert_eq!(ids(&queue("?to=2000-01-01T00:00:00Z").await["items"]), Vec::<i64>::new());
    assert_eq!(queue("?from=2000-01-01T00:00:00Z&include_total=true").await["total"].as_i64(), Some(3));
    // Search: file name or type; `%` and `_` match literally (as wildcards, `50%_` and `0%_` would
    // also match "500 off licence.pdf").
    let b3 = up(b.clone(), mb, "bank_statement", "10%_fee.pdf").await;
    let p = queue("?search=500").await;
    assert_eq!(ids(&p["items"]), vec![b1], "{p}");
    let p = queue("?search=0%25_").await;
    assert_eq!(ids(&p["items"]), vec![b3], "{p}");
    let p = queue("?search=50%25_").await;
    assert_eq!(ids(&p["items"]), Vec::<i64>::new(), "the superseded `50%_off` version is not in the queue: {p}");
    let p = queue("?search=owner_ident&include_total=true").await;
    assert_eq!((ids(&p["items"]), p["total"].as_i64()), (vec![a2], Some(1)), "{p}");
    let (s, p) = app.get(&format!("/api/v1/merchants/{mb}/documents?search=0%25_"), Some(&b)).await;
    assert_eq!((s, ids(&p)), (200, vec![b3]), "{p}");
    let (s, p) = app.get(&format!("/api/v1/merchants/{mb}/documents?search=0 o"), Some(&admin)).await;
    assert_eq!((s, ids(&p)), (200, vec![b1]), "{p}");
    let (s, p) = app.get(&format!("/api/v1/merchants/{ma}/documents?search=replacement"), Some(&a)).await;
    assert_eq!((s, ids(&p)), (200, vec![a1v2]), "{p}");
    let (s, v) = app.get(&format!("/api/v1/merchants/{ma}/documents/{a1}/versions"), Some(&a)).await;
    assert_eq!((s, ids(&v)), (200, vec![a1, a1v2]), "{v}");
    assert_eq!(v[0]["file_name"].as_str(), Some("50%_off licence.pdf"), "{v}");
    let (s, e) = app.get(&format!("/api/v1/merchants/{ma}/documents?search={}", "z".repeat(101)), Some(&a)).await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("search")), "{e}");

    // Bad input: 422 naming the field, never a 500.
    for (query, field) in [
        ("?status=pending_forever", "status"),
        ("?doc_type=passport", "doc_type"),
        ("?merchant_id=abc", "merchant_id"),
        ("?include_total=maybe", "include_total"),
        ("?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z", "from"),
        ("?limit=0", "limit"),
    ] {
        let (s, e) = app.get(&format!("/api/v1/merchant-documents{query}"), Some(&admin)).await;
        assert_eq!((s, e["error"]["field"].as_str()), (422, Some(field)), "{query}: {e}");
    }
    let long = "x".repeat(10_000);
    let (s, e) = app.get(&format!("/api/v1/merchant-documents?search={long}"), Some(&admin)).await;
    assert!((400..500).contains(&s), "a 10 kB search answers 4xx: {s} {e}");
    let (s, e) = app.get(&format!("/api/v1/merchant-documents?search={}", "y".repeat(101)), Some(&admin)).await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("search")), "{e}");

    // Admin only.
    let (s, e) = app.get("/api/v1/merchant-documents", Some(&a)).await;
    assert_eq!(s, 403, "{e}");
    let (s, _) = app.get("/api/v1/merchant-documents", None).await;
    assert_eq!(s, 401);
}

#[actix_web::test]
async fn reviewers_get_an_email_when_a_document_is_submitted_or_replaced() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    app.admin_create_user(&admin, "reviewer.two@example.com", &["admin"]).await;
    let archived = app.admin_create_user(&admin, "reviewer.gone@example.com", &["admin"]).await;
    let (s, _) = app.post(&format!("/api/v1/users/{archived}/archive"), Some(&admin), json!({})).await;
    assert_eq!(s, 200);
    let (_, owner) = verified(&app, &admin, "mailing.owner@example.com").await;
    let mid = apply(&app, &owner, "Mailing Shop").await;

    let (s, d) = upload(&app, &owner, mid, "business_licence", PDF, "application/pdf").await;
    assert_eq!(s, 201, "{d}");
    for reviewer in [ADMIN_EMAIL, "reviewer.two@example.com"] {
        let mail = app.last_mail(reviewer).await;
        assert_eq!(mail["subject"], "Document submitted for review: Mailing Shop", "{reviewer}: {mail}");
        let text = mail["text"].as_str().unwrap();
        assert!(text.contains("business_licence") && text.contains("doc.pdf"), "{text}");
    }
    // An archived admin gets nothing; neither does the merchant for its own submission.
    let mut conn = app.db();
    let to_archived = crate::common::merchant::scalar(
        &mut conn,
        "SELECT count(*) AS n FROM email_jobs WHERE to_address = 'reviewer.gone@example.com'",
    );
    assert_eq!(to_archived, 0);

    let (s, v2) = replace(&app, &owner, mid, d["id"].as_i64().unwrap(), PNG, "image/png").await;
    assert_eq!(s, 201, "{v2}");
    let mail = app.last_mail("reviewer.two@example.com").await;
    assert_eq!(mail["subject"], "Document replaced for review: Mailing Shop", "{mail}");
    assert!(mail["text"].as_str().unwrap().contains("version 2"), "{mail}");

    // The merchant's e-mail on review stays.
    let (s, _) = review(&app, &admin, mid, v2["id"].as_i64().unwrap(), "approve").await;
    assert_eq!(s, 200);
    let mail = app.last_mail("shop@example.com").await;
    assert_eq!(mail["subject"], "Document approved for Mailing Shop", "{mail}");
}
