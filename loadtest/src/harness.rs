//! Everything a run stands on, set up by the run itself: a private `nats-server`, a scratch
//! database, the vendor simulators on a loopback port, the scenario's tenants wired to them,
//! and `caller all` (ingress and every stage) running in this process through
//! [`caller::app::run`].

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use caller::crypto::Keyring;
use caller::ids::TenantId;
use caller::ingress::verify::StandardWebhooks;
use caller::providers::sim::{self, SimAccounts};
use caller::providers::sim_elevenlabs::{ElevenLabsSimState, Script};
use caller::providers::sim_gohighlevel::{self, GoHighLevelSimState};
use caller::providers::sim_twilio::{self, SimBehaviour, SimOutcome, TwilioSimState};
use caller::secret::Secret;
use caller::settings::Settings;
use caller::store::Store;
use caller::tenancy::api_keys::Scope;
use caller::tenancy::audit::Actor;
use caller::tenancy::service::{self, KeyRequest};
use rand::Rng as _;
use serde_json::json;
use sqlx::{Connection as _, PgConnection};

use crate::plan::{crm_account_id, ghl_location, tenant_slug};
use crate::scenario::{Kind, Scenario};

/// The agent id every tenant uses (the ElevenLabs simulator's scripted agent).
const AGENT: &str = "agent_loadtest";

/// Where the run's services are and how to reach them.
pub(crate) struct Options {
    /// Admin URL (creates the scratch database; owns the schema).
    pub(crate) admin_database_url: String,
    /// Application-role URL (what `caller all` uses, under row-level security).
    pub(crate) app_database_url: String,
    /// The repository root, for `nats/` and `pipelines/`.
    pub(crate) root: std::path::PathBuf,
    /// `database.max_connections` of `caller all`, when not the default.
    pub(crate) database_connections: Option<u32>,
}

/// One tenant's credentials, held only in memory and never printed.
pub(crate) struct TenantCreds {
    pub(crate) id: TenantId,
    pub(crate) ghl_secret: Secret<String>,
    pub(crate) zoho_secret: Secret<String>,
    /// Signs the tenant's custom webhooks with its Standard Webhooks secret.
    pub(crate) custom_signer: StandardWebhooks,
    pub(crate) api_key: Secret<String>,
}

/// The running environment; [`Env::stop`] takes it down.
pub(crate) struct Env {
    nats: NatsServer,
    pub(crate) nats_url: String,
    pub(crate) base_url: String,
    pub(crate) twilio: TwilioSimState,
    /// The HighLevel simulator, where each planned lead is created before its webhook.
    pub(crate) gohighlevel: GoHighLevelSimState,
    pub(crate) tenants: Vec<TenantCreds>,
    database: String,
    admin_database_url: String,
    app: tokio::task::JoinHandle<anyhow::Result<()>>,
    simulator: tokio::task::JoinHandle<()>,
}

/// A private nats-server, killed (and its store removed) on drop.
struct NatsServer {
    child: Child,
    store: std::path::PathBuf,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // Already dead or already removed is fine: nothing else needs them by then.
        self.child.kill().ok();
        self.child.wait().ok();
        std::fs::remove_dir_all(&self.store).ok();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_nats() -> anyhow::Result<(NatsServer, String)> {
    let store = std::env::temp_dir().join(format!("caller-loadtest-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&store)?;
    let port = free_port()?;
    let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server".into()
        } else {
            "nats-server".into()
        }
    });
    #[allow(clippy::zombie_processes)] // NOTE: waited for in `Drop`.
    let child = Command::new(&bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start `{bin}` (install nats-server or set NATS_SERVER_BIN)"))?;
    let server = NatsServer { child, store };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok((server, format!("nats://127.0.0.1:{port}")));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("nats-server did not listen on port {port}")
}

fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, _) = url
        .rsplit_once('/')
        .with_context(|| "a database url must name a database".to_owned())?;
    Ok(format!("{base}/{name}"))
}

/// Returns the Twilio simulator's behaviour from `vendors.telephony`.
fn call_behaviour(scenario: &Scenario) -> anyhow::Result<SimBehaviour> {
    let Some(telephony) = &scenario.vendors.telephony else {
        // An omitted vendor is instant and error-free: everyone answers and hangs up at once.
        return Ok(SimBehaviour {
            dial: Duration::ZERO,
            ring: Duration::ZERO,
            talk: Duration::ZERO,
            amd_delay: Duration::ZERO,
            seed: scenario.seed,
            ..SimBehaviour::default()
        });
    };
    let timings = telephony.timings()?;
    // Weights in parts per million of the ratios; the rest is no-answer.
    let ppm = |ratio: f64| (ratio * 1_000_000.0).round() as u32;
    let answered = ppm(telephony.answer_ratio);
    let busy = ppm(telephony.busy_ratio);
    let failed = ppm(telephony.failed_ratio);
    let no_answer = 1_000_000u32.saturating_sub(answered + busy + failed);
    Ok(SimBehaviour {
        create_latency: timings.api_latency,
        // The format's ring time runs from creation to the answer: no separate dial phase.
        dial: Duration::ZERO,
        ring: timings.ring,
        talk: timings.talk,
        amd_delay: Duration::ZERO,
        outcomes: vec![
            (SimOutcome::Human, answered),
            (SimOutcome::Busy, busy),
            (SimOutcome::Failed, failed),
            (SimOutcome::NoAnswer, no_answer),
        ],
        seed: scenario.seed,
        ..SimBehaviour::default()
    })
}

