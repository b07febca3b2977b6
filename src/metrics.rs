//! Per-stage counters and latency histograms, readable by tests and rendered for Prometheus.
//!
//! The same [`StageMetrics`] serves `/metrics` and integration tests (which assert on counts,
//! never on timings).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds of the handler-latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Counters of one stage.
#[derive(Debug, Default)]
pub struct StageMetrics {
    /// Inputs handled successfully (outputs published, input acked).
    pub processed: AtomicU64,
    /// Retryable failures (NAKed with a delay, or dead-lettered on the last useful delivery).
    pub retried: AtomicU64,
    /// Inputs the handler rejected (or that could not be decoded).
    pub rejected: AtomicU64,
    /// Redeliveries of inputs already processed (outputs re-emitted, handler skipped).
    pub duplicate: AtomicU64,
    /// Inputs moved to the dead-letter stream (rejections and exhausted retries).
    pub dead_lettered: AtomicU64,
    /// Times the stage paused because PostgreSQL or NATS was unavailable.
    pub paused: AtomicU64,
    latency: Histogram,
}

/// A snapshot of a stage's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageCounts {
    /// See [`StageMetrics::processed`].
    pub processed: u64,
    /// See [`StageMetrics::retried`].
    pub retried: u64,
    /// See [`StageMetrics::rejected`].
    pub rejected: u64,
    /// See [`StageMetrics::duplicate`].
    pub duplicate: u64,
    /// See [`StageMetrics::dead_lettered`].
    pub dead_lettered: u64,
    /// See [`StageMetrics::paused`].
    pub paused: u64,
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl StageMetrics {
    /// Records one handler run's latency.
    pub fn observe_latency(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Returns the current counts.
    pub fn counts(&self) -> StageCounts {
        StageCounts {
            processed: self.processed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            duplicate: self.duplicate.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            paused: self.paused.load(Ordering::Relaxed),
        }
    }
}

/// Increments a counter by one.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `count` to a counter.
pub fn add(counter: &AtomicU64, count: usize) {
    counter.fetch_add(u64::try_from(count).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Consumer state read from the server at scrape time.
#[derive(Clone, Debug)]
pub struct ConsumerGauge {
    /// Stage (= durable consumer) name.
    pub stage: String,
    /// Messages not yet delivered.
    pub pending: u64,
    /// Messages delivered and not yet acked.
    pub ack_pending: u64,
    /// Messages redelivered at least once.
    pub redelivered: u64,
}

/// Platform-wide state read from the database at scrape time (the same in every process:
/// aggregate with `max` across instances).
#[derive(Clone, Debug, Default)]
pub struct PlatformGauges {
    /// Pending scheduled jobs due now, and those due for over five minutes; `None` when the
    /// database did not answer in time.
    pub scheduled: Option<(u64, u64)>,
    /// Open tenant alerts by kind (`crm_unauthorized`, …).
    pub open_alerts: Vec<(String, u64)>,
}

/// A metric's name, help text and how to read it from a snapshot.
type CounterDoc<T> = (&'static str, &'static str, fn(&T) -> u64);

/// Every stage's metrics in one process, and its HTTP requests by route and status.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    stages: Arc<RwLock<BTreeMap<String, Arc<StageMetrics>>>>,
    requests: Arc<RwLock<RequestCounts>>,
    /// The scheduler's claim loop in this process.
    pub scheduler: Arc<SchedulerMetrics>,
}

/// What the scheduler's claim loops of this process did with due jobs.
#[derive(Debug, Default)]
pub struct SchedulerMetrics {
    /// Jobs published and marked fired.
    pub fired: AtomicU64,
    /// Jobs whose window was closed when due, moved to the next opening.
    pub moved: AtomicU64,
    /// Jobs cancelled when due (their client disabled, their lead unreadable).
    pub cancelled: AtomicU64,
    /// Claim rounds that failed and rolled back.
    pub failed_rounds: AtomicU64,
}

/// Answered requests by (route template, status).
type RequestCounts = BTreeMap<(String, u16), Arc<AtomicU64>>;

impl Metrics {
    /// Returns the metrics of `stage`, registering it on first use.
    pub fn stage(&self, stage: &str) -> Arc<StageMetrics> {
        if let Some(existing) = self.stages.read().expect("metrics lock").get(stage) {
            return existing.clone();
        }
        self.stages
            .write()
            .expect("metrics lock")
            .entry(stage.to_owned())
            .or_default()
            .clone()
    }

    /// Counts one answered HTTP request; `route` is the route's template (never a raw path,
    /// which can carry a secret), so the label set stays bounded.
    pub fn count_request(&self, route: &str, status: u16) {
        let key = (route.to_owned(), status);
        if let Some(counter) = self.requests.read().expect("metrics lock").get(&key) {
            bump(counter);
            return;
        }
        let counter = self
            .requests
            .write()
            .expect("metrics lock")
            .entry(key)
            .or_default()
            .clone();
        bump(&counter);
    }

    /// Returns the registered stage names.
    pub fn stage_names(&self) -> Vec<String> {
        self.stages
            .read()
            .expect("metrics lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Renders every metric and the platform gauges in the Prometheus text format.
    pub fn render_with(&self, consumers: &[ConsumerGauge], platform: &PlatformGauges) -> String {
        let mut out = self.render(consumers);
        if let Some((due, overdue)) = platform.scheduled {
            for (name, help, value) in [
                (
                    "caller_scheduler_due_jobs",
                    "Pending scheduled jobs whose time has come.",
                    due,
                ),
                (
                    "caller_scheduler_overdue_jobs",
                    "Pending scheduled jobs due for more than five minutes (the scheduler is behind or down).",
                    overdue,
                ),
            ] {
                writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
                )
                .expect("writing to a String never fails");
            }
        }
        let name = "caller_tenant_alerts_open";
        writeln!(
            out,
            "# HELP {name} Open tenant alerts by kind (crm_unauthorized, crm_rejected, …).\n# TYPE {name} gauge"
        )
        .expect("writing to a String never fails");
        for (kind, count) in &platform.open_alerts {
            writeln!(out, "{name}{{kind=\"{kind}\"}} {count}")
                .expect("writing to a String never fails");
        }
        out
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self, consumers: &[ConsumerGauge]) -> String {
        let stages = self.stages.read().expect("metrics lock").clone();
        let mut out = String::new();
        let counters: [CounterDoc<StageCounts>; 6] = [
            (
                "caller_stage_processed_total",
                "Inputs handled and acked.",
                |c| c.processed,
            ),
            (
                "caller_stage_retried_total",
                "Retryable failures (NAKed, or dead-lettered when out of deliveries).",
                |c| c.retried,
            ),
            (
                "caller_stage_rejected_total",
                "Inputs rejected or undecodable.",
                |c| c.rejected,
            ),
            (
                "caller_stage_duplicate_total",
                "Redeliveries of already processed inputs.",
                |c| c.duplicate,
            ),
            (
                "caller_stage_dead_lettered_total",
                "Inputs moved to the dead-letter stream.",
                |c| c.dead_lettered,
            ),
            (
                "caller_stage_paused_total",
                "Pauses for an unavailable dependency.",
                |c| c.paused,
            ),
        ];
        for (name, help, read) in counters {
            writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter")
                .expect("writing to a String never fails");
            for (stage, metrics) in &stages {
                writeln!(
                    out,
                    "{name}{{stage=\"{stage}\"}} {}",
                    read(&metrics.counts())
                )
                .expect("writing to a String never fails");
            }
        }
        let name = "caller_stage_handler_seconds";
        writeln!(
            out,
            "# HELP {name} Handler latency, claim to commit.\n# TYPE {name} histogram"
        )
        .expect("writing to a String never fails");
        for (stage, metrics) in &stages {
            let mut cumulative = 0;
            for (index, bound) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += metrics.latency.counts[index].load(Ordering::Relaxed);
                writeln!(
                    out,
                    "{name}_bucket{{stage=\"{stage}\",le=\"{bound}\"}} {cumulative}"
                )
                .expect("writing to a String never fails");
            }
            cumulative += metrics.latency.counts[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
            writeln!(
                out,
                "{name}_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {cumulative}"
            )
            .expect("writing to a String never fails");
            let sum = metrics.latency.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            writeln!(out, "{name}_sum{{stage=\"{stage}\"}} {sum}\n{name}_count{{stage=\"{stage}\"}} {cumulative}").expect("writing to a String never fails");
        }
        let gauges: [CounterDoc<ConsumerGauge>; 3] = [
            (
                "caller_consumer_pending",
                "Messages not yet delivered to the stage.",
                |g| g.pending,
            ),
            (
                "caller_consumer_ack_pending",
                "Messages delivered and awaiting ack.",
                |g| g.ack_pending,
            ),
            (
                "caller_consumer_redelivered",
                "Messages redelivered at least once.",
                |g| g.redelivered,
            ),
        ];
        for (name, help, read) in gauges {
            writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge")
                .expect("writing to a String never fails");
            for gauge in consumers {
                writeln!(out, "{name}{{stage=\"{}\"}} {}", gauge.stage, read(gauge))
                    .expect("writing to a String never fails");
            }
        }
        let scheduler: [(&str, &str, &AtomicU64); 4] = [
            (
                "caller_scheduler_fired_total",
                "Due jobs published and marked fired.",
                &self.scheduler.fired,
            ),
            (
                "caller_scheduler_moved_total",
                "Due jobs moved to the next window opening.",
                &self.scheduler.moved,
            ),
            (
                "caller_scheduler_cancelled_total",
                "Due jobs cancelled when claimed (client disabled, lead unreadable).",
                &self.scheduler.cancelled,
            ),
            (
                "caller_scheduler_failed_rounds_total",
                "Claim rounds that failed and rolled back.",
                &self.scheduler.failed_rounds,
            ),
        ];
        for (name, help, counter) in scheduler {
            writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Ordering::Relaxed)
            )
            .expect("writing to a String never fails");
        }
        let name = "caller_http_requests_total";
        writeln!(
            out,
            "# HELP {name} HTTP requests answered, by route template and status.\n# TYPE {name} counter"
        )
        .expect("writing to a String never fails");
        for ((route, status), count) in self.requests.read().expect("metrics lock").iter() {
            writeln!(
                out,
                "{name}{{route=\"{route}\",status=\"{status}\"}} {}",
                count.load(Ordering::Relaxed)
            )
            .expect("writing to a String never fails");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_counters_histogram_and_gauges() {
        let metrics = Metrics::default();
        let stage = metrics.stage("canary");
        bump(&stage.processed);
        stage.observe_latency(Duration::from_millis(3));
        let text = metrics.render(&[ConsumerGauge {
            stage: "canary".into(),
            pending: 7,
            ack_pending: 1,
            redelivered: 0,
        }]);
        assert!(text.contains("caller_stage_processed_total{stage=\"canary\"} 1"));
        assert!(
            text.contains("caller_stage_handler_seconds_bucket{stage=\"canary\",le=\"0.005\"} 1")
        );
        assert!(
            text.contains("caller_stage_handler_seconds_bucket{stage=\"canary\",le=\"0.0025\"} 0")
        );
        assert!(text.contains("caller_consumer_pending{stage=\"canary\"} 7"));
        assert!(text.contains("caller_scheduler_fired_total 0"));
        add(&metrics.scheduler.fired, 3);
        assert!(
            metrics
                .render(&[])
                .contains("caller_scheduler_fired_total 3")
        );
        metrics.count_request("/webhooks/{tenant}/custom", 202);
        metrics.count_request("/webhooks/{tenant}/custom", 202);
        let text = metrics.render(&[]);
        assert!(text.contains(
            "caller_http_requests_total{route=\"/webhooks/{tenant}/custom\",status=\"202\"} 2"
        ));
    }
}
