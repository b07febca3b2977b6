//! A short-lived, per-process cache of free slots, so an agent asking twice in one call (and
//! every call's opening context) does not wait for the vendor each time.
//!
//! An entry holds every free slot of one tenant's calendar in a range, fetched once. A query
//! is served from it when the entry covers the query: its range contains the query's, or the
//! entry already holds `limit` slots of the query before the point it is complete up to.
//! Ranges are fetched a little wider than asked (to the end of the next UTC day) because
//! agents ask "from now", so a query moments later still falls inside.
//!
//! Invariants: an entry is never older than the TTL; booking, rescheduling or cancelling in a
//! calendar drops its entries in this process at once. Another process's bookings are seen
//! after at most the TTL; a booking re-checks the slot at the source anyway, so a stale entry
//! can offer a taken slot but never double-books it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::time::Instant;

use super::{Slot, SlotQuery};
use crate::ids::TenantId;

/// How many slots one fetch asks the calendar for.
pub const FETCH_LIMIT: usize = 500;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    tenant: TenantId,
    calendar: String,
    zone: Tz,
}

#[derive(Debug)]
struct Entry {
    fetched_at: Instant,
    from: DateTime<Utc>,
    /// Slots before this instant are all known (the fetch's end, or its last slot when the
    /// fetch hit [`FETCH_LIMIT`]).
    complete_until: DateTime<Utc>,
    slots: Arc<Vec<Slot>>,
}

/// The cache. Clones share entries.
#[derive(Clone, Debug)]
pub struct SlotCache {
    ttl: Duration,
    capacity: usize,
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
}

