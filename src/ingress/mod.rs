//! Inbound webhooks: the HTTP routes that turn CRM, telephony and voice-agent webhooks into bus
//! events. This component is being built; no route exists yet.
//!
//! - [`verify`]: pure functions that decide whether a webhook request is authentic before any
//!   of it is parsed or trusted: Standard Webhooks HMAC signatures, HighLevel marketplace-app
//!   signatures (Ed25519 and RSA), and per-tenant shared secrets for the unsigned webhooks of
//!   HighLevel and Zoho workflows.

pub mod verify;
