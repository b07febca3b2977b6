//! The media plane's wire formats. Today: the Twilio Media Streams WebSocket protocol
//! ([`twilio_stream`]), typed for the converse stage's telephony gateway. Nothing uses these
//! types yet; the gateway that speaks them comes with the converse issue.

pub mod twilio_stream;
