//! A scenario's traffic as a list of planned requests (one JSONL line each): when, which kind,
//! which tenant, the rendered body. Credentials are never in the plan: authentication
//! (`auth`) is applied at send time with the secrets the run provisions, so a plan file holds
//! no secret and can be kept or shared.

use std::collections::BTreeMap;
use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Timelike as _, Utc};
use rand::distributions::{Distribution as _, WeightedIndex};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::scenario::{Encoding, Kind, Scenario, Spacing, TenantDistribution};
use crate::template;

/// Whether a request carries the tenant's credentials or deliberately wrong ones.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Auth {
    Valid,
    Invalid,
}

/// One request of the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Planned {
    /// Position in the plan, from 0.
    pub(crate) seq: u64,
    /// Scheduled send time from the start of traffic, in microseconds.
    pub(crate) offset_us: u64,
    pub(crate) kind: Kind,
    /// Tenant number, from 1.
    pub(crate) tenant: usize,
    /// Path; `{tenant}` stands for the client id, known once the run provisioned it.
    pub(crate) path: String,
    pub(crate) content_type: String,
    pub(crate) body: String,
    pub(crate) auth: Auth,
    /// The `seq` of the request this one replays byte for byte.
    #[serde(default)]
    pub(crate) replay_of: Option<u64>,
    /// The E.164 numbers of the leads the request carries (several for bulk uploads).
    pub(crate) phones: Vec<String>,
    /// Sent during the warm-up: left out of the report.
    #[serde(default)]
    pub(crate) warmup: bool,
}

impl Planned {
    pub(crate) fn offset(&self) -> Duration {
        Duration::from_micros(self.offset_us)
    }
}

/// Real US area codes: libphonenumber refuses numbers in unassigned ones.
const AREA_CODES: &[u16] = &[
    201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219, 224, 225,
    228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262, 267, 269, 270, 276, 281,
    301, 302, 303, 304, 305, 307, 308, 309, 310, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321,
    323, 325, 330, 334, 336, 337, 339, 347, 351, 352, 360, 361, 386, 401, 402, 404, 405, 406, 407,
    408, 409, 410, 412, 413, 414, 415, 417, 419, 423, 424, 425, 432, 434, 435, 440, 443, 469, 478,
    479, 480, 484, 501, 502, 503, 504, 505, 507, 508, 509, 510, 512, 513, 515, 516, 517, 518, 520,
    530, 540, 541, 551, 559, 561, 562, 563, 570, 571, 573, 574, 580, 585, 586, 601, 602, 603, 605,
    606, 607, 608, 609, 610, 612, 614, 615, 616, 617, 618, 619, 620, 623, 626, 630, 631, 636, 641,
    646, 650, 651, 660, 661, 662, 678, 682, 701, 702, 703, 704, 706, 707, 708, 712, 713, 714, 715,
    716, 717, 718, 719, 720, 724, 727, 731, 732, 734, 740, 754, 757, 760, 763, 765, 770, 772, 773,
    774, 775, 781, 785, 786, 801, 802, 803, 804, 805, 806, 808, 810, 812, 813, 814, 815, 816, 817,
    818, 828, 830, 831, 832, 843, 845, 847, 848, 850, 856, 857, 858, 859, 860, 862, 863, 864, 865,
    870, 901, 903, 904, 906, 907, 908, 909, 910, 912, 913, 914, 915, 916, 917, 918, 919, 920, 925,
    928, 931, 936, 937, 940, 941, 949, 951, 952, 954, 956, 970, 971, 972, 973, 978, 979, 980, 985,
    989,
];

/// How many distinct lead numbers exist (`+1 NXX 555-0100`–`0199` over [`AREA_CODES`]).
pub(crate) fn distinct_numbers() -> usize {
    AREA_CODES.len() * 100
}

/// Returns the `index`-th fictional number.
fn phone(index: usize) -> String {
    let area = AREA_CODES[index / 100 % AREA_CODES.len()];
    format!("+1{area}55501{:02}", index % 100)
}

