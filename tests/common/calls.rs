//! Calls under test: a private NATS server and database, the Twilio simulator, the telephony
//! callback routes on a loopback port, a tenant whose Twilio account is the simulator, and
//! whichever of the rate_limit, dial and call_status stages the test runs in-process (the
//! others run as `caller` processes the test starts).

#![allow(unreachable_pub)] // shared by test files through `#[path]`
#![allow(dead_code)] // each test file uses a part

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use caller::bus::envelope::Envelope;
use caller::bus::runner::Runtime;
use caller::crypto::Keyring;
use caller::events::lead::LeadSource;
use caller::events::lead_flow::{LeadResolved, TimezoneSource};
use caller::ids::{EventId, PhoneNumber, TenantId};
use caller::ingress::Ingress;
use caller::media::gateway::MediaGateway;
use caller::metrics::Metrics;
use caller::providers::sim_twilio::{self, SimBehaviour, TwilioSimState};
use caller::settings::{
    AdmissionSettings, ConverseSettings, IngressSettings, MediaSettings, RunnerSettings,
    TelephonySettings,
};
use caller::shutdown::Shutdown;
use caller::tenancy::audit::Actor;
use caller::tenancy::directory::Directory;
use caller::tenancy::service;
use chrono::{Timelike as _, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::common::{TestEnv, nats_definitions_copy, project_root, spawn_stages};

/// The master key sealing the tenant's credentials (also given to `caller` processes).
pub const MASTER_KEY: [u8; 32] = [42u8; 32];
/// The tenant's Twilio auth token (the simulator's default account).
pub const AUTH_TOKEN: &str = "sim-twilio-auth-token";
/// The tenant's caller number.
pub const CALLER_NUMBER: &str = "+15125550100";

/// How a harness is set up.
pub struct Options {
    /// The tenant's concurrency cap.
    pub concurrency_cap: u32,
    /// The tenant's calls per second.
    pub calls_per_second: f64,
    /// The tenant's caller numbers.
    pub caller_numbers: Vec<&'static str>,
    /// Asynchronous answering machine detection.
    pub amd: bool,
    /// The simulator's behaviour.
    pub behaviour: SimBehaviour,
    /// Stages run in this process.
    pub stages: Vec<&'static str>,
    /// The dial consumer's `ack_wait`, when shortened (nanoseconds).
    pub dial_ack_wait_ns: Option<u64>,
    /// Admission settings of in-process stages.
    pub admission: AdmissionSettings,
    /// Serve the real media gateway (else a stand-in that only keeps streams open).
    pub gateway: bool,
    /// Converse settings of in-process stages.
    pub converse: ConverseSettings,
    /// Merged into the tenant's configuration.
    pub configuration: Value,
    /// Merged into the tenant's credentials.
    pub credentials: Value,
    /// The listener of the callback routes, when the test needs their address beforehand.
    pub listener: Option<tokio::net::TcpListener>,
    /// The clock scheduling decisions are made in (in-process stages).
    pub clock: caller::clock::Clock,
    /// Scheduler settings of in-process stages.
    pub scheduler: caller::settings::SchedulerSettings,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            concurrency_cap: 5,
            calls_per_second: 10.0,
            caller_numbers: vec![CALLER_NUMBER],
            amd: false,
            behaviour: quick_calls(),
            stages: vec!["rate_limit", "dial", "call_status"],
            dial_ack_wait_ns: None,
            admission: AdmissionSettings {
                cycle_ms: 20,
                caller_number_calls_per_second: 100.0,
                ..AdmissionSettings::default()
            },
            gateway: false,
            converse: ConverseSettings::default(),
            configuration: json!({}),
            credentials: json!({}),
            listener: None,
            clock: caller::clock::Clock::system(),
            scheduler: caller::settings::SchedulerSettings {
                poll_ms: 20,
                ..caller::settings::SchedulerSettings::default()
            },
        }
    }
}

/// Calls that ring briefly and are answered by a person who talks a little.
pub fn quick_calls() -> SimBehaviour {
    SimBehaviour {
        dial: Duration::from_millis(20),
        ring: Duration::from_millis(40),
        talk: Duration::from_millis(150),
        amd_delay: Duration::from_millis(30),
        ..SimBehaviour::default()
    }
}

