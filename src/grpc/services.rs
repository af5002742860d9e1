//! The gRPC services: each method parses its message into the HTTP route's request type (the same
//! validation), calls the one domain function with the caller's identity, and maps the answer.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Router;
use tonic::{Request, Response, Status};

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::pagination::encode_cursor;
use crate::payments::Operation;
use crate::storage::schema::operations;
use crate::storage::{self, StorageError};

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

#[tonic::async_trait]
impl proto::auth_server::Auth for Api {
    async fn register(&self, req: Request<proto::RegisterRequest>) -> Answer<proto::User> {
        let client = convert::client(&req, &self.state.settings.server.trusted_proxies);
        let m = req.into_inner();
        let body = validated(crate::identity::routes::RegisterRequest {
            first_name: m.first_name,
            last_name: m.last_name,
            email: m.email,
            password: m.password,
            confirm_password: m.confirm_password,
        })?;
        let user = crate::identity::service::register(&self.state, &client, body).await.map_err(status)?;
        ok(convert::user_message(user))
    }

    async fn verify_email(&self, req: Request<proto::VerifyEmailRequest>) -> Answer<proto::VerifyEmailResponse> {
        let client = convert::client(&req, &self.state.settings.server.trusted_proxies);
        let m = req.into_inner();
        let body = validated(crate::identity::routes::VerifyEmailRequest { email: m.email, code: m.code })?;
        let answer = crate::identity::service::verify_email(&self.state, &client, body).await.map_err(status)?;
        ok(proto::VerifyEmailResponse { message: answer.message })
    }

    async fn login(&self, req: Request<proto::LoginRequest>) -> Answer<proto::TokenPair> {
        let client = convert::client(&req, &self.state.settings.server.trusted_proxies);
        let m = req.into_inner();
        let body = validated(crate::identity::routes::LoginRequest { email: m.email, password: m.password })?;
        let pair = crate::identity::service::login(&self.state, &client, body).await.map_err(status)?;
        ok(token_pair(pair))
    }

    async fn refresh(&self, req: Request<proto::RefreshRequest>) -> Answer<proto::TokenPair> {
        let client = convert::client(&req, &self.state.settings.server.trusted_proxies);
        let body =
            validated(crate::identity::routes::RefreshRequest { refresh_token: req.into_inner().refresh_token })?;
        let pair = crate::identity::service::refresh(&self.state, &client, body).await.map_err(status)?;
        ok(token_pair(pair))
    }

    async fn logout(&self, req: Request<proto::LogoutRequest>) -> Answer<proto::LogoutResponse> {
        let user = convert::user(&req)?;
        crate::identity::service::logout(&self.state, &user).await.map_err(status)?;
        ok(proto::LogoutResponse {})
    }

    async fn me(&self, req: Request<proto::MeRequest>) -> Answer<proto::User> {
        let user = convert::user(&req)?;
        ok(convert::user_message(crate::identity::service::me(&self.state, &user).await.map_err(status)?))
    }
}

fn token_pair(p: crate::identity::routes::TokenPair) -> proto::TokenPair {
    proto::TokenPair {
        access_token: p.access_token,
        token_type: p.token_type.to_owned(),
        expires_in: p.expires_in,
        refresh_token: p.refresh_token,
        refresh_expires_in: p.refresh_expires_in,
    }
}

#[tonic::async_trait]
impl proto::users_server::Users for Api {
    async fn get_user(&self, req: Request<proto::GetUserRequest>) -> Answer<proto::User> {
        let id = req.into_inner().id;
        let view = crate::identity::admin::user(&self.state, id.into()).await.map_err(status)?;
        ok(convert::user_message(view))
    }
}