/// Zones to pick a lead's from: one with the local hour inside 09:00–19:00 exists at any
/// moment, so the leads are callable inside the tenants' 08:00–21:00 windows.
const ZONES: &[chrono_tz::Tz] = &[
    chrono_tz::America::New_York,
    chrono_tz::America::Chicago,
    chrono_tz::America::Denver,
    chrono_tz::America::Los_Angeles,
    chrono_tz::Pacific::Honolulu,
    chrono_tz::Pacific::Auckland,
    chrono_tz::Australia::Sydney,
    chrono_tz::Asia::Tokyo,
    chrono_tz::Asia::Shanghai,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Asia::Dubai,
    chrono_tz::Europe::Berlin,
    chrono_tz::Europe::London,
    chrono_tz::Atlantic::Azores,
    chrono_tz::America::Sao_Paulo,
];

/// Returns the zones whose local hour at `now` is within 09:00–19:00.
fn callable_zones(now: DateTime<Utc>) -> Vec<chrono_tz::Tz> {
    ZONES
        .iter()
        .copied()
        .filter(|zone| (9..19).contains(&now.with_timezone(zone).hour()))
        .collect()
}

/// The CRM account id of tenant `n` for `kind`: its HighLevel location or its Zoho org.
pub(crate) fn crm_account_id(kind: Kind, tenant: usize) -> String {
    match kind {
        Kind::ZohoWorkflowWebhook => format!("9{tenant:010}"),
        Kind::GhlWorkflowWebhook | Kind::CustomWebhook | Kind::ApiCall | Kind::BulkLeads => {
            ghl_location(tenant)
        }
    }
}

/// Tenant `n`'s HighLevel location id (20 characters, like HighLevel's).
pub(crate) fn ghl_location(tenant: usize) -> String {
    format!("ltLocation{tenant:010}")
}

/// Creates each HighLevel lead of the plan as a contact in the simulator, under its id, as a
/// real lead exists in the CRM before its workflow fires: crm_sync then finds the contact it
/// writes the call to. (Leads of the other kinds have no HighLevel contact; a HighLevel
/// tenant's crm_sync refuses them, which the report shows as dead letters.)
pub(crate) fn create_crm_leads(
    plan: &[Planned],
    gohighlevel: &caller::providers::sim_gohighlevel::GoHighLevelSimState,
) {
    for planned in plan {
        if planned.kind != Kind::GhlWorkflowWebhook || planned.replay_of.is_some() {
            continue;
        }
        let Ok(body) = serde_json::from_str::<Value>(&planned.body) else {
            continue;
        };
        let text = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_owned);
        let Some(id) = text("contact_id") else {
            continue;
        };
        let seed = caller::providers::sim_gohighlevel::SimContactSeed {
            first_name: text("first_name"),
            last_name: text("last_name"),
            email: text("email"),
            phone: text("phone"),
            timezone: text("timezone"),
            ..Default::default()
        };
        gohighlevel.add_contact_with_id(&ghl_location(planned.tenant), &id, seed);
    }
}

/// Returns tenant `n`'s id (slug): the prefix and a zero-padded number.
pub(crate) fn tenant_slug(scenario: &Scenario, tenant: usize) -> String {
    let width = scenario.tenants.count.to_string().len();
    format!("{}{tenant:0width$}", scenario.tenants.id_prefix)
}

const FIRST_NAMES: &[&str] = &["Ann", "Bob", "Carla", "Dev", "Eve", "Farid", "Gwen", "Hiro"];
const LAST_NAMES: &[&str] = &["Ames", "Baker", "Chen", "Diaz", "Ekwueme", "Fox", "Garcia"];