impl SlotCache {
    /// Keeps entries for `ttl`, at most `capacity` of them (the oldest go first). A zero TTL
    /// disables the cache.
    #[must_use]
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: Arc::default(),
        }
    }

    /// The range to fetch for `query` on a miss: from the query's start to the end of the
    /// UTC day after its end, never more than the longest allowed range.
    #[must_use]
    pub fn widened(query: &SlotQuery) -> SlotQuery {
        let day_after = (query.to + chrono::TimeDelta::days(1))
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map_or(query.to, |midnight| midnight.and_utc());
        let longest = query.from + chrono::TimeDelta::days(super::MAX_SLOT_RANGE_DAYS);
        SlotQuery {
            to: day_after.min(longest).max(query.to),
            limit: FETCH_LIMIT,
            ..*query
        }
    }

    /// The query's slots when an entry covers it.
    #[must_use]
    pub fn get(&self, tenant: TenantId, calendar: &str, query: &SlotQuery) -> Option<Vec<Slot>> {
        if self.ttl.is_zero() {
            return None;
        }
        let key = Key {
            tenant,
            calendar: calendar.to_owned(),
            zone: query.zone,
        };
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = entries.get(&key)?;
        if entry.fetched_at.elapsed() >= self.ttl || entry.from > query.from {
            return None;
        }
        let slots: Vec<Slot> = entry
            .slots
            .iter()
            .filter(|slot| slot.starts_at >= query.from && slot.starts_at < query.to)
            .take(query.limit)
            .cloned()
            .collect();
        let complete = query.to <= entry.complete_until
            || slots.len() == query.limit
                && slots
                    .last()
                    .is_some_and(|last| last.starts_at < entry.complete_until);
        complete.then_some(slots)
    }

    /// Stores what the calendar answered to `fetched` (a [`SlotCache::widened`] query).
    pub fn put(&self, tenant: TenantId, calendar: &str, fetched: &SlotQuery, slots: Vec<Slot>) {
        if self.ttl.is_zero() {
            return;
        }
        let complete_until = if slots.len() >= fetched.limit {
            slots.last().map_or(fetched.to, |last| last.starts_at)
        } else {
            fetched.to
        };
        let key = Key {
            tenant,
            calendar: calendar.to_owned(),
            zone: fetched.zone,
        };
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, entry)| entry.fetched_at)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            key,
            Entry {
                fetched_at: Instant::now(),
                from: fetched.from,
                complete_until,
                slots: Arc::new(slots),
            },
        );
    }

    /// Drops every entry of the tenant's calendar (after a booking, a reschedule, a cancel).
    pub fn invalidate(&self, tenant: TenantId, calendar: &str) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.retain(|key, _| !(key.tenant == tenant && key.calendar == calendar));
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn tenant() -> TenantId {
        TenantId::from_uuid(uuid::Uuid::from_u128(7))
    }

    fn slots_every_hour(from: DateTime<Utc>, count: i64) -> Vec<Slot> {
        (0..count)
            .map(|hour| Slot {
                starts_at: from + TimeDelta::hours(hour),
                ends_at: from + TimeDelta::hours(hour) + TimeDelta::minutes(30),
            })
            .collect()
    }

    fn query(from: DateTime<Utc>, days: i64, limit: usize) -> SlotQuery {
        SlotQuery {
            from,
            to: from + TimeDelta::days(days),
            limit,
            zone: chrono_tz::UTC,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_covered_query_is_served_until_the_ttl_or_a_booking() {
        let cache = SlotCache::new(Duration::from_secs(30), 10);
        let now: DateTime<Utc> = "2026-11-24T10:00:00Z".parse().unwrap();
        let asked = query(now, 7, 5);
        assert_eq!(cache.get(tenant(), "static", &asked), None);
        let fetched = SlotCache::widened(&asked);
        assert_eq!(
            fetched.to,
            "2026-12-02T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        cache.put(tenant(), "static", &fetched, slots_every_hour(now, 24 * 8));

        // Moments later, "from now" again: still covered.
        let later = query(now + TimeDelta::seconds(20), 7, 5);
        let served = cache.get(tenant(), "static", &later).unwrap();
        assert_eq!(served.len(), 5);
        assert!(served[0].starts_at >= later.from);
        // Another calendar or zone is another entry.
        assert_eq!(cache.get(tenant(), "caldav", &later), None);
        assert_eq!(
            cache.get(
                tenant(),
                "static",
                &SlotQuery {
                    zone: chrono_tz::Europe::Berlin,
                    ..later
                }
            ),
            None
        );

        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(cache.get(tenant(), "static", &later), None, "expired");

        cache.put(tenant(), "static", &fetched, slots_every_hour(now, 24 * 8));
        cache.invalidate(tenant(), "static");
        assert_eq!(cache.get(tenant(), "static", &later), None, "invalidated");
    }

    #[tokio::test(start_paused = true)]
    async fn a_truncated_fetch_serves_only_what_it_knows() {
        let cache = SlotCache::new(Duration::from_secs(30), 10);
        let now: DateTime<Utc> = "2026-11-24T10:00:00Z".parse().unwrap();
        let fetched = SlotQuery {
            limit: 3,
            ..SlotCache::widened(&query(now, 7, 3))
        };
        // The calendar gave exactly `limit` slots: complete only up to the last one.
        cache.put(tenant(), "static", &fetched, slots_every_hour(now, 3));
        assert_eq!(
            cache
                .get(tenant(), "static", &query(now, 7, 2))
                .unwrap()
                .len(),
            2
        );
        assert_eq!(cache.get(tenant(), "static", &query(now, 7, 5)), None);
        // A query starting before the entry's range is not covered.
        assert_eq!(
            cache.get(tenant(), "static", &query(now - TimeDelta::hours(1), 1, 1)),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_entry_makes_room() {
        let cache = SlotCache::new(Duration::from_secs(30), 2);
        let now: DateTime<Utc> = "2026-11-24T10:00:00Z".parse().unwrap();
        let fetched = SlotCache::widened(&query(now, 1, 1));
        for calendar in ["a", "b", "c"] {
            cache.put(tenant(), calendar, &fetched, slots_every_hour(now, 2));
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        let asked = query(now, 1, 1);
        assert_eq!(cache.get(tenant(), "a", &asked), None);
        assert!(cache.get(tenant(), "b", &asked).is_some());
        assert!(cache.get(tenant(), "c", &asked).is_some());
    }
}
