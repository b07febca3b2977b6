//! CRM events that stop a lead (`configuration.stop_on`), and the campaign an event enrolls
//! a lead in.

use super::campaign::{self, Trigger};
use crate::events::lead_flow::LeadResolved;
use crate::tenancy::config::StopRules;

/// The custom field holding a lead's CRM status when the tenant names none.
pub const DEFAULT_STATUS_FIELD: &str = "status";

/// Returns the field a tenant's CRM status is read from.
#[must_use]
pub fn status_field(rules: &StopRules) -> &str {
    rules
        .status_field
        .as_deref()
        .unwrap_or(DEFAULT_STATUS_FIELD)
}

/// Returns why `lead` must be stopped, if a rule matches: its status or one of its tags.
#[must_use]
pub fn stop_reason(rules: &StopRules, lead: &LeadResolved) -> Option<String> {
    let same = |left: &str, right: &str| left.trim().eq_ignore_ascii_case(right.trim());
    if let Some(status) = campaign::status_of(lead, status_field(rules))
        && rules.statuses.iter().any(|stop| same(stop, &status))
    {
        return Some(format!("crm status `{status}`"));
    }
    lead.tags
        .iter()
        .find(|tag| rules.tags.iter().any(|stop| same(stop, tag)))
        .map(|tag| format!("crm tag `{tag}`"))
}

/// Returns the index of the first campaign (of `(index, triggers)`) one of whose triggers
/// matches `lead`.
#[must_use]
pub fn enrolling<'a>(
    campaigns: impl IntoIterator<Item = (usize, &'a [Trigger])>,
    lead: &LeadResolved,
    rules: &StopRules,
) -> Option<usize> {
    let field = status_field(rules);
    campaigns.into_iter().find_map(|(index, triggers)| {
        triggers
            .iter()
            .any(|trigger| campaign::matches(trigger, lead, field))
            .then_some(index)
    })
}