pub struct Harness {
    pub env: TestEnv,
    pub sim: TwilioSimState,
    pub sim_base: String,
    /// The callback routes' and the management API's base URL (`telephony.public_base_url`).
    pub base: String,
    /// A `clients:read` key of the tenant.
    pub api_key: String,
    pub tenant: TenantId,
    pub runtime: Runtime,
    pub shutdown: Shutdown,
    pub nats_dir: tempfile::TempDir,
    /// The media endpoint answered calls stream to (`telephony.media_stream_url`).
    pub media: String,
    /// Where the gateway writes recordings (with `Options::gateway`).
    pub recordings: tempfile::TempDir,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
}

impl Harness {
    pub async fn start(mut options: Options) -> Self {
        let nats_dir = nats_definitions_copy();
        if let Some(ack_wait) = options.dial_ack_wait_ns {
            let path = nats_dir.path().join("consumers/CALLS/dial.json");
            let mut consumer: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            consumer["ack_wait"] = json!(ack_wait);
            std::fs::write(&path, consumer.to_string()).unwrap();
        }
        let env = TestEnv::start(Some(nats_dir.path())).await;
        let keyring = Arc::new(Keyring::from_parts("k1", [("k1", MASTER_KEY)]).unwrap());
        let directory = Directory::new(
            env.db.store.clone(),
            Some(keyring.clone()),
            Duration::from_secs(60),
        );
        let sim = TwilioSimState::default().with_behaviour(options.behaviour.clone());
        let (sim_addr, _) = sim_twilio::spawn(sim.clone()).await;
        let sim_base = format!("http://{sim_addr}");

        let listener = match options.listener.take() {
            Some(listener) => listener,
            None => tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let base = format!("http://{}", listener.local_addr().unwrap());
        let recordings = tempfile::tempdir().unwrap();
        let ingress = Ingress::new(
            env.bus.clone(),
            directory.clone(),
            IngressSettings::default(),
        )
        .unwrap()
        .with_public_base_url(&base);
        let api_settings = caller::settings::ApiSettings::default();
        let api =
            caller::api::AppState::from_parts(env.db.store.clone(), keyring.clone(), &api_settings);
        let mut router = caller::ingress::router(Arc::new(ingress))
            .merge(caller::api::router(api, &api_settings));
        if options.gateway {
            let settings = MediaSettings {
                recordings_dir: recordings.path().to_owned(),
                ..MediaSettings::default()
            };
            let gateway = MediaGateway::new(
                env.bus.clone(),
                env.db.store.clone(),
                directory.clone(),
                settings,
            )
            .unwrap();
            router = router.merge(caller::media::gateway::router(Arc::new(gateway)));
        }
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
                retry_base_ms: 50,
                retry_max_ms: 500,
                pull_expires_ms: 300,
                ..RunnerSettings::default()
            },
        );
        runtime.directory = directory;
        runtime.stages.admission = options.admission.clone();
        let media = if options.gateway {
            format!("{}/media/twilio", base.replacen("http", "ws", 1))
        } else {
            media_endpoint().await
        };
        runtime.stages.telephony = telephony_settings(&base, &media);
        runtime.stages.converse = options.converse.clone();
        runtime.stages.scheduler = options.scheduler.clone();
        runtime.clock = options.clock.clone();
        spawn_stages(
            nats_dir.path(),
            &options.stages,
            &runtime,
            &shutdown,
            &mut tasks,
        );
        let tenant = onboard(&env, "acme-dental", &sim_base, &options).await;
        let api_key = read_key(&env, tenant).await;
        Self {
            api_key,
            env,
            sim,
            sim_base,
            base,
            tenant,
            runtime,
            shutdown,
            nats_dir,
            media,
            recordings,
            tasks,
        }
    }

    /// Publishes a resolved lead for `phone` in `timezone`; returns its event id.
    pub async fn lead(&self, tenant: TenantId, phone: &str, timezone: Tz) -> EventId {
        let envelope = Envelope::new(tenant, "test", resolved(phone, timezone));
        let id = envelope.meta.event_id;
        self.env
            .bus
            .publish_all(&[envelope.to_message().unwrap()])
            .await
            .unwrap();
        id
    }

    /// Returns the call's state and outcome by the callee.
    pub async fn call_of(&self, phone: &str) -> Option<(String, Option<String>)> {
        sqlx::query_as("SELECT state, outcome FROM calls WHERE to_number = $1")
            .bind(phone)
            .fetch_optional(&self.env.db.observer)
            .await
            .unwrap()
    }

    /// Returns the logged transitions of one machine of the call to `phone`, in order.
    pub async fn transitions(&self, phone: &str, machine: &str) -> Vec<(String, String)> {
        sqlx::query_as(
            "SELECT t.from_state, t.to_state FROM call_state_transitions t
               JOIN calls c ON c.id = t.call_id
              WHERE c.to_number = $1 AND t.machine = $2 ORDER BY t.id",
        )
        .bind(phone)
        .bind(machine)
        .fetch_all(&self.env.db.observer)
        .await
        .unwrap()
    }

    /// Stops the in-process stages and drops the database.
    pub async fn finish(mut self) {
        self.shutdown.trigger();
        while self.tasks.join_next().await.is_some() {}
        self.env.finish().await;
    }
}

