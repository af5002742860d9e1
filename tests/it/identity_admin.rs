//! The admin APIs: users (list/search/paginate, get, create, update, archive, restore, purge, role
//! assignment) and roles (create/list/search/get/update/archive/restore/purge), with the rules that
//! protect built-in roles and the last admin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;

use serde_json::{json, Value};

fn ids(page: &Value) -> Vec<i64> {
    page["items"].as_array().unwrap().iter().map(|u| u["id"].as_i64().unwrap()).collect()
}

fn roles_of(user: &Value) -> Vec<String> {
    user["roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect()
}

/// Walks every page of a list with `limit`; returns all ids in order.
async fn walk(app: &TestApp, admin: &str, base: &str, limit: usize) -> Vec<i64> {
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let url = match &cursor {
            Some(c) => format!("{base}{sep}limit={limit}&cursor={c}"),
            None => format!("{base}{sep}limit={limit}"),
        };
        let (s, page) = app.get(&url, Some(admin)).await;
        assert_eq!(s, 200, "{url}: {page}");
        let got = ids(&page);
        assert!(got.len() <= limit, "{url} returned {} items", got.len());
        all.extend(got);
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(page["items"].as_array().unwrap().len(), limit, "a page with a cursor must be full");
                cursor = Some(c.to_owned());
            }
            None => return all,
        }
    }
    panic!("pagination did not end");
}

#[actix_web::test]
async fn list_search_and_paginate_users() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(app.admin_create_user(&admin, &format!("page{i}@example.com"), &["user"]).await);
    }
    let special = app.admin_create_user(&admin, "zed_100%@example.com", &["user"]).await;

    // All users (7 + special + bootstrap admin), newest first, across pages of 3 without gaps or repeats.
    let all = walk(&app, &admin, "/api/v1/users", 3).await;
    assert_eq!(all.len(), 9, "{all:?}");
    let mut sorted = all.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(sorted, all, "pages must be newest-first with no repeats");
    for id in created.iter().chain([&special]) {
        assert!(all.contains(id));
    }
    // Page size that divides the total exactly still terminates with a final empty-cursor page.
    assert_eq!(walk(&app, &admin, "/api/v1/users", 9).await, all);
    assert_eq!(walk(&app, &admin, "/api/v1/users", 100).await, all);

    // Search: by e-mail fragment, case-insensitively, paginated too.
    let found = walk(&app, &admin, "/api/v1/users?search=PAGE", 2).await;
    let mut want = created.clone();
    want.reverse();
    assert_eq!(found, want);
    let (s, b) = app.get("/api/v1/users?search=page3%40", Some(&admin)).await;
    assert_eq!(s, 200);
    assert_eq!(ids(&b), vec![created[3]]);
    // LIKE wildcards in the search are literal.
    let (s, b) = app.get("/api/v1/users?search=%25", Some(&admin)).await;
    assert_eq!(s, 200);
    assert_eq!(ids(&b), vec![special], "`%` must match only a literal percent sign: {b}");
    let (s, b) = app.get("/api/v1/users?search=_", Some(&admin)).await;
    assert_eq!(s, 200);
    assert_eq!(ids(&b), vec![special], "`_` must match only a literal underscore: {b}");
    let (s, b) = app.get("/api/v1/users?search=no-such-person", Some(&admin)).await;
    assert_eq!(s, 200);
    assert!(ids(&b).is_empty());
    assert!(b["next_cursor"].is_null());
    // The page never exposes password hashes.
    assert!(!b.to_string().contains("argon2"));
    let (_, b) = app.get("/api/v1/users?limit=100", Some(&admin)).await;
    assert!(!b.to_string().contains("argon2") && !b.to_string().contains("password"), "{b}");

    // Bad paging parameters are 422 naming the parameter.
    for (q, field) in [("limit=0", "limit"), ("limit=101", "limit"), ("limit=abc", "limit"), ("cursor=!!", "cursor")] {
        let (s, b) = app.get(&format!("/api/v1/users?{q}"), Some(&admin)).await;
        assert_eq!(s, 422, "{q}: {b}");
        assert_eq!(b["error"]["field"], field, "{q}: {b}");
    }
    let (s, b) = app.get("/api/v1/users?status=bogus", Some(&admin)).await;
    assert_eq!(s, 422, "{b}");
}

