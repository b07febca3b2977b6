//! Turns what the run saw into figures: HDR latency histograms per request kind and per stage
//! (effect `ce-time` − cause `ce-time`), the end-to-end latency from a webhook's scheduled send
//! to the Twilio simulator receiving the create-call, throughput, errors, dead letters and
//! the correctness checks. Printed as a table, written as JSON and drawn as SVG
//! ([`crate::chart`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::observe::Seen;
use crate::send::Outcome;

/// When the run happened, to place instants and wall-clock times on one axis.
pub(crate) struct Clock {
    pub(crate) start: Instant,
    pub(crate) wall_start: DateTime<Utc>,
    pub(crate) measure_from: Duration,
    pub(crate) measure_for: Duration,
}

impl Clock {
    fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.start)
    }

    fn offset_wall(&self, at: DateTime<Utc>) -> Duration {
        (at - self.wall_start).to_std().unwrap_or_default()
    }

    fn measured(&self, offset: Duration) -> bool {
        offset >= self.measure_from && offset < self.measure_from + self.measure_for
    }
}

/// One create-call the Twilio simulator received.
pub(crate) struct Created {
    pub(crate) to: String,
    pub(crate) at: Instant,
    pub(crate) wall: DateTime<Utc>,
}

/// A latency distribution in microseconds.
pub(crate) struct Latency {
    pub(crate) name: String,
    pub(crate) histogram: Histogram<u64>,
}

impl Latency {
    fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            // 1 µs to 1 h at 3 significant digits; bounds are fixed, so `new_with_bounds`
            // cannot fail.
            histogram: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }

    fn record(&mut self, value: Duration) {
        let micros = (value.as_micros() as u64).clamp(1, 3_600_000_000);
        self.histogram.saturating_record(micros);
    }

    pub(crate) fn percentile_ms(&self, p: f64) -> f64 {
        self.histogram.value_at_percentile(p) as f64 / 1_000.0
    }
}

/// Everything the report says.
pub(crate) struct Report {
    pub(crate) scenario: String,
    pub(crate) percentiles: Vec<f64>,
    pub(crate) requests: BTreeMap<String, KindFigures>,
    pub(crate) stages: Vec<Latency>,
    pub(crate) end_to_end: Latency,
    pub(crate) throughput: Throughput,
    pub(crate) dead_letters: BTreeMap<String, usize>,
    pub(crate) checks: Vec<Check>,
    pub(crate) leads: LeadFigures,
    /// Per second of the run: requests accepted, calls.requested, create-calls.
    pub(crate) timeline: Vec<[usize; 3]>,
    pub(crate) drain_cut: bool,
}

#[derive(Default)]
pub(crate) struct KindFigures {
    pub(crate) sent: usize,
    pub(crate) replayed: usize,
    pub(crate) skipped: usize,
    pub(crate) invalid_auth: usize,
    pub(crate) by_class: BTreeMap<String, usize>,
    pub(crate) latency: Option<Latency>,
}

pub(crate) struct Throughput {
    pub(crate) requests_accepted_per_s: f64,
    pub(crate) leads_received_per_s: f64,
    pub(crate) calls_requested_per_s: f64,
    pub(crate) calls_created_per_s: f64,
}

#[derive(Default)]
pub(crate) struct LeadFigures {
    pub(crate) accepted: usize,
    pub(crate) requested: usize,
    pub(crate) called: usize,
    pub(crate) pending: usize,
}

pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) passed: bool,
    pub(crate) detail: String,
}

impl Report {
    pub(crate) fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed)
    }
}

/// The stage that emitted an event, from `ce-source` (`caller/stage/<name>` → `<name>`).
fn stage_of(source: &str) -> &str {
    source
        .strip_prefix("caller/stage/")
        .or_else(|| source.strip_prefix("caller/"))
        .unwrap_or(source)
}

