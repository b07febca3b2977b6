//! Scheduler throughput: due jobs claimed, checked, published as `lead.resolved` and marked
//! fired per second, with 1 and 2 schedulers sharing the work through `FOR UPDATE SKIP
//! LOCKED`.
//!
//! `cargo bench --bench scheduler` starts a private `nats-server` and a private PostgreSQL
//! database per row, onboards one tenant with a one-stage follow-up campaign, and inserts
//! `BENCH_JOBS` (default 100,000) pending follow-up jobs of that campaign, all due (one
//! `INSERT … SELECT generate_series` as the owner, then `ANALYZE`), for leads in a zone where
//! it is daytime now, so every job passes its window check and fires. Each scheduler is the
//! real claim round (`stages::scheduler::claimer::round`, batches of `BENCH_BATCH`, default
//! 500) called back to back, as the claim loop does while batches come back full, with its
//! own pool of 4 connections, like a separate process. A warm-up of 1,000 jobs runs first
//! (connections, the tenant snapshot, prepared statements).
//!
//! Rows, each with its own server and database:
//!
//! - the reference: the same number of `lead.resolved` events published raw to JetStream in
//!   the same batches, every PubAck awaited (what NATS alone costs);
//! - the database's share alone: claim and mark fired in one transaction per batch, without
//!   the checks and without publishing;
//! - 1 and 2 schedulers.
//!
//! Reports the total time, jobs/s, the p50/p99 of one round (claim, check, publish with
//! every PubAck, mark fired, commit), the CPU of this process, of nats-server and of every
//! PostgreSQL process on the machine, and checks that every job fired exactly once: all rows
//! `fired`, the claims add up to the job count, and the stream holds one message per job.
//! Environment: `BENCH_JOBS`, `BENCH_BATCH`, `CALLER_TEST_DATABASE_URL`, `NATS_SERVER_BIN`.
//! Prints a Markdown table (and, on stderr, the set-up time and whether rounds slow down
//! over a run).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use caller::bus::Bus;
use caller::bus::envelope::Envelope;
use caller::bus::provision::{self, Definitions};
use caller::bus::runner::Runtime;
use caller::bus::subjects::{self, TenantToken};
use caller::crypto::Keyring;
use caller::events::lead::LeadSource;
use caller::events::lead_flow::{LeadResolved, TimezoneSource};
use caller::ids::{PhoneNumber, TenantId};
use caller::metrics::Metrics;
use caller::scheduling::campaign::{CampaignSpec, CampaignStage};
use caller::settings::{RunnerSettings, SchedulerSettings};
use caller::stages::scheduler::claimer;
use caller::store::Store;
use caller::store::{follow_up_campaigns, scheduled_jobs};
use caller::tenancy::audit::Actor;
use caller::tenancy::directory::Directory;
use caller::tenancy::service;
use chrono::{Timelike as _, Utc};
use serde_json::json;
use sqlx::{Connection as _, PgConnection};
use tokio::time::Instant;

mod support;
use support::{cpu_time, env_number, percentile, start_nats};

fn lead(phone: &str, timezone: &str) -> LeadResolved {
    LeadResolved {
        source: LeadSource::Api,
        source_event_id: None,
        dedupe_key: format!("api:{phone}"),
        external_id: Some(format!("crm-{phone}")),
        phone: PhoneNumber::parse(phone).unwrap(),
        phone_raw: phone.to_owned(),
        phone_region: Some("US".to_owned()),
        first_name: Some("Jane".to_owned()),
        last_name: Some("Doe".to_owned()),
        full_name: None,
        email: None,
        timezone: timezone.to_owned(),
        timezone_source: TimezoneSource::Lead,
        tags: Vec::new(),
        custom_fields: std::collections::BTreeMap::new(),
        campaign_id: None,
        received_at: Utc::now(),
        occurred_at: None,
        trigger: None,
        schedule: None,
    }
}

