//! Merchants as plain functions both transports call: applying, reading, and the API keys.
//! Inputs are the validated request types of `merchants::routes` and the caller's identity.

use chrono::Utc;
use diesel::prelude::*;

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::pagination::{search_opt, Page};
use crate::identity::model::{self, ROLE_MERCHANT};
use crate::ids::{ApiKeyId, MerchantId};
use crate::merchants::documents::DocumentStatus;
use crate::merchants::routes::{
    emit, insert_key, merchant_event, merchants_matching, owned_active, ApplyRequest, CreatedKey, Decision, KeyRequest,
    KeyView, MerchantBalance, MerchantListQuery, ProfileRequest,
};
use crate::merchants::{find, find_for, transition, Merchant, MerchantError, MerchantStatus};
use crate::storage::schema::{accounts, merchant_api_keys, merchant_documents, merchants};
use crate::storage::{self, StorageError};

/// A merchant application by the caller (status `pending` until an admin decides).
///
/// # Errors
/// A storage error.
pub async fn apply(state: &AppState, user: AuthUser, b: ApplyRequest) -> Result<Merchant, ApiError> {
    let currency = state.settings.money.currency.clone();
    let m = storage::transaction(&state.db, move |conn| {
        let account: i64 = diesel::insert_into(accounts::table)
            .values((
                accounts::kind.eq("merchant"),
                accounts::currency.eq(&currency),
                accounts::min_balance.eq(Some(0i64)),
            ))
            .returning(accounts::id)
            .get_result(conn)?;
        let m: Merchant = diesel::insert_into(merchants::table)
            .values((
                merchants::owner_id.eq(user.user_id),
                merchants::account_id.eq(account),
                merchants::business_name.eq(b.business_name.trim()),
                merchants::contact_email.eq(b.contact_email.trim().to_lowercase()),
                merchants::category.eq(b.category.trim()),
                merchants::website.eq(b.website.unwrap_or_default()),
                merchants::description.eq(b.description.unwrap_or_default()),
            ))
            .returning(Merchant::as_returning())
            .get_result(conn)?;
        emit(conn, merchant_event("merchant.applied", &m, serde_json::Value::Null))?;
        Ok::<_, MerchantError>(m)
    })
    .await?;
    crate::metrics::count("merchant_apply", "success");
    Ok(m)
}

/// A merchant of the caller (any for an admin; another owner's answers like a missing one).
///
/// # Errors
/// 404; a storage error.
pub async fn get(state: &AppState, user: AuthUser, id: MerchantId) -> Result<Merchant, ApiError> {
    let m = storage::run(&state.db, move |conn| find_for(conn, id, &user)).await?;
    Ok(m)
}

/// A new API key of the caller's active merchant; the full key is in the answer only.
///
/// # Errors
/// 404 not the caller's merchant, 409 not active; a storage error.
pub async fn create_key(
    state: &AppState,
    user: AuthUser,
    id: MerchantId,
    body: KeyRequest,
) -> Result<CreatedKey, ApiError> {
    let label = body.label.unwrap_or_default();
    let st = state.clone();
    let created = storage::transaction(&state.db, move |conn| {
        let m = owned_active(conn, id, &user)?;
        insert_key(conn, &st, &m, &label, user.user_id)
    })
    .await?;
    Ok(created)
}

/// The API keys of a merchant (its owner or an admin), oldest first.
///
/// # Errors
/// 404; a storage error.
pub async fn list_keys(state: &AppState, user: AuthUser, id: MerchantId) -> Result<Vec<KeyView>, ApiError> {
    let keys = storage::run(&state.db, move |conn| {
        find_for(conn, id, &user)?;
        Ok::<_, MerchantError>(
            merchant_api_keys::table
                .filter(merchant_api_keys::merchant_id.eq(id))
                .select(KeyView::as_select())
                .order(merchant_api_keys::id.asc())
                .load(conn)?,
        )
    })
    .await?;
    Ok(keys)
}

/// Revokes an API key of a merchant (its owner or an admin): refused from the next call on.
///
/// # Errors
/// 404 unknown merchant or key (or already revoked); a storage error.
pub async fn revoke_key(state: &AppState, user: AuthUser, id: MerchantId, key: ApiKeyId) -> Result<KeyView, ApiError> {
    let view = storage::transaction(&state.db, move |conn| {
        let m = find_for(conn, id, &user)?;
        let view: KeyView = diesel::update(
            merchant_api_keys::table
                .filter(merchant_api_keys::id.eq(key))
                .filter(merchant_api_keys::merchant_id.eq(id))
                .filter(merchant_api_keys::revoked_at.is_null()),
        )
        .set(merchant_api_keys::revoked_at.eq(Utc::now()))
        .returning(KeyView::as_returning())
        .get_result(conn)
        .optional()?
        .ok_or(MerchantError::KeyNotFound)?;
        emit(
            conn,
            merchant_event("api_key.revoked", &m, serde_json::json!({"api_key_id": view.id, "key_id": view.key_id})),
        )?;
        Ok::<_, MerchantError>(view)
    })
    .await?;
    state.api_keys.invalidate(&view.key_id);
    Ok(view)
}

