//! The gRPC services: each method parses its message into the HTTP route's request type (the same
//! validation), calls the one domain function with the caller's identity, and maps the answer.

use std::collections::BTreeMap;

use tonic::transport::server::Router;
use tonic::{Request, Response, Status};

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::payments::OperationView;

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

/// The payment kinds filter of the payment lists (UNSPECIFIED: payments and refunds).
fn payment_kind(raw: i32) -> Result<Option<String>, Status> {
    let kind = proto::OperationKind::try_from(raw).map_err(|_| invalid("kind", format!("kind has no value {raw}")))?;
    match convert::kind_name(kind) {
        None => Ok(None),
        Some(k @ ("payment" | "refund")) => Ok(Some(k.to_owned())),
        Some(_) => Err(invalid("kind", "kind must be PAYMENT or REFUND")),
    }
}

fn payments_page(page: crate::http::pagination::Page<OperationView>) -> proto::ListPaymentsResponse {
    proto::ListPaymentsResponse {
        items: page.items.into_iter().map(convert::operation).collect(),
        next_cursor: page.next_cursor.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl proto::payments_server::Payments for Api {
    async fn pay(&self, req: Request<proto::PayRequest>) -> Answer<proto::Operation> {
        let key = convert::merchant(&req).ok_or_else(|| status(crate::merchants::MerchantError::MissingKey.into()))?;
        let idem = convert::idempotency_key(&req)?;
        let m = req.into_inner();
        let body = validated(crate::merchants::payments::PaymentRequest {
            card_number: m.card_number,
            expiry_month: m.expiry_month,
            expiry_year: m.expiry_year,
            cvv: m.cvv,
            amount: m.amount,
            method: m.method,
            order_ref: m.order_ref,
            currency: opt(m.currency),
        })?;
        convert::operation_reply(
            crate::merchants::payments::charge(&self.state, &key, idem, body).await.map_err(status)?,
        )
    }

    async fn refund(&self, req: Request<proto::RefundRequest>) -> Answer<proto::Operation> {
        let key = convert::merchant(&req);
        let admin: Option<AuthUser> = req.extensions().get::<AuthUser>().cloned();
        let idem = convert::idempotency_key(&req)?;
        let m = req.into_inner();
        let id = m.payment_id.parse().map_err(|_| status(ApiError::not_found("payment")))?;
        let body = validated(crate::merchants::payments::RefundRequest { amount: m.amount, reason: opt(m.reason) })?;
        convert::operation_reply(
            crate::merchants::payments::refund_payment(&self.state, key, admin, idem, id, body)
                .await
                .map_err(status)?,
        )
    }

    async fn get_payment(&self, req: Request<proto::GetPaymentRequest>) -> Answer<proto::Operation> {
        let user = convert::user(&req)?;
        let id = req.into_inner().id.parse().map_err(|_| status(ApiError::not_found("payment")))?;
        let view = crate::merchants::payments::payment(&self.state, user, id).await.map_err(status)?;
        ok(convert::operation(view))
    }

    async fn list_payments(&self, req: Request<proto::ListPaymentsRequest>) -> Answer<proto::ListPaymentsResponse> {
        use crate::merchants::payments::{list_for_owner, list_payments, PaymentListQuery, Viewer};
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let q = PaymentListQuery {
            page: convert::page(m.page),
            kind: payment_kind(m.kind)?,
            ..PaymentListQuery::default()
        };
        let page = match m.merchant_id {
            Some(id) => list_for_owner(&self.state, user, id.into(), q).await,
            None => {
                let viewer = if user.is_admin() { Viewer::Admin } else { Viewer::Customer(user.user_id) };
                list_payments(&self.state, viewer, q).await
            }
        };
        ok(payments_page(page.map_err(status)?))
    }

    async fn list_merchant_payments(
        &self,
        req: Request<proto::ListMerchantPaymentsRequest>,
    ) -> Answer<proto::ListPaymentsResponse> {
        use crate::merchants::payments::{list_payments, PaymentListQuery, Viewer};
        let key = convert::merchant(&req).ok_or_else(|| status(crate::merchants::MerchantError::MissingKey.into()))?;
        let m = req.into_inner();
        let q = PaymentListQuery {
            page: convert::page(m.page),
            kind: payment_kind(m.kind)?,
            ..PaymentListQuery::default()
        };
        let page = list_payments(&self.state, Viewer::Merchant(key.merchant_id), q).await.map_err(status)?;
        ok(payments_page(page))
    }
}

#[tonic::async_trait]
impl proto::merchants_server::Merchants for Api {
    async fn apply_merchant(&self, req: Request<proto::ApplyMerchantRequest>) -> Answer<proto::Merchant> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let body = validated(crate::merchants::routes::ApplyRequest {
            business_name: m.business_name,
            contact_email: m.contact_email,
            category: m.category,
            website: opt(m.website),
            description: opt(m.description),
        })?;
        ok(convert::merchant_message(crate::merchants::service::apply(&self.state, user, body).await.map_err(status)?))
    }

    async fn get_merchant(&self, req: Request<proto::GetMerchantRequest>) -> Answer<proto::Merchant> {
        let user = convert::user(&req)?;
        let id = req.into_inner().id;
        ok(convert::merchant_message(
            crate::merchants::service::get(&self.state, user, id.into()).await.map_err(status)?,
        ))
    }

    async fn create_api_key(&self, req: Request<proto::CreateApiKeyRequest>) -> Answer<proto::CreatedApiKey> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let body = validated(crate::merchants::routes::KeyRequest { label: opt(m.label) })?;
        let created = crate::merchants::service::create_key(&self.state, user, m.merchant_id.into(), body)
            .await
            .map_err(status)?;
        ok(proto::CreatedApiKey { key: Some(convert::api_key(created.key)), api_key: created.api_key })
    }

    async fn list_api_keys(&self, req: Request<proto::ListApiKeysRequest>) -> Answer<proto::ListApiKeysResponse> {
        let user = convert::user(&req)?;
        let id = req.into_inner().merchant_id;
        let keys = crate::merchants::service::list_keys(&self.state, user, id.into()).await.map_err(status)?;
        ok(proto::ListApiKeysResponse { items: keys.into_iter().map(convert::api_key).collect() })
    }

    async fn revoke_api_key(&self, req: Request<proto::RevokeApiKeyRequest>) -> Answer<proto::ApiKey> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let view = crate::merchants::service::revoke_key(&self.state, user, m.merchant_id.into(), m.id.into())
            .await
            .map_err(status)?;
        ok(convert::api_key(view))
    }
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