/// A zone where it is now daytime, so every job is inside its calling window.
fn daytime_zone() -> &'static str {
    let now = Utc::now();
    [
        "Pacific/Kiritimati",
        "Pacific/Auckland",
        "Asia/Tokyo",
        "Asia/Kolkata",
        "Europe/Berlin",
        "America/Sao_Paulo",
        "America/New_York",
        "America/Los_Angeles",
        "Pacific/Honolulu",
    ]
    .into_iter()
    .find(|zone| {
        let tz: chrono_tz::Tz = zone.parse().unwrap();
        (9..19).contains(&now.with_timezone(&tz).hour())
    })
    .unwrap()
}

/// A private nats-server and database with the repository's streams and one tenant.
struct Environment {
    _server: support::Server,
    nats_pid: String,
    _store_dir: tempfile::TempDir,
    bus: Bus,
    store: Store,
    database: support::Database,
    keyring: Arc<Keyring>,
    tenant: TenantId,
    campaign: uuid::Uuid,
}

impl Environment {
    async fn start() -> Self {
        let store_dir = tempfile::tempdir().unwrap();
        let (server, nats_url) = start_nats(store_dir.path());
        let bus = Bus::connect(&nats_url, Duration::from_secs(5))
            .await
            .unwrap();
        let nats_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("nats");
        provision::provision(&bus, &Definitions::load(&nats_dir).unwrap())
            .await
            .unwrap();
        let (store, database) = support::Database::create().await;
        let keyring = Arc::new(Keyring::from_parts("k1", [("k1", [42u8; 32])]).unwrap());
        let request = serde_json::from_value(json!({
            "slug": "bench", "name": "Bench", "timezone": "UTC",
            "configuration": {
                "telephony": "twilio", "caller_numbers": ["+15125550100"],
                "providers": {"twilio": {"account_sid": "AC0123", "base_url": "http://127.0.0.1:9"}}
            },
            "credentials": {"twilio.auth_token": {"value": "bench-auth-token"}}
        }))
        .unwrap();
        let mut tx = store.begin_platform().await.unwrap();
        let client = service::onboard(&mut tx, &Actor::operator("bench"), &keyring, request)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let campaign = uuid::Uuid::now_v7();
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
        let mut tx = store.begin_tenant(client.id).await.unwrap();
        follow_up_campaigns::create(&mut tx, client.id, campaign, &spec)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        Self {
            nats_pid: server.pid().to_string(),
            _server: server,
            _store_dir: store_dir,
            bus,
            store,
            database,
            keyring,
            tenant: client.id,
            campaign,
        }
    }

