//! The notifier: the event consumer that turns events into e-mail jobs. For each event it records
//! the dedupe row and the jobs in one transaction, so a redelivered event (consumer crash between
//! processing and ack, relay republishing after a broker outage) queues nothing twice. Recipients
//! are read from the database (current address), never trusted from a broker message alone.
//!
//! E-mails that carry secrets (verification code, reset token) are not made here: identity queues
//! them itself (see `notify::jobs`), and their events (`user.registered`, `password.reset_requested`)
//! carry no secret.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use diesel::prelude::*;
use serde_json::{json, Value};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::events::broker::one_by_one;
use crate::events::consumer::{claim_event, claim_events};
use crate::events::{Envelope, Handled, Handler, HandlerError, NOTIFIER};
use crate::notify::jobs::{enqueue_all, NewMailJob};
use crate::notify::preferences::{self, MoneyMail, Preferences};
use crate::storage::schema::{cards, merchants, roles, user_roles, users};

/// At most this many reviewers get the "document submitted" e-mail (the admins, oldest accounts first).
const MAX_REVIEWERS: i64 = 50;
use crate::storage::{self, PgPool};

pub struct Notifier {
    db: PgPool,
    wake: Arc<Notify>,
    /// What users who never chose get (`notifications.*`).
    defaults: Preferences,
}

impl Notifier {
    pub fn new(db: PgPool, wake: Arc<Notify>, defaults: Preferences) -> Self {
        Self { db, wake, defaults }
    }
}

#[async_trait]
impl Handler for Notifier {
    async fn handle(&self, event: &Envelope) -> Result<Handled, HandlerError> {
        let (ev, defaults) = (event.clone(), self.defaults);
        let (handled, queued) = storage::transaction(&self.db, move |conn| {
            let jobs = plan(&mut Directory::new(conn, defaults), &ev)?;
            // An event that sends nothing (opted out, nothing e-mailed for its type) writes nothing,
            // not even its dedupe row: handling it again is as free as handling it once.
            if jobs.is_empty() {
                return Ok((Handled::Processed, 0));
            }
            if !claim_event(conn, NOTIFIER, ev.id)? {
                return Ok((Handled::Duplicate, 0));
            }
            Ok::<_, HandlerError>((Handled::Processed, enqueue_all(conn, &jobs)?))
        })
        .await?;
        if queued > 0 {
            self.wake.notify_one();
        }
        Ok(handled)
    }

    /// The whole batch in one transaction and a handful of statements: recipients preloaded, every
    /// event planned first (reads only, so a rejected event leaves no dedupe row and its neighbours
    /// still commit), then one insert of the dedupe rows and one of the jobs — events that send nothing
    /// get no dedupe row (see [`Handler::handle`]). Any database error rolls
    /// the batch back and it is handled event by event instead, which isolates the failing one.
    async fn handle_batch(&self, events: &[Envelope]) -> Vec<Result<Handled, HandlerError>> {
        if events.len() < 2 {
            return one_by_one(self, events).await;
        }
        let (evs, defaults) = (events.to_vec(), self.defaults);
        let batch = storage::transaction(&self.db, move |conn| {
            let planned: Vec<Result<Vec<NewMailJob>, HandlerError>> = {
                let mut dir = Directory::new(conn, defaults);
                dir.preload(&evs)?;
                evs.iter().map(|ev| plan(&mut dir, ev)).collect()
            };
            if let Some(Err(retry)) = planned.iter().find(|p| matches!(p, Err(HandlerError::Retry(_)))) {
                return Err(retry.clone());
            }
            let ids: Vec<Uuid> = evs
                .iter()
                .zip(&planned)
                .filter(|(_, p)| p.as_ref().is_ok_and(|js| !js.is_empty()))
                .map(|(e, _)| e.id)
                .collect();
            let claimed = claim_events(conn, NOTIFIER, &ids)?;
            let mut jobs = Vec::new();
            let mut out = Vec::with_capacity(evs.len());
            for (ev, p) in evs.iter().zip(planned) {
                match p {
                    Err(reject) => out.push(Err(reject)),
                    Ok(js) if js.is_empty() => out.push(Ok(Handled::Processed)),
                    Ok(js) if claimed.contains(&ev.id) => {
                        jobs.extend(js);
                        out.push(Ok(Handled::Processed));
                    }
                    Ok(_) => out.push(Ok(Handled::Duplicate)),
                }
            }
            Ok::<_, HandlerError>((out, enqueue_all(conn, &jobs)?))
        })
        .await;
        match batch {
            Ok((out, queued)) => {
                if queued > 0 {
                    self.wake.notify_one();
                }
                out
            }
            Err(e) => {
                tracing::debug!(error = %e, events = events.len(), "notifier batch failed; handling its events one by one");
                one_by_one(self, events).await
            }
        }
    }
}

