//! Statistics queries: parameters parsed once into a [`SeriesQuery`], access decided for the caller,
//! and one response shape ([`StatsView`]) with every period of the window present (zero-filled).

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, NaiveDate};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Date, Integer, Text};
use serde::Serialize;

use super::rollup::{self, Freshness, NET};
use super::StatsError;
use crate::payments::OperationStatus;

/// What a series counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Topup,
    Withdrawal,
    Transfer,
    Payment,
    Balance,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Self, StatsError> {
        Ok(match s {
            "topup" | "topups" => Self::Topup,
            "withdrawal" | "withdrawals" => Self::Withdrawal,
            "transfer" | "transfers" => Self::Transfer,
            "payment" | "payments" => Self::Payment,
            "balance" | "balances" => Self::Balance,
            _ => {
                return Err(StatsError::invalid(
                    "kind",
                    format!("unknown kind {s:?}; one of topup, withdrawal, transfer, payment, balance"),
                ))
            }
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Topup => "topup",
            Self::Withdrawal => "withdrawal",
            Self::Transfer => "transfer",
            Self::Payment => "payment",
            Self::Balance => "balance",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Successful operations: net (gross − reversed/refunded), gross and reversed.
    Amount,
    /// Same series as `amount` (every point carries count and amount).
    Count,
    /// Success and failed attempts, count and sum of each.
    Status,
    /// Per payment method: net amount and count of successful operations.
    Method,
}

impl Metric {
    fn parse(s: &str) -> Result<Self, StatsError> {
        Ok(match s {
            "amount" => Self::Amount,
            "count" => Self::Count,
            "status" => Self::Status,
            "method" => Self::Method,
            _ => {
                return Err(StatsError::invalid(
                    "metric",
                    format!("unknown metric {s:?}; one of amount, count, status, method"),
                ))
            }
        })
    }
    fn as_str(self) -> &'static str {
        match self {
            Self::Amount => "amount",
            Self::Count => "count",
            Self::Status => "status",
            Self::Method => "method",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The 12 calendar months of `year`.
    Month,
    /// The 5 calendar years ending with `year`.
    Year,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
}

/// Whose figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Platform,
    Card(i64),
    Merchant(i64),
    ApiKey(i64),
}

impl Scope {
    fn key(self) -> (&'static str, i64) {
        match self {
            Self::Platform => ("all", 0),
            Self::Card(id) => ("card", id),
            Self::Merchant(id) => ("merchant", id),
            Self::ApiKey(id) => ("api_key", id),
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub enum Caller {
    User {
        id: i64,
        admin: bool,
    },
    /// A merchant's API key.
    Key {
        merchant_id: i64,
    },
}

/// A parsed `GET /api/v1/stats/{kind}`.
#[derive(Debug, Clone)]
pub struct SeriesQuery {
    pub kind: Kind,
    pub metric: Metric,
    pub period: Period,
    pub year: Option<i32>,
    pub scope: Scope,
    pub direction: Option<Direction>,
    pub currency: Option<String>,
}

type ScopeOf = fn(i64) -> Scope;

/// The query parameters `GET /api/v1/stats/{kind}` accepts.
pub const PARAMS: &[&str] =
    &["metric", "period", "year", "card_id", "merchant_id", "api_key_id", "direction", "currency"];

fn parse_id(field: &'static str, raw: &str) -> Result<i64, StatsError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| StatsError::invalid(field, format!("{field} must be a positive integer")))
}

impl SeriesQuery {
    /// Parses and checks the combination.
    ///
    /// # Errors
    /// `Invalid` naming the parameter at fault.
    pub fn parse(kind: &str, params: &HashMap<String, String>) -> Result<Self, StatsError> {
        let kind = Kind::parse(kind)?;
        let mut names: Vec<&String> = params.keys().collect();
        names.sort();
        if let Some(unknown) = names.iter().find(|k| !PARAMS.contains(&k.as_str())) {
            return Err(StatsError::invalid(
                unknown,
                format!("unknown query parameter {unknown:?}; accepted: {}", PARAMS.join(", ")),
            ));
        }
        let get = |k: &str| params.get(k).map(String::as_str);
        let metric = match get("metric") {
            None => Metric::Amount,
            Some(m) => Metric::parse(m)?,
        };
        let period = match get("period") {
            None | Some("month") => Period::Month,
            Some("year") => Period::Year,
            Some(p) => return Err(StatsError::invalid("period", format!("unknown period {p:?}; one of month, year"))),
        };
        let year = match get("year") {
            None => None,
            Some(y) => match y.parse::<i32>() {
                Ok(y) if (2000..=2100).contains(&y) => Some(y),
                _ => return Err(StatsError::invalid("year", "year must be between 2000 and 2100")),
            },
        };
        let mut scope = Scope::Platform;
        let makers: [(&str, ScopeOf); 3] =
            [("card_id", Scope::Card), ("merchant_id", Scope::Merchant), ("api_key_id", Scope::ApiKey)];
        for (field, make) in makers {
            if let Some(raw) = get(field) {
                if scope != Scope::Platform {
                    return Err(StatsError::invalid(field, "give at most one of card_id, merchant_id, api_key_id"));
                }
                scope = make(parse_id(field, raw)?);
            }
        }
        let direction = match get("direction") {
            None => None,
            Some("sent") => Some(Direction::Sent),
            Some("received") => Some(Direction::Received),
            Some(d) => {
                return Err(StatsError::invalid("direction", format!("unknown direction {d:?}; sent or received")))
            }
        };
        let currency = match get("currency") {
            None => None,
            Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => Some(c.to_owned()),
            Some(_) => {
                return Err(StatsError::invalid("currency", "currency must be a three-letter ISO code, e.g. IDR"))
            }
        };
        if direction.is_some() && !(kind == Kind::Transfer && matches!(scope, Scope::Card(_))) {
            return Err(StatsError::invalid("direction", "direction applies to transfers of one card (card_id)"));
        }
        if matches!(scope, Scope::Merchant(_) | Scope::ApiKey(_)) && kind != Kind::Payment {
            let field = if matches!(scope, Scope::Merchant(_)) { "merchant_id" } else { "api_key_id" };
            return Err(StatsError::invalid(field, "merchant and API-key figures exist for kind payment only"));
        }
        match (kind, metric) {
            (Kind::Balance, Metric::Amount) => {}
            (Kind::Balance, _) => return Err(StatsError::invalid("metric", "balances have metric amount only")),
            (Kind::Transfer, Metric::Method) => {
                return Err(StatsError::invalid("metric", "transfers have no payment method"));
            }
            _ => {}
        }
        Ok(Self { kind, metric, period, year, scope, direction, currency })
    }
}

#[derive(QueryableByName)]
struct Owner {
    #[diesel(sql_type = BigInt)]
    owner: i64,
    #[diesel(sql_type = BigInt)]
    merchant: i64,
}

/// Decides whether `caller` may read `scope`'s figures. Someone else's card, merchant or key is
/// answered as not found (naming the parameter), so ids cannot be probed.
///
/// # Errors
/// `Forbidden` for platform figures without the admin role; `NotFound` for what is not the caller's.
pub fn authorize(conn: &mut PgConnection, caller: Caller, scope: Scope) -> Result<(), StatsError> {
    let admin = matches!(caller, Caller::User { admin: true, .. });
    let (field, what, sql) = match scope {
        Scope::Platform if admin => return Ok(()),
        Scope::Platform => return Err(StatsError::Forbidden("platform-wide statistics are for admins".into())),
        Scope::Card(_) => ("card_id", "card", "SELECT user_id AS owner, 0::bigint AS merchant FROM cards WHERE id = $1"),
        Scope::Merchant(_) => ("merchant_id", "merchant", "SELECT owner_id AS owner, id AS merchant FROM merchants WHERE id = $1"),
        Scope::ApiKey(_) => (
            "api_key_id",
            "API key",
            "SELECT m.owner_id AS owner, m.id AS merchant FROM merchant_api_keys k JOIN merchants m ON m.id = k.merchant_id \
             WHERE k.id = $1",
        ),
    };
    let (_, id) = scope.key();
    let row: Option<Owner> = diesel::sql_query(sql).bind::<BigInt, _>(id).get_result(conn).optional()?;
    let Some(row) = row else { return Err(StatsError::NotFound { field, what }) };
    let allowed = match caller {
        Caller::User { admin: true, .. } => true,
        Caller::User { id, .. } => row.owner == id,
        Caller::Key { merchant_id } => !matches!(scope, Scope::Card(_)) && row.merchant == merchant_id,
    };
    if allowed {
        Ok(())
    } else {
        Err(StatsError::NotFound { field, what })
    }
}

/// One point of a series.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Point {
    /// Number of operations (balances: postings) in the period.
    pub count: i64,
    /// Minor units of the series' currency.
    pub amount: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PeriodView {
    /// `2026-03` or `2026`.
    pub label: String,
    /// First day (in the platform time zone).
    pub from: NaiveDate,
    /// First day after the period.
    pub to: NaiveDate,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SeriesView {
    /// `net`, `gross`, `reversed` (amount/count); `success`, `failed` (status); the method (method);
    /// `closing`, `change` (balance).
    pub name: String,
    pub currency: String,
    /// Transfers of one card: `sent` or `received`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    /// One point per period, in the order of `periods`.
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScopeView {
    /// `platform`, `card`, `merchant` or `api_key`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
}

impl From<Scope> for ScopeView {
    fn from(s: Scope) -> Self {
        match s {
            Scope::Platform => Self { kind: "platform", id: None },
            Scope::Card(id) => Self { kind: "card", id: Some(id) },
            Scope::Merchant(id) => Self { kind: "merchant", id: Some(id) },
            Scope::ApiKey(id) => Self { kind: "api_key", id: Some(id) },
        }
    }
}

/// The one response shape of every statistics series.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatsView {
    pub kind: &'static str,
    pub metric: &'static str,
    /// `month` or `year`.
    pub period: &'static str,
    pub year: i32,
    pub scope: ScopeView,
    /// The platform time zone the calendar periods are in.
    pub time_zone: String,
    /// When the rollups last took in new operations.
    pub as_of: chrono::DateTime<chrono::Utc>,
    pub periods: Vec<PeriodView>,
    pub series: Vec<SeriesView>,
}

fn windows(period: Period, year: i32) -> Vec<PeriodView> {
    let date = |y: i32, m: u32| NaiveDate::from_ymd_opt(y, m, 1).unwrap_or_default();
    match period {
        Period::Month => (1..=12u32)
            .map(|m| PeriodView {
                label: format!("{year}-{m:02}"),
                from: date(year, m),
                to: if m == 12 { date(year + 1, 1) } else { date(year, m + 1) },
            })
            .collect(),
        Period::Year => ((year - 4)..=year)
            .map(|y| PeriodView { label: y.to_string(), from: date(y, 1), to: date(y + 1, 1) })
            .collect(),
    }
}

fn bucket(periods: &[PeriodView], day: NaiveDate) -> Option<usize> {
    periods.iter().position(|p| p.from <= day && day < p.to)
}

#[derive(QueryableByName)]
struct FigureRow {
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = Bool)]
    correction: bool,
    #[diesel(sql_type = Text)]
    status: OperationStatus,
    #[diesel(sql_type = Text)]
    method: String,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Integer)]
    y: i32,
    #[diesel(sql_type = Integer)]
    m: i32,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    amount: i64,
}

#[derive(QueryableByName)]
struct BalanceRow {
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Date)]
    day: NaiveDate,
    #[diesel(sql_type = BigInt)]
    postings: i64,
    #[diesel(sql_type = BigInt)]
    net: i64,
}