    /// Inserts `count` pending follow-up jobs, all due, each for its own number; returns the
    /// time it took.
    async fn insert_due_jobs(&self, count: u64, first_number: u64) -> Duration {
        let zone = daytime_zone();
        let template = serde_json::to_value(lead("+12000000000", zone)).unwrap();
        let started = Instant::now();
        let mut owner = PgConnection::connect(&self.database.owner_url)
            .await
            .unwrap();
        // The table forces row-level security, on its owner too.
        sqlx::query("SET app.platform = 'on'")
            .execute(&mut owner)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO scheduled_jobs
                 (id, tenant_id, kind, to_number, attempt_number, campaign_id, stage_index,
                  due_at, earliest_at, reason, timezone, lead, source_event_id)
             SELECT gen_random_uuid(), $1, 'follow_up', n.number, 1, $2, 0,
                    $3 + i * interval '1 millisecond', $3 + i * interval '1 millisecond',
                    'escalated', $4,
                    jsonb_set(jsonb_set($5, '{phone}', to_jsonb(n.number)),
                              '{phone_raw}', to_jsonb(n.number)),
                    gen_random_uuid()
               FROM generate_series(1, $6) AS i,
                    LATERAL (SELECT '+1' || ($7 + i)::text AS number) AS n",
        )
        .bind(self.tenant.as_uuid())
        .bind(self.campaign)
        .bind(Utc::now() - chrono::TimeDelta::hours(2))
        .bind(zone)
        .bind(&template)
        .bind(i64::try_from(count).unwrap())
        .bind(i64::try_from(first_number).unwrap())
        .execute(&mut owner)
        .await
        .unwrap();
        // Fresh statistics, as autovacuum would give a table this size.
        sqlx::query("ANALYZE scheduled_jobs")
            .execute(&mut owner)
            .await
            .unwrap();
        owner.close().await.unwrap();
        started.elapsed()
    }

    /// A scheduler's runtime: its own pool of 4 connections, like a separate process.
    fn runtime(&self) -> Runtime {
        let store = self.store.detached(4);
        let mut runtime = Runtime::new(
            self.bus.clone(),
            store.clone(),
            Metrics::default(),
            RunnerSettings::default(),
        );
        runtime.directory =
            Directory::new(store, Some(self.keyring.clone()), Duration::from_secs(60));
        runtime
    }

    /// Returns how many messages `subject` holds on the LEADS stream.
    async fn messages_on(&self, subject: &str) -> u64 {
        let stream = self.bus.jetstream().get_stream("LEADS").await.unwrap();
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: subject.to_owned(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(5),
                ..pull::Config::default()
            })
            .await
            .unwrap();
        consumer.cached_info().num_pending
    }

    /// Returns how many jobs are in each state (as the owner, in platform mode).
    async fn job_states(&self) -> Vec<(String, i64)> {
        let mut owner = PgConnection::connect(&self.database.owner_url)
            .await
            .unwrap();
        sqlx::query("SET app.platform = 'on'")
            .execute(&mut owner)
            .await
            .unwrap();
        let states = sqlx::query_as("SELECT state, count(*) FROM scheduled_jobs GROUP BY state")
            .fetch_all(&mut owner)
            .await
            .unwrap();
        owner.close().await.unwrap();
        states
    }

    async fn finish(self) {
        self.store.pool().close().await;
        self.database.drop().await;
    }
}

/// What a claim loop does each round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The real round: claim, check, publish with every PubAck, mark fired, commit.
    Full,
    /// The database's share alone: claim, mark fired, commit; no checks, no publish.
    DatabaseOnly,
}

/// One round of `mode`; returns how many jobs it claimed and fired.
async fn round(runtime: &Runtime, settings: &SchedulerSettings, mode: Mode) -> (usize, usize) {
    match mode {
        Mode::Full => {
            let round = claimer::round(runtime, settings).await.unwrap();
            (round.claimed, round.fired)
        }
        Mode::DatabaseOnly => {
            let mut tx = runtime.store.begin_platform().await.unwrap();
            let jobs = scheduled_jobs::claim_due(&mut tx, Utc::now(), settings.batch)
                .await
                .unwrap();
            let fired: Vec<_> = jobs.iter().map(|job| (job.id, None)).collect();
            scheduled_jobs::mark_fired(&mut tx, &fired, Utc::now())
                .await
                .unwrap();
            tx.commit().await.unwrap();
            (jobs.len(), fired.len())
        }
    }
}

/// What the claim loops of one run did.
struct Drained {
    claimed: usize,
    fired: usize,
    /// Every round's time, sorted.
    rounds: Vec<Duration>,
    /// The first loop's rounds' times, in order.
    in_order: Vec<Duration>,
    elapsed: Duration,
}

