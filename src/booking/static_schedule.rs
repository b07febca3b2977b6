//! Calendar `static`: slots cut from the tenant's business hours, appointments kept in our
//! `appointments` table (one booking per slot, enforced by a unique index).

use chrono::{DateTime, TimeDelta, Utc};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use uuid::Uuid;

use super::{Booked, BookingError, BookingRequest, Calendar, Slot, SlotQuery};
use crate::calls::window::CallingPolicy;
use crate::ids::{PhoneNumber, TenantId};
use crate::store::Store;
use crate::tenancy::config::{DayHours, Weekday};
use crate::tenancy::directory::{Directory, TenantSnapshot};

/// Slot length when `providers.static.slot_minutes` is not set.
const DEFAULT_SLOT_MINUTES: i64 = 30;

/// Business hours when the tenant configured none: weekdays 09:00–17:00.
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

/// A calendar over business hours and the `appointments` table.
#[derive(Clone, Debug)]
pub struct StaticSchedule {
    store: Store,
    directory: Directory,
}

impl StaticSchedule {
    /// Reads tenants through `directory` and appointments through `store`.
    #[must_use]
    pub fn new(store: Store, directory: Directory) -> Self {
        Self { store, directory }
    }

    async fn snapshot(
        &self,
        tenant: TenantId,
    ) -> Result<std::sync::Arc<TenantSnapshot>, BookingError> {
        Ok(self.directory.existing(tenant).await?)
    }

