//! Settings of slots, bookings and CRM sync (`[booking]`, `[crm_sync]`,
//! `CALLER__BOOKING__*`, `CALLER__CRM_SYNC__*`).

use std::time::Duration;

use serde::Deserialize;

/// Free-slot caching.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BookingSettings {
    /// How long free slots are cached per (tenant, calendar, zone), in milliseconds; 0 turns
    /// the cache off. Bookings in this process drop the entry at once; other processes'
    /// bookings are seen after at most this long, and every booking re-checks its slot.
    pub slot_cache_ttl_ms: u64,
    /// Most cached entries per process.
    pub slot_cache_entries: usize,
}

impl Default for BookingSettings {
    fn default() -> Self {
        Self {
            slot_cache_ttl_ms: 30_000,
            slot_cache_entries: 10_000,
        }
    }
}

impl BookingSettings {
    /// The cache's time to live.
    #[must_use]
    pub const fn slot_cache_ttl(&self) -> Duration {
        Duration::from_millis(self.slot_cache_ttl_ms)
    }
}

/// The crm_sync stage.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrmSyncSettings {
    /// Where an authorised user listens to a recording: `{base}/v1/clients/{tenant}/calls/{call}`
    /// is written into the CRM note. Empty: the note names the call id only.
    pub app_base_url: String,
}