#[tonic::async_trait]
impl proto::cards_server::Cards for Api {
    async fn issue_card(&self, req: Request<proto::IssueCardRequest>) -> Answer<proto::IssuedCard> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let card_type = match convert::required_enum::<proto::CardType>("card_type", m.card_type)? {
            proto::CardType::Credit => "credit",
            _ => "debit",
        };
        let body = validated(crate::cards::routes::IssueCardRequest {
            card_type: card_type.to_owned(),
            brand: m.brand,
            user_id: m.user_id.map(Into::into),
            credit_limit: m.credit_limit,
            label: opt(m.label),
        })?;
        let issued = crate::cards::service::issue(&self.state, &user, body).await.map_err(status)?;
        ok(proto::IssuedCard {
            card: Some(convert::card(issued.card)),
            card_number: issued.card_number,
            cvv: issued.cvv,
        })
    }

    async fn get_card(&self, req: Request<proto::GetCardRequest>) -> Answer<proto::Card> {
        let user = convert::user(&req)?;
        let card = crate::cards::service::get(&self.state, &user, req.into_inner().id.into()).await.map_err(status)?;
        ok(convert::card(card))
    }

    async fn list_cards(&self, req: Request<proto::ListCardsRequest>) -> Answer<proto::ListCardsResponse> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let q = crate::cards::routes::CardListQuery {
            page: convert::page(m.page),
            user_id: m.user_id.map(|u| u.to_string()),
            status: opt(m.status),
            archived: crate::identity::admin::StatusFilter::Active,
            search: None,
        };
        let page = crate::cards::service::list(&self.state, &user, q).await.map_err(status)?;
        ok(proto::ListCardsResponse {
            items: page.items.into_iter().map(convert::card).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        })
    }

    async fn get_balance(&self, req: Request<proto::GetBalanceRequest>) -> Answer<proto::Balance> {
        let user = convert::user(&req)?;
        let card = req.into_inner().card_id;
        let view = crate::cards::balance::current(&self.state, &user, card.into()).await.map_err(status)?;
        ok(convert::balance(view))
    }
}

/// The kinds the Ledger service serves (payments and refunds are the Payments service's).
fn ledger_kind(raw: i32) -> Result<&'static str, Status> {
    let kind = convert::required_enum::<proto::OperationKind>("kind", raw)?;
    match convert::kind_name(kind) {
        Some(k @ ("topup" | "withdrawal" | "transfer" | "reversal")) => Ok(k),
        _ => Err(invalid("kind", "kind must be TOPUP, WITHDRAWAL, TRANSFER or REVERSAL")),
    }
}

/// The payment kinds filter of the payment lists (UNSPECIFIED: payments and refunds).
fn operation_id(raw: &str) -> Result<uuid::Uuid, Status> {
    raw.parse().map_err(|_| status(ApiError::not_found("operation")))
}

#[tonic::async_trait]
impl proto::ledger_server::Ledger for Api {
    async fn top_up(&self, req: Request<proto::TopUpRequest>) -> Answer<proto::Operation> {
        let user = convert::user(&req)?;
        let key = convert::idempotency_key(&req)?;
        let m = req.into_inner();
        let body = validated(crate::payments::routes::TopupRequest {
            card_id: m.card_id.into(),
            amount: m.amount,
            method: m.method,
            currency: opt(m.currency),
        })?;
        convert::operation_reply(crate::payments::service::topup(&self.state, &user, key, body).await.map_err(status)?)
    }

    async fn withdraw(&self, req: Request<proto::WithdrawRequest>) -> Answer<proto::Operation> {
        let user = convert::user(&req)?;
        let key = convert::idempotency_key(&req)?;
        let m = req.into_inner();
        let body = validated(crate::payments::routes::WithdrawalRequest {
            card_id: m.card_id.into(),
            amount: m.amount,
            currency: opt(m.currency),
        })?;
        convert::operation_reply(
            crate::payments::service::withdraw(&self.state, &user, key, body).await.map_err(status)?,
        )
    }

    async fn transfer(&self, req: Request<proto::TransferRequest>) -> Answer<proto::Operation> {
        let user = convert::user(&req)?;
        let key = convert::idempotency_key(&req)?;
        let m = req.into_inner();
        let body = validated(crate::payments::routes::TransferRequest {
            from_card_id: m.from_card_id.into(),
            // Proto3 has no absent integer: 0 (never a card id) and "" mean "not given".
            to_card_id: (m.to_card_id != 0).then_some(m.to_card_id.into()),
            to_card_number: (!m.to_card_number.is_empty()).then_some(m.to_card_number),
            amount: m.amount,
            currency: opt(m.currency),
        })?;
        convert::operation_reply(
            crate::payments::service::transfer(&self.state, &user, key, body).await.map_err(status)?,
        )
    }