/// The card roles a query reads: (role in `stats_daily`, direction label).
fn roles(kind: Kind, scope: Scope, direction: Option<Direction>) -> Vec<(&'static str, Option<&'static str>)> {
    if !matches!(scope, Scope::Card(_)) {
        return vec![("", None)];
    }
    match (kind, direction) {
        (Kind::Topup, _) => vec![("dst", None)],
        (Kind::Transfer, Some(Direction::Sent)) => vec![("src", Some("sent"))],
        (Kind::Transfer, Some(Direction::Received)) => vec![("dst", Some("received"))],
        (Kind::Transfer, None) => vec![("src", Some("sent")), ("dst", Some("received"))],
        _ => vec![("src", None)],
    }
}

type SeriesKey = (String, String, Option<&'static str>);

fn add(map: &mut BTreeMap<SeriesKey, Vec<Point>>, key: SeriesKey, len: usize, at: usize, n: i64, amount: i64) {
    let points = map.entry(key).or_insert_with(|| vec![Point::default(); len]);
    if let Some(p) = points.get_mut(at) {
        p.count = p.count.saturating_add(n);
        p.amount = p.amount.saturating_add(amount);
    }
}

/// Answers a series query from the rollups.
///
/// # Errors
/// A diesel error.
pub fn series(conn: &mut PgConnection, q: &SeriesQuery, default_currency: &str) -> Result<StatsView, StatsError> {
    let fresh = rollup::freshness(conn)?;
    let year = q.year.unwrap_or_else(|| fresh.today.year());
    let periods = windows(q.period, year);
    let (from, to) = match (periods.first(), periods.last()) {
        (Some(f), Some(l)) => (f.from, l.to),
        _ => return Err(StatsError::invalid("year", "no periods")),
    };
    let (scope, scope_id) = q.scope.key();
    let len = periods.len();
    let mut map: BTreeMap<SeriesKey, Vec<Point>> = BTreeMap::new();
    let wanted = |c: &str| q.currency.as_deref().is_none_or(|w| w == c);
    if q.kind == Kind::Balance {
        // A card's rows by role, or the platform's `balance` rows: the daily net flow of card money.
        let rows: Vec<BalanceRow> = diesel::sql_query(format!(
            "SELECT currency::text AS currency, day, sum(n)::bigint AS postings, sum({NET})::bigint AS net \
             FROM stats_daily WHERE scope = $1 AND scope_id = $2 AND {} AND status = 'success' AND day < $3 \
             GROUP BY currency, day ORDER BY currency, day",
            if matches!(q.scope, Scope::Card(_)) { "role <> ''" } else { "kind = 'balance'" }
        ))
        .bind::<Text, _>(scope)
        .bind::<BigInt, _>(scope_id)
        .bind::<Date, _>(to)
        .load(conn)?;
        let mut currencies: Vec<String> = rows.iter().map(|r| r.currency.clone()).collect();
        currencies.dedup();
        if currencies.is_empty() {
            currencies.push(q.currency.clone().unwrap_or_else(|| default_currency.to_owned()));
        }
        for cur in currencies.into_iter().filter(|c| wanted(c)) {
            let mut balance = 0i64;
            let mut closing = vec![Point::default(); len];
            let mut change = vec![Point::default(); len];
            let cur_rows: Vec<&BalanceRow> = rows.iter().filter(|r| r.currency == cur).collect();
            let mut it = cur_rows.iter().peekable();
            // Before the window: the opening balance.
            while let Some(r) = it.next_if(|r| r.day < from) {
                balance = balance.saturating_add(r.net);
            }
            for (i, p) in periods.iter().enumerate() {
                while let Some(r) = it.next_if(|r| r.day < p.to) {
                    balance = balance.saturating_add(r.net);
                    change[i].count += r.postings;
                    change[i].amount = change[i].amount.saturating_add(r.net);
                    closing[i].count += r.postings;
                }
                closing[i].amount = balance;
            }
            map.insert(("closing".into(), cur.clone(), None), closing);
            map.insert(("change".into(), cur, None), change);
        }
    } else {
        let rows: Vec<FigureRow> = diesel::sql_query(
            "SELECT role, correction, status, method, currency::text AS currency, \
                    extract(year FROM day)::int AS y, extract(month FROM day)::int AS m, \
                    sum(n)::bigint AS n, sum(amount)::bigint AS amount \
             FROM stats_daily WHERE scope = $1 AND scope_id = $2 AND kind = $3 AND day >= $4 AND day < $5 \
             GROUP BY role, correction, status, method, currency, y, m",
        )
        .bind::<Text, _>(scope)
        .bind::<BigInt, _>(scope_id)
        .bind::<Text, _>(q.kind.as_str())
        .bind::<Date, _>(from)
        .bind::<Date, _>(to)
        .load(conn)?;
        let roles = roles(q.kind, q.scope, q.direction);
        let mut currencies: Vec<String> = rows.iter().map(|r| r.currency.clone()).collect();
        currencies.push(q.currency.clone().unwrap_or_else(|| default_currency.to_owned()));
        currencies.sort();
        currencies.dedup();
        // Every expected series exists, zero-filled, for every currency seen (at least the platform's).
        for cur in currencies.iter().filter(|c| wanted(c)) {
            for (_, dir) in &roles {
                let names: &[&str] = match q.metric {
                    Metric::Amount | Metric::Count => &["net", "gross", "reversed"],
                    Metric::Status => &["success", "failed"],
                    Metric::Method => &[],
                };
                for name in names {
                    add(&mut map, ((*name).into(), cur.clone(), *dir), len, 0, 0, 0);
                }
            }
        }
        for r in rows.iter().filter(|r| wanted(&r.currency)) {
            let Some((_, dir)) = roles.iter().find(|(role, _)| *role == r.role) else { continue };
            let day = NaiveDate::from_ymd_opt(r.y, u32::try_from(r.m).unwrap_or(1), 1).unwrap_or_default();
            let Some(at) = bucket(&periods, day) else { continue };
            let cur = r.currency.clone();
            let ok = r.status == OperationStatus::Success;
            match q.metric {
                Metric::Amount | Metric::Count => {
                    if !ok {
                        continue;
                    }
                    if r.correction {
                        add(&mut map, ("reversed".into(), cur.clone(), *dir), len, at, r.n, r.amount);
                        add(&mut map, ("net".into(), cur, *dir), len, at, 0, -r.amount);
                    } else {
                        add(&mut map, ("gross".into(), cur.clone(), *dir), len, at, r.n, r.amount);
                        add(&mut map, ("net".into(), cur, *dir), len, at, r.n, r.amount);
                    }
                }
                Metric::Status => {
                    if !r.correction {
                        add(&mut map, (r.status.as_str().to_owned(), cur, *dir), len, at, r.n, r.amount);
                    }
                }
                Metric::Method => {
                    if !ok {
                        continue;
                    }
                    let name = if r.method.is_empty() { "none".to_owned() } else { r.method.clone() };
                    let (n, amount) = if r.correction { (0, -r.amount) } else { (r.n, r.amount) };
                    add(&mut map, (name, cur, *dir), len, at, n, amount);
                }
            }
        }
    }
    let order = |name: &str| match name {
        "net" | "success" | "closing" => 0,
        "gross" | "failed" | "change" => 1,
        "reversed" => 2,
        _ => 3,
    };
    let mut series: Vec<SeriesView> = map
        .into_iter()
        .map(|((name, currency, direction), points)| SeriesView { name, currency, direction, points })
        .collect();
    series.sort_by(|a, b| {
        (a.currency.as_str(), a.direction, order(&a.name), a.name.as_str()).cmp(&(
            b.currency.as_str(),
            b.direction,
            order(&b.name),
            b.name.as_str(),
        ))
    });
    Ok(StatsView {
        kind: q.kind.as_str(),
        metric: q.metric.as_str(),
        period: match q.period {
            Period::Month => "month",
            Period::Year => "year",
        },
        year,
        scope: q.scope.into(),
        time_zone: fresh.time_zone,
        as_of: fresh.updated_at,
        periods,
        series,
    })
}

/// One total of a dashboard.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Figure {
    /// `topup`, `withdrawal`, `payment`, `transfer`, `transfer_sent`, `transfer_received`.
    pub name: String,
    /// Successful operations.
    pub count: i64,
    /// Net amount: successful operations minus their reversals/refunds.
    pub amount: i64,
    /// Amount reversed (payments: refunded).
    pub reversed: i64,
    /// Failed attempts.
    pub failed: i64,
}