#[tonic::async_trait]
impl proto::admin_server::Admin for Api {
    async fn get_events_status(&self, _req: Request<proto::GetEventsStatusRequest>) -> Answer<proto::EventsStatus> {
        let s = crate::events::routes::events_status(&self.state).await.map_err(status)?;
        ok(proto::EventsStatus {
            broker: s.broker.to_owned(),
            outbox_depth: s.outbox_depth,
            outbox_oldest_age_secs: s.outbox_oldest_age_secs,
            emails_pending: s.emails_pending,
            emails_dead: s.emails_dead,
            webhooks_pending: s.webhooks_pending,
            webhooks_dead: s.webhooks_dead,
            dead_letters: s.dead_letters,
        })
    }

    async fn list_dead_letters(
        &self,
        req: Request<proto::ListDeadLettersRequest>,
    ) -> Answer<proto::ListDeadLettersResponse> {
        let m = req.into_inner();
        let q = crate::events::routes::DeadLetterQuery { page: convert::page(m.page), kind: opt(m.kind) };
        let page = crate::events::routes::dead_letters_page(&self.state, q).await.map_err(status)?;
        ok(proto::ListDeadLettersResponse {
            items: page
                .items
                .into_iter()
                .map(|d| proto::DeadLetter {
                    id: d.id,
                    kind: d.kind,
                    consumer: d.consumer,
                    reference: d.reference,
                    event_id: d.event_id.map(|e| e.to_string()).unwrap_or_default(),
                    reason: d.reason,
                    payload: d.payload,
                    attempts: d.attempts,
                    created_at: Some(convert::timestamp(d.created_at)),
                })
                .collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        })
    }
}
