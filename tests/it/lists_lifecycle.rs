//! Lists and lifecycles: payments archived and restored like the other operations (hidden from default
//! lists, never purged), restore-all per resource, free-text `search` on cards, operations and payments
//! (wildcards matched literally, long input refused), and `include_total`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::merchant::{
    active_merchant, create_key, issue_card, keyed, merchant_settings, scalar, topup, verified,
};
use crate::common::*;
use serde_json::{json, Value};

fn op_ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect()
}

#[actix_web::test]
async fn payments_archive_restore_and_search() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    let (_, owner) = verified(&app, &admin, "arch.owner@example.com").await;
    let (_, customer) = verified(&app, &admin, "arch.customer@example.com").await;
    let merchant = active_merchant(&app, &admin, &owner, "Archive Shop").await;
    let (_, key) = create_key(&app, &owner, merchant, "pos").await;
    let card = issue_card(&app, &customer).await;
    topup(&app, &customer, card.id, 10_000_000).await;
    let mut payments = Vec::new();
    for order in ["INV_1%A", "INV-12AB", "inv-99"] {
        let (s, p) = keyed(&app, "POST", "/api/v1/payments", &key, order, Some(card.pay(order, 100_000))).await;
        assert_eq!(s, 201, "{p}");
        payments.push(p["id"].as_str().unwrap().to_owned());
    }
    let first = payments[0].clone();

    // Search: order reference or method, `%` and `_` literal, in every payment list.
    let (s, p) = app.get("/api/v1/payments?search=_1%25", Some(&admin)).await;
    assert_eq!((s, op_ids(&p)), (200, vec![first.clone()]), "{p}");
    let (s, p) = app.get("/api/v1/payments?search=inv-", Some(&customer)).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(op_ids(&p), vec![payments[2].clone(), payments[1].clone()], "case-insensitive substring: {p}");
    let (s, p) = app.get(&format!("/api/v1/merchants/{merchant}/payments?search=12ab"), Some(&owner)).await;
    assert_eq!((s, op_ids(&p)), (200, vec![payments[1].clone()]), "{p}");
    let (s, _, p) =
        app.call_full("GET", "/api/v1/merchant/payments?search=visa", None, None, &[("X-Api-Key", &key)]).await;
    assert_eq!((s, op_ids(&p).len()), (200, 3), "method matches: {p}");
    let (s, e) = app.get(&format!("/api/v1/payments?search={}", "q".repeat(10_000)), Some(&admin)).await;
    assert!((400..500).contains(&s), "{s} {e}");
    let (s, e) = app.get(&format!("/api/v1/payments?search={}", "q".repeat(101)), Some(&admin)).await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("search")), "{e}");
    // Payment lists are not counted (unbounded for an admin): 422 naming include_total.
    let (s, e) = app.get("/api/v1/payments?include_total=true", Some(&admin)).await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("include_total")), "{e}");

    // Archive: admin only; hidden from default lists, listed with archived=archived|all.
    let (s, e) = app.post(&format!("/api/v1/payments/{first}/archive"), Some(&owner), json!({})).await;
    assert_eq!(s, 403, "{e}");
    let (s, a) = app.post(&format!("/api/v1/payments/{first}/archive"), Some(&admin), json!({})).await;
    assert_eq!(s, 200, "{a}");
    assert!(a["archived_at"].is_string(), "{a}");
    let (s, e) = app.post(&format!("/api/v1/payments/{first}/archive"), Some(&admin), json!({})).await;
    expect_error(s, &e, 409, "archive_state");
    for (path, token) in [
        ("/api/v1/payments".to_owned(), admin.as_str()),
        ("/api/v1/payments".to_owned(), customer.as_str()),
        (format!("/api/v1/merchants/{merchant}/payments"), owner.as_str()),
    ] {
        let (s, p) = app.get(&path, Some(token)).await;
        assert_eq!(s, 200, "{p}");
        assert!(!op_ids(&p).contains(&first), "{path} still lists the archived payment: {p}");
        assert_eq!(op_ids(&p).len(), 2, "{p}");
        let (s, p) = app.get(&format!("{path}?archived=archived"), Some(token)).await;
        assert_eq!((s, op_ids(&p)), (200, vec![first.clone()]), "{path}: {p}");
        let (s, p) = app.get(&format!("{path}?archived=all"), Some(token)).await;
        assert_eq!((s, op_ids(&p).len()), (200, 3), "{path}: {p}");
    }
    // Still readable by id, and never purged.
    let (s, g) = app.get(&format!("/api/v1/payments/{first}"), Some(&customer)).await;
    assert_eq!((s, g["id"].as_str()), (200, Some(first.as_str())), "{g}");
    let (s, e) = app.call("DELETE", &format!("/api/v1/payments/{first}"), Some(&admin), None).await;
    expect_error(s, &e, 409, "never_purged");
    let (s, e) = app.call("DELETE", &format!("/api/v1/topups/{first}"), Some(&admin), None).await;
    expect_error(s, &e, 409, "never_purged");

    // Restore: back in the default lists; restoring what is not archived is a 409.
    let (s, r) = app.post(&format!("/api/v1/payments/{first}/restore"), Some(&admin), json!({})).await;
    assert_eq!((s, &r["archived_at"]), (200, &Value::Null), "{r}");
    let (s, e) = app.post(&format!("/api/v1/payments/{first}/restore"), Some(&admin), json!({})).await;
    expect_error(s, &e, 409, "archive_state");
    let (s, p) = app.get("/api/v1/payments", Some(&admin)).await;
    assert_eq!((s, op_ids(&p).len()), (200, 3), "{p}");
    let (s, e) = app.post(&format!("/api/v1/payments/{}/archive", uuid::Uuid::now_v7()), Some(&admin), json!({})).await;
    expect_error(s, &e, 404, "not_found");
    let (s, e) = app.post("/api/v1/payments/not-a-uuid/archive", Some(&admin), json!({})).await;
    assert_eq!(s, 404, "{e}");
    let mut conn = app.db();
    let n = scalar(&mut conn, "SELECT count(*) AS n FROM operations WHERE kind = 'payment'");
    assert_eq!(n, 3);

    // The other operations: restore of something not archived is a 409 too.
    let (s, t) = app.get("/api/v1/topups", Some(&admin)).await;
    assert_eq!(s, 200);
    let top = t["items"][0]["id"].as_str().unwrap().to_owned();
    let (s, e) = app.post(&format!("/api/v1/topups/{top}/restore"), Some(&admin), json!({})).await;
    expect_error(s, &e, 409, "archive_state");

    // Search on operation lists: method, literal wildcards, within the caller's cards.
    let (s, p) = app.get("/api/v1/topups?search=BC", Some(&customer)).await;
    assert_eq!((s, op_ids(&p)), (200, vec![top.clone()]), "{p}");
    let (s, p) = app.get("/api/v1/topups?search=b_a", Some(&admin)).await;
    assert_eq!((s, op_ids(&p)), (200, Vec::<String>::new()), "`_` is literal: {p}");
    let (s, p) = app.get(&format!("/api/v1/topups?search=bca&card_id={}", card.id), Some(&customer)).await;
    assert_eq!((s, op_ids(&p)), (200, vec![top.clone()]), "{p}");
    let (s, p) = app.get("/api/v1/topups?search=bca", Some(&owner)).await;
    assert_eq!((s, op_ids(&p)), (200, Vec::<String>::new()), "another user's top-ups stay invisible: {p}");
    let (s, e) = app.get(&format!("/api/v1/topups?search={}", "q".repeat(10_000)), Some(&admin)).await;
    assert!((400..500).contains(&s), "{s} {e}");
    let (s, e) = app.get("/api/v1/topups?include_total=true", Some(&customer)).await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("include_total")), "{e}");
}