impl Figure {
    /// Adds one group of figure rows: successes count and add, their corrections (reversals,
    /// refunds) subtract, failures count apart.
    fn add(&mut self, r: &TotalRow) {
        match (r.status, r.correction) {
            (OperationStatus::Success, false) => {
                self.count += r.n;
                self.amount = self.amount.saturating_add(r.amount);
            }
            (OperationStatus::Success, true) => {
                self.reversed = self.reversed.saturating_add(r.amount);
                self.amount = self.amount.saturating_sub(r.amount);
            }
            (OperationStatus::Failed, false) => self.failed += r.n,
            (OperationStatus::Failed, true) => {}
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub currency: String,
    /// Platform: sum of card balances; card: its balance; merchant: its account balance.
    pub balance: i64,
    pub figures: Vec<Figure>,
    /// Merchants: net payment amount per method.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<Figure>,
}

/// A dashboard: all-time totals per currency.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DashboardView {
    pub scope: ScopeView,
    pub time_zone: String,
    pub as_of: chrono::DateTime<chrono::Utc>,
    pub totals: Vec<Totals>,
}

#[derive(QueryableByName)]
struct TotalRow {
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Bool)]
    correction: bool,
    #[diesel(sql_type = Text)]
    status: OperationStatus,
    #[diesel(sql_type = Text)]
    method: String,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    amount: i64,
}

