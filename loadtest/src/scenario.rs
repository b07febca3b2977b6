//! The scenario format (`loadtest/README.md`, `scenarios/schema.json`): parsing and the checks
//! the schema cannot express.
//!
//! Fields the format defines but this load tester does not implement yet are parsed and
//! refused by name ([`Scenario::load`]), never ignored: a scenario that asks for faults or
//! behaviour the run would not produce must not report as if it had.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::Value;

/// One scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Scenario {
    pub(crate) version: u32,
    pub(crate) name: String,
    #[allow(dead_code)] // documentation for readers of the file
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) seed: u64,
    pub(crate) target: Target,
    pub(crate) duration: Dur,
    #[serde(default)]
    pub(crate) warmup: Dur,
    pub(crate) tenants: Tenants,
    pub(crate) arrival: Arrival,
    pub(crate) mix: Vec<MixEntry>,
    #[serde(default)]
    pub(crate) vendors: Vendors,
    pub(crate) stop: Stop,
    #[serde(default)]
    pub(crate) report: ReportOptions,
    /// Where the file was, for `body_template.file` paths.
    #[serde(skip)]
    pub(crate) dir: PathBuf,
}

/// A duration written `250ms`, `30s`, `10m`, `1h`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Dur(pub(crate) Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses a whole number and a unit (`ms`, `s`, `m`, `h`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (a whole number and ms, s, m or h)"))?;
    let millis = match unit {
        "ms" => number,
        "s" => number * 1_000,
        "m" => number * 60_000,
        "h" => number * 3_600_000,
        _ => return Err(format!("`{text}` has no unit (ms, s, m or h)")),
    };
    Ok(Duration::from_millis(millis))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Target {
    /// Where the in-process `caller all` listens; port 0 picks a free port.
    pub(crate) base_url: String,
    #[serde(default = "default_timeout")]
    pub(crate) timeout: Dur,
    #[serde(default = "default_max_in_flight")]
    pub(crate) max_in_flight: usize,
}

fn default_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

