//! A running ingress: the real HTTP server (API + webhooks) on a loopback port, the dedupe and
//! resolve_tenant stages, a private NATS server and a fresh database, and one onboarded tenant
//! with every webhook secret.

#![allow(unreachable_pub)] // shared by test files through `#[path]`

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use caller::api::{self, AppState};
use caller::bus::envelope::Envelope;
use caller::bus::runner::Runtime;
use caller::bus::subjects::{self, TenantToken};
use caller::crypto::Keyring;
use caller::events::lead_flow::LeadResolved;
use caller::ids::TenantId;
use caller::ingress::Ingress;
use caller::metrics::Metrics;
use caller::providers::sim::{self, SimAccounts};
use caller::providers::zoho::ZohoRecords;
use caller::secret::Secret;
use caller::settings::{ApiSettings, IngressSettings, RunnerSettings, ZohoSettings};
use caller::shutdown::Shutdown;
use caller::tenancy::api_keys::Scope;
use caller::tenancy::audit::Actor;
use caller::tenancy::directory::Directory;
use caller::tenancy::service::{self, KeyRequest};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePublicKey as _;
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::common::{NatsServer, TestEnv, nats_definitions_copy, project_root, spawn_stages};

/// The tenant's Standard Webhooks secrets: current and previous.
pub const CUSTOM_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwbDzNGgCt8ok0";
pub const CUSTOM_SECRET_PREVIOUS: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const GHL_SECRET: &str = "ghl-workflow-secret-7f3a9c21";
pub const GHL_SECRET_PREVIOUS: &str = "ghl-workflow-secret-old-4410";
pub const ZOHO_SECRET: &str = "zoho-workflow-secret-1b2c3d";
pub const ZOHO_TOKEN: &str = "zoho-channel-token-99aa";
pub const LOCATION: &str = "ve9EPM428h8vShlRW1KT";

/// Options of a harness.
pub struct Options {
    /// Dedupe horizon, hours.
    pub horizon_hours: u64,
    /// Replaces the LEADS stream's duplicate window (nanoseconds).
    pub duplicate_window_ns: Option<u64>,
    /// Ingress settings.
    pub ingress: IngressSettings,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            horizon_hours: 7 * 24,
            duplicate_window_ns: None,
            ingress: IngressSettings {
                auth_failure_floor_ms: 20,
                ..IngressSettings::default()
            },
        }
    }
}

pub struct Harness {
    pub env: TestEnv,
    pub base: String,
    pub http: reqwest::Client,
    pub tenant: TenantId,
    pub tenant_key: String,
    pub ghl_signer: SigningKey,
    pub shutdown: Shutdown,
    pub nats_dir: tempfile::TempDir,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
}

