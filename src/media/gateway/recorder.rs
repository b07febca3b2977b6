//! Call recording off the media path: a blocking writer task fed through a bounded channel.
//!
//! The session hands the recorder one pair of 20 ms frames per inbound frame (the caller's
//! audio and what Twilio is playing to them at that moment). The writer seals them into a
//! [`SealedWavWriter`] on a blocking thread. When the writer falls behind and the channel is
//! full, frames are dropped and the recording is marked truncated: audio to and from the
//! caller is never delayed by the disk.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use crate::ids::{AttemptId, CallId, TenantId};
use crate::recording::mulaw;
use crate::recording::sealed::{SealedError, SealedWavWriter};
use crate::store::Store;

/// Frames buffered between the session and the writer: 5 s of audio.
const QUEUE_FRAMES: usize = 250;

/// μ-law silence, what Twilio plays when nothing is queued.
const MULAW_SILENCE: u8 = 0xFF;

/// The relative location of a recording under the recordings directory.
#[must_use]
pub fn location(tenant: TenantId, call: CallId, attempt: AttemptId) -> PathBuf {
    PathBuf::from(tenant.to_string())
        .join(call.to_string())
        .join(format!("{attempt}.wav.sealed"))
}

/// The additional data every segment of a call's recording is sealed with: it binds the file
/// to its tenant, call and attempt, so it cannot be passed off as another call's.
#[must_use]
pub fn context(tenant: TenantId, call: CallId, attempt: AttemptId) -> Vec<u8> {
    format!("caller/recording/v1|{tenant}|{call}|{attempt}").into_bytes()
}

/// What Twilio is playing to the caller, as far as the gateway can tell: the agent audio sent
/// and not yet played. It advances by one inbound frame's length per inbound frame (Twilio
/// plays in real time while it sends the caller's audio) and is emptied by `clear`, as
/// Twilio's own buffer is.
#[derive(Debug, Default)]
pub(super) struct Playout {
    queued: VecDeque<u8>,
}

impl Playout {
    /// Queues agent audio sent to Twilio.
    pub(super) fn push(&mut self, mulaw: &[u8]) {
        self.queued.extend(mulaw);
    }

    /// Empties the queue (a `clear` was sent).
    pub(super) fn clear(&mut self) {
        self.queued.clear();
    }

    /// Takes the next `len` bytes that play, padded with silence when the queue runs dry.
    pub(super) fn take(&mut self, len: usize) -> Vec<u8> {
        let available = len.min(self.queued.len());
        let mut out: Vec<u8> = self.queued.drain(..available).collect();
        out.resize(len, MULAW_SILENCE);
        out
    }
}

/// One 20 ms slice of both channels, decoded.
struct Slice {
    caller: Vec<i16>,
    agent: Vec<i16>,
}

/// How a recording ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Finished {
    /// Length of the audio written, in seconds (`None` when the file could not be finished).
    pub duration_secs: Option<f64>,
    /// True when frames were dropped or a write failed.
    pub truncated: bool,
}

