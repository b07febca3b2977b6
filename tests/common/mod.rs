//! Test harness: a private `nats-server` and a fresh PostgreSQL database per test.
//!
//! - NATS: a `nats-server` process with JetStream on a free loopback port and a temporary
//!   store (`NATS_SERVER_BIN`, else `nats-server` on PATH, else `/usr/sbin/nats-server`).
//! - PostgreSQL: a database `caller_test_<uuid>` created through `CALLER_TEST_DATABASE_URL`
//!   (default: the `caller` role on 127.0.0.1), migrated, dropped by [`TestEnv::finish`].
//!
//! Logs stay silent unless `TEST_LOG` is set.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part of the harness

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use caller::bus::Bus;
use caller::bus::provision::{self, Definitions};
use caller::store::Store;
use sqlx::{Connection, PgConnection};

/// Default admin URL for creating test databases.
const DEFAULT_DATABASE_URL: &str = "postgres://caller:caller@127.0.0.1:5432/caller";

/// A private NATS server, killed on drop.
pub struct NatsServer {
    child: Child,
    pub port: u16,
    pub url: String,
    _store: tempfile::TempDir,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // Already dead is fine: the test may have killed it on purpose.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Returns a loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nats_server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.exists());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"))
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections.
    pub async fn start() -> Self {
        let store = tempfile::tempdir().unwrap();
        Self::start_on(free_port(), store).await
    }

    /// Starts a server on `port` with the JetStream store in `store`.
    pub async fn start_on(port: u16, store: tempfile::TempDir) -> Self {
        let bin = nats_server_bin();
        #[allow(clippy::zombie_processes)] // NOTE: waited for in `Drop` and `kill`.
        let child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} (install nats-server): {e}", bin.display())
            });
        let url = format!("nats://127.0.0.1:{port}");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self {
                    child,
                    port,
                    url,
                    _store: store,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nats-server did not listen on {port}");
    }

    /// Kills the server at once (SIGKILL), keeping its store for a restart.
    pub fn kill(mut self) -> tempfile::TempDir {
        // Already dead is fine: the test may have killed it on purpose.
        self.child.kill().ok();
        self.child.wait().ok();
        let store = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self._store, store)
    }
}

