//! The media gateway: holds a call's Twilio Media Streams WebSocket (`GET /media/twilio`) and
//! bridges it to the media plane (`media.<call>.in|out|ctl`, core NATS).
//!
//! Per socket ([`session`]):
//!
//! 1. Twilio must send `connected` then `start` within `media.start_timeout_ms`. The
//!    `start.customParameters` `tenant_id`, `call_id`, `attempt_id` and `token` (put there by
//!    the dial stage) must parse and the token must verify for exactly those ids. Anything
//!    else closes the socket with 1008 (policy violation) and publishes nothing.
//! 2. The gateway subscribes to `media.<call>.out` and `.ctl`, then publishes `call.answered`
//!    on JetStream (message id derived from the attempt and the stream sid, so a retried
//!    publish is stored once). A failed publish closes the socket with 1011: Twilio then runs
//!    the TwiML after `<Connect>` (the apology).
//! 3. Frames flow both ways at once, with no batching: Twilio `media` → `Audio` on `in`
//!    (sequence numbers from 1), `dtmf` → `Dtmf`, `mark` → `MarkPlayed`, `stop` or a closed
//!    socket → `Stopped`. From `ctl`/`out`: `Clear` → Twilio `clear` at once (control is
//!    polled before audio, and agent audio already waiting when a clear arrives was sent
//!    before it and is dropped), `Mark` → `mark`, `Audio` → `media`, `Hangup` → a `hangup-<n>`
//!    mark, then, once Twilio echoes it (the agent's last words played) or after
//!    `media.hangup_drain_timeout_ms`, the call is ended through the tenant's Twilio REST API
//!    and the socket closed.
//! 4. When the tenant's configuration has `record_calls`, both channels are recorded into a
//!    sealed stereo WAV ([`recorder`]) with a `call_recordings` row.
//!
//! Malformed frames from either side are logged and skipped. The stream token never appears
//! in a log line or an error.

mod recorder;
mod session;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use axum::routing::get;

pub use self::recorder::{context as recording_context, location as recording_location};
use crate::bus::Bus;
use crate::calls::stream_token::StreamTokens;
use crate::settings::MediaSettings;
use crate::store::Store;
use crate::tenancy::directory::Directory;

/// The `source` of the events the gateway publishes.
pub const SOURCE: &str = "caller/media/gateway";

/// What every media socket shares.
#[derive(Debug)]
pub struct MediaGateway {
    bus: Bus,
    store: Store,
    directory: Directory,
    tokens: StreamTokens,
    settings: MediaSettings,
    http: reqwest::Client,
}

impl MediaGateway {
    /// Builds the gateway; stream tokens are verified with keys derived from the directory's
    /// keyring.
    ///
    /// # Errors
    ///
    /// When the directory has no keyring: no stream token could be verified.
    pub fn new(
        bus: Bus,
        store: Store,
        directory: Directory,
        settings: MediaSettings,
    ) -> anyhow::Result<Self> {
        let tokens = directory
            .keyring()
            .map(|keyring| StreamTokens::from_keyring(keyring))
            .context("the media gateway needs the master keys (crypto settings)")?;
        Ok(Self {
            bus,
            store,
            directory,
            tokens,
            settings,
            http: crate::providers::http::client(),
        })
    }
}

/// Returns the media routes (`GET /media/twilio`).
pub fn router(gateway: Arc<MediaGateway>) -> Router {
    Router::new()
        .route("/media/twilio", get(twilio))
        .with_state(gateway)
}

/// `GET /media/twilio`: upgrades to a Media Streams session.
async fn twilio(State(gateway): State<Arc<MediaGateway>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| session::run(gateway, socket))
}
