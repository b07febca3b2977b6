//! Tenancy: client businesses, their configuration, feature flags, credentials and API keys.
//!
//! The types here are the management API's vocabulary. Each input type validates into a list
//! of [`FieldError`]s naming the offending field (`configuration.business_hours[1].close`),
//! which the API answers as 422. Persistence is in `store::tenants`; every change goes through
//! [`service`] (or, for a client's schedule, [`schedule`] and [`follow_ups`]), which writes the
//! audit log in the same transaction.

pub mod api_keys;
pub mod audit;
pub mod config;
pub mod directory;
pub mod follow_ups;
pub mod oauth;
pub mod rotation;
pub mod schedule;
pub mod service;

use serde::Serialize;
use utoipa::ToSchema;

/// One invalid field of an input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON path of the field, e.g. `configuration.timezone`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// Returns an error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Validates a client slug: lowercase letters, digits and dashes, 2 to 63 characters.
pub fn validate_slug(field: &str, slug: &str, errors: &mut Vec<FieldError>) {
    let valid = (2..=63).contains(&slug.len())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-');
    if !valid {
        errors.push(FieldError::new(
            field,
            "must be 2-63 lowercase letters, digits or dashes, not starting with a dash",
        ));
    }
}

/// Validates a display name: 1 to 200 characters after trimming.
pub fn validate_name(field: &str, name: &str, errors: &mut Vec<FieldError>) {
    let length = name.trim().chars().count();
    if !(1..=200).contains(&length) {
        errors.push(FieldError::new(field, "must be 1-200 characters"));
    }
}

/// Validates an IANA time zone name.
pub fn validate_timezone(field: &str, zone: &str, errors: &mut Vec<FieldError>) {
    if zone.parse::<chrono_tz::Tz>().is_err() {
        errors.push(FieldError::new(
            field,
            format!("`{zone}` is not an IANA time zone (e.g. America/New_York)"),
        ));
    }
}
