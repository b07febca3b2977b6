//! Calendar `static`: weekly rules cut into slots in the business's zone, appointments held in
//! our `appointments` table.
//!
//! Settings `providers.static` (all optional):
//! - `rules`: `[{"day": "mon", "open": "09:00", "close": "17:00"}, …]`, else the tenant's
//!   `business_hours`, else weekdays 09:00–17:00;
//! - `slot_minutes` (5–480, default 30);
//! - `buffer_before_minutes`, `buffer_after_minutes` (0–240, default 0): time a booking blocks
//!   around its slot, so slots are spaced by slot + buffers;
//! - `capacity` (1–50, default 1): bookings one slot takes (chairs, staff);
//! - `holidays`: `["2026-12-25", …]`, local dates with no slots.
//!
//! Invariant: two bookings never share a seat at overlapping blocked times. PostgreSQL
//! enforces it (`appointments_no_overlap`, an exclusion constraint over tenant, calendar, seat
//! and the blocked range), so concurrent bookings from any number of processes cannot double
//! book; a booking tries seats in order and the first free one wins.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde::Deserialize;
use uuid::Uuid;

use super::{Booked, BookingError, BookingRequest, Calendar, Slot, SlotQuery};
use crate::ids::{PhoneNumber, TenantId};
use crate::store::Store;
use crate::tenancy::config::{DayHours, Weekday};
use crate::tenancy::directory::{Directory, TenantSnapshot};

/// The calendar name of every static schedule in `appointments.calendar`.
pub const CALENDAR: &str = "static";

/// A weekly schedule, parsed from `providers.static`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    zone: Tz,
    rules: Vec<(Weekday, NaiveTime, NaiveTime)>,
    slot: TimeDelta,
    buffer_before: TimeDelta,
    buffer_after: TimeDelta,
    capacity: u16,
    holidays: BTreeSet<NaiveDate>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    rules: Option<Vec<DayHours>>,
    #[serde(default)]
    slot_minutes: Option<i64>,
    #[serde(default)]
    buffer_before_minutes: Option<i64>,
    #[serde(default)]
    buffer_after_minutes: Option<i64>,
    #[serde(default)]
    capacity: Option<u16>,
    #[serde(default)]
    holidays: Vec<NaiveDate>,
}

fn default_hours() -> Vec<DayHours> {
    [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
    ]
    .into_iter()
    .map(|day| DayHours {
        day,
        open: "09:00".to_owned(),
        close: "17:00".to_owned(),
    })
    .collect()
}

fn minutes(
    field: &str,
    value: Option<i64>,
    default: i64,
    range: (i64, i64),
) -> Result<TimeDelta, String> {
    let value = value.unwrap_or(default);
    if (range.0..=range.1).contains(&value) {
        Ok(TimeDelta::minutes(value))
    } else {
        Err(format!(
            "providers.static.{field} must be between {} and {}",
            range.0, range.1
        ))
    }
}

const fn chrono_weekday(day: Weekday) -> chrono::Weekday {
    match day {
        Weekday::Mon => chrono::Weekday::Mon,
        Weekday::Tue => chrono::Weekday::Tue,
        Weekday::Wed => chrono::Weekday::Wed,
        Weekday::Thu => chrono::Weekday::Thu,
        Weekday::Fri => chrono::Weekday::Fri,
        Weekday::Sat => chrono::Weekday::Sat,
        Weekday::Sun => chrono::Weekday::Sun,
    }
}

impl Schedule {
    /// Reads a tenant's schedule.
    ///
    /// # Errors
    ///
    /// A sentence naming the invalid setting.
    pub fn of(snapshot: &TenantSnapshot) -> Result<Self, String> {
        Self::parse(
            snapshot.timezone,
            snapshot.configuration.providers.get(CALENDAR),
            &snapshot.configuration.business_hours,
        )
    }