/// Runs one claim loop per runtime, rounds back to back, until none finds a due job.
async fn drain(runtimes: &[Runtime], settings: &SchedulerSettings, mode: Mode) -> Drained {
    let started = Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for runtime in runtimes {
        let runtime = runtime.clone();
        let settings = settings.clone();
        loops.spawn(async move {
            let mut rounds = Vec::new();
            let (mut claimed, mut fired) = (0, 0);
            loop {
                let at = Instant::now();
                let (got, done) = round(&runtime, &settings, mode).await;
                // The last round finds nothing (or what another scheduler holds): not a batch.
                if got == 0 {
                    return (claimed, fired, rounds);
                }
                rounds.push(at.elapsed());
                claimed += got;
                fired += done;
            }
        });
    }
    let mut drained = Drained {
        claimed: 0,
        fired: 0,
        rounds: Vec::new(),
        in_order: Vec::new(),
        elapsed: Duration::ZERO,
    };
    while let Some(done) = loops.join_next().await {
        let (claimed, fired, rounds) = done.unwrap();
        if drained.in_order.is_empty() {
            drained.in_order.clone_from(&rounds);
        }
        drained.claimed += claimed;
        drained.fired += fired;
        drained.rounds.extend(rounds);
    }
    drained.elapsed = started.elapsed();
    drained.rounds.sort();
    drained
}

/// Returns the CPU time so far of every PostgreSQL process on this machine (server and
/// backends), keyed by pid; empty where there is no `/proc`.
fn postgres_cpu() -> std::collections::HashMap<String, Duration> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return std::collections::HashMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().into_owned();
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim() == "postgres")
                .then(|| cpu_time(&pid).map(|cpu| (pid, cpu)))
                .flatten()
        })
        .collect()
}

/// CPU of this process, of nats-server and of PostgreSQL, as shares of the wall time
/// (100 %: one core).
struct Cpu {
    process: Option<Duration>,
    nats: Option<Duration>,
    postgres: std::collections::HashMap<String, Duration>,
}

impl Cpu {
    fn read(nats_pid: &str) -> Self {
        Self {
            process: cpu_time("self"),
            nats: cpu_time(nats_pid),
            postgres: postgres_cpu(),
        }
    }

    fn since(&self, start: &Self, wall: Duration) -> [String; 3] {
        let share = |spent: Option<Duration>| match spent {
            Some(spent) => format!("{:.0} %", spent.as_secs_f64() / wall.as_secs_f64() * 100.0),
            None => "n/a".to_owned(),
        };
        let delta = |now: Option<Duration>, then: Option<Duration>| Some(now? - then?);
        // A backend that started during the run counts from zero; one that ended is missed
        // (the schedulers' pools stay open, so theirs are counted).
        let postgres = self
            .postgres
            .iter()
            .map(|(pid, now)| {
                now.saturating_sub(start.postgres.get(pid).copied().unwrap_or_default())
            })
            .sum::<Duration>();
        [
            share(delta(self.process, start.process)),
            share(delta(self.nats, start.nats)),
            share((!self.postgres.is_empty()).then_some(postgres)),
        ]
    }
}

