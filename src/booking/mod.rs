//! What agent tools need from a tenant's calendar and CRM: free slots, a booking, a change to
//! the lead. The converse stage's tools call these traits; the CRM and calendar issue adds
//! implementations over HighLevel, Zoho, CalDAV and the rest.
//!
//! Today's implementations are real, not stand-ins: [`static_schedule::StaticSchedule`] books
//! against the tenant's business hours and keeps appointments in our database (calendar
//! `static`), and [`lead_updates::PendingLeadUpdates`] records lead changes for CRM sync to
//! carry over.

pub mod lead_updates;
pub mod static_schedule;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;

use crate::ids::{CallId, TenantId};

/// A free appointment slot.
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
    pub call: CallId,
    /// The slot's start.
    pub starts_at: DateTime<Utc>,
    /// Who the appointment is for.
    pub name: Option<String>,
    /// Their phone (E.164).
    pub phone: Option<String>,
    /// Anything the agent noted.
    pub notes: Option<String>,
    /// The tool call asking for it: asking twice books once.
    pub idempotency_key: String,
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
    /// The calendar or CRM failed; trying again may work.
    #[error("the calendar or CRM failed: {0}")]
    Failed(String),
}

impl From<crate::tenancy::directory::LookupError> for BookingError {
    fn from(error: crate::tenancy::directory::LookupError) -> Self {
        match error {
            crate::tenancy::directory::LookupError::Gone => Self::NotConfigured(error.to_string()),
            crate::tenancy::directory::LookupError::Database(_) => Self::Failed(error.to_string()),
        }
    }
}

/// A tenant's calendar.
pub trait Calendar: Send + Sync {
    /// Returns free slots in `[from, to)`, earliest first, at most `limit`.
    fn free_slots(
        &self,
        tenant: TenantId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Slot>, BookingError>>;

    /// Books the slot starting at `request.starts_at`.
    fn book(&self, request: BookingRequest) -> BoxFuture<'_, Result<Booked, BookingError>>;
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

/// Each tenant's calendar, by its configuration's `calendar`: `static` books against business
/// hours ([`static_schedule::StaticSchedule`]); the CRM and external calendars answer
/// [`BookingError::NotConfigured`] until their adapters exist, which the agent tells the caller.
#[derive(Clone, Debug)]
pub struct Calendars {
    directory: crate::tenancy::directory::Directory,
    schedule: static_schedule::StaticSchedule,
}

impl Calendars {
    /// Reads tenants through `directory` and appointments through `store`.
    #[must_use]
    pub fn new(
        store: crate::store::Store,
        directory: crate::tenancy::directory::Directory,
    ) -> Self {
        Self {
            schedule: static_schedule::StaticSchedule::new(store, directory.clone()),
            directory,
        }
    }

    async fn of(&self, tenant: TenantId) -> Result<&dyn Calendar, BookingError> {
        use crate::tenancy::config::CalendarKind;
        let snapshot = self.directory.existing(tenant).await?;
        match snapshot.configuration.calendar {
            Some(CalendarKind::Static) => Ok(&self.schedule),
            Some(other) => Err(BookingError::NotConfigured(format!(
                "the {other:?} calendar is not connected yet"
            ))),
            None => Err(BookingError::NotConfigured(
                "the client has no calendar".to_owned(),
            )),
        }
    }
}

impl Calendar for Calendars {
    fn free_slots(
        &self,
        tenant: TenantId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Slot>, BookingError>> {
        Box::pin(async move {
            self.of(tenant)
                .await?
                .free_slots(tenant, from, to, limit)
                .await
        })
    }

    fn book(&self, request: BookingRequest) -> BoxFuture<'_, Result<Booked, BookingError>> {
        Box::pin(async move { self.of(request.tenant).await?.book(request).await })
    }
}
