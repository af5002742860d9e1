//! Which money notifications a user wants: the rules (`Preferences::wants`), the defaults from
//! `notifications.*` (top-ups, withdrawals and payments on; transfers from
//! `notifications.transfer_min_amount`), the batch lookup the notifier uses for its recipients, and
//! `GET/PUT /api/v1/notifications/preferences`.
//!
//! A user without a stored row gets the defaults of the running configuration, so changing the
//! configured threshold moves everyone who never chose. What a user opted out of costs nothing: the
//! notifier queues no e-mail for it and, when an event leaves nothing to send, records nothing.

use std::collections::HashMap;

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::app::AppState;
use crate::config::NotificationSettings;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::routes::{Access, Api};
use crate::http::Valid;
use crate::storage::schema::notification_preferences as np;
use crate::storage::{self, StorageError};

/// A kind of money notification a user can turn off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyMail {
    Topup,
    Withdrawal,
    /// Payment and refund receipts of the paying customer.
    Payment,
    /// Sent and received transfers.
    Transfer,
}

/// One user's choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = np)]
pub struct Preferences {
    pub topups: bool,
    pub withdrawals: bool,
    pub payments: bool,
    pub transfers: bool,
    /// Minor units: transfers below this amount are not e-mailed.
    pub transfer_min_amount: i64,
}

impl Preferences {
    /// What a user gets until they choose.
    pub fn defaults(settings: &NotificationSettings) -> Self {
        Self {
            topups: true,
            withdrawals: true,
            payments: true,
            transfers: true,
            transfer_min_amount: settings.transfer_min_amount,
        }
    }

    /// Whether a notification of `kind` for an operation of `amount` (minor units) is wanted.
    pub fn wants(&self, kind: MoneyMail, amount: i64) -> bool {
        match kind {
            MoneyMail::Topup => self.topups,
            MoneyMail::Withdrawal => self.withdrawals,
            MoneyMail::Payment => self.payments,
            MoneyMail::Transfer => self.transfers && amount >= self.transfer_min_amount,
        }
    }
}

/// The stored choices of `users` (one query); users without a row are absent.
///
/// # Errors
/// A diesel error.
pub fn load(conn: &mut PgConnection, users: &[i64]) -> QueryResult<HashMap<i64, Preferences>> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, Preferences)> =
        np::table.filter(np::user_id.eq_any(users)).select((np::user_id, Preferences::as_select())).load(conn)?;
    Ok(rows.into_iter().collect())
}

/// The preferences as the API shows them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PreferencesView {
    /// E-mail a receipt for each top-up.
    pub topups: bool,
    /// E-mail a receipt for each withdrawal.
    pub withdrawals: bool,
    /// E-mail a receipt for each payment to a merchant and each refund.
    pub payments: bool,
    /// E-mail sent and received transfers (from `transfer_min_amount`).
    pub transfers: bool,
    /// Minor units: transfers below this amount are not e-mailed.
    pub transfer_min_amount: i64,
    /// `true` while the user has not chosen: the configured defaults apply (and follow the configuration).
    pub default: bool,
}

impl PreferencesView {
    fn new(p: Preferences, default: bool) -> Self {
        Self {
            topups: p.topups,
            withdrawals: p.withdrawals,
            payments: p.payments,
            transfers: p.transfers,
            transfer_min_amount: p.transfer_min_amount,
            default,
        }
    }
}

/// Every choice, each required: the request states the whole set.
#[derive(Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"topups": true, "withdrawals": true, "payments": true, "transfers": true,
    "transfer_min_amount": 100000000}))]
pub struct PreferencesRequest {
    pub topups: bool,
    pub withdrawals: bool,
    pub payments: bool,
    pub transfers: bool,
    /// Minor units, 0 for every transfer.
    #[validate(range(min = 0, message = "transfer_min_amount must be zero or more (minor units)"))]
    #[schema(minimum = 0)]
    pub transfer_min_amount: i64,
}

