//! Admin APIs: `/api/v1/users…` (list/search/get/create/update/archive/restore/purge, role assignment)
//! and `/api/v1/roles…` (list/get/create/update/archive/restore/restore-all/purge). Admin only.

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use diesel::prelude::*;
use serde::Deserialize;
use validator::Validate;

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::pagination::{search_opt, Page, PageQuery};
use crate::http::routes::{Api, ADMIN};
use crate::http::{RestoredAll, Valid};
use crate::identity::model::{self, normalise_email, Role, User, UserView, ROLE_ADMIN};
use crate::identity::{password, sessions, IdentityError};
use crate::ids::UserId;
use crate::storage::schema::{roles, user_roles, users};
use crate::storage::{self, StorageError};

pub fn register(api: &mut Api) {
    let t = "users";
    let (r, s) = api.route(Method::GET, "/api/v1/users", ADMIN, t, "List or search users", web::get().to(list_users));
    r.query(&["search", "status", "include_total", "limit", "cursor"]).responds_page::<UserView>(s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/users/restore-all",
        ADMIN,
        t,
        "Restore every archived user; answers how many",
        web::post().to(restore_all_users),
    );
    r.responds::<RestoredAll>(200, s);
    let (r, s) = api.route(Method::POST, "/api/v1/users", ADMIN, t, "Create a user", web::post().to(create_user));
    r.body::<CreateUserRequest>(s).responds::<UserView>(201, s);
    let (r, s) = api.route(Method::GET, "/api/v1/users/{id}", ADMIN, t, "Get a user", web::get().to(get_user));
    r.responds::<UserView>(200, s);
    let (r, s) = api.route(
        Method::PATCH,
        "/api/v1/users/{id}",
        ADMIN,
        t,
        "Update a user's profile",
        web::patch().to(update_user),
    );
    r.body::<UpdateUserRequest>(s).responds::<UserView>(200, s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/users/{id}/archive",
        ADMIN,
        t,
        "Archive a user (sessions revoked)",
        web::post().to(archive_user),
    );
    r.responds::<UserView>(200, s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/users/{id}/restore",
        ADMIN,
        t,
        "Restore an archived user",
        web::post().to(restore_user),
    );
    r.responds::<UserView>(200, s);
    let (r, _) = api.route(
        Method::DELETE,
        "/api/v1/users/{id}",
        ADMIN,
        t,
        "Purge an archived user with no records",
        web::delete().to(purge_user),
    );
    r.no_content();
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/users/{id}/password",
        ADMIN,
        t,
        "Set a user's password (sessions revoked, the user is e-mailed)",
        web::post().to(set_password),
    );
    r.body::<SetPasswordRequest>(s).responds::<UserView>(200, s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/users/{id}/password/reset",
        ADMIN,
        t,
        "Force a password reset: the password stops working, sessions are revoked, a reset token is e-mailed",
        web::post().to(force_reset),
    );
    r.responds::<UserView>(200, s);
    let (r, s) = api.route(
        Method::GET,
        "/api/v1/users/{id}/roles",
        ADMIN,
        t,
        "A user's roles (admin; a user reads their own in /auth/me)",
        web::get().to(user_roles_of),
    );
    r.responds::<UserRolesView>(200, s);
    let (r, s) =
        api.route(Method::POST, "/api/v1/users/{id}/roles", ADMIN, t, "Assign a role", web::post().to(assign_role));
    r.body::<AssignRoleRequest>(s).responds::<UserView>(200, s);
    let (r, s) = api.route(
        Method::DELETE,
        "/api/v1/users/{id}/roles/{role}",
        ADMIN,
        t,
        "Revoke a role (sessions revoked)",
        web::delete().to(revoke_role),
    );
    r.responds::<UserView>(200, s);

    let t = "roles";
    let (r, s) = api.route(Method::GET, "/api/v1/roles", ADMIN, t, "List or search roles", web::get().to(list_roles));
    r.query(&["search", "status", "include_total", "limit", "cursor"]).responds_page::<Role>(s);
    let (r, s) = api.route(
        Method::POST,
        "/api/v1/roles/restore-all",
        ADMIN,
        t,
        "Restore every archived role; answers how many",
        web::post().to(restore_all_roles),
    );
    r.responds::<RestoredAll>(200, s);
    let (r, s) = api.route(Method::POST, "/api/v1/roles", ADMIN, t, "Create a role", web::post().to(create_role));
    r.body::<RoleRequest>(s).responds::<Role>(201, s);
    let (r, s) = api.route(Method::GET, "/api/v1/roles/{id}", ADMIN, t, "Get a role", web::get().to(get_role));
    r.responds::<Role>(200, s);
    let (r, s) =
        api.route(Method::PATCH, "/api/v1/roles/{id}", ADMIN, t, "Update a role", web::patch().to(update_role));
    r.body::<UpdateRoleRequest>(s).responds::<Role>(200, s);
    let (r, s) =
        api.route(Method::POST, "/api/v1/roles/{id}/archive", ADMIN, t, "Archive a role", web::post().to(archive_role));
    r.responds::<Role>(200, s);
    let (r, s) =
        api.route(Method::POST, "/api/v1/roles/{id}/restore", ADMIN, t, "Restore a role", web::post().to(restore_role));
    r.responds::<Role>(200, s);
    let (r, _) = api.route(
        Method::DELETE,
        "/api/v1/roles/{id}",
        ADMIN,
        t,
        "Purge an unassigned, non-built-in role",
        web::delete().to(purge_role),
    );
    r.no_content();
}

