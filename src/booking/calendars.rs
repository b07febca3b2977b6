//! [`Calendars`]: the calendar the agent's tools talk to. It picks each tenant's calendar,
//! caches free slots, and keeps the `appointments` ledger.
//!
//! Which calendar: configuration `calendar: static` → [`StaticSchedule`]; `caldav` → the
//! CalDAV adapter; `crm` → the adapter named by the tenant's `crm` (`gohighlevel`, `zoho`).
//! A kind this process has no adapter for answers [`BookingError::NotConfigured`], which the
//! agent tells the caller.
//!
//! Booking an external calendar, in one transaction:
//! 1. queue behind this process's other bookings of the slot (in memory), then take the
//!    advisory lock of (tenant, calendar, start), so our own concurrent bookings of one slot,
//!    from any process, queue up instead of racing at the vendor;
//! 2. answer the booking this request (or this lead, for this slot) already made;
//! 3. refuse a slot our ledger already holds a booking in;
//! 4. re-check the slot at the source (it may have been taken outside the platform);
//! 5. book at the vendor and record the booking in the ledger.
//!
//! A crash between 5 and the commit leaves a vendor appointment the ledger does not know:
//! the retried tool call then finds the slot taken at step 4 and offers alternatives. The
//! vendor's appointment stays (visible to the business); it is never booked twice.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use sha2::Digest as _;
use uuid::Uuid;

use super::slot_cache::SlotCache;
use super::static_schedule::{self, StaticSchedule};
use super::{Booked, BookingError, BookingRequest, Calendar, Slot, SlotQuery};
use crate::ids::{PhoneNumber, TenantId};
use crate::store::Store;
use crate::tenancy::config::{CalendarKind, CrmKind};
use crate::tenancy::directory::Directory;

/// Default time free slots are cached.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);
/// Default number of cached (tenant, calendar, zone) entries per process.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;

/// Each tenant's calendar, with a slot cache and the booking ledger.
#[derive(Clone)]
pub struct Calendars {
    store: Store,
    directory: Directory,
    schedule: StaticSchedule,
    external: Vec<(&'static str, Arc<dyn Calendar>)>,
    cache: SlotCache,
    slot_locks: SlotLocks,
}

/// One in-process queue per slot being booked, dropped when nobody waits.
#[derive(Clone, Debug, Default)]
struct SlotLocks {
    held: Arc<std::sync::Mutex<std::collections::HashMap<i64, Arc<tokio::sync::Mutex<()>>>>>,
}

impl SlotLocks {
    fn lock(&self, key: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget queues nobody holds or waits for (only the map refers to them).
        held.retain(|_, queue| Arc::strong_count(queue) > 1);
        Arc::clone(held.entry(key).or_default())
    }
}

impl std::fmt::Debug for Calendars {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.external.iter().map(|(name, _)| *name).collect();
        formatter
            .debug_struct("Calendars")
            .field("external", &names)
            .finish_non_exhaustive()
    }
}