/// Computes the report.
pub(crate) fn build(
    scenario: &crate::scenario::Scenario,
    clock: &Clock,
    outcomes: &[Outcome],
    seen: &[Seen],
    created: &[Created],
    drain_cut: bool,
) -> Report {
    let measured_secs = clock.measure_for.as_secs_f64();
    let requests = request_figures(outcomes);

    // Per stage: effect ce-time − cause ce-time, for effects emitted in the measured phase
    // and the drain after it (the drain belongs to the measured traffic).
    let by_id: HashMap<&str, &Seen> = seen
        .iter()
        .map(|event| (event.id.as_str(), event))
        .collect();
    let mut stages: BTreeMap<String, Latency> = BTreeMap::new();
    for event in seen {
        let Some(cause) = event.causation.as_deref().and_then(|id| by_id.get(id)) else {
            continue;
        };
        if clock.offset(event.received) < clock.measure_from || event.subject.starts_with("dlq.") {
            continue;
        }
        let name = format!(
            "{}: {} → {}",
            stage_of(&event.source),
            cause.kind,
            event.kind
        );
        stages
            .entry(name.clone())
            .or_insert_with(|| Latency::new(name))
            .record((event.time - cause.time).to_std().unwrap_or_default());
    }

    // Leads: accepted (originals only), the root of each calls.requested, creates by number.
    // Leads are known by number: an original and its replay sent at once race, and the
    // event id that reaches the stream may be the replay's (the other is a duplicate).
    let mut phone_of_event: HashMap<&str, &str> = HashMap::new();
    for outcome in outcomes {
        for (event_id, phone) in &outcome.accepted {
            phone_of_event.insert(event_id.as_str(), phone.as_str());
        }
    }
    let mut requested_at: HashMap<&str, DateTime<Utc>> = HashMap::new();
    for event in seen.iter().filter(|event| event.kind == "call.requested") {
        let root = root_of(&by_id, &event.id);
        if let Some(phone) = phone_of_event.get(root.as_str()) {
            requested_at.entry(phone).or_insert(event.time);
        }
    }
    let mut creates_by_phone: HashMap<&str, Vec<&Created>> = HashMap::new();
    for create in created {
        creates_by_phone
            .entry(create.to.as_str())
            .or_default()
            .push(create);
    }
    let received_at: HashMap<&str, DateTime<Utc>> = seen
        .iter()
        .filter(|event| event.kind == "lead.received")
        .map(|event| (event.id.as_str(), event.time))
        .collect();

    let mut ingress = Latency::new("ingress: scheduled send → lead.received");
    let mut dial = Latency::new("dial: call.requested → create-call at the simulator");
    let mut end_to_end = Latency::new("end to end: scheduled send → create-call at the simulator");
    let mut leads = LeadFigures::default();
    let mut our_phones: HashSet<&str> = HashSet::new();
    for outcome in outcomes {
        our_phones.extend(outcome.phones.iter().map(String::as_str));
        if outcome.replay || outcome.invalid_auth {
            continue;
        }
        let scheduled_wall = clock.wall_start
            + chrono::Duration::from_std(clock.offset(outcome.scheduled)).unwrap_or_default();
        let measured = !outcome.warmup;
        for (event_id, phone) in &outcome.accepted {
            leads.accepted += 1;
            if measured && let Some(at) = received_at.get(event_id.as_str()) {
                ingress.record((*at - scheduled_wall).to_std().unwrap_or_default());
            }
            let Some(requested) = requested_at.get(phone.as_str()) else {
                leads.pending += 1;
                continue;
            };
            leads.requested += 1;
            if let Some(first) = creates_by_phone.get(phone.as_str()).and_then(|c| c.first()) {
                leads.called += 1;
                if measured {
                    dial.record((first.wall - *requested).to_std().unwrap_or_default());
                    end_to_end.record(first.at.saturating_duration_since(outcome.scheduled));
                }
            }
        }
    }
    let mut stage_list: Vec<Latency> = vec![ingress];
    stage_list.extend(stages.into_values());
    stage_list.push(dial);

    // Throughput over the measured phase, and a per-second timeline of the whole run.
    let in_window = |offset: Duration| clock.measured(offset);
    let accepted_measured = outcomes
        .iter()
        .filter(|o| o.status.is_some_and(|s| (200..300).contains(&s)))
        .filter(|o| in_window(clock.offset(o.scheduled)))
        .count();
    let count_seen = |kind: &str| {
        seen.iter()
            .filter(|event| event.kind == kind && in_window(clock.offset_wall(event.time)))
            .count()
    };
    let created_measured = created
        .iter()
        .filter(|create| in_window(clock.offset(create.at)))
        .count();
    let throughput = Throughput {
        requests_accepted_per_s: accepted_measured as f64 / measured_secs,
        leads_received_per_s: count_seen("lead.received") as f64 / measured_secs,
        calls_requested_per_s: count_seen("call.requested") as f64 / measured_secs,
        calls_created_per_s: created_measured as f64 / measured_secs,
    };
    let seconds = |offset: Duration| offset.as_secs() as usize;
    let mut timeline: Vec<[usize; 3]> = Vec::new();
    let mut bump = |second: usize, column: usize| {
        if timeline.len() <= second {
            timeline.resize(second + 1, [0; 3]);
        }
        timeline[second][column] += 1;
    };
    for outcome in outcomes {
        if outcome.status.is_some_and(|s| (200..300).contains(&s)) {
            bump(seconds(clock.offset(outcome.scheduled)), 0);
        }
    }
    for event in seen.iter().filter(|event| event.kind == "call.requested") {
        bump(seconds(clock.offset_wall(event.time)), 1);
    }
    for create in created {
        bump(seconds(clock.offset(create.at)), 2);
    }

    let mut dead_letters: BTreeMap<String, usize> = BTreeMap::new();
    for event in seen
        .iter()
        .filter(|event| event.subject.starts_with("dlq."))
    {
        *dead_letters.entry(event.subject.clone()).or_default() += 1;
    }

    let checks = checks(outcomes, &creates_by_phone, &our_phones, &dead_letters);
    Report {
        scenario: scenario.name.clone(),
        percentiles: scenario.report.percentiles.clone(),
        requests,
        stages: stage_list,
        end_to_end,
        throughput,
        dead_letters,
        checks,
        leads,
        timeline,
        drain_cut,
    }
}

