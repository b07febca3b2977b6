//! Which voice engine a tenant's conversations use.

use std::sync::Arc;

use crate::tenancy::config::VoiceKind;
use crate::tenancy::directory::TenantSnapshot;
use crate::voice::elevenlabs::{ElevenLabsAccount, ElevenLabsEngine};
use crate::voice::engine::VoiceEngine;

/// The tenant's engine, by its configuration's `voice`.
///
/// # Errors
///
/// A sentence naming what the tenant lacks (never a secret).
pub fn for_tenant(
    snapshot: &TenantSnapshot,
    http: reqwest::Client,
) -> Result<Arc<dyn VoiceEngine>, String> {
    match snapshot.configuration.voice {
        Some(VoiceKind::Elevenlabs) => {
            let api_key = snapshot.secrets.elevenlabs_api_key.clone().ok_or_else(|| {
                "the client has no ElevenLabs API key (credential elevenlabs.api_key)".to_owned()
            })?;
            let base_url = snapshot
                .configuration
                .providers
                .get("elevenlabs")
                .and_then(|settings| settings.get("base_url"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            Ok(Arc::new(ElevenLabsEngine::new(
                ElevenLabsAccount { api_key, base_url },
                http,
            )))
        }
        Some(VoiceKind::Local) => {
            Err("the local speech-to-speech engine is not in this build yet".to_owned())
        }
        None => Err("the client has no voice engine (configuration `voice`)".to_owned()),
    }
}
