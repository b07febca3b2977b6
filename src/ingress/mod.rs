//! Lead ingress: the HTTP front door that turns CRM webhooks and API requests into durable
//! `lead.received` events.
//!
//! - [`verify`]: pure functions that decide whether a webhook request is authentic before any
//!   of it is parsed or trusted: Standard Webhooks HMAC signatures, HighLevel marketplace-app
//!   signatures (Ed25519 and RSA), and per-tenant shared secrets for the unsigned webhooks of
//!   HighLevel and Zoho workflows.
//! - [`webhooks`]: the webhook routes, one per sender.
//! - [`publish`]: a lead's deduplicating message id; publishing with the PubAck awaited.
//! - [`limits`]: body size (413), the time floor of authentication failures.
//! - [`telephony`]: Twilio's signed call progress and machine detection callbacks, published
//!   as `call.status_reported`.
//!
//! `POST /v1/calls` and bulk uploads are part of the management API (`crate::api::leads`),
//! which shares this module's [`Ingress`] for publishing and limits.
//!
//! Guarantees: a 202 is sent only after JetStream acknowledged the lead; NATS down is 503 with
//! `Retry-After`, never a 2xx; the same delivery always gets the same `Nats-Msg-Id`, so a retry
//! within the stream's duplicate window is stored once, and the dedupe stage drops later ones.

pub mod limits;
pub mod publish;
pub mod telephony;
pub mod verify;
pub mod voice;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::post;

use self::verify::{
    GoHighLevelKeys, HIGHLEVEL_ED25519_PUBLIC_KEY_PEM, HIGHLEVEL_RSA_PUBLIC_KEY_PEM,
};
use crate::api::auth::RateLimits;
use crate::api::error::ApiError;
use crate::bus::Bus;
use crate::ids::TenantId;
use crate::settings::IngressSettings;
use crate::tenancy::directory::{Directory, TenantSnapshot};

/// What the ingress routes share.
#[derive(Debug)]
pub struct Ingress {
    /// Where leads are published.
    pub bus: Bus,
    /// Cached tenant snapshots (with webhook secrets).
    pub directory: Directory,
    /// Limits and keys.
    pub settings: IngressSettings,
    /// HighLevel's webhook public keys.
    pub gohighlevel: GoHighLevelKeys,
    /// Our public base URL as providers call it; telephony callback signatures cover it.
    pub public_base_url: String,
    /// Per-tenant request buckets (the platform tenant's bucket is for unclaimed locations).
    limits: RateLimits<TenantId>,
}

impl Ingress {
    /// Builds the ingress state; HighLevel's keys come from settings, else the published ones.
    pub fn new(bus: Bus, directory: Directory, settings: IngressSettings) -> anyhow::Result<Self> {
        let ed25519 = settings
            .gohighlevel_ed25519_public_key
            .as_deref()
            .unwrap_or(HIGHLEVEL_ED25519_PUBLIC_KEY_PEM);
        let rsa = settings
            .gohighlevel_rsa_public_key
            .as_deref()
            .unwrap_or(HIGHLEVEL_RSA_PUBLIC_KEY_PEM);
        let gohighlevel = GoHighLevelKeys::from_pem(Some(rsa), Some(ed25519))
            .context("ingress settings: highlevel public keys")?;
        Ok(Self {
            bus,
            directory,
            settings,
            gohighlevel,
            public_base_url: crate::settings::TelephonySettings::default().public_base_url,
            limits: RateLimits::default(),
        })
    }

    /// Sets the public base URL telephony callbacks are signed for.
    #[must_use]
    pub fn with_public_base_url(mut self, public_base_url: &str) -> Self {
        public_base_url.clone_into(&mut self.public_base_url);
        self
    }

    /// Takes one request from the tenant's bucket: the tenant's own rate, else the platform
    /// default; the platform tenant (unclaimed HighLevel locations) has its own. Over it: 429.
    pub fn admit(
        &self,
        tenant: TenantId,
        snapshot: Option<&TenantSnapshot>,
    ) -> Result<(), ApiError> {
        let per_minute = match snapshot {
            Some(snapshot) => snapshot
                .configuration
                .ingress_requests_per_minute
                .unwrap_or(self.settings.requests_per_minute),
            None if tenant == TenantId::PLATFORM => self.settings.unclaimed_requests_per_minute,
            None => self.settings.requests_per_minute,
        };
        self.limits.check(tenant, per_minute).into_result()
    }

    /// How long an authentication failure takes at least.
    pub fn auth_failure_floor(&self) -> Duration {
        Duration::from_millis(self.settings.auth_failure_floor_ms)
    }
}

/// Returns the webhook routes (`/webhooks/…`).
pub fn router(ingress: Arc<Ingress>) -> Router {
    Router::new()
        .route("/webhooks/gohighlevel", post(webhooks::gohighlevel_app))
        .route(
            "/webhooks/{tenant}/gohighlevel/workflow",
            post(webhooks::gohighlevel_workflow),
        )
        .route(
            "/webhooks/{tenant}/gohighlevel/workflow/{secret}",
            post(webhooks::gohighlevel_workflow),
        )
        .route(
            "/webhooks/{tenant}/zoho/workflow",
            post(webhooks::zoho_workflow),
        )
        .route(
            "/webhooks/{tenant}/zoho/workflow/{secret}",
            post(webhooks::zoho_workflow),
        )
        .route(
            "/webhooks/{tenant}/zoho/notifications",
            post(webhooks::zoho_notifications),
        )
        .route("/webhooks/{tenant}/custom", post(webhooks::custom))
        .route(
            "/webhooks/{tenant}/twilio/calls/{attempt}/{callback}",
            post(telephony::twilio_call),
        )
        .route(
            "/webhooks/{tenant}/elevenlabs/post-call",
            post(voice::elevenlabs_post_call),
        )
        .layer(axum::middleware::from_fn(crate::api::auth::request_id))
        .with_state(ingress)
}