/// Returns the first event of `id`'s causation chain that the watcher saw (for a lead, its
/// `lead.received`).
fn root_of<'a>(by_id: &HashMap<&'a str, &'a Seen>, id: &'a str) -> String {
    let mut current = id;
    // Chains are a handful of events long; the bound only guards against a cycle.
    for _ in 0..16 {
        match by_id
            .get(current)
            .and_then(|event| event.causation.as_deref())
        {
            Some(parent) if by_id.contains_key(parent) => current = parent,
            _ => break,
        }
    }
    current.to_owned()
}

fn request_figures(outcomes: &[Outcome]) -> BTreeMap<String, KindFigures> {
    let mut requests: BTreeMap<String, KindFigures> = BTreeMap::new();
    for outcome in outcomes.iter().filter(|outcome| !outcome.warmup) {
        let figures = requests
            .entry(outcome.kind.as_str().to_owned())
            .or_default();
        figures.sent += usize::from(!outcome.skipped);
        figures.replayed += usize::from(outcome.replay && !outcome.skipped);
        figures.skipped += usize::from(outcome.skipped);
        figures.invalid_auth += usize::from(outcome.invalid_auth);
        if outcome.skipped {
            continue;
        }
        let class = match outcome.status {
            Some(status) => format!("{}xx", status / 100),
            None => "timeout/error".to_owned(),
        };
        *figures.by_class.entry(class).or_default() += 1;
        if outcome.status.is_some() {
            figures
                .latency
                .get_or_insert_with(|| Latency::new(outcome.kind.as_str()))
                .record(outcome.latency);
        }
    }
    requests
}

fn checks(
    outcomes: &[Outcome],
    creates_by_phone: &HashMap<&str, Vec<&Created>>,
    our_phones: &HashSet<&str>,
    dead_letters: &BTreeMap<String, usize>,
) -> Vec<Check> {
    let twice: Vec<&&str> = creates_by_phone
        .iter()
        .filter(|(_, creates)| creates.len() > 1)
        .map(|(phone, _)| phone)
        .collect();
    let strangers = creates_by_phone
        .keys()
        .filter(|phone| !our_phones.contains(*phone))
        .count();
    let invalid_accepted = outcomes
        .iter()
        .filter(|o| o.invalid_auth && o.status.is_some_and(|s| (200..300).contains(&s)))
        .count();
    let invalid_not_401 = outcomes
        .iter()
        .filter(|o| o.invalid_auth && o.status.is_some_and(|s| s != 401))
        .count();
    let lead_path_letters: usize = ["dlq.dedupe", "dlq.resolve_tenant", "dlq.rate_limit"]
        .iter()
        .filter_map(|subject| dead_letters.get(*subject))
        .sum();
    vec![
        Check {
            name: "no lead called twice",
            passed: twice.is_empty(),
            detail: format!("{} numbers with more than one create-call", twice.len()),
        },
        Check {
            name: "no call to a number the run did not send",
            passed: strangers == 0,
            detail: format!("{strangers} unknown callees"),
        },
        Check {
            name: "no invalid-auth request accepted",
            passed: invalid_accepted == 0,
            detail: format!(
                "{invalid_accepted} accepted; {invalid_not_401} answered other than 401"
            ),
        },
        Check {
            name: "no accepted lead dead-lettered before call.requested",
            passed: lead_path_letters == 0,
            detail: format!(
                "{lead_path_letters} on dlq.dedupe, dlq.resolve_tenant, dlq.rate_limit"
            ),
        },
    ]
}

fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

