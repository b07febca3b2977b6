//! What a conversation is started with, fixed when it opens (`conversations.context`): the
//! agent, the variant, the prompt variables and the transfer target. A resumed session reads
//! it back, so the agent speaks with the same context on any worker.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::booking::Slot;
use crate::events::lead_flow::LeadResolved;
use crate::ids::{AttemptId, CallId, TenantId};
use crate::tenancy::directory::TenantSnapshot;
use crate::voice::engine::{AgentOverrides, PriorTurn, StartRequest, VariableValue};

/// Where `transfer_to_human` sends the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferTarget {
    /// The tenant's number (E.164).
    pub number: String,
    /// Warm: the person who answers hears who is calling and why before being connected.
    pub warm: bool,
}

/// A conversation's start context.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionContext {
    /// The engine's agent id.
    pub agent_id: String,
    /// The variant chosen for this call (`agent.variants[].name`), if the agent has variants.
    pub variant: Option<String>,
    /// Our id for the person called.
    pub user_id: Option<String>,
    /// Prompt variables: text, integers and booleans.
    pub variables: BTreeMap<String, serde_json::Value>,
    /// The variant's (or agent's) first message.
    pub first_message: Option<String>,
    /// The conversation language.
    pub language: Option<String>,
    /// The system prompt override.
    pub prompt: Option<String>,
    /// The voice override.
    pub voice_id: Option<String>,
    /// Where a transfer goes, when the tenant configured one.
    pub transfer: Option<TransferTarget>,
    /// The business's time zone (IANA), for speaking times.
    pub business_timezone: String,
    /// The callee (E.164).
    pub phone: String,
    /// The callee's name, when known.
    pub lead_name: Option<String>,
    /// The callee's time zone (IANA): slots are offered and read in it.
    #[serde(default)]
    pub lead_timezone: Option<String>,
    /// The callee's contact in the tenant's CRM.
    #[serde(default)]
    pub crm_contact_id: Option<String>,
    /// The callee's e-mail address, when known.
    #[serde(default)]
    pub email: Option<String>,
}

/// Why a context cannot be built; the call cannot have a conversation.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ContextError(pub String);

fn text(settings: &serde_json::Value, key: &str) -> Option<String> {
    settings
        .get(key)
        .and_then(serde_json::Value::as_str)
        .filter(|value| !value.trim().is_empty())
        .map(str::to_owned)
}

/// Picks the variant of `variants` for `call`: stable per call, weighted by `weight` (1 when
/// absent), so replays and resumed sessions agree and a split follows the configured weights.
fn pick_variant(variants: &[serde_json::Value], call: CallId) -> Option<&serde_json::Value> {
    let weight = |variant: &serde_json::Value| {
        variant
            .get("weight")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(1)
    };
    let total: u64 = variants.iter().map(weight).sum();
    if total == 0 {
        return None;
    }
    let digest = Sha256::digest(call.as_uuid().as_bytes());
    let mut point = u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8])) % total;
    for variant in variants {
        if point < weight(variant) {
            return Some(variant);
        }
        point -= weight(variant);
    }
    None
}