/// `status` filter for lists: `active` (default), `archived` or `all`.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    #[default]
    Active,
    Archived,
    All,
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(flatten)]
    pub page: PageQuery,
    pub search: Option<String>,
    #[serde(default)]
    pub status: StatusFilter,
}

fn users_matching(status: StatusFilter, pattern: Option<String>) -> users::BoxedQuery<'static, diesel::pg::Pg> {
    let mut query = users::table.into_boxed();
    query = match status {
        StatusFilter::Active => query.filter(users::archived_at.is_null()),
        StatusFilter::Archived => query.filter(users::archived_at.is_not_null()),
        StatusFilter::All => query,
    };
    if let Some(p) = pattern {
        query = query
            .filter(users::email.ilike(p.clone()).or(users::first_name.ilike(p.clone())).or(users::last_name.ilike(p)));
    }
    query
}

fn roles_matching(status: StatusFilter, pattern: Option<String>) -> roles::BoxedQuery<'static, diesel::pg::Pg> {
    let mut query = roles::table.into_boxed();
    query = match status {
        StatusFilter::Active => query.filter(roles::archived_at.is_null()),
        StatusFilter::Archived => query.filter(roles::archived_at.is_not_null()),
        StatusFilter::All => query,
    };
    if let Some(p) = pattern {
        query = query.filter(roles::name.ilike(p.clone()).or(roles::description.ilike(p)));
    }
    query
}

fn role_name_rule(name: &str) -> Result<(), validator::ValidationError> {
    let re_ok = name.len() >= 2
        && name.len() <= 50
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if re_ok {
        Ok(())
    } else {
        Err(validator::ValidationError::new("role_name").with_message(
            "name must be 2-50 characters: lowercase letters, digits, '_' or '-', starting with a letter".into(),
        ))
    }
}

fn password_policy(s: &str) -> Result<(), validator::ValidationError> {
    password::policy(s)
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"first_name": "Budi", "last_name": "Santoso", "email": "budi@example.com",
    "password": "s3cret-pass", "roles": ["user"], "email_verified": true}))]
pub struct CreateUserRequest {
    #[validate(length(min = 1, max = 100, message = "first_name must be 1-100 characters"))]
    #[schema(min_length = 1, max_length = 100)]
    pub first_name: String,
    #[validate(length(min = 1, max = 100, message = "last_name must be 1-100 characters"))]
    #[schema(min_length = 1, max_length = 100)]
    pub last_name: String,
    #[validate(
        email(message = "email must be a valid e-mail address"),
        length(max = 254, message = "email is too long")
    )]
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 8-128 characters with at least one letter and one digit.
    #[validate(custom(function = "password_policy"))]
    #[schema(min_length = 8, max_length = 128, pattern = "[A-Za-z][\\s\\S]*[0-9]|[0-9][\\s\\S]*[A-Za-z]")]
    pub password: String,
    /// Roles to grant; defaults to `["user"]`.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// Whether the e-mail counts as verified (admin-created accounts usually are).
    #[serde(default)]
    pub email_verified: bool,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"first_name": "Budi", "email": "budi.santoso@example.com"}))]
