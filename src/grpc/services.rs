//! The gRPC services: each method parses its message into the HTTP route's request type (the same
//! validation), calls the one domain function with the caller's identity, and maps the answer.

use std::collections::BTreeMap;

use tonic::transport::server::Router;
use tonic::{Request, Response, Status};

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;

use super::convert::{self, invalid, opt, status, validated};
use super::proto;

/// Adds every payd service, with the configured message size limit, to `router`.
pub fn add<L>(router: Router<L>, state: &AppState) -> Router<L> {
    let max = state.settings.grpc.max_message_bytes;
    let st = || Api { state: state.clone() };
    router
        .add_service(
            proto::auth_server::AuthServer::new(st()).max_decoding_message_size(max).max_encoding_message_size(max),
        )
        .add_service(
            proto::users_server::UsersServer::new(st()).max_decoding_message_size(max).max_encoding_message_size(max),
        )
        .add_service(
            proto::cards_server::CardsServer::new(st()).max_decoding_message_size(max).max_encoding_message_size(max),
        )
        .add_service(
            proto::ledger_server::LedgerServer::new(st()).max_decoding_message_size(max).max_encoding_message_size(max),
        )
        .add_service(
            proto::merchants_server::MerchantsServer::new(st())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            proto::payments_server::PaymentsServer::new(st())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            proto::roles_server::RolesServer::new(st()).max_decoding_message_size(max).max_encoding_message_size(max),
        )
        .add_service(
            proto::stats_server::StatsServer::new(st()).max_decoding_message_size(max).max_encoding_message_size(max),
        )
        .add_service(
            proto::admin_server::AdminServer::new(st()).max_decoding_message_size(max).max_encoding_message_size(max),
        )
        .add_service(
            proto::webhooks_server::WebhooksServer::new(st())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            proto::notifications_server::NotificationsServer::new(st())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
}

/// Every service is this one adapter over the application state.
#[derive(Clone)]
pub struct Api {
    pub(super) state: AppState,
}

pub(super) type Answer<T> = Result<Response<T>, Status>;

pub(super) fn ok<T>(value: T) -> Answer<T> {
    Ok(Response::new(value))
}

fn role_message(r: crate::identity::model::Role) -> proto::Role {
    proto::Role {
        id: r.id,
        name: r.name,
        description: r.description,
        builtin: r.builtin,
        created_at: Some(convert::timestamp(r.created_at)),
        updated_at: Some(convert::timestamp(r.updated_at)),
        archived_at: r.archived_at.map(convert::timestamp),
    }
}

#[tonic::async_trait]
impl proto::roles_server::Roles for Api {
    async fn list_roles(&self, req: Request<proto::ListRolesRequest>) -> Answer<proto::ListRolesResponse> {
        use crate::identity::admin::StatusFilter;
        let m = req.into_inner();
        let filter = match proto::RoleStatusFilter::try_from(m.status) {
            Ok(proto::RoleStatusFilter::Unspecified | proto::RoleStatusFilter::Active) => StatusFilter::Active,
            Ok(proto::RoleStatusFilter::Archived) => StatusFilter::Archived,
            Ok(proto::RoleStatusFilter::All) => StatusFilter::All,
            Err(_) => return Err(invalid("status", "status must be ACTIVE, ARCHIVED or ALL")),
        };
        let q =
            crate::identity::admin::ListQuery { page: convert::page(m.page), search: opt(m.search), status: filter };
        let page = crate::identity::admin::roles_list(&self.state, q).await.map_err(status)?;
        ok(proto::ListRolesResponse {
            items: page.items.into_iter().map(role_message).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        })
    }

    async fn get_role(&self, req: Request<proto::GetRoleRequest>) -> Answer<proto::Role> {
        let role = crate::identity::admin::role_get(&self.state, req.into_inner().id).await.map_err(status)?;
        ok(role_message(role))
    }

    async fn create_role(&self, req: Request<proto::CreateRoleRequest>) -> Answer<proto::Role> {
        let m = req.into_inner();
        let body = validated(crate::identity::admin::RoleRequest { name: m.name, description: m.description })?;
        ok(role_message(crate::identity::admin::role_create(&self.state, body).await.map_err(status)?))
    }

    async fn update_role(&self, req: Request<proto::UpdateRoleRequest>) -> Answer<proto::Role> {
        let m = req.into_inner();
        let body = validated(crate::identity::admin::UpdateRoleRequest { name: m.name, description: m.description })?;
        ok(role_message(crate::identity::admin::role_update(&self.state, m.id, body).await.map_err(status)?))
    }

    async fn archive_role(&self, req: Request<proto::ArchiveRoleRequest>) -> Answer<proto::Role> {
        let id = req.into_inner().id;
        ok(role_message(crate::identity::admin::role_set_archived(&self.state, id, true).await.map_err(status)?))
    }

    async fn restore_role(&self, req: Request<proto::RestoreRoleRequest>) -> Answer<proto::Role> {
        let id = req.into_inner().id;
        ok(role_message(crate::identity::admin::role_set_archived(&self.state, id, false).await.map_err(status)?))
    }

    async fn assign_role(&self, req: Request<proto::AssignRoleRequest>) -> Answer<proto::User> {
        let m = req.into_inner();
        let body = validated(crate::identity::admin::AssignRoleRequest { role: m.role })?;
        let view = crate::identity::admin::role_assign(&self.state, m.user_id.into(), body).await.map_err(status)?;
        ok(convert::user_message(view))
    }

    async fn revoke_role(&self, req: Request<proto::RevokeRoleRequest>) -> Answer<proto::User> {
        let m = req.into_inner();
        let view = crate::identity::admin::role_revoke(&self.state, m.user_id.into(), m.role).await.map_err(status)?;
        ok(convert::user_message(view))
    }

    async fn purge_role(&self, req: Request<proto::PurgeRoleRequest>) -> Answer<proto::PurgedResponse> {
        crate::identity::admin::role_purge(&self.state, req.into_inner().id).await.map_err(status)?;
        ok(proto::PurgedResponse {})
    }

    async fn restore_all_roles(&self, _req: Request<proto::RestoreAllRequest>) -> Answer<proto::RestoreAllResponse> {
        ok(convert::restored(crate::identity::admin::roles_restore_all(&self.state).await.map_err(status)?))
    }

    async fn list_user_roles(&self, req: Request<proto::ListUserRolesRequest>) -> Answer<proto::ListUserRolesResponse> {
        let id = req.into_inner().user_id;
        let view = crate::identity::admin::roles_of_user(&self.state, id.into()).await.map_err(status)?;
        ok(proto::ListUserRolesResponse { user_id: view.user_id, roles: view.roles })
    }
}

/// The HTTP name of a stats enum value (`STATS_KIND_TOPUP` → `topup`); None for UNSPECIFIED.
fn stats_name(full: &str, prefix: &str) -> Option<String> {
    full.strip_prefix(prefix).filter(|n| *n != "UNSPECIFIED").map(str::to_ascii_lowercase)
}

/// Adds an enum field of a series request to the HTTP query parameters (UNSPECIFIED: absent).
fn stats_enum_param<E: TryFrom<i32>>(
    params: &mut BTreeMap<String, String>,
    field: &str,
    raw: i32,
    name: impl Fn(&E) -> &'static str,
    prefix: &str,
) -> Result<(), Status> {
    let value = E::try_from(raw).map_err(|_| invalid(field, format!("{field} has no value {raw}")))?;
    if let Some(n) = stats_name(name(&value), prefix) {
        params.insert(field.to_owned(), n);
    }
    Ok(())
}

fn stats_scope(s: crate::stats::query::ScopeView) -> proto::StatsScope {
    proto::StatsScope { kind: s.kind.to_owned(), id: s.id }
}

fn stats_figure(f: crate::stats::query::Figure) -> proto::StatsFigure {
    proto::StatsFigure { name: f.name, count: f.count, amount: f.amount, reversed: f.reversed, failed: f.failed }
}

#[tonic::async_trait]
impl proto::stats_server::Stats for Api {
    async fn series(&self, req: Request<proto::SeriesRequest>) -> Answer<proto::SeriesResponse> {
        let caller = crate::stats::routes::caller(req.extensions().get::<AuthUser>().cloned(), convert::merchant(&req))
            .map_err(status)?;
        let m = req.into_inner();
        let kind = convert::required_enum::<proto::StatsKind>("kind", m.kind)?;
        let kind = stats_name(kind.as_str_name(), "STATS_KIND_").unwrap_or_default();
        // The same parameters as the HTTP query string, parsed and checked by the same function.
        let mut params = BTreeMap::new();
        stats_enum_param(&mut params, "metric", m.metric, proto::StatsMetric::as_str_name, "STATS_METRIC_")?;
        stats_enum_param(&mut params, "period", m.period, proto::StatsPeriod::as_str_name, "STATS_PERIOD_")?;
        stats_enum_param(
            &mut params,
            "direction",
            m.direction,
            proto::TransferDirection::as_str_name,
            "TRANSFER_DIRECTION_",
        )?;
        for (field, value) in [("card_id", m.card_id), ("merchant_id", m.merchant_id), ("api_key_id", m.api_key_id)] {
            if let Some(v) = value {
                params.insert(field.to_owned(), v.to_string());
            }
        }
        if let Some(y) = m.year {
            params.insert("year".to_owned(), y.to_string());
        }
        if let Some(c) = opt(m.currency) {
            params.insert("currency".to_owned(), c);
        }
        let params: std::collections::HashMap<String, String> = params.into_iter().collect();
        let q = crate::stats::query::SeriesQuery::parse(&kind, &params).map_err(|e| status(e.into()))?;
        let v = crate::stats::routes::read_series(&self.state, caller, q).await.map_err(status)?;
        let upper = |prefix: &str, name: &str| format!("{prefix}{}", name.to_ascii_uppercase());
        ok(proto::SeriesResponse {
            kind: proto::StatsKind::from_str_name(&upper("STATS_KIND_", v.kind)).unwrap_or_default().into(),
            metric: proto::StatsMetric::from_str_name(&upper("STATS_METRIC_", v.metric)).unwrap_or_default().into(),
            period: proto::StatsPeriod::from_str_name(&upper("STATS_PERIOD_", v.period)).unwrap_or_default().into(),
            year: v.year,
            scope: Some(stats_scope(v.scope)),
            time_zone: v.time_zone,
            as_of: Some(convert::timestamp(v.as_of)),
            periods: v
                .periods
                .into_iter()
                .map(|p| proto::StatsPeriodRange { label: p.label, from: p.from.to_string(), to: p.to.to_string() })
                .collect(),
            series: v
                .series
                .into_iter()
                .map(|s| proto::StatsSeries {
                    name: s.name,
                    currency: s.currency,
                    direction: s
                        .direction
                        .and_then(|d| proto::TransferDirection::from_str_name(&upper("TRANSFER_DIRECTION_", d)))
                        .unwrap_or_default()
                        .into(),
                    points: s
                        .points
                        .into_iter()
                        .map(|p| proto::StatsPoint { count: p.count, amount: p.amount })
                        .collect(),
                })
                .collect(),
        })
    }

    async fn dashboard(&self, req: Request<proto::DashboardRequest>) -> Answer<proto::DashboardResponse> {
        use crate::stats::query::Scope;
        let caller = crate::stats::routes::caller(req.extensions().get::<AuthUser>().cloned(), convert::merchant(&req))
            .map_err(status)?;
        let m = req.into_inner();
        let positive = |field: &str, id: i64| {
            if id > 0 {
                Ok(id)
            } else {
                Err(invalid(field, format!("{field} must be a positive integer")))
            }
        };
        let scope = match (m.card_id, m.merchant_id) {
            (None, None) => Scope::Platform,
            (Some(c), None) => Scope::Card(positive("card_id", c)?),
            (None, Some(mid)) => Scope::Merchant(positive("merchant_id", mid)?),
            (Some(_), Some(_)) => return Err(invalid("merchant_id", "give at most one of card_id, merchant_id")),
        };
        // The card dashboard is a signed-in user's, as over HTTP (`Authenticated`).
        if matches!(scope, Scope::Card(_)) && !matches!(caller, crate::stats::query::Caller::User { .. }) {
            return Err(status(ApiError::unauthorized("missing_token", "authentication required")));
        }
        let v = crate::stats::routes::read_dashboard(&self.state, caller, scope).await.map_err(status)?;
        ok(proto::DashboardResponse {
            scope: Some(stats_scope(v.scope)),
            time_zone: v.time_zone,
            as_of: Some(convert::timestamp(v.as_of)),
            totals: v
                .totals
                .into_iter()
                .map(|t| proto::StatsTotals {
                    currency: t.currency,
                    balance: t.balance,
                    figures: t.figures.into_iter().map(stats_figure).collect(),
                    methods: t.methods.into_iter().map(stats_figure).collect(),
                })
                .collect(),
        })
    }
}