/// Merchants, newest first: an admin's all (filter by status, search, archived), anyone else's own.
///
/// # Errors
/// 422 naming `status` or `search`, 400 for a bad page; a storage error.
pub async fn list(state: &AppState, user: AuthUser, q: MerchantListQuery) -> Result<Page<Merchant>, ApiError> {
    let (limit, cursor, with_total) = q.page.resolve_with_total()?;
    if let Some(s) = q.status.as_deref() {
        if s.parse::<MerchantStatus>().is_err() {
            return Err(ApiError::validation(
                "status",
                "status must be pending, active, rejected, suspended or closed",
            ));
        }
    }
    let pattern = search_opt(q.search.as_deref())?;
    let (rows, total) = storage::run(&state.db, move |conn| {
        let total: Option<i64> = if with_total {
            Some(merchants_matching(&user, q.status.clone(), pattern.clone(), q.archived).count().get_result(conn)?)
        } else {
            None
        };
        let mut query = merchants_matching(&user, q.status, pattern, q.archived)
            .select(Merchant::as_select())
            .order(merchants::id.desc())
            .limit(limit + 1);
        if let Some(c) = cursor {
            query = query.filter(merchants::id.lt(c));
        }
        Ok::<_, StorageError>((query.load::<Merchant>(conn)?, total))
    })
    .await?;
    Ok(Page::from_rows(rows, limit, |m| m.id.get()).with_total(total))
}

/// Edits a merchant's profile (its owner or an admin): never its status or owner.
///
/// # Errors
/// 404, 409 when closed; a storage error.
pub async fn update(state: &AppState, user: AuthUser, id: MerchantId, b: ProfileRequest) -> Result<Merchant, ApiError> {
    let m = storage::transaction(&state.db, move |conn| {
        let m = find_for(conn, id, &user)?;
        if m.status == MerchantStatus::Closed {
            return Err(MerchantError::InvalidTransition { action: "edit", current: m.status.to_string() });
        }
        Ok(diesel::update(merchants::table.find(id))
            .set((
                merchants::business_name.eq(b.business_name.map(|s| s.trim().to_owned()).unwrap_or(m.business_name)),
                merchants::contact_email
                    .eq(b.contact_email.map(|s| s.trim().to_lowercase()).unwrap_or(m.contact_email)),
                merchants::category.eq(b.category.unwrap_or(m.category)),
                merchants::website.eq(b.website.unwrap_or(m.website)),
                merchants::description.eq(b.description.unwrap_or(m.description)),
                merchants::updated_at.eq(Utc::now()),
            ))
            .returning(Merchant::as_returning())
            .get_result(conn)?)
    })
    .await?;
    Ok(m)
}

/// An admin decision on a merchant: approve (every required document approved), reject or suspend
/// (with a reason), reactivate, close; archive and restore leave the status alone.
///
/// # Errors
/// 422 naming `reason`, 404, 409 for a transition the status does not allow or missing documents;
/// a storage error.
pub async fn decide(
    state: &AppState,
    admin: AuthUser,
    id: MerchantId,
    decision: Decision,
    reason: Option<String>,
) -> Result<Merchant, ApiError> {
    let action = decision.as_str();
    let reason = reason.filter(|r| !r.trim().is_empty());
    if matches!(decision, Decision::Reject | Decision::Suspend) && reason.is_none() {
        return Err(ApiError::validation("reason", format!("a reason is required to {action} a merchant")));
    }
    let required = state.settings.merchants.required_documents.clone();
    let m = storage::transaction(&state.db, move |conn| {
        let m = find(conn, id)?;
        let now = Utc::now();
        if matches!(decision, Decision::Archive | Decision::Restore) {
            let archive = decision == Decision::Archive;
            if archive == m.archived_at.is_some() {
                return Err(MerchantError::InvalidTransition {
                    action,
                    current: if m.archived_at.is_some() { "archived".into() } else { "not archived".into() },
                });
            }
            return Ok(diesel::update(merchants::table.find(id))
                .set((merchants::archived_at.eq(archive.then_some(now)), merchants::updated_at.eq(now)))
                .returning(Merchant::as_returning())
                .get_result(conn)?);
        }
        let to = transition(action, m.status)?;
        if decision == Decision::Approve {
            let approved: Vec<String> = merchant_documents::table
                .filter(merchant_documents::merchant_id.eq(id))
                .filter(merchant_documents::superseded_by.is_null())
                .filter(merchant_documents::status.eq(DocumentStatus::Approved))
                .select(merchant_documents::doc_type)
                .load(conn)?;
            let missing: Vec<&str> = required.iter().filter(|d| !approved.contains(d)).map(String::as_str).collect();
            if !missing.is_empty() {
                return Err(MerchantError::DocumentsMissing(missing.join(", ")));
            }
        }
        // Guarded on the old status, so two concurrent decisions cannot both apply.
        let updated: Option<Merchant> =
            diesel::update(merchants::table.find(id).filter(merchants::status.eq(m.status)))
                .set((
                    merchants::status.eq(to),
                    merchants::status_reason.eq(reason.clone()),
                    merchants::decided_by.eq(admin.user_id),
                    merchants::decided_at.eq(now),
                    merchants::updated_at.eq(now),
                ))
                .returning(Merchant::as_returning())
                .get_result(conn)
                .optional()?;
        let updated = updated.ok_or(MerchantError::InvalidTransition { action, current: "changing".into() })?;
        if to == MerchantStatus::Active {
            model::grant_role(conn, m.owner_id, ROLE_MERCHANT)
                .map_err(|e| MerchantError::Storage(StorageError::Other(e.to_string())))?;
        }
        emit(
            conn,
            merchant_event(
                "merchant.status_changed",
                &updated,
                serde_json::json!({"from": m.status, "to": to, "action": action}),
            ),
        )?;
        Ok(updated)
    })
    .await?;
    crate::metrics::count("merchant_decision", action);
    // Keys of a merchant that is no longer active stop at once here (elsewhere within the bound).
    state.api_keys.invalidate_all();
    Ok(m)
}

