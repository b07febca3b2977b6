//! The `resolve_tenant` stage: a unique lead becomes a lead its tenant can call.
//!
//! - Consumes: `lead.unique` (`leads.unique.<tenant>` on `LEADS`).
//! - Emits: `lead.resolved` on `leads.resolved.<tenant>`, always under the real tenant.
//! - Rejects (dead letter with the reason, visible to the tenant through
//!   `GET /v1/clients/{id}/dead-letters`): no client claims the lead's HighLevel location or
//!   Zoho organization; the client is disabled (replay after enabling it); the lead has no
//!   phone number, or one that is not a valid number; the number is on the tenant's
//!   do-not-call or opt-out list; the Zoho record a notification names is gone, or the
//!   client's Zoho connection is unusable (Zoho unavailable: retried).
//! - Writes: nothing besides the runner's claim. Reads the tenant directory (cached) and the
//!   tenant's `call_blocklist` (in the claim's transaction, or in its own under the tenant when
//!   the lead arrived under the platform tenant).
//! - External calls: for a Zoho notification, reads the record it names from Zoho (a read:
//!   safe to repeat; a token refresh is single-flight, see `tenancy::oauth`).
//!
//! The time zone is the lead's own (a valid IANA zone the sender gave), else the one its
//! number implies (an area code or country with one zone), else the tenant's.

use std::sync::Arc;

use chrono_tz::Tz;

use super::{Stage, StageContext};
use crate::bus::envelope::Envelope;
use crate::bus::runner::Runtime;
use crate::error::StageError;
use crate::events::EventSpec;
use crate::events::lead::{LeadReceived, LeadSource, TenantKey};
use crate::events::lead_flow::{LeadResolved, LeadUnique, TimezoneSource};
use crate::ids::TenantId;
use crate::providers::zoho::{ZohoError, ZohoRecords};
use crate::store::Store;
use crate::store::call_blocklist::{self, BlockList};
use crate::tenancy::directory::{Directory, TenantSnapshot};

/// Resolves leads to their tenant.
#[derive(Debug)]
pub struct ResolveTenant {
    directory: Directory,
    store: Store,
    zoho: Option<Arc<ZohoRecords>>,
}

impl Stage for ResolveTenant {
    const NAME: &'static str = "resolve_tenant";
    type Input = LeadUnique;

    fn build(runtime: &Runtime) -> anyhow::Result<Self> {
        Ok(Self {
            directory: runtime.directory.clone(),
            // Blocklists of leads filed under the platform tenant are read while the claim's
            // connection is held (see `Store::detached`).
            store: runtime.store.detached(4),
            zoho: runtime.zoho.clone(),
        })
    }

    fn outputs() -> Vec<EventSpec> {
        vec![EventSpec::of::<LeadResolved>()]
    }

    async fn handle(
        &self,
        input: &Envelope<LeadUnique>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let lead = &input.payload.0;
        let tenant = self.find_tenant(input.meta.tenant_id, lead).await?;
        let Some(snapshot) = self.directory.tenant(tenant).await? else {
            return Err(StageError::rejected(format!(
                "client {tenant} does not exist"
            )));
        };
        if !snapshot.active {
            return Err(StageError::rejected(
                "the client is disabled (replay this lead after enabling it)",
            ));
        }
        let fetched;
        let lead = if lead.source == LeadSource::ZohoNotification && lead.phone_raw.is_none() {
            fetched = self.zoho_record(&snapshot, lead).await?;
            &fetched
        } else {
            lead
        };
        let Some(phone_raw) = lead.phone_raw.clone() else {
            return Err(StageError::rejected("the lead has no phone number"));
        };
        let phone = crate::phone::parse(&phone_raw, Some(&snapshot.region))
            .map_err(|error| StageError::rejected(format!("unusable phone number: {error}")))?;

        let (timezone, timezone_source) = match lead
            .timezone
            .as_deref()
            .and_then(|zone| zone.parse::<Tz>().ok())
        {
            Some(zone) => (zone, TimezoneSource::Lead),
            None => match crate::phone::timezone_of(&phone) {
                Some(zone) => (zone, TimezoneSource::Phone),
                None => (snapshot.timezone, TimezoneSource::Tenant),
            },
        };

        let lists = if input.meta.tenant_id == tenant {
            // The claim's transaction already runs as this tenant (most leads: ingress knew it).
            call_blocklist::lists_of(cx.tx, tenant, &phone).await?
        } else {
            // It runs as the platform tenant, whose row-level security hides the tenant's lists.
            let mut tx = self.store.begin_tenant(tenant).await?;
            let lists = call_blocklist::lists_of(&mut tx, tenant, &phone).await?;
            tx.commit().await?;
            lists
        };
        if lists.contains(&BlockList::OptOut) {
            return Err(StageError::rejected(
                "the number opted out of calls from this client",
            ));
        }
        if lists.contains(&BlockList::DoNotCall) {
            return Err(StageError::rejected(
                "the number is on the client's do-not-call list",
            ));
        }

        let resolved = LeadResolved {
            source: lead.source,
            source_event_id: lead.source_event_id.clone(),
            dedupe_key: lead.dedupe_key.clone(),
            external_id: lead.external_id.clone(),
            phone_region: crate::phone::region_of(&phone).map(|id| id.as_ref().to_owned()),
            phone,
            phone_raw,
            first_name: lead.first_name.clone(),
            last_name: lead.last_name.clone(),
            full_name: lead.full_name.clone(),
            email: lead.email.clone(),
            timezone: timezone.name().to_owned(),
            timezone_source,
            tags: lead.tags.clone(),
            custom_fields: lead.custom_fields.clone(),
            campaign_id: lead.campaign_id.clone(),
            received_at: lead.received_at,
            occurred_at: lead.occurred_at,
            trigger: lead.trigger.clone(),
            schedule: None,
        };
        let mut meta = cx.outbox.next_meta::<LeadResolved>()?;
        meta.tenant_id = tenant;
        cx.outbox.push_with_meta(meta, resolved)?;
        Ok(())
    }
}

