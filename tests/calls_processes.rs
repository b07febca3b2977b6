//! Admission and dialing across `caller` processes: limits that hold with three rate_limit
//! workers, and a dial worker SIGKILLed inside the dial protocol.

mod common;
#[path = "common/calls.rs"]
mod harness;

use std::time::Duration;

use common::eventually;
use harness::{Harness, Options, Reaped, caller_command, daytime_zone};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const WAIT: Duration = Duration::from_secs(60);

fn sigkill(child: &Reaped) {
    let pid = Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    kill(pid, Signal::SIGKILL).unwrap();
}

async fn attempt_state(h: &Harness, phone: &str) -> Option<(String, Option<String>)> {
    sqlx::query_as(
        "SELECT a.state, a.provider_call_id FROM call_attempts a JOIN calls c ON c.id = a.call_id
          WHERE c.to_number = $1",
    )
    .bind(phone)
    .fetch_optional(&h.env.db.observer)
    .await
    .unwrap()
}

async fn attempts_of(h: &Harness, phone: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM call_attempts a JOIN calls c ON c.id = a.call_id WHERE c.to_number = $1",
    )
    .bind(phone)
    .fetch_one(&h.env.db.observer)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_dial_worker_killed_inside_the_dial_protocol_never_places_a_second_call() {
    let h = Harness::start(Options {
        stages: vec!["rate_limit", "call_status"],
        // A killed worker's message comes back after 2 s instead of a minute.
        dial_ack_wait_ns: Some(2_000_000_000),
        ..Options::default()
    })
    .await;
    let dial = |fault: &str| {
        let mut command = caller_command(&h, h.nats_dir.path(), &["stage", "dial"]);
        command.env("CALLER__TELEPHONY__FAULT_PAUSE_AT", fault);
        Reaped(command.spawn().unwrap())
    };
    let zone = daytime_zone();

    // 1. Killed after recording the intent, before asking the provider.
    let worker = dial("after_intent");
    let first = "+15125550201";
    h.lead(h.tenant, first, zone).await;
    eventually(WAIT, "the intent is recorded", || async {
        attempt_state(&h, first)
            .await
            .is_some_and(|(state, sid)| state == "dialing" && sid.is_none())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.sim.calls_to(first), 0, "paused before the provider");
    sigkill(&worker);
    drop(worker);
    let worker = dial("");
    eventually(WAIT, "the reconciled call completes", || async {
        h.call_of(first)
            .await
            .is_some_and(|(state, _)| state == "completed")
    })
    .await;
    assert_eq!(h.sim.calls_to(first), 1, "exactly one call placed");
    assert_eq!(
        attempts_of(&h, first).await,
        1,
        "the same attempt was reconciled"
    );
    sigkill(&worker);
    drop(worker);

    // 2. Killed after the provider placed the call, before its call id was recorded.
    let worker = dial("after_provider");
    let second = "+15125550202";
    h.lead(h.tenant, second, zone).await;
    eventually(WAIT, "the provider has the call", || async {
        h.sim.calls_to(second) == 1
    })
    .await;
    sigkill(&worker);
    drop(worker);
    let _worker = dial("");
    eventually(WAIT, "the call completes", || async {
        h.call_of(second)
            .await
            .is_some_and(|(state, _)| state == "completed")
    })
    .await;
    // Give a redelivery time to (wrongly) dial again before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(h.sim.calls_to(second), 1, "never a second call");
    assert_eq!(attempts_of(&h, second).await, 1);
    let (state, sid) = attempt_state(&h, second).await.unwrap();
    assert_eq!(state, "completed");
    assert!(sid.is_some_and(|sid| sid.starts_with("CA")));
    h.finish().await;
}

#[tokio::test]
async fn three_rate_limit_processes_hold_the_concurrency_cap_and_the_pace() {
    let mut behaviour = harness::quick_calls();
    // Calls last longer than the cap allows at 2 calls/s (5 × 0.6 s), so both limits bind:
    // the pace first, then the cap.
    behaviour.talk = Duration::from_secs(4);
    let h = Harness::start(Options {
        stages: vec!["dial", "call_status"],
        concurrency_cap: 5,
        calls_per_second: 2.0,
        caller_numbers: vec!["+15125550100", "+15125550101", "+15125550102"],
        behaviour,
        admission: caller::settings::AdmissionSettings {
            pacing_margin: 0.2,
            cycle_ms: 20,
            caller_number_calls_per_second: 100.0,
            ..caller::settings::AdmissionSettings::default()
        },
        ..Options::default()
    })
    .await;
    let _workers: Vec<Reaped> = (0..3)
        .map(|_| {
            let mut command = caller_command(
                &h,
                h.nats_dir.path(),
                &["stage", "rate_limit", "--concurrency", "4"],
            );
            // A wider pacing margin than the default 10%: parallel tests load the 2 cores,
            // and the margin is what absorbs the jitter between a slot and the provider.
            command
                .env("CALLER__ADMISSION__PACING_MARGIN", "0.2")
                .env("CALLER__ADMISSION__CYCLE_MS", "20")
                .env("CALLER__ADMISSION__CALLER_NUMBER_CALLS_PER_SECOND", "100");
            Reaped(command.spawn().unwrap())
        })
        .collect();
    let zone = daytime_zone();
    let phones: Vec<String> = (0..15)
        .map(|i| format!("+1512555{:04}", 3000 + i))
        .collect();
    for phone in &phones {
        h.lead(h.tenant, phone, zone).await;
    }
    eventually(WAIT, "every call completes", || async {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM calls WHERE state = 'completed'")
            .fetch_one(&h.env.db.observer)
            .await
            .unwrap();
        done == 15
    })
    .await;
    assert!(
        h.sim.max_concurrency() <= 5,
        "at most 5 calls in progress at the provider, saw {}",
        h.sim.max_concurrency()
    );
    assert_eq!(
        h.sim.max_concurrency(),
        5,
        "the cap was reached (the test exercises it)"
    );
    let arrivals: Vec<_> = h
        .sim
        .created_at()
        .into_iter()
        .map(|(_, _, at)| at)
        .collect();
    assert_eq!(arrivals.len(), 15);
    let busiest = arrivals
        .iter()
        .map(|start| {
            arrivals
                .iter()
                .filter(|at| **at >= *start && **at < *start + chrono::Duration::seconds(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(
        busiest <= 2,
        "at most 2 calls started in any one-second window, saw {busiest}"
    );
    for phone in &phones {
        assert_eq!(h.sim.calls_to(phone), 1, "{phone} called once");
    }
    h.finish().await;
}