#[derive(QueryableByName)]
struct CurrencyBalance {
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    balance: i64,
}

/// The dashboard of the platform, a card or a merchant (`scope` must not be an API key).
///
/// # Errors
/// A diesel error.
pub fn dashboard(conn: &mut PgConnection, scope: Scope, default_currency: &str) -> Result<DashboardView, StatsError> {
    let fresh: Freshness = rollup::freshness(conn)?;
    let (s, id) = scope.key();
    let rows: Vec<TotalRow> = diesel::sql_query(
        "SELECT role, kind, correction, status, method, currency::text AS currency, sum(n)::bigint AS n, \
                sum(amount)::bigint AS amount \
         FROM stats_daily WHERE scope = $1 AND scope_id = $2 \
         GROUP BY role, kind, correction, status, method, currency",
    )
    .bind::<Text, _>(s)
    .bind::<BigInt, _>(id)
    .load(conn)?;
    let balances: Vec<CurrencyBalance> = match scope {
        Scope::Platform => diesel::sql_query(format!(
            "SELECT currency::text AS currency, sum({NET})::bigint AS balance FROM stats_daily \
             WHERE scope = 'all' AND scope_id = 0 AND kind = 'balance' GROUP BY currency"
        ))
        .load(conn)?,
        Scope::Card(id) => diesel::sql_query(
            "SELECT a.currency::text AS currency, a.balance FROM cards c JOIN accounts a ON a.id = c.account_id WHERE c.id = $1",
        )
        .bind::<BigInt, _>(id)
        .load(conn)?,
        Scope::Merchant(id) | Scope::ApiKey(id) => diesel::sql_query(
            "SELECT a.currency::text AS currency, a.balance FROM merchants m JOIN accounts a ON a.id = m.account_id \
             WHERE m.id = $1",
        )
        .bind::<BigInt, _>(id)
        .load(conn)?,
    };
    let names: &[(&str, &str, &str)] = match scope {
        Scope::Platform => &[
            ("topup", "topup", ""),
            ("withdrawal", "withdrawal", ""),
            ("payment", "payment", ""),
            ("transfer", "transfer", ""),
        ],
        Scope::Card(_) => &[
            ("topup", "topup", "dst"),
            ("withdrawal", "withdrawal", "src"),
            ("payment", "payment", "src"),
            ("transfer_sent", "transfer", "src"),
            ("transfer_received", "transfer", "dst"),
        ],
        Scope::Merchant(_) | Scope::ApiKey(_) => &[("payment", "payment", "")],
    };
    let mut currencies: Vec<String> =
        rows.iter().map(|r| r.currency.clone()).chain(balances.iter().map(|b| b.currency.clone())).collect();
    currencies.push(default_currency.to_owned());
    currencies.sort();
    currencies.dedup();
    let mut totals = Vec::new();
    for cur in currencies {
        let mut figures = Vec::new();
        for (name, kind, role) in names {
            let mut f = Figure { name: (*name).to_owned(), count: 0, amount: 0, reversed: 0, failed: 0 };
            for r in rows.iter().filter(|r| r.currency == cur && r.kind == *kind && r.role == *role) {
                f.add(r);
            }
            figures.push(f);
        }
        let mut methods: BTreeMap<String, Figure> = BTreeMap::new();
        if matches!(scope, Scope::Merchant(_)) {
            for r in rows.iter().filter(|r| r.currency == cur && r.kind == "payment") {
                let name = if r.method.is_empty() { "none".to_owned() } else { r.method.clone() };
                let f =
                    methods.entry(name.clone()).or_insert(Figure { name, count: 0, amount: 0, reversed: 0, failed: 0 });
                f.add(r);
            }
        }
        let balance = balances.iter().filter(|b| b.currency == cur).map(|b| b.balance).sum();
        totals.push(Totals { currency: cur, balance, figures, methods: methods.into_values().collect() });
    }
    Ok(DashboardView { scope: scope.into(), time_zone: fresh.time_zone, as_of: fresh.updated_at, totals })
}
