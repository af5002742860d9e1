//! The Auth, Users and Cards services: each method parses its message into the HTTP route's request
//! type (the same validation), calls the one domain function with the caller's identity, and maps
//! the answer.

use tonic::{Request, Status};

use crate::cards::CardAction;
use crate::identity::{account, admin};

use super::convert::{self, invalid, opt, status, validated};
use super::proto;
use super::services::{ok, Answer, Api};

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

    async fn resend_verification(
        &self,
        req: Request<proto::ResendVerificationRequest>,
    ) -> Answer<proto::MessageResponse> {
        let client = convert::client(&req, &self.state.settings.server.trusted_proxies);
        let body = validated(crate::identity::routes::EmailRequest { email: req.into_inner().email })?;
        let answer = account::resend_verification(&self.state, &client, body).await.map_err(status)?;
        ok(proto::MessageResponse { message: answer.message })
    }

    async fn update_display_name(&self, req: Request<proto::UpdateDisplayNameRequest>) -> Answer<proto::User> {
        let user = convert::user(&req)?;
        let body =
            validated(crate::identity::routes::DisplayNameRequest { display_name: req.into_inner().display_name })?;
        ok(convert::user_message(account::set_display_name(&self.state, &user, body).await.map_err(status)?))
    }

    async fn change_password(&self, req: Request<proto::ChangePasswordRequest>) -> Answer<proto::MessageResponse> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let body = validated(crate::identity::routes::ChangePasswordRequest {
            current_password: m.current_password,
            new_password: m.new_password,
            confirm_password: m.confirm_password,
        })?;
        let answer = account::change_password(&self.state, &user, body).await.map_err(status)?;
        ok(proto::MessageResponse { message: answer.message })
    }

    async fn forgot_password(&self, req: Request<proto::ForgotPasswordRequest>) -> Answer<proto::MessageResponse> {
        let client = convert::client(&req, &self.state.settings.server.trusted_proxies);
        let body = validated(crate::identity::routes::EmailRequest { email: req.into_inner().email })?;
        let answer = account::forgot_password(&self.state, &client, body).await.map_err(status)?;
        ok(proto::MessageResponse { message: answer.message })
    }

    async fn reset_password(&self, req: Request<proto::ResetPasswordRequest>) -> Answer<proto::MessageResponse> {
        let client = convert::client(&req, &self.state.settings.server.trusted_proxies);
        let m = req.into_inner();
        let body = validated(crate::identity::routes::ResetPasswordRequest {
            token: m.token,
            new_password: m.new_password,
            confirm_password: m.confirm_password,
        })?;
        let answer = account::reset_password(&self.state, &client, body).await.map_err(status)?;
        ok(proto::MessageResponse { message: answer.message })
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

    async fn list_users(&self, req: Request<proto::ListUsersRequest>) -> Answer<proto::ListUsersResponse> {
        let m = req.into_inner();
        let q = admin::ListQuery {
            page: convert::page(m.page),
            search: opt(m.search),
            status: status_filter("status", &m.status)?,
        };
        let page = admin::users_list(&self.state, q).await.map_err(status)?;
        ok(proto::ListUsersResponse {
            items: page.items.into_iter().map(convert::user_message).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        })
    }

    async fn update_user(&self, req: Request<proto::UpdateUserRequest>) -> Answer<proto::User> {
        let m = req.into_inner();
        let body =
            validated(admin::UpdateUserRequest { first_name: m.first_name, last_name: m.last_name, email: m.email })?;
        ok(convert::user_message(admin::user_update(&self.state, m.id.into(), body).await.map_err(status)?))
    }

    async fn archive_user(&self, req: Request<proto::UserRef>) -> Answer<proto::User> {
        let id = req.into_inner().id;
        ok(convert::user_message(admin::user_archive(&self.state, id.into()).await.map_err(status)?))
    }

    async fn restore_user(&self, req: Request<proto::UserRef>) -> Answer<proto::User> {
        let id = req.into_inner().id;
        ok(convert::user_message(admin::user_restore(&self.state, id.into()).await.map_err(status)?))
    }

    async fn reset_user_password(&self, req: Request<proto::UserRef>) -> Answer<proto::User> {
        let admin_user = convert::user(&req)?;
        let id = req.into_inner().id;
        ok(convert::user_message(admin::user_force_reset(&self.state, &admin_user, id.into()).await.map_err(status)?))
    }

    async fn create_user(&self, req: Request<proto::CreateUserRequest>) -> Answer<proto::User> {
        let m = req.into_inner();
        let body = validated(admin::CreateUserRequest {
            first_name: m.first_name,
            last_name: m.last_name,
            email: m.email,
            password: m.password,
            // Proto3 has no absent list: empty means the default roles, as an absent JSON field.
            roles: (!m.roles.is_empty()).then_some(m.roles),
            email_verified: m.email_verified,
        })?;
        ok(convert::user_message(admin::user_create(&self.state, body).await.map_err(status)?))
    }

    async fn set_user_password(&self, req: Request<proto::SetUserPasswordRequest>) -> Answer<proto::User> {
        let admin_user = convert::user(&req)?;
        let m = req.into_inner();
        let body = validated(admin::SetPasswordRequest { password: m.password })?;
        let view = admin::user_set_password(&self.state, &admin_user, m.id.into(), body).await.map_err(status)?;
        ok(convert::user_message(view))
    }

    async fn purge_user(&self, req: Request<proto::UserRef>) -> Answer<proto::PurgedResponse> {
        let admin_user = convert::user(&req)?;
        let id = req.into_inner().id;
        admin::user_purge(&self.state, &admin_user, id.into()).await.map_err(status)?;
        ok(proto::PurgedResponse {})
    }

    async fn restore_all_users(&self, _req: Request<proto::RestoreAllRequest>) -> Answer<proto::RestoreAllResponse> {
        ok(convert::restored(crate::identity::admin::users_restore_all(&self.state).await.map_err(status)?))
    }

    async fn list_user_cards(&self, req: Request<proto::ListUserCardsRequest>) -> Answer<proto::ListCardsResponse> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let q = crate::cards::routes::CardListQuery {
            page: convert::page(m.page),
            user_id: None,
            status: opt(m.status),
            archived: status_filter("archived", &m.archived)?,
            search: opt(m.search),
        };
        let page = crate::cards::routes::user_cards(&self.state, &user, m.user_id.into(), q).await.map_err(status)?;
        ok(proto::ListCardsResponse {
            items: page.items.into_iter().map(convert::card).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        })
    }
}

