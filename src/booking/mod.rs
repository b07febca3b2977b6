//! Free slots and bookings behind one [`Calendar`] trait, and the lead changes agent tools
//! ask for.
//!
//! - [`Calendars`]: what the agent's tools call. It picks each tenant's calendar, serves free
//!   slots through the [`slot_cache`], keeps every booking in the `appointments` ledger (same
//!   lead and slot → the same booking) and, for external calendars, re-checks the slot at the
//!   source right before booking.
//! - [`static_schedule`]: weekly rules held in our database, double booking made impossible by
//!   an exclusion constraint.
//! - [`caldav::CalDav`]: a CalDAV (RFC 4791) collection; CRM-native calendars (HighLevel,
//!   Zoho Bookings) implement the same trait beside their CRM adapters; [`conformance`] is the suite every one of them passes.
//! - [`lead_updates`]: lead changes the agent asked for, carried to the CRM by `crm_sync`.
//!
//! Times are instants (`DateTime<Utc>`); the zone travels beside them ([`SlotQuery::zone`],
//! [`BookingRequest::zone`]) and slots are spoken in the lead's zone.

pub mod caldav;
pub mod calendars;
pub mod conformance;
pub mod lead_updates;
pub mod slot_cache;
pub mod static_schedule;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use futures::future::BoxFuture;
use serde::Serialize;

use crate::crm::ContactId;
use crate::ids::{CallId, PhoneNumber, TenantId};
use crate::providers::error::ProviderError;
pub use calendars::Calendars;

/// The longest range one slot request may cover (HighLevel's own limit, and enough for an
/// agent offering times).
pub const MAX_SLOT_RANGE_DAYS: i64 = 31;

/// A request for free slots, checked at the edge: `from` not in the past, `to` after `from`,
/// the range at most [`MAX_SLOT_RANGE_DAYS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotQuery {
    /// The earliest start.
    pub from: DateTime<Utc>,
    /// The latest end.
    pub to: DateTime<Utc>,
    /// At most this many slots, earliest first.
    pub limit: usize,
    /// The zone the slots will be offered in (the lead's); vendors that answer in a zone are
    /// asked in this one.
    pub zone: Tz,
}

impl SlotQuery {
    /// Checks a request against `now`. A `from` up to a minute in the past is moved to `now`
    /// (the agent's "from now" races the clock); anything earlier is refused.
    pub fn new(
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
        zone: Tz,
        now: DateTime<Utc>,
    ) -> Result<Self, BookingError> {
        if from < now - TimeDelta::minutes(1) {
            return Err(BookingError::Invalid(
                "slots can only be searched from now on, not in the past".to_owned(),
            ));
        }
        let from = from.max(now);
        if to <= from {
            return Err(BookingError::Invalid(
                "the end of the range must be after its start".to_owned(),
            ));
        }
        if to - from > TimeDelta::days(MAX_SLOT_RANGE_DAYS) {
            return Err(BookingError::Invalid(format!(
                "a slot search covers at most {MAX_SLOT_RANGE_DAYS} days"
            )));
        }
        if limit == 0 {
            return Err(BookingError::Invalid(
                "ask for at least one slot".to_owned(),
            ));
        }
        Ok(Self {
            from,
            to,
            limit,
            zone,
        })
    }
}

/// A free appointment slot: instants, plus the zone it is offered in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Slot {
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// When it ends.
    pub ends_at: DateTime<Utc>,
}

/// A booking request from the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookingRequest {
    /// The tenant.
    pub tenant: TenantId,
    /// The call the booking was made on.
    pub call: Option<CallId>,
    /// The slot's start.
    pub starts_at: DateTime<Utc>,
    /// The lead's zone (vendors that take local times are sent this one).
    pub zone: Tz,
    /// Who the appointment is for.
    pub name: Option<String>,
    /// Their phone.
    pub phone: Option<PhoneNumber>,
    /// Their e-mail address.
    pub email: Option<String>,
    /// Their contact in the tenant's CRM (CRM-native calendars attach the appointment to it).
    pub contact: Option<ContactId>,
    /// Anything the agent noted.
    pub notes: Option<String>,
    /// The tool call asking for it: asking twice books once.
    pub idempotency_key: String,
}