/// Rotates an API key of the caller's active merchant: a new key (shown once); the old one keeps
/// working for the configured overlap.
///
/// # Errors
/// 404 unknown merchant or key, 409 not active or the key already revoked or rotated; a storage error.
pub async fn rotate_key(
    state: &AppState,
    user: AuthUser,
    id: MerchantId,
    key: ApiKeyId,
) -> Result<CreatedKey, ApiError> {
    let overlap = state.settings.merchants.key_rotation_overlap_secs;
    let st = state.clone();
    let (created, old_key_id) = storage::transaction(&state.db, move |conn| {
        let m = owned_active(conn, id, &user)?;
        let old: KeyView = merchant_api_keys::table
            .filter(merchant_api_keys::id.eq(key))
            .filter(merchant_api_keys::merchant_id.eq(id))
            .select(KeyView::as_select())
            .for_update()
            .first(conn)
            .optional()?
            .ok_or(MerchantError::KeyNotFound)?;
        if old.revoked_at.is_some() || old.expires_at.is_some() {
            return Err(MerchantError::InvalidTransition {
                action: "rotate",
                current: "already revoked or rotated".into(),
            });
        }
        let created = insert_key(conn, &st, &m, &old.label, user.user_id)?;
        diesel::update(merchant_api_keys::table.find(key))
            .set((
                merchant_api_keys::expires_at.eq(Utc::now() + chrono::Duration::seconds(overlap)),
                merchant_api_keys::rotated_to.eq(created.key.id),
            ))
            .execute(conn)?;
        Ok((created, old.key_id))
    })
    .await?;
    state.api_keys.invalidate(&old_key_id);
    Ok(created)
}

/// One page of the merchant account's statement (its owner or an admin): postings newest first,
/// with the running balance, in the optional `from`/`to` window — the same lines, cursors and
/// window as a card's statement.
///
/// # Errors
/// 404 unknown or another owner's merchant; 422 for a bad page or window; a storage error.
pub async fn statement(
    state: &AppState,
    user: AuthUser,
    id: MerchantId,
    q: &crate::cards::routes::StatementQuery,
) -> Result<Page<crate::cards::routes::StatementLine>, ApiError> {
    let (limit, cursor, window) = q.resolve()?;
    let lines = storage::run(&state.db, move |conn| {
        let m = find_for(conn, id, &user)?;
        Ok::<_, MerchantError>(crate::cards::routes::statement_lines(conn, m.account_id.get(), window, limit, cursor)?)
    })
    .await?;
    Ok(Page::from_rows(lines, limit, |l| l.posting_id))
}

/// The balance of a merchant's account (its owner or an admin).
///
/// # Errors
/// 404; a storage error.
pub async fn balance(state: &AppState, user: AuthUser, id: MerchantId) -> Result<MerchantBalance, ApiError> {
    let (m, balance) = storage::run(&state.db, move |conn| {
        let m = find_for(conn, id, &user)?;
        let b: i64 = accounts::table.find(m.account_id).select(accounts::balance).first(conn)?;
        Ok::<_, MerchantError>((m, b))
    })
    .await?;
    Ok(MerchantBalance {
        merchant_id: m.id,
        account_id: m.account_id,
        currency: state.settings.money.currency.clone(),
        balance,
    })
}

/// Restores every archived merchant (admin). Both transports (`POST /api/v1/merchants/restore-all`,
/// `Merchants.RestoreAllMerchants`).
///
/// # Errors
/// A storage error.
pub async fn restore_all(state: &AppState) -> Result<crate::http::RestoredAll, ApiError> {
    let restored = storage::run(&state.db, move |conn| {
        let now = Utc::now();
        diesel::update(merchants::table.filter(merchants::archived_at.is_not_null()))
            .set((merchants::archived_at.eq(None::<chrono::DateTime<Utc>>), merchants::updated_at.eq(now)))
            .execute(conn)
            .map_err(StorageError::from)
    })
    .await?;
    Ok(crate::http::RestoredAll { restored })
}
