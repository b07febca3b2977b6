//! The open-loop sender: every planned request goes out at its scheduled time whether or not
//! earlier ones were answered, and its latency is measured from that scheduled time, so a
//! stalled server shows up as latency instead of a slower send rate (no coordinated
//! omission). At most `max_in_flight` requests are outstanding; an arrival that finds the
//! bound reached is not sent and is counted as skipped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caller::ingress::verify::StandardWebhooks;
use caller::secret::Secret;
use serde_json::Value;
use tokio::time::Instant;

use crate::harness::TenantCreds;
use crate::plan::{Auth, Planned};
use crate::scenario::Kind;

/// What happened to one planned request.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) seq: u64,
    pub(crate) kind: Kind,
    pub(crate) replay: bool,
    pub(crate) invalid_auth: bool,
    pub(crate) warmup: bool,
    pub(crate) scheduled: Instant,
    /// `None` when nothing was sent (skipped) or no answer came (timeout, connection error).
    pub(crate) status: Option<u16>,
    pub(crate) skipped: bool,
    /// From the scheduled send time to the end of the response.
    pub(crate) latency: Duration,
    /// The `lead.received` event id of each accepted lead, with its number.
    pub(crate) accepted: Vec<(String, String)>,
    /// Leads ingress said it already had (a retry within the stream's duplicate window).
    pub(crate) duplicates: usize,
    pub(crate) phones: Vec<String>,
}

/// Counters for the progress line.
#[derive(Default)]
pub(crate) struct Progress {
    pub(crate) sent: AtomicUsize,
    pub(crate) answered: AtomicUsize,
    pub(crate) skipped: AtomicUsize,
    pub(crate) in_flight: AtomicUsize,
}

#[allow(clippy::too_many_arguments)] // NOTE: one call site; a struct would only rename them
/// Sends `plan` from `start`; returns every request's outcome once all are answered or timed
/// out. Stops scheduling at `deadline`.
pub(crate) async fn send_all(
    plan: Vec<Planned>,
    tenants: Arc<Vec<TenantCreds>>,
    base_url: String,
    start: Instant,
    deadline: Instant,
    max_in_flight: usize,
    timeout: Duration,
    progress: Arc<Progress>,
) -> Vec<Outcome> {
    let client = caller::providers::http::client();
    let outcomes = Arc::new(Mutex::new(Vec::with_capacity(plan.len())));
    // Standard Webhooks headers of each signed original, reused byte for byte by its replay.
    let mut signatures: HashMap<u64, [(String, String); 3]> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for planned in plan {
        let scheduled = start + planned.offset();
        if scheduled >= deadline {
            break;
        }
        tokio::time::sleep_until(scheduled).await;
        let outcome = Outcome {
            seq: planned.seq,
            kind: planned.kind,
            replay: planned.replay_of.is_some(),
            invalid_auth: planned.auth == Auth::Invalid,
            warmup: planned.warmup,
            scheduled,
            status: None,
            skipped: false,
            latency: Duration::ZERO,
            accepted: Vec::new(),
            duplicates: 0,
            phones: planned.phones.clone(),
        };
        if progress.in_flight.load(Ordering::Relaxed) >= max_in_flight {
            progress.skipped.fetch_add(1, Ordering::Relaxed);
            lock(&outcomes).push(Outcome {
                skipped: true,
                ..outcome
            });
            continue;
        }
        let creds = &tenants[planned.tenant - 1];
        let request = build(&client, &planned, creds, &base_url, &mut signatures).timeout(timeout);
        progress.in_flight.fetch_add(1, Ordering::Relaxed);
        progress.sent.fetch_add(1, Ordering::Relaxed);
        let outcomes = outcomes.clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            let answered = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.bytes().await.unwrap_or_default();
                    Some((status, body))
                }
                Err(_) => None,
            };
            let latency = scheduled.elapsed();
            progress.in_flight.fetch_sub(1, Ordering::Relaxed);
            progress.answered.fetch_add(1, Ordering::Relaxed);
            let mut outcome = Outcome { latency, ..outcome };
            if let Some((status, body)) = answered {
                outcome.status = Some(status);
                if (200..300).contains(&status) {
                    read_accepted(&mut outcome, &body);
                }
            }
            lock(&outcomes).push(outcome);
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut outcomes = std::mem::take(&mut *lock(&outcomes));
    outcomes.sort_by_key(|outcome| outcome.seq);
    outcomes
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking sender task cannot leave the list half-written: pushes are single calls.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Builds the HTTP request with the tenant's credentials (or deliberately wrong ones).
fn build(
    client: &reqwest::Client,
    planned: &Planned,
    creds: &TenantCreds,
    base_url: &str,
    signatures: &mut HashMap<u64, [(String, String); 3]>,
) -> reqwest::RequestBuilder {
    let valid = planned.auth == Auth::Valid;
    let path = planned.path.replace("{tenant}", &creds.id.to_string());
    let request = client
        .post(format!("{base_url}{path}"))
        .header("content-type", &planned.content_type)
        .body(planned.body.clone());
    let wrong = "wk_not-the-tenants-secret";
    match planned.kind {
        Kind::GhlWorkflowWebhook => request.header(
            "x-webhook-secret",
            if valid {
                creds.ghl_secret.expose().as_str()
            } else {
                wrong
            },
        ),
        Kind::ZohoWorkflowWebhook => request.header(
            "x-webhook-secret",
            if valid {
                creds.zoho_secret.expose().as_str()
            } else {
                wrong
            },
        ),
        Kind::CustomWebhook => {
            let original = planned.replay_of.unwrap_or(planned.seq);
            let headers = signatures
                .entry(original)
                .or_insert_with(|| sign(creds, planned, valid))
                .clone();
            headers.into_iter().fold(request, |request, (name, value)| {
                request.header(name, value)
            })
        }
        Kind::ApiCall | Kind::BulkLeads => {
            let key = if valid {
                creds.api_key.expose().clone()
            } else {
                "ck_invalid_loadtest_key".to_owned()
            };
            request.bearer_auth(key)
        }
    }
}

