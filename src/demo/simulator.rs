//! The vendor simulator the demo client talks to: Twilio (calls, signed callbacks, a scripted
//! callee on the Media Stream), ElevenLabs (the appointment-setting agent), HighLevel (the
//! demo location and calendar) and the healthcheck endpoints of every vendor, on one port.
//!
//! `caller simulate` (no vendor) and `caller demo` serve this same router, so a simulator
//! started by `scripts/run.sh` behaves exactly like the one the demo starts itself: the demo's
//! no-answer and busy callees are fixed numbers here ([`NO_ANSWER_PHONE`], [`BUSY_PHONE`]);
//! everybody else answers and books.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::providers::sim_twilio::{CallerStep, SimBehaviour, SimOutcome};
use crate::providers::{sim, sim_elevenlabs, sim_gohighlevel, sim_twilio};

/// The agent id of the demo client (`scripts/demo-tenant.json`).
pub const DEMO_AGENT: &str = "agent_demo";
/// The demo callee who never picks up.
pub const NO_ANSWER_PHONE: &str = "+12125550144";
/// The demo callee whose line is busy.
pub const BUSY_PHONE: &str = "+13125550166";

/// Returns the combined simulator's router with the simulators' fixed demo credentials.
pub fn router() -> axum::Router {
    let accounts = sim::SimAccounts::default();
    let twilio =
        sim_twilio::TwilioSimState::new(&accounts.twilio_account_sid, &accounts.twilio_auth_token)
            .with_behaviour(callee_behaviour());
    let elevenlabs = sim_elevenlabs::ElevenLabsSimState::new(&accounts.elevenlabs_api_key)
        .with_agent(DEMO_AGENT, sim_elevenlabs::Script::demo());
    sim::router_beside_elevenlabs(accounts)
        .merge(sim_twilio::router(twilio))
        .merge(sim_elevenlabs::router(elevenlabs))
        .merge(sim_gohighlevel::router_beside_health(
            sim_gohighlevel::GoHighLevelSimState::demo(),
        ))
}

/// The callees: a person who answers each of the agent's questions after it finished
/// speaking, except the demo's no-answer and busy numbers.
fn callee_behaviour() -> SimBehaviour {
    SimBehaviour {
        caller_script: vec![
            CallerStep::WaitForAgentAudio { timeout_ms: 30_000 },
            CallerStep::Speak { ms: 800 },
            CallerStep::WaitForAgentAudio { timeout_ms: 30_000 },
            CallerStep::Speak { ms: 800 },
        ],
        by_callee: BTreeMap::from([
            (NO_ANSWER_PHONE.to_owned(), SimOutcome::NoAnswer),
            (BUSY_PHONE.to_owned(), SimOutcome::Busy),
        ]),
        // Three seconds of ringing reads as ringing in the live view.
        ring: Duration::from_secs(3),
        ..SimBehaviour::default()
    }
}

/// Serves [`router`] on `listener` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: crate::shutdown::Shutdown,
) -> std::io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
