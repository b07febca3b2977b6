//! `caller`: parse the command line, load settings, set up telemetry, dispatch.

use std::process::ExitCode;

use clap::Parser;

use caller::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match caller::commands::dispatch(cli).await {
        Ok(code) => code,
        Err(error) => {
            // One line: what failed and where (causes joined), never a panic or a backtrace.
            eprintln!("caller: {error:#}");
            ExitCode::FAILURE
        }
    }
}