fn random_token(prefix: &str) -> String {
    let mut rng = rand::thread_rng();
    let text: String = (0..32)
        .map(|_| char::from(rng.sample(rand::distributions::Alphanumeric)))
        .collect();
    format!("{prefix}{text}")
}

impl Env {
    /// Sets everything up; `listen` is the address ingress binds (port 0: a free port).
    pub(crate) async fn start(
        scenario: &Scenario,
        listen: SocketAddr,
        options: &Options,
    ) -> anyhow::Result<Self> {
        let (nats, nats_url) = start_nats().await?;

        // A scratch database, migrated by its owner before tenants are written.
        let database = format!("caller_loadtest_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&options.admin_database_url)
            .await
            .context("connect to postgres as the admin role (CALLER_TEST_DATABASE_URL)")?;
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .context("create the scratch database")?;
        admin.close().await.ok();
        let owner_url = with_database(&options.admin_database_url, &database)?;
        let app_url = with_database(&options.app_database_url, &database)?;
        let db_settings = |url: &str| caller::settings::DatabaseSettings {
            url: Secret::new(url.to_owned()),
            owner_url: None,
            max_connections: 4,
            acquire_timeout_ms: 10_000,
        };
        let owner = Store::connect(&db_settings(&owner_url)).await?;
        owner
            .migrate()
            .await
            .context("migrate the scratch database")?;

        // The simulators, on one loopback port (their routes do not overlap).
        let accounts = SimAccounts::default();
        let twilio = TwilioSimState::new(&accounts.twilio_account_sid, &accounts.twilio_auth_token)
            .with_behaviour(call_behaviour(scenario)?);
        let elevenlabs =
            ElevenLabsSimState::new(&accounts.elevenlabs_api_key).with_agent(AGENT, Script::demo());
        let gohighlevel = GoHighLevelSimState::demo();
        if let Some(crm) = &scenario.vendors.crm {
            gohighlevel.set_latency(crm.latency()?);
        }
        for tenant in 1..=scenario.tenants.count {
            gohighlevel.add_location(&ghl_location(tenant), chrono_tz::America::Chicago);
            gohighlevel.add_private_token(&ghl_location(tenant), &ghl_token(tenant));
        }
        let router = sim::router_beside_elevenlabs(accounts.clone())
            .merge(sim_twilio::router(twilio.clone()))
            .merge(caller::providers::sim_elevenlabs::router(elevenlabs))
            .merge(sim_gohighlevel::router_beside_health(gohighlevel.clone()));
        let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sim_base = format!("http://{}", sim_listener.local_addr()?);
        let simulator = tokio::spawn(async move {
            if let Err(error) = axum::serve(sim_listener, router).await {
                tracing::error!(%error, "vendor simulator stopped");
            }
        });

        // Master key of this run only: the credentials die with the scratch database.
        let master: [u8; 32] = rand::random();
        let keyring = Keyring::from_parts("lt", [("lt", master)])?;
        let tenants = provision_tenants(scenario, &owner, &keyring, &sim_base).await?;
        owner.pool().close().await;

        let port = if listen.port() == 0 {
            free_port()?
        } else {
            listen.port()
        };
        let listen = SocketAddr::new(listen.ip(), port);
        let base_url = format!("http://{listen}");
        let mut settings = Settings::default();
        settings.nats.url = nats_url.clone();
        settings.database.url = Secret::new(app_url);
        settings.database.owner_url = Some(Secret::new(owner_url));
        settings.http.listen = listen;
        settings.paths.nats = options.root.join("nats");
        settings.paths.pipelines = options.root.join("pipelines");
        settings.crypto.active_key = "lt".to_owned();
        settings.crypto.keys.insert(
            "lt".to_owned(),
            Secret::new(base64::engine::general_purpose::STANDARD.encode(master)),
        );
        settings.telephony.public_base_url = base_url.clone();
        settings.telephony.media_stream_url = format!("ws://{listen}/media/twilio");
        settings.crm_sync.app_base_url = base_url.clone();
        settings.zoho.accounts_url = sim_base.clone();
        settings.zoho.client_id = Some(accounts.zoho_client_id.clone());
        settings.zoho.client_secret = Some(Secret::new(accounts.zoho_client_secret.clone()));
        // NOTE: a platform limit, not a tenant's: the default (1 call/s per caller number)
        // would pace every tenant's single number far below the scenario's rate.
        settings.admission.caller_number_calls_per_second = 1_000.0;
        if let Some(connections) = options.database_connections {
            settings.database.max_connections = connections;
        }
        let app = tokio::spawn(caller::app::run(settings, caller::app::Role::All));

        let env = Self {
            nats,
            nats_url,
            base_url,
            twilio,
            gohighlevel,
            tenants,
            database,
            admin_database_url: options.admin_database_url.clone(),
            app,
            simulator,
        };
        env.wait_ready().await?;
        Ok(env)
    }

    /// Waits until `caller all` answers `/readyz`.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = caller::providers::http::client();
        for _ in 0..600 {
            if self.app.is_finished() {
                bail!("`caller all` stopped during start-up (see its log above)");
            }
            let ready = client
                .get(format!("{}/readyz", self.base_url))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("`caller all` was not ready after 60 s")
    }

    /// True while `caller all` still runs.
    pub(crate) fn app_running(&self) -> bool {
        !self.app.is_finished()
    }

    /// Stops `caller all` and the simulators, drops the database, kills NATS.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        // Aborting the task drops `app::run`'s future and with it its JoinSet, which aborts
        // every role it spawned.
        self.app.abort();
        self.app.await.ok();
        self.simulator.abort();
        let mut admin = PgConnection::connect(&self.admin_database_url).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.database
        ))
        .execute(&mut admin)
        .await
        .context("drop the scratch database")?;
        drop(self.nats);
        Ok(())
    }
}