/// Says slots the way a person would, on the business's clock: "Tuesday 25 November at 10:00".
pub fn speak_slots(slots: &[Slot], timezone: Tz) -> String {
    if slots.is_empty() {
        return "no free times in the next week".to_owned();
    }
    slots
        .iter()
        .map(|slot| {
            slot.starts_at
                .with_timezone(&timezone)
                .format("%A %-d %B at %H:%M")
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The inputs a context is built from.
pub struct ContextInputs<'a> {
    /// The tenant.
    pub snapshot: &'a TenantSnapshot,
    /// The call.
    pub call: CallId,
    /// The lead as resolved.
    pub lead: &'a LeadResolved,
    /// Which attempt of the call this is.
    pub attempt_number: i32,
    /// The next free slots (empty when the calendar could not say).
    pub free_slots: &'a [Slot],
    /// The previous call's summary with this lead, if any.
    pub previous_summary: Option<String>,
    /// Now.
    pub now: DateTime<Utc>,
}

impl SessionContext {
    /// Builds the context of a call.
    ///
    /// # Errors
    ///
    /// [`ContextError`] when the tenant has no agent id.
    pub fn build(inputs: &ContextInputs<'_>) -> Result<Self, ContextError> {
        let agent = &inputs.snapshot.configuration.agent;
        let agent_id = text(agent, "agent_id").ok_or_else(|| {
            ContextError("the client has no voice agent (configuration agent.agent_id)".to_owned())
        })?;
        let variants = agent
            .get("variants")
            .and_then(serde_json::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let schedule = inputs.lead.schedule.as_ref();
        // A follow-up stage may name its variant; otherwise the usual stable pick.
        let named = schedule
            .and_then(|schedule| schedule.agent_variant.as_deref())
            .and_then(|name| {
                variants
                    .iter()
                    .find(|variant| text(variant, "name").as_deref() == Some(name))
            });
        let variant = named.or_else(|| pick_variant(variants, inputs.call));
        let setting = |key: &str| {
            variant
                .and_then(|variant| text(variant, key))
                .or_else(|| text(agent, key))
        };
        let lead = inputs.lead;
        let lead_name = lead.full_name.clone().or_else(|| {
            match (lead.first_name.as_deref(), lead.last_name.as_deref()) {
                (Some(first), Some(last)) => Some(format!("{first} {last}")),
                (Some(first), None) => Some(first.to_owned()),
                (None, Some(last)) => Some(last.to_owned()),
                (None, None) => None,
            }
        });
        let business_tz = inputs.snapshot.timezone;
        let lead_tz: Tz = lead.timezone.parse().unwrap_or(business_tz);
        let mut variables = BTreeMap::new();
        let mut put = |key: &str, value: serde_json::Value| {
            variables.insert(key.to_owned(), value);
        };
        put(
            "lead_name",
            lead_name
                .clone()
                .unwrap_or_else(|| "there".to_owned())
                .into(),
        );
        put(
            "first_name",
            lead.first_name
                .clone()
                .or_else(|| lead_name.clone())
                .unwrap_or_default()
                .into(),
        );
        put("business_name", inputs.snapshot.name.clone().into());
        put("timezone", lead.timezone.clone().into());
        put("business_timezone", business_tz.name().into());
        put(
            "today",
            inputs
                .now
                .with_timezone(&business_tz)
                .format("%A %-d %B %Y")
                .to_string()
                .into(),
        );
        put("free_slots", speak_slots(inputs.free_slots, lead_tz).into());
        put(
            "previous_summary",
            inputs.previous_summary.clone().unwrap_or_default().into(),
        );
        put("attempt_number", inputs.attempt_number.into());
        put("is_retry", (inputs.attempt_number > 1).into());
        put(
            "follow_up_campaign",
            schedule
                .and_then(|schedule| schedule.campaign_name.clone())
                .unwrap_or_default()
                .into(),
        );
        let transfer = agent.get("transfer").and_then(|transfer| {
            Some(TransferTarget {
                number: text(transfer, "number")?,
                warm: transfer.get("mode").and_then(serde_json::Value::as_str) == Some("warm"),
            })
        });
        Ok(Self {
            agent_id,
            variant: variant.and_then(|variant| text(variant, "name")),
            user_id: lead
                .external_id
                .as_ref()
                .map(|contact| format!("{}:{contact}", inputs.snapshot.id)),
            variables,
            first_message: schedule
                .and_then(|schedule| schedule.message.clone())
                .or_else(|| setting("first_message")),
            language: setting("language"),
            prompt: setting("prompt"),
            voice_id: setting("voice_id"),
            transfer,
            business_timezone: business_tz.name().to_owned(),
            phone: lead.phone.to_string(),
            lead_name,
            lead_timezone: Some(lead.timezone.clone()),
            crm_contact_id: lead.external_id.clone(),
            email: lead.email.clone(),
        })
    }

    /// The engine request for this context; `resumed_from` is the transcript so far when a
    /// session takes over, and the agent then opens with `resume_line` instead of its greeting.
    #[must_use]
    pub fn start_request(
        &self,
        ids: (TenantId, CallId, AttemptId),
        resumed_from: Vec<PriorTurn>,
        resume_line: &str,
    ) -> StartRequest {
        let (tenant, call, attempt) = ids;
        let variables = self
            .variables
            .iter()
            .filter_map(|(key, value)| {
                let value = match value {
                    serde_json::Value::String(text) => VariableValue::Text(text.clone()),
                    serde_json::Value::Bool(flag) => VariableValue::Bool(*flag),
                    serde_json::Value::Number(number) => VariableValue::Integer(number.as_i64()?),
                    _ => return None,
                };
                Some((key.clone(), value))
            })
            .collect();
        let first_message = if resumed_from.is_empty() {
            self.first_message.clone()
        } else {
            Some(resume_line.to_owned())
        };
        StartRequest {
            tenant,
            call,
            attempt,
            agent_id: self.agent_id.clone(),
            user_id: self.user_id.clone(),
            variables,
            overrides: AgentOverrides {
                first_message,
                language: self.language.clone(),
                prompt: self.prompt.clone(),
                voice_id: self.voice_id.clone(),
            },
            resumed_from,
        }
    }

    /// The business's time zone (UTC when unreadable).
    #[must_use]
    pub fn business_tz(&self) -> Tz {
        self.business_timezone.parse().unwrap_or(Tz::UTC)
    }

    /// The callee's time zone, in which slots are offered and times are read; the business's
    /// when the lead's is unknown or unreadable.
    #[must_use]
    pub fn lead_tz(&self) -> Tz {
        self.lead_timezone
            .as_deref()
            .and_then(|zone| zone.parse().ok())
            .unwrap_or_else(|| self.business_tz())
    }
}

/// How far ahead the opening slot summary looks.
pub const SLOT_LOOKAHEAD: TimeDelta = TimeDelta::days(7);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_stable_per_call_and_follow_weights() {
        let variants = vec![
            serde_json::json!({"name": "a", "weight": 3}),
            serde_json::json!({"name": "b", "weight": 1}),
        ];
        let mut counts = [0_u32; 2];
        for _ in 0..4_000 {
            let call = CallId::from_uuid(uuid::Uuid::new_v4());
            let first = pick_variant(&variants, call).unwrap();
            assert_eq!(pick_variant(&variants, call).unwrap(), first);
            counts[usize::from(first["name"] == "b")] += 1;
        }
        // 3:1 within a wide margin (binomial, n = 4000: the sd of the share is under 1%).
        assert!((2_700..3_300).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn no_variants_means_none() {
        let call = CallId::from_uuid(uuid::Uuid::new_v4());
        assert!(pick_variant(&[], call).is_none());
        assert!(pick_variant(&[serde_json::json!({"weight": 0})], call).is_none());
    }
}