impl Harness {
    pub async fn start(options: Options) -> Self {
        let nats_dir = nats_definitions_copy();
        if let Some(window) = options.duplicate_window_ns {
            let path = nats_dir.path().join("streams/LEADS.json");
            let mut stream: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            stream["duplicate_window"] = json!(window);
            std::fs::write(&path, stream.to_string()).unwrap();
        }
        let env = TestEnv::start(Some(nats_dir.path())).await;
        let keyring = Arc::new(Keyring::from_parts("k1", [("k1", [42u8; 32])]).unwrap());
        let directory = Directory::new(
            env.db.store.clone(),
            Some(keyring.clone()),
            Duration::from_secs(60),
        );
        let ghl_signer = SigningKey::from_bytes(&[7u8; 32]);
        let ghl_public = ghl_signer
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        let mut settings = options.ingress;
        settings.gohighlevel_ed25519_public_key = Some(ghl_public);
        let ingress = Arc::new(Ingress::new(env.bus.clone(), directory.clone(), settings).unwrap());
        let api_settings = ApiSettings::default();
        let state = AppState::from_parts(env.db.store.clone(), keyring.clone(), &api_settings)
            .with_ingress(ingress.clone());
        let router = api::router(state, &api_settings).merge(caller::ingress::router(ingress));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = Shutdown::new();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(caller::http::serve(
            listener,
            caller::http::with_fallback(router),
            shutdown.clone(),
        ));
        tasks.spawn(
            directory
                .clone()
                .follow_changes(env.bus.clone(), shutdown.clone()),
        );

        let mut runtime = Runtime::new(
            env.bus.clone(),
            env.db.store.clone(),
            Metrics::default(),
            RunnerSettings {
                retry_base_ms: 20,
                retry_max_ms: 200,
                pull_expires_ms: 300,
                ..RunnerSettings::default()
            },
        );
        runtime.stages.dedupe.horizon_hours = options.horizon_hours;
        runtime.directory = directory;
        // Zoho records come from the loopback simulator; the stored token is expired, so the
        // first read refreshes it through the simulator's accounts server.
        let sim_accounts = SimAccounts::default();
        let (sim, _) = sim::spawn(sim_accounts.clone()).await;
        let sim_base = format!("http://{sim}");
        runtime.zoho = Some(Arc::new(ZohoRecords::new(
            env.db.store.clone(),
            keyring.clone(),
            ZohoSettings {
                accounts_url: sim_base.clone(),
                client_id: Some(sim_accounts.zoho_client_id.clone()),
                client_secret: Some(Secret::new(sim_accounts.zoho_client_secret.clone())),
            },
        )));
        spawn_stages(
            nats_dir.path(),
            &["dedupe", "resolve_tenant"],
            &runtime,
            &shutdown,
            &mut tasks,
        );

        let (tenant, tenant_key) = onboard(&env, &sim_base, &sim_accounts).await;
        Self {
            env,
            base,
            http: caller::providers::http::client(),
            tenant,
            tenant_key,
            ghl_signer,
            shutdown,
            nats_dir,
            tasks,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every resolved lead of the tenant stored so far.
    pub async fn resolved(&self) -> Vec<Envelope<LeadResolved>> {
        read_all(
            &self.env.bus,
            &subjects::leads_resolved(TenantToken::Id(&self.tenant)),
        )
        .await
    }

    /// Waits until both stages have nothing pending or unacknowledged.
    pub async fn settle(&self) {
        let stream = self.env.bus.jetstream().get_stream("LEADS").await.unwrap();
        for _ in 0..500 {
            let mut idle = true;
            for name in ["dedupe", "resolve_tenant"] {
                let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                    stream.get_consumer(name).await.unwrap();
                let info = consumer.info().await.unwrap();
                if info.num_pending > 0 || info.num_ack_pending > 0 {
                    idle = false;
                }
            }
            if idle {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the lead stages did not settle");
    }

    /// Waits until `count` resolved leads exist (then settles and returns them all).
    pub async fn wait_resolved(&self, count: usize) -> Vec<Envelope<LeadResolved>> {
        for _ in 0..500 {
            let leads = self.resolved().await;
            if leads.len() >= count {
                self.settle().await;
                return self.resolved().await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("fewer than {count} resolved leads after 10 s");
    }

    /// The tenant's dead letters as the API lists them (`query` e.g. `?stage=resolve_tenant`),
    /// and their reasons.
    pub async fn dead_letters(&self, query: &str) -> (Value, Vec<String>) {
        let path = format!("/v1/clients/{}/dead-letters{query}", self.tenant);
        let letters: Value = self
            .http
            .get(self.url(&path))
            .bearer_auth(&self.tenant_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let reasons = letters
            .as_array()
            .unwrap()
            .iter()
            .map(|letter| letter["reason"].as_str().unwrap().to_owned())
            .collect();
        (letters, reasons)
    }

    /// Replaces the NATS server (same port and store) after it was killed.
    pub async fn restart_nats(&mut self, store: tempfile::TempDir, port: u16) {
        self.env.nats = NatsServer::start_on(port, store).await;
        for _ in 0..250 {
            if self.env.bus.is_connected() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the bus did not reconnect");
    }

    pub async fn finish(mut self) {
        self.shutdown.trigger();
        while self.tasks.join_next().await.is_some() {}
        self.env.finish().await;
    }
}

/// Reads every message of `subject` from the LEADS stream.
pub async fn read_all<E: caller::events::Event>(
    bus: &caller::bus::Bus,
    subject: &str,
) -> Vec<Envelope<E>> {
    let stream = bus.jetstream().get_stream("LEADS").await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: subject.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(5),
            ..pull::Config::default()
        })
        .await
        .unwrap();
    let pending = consumer.cached_info().num_pending as usize;
    let mut out = Vec::new();
    if pending == 0 {
        return out;
    }
    let mut messages = consumer
        .fetch()
        .max_messages(pending)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        out.push(Envelope::decode(message.headers.as_ref(), &message.payload).unwrap());
        if out.len() == pending {
            break;
        }
    }
    out
}

/// Onboards the tenant with every webhook secret and a calls:write key.
async fn onboard(env: &TestEnv, sim_base: &str, sim: &SimAccounts) -> (TenantId, String) {
    let zoho_tokens = json!({
        "access_token": "1000.expired-access-token",
        "refresh_token": sim.zoho_refresh_token,
        "expires_at": "2026-01-01T00:00:00Z",
        "api_domain": "https://www.zohoapis.com"
    })
    .to_string();
    let request = json!({
        "slug": "acme-dental",
        "name": "Acme Dental",
        "timezone": "America/New_York",
        "configuration": {
            "crm": "gohighlevel", "telephony": "twilio", "voice": "elevenlabs", "calendar": "crm",
            "caller_numbers": ["+14155550100"],
            "providers": {
                "gohighlevel": {"location_id": LOCATION},
                "zoho": {"org_id": "60012345678", "channel_id": "1000000068001", "api_domain": sim_base},
                "custom": {"field_mapping": field_mapping()}
            }
        },
        "credentials": {
            "gohighlevel.webhook_secret": {"value": GHL_SECRET},
            "gohighlevel.webhook_secret_previous": {"value": GHL_SECRET_PREVIOUS},
            "zoho.webhook_secret": {"value": ZOHO_SECRET},
            "zoho.channel_token": {"value": ZOHO_TOKEN},
            "zoho.oauth": {"value": zoho_tokens},
            "custom.webhook_secret": {"value": CUSTOM_SECRET},
            "custom.webhook_secret_previous": {"value": CUSTOM_SECRET_PREVIOUS}
        }
    });
    let keyring = Keyring::from_parts("k1", [("k1", [42u8; 32])]).unwrap();
    let mut tx = env.db.store.begin_platform().await.unwrap();
    let request = serde_json::from_value(request).unwrap();
    let client = service::onboard(&mut tx, &Actor::operator("test"), &keyring, request)
        .await
        .unwrap();
    let key = service::issue_key(
        &mut tx,
        &Actor::operator("test"),
        Some(client.id),
        &KeyRequest {
            name: "crm".into(),
            scopes: vec![
                Scope::CallsWrite.as_str().to_owned(),
                Scope::ClientsRead.as_str().to_owned(),
                Scope::ClientsAdmin.as_str().to_owned(),
                Scope::CredentialsWrite.as_str().to_owned(),
            ],
            rate_limit_per_minute: Some(100_000),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (client.id, key.text.expose().clone())
}

/// The tenant's custom webhook field mapping: where `schemas/webhooks/custom/lead.json` keeps
/// each field.
pub fn field_mapping() -> Value {
    json!({
        "phone": "/data/contact/phone", "name": "/data/contact/name",
        "first_name": "/data/contact/first", "last_name": "/data/contact/last",
        "email": "/data/contact/email", "timezone": "/data/tz",
        "external_id": "/data/lead_id", "event_id": "/event/id",
        "tags": "/data/labels", "campaign_id": "/data/campaign",
        "occurred_at": "/event/created_at",
        "custom_fields": {"service": "/data/answers/service", "budget": "/data/answers/budget"}
    })
}

/// Returns `path` under the repository's `schemas/webhooks/`.
pub fn sample(path: &str) -> String {
    std::fs::read_to_string(project_root().join("schemas/webhooks").join(path)).unwrap()
}