pub struct UpdateUserRequest {
    #[validate(length(min = 1, max = 100, message = "first_name must be 1-100 characters"))]
    #[schema(min_length = 1, max_length = 100)]
    pub first_name: Option<String>,
    #[validate(length(min = 1, max = 100, message = "last_name must be 1-100 characters"))]
    #[schema(min_length = 1, max_length = 100)]
    pub last_name: Option<String>,
    #[validate(email(message = "email must be a valid e-mail address"))]
    #[schema(format = Email)]
    pub email: Option<String>,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "merchant"}))]
pub struct AssignRoleRequest {
    #[validate(length(min = 1, max = 50, message = "role is required"))]
    #[schema(min_length = 1, max_length = 50)]
    pub role: String,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "auditor", "description": "Reads statements"}))]
pub struct RoleRequest {
    /// 2-50 characters: lowercase letters, digits, `_` or `-`, starting with a letter.
    #[validate(custom(function = "role_name_rule"))]
    #[schema(min_length = 2, max_length = 50, pattern = "^[a-z][a-z0-9_-]*$")]
    pub name: String,
    #[validate(length(max = 500, message = "description must be at most 500 characters"))]
    #[schema(max_length = 500)]
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"description": "Reads statements and balances"}))]
pub struct UpdateRoleRequest {
    /// 2-50 characters: lowercase letters, digits, `_` or `-`, starting with a letter.
    #[validate(custom(function = "role_name_rule"))]
    #[schema(min_length = 2, max_length = 50, pattern = "^[a-z][a-z0-9_-]*$")]
    pub name: Option<String>,
    #[validate(length(max = 500, message = "description must be at most 500 characters"))]
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

async fn list_users(state: web::Data<AppState>, q: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(users_list(&state, q.into_inner()).await?))
}

/// One page of users, newest first, filtered by archive status and a search in names and e-mail.
///
/// # Errors
/// 422 a bad cursor, limit or search, a storage error.
pub async fn users_list(state: &AppState, q: ListQuery) -> Result<Page<UserView>, ApiError> {
    let (limit, cursor, with_total) = q.page.resolve_with_total()?;
    let pattern = search_opt(q.search.as_deref())?;
    let (views, total) = storage::run(&state.db, move |conn| {
        let total: Option<i64> = if with_total {
            Some(users_matching(q.status, pattern.clone()).count().get_result(conn).map_err(StorageError::from)?)
        } else {
            None
        };
        let mut query =
            users_matching(q.status, pattern).select(User::as_select()).order(users::id.desc()).limit(limit + 1);
        if let Some(c) = cursor {
            query = query.filter(users::id.lt(c));
        }
        let rows = query.load(conn).map_err(StorageError::from)?;
        let ids: Vec<UserId> = rows.iter().map(|u| u.id).collect();
        let mut roles = model::role_names_for(conn, &ids)?;
        let views = rows
            .into_iter()
            .map(|u| {
                let r = roles.remove(&u.id).unwrap_or_default();
                UserView::new(u, r)
            })
            .collect::<Vec<_>>();
        Ok::<_, IdentityError>((views, total))
    })
    .await?;
    Ok(Page::from_rows(views, limit, |u| u.id.get()).with_total(total))
}

async fn create_user(state: web::Data<AppState>, body: Valid<CreateUserRequest>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(user_create(&state, body.into_inner()).await?))
}

