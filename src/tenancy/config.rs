//! A client's configuration: providers, hours, windows, limits, retry policy, agent settings.

use std::collections::BTreeMap;

use chrono::NaiveTime;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{FieldError, validate_timezone};
use crate::ids::PhoneNumber;

/// CRM the client uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CrmKind {
    /// HighLevel API v2.
    Gohighlevel,
    /// Zoho CRM v8.
    Zoho,
    /// A proprietary REST CRM.
    Custom,
}

/// Telephony provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TelephonyKind {
    /// Twilio Programmable Voice.
    Twilio,
    /// Fonoster.
    Fonoster,
}

/// Voice engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VoiceKind {
    /// ElevenLabs Conversational AI.
    Elevenlabs,
    /// A self-hosted speech-to-speech model.
    Local,
}

/// Calendar source for free slots and bookings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CalendarKind {
    /// The CRM's own calendar.
    Crm,
    /// CalDAV (RFC 4791).
    Caldav,
    /// Static weekly rules.
    Static,
    /// Google Calendar.
    Google,
    /// Microsoft Outlook.
    Outlook,
    /// Calendly.
    Calendly,
    /// Acuity Scheduling.
    Acuity,
}

/// A day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

/// Opening hours on one day, in the business's time zone (`HH:MM`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DayHours {
    /// Day of the week.
    pub day: Weekday,
    /// Opening time, `HH:MM`.
    pub open: String,
    /// Closing time, `HH:MM`, after `open`.
    pub close: String,
}

/// Retry policy of a call: the tenant's default (`configuration.retry_policy`), or a calling
/// campaign's (`PUT /v1/clients/{id}/retry-schedules/{campaign}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Delays before each retry of an unanswered call (no answer, busy, voicemail), in
    /// minutes, counted from when the attempt ended (default ladder 15, 60, 240, 1440). The
    /// last step repeats when `max_attempts` asks for more retries than steps.
    pub ladder_minutes: Vec<u32>,
    /// Most attempts per call, the first included.
    pub max_attempts: u32,
    /// Delay before retrying a technical failure (the provider failed, the network failed,
    /// the dial could not be confirmed), in minutes.
    #[serde(default = "default_technical_retry_minutes")]
    pub technical_retry_minutes: u32,
    /// Most seconds added to a technical retry's delay, spread per call so that a provider
    /// outage is not followed by every retry at once.
    #[serde(default = "default_jitter_secs")]
    pub jitter_secs: u32,
    /// The follow-up campaign (by name) a lead joins when its attempts ran out unanswered.
    #[serde(default)]
    pub escalate_to: Option<String>,
}

fn default_technical_retry_minutes() -> u32 {
    2
}

fn default_jitter_secs() -> u32 {
    60
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            ladder_minutes: vec![15, 60, 240, 1_440],
            max_attempts: 5,
            technical_retry_minutes: default_technical_retry_minutes(),
            jitter_secs: default_jitter_secs(),
            escalate_to: None,
        }
    }
}

impl RetryPolicy {
    /// Returns every invalid field, each named under `at` (e.g. `retry_policy`; empty: the
    /// policy is the whole body, and fields read `ladder_minutes`).
    #[must_use]
    pub fn validate(&self, at: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let field = |name: &str| {
            if at.is_empty() {
                name.to_owned()
            } else {
                format!("{at}.{name}")
            }
        };
        if self.ladder_minutes.is_empty() {
            errors.push(FieldError::new(
                field("ladder_minutes"),
                "must list at least one delay",
            ));
        }
        if self.ladder_minutes.contains(&0) {
            errors.push(FieldError::new(
                field("ladder_minutes"),
                "delays must be at least 1 minute",
            ));
        }
        if self.ladder_minutes.iter().any(|minutes| *minutes > 43_200) {
            errors.push(FieldError::new(
                field("ladder_minutes"),
                "delays must be at most 43200 minutes (30 days)",
            ));
        }
        if !(1..=50).contains(&self.max_attempts) {
            errors.push(FieldError::new(
                field("max_attempts"),
                "must be between 1 and 50",
            ));
        }
        if !(1..=1_440).contains(&self.technical_retry_minutes) {
            errors.push(FieldError::new(
                field("technical_retry_minutes"),
                "must be between 1 and 1440",
            ));
        }
        if self.jitter_secs > 3_600 {
            errors.push(FieldError::new(
                field("jitter_secs"),
                "must be at most 3600",
            ));
        }
        if let Some(name) = &self.escalate_to
            && (name.trim().is_empty() || name.len() > 100)
        {
            errors.push(FieldError::new(
                field("escalate_to"),
                "must name a follow-up campaign (1 to 100 characters)",
            ));
        }
        errors
    }
}

