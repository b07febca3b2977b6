//! Every subject and stream name is built here, and nowhere else.
//!
//! Subjects are lowercase dot tokens; the tenant id is a token wherever it is known, so
//! consumers can filter per tenant and subject mapping can partition by it. Streams are
//! UPPERCASE.

use std::fmt;

use crate::ids::{CallId, TenantId};

/// The stream holding canary probes and their answers.
pub const CANARY_STREAM: &str = "CANARY";
/// The stream holding dead letters of every stage.
pub const DEAD_LETTER_STREAM: &str = "DLQ";
/// The stream holding leads from ingress to resolution (`leads.>`).
pub const LEADS_STREAM: &str = "LEADS";
/// The stream holding call requests, provider status reports and outcomes (`calls.>`).
pub const CALLS_STREAM: &str = "CALLS";

/// The tenant token of a subject: one tenant, or the single-token wildcard.
#[derive(Clone, Copy, Debug)]
pub enum TenantToken<'a> {
    /// A concrete tenant.
    Id(&'a TenantId),
    /// Any tenant (`*`), for filters and patterns.
    Any,
}

impl fmt::Display for TenantToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TenantToken::Id(tenant) => write!(f, "{tenant}"),
            TenantToken::Any => f.write_str("*"),
        }
    }
}

/// `canary.requested.<tenant>`: a probe asking the pipeline to answer.
pub fn canary_requested(tenant: TenantToken<'_>) -> String {
    format!("canary.requested.{tenant}")
}

/// `canary.answered.<tenant>`: the canary stage's answer to a probe.
pub fn canary_answered(tenant: TenantToken<'_>) -> String {
    format!("canary.answered.{tenant}")
}

/// `dlq.<stage>`: dead letters of one stage.
pub fn dead_letter(stage: &str) -> String {
    format!("dlq.{stage}")
}

/// `dlq.*`: dead letters of every stage.
pub fn dead_letter_any() -> String {
    dead_letter("*")
}

/// `leads.received.<tenant>`: a normalized lead from a CRM webhook, a custom webhook or the API.
///
/// The tenant token is `TenantId::PLATFORM` (the nil uuid) while the lead's tenant is not
/// resolved yet; the payload's `tenant_key` then says how to find it (see `events::lead`).
pub fn leads_received(tenant: TenantToken<'_>) -> String {
    format!("leads.received.{tenant}")
}

/// `leads.unique.<tenant>`: a lead the dedupe stage let through (the first copy within the
/// dedupe horizon). The tenant token is as in [`leads_received`].
pub fn leads_unique(tenant: TenantToken<'_>) -> String {
    format!("leads.unique.{tenant}")
}

/// `leads.resolved.<tenant>`: a lead with its tenant, E.164 number and time zone, cleared
/// against the tenant's do-not-call lists; always under the real tenant.
pub fn leads_resolved(tenant: TenantToken<'_>) -> String {
    format!("leads.resolved.{tenant}")
}

/// `calls.requested.<tenant>`: an admitted call, for the dial stage.
pub fn calls_requested(tenant: TenantToken<'_>) -> String {
    format!("calls.requested.{tenant}")
}

/// `calls.status.<tenant>`: a provider's report about a call attempt (a status callback or an
/// answering machine detection result), for the call_status stage.
pub fn calls_status(tenant: TenantToken<'_>) -> String {
    format!("calls.status.{tenant}")
}

/// `calls.outcome.<tenant>`: how a call attempt ended (human, machine, no answer, busy,
/// failed, cancelled), for the scheduler and analytics.
pub fn calls_outcome(tenant: TenantToken<'_>) -> String {
    format!("calls.outcome.{tenant}")
}

/// `calls.answered.<tenant>`: a call's media stream connected and was authenticated by the
/// media gateway; it opens a conversation (the converse stage).
pub fn calls_answered(tenant: TenantToken<'_>) -> String {
    format!("calls.answered.{tenant}")
}