/// Creates a user with the given roles (default `user`), verified or not (both transports).
///
/// # Errors
/// 409 e-mail taken; 404 an unknown or archived role; a storage or hashing failure.
pub async fn user_create(state: &AppState, body: CreateUserRequest) -> Result<UserView, ApiError> {
    let hash = password::hash(body.password).await.map_err(ApiError::internal)?;
    let wanted = body.roles.unwrap_or_else(|| vec![model::ROLE_USER.to_owned()]);
    let view = storage::transaction(&state.db, move |conn| {
        let verified = body.email_verified.then(Utc::now);
        let id: UserId = diesel::insert_into(users::table)
            .values((
                users::first_name.eq(body.first_name.trim()),
                users::last_name.eq(body.last_name.trim()),
                users::email.eq(normalise_email(&body.email)),
                users::password_hash.eq(&hash),
                users::email_verified_at.eq(verified),
            ))
            .returning(users::id)
            .get_result(conn)
            .map_err(|e| match StorageError::from(e) {
                StorageError::Conflict(_) => IdentityError::EmailTaken,
                other => other.into(),
            })?;
        for role in &wanted {
            let r = model::find_role_by_name(conn, role)?;
            if r.archived_at.is_some() {
                return Err(IdentityError::RoleNotFound(role.clone()));
            }
            model::grant_role(conn, id, role)?;
        }
        let view = model::user_view(conn, id)?;
        super::routes::user_event(
            conn,
            "user.created",
            id,
            serde_json::json!({ "roles": view.roles, "email_verified": verified.is_some() }),
        )?;
        Ok(view)
    })
    .await?;
    Ok(view)
}

async fn get_user(state: web::Data<AppState>, id: web::Path<UserId>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(user(&state, id.into_inner()).await?))
}

/// A user by id (for admins; both transports).
///
/// # Errors
/// 404; a storage error.
pub async fn user(state: &AppState, id: UserId) -> Result<model::UserView, ApiError> {
    Ok(storage::run(&state.db, move |conn| model::user_view(conn, id)).await?)
}

async fn update_user(
    state: web::Data<AppState>,
    id: web::Path<UserId>,
    body: Valid<UpdateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(user_update(&state, id.into_inner(), body.into_inner()).await?))
}

/// Updates a user's names and e-mail (absent: unchanged).
///
/// # Errors
/// 404 unknown user, 409 the e-mail is taken, a storage error.
pub async fn user_update(state: &AppState, id: UserId, body: UpdateUserRequest) -> Result<UserView, ApiError> {
    let view = storage::transaction(&state.db, move |conn| {
        let user = model::find_user(conn, id)?;
        let first = body.first_name.map(|s| s.trim().to_owned()).unwrap_or(user.first_name);
        let last = body.last_name.map(|s| s.trim().to_owned()).unwrap_or(user.last_name);
        let email = body.email.map(|e| normalise_email(&e)).unwrap_or(user.email);
        diesel::update(users::table.find(id))
            .set((
                users::first_name.eq(first),
                users::last_name.eq(last),
                users::email.eq(email),
                users::updated_at.eq(Utc::now()),
            ))
            .execute(conn)
            .map_err(|e| match StorageError::from(e) {
                StorageError::Conflict(_) => IdentityError::EmailTaken,
                other => other.into(),
            })?;
        model::user_view(conn, id)
    })
    .await?;
    Ok(view)
}

fn holds_admin(conn: &mut PgConnection, id: UserId) -> Result<bool, IdentityError> {
    Ok(model::role_names(conn, id)?.iter().any(|r| r == ROLE_ADMIN))
}

async fn archive_user(state: web::Data<AppState>, id: web::Path<UserId>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(user_archive(&state, id.into_inner()).await?))
}

/// Archives a user (every session revoked); the last active admin cannot be archived.
///
/// # Errors
/// 404 unknown user, 409 already archived or the last admin, a storage error.
pub async fn user_archive(state: &AppState, id: UserId) -> Result<UserView, ApiError> {
    let (view, revoked) = storage::transaction(&state.db, move |conn| {
        let user = model::find_user(conn, id)?;
        if user.archived_at.is_some() {
            return Err(IdentityError::AlreadyArchived);
        }
        if holds_admin(conn, id)? && model::active_admin_count(conn)? <= 1 {
            return Err(IdentityError::LastAdmin);
        }
        diesel::update(users::table.find(id))
            .set((users::archived_at.eq(Utc::now()), users::updated_at.eq(Utc::now())))
            .execute(conn)?;
        let revoked = sessions::revoke_user_sessions(conn, id, None)?;
        Ok((model::user_view(conn, id)?, revoked))
    })
    .await?;
    sessions::flag_revoked(state, &revoked).await?;
    Ok(view)
}

async fn restore_user(state: web::Data<AppState>, id: web::Path<UserId>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(user_restore(&state, id.into_inner()).await?))
}