/// The archive filter of a list as the HTTP query spells it (empty: active).
fn status_filter(field: &str, raw: &str) -> Result<admin::StatusFilter, Status> {
    match raw {
        "" | "active" => Ok(admin::StatusFilter::Active),
        "archived" => Ok(admin::StatusFilter::Archived),
        "all" => Ok(admin::StatusFilter::All),
        _ => Err(invalid(field, format!("{field} must be active, archived or all"))),
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

    async fn restore_all_cards(&self, _req: Request<proto::RestoreAllRequest>) -> Answer<proto::RestoreAllResponse> {
        ok(convert::restored(crate::cards::service::restore_all(&self.state).await.map_err(status)?))
    }

    async fn find_card_by_number(&self, req: Request<proto::FindCardByNumberRequest>) -> Answer<proto::Card> {
        let user = convert::user(&req)?;
        let body = validated(crate::cards::routes::LookupRequest { card_number: req.into_inner().card_number })?;
        ok(convert::card(crate::cards::service::find_by_number(&self.state, &user, body).await.map_err(status)?))
    }

    async fn update_card(&self, req: Request<proto::UpdateCardRequest>) -> Answer<proto::Card> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let body = validated(crate::cards::routes::UpdateCardRequest { label: m.label, credit_limit: m.credit_limit })?;
        let card = crate::cards::service::update(&self.state, &user, m.id.into(), body).await.map_err(status)?;
        ok(convert::card(card))
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

    async fn freeze_card(&self, req: Request<proto::CardActionRequest>) -> Answer<proto::Card> {
        self.card_action(req, CardAction::Freeze).await
    }

    async fn unfreeze_card(&self, req: Request<proto::CardActionRequest>) -> Answer<proto::Card> {
        self.card_action(req, CardAction::Unfreeze).await
    }

    async fn close_card(&self, req: Request<proto::CardActionRequest>) -> Answer<proto::Card> {
        self.card_action(req, CardAction::Close).await
    }

    async fn archive_card(&self, req: Request<proto::CardActionRequest>) -> Answer<proto::Card> {
        self.card_action(req, CardAction::Archive).await
    }

    async fn restore_card(&self, req: Request<proto::CardActionRequest>) -> Answer<proto::Card> {
        self.card_action(req, CardAction::Restore).await
    }

    async fn unlock_card(&self, req: Request<proto::CardActionRequest>) -> Answer<proto::Card> {
        let user = convert::user(&req)?;
        let id = req.into_inner().id;
        ok(convert::card(crate::cards::lifecycle::unlock(&self.state, user, id.into()).await.map_err(status)?))
    }

    async fn get_statement(&self, req: Request<proto::GetStatementRequest>) -> Answer<proto::GetStatementResponse> {
        self.get_statement_page(req).await
    }

    async fn lookup_card(&self, req: Request<proto::LookupCardRequest>) -> Answer<proto::RecipientPreview> {
        let user = convert::user(&req)?;
        let body = validated(crate::payments::recipient::RecipientPreviewRequest {
            card_number: req.into_inner().card_number,
        })?;
        let found = crate::payments::recipient::preview(&self.state, &user, body).await.map_err(status)?;
        ok(proto::RecipientPreview { card_number: found.card_number, display_name: found.display_name })
    }

    async fn list_balances(&self, req: Request<proto::ListBalancesRequest>) -> Answer<proto::ListBalancesResponse> {
        let q = convert::page(req.into_inner().page);
        let page = crate::cards::routes::balances_page(&self.state, q).await.map_err(status)?;
        ok(proto::ListBalancesResponse {
            items: page.items.into_iter().map(convert::balance).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        })
    }
}

impl Api {
    async fn get_statement_page(
        &self,
        req: Request<proto::GetStatementRequest>,
    ) -> Answer<proto::GetStatementResponse> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let q = convert::statement_query(m.page, m.from, m.to)?;
        let page =
            crate::cards::routes::statement_page(&self.state, &user, m.card_id.into(), &q).await.map_err(status)?;
        ok(convert::statement(page))
    }

    /// A lifecycle action on the caller's card (any card for an admin), as `POST /cards/{id}/{action}`.
    async fn card_action(&self, req: Request<proto::CardActionRequest>, action: CardAction) -> Answer<proto::Card> {
        let user = convert::user(&req)?;
        let id = req.into_inner().id;
        ok(convert::card(crate::cards::lifecycle::apply(&self.state, user, id.into(), action).await.map_err(status)?))
    }
}
