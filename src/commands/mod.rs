//! What each command does. Roles go to [`app::run`]; operator tools are short and print
//! plain text (one line per item) so they compose with shell tools.

use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;

use crate::app::{self, Role};
use crate::bus::dead_letter;
use crate::bus::envelope::Envelope;
use crate::bus::provision::Change;
use crate::bus::subjects::{self, TenantToken};
use crate::cli::{
    Cli, Command, DlqCommand, ElevenLabsSimArgs, PipelineCommand, SchemasCommand, SimulateVendor,
    TwilioSimArgs,
};
use crate::events::canary::{CanaryAnswered, CanaryRequested};
use crate::ids::TenantId;
use crate::settings::Settings;
use crate::{pipeline, schemas, telemetry};

mod demo;
mod metabase;
mod schedule;
mod tenant;

use self::schedule::{campaign_command, schedule_command};
use self::tenant::{admin_command, keys_command, tenant_command};

/// Runs one command; returns the process exit code.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    let is_role = matches!(
        cli.command,
        Command::All | Command::Ingress | Command::Stage { .. }
    );
    if !is_role && settings.log.filter == crate::settings::LogSettings::default().filter {
        // Operator tools print their results; keep routine connection logs off the terminal.
        settings.log.filter = "warn".to_owned();
        if matches!(cli.command, Command::Demo { .. }) {
            // The demo's own lines are the output; the pipeline's routine retries are not.
            settings.log.filter = "error".to_owned();
        }
    }
    telemetry::init(&settings.log);
    match cli.command {
        Command::All => app::run(settings, Role::All).await?,
        Command::Ingress => app::run(settings, Role::Ingress).await?,
        Command::Stage {
            name,
            concurrency,
            listen,
        } => {
            if let Some(listen) = listen {
                settings.http.listen = listen;
            }
            app::run(settings, Role::Stage { name, concurrency }).await?;
        }
        Command::Provision => {
            let (definitions, _) = app::load_topology(&settings)?;
            let bus = app::connect_bus(&settings).await?;
            for (what, change) in app::provision(&bus, &definitions).await? {
                match change {
                    Change::Created => println!("created   {what}"),
                    Change::Updated(keys) => println!("updated   {what} ({})", keys.join(", ")),
                    Change::Unchanged => println!("unchanged {what}"),
                }
            }
        }
        Command::Migrate => {
            app::migrate(&settings).await?;
            println!("migrations applied");
        }
        Command::Simulate { listen, vendor } => simulate(listen, vendor).await?,
        Command::Demo {
            timeout,
            simulator,
            state_dir,
            setup_only,
        } => return demo::demo_command(settings, timeout, simulator, state_dir, setup_only).await,
        Command::Pipeline { command } => return pipeline_command(&settings, command).await,
        Command::Schemas {
            command: SchemasCommand::Export { dir, check },
        } => {
            if check {
                let drifted = schemas::drift(&dir);
                if !drifted.is_empty() {
                    eprintln!(
                        "caller: schemas drifted from the code (run `caller schemas export`):"
                    );
                    for path in drifted {
                        eprintln!("  {path}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
                println!("schemas match the code");
            } else {
                for path in schemas::export(&dir)? {
                    println!("wrote {path}");
                }
            }
        }
        Command::Dlq { command } => dlq_command(&settings, command).await?,
        Command::Tenant { command } => return tenant_command(&settings, command).await,
        Command::Schedule { command } => schedule_command(&settings, command).await?,
        Command::Campaign { command } => campaign_command(&settings, command).await?,
        Command::Keys { command } => return keys_command(&settings, command).await,
        Command::Metabase { command } => metabase::metabase_command(&settings, command).await?,
        Command::Admin { command } => admin_command(&settings, command).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Serves every vendor simulator on `listen` (their routes do not overlap), or one vendor's
/// alone with its options.
async fn simulate(
    listen: std::net::SocketAddr,
    vendor: Option<SimulateVendor>,
) -> anyhow::Result<()> {
    use crate::providers::{sim, sim_gohighlevel, sim_twilio};

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| anyhow::anyhow!("bind simulator on {listen}: {error}"))?;
    let accounts = sim::SimAccounts::default();
    let twilio =
        sim_twilio::TwilioSimState::new(&accounts.twilio_account_sid, &accounts.twilio_auth_token);
    let (what, router) = match vendor {
        // The demo's simulator: callees who answer (or not), an agent that books.
        None => ("vendor simulator", crate::demo::simulator::router()),
        Some(SimulateVendor::Twilio(args)) => (
            "twilio simulator",
            sim_twilio::router(twilio.with_behaviour(twilio_behaviour(&args))),
        ),
        Some(SimulateVendor::ElevenLabs(args)) => (
            "elevenlabs simulator",
            crate::providers::sim_elevenlabs::router(elevenlabs_state(&args)?),
        ),
        Some(SimulateVendor::GoHighLevel(args)) => {
            let state = sim_gohighlevel::GoHighLevelSimState::demo();
            state.set_latency(Duration::from_millis(args.latency_ms));
            ("gohighlevel simulator", sim_gohighlevel::router(state))
        }
        Some(SimulateVendor::Zoho) => ("zoho simulator", zoho_router(&accounts)),
    };
    eprintln!("caller: {what} on http://{listen}");
    axum::serve(listener, router).await?;
    Ok(())
}

/// The Zoho simulator with one demo org, reached with the demo credentials' Zoho app and
/// refresh token.
/// NOTE: not merged into the combined simulator: `sim` already answers Zoho's healthcheck,
/// record and token paths there, and axum refuses overlapping routes.
fn zoho_router(accounts: &crate::providers::sim::SimAccounts) -> axum::Router {
    use crate::providers::sim_zoho::{ZohoSimConfig, ZohoSimState, router};
    let state = ZohoSimState::new(ZohoSimConfig {
        client_id: accounts.zoho_client_id.clone(),
        client_secret: accounts.zoho_client_secret.clone(),
        ..ZohoSimConfig::default()
    });
    state.add_org("60012345678", &accounts.zoho_refresh_token);
    router(state)
}

/// The ElevenLabs simulator `args` describe: one agent (scripted, demo or echo).
fn elevenlabs_state(
    args: &ElevenLabsSimArgs,
) -> anyhow::Result<crate::providers::sim_elevenlabs::ElevenLabsSimState> {
    use crate::providers::sim_elevenlabs::{ElevenLabsSimState, Script};

    let key = args
        .api_key
        .clone()
        .unwrap_or_else(|| crate::providers::sim::SimAccounts::default().elevenlabs_api_key);
    let state = ElevenLabsSimState::new(&key)
        .with_ping_interval(Duration::from_millis(args.ping_interval_ms))
        .with_audio_speed(args.audio_speed);
    let state = if args.echo {
        state.with_echo_agent(&args.agent)
    } else {
        let script = match &args.script {
            None => Script::demo(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|error| anyhow::anyhow!("read script {}: {error}", path.display()))?;
                serde_json::from_str(&text)
                    .map_err(|error| anyhow::anyhow!("parse script {}: {error}", path.display()))?
            }
        };
        state.with_agent(&args.agent, script)
    };
    Ok(match (&args.post_call_url, &args.post_call_secret) {
        (Some(url), Some(secret)) => state.with_post_call_webhook(url, secret),
        _ => state,
    })
}

/// The Twilio simulator's behaviour: `args` over the defaults.
fn twilio_behaviour(args: &TwilioSimArgs) -> crate::providers::sim_twilio::SimBehaviour {
    let defaults = crate::providers::sim_twilio::SimBehaviour::default();
    let millis = |flag: Option<u64>, default: Duration| flag.map_or(default, Duration::from_millis);
    crate::providers::sim_twilio::SimBehaviour {
        create_latency: millis(args.create_latency_ms, defaults.create_latency),
        dial: millis(args.dial_ms, defaults.dial),
        ring: millis(args.ring_ms, defaults.ring),
        talk: millis(args.talk_ms, defaults.talk),
        amd_delay: millis(args.amd_delay_ms, defaults.amd_delay),
        outcomes: args
            .outcomes
            .as_ref()
            .map_or(defaults.outcomes, |mix| mix.0.clone()),
        seed: args.seed.unwrap_or(defaults.seed),
        by_callee: defaults.by_callee,
        caller_script: defaults.caller_script,
    }
}

async fn pipeline_command(
    settings: &Settings,
    command: PipelineCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        PipelineCommand::Check => {
            let (_, topology) = app::load_topology(settings)?;
            for stage in &topology.stages {
                println!(
                    "ok {}: {}/{} concurrency {} → [{}]",
                    stage.name,
                    stage.stream,
                    stage.consumer,
                    stage.concurrency,
                    stage.outputs.join(", ")
                );
            }
        }
        PipelineCommand::Graph => {
            let (definitions, topology) = app::load_topology(settings)?;
            print!("{}", pipeline::mermaid(&topology, &definitions));
        }
        PipelineCommand::Ping { timeout } => {
            let bus = app::connect_bus(settings).await?;
            let request = Envelope::new(
                TenantId::PLATFORM,
                "caller/cli",
                CanaryRequested {
                    origin: "cli".to_owned(),
                },
            );
            // Subscribe before publishing so the answer cannot slip past us.
            let answers = subjects::canary_answered(TenantToken::Id(&TenantId::PLATFORM));
            let mut subscription = bus.client().subscribe(answers).await?;
            let started = tokio::time::Instant::now();
            bus.publish_all(&[request.to_message()?]).await?;
            let deadline = tokio::time::sleep(Duration::from_secs(timeout));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    () = &mut deadline => {
                        eprintln!("caller: no answer within {timeout}s: is `caller all` (or `caller stage canary`) running?");
                        return Ok(ExitCode::FAILURE);
                    }
                    Some(message) = subscription.next() => {
                        let Ok(answer) = Envelope::<CanaryAnswered>::decode(message.headers.as_ref(), &message.payload) else { continue };
                        if answer.meta.causation_id == Some(request.meta.event_id) {
                            println!("pong: event {} answered in {} ms", answer.meta.event_id, started.elapsed().as_millis());
                            return Ok(ExitCode::SUCCESS);
                        }
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn dlq_command(settings: &Settings, command: DlqCommand) -> anyhow::Result<()> {
    let bus = app::connect_bus(settings).await?;
    match command {
        DlqCommand::List { stage, limit } => {
            let letters = dead_letter::list(&bus, stage.as_deref(), limit).await?;
            if letters.is_empty() {
                println!("no dead letters");
            }
            for letter in letters {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    letter.sequence,
                    letter.stored_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    letter.stage,
                    letter.event_type.as_deref().unwrap_or("-"),
                    letter.original_subject,
                    letter.reason
                );
            }
        }
        DlqCommand::Show { sequence } => {
            let letter = dead_letter::get(&bus, sequence).await?;
            let mut shown = serde_json::to_value(&letter)?;
            shown["payload"] = letter.payload_as_json().unwrap_or_else(|| {
                serde_json::Value::String(format!(
                    "<{} bytes, not MessagePack>",
                    letter.payload.len()
                ))
            });
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        DlqCommand::Replay {
            sequences,
            all,
            stage,
        } => {
            let targets: Vec<u64> = if all {
                dead_letter::list(&bus, stage.as_deref(), usize::MAX)
                    .await?
                    .iter()
                    .map(|l| l.sequence)
                    .collect()
            } else {
                sequences
            };
            for sequence in targets {
                let new_id = dead_letter::replay(&bus, sequence).await?;
                println!("replayed {sequence} as event {new_id}");
            }
        }
        DlqCommand::Purge { stage, yes } => {
            anyhow::ensure!(
                yes,
                "purging dead letters cannot be undone: add --yes to confirm"
            );
            let purged = dead_letter::purge(&bus, stage.as_deref()).await?;
            println!("purged {purged} dead letters");
        }
    }
    Ok(())
}