/// Restores an archived user.
///
/// # Errors
/// 404 unknown user, 409 not archived, a storage error.
pub async fn user_restore(state: &AppState, id: UserId) -> Result<UserView, ApiError> {
    let view = storage::transaction(&state.db, move |conn| {
        let user = model::find_user(conn, id)?;
        if user.archived_at.is_none() {
            return Err(IdentityError::NotArchived);
        }
        diesel::update(users::table.find(id))
            .set((users::archived_at.eq(None::<chrono::DateTime<Utc>>), users::updated_at.eq(Utc::now())))
            .execute(conn)?;
        model::user_view(conn, id)
    })
    .await?;
    Ok(view)
}

async fn purge_user(state: web::Data<AppState>, id: web::Path<UserId>, me: AuthUser) -> Result<HttpResponse, ApiError> {
    user_purge(&state, &me, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes an archived user that has no records (never oneself) (both transports).
///
/// # Errors
/// 404; 409 oneself, not archived, or the user has records; a storage error.
pub async fn user_purge(state: &AppState, me: &AuthUser, id: UserId) -> Result<(), ApiError> {
    if id == me.user_id {
        return Err(ApiError::conflict("self_purge", "you cannot purge your own account"));
    }
    storage::transaction(&state.db, move |conn| {
        let user = model::find_user(conn, id)?;
        if user.archived_at.is_none() {
            return Err(IdentityError::NotArchived);
        }
        diesel::delete(users::table.find(id)).execute(conn).map_err(|e| match StorageError::from(e) {
            StorageError::Referenced(_) => IdentityError::UserHasRecords,
            other => other.into(),
        })?;
        Ok(())
    })
    .await?;
    Ok(())
}

/// `POST /users/{id}/password`: the new password, under the registration policy.
#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"password": "n3w-Secret-pass"}))]
pub struct SetPasswordRequest {
    #[validate(custom(function = "password::policy"))]
    #[schema(min_length = 8, max_length = 128, pattern = "[A-Za-z][\\s\\S]*[0-9]|[0-9][\\s\\S]*[A-Za-z]")]
    pub password: String,
}

/// A stored password hash no password matches (not a PHC string, so verification fails without
/// hashing anything): the account can be used again only after a reset by e-mail.
const UNUSABLE_PASSWORD: &str = "!reset-required";

async fn set_password(
    state: web::Data<AppState>,
    admin: AuthUser,
    id: web::Path<UserId>,
    body: Valid<SetPasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(user_set_password(&state, &admin, id.into_inner(), body.into_inner()).await?))
}

/// Sets a user's password: every session is revoked and the user is e-mailed (both transports).
///
/// # Errors
/// 404 unknown user; a storage or hashing failure.
pub async fn user_set_password(
    state: &AppState,
    admin: &AuthUser,
    id: UserId,
    body: SetPasswordRequest,
) -> Result<UserView, ApiError> {
    let hash = password::hash(body.password).await.map_err(ApiError::internal)?;
    let by = admin.user_id;
    let (view, revoked) = storage::transaction(&state.db, move |conn| {
        model::find_user(conn, id)?;
        diesel::update(users::table.find(id))
            .set((users::password_hash.eq(&hash), users::updated_at.eq(Utc::now())))
            .execute(conn)?;
        let revoked = sessions::revoke_user_sessions(conn, id, None)?;
        // The event is the audit record and makes the notifier e-mail the user (`password_changed`).
        super::routes::user_event(conn, "password.changed", id, serde_json::json!({ "via": "admin", "by": by }))?;
        Ok::<_, IdentityError>((model::user_view(conn, id)?, revoked))
    })
    .await?;
    sessions::flag_revoked(state, &revoked).await?;
    super::routes::nudge(state);
    tracing::info!(user_id = %id, by = %by, "password set by an admin");
    Ok(view)
}

async fn force_reset(
    state: web::Data<AppState>,
    admin: AuthUser,
    id: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(user_force_reset(&state, &admin, id.into_inner()).await?))
}

