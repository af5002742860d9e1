//! The notifier: the event consumer that turns events into e-mail jobs. For each event it records
//! the dedupe row and the jobs in one transaction, so a redelivered event (consumer crash between
//! processing and ack, relay republishing after a broker outage) queues nothing twice. Recipients
//! are read from the database (current address), never trusted from a broker message alone.
//!
//! E-mails that carry secrets (verification code, reset token) are not made here: identity queues
//! them itself (see `notify::jobs`), and their events (`user.registered`, `password.reset_requested`)
//! carry no secret.

use std::sync::Arc;

use async_trait::async_trait;
use diesel::prelude::*;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::events::consumer::claim_event;
use crate::events::{Envelope, Handled, Handler, HandlerError, NOTIFIER};
use crate::notify::jobs::{enqueue, NewMailJob};
use crate::storage::schema::{cards, merchants, users};
use crate::storage::{self, PgPool};

pub struct Notifier {
    db: PgPool,
    wake: Arc<Notify>,
}

impl Notifier {
    pub fn new(db: PgPool, wake: Arc<Notify>) -> Self {
        Self { db, wake }
    }
}

#[async_trait]
impl Handler for Notifier {
    async fn handle(&self, event: &Envelope) -> Result<Handled, HandlerError> {
        let ev = event.clone();
        let (handled, queued) = storage::transaction(&self.db, move |conn| {
            if !claim_event(conn, NOTIFIER, ev.id)? {
                return Ok((Handled::Duplicate, 0));
            }
            let jobs = plan(conn, &ev)?;
            let mut queued = 0;
            for job in &jobs {
                if enqueue(conn, job)? {
                    queued += 1;
                }
            }
            Ok::<_, HandlerError>((Handled::Processed, queued))
        })
        .await?;
        if queued > 0 {
            self.wake.notify_one();
        }
        Ok(handled)
    }
}

/// A recipient: address and the name to greet.
struct To {
    email: String,
    name: String,
}

fn user(conn: &mut PgConnection, id: i64) -> QueryResult<Option<To>> {
    let row: Option<(String, String, Option<chrono::DateTime<chrono::Utc>>)> =
        users::table.find(id).select((users::email, users::first_name, users::archived_at)).first(conn).optional()?;
    Ok(row.filter(|r| r.2.is_none()).map(|(email, name, _)| To { email, name }))
}

/// A card's owner and its masked number.
fn card(conn: &mut PgConnection, id: i64) -> QueryResult<Option<(i64, String)>> {
    cards::table.find(id).select((cards::user_id, cards::pan_masked)).first(conn).optional()
}

struct Merchant {
    name: String,
    contact: String,
    owner_id: i64,
}

fn merchant(conn: &mut PgConnection, id: i64) -> QueryResult<Option<Merchant>> {
    let row: Option<(String, String, i64)> = merchants::table
        .find(id)
        .select((merchants::business_name, merchants::contact_email, merchants::owner_id))
        .first(conn)
        .optional()?;
    Ok(row.map(|(name, contact, owner_id)| Merchant { name, contact, owner_id }))
}

fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

fn text<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| v.get(*k).and_then(Value::as_str))
}

/// A field of a merchant event: its `details` object first (the change itself), then the top level
/// (the merchant as it is after the change).
fn detail<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    v.get("details").and_then(|d| text(d, keys)).or_else(|| text(v, keys))
}

/// The id in an aggregate key such as `merchant:42`.
fn key_id(event: &Envelope, prefix: &str) -> Option<i64> {
    event.aggregate_key.strip_prefix(prefix).and_then(|s| s.strip_prefix(':')).and_then(|s| s.parse().ok())
}

fn job(event: &Envelope, kind: &str, to: &To, mut context: Value) -> NewMailJob {
    if let Some(obj) = context.as_object_mut() {
        obj.insert("name".into(), json!(to.name));
    }
    NewMailJob {
        dedupe_key: format!("{}:{kind}:{}", event.id, to.email),
        event_id: Some(event.id),
        template: kind.to_owned(),
        to_address: to.email.clone(),
        context,
        sensitive: false,
    }
}

fn reject(event: &Envelope, what: &str) -> HandlerError {
    HandlerError::Reject(format!("{} {}: payload has no {what}", event.event_type, event.id))
}

