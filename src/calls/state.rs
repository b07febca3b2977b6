//! The call state machine (being built).