/// Forces a password reset: the password stops working, every session is revoked, and an active
/// user is e-mailed a reset token.
///
/// # Errors
/// 404 unknown user, a storage error.
pub async fn user_force_reset(state: &AppState, admin: &AuthUser, id: UserId) -> Result<UserView, ApiError> {
    let by = admin.user_id;
    let st = state.clone();
    let (view, revoked) = storage::transaction(&state.db, move |conn| {
        let user = model::find_user(conn, id)?;
        diesel::update(users::table.find(id))
            .set((users::password_hash.eq(UNUSABLE_PASSWORD), users::updated_at.eq(Utc::now())))
            .execute(conn)?;
        let revoked = sessions::revoke_user_sessions(conn, id, None)?;
        super::routes::user_event(conn, "password.changed", id, serde_json::json!({ "via": "admin_reset", "by": by }))?;
        if user.archived_at.is_none() {
            super::routes::issue_reset_token(conn, &st, &user)?;
        }
        Ok::<_, IdentityError>((model::user_view(conn, id)?, revoked))
    })
    .await?;
    sessions::flag_revoked(state, &revoked).await?;
    super::routes::nudge(state);
    tracing::info!(user_id = %id, by = %by, "password reset forced by an admin");
    Ok(view)
}

/// `GET /users/{id}/roles`: the active roles of a user, by name.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UserRolesView {
    pub user_id: i64,
    /// Role names, sorted (archived roles are not listed).
    pub roles: Vec<String>,
}

async fn user_roles_of(state: web::Data<AppState>, id: web::Path<UserId>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(roles_of_user(&state, id.into_inner()).await?))
}

/// The active roles of a user (both transports).
///
/// # Errors
/// 404 for an unknown user; a storage error.
pub async fn roles_of_user(state: &AppState, id: UserId) -> Result<UserRolesView, ApiError> {
    let roles = storage::run(&state.db, move |conn| {
        model::find_user(conn, id)?;
        model::role_names(conn, id)
    })
    .await?;
    Ok(UserRolesView { user_id: id.get(), roles })
}

async fn assign_role(
    state: web::Data<AppState>,
    id: web::Path<UserId>,
    body: Valid<AssignRoleRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(role_assign(&state, id.into_inner(), body.into_inner()).await?))
}

/// Grants a role to a user (both transports).
///
/// # Errors
/// 404 for an unknown user or role, 409 for an archived role; a storage error.
pub async fn role_assign(state: &AppState, id: UserId, body: AssignRoleRequest) -> Result<UserView, ApiError> {
    let role = body.role;
    let view = storage::transaction(&state.db, move |conn| {
        model::find_user(conn, id)?;
        let r = model::find_role_by_name(conn, &role)?;
        if r.archived_at.is_some() {
            return Err(IdentityError::AlreadyArchived);
        }
        model::grant_role(conn, id, &role)?;
        model::user_view(conn, id)
    })
    .await?;
    Ok(view)
}

async fn revoke_role(state: web::Data<AppState>, path: web::Path<(UserId, String)>) -> Result<HttpResponse, ApiError> {
    let (id, role) = path.into_inner();
    Ok(HttpResponse::Ok().json(role_revoke(&state, id, role).await?))
}

/// Revokes a role from a user and ends their sessions (both transports).
///
/// # Errors
/// 404 for an unknown user or a role not held, 409 for the last admin; a storage error.
pub async fn role_revoke(state: &AppState, id: UserId, role: String) -> Result<UserView, ApiError> {
    let (view, revoked) = storage::transaction(&state.db, move |conn| {
        model::find_user(conn, id)?;
        let r = model::find_role_by_name(conn, &role)?;
        if r.name == ROLE_ADMIN && holds_admin(conn, id)? && model::active_admin_count(conn)? <= 1 {
            return Err(IdentityError::LastAdmin);
        }
        let n = diesel::delete(user_roles::table.find((id, r.id))).execute(conn)?;
        if n == 0 {
            return Err(IdentityError::RoleNotFound(role));
        }
        // Tokens carry roles: end the user's sessions so the change applies at once.
        let revoked = sessions::revoke_user_sessions(conn, id, None)?;
        Ok((model::user_view(conn, id)?, revoked))
    })
    .await?;
    sessions::flag_revoked(state, &revoked).await?;
    Ok(view)
}

fn find_role(conn: &mut PgConnection, id: i64) -> Result<Role, IdentityError> {
    roles::table
        .find(id)
        .select(Role::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| IdentityError::RoleNotFound(id.to_string()))
}