/// The e-mails an event causes (possibly none).
fn plan(conn: &mut PgConnection, event: &Envelope) -> Result<Vec<NewMailJob>, HandlerError> {
    let p = &event.payload;
    let mut out = Vec::new();
    match event.event_type.as_str() {
        "user.verified" | "password.changed" => {
            let uid = int(p, "user_id").or_else(|| key_id(event, "user")).ok_or_else(|| reject(event, "user_id"))?;
            if let Some(to) = user(conn, uid)? {
                let kind = if event.event_type == "user.verified" { "email_verified" } else { "password_changed" };
                out.push(job(event, kind, &to, json!({ "via": text(p, &["via"]).unwrap_or("change") })));
            }
        }
        "topup.completed"
        | "withdrawal.completed"
        | "transfer.completed"
        | "payment.completed"
        | "refund.completed" => {
            let op = p.get("operation").ok_or_else(|| reject(event, "operation"))?;
            money(conn, event, op, &mut out)?;
        }
        "merchant.applied" | "merchant.status_changed" | "document.reviewed" => {
            let mid = int(p, "merchant_id")
                .or_else(|| key_id(event, "merchant"))
                .ok_or_else(|| reject(event, "merchant_id"))?;
            let Some(m) = merchant(conn, mid)? else { return Ok(out) };
            let name = text(p, &["business_name"]).map_or(m.name, str::to_owned);
            let to = To { email: text(p, &["contact_email"]).map_or(m.contact, str::to_owned), name: name.clone() };
            let (kind, ctx) = match event.event_type.as_str() {
                "merchant.applied" => ("merchant_applied", json!({ "merchant": name })),
                "merchant.status_changed" => (
                    "merchant_status",
                    json!({
                        "merchant": name,
                        "old_status": detail(p, &["old_status", "from", "previous_status"]),
                        "new_status": detail(p, &["new_status", "to", "status"]).ok_or_else(|| reject(event, "new_status"))?,
                        "reason": detail(p, &["reason", "status_reason"]),
                    }),
                ),
                _ => (
                    "document_reviewed",
                    json!({
                        "merchant": name,
                        "doc_type": detail(p, &["doc_type"]),
                        "status": detail(p, &["status", "decision"]).ok_or_else(|| reject(event, "status"))?,
                        "note": detail(p, &["note", "review_note"]),
                    }),
                ),
            };
            out.push(job(event, kind, &to, ctx));
        }
        "webhook_endpoint.disabled" => {
            let mid = int(p, "merchant_id")
                .or_else(|| key_id(event, "merchant"))
                .ok_or_else(|| reject(event, "merchant_id"))?;
            let Some(m) = merchant(conn, mid)? else { return Ok(out) };
            if let Some(owner) = user(conn, m.owner_id)? {
                let ctx = json!({ "merchant": m.name, "url": text(p, &["url"]), "failures": int(p, "failures") });
                out.push(job(event, "webhook_disabled", &owner, ctx));
            }
        }
        // Everything else is not e-mailed (cards, failures, reversals, identity events whose e-mail
        // carries a secret and is queued by identity itself).
        _ => {}
    }
    Ok(out)
}

/// Receipts for a completed money operation.
fn money(conn: &mut PgConnection, event: &Envelope, op: &Value, out: &mut Vec<NewMailJob>) -> Result<(), HandlerError> {
    let amount = int(op, "amount").ok_or_else(|| reject(event, "operation.amount"))?;
    let base = json!({
        "amount": amount,
        "currency": text(op, &["currency"]).unwrap_or(""),
        "method": text(op, &["method"]),
        "operation_id": text(op, &["id"]).unwrap_or(""),
        "order_ref": text(op, &["order_ref"]),
    });
    let with = |extra: Value| {
        let mut ctx = base.clone();
        if let (Some(c), Some(e)) = (ctx.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        ctx
    };
    let src = match int(op, "source_card_id") {
        Some(id) => card(conn, id)?,
        None => None,
    };
    let dst = match int(op, "dest_card_id") {
        Some(id) => card(conn, id)?,
        None => None,
    };
    let merchant = match int(op, "merchant_id") {
        Some(id) => merchant(conn, id)?,
        None => None,
    };
    let masked = |c: &Option<(i64, String)>| c.as_ref().map(|(_, m)| m.clone()).unwrap_or_default();
    let kind =
        op.get("kind").and_then(Value::as_str).unwrap_or_else(|| event.event_type.split('.').next().unwrap_or(""));
    match kind {
        "topup" | "withdrawal" => {
            let c = if kind == "topup" { &dst } else { &src };
            if let Some((owner, m)) = c {
                if let Some(to) = user(conn, *owner)? {
                    out.push(job(event, kind, &to, with(json!({ "card": m }))));
                }
            }
        }
        "transfer" => {
            if let Some((owner, m)) = &src {
                if let Some(to) = user(conn, *owner)? {
                    out.push(job(event, "transfer_sent", &to, with(json!({ "card": m, "counterpart": masked(&dst) }))));
                }
            }
            if let Some((owner, m)) = &dst {
                if let Some(to) = user(conn, *owner)? {
                    let ctx = with(json!({ "card": m, "counterpart": masked(&src) }));
                    out.push(job(event, "transfer_received", &to, ctx));
                }
            }
        }
        "payment" | "refund" => {
            // Payment: the customer's card is the source; refund: the destination.
            let customer = if kind == "payment" { &src } else { &dst };
            let mname = merchant.as_ref().map(|m| m.name.clone()).unwrap_or_else(|| "the merchant".into());
            if let Some((owner, m)) = customer {
                if let Some(to) = user(conn, *owner)? {
                    let ctx = with(json!({ "card": m, "merchant": mname }));
                    out.push(job(event, &format!("{kind}_customer"), &to, ctx));
                }
            }
            if let Some(m) = &merchant {
                let to = To { email: m.contact.clone(), name: m.name.clone() };
                let ctx = with(json!({ "card": masked(customer), "merchant": m.name }));
                out.push(job(event, &format!("{kind}_merchant"), &to, ctx));
            }
        }
        _ => {}
    }
    Ok(())
}
