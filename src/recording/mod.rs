//! Call recordings: μ-law audio decoded to a stereo WAV (caller left, agent right), sealed at
//! rest with AES-256-GCM in a streaming format. Groundwork for the converse issue, which
//! feeds it from the media gateway and references files from `call_recordings`.

pub mod mulaw;
pub mod sealed;
