//! The scheduler's claim loop fires every due job exactly once: with two schedulers claiming
//! at the same time, and with a scheduler SIGKILLed between publishing a batch and marking it
//! fired.
//!
//! Every test inserts due follow-up jobs straight into `scheduled_jobs` (a real tenant and a
//! real campaign, leads in a zone where it is daytime now, so the legal hours let every job
//! fire) and reads back what reached `leads.resolved.<tenant>` on the LEADS stream.

mod common;
#[path = "common/calls.rs"]
mod harness;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use caller::bus::Bus;
use caller::bus::envelope::{Envelope, header};
use caller::bus::subjects::{self, TenantToken};
use caller::events::lead_flow::{JobKind, LeadResolved};
use caller::ids::{EventId, PhoneNumber};
use caller::scheduling::campaign::{CampaignSpec, CampaignStage};
use caller::settings::SchedulerSettings;
use caller::stages::rate_limit::call_id_of;
use caller::stages::scheduler::claimer::{self, fired_event_id};
use caller::store::{follow_up_campaigns, scheduled_jobs};
use chrono::{TimeDelta, Utc};
use common::eventually;
use futures::StreamExt as _;
use harness::{Harness, Options, Reaped, caller_command, daytime_zone, resolved};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

fn sigkill(child: &Reaped) {
    let pid = Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    kill(pid, Signal::SIGKILL).unwrap();
}

/// A harness with no stage running in this process.
async fn start() -> Harness {
    Harness::start(Options {
        stages: Vec::new(),
        ..Options::default()
    })
    .await
}

/// Creates a one-stage follow-up campaign of the harness's tenant; returns its id.
async fn campaign(h: &Harness) -> Uuid {
    let id = Uuid::now_v7();
    let spec = CampaignSpec {
        name: "nurture".to_owned(),
        stages: vec![CampaignStage {
            day_offset: 0,
            time: "10:00".to_owned(),
            agent_variant: None,
            message: None,
        }],
        triggers: Vec::new(),
    };
    let mut tx = h.env.db.store.begin_tenant(h.tenant).await.unwrap();
    follow_up_campaigns::create(&mut tx, h.tenant, id, &spec)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

/// Inserts `count` pending follow-up jobs of `campaign`, due one millisecond apart over the
/// last minutes; returns their ids, earliest due first.
async fn insert_due_jobs(h: &Harness, campaign: Uuid, count: usize) -> Vec<Uuid> {
    let zone = daytime_zone();
    let first_due = Utc::now() - TimeDelta::minutes(10);
    let mut ids = Vec::with_capacity(count);
    let mut tx = h.env.db.store.begin_tenant(h.tenant).await.unwrap();
    for index in 0..count {
        let phone = format!("+1512{:03}{:04}", 200 + index / 10_000, index % 10_000);
        let lead = serde_json::to_value(resolved(&phone, zone)).unwrap();
        let due_at = first_due + TimeDelta::milliseconds(i64::try_from(index).unwrap());
        let id = Uuid::now_v7();
        let job = scheduled_jobs::NewJob {
            id,
            tenant: h.tenant,
            kind: JobKind::FollowUp,
            to: &PhoneNumber::parse(&phone).unwrap(),
            crm_contact_id: None,
            call_id: None,
            attempt_number: 1,
            campaign: Some((campaign, 0)),
            paused: false,
            due_at,
            earliest_at: due_at,
            reason: "escalated",
            timezone: zone.name(),
            timezone_fallback: false,
            lead: &lead,
            source_event_id: EventId::new_v7(),
        };
        assert!(scheduled_jobs::insert(&mut tx, &job).await.unwrap());
        ids.push(id);
    }
    tx.commit().await.unwrap();
    ids
}

/// Returns how many jobs are in each state.
async fn job_states(h: &Harness) -> HashMap<String, i64> {
    sqlx::query_as("SELECT state, count(*) FROM scheduled_jobs GROUP BY state")
        .fetch_all(&h.env.db.observer)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Returns how many pending jobs no transaction holds locked.
async fn unlocked_pending(h: &Harness) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT id FROM scheduled_jobs WHERE state = 'pending'
                                  FOR UPDATE SKIP LOCKED) AS free",
    )
    .fetch_one(&h.env.db.observer)
    .await
    .unwrap()
}

