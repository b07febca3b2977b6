//! Builds the process from settings and runs the selected roles until shutdown.
//!
//! Start-up order: load `nats/` and compile `pipelines/` (refusing an inconsistent graph
//! before touching anything) → connect NATS (fail fast, one line naming what and where) →
//! migrate as the schema owner → connect PostgreSQL as the application role → provision
//! `nats/` → serve HTTP and run stages → on SIGTERM/SIGINT stop pulling, drain in-flight work,
//! exit 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinSet;

use crate::bus::Bus;
use crate::bus::provision::{self, Change, Definitions};
use crate::bus::runner::{Runtime, StageSettings};
use crate::http::{self, HttpState};
use crate::ingress::Ingress;
use crate::metrics::Metrics;
use crate::pipeline::{self, Topology};
use crate::providers::zoho::ZohoRecords;
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::stages;
use crate::store::Store;
use crate::tenancy::directory::Directory;

/// Which parts of the platform this process runs.
#[derive(Clone, Debug)]
pub enum Role {
    /// Ingress and every stage.
    All,
    /// Ingress only.
    Ingress,
    /// One stage, optionally overriding its concurrency.
    Stage {
        /// Stage name.
        name: String,
        /// Handlers in flight, instead of the pipeline's value.
        concurrency: Option<usize>,
    },
}

/// Connects to NATS, failing fast with a one-line error.
pub async fn connect_bus(settings: &Settings) -> anyhow::Result<Bus> {
    Bus::connect(
        &settings.nats.url,
        Duration::from_millis(settings.nats.connect_timeout_ms),
    )
    .await
}

/// Loads `nats/` and `pipelines/` and compiles them; all problems in one error.
pub fn load_topology(settings: &Settings) -> anyhow::Result<(Definitions, Topology)> {
    let definitions = Definitions::load(&settings.paths.nats)?;
    let pipelines = pipeline::load(&settings.paths.pipelines)?;
    let topology = pipeline::compile(pipelines, &definitions).map_err(|problems| {
        anyhow::anyhow!("inconsistent pipeline graph:\n  {}", problems.join("\n  "))
    })?;
    Ok((definitions, topology))
}

/// Creates or verifies every stream and consumer; logs what changed.
pub async fn provision(
    bus: &Bus,
    definitions: &Definitions,
) -> anyhow::Result<Vec<(String, Change)>> {
    let report = provision::provision(bus, definitions).await?;
    for (what, change) in &report {
        match change {
            Change::Unchanged => tracing::debug!(what, "provision: unchanged"),
            Change::Created => tracing::info!(what, "provision: created"),
            Change::Updated(keys) => tracing::info!(what, ?keys, "provision: updated"),
        }
    }
    Ok(report.into_iter().collect())
}

/// Applies migrations as the schema owner (`database.owner_url`, else `database.url`).
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let owner_settings = crate::settings::DatabaseSettings {
        url: settings
            .database
            .owner_url
            .clone()
            .unwrap_or_else(|| settings.database.url.clone()),
        owner_url: None,
        max_connections: 1,
        acquire_timeout_ms: settings.database.acquire_timeout_ms,
    };
    let owner = Store::connect(&owner_settings).await?;
    let result = owner.migrate().await;
    owner.pool().close().await;
    result
}

/// Runs `role` until SIGTERM/SIGINT.
pub async fn run(settings: Settings, role: Role) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals()?;
    run_until(settings, role, shutdown).await
}

