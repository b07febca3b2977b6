//! The media plane's frames: what travels on `media.<call_id>.in|out|ctl` (core NATS, not
//! stored; ARCHITECTURE.md "Two planes").
//!
//! A frame is binary: one kind byte, an 8-byte big-endian sequence number, then the body.
//! Audio is 8 kHz μ-law exactly as Twilio carries it (20 ms = 160 bytes inbound; outbound
//! frames may be any length, the gateway passes them on as one `media` message). JSON or
//! MessagePack would cost a base64 or a map per 20 ms frame at 50 frames a second per call
//! in each direction; the plane carries nothing but these few shapes, so a fixed layout is
//! both smaller and simpler.
//!
//! Sequence numbers are per subject and per sender: the gateway numbers `in`, the converse
//! worker numbers `out` and `ctl`. A receiver uses them to notice loss (core NATS drops a
//! frame a slow consumer cannot take) and reordering, never to wait for a retransmission:
//! late audio is worse than lost audio.

use bytes::{BufMut as _, Bytes, BytesMut};

/// Bytes before the body: the kind and the sequence number.
pub const HEADER_LEN: usize = 9;

/// 20 ms of 8 kHz μ-law, the inbound frame size.
pub const FRAME_BYTES: usize = 160;

/// One frame of the media plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaFrame {
    /// Caller audio (`in`) or agent audio (`out`): μ-law 8 kHz.
    Audio(Bytes),
    /// A keypad digit the caller pressed (`in`).
    Dtmf(char),
    /// Twilio played the audio queued before this mark, or a `clear` flushed it (`in`).
    MarkPlayed(String),
    /// The telephony stream stopped: the caller hung up or the call was redirected (`in`).
    Stopped,
    /// Empty the caller's playback buffer now: the caller barged in (`ctl`).
    Clear,
    /// Tell us (with [`MediaFrame::MarkPlayed`]) when the audio sent so far has played (`ctl`).
    Mark(String),
    /// Let the audio sent so far play out, then end the stream so the call hangs up (`ctl`).
    Hangup,
}

/// A frame and its sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequenced {
    /// The sender's sequence number on this subject, from 1.
    pub seq: u64,
    /// The frame.
    pub frame: MediaFrame,
}

/// Why bytes are not a media frame.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the header.
    #[error("media frame of {0} bytes is shorter than its header")]
    Short(usize),
    /// A kind byte this build does not know.
    #[error("unknown media frame kind {0}")]
    UnknownKind(u8),
    /// A text body (mark name, digit) is not UTF-8, or a digit is not one character.
    #[error("media frame body is not valid for its kind")]
    Body,
}

const AUDIO: u8 = 1;
const DTMF: u8 = 2;
const MARK_PLAYED: u8 = 3;
const STOPPED: u8 = 4;
const CLEAR: u8 = 16;
const MARK: u8 = 17;
const HANGUP: u8 = 18;

impl Sequenced {
    /// Encodes the frame for the wire.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut digit = [0_u8; 4];
        let (kind, body): (u8, &[u8]) = match &self.frame {
            MediaFrame::Audio(audio) => (AUDIO, audio),
            MediaFrame::Dtmf(character) => (DTMF, character.encode_utf8(&mut digit).as_bytes()),
            MediaFrame::MarkPlayed(name) => (MARK_PLAYED, name.as_bytes()),
            MediaFrame::Stopped => (STOPPED, &[]),
            MediaFrame::Clear => (CLEAR, &[]),
            MediaFrame::Mark(name) => (MARK, name.as_bytes()),
            MediaFrame::Hangup => (HANGUP, &[]),
        };
        let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
        out.put_u8(kind);
        out.put_u64(self.seq);
        out.put_slice(body);
        out.freeze()
    }

    /// Decodes a frame; never panics on hostile input.
    ///
    /// # Errors
    ///
    /// [`FrameError`] when the bytes are not a frame this build knows.
    pub fn decode(bytes: &Bytes) -> Result<Self, FrameError> {
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::Short(bytes.len()));
        }
        let kind = bytes[0];
        let mut seq = [0_u8; 8];
        seq.copy_from_slice(&bytes[1..HEADER_LEN]);
        let seq = u64::from_be_bytes(seq);
        let body = bytes.slice(HEADER_LEN..);
        let text = || {
            std::str::from_utf8(&body)
                .map(str::to_owned)
                .map_err(|_| FrameError::Body)
        };
        let frame = match kind {
            AUDIO => MediaFrame::Audio(body.clone()),
            DTMF => {
                let digit = text()?;
                let mut characters = digit.chars();
                match (characters.next(), characters.next()) {
                    (Some(character), None) => MediaFrame::Dtmf(character),
                    _ => return Err(FrameError::Body),
                }
            }
            MARK_PLAYED => MediaFrame::MarkPlayed(text()?),
            STOPPED => MediaFrame::Stopped,
            CLEAR => MediaFrame::Clear,
            MARK => MediaFrame::Mark(text()?),
            HANGUP => MediaFrame::Hangup,
            other => return Err(FrameError::UnknownKind(other)),
        };
        Ok(Self { seq, frame })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let frames = [
            MediaFrame::Audio(Bytes::from_static(&[0xFF; FRAME_BYTES])),
            MediaFrame::Dtmf('#'),
            MediaFrame::MarkPlayed("utt-3".to_owned()),
            MediaFrame::Stopped,
            MediaFrame::Clear,
            MediaFrame::Mark("utt-4".to_owned()),
            MediaFrame::Hangup,
        ];
        for (seq, frame) in (1..).zip(frames) {
            let sequenced = Sequenced { seq, frame };
            let decoded = Sequenced::decode(&sequenced.encode()).unwrap();
            assert_eq!(decoded, sequenced);
        }
    }

    #[test]
    fn audio_frames_carry_nine_bytes_of_header() {
        let frame = Sequenced {
            seq: 258,
            frame: MediaFrame::Audio(Bytes::from_static(&[7; FRAME_BYTES])),
        };
        let bytes = frame.encode();
        assert_eq!(bytes.len(), HEADER_LEN + FRAME_BYTES);
        assert_eq!(&bytes[..HEADER_LEN], &[AUDIO, 0, 0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        assert_eq!(
            Sequenced::decode(&Bytes::from_static(&[1, 0])),
            Err(FrameError::Short(2))
        );
        assert_eq!(
            Sequenced::decode(&Bytes::from_static(&[99, 0, 0, 0, 0, 0, 0, 0, 1])),
            Err(FrameError::UnknownKind(99))
        );
        assert_eq!(
            Sequenced::decode(&Bytes::from_static(&[
                DTMF, 0, 0, 0, 0, 0, 0, 0, 1, b'1', b'2'
            ])),
            Err(FrameError::Body)
        );
        assert_eq!(
            Sequenced::decode(&Bytes::from_static(&[MARK, 0, 0, 0, 0, 0, 0, 0, 1, 0xC3])),
            Err(FrameError::Body)
        );
    }
}
