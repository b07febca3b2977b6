//! Twilio request signatures (being built).