/// Issues a `clients:read` API key of `tenant`.
async fn read_key(env: &TestEnv, tenant: TenantId) -> String {
    let mut tx = env.db.store.begin_platform().await.unwrap();
    let key = service::issue_key(
        &mut tx,
        &Actor::operator("test"),
        Some(tenant),
        &service::KeyRequest {
            name: "support".into(),
            scopes: vec![
                caller::tenancy::api_keys::Scope::ClientsRead
                    .as_str()
                    .to_owned(),
            ],
            rate_limit_per_minute: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    key.text.expose().clone()
}

/// Telephony settings pointing callbacks at `base` and streams at `media`, with a short
/// reconciliation grace.
pub fn telephony_settings(base: &str, media: &str) -> TelephonySettings {
    TelephonySettings {
        public_base_url: base.to_owned(),
        media_stream_url: media.to_owned(),
        reconcile_grace_secs: 1,
        ..TelephonySettings::default()
    }
}

/// A stand-in for the media gateway (the converse issue's): accepts Media Streams and keeps
/// each open until the caller's side stops it, so answered calls last their talk time.
pub async fn media_endpoint() -> String {
    use futures::StreamExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/media/twilio", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut stream) = tokio_tungstenite::accept_async(socket).await else {
                    return;
                };
                while let Some(Ok(message)) = stream.next().await {
                    if message.is_close() {
                        break;
                    }
                }
            });
        }
    });
    url
}

/// Onboards a tenant whose Twilio account is the simulator.
pub async fn onboard(env: &TestEnv, slug: &str, sim_base: &str, options: &Options) -> TenantId {
    onboard_with_token(env, slug, sim_base, options, AUTH_TOKEN).await
}

/// Onboards a tenant whose Twilio account is the simulator, with `token` as its auth token.
pub async fn onboard_with_token(
    env: &TestEnv,
    slug: &str,
    sim_base: &str,
    options: &Options,
    token: &str,
) -> TenantId {
    let mut request = json!({
        "slug": slug,
        "name": slug,
        "timezone": "UTC",
        "configuration": {
            "telephony": "twilio",
            "caller_numbers": options.caller_numbers,
            "concurrency_cap": options.concurrency_cap,
            "calls_per_second": options.calls_per_second,
            "answering_machine_detection": options.amd,
            "providers": {
                "twilio": {"account_sid": TwilioSimState::default().account_sid(), "base_url": sim_base}
            }
        },
        "credentials": {"twilio.auth_token": {"value": token}}
    });
    merge(&mut request["configuration"], &options.configuration);
    merge(&mut request["credentials"], &options.credentials);
    let keyring = Keyring::from_parts("k1", [("k1", MASTER_KEY)]).unwrap();
    let mut tx = env.db.store.begin_platform().await.unwrap();
    let request = serde_json::from_value(request).unwrap();
    let client = service::onboard(&mut tx, &Actor::operator("test"), &keyring, request)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    client.id
}

