//! Canary probes: an operator (or a monitor) asks the pipeline to answer, end to end.
//!
//! `caller pipeline ping` publishes a [`CanaryRequested`]; the `canary` stage answers with a
//! [`CanaryAnswered`]. The round trip proves the bus, the runner, PostgreSQL and the
//! provisioning are all healthy, with the same code path every business stage uses.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Event;
use crate::bus::envelope::Meta;
use crate::bus::subjects::{self, TenantToken};

/// A probe asking the pipeline to answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CanaryRequested {
    /// Who asked, e.g. `cli` or `monitor`.
    pub origin: String,
}

/// The canary stage's answer to a probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CanaryAnswered {
    /// Who asked (copied from the request).
    pub origin: String,
    /// When the probe was requested.
    pub requested_at: DateTime<Utc>,
    /// When the stage handled it.
    pub answered_at: DateTime<Utc>,
}

impl Event for CanaryRequested {
    const TYPE: &'static str = "canary.requested";
    const VERSION: u32 = 1;

    fn subject(meta: &Meta) -> String {
        subjects::canary_requested(TenantToken::Id(&meta.tenant_id))
    }

    fn subject_pattern() -> String {
        subjects::canary_requested(TenantToken::Any)
    }
}

impl Event for CanaryAnswered {
    const TYPE: &'static str = "canary.answered";
    const VERSION: u32 = 1;

    fn subject(meta: &Meta) -> String {
        subjects::canary_answered(TenantToken::Id(&meta.tenant_id))
    }

    fn subject_pattern() -> String {
        subjects::canary_answered(TenantToken::Any)
    }
}
