//! The administration and statistics gRPC services (Roles, Stats, Admin): each answers as its HTTP
//! routes do, with the same access (admin success, non-admin PERMISSION_DENIED, anonymous
//! UNAUTHENTICATED) and the same field-naming INVALID_ARGUMENT for bad input.

use serde_json::json;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use payd::grpc::proto;
use payd::grpc::proto::roles_client::RolesClient;

use crate::common::TestApp;

async fn channel(app: &TestApp) -> Channel {
    assert_ne!(app.grpc_port, 0, "the gRPC server is not running");
    Channel::from_shared(format!("http://127.0.0.1:{}", app.grpc_port)).unwrap().connect().await.unwrap()
}

fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Asserts the code and ErrorInfo reason (the HTTP error code); returns the ErrorInfo metadata.
fn expect_status(s: &Status, code: Code, reason: &str) -> std::collections::HashMap<String, String> {
    assert_eq!(s.code(), code, "{s:?}");
    let info = s.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo in {s:?}"));
    assert_eq!(info.reason, reason, "{s:?}");
    info.metadata
}

/// The field a refused INVALID_ARGUMENT names (BadRequest field violation or ErrorInfo metadata).
fn named_field(s: &Status) -> String {
    if let Some(br) = s.get_details_bad_request() {
        if let Some(v) = br.field_violations.first() {
            return v.field.clone();
        }
    }
    s.get_details_error_info().and_then(|i| i.metadata.get("field").cloned()).unwrap_or_default()
}

#[actix_web::test]
async fn roles_over_grpc_match_http_and_are_admin_only() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (uid, old_user, _) = app.user("grpc-roles@test.local").await;
    let mut roles = RolesClient::new(channel(&app).await);

    // Admin: create, get, list, update, assign, list user roles, revoke, archive, restore.
    let create = proto::CreateRoleRequest { name: "auditor".into(), description: "reads".into() };
    let role = roles.create_role(authed(create.clone(), &admin)).await.unwrap().into_inner();
    assert_eq!((role.name.as_str(), role.builtin, role.archived_at), ("auditor", false, None));
    let (s, b) = app.get(&format!("/api/v1/roles/{}", role.id), Some(&admin)).await;
    assert_eq!((s, b["name"].as_str(), b["description"].as_str()), (200, Some("auditor"), Some("reads")));
    let e = roles.create_role(authed(create, &admin)).await.unwrap_err();
    expect_status(&e, Code::AlreadyExists, "role_taken");
    let got = roles.get_role(authed(proto::GetRoleRequest { id: role.id }, &admin)).await.unwrap().into_inner();
    assert_eq!(got, role);
    let list = roles.list_roles(authed(proto::ListRolesRequest::default(), &admin)).await.unwrap().into_inner();
    let (_, http) = app.get("/api/v1/roles", Some(&admin)).await;
    let http_ids: Vec<i64> = http["items"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(list.items.iter().map(|r| r.id).collect::<Vec<_>>(), http_ids);
    assert!(list.items.iter().any(|r| r.id == role.id));
    let upd = proto::UpdateRoleRequest { id: role.id, name: None, description: Some("reads all".into()) };
    let updated = roles.update_role(authed(upd, &admin)).await.unwrap().into_inner();
    assert_eq!((updated.name.as_str(), updated.description.as_str()), ("auditor", "reads all"));

    let assign = proto::AssignRoleRequest { user_id: uid, role: "auditor".into() };
    let u = roles.assign_role(authed(assign, &admin)).await.unwrap().into_inner();
    assert!(u.roles.contains(&"auditor".to_owned()), "{u:?}");
    let held =
        roles.list_user_roles(authed(proto::ListUserRolesRequest { user_id: uid }, &admin)).await.unwrap().into_inner();
    let (_, http) = app.get(&format!("/api/v1/users/{uid}/roles"), Some(&admin)).await;
    assert_eq!(json!(held.roles), http["roles"]);
    assert_eq!(held.roles, vec!["auditor".to_owned(), "user".to_owned()]);
    let revoke = proto::RevokeRoleRequest { user_id: uid, role: "auditor".into() };
    let u = roles.revoke_role(authed(revoke.clone(), &admin)).await.unwrap().into_inner();
    assert_eq!(u.roles, vec!["user".to_owned()]);
    let e = roles.revoke_role(authed(revoke, &admin)).await.unwrap_err();
    expect_status(&e, Code::NotFound, "not_found");
    // Revoking ends the user's sessions, as over HTTP.
    let e = roles.list_roles(authed(proto::ListRolesRequest::default(), &old_user)).await.unwrap_err();
    expect_status(&e, Code::Unauthenticated, "session_revoked");
    let (s, b) = app.login("grpc-roles@test.local", crate::common::PASSWORD).await;
    assert_eq!(s, 200, "{b}");
    let user = b["access_token"].as_str().unwrap().to_owned();

    let archived =
        roles.archive_role(authed(proto::ArchiveRoleRequest { id: role.id }, &admin)).await.unwrap().into_inner();
    assert!(archived.archived_at.is_some());
    let e = roles.archive_role(authed(proto::ArchiveRoleRequest { id: role.id }, &admin)).await.unwrap_err();
    expect_status(&e, Code::AlreadyExists, "archive_state");
    let archived_list = roles
        .list_roles(authed(
            proto::ListRolesRequest { status: proto::RoleStatusFilter::Archived.into(), ..Default::default() },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(archived_list.items.iter().map(|r| r.id).collect::<Vec<_>>(), vec![role.id]);
    let restored =
        roles.restore_role(authed(proto::RestoreRoleRequest { id: role.id }, &admin)).await.unwrap().into_inner();
    assert_eq!(restored.archived_at, None);

    // A built-in role cannot be archived, as over HTTP.
    let builtin = list.items.iter().find(|r| r.builtin).unwrap().id;
    let (s, b) = app.post(&format!("/api/v1/roles/{builtin}/archive"), Some(&admin), json!({})).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("builtin_role")), "{b}");
    let e = roles.archive_role(authed(proto::ArchiveRoleRequest { id: builtin }, &admin)).await.unwrap_err();
    expect_status(&e, Code::AlreadyExists, "builtin_role");

    // A non-admin: PERMISSION_DENIED; anonymous: UNAUTHENTICATED (nothing runs).
    let e = roles.list_roles(authed(proto::ListRolesRequest::default(), &user)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = roles
        .create_role(authed(proto::CreateRoleRequest { name: "sneaky".into(), description: String::new() }, &user))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = roles.get_role(Request::new(proto::GetRoleRequest { id: role.id })).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let (s, b) = app.get("/api/v1/roles?search=sneaky&status=all", Some(&admin)).await;
    assert_eq!((s, b["items"].as_array().map(Vec::len)), (200, Some(0)), "{b}");

    // Bad input names the field.
    let e = roles
        .create_role(authed(proto::CreateRoleRequest { name: "Bad Name".into(), description: String::new() }, &admin))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(named_field(&e), "name", "{e:?}");
    let e = roles
        .list_roles(authed(proto::ListRolesRequest { status: 42, ..Default::default() }, &admin))
        .await
        .unwrap_err();
    assert_eq!((e.code(), named_field(&e).as_str()), (Code::InvalidArgument, "status"), "{e:?}");
}