/// Inbound CRM events that stop a lead: its pending retries and follow-ups are cancelled and
/// it is not called. Matched on `lead.resolved` (a webhook or API request for the lead).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopRules {
    /// The lead's custom field holding its CRM status (default `status`).
    #[serde(default)]
    pub status_field: Option<String>,
    /// Statuses that stop the lead (compared without case), e.g. `won`, `lost`.
    #[serde(default)]
    pub statuses: Vec<String>,
    /// CRM tags that stop the lead (compared without case), e.g. `do-not-call`.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Everything configurable about a client except secrets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientConfiguration {
    /// CRM.
    pub crm: Option<CrmKind>,
    /// Telephony provider.
    pub telephony: Option<TelephonyKind>,
    /// Voice engine.
    pub voice: Option<VoiceKind>,
    /// Calendar source.
    pub calendar: Option<CalendarKind>,
    /// Business time zone (IANA); defaults to the client's.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Opening hours, at most one entry per day.
    #[serde(default)]
    pub business_hours: Vec<DayHours>,
    /// When calls may be placed, in the callee's local time; within 08:00-21:00 by law.
    #[serde(default)]
    pub calling_windows: Vec<DayHours>,
    /// Calls in progress at once.
    #[serde(default = "default_concurrency_cap")]
    pub concurrency_cap: u32,
    /// Calls started per second.
    #[serde(default = "default_calls_per_second")]
    pub calls_per_second: f64,
    /// Caller-id pool (E.164).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub caller_numbers: Vec<PhoneNumber>,
    /// Retry policy.
    #[serde(default)]
    pub retry_policy: RetryPolicy,
    /// Days on which no call is placed, on the business's clock (`YYYY-MM-DD`).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub holidays: Vec<chrono::NaiveDate>,
    /// CRM events that cancel a lead's retries and follow-ups.
    #[serde(default)]
    pub stop_on: StopRules,
    /// Agent settings (agent id, language, first message, variants), passed to the voice engine.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub agent: serde_json::Value,
    /// Non-secret provider settings by provider (`account_sid`, `location_id`, …).
    ///
    /// Ingress reads `gohighlevel.location_id` and `zoho.org_id` (each belongs to one client)
    /// and `custom.field_mapping` (where a custom webhook's fields are, see `FieldMapping`).
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Object>)]
    pub providers: BTreeMap<String, serde_json::Value>,
    /// ISO 3166 country whose national format a number without `+` is read in (e.g. `US`);
    /// defaults to the country of the first caller number, else `US`.
    #[serde(default)]
    pub region: Option<String>,
    /// Webhook and API lead requests accepted per minute (default: the platform's
    /// `ingress.requests_per_minute`); over it ingress answers 429.
    #[serde(default)]
    pub ingress_requests_per_minute: Option<u32>,
    /// Detect answering machines (asynchronously: the call connects at once, the result
    /// follows), so a machine's answer ends as outcome `machine` instead of `human`.
    #[serde(default)]
    pub answering_machine_detection: bool,
    /// Record calls: both channels as a stereo WAV, sealed at rest (AES-256-GCM) by the media
    /// gateway, listed with the call's conversation.
    #[serde(default)]
    pub record_calls: bool,
    /// What one booked appointment is worth to the business, for revenue attribution in
    /// analytics (`analytics.monthly_revenue_attribution`); none by default.
    #[serde(default)]
    pub appointment_value: Option<AppointmentValue>,
}

