//! `caller demo`: the platform end to end on one machine, with no vendor credentials.
//!
//! 1. Starts what is not running: the vendor simulator ([`simulator`], unless something
//!    answers on its address) and ingress with every stage (as `caller all`, unless a caller
//!    answers `/readyz` on `http.listen`).
//! 2. Onboards the demo client `demo-dental` if missing ([`tenant`]); its secrets stay in the
//!    state directory, mode 600, never printed.
//! 3. Sends four leads ([`leads`], [`fire`]): HighLevel and Zoho workflow webhooks, a signed
//!    custom webhook and an API call, in zones where it is daytime now.
//! 4. Prints a line per call state change, read from PostgreSQL every half second, until
//!    every call is written to the CRM or the time is up.
//! 5. Prints the summary table ([`summary`]) with each booking looked up in the HighLevel
//!    simulator. It succeeds when at least one appointment is booked (in our ledger and at
//!    HighLevel) and every call ended as its simulated callee dictates.

pub mod fire;
pub mod leads;
pub mod simulator;
pub mod summary;
pub mod tenant;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;

use crate::app::{self, Role};
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::store::Store;
use leads::{DemoLead, Expected};
use summary::CallRow;

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The longest the calls may take, from the first lead sent to the table.
    pub timeout: Duration,
    /// Where the vendor simulator is (or is started).
    pub simulator: SocketAddr,
    /// Where the demo client's secrets are kept (`<state>/demo/`).
    pub state_dir: PathBuf,
    /// Only onboard (or update) the demo client; send nothing.
    pub setup_only: bool,
    /// Seconds between two leads, so the answered calls book one after the other.
    pub stagger: Duration,
}

/// What the demo saw.
#[derive(Debug)]
pub struct DemoReport {
    /// The leads sent.
    pub leads: Vec<DemoLead>,
    /// One row per call, oldest first.
    pub rows: Vec<CallRow>,
    /// What went wrong; empty on success.
    pub problems: Vec<String>,
}

