//! Voice engines: the [`engine::VoiceEngine`] trait the converse stage talks to, its
//! ElevenLabs implementation ([`elevenlabs`]) and the ElevenLabs Agents WebSocket messages
//! ([`elevenlabs_wire`]).

pub mod elevenlabs_wire;
pub mod engine;