/// A running recording: feed it with [`Recorder::frame`], end it with [`Recorder::finish`].
pub(super) struct Recorder {
    frames: mpsc::Sender<Slice>,
    writer: tokio::task::JoinHandle<Result<f64, SealedError>>,
    playout: Playout,
    dropped: u64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Creates the file (and its directories) and starts the writer.
    pub(super) async fn start(
        path: PathBuf,
        key_id: String,
        key: [u8; 32],
        context: Vec<u8>,
    ) -> Result<Self, SealedError> {
        let writer = tokio::task::spawn_blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            SealedWavWriter::create(&path, &key_id, &key, &context)
        })
        .await
        .map_err(|join| SealedError::Io(std::io::Error::other(join.to_string())))??;
        let (frames, mut receiver) = mpsc::channel::<Slice>(QUEUE_FRAMES);
        let writer = tokio::task::spawn_blocking(move || {
            let mut writer = writer;
            let mut failed = None;
            while let Some(slice) = receiver.blocking_recv() {
                if failed.is_none()
                    && let Err(error) = writer.write_frames(&slice.caller, &slice.agent)
                {
                    // Keep draining so the session never blocks; the file is lost anyway.
                    failed = Some(error);
                }
            }
            match failed {
                Some(error) => Err(error),
                None => writer.finish(),
            }
        });
        Ok(Self {
            frames,
            writer,
            playout: Playout::default(),
            dropped: 0,
        })
    }

    /// Agent audio was sent to Twilio.
    pub(super) fn agent_audio(&mut self, mulaw: &[u8]) {
        self.playout.push(mulaw);
    }

    /// A `clear` was sent to Twilio.
    pub(super) fn cleared(&mut self) {
        self.playout.clear();
    }

    /// One inbound frame of caller audio arrived: records it beside what played meanwhile.
    /// Never waits: a full queue drops the frame.
    pub(super) fn frame(&mut self, caller: &[u8]) {
        let agent = self.playout.take(caller.len());
        let mut slice = Slice {
            caller: Vec::with_capacity(caller.len()),
            agent: Vec::with_capacity(agent.len()),
        };
        mulaw::decode_into(caller, &mut slice.caller);
        mulaw::decode_into(&agent, &mut slice.agent);
        if self.frames.try_send(slice).is_err() {
            self.dropped += 1;
        }
    }

    /// Closes the queue, waits for the writer to seal the file, and says how it went.
    pub(super) async fn finish(self) -> Finished {
        drop(self.frames);
        let truncated = self.dropped > 0;
        if truncated {
            tracing::warn!(
                dropped = self.dropped,
                "recording fell behind; frames dropped"
            );
        }
        match self.writer.await {
            Ok(Ok(duration)) => Finished {
                duration_secs: Some(duration),
                truncated,
            },
            Ok(Err(error)) => {
                tracing::warn!(%error, "recording could not be written");
                Finished {
                    duration_secs: None,
                    truncated: true,
                }
            }
            Err(error) => {
                tracing::warn!(%error, "recording writer failed");
                Finished {
                    duration_secs: None,
                    truncated: true,
                }
            }
        }
    }
}

/// Inserts the `call_recordings` row of a recording that starts now (state `recording`).
pub(super) async fn insert_row(
    store: &Store,
    tenant: TenantId,
    call: CallId,
    attempt: AttemptId,
    location: &Path,
    key_id: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = store.begin_tenant(tenant).await?;
    sqlx::query(
        "INSERT INTO call_recordings (attempt_id, call_id, tenant_id, location, key_id, state)
         VALUES ($1, $2, $3, $4, $5, 'recording')",
    )
    .bind(attempt.as_uuid())
    .bind(call.as_uuid())
    .bind(tenant.as_uuid())
    .bind(location.to_string_lossy().as_ref())
    .bind(key_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Marks a recording `complete` (or `truncated`) with its length.
pub(super) async fn complete_row(
    store: &Store,
    tenant: TenantId,
    attempt: AttemptId,
    finished: Finished,
) -> Result<(), sqlx::Error> {
    let state = if finished.truncated {
        "truncated"
    } else {
        "complete"
    };
    let mut tx = store.begin_tenant(tenant).await?;
    sqlx::query(
        "UPDATE call_recordings
            SET state = $2, duration_secs = $3, completed_at = now()
          WHERE attempt_id = $1",
    )
    .bind(attempt.as_uuid())
    .bind(state)
    .bind(finished.duration_secs)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playout_advances_by_frame_and_pads_with_silence() {
        let mut playout = Playout::default();
        playout.push(&[1; 200]);
        assert_eq!(playout.take(160), vec![1; 160]);
        let rest = playout.take(160);
        assert_eq!(&rest[..40], &[1; 40]);
        assert!(rest[40..].iter().all(|byte| *byte == MULAW_SILENCE));
        playout.push(&[2; 160]);
        playout.clear();
        assert!(playout.take(160).iter().all(|byte| *byte == MULAW_SILENCE));
    }
}
