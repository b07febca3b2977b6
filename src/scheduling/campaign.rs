//! Follow-up campaigns: a lead enrolled at some instant is called at each stage's day offset
//! and time of day, on the lead's own clock.
//!
//! Stage kinds of the seed, as offsets: same day (`day_offset` 0, a later hour), short term
//! (1 to 7 days), nurturing (weekly: 7, 14, 21; monthly: 30, 60, 90). A stage whose instant
//! has passed at enrollment (a same-day stage at an hour already gone) is due at once; every
//! stage then moves into the lead's windows like any scheduled attempt.

use chrono::{DateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::events::lead_flow::LeadResolved;
use crate::tenancy::FieldError;

/// Most stages per campaign.
pub const MAX_STAGES: usize = 30;

/// Latest day offset: a year.
pub const MAX_DAY_OFFSET: u32 = 366;

/// One stage of a campaign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignStage {
    /// Days after enrollment, on the lead's calendar (0: the same day).
    pub day_offset: u32,
    /// Time of day on the lead's clock, `HH:MM`.
    pub time: String,
    /// The agent variant to use (`agent.variants[].name`); default: the usual pick.
    #[serde(default)]
    pub agent_variant: Option<String>,
    /// What the agent opens with on this call (its first message).
    #[serde(default)]
    pub message: Option<String>,
}

/// An inbound CRM event that enrolls a lead: every field given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The sender's trigger (`lead.trigger`, e.g. a HighLevel workflow's name), without case.
    #[serde(default)]
    pub trigger: Option<String>,
    /// A tag the lead carries, without case.
    #[serde(default)]
    pub tag: Option<String>,
    /// The lead's CRM status (the tenant's `stop_on.status_field`, default `status`), without
    /// case.
    #[serde(default)]
    pub status: Option<String>,
}

/// A campaign as created or replaced through the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    /// Unique per client; a retry policy's `escalate_to` names it.
    pub name: String,
    /// The stages, in order.
    pub stages: Vec<CampaignStage>,
    /// CRM events that enroll a lead (none: only escalation does).
    #[serde(default)]
    pub triggers: Vec<Trigger>,
}

impl CampaignSpec {
    /// Returns every invalid field. `variants` are the names of the tenant's agent variants.
    #[must_use]
    pub fn validate(&self, variants: &[String]) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.name.trim().is_empty() || self.name.len() > 100 {
            errors.push(FieldError::new("name", "must be 1 to 100 characters"));
        }
        if self.stages.is_empty() || self.stages.len() > MAX_STAGES {
            errors.push(FieldError::new(
                "stages",
                format!("must list 1 to {MAX_STAGES} stages"),
            ));
        }
        let mut previous: Option<(u32, NaiveTime)> = None;
        for (index, stage) in self.stages.iter().enumerate() {
            let at = |field: &str| format!("stages[{index}].{field}");
            if stage.day_offset > MAX_DAY_OFFSET {
                errors.push(FieldError::new(
                    at("day_offset"),
                    format!("must be between 0 and {MAX_DAY_OFFSET}"),
                ));
            }
            match parse_time(&stage.time) {
                None => errors.push(FieldError::new(at("time"), "must be a time HH:MM")),
                Some(time) => {
                    let key = (stage.day_offset, time);
                    if previous.is_some_and(|previous| previous >= key) {
                        errors.push(FieldError::new(
                            at("day_offset"),
                            "stages must be in order: each after the one before",
                        ));
                    }
                    previous = Some(key);
                }
            }
            if let Some(variant) = &stage.agent_variant
                && !variants.iter().any(|known| known == variant)
            {
                errors.push(FieldError::new(
                    at("agent_variant"),
                    format!("the client's agent has no variant `{variant}`"),
                ));
            }
            if stage
                .message
                .as_ref()
                .is_some_and(|message| message.len() > 2_000)
            {
                errors.push(FieldError::new(at("message"), "at most 2000 characters"));
            }
        }
        if self.triggers.len() > 20 {
            errors.push(FieldError::new("triggers", "at most 20 triggers"));
        }
        for (index, trigger) in self.triggers.iter().enumerate() {
            if trigger.trigger.is_none() && trigger.tag.is_none() && trigger.status.is_none() {
                errors.push(FieldError::new(
                    format!("triggers[{index}]"),
                    "must name a trigger, a tag or a status",
                ));
            }
        }
        errors
    }
}

/// Returns `HH:MM` as a time.
#[must_use]
pub fn parse_time(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text, "%H:%M").ok()
}