/// `calls.conversation_ended.<tenant>`: a conversation ended (transcript, tools and recording
/// are stored), for summarize and analytics.
pub fn calls_conversation_ended(tenant: TenantToken<'_>) -> String {
    format!("calls.conversation_ended.{tenant}")
}

/// `calls.conversation_summarized.<tenant>`: a conversation's summary, outcome and sentiment
/// are stored, for crm_sync and analytics.
pub fn calls_conversation_summarized(tenant: TenantToken<'_>) -> String {
    format!("calls.conversation_summarized.{tenant}")
}

/// `calls.post_call.<tenant>`: the voice provider's verified post-call report (its transcript
/// and analysis), for the post_call stage to merge.
pub fn calls_post_call(tenant: TenantToken<'_>) -> String {
    format!("calls.post_call.{tenant}")
}

/// `media.<call>.in` (core NATS, not stored): caller audio and telephony events, from the
/// media gateway to the converse worker that owns the call.
pub fn media_in(call: &CallId) -> String {
    format!("media.{call}.in")
}

/// `media.<call>.out` (core NATS, not stored): agent audio, from the converse worker to the
/// media gateway holding the call's telephony stream.
pub fn media_out(call: &CallId) -> String {
    format!("media.{call}.out")
}

/// `media.<call>.ctl` (core NATS, not stored): control from the converse worker to the media
/// gateway (clear on barge-in, mark, hang-up).
pub fn media_ctl(call: &CallId) -> String {
    format!("media.{call}.ctl")
}

/// `tenancy.changed.<tenant>` (core NATS, not stored): a tenant's configuration, credentials
/// or status changed; caches of tenant snapshots drop that tenant.
pub fn tenancy_changed(tenant: TenantToken<'_>) -> String {
    format!("tenancy.changed.{tenant}")
}

/// `tenancy.changed.all`: drop every cached tenant snapshot (a client was created, so cached
/// "no such tenant" answers may be wrong).
pub fn tenancy_changed_all() -> String {
    "tenancy.changed.all".to_owned()
}

/// Returns true when some concrete subject could match both patterns (`*` and `>` wildcards).
pub fn overlaps(left: &str, right: &str) -> bool {
    let mut left_tokens = left.split('.');
    let mut right_tokens = right.split('.');
    loop {
        match (left_tokens.next(), right_tokens.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(a), Some(b)) => {
                if a != "*" && b != "*" && a != b {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Returns true when every subject matching `inner` also matches `outer`.
pub fn covers(outer: &str, inner: &str) -> bool {
    let mut outer_tokens = outer.split('.');
    let mut inner_tokens = inner.split('.');
    loop {
        match (outer_tokens.next(), inner_tokens.next()) {
            (Some(">"), Some(_)) => return true,
            (Some(_), Some(">")) => return false,
            (Some("*"), Some(_)) => {}
            (Some(_), Some("*")) => return false,
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_carry_the_tenant_as_a_token() {
        let tenant = TenantId::parse("0191e8a4-7c1e-7d2a-9f6e-1a2b3c4d5e6f").unwrap();
        assert_eq!(
            canary_requested(TenantToken::Id(&tenant)),
            "canary.requested.0191e8a4-7c1e-7d2a-9f6e-1a2b3c4d5e6f"
        );
        assert_eq!(canary_answered(TenantToken::Any), "canary.answered.*");
        assert_eq!(dead_letter("dedupe"), "dlq.dedupe");
    }

    #[test]
    fn wildcard_overlap_and_cover() {
        assert!(overlaps("canary.requested.>", "canary.requested.*"));
        assert!(overlaps("a.*.c", "a.b.*"));
        assert!(!overlaps("canary.requested.*", "canary.answered.*"));
        assert!(!overlaps("a.b", "a.b.c"));
        assert!(covers("canary.>", "canary.requested.*"));
        assert!(covers("dlq.*", "dlq.canary"));
        assert!(!covers("dlq.canary", "dlq.*"));
        assert!(!covers("canary.requested.*", "canary.>"));
    }
}