    /// Reads a schedule from `providers.static` and the business hours, in `zone`.
    ///
    /// # Errors
    ///
    /// A sentence naming the invalid setting.
    pub fn parse(
        zone: Tz,
        settings: Option<&serde_json::Value>,
        business_hours: &[DayHours],
    ) -> Result<Self, String> {
        let settings: Settings = match settings {
            Some(value) => serde_json::from_value(value.clone())
                .map_err(|error| format!("providers.static: {error}"))?,
            None => Settings::default(),
        };
        let hours = settings
            .rules
            .clone()
            .filter(|rules| !rules.is_empty())
            .or_else(|| Some(business_hours.to_vec()).filter(|hours| !hours.is_empty()))
            .unwrap_or_else(default_hours);
        let mut rules = Vec::new();
        for (index, rule) in hours.iter().enumerate() {
            let parse = |text: &str| NaiveTime::parse_from_str(text, "%H:%M");
            let (Ok(open), Ok(close)) = (parse(&rule.open), parse(&rule.close)) else {
                return Err(format!("providers.static.rules[{index}]: times are HH:MM"));
            };
            if open >= close {
                return Err(format!(
                    "providers.static.rules[{index}]: `close` must be after `open`"
                ));
            }
            rules.push((rule.day, open, close));
        }
        let capacity = settings.capacity.unwrap_or(1);
        if !(1..=50).contains(&capacity) {
            return Err("providers.static.capacity must be between 1 and 50".to_owned());
        }
        Ok(Self {
            zone,
            rules,
            slot: minutes("slot_minutes", settings.slot_minutes, 30, (5, 480))?,
            buffer_before: minutes(
                "buffer_before_minutes",
                settings.buffer_before_minutes,
                0,
                (0, 240),
            )?,
            buffer_after: minutes(
                "buffer_after_minutes",
                settings.buffer_after_minutes,
                0,
                (0, 240),
            )?,
            capacity,
            holidays: settings.holidays.into_iter().collect(),
        })
    }

    /// How many bookings one slot takes.
    #[must_use]
    pub const fn capacity(&self) -> u16 {
        self.capacity
    }

    /// The time a booking of `slot` blocks.
    #[must_use]
    pub fn blocked(&self, slot: &Slot) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            slot.starts_at - self.buffer_before,
            slot.ends_at + self.buffer_after,
        )
    }

    /// Every slot the rules allow starting in `[from, to)`, booked or not, earliest first.
    ///
    /// Slots are cut from each rule's local opening time, spaced by slot + buffers. A local
    /// start that does not exist (a DST gap) is skipped; an ambiguous one (a DST overlap)
    /// takes its first occurrence. Holidays have no slots.
    #[must_use]
    pub fn slots(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Slot> {
        let mut slots = Vec::new();
        if from >= to {
            return slots;
        }
        let step = self.slot + self.buffer_before + self.buffer_after;
        let first_day = from.with_timezone(&self.zone).date_naive() - TimeDelta::days(1);
        let last_day = to.with_timezone(&self.zone).date_naive();
        let mut day = first_day;
        while day <= last_day {
            if !self.holidays.contains(&day) {
                for (weekday, open, close) in &self.rules {
                    if chrono_weekday(*weekday) != day.weekday() {
                        continue;
                    }
                    let mut local = day.and_time(*open) + self.buffer_before;
                    let closing = day.and_time(*close);
                    while local + self.slot + self.buffer_after <= closing {
                        if let Some(start) = self.zone.from_local_datetime(&local).earliest() {
                            let starts_at = start.with_timezone(&Utc);
                            if starts_at >= from && starts_at < to {
                                slots.push(Slot {
                                    starts_at,
                                    ends_at: starts_at + self.slot,
                                });
                            }
                        }
                        local += step;
                    }
                }
            }
            day += TimeDelta::days(1);
        }
        slots.sort_by_key(|slot| slot.starts_at);
        slots.dedup();
        slots
    }

    /// The slot starting exactly at `starts_at`, if the rules have one.
    #[must_use]
    pub fn slot_at(&self, starts_at: DateTime<Utc>) -> Option<Slot> {
        self.slots(starts_at, starts_at + TimeDelta::seconds(1))
            .into_iter()
            .find(|slot| slot.starts_at == starts_at)
    }
}

