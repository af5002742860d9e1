//! What the contract test (schemathesis, `make contract`) found, pinned here: bodies are JSON objects,
//! an optional body that is present is validated, empty integer filters are refused, and the served
//! document is the one generated from the route table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::merchant::*;
use crate::common::*;

use serde_json::{json, Value};

const JSON: Option<&str> = Some("application/json");

#[actix_web::test]
async fn bodies_must_be_json_objects() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (s, role) = app.post("/api/v1/roles", Some(&admin), json!({"name": "auditor"})).await;
    assert_eq!(s, 201, "{role}");
    let id = role["id"].as_i64().unwrap();
    // serde's derived structs also read a JSON array by position: `[null, null]` was an empty update.
    for (method, path, body) in [
        ("PATCH", format!("/api/v1/roles/{id}"), "[null, null]"),
        ("POST", "/api/v1/roles".to_owned(), r#"["auditor2", ""]"#),
        ("POST", "/api/v1/auth/login".to_owned(), r#""x""#),
    ] {
        let (s, _, b) = app.raw(method, &path, Some(&admin), JSON, body.as_bytes().to_vec()).await;
        expect_error(s, &b, 400, "invalid_json");
    }
    // A field error still names the field.
    let (s, _, b) = app.raw("POST", "/api/v1/roles", Some(&admin), JSON, br#"{"nam": "x"}"#.to_vec()).await;
    expect_error(s, &b, 400, "invalid_json");
    assert_eq!(b["error"]["field"], "nam", "{b}");
    let (s, r) = app.get(&format!("/api/v1/roles/{id}"), Some(&admin)).await;
    assert_eq!((s, r["name"].as_str()), (200, Some("auditor")), "{r}");
}

#[actix_web::test]
async fn an_optional_body_that_is_present_is_validated() {
    let app = TestApp::spawn_with(merchant_settings()).await;
    let admin = app.admin_token().await;
    let (_, owner) = verified(&app, &admin, "owner@example.com").await;
    let merchant = active_merchant(&app, &admin, &owner, "Toko Contract").await;
    let path = format!("/api/v1/merchants/{merchant}/api-keys");
    // Present and invalid: refused naming the field (it used to be dropped and a key made anyway).
    let (s, b) = app.post(&path, Some(&owner), json!({"label": "x".repeat(101)})).await;
    expect_error(s, &b, 422, "validation_failed");
    assert_eq!(b["error"]["field"], "label");
    let (s, _, b) = app.raw("POST", &path, Some(&owner), JSON, b"{not json".to_vec()).await;
    expect_error(s, &b, 400, "invalid_json");
    let (s, keys) = app.get(&path, Some(&owner)).await;
    assert_eq!(s, 200);
    assert_eq!(keys.as_array().map(Vec::len), Some(0), "{keys}");
    // Left out entirely: the defaults.
    let (s, _, k) = app.raw("POST", &path, Some(&owner), None, Vec::new()).await;
    assert_eq!(s, 201, "{k}");
    let (s, k) = app.post(&path, Some(&owner), json!({"label": "checkout"})).await;
    assert_eq!((s, k["key"]["label"].as_str()), (201, Some("checkout")), "{k}");
    // The same for an admin decision's reason.
    let (s, b) = decide(&app, &admin, merchant, "suspend", Some(&"r".repeat(501))).await;
    expect_error(s, &b, 422, "validation_failed");
    let (s, m) = app.get(&format!("/api/v1/merchants/{merchant}"), Some(&admin)).await;
    assert_eq!((s, m["status"].as_str()), (200, Some("active")), "{m}");
}

#[actix_web::test]
async fn empty_integer_filters_are_refused() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.user("filters@example.com").await;
    for (path, field) in [
        ("/api/v1/topups?card_id=", "card_id"),
        ("/api/v1/transfers?to_card_id=", "to_card_id"),
        ("/api/v1/payments?merchant_id=", "merchant_id"),
        ("/api/v1/cards?user_id=", "user_id"),
        ("/api/v1/cards?limit=", "limit"),
    ] {
        let (s, b) = app.get(path, Some(&token)).await;
        expect_error(s, &b, 422, "validation_failed");
        assert_eq!(b["error"]["field"], field, "{path}: {b}");
    }
    let (s, b) = app.get("/api/v1/cards?limit=5&cursor=", Some(&token)).await;
    assert_eq!(s, 200, "{b}");
    assert!(b["next_cursor"].is_null(), "{b}");
}

#[actix_web::test]
async fn the_served_document_is_the_generated_one() {
    let app = TestApp::spawn().await;
    let (s, served) = app.get("/api-docs/openapi.json", None).await;
    assert_eq!(s, 200);
    let generated: Value = serde_json::to_value(payd::http::api().openapi()).unwrap();
    assert_eq!(served, generated);
    let logout = &served["paths"]["/api/v1/auth/logout"]["post"]["responses"];
    assert!(logout["204"].get("content").is_none(), "{logout}");
    let page = &served["components"]["schemas"]["Page_CardView"];
    assert_eq!(page["properties"]["next_cursor"]["type"], json!(["string", "null"]));
}
