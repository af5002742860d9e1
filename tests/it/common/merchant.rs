//! Helpers for the merchant tests (storm, authorization): onboarding to `active`, API keys, customer
//! cards with their secrets, payment bodies, CVVs for changed expiry dates, and database snapshots of
//! merchant operations.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use serde_json::{json, Value};

use payd::config::Settings;

use super::{TestApp, PASSWORD};

pub const PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n";
pub const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00";

/// Test settings with documents stored in a fresh temporary directory, and database connections
/// without TLS. (The local PostgreSQL has `ssl = on`, so libpq gives every thread that connects its
/// own OpenSSL state; a pool thread exiting while `exit()` runs `OPENSSL_cleanup` then crashes the
/// test binary after the tests passed — "double free or corruption" / SIGSEGV.)
pub fn merchant_settings() -> Settings {
    let mut s = super::settings();
    let url = s.database.url.expose().to_owned();
    let sep = if url.contains('?') { '&' } else { '?' };
    s.database.url = payd::config::Secret::new(format!("{url}{sep}sslmode=disable"));
    s.merchants.document_dir =
        std::env::temp_dir().join(format!("payd-docs-{}", uuid::Uuid::new_v4())).display().to_string();
    s
}

/// A verified user created through the admin API; returns (user id, access token).
pub async fn verified(app: &TestApp, admin: &str, email: &str) -> (i64, String) {
    let id = app.admin_create_user(admin, email, &["user"]).await;
    let (s, b) = app.login(email, PASSWORD).await;
    assert_eq!(s, 200, "login {email}: {b}");
    (id, b["access_token"].as_str().unwrap().to_owned())
}

/// Uploads a document (multipart); returns (status, body).
pub async fn upload(
    app: &TestApp,
    token: &str,
    merchant: i64,
    doc_type: &str,
    bytes: &[u8],
    mime: &str,
) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(bytes.to_vec()).file_name("doc.pdf").mime_str(mime).unwrap();
    let form = reqwest::multipart::Form::new().text("doc_type", doc_type.to_owned()).part("file", part);
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/merchants/{merchant}/documents")))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Applies; returns the pending merchant's id.
pub async fn apply(app: &TestApp, owner: &str, name: &str) -> i64 {
    let (s, m) = app
        .post(
            "/api/v1/merchants",
            Some(owner),
            json!({"business_name": name, "contact_email": "shop@example.com", "category": "retail"}),
        )
        .await;
    assert_eq!(s, 201, "apply: {m}");
    assert_eq!(m["status"], "pending");
    m["id"].as_i64().unwrap()
}

/// Uploads every required document (as PDF) and has the admin approve each; returns the document ids.
pub async fn approved_documents(app: &TestApp, admin: &str, owner: &str, merchant: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    for doc_type in app.settings.merchants.required_documents.clone() {
        let (s, d) = upload(app, owner, merchant, &doc_type, PDF, "application/pdf").await;
        assert_eq!(s, 201, "upload {doc_type}: {d}");
        let id = d["id"].as_i64().unwrap();
        let (s, r) = app
            .post(
                &format!("/api/v1/merchants/{merchant}/documents/{id}/review"),
                Some(admin),
                json!({"decision": "approve"}),
            )
            .await;
        assert_eq!((s, r["status"].as_str()), (200, Some("approved")), "{r}");
        ids.push(id);
    }
    ids
}

/// An admin decision; returns (status, body).
pub async fn decide(app: &TestApp, token: &str, merchant: i64, action: &str, reason: Option<&str>) -> (u16, Value) {
    let body = reason.map_or_else(|| json!({}), |r| json!({"reason": r}));
    app.post(&format!("/api/v1/merchants/{merchant}/{action}"), Some(token), body).await
}

/// Applies, gets the documents approved and the merchant approved; returns its id.
pub async fn active_merchant(app: &TestApp, admin: &str, owner: &str, name: &str) -> i64 {
    let id = apply(app, owner, name).await;
    approved_documents(app, admin, owner, id).await;
    let (s, m) = decide(app, admin, id, "approve", None).await;
    assert_eq!((s, m["status"].as_str()), (200, Some("active")), "approve: {m}");
    id
}

/// Creates an API key; returns (key row id, full key).
pub async fn create_key(app: &TestApp, owner: &str, merchant: i64, label: &str) -> (i64, String) {
    let (s, k) =
        app.post(&format!("/api/v1/merchants/{merchant}/api-keys"), Some(owner), json!({"label": label})).await;
    assert_eq!(s, 201, "create key: {k}");
    (k["key"]["id"].as_i64().unwrap(), k["api_key"].as_str().unwrap().to_owned())
}

/// A request with `X-Api-Key` and `Idempotency-Key`; returns (status, body).
pub async fn keyed(
    app: &TestApp,
    method: &str,
    path: &str,
    api_key: &str,
    idem: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (s, _, b) = app.call_full(method, path, None, body, &[("X-Api-Key", api_key), ("Idempotency-Key", idem)]).await;
    (s, b)
}

