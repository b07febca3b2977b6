//! Scheduling: when a lead is called again, and when it must not be (ADR 0020).
//!
//! Pure decisions, no I/O; the `scheduler` stage (`stages::scheduler`) applies them and its
//! claim loop fires the jobs they create.
//!
//! - [`retry`]: what an ended attempt leads to: a retry (technical failures soon, with
//!   bounded jitter; no answer, busy and voicemail along the ladder), an escalation to a
//!   follow-up campaign when attempts ran out, or nothing.
//! - [`timing`]: every planned instant moves into the lead's next allowed window
//!   (`calls::window`: legal hours and calling windows on the callee's clock, business hours
//!   and holidays on the business's).
//! - [`campaign`]: follow-up campaigns: stages at a day offset and a time of day in the
//!   lead's zone; the CRM events that enroll a lead.
//! - [`stop`]: the CRM events that stop a lead.
//! - [`zone`]: which time zone a lead's times are computed in, and whether it was a guess.

pub mod campaign;
pub mod retry;
pub mod stop;
pub mod timing;
pub mod zone;
