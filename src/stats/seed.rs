//! `payd seed --months N --operations M`: months of demo history so the statistics and dashboards
//! show something on a fresh machine — cards for the demo users, active merchants with API keys,
//! then top-ups, withdrawals, transfers, payments, refunds, reversals and failed attempts spread
//! over the months, written in bulk (arrays through `unnest`, thousands of rows per statement) with
//! a progress bar, then the statistics rebuilt.
//!
//! The history is simulated in memory in time order with the ledger's rules (no card or merchant
//! account below zero, refunds within their payment, one reversal per operation), so the result is
//! a valid ledger: postings balance, running balances continue, `payd verify` holds. It writes
//! directly, not through the actors: run it on a platform that is not serving traffic.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::app::AppState;
use crate::cards::pan;
use crate::identity::model;
use crate::storage::StorageError;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct HistoryPlan {
    pub months: u32,
    pub operations: u64,
    pub cards_per_user: u32,
    pub merchants: u32,
}

#[derive(Clone)]
struct Op {
    id: uuid::Uuid,
    kind: &'static str,
    failure: Option<&'static str>,
    amount: i64,
    method: Option<&'static str>,
    source_card: Option<i64>,
    dest_card: Option<i64>,
    debit: i64,
    credit: i64,
    reverses: Option<uuid::Uuid>,
    merchant: Option<i64>,
    api_key: Option<i64>,
    order_ref: Option<String>,
    at: DateTime<Utc>,
}

/// A successful payment that can still be refunded.
#[derive(Clone, Copy)]
struct Payable {
    id: uuid::Uuid,
    card_account: i64,
    card: usize,
    merchant: usize,
    remaining: i64,
    method: &'static str,
    key: i64,
}

struct Card {
    id: i64,
    account: i64,
}

struct Merchant {
    id: i64,
    account: i64,
    keys: Vec<i64>,
}

const TOPUP_METHODS: &[&str] = &["bca", "mandiri", "ovo", "gopay", "dana", "alfamart"];
const PAY_METHODS: &[&str] = &["visa", "mastercard", "paypal"];
const CHUNK: usize = 10_000;

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct Balance {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    balance: i64,
}

/// Creates cards and merchants, then `plan.operations` operations over `plan.months` months.
///
/// # Errors
/// When the database cannot be written (nothing of a failed chunk is kept; earlier chunks are).
pub async fn history(state: &AppState, plan: HistoryPlan) -> anyhow::Result<()> {
    let st = state.clone();
    crate::storage::run(&st.db.clone(), move |conn| {
        generate(&st, conn, plan).map_err(|e| StorageError::Other(format!("{e:#}")))
    })
    .await?;
    Ok(())
}