async fn list_roles(state: web::Data<AppState>, q: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(roles_list(&state, q.into_inner()).await?))
}

/// A page of roles, filtered by status and search (both transports).
///
/// # Errors
/// 400 for a bad page or search; a storage error.
pub async fn roles_list(state: &AppState, q: ListQuery) -> Result<Page<Role>, ApiError> {
    let (limit, cursor, with_total) = q.page.resolve_with_total()?;
    let pattern = search_opt(q.search.as_deref())?;
    let (rows, total) = storage::run(&state.db, move |conn| {
        let total: Option<i64> =
            if with_total { Some(roles_matching(q.status, pattern.clone()).count().get_result(conn)?) } else { None };
        let mut query =
            roles_matching(q.status, pattern).select(Role::as_select()).order(roles::id.desc()).limit(limit + 1);
        if let Some(c) = cursor {
            query = query.filter(roles::id.lt(c));
        }
        Ok::<_, StorageError>((query.load(conn)?, total))
    })
    .await?;
    Ok(Page::from_rows(rows, limit, |r: &Role| r.id).with_total(total))
}

async fn restore_all_users(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(users_restore_all(&state).await?))
}

async fn restore_all_roles(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(roles_restore_all(&state).await?))
}

/// Restores every archived user (their sessions stay ended; they sign in again). Both transports
/// (`POST /api/v1/users/restore-all`, `Users.RestoreAllUsers`).
///
/// # Errors
/// A storage error.
pub async fn users_restore_all(state: &AppState) -> Result<RestoredAll, ApiError> {
    let restored = storage::run(&state.db, move |conn| {
        diesel::update(users::table.filter(users::archived_at.is_not_null()))
            .set((users::archived_at.eq(None::<chrono::DateTime<Utc>>), users::updated_at.eq(Utc::now())))
            .execute(conn)
            .map_err(StorageError::from)
    })
    .await?;
    Ok(RestoredAll { restored })
}

/// Restores every archived role (built-in roles are never archived). Both transports
/// (`POST /api/v1/roles/restore-all`, `Roles.RestoreAllRoles`).
///
/// # Errors
/// A storage error.
pub async fn roles_restore_all(state: &AppState) -> Result<RestoredAll, ApiError> {
    let restored = storage::run(&state.db, move |conn| {
        diesel::update(roles::table.filter(roles::archived_at.is_not_null()))
            .set((roles::archived_at.eq(None::<chrono::DateTime<Utc>>), roles::updated_at.eq(Utc::now())))
            .execute(conn)
            .map_err(StorageError::from)
    })
    .await?;
    Ok(RestoredAll { restored })
}

fn role_conflict(e: diesel::result::Error) -> IdentityError {
    match StorageError::from(e) {
        StorageError::Conflict(_) => IdentityError::RoleTaken,
        other => other.into(),
    }
}

async fn create_role(state: web::Data<AppState>, body: Valid<RoleRequest>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(role_create(&state, body.into_inner()).await?))
}

/// Creates a role (both transports).
///
/// # Errors
/// 409 for a taken name; a storage error.
pub async fn role_create(state: &AppState, body: RoleRequest) -> Result<Role, ApiError> {
    let role = storage::run(&state.db, move |conn| {
        diesel::insert_into(roles::table)
            .values((roles::name.eq(&body.name), roles::description.eq(&body.description)))
            .returning(Role::as_returning())
            .get_result(conn)
            .map_err(role_conflict)
    })
    .await?;
    Ok(role)
}

async fn get_role(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(role_get(&state, id.into_inner()).await?))
}

/// A role by id (both transports).
///
/// # Errors
/// 404; a storage error.
pub async fn role_get(state: &AppState, id: i64) -> Result<Role, ApiError> {
    Ok(storage::run(&state.db, move |conn| find_role(conn, id)).await?)
}

async fn update_role(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: Valid<UpdateRoleRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(role_update(&state, id.into_inner(), body.into_inner()).await?))
}