/// Merges `extra` into `target`, object by object.
fn merge(target: &mut Value, extra: &Value) {
    match (target, extra) {
        (Value::Object(target), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (target, extra) => *target = extra.clone(),
    }
}

/// A resolved lead for `phone` in `timezone`.
pub fn resolved(phone: &str, timezone: Tz) -> LeadResolved {
    LeadResolved {
        source: LeadSource::Api,
        source_event_id: None,
        dedupe_key: format!("api:{phone}"),
        external_id: Some(format!("crm-{phone}")),
        phone: PhoneNumber::parse(phone).unwrap(),
        phone_raw: phone.to_owned(),
        phone_region: Some("US".to_owned()),
        first_name: Some("Jane".to_owned()),
        last_name: Some("Doe".to_owned()),
        full_name: None,
        email: None,
        timezone: timezone.name().to_owned(),
        timezone_source: TimezoneSource::Lead,
        tags: Vec::new(),
        custom_fields: std::collections::BTreeMap::new(),
        campaign_id: None,
        received_at: Utc::now(),
        occurred_at: None,
        trigger: None,
        schedule: None,
    }
}

/// Zones spread around the clock, so one is always in daytime.
const ZONES: [Tz; 9] = [
    chrono_tz::Pacific::Kiritimati,
    chrono_tz::Pacific::Auckland,
    chrono_tz::Asia::Tokyo,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Europe::Berlin,
    chrono_tz::America::Sao_Paulo,
    chrono_tz::America::New_York,
    chrono_tz::America::Los_Angeles,
    chrono_tz::Pacific::Honolulu,
];

/// Returns a zone where it is now between 10:00 and 18:59 (well inside 08:00-21:00).
pub fn daytime_zone() -> Tz {
    let now = Utc::now();
    ZONES
        .into_iter()
        .find(|zone| (10..19).contains(&now.with_timezone(zone).hour()))
        .expect("some zone is in daytime")
}

/// Returns a zone where it is now between 22:00 and 06:59 (outside the legal hours).
pub fn night_zone() -> Tz {
    let now = Utc::now();
    ZONES
        .into_iter()
        .find(|zone| {
            let hour = now.with_timezone(zone).hour();
            !(7..22).contains(&hour)
        })
        .expect("some zone is at night")
}

/// A `caller` process of this harness's NATS server and database.
pub fn caller_command(harness: &Harness, nats_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_caller"));
    let key = base64::engine::general_purpose::STANDARD.encode(MASTER_KEY);
    command
        .args(args)
        .env("CALLER__NATS__URL", &harness.env.nats.url)
        .env("CALLER__DATABASE__URL", &harness.env.db.app_url)
        .env("CALLER__DATABASE__OWNER_URL", &harness.env.db.url)
        .env("CALLER__PATHS__NATS", nats_dir)
        .env("CALLER__PATHS__PIPELINES", project_root().join("pipelines"))
        .env("CALLER__LOG__FILTER", "warn")
        .env(
            "CALLER__HTTP__LISTEN",
            format!("127.0.0.1:{}", crate::common::free_port()),
        )
        .env("CALLER__CRYPTO__ACTIVE_KEY", "k1")
        .env("CALLER__CRYPTO__KEYS__K1", key)
        .env("CALLER__TELEPHONY__PUBLIC_BASE_URL", &harness.base)
        .env("CALLER__TELEPHONY__MEDIA_STREAM_URL", &harness.media)
        // Several processes share one PostgreSQL server with parallel tests.
        .env("CALLER__DATABASE__MAX_CONNECTIONS", "6")
        .env("CALLER__TELEPHONY__RECONCILE_GRACE_SECS", "1")
        .env("CALLER__RUNNER__RETRY_BASE_MS", "50")
        .env("CALLER__RUNNER__RETRY_MAX_MS", "500")
        .env("CALLER__RUNNER__PULL_EXPIRES_MS", "300")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

/// Kills a child process on drop, so a failing test leaves none behind.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}
