//! Dependencies going away mid-run: the stage pauses, readiness turns false, nothing is acked
//! that was not done, and work resumes when the dependency returns.

mod common;

use std::time::Duration;

use caller::bus::Bus;
use caller::bus::envelope::Envelope;
use caller::bus::runner::{self, Runtime};
use caller::events::canary::CanaryRequested;
use caller::http::{self, HttpState};
use caller::ids::TenantId;
use caller::metrics::Metrics;
use caller::settings::{DatabaseSettings, RunnerSettings};
use caller::shutdown::Shutdown;
use caller::stages::canary::CanaryStage;
use caller::store::Store;
use common::{NatsServer, TcpProxy, TestEnv, database_address, eventually, free_port};

const WAIT: Duration = Duration::from_secs(30);

struct Running {
    metrics: Metrics,
    shutdown: Shutdown,
    port: u16,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

async fn run_canary(bus: Bus, store: Store) -> Running {
    let definitions =
        caller::bus::provision::Definitions::load(&common::project_root().join("nats")).unwrap();
    let topology = caller::pipeline::compile(
        caller::pipeline::load(&common::project_root().join("pipelines")).unwrap(),
        &definitions,
    )
    .unwrap();
    let spec = topology.stage("canary").unwrap().clone();
    let metrics = Metrics::default();
    let shutdown = Shutdown::new();
    let runtime = Runtime::new(
        bus.clone(),
        store.clone(),
        metrics.clone(),
        RunnerSettings {
            retry_base_ms: 20,
            retry_max_ms: 200,
            pull_expires_ms: 300,
            ..RunnerSettings::default()
        },
    );
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let state = HttpState {
        bus,
        store,
        metrics: metrics.clone(),
        stages: std::sync::Arc::new(vec![spec.clone()]),
    };
    let tasks = vec![
        tokio::spawn(http::serve(listener, http::router(state), shutdown.clone())),
        tokio::spawn(runner::run_stage(
            std::sync::Arc::new(CanaryStage),
            spec,
            runtime,
            shutdown.clone(),
        )),
    ];
    Running {
        metrics,
        shutdown,
        port,
        tasks,
    }
}

async fn ready(port: u16) -> bool {
    matches!(reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await, Ok(r) if r.status() == 200)
}

async fn publish_probe(bus: &Bus) {
    let request = Envelope::new(
        TenantId::PLATFORM,
        "caller/test",
        CanaryRequested {
            origin: "outage".into(),
        },
    );
    bus.publish_all(&[request.to_message().unwrap()])
        .await
        .unwrap();
}

impl Running {
    async fn stop(self) {
        self.shutdown.trigger();
        for task in self.tasks {
            task.await.unwrap().unwrap();
        }
    }
}

#[tokio::test]
async fn a_postgres_outage_pauses_the_stage_without_retries_or_dead_letters() {
    let env = TestEnv::start(None).await;
    let proxy = TcpProxy::start(database_address(&env.db.app_url)).await;
    let proxied_url = env.db.app_url.replace(
        &database_address(&env.db.app_url).port().to_string(),
        &proxy.port.to_string(),
    );
    let store = Store::connect(&DatabaseSettings {
        url: caller::secret::Secret::new(proxied_url),
        owner_url: None,
        max_connections: 4,
        acquire_timeout_ms: 300,
    })
    .await
    .unwrap();
    let running = run_canary(env.bus.clone(), store).await;
    eventually(WAIT, "ready", || ready(running.port)).await;

    proxy.cut().await;
    eventually(WAIT, "readiness turns false", || async {
        !ready(running.port).await
    })
    .await;
    publish_probe(&env.bus).await;
    let stage = running.metrics.stage("canary");
    eventually(WAIT, "the stage pauses", || async {
        stage.counts().paused >= 2
    })
    .await;
    assert_eq!(stage.counts().processed, 0);

    proxy.restore().await;
    eventually(WAIT, "the probe is processed after the outage", || async {
        stage.counts().processed == 1
    })
    .await;
    eventually(WAIT, "ready again", || ready(running.port)).await;
    let counts = stage.counts();
    assert_eq!(
        (counts.retried, counts.dead_lettered, counts.rejected),
        (0, 0, 0),
        "{counts:?}"
    );
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_events")
        .fetch_one(&env.db.observer)
        .await
        .unwrap();
    assert_eq!(claims, 1);
    // The held message was never NAKed: it is still on its first delivery, and acked now.
    let stream = env.bus.jetstream().get_stream("CANARY").await.unwrap();
    let info = stream.consumer_info("canary").await.unwrap();
    assert_eq!((info.num_ack_pending, info.num_redelivered), (0, 0));
    running.stop().await;
    env.finish().await;
}

#[tokio::test]
async fn a_nats_restart_pauses_the_stage_and_work_resumes_when_it_returns() {
    let env = TestEnv::start(None).await;
    // The stage talks to its own server, which we restart on the same port and store.
    let server = NatsServer::start().await;
    let port = server.port;
    let bus = Bus::connect(&server.url, Duration::from_secs(5))
        .await
        .unwrap();
    let definitions =
        caller::bus::provision::Definitions::load(&common::project_root().join("nats")).unwrap();
    caller::bus::provision::provision(&bus, &definitions)
        .await
        .unwrap();
    let running = run_canary(bus.clone(), env.db.store.clone()).await;
    eventually(WAIT, "ready", || ready(running.port)).await;
    publish_probe(&bus).await;
    let stage = running.metrics.stage("canary");
    eventually(WAIT, "first probe processed", || async {
        stage.counts().processed == 1
    })
    .await;

    let store_dir = server.kill();
    eventually(WAIT, "readiness turns false", || async {
        !ready(running.port).await
    })
    .await;
    let server = NatsServer::start_on(port, store_dir).await;
    eventually(WAIT, "ready again", || ready(running.port)).await;
    publish_probe(&bus).await;
    eventually(WAIT, "second probe processed after the restart", || async {
        stage.counts().processed == 2
    })
    .await;
    assert_eq!(stage.counts().dead_lettered, 0);
    running.stop().await;
    drop(server);
    env.finish().await;
}
