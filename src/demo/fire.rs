//! Sends the demo's leads the way each channel does: a HighLevel workflow webhook, a Zoho
//! workflow webhook, a signed custom webhook, an API call. Every delivery carries this run's
//! id, so the dedupe stage (which remembers deliveries for days) sees new leads each run.
//!
//! The leads exist in the CRM first: each is upserted as a contact of the simulated HighLevel
//! location (the demo client's CRM), which is where crm_sync writes the call afterwards.

use anyhow::Context as _;
use serde_json::{Value, json};

use super::leads::{Channel, DemoLead};
use super::tenant::DemoSecrets;
use crate::ids::TenantId;
use crate::ingress::verify::StandardWebhooks;
use crate::providers::sim::SimAccounts;
use crate::providers::sim_gohighlevel::VERSION_CONTACTS;

/// Where to send things.
#[derive(Debug)]
pub struct Targets<'a> {
    /// The HTTP client.
    pub http: &'a reqwest::Client,
    /// Ingress, e.g. `http://127.0.0.1:8080`.
    pub ingress: &'a str,
    /// The simulator, e.g. `http://127.0.0.1:8090`.
    pub simulator: &'a str,
    /// The demo client.
    pub tenant: TenantId,
    /// Its secrets.
    pub secrets: &'a DemoSecrets,
    /// This run's id, in every delivery's id.
    pub run: &'a str,
}

/// Upserts `lead` as a contact of the simulated HighLevel location; returns its id.
pub async fn upsert_contact(targets: &Targets<'_>, lead: &DemoLead) -> anyhow::Result<String> {
    let accounts = SimAccounts::default();
    let body = json!({
        "locationId": accounts.gohighlevel_location_id,
        "firstName": lead.first_name,
        "lastName": lead.last_name,
        "email": lead.email,
        "phone": lead.phone,
        "timezone": lead.zone.name(),
        "source": "caller demo",
    });
    let response = targets
        .http
        .post(format!("{}/contacts/upsert", targets.simulator))
        .bearer_auth(&accounts.gohighlevel_token)
        .header("version", VERSION_CONTACTS)
        .json(&body)
        .send()
        .await
        .context("the HighLevel simulator is unreachable")?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    answer["contact"]["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the HighLevel simulator refused the contact ({status})"))
}

/// Sends `lead` through its channel; `contact` is its HighLevel contact id.
pub async fn send(targets: &Targets<'_>, lead: &DemoLead, contact: &str) -> anyhow::Result<()> {
    let delivery = format!("demo-{}-{}", targets.run, lead.channel.label());
    let tenant = targets.tenant;
    let request = match lead.channel {
        Channel::HighLevelWorkflow => {
            let secret = targets.secrets.gohighlevel_webhook.expose();
            let body = json!({
                "contact_id": contact,
                "first_name": lead.first_name,
                "last_name": lead.last_name,
                "full_name": lead.name(),
                "email": lead.email,
                "phone": lead.phone,
                "timezone": lead.zone.name(),
                "country": "US",
                "tags": "ai-call-requested,demo",
                "contact_source": "caller demo",
                "location": {"id": SimAccounts::default().gohighlevel_location_id},
                "workflow": {"id": "demo-workflow", "name": "Demo: call new leads"},
                // A HighLevel workflow delivery has no id: its content is the dedupe key.
                "customData": {"demo_delivery": delivery},
            });
            targets
                .http
                .post(format!(
                    "{}/webhooks/{tenant}/gohighlevel/workflow/{secret}",
                    targets.ingress
                ))
                .json(&body)
        }
        Channel::ZohoWorkflow => {
            let secret = targets.secrets.zoho_webhook.expose();
            let body = json!({
                // NOTE: no `id`: the demo client's CRM is HighLevel, where a Zoho record id
                // names no contact (crm_sync refuses it); the contact is found by phone.
                "First_Name": lead.first_name,
                "Last_Name": lead.last_name,
                "Phone": lead.phone,
                "Email": lead.email,
                "Time_Zone": lead.zone.name(),
                "workflow": "Demo: call new leads",
                "event_id": delivery,
            });
            targets
                .http
                .post(format!(
                    "{}/webhooks/{tenant}/zoho/workflow/{secret}",
                    targets.ingress
                ))
                .json(&body)
        }
        Channel::CustomWebhook => {
            let body = json!({
                // NOTE: no `id` (the mapping's `external_id`): it would be taken for the
                // lead's HighLevel contact id, which it is not; crm_sync finds it by phone.
                "event_id": delivery,
                "phone": lead.phone,
                "first_name": lead.first_name,
                "last_name": lead.last_name,
                "email": lead.email,
                "timezone": lead.zone.name(),
            })
            .to_string();
            let now = chrono::Utc::now();
            let signature =
                StandardWebhooks::new(std::slice::from_ref(&targets.secrets.custom_webhook))
                    .context("the demo's custom webhook secret is not `whsec_<base64>`")?
                    .sign(&delivery, now, body.as_bytes());
            targets
                .http
                .post(format!("{}/webhooks/{tenant}/custom", targets.ingress))
                .header("content-type", "application/json")
                .header("webhook-id", &delivery)
                .header("webhook-timestamp", now.timestamp().to_string())
                .header("webhook-signature", signature)
                .body(body)
        }
        Channel::Api => targets
            .http
            .post(format!("{}/v1/calls", targets.ingress))
            .bearer_auth(targets.secrets.api_key.expose())
            .header("idempotency-key", &delivery)
            .json(&json!({
                "phone": lead.phone,
                "first_name": lead.first_name,
                "last_name": lead.last_name,
                "email": lead.email,
                "timezone": lead.zone.name(),
            })),
    };
    let response = request
        .send()
        .await
        .with_context(|| format!("send the {} lead to ingress", lead.channel.label()))?;
    let status = response.status();
    if !status.is_success() {
        // The problem body names the field or check; it never holds a secret.
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!(
            "ingress refused the {} lead ({status}): {}",
            lead.channel.label(),
            body.chars().take(300).collect::<String>()
        );
    }
    Ok(())
}