pub fn register(api: &mut Api) {
    let t = "notifications";
    let path = "/api/v1/notifications/preferences";
    let (r, s) = api.route(
        Method::GET,
        path,
        Access::Authenticated,
        t,
        "Your money notification preferences (the defaults until you choose)",
        web::get().to(get),
    );
    r.responds::<PreferencesView>(200, s);
    let (r, s) = api.route(
        Method::PUT,
        path,
        Access::Authenticated,
        t,
        "Choose which money notifications you get",
        web::put().to(put),
    );
    r.body::<PreferencesRequest>(s).responds::<PreferencesView>(200, s);
}

async fn get(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(read(&state, &user).await?))
}

async fn put(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Valid<PreferencesRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(choose(&state, &user, body.into_inner()).await?))
}

/// The caller's preferences: the stored choices, or the configured defaults (`default: true`).
/// Both transports (`GET /api/v1/notifications/preferences`, `Notifications.GetPreferences`).
///
/// # Errors
/// A storage error.
pub async fn read(state: &AppState, user: &AuthUser) -> Result<PreferencesView, ApiError> {
    let uid = user.user_id.get();
    let stored = storage::run(&state.db, move |conn| load(conn, &[uid]).map_err(StorageError::from)).await?;
    Ok(match stored.get(&uid) {
        Some(p) => PreferencesView::new(*p, false),
        None => PreferencesView::new(Preferences::defaults(&state.settings.notifications), true),
    })
}

/// Stores the caller's whole set of choices (a request already checked by its `Validate` rules).
/// Both transports (`PUT /api/v1/notifications/preferences`, `Notifications.UpdatePreferences`).
///
/// # Errors
/// 422 naming `transfer_min_amount` above the largest amount; a storage error.
pub async fn choose(state: &AppState, user: &AuthUser, b: PreferencesRequest) -> Result<PreferencesView, ApiError> {
    let max = state.settings.money.max_amount;
    if b.transfer_min_amount > max {
        return Err(ApiError::validation(
            "transfer_min_amount",
            format!("transfer_min_amount must be at most the largest amount ({max})"),
        ));
    }
    let p = Preferences {
        topups: b.topups,
        withdrawals: b.withdrawals,
        payments: b.payments,
        transfers: b.transfers,
        transfer_min_amount: b.transfer_min_amount,
    };
    let uid = user.user_id;
    storage::run(&state.db, move |conn| {
        let row = (
            np::user_id.eq(uid),
            np::topups.eq(p.topups),
            np::withdrawals.eq(p.withdrawals),
            np::payments.eq(p.payments),
            np::transfers.eq(p.transfers),
            np::transfer_min_amount.eq(p.transfer_min_amount),
            np::updated_at.eq(chrono::Utc::now()),
        );
        diesel::insert_into(np::table)
            .values(row)
            .on_conflict(np::user_id)
            .do_update()
            .set(row)
            .execute(conn)
            .map_err(StorageError::from)
    })
    .await?;
    Ok(PreferencesView::new(p, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_mail_receipts_and_large_transfers_only() {
        let p = Preferences::defaults(&NotificationSettings { transfer_min_amount: 100_000_000 });
        assert!(p.wants(MoneyMail::Topup, 50_000));
        assert!(p.wants(MoneyMail::Withdrawal, 50_000));
        assert!(p.wants(MoneyMail::Payment, 50_000));
        assert!(!p.wants(MoneyMail::Transfer, 99_999_999));
        assert!(p.wants(MoneyMail::Transfer, 100_000_000));
        let off = Preferences { transfers: false, transfer_min_amount: 0, ..p };
        assert!(!off.wants(MoneyMail::Transfer, 100_000_000));
        let all = Preferences { transfer_min_amount: 0, ..p };
        assert!(all.wants(MoneyMail::Transfer, 1));
    }
}