fn generate(state: &AppState, conn: &mut PgConnection, plan: HistoryPlan) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let currency = state.settings.money.currency.clone();
    let users: Vec<Id> = diesel::sql_query(
        "SELECT u.id FROM users u WHERE u.email LIKE 'user%@payd.local' AND u.archived_at IS NULL ORDER BY u.id",
    )
    .load(conn)?;
    anyhow::ensure!(!users.is_empty(), "no demo users: run `payd seed --users N` first");
    let mut rng = SmallRng::from_entropy();
    let brand = pan::brand("visa").ok_or_else(|| anyhow::anyhow!("visa brand missing"))?;
    let pan_key = state.settings.cards.pan_key.expose().to_owned();

    // Cards and merchants.
    let setup = ProgressBar::new(
        u64::try_from(users.len()).unwrap_or(0) * u64::from(plan.cards_per_user) + u64::from(plan.merchants),
    );
    setup.set_style(ProgressStyle::with_template("{msg:12} [{bar:40}] {pos}/{len}")?.progress_chars("=> "));
    setup.set_message("cards");
    let mut cards = Vec::new();
    let expiry_year = chrono::Datelike::year(&Utc::now()) + 5;
    for u in &users {
        for _ in 0..plan.cards_per_user {
            let account: Id = diesel::sql_query(
                "INSERT INTO accounts (kind, currency, min_balance) VALUES ('card', $1, 0) RETURNING id",
            )
            .bind::<Text, _>(&currency)
            .get_result(conn)?;
            let number = pan::generate(brand);
            let card: Id = diesel::sql_query(
                "INSERT INTO cards (user_id, account_id, card_type, brand, pan_hash, pan_masked, pan_last4, expiry_month, \
                 expiry_year, label) VALUES ($1, $2, 'debit', $3, $4, $5, $6, 12, $7, 'demo') RETURNING id",
            )
            .bind::<BigInt, _>(u.id)
            .bind::<BigInt, _>(account.id)
            .bind::<Text, _>(brand.0)
            .bind::<Text, _>(pan::pan_hash(&pan_key, &number))
            .bind::<Text, _>(number.masked())
            .bind::<Text, _>(number.last4())
            .bind::<diesel::sql_types::Integer, _>(expiry_year)
            .get_result(conn)?;
            cards.push(Card { id: card.id, account: account.id });
            setup.inc(1);
        }
    }
    setup.set_message("merchants");
    let mut merchants = Vec::new();
    let mut shown_keys = Vec::new();
    for i in 0..plan.merchants {
        let owner = &users[usize::try_from(i).unwrap_or(0) % users.len()];
        model::grant_role(conn, crate::ids::UserId::new(owner.id), model::ROLE_MERCHANT)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let account: Id = diesel::sql_query(
            "INSERT INTO accounts (kind, currency, min_balance) VALUES ('merchant', $1, 0) RETURNING id",
        )
        .bind::<Text, _>(&currency)
        .get_result(conn)?;
        let m: Id = diesel::sql_query(
            "INSERT INTO merchants (owner_id, account_id, business_name, contact_email, category, status, decided_at) \
             VALUES ($1, $2, $3, $4, 'retail', 'active', now()) RETURNING id",
        )
        .bind::<BigInt, _>(owner.id)
        .bind::<BigInt, _>(account.id)
        .bind::<Text, _>(format!("Demo Shop {}", i + 1))
        .bind::<Text, _>(format!("shop{}@payd.local", i + 1))
        .get_result(conn)?;
        let mut keys = Vec::new();
        for label in ["web", "pos"] {
            let (key_id, secret, full) = crate::merchants::keys::generate();
            let k: Id = diesel::sql_query(
                "INSERT INTO merchant_api_keys (merchant_id, label, key_id, secret_hash, created_by) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind::<BigInt, _>(m.id)
            .bind::<Text, _>(label)
            .bind::<Text, _>(key_id)
            .bind::<Text, _>(state.keys.hash(&secret))
            .bind::<BigInt, _>(owner.id)
            .get_result(conn)?;
            keys.push(k.id);
            if label == "web" {
                shown_keys.push((m.id, full));
            }
        }
        merchants.push(Merchant { id: m.id, account: account.id, keys });
        setup.inc(1);
    }
    setup.finish_with_message("set up");
    anyhow::ensure!(!cards.is_empty(), "no cards to move money with (--cards-per-user 0?)");

    // Balances: new accounts start at 0, system accounts where they are.
    let system = &state.ledger.system;
    let mut balance: HashMap<i64, i64> = HashMap::new();
    let sys_ids: Vec<i64> = system.funding.values().copied().chain([system.withdrawals]).collect();
    let rows: Vec<Balance> = diesel::sql_query("SELECT id, balance FROM accounts WHERE id = ANY($1)")
        .bind::<Array<BigInt>, _>(&sys_ids)
        .load(conn)?;
    for r in rows {
        balance.insert(r.id, r.balance);
    }

    // The operations, in time order.
    let now = Utc::now();
    let span = Duration::days(i64::from(plan.months.max(1)) * 30);
    let start = now - span;
    let n = usize::try_from(plan.operations).unwrap_or(usize::MAX);
    let mut offsets: Vec<i64> = (0..n).map(|_| rng.gen_range(0..span.num_seconds().max(1))).collect();
    offsets.sort_unstable();
    let bar = ProgressBar::new(plan.operations);
    bar.set_style(
        ProgressStyle::with_template("{msg:12} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")?.progress_chars("=> "),
    );
    bar.set_message("operations");
    let tag = format!("{:08x}", rng.gen::<u32>());
    let mut payments: Vec<Payable> = Vec::new();
    let mut reversible: Vec<Op> = Vec::new();
    let mut refunded: HashMap<uuid::Uuid, (i64, i64)> = HashMap::new(); // payment → (cap, refunded)
    let mut chunk: Vec<(Op, Vec<Posting>)> = Vec::with_capacity(CHUNK);
    let mut counts: HashMap<&'static str, u64> = HashMap::new();
    for (i, off) in offsets.into_iter().enumerate() {
        let at = start + Duration::seconds(off);
        let c = rng.gen_range(0..cards.len());
        let card = &cards[c];
        let amount = rng.gen_range(1..200_i64) * 10_000;
        let roll = rng.gen_range(0..100);
        let base = |kind: &'static str, amount: i64, debit: i64, credit: i64| Op {
            id: uuid::Uuid::new_v4(),
            kind,
            failure: None,
            amount,
            method: None,
            source_card: None,
            dest_card: None,
            debit,
            credit,
            reverses: None,
            merchant: None,
            api_key: None,
            order_ref: None,
            at,
        };
        let mut op = if roll < 25 || balance.get(&card.account).copied().unwrap_or(0) < 100_000 {
            let method = TOPUP_METHODS[rng.gen_range(0..TOPUP_METHODS.len())];
            let funding = system.funding.get(method).copied().unwrap_or(system.withdrawals);
            Op { method: Some(method), dest_card: Some(card.id), ..base("topup", amount * 5, funding, card.account) }
        } else if roll < 35 {
            Op { source_card: Some(card.id), ..base("withdrawal", amount, card.account, system.withdrawals) }
        } else if roll < 60 {
            let d = &cards[(c + rng.gen_range(1..cards.len().max(2))) % cards.len()];
            if d.id == card.id {
                continue;
            }
            Op {
                source_card: Some(card.id),
                dest_card: Some(d.id),
                ..base("transfer", amount, card.account, d.account)
            }
        } else if roll < 92 && !merchants.is_empty() {
            let mi = rng.gen_range(0..merchants.len());
            let m = &merchants[mi];
            let key = m.keys[rng.gen_range(0..m.keys.len())];
            let method = PAY_METHODS[rng.gen_range(0..PAY_METHODS.len())];
            let mut op = Op {
                method: Some(method),
                source_card: Some(card.id),
                merchant: Some(m.id),
                api_key: Some(key),
                order_ref: Some(format!("seed-{tag}-{i}")),
                ..base("payment", amount, card.account, m.account)
            };
            if rng.gen_range(0..100) < 3 {
                op.failure = Some("invalid_cvv");
            }
            op
        } else if roll < 96 && !payments.is_empty() {
            let p = rng.gen_range(0..payments.len());
            let Payable { id: pid, card_account, card: ci, merchant: mi, remaining, method, key } = payments[p];
            let amount = if rng.gen_bool(0.5) { remaining } else { (remaining / 2).max(1) };
            let m = &merchants[mi];
            let op = Op {
                method: Some(method),
                dest_card: Some(cards[ci].id),
                merchant: Some(m.id),
                api_key: Some(key),
                reverses: Some(pid),
                ..base("refund", amount, m.account, card_account)
            };
            if balance.get(&m.account).copied().unwrap_or(0) >= amount {
                payments[p].remaining -= amount;
                if payments[p].remaining == 0 {
                    payments.swap_remove(p);
                }
                let e = refunded.entry(pid).or_insert((0, 0));
                e.1 += amount;
            }
            op
        } else if !reversible.is_empty() {
            let o = reversible.swap_remove(rng.gen_range(0..reversible.len()));
            Op {
                method: o.method,
                source_card: o.dest_card,
                dest_card: o.source_card,
                reverses: Some(o.id),
                ..base("reversal", o.amount, o.credit, o.debit)
            }
        } else {
            continue;
        };
        // Decide on the simulated ledger: bounded accounts (cards, merchants) never go below zero.
        let bounded_debit = !sys_ids.contains(&op.debit);
        if op.failure.is_none() && bounded_debit && balance.get(&op.debit).copied().unwrap_or(0) < op.amount {
            op.failure = Some("insufficient_funds");
        }
        let mut postings = Vec::new();
        if op.failure.is_none() {
            let d = balance.entry(op.debit).or_insert(0);
            *d -= op.amount;
            postings.push((op.debit, -op.amount, *d));
            let c = balance.entry(op.credit).or_insert(0);
            *c += op.amount;
            postings.push((op.credit, op.amount, *c));
            match op.kind {
                "payment" => {
                    let ci = cards.iter().position(|x| Some(x.id) == op.source_card).unwrap_or(0);
                    let mi = merchants.iter().position(|x| Some(x.id) == op.merchant).unwrap_or(0);
                    payments.push(Payable {
                        id: op.id,
                        card_account: op.debit,
                        card: ci,
                        merchant: mi,
                        remaining: op.amount,
                        method: op.method.unwrap_or("visa"),
                        key: op.api_key.unwrap_or(0),
                    });
                    refunded.entry(op.id).or_insert((op.amount, 0));
                }
                "topup" | "transfer" if rng.gen_bool(0.05) => reversible.push(op.clone()),
                _ => {}
            }
        }
        *counts.entry(op.kind).or_insert(0) += 1;
        chunk.push((op, postings));
        if chunk.len() >= CHUNK {
            write_chunk(conn, &currency, &chunk)?;
            bar.inc(u64::try_from(chunk.len()).unwrap_or(0));
            chunk.clear();
        }
    }
    write_chunk(conn, &currency, &chunk)?;
    bar.inc(u64::try_from(chunk.len()).unwrap_or(0));
    bar.set_length(bar.position());
    bar.finish_with_message("written");

    // Final balances and refund totals.
    let (ids, balances): (Vec<i64>, Vec<i64>) = balance.into_iter().unzip();
    diesel::sql_query(
        "UPDATE accounts a SET balance = b.balance, version = a.version + 1, updated_at = now() \
         FROM unnest($1::bigint[], $2::bigint[]) AS b(id, balance) WHERE a.id = b.id",
    )
    .bind::<Array<BigInt>, _>(&ids)
    .bind::<Array<BigInt>, _>(&balances)
    .execute(conn)?;
    let (pids, caps_refunds): (Vec<uuid::Uuid>, Vec<(i64, i64)>) =
        refunded.into_iter().filter(|(_, (_, r))| *r > 0).unzip();
    let (caps, refunds): (Vec<i64>, Vec<i64>) = caps_refunds.into_iter().unzip();
    diesel::sql_query(
        "INSERT INTO refund_totals (payment_id, cap, refunded) SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[])",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(&pids)
    .bind::<Array<BigInt>, _>(&caps)
    .bind::<Array<BigInt>, _>(&refunds)
    .execute(conn)?;
    let written = started.elapsed();
    println!("rebuilding statistics …");
    let r = super::rollup::rebuild(conn, &state.settings.stats.time_zone)?;
    let _ = diesel::sql_query("ANALYZE").execute(conn);
    let mut kinds: Vec<_> = counts.into_iter().collect();
    kinds.sort();
    println!(
        "history: {} operations over {} months written in {:.1?} ({}); statistics rebuilt up to seq {} in {:.1?}",
        kinds.iter().map(|(_, n)| n).sum::<u64>(),
        plan.months,
        written,
        kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "),
        r.upto,
        started.elapsed().saturating_sub(written),
    );
    println!("{} cards, {} merchants; an API key per merchant (shown once):", cards.len(), merchants.len());
    for (m, k) in shown_keys {
        println!("  merchant {m}: {k}");
    }
    Ok(())
}

