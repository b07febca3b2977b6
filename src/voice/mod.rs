//! Voice engines: the [`engine::VoiceEngine`] trait the converse stage talks to, its
//! ElevenLabs implementation ([`elevenlabs`]) and the ElevenLabs Agents WebSocket messages
//! ([`elevenlabs_wire`]). [`conformance`] (feature `test-util`) holds the checks every
//! implementation of the trait must pass.

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
pub mod elevenlabs;
pub mod elevenlabs_wire;
pub mod engine;
