//! The process's CRM and calendar adapters, built once from the settings and shared by every
//! stage that talks to tenants' CRMs and calendars (converse tools, crm_sync).
//!
//! Adapters need the keyring to open tenants' credentials; a process without it (tests,
//! tools) gets static schedules and no CRM.

use std::sync::Arc;

use crate::booking::Calendars;
use crate::booking::caldav::CalDav;
use crate::booking::slot_cache::SlotCache;
use crate::crm::Crms;
use crate::crm::custom::CustomCrm;
use crate::crm::gohighlevel::GoHighLevel;
use crate::crm::zoho::Zoho;
use crate::crypto::Keyring;
use crate::settings::Settings;
use crate::store::Store;
use crate::tenancy::config::CrmKind;
use crate::tenancy::directory::Directory;

/// Every adapter, built once: HighLevel and Zoho serve both as CRM and as calendar, so the two
/// share one instance (one rate limiter, one token cache per tenant).
#[derive(Clone, Debug)]
pub struct Integrations {
    /// Every tenant's calendar.
    pub calendars: Calendars,
    /// Every tenant's CRM.
    pub crms: Crms,
}

/// Builds every adapter this process can run.
#[must_use]
pub fn build(
    settings: &Settings,
    store: &Store,
    directory: &Directory,
    keyring: Option<&Arc<Keyring>>,
) -> Integrations {
    let calendars = Calendars::new(store.clone(), directory.clone()).with_cache(SlotCache::new(
        settings.booking.slot_cache_ttl(),
        settings.booking.slot_cache_entries,
    ));
    let crms = Crms::new();
    let Some(keyring) = keyring else {
        return Integrations { calendars, crms };
    };
    let gohighlevel = Arc::new(GoHighLevel::new(
        store.clone(),
        directory.clone(),
        Arc::clone(keyring),
        settings.gohighlevel.clone(),
    ));
    let zoho = Zoho::new(
        store.clone(),
        Arc::clone(keyring),
        directory.clone(),
        settings.zoho.clone(),
    );
    let zoho_bookings = Arc::new(zoho.bookings());
    let zoho = Arc::new(zoho);
    let custom = Arc::new(CustomCrm::new(
        store.clone(),
        directory.clone(),
        Arc::clone(keyring),
    ));
    let caldav = Arc::new(CalDav::new(
        store.clone(),
        directory.clone(),
        Arc::clone(keyring),
    ));
    Integrations {
        calendars: calendars
            .with("gohighlevel", gohighlevel.clone())
            .with("zoho", zoho_bookings)
            .with("caldav", caldav),
        crms: crms
            .with(CrmKind::Gohighlevel, gohighlevel)
            .with(CrmKind::Zoho, zoho)
            .with(CrmKind::Custom, custom),
    }
}