/// An ephemeral consumer of every message on `subject` of `stream`.
async fn reader(bus: &Bus, stream: &str, subject: &str) -> PullConsumer {
    let stream = bus.jetstream().get_stream(stream).await.unwrap();
    stream
        .create_consumer(pull::Config {
            filter_subject: subject.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(5),
            ..pull::Config::default()
        })
        .await
        .unwrap()
}

/// Returns how many messages `subject` holds on `stream`.
async fn count_on(bus: &Bus, stream: &str, subject: &str) -> u64 {
    let consumer = reader(bus, stream, subject).await;
    let info = consumer.cached_info();
    // Polled every 20 ms: remove each reader at once rather than leave hundreds to expire.
    let stream = bus.jetstream().get_stream(stream).await.unwrap();
    stream.delete_consumer(&info.name).await.unwrap();
    info.num_pending
}

/// Reads every message of `subject` on the LEADS stream, in stream order.
async fn read_every(bus: &Bus, subject: &str) -> Vec<Envelope<LeadResolved>> {
    let consumer = reader(bus, "LEADS", subject).await;
    let total = usize::try_from(consumer.cached_info().num_pending).unwrap();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let before = out.len();
        let mut batch = consumer
            .fetch()
            .max_messages(500.min(total - out.len()))
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        while let Some(message) = batch.next().await {
            let message = message.unwrap();
            out.push(Envelope::decode(message.headers.as_ref(), &message.payload).unwrap());
        }
        assert!(
            out.len() > before,
            "the stream stopped short of {total} messages"
        );
    }
    out
}

