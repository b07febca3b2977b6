//! What every benchmark needs: a private nats-server and a fresh database, migrated, with the
//! application role's pool (row-level security as in production).

#![allow(dead_code, unreachable_pub)] // each benchmark uses a different part

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use caller::secret::Secret;
use caller::settings::DatabaseSettings;
use caller::store::Store;
use sqlx::{Connection, PgConnection};

/// A private nats-server, killed on drop.
pub struct Server(Child);

impl Server {
    /// The server's process id (to read its CPU time from `/proc`).
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

pub fn start_nats(store: &std::path::Path) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server".into()
        } else {
            "nats-server".into()
        }
    });
    #[allow(clippy::zombie_processes)] // NOTE: waited for in `Drop`.
    let child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server (install it, or set NATS_SERVER_BIN)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (Server(child), format!("nats://127.0.0.1:{port}"))
}

/// A scratch database `caller_bench_<uuid>`.
pub struct Database {
    admin: PgConnection,
    name: String,
    /// The owner's URL of it (bulk set-up, `ANALYZE`).
    pub owner_url: String,
}

impl Database {
    /// Creates and migrates it; returns the application role's store.
    pub async fn create() -> (Store, Self) {
        let admin_url = std::env::var("CALLER_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://caller:caller@127.0.0.1:5432/caller".to_owned());
        let name = format!("caller_bench_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let db_url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
        let settings = |url: String| DatabaseSettings {
            url: Secret::new(url),
            owner_url: None,
            max_connections: 16,
            acquire_timeout_ms: 5_000,
        };
        let owner = Store::connect(&settings(db_url.clone())).await.unwrap();
        owner.migrate().await.unwrap();
        owner.pool().close().await;
        let app_url = std::env::var("CALLER_TEST_APP_DATABASE_URL").unwrap_or_else(|_| {
            "postgres://caller_app:caller_app@127.0.0.1:5432/caller".to_owned()
        });
        let app_url = format!("{}/{name}", app_url.rsplit_once('/').unwrap().0);
        let store = Store::connect(&settings(app_url)).await.unwrap();
        (
            store,
            Self {
                admin,
                name,
                owner_url: db_url,
            },
        )
    }

    /// Drops it.
    pub async fn drop(mut self) {
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&mut self.admin)
            .await
            .unwrap();
    }
}

pub fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// Returns the `p` quantile (0–1) of `sorted` latencies, by the nearest index; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Returns the CPU time (user + system) of process `pid` (`self` for this one) so far, from
/// `/proc/<pid>/stat`; `None` where there is no such file (not Linux).
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last `)`.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// Returns the environment variable `name` read as a number, or `default`.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
