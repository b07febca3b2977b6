//! Each tenant's CRM adapter, by its configuration's `crm`.

use std::sync::Arc;

use super::Crm;
use crate::tenancy::config::CrmKind;

/// The process's CRM adapters, one per kind; a tenant's is the one of its `crm`.
#[derive(Clone, Default)]
pub struct Crms {
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
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves tenants whose `crm` is `kind` with `adapter`.
    #[must_use]
    pub fn with(mut self, kind: CrmKind, adapter: Arc<dyn Crm>) -> Self {
        self.adapters.retain(|(known, _)| *known != kind);
        self.adapters.push((kind, adapter));
        self
    }

    /// The adapter serving tenants whose `crm` is `kind`, if this process has one.
    #[must_use]
    pub fn adapter(&self, kind: CrmKind) -> Option<Arc<dyn Crm>> {
        self.adapters
            .iter()
            .find(|(known, _)| *known == kind)
            .map(|(_, adapter)| Arc::clone(adapter))
    }
}
