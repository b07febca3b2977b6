//! Settings of the media gateway (`[media]`, `CALLER__MEDIA__*`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The media gateway: Twilio Media Streams in, the media plane out, call recordings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSettings {
    /// Where sealed call recordings are written: `<dir>/<tenant>/<call>/<attempt>.wav.sealed`.
    /// Default: `$CALLER_STATE_DIR/recordings`, else `${XDG_STATE_HOME:-$HOME/.local/state}/caller/recordings`
    /// (the state directory the scripts already use for the development master key).
    pub recordings_dir: PathBuf,
    /// How long a new socket may take to send `connected` and `start`, in milliseconds.
    pub start_timeout_ms: u64,
    /// After a hang-up request, how long the audio already sent may play before the call is
    /// ended anyway, in milliseconds.
    pub hangup_drain_timeout_ms: u64,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            recordings_dir: state_dir().join("recordings"),
            start_timeout_ms: 5_000,
            hangup_drain_timeout_ms: 30_000,
        }
    }
}

impl MediaSettings {
    /// Returns the time allowed for `connected` and `start`.
    #[must_use]
    pub fn start_timeout(&self) -> Duration {
        Duration::from_millis(self.start_timeout_ms)
    }

    /// Returns how long a hang-up waits for the queued audio to play.
    #[must_use]
    pub fn hangup_drain_timeout(&self) -> Duration {
        Duration::from_millis(self.hangup_drain_timeout_ms)
    }
}

/// The platform's state directory, as `scripts/lib.sh` chooses it.
fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CALLER_STATE_DIR").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from(".local/state"));
    base.join("caller")
}