/// A recipient: address and the name to greet.
#[derive(Clone)]
struct To {
    email: String,
    name: String,
}

#[derive(Clone)]
struct Merchant {
    name: String,
    contact: String,
    owner_id: i64,
}

/// The recipients' side of the database, as the notifier reads it: users (with their notification
/// preferences), cards and merchants by id, each read at most once per batch ([`Directory::preload`]
/// reads a whole batch's in four queries instead of several per event).
struct Directory<'c> {
    conn: &'c mut PgConnection,
    users: HashMap<i64, Option<To>>,
    cards: HashMap<i64, Option<(i64, String)>>,
    merchants: HashMap<i64, Option<Merchant>>,
    /// Preferences by user; `None`: the user never chose (the defaults apply).
    prefs: HashMap<i64, Option<Preferences>>,
    defaults: Preferences,
    /// The document reviewers, read once per batch.
    reviewers: Option<Vec<To>>,
}

impl<'c> Directory<'c> {
    fn new(conn: &'c mut PgConnection, defaults: Preferences) -> Self {
        Self {
            conn,
            users: HashMap::new(),
            cards: HashMap::new(),
            merchants: HashMap::new(),
            prefs: HashMap::new(),
            defaults,
            reviewers: None,
        }
    }

    /// Whether `user` wants a money notification of `kind` for `amount`.
    fn wants(&mut self, user: i64, kind: MoneyMail, amount: i64) -> QueryResult<bool> {
        let p = match self.prefs.get(&user) {
            Some(p) => *p,
            None => {
                let p = preferences::load(self.conn, &[user])?.remove(&user);
                self.prefs.insert(user, p);
                p
            }
        };
        Ok(p.unwrap_or(self.defaults).wants(kind, amount))
    }

    /// Reads every card, merchant and user the events name, in one query per table.
    fn preload(&mut self, events: &[Envelope]) -> QueryResult<()> {
        let (mut card_ids, mut merchant_ids, mut user_ids) = (Vec::new(), Vec::new(), Vec::new());
        for ev in events {
            let p = &ev.payload;
            let op = p.get("operation").unwrap_or(p);
            card_ids.extend([int(op, "source_card_id"), int(op, "dest_card_id")].into_iter().flatten());
            merchant_ids
                .extend([int(op, "merchant_id"), int(p, "merchant_id"), key_id(ev, "merchant")].into_iter().flatten());
            user_ids.extend([int(p, "user_id"), key_id(ev, "user")].into_iter().flatten());
        }
        for ids in [&mut card_ids, &mut merchant_ids] {
            ids.sort_unstable();
            ids.dedup();
        }
        let cards: Vec<(i64, i64, String)> = cards::table
            .filter(cards::id.eq_any(&card_ids))
            .select((cards::id, cards::user_id, cards::pan_masked))
            .load(self.conn)?;
        let merchants: Vec<(i64, String, String, i64)> = merchants::table
            .filter(merchants::id.eq_any(&merchant_ids))
            .select((merchants::id, merchants::business_name, merchants::contact_email, merchants::owner_id))
            .load(self.conn)?;
        user_ids.extend(cards.iter().map(|c| c.1));
        user_ids.extend(merchants.iter().map(|m| m.3));
        user_ids.sort_unstable();
        user_ids.dedup();
        let users: Vec<(i64, String, String, Option<chrono::DateTime<chrono::Utc>>)> = users::table
            .filter(users::id.eq_any(&user_ids))
            .select((users::id, users::email, users::first_name, users::archived_at))
            .load(self.conn)?;
        let mut prefs = preferences::load(self.conn, &user_ids)?;
        self.prefs.extend(user_ids.iter().map(|id| (*id, prefs.remove(id))));
        // Ids asked for and not found are remembered as absent too.
        self.cards.extend(card_ids.iter().map(|id| (*id, None)));
        self.cards.extend(cards.into_iter().map(|(id, owner, masked)| (id, Some((owner, masked)))));
        self.merchants.extend(merchant_ids.iter().map(|id| (*id, None)));
        self.merchants.extend(
            merchants.into_iter().map(|(id, name, contact, owner_id)| (id, Some(Merchant { name, contact, owner_id }))),
        );
        self.users.extend(user_ids.iter().map(|id| (*id, None)));
        self.users.extend(
            users.into_iter().filter(|u| u.3.is_none()).map(|(id, email, name, _)| (id, Some(To { email, name }))),
        );
        Ok(())
    }

