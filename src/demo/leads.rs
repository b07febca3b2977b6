//! The demo's leads: who is called, through which channel, and what the simulated callee
//! does. Each lead's zone is chosen when the demo runs, among zones where it is now daytime,
//! so every call is inside the legal calling hours (08:00–21:00 in the callee's zone).

use chrono::{DateTime, Timelike as _, Utc};
use chrono_tz::Tz;

use super::simulator::{BUSY_PHONE, NO_ANSWER_PHONE};

/// How a lead reaches the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// A HighLevel workflow's webhook action (secret in the path).
    HighLevelWorkflow,
    /// A Zoho CRM workflow rule's webhook (secret in the path).
    ZohoWorkflow,
    /// A custom CRM's Standard Webhooks delivery, signed with HMAC-SHA256.
    CustomWebhook,
    /// `POST /v1/calls` with the demo client's API key and an `Idempotency-Key`.
    Api,
}

impl Channel {
    /// Returns the channel's name as the summary shows it.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::HighLevelWorkflow => "highlevel",
            Self::ZohoWorkflow => "zoho",
            Self::CustomWebhook => "custom",
            Self::Api => "api",
        }
    }
}

/// What the simulated callee does, hence the outcome the demo expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Answers; the agent books an appointment.
    Booked,
    /// Never picks up.
    NoAnswer,
    /// The line is busy.
    Busy,
}

impl Expected {
    /// Returns the call outcome (`calls.outcome`) this expectation means.
    #[must_use]
    pub const fn outcome(self) -> &'static str {
        match self {
            Self::Booked => "human",
            Self::NoAnswer => "no_answer",
            Self::Busy => "busy",
        }
    }
}

/// One lead of the demo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoLead {
    /// Given name.
    pub first_name: &'static str,
    /// Family name.
    pub last_name: &'static str,
    /// E.164 number, unique among the demo's leads.
    pub phone: &'static str,
    /// E-mail.
    pub email: &'static str,
    /// How it is sent.
    pub channel: Channel,
    /// What its callee does.
    pub expected: Expected,
    /// Its zone, where it is daytime now.
    pub zone: Tz,
}

impl DemoLead {
    /// Returns "First Last".
    #[must_use]
    pub fn name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }
}

/// Zones around the globe, no two more than about eight hours apart, so that at any instant
/// several of them are between 10:00 and 18:59.
const ZONES: [Tz; 12] = [
    chrono_tz::Pacific::Honolulu,
    chrono_tz::America::Los_Angeles,
    chrono_tz::America::Chicago,
    chrono_tz::America::New_York,
    chrono_tz::America::Sao_Paulo,
    chrono_tz::Europe::London,
    chrono_tz::Europe::Berlin,
    chrono_tz::Asia::Dubai,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Asia::Singapore,
    chrono_tz::Asia::Tokyo,
    chrono_tz::Pacific::Auckland,
];

/// Returns the zones where it is between 10:00 and 18:59 at `now`, west to east.
///
/// The margin to the legal 08:00–21:00 leaves the demo (and a retry of it) hours of room.
#[must_use]
pub fn daytime_zones(now: DateTime<Utc>) -> Vec<Tz> {
    ZONES
        .into_iter()
        .filter(|zone| (10..19).contains(&now.with_timezone(zone).hour()))
        .collect()
}

/// Returns the demo's leads at `now`: two who answer and book (HighLevel and Zoho), one who
/// does not answer (custom webhook), one busy (API), each in a daytime zone.
#[must_use]
pub fn plan(now: DateTime<Utc>) -> Vec<DemoLead> {
    let zones = daytime_zones(now);
    // NOTE: never empty with ZONES as listed (no gap of more than nine hours); the fallback
    // keeps this total, and the calls would then wait for their window, which the demo reports.
    let zone = |index: usize| {
        zones
            .get(index % zones.len().max(1))
            .copied()
            .unwrap_or(chrono_tz::America::New_York)
    };
    vec![
        DemoLead {
            first_name: "Ann",
            last_name: "Lee",
            phone: "+12015550123",
            email: "ann.lee@example.com",
            channel: Channel::HighLevelWorkflow,
            expected: Expected::Booked,
            zone: zone(0),
        },
        DemoLead {
            // The Zoho simulator's lead record (`sim::ZOHO_LEAD_EXAMPLE`).
            first_name: "Jane",
            last_name: "Doe",
            phone: "+15125550142",
            email: "jane.doe@example.com",
            channel: Channel::ZohoWorkflow,
            expected: Expected::Booked,
            zone: zone(1),
        },
        DemoLead {
            first_name: "Bob",
            last_name: "Stone",
            phone: NO_ANSWER_PHONE,
            email: "bob.stone@example.com",
            channel: Channel::CustomWebhook,
            expected: Expected::NoAnswer,
            zone: zone(2),
        },
        DemoLead {
            first_name: "Cara",
            last_name: "Diaz",
            phone: BUSY_PHONE,
            email: "cara.diaz@example.com",
            channel: Channel::Api,
            expected: Expected::Busy,
            zone: zone(3),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hour_of_the_day_has_a_daytime_zone_for_each_lead() {
        let midnight = "2026-01-05T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        for minutes in (0..24 * 60 * 7).step_by(30) {
            let now = midnight + chrono::TimeDelta::minutes(minutes);
            assert!(!daytime_zones(now).is_empty(), "no daytime zone at {now}");
            for lead in plan(now) {
                let hour = now.with_timezone(&lead.zone).hour();
                assert!(
                    (10..19).contains(&hour),
                    "{} at {hour}h on {now}",
                    lead.phone
                );
            }
        }
    }

    #[test]
    fn the_demo_leads_have_distinct_numbers_and_mixed_outcomes() {
        let leads = plan(Utc::now());
        let mut phones: Vec<_> = leads.iter().map(|lead| lead.phone).collect();
        phones.sort_unstable();
        phones.dedup();
        assert_eq!(phones.len(), leads.len());
        for expected in [Expected::Booked, Expected::NoAnswer, Expected::Busy] {
            assert!(leads.iter().any(|lead| lead.expected == expected));
        }
    }
}