/// Builds the plan of `scenario` for a run starting about `start`.
pub(crate) fn plan(scenario: &Scenario, start: DateTime<Utc>) -> anyhow::Result<Vec<Planned>> {
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    let zones = callable_zones(start);
    let weights =
        WeightedIndex::new(scenario.mix.iter().map(|entry| entry.weight)).context("mix weights")?;
    let tenants = tenant_picker(scenario)?;
    let templates = scenario
        .mix
        .iter()
        .map(|entry| scenario.template(&entry.request))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let traffic = scenario.warmup.0 + scenario.duration.0;
    let max_requests = scenario.stop.max_requests.unwrap_or(usize::MAX);

    let mut out: Vec<Planned> = Vec::new();
    let mut leads = 0usize;
    let mut at = Duration::ZERO;
    loop {
        let rate = scenario
            .arrival
            .rate_at(at, scenario.warmup.0, scenario.duration.0);
        if rate <= 0.0 {
            // No traffic now (a ramp from 0, a quiet burst phase): look again shortly.
            at += Duration::from_millis(10);
            if at >= traffic {
                break;
            }
            continue;
        }
        let gap = match scenario.arrival.spacing() {
            Spacing::Uniform => 1.0 / rate,
            Spacing::Poisson => -(1.0 - rng.r#gen::<f64>()).ln() / rate,
        };
        at += Duration::from_secs_f64(gap);
        if at >= traffic || out.len() >= max_requests {
            break;
        }
        let entry_index = weights.sample(&mut rng);
        let spec = &scenario.mix[entry_index].request;
        let template = &templates[entry_index];
        let tenant = tenants.sample(&mut rng) + 1;
        let seq = out.len() as u64;
        let count = spec.batch_size.unwrap_or(1);
        if leads + count > distinct_numbers() {
            bail!(
                "the scenario needs more than {} distinct lead numbers; shorten it or lower \
                 the rate",
                distinct_numbers()
            );
        }
        let now = (start + chrono::Duration::from_std(at).unwrap_or_default()).to_rfc3339();
        let request_id = uuid::Uuid::now_v7().to_string();
        let mut phones = Vec::with_capacity(count);
        let mut bodies = Vec::with_capacity(count);
        for _ in 0..count {
            let lead = leads;
            leads += 1;
            let first = FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())];
            let last = LAST_NAMES[rng.gen_range(0..LAST_NAMES.len())];
            let zone = zones[rng.gen_range(0..zones.len())];
            let number = phone(lead);
            let values = BTreeMap::from([
                ("tenant.id", tenant_slug(scenario, tenant)),
                ("tenant.crm_account_id", crm_account_id(spec.kind, tenant)),
                ("lead.id", lead_id(spec.kind, lead)),
                ("lead.first_name", first.to_owned()),
                ("lead.last_name", last.to_owned()),
                ("lead.full_name", format!("{first} {last}")),
                (
                    "lead.email",
                    format!(
                        "{}.{}{lead}@example.com",
                        first.to_lowercase(),
                        last.to_lowercase()
                    ),
                ),
                ("lead.phone", number.clone()),
                ("lead.timezone", zone.name().to_owned()),
                ("request.id", request_id.clone()),
                ("request.seq", seq.to_string()),
                ("now", now.clone()),
            ]);
            phones.push(number);
            bodies.push(template::render(template, &values));
        }
        let (content_type, body) = encode(spec.kind, spec.encoding, bodies)?;
        let auth = if rng.r#gen::<f64>() < spec.invalid_auth_ratio {
            Auth::Invalid
        } else {
            Auth::Valid
        };
        let path = spec
            .path
            .clone()
            .or_else(|| spec.kind.default_path().map(str::to_owned))
            .context("a request without a path")?;
        let original = Planned {
            seq,
            offset_us: at.as_micros() as u64,
            kind: spec.kind,
            tenant,
            path,
            content_type,
            body,
            auth,
            replay_of: None,
            phones,
            warmup: at < scenario.warmup.0,
        };
        let replay = (rng.r#gen::<f64>() < spec.duplicate_ratio).then(|| {
            let delay = spec
                .duplicate_delay
                .as_ref()
                .map_or(Duration::ZERO, |delay| delay.sample(&mut rng));
            (original.offset() + delay, delay)
        });
        out.push(original);
        if let Some((replay_at, _)) = replay
            && out.len() < max_requests
        {
            let mut copy = out[out.len() - 1].clone();
            copy.seq = out.len() as u64;
            copy.replay_of = Some(seq);
            copy.offset_us = replay_at.as_micros() as u64;
            copy.warmup = replay_at < scenario.warmup.0;
            out.push(copy);
        }
    }
    // Replays may fall after later originals; the original always stays before its replay
    // (a stable sort, and a replay's offset is never earlier).
    out.sort_by_key(|planned| planned.offset_us);
    Ok(out)
}

