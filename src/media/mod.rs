//! The media plane: the Twilio Media Streams protocol ([`twilio_stream`]), the frames that
//! carry a call's audio and control over core NATS ([`frame`]) and the gateway that bridges the
//! two ([`gateway`]).

pub mod frame;
pub mod gateway;
pub mod twilio_stream;
