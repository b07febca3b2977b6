//! Calling windows (being built).