enum Chosen<'a> {
    Held(&'a StaticSchedule),
    External(&'static str, &'a dyn Calendar),
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(failed)`
fn failed(error: sqlx::Error) -> BookingError {
    BookingError::Failed(format!("database: {error}"))
}

impl Calendars {
    /// Static schedules only, with the default cache; add external calendars with
    /// [`Calendars::with`].
    #[must_use]
    pub fn new(store: Store, directory: Directory) -> Self {
        Self {
            schedule: StaticSchedule::new(store.clone(), directory.clone()),
            store,
            directory,
            external: Vec::new(),
            cache: SlotCache::new(DEFAULT_CACHE_TTL, DEFAULT_CACHE_ENTRIES),
            slot_locks: SlotLocks::default(),
        }
    }

    /// Serves tenants whose calendar is `name` (`caldav`, `gohighlevel`, `zoho`) with
    /// `calendar`.
    #[must_use]
    pub fn with(mut self, name: &'static str, calendar: Arc<dyn Calendar>) -> Self {
        self.external.retain(|(known, _)| *known != name);
        self.external.push((name, calendar));
        self
    }

    /// Replaces the slot cache (a zero TTL disables it).
    #[must_use]
    pub fn with_cache(mut self, cache: SlotCache) -> Self {
        self.cache = cache;
        self
    }

    async fn of(&self, tenant: TenantId) -> Result<Chosen<'_>, BookingError> {
        let snapshot = self.directory.existing(tenant).await?;
        let name = match snapshot.configuration.calendar {
            Some(CalendarKind::Static) => return Ok(Chosen::Held(&self.schedule)),
            Some(CalendarKind::Caldav) => "caldav",
            Some(CalendarKind::Crm) => match snapshot.configuration.crm {
                Some(CrmKind::Gohighlevel) => "gohighlevel",
                Some(CrmKind::Zoho) => "zoho",
                Some(CrmKind::Custom) => {
                    return Err(BookingError::NotConfigured(
                        "a custom CRM has no calendar: choose static or caldav".to_owned(),
                    ));
                }
                None => {
                    return Err(BookingError::NotConfigured(
                        "the calendar is the CRM's, but no CRM is configured".to_owned(),
                    ));
                }
            },
            Some(other) => {
                return Err(BookingError::NotConfigured(format!(
                    "the {other:?} calendar is not supported yet"
                )));
            }
            None => {
                return Err(BookingError::NotConfigured(
                    "the client has no calendar".to_owned(),
                ));
            }
        };
        self.external
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(name, calendar)| Chosen::External(name, calendar.as_ref()))
            .ok_or_else(|| {
                BookingError::NotConfigured(format!("the {name} calendar is not connected"))
            })
    }

    async fn book_external(
        &self,
        name: &'static str,
        calendar: &dyn Calendar,
        request: BookingRequest,
    ) -> Result<Booked, BookingError> {
        let tenant = request.tenant;
        let key = slot_lock(tenant, name, request.starts_at);
        // Queue this process's bookings of the slot in memory first: a waiter holding a pooled
        // connection while it waits for the advisory lock could starve the holder of the
        // connections it needs, so at most one booking per process and slot waits in
        // PostgreSQL (for other processes' bookings).
        let local = self.slot_locks.lock(key);
        let _local = local.lock().await;
        let mut tx = self.store.begin_tenant(tenant).await.map_err(failed)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        let earlier: Option<(String, DateTime<Utc>, DateTime<Utc>, String)> = sqlx::query_as(
            "SELECT external_id, starts_at, ends_at, lead_key FROM appointments \
             WHERE tenant_id = $1 AND calendar = $2 AND status = 'booked' AND starts_at = $3 \
               AND external_id IS NOT NULL \
             ORDER BY (booked_by = $4 OR lead_key = $5) DESC LIMIT 1",
        )
        .bind(tenant.as_uuid())
        .bind(name)
        .bind(request.starts_at)
        .bind(&request.idempotency_key)
        .bind(request.lead_key())
        .fetch_optional(&mut *tx)
        .await
        .map_err(failed)?;
        if let Some((id, starts_at, ends_at, lead_key)) = earlier {
            if lead_key == request.lead_key() {
                return Ok(Booked {
                    appointment_id: id,
                    starts_at,
                    ends_at,
                });
            }
            return Err(BookingError::Unavailable(
                "someone else just booked it".to_owned(),
            ));
        }
        // A day's range, not a minute's: calendars that only list slots ending inside the
        // range would otherwise answer nothing.
        let recheck = SlotQuery {
            from: request.starts_at,
            to: request.starts_at + TimeDelta::days(1),
            limit: 50,
            zone: request.zone,
        };
        let free = calendar.free_slots(tenant, recheck).await?;
        if !free.iter().any(|slot| slot.starts_at == request.starts_at) {
            self.cache.invalidate(tenant, name);
            return Err(BookingError::Unavailable("it was just taken".to_owned()));
        }
        let booked = calendar.book(request.clone()).await?;
        self.cache.invalidate(tenant, name);
        sqlx::query(
            "INSERT INTO appointments \
                 (id, tenant_id, call_id, calendar, held, starts_at, ends_at, blocked_from, \
                  blocked_until, name, phone, email, contact_id, notes, booked_by, lead_key, \
                  external_id) \
             VALUES ($1, $2, $3, $4, false, $5, $6, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(tenant.as_uuid())
        .bind(request.call.map(|call| call.as_uuid()))
        .bind(name)
        .bind(booked.starts_at)
        .bind(booked.ends_at)
        .bind(&request.name)
        .bind(request.phone.as_ref().map(PhoneNumber::as_str))
        .bind(&request.email)
        .bind(request.contact.as_ref().map(ToString::to_string))
        .bind(&request.notes)
        .bind(&request.idempotency_key)
        .bind(request.lead_key())
        .bind(&booked.appointment_id)
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
        super::stop_scheduled(&mut tx, &request).await?;
        tx.commit().await.map_err(failed)?;
        Ok(booked)
    }

    /// Updates the ledger row of an external appointment after the vendor moved or cancelled
    /// it. Best effort: the vendor is the truth for external calendars.
    async fn record_external(
        &self,
        tenant: TenantId,
        name: &str,
        appointment_id: &str,
        change: Option<&Booked>,
    ) -> Result<(), BookingError> {
        let mut tx = self.store.begin_tenant(tenant).await.map_err(failed)?;
        match change {
            Some(moved) => sqlx::query(
                "UPDATE appointments SET starts_at = $4, ends_at = $5, blocked_from = $4, \
                     blocked_until = $5 \
                 WHERE tenant_id = $1 AND calendar = $2 AND external_id = $3",
            )
            .bind(tenant.as_uuid())
            .bind(name)
            .bind(appointment_id)
            .bind(moved.starts_at)
            .bind(moved.ends_at),
            None => sqlx::query(
                "UPDATE appointments SET status = 'cancelled' \
                 WHERE tenant_id = $1 AND calendar = $2 AND external_id = $3",
            )
            .bind(tenant.as_uuid())
            .bind(name)
            .bind(appointment_id),
        }
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)
    }
}

/// The advisory lock key of one slot of one calendar.
fn slot_lock(tenant: TenantId, calendar: &str, starts_at: DateTime<Utc>) -> i64 {
    let digest = sha2::Sha256::new()
        .chain_update(tenant.as_uuid().as_bytes())
        .chain_update(calendar.as_bytes())
        .chain_update(starts_at.timestamp().to_be_bytes())
        .finalize();
    let mut bytes = [0_u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

impl Calendar for Calendars {
    fn free_slots(
        &self,
        tenant: TenantId,
        query: SlotQuery,
    ) -> BoxFuture<'_, Result<Vec<Slot>, BookingError>> {
        Box::pin(async move {
            let (name, calendar): (&str, &dyn Calendar) = match self.of(tenant).await? {
                Chosen::Held(schedule) => (static_schedule::CALENDAR, schedule),
                Chosen::External(name, calendar) => (name, calendar),
            };
            if let Some(slots) = self.cache.get(tenant, name, &query) {
                return Ok(slots);
            }
            let fetch = SlotCache::widened(&query);
            let slots = calendar.free_slots(tenant, fetch).await?;
            let answer = slots
                .iter()
                .filter(|slot| slot.starts_at >= query.from && slot.starts_at < query.to)
                .take(query.limit)
                .cloned()
                .collect();
            self.cache.put(tenant, name, &fetch, slots);
            Ok(answer)
        })
    }

    fn book(&self, request: BookingRequest) -> BoxFuture<'_, Result<Booked, BookingError>> {
        Box::pin(async move {
            let tenant = request.tenant;
            match self.of(tenant).await? {
                Chosen::Held(schedule) => {
                    let booked = schedule.book(request).await;
                    self.cache.invalidate(tenant, static_schedule::CALENDAR);
                    booked
                }
                Chosen::External(name, calendar) => {
                    self.book_external(name, calendar, request).await
                }
            }
        })
    }

    fn reschedule<'a>(
        &'a self,
        tenant: TenantId,
        appointment_id: &'a str,
        starts_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Booked, BookingError>> {
        Box::pin(async move {
            match self.of(tenant).await? {
                Chosen::Held(schedule) => {
                    let moved = schedule.reschedule(tenant, appointment_id, starts_at).await;
                    self.cache.invalidate(tenant, static_schedule::CALENDAR);
                    moved
                }
                Chosen::External(name, calendar) => {
                    let moved = calendar
                        .reschedule(tenant, appointment_id, starts_at)
                        .await?;
                    self.cache.invalidate(tenant, name);
                    self.record_external(tenant, name, appointment_id, Some(&moved))
                        .await?;
                    Ok(moved)
                }
            }
        })
    }

    fn cancel<'a>(
        &'a self,
        tenant: TenantId,
        appointment_id: &'a str,
    ) -> BoxFuture<'a, Result<(), BookingError>> {
        Box::pin(async move {
            match self.of(tenant).await? {
                Chosen::Held(schedule) => {
                    let cancelled = schedule.cancel(tenant, appointment_id).await;
                    self.cache.invalidate(tenant, static_schedule::CALENDAR);
                    cancelled
                }
                Chosen::External(name, calendar) => {
                    calendar.cancel(tenant, appointment_id).await?;
                    self.cache.invalidate(tenant, name);
                    self.record_external(tenant, name, appointment_id, None)
                        .await
                }
            }
        })
    }
}