impl ResolveTenant {
    /// Completes a Zoho notification's lead with the record it names, read from Zoho now.
    async fn zoho_record(
        &self,
        snapshot: &TenantSnapshot,
        lead: &LeadReceived,
    ) -> Result<LeadReceived, StageError> {
        let Some(zoho) = &self.zoho else {
            return Err(StageError::rejected(
                "a Zoho notification names a record, and this process has no master key to \
                 read the client's Zoho credentials (replay it where one is configured)",
            ));
        };
        let module = lead
            .custom_fields
            .get("module")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let id = lead.external_id.as_deref().unwrap_or_default();
        let record = match zoho.record(snapshot, module, id).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                return Err(StageError::rejected(format!(
                    "Zoho has no {module} record {id} (deleted since the notification?)"
                )));
            }
            Err(ZohoError::Unavailable(reason)) => {
                return Err(StageError::retryable(format!("zoho: {reason}")));
            }
            Err(error) => {
                return Err(StageError::rejected(format!("{error} (replay once fixed)")));
            }
        };
        let body = serde_json::to_vec(&record).map_err(|e| StageError::rejected(e.to_string()))?;
        let read = crate::normalize::zoho_workflow(&body, Some("application/json"))
            .map_err(|error| StageError::rejected(format!("Zoho record {id}: {error}")))?;
        let mut custom_fields = read.custom_fields;
        custom_fields.extend(lead.custom_fields.clone());
        Ok(LeadReceived {
            phone_raw: read.phone_raw,
            phone_e164: read.phone_e164,
            first_name: read.first_name,
            last_name: read.last_name,
            full_name: read.full_name,
            email: read.email,
            timezone: read.timezone,
            tags: read.tags,
            custom_fields,
            campaign_id: read.campaign_id.or_else(|| lead.campaign_id.clone()),
            ..lead.clone()
        })
    }

    /// The tenant ingress authenticated, else the one the lead's tenant key names.
    async fn find_tenant(
        &self,
        envelope_tenant: TenantId,
        lead: &LeadReceived,
    ) -> Result<TenantId, StageError> {
        if envelope_tenant != TenantId::PLATFORM {
            if let TenantKey::TenantId(named) = &lead.tenant_key
                && *named != envelope_tenant
            {
                return Err(StageError::rejected(format!(
                    "the lead names client {named} but arrived for client {envelope_tenant}"
                )));
            }
            return Ok(envelope_tenant);
        }
        let found = match &lead.tenant_key {
            TenantKey::TenantId(id) => Some(*id),
            TenantKey::GohighlevelLocation(location) => {
                self.directory.by_gohighlevel_location(location).await?
            }
            TenantKey::ZohoOrg(org) => self.directory.by_zoho_org(org).await?,
            TenantKey::PathKey(_) => None,
        };
        found.ok_or_else(|| {
            StageError::rejected(format!(
                "no client claims {} (set it in the client's configuration, then replay)",
                lead.tenant_key.scope()
            ))
        })
    }
}