fn default_max_in_flight() -> usize {
    256
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Tenants {
    pub(crate) count: usize,
    pub(crate) id_prefix: String,
    #[serde(default)]
    pub(crate) distribution: TenantDistribution,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum TenantDistribution {
    #[default]
    Uniform,
    Zipf {
        exponent: f64,
    },
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Spacing {
    #[default]
    Poisson,
    Uniform,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Arrival {
    Constant {
        rate: f64,
        #[serde(default)]
        spacing: Spacing,
    },
    Ramp {
        from: f64,
        to: f64,
        #[serde(default)]
        spacing: Spacing,
    },
    Burst {
        rate: f64,
        burst_rate: f64,
        every: Dur,
        length: Dur,
        #[serde(default)]
        spacing: Spacing,
    },
}

impl Arrival {
    pub(crate) fn spacing(&self) -> Spacing {
        match self {
            Self::Constant { spacing, .. }
            | Self::Ramp { spacing, .. }
            | Self::Burst { spacing, .. } => *spacing,
        }
    }

    /// Returns the arrival rate per second at `at` since the start of traffic.
    pub(crate) fn rate_at(&self, at: Duration, warmup: Duration, duration: Duration) -> f64 {
        match self {
            Self::Constant { rate, .. } => *rate,
            Self::Ramp { from, to, .. } => {
                if at <= warmup {
                    return *from;
                }
                let progress = (at - warmup).as_secs_f64() / duration.as_secs_f64().max(1e-9);
                from + (to - from) * progress.min(1.0)
            }
            Self::Burst {
                rate,
                burst_rate,
                every,
                length,
                ..
            } => {
                if at < warmup {
                    return *rate;
                }
                let into_cycle = (at - warmup).as_nanos() % every.0.as_nanos().max(1);
                if into_cycle < length.0.as_nanos() {
                    *burst_rate
                } else {
                    *rate
                }
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MixEntry {
    pub(crate) weight: f64,
    pub(crate) request: RequestSpec,
}

/// Every request kind of the format.
#[derive(
    Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    GhlWorkflowWebhook,
    ZohoWorkflowWebhook,
    CustomWebhook,
    ApiCall,
    BulkLeads,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::GhlWorkflowWebhook => "ghl_workflow_webhook",
            Self::ZohoWorkflowWebhook => "zoho_workflow_webhook",
            Self::CustomWebhook => "custom_webhook",
            Self::ApiCall => "api_call",
            Self::BulkLeads => "bulk_leads",
        }
    }

    fn is_webhook(self) -> bool {
        matches!(
            self,
            Self::GhlWorkflowWebhook | Self::ZohoWorkflowWebhook | Self::CustomWebhook
        )
    }

    /// The route ingress registers for the kind; `{tenant}` is the client id, filled in at
    /// send time.
    pub(crate) fn default_path(self) -> Option<&'static str> {
        match self {
            Self::GhlWorkflowWebhook => Some("/webhooks/{tenant}/gohighlevel/workflow"),
            Self::ZohoWorkflowWebhook => Some("/webhooks/{tenant}/zoho/workflow"),
            Self::CustomWebhook => Some("/webhooks/{tenant}/custom"),
            Self::BulkLeads => Some("/v1/campaigns/loadtest/leads"),
            Self::ApiCall => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Encoding {
    #[default]
    Json,
    Form,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestSpec {
    pub(crate) kind: Kind,
    #[serde(default)]
    pub(crate) body_template: Option<BodyTemplate>,
    #[serde(default)]
    pub(crate) path: Option<String>,
    #[serde(default)]
    pub(crate) method: Option<String>,
    #[serde(default)]
    pub(crate) encoding: Encoding,
    #[serde(default)]
    pub(crate) batch_size: Option<usize>,
    /// Refused: `POST /v1/campaigns/{id}/leads` takes a bare JSON array.
    #[serde(default)]
    pub(crate) batch_field: Option<String>,
    #[serde(default)]
    pub(crate) duplicate_ratio: f64,
    #[serde(default)]
    pub(crate) duplicate_delay: Option<Distribution>,
    #[serde(default)]
    pub(crate) invalid_auth_ratio: f64,
}

/// `{inline: …}` or `{file: …}` (a struct, not an enum: serde_yaml reads externally tagged
/// enums from YAML tags only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BodyTemplate {
    #[serde(default)]
    inline: Option<Value>,
    #[serde(default)]
    file: Option<PathBuf>,
}

/// A distribution of durations.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Distribution {
    Fixed { value: Dur },
    Uniform { min: Dur, max: Dur },
    Lognormal { median: Dur, p99: Dur },
}

impl Distribution {
    /// Draws one duration.
    pub(crate) fn sample(&self, rng: &mut impl rand::Rng) -> Duration {
        match self {
            Self::Fixed { value } => value.0,
            Self::Uniform { min, max } => {
                let span = max.0.saturating_sub(min.0).as_secs_f64();
                min.0 + Duration::from_secs_f64(span * rng.r#gen::<f64>())
            }
            Self::Lognormal { median, p99 } => {
                // p99 of a log-normal is median · e^(2.326·σ).
                let mu = median.0.as_secs_f64().max(1e-6).ln();
                let sigma = (p99.0.as_secs_f64().max(1e-6).ln() - mu) / 2.326;
                let normal = standard_normal(rng);
                Duration::from_secs_f64((mu + sigma * normal).exp())
            }
        }
    }

    /// Returns the one value of a `fixed` distribution, or says why a varying one is refused.
    fn fixed(&self, field: &str) -> anyhow::Result<Duration> {
        match self {
            Self::Fixed { value } => Ok(value.0),
            Self::Uniform { .. } | Self::Lognormal { .. } => bail!(
                "`{field}`: only `{{kind: fixed}}` is supported (the simulator takes one duration \
                 per phase)"
            ),
        }
    }

    fn check(&self, field: &str) -> anyhow::Result<()> {
        match self {
            Self::Fixed { .. } => Ok(()),
            Self::Uniform { min, max } if min.0 > max.0 => bail!("`{field}`: min > max"),
            Self::Lognormal { median, p99 } if p99.0 < median.0 => {
                bail!("`{field}`: p99 < median")
            }
            Self::Uniform { .. } | Self::Lognormal { .. } => Ok(()),
        }
    }
}

/// A standard normal draw (Box–Muller), so no extra distribution crate is needed.
fn standard_normal(rng: &mut impl rand::Rng) -> f64 {
    let u1: f64 = rng.r#gen::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Vendors {
    #[serde(default)]
    pub(crate) telephony: Option<Telephony>,
    #[serde(default)]
    pub(crate) crm: Option<Crm>,
    #[serde(default)]
    pub(crate) voice: Option<Voice>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Telephony {
    #[serde(default)]
    pub(crate) simulator: Option<String>,
    pub(crate) answer_ratio: f64,
    #[serde(default)]
    pub(crate) busy_ratio: f64,
    #[serde(default)]
    pub(crate) failed_ratio: f64,
    #[serde(default)]
    pub(crate) ring_time: Option<Distribution>,
    #[serde(default)]
    pub(crate) talk_time: Option<Distribution>,
    #[serde(default)]
    pub(crate) api_latency: Option<Distribution>,
    // Defined by the format, not implemented: refused when set (see `unsupported`).
    #[serde(default)]
    api_error_ratio: Option<Value>,
    #[serde(default)]
    throttle_ratio: Option<Value>,
    #[serde(default)]
    callback_delay: Option<Value>,
    #[serde(default)]
    callback_duplicate_ratio: Option<Value>,
    #[serde(default)]
    callback_reorder_ratio: Option<Value>,
}

/// The Twilio simulator's phases, from `vendors.telephony`.
pub(crate) struct CallTimings {
    pub(crate) ring: Duration,
    pub(crate) talk: Duration,
    pub(crate) api_latency: Duration,
}

impl Telephony {
    pub(crate) fn timings(&self) -> anyhow::Result<CallTimings> {
        let fixed = |dist: &Option<Distribution>, field: &str| {
            dist.as_ref()
                .map_or(Ok(Duration::ZERO), |dist| dist.fixed(field))
        };
        Ok(CallTimings {
            ring: fixed(&self.ring_time, "vendors.telephony.ring_time")?,
            talk: fixed(&self.talk_time, "vendors.telephony.talk_time")?,
            api_latency: fixed(&self.api_latency, "vendors.telephony.api_latency")?,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Crm {
    #[serde(default)]
    pub(crate) latency: Option<Distribution>,
    #[serde(default)]
    error_ratio: Option<Value>,
    #[serde(default)]
    throttle_ratio: Option<Value>,
}

impl Crm {
    pub(crate) fn latency(&self) -> anyhow::Result<Duration> {
        self.latency
            .as_ref()
            .map_or(Ok(Duration::ZERO), |dist| dist.fixed("vendors.crm.latency"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Voice {
    #[serde(default)]
    pub(crate) simulator: Option<String>,
    #[serde(default)]
    first_audio_latency: Option<Value>,
    #[serde(default)]
    error_ratio: Option<Value>,
    #[serde(default)]
    disconnect_ratio: Option<Value>,
    #[serde(default)]
    booking_ratio: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Stop {
    pub(crate) max_duration: Dur,
    #[serde(default)]
    pub(crate) max_requests: Option<usize>,
    #[serde(default = "default_drain")]
    pub(crate) drain: Dur,
}

fn default_drain() -> Dur {
    Dur(Duration::from_secs(30))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportOptions {
    #[serde(default = "default_percentiles")]
    pub(crate) percentiles: Vec<f64>,
    #[serde(default = "default_interval")]
    pub(crate) interval: Dur,
    #[serde(default)]
    pub(crate) output: Option<PathBuf>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            percentiles: default_percentiles(),
            interval: default_interval(),
            output: None,
        }
    }
}

fn default_percentiles() -> Vec<f64> {
    vec![50.0, 90.0, 99.0, 99.9]
}

fn default_interval() -> Dur {
    Dur(Duration::from_secs(10))
}

impl Scenario {
    /// Reads and checks `path`.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read scenario `{}`", path.display()))?;
        let mut scenario: Self = serde_yaml::from_str(&text)
            .with_context(|| format!("parse scenario `{}`", path.display()))?;
        scenario.dir = path.parent().unwrap_or(Path::new(".")).to_owned();
        scenario
            .check()
            .with_context(|| format!("invalid scenario `{}`", path.display()))?;
        Ok(scenario)
    }

    /// The checks of `schema.json` that matter here, those it cannot express, and refusals
    /// of what is not implemented.
    fn check(&self) -> anyhow::Result<()> {
        if self.version != 1 {
            bail!("`version` must be 1");
        }
        let slug = |text: &str| {
            !text.is_empty()
                && text
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if !slug(&self.name) {
            bail!("`name` must be lowercase letters, digits and `-`");
        }
        if !slug(&self.tenants.id_prefix) || self.tenants.id_prefix.len() > 32 {
            bail!("`tenants.id_prefix` must be a slug of at most 32 characters");
        }
        if !(1..=10_000).contains(&self.tenants.count) {
            bail!("`tenants.count` must be between 1 and 10000");
        }
        if let TenantDistribution::Zipf { exponent } = self.tenants.distribution
            && (exponent.is_nan() || exponent <= 0.0)
        {
            bail!("`tenants.distribution.exponent` must be above 0");
        }
        check_loopback(&self.target.base_url)?;
        if self.target.max_in_flight == 0 || self.target.timeout.0.is_zero() {
            bail!("`target.max_in_flight` and `target.timeout` must be above 0");
        }
        if self.duration.0.is_zero() {
            bail!("`duration` must be above 0");
        }
        if self.warmup.0 + self.duration.0 > self.stop.max_duration.0 {
            bail!("`warmup` + `duration` exceeds `stop.max_duration`");
        }
        match &self.arrival {
            Arrival::Constant { rate, .. } if rate.is_nan() || *rate <= 0.0 => {
                bail!("`arrival.rate` must be above 0")
            }
            Arrival::Ramp { from, to, .. } if *from < 0.0 || *to < 0.0 || from + to <= 0.0 => {
                bail!("`arrival.from` and `arrival.to` must be at least 0, not both 0")
            }
            Arrival::Burst {
                rate,
                burst_rate,
                every,
                length,
                ..
            } => {
                if *rate < 0.0
                    || burst_rate.is_nan()
                    || *burst_rate <= 0.0
                    || every.0.is_zero()
                    || length.0.is_zero()
                {
                    bail!("`arrival`: rate ≥ 0, burst_rate > 0, every > 0 and length > 0");
                }
                if length.0 >= every.0 {
                    bail!("`arrival.length` must be shorter than `arrival.every`");
                }
            }
            Arrival::Constant { .. } | Arrival::Ramp { .. } => {}
        }
        if self.mix.is_empty() {
            bail!("`mix` must list at least one request");
        }
        for (index, entry) in self.mix.iter().enumerate() {
            entry
                .check(&self.dir)
                .with_context(|| format!("`mix[{index}]`"))?;
        }
        self.check_vendors()?;
        for p in &self.report.percentiles {
            if !(*p > 0.0 && *p < 100.0) {
                bail!("`report.percentiles`: each must be strictly between 0 and 100");
            }
        }
        if let Some(output) = &self.report.output
            && output.extension().is_none_or(|ext| ext != "json")
        {
            bail!("`report.output` must end in `.json`");
        }
        Ok(())
    }

    fn check_vendors(&self) -> anyhow::Result<()> {
        if let Some(telephony) = &self.vendors.telephony {
            if telephony
                .simulator
                .as_deref()
                .is_some_and(|name| name != "twilio")
            {
                bail!("`vendors.telephony.simulator`: only `twilio`");
            }
            let ratios = [
                telephony.answer_ratio,
                telephony.busy_ratio,
                telephony.failed_ratio,
            ];
            if ratios.iter().any(|r| !(0.0..=1.0).contains(r)) {
                bail!("`vendors.telephony` ratios must be between 0 and 1");
            }
            if ratios.iter().sum::<f64>() > 1.0 + 1e-9 {
                bail!("`vendors.telephony`: answer + busy + failed ratios add up to more than 1");
            }
            unsupported(&[
                (
                    "vendors.telephony.api_error_ratio",
                    &telephony.api_error_ratio,
                ),
                (
                    "vendors.telephony.throttle_ratio",
                    &telephony.throttle_ratio,
                ),
                (
                    "vendors.telephony.callback_delay",
                    &telephony.callback_delay,
                ),
                (
                    "vendors.telephony.callback_duplicate_ratio",
                    &telephony.callback_duplicate_ratio,
                ),
                (
                    "vendors.telephony.callback_reorder_ratio",
                    &telephony.callback_reorder_ratio,
                ),
            ])?;
            telephony.timings()?;
        }
        if let Some(crm) = &self.vendors.crm {
            unsupported(&[
                ("vendors.crm.error_ratio", &crm.error_ratio),
                ("vendors.crm.throttle_ratio", &crm.throttle_ratio),
            ])?;
            crm.latency()?;
        }
        if let Some(voice) = &self.vendors.voice {
            if voice
                .simulator
                .as_deref()
                .is_some_and(|name| name != "elevenlabs")
            {
                bail!("`vendors.voice.simulator`: only `elevenlabs`");
            }
            unsupported(&[
                (
                    "vendors.voice.first_audio_latency",
                    &voice.first_audio_latency,
                ),
                ("vendors.voice.error_ratio", &voice.error_ratio),
                ("vendors.voice.disconnect_ratio", &voice.disconnect_ratio),
                ("vendors.voice.booking_ratio", &voice.booking_ratio),
            ])?;
        }
        Ok(())
    }

    /// Returns the mix entry's body template, read from its file when it names one.
    pub(crate) fn template(&self, spec: &RequestSpec) -> anyhow::Result<Value> {
        spec.template(&self.dir)
    }
}

impl MixEntry {
    fn check(&self, dir: &Path) -> anyhow::Result<()> {
        if self.weight.is_nan() || self.weight <= 0.0 {
            bail!("`weight` must be above 0");
        }
        let spec = &self.request;
        for (name, ratio) in [
            ("duplicate_ratio", spec.duplicate_ratio),
            ("invalid_auth_ratio", spec.invalid_auth_ratio),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                bail!("`{name}` must be between 0 and 1");
            }
        }
        if !spec.kind.is_webhook() && (spec.duplicate_ratio > 0.0 || spec.duplicate_delay.is_some())
        {
            bail!("`duplicate_ratio` and `duplicate_delay` apply to webhook kinds only");
        }
        if let Some(delay) = &spec.duplicate_delay {
            delay.check("duplicate_delay")?;
        }
        if spec.batch_field.is_some() {
            bail!(
                "`batch_field` is not supported: `POST /v1/campaigns/{{id}}/leads` takes a bare \
                 JSON array of leads"
            );
        }
        match (spec.kind, spec.batch_size) {
            (Kind::BulkLeads, Some(size)) if (1..=10_000).contains(&size) => {}
            (Kind::BulkLeads, _) => bail!("`batch_size` (1–10000) is required for bulk_leads"),
            (_, Some(_)) => bail!("`batch_size` applies to bulk_leads only"),
            (_, None) => {}
        }
        if spec.kind != Kind::ZohoWorkflowWebhook && spec.encoding != Encoding::Json {
            bail!("`encoding` applies to zoho_workflow_webhook only");
        }
        match (spec.kind, &spec.method, &spec.path) {
            (Kind::ApiCall, Some(method), Some(path)) => {
                if method != "POST" || path != "/v1/calls" {
                    bail!(
                        "api_call: only `POST /v1/calls` is supported (other routes place no \
                         call, and their bodies are not lead templates)"
                    );
                }
            }
            (Kind::ApiCall, _, _) => bail!("api_call needs `method` and `path`"),
            (_, Some(_), _) => bail!("`method` applies to api_call only"),
            (_, None, Some(path)) if !path.starts_with('/') => bail!("`path` must start with /"),
            (_, None, _) => {}
        }
        let template = spec.template(dir)?;
        if spec.encoding == Encoding::Form {
            let flat = template
                .as_object()
                .is_some_and(|object| object.values().all(Value::is_string));
            if !flat {
                bail!("a `form` template must be a flat object of strings");
            }
        }
        let mut unknown = BTreeSet::new();
        crate::template::placeholders(&template, &mut unknown);
        unknown.retain(|name| !crate::template::KNOWN.contains(&name.as_str()));
        if let Some(name) = unknown.first() {
            bail!("unknown placeholder `{{{{{name}}}}}` in the body template");
        }
        Ok(())
    }
}

impl RequestSpec {
    fn template(&self, dir: &Path) -> anyhow::Result<Value> {
        let template = self.body_template.as_ref();
        match template.map(|t| (&t.inline, &t.file)) {
            Some((Some(value), None)) => Ok(value.clone()),
            Some((None, Some(file))) => {
                let path = dir.join(file);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("read body template `{}`", path.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("parse body template `{}`", path.display()))
            }
            Some((Some(_), Some(_))) => bail!("`body_template`: `inline` or `file`, not both"),
            Some((None, None)) | None => bail!("`body_template` is required"),
        }
    }
}

/// Refuses every field of `fields` that the scenario sets.
fn unsupported(fields: &[(&str, &Option<Value>)]) -> anyhow::Result<()> {
    for (name, value) in fields {
        if value.is_some() {
            bail!(
                "`{name}` is part of the scenario format but not supported by this load tester yet"
            );
        }
    }
    Ok(())
}

/// Refuses a base URL whose host is not loopback (README "Ground rules").
pub(crate) fn check_loopback(base_url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let rest = base_url
        .strip_prefix("http://")
        .with_context(|| format!("`target.base_url` `{base_url}` must start with http://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if rest.len() > authority.len() + 1 || rest.ends_with('/') && rest.len() > authority.len() {
        bail!("`target.base_url`: a path prefix is not supported (ingress serves at the root)");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.ends_with(':') => (
            host,
            port.parse::<u16>()
                .with_context(|| format!("`target.base_url`: bad port `{port}`"))?,
        ),
        _ => (authority, 80),
    };
    let ip: IpAddr = match host {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        "[::1]" => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        other => other
            .parse()
            .with_context(|| format!("`target.base_url`: `{other}` is not a loopback address"))?,
    };
    if !ip.is_loopback() {
        bail!("`target.base_url` must be loopback (localhost, 127.0.0.0/8 or [::1])");
    }
    Ok(std::net::SocketAddr::new(ip, port))
}