impl BookingRequest {
    /// Who the booking is for, for "same lead and slot → same booking": the CRM contact,
    /// else the phone, else the e-mail, else the idempotency key.
    #[must_use]
    pub fn lead_key(&self) -> String {
        if let Some(contact) = &self.contact {
            format!("contact:{contact}")
        } else if let Some(phone) = &self.phone {
            format!("phone:{phone}")
        } else if let Some(email) = &self.email {
            format!("email:{}", email.to_lowercase())
        } else {
            format!("request:{}", self.idempotency_key)
        }
    }
}

/// A booked appointment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Booked {
    /// The calendar's id for it.
    pub appointment_id: String,
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// When it ends.
    pub ends_at: DateTime<Utc>,
}

/// A change to a lead the agent asks for.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LeadChange {
    /// A new status (e.g. `interested`, `not_interested`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// A note to add.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Tags to add.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Custom fields to set.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub custom_fields: serde_json::Map<String, serde_json::Value>,
}

/// Why a calendar or CRM operation failed: said to the agent, which tells the caller.
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    /// The slot is not free (taken meanwhile, or outside the hours).
    #[error("that time is not available: {0}")]
    Unavailable(String),
    /// The request does not make sense (a date in the past, an unreadable time).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The tenant has no calendar or CRM of a kind this build can use.
    #[error("not configured: {0}")]
    NotConfigured(String),
    /// No such appointment.
    #[error("no such appointment")]
    NotFound,
    /// The calendar or CRM failed; trying again may work.
    #[error("the calendar or CRM failed: {0}")]
    Failed(String),
    /// The vendor's answer, classified.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

impl From<crate::tenancy::directory::LookupError> for BookingError {
    fn from(error: crate::tenancy::directory::LookupError) -> Self {
        match error {
            crate::tenancy::directory::LookupError::Gone => Self::NotConfigured(error.to_string()),
            crate::tenancy::directory::LookupError::Database(_) => Self::Failed(error.to_string()),
        }
    }
}

/// A tenant's calendar. Adapters are process-wide: every method names the tenant.
///
/// Contract (checked by [`conformance`]): slots come earliest first, inside the query's range,
/// at most `limit`; a booked slot is no longer offered; booking a taken slot answers
/// [`BookingError::Unavailable`]; rescheduling frees the old slot; cancelling frees the slot;
/// an unknown appointment is [`BookingError::NotFound`].
pub trait Calendar: Send + Sync {
    /// Returns free slots of the query.
    fn free_slots(
        &self,
        tenant: TenantId,
        query: SlotQuery,
    ) -> BoxFuture<'_, Result<Vec<Slot>, BookingError>>;

    /// Books the slot starting at `request.starts_at`.
    fn book(&self, request: BookingRequest) -> BoxFuture<'_, Result<Booked, BookingError>>;

    /// Moves an appointment to the slot starting at `starts_at`.
    fn reschedule<'a>(
        &'a self,
        tenant: TenantId,
        appointment_id: &'a str,
        starts_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Booked, BookingError>>;

    /// Cancels an appointment, freeing its slot.
    fn cancel<'a>(
        &'a self,
        tenant: TenantId,
        appointment_id: &'a str,
    ) -> BoxFuture<'a, Result<(), BookingError>>;
}

/// A tenant's lead records.
pub trait LeadRecords: Send + Sync {
    /// Applies `change` to the lead of `call`; `idempotency_key` makes a retried call harmless.
    fn update(
        &self,
        tenant: TenantId,
        call: CallId,
        change: LeadChange,
        idempotency_key: String,
    ) -> BoxFuture<'_, Result<(), BookingError>>;
}

/// Cancels the booking lead's pending retries and follow-ups, in the booking's transaction:
/// a lead who booked is not called again (ADR 0020).
pub(crate) async fn stop_scheduled(
    tx: &mut sqlx::PgConnection,
    request: &BookingRequest,
) -> Result<(), BookingError> {
    let contact = request.contact.as_ref().map(ToString::to_string);
    crate::store::scheduled_jobs::cancel_for_lead(
        tx,
        request.tenant,
        request.phone.as_ref(),
        contact.as_deref(),
        "booked",
    )
    .await
    .map_err(|error| BookingError::Failed(format!("database: {error}")))?;
    Ok(())
}
