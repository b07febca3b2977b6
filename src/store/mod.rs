//! The PostgreSQL store: the pool, migrations, and one file of queries per table.
//!
//! Query functions take an executor (`&mut PgConnection`, which a transaction derefs to) so a
//! stage composes several of them in the one transaction that also holds its idempotency
//! claim. Queries are compile-time checked (`sqlx::query!`) against `.sqlx/` offline data.

pub mod admission;
pub mod alerts;
pub mod analytics;
pub mod api_keys;
pub mod audit;
pub mod call_blocklist;
pub mod call_views;
pub mod calls;
pub mod conversation_views;
pub mod conversations;
pub mod credentials;
pub mod crm_writes;
pub mod follow_up_campaigns;
pub mod idempotency_keys;
pub mod lead_dedupe;
pub mod processed_events;
pub mod scheduled_jobs;
pub mod summaries;
pub mod tenants;

use sqlx::{Postgres, Transaction};

use crate::ids::TenantId;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::secret::redact_url;
use crate::settings::DatabaseSettings;

/// The embedded migrations of `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A pool of connections to the operational database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects, failing with a one-line error naming the (redacted) server when unreachable.
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let url = settings.url.expose();
        let shown = redact_url(url);
        let options = PgConnectOptions::from_str(url)
            .with_context(|| format!("invalid database url `{shown}`"))?
            .application_name("caller")
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        let timeout = Duration::from_millis(settings.acquire_timeout_ms);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(timeout)
            .connect_with(options)
            .await
            .map_err(|error| anyhow::anyhow!("postgres unreachable at `{shown}`: {error}"))?;
        Ok(Self { pool })
    }

    /// Wraps an existing pool (tests).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Returns a separate pool of at most `max_connections` to the same database, connecting
    /// lazily, for transactions a stage handler opens *while it holds* a connection of this
    /// pool (its claim transaction), such as the dial stage's intent.
    ///
    /// Taking that second connection from the same pool can deadlock: when every connection
    /// is held by a handler waiting for its second one, none is ever returned. Connections of
    /// the separate pool are never held while waiting for this one, so both always drain.
    #[must_use]
    pub fn detached(&self, max_connections: u32) -> Self {
        let options = self.pool.connect_options().as_ref().clone();
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(self.pool.options().get_acquire_timeout())
            .connect_lazy_with(options);
        Self { pool }
    }

    /// Returns the pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Begins a transaction that sees and writes only `tenant`'s rows (row-level security).
    ///
    /// One round trip: `BEGIN` and the tenant setting travel as one simple query. The uuid is
    /// formatted by its type (hex and hyphens only), so it cannot inject SQL.
    pub async fn begin_tenant(
        &self,
        tenant: TenantId,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool
            .begin_with(format!(
                "BEGIN; SELECT set_config('app.tenant_id', '{tenant}', true), set_config('app.platform', 'off', true)"
            ))
            .await
    }

    /// Begins a transaction in platform mode: operator work that spans tenants (listing
    /// clients, resolving an API key before its tenant is known, sweeps).
    pub async fn begin_platform(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool
            .begin_with("BEGIN; SELECT set_config('app.platform', 'on', true), set_config('app.tenant_id', '', true)")
            .await
    }

    /// Applies pending migrations (serialized across processes by an advisory lock).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR.run(&self.pool).await.context("apply migrations")
    }

    /// Returns true when PostgreSQL answers and every embedded migration is applied.
    pub async fn is_ready(&self) -> Result<(), String> {
        let applied = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM _sqlx_migrations WHERE success"#
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|error| format!("postgres: {error}"))?;
        let expected = MIGRATOR.iter().count();
        if usize::try_from(applied).unwrap_or(0) < expected {
            return Err(format!(
                "postgres: {applied} of {expected} migrations applied"
            ));
        }
        Ok(())
    }
}
