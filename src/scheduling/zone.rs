//! The time zone a lead's scheduled times are computed in.
//!
//! Fallback order (resolve_tenant decides the first three when the lead arrives):
//!
//! 1. the zone the sender gave (a CRM field, the API request);
//! 2. the zone of the phone number, when its area code or country has exactly one;
//! 3. the tenant's zone (`configuration.timezone`, else the client's);
//! 4. a zone that does not parse (a stored lead from an older build) also falls back to the
//!    tenant's.
//!
//! Cases 3 and 4 are guesses: the job is flagged (`scheduled_jobs.timezone_fallback`, shown
//! by the API), so an operator can see which leads may be called at the wrong local hour.

use chrono_tz::Tz;

use crate::events::lead_flow::{LeadResolved, TimezoneSource};

/// A lead's zone and whether it is a fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeadZone {
    /// The zone.
    pub tz: Tz,
    /// True when the lead's own zone was not known.
    pub fallback: bool,
}

/// Returns the zone of `lead`, falling back to `tenant_tz` as documented above.
#[must_use]
pub fn of(lead: &LeadResolved, tenant_tz: Tz) -> LeadZone {
    match lead.timezone.parse::<Tz>() {
        Ok(tz) => LeadZone {
            tz,
            fallback: lead.timezone_source == TimezoneSource::Tenant,
        },
        Err(_) => LeadZone {
            tz: tenant_tz,
            fallback: true,
        },
    }
}
