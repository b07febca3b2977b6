//! The `caller` binary as operators run it: start-up, readiness, metrics, signals, crashes.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use caller::bus::envelope::{Envelope, header};
use caller::events::canary::CanaryRequested;
use caller::ids::TenantId;
use common::{TestEnv, caller_command, eventually, free_port, project_root};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const WAIT: Duration = Duration::from_secs(60);

fn run(mut command: Command) -> Output {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn spawn_quiet(mut command: Command) -> Child {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

async fn processed(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE stage = 'canary'")
        .fetch_one(&env.db.observer)
        .await
        .unwrap()
}

async fn answered_causes(env: &TestEnv) -> Vec<String> {
    let stream = env.bus.jetstream().get_stream("CANARY").await.unwrap();
    let mut next = 1;
    let mut causes = Vec::new();
    while let Ok(message) = stream
        .raw_message_builder()
        .sequence(next)
        .next_by_subject("canary.answered.*".to_owned())
        .send()
        .await
    {
        next = message.sequence + 1;
        causes.push(
            message
                .headers
                .get(header::CAUSATION_ID)
                .unwrap()
                .as_str()
                .to_owned(),
        );
    }
    causes
}

async fn publish_probes(env: &TestEnv, count: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    let mut messages = Vec::with_capacity(count);
    for index in 0..count {
        let request = Envelope::new(
            TenantId::PLATFORM,
            "caller/test",
            CanaryRequested {
                origin: format!("probe-{index}"),
            },
        );
        ids.push(request.meta.event_id.to_string());
        messages.push(request.to_message().unwrap());
    }
    for chunk in messages.chunks(500) {
        env.bus.publish_all(chunk).await.unwrap();
    }
    ids
}

/// A copy of `nats/` whose canary consumer redelivers after 2 s instead of 30 s, so the
/// crash test does not wait out the production `ack_wait`.
fn short_ack_wait_definitions() -> tempfile::TempDir {
    let dir = common::nats_definitions_copy();
    let path = dir.path().join("consumers/CANARY/canary.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("30000000000", "2000000000");
    std::fs::write(path, text).unwrap();
    dir
}

#[tokio::test]
async fn a_worker_killed_mid_batch_loses_nothing_and_processes_each_message_once() {
    let definitions = short_ack_wait_definitions();
    let env = TestEnv::start(Some(definitions.path())).await;
    const PROBES: usize = 3_000;
    let ids = publish_probes(&env, PROBES).await;

    let mut first = caller_command(&env, definitions.path(), free_port());
    first.args(["stage", "canary", "--concurrency", "8"]);
    let mut first = spawn_quiet(first);
    eventually(WAIT, "the first worker processed some", || async {
        processed(&env).await >= 300
    })
    .await;
    // SIGKILL: no drain, no NAKs, in-flight transactions and unacked messages abandoned.
    first.kill().unwrap();
    first.wait().unwrap();
    let at_kill = processed(&env).await;
    assert!(
        at_kill < PROBES as i64,
        "the kill must land mid-run (processed {at_kill})"
    );

    let mut second = caller_command(&env, definitions.path(), free_port());
    second.args(["stage", "canary", "--concurrency", "8"]);
    let mut second = spawn_quiet(second);
    eventually(WAIT, "every probe processed", || async {
        processed(&env).await == PROBES as i64
    })
    .await;
    eventually(WAIT, "every answer stored", || async {
        answered_causes(&env).await.len() >= PROBES
    })
    .await;
    kill(Pid::from_raw(second.id() as i32), Signal::SIGTERM).unwrap();
    assert!(
        second.wait().unwrap().success(),
        "SIGTERM drains and exits 0"
    );

    let mut causes = answered_causes(&env).await;
    assert_eq!(causes.len(), PROBES, "no answer was emitted twice");
    causes.sort();
    causes.dedup();
    let mut expected = ids;
    expected.sort();
    assert_eq!(causes, expected, "every probe answered exactly once");
    let mut stream = env.bus.jetstream().get_stream("CANARY").await.unwrap();
    let info = stream.consumer_info("canary").await.unwrap();
    assert_eq!(
        (info.num_pending, info.num_ack_pending),
        (0, 0),
        "everything acked"
    );
    assert!(stream.info().await.is_ok());
    env.finish().await;
}

#[tokio::test]
async fn caller_all_becomes_ready_serves_metrics_answers_a_ping_and_drains_on_sigterm() {
    let env = TestEnv::start(None).await;
    let port = free_port();
    let nats_dir = project_root().join("nats");
    let mut command = caller_command(&env, &nats_dir, port);
    command.arg("all");
    let mut child = spawn_quiet(command);

    eventually(WAIT, "/readyz answers 200", || async {
        matches!(get(port, "/readyz").await, Some((200, _)))
    })
    .await;
    let (status, document) = get(port, "/v1/openapi.json").await.unwrap();
    assert_eq!(status, 200, "the management API is mounted");
    assert!(document.contains("\"openapi\":\"3.1.0\""), "{document}");
    let (status, body) = get(port, "/healthz").await.unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    // The webhook routes are mounted: an unsigned HighLevel event is refused, not unknown.
    let http = caller::providers::http::client();
    let refused = http
        .post(format!("http://127.0.0.1:{port}/webhooks/gohighlevel"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_signature");

    let mut ping = caller_command(&env, &nats_dir, port);
    ping.args(["pipeline", "ping"]);
    let output = run(ping);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("pong: event "));

    let (status, metrics) = get(port, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("caller_stage_processed_total{stage=\"canary\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("caller_stage_dead_lettered_total{stage=\"canary\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("caller_stage_handler_seconds_count{stage=\"canary\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("caller_consumer_pending{stage=\"canary\"} 0"),
        "{metrics}"
    );
    // The platform gauges come from PostgreSQL under the application role.
    assert!(
        metrics.contains("caller_scheduler_due_jobs 0")
            && metrics.contains("caller_scheduler_overdue_jobs 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE caller_tenant_alerts_open gauge"),
        "{metrics}"
    );
    assert!(
        metrics.contains("caller_consumer_ack_pending{stage=\"canary\"} 0"),
        "{metrics}"
    );

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    env.finish().await;
}

#[tokio::test]
async fn unreachable_nats_or_postgres_at_start_is_one_line_and_a_failure() {
    let env = TestEnv::start(None).await;
    let nats_dir = project_root().join("nats");
    let dead_port = free_port();

    let mut no_nats = caller_command(&env, &nats_dir, free_port());
    no_nats
        .env("CALLER__NATS__URL", format!("nats://127.0.0.1:{dead_port}"))
        .arg("all");
    let output = run(no_nats);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "nats unreachable at `nats://127.0.0.1:{dead_port}`"
        )),
        "{stderr}"
    );

    let mut no_postgres = caller_command(&env, &nats_dir, free_port());
    no_postgres
        .env(
            "CALLER__DATABASE__URL",
            format!("postgres://caller:secret-pw@127.0.0.1:{dead_port}/x"),
        )
        .env("CALLER__DATABASE__ACQUIRE_TIMEOUT_MS", "500")
        .arg("all");
    let output = run(no_postgres);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "postgres unreachable at `postgres://caller:***@127.0.0.1:{dead_port}/x`"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret-pw"),
        "the password never appears: {stderr}"
    );
    env.finish().await;
}

#[tokio::test]
async fn provision_twice_reports_nothing_changed_the_second_time() {
    let env = TestEnv::start(None).await;
    // A fresh server, so the first run creates everything.
    let fresh = common::NatsServer::start().await;
    let nats_dir = project_root().join("nats");
    let provision = || {
        let mut command = caller_command(&env, &nats_dir, free_port());
        command
            .env("CALLER__NATS__URL", &fresh.url)
            .arg("provision");
        run(command)
    };
    let first = provision();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        first.contains("created   stream CANARY")
            && first.contains("created   consumer CANARY/canary"),
        "{first}"
    );

    let second = provision();
    assert!(second.status.success());
    let second = String::from_utf8_lossy(&second.stdout).into_owned();
    assert!(!second.is_empty());
    assert!(
        second.lines().all(|line| line.starts_with("unchanged ")),
        "{second}"
    );
    env.finish().await;
}

#[tokio::test]
async fn an_inconsistent_pipeline_is_refused_with_a_message_naming_the_problem() {
    let pipelines = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(project_root().join("pipelines/canary.yaml"))
        .unwrap()
        .replace(
            "outputs: [canary.answered]",
            "outputs: [canary.answered, calls.requested]",
        )
        + "  - name: no_such_stage\n    consumer: CANARY/no_such_stage\n    concurrency: 1\n    dead_letter: dlq.no_such_stage\n";
    std::fs::write(pipelines.path().join("canary.yaml"), text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_caller"))
        .env("CALLER__PATHS__PIPELINES", pipelines.path())
        .env("CALLER__PATHS__NATS", project_root().join("nats"))
        .args(["pipeline", "check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("inconsistent pipeline graph"), "{stderr}");
    assert!(
        stderr.contains("stage `canary`: output `calls.requested` is undeclared by the stage"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stage `no_such_stage` is not a stage of this build"),
        "{stderr}"
    );
}

#[tokio::test]
async fn pipeline_graph_prints_mermaid() {
    let output = Command::new(env!("CARGO_BIN_EXE_caller"))
        .env("CALLER__PATHS__PIPELINES", project_root().join("pipelines"))
        .env("CALLER__PATHS__NATS", project_root().join("nats"))
        .args(["pipeline", "graph"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(stdout.starts_with("flowchart LR\n"), "{stdout}");
    assert!(
        stdout.contains("source_cli -->|canary.requested| stage_canary"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stage_canary -->|canary.answered| stream_CANARY[(CANARY)]"),
        "{stdout}"
    );
    // The analytics sink takes every subject its stream (FACTS) copies, and only those.
    assert!(
        stdout.contains("stage_dial -->|call.outcome| stage_analytics_sink"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("canary.answered| stage_analytics_sink"),
        "{stdout}"
    );
}

#[tokio::test]
async fn dlq_commands_list_show_replay_and_purge_dead_letters() {
    let env = TestEnv::start(None).await;
    let nats_dir = project_root().join("nats");
    let mut stage = caller_command(&env, &nats_dir, free_port());
    stage.args(["stage", "canary"]);
    let mut stage = spawn_quiet(stage);
    // The canary stage rejects a probe without an origin.
    let poison = Envelope::new(
        TenantId::PLATFORM,
        "caller/test",
        CanaryRequested {
            origin: String::new(),
        },
    );
    env.bus
        .publish_all(&[poison.to_message().unwrap()])
        .await
        .unwrap();
    let dlq = |args: &[&str]| {
        let mut command = caller_command(&env, &nats_dir, free_port());
        command.arg("dlq").args(args);
        run(command)
    };
    eventually(WAIT, "a dead letter", || async {
        String::from_utf8_lossy(&dlq(&["list"]).stdout).contains("probe has an empty `origin`")
    })
    .await;
    let listed = String::from_utf8_lossy(&dlq(&["list", "--stage", "canary"]).stdout).into_owned();
    let sequence = listed.split('\t').next().unwrap().trim().to_owned();
    assert!(listed.contains("canary.requested"), "{listed}");

    let shown = dlq(&["show", &sequence]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["stage"], "canary");
    assert_eq!(shown["event_id"], poison.meta.event_id.to_string());
    assert_eq!(shown["payload"]["origin"], "");

    let replayed = String::from_utf8_lossy(&dlq(&["replay", &sequence]).stdout).into_owned();
    assert!(
        replayed.starts_with(&format!("replayed {sequence} as event ")),
        "{replayed}"
    );
    // Still poison: the replay is rejected again, under its new id.
    eventually(WAIT, "the replay dead-lettered again", || async {
        let listed = String::from_utf8_lossy(&dlq(&["list"]).stdout).into_owned();
        listed.lines().count() == 1 && !listed.starts_with(&format!("{sequence}\t"))
    })
    .await;

    let refused = dlq(&["purge"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    let purged = String::from_utf8_lossy(&dlq(&["purge", "--yes"]).stdout).into_owned();
    assert_eq!(purged.trim(), "purged 1 dead letters");
    assert_eq!(
        String::from_utf8_lossy(&dlq(&["list"]).stdout).trim(),
        "no dead letters"
    );
    kill(Pid::from_raw(stage.id() as i32), Signal::SIGTERM).unwrap();
    assert!(stage.wait().unwrap().success());
    env.finish().await;
}