    /// An active (not archived) user.
    fn user(&mut self, id: i64) -> QueryResult<Option<To>> {
        if let Some(u) = self.users.get(&id) {
            return Ok(u.clone());
        }
        let row: Option<(String, String, Option<chrono::DateTime<chrono::Utc>>)> = users::table
            .find(id)
            .select((users::email, users::first_name, users::archived_at))
            .first(self.conn)
            .optional()?;
        let to = row.filter(|r| r.2.is_none()).map(|(email, name, _)| To { email, name });
        self.users.insert(id, to.clone());
        Ok(to)
    }

    /// A card's owner and its masked number.
    fn card(&mut self, id: i64) -> QueryResult<Option<(i64, String)>> {
        if let Some(c) = self.cards.get(&id) {
            return Ok(c.clone());
        }
        let c: Option<(i64, String)> =
            cards::table.find(id).select((cards::user_id, cards::pan_masked)).first(self.conn).optional()?;
        self.cards.insert(id, c.clone());
        Ok(c)
    }

    /// The reviewers of merchant documents: every active (not archived) user holding the admin role.
    fn reviewers(&mut self) -> QueryResult<Vec<To>> {
        if let Some(r) = &self.reviewers {
            return Ok(r.clone());
        }
        let rows: Vec<(String, String)> = users::table
            .inner_join(user_roles::table.on(user_roles::user_id.eq(users::id)))
            .inner_join(roles::table.on(roles::id.eq(user_roles::role_id)))
            .filter(roles::name.eq(crate::identity::model::ROLE_ADMIN))
            .filter(users::archived_at.is_null())
            .select((users::email, users::first_name))
            .order(users::id.asc())
            .limit(MAX_REVIEWERS)
            .load(self.conn)?;
        let reviewers: Vec<To> = rows.into_iter().map(|(email, name)| To { email, name }).collect();
        self.reviewers = Some(reviewers.clone());
        Ok(reviewers)
    }

