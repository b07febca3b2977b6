//! Settings of call admission (`rate_limit`), dialing (`dial`) and the telephony callbacks.

use std::time::Duration;

use serde::Deserialize;

/// Admission cycles of the `rate_limit` stage (ADR 0016).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionSettings {
    /// Time between two admission cycles of one worker, in milliseconds.
    pub cycle_ms: u64,
    /// How far ahead of now a pacing slot may be when its lead is admitted, in milliseconds;
    /// bounds how many admitted calls wait in the dial stage per tenant.
    pub horizon_ms: u64,
    /// Pacing runs this fraction below a configured rate, so that jitter between a slot and
    /// the provider receiving the request (up to `margin × 1 s`) cannot put one call too many
    /// into any one-second window.
    pub pacing_margin: f64,
    /// Calls started per second from one caller number (carriers flag faster numbers;
    /// Twilio's default is 1).
    pub caller_number_calls_per_second: f64,
    /// Most tenants one cycle serves (a bound on one cycle's length); the rest wait for the
    /// next cycle, least recently served first.
    pub max_tenants_per_cycle: i64,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        Self {
            cycle_ms: 100,
            horizon_ms: 1_000,
            pacing_margin: 0.1,
            caller_number_calls_per_second: 1.0,
            max_tenants_per_cycle: 500,
        }
    }
}

impl AdmissionSettings {
    /// Returns the time between two cycles.
    #[must_use]
    pub fn cycle(&self) -> Duration {
        Duration::from_millis(self.cycle_ms.max(1))
    }

    /// Returns how far ahead a pacing slot may be at admission.
    #[must_use]
    pub fn horizon(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(i64::try_from(self.horizon_ms).unwrap_or(1_000))
    }

    /// Returns the spacing of calls paced at `per_second`, with the margin applied.
    #[must_use]
    pub fn interval(&self, per_second: f64) -> chrono::Duration {
        let per_second = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            1.0
        };
        let margin = self.pacing_margin.clamp(0.0, 0.5);
        let micros = (1_000_000.0 * (1.0 + margin) / per_second).ceil();
        // A saturating float-to-int cast: an absurdly slow rate becomes "very rarely".
        #[allow(clippy::cast_possible_truncation)]
        chrono::Duration::microseconds(micros as i64)
    }
}

/// The dial stage and the telephony callbacks.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelephonySettings {
    /// Our public base URL as the provider reaches it (`https://calls.example.com`); status
    /// callback URLs are built from it, and their signatures are checked against it.
    pub public_base_url: String,
    /// The Media Streams WebSocket URL answered calls connect to (`wss://…/media/twilio`).
    pub media_stream_url: String,
    /// How long the callee's phone rings before the provider gives up, in seconds.
    pub ring_timeout_secs: u32,
    /// How long after dialing the dial stage waits for the provider's callbacks before it
    /// concludes, from the provider's call list, that an unconfirmed call was never placed.
    pub reconcile_grace_secs: u64,
    /// A dial that wakes later than this after its pacing slot takes a fresh slot instead, in
    /// milliseconds (keeps calls spaced even when the dial stage was busy).
    pub late_tolerance_ms: u64,
    /// Test-only fault point: `after_intent` or `after_provider` makes the dial stage stop
    /// there forever (so a test can SIGKILL it at exactly that point). Empty: none.
    pub fault_pause_at: String,
}

impl Default for TelephonySettings {
    fn default() -> Self {
        Self {
            public_base_url: "http://127.0.0.1:8080".to_owned(),
            media_stream_url: "ws://127.0.0.1:8080/media/twilio".to_owned(),
            ring_timeout_secs: 30,
            reconcile_grace_secs: 15,
            late_tolerance_ms: 25,
            fault_pause_at: String::new(),
        }
    }
}

/// The converse stage: session leases, engine reconnects, agent tools.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConverseSettings {
    /// Sessions one worker process holds at once (its capacity in the consumer group).
    pub max_sessions: usize,
    /// How long a session's lease lasts without a heartbeat, in milliseconds: a dead
    /// worker's calls are taken over this long after its last heartbeat.
    pub lease_ttl_ms: u64,
    /// How often a worker renews its leases, in milliseconds (well under `lease_ttl_ms`).
    pub heartbeat_ms: u64,
    /// How often a worker looks for sessions without a live owner, in milliseconds.
    pub scan_ms: u64,
    /// How long an agent tool may run before the agent hears that it failed, in milliseconds.
    pub tool_timeout_ms: u64,
    /// A session with no caller audio for this long ends (the media stream died without a
    /// `stop`), in milliseconds.
    pub media_timeout_ms: u64,
    /// Engine reconnects per session before the caller hears the goodbye.
    pub engine_reconnects: u32,
    /// What the caller hears when the engine cannot be reached (said by the telephony
    /// provider before it hangs up).
    pub goodbye: String,
    /// What a resumed agent says first after a worker or engine failure.
    pub resume_line: String,
}

impl Default for ConverseSettings {
    fn default() -> Self {
        Self {
            max_sessions: 500,
            lease_ttl_ms: 3_000,
            heartbeat_ms: 1_000,
            scan_ms: 200,
            tool_timeout_ms: 8_000,
            media_timeout_ms: 15_000,
            engine_reconnects: 3,
            goodbye: "Sorry, we are having technical trouble. We will call you back. Goodbye."
                .to_owned(),
            resume_line: "Sorry, I lost you for a second. Where were we?".to_owned(),
        }
    }
}
