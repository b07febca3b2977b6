//! Each tenant's CRM adapter, by its configuration's `crm`.

use std::sync::Arc;

use super::{Crm, ProviderError};
use crate::ids::TenantId;
use crate::tenancy::config::CrmKind;
use crate::tenancy::directory::{Directory, LookupError};

/// The process's CRM adapters, one per kind, chosen per tenant.
#[derive(Clone)]
pub struct Crms {
    directory: Directory,
    adapters: Vec<(CrmKind, Arc<dyn Crm>)>,
}

impl std::fmt::Debug for Crms {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<CrmKind> = self.adapters.iter().map(|(kind, _)| *kind).collect();
        formatter
            .debug_struct("Crms")
            .field("adapters", &kinds)
            .finish_non_exhaustive()
    }
}

impl Crms {
    /// No adapters yet: add them with [`Crms::with`].
    #[must_use]
    pub fn new(directory: Directory) -> Self {
        Self {
            directory,
            adapters: Vec::new(),
        }
    }

    /// Serves tenants whose `crm` is `kind` with `adapter`.
    #[must_use]
    pub fn with(mut self, kind: CrmKind, adapter: Arc<dyn Crm>) -> Self {
        self.adapters.retain(|(known, _)| *known != kind);
        self.adapters.push((kind, adapter));
        self
    }

    /// The tenant's CRM; `None` when the tenant has none configured.
    ///
    /// # Errors
    ///
    /// The tenant is gone or the database failed (as [`ProviderError::Unavailable`] for a
    /// database failure, so the caller retries), or no adapter serves its kind.
    pub async fn of(&self, tenant: TenantId) -> Result<Option<Arc<dyn Crm>>, ProviderError> {
        let snapshot = self
            .directory
            .existing(tenant)
            .await
            .map_err(|error| match error {
                LookupError::Gone => ProviderError::Invalid {
                    reason: error.to_string(),
                },
                LookupError::Database(_) => ProviderError::Unavailable {
                    reason: error.to_string(),
                },
            })?;
        let Some(kind) = snapshot.configuration.crm else {
            return Ok(None);
        };
        self.adapters
            .iter()
            .find(|(known, _)| *known == kind)
            .map(|(_, adapter)| Some(Arc::clone(adapter)))
            .ok_or_else(|| ProviderError::Invalid {
                reason: format!("this build has no {kind:?} CRM adapter"),
            })
    }
}
