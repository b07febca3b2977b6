//! The process's CRM and calendar adapters, built once from the settings and shared by every
//! stage that talks to tenants' CRMs and calendars (converse tools, crm_sync).
//!
//! Adapters need the keyring to open tenants' credentials; a process without it (tests,
//! tools) gets static schedules and no CRM.

use std::sync::Arc;

use crate::booking::Calendars;
use crate::booking::slot_cache::SlotCache;
use crate::crm::Crms;
use crate::crypto::Keyring;
use crate::settings::Settings;
use crate::store::Store;
use crate::tenancy::directory::Directory;

/// Every tenant's calendar, with the configured slot cache.
#[must_use]
pub fn calendars(
    settings: &Settings,
    store: &Store,
    directory: &Directory,
    keyring: Option<&Arc<Keyring>>,
) -> Calendars {
    let calendars = Calendars::new(store.clone(), directory.clone()).with_cache(SlotCache::new(
        settings.booking.slot_cache_ttl(),
        settings.booking.slot_cache_entries,
    ));
    let Some(_keyring) = keyring else {
        return calendars;
    };
    calendars
}

/// Every tenant's CRM.
#[must_use]
pub fn crms(
    _settings: &Settings,
    _store: &Store,
    directory: &Directory,
    keyring: Option<&Arc<Keyring>>,
) -> Crms {
    let crms = Crms::new(directory.clone());
    let Some(_keyring) = keyring else {
        return crms;
    };
    crms
}