    async fn get_operation(&self, req: Request<proto::GetOperationRequest>) -> Answer<proto::Operation> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let kind = ledger_kind(m.kind)?;
        let id = operation_id(&m.id)?;
        let view = crate::payments::service::get_operation(&self.state, user, kind, id).await.map_err(status)?;
        ok(convert::operation(view))
    }

    async fn list_operations(
        &self,
        req: Request<proto::ListOperationsRequest>,
    ) -> Answer<proto::ListOperationsResponse> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let kind = ledger_kind(m.kind)?;
        let q = crate::payments::routes::OpListQuery {
            page: convert::page(m.page),
            card_id: m.card_id.map(|c| c.to_string()),
            from_card_id: None,
            to_card_id: None,
            status: None,
            from: None,
            to: None,
            archived: crate::identity::admin::StatusFilter::Active,
            search: None,
        };
        let page = crate::payments::service::list_operations(&self.state, user, kind, q).await.map_err(status)?;
        ok(proto::ListOperationsResponse {
            items: page.items.into_iter().map(convert::operation).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        })
    }

    type WatchOperationsStream = ReceiverStream<Result<proto::OperationEvent, Status>>;

    async fn watch_operations(
        &self,
        req: Request<proto::WatchOperationsRequest>,
    ) -> Answer<Self::WatchOperationsStream> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let cursor = crate::http::pagination::PageQuery { limit: None, cursor: opt(m.cursor), include_total: None }
            .resolve()
            .map_err(status)?
            .1;
        let card = m.card_id;
        // The card must be the caller's (any card for an admin): answered before the stream opens.
        crate::cards::service::get(&self.state, &user, card.into()).await.map_err(status)?;
        let state = self.state.clone();
        let start = match cursor {
            Some(c) => c,
            None => storage::run(&state.db, |conn| {
                operations::table
                    .select(diesel::dsl::max(operations::seq))
                    .first::<Option<i64>>(conn)
                    .map_err(StorageError::from)
            })
            .await
            .map_err(|e| status(e.into()))?
            .unwrap_or(0),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move { watch(&state, &user, card, start, &tx).await });
        ok(ReceiverStream::new(rx))
    }
}

/// How often a watch looks for new operations.
const WATCH_POLL: Duration = Duration::from_millis(200);
/// How long a watch keeps looking behind its newest operation for ones that committed late (a
/// transaction holding a lower `seq` can commit after a higher one was seen).
const WATCH_LATE: chrono::Duration = chrono::Duration::seconds(10);
/// Most operations one poll takes in.
const WATCH_BATCH: i64 = 500;

/// Sends the card's operations with `seq > start` as they commit, oldest first, until the client
/// goes away or shutdown begins. Each event's cursor resumes after it.
async fn watch(
    state: &AppState,
    user: &crate::http::auth::AuthUser,
    card: i64,
    start: i64,
    tx: &tokio::sync::mpsc::Sender<Result<proto::OperationEvent, Status>>,
) {
    // Operations at or below `floor` are settled; `sent` holds the newer ones already sent, with
    // their creation time, until they are older than WATCH_LATE.
    let mut floor = start;
    let mut sent: BTreeMap<i64, DateTime<Utc>> = BTreeMap::new();
    loop {
        let from = floor;
        let viewer = user.clone();
        let rows = storage::run(&state.db, move |conn| {
            let rows = operations::table
                .select(Operation::as_select())
                .filter(operations::source_card_id.eq(card).or(operations::dest_card_id.eq(card)))
                .filter(operations::seq.gt(from))
                .order(operations::seq.asc())
                .limit(WATCH_BATCH)
                .load::<Operation>(conn)
                .map_err(StorageError::from)?;
            let meta: Vec<(i64, DateTime<Utc>)> = rows.iter().map(|o| (o.seq, o.created_at)).collect();
            // Other users' cards masked, as in every view a non-admin sees.
            let views = crate::payments::recipient::present(conn, &viewer, rows)?;
            Ok::<_, StorageError>(meta.into_iter().zip(views).collect::<Vec<_>>())
        })
        .await;
        match rows {
            Ok(rows) => {
                for ((seq, at), view) in rows {
                    if sent.contains_key(&seq) {
                        continue;
                    }
                    let event =
                        proto::OperationEvent { operation: Some(convert::operation(view)), cursor: encode_cursor(seq) };
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                    sent.insert(seq, at);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, card, "watch could not read operations");
                let _ = tx.send(Err(status(e.into()))).await;
                return;
            }
        }
        let settled = Utc::now() - WATCH_LATE;
        while let Some((&seq, &at)) = sent.first_key_value() {
            if at >= settled {
                break;
            }
            floor = seq;
            sent.remove(&seq);
        }
        tokio::select! {
            () = tx.closed() => return,
            stop = state.shutdown.sleep(WATCH_POLL) => if stop { return },
        }
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