/// The value of one booked appointment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppointmentValue {
    /// Amount in the currency's minor unit (cents), e.g. `15000` for 150.00.
    pub amount_cents: u64,
    /// ISO 4217 code, upper case, e.g. `USD`.
    pub currency: String,
}

/// Returns `{}`.
pub fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn default_concurrency_cap() -> u32 {
    5
}

fn default_calls_per_second() -> f64 {
    1.0
}

impl Default for ClientConfiguration {
    fn default() -> Self {
        Self {
            crm: None,
            telephony: None,
            voice: None,
            calendar: None,
            timezone: None,
            business_hours: Vec::new(),
            calling_windows: Vec::new(),
            concurrency_cap: default_concurrency_cap(),
            calls_per_second: default_calls_per_second(),
            caller_numbers: Vec::new(),
            retry_policy: RetryPolicy::default(),
            holidays: Vec::new(),
            stop_on: StopRules::default(),
            agent: empty_object(),
            providers: BTreeMap::new(),
            region: None,
            ingress_requests_per_minute: None,
            answering_machine_detection: false,
            record_calls: false,
            appointment_value: None,
        }
    }
}

/// Provider names whose settings may appear under `providers`.
pub const PROVIDER_NAMES: &[&str] = &[
    "gohighlevel",
    "zoho",
    "custom",
    "twilio",
    "fonoster",
    "elevenlabs",
    "local",
    "caldav",
    "static",
    "google",
    "outlook",
    "calendly",
    "acuity",
    "openai",
];

/// Keys under `providers.<name>` that only an operator may set: they redirect where the
/// platform sends the tenant's credentials (simulators, sandboxes), so a tenant must not be
/// able to point them at an arbitrary host.
pub const OPERATOR_ONLY_PROVIDER_KEYS: &[&str] = &["base_url", "api_domain", "healthcheck_url"];

fn parse_time(field: &str, text: &str, errors: &mut Vec<FieldError>) -> Option<NaiveTime> {
    match NaiveTime::parse_from_str(text, "%H:%M") {
        Ok(time) => Some(time),
        Err(_) => {
            errors.push(FieldError::new(field, "must be a time HH:MM"));
            None
        }
    }
}

fn validate_days(
    field: &str,
    days: &[DayHours],
    legal: Option<(NaiveTime, NaiveTime)>,
    errors: &mut Vec<FieldError>,
) {
    let mut seen: Vec<(Weekday, NaiveTime, NaiveTime, usize)> = Vec::new();
    for (index, day) in days.iter().enumerate() {
        let at = format!("{field}[{index}]");
        let open = parse_time(&format!("{at}.open"), &day.open, errors);
        let close = parse_time(&format!("{at}.close"), &day.close, errors);
        let (Some(open), Some(close)) = (open, close) else {
            continue;
        };
        if open >= close {
            errors.push(FieldError::new(
                format!("{at}.close"),
                "must be after `open` (an empty range never opens)",
            ));
            continue;
        }
        if let Some((earliest, latest)) = legal
            && (open < earliest || close > latest)
        {
            errors.push(FieldError::new(
                at.clone(),
                "calls are allowed only between 08:00 and 21:00 local time",
            ));
        }
        if let Some((_, _, _, other)) = seen
            .iter()
            .find(|(d, o, c, _)| *d == day.day && open < *c && *o < close)
        {
            errors.push(FieldError::new(
                at.clone(),
                format!("overlaps {field}[{other}]"),
            ));
        }
        seen.push((day.day, open, close, index));
    }
}