/// A calendar over weekly rules and the `appointments` table.
#[derive(Clone, Debug)]
pub struct StaticSchedule {
    store: Store,
    directory: Directory,
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(failed)`
fn failed(error: sqlx::Error) -> BookingError {
    BookingError::Failed(format!("database: {error}"))
}

/// A booked row: `(id, starts_at, ends_at)`.
type BookedRow = (Uuid, DateTime<Utc>, DateTime<Utc>);

impl StaticSchedule {
    /// Reads tenants through `directory` and appointments through `store`.
    #[must_use]
    pub fn new(store: Store, directory: Directory) -> Self {
        Self { store, directory }
    }

    async fn schedule(&self, tenant: TenantId) -> Result<Schedule, BookingError> {
        let snapshot = self.directory.existing(tenant).await?;
        Schedule::of(&snapshot).map_err(BookingError::NotConfigured)
    }

    /// Blocked ranges of booked appointments overlapping `[from, to)`, with their seat.
    async fn blocked(
        &self,
        tenant: TenantId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(i16, DateTime<Utc>, DateTime<Utc>)>, BookingError> {
        let mut tx = self.store.begin_tenant(tenant).await.map_err(failed)?;
        let rows = sqlx::query_as(
            "SELECT seat, blocked_from, blocked_until FROM appointments \
             WHERE tenant_id = $1 AND calendar = $2 AND status = 'booked' AND held \
               AND blocked_from < $4 AND blocked_until > $3",
        )
        .bind(tenant.as_uuid())
        .bind(CALENDAR)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *tx)
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(rows)
    }

    /// The booking this request already made: by its idempotency key, or by the same lead in
    /// the same slot.
    async fn existing(
        tx: &mut sqlx::PgConnection,
        request: &BookingRequest,
    ) -> Result<Option<BookedRow>, BookingError> {
        sqlx::query_as(
            "SELECT id, starts_at, ends_at FROM appointments \
             WHERE tenant_id = $1 AND calendar = $2 AND status = 'booked' \
               AND (booked_by = $3 OR (lead_key = $4 AND starts_at = $5)) \
             LIMIT 1",
        )
        .bind(request.tenant.as_uuid())
        .bind(CALENDAR)
        .bind(&request.idempotency_key)
        .bind(request.lead_key())
        .bind(request.starts_at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(failed)
    }
}

fn is_overlap(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.code().as_deref() == Some("23P01"))
}

impl Calendar for StaticSchedule {
    fn free_slots(
        &self,
        tenant: TenantId,
        query: SlotQuery,
    ) -> BoxFuture<'_, Result<Vec<Slot>, BookingError>> {
        async move {
            let schedule = self.schedule(tenant).await?;
            let candidates = schedule.slots(query.from, query.to);
            let Some(last) = candidates.last() else {
                return Ok(Vec::new());
            };
            let window = (schedule.blocked(&candidates[0]).0, schedule.blocked(last).1);
            let taken = self.blocked(tenant, window.0, window.1).await?;
            Ok(candidates
                .into_iter()
                .filter(|slot| {
                    let (from, until) = schedule.blocked(slot);
                    let busy_seats: BTreeSet<i16> = taken
                        .iter()
                        .filter(|(_, start, end)| *start < until && *end > from)
                        .map(|(seat, _, _)| *seat)
                        .collect();
                    busy_seats.len() < usize::from(schedule.capacity())
                })
                .take(query.limit)
                .collect())
        }
        .boxed()
    }

    fn book(&self, request: BookingRequest) -> BoxFuture<'_, Result<Booked, BookingError>> {
        async move {
            let schedule = self.schedule(request.tenant).await?;
            let slot = schedule.slot_at(request.starts_at).ok_or_else(|| {
                BookingError::Unavailable("that is not one of the schedule's times".to_owned())
            })?;
            let (blocked_from, blocked_until) = schedule.blocked(&slot);
            let mut tx = self
                .store
                .begin_tenant(request.tenant)
                .await
                .map_err(failed)?;
            if let Some((id, starts_at, ends_at)) = Self::existing(&mut tx, &request).await? {
                return Ok(Booked {
                    appointment_id: id.to_string(),
                    starts_at,
                    ends_at,
                });
            }
            for seat in 0..schedule.capacity() {
                // ON CONFLICT DO NOTHING (no target) also covers the exclusion constraint: a
                // taken seat inserts nothing, and so does a booking this request already made
                // concurrently; the lookup below tells them apart.
                let inserted: Option<BookedRow> = sqlx::query_as(
                    "INSERT INTO appointments \
                         (id, tenant_id, call_id, calendar, held, seat, starts_at, ends_at, \
                          blocked_from, blocked_until, name, phone, email, contact_id, notes, \
                          booked_by, lead_key) \
                     VALUES ($1, $2, $3, $4, true, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                             $14, $15, $16) \
                     ON CONFLICT DO NOTHING \
                     RETURNING id, starts_at, ends_at",
                )
                .bind(Uuid::now_v7())
                .bind(request.tenant.as_uuid())
                .bind(request.call.map(|call| call.as_uuid()))
                .bind(CALENDAR)
                .bind(i16::try_from(seat).unwrap_or(i16::MAX))
                .bind(slot.starts_at)
                .bind(slot.ends_at)
                .bind(blocked_from)
                .bind(blocked_until)
                .bind(&request.name)
                .bind(request.phone.as_ref().map(PhoneNumber::as_str))
                .bind(&request.email)
                .bind(request.contact.as_ref().map(ToString::to_string))
                .bind(&request.notes)
                .bind(&request.idempotency_key)
                .bind(request.lead_key())
                .fetch_optional(&mut *tx)
                .await
                .map_err(failed)?;
                let row = match inserted {
                    Some(row) => Some(row),
                    None => Self::existing(&mut tx, &request).await?,
                };
                if let Some((id, starts_at, ends_at)) = row {
                    super::stop_scheduled(&mut tx, &request).await?;
                    tx.commit().await.map_err(failed)?;
                    return Ok(Booked {
                        appointment_id: id.to_string(),
                        starts_at,
                        ends_at,
                    });
                }
            }
            Err(BookingError::Unavailable(
                "someone else just booked it".to_owned(),
            ))
        }
        .boxed()
    }

    fn reschedule<'a>(
        &'a self,
        tenant: TenantId,
        appointment_id: &'a str,
        starts_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Booked, BookingError>> {
        async move {
            let id = Uuid::parse_str(appointment_id).map_err(|_| BookingError::NotFound)?;
            let schedule = self.schedule(tenant).await?;
            let slot = schedule.slot_at(starts_at).ok_or_else(|| {
                BookingError::Unavailable("that is not one of the schedule's times".to_owned())
            })?;
            let (blocked_from, blocked_until) = schedule.blocked(&slot);
            let mut tx = self.store.begin_tenant(tenant).await.map_err(failed)?;
            for seat in 0..schedule.capacity() {
                let mut attempt = sqlx::Connection::begin(&mut *tx).await.map_err(failed)?;
                let moved: Result<Option<BookedRow>, sqlx::Error> = sqlx::query_as(
                    "UPDATE appointments SET starts_at = $4, ends_at = $5, blocked_from = $6, \
                         blocked_until = $7, seat = $8 \
                     WHERE tenant_id = $1 AND calendar = $2 AND id = $3 AND status = 'booked' \
                     RETURNING id, starts_at, ends_at",
                )
                .bind(tenant.as_uuid())
                .bind(CALENDAR)
                .bind(id)
                .bind(slot.starts_at)
                .bind(slot.ends_at)
                .bind(blocked_from)
                .bind(blocked_until)
                .bind(i16::try_from(seat).unwrap_or(i16::MAX))
                .fetch_optional(&mut *attempt)
                .await;
                match moved {
                    Ok(None) => return Err(BookingError::NotFound),
                    Ok(Some((id, starts_at, ends_at))) => {
                        attempt.commit().await.map_err(failed)?;
                        tx.commit().await.map_err(failed)?;
                        return Ok(Booked {
                            appointment_id: id.to_string(),
                            starts_at,
                            ends_at,
                        });
                    }
                    Err(error) if is_overlap(&error) => {
                        attempt.rollback().await.map_err(failed)?;
                    }
                    Err(error) => return Err(failed(error)),
                }
            }
            Err(BookingError::Unavailable(
                "someone else just booked it".to_owned(),
            ))
        }
        .boxed()
    }

    fn cancel<'a>(
        &'a self,
        tenant: TenantId,
        appointment_id: &'a str,
    ) -> BoxFuture<'a, Result<(), BookingError>> {
        async move {
            let id = Uuid::parse_str(appointment_id).map_err(|_| BookingError::NotFound)?;
            let mut tx = self.store.begin_tenant(tenant).await.map_err(failed)?;
            let cancelled = sqlx::query(
                "UPDATE appointments SET status = 'cancelled' \
                 WHERE tenant_id = $1 AND calendar = $2 AND id = $3 AND status = 'booked'",
            )
            .bind(tenant.as_uuid())
            .bind(CALENDAR)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            if cancelled.rows_affected() == 0 {
                return Err(BookingError::NotFound);
            }
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