/// Asserts that `subject` holds exactly one message per job, under the job's event id, and
/// nothing else.
async fn assert_one_message_per_job(bus: &Bus, subject: &str, jobs: &[Uuid]) {
    let events = read_every(bus, subject).await;
    let mut seen: HashMap<EventId, usize> = HashMap::new();
    for event in &events {
        *seen.entry(event.meta.event_id).or_default() += 1;
        let schedule = event.payload.schedule.as_ref().expect("a fired job");
        assert_eq!(
            event.meta.event_id,
            fired_event_id(schedule.job_id),
            "a fired job's event id is derived from the job"
        );
    }
    let expected: HashSet<EventId> = jobs.iter().map(|job| fired_event_id(*job)).collect();
    let doubled: Vec<_> = seen.iter().filter(|(_, count)| **count > 1).collect();
    assert!(doubled.is_empty(), "published twice: {doubled:?}");
    let missing = expected.iter().filter(|id| !seen.contains_key(id)).count();
    assert_eq!(missing, 0, "jobs without their message");
    let extra = seen.keys().filter(|id| !expected.contains(id)).count();
    assert_eq!(extra, 0, "messages of no job");
    assert_eq!(events.len(), jobs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_at_once_fire_every_due_job_exactly_once() {
    const JOBS: usize = 2_000;
    let h = start().await;
    let campaign = campaign(&h).await;
    let jobs = insert_due_jobs(&h, campaign, JOBS).await;
    // Batches of 100: twenty rounds, so both loops get their share of the work.
    let settings = SchedulerSettings {
        batch: 100,
        ..SchedulerSettings::default()
    };
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..2 {
        // Each loop has its own pool, as a separate process would.
        let mut runtime = h.runtime.clone();
        runtime.store = h.env.db.store.detached(4);
        let settings = settings.clone();
        loops.spawn(async move {
            let mut total = claimer::Round::default();
            loop {
                let round = claimer::round(&runtime, &settings).await.unwrap();
                total.claimed += round.claimed;
                total.fired += round.fired;
                total.moved += round.moved;
                total.cancelled += round.cancelled;
                // Nothing left that the other loop does not hold: it finishes those.
                if round.claimed == 0 {
                    return total;
                }
            }
        });
    }
    let mut totals = Vec::new();
    while let Some(total) = loops.join_next().await {
        totals.push(total.unwrap());
    }

    assert_eq!(
        job_states(&h).await,
        HashMap::from([("fired".to_owned(), i64::try_from(JOBS).unwrap())]),
        "every job fired, none left pending"
    );
    // A job claimed by both loops would be counted twice here, and only here: the stream's
    // duplicate window and `mark_fired`'s `state = 'pending'` guard would hide it above.
    let claimed: usize = totals.iter().map(|total| total.claimed).sum();
    let fired: usize = totals.iter().map(|total| total.fired).sum();
    assert_eq!(
        (claimed, fired),
        (JOBS, JOBS),
        "each job claimed once: {totals:?}"
    );
    assert!(
        totals.iter().all(|total| total.fired > 0),
        "both schedulers took part: {totals:?}"
    );
    let subject = subjects::leads_resolved(TenantToken::Id(&h.tenant));
    assert_one_message_per_job(&h.env.bus, &subject, &jobs).await;
    h.finish().await;
}

#[tokio::test]
async fn a_scheduler_killed_mid_batch_loses_and_doubles_nothing() {
    const JOBS: usize = 300;
    const BATCH: u64 = 50;
    let h = start().await;
    let campaign = campaign(&h).await;
    let jobs = insert_due_jobs(&h, campaign, JOBS).await;
    let subject = subjects::leads_resolved(TenantToken::Id(&h.tenant));
    let scheduler = |fault: &str| {
        let mut command = caller_command(&h, h.nats_dir.path(), &["stage", "scheduler"]);
        command
            .env("CALLER__SCHEDULER__FAULT_PAUSE_AT", fault)
            .env("CALLER__SCHEDULER__BATCH", BATCH.to_string())
            .env("CALLER__SCHEDULER__POLL_MS", "50");
        Reaped(command.spawn().unwrap())
    };

    // Killed after its first batch is on the stream, before the batch is marked fired.
    let worker = scheduler("after_publish");
    eventually(WAIT, "the first batch is published", || async {
        count_on(&h.env.bus, "LEADS", &subject).await >= BATCH
    })
    .await;
    sigkill(&worker);
    drop(worker);
    let published = read_every(&h.env.bus, &subject).await;
    assert_eq!(
        published.len(),
        usize::try_from(BATCH).unwrap(),
        "one batch, then the pause"
    );
    // The dead connection's transaction rolls back: every job pending again, and unlocked.
    eventually(WAIT, "the killed batch is unlocked", || async {
        unlocked_pending(&h).await == i64::try_from(JOBS).unwrap()
    })
    .await;
    for event in &published {
        let job = event.payload.schedule.as_ref().unwrap().job_id;
        let mut tx = h.env.db.store.begin_tenant(h.tenant).await.unwrap();
        let (state, _) = scheduled_jobs::state_of(&mut tx, h.tenant, job)
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(state, "pending", "a published job of the killed batch");
    }
    // It claimed the earliest due first.
    let first: HashSet<EventId> = jobs[..published.len()]
        .iter()
        .map(|job| fired_event_id(*job))
        .collect();
    assert!(
        published
            .iter()
            .all(|event| first.contains(&event.meta.event_id))
    );

    // A healthy scheduler publishes that batch again, under the same event ids: the stream's
    // duplicate window (two minutes) drops the copies. A republish later than that would be
    // stored, and rate_limit's idempotency claim on the event id drops it instead (see
    // `a_job_republished_after_the_duplicate_window_becomes_one_call`).
    let _worker = scheduler("");
    eventually(WAIT, "every job fired", || async {
        job_states(&h).await.get("fired") == Some(&i64::try_from(JOBS).unwrap())
    })
    .await;
    assert_eq!(
        job_states(&h).await.len(),
        1,
        "no job left in another state"
    );
    assert_one_message_per_job(&h.env.bus, &subject, &jobs).await;
    h.finish().await;
}

#[tokio::test]
async fn a_job_republished_after_the_duplicate_window_becomes_one_call() {
    const JOBS: usize = 3;
    let h = Harness::start(Options {
        stages: vec!["rate_limit"],
        concurrency_cap: 100,
        calls_per_second: 100.0,
        ..Options::default()
    })
    .await;
    let campaign = campaign(&h).await;
    let jobs = insert_due_jobs(&h, campaign, JOBS).await;
    let fired = claimer::round(&h.runtime, &h.runtime.stages.scheduler)
        .await
        .unwrap();
    assert_eq!(fired.fired, JOBS);
    eventually(WAIT, "every fired job becomes a call", || async {
        let calls: i64 = sqlx::query_scalar("SELECT count(*) FROM calls")
            .fetch_one(&h.env.db.observer)
            .await
            .unwrap();
        calls == i64::try_from(JOBS).unwrap()
    })
    .await;
    let requested = subjects::calls_requested(TenantToken::Id(&h.tenant));
    eventually(WAIT, "every call is requested", || async {
        count_on(&h.env.bus, "CALLS", &requested).await == 3
    })
    .await;

    // The first job's event again, as a scheduler that crashed before its commit would
    // publish it more than two minutes later: the stream no longer remembers the
    // `Nats-Msg-Id`, so it stores the copy (here: a `Nats-Msg-Id` the window has not seen).
    let subject = subjects::leads_resolved(TenantToken::Id(&h.tenant));
    let event = fired_event_id(jobs[0]);
    let original = read_every(&h.env.bus, &subject)
        .await
        .into_iter()
        .find(|envelope| envelope.meta.event_id == event)
        .unwrap();
    let mut message = original.to_message().unwrap();
    for (name, value) in &mut message.headers {
        if name == header::NATS_MSG_ID {
            *value = format!("{event}-after-the-window");
        }
    }
    let ack = h.env.bus.send(&message).await.unwrap().await.unwrap();
    assert!(!ack.duplicate, "the copy is stored");
    assert_eq!(count_on(&h.env.bus, "LEADS", &subject).await, 4);

    // Wait until rate_limit has settled the copy, then count what it left.
    let stream = h.env.bus.jetstream().get_stream("LEADS").await.unwrap();
    eventually(WAIT, "rate_limit acknowledges the copy", || async {
        let mut consumer: PullConsumer = stream.get_consumer("rate_limit").await.unwrap();
        consumer.info().await.unwrap().ack_floor.stream_sequence >= ack.sequence
    })
    .await;
    // The runner's claim on (rate_limit, event id) found the first delivery's: the copy
    // queued nothing, so no second `call.requested` can follow. (A queued row is deleted only
    // after its request is published, so "no row and three requests" leaves no gap.)
    let claims: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_events WHERE stage = 'rate_limit' AND event_id = $1",
    )
    .bind(event.as_uuid())
    .fetch_one(&h.env.db.observer)
    .await
    .unwrap();
    assert_eq!(claims, 1);
    let queued: i64 =
        sqlx::query_scalar("SELECT count(*) FROM admission_queue WHERE lead_event_id = $1")
            .bind(event.as_uuid())
            .fetch_one(&h.env.db.observer)
            .await
            .unwrap();
    assert_eq!(queued, 0, "the copy was not queued again");
    assert_eq!(
        count_on(&h.env.bus, "CALLS", &requested).await,
        3,
        "one request per job"
    );
    let calls: i64 = sqlx::query_scalar("SELECT count(*) FROM calls WHERE id = $1")
        .bind(call_id_of(event).as_uuid())
        .fetch_one(&h.env.db.observer)
        .await
        .unwrap();
    assert_eq!(calls, 1, "one call");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM calls")
        .fetch_one(&h.env.db.observer)
        .await
        .unwrap();
    assert_eq!(
        total,
        i64::try_from(JOBS).unwrap(),
        "no other call appeared"
    );
    h.finish().await;
}
