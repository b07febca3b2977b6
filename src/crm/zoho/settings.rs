//! A tenant's `providers.zoho` settings, read from its configuration at each call (the
//! directory caches the snapshot).
//!
//! | Key | Default | Meaning |
//! | --- | --- | --- |
//! | `module` | `Leads` | the module contacts live in (`Leads` or `Contacts`) |
//! | `status_field` | `Lead_Status` | the field holding the lead status |
//! | `timezone_field` | none | a field holding the contact's IANA zone (Zoho has none built in) |
//! | `deal_contact_field` | `Contact_Name` | the Deals lookup field naming the contact |
//! | `api_domain` | from the token set | operator only: a simulator or sandbox |
//! | `bookings` | none | `{service_id, staff_id, time_zone, slot_minutes}` for Zoho Bookings |

use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::Value;

use crate::crm::ProviderError;

/// The settings of one tenant's Zoho connection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TenantZoho {
    /// The module contacts live in.
    #[serde(default = "default_module")]
    pub module: String,
    /// The lead status field.
    #[serde(default = "default_status_field")]
    pub status_field: String,
    /// A field holding the contact's IANA time zone, when the tenant has one.
    #[serde(default)]
    pub timezone_field: Option<String>,
    /// The Deals lookup field that names the contact.
    #[serde(default = "default_deal_contact_field")]
    pub deal_contact_field: String,
    /// Operator-set API base (simulator, sandbox).
    #[serde(default)]
    pub api_domain: Option<String>,
    /// Zoho Bookings, when the tenant books through it.
    #[serde(default)]
    pub bookings: Option<BookingsSettings>,
}

/// `providers.zoho.bookings`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BookingsSettings {
    /// The Bookings service (appointment type).
    pub service_id: String,
    /// The staff member booked.
    pub staff_id: String,
    /// The zone the workspace answers and takes times in.
    #[serde(deserialize_with = "zone")]
    pub time_zone: Tz,
    /// How long a slot lasts (`availableslots` answers start times only).
    #[serde(default = "default_slot_minutes")]
    pub slot_minutes: u32,
}

fn default_module() -> String {
    "Leads".to_owned()
}

fn default_status_field() -> String {
    "Lead_Status".to_owned()
}

fn default_deal_contact_field() -> String {
    "Contact_Name".to_owned()
}

fn zone<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Tz, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse()
        .map_err(|_| serde::de::Error::custom("`time_zone` is not an IANA zone"))
}

const fn default_slot_minutes() -> u32 {
    30
}

impl TenantZoho {
    /// Reads `providers.zoho` (absent means every default).
    pub fn from_providers(zoho: Option<&Value>) -> Result<Self, ProviderError> {
        let value = zoho
            .cloned()
            .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
        let settings: Self =
            serde_json::from_value(value).map_err(|error| ProviderError::Invalid {
                reason: format!("the client's `providers.zoho` settings: {error}"),
            })?;
        for (name, field) in [
            ("module", &settings.module),
            ("status_field", &settings.status_field),
            ("deal_contact_field", &settings.deal_contact_field),
        ] {
            if !is_api_name(field) {
                return Err(ProviderError::Invalid {
                    reason: format!("`providers.zoho.{name}` is not a zoho api name"),
                });
            }
        }
        if let Some(bookings) = &settings.bookings
            && !(1..=24 * 60).contains(&bookings.slot_minutes)
        {
            return Err(ProviderError::Invalid {
                reason: "`providers.zoho.bookings.slot_minutes` is out of range".to_owned(),
            });
        }
        Ok(settings)
    }

    /// The Bookings settings, or why there are none.
    pub fn bookings(&self) -> Result<&BookingsSettings, ProviderError> {
        self.bookings
            .as_ref()
            .ok_or_else(|| ProviderError::Invalid {
                reason: "the client has no `providers.zoho.bookings` settings".to_owned(),
            })
    }
}

/// Zoho API names: letters, digits and underscores (`Lead_Status`, `AI_Outcome__c`).
pub(crate) fn is_api_name(name: &str) -> bool {
    (1..=100).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn zoho_settings_default_to_leads_and_lead_status() {
        let settings = TenantZoho::from_providers(None).unwrap();
        assert_eq!(settings.module, "Leads");
        assert_eq!(settings.status_field, "Lead_Status");
        assert_eq!(settings.deal_contact_field, "Contact_Name");
        assert!(settings.bookings().is_err());
        let settings = TenantZoho::from_providers(Some(&json!({
            "module": "Contacts", "org_id": "1",
            "bookings": {"service_id": "1", "staff_id": "2", "time_zone": "Europe/Paris"}
        })))
        .unwrap();
        assert_eq!(settings.module, "Contacts");
        assert_eq!(settings.bookings().unwrap().slot_minutes, 30);
    }

    #[test]
    fn zoho_settings_refuse_names_that_would_change_the_url() {
        for bad in [json!({"module": "Leads/../x"}), json!({"status_field": ""})] {
            assert!(TenantZoho::from_providers(Some(&bad)).is_err(), "{bad}");
        }
        let bad_zone =
            json!({"bookings": {"service_id": "1", "staff_id": "2", "time_zone": "Mars/Base"}});
        assert!(TenantZoho::from_providers(Some(&bad_zone)).is_err());
    }
}
