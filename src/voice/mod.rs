//! Voice-agent wire formats. Today: the ElevenLabs Agents (Conversational AI) WebSocket
//! messages ([`elevenlabs_wire`]), typed for the converse stage's voice bridge. Nothing uses
//! these types yet; the bridge that speaks them comes with the converse issue.

pub mod elevenlabs_wire;