/// A customer card with the secrets shown at issue.
#[derive(Debug, Clone)]
pub struct TestCard {
    pub id: i64,
    pub number: String,
    pub cvv: String,
    pub month: i32,
    pub year: i32,
}

impl TestCard {
    /// A payment body with this card's details.
    pub fn pay(&self, order_ref: &str, amount: i64) -> Value {
        json!({"card_number": self.number, "expiry_month": self.month, "expiry_year": self.year, "cvv": self.cvv,
               "amount": amount, "method": "visa", "order_ref": order_ref})
    }

    /// A CVV that is certainly wrong.
    pub fn wrong_cvv(&self) -> String {
        let d = self.cvv.as_bytes()[0] - b'0';
        format!("{}{}", (d + 1) % 10, &self.cvv[1..])
    }
}

/// Issues a visa debit card; returns it with its number and CVV.
pub async fn issue_card(app: &TestApp, token: &str) -> TestCard {
    let (s, c) = app.post("/api/v1/cards", Some(token), json!({"card_type": "debit", "brand": "visa"})).await;
    assert_eq!(s, 201, "issue card: {c}");
    TestCard {
        id: c["card"]["id"].as_i64().unwrap(),
        number: c["card_number"].as_str().unwrap().to_owned(),
        cvv: c["cvv"].as_str().unwrap().to_owned(),
        month: i32::try_from(c["card"]["expiry_month"].as_i64().unwrap()).unwrap(),
        year: i32::try_from(c["card"]["expiry_year"].as_i64().unwrap()).unwrap(),
    }
}

/// Tops a card up.
pub async fn topup(app: &TestApp, token: &str, card: i64, amount: i64) {
    let idem = format!("fund-{}", uuid::Uuid::new_v4().simple());
    let (s, _, b) = app
        .call_full(
            "POST",
            "/api/v1/topups",
            Some(token),
            Some(json!({"card_id": card, "amount": amount, "method": "bca"})),
            &[("Idempotency-Key", idem.as_str())],
        )
        .await;
    assert_eq!(s, 201, "top-up: {b}");
}

/// Moves a card's expiry date directly in the database and returns the CVV that now belongs to it
/// (the CVV is derived from PAN + expiry).
pub fn set_expiry(app: &TestApp, card: &mut TestCard, month: i32, year: i32) {
    let mut conn = app.db();
    let n = diesel::sql_query("UPDATE cards SET expiry_month = $1, expiry_year = $2 WHERE id = $3")
        .bind::<diesel::sql_types::Integer, _>(month)
        .bind::<diesel::sql_types::Integer, _>(year)
        .bind::<BigInt, _>(card.id)
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 1);
    let pan = payd::cards::pan::Pan::parse(&card.number).unwrap();
    card.cvv = payd::cards::pan::cvv(app.settings.cards.cvv_key.expose(), &pan, month, year, 3);
    card.month = month;
    card.year = year;
}

/// A merchant-related operation row, with its posting count.
#[derive(Debug, Clone, QueryableByName)]
pub struct MOp {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub failure_reason: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub amount: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub merchant_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub api_key_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub order_ref: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub reverses_id: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub source_card_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub dest_card_id: Option<i64>,
    #[diesel(sql_type = BigInt)]
    pub postings: i64,
}

/// Every operation by id.
pub fn all_ops(conn: &mut PgConnection) -> HashMap<String, MOp> {
    let rows: Vec<MOp> = diesel::sql_query(
        "SELECT o.id::text AS id, o.kind, o.status, o.failure_reason, o.amount, o.merchant_id, o.api_key_id, o.order_ref, \
                o.reverses_id::text AS reverses_id, o.source_card_id, o.dest_card_id, \
                (SELECT count(*) FROM postings p WHERE p.operation_id = o.id) AS postings \
         FROM operations o",
    )
    .load(conn)
    .unwrap();
    rows.into_iter().map(|o| (o.id.clone(), o)).collect()
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A query returning one bigint `n`.
pub fn scalar(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<N>(conn).unwrap().n
}

/// A merchant account's stored balance.
pub fn merchant_balance(conn: &mut PgConnection, merchant: i64) -> i64 {
    scalar(
        conn,
        &format!(
            "SELECT a.balance AS n FROM merchants m JOIN accounts a ON a.id = m.account_id WHERE m.id = {merchant}"
        ),
    )
}

/// A card account's stored balance.
pub fn card_balance(conn: &mut PgConnection, card: i64) -> i64 {
    scalar(
        conn,
        &format!("SELECT a.balance AS n FROM cards c JOIN accounts a ON a.id = c.account_id WHERE c.id = {card}"),
    )
}
