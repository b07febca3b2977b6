//! Opens one of a tenant's stored credentials at the point of use, for adapters that send it
//! with each request (CalDAV, the custom CRM).
//!
//! The sealed row is read in the tenant's own transaction (row-level security applies) and
//! opened with the keyring; the plaintext lives only in the returned [`Secret`]. Errors name
//! the credential kind, never its value.

use crate::crypto::{self, Keyring};
use crate::ids::TenantId;
use crate::providers::error::ProviderError;
use crate::secret::Secret;
use crate::store::{Store, credentials};

/// Returns the tenant's credential `kind`, `None` when it has none.
///
/// # Errors
///
/// [`ProviderError::Unavailable`] when the database fails (retry later);
/// [`ProviderError::Invalid`] when the stored value does not open (a lost master key).
pub async fn open(
    store: &Store,
    keyring: &Keyring,
    tenant: TenantId,
    kind: &str,
) -> Result<Option<Secret<String>>, ProviderError> {
    let database = |error: sqlx::Error| ProviderError::Unavailable {
        reason: format!("database: {error}"),
    };
    let mut transaction = store.begin_tenant(tenant).await.map_err(database)?;
    let sealed = credentials::get(&mut transaction, tenant, kind)
        .await
        .map_err(database)?;
    transaction.commit().await.map_err(database)?;
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    crypto::open(keyring, tenant, kind, &sealed.sealed)
        .map(Some)
        .map_err(|error| ProviderError::Invalid {
            reason: format!("credential `{kind}` does not open: {error}"),
        })
}
