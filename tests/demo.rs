//! `caller demo` as a newcomer runs it: the binary, with no vendor credentials, against a
//! private NATS server and a fresh database. It starts the simulator and every stage itself,
//! onboards the demo client, sends its four leads and ends with its summary table. After the
//! run: at least one appointment is booked in our ledger, in the HighLevel simulator (the
//! demo checks it there) and in the analytics tables, and every rollup equals the recount of
//! its facts.

mod common;

use std::process::Stdio;
use std::time::Duration;

use caller::store::analytics::RECOUNT;
use common::{TestEnv, caller_command, free_port, project_root};

/// The demo's own bound on its calls, and ours on the whole process.
const DEMO_TIMEOUT_SECS: u64 = 240;
const PROCESS_LIMIT: Duration = Duration::from_secs(DEMO_TIMEOUT_SECS + 90);

#[tokio::test]
async fn the_demo_books_an_appointment_seen_in_highlevel_and_in_analytics() {
    let env = TestEnv::start(None).await;
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let simulator = format!("127.0.0.1:{}", free_port());
    let mut command = caller_command(&env, &project_root().join("nats"), port);
    command
        .args(["demo", "--timeout", &DEMO_TIMEOUT_SECS.to_string()])
        .args(["--simulator", &simulator])
        .arg("--state-dir")
        .arg(state.path())
        .env("CALLER__DATABASE__MAX_CONNECTIONS", "12")
        .env(
            "CALLER__TELEPHONY__PUBLIC_BASE_URL",
            format!("http://127.0.0.1:{port}"),
        )
        .env(
            "CALLER__TELEPHONY__MEDIA_STREAM_URL",
            format!("ws://127.0.0.1:{port}/media/twilio"),
        )
        .env(
            "CALLER__CRM_SYNC__APP_BASE_URL",
            format!("http://127.0.0.1:{port}"),
        )
        .env("CALLER__ZOHO__ACCOUNTS_URL", format!("http://{simulator}"))
        .env("CALLER__ZOHO__CLIENT_ID", "1000.SIMCLIENTID")
        .env("CALLER__ZOHO__CLIENT_SECRET", "sim-zoho-client-secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(PROCESS_LIMIT, child.wait_with_output())
        .await
        .expect("caller demo did not end within its own timeout")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "caller demo failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("in analytics"),
        "no summary table:\n{stdout}"
    );
    assert!(
        stdout.lines().any(|line| line.contains(" booked ")),
        "no booked row in the table:\n{stdout}"
    );

    let count = |sql: &'static str| {
        let pool = env.db.observer.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let booked = count("SELECT count(*) FROM appointments WHERE status = 'booked'").await;
    assert!(booked >= 1, "no appointment in the ledger");
    assert_eq!(
        count("SELECT count(*) FROM analytics.booking_facts").await,
        booked,
        "every booking is in analytics"
    );
    assert_eq!(
        count("SELECT coalesce(sum(bookings), 0)::bigint FROM analytics.daily_call_summary").await,
        booked
    );
    assert_eq!(
        count("SELECT count(*) FROM analytics.call_facts").await,
        4,
        "four calls"
    );
    let differences: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(RECOUNT)
        .fetch_all(&env.db.observer)
        .await
        .unwrap();
    assert_eq!(
        differences,
        vec![],
        "rollups differ from the recount after the demo"
    );
    // The client's secrets never reach the terminal.
    for file in [
        "custom-webhook-secret",
        "gohighlevel-webhook-secret",
        "api-key",
    ] {
        let path = state.path().join("demo").join(file);
        if let Ok(secret) = std::fs::read_to_string(&path) {
            assert!(!secret.trim().is_empty());
            assert!(!stdout.contains(secret.trim()) && !stderr.contains(secret.trim()));
        }
    }
    env.finish().await;
}