#[actix_web::test]
async fn create_get_and_update_users() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (s, u) = app
        .post(
            "/api/v1/users",
            Some(&admin),
            json!({"first_name": " Mia ", "last_name": "Merchant", "email": "Mia@Shop.example", "password": PASSWORD,
                   "roles": ["merchant", "user"], "email_verified": true}),
        )
        .await;
    assert_eq!(s, 201, "{u}");
    assert_eq!(u["email"], "mia@shop.example");
    assert_eq!(u["first_name"], "Mia");
    assert_eq!(roles_of(&u), vec!["merchant", "user"]);
    assert_eq!(u["email_verified"], true);
    assert!(u.get("password_hash").is_none() && u.get("password").is_none());
    let id = u["id"].as_i64().unwrap();
    // Admin-created, verified accounts can log in straight away and carry their roles.
    let (s, b) = app.login("mia@shop.example", PASSWORD).await;
    assert_eq!(s, 200, "{b}");
    let (_, me) = app.get("/api/v1/auth/me", Some(b["access_token"].as_str().unwrap())).await;
    assert_eq!(roles_of(&me), vec!["merchant", "user"]);

    // Default role is `user`; unverified accounts cannot log in until verified.
    let (s, u2) = app
        .post(
            "/api/v1/users",
            Some(&admin),
            json!({"first_name": "No", "last_name": "Roles", "email": "plain@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, 201, "{u2}");
    assert_eq!(roles_of(&u2), vec!["user"]);
    let (s, b) = app.login("plain@example.com", PASSWORD).await;
    expect_error(s, &b, 403, "email_not_verified");

    // Conflicts and bad input.
    let (s, b) = app
        .post(
            "/api/v1/users",
            Some(&admin),
            json!({"first_name": "A", "last_name": "B", "email": "MIA@shop.example", "password": PASSWORD}),
        )
        .await;
    expect_error(s, &b, 409, "email_taken");
    let (s, b) = app
        .post("/api/v1/users", Some(&admin), json!({"first_name": "A", "last_name": "B", "email": "r@example.com", "password": PASSWORD, "roles": ["wizard"]}))
        .await;
    expect_error(s, &b, 404, "not_found");
    // The failed create left nothing behind.
    let (_, b) = app.get("/api/v1/users?search=r%40example.com", Some(&admin)).await;
    assert!(ids(&b).is_empty(), "{b}");
    let (s, b) = app
        .post(
            "/api/v1/users",
            Some(&admin),
            json!({"first_name": "A", "last_name": "B", "email": "weak@example.com", "password": "weak"}),
        )
        .await;
    expect_error(s, &b, 422, "validation_failed");
    assert_eq!(b["error"]["field"], "password");

    // Each created user is announced once (`user.created`, roles but no secret); the failed creates wrote nothing.
    {
        use diesel::prelude::*;
        #[derive(QueryableByName)]
        struct Ev {
            #[diesel(sql_type = diesel::sql_types::Text)]
            aggregate_key: String,
            #[diesel(sql_type = diesel::sql_types::Jsonb)]
            payload: Value,
        }
        let evs: Vec<Ev> = diesel::sql_query(
            "SELECT aggregate_key, payload FROM outbox WHERE event_type = 'user.created' ORDER BY id",
        )
        .load(&mut app.db())
        .unwrap();
        let u2_id = u2["id"].as_i64().unwrap();
        let keys: Vec<&str> = evs.iter().map(|e| e.aggregate_key.as_str()).collect();
        assert_eq!(keys, vec![format!("user:{id}"), format!("user:{u2_id}")]);
        assert_eq!(evs[0].payload["roles"], json!(["merchant", "user"]));
        assert_eq!(evs[0].payload["email_verified"], true);
        assert_eq!(evs[1].payload["email_verified"], false);
        assert!(!evs[0].payload.to_string().contains("password"), "{}", evs[0].payload);
    }

    // Get.
    let (s, g) = app.get(&format!("/api/v1/users/{id}"), Some(&admin)).await;
    assert_eq!(s, 200, "{g}");
    assert_eq!(g["email"], "mia@shop.example");
    assert_eq!(roles_of(&g), vec!["merchant", "user"]);

    // Update: partial, trims, normalises e-mail.
    let (s, up) =
        app.call("PATCH", &format!("/api/v1/users/{id}"), Some(&admin), Some(json!({"last_name": " Moreau "}))).await;
    assert_eq!(s, 200, "{up}");
    assert_eq!(up["last_name"], "Moreau");
    assert_eq!(up["first_name"], "Mia");
    let (s, up) = app
        .call("PATCH", &format!("/api/v1/users/{id}"), Some(&admin), Some(json!({"email": "MIA2@Shop.example"})))
        .await;
    assert_eq!(s, 200, "{up}");
    assert_eq!(up["email"], "mia2@shop.example");
    let (s, b) = app.login("mia2@shop.example", PASSWORD).await;
    assert_eq!(s, 200, "login with the new address: {b}");
    // Taking someone else's address is a conflict; bad e-mail is 422; unknown field 400.
    let (s, b) =
        app.call("PATCH", &format!("/api/v1/users/{id}"), Some(&admin), Some(json!({"email": ADMIN_EMAIL}))).await;
    expect_error(s, &b, 409, "email_taken");
    let (s, b) = app.call("PATCH", &format!("/api/v1/users/{id}"), Some(&admin), Some(json!({"email": "nope"}))).await;
    expect_error(s, &b, 422, "validation_failed");
    let (s, b) =
        app.call("PATCH", &format!("/api/v1/users/{id}"), Some(&admin), Some(json!({"password_hash": "x"}))).await;
    expect_error(s, &b, 400, "invalid_json");
    let (s, b) = app.call("PATCH", &format!("/api/v1/users/{id}"), Some(&admin), Some(json!({"first_name": ""}))).await;
    expect_error(s, &b, 422, "validation_failed");
    assert_eq!(b["error"]["field"], "first_name");

    // Unknown and malformed ids.
    for (m, p, body) in [
        ("GET", "/api/v1/users/999999".to_owned(), None),
        ("PATCH", "/api/v1/users/999999".to_owned(), Some(json!({"first_name": "X"}))),
        ("POST", "/api/v1/users/999999/archive".to_owned(), None),
        ("POST", "/api/v1/users/999999/restore".to_owned(), None),
        ("DELETE", "/api/v1/users/999999".to_owned(), None),
        ("POST", "/api/v1/users/999999/roles".to_owned(), Some(json!({"role": "user"}))),
        ("DELETE", "/api/v1/users/999999/roles/user".to_owned(), None),
        ("GET", "/api/v1/users/abc".to_owned(), None),
        ("GET", "/api/v1/users/-1".to_owned(), None),
    ] {
        let (s, b) = app.call(m, &p, Some(&admin), body).await;
        expect_error(s, &b, 404, "not_found");
    }
}

#[actix_web::test]
async fn archive_restore_and_purge_users() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let email = "leaver@example.com";
    let (uid, access, refresh) = app.user(email).await;

    // Purging an active user is refused: archive first.
    let (s, b) = app.call("DELETE", &format!("/api/v1/users/{uid}"), Some(&admin), None).await;
    expect_error(s, &b, 409, "archive_state");

    let (s, b) = app.post(&format!("/api/v1/users/{uid}/archive"), Some(&admin), json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert!(b["archived_at"].is_string(), "{b}");
    let (s, b) = app.post(&format!("/api/v1/users/{uid}/archive"), Some(&admin), json!({})).await;
    expect_error(s, &b, 409, "archive_state");

    // Archived: tokens stop at once, refresh fails, login refused.
    let (s, b) = app.get("/api/v1/auth/me", Some(&access)).await;
    expect_error(s, &b, 401, "session_revoked");
    let (s, b) = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(s, 401, "{b}");
    let (s, b) = app.login(email, PASSWORD).await;
    expect_error(s, &b, 403, "account_archived");
    // Forgot-password does not issue reset tokens for archived accounts.
    let mails_before = app.last_mail(email).await["id"].clone();
    let (s, _) = app.post("/api/v1/auth/password/forgot", None, json!({"email": email})).await;
    assert_eq!(s, 200);
    assert_eq!(app.last_mail(email).await["id"], mails_before, "no mail for an archived account");

    // Lists: hidden by default, visible with status=archived/all.
    let (_, b) = app.get("/api/v1/users?limit=100", Some(&admin)).await;
    assert!(!ids(&b).contains(&uid));
    let (_, b) = app.get("/api/v1/users?status=archived", Some(&admin)).await;
    assert_eq!(ids(&b), vec![uid]);
    let (_, b) = app.get("/api/v1/users?status=all&limit=100", Some(&admin)).await;
    assert!(ids(&b).contains(&uid));

    // Restore: can log in again; restoring twice is refused.
    let (s, b) = app.post(&format!("/api/v1/users/{uid}/restore"), Some(&admin), json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert!(b["archived_at"].is_null());
    let (s, b) = app.post(&format!("/api/v1/users/{uid}/restore"), Some(&admin), json!({})).await;
    expect_error(s, &b, 409, "archive_state");
    let (s, b) = app.login(email, PASSWORD).await;
    assert_eq!(s, 200, "{b}");

    // Archive again, then purge: gone for good, its e-mail free again.
    let (s, _) = app.post(&format!("/api/v1/users/{uid}/archive"), Some(&admin), json!({})).await;
    assert_eq!(s, 200);
    let (s, b) = app.call("DELETE", &format!("/api/v1/users/{uid}"), Some(&admin), None).await;
    assert_eq!(s, 204, "{b}");
    let (s, b) = app.get(&format!("/api/v1/users/{uid}"), Some(&admin)).await;
    expect_error(s, &b, 404, "not_found");
    let (s, b) = app.call("DELETE", &format!("/api/v1/users/{uid}"), Some(&admin), None).await;
    expect_error(s, &b, 404, "not_found");
    app.register(email).await;

    // An admin cannot purge themself, nor archive the last admin.
    let (_, me) = app.get("/api/v1/auth/me", Some(&admin)).await;
    let admin_id = me["id"].as_i64().unwrap();
    let (s, b) = app.call("DELETE", &format!("/api/v1/users/{admin_id}"), Some(&admin), None).await;
    expect_error(s, &b, 409, "self_purge");
    let (s, b) = app.post(&format!("/api/v1/users/{admin_id}/archive"), Some(&admin), json!({})).await;
    expect_error(s, &b, 409, "last_admin");
    let (s, _) = app.get("/api/v1/auth/me", Some(&admin)).await;
    assert_eq!(s, 200, "the refused archive left the admin working");
}

#[actix_web::test]
async fn assign_and_revoke_roles() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, me) = app.get("/api/v1/auth/me", Some(&admin)).await;
    let admin_id = me["id"].as_i64().unwrap();
    let email = "promoted@example.com";
    let (uid, access, refresh) = app.user(email).await;

    // Revoking admin from the only admin is refused.
    let (s, b) = app.call("DELETE", &format!("/api/v1/users/{admin_id}/roles/admin"), Some(&admin), None).await;
    expect_error(s, &b, 409, "last_admin");

    // Assign: visible at once in the user record; idempotent.
    for _ in 0..2 {
        let (s, u) = app.post(&format!("/api/v1/users/{uid}/roles"), Some(&admin), json!({"role": "merchant"})).await;
        assert_eq!(s, 200, "{u}");
        assert_eq!(roles_of(&u), vec!["merchant", "user"]);
    }
    let (s, b) = app.post(&format!("/api/v1/users/{uid}/roles"), Some(&admin), json!({"role": "wizard"})).await;
    expect_error(s, &b, 404, "not_found");
    let (s, b) = app.post(&format!("/api/v1/users/{uid}/roles"), Some(&admin), json!({"role": ""})).await;
    expect_error(s, &b, 422, "validation_failed");

    // Promote to admin; a refreshed token carries the new role and reaches admin routes.
    let (s, u) = app.post(&format!("/api/v1/users/{uid}/roles"), Some(&admin), json!({"role": "admin"})).await;
    assert_eq!(s, 200, "{u}");
    let (s, b) = app.get("/api/v1/users", Some(&access)).await;
    expect_error(s, &b, 403, "forbidden");
    let (s, b) = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(s, 200, "{b}");
    let promoted = b["access_token"].as_str().unwrap().to_owned();
    let (s, b) = app.get("/api/v1/users", Some(&promoted)).await;
    assert_eq!(s, 200, "{b}");

    // With two admins, one may step down; their sessions end so the change applies at once.
    let (s, u) = app.call("DELETE", &format!("/api/v1/users/{admin_id}/roles/admin"), Some(&promoted), None).await;
    assert_eq!(s, 200, "{u}");
    assert!(!roles_of(&u).contains(&"admin".to_owned()));
    let (s, b) = app.get("/api/v1/users", Some(&admin)).await;
    expect_error(s, &b, 401, "session_revoked");
    // Now the promoted user is the last admin.
    let (s, b) = app.call("DELETE", &format!("/api/v1/users/{uid}/roles/admin"), Some(&promoted), None).await;
    expect_error(s, &b, 409, "last_admin");
    let (s, b) = app.post(&format!("/api/v1/users/{uid}/archive"), Some(&promoted), json!({})).await;
    expect_error(s, &b, 409, "last_admin");

    // Revoking a role the user does not hold is a 404; revoking one they hold ends their sessions.
    let (s, b) = app.call("DELETE", &format!("/api/v1/users/{admin_id}/roles/merchant"), Some(&promoted), None).await;
    expect_error(s, &b, 404, "not_found");
    let (s, b) = app.call("DELETE", &format!("/api/v1/users/{uid}/roles/merchant"), Some(&promoted), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(roles_of(&b), vec!["admin", "user"]);
    let (s, b) = app.get("/api/v1/auth/me", Some(&promoted)).await;
    expect_error(s, &b, 401, "session_revoked");
}

#[actix_web::test]
async fn a_self_registered_user_is_never_admin() {
    let app = TestApp::spawn().await;
    // Smuggling roles into registration is rejected outright.
    let (s, b) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"first_name": "Eve", "last_name": "X", "email": "eve@example.com", "password": PASSWORD, "confirm_password": PASSWORD, "roles": ["admin"]}),
        )
        .await;
    expect_error(s, &b, 400, "invalid_json");
    // Even when registering the bootstrap admin's address in another case, no second account or admin appears.
    let (s, b) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"first_name": "Eve", "last_name": "X", "email": ADMIN_EMAIL.to_uppercase(), "password": PASSWORD, "confirm_password": PASSWORD}),
        )
        .await;
    expect_error(s, &b, 409, "email_taken");

    let (uid, token, _) = app.user("eve@example.com").await;
    let (_, me) = app.get("/api/v1/auth/me", Some(&token)).await;
    assert_eq!(roles_of(&me), vec!["user"]);
    let (s, b) = app.get("/api/v1/users", Some(&token)).await;
    expect_error(s, &b, 403, "forbidden");
    let (s, b) = app.post(&format!("/api/v1/users/{uid}/roles"), Some(&token), json!({"role": "admin"})).await;
    expect_error(s, &b, 403, "forbidden");
    let admin = app.admin_token().await;
    let (_, u) = app.get(&format!("/api/v1/users/{uid}"), Some(&admin)).await;
    assert_eq!(roles_of(&u), vec!["user"]);
}

