//! Which voice engine a tenant's conversations use.

use std::sync::Arc;

use crate::tenancy::directory::TenantSnapshot;
use crate::voice::engine::VoiceEngine;

/// The tenant's engine, by its configuration's `voice`.
///
/// # Errors
///
/// A sentence naming what the tenant lacks.
pub fn for_tenant(
    snapshot: &TenantSnapshot,
    http: reqwest::Client,
) -> Result<Arc<dyn VoiceEngine>, String> {
    let _ = (snapshot, http);
    Err("no voice engine in this build yet".to_owned())
}