/// Runs `role` until `shutdown` is triggered (`caller demo` runs the pipeline beside itself).
pub async fn run_until(settings: Settings, role: Role, shutdown: Shutdown) -> anyhow::Result<()> {
    let (definitions, topology) = load_topology(&settings)?;
    // The management API needs the master keys: refuse to start without them, before
    // touching anything.
    let keyring = match role {
        Role::All | Role::Ingress => Some(settings.crypto.keyring()?),
        // A stage needs master keys only to read clients' CRM records (resolve_tenant, for
        // Zoho notifications); it runs without them, and says so in its dead letters.
        Role::Stage { .. } if settings.crypto.active_key.is_empty() => None,
        Role::Stage { .. } => Some(settings.crypto.keyring()?),
    };
    let bus = connect_bus(&settings).await?;
    migrate(&settings).await?;
    let store = Store::connect(&settings.database).await?;
    provision(&bus, &definitions).await?;

    let selected: Vec<_> = match &role {
        Role::All => topology.stages.clone(),
        Role::Ingress => Vec::new(),
        Role::Stage { name, concurrency } => {
            let mut spec = topology.stage(name).cloned().with_context(|| {
                format!(
                    "stage `{name}` is in no pipeline under `{}`",
                    settings.paths.pipelines.display()
                )
            })?;
            if let Some(concurrency) = concurrency {
                spec.concurrency = (*concurrency).max(1);
            }
            vec![spec]
        }
    };

    let metrics = Metrics::default();
    for spec in &selected {
        metrics.stage(&spec.name);
    }
    let keyring = keyring.map(Arc::new);
    let directory = Directory::new(
        store.clone(),
        keyring.clone(),
        Duration::from_secs(settings.tenancy.cache_ttl_secs),
    );
    let integrations = crate::integrations::build(&settings, &store, &directory, keyring.as_ref());
    let runtime = Runtime {
        bus: bus.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        settings: settings.runner.clone(),
        stages: StageSettings {
            dedupe: settings.dedupe.clone(),
            admission: settings.admission.clone(),
            telephony: settings.telephony.clone(),
            converse: settings.converse.clone(),
            crm_sync: settings.crm_sync.clone(),
            scheduler: settings.scheduler.clone(),
        },
        clock: crate::clock::Clock::system(),
        calendars: integrations.calendars,
        crms: integrations.crms,
        directory: directory.clone(),
        zoho: keyring.clone().map(|keyring| {
            Arc::new(ZohoRecords::new(
                store.clone(),
                keyring,
                settings.zoho.clone(),
            ))
        }),
    };

    let listener = tokio::net::TcpListener::bind(settings.http.listen)
        .await
        .with_context(|| format!("bind http listener on {}", settings.http.listen))?;
    tracing::info!(listen = %listener.local_addr()?, ?role, "serving");
    let state = HttpState {
        bus: bus.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        stages: Arc::new(selected.clone()),
    };
    let mut router = http::router(state);
    if let (Some(keyring), Role::All | Role::Ingress) = (keyring, &role) {
        let ingress = Arc::new(
            Ingress::new(bus.clone(), directory.clone(), settings.ingress.clone())?
                .with_public_base_url(&settings.telephony.public_base_url),
        );
        let api_state = crate::api::AppState::from_parts(store.clone(), keyring, &settings.api)
            .with_ingress(ingress.clone());
        let gateway = Arc::new(crate::media::gateway::MediaGateway::new(
            bus.clone(),
            store.clone(),
            directory.clone(),
            settings.media.clone(),
        )?);
        router = router
            .merge(crate::api::router(api_state, &settings.api))
            .merge(crate::ingress::router(ingress))
            .merge(crate::media::gateway::router(gateway));
    }

    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    tasks.spawn(directory.follow_changes(bus, shutdown.clone()));
    tasks.spawn(http::serve(
        listener,
        http::with_fallback(http::with_request_counts(router, metrics)),
        shutdown.clone(),
    ));
    // Claims belong to stages; dedupe records and idempotency keys to the lead path.
    let mut swept = Vec::new();
    if !selected.is_empty() {
        let hours = i64::try_from(settings.runner.claim_retention_hours).unwrap_or(14 * 24);
        swept.push((Swept::Claims, chrono::Duration::hours(hours)));
    }
    if !selected.is_empty() || matches!(role, Role::All | Role::Ingress) {
        let hours = i64::try_from(settings.ingress.idempotency_retention_hours).unwrap_or(48);
        swept.push((Swept::LeadDedupe, settings.dedupe.horizon()));
        swept.push((Swept::IdempotencyKeys, chrono::Duration::hours(hours)));
    }
    if !swept.is_empty() {
        tasks.spawn(sweep_hourly(runtime.store.clone(), swept, shutdown.clone()));
    }
    for spec in selected {
        let descriptor = stages::find(&spec.name)
            .with_context(|| format!("stage `{}` is not in this build", spec.name))?;
        tasks.spawn((descriptor.run)(spec, runtime.clone(), shutdown.clone()));
    }

    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.map_err(anyhow::Error::from).and_then(|inner| inner);
        if let Err(error) = result {
            tracing::error!(error = format!("{error:#}"), "role failed; shutting down");
            failure.get_or_insert(error);
            shutdown.trigger();
        } else if !shutdown.is_triggered() {
            tracing::error!("a role stopped on its own; shutting down");
            shutdown.trigger();
        }
    }
    tracing::info!("stopped");
    failure.map_or(Ok(()), Err)
}

/// Rows deleted per statement, so a sweep never holds long locks.
const SWEEP_BATCH: i64 = 10_000;

/// A table whose rows older than a retention are deleted hourly.
#[derive(Clone, Copy, Debug)]
enum Swept {
    /// `processed_events`: the runner's idempotency claims.
    Claims,
    /// `lead_dedupe`: the dedupe stage's record, kept for the dedupe horizon.
    LeadDedupe,
    /// `idempotency_keys`: `Idempotency-Key`s of `POST /v1/calls`.
    IdempotencyKeys,
}

impl Swept {
    /// Deletes up to [`SWEEP_BATCH`] rows older than `cutoff`; returns how many.
    async fn delete_batch(
        self,
        conn: &mut sqlx::PgConnection,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, sqlx::Error> {
        match self {
            Self::Claims => crate::store::processed_events::sweep(conn, cutoff, SWEEP_BATCH).await,
            Self::LeadDedupe => crate::store::lead_dedupe::sweep(conn, cutoff, SWEEP_BATCH).await,
            Self::IdempotencyKeys => {
                crate::store::idempotency_keys::sweep(conn, cutoff, SWEEP_BATCH).await
            }
        }
    }
}

/// Deletes each table's rows older than its retention, hourly, until shutdown.
///
/// Several processes may sweep at once: rows are taken with `SKIP LOCKED`. Failures are
/// logged and retried next hour; they never stop the process.
async fn sweep_hourly(
    store: Store,
    tables: Vec<(Swept, chrono::Duration)>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    loop {
        for &(table, retention) in &tables {
            let cutoff = chrono::Utc::now() - retention;
            let mut total = 0;
            loop {
                let swept = async {
                    let mut tx = store.begin_platform().await?;
                    let count = table.delete_batch(&mut tx, cutoff).await?;
                    tx.commit().await?;
                    Ok::<u64, sqlx::Error>(count)
                }
                .await;
                match swept {
                    Ok(count) => {
                        total += count;
                        if count < SWEEP_BATCH as u64 || shutdown.is_triggered() {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, ?table, "sweep failed; retrying next hour");
                        break;
                    }
                }
            }
            if total > 0 {
                tracing::info!(deleted = total, ?table, %cutoff, "swept old rows");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(3_600)) => {}
        }
    }
}