#[actix_web::test]
async fn restore_all_counts_per_resource() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    let mut users = Vec::new();
    for i in 0..3 {
        users.push(app.admin_create_user(&admin, &format!("ra{i}@example.com"), &["user"]).await);
    }
    for u in &users[..2] {
        let (s, b) = app.post(&format!("/api/v1/users/{u}/archive"), Some(&admin), json!({})).await;
        assert_eq!(s, 200, "{b}");
    }
    let (s, role) = app.post("/api/v1/roles", Some(&admin), json!({"name": "auditor"})).await;
    assert_eq!(s, 201, "{role}");
    let (s, b) = app.post(&format!("/api/v1/roles/{}/archive", role["id"]), Some(&admin), json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (_, owner) = verified(&app, &admin, "ra.owner@example.com").await;
    let merchant = crate::common::merchant::apply(&app, &owner, "Restore Shop").await;
    let (s, b) = app.post(&format!("/api/v1/merchants/{merchant}/archive"), Some(&admin), json!({})).await;
    assert_eq!(s, 200, "{b}");
    let card = issue_card(&app, &owner).await;
    for action in ["close", "archive"] {
        let (s, b) = app.post(&format!("/api/v1/cards/{}/{action}", card.id), Some(&owner), json!({})).await;
        assert_eq!(s, 200, "{action}: {b}");
    }

    // Non-admins may not.
    for resource in ["users", "roles", "cards", "merchants"] {
        let (s, _) = app.post(&format!("/api/v1/{resource}/restore-all"), Some(&owner), json!({})).await;
        assert_eq!(s, 403, "{resource}");
    }
    for (resource, want) in [("users", 2), ("roles", 1), ("cards", 1), ("merchants", 1)] {
        let (s, b) = app.post(&format!("/api/v1/{resource}/restore-all"), Some(&admin), json!({})).await;
        assert_eq!((s, b["restored"].as_i64()), (200, Some(want)), "{resource}: {b}");
        let (s, b) = app.post(&format!("/api/v1/{resource}/restore-all"), Some(&admin), json!({})).await;
        assert_eq!((s, b["restored"].as_i64()), (200, Some(0)), "{resource} again: {b}");
    }
    let (s, u) = app.get(&format!("/api/v1/users/{}", users[0]), Some(&admin)).await;
    assert_eq!((s, &u["archived_at"]), (200, &Value::Null), "{u}");
    let (s, c) = app.get(&format!("/api/v1/cards/{}", card.id), Some(&owner)).await;
    assert_eq!((s, c["status"].as_str(), &c["archived_at"]), (200, Some("closed"), &Value::Null), "{c}");
    let (s, m) = app.get(&format!("/api/v1/merchants/{merchant}"), Some(&owner)).await;
    assert_eq!((s, &m["archived_at"]), (200, &Value::Null), "{m}");
    // A restored user signs in again.
    let (s, b) = app.login("ra0@example.com", PASSWORD).await;
    assert_eq!(s, 200, "{b}");
}

