//! `caller`: a multi-tenant platform that places and answers phone calls with voice AI
//! agents, built as a stream-processing pipeline on NATS JetStream.
//!
//! # Layout
//!
//! - [`cli`], [`commands`]: the command line and what each command does.
//! - [`app`]: builds the process from [`settings`] and runs roles until [`shutdown`].
//! - [`bus`]: the bus contract — subjects, envelope, codec, delivery, outbox, the stage
//!   runner, dead letters and provisioning.
//! - [`events`]: every bus event type and their catalogue; [`schemas`] exports their JSON
//!   Schemas.
//! - [`stages`]: one module per pipeline stage; [`pipeline`] compiles `pipelines/*.yaml`.
//! - [`store`]: PostgreSQL pool, migrations, one module of queries per table.
//! - [`http`]: health, readiness and metrics endpoints; [`metrics`]: per-stage counters.
//! - [`ingress`]: the webhook routes and their authentication; [`normalize`]: per-source
//!   normalizers into the `lead.received` event.
//! - [`crypto`]: sealed credentials (AES-256-GCM) and the master keyring.
//! - [`metabase`]: the version-controlled Metabase cards and dashboards, and their
//!   provisioning through Metabase's REST API.
//! - [`demo`]: `caller demo`, the platform end to end against the vendor simulators.
//! - [`providers`]: vendor adapters (Twilio, Zoho reads, healthchecks) and the vendor
//!   simulators.
//! - [`ids`], [`secret`], [`error`]: typed ids, redacting secrets, the stage error taxonomy.
//! - [`telemetry`]: JSON logs, one span per message.
//! - [`media`]: the media plane (binary frames on `media.<call>.*`) and the Twilio Media Streams
//!   gateway; [`voice`]: the voice engine trait and its ElevenLabs implementation;
//!   [`recording`]: sealed call recordings; [`booking`]: calendars and lead records for the
//!   agent's tools; [`summary`]: conversation summaries, outcomes and sentiment.

pub mod api;
pub mod app;
pub mod booking;
pub mod bus;
pub mod calls;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod crm;
pub mod crypto;
pub mod demo;
pub mod error;
pub mod events;
pub mod hex;
pub mod http;
pub mod ids;
pub mod ingress;
pub mod integrations;
pub mod media;
pub mod metabase;
pub mod metrics;
pub mod normalize;
pub mod phone;
pub mod pipeline;
pub mod providers;
pub mod recording;
pub mod scheduling;
#[cfg(any(test, feature = "test-util"))]
#[doc(hidden)]
pub mod schema_check;
pub mod schemas;
pub mod secret;
pub mod settings;
pub mod shutdown;
pub mod stages;
pub mod store;
pub mod summary;
pub mod telemetry;
pub mod tenancy;
pub mod voice;