impl ClientConfiguration {
    /// Returns the business's time zone: the configuration's, else `client_timezone` (the
    /// client's), else UTC when neither parses.
    #[must_use]
    pub fn business_timezone(&self, client_timezone: &str) -> chrono_tz::Tz {
        self.timezone
            .as_deref()
            .unwrap_or(client_timezone)
            .parse()
            .unwrap_or(chrono_tz::Tz::UTC)
    }

    /// Returns the country whose national format a number without `+` is read in: the
    /// configured region, else the first caller number's country, else
    /// [`DEFAULT_REGION`](crate::normalize::DEFAULT_REGION).
    #[must_use]
    pub fn lead_region(&self) -> String {
        self.region
            .clone()
            .or_else(|| {
                self.caller_numbers
                    .first()
                    .and_then(crate::phone::region_of)
                    .map(|id| id.as_ref().to_owned())
            })
            .unwrap_or_else(|| crate::normalize::DEFAULT_REGION.to_owned())
    }

    /// Returns the names of the agent's variants (`agent.variants[].name`).
    #[must_use]
    pub fn agent_variant_names(&self) -> Vec<String> {
        self.agent
            .get("variants")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|variant| variant.get("name")?.as_str().map(str::to_owned))
            .collect()
    }

    /// Returns whether some instant of a week satisfies the legal hours, the calling windows
    /// and the business hours together, for a callee in the business's own zone (holidays
    /// aside: they are finite, so the windows open after them).
    fn windows_ever_open(&self) -> bool {
        let zone = self
            .timezone
            .as_deref()
            .and_then(|zone| zone.parse::<chrono_tz::Tz>().ok())
            .unwrap_or(chrono_tz::Tz::UTC);
        let without_holidays = Self {
            holidays: Vec::new(),
            ..self.clone()
        };
        let Ok(policy) = crate::calls::window::CallingPolicy::from_config(&without_holidays, zone)
        else {
            return true; // the windows' own errors are reported instead
        };
        // A Monday in a month without clock changes anywhere we know of.
        let reference = chrono::DateTime::parse_from_rfc3339("2026-01-05T00:00:00Z")
            .map(|at| at.with_timezone(&chrono::Utc))
            .unwrap_or_default();
        policy.next_allowed(zone, reference) != crate::calls::window::Admission::Never
    }

    /// Returns every invalid field, prefixed with `prefix` (e.g. `configuration`).
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let at = |field: &str| {
            if prefix.is_empty() {
                field.to_owned()
            } else {
                format!("{prefix}.{field}")
            }
        };
        if let Some(zone) = &self.timezone {
            validate_timezone(&at("timezone"), zone, &mut errors);
        }
        validate_days(
            &at("business_hours"),
            &self.business_hours,
            None,
            &mut errors,
        );
        let legal = (
            NaiveTime::from_hms_opt(8, 0, 0).expect("valid"),
            NaiveTime::from_hms_opt(21, 0, 0).expect("valid"),
        );
        validate_days(
            &at("calling_windows"),
            &self.calling_windows,
            Some(legal),
            &mut errors,
        );
        if !(1..=10_000).contains(&self.concurrency_cap) {
            errors.push(FieldError::new(
                at("concurrency_cap"),
                "must be between 1 and 10000",
            ));
        }
        if !(self.calls_per_second > 0.0 && self.calls_per_second <= 1_000.0) {
            errors.push(FieldError::new(
                at("calls_per_second"),
                "must be above 0 and at most 1000",
            ));
        }
        errors.extend(self.retry_policy.validate(&at("retry_policy")));
        if let Some(value) = &self.appointment_value {
            if value.currency.len() != 3 || !value.currency.bytes().all(|b| b.is_ascii_uppercase())
            {
                errors.push(FieldError::new(
                    at("appointment_value.currency"),
                    "must be an ISO 4217 code in upper case, e.g. USD",
                ));
            }
            if value.amount_cents > 10_000_000_000 {
                errors.push(FieldError::new(
                    at("appointment_value.amount_cents"),
                    "must be at most 10000000000 (100 million in major units)",
                ));
            }
        }
        if self.holidays.len() > 400 {
            errors.push(FieldError::new(at("holidays"), "at most 400 days"));
        }
        if self.stop_on.statuses.len() + self.stop_on.tags.len() > 100
            || self
                .stop_on
                .status_field
                .as_ref()
                .is_some_and(|field| field.trim().is_empty())
        {
            errors.push(FieldError::new(
                at("stop_on"),
                "at most 100 statuses and tags, and a non-empty status_field",
            ));
        }
        if errors.is_empty() && !self.windows_ever_open() {
            errors.push(FieldError::new(
                at("calling_windows"),
                "the calling windows, business hours and holidays leave no time to call in \
                 any two weeks: they never open together",
            ));
        }
        for (name, settings) in &self.providers {
            if !PROVIDER_NAMES.contains(&name.as_str()) {
                errors.push(FieldError::new(
                    at(&format!("providers.{name}")),
                    format!("unknown provider `{name}`"),
                ));
            } else if !settings.is_object() {
                errors.push(FieldError::new(
                    at(&format!("providers.{name}")),
                    "must be an object",
                ));
            }
        }
        if let Some(region) = &self.region
            && region.parse::<phonenumber::country::Id>().is_err()
        {
            errors.push(FieldError::new(
                at("region"),
                "must be an ISO 3166 country code such as `US` or `GB`",
            ));
        }
        if self
            .ingress_requests_per_minute
            .is_some_and(|rate| !(1..=1_000_000).contains(&rate))
        {
            errors.push(FieldError::new(
                at("ingress_requests_per_minute"),
                "must be between 1 and 1000000",
            ));
        }
        if let Some(mapping) = self
            .providers
            .get("custom")
            .and_then(|custom| custom.get("field_mapping"))
        {
            match serde_json::from_value::<crate::normalize::FieldMapping>(mapping.clone()) {
                Ok(parsed) => {
                    if let Err(error) = parsed.validate() {
                        errors.push(FieldError::new(
                            at("providers.custom.field_mapping"),
                            error.to_string(),
                        ));
                    }
                }
                Err(error) => errors.push(FieldError::new(
                    at("providers.custom.field_mapping"),
                    error.to_string(),
                )),
            }
        }
        for (provider, key) in [("gohighlevel", "location_id"), ("zoho", "org_id")] {
            if let Some(value) = self.providers.get(provider).and_then(|p| p.get(key))
                && !value.as_str().is_some_and(|text| {
                    (1..=128).contains(&text.len())
                        && text
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
                })
            {
                errors.push(FieldError::new(
                    at(&format!("providers.{provider}.{key}")),
                    "must be 1-128 letters, digits, `-` or `_`",
                ));
            }
        }
        if let Some(openai) = self.providers.get(crate::summary::llm::PROVIDER)
            && openai.is_object()
            && let Err(invalid) = crate::summary::llm::OpenAiSettings::parse(
                openai,
                &at(&format!("providers.{}", crate::summary::llm::PROVIDER)),
            )
        {
            errors.extend(invalid);
        }
        if !self.agent.is_object() {
            errors.push(FieldError::new(at("agent"), "must be an object"));
        }
        errors
    }

    /// Returns the operator-only provider keys this configuration sets, as field paths.
    pub fn operator_only_fields(&self, prefix: &str) -> Vec<String> {
        let mut fields = Vec::new();
        for (name, settings) in &self.providers {
            for key in OPERATOR_ONLY_PROVIDER_KEYS {
                if settings.get(key).is_some() {
                    fields.push(format!("{prefix}.providers.{name}.{key}"));
                }
            }
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> ClientConfiguration {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_complete_configuration_is_valid() {
        let config = parse(serde_json::json!({
            "crm": "gohighlevel", "telephony": "twilio", "voice": "elevenlabs", "calendar": "crm",
            "timezone": "America/New_York",
            "business_hours": [{"day": "mon", "open": "09:00", "close": "17:00"}],
            "calling_windows": [{"day": "mon", "open": "09:00", "close": "20:00"}],
            "caller_numbers": ["+14155550100"],
            "providers": {"twilio": {"account_sid": "AC0123"}}
        }));
        assert_eq!(config.validate("configuration"), vec![]);
    }

    #[test]
    fn openai_settings_are_validated_naming_the_field() {
        let mut configuration = ClientConfiguration::default();
        configuration.providers.insert(
            "openai".to_owned(),
            serde_json::json!({"model": "gpt-4o-mini", "max_tokens": 200}),
        );
        assert!(configuration.validate("configuration").is_empty());
        configuration.providers.insert(
            "openai".to_owned(),
            serde_json::json!({"max_tokens": 0, "base_url": "https://api.openai.com/v1"}),
        );
        let fields: Vec<String> = configuration
            .validate("configuration")
            .into_iter()
            .map(|error| error.field)
            .collect();
        assert_eq!(
            fields,
            [
                "configuration.providers.openai.model",
                "configuration.providers.openai.max_tokens"
            ]
        );
        assert_eq!(
            configuration.operator_only_fields("configuration"),
            ["configuration.providers.openai.base_url"]
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let config = parse(serde_json::json!({
            "crm": null, "telephony": null, "voice": null, "calendar": null,
            "timezone": "Mars/Olympus",
            "business_hours": [
                {"day": "mon", "open": "09:00", "close": "17:00"},
                {"day": "mon", "open": "16:00", "close": "18:00"},
                {"day": "tue", "open": "10:00", "close": "10:00"}
            ],
            "calling_windows": [{"day": "wed", "open": "07:00", "close": "12:00"}],
            "retry_policy": {"ladder_minutes": [], "max_attempts": 3},
            "providers": {"skype": {}}
        }));
        let fields: Vec<String> = config
            .validate("configuration")
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "configuration.timezone",
                "configuration.business_hours[1]",
                "configuration.business_hours[2].close",
                "configuration.calling_windows[0]",
                "configuration.retry_policy.ladder_minutes",
                "configuration.providers.skype",
            ]
        );
    }

    #[test]
    fn unknown_provider_kinds_and_bad_numbers_do_not_parse() {
        let unknown =
            serde_json::from_value::<ClientConfiguration>(serde_json::json!({"crm": "salesforce"}));
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("unknown variant `salesforce`")
        );
        let number = serde_json::from_value::<ClientConfiguration>(
            serde_json::json!({"caller_numbers": ["555-0100"]}),
        );
        assert!(number.unwrap_err().to_string().contains("E.164"));
    }

    #[test]
    fn schedules_that_never_open_or_bad_policies_are_refused_naming_the_field() {
        let weekdays: Vec<_> = ["mon", "tue", "wed", "thu", "fri"]
            .into_iter()
            .map(|day| serde_json::json!({"day": day, "open": "09:00", "close": "17:00"}))
            .collect();
        let never = parse(serde_json::json!({
            "business_hours": weekdays,
            "calling_windows": [{"day": "sat", "open": "10:00", "close": "12:00"}],
        }));
        let fields: Vec<String> = never.validate("").into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["calling_windows"]);
        let policy = parse(serde_json::json!({
            "retry_policy": {"ladder_minutes": [], "max_attempts": 0,
                             "technical_retry_minutes": 0, "escalate_to": " "}
        }));
        let fields: Vec<String> = policy.validate("").into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "retry_policy.ladder_minutes",
                "retry_policy.max_attempts",
                "retry_policy.technical_retry_minutes",
                "retry_policy.escalate_to"
            ]
        );
        let negative = serde_json::from_value::<ClientConfiguration>(serde_json::json!({
            "retry_policy": {"ladder_minutes": [15, -60], "max_attempts": 3}
        }));
        assert!(negative.unwrap_err().to_string().contains("invalid value"));
        let open =
            parse(serde_json::json!({"business_hours": weekdays, "holidays": ["2026-12-25"]}));
        assert!(open.validate("").is_empty());
    }
}