/// Admin URL from the environment.
pub fn admin_database_url() -> String {
    std::env::var("CALLER_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// Default application-role URL (the database name is replaced per test).
const DEFAULT_APP_DATABASE_URL: &str = "postgres://caller_app:caller_app@127.0.0.1:5432/caller";

fn with_database(url: &str, name: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("database url `{url}` must name a database"),
    }
}

/// A fresh, migrated database.
pub struct TestDatabase {
    pub name: String,
    /// Owner URL (what migrations use).
    pub url: String,
    /// Application-role URL (what the system under test uses).
    pub app_url: String,
    /// The system's store: the application role, subject to row-level security.
    pub store: Store,
    /// An owner connection in platform mode, for test assertions across tenants.
    pub observer: sqlx::PgPool,
}

impl TestDatabase {
    /// Creates and migrates `caller_test_<uuid>`.
    pub async fn create() -> Self {
        let admin_url = admin_database_url();
        let name = format!("caller_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("postgres unreachable for tests ({admin_url}): {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let url = with_database(&admin_url, &name);
        let app_base = std::env::var("CALLER_TEST_APP_DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_APP_DATABASE_URL.to_owned());
        let app_url = with_database(&app_base, &name);
        let settings = |url: &str| caller::settings::DatabaseSettings {
            url: caller::secret::Secret::new(url.to_owned()),
            owner_url: None,
            max_connections: 8,
            acquire_timeout_ms: 3_000,
        };
        Store::connect(&settings(&url))
            .await
            .unwrap()
            .migrate()
            .await
            .unwrap();
        let store = Store::connect(&settings(&app_url)).await.unwrap();
        let observer = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SET app.platform = 'on'")
                        .execute(conn)
                        .await
                        .map(|_| ())
                })
            })
            .connect(&url)
            .await
            .unwrap();
        Self {
            name,
            url,
            app_url,
            store,
            observer,
        }
    }

    /// Closes the pools and drops the database.
    pub async fn drop_database(self) {
        self.store.pool().close().await;
        self.observer.close().await;
        let mut admin = PgConnection::connect(&admin_database_url()).await.unwrap();
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

/// Returns the repository root.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies the repository's `nats/` definitions into a temporary folder, so a test can add
/// its own consumers beside them.
pub fn nats_definitions_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&project_root().join("nats"), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A private NATS server, a fresh database, and the connections to both.
pub struct TestEnv {
    pub nats: NatsServer,
    pub bus: Bus,
    pub db: TestDatabase,
}

impl TestEnv {
    /// Starts NATS, creates the database, provisions `nats_dir` (the repository's by default).
    pub async fn start(nats_dir: Option<&Path>) -> Self {
        caller::telemetry::init_for_tests();
        let nats = NatsServer::start().await;
        let bus = Bus::connect(&nats.url, Duration::from_secs(5))
            .await
            .unwrap();
        let db = TestDatabase::create().await;
        let root = project_root().join("nats");
        let definitions = Definitions::load(nats_dir.unwrap_or(&root)).unwrap();
        provision::provision(&bus, &definitions).await.unwrap();
        Self { nats, bus, db }
    }

    /// Drops the database (the NATS server dies with the value).
    pub async fn finish(self) {
        self.db.drop_database().await;
    }
}

/// Runs `names` stages of the repository's pipelines, with the consumers of `nats_dir`, on
/// `tasks` until `shutdown`.
pub fn spawn_stages(
    nats_dir: &Path,
    names: &[&str],
    runtime: &caller::bus::runner::Runtime,
    shutdown: &caller::shutdown::Shutdown,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) {
    let definitions = Definitions::load(nats_dir).unwrap();
    let pipelines = caller::pipeline::load(&project_root().join("pipelines")).unwrap();
    let topology = caller::pipeline::compile(pipelines, &definitions).unwrap();
    for name in names {
        let spec = topology.stage(name).unwrap().clone();
        let descriptor = caller::stages::find(name).unwrap();
        tasks.spawn((descriptor.run)(spec, runtime.clone(), shutdown.clone()));
    }
}

/// Polls `check` every 20 ms until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback TCP proxy that a test can cut and restore, to take a dependency away mid-run.
pub struct TcpProxy {
    pub port: u16,
    target: std::net::SocketAddr,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl TcpProxy {
    /// Starts forwarding a free loopback port to `target`.
    pub async fn start(target: std::net::SocketAddr) -> Self {
        let proxy = Self {
            port: free_port(),
            target,
            tasks: Default::default(),
        };
        proxy.restore().await;
        proxy
    }

    /// Accepts and forwards connections again (on the same port).
    pub async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let target = self.target;
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let connection = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        // A cut ends the copy with an error; that is the point.
                        tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                            .await
                            .ok();
                    }
                });
                tasks.lock().unwrap().push(connection.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// Closes every connection and stops listening: the dependency is gone.
    pub async fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        // Let the aborted tasks drop their sockets.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Returns the `host:port` of a PostgreSQL URL.
pub fn database_address(url: &str) -> std::net::SocketAddr {
    let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port.parse().unwrap()
}

/// A `caller` process of `env`'s NATS server and database, listening on `listen_port`, with
/// the definitions of `nats_dir` and a fixed test master key.
pub fn caller_command(env: &TestEnv, nats_dir: &Path, listen_port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_caller"));
    command
        .env("CALLER__NATS__URL", &env.nats.url)
        .env("CALLER__DATABASE__URL", &env.db.app_url)
        .env("CALLER__DATABASE__OWNER_URL", &env.db.url)
        .env("CALLER__HTTP__LISTEN", format!("127.0.0.1:{listen_port}"))
        .env("CALLER__PATHS__NATS", nats_dir)
        .env("CALLER__PATHS__PIPELINES", project_root().join("pipelines"))
        .env("CALLER__LOG__FILTER", "warn")
        .env("CALLER__CRYPTO__ACTIVE_KEY", "test")
        .env(
            "CALLER__CRYPTO__KEYS__TEST",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .stdin(Stdio::null());
    command
}