#[allow(clippy::cast_precision_loss)]
fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let jobs: u64 = env_number("BENCH_JOBS", 100_000u64);
    let batch: i64 = env_number("BENCH_BATCH", 500i64);
    let settings = SchedulerSettings {
        batch,
        ..SchedulerSettings::default()
    };
    println!(
        "| what | jobs | total | jobs/s | round p50 | round p99 | rounds | CPU, process | CPU, nats-server | CPU, PostgreSQL | fired once |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");

    // The reference: the same events, published raw in the same batches, PubAcks awaited.
    {
        let env = Environment::start().await;
        let zone = daytime_zone();
        let messages: Vec<_> = (0..jobs)
            .map(|index| {
                let phone = format!("+1{}", 2_000_000_000 + index);
                Envelope::new(env.tenant, "bench", lead(&phone, zone))
                    .to_message()
                    .unwrap()
            })
            .collect();
        let cpu = Cpu::read(&env.nats_pid);
        let started = Instant::now();
        let mut rounds = Vec::new();
        for chunk in messages.chunks(usize::try_from(batch).unwrap()) {
            let at = Instant::now();
            env.bus.publish_all(chunk).await.unwrap();
            rounds.push(at.elapsed());
        }
        let elapsed = started.elapsed();
        let [process, nats, postgres] = Cpu::read(&env.nats_pid).since(&cpu, elapsed);
        rounds.sort();
        let stored = env
            .messages_on(&subjects::leads_resolved(TenantToken::Id(&env.tenant)))
            .await;
        println!(
            "| raw JetStream publish of the same `lead.resolved`, batches of {batch} | {jobs} | {:.2} s | {:.0} | {} | {} | {} | {process} | {nats} | {postgres} | {} |",
            elapsed.as_secs_f64(),
            rate(jobs, elapsed),
            ms(percentile(&rounds, 0.50)),
            ms(percentile(&rounds, 0.99)),
            rounds.len(),
            if stored == jobs { "(all stored)" } else { "NO" },
        );
        env.finish().await;
    }

    let rows = [
        (
            Mode::DatabaseOnly,
            1usize,
            "claim + mark fired only (no checks, no publish), 1 loop",
        ),
        (Mode::Full, 1, "1 scheduler"),
        (Mode::Full, 2, "2 schedulers"),
    ];
    for (mode, schedulers, what) in rows {
        // A fresh server and database per row, so a row does not inherit the previous one's
        // stream, table and dead tuples.
        let env = Environment::start().await;
        let runtimes: Vec<Runtime> = (0..schedulers).map(|_| env.runtime()).collect();
        let subject = subjects::leads_resolved(TenantToken::Id(&env.tenant));
        // Warm up: connections, the tenant snapshot, prepared statements.
        env.insert_due_jobs(1_000, 3_000_000_000).await;
        let warm = drain(&runtimes, &settings, mode).await;
        assert_eq!(warm.fired, 1_000, "the warm-up fired every job");

        let setup = env.insert_due_jobs(jobs, 2_000_000_000).await;
        let cpu = Cpu::read(&env.nats_pid);
        let run = drain(&runtimes, &settings, mode).await;
        let [process, nats, postgres] = Cpu::read(&env.nats_pid).since(&cpu, run.elapsed);

        let expected = jobs + 1_000;
        let states = env.job_states().await;
        let messages = env.messages_on(&subject).await;
        let all_fired = states == [("fired".to_owned(), i64::try_from(expected).unwrap())];
        let claimed_once =
            run.claimed == usize::try_from(jobs).unwrap() && run.fired == run.claimed;
        let one_message_each = match mode {
            Mode::Full => messages == expected,
            Mode::DatabaseOnly => messages == 0,
        };
        let verdict = if all_fired && claimed_once && one_message_each {
            "yes".to_owned()
        } else {
            format!(
                "NO: states {states:?}, claimed {}, fired {}, messages {messages}",
                run.claimed, run.fired
            )
        };
        println!(
            "| {what}, batches of {batch} | {jobs} | {:.2} s | {:.0} | {} | {} | {} | {process} | {nats} | {postgres} | {verdict} |",
            run.elapsed.as_secs_f64(),
            rate(jobs, run.elapsed),
            ms(percentile(&run.rounds, 0.50)),
            ms(percentile(&run.rounds, 0.99)),
            run.rounds.len(),
        );
        // Whether rounds slow down as fired rows pile up in the table and its indexes.
        let tenth = (run.in_order.len() / 10).max(1);
        let median_of = |part: &[Duration]| {
            let mut part = part.to_vec();
            part.sort();
            ms(percentile(&part, 0.5))
        };
        eprintln!(
            "({what}: {jobs} jobs inserted in {:.2} s; slowest round {}; round p50 over the first tenth {}, the last tenth {})",
            setup.as_secs_f64(),
            ms(run.rounds.last().copied().unwrap_or_default()),
            median_of(&run.in_order[..tenth.min(run.in_order.len())]),
            median_of(&run.in_order[run.in_order.len().saturating_sub(tenth)..]),
        );
        for runtime in runtimes {
            runtime.store.pool().close().await;
        }
        env.finish().await;
    }
}
