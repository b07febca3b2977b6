//! `caller-loadtest`: sends generated or recorded webhook traffic at `caller all` with every
//! vendor simulated, open-loop, and reports throughput, latency per stage and correctness.
//!
//! Layout:
//! - [`scenario`]: the scenario format, its checks and the refusal of unsupported fields;
//! - [`plan`] and [`template`]: a scenario's requests as JSONL (no secrets in it);
//! - [`harness`]: private nats-server, scratch database, simulators, tenants, `caller all`;
//! - [`send`]: the open-loop sender;
//! - [`observe`]: events on the bus, for per-stage latency;
//! - [`report`] and [`chart`]: figures, checks, table, JSON, SVG.

mod chart;
mod harness;
mod observe;
mod plan;
mod report;
mod scenario;
mod send;
mod template;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::time::Instant;

use crate::scenario::Scenario;

/// Load tester of the caller platform.
#[derive(Debug, Parser)]
#[command(name = "caller-loadtest", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a scenario file and say what it would send.
    Check {
        /// Scenario YAML.
        scenario: PathBuf,
    },
    /// Write a scenario's requests as JSONL (one request a line; no credentials).
    Generate {
        /// Scenario YAML.
        scenario: PathBuf,
        /// Output file.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Run a scenario: set everything up, send, drain, report.
    Run {
        /// Scenario YAML (target, tenants, vendors, stop and report settings).
        scenario: PathBuf,
        /// Replay these requests (JSONL from `generate`, or recorded) instead of generating.
        #[arg(long)]
        requests: Option<PathBuf>,
        /// Write the SVG chart here.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Repository root (`nats/`, `pipelines/`).
        #[arg(long, default_value = env!("CARGO_MANIFEST_DIR"))]
        root: PathBuf,
        /// Admin PostgreSQL URL, to create and own the scratch database.
        #[arg(
            long,
            env = "CALLER_TEST_DATABASE_URL",
            default_value = "postgres://caller:caller@127.0.0.1:5432/caller",
            hide_env_values = true
        )]
        admin_database_url: String,
        /// Application-role PostgreSQL URL (its database name is replaced).
        #[arg(
            long,
            env = "CALLER_TEST_APP_DATABASE_URL",
            default_value = "postgres://caller_app:caller_app@127.0.0.1:5432/caller",
            hide_env_values = true
        )]
        app_database_url: String,
        /// The platform's database pool (`database.max_connections`; default: the
        /// platform's own, 16). Every stage of `caller all` shares it.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=90))]
        database_connections: Option<u32>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("caller-loadtest: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { scenario } => {
            let scenario = Scenario::load(&scenario)?;
            let plan = plan::plan(&scenario, chrono::Utc::now())?;
            let leads: usize = plan.iter().map(|p| p.phones.len()).sum();
            println!(
                "ok {}: {} requests carrying {leads} leads over {} tenants",
                scenario.name,
                plan.len(),
                scenario.tenants.count
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate { scenario, out } => {
            let scenario = Scenario::load(&scenario)?;
            let plan = plan::plan(&scenario, chrono::Utc::now())?;
            plan::write(&plan, &out)?;
            eprintln!("wrote {} requests to {}", plan.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            scenario,
            requests,
            svg,
            root,
            admin_database_url,
            app_database_url,
            database_connections,
        } => {
            init_logs();
            let scenario = Scenario::load(&scenario)?;
            let options = harness::Options {
                admin_database_url,
                app_database_url,
                root,
                database_connections,
            };
            let report = run(&scenario, requests.as_deref(), &options, true).await?;
            println!("{}", report.table());
            let context = context(&scenario);
            if let Some(output) = &scenario.report.output {
                write_file(
                    output,
                    &serde_json::to_string_pretty(&report.json(&context))?,
                )?;
                eprintln!("report: {}", output.display());
            }
            if let Some(svg) = svg {
                write_file(&svg, &chart::svg(&report, &subtitle(&scenario)))?;
                eprintln!("chart: {}", svg.display());
            }
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create `{}`", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("write `{}`", path.display()))
}

/// Logs of `caller all` and the simulators: warnings and errors unless `RUST_LOG` says more.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init()
        .ok();
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| {
            format!(", {:.1} GiB", kib as f64 / 1_048_576.0)
        });
    format!("{cores} cores{memory}")
}

fn subtitle(scenario: &Scenario) -> String {
    format!(
        "{}; caller all in-process, release build; {} on {}",
        scenario.name,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine()
    )
}

fn context(scenario: &Scenario) -> serde_json::Value {
    serde_json::json!({
        "date": chrono::Utc::now().to_rfc3339(),
        "machine": machine(),
        "tenants": scenario.tenants.count,
        "duration_s": scenario.duration.0.as_secs_f64(),
        "warmup_s": scenario.warmup.0.as_secs_f64(),
        "topology": "caller all (ingress and every stage) in the load tester's process",
    })
}

/// Runs `scenario` end to end and returns its report; `progress` prints a line per interval.
async fn run(
    scenario: &Scenario,
    requests: Option<&Path>,
    options: &harness::Options,
    progress: bool,
) -> anyhow::Result<report::Report> {
    let listen = scenario::check_loopback(&scenario.target.base_url)?;
    let plan = match requests {
        Some(path) => plan::read(path, scenario.tenants.count)?,
        None => plan::plan(scenario, chrono::Utc::now())?,
    };
    let mut env = harness::Env::start(scenario, listen, options).await?;
    plan::create_crm_leads(&plan, &env.gohighlevel);
    let watcher = observe::Watcher::start(&env.nats_url).await?;
    let env_tenants = Arc::new(std::mem::take(&mut env.tenants));

    // Traffic starts shortly after set-up, so the first arrivals are not already late.
    let start = Instant::now() + Duration::from_millis(200);
    let wall_start = chrono::Utc::now() + chrono::Duration::milliseconds(200);
    let deadline = start + scenario.stop.max_duration.0;
    let counters = Arc::new(send::Progress::default());
    let ticker = progress.then(|| {
        let counters = counters.clone();
        let interval = scenario.report.interval.0.max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                eprintln!(
                    "[{:>5.0}s] sent {} answered {} in flight {} skipped {}",
                    start.elapsed().as_secs_f64(),
                    counters.sent.load(Ordering::Relaxed),
                    counters.answered.load(Ordering::Relaxed),
                    counters.in_flight.load(Ordering::Relaxed),
                    counters.skipped.load(Ordering::Relaxed),
                );
            }
        })
    });
    let outcomes = send::send_all(
        plan,
        env_tenants,
        env.base_url.clone(),
        start,
        deadline,
        scenario.target.max_in_flight,
        scenario.target.timeout.0,
        counters,
    )
    .await;

    // Drain: wait for create-calls until every accepted lead was called, the drain ends or
    // the hard limit passes.
    let accepted: std::collections::HashSet<&str> = outcomes
        .iter()
        .filter(|o| !o.replay && !o.invalid_auth)
        .flat_map(|o| o.accepted.iter().map(|(_, phone)| phone.as_str()))
        .collect();
    let drain_end = Instant::now() + scenario.stop.drain.0;
    let mut drain_cut = false;
    loop {
        let calls = env.twilio.calls();
        let called = calls
            .iter()
            .filter(|call| accepted.contains(call.to.as_str()))
            .count();
        if called >= accepted.len() {
            break;
        }
        if Instant::now() >= deadline {
            drain_cut = Instant::now() < drain_end;
            break;
        }
        if Instant::now() >= drain_end || !env.app_running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A moment for the last events in flight on the bus to reach the watcher.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    let app_failed = !env.app_running();
    let seen = watcher.finish();
    let created = created_calls(&env.twilio);
    env.stop().await?;
    if app_failed {
        anyhow::bail!("`caller all` stopped during the run (see its log above)");
    }
    let clock = report::Clock {
        start,
        wall_start,
        measure_from: scenario.warmup.0,
        measure_for: scenario.duration.0,
    };
    Ok(report::build(
        scenario, &clock, &outcomes, &seen, &created, drain_cut,
    ))
}

/// Every create-call the Twilio simulator accepted, with its number and arrival times.
fn created_calls(twilio: &caller::providers::sim_twilio::TwilioSimState) -> Vec<report::Created> {
    let to_by_sid: std::collections::HashMap<String, (String, chrono::DateTime<chrono::Utc>)> =
        twilio
            .created_at()
            .into_iter()
            .map(|(sid, to, at)| (sid, (to, at)))
            .collect();
    twilio
        .arrivals()
        .into_iter()
        .filter_map(|(sid, arrival)| {
            let (to, wall) = to_by_sid.get(&sid)?.clone();
            Some(report::Created {
                to,
                at: arrival.instant,
                wall,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
