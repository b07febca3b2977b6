//! Admission and dialing with a real NATS server, a real database and the Twilio simulator:
//! a resolved lead becomes exactly one paced, windowed call whose state follows the provider's
//! signed callbacks.

mod common;
#[path = "common/calls.rs"]
mod harness;

use std::time::Duration;

use caller::calls::state::ProviderStatus;
use caller::ingress::verify::twilio::TwilioSignature;
use caller::providers::sim_twilio::{SimFault, SimOutcome};
use caller::secret::Secret;
use common::eventually;
use harness::{AUTH_TOKEN, Harness, Options, daytime_zone, night_zone, quick_calls};

const WAIT: Duration = Duration::from_secs(30);

async fn outcome_call_id(h: &Harness, phone: &str) -> String {
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM calls WHERE to_number = $1")
        .bind(phone)
        .fetch_one(&h.env.db.observer)
        .await
        .unwrap();
    id.to_string()
}

fn pairs(transitions: &[(String, String)]) -> Vec<(&str, &str)> {
    transitions
        .iter()
        .map(|(from, to)| (from.as_str(), to.as_str()))
        .collect()
}

#[tokio::test]
async fn a_resolved_lead_becomes_one_call_through_every_state() {
    let h = Harness::start(Options::default()).await;
    let phone = "+15125550111";
    h.lead(h.tenant, phone, daytime_zone()).await;
    eventually(WAIT, "the call completes", || async {
        h.call_of(phone)
            .await
            .is_some_and(|(state, _)| state == "completed")
    })
    .await;
    let (_, outcome) = h.call_of(phone).await.unwrap();
    assert_eq!(outcome.as_deref(), Some("human"));
    assert_eq!(
        pairs(&h.transitions(phone, "call").await),
        [
            ("queued", "initiated"),
            ("initiated", "ringing"),
            ("ringing", "connected"),
            ("connected", "completed"),
        ]
    );
    assert_eq!(
        pairs(&h.transitions(phone, "attempt").await),
        [
            ("none", "dialing"),
            ("dialing", "initiated"),
            ("initiated", "ringing"),
            ("ringing", "answered"),
            ("answered", "completed"),
        ]
    );
    assert_eq!(h.sim.calls_to(phone), 1);
    let call = h.sim.calls().pop().unwrap();
    // What the call was created with: every status event, our callback URL, the stream TwiML.
    assert_eq!(
        call.param("StatusCallbackEvent"),
        ["initiated", "ringing", "answered", "completed"]
    );
    assert!(
        call.param("StatusCallback")[0]
            .starts_with(&format!("{}/webhooks/{}/twilio/calls/", h.base, h.tenant))
    );
    let twiml = call.param("Twiml")[0];
    assert!(
        twiml.contains(&format!("<Connect><Stream url=\"{}\">", h.media)),
        "{twiml}"
    );
    assert!(twiml.contains(&format!(
        "<Parameter name=\"tenant_id\" value=\"{}\"/>",
        h.tenant
    )));
    assert!(twiml.contains("<Say>") && twiml.contains("<Hangup/>"));
    assert!(
        call.param("MachineDetection").is_empty(),
        "AMD is off for this tenant"
    );
    // The answered call streamed its audio to the media endpoint, with our parameters.
    let session = h.sim.media_sessions().pop().unwrap();
    assert!(session.connected, "{session:?}");
    assert_eq!(
        session.custom_parameters["call_id"],
        outcome_call_id(&h, phone).await
    );
    assert!(session.frames_sent > 0 && session.stopped);
    // The stream carries a token that opens exactly this call, for the media gateway.
    let keyring = caller::crypto::Keyring::from_parts("k1", [("k1", harness::MASTER_KEY)]).unwrap();
    let tokens = caller::calls::stream_token::StreamTokens::from_keyring(&keyring);
    let parameter = |name: &str| {
        session.custom_parameters[name]
            .parse::<uuid::Uuid>()
            .unwrap()
    };
    let claims = caller::calls::stream_token::StreamClaims {
        tenant: caller::ids::TenantId::from_uuid(parameter("tenant_id")),
        call: caller::ids::CallId::from_uuid(parameter("call_id")),
        attempt: caller::ids::AttemptId::from_uuid(parameter("attempt_id")),
    };
    assert_eq!(claims.tenant, h.tenant);
    tokens
        .verify(
            &session.custom_parameters["token"],
            &claims,
            chrono::Utc::now(),
        )
        .unwrap();
    // Every callback was accepted (signed correctly, published).
    let callbacks = h.sim.callbacks();
    assert!(!callbacks.is_empty());
    assert!(
        callbacks
            .iter()
            .all(|callback| callback.status == Some(200)),
        "{callbacks:?}"
    );
    // The client follows the call through the API: its attempts and every state change.
    let http = caller::providers::http::client();
    let get = |path: String| {
        let request = http
            .get(format!("{}{path}", h.base))
            .bearer_auth(&h.api_key)
            .send();
        async move {
            let response = request.await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let listed = get(format!("/v1/clients/{}/calls?state=completed", h.tenant)).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["to"], phone);
    let call_id = listed[0]["id"].as_str().unwrap();
    let detail = get(format!("/v1/clients/{}/calls/{call_id}", h.tenant)).await;
    assert_eq!(detail["outcome"], "human");
    assert_eq!(detail["attempts"][0]["state"], "completed");
    assert!(
        detail["attempts"][0]["provider_call_id"]
            .as_str()
            .unwrap()
            .starts_with("CA")
    );
    let changes: Vec<(String, String)> = detail["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["machine"] == "call")
        .map(|t| {
            (
                t["from"].as_str().unwrap().to_owned(),
                t["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(changes, h.transitions(phone, "call").await);
    // The outcome is a fact on the bus.
    let outcomes: i64 = sqlx::query_scalar("SELECT count(*) FROM calls WHERE outcome IS NOT NULL")
        .fetch_one(&h.env.db.observer)
        .await
        .unwrap();
    assert_eq!(outcomes, 1);
    let stream = h.env.bus.jetstream().get_stream("CALLS").await.unwrap();
    let outcome = stream
        .get_last_raw_message_by_subject(&format!("calls.outcome.{}", h.tenant))
        .await
        .unwrap();
    let outcome: caller::bus::envelope::Envelope<caller::events::call_flow::CallOutcome> =
        caller::bus::envelope::Envelope::decode(Some(&outcome.headers), &outcome.payload).unwrap();
    assert_eq!(
        outcome.payload.outcome,
        caller::calls::state::Outcome::Human
    );
    h.finish().await;
}

#[tokio::test]
async fn machine_answers_and_unanswered_calls_end_with_their_outcomes() {
    let mut behaviour = quick_calls();
    behaviour
        .by_callee
        .insert("+15125550121".to_owned(), SimOutcome::Machine);
    behaviour
        .by_callee
        .insert("+15125550122".to_owned(), SimOutcome::NoAnswer);
    behaviour
        .by_callee
        .insert("+15125550123".to_owned(), SimOutcome::Busy);
    behaviour
        .by_callee
        .insert("+15125550124".to_owned(), SimOutcome::Failed);
    let h = Harness::start(Options {
        amd: true,
        behaviour,
        ..Options::default()
    })
    .await;
    let zone = daytime_zone();
    for phone in [
        "+15125550121",
        "+15125550122",
        "+15125550123",
        "+15125550124",
    ] {
        h.lead(h.tenant, phone, zone).await;
    }
    let expected = [
        ("+15125550121", "completed", "machine"),
        ("+15125550122", "no_answer", "no_answer"),
        ("+15125550123", "busy", "busy"),
        ("+15125550124", "failed", "failed"),
    ];
    for (phone, state, outcome) in expected {
        // A machine's answer may be reported after the call ended (detection is
        // asynchronous): the outcome is then corrected from `human` to `machine`.
        eventually(WAIT, "the call settles with its outcome", || async {
            h.call_of(phone).await == Some((state.to_owned(), Some(outcome.to_owned())))
        })
        .await;
    }
    let machine = h
        .sim
        .calls()
        .into_iter()
        .find(|c| c.to == "+15125550121")
        .unwrap();
    assert_eq!(machine.param("AsyncAmd"), ["true"]);
    assert!(machine.param("AsyncAmdStatusCallback")[0].ends_with("/amd"));
    let answered_by: Option<String> = sqlx::query_scalar(
        "SELECT a.answered_by FROM call_attempts a JOIN calls c ON c.id = a.call_id WHERE c.to_number = $1",
    )
    .bind("+15125550121")
    .fetch_one(&h.env.db.observer)
    .await
    .unwrap();
    assert!(answered_by.is_some_and(|by| by.starts_with("machine")));
    h.finish().await;
}

#[tokio::test]
async fn permanent_errors_fail_the_call_once_and_transient_ones_retry() {
    let h = Harness::start(Options::default()).await;
    // 21215: no geographic permission for this destination; never retried.
    let blocked = "+88163000001";
    h.lead(h.tenant, blocked, daytime_zone()).await;
    eventually(WAIT, "the call fails", || async {
        h.call_of(blocked)
            .await
            .is_some_and(|(state, _)| state == "failed")
    })
    .await;
    let reason: (Option<i32>, Option<String>) = sqlx::query_as(
        "SELECT a.failure_code, a.failure_reason FROM call_attempts a JOIN calls c ON c.id = a.call_id WHERE c.to_number = $1",
    )
    .bind(blocked)
    .fetch_one(&h.env.db.observer)
    .await
    .unwrap();
    assert_eq!(reason.0, Some(21215));
    assert!(reason.1.unwrap().contains("not authorized"));

    // A 429 with Retry-After, then a 503: the intent is forgotten, the retry places one call.
    h.sim.push_fault(SimFault {
        status: 429,
        code: 20429,
        retry_after_secs: Some(1),
    });
    h.sim.push_fault(SimFault {
        status: 503,
        code: 20500,
        retry_after_secs: None,
    });
    let phone = "+15125550131";
    h.lead(h.tenant, phone, daytime_zone()).await;
    eventually(WAIT, "the call completes after the retries", || async {
        h.call_of(phone)
            .await
            .is_some_and(|(state, _)| state == "completed")
    })
    .await;
    assert_eq!(h.sim.calls_to(phone), 1);
    h.finish().await;
}

#[tokio::test]
async fn a_lead_at_night_waits_for_its_window_and_is_never_dropped() {
    let h = Harness::start(Options::default()).await;
    let zone = night_zone();
    let phone = "+15125550141";
    h.lead(h.tenant, phone, zone).await;
    eventually(WAIT, "the lead waits in the admission queue", || async {
        let row: Option<(chrono::DateTime<chrono::Utc>, Option<String>)> = sqlx::query_as(
            "SELECT not_before, deferred_reason FROM admission_queue WHERE to_number = $1 AND state = 'waiting'",
        )
        .bind(phone)
        .fetch_optional(&h.env.db.observer)
        .await
        .unwrap();
        row.is_some_and(|(not_before, reason)| {
            let local = not_before.with_timezone(&zone);
            use chrono::Timelike as _;
            not_before > chrono::Utc::now()
                && local.hour() == 8
                && local.minute() == 0
                && reason.as_deref() == Some("outside the calling window")
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        h.call_of(phone).await.is_none(),
        "no call outside the window"
    );
    assert_eq!(h.sim.calls_to(phone), 0);
    h.finish().await;
}

#[tokio::test]
async fn callbacks_must_be_signed_and_unknown_calls_are_answered_200() {
    let h = Harness::start(Options {
        stages: vec![],
        ..Options::default()
    })
    .await;
    let http = caller::providers::http::client();
    let attempt = uuid::Uuid::now_v7();
    let path = format!("/webhooks/{}/twilio/calls/{attempt}/status", h.tenant);
    let url = format!("{}{path}", h.base);
    let params = vec![
        (
            "CallSid".to_owned(),
            format!("CA{}", uuid::Uuid::new_v4().simple()),
        ),
        (
            "CallStatus".to_owned(),
            ProviderStatus::Ringing.as_str().to_owned(),
        ),
        ("SequenceNumber".to_owned(), "1".to_owned()),
    ];
    let signer = TwilioSignature::new(&[Secret::new(AUTH_TOKEN.to_owned())]).unwrap();
    let signature = signer.sign(&url, &params);
    let post = |signature: Option<String>, params: Vec<(String, String)>| {
        let mut request = http.post(&url).form(&params);
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        request.send()
    };
    let unsigned = post(None, params.clone()).await.unwrap();
    assert_eq!(unsigned.status(), 403);
    assert_eq!(
        unsigned.headers()["content-type"],
        "application/problem+json"
    );
    let mut tampered = params.clone();
    tampered[1].1 = "completed".to_owned();
    assert_eq!(
        post(Some(signature.clone()), tampered)
            .await
            .unwrap()
            .status(),
        403
    );
    // Signed, but for a call we do not know: 200, so Twilio stops retrying.
    assert_eq!(
        post(Some(signature.clone()), params.clone())
            .await
            .unwrap()
            .status(),
        200
    );
    let bad_attempt = format!(
        "{}/webhooks/{}/twilio/calls/not-an-id/status",
        h.base, h.tenant
    );
    let signature = signer.sign(&bad_attempt, &params);
    let response = http
        .post(&bad_attempt)
        .header("X-Twilio-Signature", signature)
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    h.finish().await;
}

#[tokio::test]
async fn a_tenant_with_thousands_queued_does_not_hold_up_another_tenants_single_lead() {
    use caller::store::admission::{self, NewQueued};
    // No stage runs: the test drives admission cycles itself.
    let h = Harness::start(Options {
        stages: vec![],
        concurrency_cap: 50,
        calls_per_second: 1_000.0,
        ..Options::default()
    })
    .await;
    let other = harness::onboard(&h.env, "other-clinic", &h.sim_base, &Options::default()).await;
    let zone = daytime_zone();
    // Each tenant's leads are queued in one transaction (10,000 separate ones take seconds).
    let enqueue = |tenant, indexes: std::ops::Range<usize>| {
        let store = h.env.db.store.clone();
        async move {
            let mut tx = store.begin_tenant(tenant).await.unwrap();
            for index in indexes {
                let phone = format!("+1512556{index:04}");
                let lead = harness::resolved(&phone, zone);
                let event = caller::ids::EventId::new_v7();
                let json = serde_json::to_value(&lead).unwrap();
                admission::enqueue(
                    &mut tx,
                    &NewQueued {
                        tenant,
                        lead_event_id: event,
                        call_id: caller::stages::rate_limit::call_id_of(event),
                        lead: &json,
                        to: &lead.phone,
                        timezone: zone.name(),
                        not_before: chrono::Utc::now() - chrono::Duration::seconds(1),
                        deferred_reason: None,
                        attempt_number: 1,
                    },
                )
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
        }
    };
    enqueue(h.tenant, 0..10_000).await;
    // The single lead arrives last: it must not wait behind the 10,000.
    enqueue(other, 9_999..10_000).await;
    let settings = h.runtime.stages.admission.clone();
    caller::stages::rate_limit::admitter::cycle(&h.runtime, &settings)
        .await
        .unwrap();
    let admitted = |tenant: caller::ids::TenantId| {
        let db = h.env.db.observer.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM calls WHERE tenant_id = $1")
                .bind(tenant.as_uuid())
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        admitted(other).await,
        1,
        "the single lead is admitted in the first cycle"
    );
    // The busy tenant gets its cap per cycle, not its whole queue.
    assert_eq!(admitted(h.tenant).await, 50);
    h.finish().await;
}

#[tokio::test]
async fn rejected_twilio_credentials_dead_letter_the_call_with_a_reason_the_client_sees() {
    let h = Harness::start(Options::default()).await;
    // A second client whose stored auth token Twilio (the simulator) refuses: 401, 20003.
    let wrong = harness::onboard_with_token(
        &h.env,
        "wrong-token-clinic",
        &h.sim_base,
        &Options::default(),
        "not-the-auth-token",
    )
    .await;
    let phone = "+15125550151";
    h.lead(wrong, phone, daytime_zone()).await;
    eventually(WAIT, "the request is dead-lettered", || async {
        !caller::bus::dead_letter::list(&h.env.bus, Some("dial"), 10)
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    let letters = caller::bus::dead_letter::list(&h.env.bus, Some("dial"), 10)
        .await
        .unwrap();
    assert!(
        letters[0].reason.contains("reconnect Twilio"),
        "{}",
        letters[0].reason
    );
    assert!(!letters[0].reason.contains("not-the-auth-token"));
    assert_eq!(h.sim.calls_to(phone), 0);
    // The intent was forgotten: a replay after reconnecting dials afresh.
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM call_attempts")
        .fetch_one(&h.env.db.observer)
        .await
        .unwrap();
    assert_eq!(attempts, 0);
    h.finish().await;
}

#[tokio::test]
async fn a_call_request_delivered_after_its_window_closed_waits_instead_of_dialing() {
    use caller::events::call_flow::CallRequested;
    let h = Harness::start(Options {
        stages: vec!["dial"],
        ..Options::default()
    })
    .await;
    // As if admitted in the afternoon and delivered at night, after an outage.
    let phone = "+15125550161";
    let lead = harness::resolved(phone, night_zone());
    let request = CallRequested {
        call_id: caller::ids::CallId::from_uuid(uuid::Uuid::now_v7()),
        attempt_number: 1,
        to: lead.phone.clone(),
        from: caller::ids::PhoneNumber::parse(harness::CALLER_NUMBER).unwrap(),
        dial_not_before: chrono::Utc::now(),
        lead,
    };
    // The admitted call exists, so without the window check the dial would go through.
    let json = serde_json::to_value(&request.lead).unwrap();
    let mut tx = h.env.db.store.begin_tenant(h.tenant).await.unwrap();
    caller::store::calls::create_queued(
        &mut tx,
        &caller::store::calls::NewCall {
            id: request.call_id,
            tenant: h.tenant,
            to: &request.to,
            from: &request.from,
            crm_contact_id: None,
            lead: &json,
            request_event_id: caller::ids::EventId::new_v7(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let envelope = caller::bus::envelope::Envelope::new(h.tenant, "test", request);
    h.env
        .bus
        .publish_all(&[envelope.to_message().unwrap()])
        .await
        .unwrap();
    // Wait for the handler's decision: a retry (waiting for the window) or a success.
    let dial = h.runtime.metrics.stage("dial");
    let load =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    eventually(WAIT, "the dial stage decided", || async {
        load(&dial.retried) + load(&dial.processed) + load(&dial.rejected) > 0
    })
    .await;
    // Put back on the stream to wait for the window: not dialed, not dead-lettered.
    assert_eq!(load(&dial.retried), 1);
    assert_eq!(load(&dial.processed), 0);
    assert_eq!(h.sim.calls_to(phone), 0);
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM call_attempts")
        .fetch_one(&h.env.db.observer)
        .await
        .unwrap();
    assert_eq!(attempts, 0);
    assert!(
        caller::bus::dead_letter::list(&h.env.bus, Some("dial"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    h.finish().await;
}
