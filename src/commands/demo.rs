//! `caller demo`: runs [`crate::demo`] and turns its report into an exit status.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::demo::{self, DemoOptions};
use crate::settings::Settings;

pub(super) async fn demo_command(
    settings: Settings,
    timeout: u64,
    simulator: SocketAddr,
    state_dir: Option<PathBuf>,
    setup_only: bool,
) -> anyhow::Result<ExitCode> {
    let options = DemoOptions {
        timeout: Duration::from_secs(timeout),
        simulator,
        state_dir: state_dir.unwrap_or_else(demo::tenant::default_state_dir),
        setup_only,
        // Long enough for an answered call to book before the next lead's call asks for slots.
        stagger: Duration::from_secs(12),
    };
    let report = demo::run(settings, options).await?;
    if setup_only {
        return Ok(ExitCode::SUCCESS);
    }
    if report.succeeded() {
        println!("\ndemo: done: every call ended as expected and the appointment is in HighLevel");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("\ncaller: the demo did not go as expected:");
    for problem in &report.problems {
        eprintln!("  - {problem}");
    }
    Ok(ExitCode::FAILURE)
}