/// Returns when `stage` of a campaign the lead joined at `enrolled_at` is planned, on the
/// lead's clock `tz`, before windows move it; never before `enrolled_at`.
///
/// A time of day that the clock skips on that date (a spring-forward gap) is read as the
/// first instant after the gap; one it shows twice, as the earlier.
#[must_use]
pub fn stage_time(enrolled_at: DateTime<Utc>, tz: Tz, stage: &CampaignStage) -> DateTime<Utc> {
    let time = parse_time(&stage.time).unwrap_or(NaiveTime::MIN);
    let date = enrolled_at.with_timezone(&tz).date_naive()
        + TimeDelta::days(i64::from(stage.day_offset.min(MAX_DAY_OFFSET)));
    let local = date.and_time(time);
    let planned = tz
        .from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            // In a gap: the first whole minute the clock shows after it.
            (1..=180)
                .map(|minutes| local + TimeDelta::minutes(minutes))
                .find_map(|later| tz.from_local_datetime(&later).earliest())
        })
        .map_or(enrolled_at, |at| at.with_timezone(&Utc));
    planned.max(enrolled_at)
}

/// Returns whether `trigger` matches `lead`; `status_field` is where the lead's CRM status is.
#[must_use]
pub fn matches(trigger: &Trigger, lead: &LeadResolved, status_field: &str) -> bool {
    let same = |left: &str, right: &str| left.trim().eq_ignore_ascii_case(right.trim());
    let trigger_ok = trigger.trigger.as_deref().is_none_or(|wanted| {
        lead.trigger
            .as_deref()
            .is_some_and(|trigger| same(trigger, wanted))
    });
    let tag_ok = trigger
        .tag
        .as_deref()
        .is_none_or(|wanted| lead.tags.iter().any(|tag| same(tag, wanted)));
    let status_ok = trigger.status.as_deref().is_none_or(|wanted| {
        status_of(lead, status_field).is_some_and(|status| same(&status, wanted))
    });
    trigger_ok && tag_ok && status_ok
}

/// Returns the lead's CRM status: the custom field `status_field`, as text.
#[must_use]
pub fn status_of(lead: &LeadResolved, status_field: &str) -> Option<String> {
    match lead.custom_fields.get(status_field)? {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(day_offset: u32, time: &str) -> CampaignStage {
        CampaignStage {
            day_offset,
            time: time.to_owned(),
            agent_variant: None,
            message: None,
        }
    }

    #[test]
    fn stages_fall_on_the_leads_calendar_at_their_time_of_day() {
        let tz = Tz::America__New_York;
        // 23:30 in New York on Monday 2 March is 04:30 UTC on Tuesday.
        let enrolled: DateTime<Utc> = "2026-03-03T04:30:00Z".parse().unwrap();
        let first = stage_time(enrolled, tz, &stage(1, "10:00"));
        assert_eq!(
            first,
            "2026-03-03T15:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        // A same-day stage whose hour has passed is due at once.
        assert_eq!(stage_time(enrolled, tz, &stage(0, "10:00")), enrolled);
        // Across the spring-forward change (8 March): 10:00 EDT is 14:00 UTC.
        let week = stage_time(enrolled, tz, &stage(7, "10:00"));
        assert_eq!(
            week,
            "2026-03-09T14:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        // 02:30 does not exist on 8 March: the first minute after the gap, 03:00 EDT.
        let gap = stage_time(enrolled, tz, &stage(6, "02:30"));
        assert_eq!(
            gap,
            "2026-03-08T07:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn a_campaign_is_checked_field_by_field() {
        let spec = CampaignSpec {
            name: String::new(),
            stages: vec![
                stage(2, "10:00"),
                stage(1, "25:00"),
                stage(1, "09:00"),
                CampaignStage {
                    agent_variant: Some("nope".into()),
                    ..stage(400, "10:00")
                },
            ],
            triggers: vec![Trigger::default()],
        };
        let fields: Vec<String> = spec
            .validate(&["warm".to_owned()])
            .into_iter()
            .map(|error| error.field)
            .collect();
        assert_eq!(
            fields,
            [
                "name",
                "stages[1].time",
                "stages[2].day_offset",
                "stages[3].day_offset",
                "stages[3].agent_variant",
                "triggers[0]"
            ]
        );
        let empty = CampaignSpec {
            name: "x".into(),
            stages: vec![],
            triggers: vec![],
        };
        assert_eq!(empty.validate(&[])[0].field, "stages");
    }
}
