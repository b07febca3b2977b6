//! Twilio Media Streams frames (protocols A8): [`Inbound`] is what Twilio sends on a
//! `<Connect><Stream>` WebSocket, [`Outbound`] what we may send back.
//!
//! The structs mirror the wire exactly, so a frame round-trips unchanged: the counters
//! (`sequenceNumber`, `media.chunk`, `media.timestamp`) stay JSON strings as Twilio sends them,
//! and accessors such as [`Inbound::sequence`] parse them. Audio is base64 of raw μ-law 8 kHz
//! mono with no header; [`MediaChunk::decode_payload`] and [`Outbound::media`] convert it.
//! Fields Twilio may add later are ignored (the schema leaves objects open for that reason).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// Every `event` value [`Inbound`] understands, to tell an unknown event from a malformed one.
const KNOWN_EVENTS: &[&str] = &["connected", "start", "media", "dtmf", "mark", "stop"];

/// Why a Media Streams frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The text is not JSON, or not a JSON object with a string `event`.
    #[error("malformed Media Streams frame: {0}")]
    Malformed(String),
    /// The frame is well formed but its `event` is not one this module knows.
    #[error("unknown Media Streams event {0:?}")]
    UnknownEvent(String),
    /// The `event` is known but a field is missing or has the wrong type.
    #[error("invalid Media Streams `{event}` frame: {source}")]
    Invalid {
        /// The frame's `event`.
        event: String,
        /// What serde found wrong.
        source: serde_json::Error,
    },
    /// A `payload` is not valid base64.
    #[error("Media Streams payload is not valid base64: {0}")]
    Payload(#[from] base64::DecodeError),
}

/// Parses one text frame received from Twilio. Never panics; every failure is a [`WireError`].
pub fn parse(text: &str) -> Result<Inbound, WireError> {
    serde_json::from_str(text).map_err(|source| classify(text, source))
}

/// Tells apart, after a failed parse, an unknown event from a malformed or invalid frame.
fn classify(text: &str, source: serde_json::Error) -> WireError {
    /// Only the tag: every other field is ignored.
    #[derive(Deserialize)]
    struct Probe {
        event: String,
    }
    match serde_json::from_str::<Probe>(text) {
        Err(probe) => WireError::Malformed(probe.to_string()),
        Ok(Probe { event }) if KNOWN_EVENTS.contains(&event.as_str()) => {
            WireError::Invalid { event, source }
        }
        Ok(Probe { event }) => WireError::UnknownEvent(event),
    }
}

/// A frame Twilio sends, tagged by `event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Inbound {
    /// The first frame, before `start`; it carries no `streamSid`.
    Connected(Connected),
    /// Sent once after `connected`: the call, the tracks, the format and our `<Parameter>`s.
    Start(Start),
    /// One chunk of call audio.
    Media(Media),
    /// A key press (bidirectional streams only).
    Dtmf(Dtmf),
    /// A `mark` we sent, echoed once the audio queued before it has played or was cleared.
    Mark(MarkEcho),
    /// The stream stopped or the call ended; the socket closes next.
    Stop(Stop),
}

impl Inbound {
    /// The frame's `sequenceNumber` as a number; `None` for `connected` (which has none) or a
    /// counter that is not a decimal number.
    pub fn sequence(&self) -> Option<u64> {
        let text = match self {
            Self::Connected(_) => return None,
            Self::Start(frame) => &frame.sequence_number,
            Self::Media(frame) => &frame.sequence_number,
            Self::Dtmf(frame) => &frame.sequence_number,
            Self::Mark(frame) => &frame.sequence_number,
            Self::Stop(frame) => &frame.sequence_number,
        };
        counter(text)
    }

    /// The stream the frame belongs to; `None` for `connected`.
    pub fn stream_sid(&self) -> Option<&str> {
        match self {
            Self::Connected(_) => None,
            Self::Start(frame) => Some(&frame.stream_sid),
            Self::Media(frame) => Some(&frame.stream_sid),
            Self::Dtmf(frame) => Some(&frame.stream_sid),
            Self::Mark(frame) => Some(&frame.stream_sid),
            Self::Stop(frame) => Some(&frame.stream_sid),
        }
    }
}

/// Parses a wire counter. Only plain decimal digits count: `u64::from_str` would also take `+5`.
fn counter(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `connected`: the protocol handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connected {
    /// Always `Call` so far.
    pub protocol: String,
    /// The protocol version, e.g. `1.0.0`.
    pub version: String,
}

/// `start`: the stream's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Start {
    /// The counter as on the wire (`"1"`); see [`Inbound::sequence`].
    pub sequence_number: String,
    /// The metadata itself.
    pub start: StartMetadata,
    /// The stream's SID (`MZ` + 32 hex digits).
    pub stream_sid: String,
}

/// The body of `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartMetadata {
    /// The Twilio account (`AC…`).
    pub account_sid: String,
    /// The stream (`MZ…`), the same as the frame's `streamSid`.
    pub stream_sid: String,
    /// The call (`CA…`).
    pub call_sid: String,
    /// Which audio tracks the stream carries.
    pub tracks: Vec<Track>,
    /// The `<Parameter>`s of the `<Stream>` TwiML, by name. Defaults to empty because a
    /// missing map and an empty one mean the same to us.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
    /// The audio format; always μ-law, 8000 Hz, mono today.
    pub media_format: MediaFormat,
}