async fn role_id(app: &TestApp, admin: &str, name: &str) -> i64 {
    let (s, b) = app.get(&format!("/api/v1/roles?status=all&search={name}&limit=100"), Some(admin)).await;
    assert_eq!(s, 200, "{b}");
    b["items"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("role {name} in {b}"))
        ["id"]
        .as_i64()
        .unwrap()
}

#[actix_web::test]
async fn role_lifecycle() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;

    // Built-ins are listed.
    let (s, b) = app.get("/api/v1/roles", Some(&admin)).await;
    assert_eq!(s, 200, "{b}");
    let names: Vec<&str> = b["items"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    for n in ["admin", "merchant", "user"] {
        assert!(names.contains(&n), "{names:?}");
    }

    // Create.
    let (s, r) =
        app.post("/api/v1/roles", Some(&admin), json!({"name": "support", "description": "Answers tickets"})).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["builtin"], false);
    let id = r["id"].as_i64().unwrap();
    let (s, b) = app.post("/api/v1/roles", Some(&admin), json!({"name": "support"})).await;
    expect_error(s, &b, 409, "role_taken");
    assert_eq!(b["error"]["field"], "name");
    for bad in ["S", "Support", "1abc", "with space", "x", &"a".repeat(51)] {
        let (s, b) = app.post("/api/v1/roles", Some(&admin), json!({"name": bad})).await;
        expect_error(s, &b, 422, "validation_failed");
        assert_eq!(b["error"]["field"], "name", "{bad}: {b}");
    }
    let (s, _) =
        app.post("/api/v1/roles", Some(&admin), json!({"name": "auditor", "description": "Reads the books"})).await;
    assert_eq!(s, 201);

    // Search by name and by description; pagination over all roles.
    let (_, b) = app.get("/api/v1/roles?search=SUPP", Some(&admin)).await;
    assert_eq!(ids(&b), vec![id]);
    let (_, b) = app.get("/api/v1/roles?search=books", Some(&admin)).await;
    assert_eq!(b["items"][0]["name"], "auditor");
    assert_eq!(ids(&b).len(), 1);
    let all = walk(&app, &admin, "/api/v1/roles", 2).await;
    assert_eq!(all.len(), 5, "{all:?}");

    // Get, update.
    let (s, g) = app.get(&format!("/api/v1/roles/{id}"), Some(&admin)).await;
    assert_eq!(s, 200, "{g}");
    assert_eq!(g["description"], "Answers tickets");
    let (s, u) =
        app.call("PATCH", &format!("/api/v1/roles/{id}"), Some(&admin), Some(json!({"name": "helpdesk"}))).await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["name"], "helpdesk");
    assert_eq!(u["description"], "Answers tickets");
    let (s, b) =
        app.call("PATCH", &format!("/api/v1/roles/{id}"), Some(&admin), Some(json!({"name": "auditor"}))).await;
    expect_error(s, &b, 409, "role_taken");
    let (s, b) =
        app.call("PATCH", &format!("/api/v1/roles/{id}"), Some(&admin), Some(json!({"name": "Bad Name"}))).await;
    expect_error(s, &b, 422, "validation_failed");

    // Assigned roles cannot be purged; archived roles cannot be assigned and stop counting.
    let (uid, _, _) = app.user("helper@example.com").await;
    let (s, u) = app.post(&format!("/api/v1/users/{uid}/roles"), Some(&admin), json!({"role": "helpdesk"})).await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(roles_of(&u), vec!["helpdesk", "user"]);
    let (s, b) = app.call("DELETE", &format!("/api/v1/roles/{id}"), Some(&admin), None).await;
    expect_error(s, &b, 409, "role_in_use");
    let (s, g) = app.get(&format!("/api/v1/roles/{id}"), Some(&admin)).await;
    assert_eq!(s, 200, "the refused purge kept the role: {g}");

    let (s, a) = app.post(&format!("/api/v1/roles/{id}/archive"), Some(&admin), json!({})).await;
    assert_eq!(s, 200, "{a}");
    assert!(a["archived_at"].is_string());
    let (s, b) = app.post(&format!("/api/v1/roles/{id}/archive"), Some(&admin), json!({})).await;
    expect_error(s, &b, 409, "archive_state");
    let (_, b) = app.get("/api/v1/roles", Some(&admin)).await;
    assert!(!ids(&b).contains(&id), "archived role hidden by default");
    let (_, b) = app.get("/api/v1/roles?status=archived", Some(&admin)).await;
    assert_eq!(ids(&b), vec![id]);
    let (_, u) = app.get(&format!("/api/v1/users/{uid}"), Some(&admin)).await;
    assert_eq!(roles_of(&u), vec!["user"], "archived roles do not count");
    let (uid2, _, _) = app.user("other-helper@example.com").await;
    let (s, b) = app.post(&format!("/api/v1/users/{uid2}/roles"), Some(&admin), json!({"role": "helpdesk"})).await;
    expect_error(s, &b, 409, "archive_state");

    // Restore.
    let (s, r) = app.post(&format!("/api/v1/roles/{id}/restore"), Some(&admin), json!({})).await;
    assert_eq!(s, 200, "{r}");
    assert!(r["archived_at"].is_null());
    let (s, b) = app.post(&format!("/api/v1/roles/{id}/restore"), Some(&admin), json!({})).await;
    expect_error(s, &b, 409, "archive_state");
    let (_, u) = app.get(&format!("/api/v1/users/{uid}"), Some(&admin)).await;
    assert_eq!(roles_of(&u), vec!["helpdesk", "user"]);

    // Once unassigned, purge works and the role is gone.
    let (s, b) = app.call("DELETE", &format!("/api/v1/users/{uid}/roles/helpdesk"), Some(&admin), None).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app.call("DELETE", &format!("/api/v1/roles/{id}"), Some(&admin), None).await;
    assert_eq!(s, 204, "{b}");
    let (s, b) = app.get(&format!("/api/v1/roles/{id}"), Some(&admin)).await;
    expect_error(s, &b, 404, "not_found");
    // The name is free again.
    let (s, _) = app.post("/api/v1/roles", Some(&admin), json!({"name": "helpdesk"})).await;
    assert_eq!(s, 201);
}

