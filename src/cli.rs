//! The command line: every role and every operator tool of `caller`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
