//! The administration and statistics gRPC services (Roles, Stats, Admin): each answers as its HTTP
//! routes do, with the same access (admin success, non-admin PERMISSION_DENIED, anonymous
//! UNAUTHENTICATED) and the same field-naming INVALID_ARGUMENT for bad input.

use serde_json::json;
use tonic::{Code, Request};

use payd::grpc::proto;
use payd::grpc::proto::roles_client::RolesClient;

use crate::common::TestApp;
use crate::grpc::{channel, expect_status, named_field};

/// A request with a bearer token (no idempotency key).
fn authed<T>(msg: T, token: &str) -> Request<T> {
    crate::grpc::authed(msg, token, None)
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

fn stats_settings() -> payd::config::Settings {
    let mut s = crate::common::merchant::merchant_settings();
    s.stats.time_zone = "UTC".into();
    s
}

#[actix_web::test]
async fn stats_over_grpc_match_http_with_the_same_access() {
    use crate::common::merchant::{issue_card, topup, verified};
    use payd::grpc::proto::stats_client::StatsClient;

    let app = TestApp::spawn_with(stats_settings()).await;
    let admin = app.admin_token().await;
    let (_, alice) = verified(&app, &admin, "grpc-stats-alice@test.local").await;
    let (_, bob) = verified(&app, &admin, "grpc-stats-bob@test.local").await;
    let card = issue_card(&app, &alice).await;
    topup(&app, &alice, card.id, 125_000).await;
    payd::stats::rollup::rebuild(&mut app.db(), "UTC").unwrap();
    let mut stats = StatsClient::new(channel(&app).await);

    // The cardholder's own card: the same figures as the HTTP route for the same query.
    let q = proto::SeriesRequest {
        kind: proto::StatsKind::Topup.into(),
        card_id: Some(card.id),
        metric: proto::StatsMetric::Count.into(),
        ..Default::default()
    };
    let got = stats.series(authed(q.clone(), &alice)).await.unwrap().into_inner();
    let (s, http) = app.get(&format!("/api/v1/stats/topup?card_id={}&metric=count", card.id), Some(&alice)).await;
    assert_eq!(s, 200, "{http}");
    assert_eq!(
        (got.kind(), got.metric(), got.period()),
        (proto::StatsKind::Topup, proto::StatsMetric::Count, proto::StatsPeriod::Month)
    );
    assert_eq!(i64::from(got.year), http["year"].as_i64().unwrap());
    assert_eq!(got.scope, Some(proto::StatsScope { kind: "card".into(), id: Some(card.id) }));
    let labels: Vec<&str> = got.periods.iter().map(|p| p.label.as_str()).collect();
    let http_labels: Vec<&str> =
        http["periods"].as_array().unwrap().iter().map(|p| p["label"].as_str().unwrap()).collect();
    assert_eq!(labels, http_labels);
    let grpc_series: Vec<(String, Vec<(i64, i64)>)> =
        got.series.iter().map(|s| (s.name.clone(), s.points.iter().map(|p| (p.count, p.amount)).collect())).collect();
    let http_series: Vec<(String, Vec<(i64, i64)>)> = http["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let points = s["points"].as_array().unwrap();
            (
                s["name"].as_str().unwrap().to_owned(),
                points.iter().map(|p| (p["count"].as_i64().unwrap(), p["amount"].as_i64().unwrap())).collect(),
            )
        })
        .collect();
    assert_eq!(grpc_series, http_series);
    let net: i64 = got.series.iter().find(|s| s.name == "net").unwrap().points.iter().map(|p| p.amount).sum();
    assert_eq!(net, 125_000, "{got:?}");

    // Another user's card is refused as over HTTP (not found, naming card_id).
    let e = stats.series(authed(q.clone(), &bob)).await.unwrap_err();
    let (s, http) = app.get(&format!("/api/v1/stats/topup?card_id={}&metric=count", card.id), Some(&bob)).await;
    assert_eq!(s, 404, "{http}");
    let meta = expect_status(&e, Code::NotFound, http["error"]["code"].as_str().unwrap());
    assert_eq!(meta.get("field").map(String::as_str), Some("card_id"), "{e:?}");
    // Platform figures: admins only; anonymous: UNAUTHENTICATED.
    let platform = proto::SeriesRequest { kind: proto::StatsKind::Topup.into(), ..Default::default() };
    let all = stats.series(authed(platform.clone(), &admin)).await.unwrap().into_inner();
    assert_eq!(all.scope.unwrap().kind, "platform");
    let e = stats.series(authed(platform.clone(), &alice)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = stats.series(Request::new(platform)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // Dashboards: the platform for admins, one's own card, never another's.
    let d = stats.dashboard(authed(proto::DashboardRequest::default(), &admin)).await.unwrap().into_inner();
    let (_, http) = app.get("/api/v1/stats/dashboard", Some(&admin)).await;
    assert_eq!(d.totals.first().map(|t| t.balance), http["totals"][0]["balance"].as_i64(), "{http}");
    let e = stats.dashboard(authed(proto::DashboardRequest::default(), &alice)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let own = proto::DashboardRequest { card_id: Some(card.id), merchant_id: None };
    let d = stats.dashboard(authed(own, &alice)).await.unwrap().into_inner();
    assert_eq!(d.totals.first().map(|t| t.balance), Some(125_000), "{d:?}");
    let e = stats.dashboard(authed(own, &bob)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = stats.dashboard(Request::new(own)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // Bad input names the field, as the HTTP query does.
    let bad = proto::SeriesRequest { year: Some(1999), ..q.clone() };
    let e = stats.series(authed(bad, &alice)).await.unwrap_err();
    assert_eq!((e.code(), named_field(&e).as_str()), (Code::InvalidArgument, "year"), "{e:?}");
    let e = stats.series(authed(proto::SeriesRequest { kind: 0, ..q.clone() }, &alice)).await.unwrap_err();
    assert_eq!((e.code(), named_field(&e).as_str()), (Code::InvalidArgument, "kind"), "{e:?}");
    let both = proto::SeriesRequest { merchant_id: Some(1), ..q };
    let e = stats.series(authed(both, &alice)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}

#[actix_web::test]
async fn admin_events_over_grpc_match_http_and_are_admin_only() {
    use diesel::RunQueryDsl;
    use payd::grpc::proto::admin_client::AdminClient;

    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, user, _) = app.user("grpc-admin-events@test.local").await;
    diesel::sql_query(
        "INSERT INTO dead_letters (kind, consumer, reference, reason, payload, attempts) VALUES \
         ('email', 'mailer', 'job-1', 'out of attempts', NULL, 5), \
         ('message', 'ledger-events', 'msg-2', 'malformed', '{oops', 1)",
    )
    .execute(&mut app.db())
    .unwrap();
    let mut adm = AdminClient::new(channel(&app).await);

    let st = adm.get_events_status(authed(proto::GetEventsStatusRequest {}, &admin)).await.unwrap().into_inner();
    let (s, http) = app.get("/api/v1/admin/events", Some(&admin)).await;
    assert_eq!(s, 200, "{http}");
    assert_eq!(st.dead_letters, 2);
    assert_eq!(
        (st.broker.as_str(), st.dead_letters, st.emails_dead, st.webhooks_dead),
        (
            http["broker"].as_str().unwrap(),
            http["dead_letters"].as_i64().unwrap(),
            http["emails_dead"].as_i64().unwrap(),
            http["webhooks_dead"].as_i64().unwrap()
        )
    );

    let all =
        adm.list_dead_letters(authed(proto::ListDeadLettersRequest::default(), &admin)).await.unwrap().into_inner();
    let (_, http) = app.get("/api/v1/admin/dead-letters", Some(&admin)).await;
    let http_ids: Vec<i64> = http["items"].as_array().unwrap().iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert_eq!(all.items.iter().map(|d| d.id).collect::<Vec<_>>(), http_ids);
    assert_eq!(all.items.iter().map(|d| d.reference.as_str()).collect::<Vec<_>>(), vec!["msg-2", "job-1"]);
    assert_eq!(all.items[0].payload.as_deref(), Some("{oops"));
    let page = proto::ListDeadLettersRequest {
        page: Some(proto::PageRequest { limit: 1, cursor: String::new() }),
        kind: String::new(),
    };
    let first = adm.list_dead_letters(authed(page, &admin)).await.unwrap().into_inner();
    assert_eq!(first.items.len(), 1);
    let next = proto::ListDeadLettersRequest {
        page: Some(proto::PageRequest { limit: 1, cursor: first.next_cursor }),
        kind: String::new(),
    };
    let second = adm.list_dead_letters(authed(next, &admin)).await.unwrap().into_inner();
    assert_eq!(second.items.iter().map(|d| d.reference.as_str()).collect::<Vec<_>>(), vec!["job-1"]);
    let emails = adm
        .list_dead_letters(authed(proto::ListDeadLettersRequest { page: None, kind: "email".into() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(emails.items.iter().map(|d| d.kind.as_str()).collect::<Vec<_>>(), vec!["email"]);

    // Non-admin: PERMISSION_DENIED; anonymous: UNAUTHENTICATED; a bad kind names the field.
    let e = adm.get_events_status(authed(proto::GetEventsStatusRequest {}, &user)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = adm.list_dead_letters(authed(proto::ListDeadLettersRequest::default(), &user)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = adm.list_dead_letters(Request::new(proto::ListDeadLettersRequest::default())).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = adm
        .list_dead_letters(authed(proto::ListDeadLettersRequest { page: None, kind: "sms".into() }, &admin))
        .await
        .unwrap_err();
    assert_eq!((e.code(), named_field(&e).as_str()), (Code::InvalidArgument, "kind"), "{e:?}");
}