/// The lead's id in its CRM's format: HighLevel 20 alphanumerics, Zoho 19 digits.
fn lead_id(kind: Kind, lead: usize) -> String {
    match kind {
        Kind::GhlWorkflowWebhook => format!("ltContact{lead:011}"),
        Kind::ZohoWorkflowWebhook => format!("48768760{lead:011}"),
        Kind::CustomWebhook | Kind::ApiCall | Kind::BulkLeads => format!("lt-lead-{lead}"),
    }
}

/// Encodes the rendered bodies of one request.
fn encode(
    kind: Kind,
    encoding: Encoding,
    mut bodies: Vec<Value>,
) -> anyhow::Result<(String, String)> {
    if kind == Kind::BulkLeads {
        return Ok((
            "application/json".to_owned(),
            serde_json::to_string(&Value::Array(bodies))?,
        ));
    }
    let body = bodies.pop().context("a request without a body")?;
    match encoding {
        Encoding::Json => Ok(("application/json".to_owned(), serde_json::to_string(&body)?)),
        Encoding::Form => {
            let object = body.as_object().context("a form body must be an object")?;
            let pairs: Vec<(&str, &str)> = object
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str().unwrap_or_default()))
                .collect();
            Ok((
                "application/x-www-form-urlencoded".to_owned(),
                form_urlencode(&pairs),
            ))
        }
    }
}

fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    let escape = |text: &str| {
        let mut out = String::new();
        for byte in text.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    out.push(byte as char);
                }
                b' ' => out.push('+'),
                other => out.push_str(&format!("%{other:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", escape(key), escape(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Picks tenant indexes (from 0) by the scenario's distribution.
fn tenant_picker(scenario: &Scenario) -> anyhow::Result<WeightedIndex<f64>> {
    let count = scenario.tenants.count;
    let weights: Vec<f64> = match scenario.tenants.distribution {
        TenantDistribution::Uniform => vec![1.0; count],
        TenantDistribution::Zipf { exponent } => (1..=count)
            .map(|n| 1.0 / (n as f64).powf(exponent))
            .collect(),
    };
    WeightedIndex::new(weights).context("tenant weights")
}

/// Writes `plan` as JSONL.
pub(crate) fn write(plan: &[Planned], path: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("create `{}`", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for planned in plan {
        serde_json::to_writer(&mut out, planned)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Reads a JSONL plan, naming the line of the first bad record.
pub(crate) fn read(path: &Path, tenants: usize) -> anyhow::Result<Vec<Planned>> {
    let file = std::fs::File::open(path).with_context(|| format!("open `{}`", path.display()))?;
    let mut out: Vec<Planned> = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let planned: Planned = serde_json::from_str(&line)
            .with_context(|| format!("`{}` line {}", path.display(), index + 1))?;
        if !(1..=tenants).contains(&planned.tenant) {
            bail!(
                "`{}` line {}: tenant {} is not among the scenario's {tenants}",
                path.display(),
                index + 1,
                planned.tenant
            );
        }
        out.push(planned);
    }
    out.sort_by_key(|planned| planned.offset_us);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_numbers_are_distinct_and_fictional() {
        let numbers: std::collections::BTreeSet<_> = (0..distinct_numbers()).map(phone).collect();
        assert_eq!(numbers.len(), distinct_numbers());
        assert!(numbers.iter().all(|n| n[5..10].starts_with("55501")));
    }

    #[test]
    fn some_zone_is_always_callable() {
        for hour in 0..24 {
            let now = DateTime::parse_from_rfc3339(&format!("2026-01-05T{hour:02}:30:00Z"))
                .unwrap()
                .with_timezone(&Utc);
            assert!(!callable_zones(now).is_empty(), "none at {hour}:30 UTC");
        }
    }
}
