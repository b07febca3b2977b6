//! Lead changes the agent asks for, recorded in `lead_updates` (state `pending`) for CRM sync
//! to write to the tenant's CRM. Recording is what the call needs to be durable: the CRM may
//! be slow or down while the caller is on the line.

use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::{BookingError, LeadChange, LeadRecords};
use crate::ids::{CallId, TenantId};
use crate::store::Store;

/// Records lead changes for CRM sync.
#[derive(Clone, Debug)]
pub struct PendingLeadUpdates {
    store: Store,
}

impl PendingLeadUpdates {
    /// Writes through `store`.
    #[must_use]
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl LeadRecords for PendingLeadUpdates {
    fn update(
        &self,
        tenant: TenantId,
        call: CallId,
        change: LeadChange,
        idempotency_key: String,
    ) -> BoxFuture<'_, Result<(), BookingError>> {
        async move {
            let failed = |error: sqlx::Error| BookingError::Failed(format!("database: {error}"));
            let changes = serde_json::to_value(&change)
                .map_err(|error| BookingError::Invalid(error.to_string()))?;
            let mut tx = self.store.begin_tenant(tenant).await.map_err(failed)?;
            sqlx::query(
                "INSERT INTO lead_updates (tenant_id, call_id, crm_contact_id, changes, requested_by) \
                 SELECT $1, id, crm_contact_id, $3, $4 FROM calls WHERE tenant_id = $1 AND id = $2 \
                 ON CONFLICT (tenant_id, requested_by) DO NOTHING",
            )
            .bind(tenant.as_uuid())
            .bind(call.as_uuid())
            .bind(changes)
            .bind(idempotency_key)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok(())
        }
        .boxed()
    }
}