#[actix_web::test]
async fn search_and_totals_on_users_roles_merchants_and_cards() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    let (uid, owner) = verified(&app, &admin, "totals.owner@example.com").await;
    let mut cards = Vec::new();
    for label in ["50%_groceries", "500 groceries", "travel"] {
        let c = issue_card(&app, &owner).await;
        let (s, b) =
            app.call("PATCH", &format!("/api/v1/cards/{}", c.id), Some(&owner), Some(json!({"label": label}))).await;
        assert_eq!(s, 200, "{b}");
        cards.push(c);
    }
    let ids =
        |p: &Value| -> Vec<i64> { p["items"].as_array().unwrap().iter().map(|c| c["id"].as_i64().unwrap()).collect() };

    // Cards: label or last four digits, wildcards literal, totals on request only.
    let (s, p) = app.get("/api/v1/cards?search=50%25_", Some(&owner)).await;
    assert_eq!((s, ids(&p)), (200, vec![cards[0].id]), "{p}");
    let (s, p) = app.get("/api/v1/cards?search=GROCER&include_total=true", Some(&owner)).await;
    assert_eq!((s, ids(&p), p["total"].as_i64()), (200, vec![cards[1].id, cards[0].id], Some(2)), "{p}");
    let last4 = &cards[2].number[cards[2].number.len() - 4..];
    let (s, p) = app.get(&format!("/api/v1/cards?search={last4}"), Some(&owner)).await;
    assert_eq!(s, 200, "{p}");
    assert!(ids(&p).contains(&cards[2].id), "{p}");
    let (s, p) = app.get(&format!("/api/v1/users/{uid}/cards?include_total=true&limit=1"), Some(&owner)).await;
    assert_eq!((s, ids(&p).len(), p["total"].as_i64()), (200, 1, Some(3)), "{p}");
    assert!(p["next_cursor"].is_string(), "{p}");
    let (s, p) = app.get(&format!("/api/v1/users/{uid}/cards?search=travel"), Some(&admin)).await;
    assert_eq!((s, ids(&p)), (200, vec![cards[2].id]), "{p}");
    let (s, p) = app.get("/api/v1/cards", Some(&owner)).await;
    assert!(s == 200 && p.get("total").is_none(), "{p}");
    let (s, e) = app.get(&format!("/api/v1/cards?search={}", "%".repeat(10_000)), Some(&owner)).await;
    assert!((400..500).contains(&s), "{s} {e}");
    let (s, e) = app.get(&format!("/api/v1/cards?search={}", "a".repeat(101)), Some(&owner)).await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("search")), "{e}");
    let (s, e) = app.get("/api/v1/cards?include_total=1", Some(&owner)).await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("include_total")), "{e}");

    // Users and roles: totals match the database.
    let mut conn = app.db();
    let n_users = scalar(&mut conn, "SELECT count(*) AS n FROM users WHERE archived_at IS NULL");
    let (s, p) = app.get("/api/v1/users?include_total=true&limit=1", Some(&admin)).await;
    assert_eq!((s, p["total"].as_i64()), (200, Some(n_users)), "{p}");
    let (s, p) = app.get("/api/v1/users?include_total=true&search=totals.owner", Some(&admin)).await;
    assert_eq!((s, p["total"].as_i64(), ids(&p)), (200, Some(1), vec![uid]), "{p}");
    let n_roles = scalar(&mut conn, "SELECT count(*) AS n FROM roles WHERE archived_at IS NULL");
    let (s, p) = app.get("/api/v1/roles?include_total=true", Some(&admin)).await;
    assert_eq!((s, p["total"].as_i64()), (200, Some(n_roles)), "{p}");
    let (s, p) = app.get("/api/v1/users?search=_", Some(&admin)).await;
    assert_eq!((s, ids(&p)), (200, Vec::<i64>::new()), "no e-mail or name has a literal `_`: {p}");

    // Merchants: the owner's count is the owner's.
    crate::common::merchant::apply(&app, &owner, "Total Shop").await;
    crate::common::merchant::apply(&app, &owner, "Other 100%_Shop").await;
    let (s, p) = app.get("/api/v1/merchants?include_total=true", Some(&owner)).await;
    assert_eq!((s, p["total"].as_i64()), (200, Some(2)), "{p}");
    let (s, p) = app.get("/api/v1/merchants?include_total=true&search=0%25_", Some(&admin)).await;
    assert_eq!((s, p["total"].as_i64()), (200, Some(1)), "{p}");
}
