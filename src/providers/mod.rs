//! Outbound integrations with the vendors a tenant connects (telephony, voice agents, CRMs,
//! calendars).
//!
//! - [`http`]: the one HTTP client builder; every outbound request goes through a client it
//!   builds, so every request has timeouts.
//! - [`health`]: the per-provider healthcheck run when a tenant connects credentials: each
//!   vendor's cheapest authenticated call, classified into a [`health::HealthReport`].
//! - [`sim`]: a minimal in-process simulator that answers those healthcheck endpoints in each
//!   vendor's wire format, so healthchecks run against it (demo, tests) or against the real
//!   vendor by changing only `base_url`.
//! - [`telephony`]: the provider-neutral [`telephony::Telephony`] contract (place, hang up,
//!   redirect and fetch calls) and its [`telephony::TelephonyError`] classification.
//! - [`twilio`]: the Twilio REST adapter of [`telephony::Telephony`].
//! - [`sim_twilio`]: a test double of Twilio Programmable Voice (Calls REST, call lifecycles
//!   with signed status callbacks, answering machine detection, a Media Streams client) that
//!   records what it is asked and what it sends.
//! - [`sim_elevenlabs`]: a test double of ElevenLabs Agents (signed URLs, the scripted
//!   conversation WebSocket with barge-in, pings and resumption, conversation details, signed
//!   post-call webhooks) that records what it is sent and sends.
//! - [`sim_gohighlevel`]: a test double of HighLevel API v2 (contacts, custom fields, tags,
//!   notes, opportunities, calendars and appointments, conversations, OAuth), with its rate
//!   limit, quirks and injectable faults, that records every request.
//! - [`sim_custom_crm`]: a generic REST CRM with an OpenAPI document, for the custom CRM
//!   adapter, checking each authentication scheme and recording every request.
//! - [`sim_openai`]: an OpenAI-compatible chat completions API for the LLM summarizer, checking
//!   the bearer key, recording every request and failing on demand.
//! - [`zoho`]: reading Zoho CRM records, for the records a Zoho notification names.
//! - [`tenant_secret`]: opens one stored credential of a tenant at the point of use.
//!
//! Providers are named by plain strings here ("twilio", "elevenlabs", "gohighlevel", "zoho",
//! "custom", "openai", "fonoster", "local", "caldav", "static", "crm", "google", "outlook",
//! "calendly", "acuity"). Invariant: a credential value never reaches a log line, an error message or a
//! report.

pub mod error;
pub mod health;
pub mod http;
pub mod sim;
pub mod sim_custom_crm;
pub mod sim_elevenlabs;
pub mod sim_gohighlevel;
pub mod sim_openai;
pub mod sim_twilio;
pub mod sim_zoho;
pub mod telephony;
pub mod tenant_secret;
pub mod twilio;
#[cfg(test)]
pub(crate) mod twilio_spec;
pub mod zoho;