#[actix_web::test]
async fn built_in_roles_are_protected_and_bad_role_ids_are_404() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    for name in ["admin", "merchant", "user"] {
        let id = role_id(&app, &admin, name).await;
        let (_, r) = app.get(&format!("/api/v1/roles/{id}"), Some(&admin)).await;
        assert_eq!(r["builtin"], true, "{r}");
        let (s, b) =
            app.call("PATCH", &format!("/api/v1/roles/{id}"), Some(&admin), Some(json!({"name": "renamed"}))).await;
        expect_error(s, &b, 409, "builtin_role");
        let (s, b) = app.call("DELETE", &format!("/api/v1/roles/{id}"), Some(&admin), None).await;
        expect_error(s, &b, 409, "builtin_role");
        let (s, b) = app.post(&format!("/api/v1/roles/{id}/archive"), Some(&admin), json!({})).await;
        expect_error(s, &b, 409, "builtin_role");
        // Their description may change, and "renaming" to the same name is not a rename.
        let (s, r) = app
            .call(
                "PATCH",
                &format!("/api/v1/roles/{id}"),
                Some(&admin),
                Some(json!({"name": name, "description": "updated text"})),
            )
            .await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["name"], name);
        assert_eq!(r["description"], "updated text");
    }
    for (m, p, body) in [
        ("GET", "/api/v1/roles/999999", None),
        ("PATCH", "/api/v1/roles/999999", Some(json!({"description": "x"}))),
        ("POST", "/api/v1/roles/999999/archive", None),
        ("POST", "/api/v1/roles/999999/restore", None),
        ("DELETE", "/api/v1/roles/999999", None),
        ("GET", "/api/v1/roles/admin", None),
    ] {
        let (s, b) = app.call(m, p, Some(&admin), body).await;
        expect_error(s, &b, 404, "not_found");
    }
}