/// Updates a role's name or description; a built-in role keeps its name (both transports).
///
/// # Errors
/// 404, 409 for a taken name or renaming a built-in role; a storage error.
pub async fn role_update(state: &AppState, id: i64, body: UpdateRoleRequest) -> Result<Role, ApiError> {
    let role = storage::transaction(&state.db, move |conn| {
        let role = find_role(conn, id)?;
        if role.builtin && body.name.as_ref().is_some_and(|n| n != &role.name) {
            return Err(IdentityError::BuiltinRole(role.name));
        }
        diesel::update(roles::table.find(id))
            .set((
                roles::name.eq(body.name.unwrap_or(role.name)),
                roles::description.eq(body.description.unwrap_or(role.description)),
                roles::updated_at.eq(Utc::now()),
            ))
            .returning(Role::as_returning())
            .get_result(conn)
            .map_err(role_conflict)
    })
    .await?;
    Ok(role)
}

/// Archives (`archive`) or restores a role; built-in roles are never archived (both transports).
///
/// # Errors
/// 404, 409 for a built-in role or one already in that state; a storage error.
pub async fn role_set_archived(state: &AppState, id: i64, archive: bool) -> Result<Role, ApiError> {
    let role = storage::transaction(&state.db, move |conn| {
        let role = find_role(conn, id)?;
        if role.builtin {
            return Err(IdentityError::BuiltinRole(role.name));
        }
        match (archive, role.archived_at.is_some()) {
            (true, true) => return Err(IdentityError::AlreadyArchived),
            (false, false) => return Err(IdentityError::NotArchived),
            _ => {}
        }
        let at = archive.then(Utc::now);
        Ok(diesel::update(roles::table.find(id))
            .set((roles::archived_at.eq(at), roles::updated_at.eq(Utc::now())))
            .returning(Role::as_returning())
            .get_result(conn)?)
    })
    .await?;
    Ok(role)
}

async fn archive_role(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(role_set_archived(&state, id.into_inner(), true).await?))
}

async fn restore_role(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(role_set_archived(&state, id.into_inner(), false).await?))
}

async fn purge_role(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    role_purge(&state, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes a role that is not built in and assigned to nobody (both transports).
///
/// # Errors
/// 404; 409 built in or in use; a storage error.
pub async fn role_purge(state: &AppState, id: i64) -> Result<(), ApiError> {
    storage::transaction(&state.db, move |conn| {
        let role = find_role(conn, id)?;
        if role.builtin {
            return Err(IdentityError::BuiltinRole(role.name));
        }
        diesel::delete(roles::table.find(id)).execute(conn).map_err(|e| match StorageError::from(e) {
            StorageError::Referenced(_) => IdentityError::RoleInUse(role.name.clone()),
            other => other.into(),
        })?;
        Ok(())
    })
    .await?;
    Ok(())
}

/// Creates the bootstrap admin when none exists and credentials are configured.
///
/// # Errors
/// A storage or hashing failure.
pub async fn bootstrap_admin(state: &AppState) -> Result<(), ApiError> {
    let email = normalise_email(&state.settings.auth.bootstrap_admin_email);
    let pw = state.settings.auth.bootstrap_admin_password.expose().to_owned();
    if email.is_empty() || pw.is_empty() {
        return Ok(());
    }
    let exists = storage::run(&state.db, model::active_admin_count).await?;
    if exists > 0 {
        return Ok(());
    }
    let hash = password::hash(pw).await.map_err(ApiError::internal)?;
    let created = storage::transaction(&state.db, move |conn| {
        let id = match model::find_user_by_email(conn, &email)? {
            Some(u) => u.id,
            None => diesel::insert_into(users::table)
                .values((
                    users::first_name.eq("Platform"),
                    users::last_name.eq("Admin"),
                    users::email.eq(&email),
                    users::password_hash.eq(&hash),
                    users::email_verified_at.eq(Utc::now()),
                ))
                .returning(users::id)
                .get_result(conn)?,
        };
        model::grant_role(conn, id, ROLE_ADMIN)?;
        model::grant_role(conn, id, model::ROLE_USER)?;
        Ok::<_, IdentityError>(())
    })
    .await;
    if let Err(e) = created {
        // Several instances starting at once on a new database: another one created the admin first.
        if storage::run(&state.db, model::active_admin_count).await? > 0 {
            return Ok(());
        }
        return Err(e.into());
    }
    tracing::info!("bootstrap admin created");
    Ok(())
}