impl Report {
    /// Returns the terminal table.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let header: Vec<String> = self.percentiles.iter().map(|p| format!("p{p}")).collect();
        out.push_str(&format!(
            "scenario {}\n\nrequests (measured phase)\n",
            self.scenario
        ));
        out.push_str(&format!(
            "  {:<24} {:>7} {:>7} {:>7} {:>24}  {} (ms)\n",
            "kind",
            "sent",
            "replay",
            "skipped",
            "status classes",
            header.join(" / ")
        ));
        for (kind, figures) in &self.requests {
            let classes: Vec<String> = figures
                .by_class
                .iter()
                .map(|(class, count)| format!("{class}:{count}"))
                .collect();
            let latency = figures
                .latency
                .as_ref()
                .map_or_else(String::new, |latency| {
                    self.percentiles
                        .iter()
                        .map(|p| ms(latency.percentile_ms(*p)))
                        .collect::<Vec<_>>()
                        .join(" / ")
                });
            out.push_str(&format!(
                "  {kind:<24} {:>7} {:>7} {:>7} {:>24}  {latency}\n",
                figures.sent,
                figures.replayed,
                figures.skipped,
                classes.join(" ")
            ));
        }
        out.push_str(&format!(
            "\nlatency per stage, from event timestamps (ms)\n  {:<70} {:>7}  {}\n",
            "stage: cause → effect",
            "count",
            header.join(" / ")
        ));
        for latency in self.stages.iter().chain(std::iter::once(&self.end_to_end)) {
            let values: Vec<String> = self
                .percentiles
                .iter()
                .map(|p| ms(latency.percentile_ms(*p)))
                .collect();
            out.push_str(&format!(
                "  {:<70} {:>7}  {}\n",
                latency.name,
                latency.histogram.len(),
                values.join(" / ")
            ));
        }
        let t = &self.throughput;
        out.push_str(&format!(
            "\nthroughput (measured phase, per second)\n  requests accepted {:.1}   lead.received {:.1}   call.requested {:.1}   create-calls at the simulator {:.1}\n",
            t.requests_accepted_per_s, t.leads_received_per_s, t.calls_requested_per_s, t.calls_created_per_s
        ));
        let l = &self.leads;
        out.push_str(&format!(
            "\nleads (whole run)\n  accepted {}   reached call.requested {}   called {}   pending at the end {}\n",
            l.accepted, l.requested, l.called, l.pending
        ));
        if self.drain_cut {
            out.push_str("  the drain was cut short by stop.max_duration\n");
        }
        let letters: Vec<String> = self
            .dead_letters
            .iter()
            .map(|(subject, count)| format!("{subject}:{count}"))
            .collect();
        out.push_str(&format!(
            "\ndead letters: {}\n\nchecks\n",
            if letters.is_empty() {
                "none".to_owned()
            } else {
                letters.join(" ")
            }
        ));
        for check in &self.checks {
            out.push_str(&format!(
                "  [{}] {} ({})\n",
                if check.passed { "ok" } else { "FAILED" },
                check.name,
                check.detail
            ));
        }
        out
    }

    /// Returns the JSON report.
    pub(crate) fn json(&self, context: &Value) -> Value {
        let latency = |latency: &Latency| {
            let mut map = serde_json::Map::new();
            map.insert("name".to_owned(), json!(latency.name));
            map.insert("count".to_owned(), json!(latency.histogram.len()));
            for p in &self.percentiles {
                map.insert(format!("p{p}_ms"), json!(latency.percentile_ms(*p)));
            }
            map.insert(
                "max_ms".to_owned(),
                json!(latency.histogram.max() as f64 / 1_000.0),
            );
            Value::Object(map)
        };
        let requests: serde_json::Map<String, Value> = self
            .requests
            .iter()
            .map(|(kind, figures)| {
                (
                    kind.clone(),
                    json!({
                        "sent": figures.sent, "replayed": figures.replayed,
                        "skipped": figures.skipped, "invalid_auth": figures.invalid_auth,
                        "status_classes": figures.by_class,
                        "latency": figures.latency.as_ref().map(latency),
                    }),
                )
            })
            .collect();
        let t = &self.throughput;
        json!({
            "scenario": self.scenario,
            "context": context,
            "requests": requests,
            "stages": self.stages.iter().map(latency).collect::<Vec<_>>(),
            "end_to_end": latency(&self.end_to_end),
            "throughput_per_s": {
                "requests_accepted": t.requests_accepted_per_s,
                "lead_received": t.leads_received_per_s,
                "call_requested": t.calls_requested_per_s,
                "create_calls": t.calls_created_per_s,
            },
            "leads": {
                "accepted": self.leads.accepted, "reached_call_requested": self.leads.requested,
                "called": self.leads.called, "pending": self.leads.pending,
            },
            "dead_letters": self.dead_letters,
            "drain_cut_short": self.drain_cut,
            "timeline_per_s": self.timeline.iter().map(|row| json!({
                "requests_accepted": row[0], "call_requested": row[1], "create_calls": row[2]
            })).collect::<Vec<_>>(),
            "checks": self.checks.iter().map(|check| json!({
                "name": check.name, "passed": check.passed, "detail": check.detail
            })).collect::<Vec<_>>(),
        })
    }
}
