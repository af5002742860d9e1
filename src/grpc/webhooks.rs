//! The gRPC Webhooks and Notifications services: thin adapters over `events::webhooks::service`
//! and `notify::preferences`, the functions the HTTP routes call.

use tonic::{Request, Status};

use crate::events::webhooks::routes::{
    AttemptView, CreateEndpoint, DeliveryQuery, DeliveryView, EndpointView, RotateSecret, UpdateEndpoint,
};
use crate::events::webhooks::service;
use crate::events::webhooks::WebhookError;
use crate::notify::preferences::{self, PreferencesRequest, PreferencesView};

use super::convert::{self, opt, status, validated};
use super::proto;
use super::services::{ok, Answer, Api};

fn hook_status(e: WebhookError) -> Status {
    status(e.into())
}

fn webhook(v: EndpointView) -> proto::Webhook {
    proto::Webhook {
        id: v.id,
        merchant_id: v.merchant_id,
        url: v.url,
        description: v.description,
        event_types: v.event_types,
        status: v.status,
        disabled_reason: v.disabled_reason.unwrap_or_default(),
        consecutive_failures: v.consecutive_failures,
        previous_secret_expires_at: v.previous_secret_expires_at.map(convert::timestamp),
        created_at: Some(convert::timestamp(v.created_at)),
        updated_at: Some(convert::timestamp(v.updated_at)),
    }
}

fn delivery(d: DeliveryView) -> proto::WebhookDelivery {
    proto::WebhookDelivery {
        id: d.id,
        event_id: d.event_id.to_string(),
        event_type: d.event_type,
        status: d.status,
        attempts: d.attempts,
        next_attempt_at: Some(convert::timestamp(d.next_attempt_at)),
        last_status: d.last_status,
        last_error: d.last_error.unwrap_or_default(),
        created_at: Some(convert::timestamp(d.created_at)),
        completed_at: d.completed_at.map(convert::timestamp),
    }
}

fn attempt(a: AttemptView) -> proto::DeliveryAttempt {
    proto::DeliveryAttempt {
        attempt: a.attempt,
        status_code: a.status_code,
        error: a.error.unwrap_or_default(),
        duration_ms: a.duration_ms,
        manual: a.manual,
        created_at: Some(convert::timestamp(a.created_at)),
    }
}

#[tonic::async_trait]
impl proto::webhooks_server::Webhooks for Api {
    async fn list_event_types(
        &self,
        _req: Request<proto::ListEventTypesRequest>,
    ) -> Answer<proto::ListEventTypesResponse> {
        let types = service::event_types().event_types.into_iter().map(str::to_owned).collect();
        ok(proto::ListEventTypesResponse { event_types: types })
    }

    async fn create_webhook(&self, req: Request<proto::CreateWebhookRequest>) -> Answer<proto::CreatedWebhook> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let body =
            validated(CreateEndpoint { url: m.url, event_types: m.event_types, description: opt(m.description) })?;
        let created = service::create(&self.state, &user, m.merchant_id, body).await.map_err(hook_status)?;
        ok(proto::CreatedWebhook { webhook: Some(webhook(created.endpoint)), secret: created.secret })
    }

    async fn list_webhooks(&self, req: Request<proto::ListWebhooksRequest>) -> Answer<proto::ListWebhooksResponse> {
        let user = convert::user(&req)?;
        let list = service::list(&self.state, &user, req.into_inner().merchant_id).await.map_err(hook_status)?;
        ok(proto::ListWebhooksResponse { items: list.items.into_iter().map(webhook).collect() })
    }

    async fn get_webhook(&self, req: Request<proto::WebhookRef>) -> Answer<proto::Webhook> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        ok(webhook(service::show(&self.state, &user, m.merchant_id, m.id).await.map_err(hook_status)?))
    }

    async fn update_webhook(&self, req: Request<proto::UpdateWebhookRequest>) -> Answer<proto::Webhook> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let body = validated(UpdateEndpoint {
            url: m.url,
            event_types: m.event_types.map(|l| l.event_types),
            description: m.description,
            enabled: m.enabled,
        })?;
        ok(webhook(service::update(&self.state, &user, m.merchant_id, m.id, body).await.map_err(hook_status)?))
    }

    async fn delete_webhook(&self, req: Request<proto::WebhookRef>) -> Answer<proto::DeleteWebhookResponse> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        service::delete(&self.state, &user, m.merchant_id, m.id).await.map_err(hook_status)?;
        ok(proto::DeleteWebhookResponse {})
    }

    async fn rotate_webhook_secret(
        &self,
        req: Request<proto::RotateWebhookSecretRequest>,
    ) -> Answer<proto::RotatedWebhookSecret> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let body = validated(RotateSecret { overlap_secs: m.overlap_secs })?;
        let rotated = service::rotate(&self.state, &user, m.merchant_id, m.id, body).await.map_err(hook_status)?;
        ok(proto::RotatedWebhookSecret {
            secret: rotated.secret,
            previous_secret_expires_at: rotated.previous_secret_expires_at.map(convert::timestamp),
        })
    }

    async fn list_deliveries(
        &self,
        req: Request<proto::ListDeliveriesRequest>,
    ) -> Answer<proto::ListDeliveriesResponse> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let q = DeliveryQuery { page: convert::page(m.page), status: opt(m.status) };
        let page = service::deliveries(&self.state, &user, m.merchant_id, m.webhook_id, q).await.map_err(status)?;
        ok(proto::ListDeliveriesResponse {
            items: page.items.into_iter().map(delivery).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        })
    }

    async fn get_delivery(&self, req: Request<proto::DeliveryRef>) -> Answer<proto::DeliveryDetail> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let d = service::delivery(&self.state, &user, m.merchant_id, m.webhook_id, m.id).await.map_err(hook_status)?;
        ok(proto::DeliveryDetail {
            delivery: Some(delivery(d.delivery)),
            body: d.body,
            attempts: d.attempts.into_iter().map(attempt).collect(),
        })
    }

    async fn redeliver(&self, req: Request<proto::DeliveryRef>) -> Answer<proto::WebhookDelivery> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let d = service::redeliver(&self.state, &user, m.merchant_id, m.webhook_id, m.id).await.map_err(hook_status)?;
        ok(delivery(d))
    }
}

fn preferences_message(p: PreferencesView) -> proto::NotificationPreferences {
    proto::NotificationPreferences {
        topups: p.topups,
        withdrawals: p.withdrawals,
        payments: p.payments,
        transfers: p.transfers,
        transfer_min_amount: p.transfer_min_amount,
        uses_defaults: p.default,
    }
}

#[tonic::async_trait]
impl proto::notifications_server::Notifications for Api {
    async fn get_preferences(
        &self,
        req: Request<proto::GetPreferencesRequest>,
    ) -> Answer<proto::NotificationPreferences> {
        let user = convert::user(&req)?;
        ok(preferences_message(preferences::read(&self.state, &user).await.map_err(status)?))
    }

    async fn update_preferences(
        &self,
        req: Request<proto::UpdatePreferencesRequest>,
    ) -> Answer<proto::NotificationPreferences> {
        let user = convert::user(&req)?;
        let m = req.into_inner();
        let body = validated(PreferencesRequest {
            topups: m.topups,
            withdrawals: m.withdrawals,
            payments: m.payments,
            transfers: m.transfers,
            transfer_min_amount: m.transfer_min_amount,
        })?;
        ok(preferences_message(preferences::choose(&self.state, &user, body).await.map_err(status)?))
    }
}