type Posting = (i64, i64, i64);

fn write_chunk(conn: &mut PgConnection, currency: &str, chunk: &[(Op, Vec<Posting>)]) -> anyhow::Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    conn.transaction::<_, anyhow::Error, _>(|conn| {
        let ops = chunk.iter().map(|(o, _)| o);
        let col = |f: fn(&Op) -> Option<i64>| ops.clone().map(f).collect::<Vec<_>>();
        diesel::sql_query(
            "INSERT INTO operations (id, kind, status, failure_reason, amount, currency, method, source_card_id, \
               dest_card_id, debit_account_id, credit_account_id, reverses_id, merchant_id, api_key_id, order_ref, created_at) \
             SELECT id, kind, CASE WHEN reason IS NULL THEN 'success' ELSE 'failed' END, reason, amount, $1, method, src, \
               dst, debit, credit, rev, merchant, api_key, order_ref, at \
             FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::bigint[], $8::bigint[], \
                         $9::bigint[], $10::bigint[], $11::uuid[], $12::bigint[], $13::bigint[], $14::text[], $15::timestamptz[]) \
               WITH ORDINALITY AS t(id, kind, reason, amount, method, src, dst, debit, credit, rev, merchant, api_key, order_ref, at, i) \
             ORDER BY i",
        )
        .bind::<Text, _>(currency)
        .bind::<Array<diesel::sql_types::Uuid>, _>(ops.clone().map(|o| o.id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(ops.clone().map(|o| o.kind).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(ops.clone().map(|o| o.failure).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(ops.clone().map(|o| o.amount).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(ops.clone().map(|o| o.method).collect::<Vec<_>>())
        .bind::<Array<Nullable<BigInt>>, _>(col(|o| o.source_card))
        .bind::<Array<Nullable<BigInt>>, _>(col(|o| o.dest_card))
        .bind::<Array<BigInt>, _>(ops.clone().map(|o| o.debit).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(ops.clone().map(|o| o.credit).collect::<Vec<_>>())
        .bind::<Array<Nullable<diesel::sql_types::Uuid>>, _>(ops.clone().map(|o| o.reverses).collect::<Vec<_>>())
        .bind::<Array<Nullable<BigInt>>, _>(col(|o| o.merchant))
        .bind::<Array<Nullable<BigInt>>, _>(col(|o| o.api_key))
        .bind::<Array<Nullable<Text>>, _>(ops.clone().map(|o| o.order_ref.clone()).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(ops.clone().map(|o| o.at).collect::<Vec<_>>())
        .execute(conn)?;
        let mut op_ids = Vec::new();
        let mut accounts = Vec::new();
        let mut amounts = Vec::new();
        let mut after = Vec::new();
        let mut at = Vec::new();
        for (o, ps) in chunk {
            for (a, amount, bal) in ps {
                op_ids.push(o.id);
                accounts.push(*a);
                amounts.push(*amount);
                after.push(*bal);
                at.push(o.at);
            }
        }
        diesel::sql_query(
            "INSERT INTO postings (operation_id, account_id, amount, balance_after, created_at) \
             SELECT op, account, amount, balance_after, at \
             FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::timestamptz[]) WITH ORDINALITY \
               AS t(op, account, amount, balance_after, at, i) ORDER BY i",
        )
        .bind::<Array<diesel::sql_types::Uuid>, _>(op_ids)
        .bind::<Array<BigInt>, _>(accounts)
        .bind::<Array<BigInt>, _>(amounts)
        .bind::<Array<BigInt>, _>(after)
        .bind::<Array<Timestamptz>, _>(at)
        .execute(conn)?;
        Ok(())
    })
}