/// Standard Webhooks headers, signed by the tenant's signer (or, for an invalid-auth
/// request, by one with a key the tenant does not have).
fn sign(creds: &TenantCreds, planned: &Planned, valid: bool) -> [(String, String); 3] {
    static WRONG: std::sync::LazyLock<StandardWebhooks> = std::sync::LazyLock::new(|| {
        StandardWebhooks::new(&[Secret::new(
            "whsec_bm90LXRoZS10ZW5hbnRzLXNpZ25pbmcta2V5LTAwMDAwMA==".to_owned(),
        )])
        .expect("a valid whsec_ secret")
    });
    let id = format!("msg_loadtest_{}", planned.seq);
    let now = chrono::Utc::now();
    let signer = if valid { &creds.custom_signer } else { &WRONG };
    [
        ("webhook-id".to_owned(), id.clone()),
        ("webhook-timestamp".to_owned(), now.timestamp().to_string()),
        (
            "webhook-signature".to_owned(),
            signer.sign(&id, now, planned.body.as_bytes()),
        ),
    ]
}

/// Reads the accepted leads' event ids from a 2xx answer (one lead, or a bulk result).
fn read_accepted(outcome: &mut Outcome, body: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    if let Some(results) = answer.get("results").and_then(Value::as_array) {
        for result in results {
            let index = result.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            let accepted = result.get("status").and_then(Value::as_str) == Some("accepted");
            if let (true, Some(id), Some(phone)) = (
                accepted,
                result.get("event_id").and_then(Value::as_str),
                outcome.phones.get(index),
            ) {
                outcome.accepted.push((id.to_owned(), phone.clone()));
            }
        }
        return;
    }
    if answer.get("duplicate").and_then(Value::as_bool) == Some(true) {
        outcome.duplicates += 1;
    }
    if let (Some(id), Some(phone)) = (
        answer.get("event_id").and_then(Value::as_str),
        outcome.phones.first(),
    ) {
        outcome.accepted.push((id.to_owned(), phone.clone()));
    }
}