fn ghl_token(tenant: usize) -> String {
    format!("pit-loadtest-{tenant}")
}

/// Onboards every tenant wired to the simulators, with fresh secrets and a `calls:write` key.
async fn provision_tenants(
    scenario: &Scenario,
    store: &Store,
    keyring: &Keyring,
    sim_base: &str,
) -> anyhow::Result<Vec<TenantCreds>> {
    let accounts = SimAccounts::default();
    let mut out = Vec::with_capacity(scenario.tenants.count);
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    // The widest window the law allows, every day: leads' zones are picked inside it.
    let windows: Vec<_> = days
        .iter()
        .map(|day| json!({"day": day, "open": "08:00", "close": "21:00"}))
        .collect();
    let mut tx = store.begin_platform().await?;
    for tenant in 1..=scenario.tenants.count {
        let ghl_secret = random_token("wk_");
        let zoho_secret = random_token("wk_");
        let custom_key: [u8; 32] = rand::random();
        let custom_secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(custom_key)
        );
        let custom_signer = StandardWebhooks::new(&[Secret::new(custom_secret.clone())])?;
        let request = json!({
            "slug": tenant_slug(scenario, tenant),
            "name": format!("Load test {tenant}"),
            "timezone": "America/New_York",
            "configuration": {
                "crm": "gohighlevel", "telephony": "twilio", "voice": "elevenlabs",
                "calendar": "static",
                "agent": {"agent_id": AGENT, "first_message": "Hi, this is a load test."},
                "caller_numbers": ["+14155550100"],
                "calling_windows": windows,
                // High enough that admission never holds the baseline back; the report
                // says so when it does anyway (pending leads).
                "concurrency_cap": 10_000,
                "calls_per_second": 1_000.0,
                "ingress_requests_per_minute": 1_000_000,
                "providers": {
                    "twilio": {"account_sid": accounts.twilio_account_sid, "base_url": sim_base},
                    "elevenlabs": {"base_url": sim_base},
                    "gohighlevel": {"location_id": ghl_location(tenant), "base_url": sim_base},
                    "zoho": {"org_id": crm_account_id(Kind::ZohoWorkflowWebhook, tenant),
                             "channel_id": format!("10000000{tenant:05}"), "api_domain": sim_base},
                    "custom": {"field_mapping": {
                        "phone": "/data/phone", "name": "/data/name", "email": "/data/email",
                        "timezone": "/data/timezone", "external_id": "/data/external_id",
                        "event_id": "/id"
                    }}
                }
            },
            "credentials": {
                "twilio.auth_token": {"value": accounts.twilio_auth_token},
                "elevenlabs.api_key": {"value": accounts.elevenlabs_api_key},
                "gohighlevel.private_token": {"value": ghl_token(tenant)},
                "gohighlevel.webhook_secret": {"value": ghl_secret},
                "zoho.webhook_secret": {"value": zoho_secret},
                "custom.webhook_secret": {"value": custom_secret},
            }
        });
        let request = serde_json::from_value(request).context("onboarding request")?;
        let client = service::onboard(&mut tx, &Actor::operator("loadtest"), keyring, request)
            .await
            .map_err(|error| anyhow::anyhow!("onboard tenant {tenant}: {error}"))?;
        let key = service::issue_key(
            &mut tx,
            &Actor::operator("loadtest"),
            Some(client.id),
            &KeyRequest {
                name: "loadtest".to_owned(),
                scopes: vec![Scope::CallsWrite.as_str().to_owned()],
                rate_limit_per_minute: Some(100_000),
            },
        )
        .await
        .map_err(|error| anyhow::anyhow!("issue tenant {tenant}'s api key: {error}"))?;
        out.push(TenantCreds {
            id: client.id,
            ghl_secret: Secret::new(ghl_secret),
            zoho_secret: Secret::new(zoho_secret),
            custom_signer,
            api_key: Secret::new(key.text.expose().clone()),
        });
    }
    tx.commit().await?;
    Ok(out)
}
