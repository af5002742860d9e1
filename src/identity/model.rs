//! Identity records and their queries: users, roles, and who holds which role.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::identity::IdentityError;
use crate::ids::UserId;
use crate::storage::schema::{roles, user_roles, users};

pub const ROLE_ADMIN: &str = "admin";
pub const ROLE_MERCHANT: &str = "merchant";
pub const ROLE_USER: &str = "user";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: UserId,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub password_hash: String,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
    /// The name chosen to show payers; `None`: first name and the initial of the last name.
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = roles)]
pub struct Role {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub builtin: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    #[schema(value_type = i64)]
    pub id: UserId,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub email_verified: bool,
    /// The name people paying this user by card number see (`PUT /api/v1/auth/me/display-name`;
    /// by default the first name and the initial of the last name).
    pub display_name: String,
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
}

impl UserView {
    pub fn new(u: User, roles: Vec<String>) -> Self {
        let display_name = u
            .display_name
            .clone()
            .unwrap_or_else(|| crate::payments::recipient::display_name(&u.first_name, &u.last_name));
        Self {
            id: u.id,
            first_name: u.first_name,
            last_name: u.last_name,
            email: u.email,
            email_verified: u.email_verified_at.is_some(),
            display_name,
            roles,
            created_at: u.created_at,
            updated_at: u.updated_at,
            archived_at: u.archived_at,
        }
    }
}

/// Normalises an e-mail for storage and lookup.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// # Errors
/// `UserNotFound` or a storage error.
pub fn find_user(conn: &mut PgConnection, id: UserId) -> Result<User, IdentityError> {
    users::table.find(id).select(User::as_select()).first(conn).optional()?.ok_or(IdentityError::UserNotFound)
}

/// # Errors
/// A storage error.
pub fn find_user_by_email(conn: &mut PgConnection, email: &str) -> Result<Option<User>, IdentityError> {
    Ok(users::table.filter(users::email.eq(normalise_email(email))).select(User::as_select()).first(conn).optional()?)
}

/// Names of the active roles a user holds, sorted.
///
/// # Errors
/// A storage error.
pub fn role_names(conn: &mut PgConnection, user_id: UserId) -> Result<Vec<String>, IdentityError> {
    Ok(user_roles::table
        .inner_join(roles::table)
        .filter(user_roles::user_id.eq(user_id))
        .filter(roles::archived_at.is_null())
        .select(roles::name)
        .order(roles::name.asc())
        .load(conn)?)
}

/// Role names for many users at once.
///
/// # Errors
/// A storage error.
pub fn role_names_for(
    conn: &mut PgConnection,
    user_ids: &[UserId],
) -> Result<std::collections::HashMap<UserId, Vec<String>>, IdentityError> {
    let rows: Vec<(UserId, String)> = user_roles::table
        .inner_join(roles::table)
        .filter(user_roles::user_id.eq_any(user_ids))
        .filter(roles::archived_at.is_null())
        .select((user_roles::user_id, roles::name))
        .order(roles::name.asc())
        .load(conn)?;
    let mut map: std::collections::HashMap<UserId, Vec<String>> = std::collections::HashMap::new();
    for (uid, name) in rows {
        map.entry(uid).or_default().push(name);
    }
    Ok(map)
}

/// # Errors
/// `RoleNotFound` or a storage error.
pub fn find_role_by_name(conn: &mut PgConnection, name: &str) -> Result<Role, IdentityError> {
    roles::table
        .filter(roles::name.eq(name))
        .select(Role::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| IdentityError::RoleNotFound(name.to_owned()))
}

/// Grants a role (no-op if already held).
///
/// # Errors
/// `RoleNotFound` or a storage error.
pub fn grant_role(conn: &mut PgConnection, user_id: UserId, role: &str) -> Result<(), IdentityError> {
    let role = find_role_by_name(conn, role)?;
    diesel::insert_into(user_roles::table)
        .values((user_roles::user_id.eq(user_id), user_roles::role_id.eq(role.id)))
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(())
}

/// Number of active, unarchived users holding the admin role.
///
/// # Errors
/// A storage error.
pub fn active_admin_count(conn: &mut PgConnection) -> Result<i64, IdentityError> {
    Ok(user_roles::table
        .inner_join(roles::table)
        .inner_join(users::table)
        .filter(roles::name.eq(ROLE_ADMIN))
        .filter(users::archived_at.is_null())
        .count()
        .get_result(conn)?)
}

/// Loads a user with roles as the API shows it.
///
/// # Errors
/// `UserNotFound` or a storage error.
pub fn user_view(conn: &mut PgConnection, id: UserId) -> Result<UserView, IdentityError> {
    let user = find_user(conn, id)?;
    let roles = role_names(conn, id)?;
    Ok(UserView::new(user, roles))
}