    fn merchant(&mut self, id: i64) -> QueryResult<Option<Merchant>> {
        if let Some(m) = self.merchants.get(&id) {
            return Ok(m.clone());
        }
        let row: Option<(String, String, i64)> = merchants::table
            .find(id)
            .select((merchants::business_name, merchants::contact_email, merchants::owner_id))
            .first(self.conn)
            .optional()?;
        let m = row.map(|(name, contact, owner_id)| Merchant { name, contact, owner_id });
        self.merchants.insert(id, m.clone());
        Ok(m)
    }
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
fn plan(dir: &mut Directory<'_>, event: &Envelope) -> Result<Vec<NewMailJob>, HandlerError> {
    let p = &event.payload;
    let mut out = Vec::new();
    match event.event_type.as_str() {
        "user.verified" | "password.changed" => {
            let uid = int(p, "user_id").or_else(|| key_id(event, "user")).ok_or_else(|| reject(event, "user_id"))?;
            if let Some(to) = dir.user(uid)? {
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
            money(dir, event, op, &mut out)?;
        }
        "merchant.applied" | "merchant.status_changed" | "document.reviewed" => {
            let mid = int(p, "merchant_id")
                .or_else(|| key_id(event, "merchant"))
                .ok_or_else(|| reject(event, "merchant_id"))?;
            let Some(m) = dir.merchant(mid)? else { return Ok(out) };
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
        "document.submitted" | "document.replaced" => {
            // To the reviewers (the admins), so a document waiting for review does not go unnoticed.
            let mid = int(p, "merchant_id")
                .or_else(|| key_id(event, "merchant"))
                .ok_or_else(|| reject(event, "merchant_id"))?;
            let Some(m) = dir.merchant(mid)? else { return Ok(out) };
            let name = text(p, &["business_name"]).map_or(m.name, str::to_owned);
            let details = p.get("details").unwrap_or(p);
            let ctx = json!({
                "merchant": name,
                "merchant_id": mid,
                "doc_type": detail(p, &["doc_type"]),
                "file_name": detail(p, &["file_name"]),
                "document_id": int(details, "document_id"),
                "version": int(details, "version").unwrap_or(1),
                "replaced": event.event_type == "document.replaced",
            });
            for to in dir.reviewers()? {
                out.push(job(event, "document_submitted", &to, ctx.clone()));
            }
        }
        "webhook_endpoint.disabled" => {
            let mid = int(p, "merchant_id")
                .or_else(|| key_id(event, "merchant"))
                .ok_or_else(|| reject(event, "merchant_id"))?;
            let Some(m) = dir.merchant(mid)? else { return Ok(out) };
            if let Some(owner) = dir.user(m.owner_id)? {
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
fn money(dir: &mut Directory<'_>, event: &Envelope, op: &Value, out: &mut Vec<NewMailJob>) -> Result<(), HandlerError> {
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
        Some(id) => dir.card(id)?,
        None => None,
    };
    let dst = match int(op, "dest_card_id") {
        Some(id) => dir.card(id)?,
        None => None,
    };
    let merchant = match int(op, "merchant_id") {
        Some(id) => dir.merchant(id)?,
        None => None,
    };
    let masked = |c: &Option<(i64, String)>| c.as_ref().map(|(_, m)| m.clone()).unwrap_or_default();
    let kind =
        op.get("kind").and_then(Value::as_str).unwrap_or_else(|| event.event_type.split('.').next().unwrap_or(""));
    match kind {
        "topup" | "withdrawal" => {
            let (c, pref) = if kind == "topup" { (&dst, MoneyMail::Topup) } else { (&src, MoneyMail::Withdrawal) };
            if let Some((owner, m)) = c {
                if !dir.wants(*owner, pref, amount)? {
                    return Ok(());
                }
                if let Some(to) = dir.user(*owner)? {
                    out.push(job(event, kind, &to, with(json!({ "card": m }))));
                }
            }
        }
        "transfer" => {
            if let Some((owner, m)) = &src {
                if dir.wants(*owner, MoneyMail::Transfer, amount)? {
                    if let Some(to) = dir.user(*owner)? {
                        let ctx = with(json!({ "card": m, "counterpart": masked(&dst) }));
                        out.push(job(event, "transfer_sent", &to, ctx));
                    }
                }
            }
            if let Some((owner, m)) = &dst {
                if dir.wants(*owner, MoneyMail::Transfer, amount)? {
                    if let Some(to) = dir.user(*owner)? {
                        let ctx = with(json!({ "card": m, "counterpart": masked(&src) }));
                        out.push(job(event, "transfer_received", &to, ctx));
                    }
                }
            }
        }
        "payment" | "refund" => {
            // Payment: the customer's card is the source; refund: the destination. The merchant's
            // copy goes to its contact address and is not a user's choice.
            let customer = if kind == "payment" { &src } else { &dst };
            let mname = merchant.as_ref().map(|m| m.name.clone()).unwrap_or_else(|| "the merchant".into());
            if let Some((owner, m)) = customer {
                if dir.wants(*owner, MoneyMail::Payment, amount)? {
                    if let Some(to) = dir.user(*owner)? {
                        let ctx = with(json!({ "card": m, "merchant": mname }));
                        out.push(job(event, &format!("{kind}_customer"), &to, ctx));
                    }
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