impl DemoReport {
    /// Returns true when something was booked and nothing went wrong.
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Runs the demo and prints its progress and summary on standard output.
///
/// # Errors
///
/// When something it needs cannot start or be reached (database, NATS, ports, master key);
/// a demo that ran but booked nothing returns a report with problems instead.
pub async fn run(settings: Settings, options: DemoOptions) -> anyhow::Result<DemoReport> {
    let shutdown = Shutdown::new();
    let result = run_inner(settings, &options, &shutdown).await;
    shutdown.trigger();
    result
}

async fn run_inner(
    settings: Settings,
    options: &DemoOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<DemoReport> {
    let http = crate::providers::http::client();
    let simulator = format!("http://{}", options.simulator);
    let ingress = format!("http://{}", local_address(settings.http.listen));

    if tokio::net::TcpStream::connect(options.simulator)
        .await
        .is_ok()
    {
        say(&format!("reusing the vendor simulator on {simulator}"));
    } else {
        let listener = tokio::net::TcpListener::bind(options.simulator)
            .await
            .with_context(|| format!("bind the vendor simulator on {}", options.simulator))?;
        tokio::spawn(simulator::serve(listener, shutdown.clone()));
        say(&format!(
            "vendor simulator on {simulator} (Twilio, ElevenLabs, HighLevel, Zoho)"
        ));
    }

    app::migrate(&settings).await?;
    let store = Store::connect(&settings.database).await?;
    let demo = tenant::ensure(&settings, &store, &simulator, &options.state_dir).await?;
    say(&format!(
        "demo client `{}` {} ({}); its secrets are in {}",
        tenant::SLUG,
        if demo.created { "created" } else { "ready" },
        demo.id,
        options.state_dir.join("demo").display()
    ));
    if options.setup_only {
        return Ok(DemoReport {
            leads: Vec::new(),
            rows: Vec::new(),
            problems: Vec::new(),
        });
    }

    let pipeline = if ready(&http, &ingress).await {
        say(&format!("reusing the caller running on {ingress}"));
        // Its tenancy cache may hold the demo client's previous configuration.
        let bus = app::connect_bus(&settings).await?;
        crate::tenancy::directory::notify_changed(&bus, demo.id).await;
        None
    } else {
        say(&format!("starting ingress and every stage on {ingress}"));
        let task = tokio::spawn(app::run_until(
            settings.clone(),
            Role::All,
            shutdown.clone(),
        ));
        wait_ready(&http, &ingress, Duration::from_secs(60)).await?;
        Some(task)
    };

    let since = Utc::now() - chrono::TimeDelta::seconds(1);
    let plan = leads::plan(Utc::now());
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let targets = fire::Targets {
        http: &http,
        ingress: &ingress,
        simulator: &simulator,
        tenant: demo.id,
        secrets: &demo.secrets,
        run: &run_id,
    };
    let deadline = tokio::time::Instant::now() + options.timeout;
    let mut watcher = Watcher::new(&plan);
    for (index, lead) in plan.iter().enumerate() {
        if index > 0 {
            watch_for(&mut watcher, &store, demo.id, since, options.stagger).await?;
        }
        let contact = fire::upsert_contact(&targets, lead).await?;
        fire::send(&targets, lead, &contact).await?;
        println!(
            "{:<10} {:<10} sent by {} ({}, {})",
            lead.first_name,
            "lead",
            lead.channel.label(),
            lead.phone,
            lead.zone.name()
        );
    }
    let mut rows;
    loop {
        rows = summary::gather(&store, demo.id, since, &watcher.phones).await?;
        watcher.show(&rows);
        let all_settled = plan.iter().all(|lead| {
            rows.iter()
                .any(|row| row.phone == lead.phone && row.settled())
        });
        if all_settled || tokio::time::Instant::now() >= deadline || shutdown.is_triggered() {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    summary::check_highlevel(&http, &simulator, &mut rows).await;
    println!();
    print!("{}", summary::render(&plan, &rows));
    let problems = problems(&plan, &rows, options.timeout);

    if let Some(task) = pipeline {
        shutdown.trigger();
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(error = format!("{error:#}"), "pipeline stopped"),
            Err(error) => tracing::warn!(%error, "pipeline task failed"),
        }
    }
    Ok(DemoReport {
        leads: plan,
        rows,
        problems,
    })
}

/// How often the database is read for progress.
const POLL: Duration = Duration::from_millis(500);

/// Watches for `period`, printing changes.
async fn watch_for(
    watcher: &mut Watcher,
    store: &Store,
    tenant: crate::ids::TenantId,
    since: chrono::DateTime<Utc>,
    period: Duration,
) -> anyhow::Result<()> {
    let until = tokio::time::Instant::now() + period;
    while tokio::time::Instant::now() < until {
        let rows = summary::gather(store, tenant, since, &watcher.phones).await?;
        watcher.show(&rows);
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Prints each call's steps once, in order, as they are first seen.
struct Watcher {
    names: BTreeMap<String, String>,
    phones: Vec<String>,
    shown: BTreeSet<(String, &'static str)>,
}

impl Watcher {
    fn new(plan: &[DemoLead]) -> Self {
        Self {
            names: plan
                .iter()
                .map(|lead| (lead.phone.to_owned(), lead.first_name.to_owned()))
                .collect(),
            phones: plan.iter().map(|lead| lead.phone.to_owned()).collect(),
            shown: BTreeSet::new(),
        }
    }

    fn show(&mut self, rows: &[CallRow]) {
        for row in rows {
            for (step, detail) in steps(row) {
                if self.shown.insert((row.phone.clone(), step)) {
                    let name = self.names.get(&row.phone).map_or("?", String::as_str);
                    let stamp = Utc::now().format("%H:%M:%S");
                    println!("{name:<10} {step:<10} {detail}  [{stamp}]");
                }
            }
        }
    }
}

/// Returns the steps a call has reached, in their order, with a detail each.
fn steps(row: &CallRow) -> Vec<(&'static str, String)> {
    let attempt = row.attempt_state.as_deref().unwrap_or_default();
    let mut steps = vec![("queued", format!("call {}", row.call_id))];
    if !attempt.is_empty() {
        steps.push(("dialing", row.phone.clone()));
    }
    let rang = row.answered_at.is_some()
        || matches!(attempt, "ringing" | "answered" | "no_answer")
        || row.outcome.as_deref() == Some("no_answer");
    if rang {
        steps.push(("ringing", String::new()));
    }
    if row.answered_at.is_some() {
        steps.push(("talking", "the agent is on the line".to_owned()));
    }
    if let Some(at) = row.booked_at {
        steps.push((
            "booked",
            format!("appointment at {}", at.format("%Y-%m-%d %H:%M UTC")),
        ));
    }
    match row.outcome.as_deref() {
        Some("no_answer") => steps.push(("no answer", "a retry is scheduled".to_owned())),
        Some("busy") => steps.push(("busy", "a retry is scheduled".to_owned())),
        Some("human") => {
            let talk = row
                .duration_seconds
                .map_or_else(String::new, |seconds| format!("after {seconds}s"));
            steps.push(("ended", talk));
        }
        Some(other) => steps.push(("ended", other.replace('_', " "))),
        None => {}
    }
    if row.summarized {
        steps.push(("summarized", String::new()));
    }
    if row.crm_synced {
        steps.push((
            "synced",
            "note, status and tags written to HighLevel".to_owned(),
        ));
    }
    steps
}

/// Returns what went wrong: a lead without a call, an outcome other than its callee's, no
/// booking in our ledger, at HighLevel and in analytics, or a call not written to the CRM
/// or recorded by analytics in time.
fn problems(plan: &[DemoLead], rows: &[CallRow], timeout: Duration) -> Vec<String> {
    let mut problems = Vec::new();
    for lead in plan {
        let Some(row) = rows.iter().find(|row| row.phone == lead.phone) else {
            problems.push(format!(
                "{} ({}) produced no call within {}s: see `caller dlq list`",
                lead.name(),
                lead.channel.label(),
                timeout.as_secs()
            ));
            continue;
        };
        let outcome = row.outcome.as_deref();
        if outcome != Some(lead.expected.outcome()) {
            problems.push(format!(
                "{}'s call ended `{}`, expected `{}`",
                lead.name(),
                outcome.unwrap_or("unsettled"),
                lead.expected.outcome()
            ));
        } else if !row.crm_synced {
            problems.push(format!(
                "{}'s call was not written to the CRM within {}s",
                lead.name(),
                timeout.as_secs()
            ));
        }
        if !row.in_analytics {
            problems.push(format!(
                "{}'s call (or its booking) did not reach the analytics tables within {}s",
                lead.name(),
                timeout.as_secs()
            ));
        }
        if lead.expected == Expected::Booked
            && row.booked_at.is_some()
            && row.in_highlevel != Some(true)
        {
            problems.push(format!(
                "{}'s appointment is in our ledger but not in the HighLevel simulator",
                lead.name()
            ));
        }
    }
    let booked = rows
        .iter()
        .filter(|row| row.booked_at.is_some() && row.in_highlevel == Some(true) && row.in_analytics)
        .count();
    if booked == 0 {
        problems.push("no appointment was booked".to_owned());
    }
    problems
}

async fn ready(http: &reqwest::Client, ingress: &str) -> bool {
    http.get(format!("{ingress}/readyz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|response| response.status().is_success())
}

async fn wait_ready(http: &reqwest::Client, ingress: &str, limit: Duration) -> anyhow::Result<()> {
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        if ready(http, ingress).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!(
        "ingress did not become ready on {ingress} within {}s",
        limit.as_secs()
    )
}

/// `0.0.0.0:8080` is reached as `127.0.0.1:8080`.
fn local_address(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    }
}

fn say(line: &str) {
    println!("demo: {line}");
}