    /// The slots the hours allow in `[from, to)`, booked or not.
    fn candidate_slots(
        snapshot: &TenantSnapshot,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Slot>, BookingError> {
        let mut configuration = snapshot.configuration.clone();
        if configuration.business_hours.is_empty() {
            configuration.business_hours = default_hours();
        }
        // Appointments follow business hours only; the calling windows are about dialing.
        configuration.calling_windows.clear();
        let policy = CallingPolicy::from_config(&configuration, snapshot.timezone)
            .map_err(|error| BookingError::NotConfigured(error.to_string()))?;
        let minutes = snapshot
            .configuration
            .providers
            .get("static")
            .and_then(|settings| settings.get("slot_minutes"))
            .and_then(serde_json::Value::as_i64)
            .filter(|minutes| (5..=480).contains(minutes))
            .unwrap_or(DEFAULT_SLOT_MINUTES);
        let length = TimeDelta::minutes(minutes);
        let mut slots = Vec::new();
        // NOTE(static): the business's own clock is also held to 08:00–21:00 here, because
        // the policy always applies the legal calling hours; appointments outside those
        // hours need a real calendar.
        for interval in policy.allowed_intervals(snapshot.timezone, from, to) {
            let mut start = round_up(interval.start, length);
            while start + length <= interval.end {
                slots.push(Slot {
                    starts_at: start,
                    ends_at: start + length,
                });
                start += length;
            }
        }
        Ok(slots)
    }

    async fn booked_starts(
        &self,
        tenant: TenantId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, BookingError> {
        let mut tx = self.store.begin_tenant(tenant).await.map_err(failed)?;
        let starts: Vec<(DateTime<Utc>,)> = sqlx::query_as(
            "SELECT starts_at FROM appointments \
             WHERE tenant_id = $1 AND status = 'booked' AND starts_at >= $2 AND starts_at < $3",
        )
        .bind(tenant.as_uuid())
        .bind(from)
        .bind(to)
        .fetch_all(&mut *tx)
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(starts.into_iter().map(|(start,)| start).collect())
    }
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(failed)`
fn failed(error: sqlx::Error) -> BookingError {
    BookingError::Failed(format!("database: {error}"))
}

/// Rounds `at` up to a whole multiple of `length` since the epoch (slots start on the grid).
fn round_up(at: DateTime<Utc>, length: TimeDelta) -> DateTime<Utc> {
    let step = length.num_seconds().max(1);
    let seconds = at.timestamp();
    let rounded = seconds.div_euclid(step) * step;
    let rounded = if rounded < seconds || at.timestamp_subsec_nanos() > 0 && rounded == seconds {
        rounded + step
    } else {
        rounded
    };
    DateTime::from_timestamp(rounded, 0).unwrap_or(at)
}

impl Calendar for StaticSchedule {
    fn free_slots(
        &self,
        tenant: TenantId,
        query: SlotQuery,
    ) -> BoxFuture<'_, Result<Vec<Slot>, BookingError>> {
        async move {
            let SlotQuery {
                from, to, limit, ..
            } = query;
            let snapshot = self.snapshot(tenant).await?;
            let candidates = Self::candidate_slots(&snapshot, from, to)?;
            let booked = self.booked_starts(tenant, from, to).await?;
            Ok(candidates
                .into_iter()
                .filter(|slot| !booked.contains(&slot.starts_at))
                .take(limit)
                .collect())
        }
        .boxed()
    }

    fn book(&self, request: BookingRequest) -> BoxFuture<'_, Result<Booked, BookingError>> {
        async move {
            let snapshot = self.snapshot(request.tenant).await?;
            let horizon = request.starts_at + TimeDelta::days(1);
            let slot = Self::candidate_slots(&snapshot, request.starts_at, horizon)?
                .into_iter()
                .find(|slot| slot.starts_at == request.starts_at)
                .ok_or_else(|| {
                    BookingError::Unavailable("it is outside the business hours".to_owned())
                })?;
            let mut tx = self
                .store
                .begin_tenant(request.tenant)
                .await
                .map_err(failed)?;
            let inserted: Option<(Uuid, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
                "INSERT INTO appointments \
                     (id, tenant_id, call_id, starts_at, ends_at, name, phone, notes, booked_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (tenant_id, booked_by) DO NOTHING \
                 RETURNING id, starts_at, ends_at",
            )
            .bind(Uuid::now_v7())
            .bind(request.tenant.as_uuid())
            .bind(request.call.map(|call| call.as_uuid()))
            .bind(slot.starts_at)
            .bind(slot.ends_at)
            .bind(&request.name)
            .bind(request.phone.as_ref().map(PhoneNumber::as_str))
            .bind(&request.notes)
            .bind(&request.idempotency_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|error| match &error {
                sqlx::Error::Database(database) if database.is_unique_violation() => {
                    BookingError::Unavailable("someone else just booked it".to_owned())
                }
                _ => failed(error),
            })?;
            let (id, starts_at, ends_at) = match inserted {
                Some(row) => row,
                // The same tool call asked before: answer with what it booked then.
                None => sqlx::query_as(
                    "SELECT id, starts_at, ends_at FROM appointments \
                     WHERE tenant_id = $1 AND booked_by = $2",
                )
                .bind(request.tenant.as_uuid())
                .bind(&request.idempotency_key)
                .fetch_one(&mut *tx)
                .await
                .map_err(failed)?,
            };
            tx.commit().await.map_err(failed)?;
            Ok(Booked {
                appointment_id: id.to_string(),
                starts_at,
                ends_at,
            })
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
            let snapshot = self.snapshot(tenant).await?;
            let slot = Self::candidate_slots(&snapshot, starts_at, starts_at + TimeDelta::days(1))?
                .into_iter()
                .find(|slot| slot.starts_at == starts_at)
                .ok_or_else(|| {
                    BookingError::Unavailable("it is outside the business hours".to_owned())
                })?;
            let mut tx = self.store.begin_tenant(tenant).await.map_err(failed)?;
            let moved: Option<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
                "UPDATE appointments SET starts_at = $3, ends_at = $4 \
                 WHERE tenant_id = $1 AND id = $2 AND status = 'booked' \
                 RETURNING starts_at, ends_at",
            )
            .bind(tenant.as_uuid())
            .bind(id)
            .bind(slot.starts_at)
            .bind(slot.ends_at)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|error| match &error {
                sqlx::Error::Database(database) if database.is_unique_violation() => {
                    BookingError::Unavailable("someone else just booked it".to_owned())
                }
                _ => failed(error),
            })?;
            tx.commit().await.map_err(failed)?;
            let (starts_at, ends_at) = moved.ok_or(BookingError::NotFound)?;
            Ok(Booked {
                appointment_id: id.to_string(),
                starts_at,
                ends_at,
            })
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
                 WHERE tenant_id = $1 AND id = $2 AND status = 'booked'",
            )
            .bind(tenant.as_uuid())
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
mod tests {
    use super::*;

    #[test]
    fn slots_start_on_the_grid() {
        let length = TimeDelta::minutes(30);
        let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            round_up(at("2026-11-24T09:00:00Z"), length),
            at("2026-11-24T09:00:00Z")
        );
        assert_eq!(
            round_up(at("2026-11-24T09:00:01Z"), length),
            at("2026-11-24T09:30:00Z")
        );
        assert_eq!(
            round_up(at("2026-11-24T09:29:59Z"), length),
            at("2026-11-24T09:30:00Z")
        );
    }
}
