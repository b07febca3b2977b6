//! The command line: every role and every operator tool of `caller`.

use std::path::PathBuf;

use clap::builder::RangedI64ValueParser;
use clap::{Parser, Subcommand};

use crate::secret::Secret;

/// Multi-tenant AI calling platform.
#[derive(Debug, Parser)]
#[command(name = "caller", version, about)]
pub struct Cli {
    /// TOML settings file (then `CALLER__SECTION__KEY` environment variables override it).
    #[arg(long, global = true, env = "CALLER_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run ingress and every stage in one process.
    All,
    /// Run the HTTP ingress only.
    Ingress,
    /// Run one stage (add processes to scale it).
    Stage {
        /// Stage name, as in `pipelines/`.
        name: String,
        /// Handlers in flight in this process (default: the pipeline's value).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Address for this process's health and metrics endpoints.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Create or verify every stream and consumer of `nats/`.
    Provision,
    /// Apply pending database migrations.
    Migrate,
    /// Serve the vendor simulators (Twilio calls and healthchecks, ElevenLabs, HighLevel, Zoho
    /// CRM and accounts, custom) on one port with their fixed demo credentials, for demos and
    /// local runs; never production. `simulate twilio` serves the Twilio simulator alone,
    /// `simulate elevenlabs` the ElevenLabs Agents simulator alone, `simulate gohighlevel` the
    /// HighLevel simulator alone, `simulate zoho` the Zoho simulator (CRM, accounts, Bookings)
    /// alone.
    Simulate {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090", global = true)]
        listen: std::net::SocketAddr,
        /// One vendor only, with its own options.
        #[command(subcommand)]
        vendor: Option<SimulateVendor>,
    },
    /// Run the platform end to end with the vendor simulators: onboard `demo-dental`, send
    /// four leads (HighLevel, Zoho, custom webhook, API), show each call live, then a summary.
    /// Starts the simulator and the pipeline unless they already answer. No credentials needed.
    Demo {
        /// Seconds the calls may take before the summary is printed.
        #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(u64).range(10..=3600))]
        timeout: u64,
        /// The vendor simulator's address (started there unless something answers).
        #[arg(long, default_value = "127.0.0.1:8090")]
        simulator: std::net::SocketAddr,
        /// Where the demo client's secrets are kept (default: `$CALLER_STATE_DIR`, else
        /// `~/.local/state/caller`).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Only onboard (or update) the demo client, then exit (`scripts/run.sh` uses it).
        #[arg(long)]
        setup_only: bool,
    },
    /// Inspect the pipeline topology.
    Pipeline {
        /// Subcommand.
        #[command(subcommand)]
        command: PipelineCommand,
    },
    /// Work with the bus event schemas.
    Schemas {
        /// Subcommand.
        #[command(subcommand)]
        command: SchemasCommand,
    },
    /// Inspect and act on dead letters.
    Dlq {
        /// Subcommand.
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Manage client businesses (tenants): onboarding, configuration, features, credentials.
    Tenant {
        /// Subcommand.
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Inspect, cancel and move a client's scheduled attempts (retries and follow-up stages).
    Schedule {
        /// Subcommand.
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// List, pause and resume a client's follow-up campaigns.
    Campaign {
        /// Subcommand.
        #[command(subcommand)]
        command: CampaignCommand,
    },
    /// Manage the master keys that seal tenant credentials.
    Keys {
        /// Subcommand.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Metabase: the read-only PostgreSQL role it connects as, and its dashboards.
    Metabase {
        /// Subcommand.
        #[command(subcommand)]
        command: MetabaseCommand,
    },
    /// Platform administration.
    Admin {
        /// Subcommand.
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// `caller simulate …`
#[derive(Debug, Subcommand)]
pub enum SimulateVendor {
    /// Serve only the Twilio simulator: Calls REST, lifecycles with signed status callbacks,
    /// answering machine detection and Media Streams.
    Twilio(TwilioSimArgs),
    /// Serve only the ElevenLabs Agents simulator: signed URLs, the scripted conversation
    /// WebSocket (or an echo agent), conversation details and signed post-call webhooks.
    #[command(name = "elevenlabs")]
    ElevenLabs(ElevenLabsSimArgs),
    /// Serve only the HighLevel API v2 simulator (contacts, custom fields, tags, notes,
    /// opportunities, calendars, conversations, OAuth) with its demo location and token.
    #[command(name = "gohighlevel")]
    GoHighLevel(GoHighLevelSimArgs),
    /// Serve only the Zoho simulator: accounts (token grants), CRM v8 records, tags, notes,
    /// calls and deals, and Zoho Bookings, with the simulators' demo app and refresh token.
    Zoho,
}

/// How `caller simulate gohighlevel` behaves.
#[derive(Debug, Clone, clap::Args)]
pub struct GoHighLevelSimArgs {
    /// Milliseconds added before every answer.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
}

/// How `caller simulate elevenlabs` behaves.
#[derive(Debug, Clone, clap::Args)]
pub struct ElevenLabsSimArgs {
    /// The `xi-api-key` to accept (default: the simulators' demo key).
    #[arg(long)]
    pub api_key: Option<String>,
    /// The agent id to serve.
    #[arg(long, default_value = "agent_sim_demo")]
    pub agent: String,
    /// A JSON script for the agent (`{"steps":[…]}`); without it, the built-in demo call.
    #[arg(long, conflicts_with = "echo")]
    pub script: Option<std::path::PathBuf>,
    /// Serve an echo agent (caller audio straight back) instead, for benchmarks.
    #[arg(long)]
    pub echo: bool,
    /// Where to POST signed `post_call_transcription` webhooks.
    #[arg(long, requires = "post_call_secret")]
    pub post_call_url: Option<String>,
    /// The HMAC secret signing the post-call webhooks.
    #[arg(long, requires = "post_call_url")]
    pub post_call_secret: Option<String>,
    /// Milliseconds between the agent's pings.
    #[arg(long, default_value_t = 2000)]
    pub ping_interval_ms: u64,
    /// How many times faster than real time agent audio is sent.
    #[arg(long, default_value_t = 1.0)]
    pub audio_speed: f64,
}

/// How `caller simulate twilio` behaves; an option left out keeps
/// [`SimBehaviour::default`](crate::providers::sim_twilio::SimBehaviour)'s value.
#[derive(Debug, Clone, clap::Args)]
pub struct TwilioSimArgs {
    /// Milliseconds before a create request is answered (the call is recorded on arrival).
    #[arg(long)]
    pub create_latency_ms: Option<u64>,
    /// Milliseconds from the answered create request to `ringing` (busy and failed end then).
    #[arg(long)]
    pub dial_ms: Option<u64>,
    /// Milliseconds of ringing before the answer or the unanswered end.
    #[arg(long)]
    pub ring_ms: Option<u64>,
    /// Milliseconds an answered call lasts before the callee hangs up.
    #[arg(long)]
    pub talk_ms: Option<u64>,
    /// Milliseconds answering machine detection takes after the answer.
    #[arg(long)]
    pub amd_delay_ms: Option<u64>,
    /// Outcome mix, e.g. `human=8,machine=1,no_answer=1` (also `busy`, `failed`, `canceled`).
    #[arg(long, value_parser = outcome_mix)]
    pub outcomes: Option<OutcomeMix>,
    /// Seed of the RNG drawing outcomes from the mix.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// A parsed `--outcomes` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeMix(pub Vec<(crate::providers::sim_twilio::SimOutcome, u32)>);

fn outcome_mix(text: &str) -> Result<OutcomeMix, crate::providers::sim_twilio::OutcomeMixError> {
    crate::providers::sim_twilio::parse_outcomes(text).map(OutcomeMix)
}

/// `caller metabase …` (docs/metabase.md).
#[derive(Debug, Subcommand)]
pub enum MetabaseCommand {
    /// Create (or update) the PostgreSQL login role Metabase reads as: a member of
    /// `caller_analytics_reader`, mapped to every tenant in `analytics.readers`. Runs as the
    /// schema owner (`database.owner_url`). Its password comes from
    /// `CALLER_METABASE_DB_PASSWORD`.
    Reader {
        /// The login role.
        #[arg(long, default_value = "caller_metabase")]
        role: String,
        /// The role's password.
        #[arg(long = "db-password", env = "CALLER_METABASE_DB_PASSWORD", hide_env_values = true, value_parser = secret)]
        password: Secret<String>,
    },
    /// Create or update the `caller` database connection, the collection, every card and
    /// every dashboard of `metabase/` through Metabase's REST API. Idempotent: objects are
    /// found by name and written only when they differ.
    Provision(MetabaseProvisionArgs),
}

/// How `caller metabase provision` reaches Metabase, and how Metabase reaches PostgreSQL.
#[derive(Debug, Clone, clap::Args)]
pub struct MetabaseProvisionArgs {
    /// Metabase's base URL.
    #[arg(
        long,
        env = "CALLER_METABASE_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    pub url: String,
    /// A Metabase admin's email.
    #[arg(long, env = "CALLER_METABASE_USER")]
    pub user: String,
    /// That admin's password (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "CALLER_METABASE_PASSWORD", hide_env_values = true, value_parser = secret)]
    pub password: Secret<String>,
    /// The folder with `dashboards.yaml` and `cards/`.
    #[arg(long, default_value = "metabase")]
    pub dir: PathBuf,
    /// PostgreSQL host as Metabase reaches it (compose: `postgres`).
    #[arg(long, default_value = "postgres")]
    pub db_host: String,
    /// PostgreSQL port.
    #[arg(long, default_value_t = 5432)]
    pub db_port: u16,
    /// The database.
    #[arg(long, default_value = "caller")]
    pub db_name: String,
    /// The reader login role (see `caller metabase reader`).
    #[arg(long, default_value = "caller_metabase")]
    pub db_user: String,
    /// The reader role's password.
    #[arg(long, env = "CALLER_METABASE_DB_PASSWORD", hide_env_values = true, value_parser = secret)]
    pub db_password: Secret<String>,
    /// Connect to PostgreSQL with TLS.
    #[arg(long)]
    pub db_ssl: bool,
    /// Send the reader password even if nothing else changed (Metabase never shows it back).
    #[arg(long)]
    pub update_password: bool,
}

/// Wraps a secret flag or environment value the moment it is parsed.
fn secret(text: &str) -> Result<Secret<String>, std::convert::Infallible> {
    Ok(Secret::new(text.to_owned()))
}

/// `caller pipeline …`
#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Check `pipelines/` against the stage registry and `nats/`.
    Check,
    /// Print the topology as a Mermaid flowchart.
    Graph,
    /// Send a canary probe through the running pipeline and wait for its answer.
    Ping {
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
}

/// `caller schemas …`
#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Write the JSON Schema of every bus event into `<dir>/events/`.
    Export {
        /// Schemas folder.
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
        /// Only report drift; exit non-zero when the files differ from the code.
        #[arg(long)]
        check: bool,
    },
}

/// `caller dlq …`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first.
    List {
        /// Only this stage's.
        #[arg(long)]
        stage: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one dead letter with its headers and payload.
    Show {
        /// Sequence in the DLQ stream (from `list`).
        sequence: u64,
    },
    /// Republish dead letters to their original subject with a new event id.
    Replay {
        /// Sequences to replay.
        #[arg(required_unless_present = "all")]
        sequences: Vec<u64>,
        /// Replay every dead letter (of `--stage` when given).
        #[arg(long)]
        all: bool,
        /// With `--all`: only this stage's.
        #[arg(long)]
        stage: Option<String>,
    },
    /// Delete dead letters.
    Purge {
        /// Only this stage's.
        #[arg(long)]
        stage: Option<String>,
        /// Confirm: purging cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

/// Audit entries one `tenant audit` may show.
fn entry_limit() -> RangedI64ValueParser<i64> {
    RangedI64ValueParser::new().range(1..=10_000)
}

/// Credentials one rotation transaction may hold.
fn batch_size() -> RangedI64ValueParser<i64> {
    RangedI64ValueParser::new().range(1..=crate::tenancy::rotation::MAX_BATCH)
}

/// `caller tenant …`
///
/// `<client>` is a client id or its slug.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Onboard a client, optionally with configuration, features and credentials from a file.
    Create {
        /// Unique slug (overrides the file's).
        #[arg(long)]
        slug: Option<String>,
        /// Display name (overrides the file's).
        #[arg(long)]
        name: Option<String>,
        /// IANA time zone, e.g. `America/New_York` (overrides the file's).
        #[arg(long)]
        timezone: Option<String>,
        /// JSON onboarding request: `slug`, `name`, `timezone`, `configuration`, `features`,
        /// `credentials` (as the management API's `POST /v1/clients`).
        #[arg(long, value_name = "FILE")]
        config_file: Option<PathBuf>,
    },
    /// List every client: id, slug, status, time zone, name.
    List,
    /// Show a client with its configuration, features and masked credentials (JSON).
    Show {
        /// Client id or slug.
        client: String,
    },
    /// Change a client's name or time zone.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true)))]
    Update {
        /// Client id or slug.
        client: String,
        /// New display name.
        #[arg(long, group = "change")]
        name: Option<String>,
        /// New IANA time zone.
        #[arg(long, group = "change")]
        timezone: Option<String>,
    },
    /// Disable a client: it places and answers no calls until enabled.
    Disable {
        /// Client id or slug.
        client: String,
    },
    /// Enable a disabled client.
    Enable {
        /// Client id or slug.
        client: String,
    },
    /// Show or replace a client's configuration.
    Config {
        /// Subcommand.
        #[command(subcommand)]
        command: TenantConfigCommand,
    },
    /// Set or delete a client's feature flags.
    Feature {
        /// Subcommand.
        #[command(subcommand)]
        command: TenantFeatureCommand,
    },
    /// Set, delete or list a client's provider credentials.
    Credential {
        /// Subcommand.
        #[command(subcommand)]
        command: TenantCredentialCommand,
    },
    /// Install HighLevel for a client from the authorization code of the marketplace install
    /// redirect (read from stdin): exchanges it and stores the `gohighlevel.oauth` token set.
    #[command(name = "gohighlevel-install")]
    GohighlevelInstall {
        /// Client id or slug.
        client: String,
    },
    /// Check each configured provider (crm, telephony, voice) with the client's credentials.
    Healthcheck {
        /// Client id or slug.
        client: String,
    },
    /// Show a client's audit log, newest first.
    Audit {
        /// Client id or slug.
        client: String,
        /// At most this many entries.
        #[arg(long, default_value_t = 50, value_parser = entry_limit())]
        limit: i64,
    },
}

/// `caller tenant config …`
#[derive(Debug, Subcommand)]
pub enum TenantConfigCommand {
    /// Print the configuration (JSON).
    Show {
        /// Client id or slug.
        client: String,
    },
    /// Replace the configuration with a JSON file.
    Set {
        /// Client id or slug.
        client: String,
        /// JSON configuration.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
}

/// `caller tenant feature …`
#[derive(Debug, Subcommand)]
pub enum TenantFeatureCommand {
    /// Set a feature flag.
    Set {
        /// Client id or slug.
        client: String,
        /// Flag name.
        flag: String,
        /// On or off.
        #[arg(long, action = clap::ArgAction::Set)]
        enabled: bool,
        /// Variant weights or parameters, a JSON object.
        #[arg(long, value_name = "JSON")]
        variants: Option<String>,
    },
    /// Delete a feature flag.
    Delete {
        /// Client id or slug.
        client: String,
        /// Flag name.
        flag: String,
    },
}

/// `caller tenant credential …`
#[derive(Debug, Subcommand)]
pub enum TenantCredentialCommand {
    /// Seal and store a credential read from standard input (never from the command line,
    /// which other users see in `ps` and the shell keeps in its history).
    Set {
        /// Client id or slug.
        client: String,
        /// Kind, `<provider>.<name>`, e.g. `twilio.auth_token`.
        kind: String,
        /// Expiry (RFC 3339), for tokens that have one.
        #[arg(long)]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Delete a credential.
    Delete {
        /// Client id or slug.
        client: String,
        /// Kind.
        kind: String,
    },
    /// List credentials, masked: kind, hint, key id, expiry, last change.
    List {
        /// Client id or slug.
        client: String,
    },
}

/// Scheduled attempts one `schedule list` may show.
fn attempt_limit() -> RangedI64ValueParser<i64> {
    RangedI64ValueParser::new().range(1..=crate::tenancy::schedule::MAX_LIMIT)
}

/// `caller schedule …`
///
/// `--client` is a client id or its slug.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// List scheduled attempts by due time, as a table with each lead's local due time.
    List {
        /// Client id or slug.
        #[arg(long)]
        client: String,
        /// Only this lead's number (E.164, or national in the client's region).
        #[arg(long)]
        phone: Option<String>,
        /// Only the lead with this CRM id.
        #[arg(long)]
        crm_contact_id: Option<String>,
        /// Only this follow-up campaign's stages (its id or name).
        #[arg(long)]
        campaign: Option<String>,
        /// Only attempts in this state: `pending`, `paused`, `fired` or `cancelled`.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = crate::tenancy::schedule::DEFAULT_LIMIT, value_parser = attempt_limit())]
        limit: i64,
    },
    /// Cancel one attempt that has not fired.
    Cancel {
        /// Client id or slug.
        #[arg(long)]
        client: String,
        /// Attempt id (from `schedule list`).
        job: String,
        /// Why (recorded with the attempt).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Cancel every attempt of a lead that has not fired.
    #[command(group(clap::ArgGroup::new("lead").required(true).multiple(true)))]
    CancelLead {
        /// Client id or slug.
        #[arg(long)]
        client: String,
        /// The lead's number.
        #[arg(long, group = "lead")]
        phone: Option<String>,
        /// The lead's CRM id.
        #[arg(long, group = "lead")]
        crm_contact_id: Option<String>,
        /// Why (recorded with each attempt).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Move an attempt that has not fired to another time (then into the lead's windows).
    Reschedule {
        /// Client id or slug.
        #[arg(long)]
        client: String,
        /// Attempt id (from `schedule list`).
        job: String,
        /// The new time, RFC 3339 (e.g. `2026-12-01T15:00:00Z`), not in the past.
        #[arg(long)]
        at: chrono::DateTime<chrono::Utc>,
    },
}

/// `caller campaign …`
///
/// `--client` is a client id or its slug; `<campaign>` a follow-up campaign's id or name.
#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// List the client's follow-up campaigns with their stages.
    List {
        /// Client id or slug.
        #[arg(long)]
        client: String,
    },
    /// Pause a campaign: its pending attempts (and new enrollments) wait until it resumes.
    Pause {
        /// Client id or slug.
        #[arg(long)]
        client: String,
        /// Campaign id or name.
        campaign: String,
    },
    /// Resume a paused campaign: its paused attempts are pending again.
    Resume {
        /// Client id or slug.
        #[arg(long)]
        client: String,
        /// Campaign id or name.
        campaign: String,
    },
}

/// `caller keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-seal every credential under the active master key (`crypto.active_key`). Keep the
    /// old keys configured until it reports 0 remaining.
    Rotate {
        /// Credentials per transaction.
        #[arg(long, default_value_t = 100, value_parser = batch_size())]
        batch: i64,
    },
}

/// `caller admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an API key and print it once on standard output.
    CreateKey {
        /// Label.
        #[arg(long)]
        name: String,
        /// Scopes (repeatable), e.g. `clients:read`; default: every scope.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Client id or slug the key acts for; without it, an operator key for every client.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke any API key at once, operator keys included.
    RevokeKey {
        /// Key id (from the API's key list, or the message `admin create-key` printed).
        key_id: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::providers::sim_twilio::SimOutcome;

    #[test]
    fn plain_simulate_keeps_its_listen_flag() {
        let cli = Cli::try_parse_from(["caller", "simulate", "--listen", "0.0.0.0:9000"])
            .expect("parses");
        let Command::Simulate { listen, vendor } = cli.command else {
            panic!("not simulate: {cli:?}");
        };
        assert_eq!(listen.to_string(), "0.0.0.0:9000");
        assert!(vendor.is_none());
    }

    #[test]
    fn simulate_twilio_takes_its_behaviour_flags() {
        let cli = Cli::try_parse_from([
            "caller",
            "simulate",
            "twilio",
            "--listen",
            "127.0.0.1:9100",
            "--create-latency-ms",
            "200",
            "--ring-ms",
            "50",
            "--outcomes",
            "human=8,machine=1,no_answer=1",
            "--seed",
            "7",
        ])
        .expect("parses");
        let Command::Simulate {
            listen,
            vendor: Some(SimulateVendor::Twilio(args)),
        } = cli.command
        else {
            panic!("not simulate twilio: {cli:?}");
        };
        assert_eq!(listen.to_string(), "127.0.0.1:9100");
        assert_eq!(args.create_latency_ms, Some(200));
        assert_eq!(args.ring_ms, Some(50));
        assert_eq!(args.talk_ms, None);
        assert_eq!(args.seed, Some(7));
        let mix = args.outcomes.expect("a mix").0;
        assert_eq!(
            mix,
            [
                (SimOutcome::Human, 8),
                (SimOutcome::Machine, 1),
                (SimOutcome::NoAnswer, 1)
            ]
        );
    }

    #[test]
    fn simulate_twilio_refuses_an_unknown_outcome() {
        let parsed = Cli::try_parse_from(["caller", "simulate", "twilio", "--outcomes", "robot=1"]);
        assert!(parsed.is_err());
    }

    #[test]
    fn simulate_elevenlabs_takes_its_agent_flags() {
        let cli = Cli::try_parse_from([
            "caller",
            "simulate",
            "elevenlabs",
            "--echo",
            "--agent",
            "agent_bench",
            "--post-call-url",
            "http://127.0.0.1:9/hook",
            "--post-call-secret",
            "wsec_x",
        ])
        .expect("parses");
        let Command::Simulate {
            vendor: Some(SimulateVendor::ElevenLabs(args)),
            ..
        } = cli.command
        else {
            panic!("not simulate elevenlabs: {cli:?}");
        };
        assert!(args.echo);
        assert_eq!(args.agent, "agent_bench");
        assert_eq!(args.ping_interval_ms, 2000);
        assert_eq!(args.post_call_secret.as_deref(), Some("wsec_x"));
    }

    #[test]
    fn simulate_elevenlabs_needs_both_webhook_flags_and_one_agent_kind() {
        for flags in [
            &["--post-call-url", "http://127.0.0.1:9/hook"][..],
            &["--echo", "--script", "demo.json"][..],
        ] {
            let parsed = Cli::try_parse_from(
                ["caller", "simulate", "elevenlabs"]
                    .iter()
                    .chain(flags.iter()),
            );
            assert!(parsed.is_err(), "{flags:?}");
        }
    }
}