/// A stream's audio format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    /// The MIME type, `audio/x-mulaw`.
    pub encoding: String,
    /// Samples per second, `8000`.
    pub sample_rate: u32,
    /// Channels, `1`.
    pub channels: u16,
}

/// An audio track: the caller's side (`inbound`) or what is played to them (`outbound`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Track {
    /// Audio from the callee to Twilio.
    Inbound,
    /// Audio Twilio plays to the callee.
    Outbound,
}

/// `media` from Twilio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Media {
    /// The counter as on the wire; see [`Inbound::sequence`].
    pub sequence_number: String,
    /// The audio.
    pub media: MediaChunk,
    /// The stream (`MZ…`).
    pub stream_sid: String,
}

/// The body of an inbound `media` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaChunk {
    /// The track this audio is from.
    pub track: Track,
    /// The chunk counter as on the wire, from `"1"`; see [`MediaChunk::chunk_number`].
    pub chunk: String,
    /// Milliseconds since the stream started, as on the wire; see [`MediaChunk::timestamp_ms`].
    pub timestamp: String,
    /// Base64 of raw μ-law bytes.
    pub payload: String,
}

impl MediaChunk {
    /// The chunk counter as a number, if it is one.
    pub fn chunk_number(&self) -> Option<u64> {
        counter(&self.chunk)
    }

    /// Milliseconds since the stream started, if the field is a number.
    pub fn timestamp_ms(&self) -> Option<u64> {
        counter(&self.timestamp)
    }

    /// The raw μ-law bytes.
    pub fn decode_payload(&self) -> Result<Vec<u8>, WireError> {
        Ok(BASE64.decode(&self.payload)?)
    }
}

/// `dtmf`: a key press.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dtmf {
    /// The counter as on the wire; see [`Inbound::sequence`].
    pub sequence_number: String,
    /// The stream (`MZ…`).
    pub stream_sid: String,
    /// The key.
    pub dtmf: DtmfDigit,
}

/// The body of `dtmf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtmfDigit {
    /// Always `inbound_track`; kept as text since it is not the same vocabulary as [`Track`].
    pub track: String,
    /// One of `0-9`, `*`, `#`, `A-D`.
    pub digit: String,
}

/// `mark` echoed by Twilio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarkEcho {
    /// The counter as on the wire; see [`Inbound::sequence`].
    pub sequence_number: String,
    /// The stream (`MZ…`).
    pub stream_sid: String,
    /// The mark we sent.
    pub mark: Mark,
}

/// A named position in the outbound audio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Our name for it, echoed back unchanged.
    pub name: String,
}

/// `stop`: the end of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stop {
    /// The counter as on the wire; see [`Inbound::sequence`].
    pub sequence_number: String,
    /// The stream (`MZ…`).
    pub stream_sid: String,
    /// Which call stopped.
    pub stop: StopMetadata,
}

/// The body of `stop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopMetadata {
    /// The Twilio account (`AC…`).
    pub account_sid: String,
    /// The call (`CA…`).
    pub call_sid: String,
}

/// A frame we send to Twilio (bidirectional `<Connect><Stream>` only), tagged by `event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Outbound {
    /// Audio to queue for playback, in order.
    Media {
        /// The stream (`MZ…`).
        #[serde(rename = "streamSid")]
        stream_sid: String,
        /// The audio.
        media: OutboundMedia,
    },
    /// Asks Twilio to echo `name` once the audio queued before it has played.
    Mark {
        /// The stream (`MZ…`).
        #[serde(rename = "streamSid")]
        stream_sid: String,
        /// The mark to echo.
        mark: Mark,
    },
    /// Empties Twilio's playback queue (barge-in); every pending mark is then echoed.
    Clear {
        /// The stream (`MZ…`).
        #[serde(rename = "streamSid")]
        stream_sid: String,
    },
}

/// The body of an outbound `media` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMedia {
    /// Base64 of raw μ-law 8 kHz mono bytes, no header.
    pub payload: String,
}

impl OutboundMedia {
    /// The raw μ-law bytes.
    pub fn decode_payload(&self) -> Result<Vec<u8>, WireError> {
        Ok(BASE64.decode(&self.payload)?)
    }
}

impl Outbound {
    /// A `media` frame carrying `mulaw` (raw μ-law 8 kHz mono bytes), base64-encoded.
    pub fn media(stream_sid: impl Into<String>, mulaw: &[u8]) -> Self {
        Self::Media {
            stream_sid: stream_sid.into(),
            media: OutboundMedia {
                payload: BASE64.encode(mulaw),
            },
        }
    }

    /// A `mark` frame named `name`.
    pub fn mark(stream_sid: impl Into<String>, name: impl Into<String>) -> Self {
        Self::Mark {
            stream_sid: stream_sid.into(),
            mark: Mark { name: name.into() },
        }
    }

    /// A `clear` frame.
    pub fn clear(stream_sid: impl Into<String>) -> Self {
        Self::Clear {
            stream_sid: stream_sid.into(),
        }
    }
}
