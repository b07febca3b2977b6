//! The scheduler over the real NATS and PostgreSQL, with the Twilio simulator and a clock the
//! test moves: an unanswered lead is retried along the ladder inside its windows, escalates
//! to a follow-up campaign when its attempts run out, and everything stops when it books.
//!
//! Only scheduling decisions read the moved clock; every call they cause is admitted, paced,
//! window-checked and placed in real time (the lead's zone is one where it is daytime now).

mod common;
#[path = "common/calls.rs"]
mod harness;

use std::time::Duration;

use caller::booking::{BookingRequest, Calendar, SlotQuery};
use caller::clock::Clock;
use caller::ids::PhoneNumber;
use caller::providers::sim_twilio::SimOutcome;
use caller::scheduling::campaign::{CampaignSpec, CampaignStage};
use caller::stages::scheduler::claimer;
use caller::store::follow_up_campaigns;
use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use common::eventually;
use harness::{Harness, Options, daytime_zone, quick_calls};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// A job as the test reads it: kind, state, due time, earliest time, reason.
type JobRow = (String, String, DateTime<Utc>, DateTime<Utc>, String);

async fn jobs(h: &Harness, phone: &str) -> Vec<JobRow> {
    sqlx::query_as(
        "SELECT kind, state, due_at, earliest_at, reason FROM scheduled_jobs
          WHERE to_number = $1 ORDER BY created_at, due_at",
    )
    .bind(phone)
    .fetch_all(&h.env.db.observer)
    .await
    .unwrap()
}

async fn pending(h: &Harness, phone: &str) -> Vec<JobRow> {
    jobs(h, phone)
        .await
        .into_iter()
        .filter(|job| job.1 == "pending")
        .collect()
}

/// Waits until the simulator received `count` create-call requests for `phone` and the last
/// call settled, and returns the pending jobs of the lead once the scheduler wrote `jobs`.
async fn settle(h: &Harness, phone: &str, count: u32, pending_jobs: usize) -> Vec<JobRow> {
    eventually(WAIT, &format!("create-call #{count}"), || async {
        h.sim.calls_to(phone) == count
    })
    .await;
    eventually(WAIT, &format!("{pending_jobs} pending jobs"), || async {
        pending(h, phone).await.len() == pending_jobs
    })
    .await;
    pending(h, phone).await
}

fn local(tz: Tz, date: (i32, u32, u32), time: (u32, u32)) -> DateTime<Utc> {
    let naive = NaiveDate::from_ymd_opt(date.0, date.1, date.2)
        .unwrap()
        .and_hms_opt(time.0, time.1, 0)
        .unwrap();
    tz.from_local_datetime(&naive)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

fn stage(day_offset: u32, time: &str) -> CampaignStage {
    CampaignStage {
        day_offset,
        time: time.to_owned(),
        agent_variant: None,
        message: None,
    }
}

#[tokio::test]
async fn a_no_answer_lead_is_retried_in_its_windows_escalates_and_stops_when_it_books() {
    // The lead's zone is in daytime now, so the real admission and dial checks pass; the
    // scheduler's clock starts on Friday 8 January 2027 at 20:30 in that zone.
    let zone = daytime_zone();
    let start = local(zone, (2027, 1, 8), (20, 30));
    let clock = Clock::manual(start);
    let phone = "+15125550177";
    let mut behaviour = quick_calls();
    behaviour
        .by_callee
        .insert(phone.to_owned(), SimOutcome::NoAnswer);
    let all_day: Vec<_> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .into_iter()
        .map(|day| json!({"day": day, "open": "00:00", "close": "23:30"}))
        .collect();
    let h = Harness::start(Options {
        behaviour,
        clock: clock.clone(),
        stages: vec!["rate_limit", "dial", "call_status", "scheduler"],
        configuration: json!({
            "timezone": zone.name(),
            // Saturday is a holiday on the business's clock (the lead's zone here).
            "holidays": ["2027-01-09"],
            "retry_policy": {
                "ladder_minutes": [15, 60, 240, 1440],
                "max_attempts": 5,
                "escalate_to": "nurture"
            },
            "calendar": "static",
            "providers": {"static": {"rules": all_day}}
        }),
        ..Options::default()
    })
    .await;
    {
        let mut tx = h.env.db.store.begin_tenant(h.tenant).await.unwrap();
        let spec = CampaignSpec {
            name: "nurture".to_owned(),
            stages: vec![stage(1, "10:00"), stage(3, "22:00"), stage(7, "07:00")],
            triggers: vec![],
        };
        follow_up_campaigns::create(&mut tx, h.tenant, uuid::Uuid::now_v7(), &spec)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    h.lead(h.tenant, phone, zone).await;

    // Attempt 1, unanswered at 20:30: the first step (15 min) still fits before 21:00.
    let due = settle(&h, phone, 1, 1).await;
    assert_eq!(due[0].0, "retry");
    assert_eq!(due[0].2, local(zone, (2027, 1, 8), (20, 45)));
    assert_eq!(due[0].3, start + TimeDelta::minutes(15));
    assert!(
        due[0].4.starts_with("no_answer (attempt 2 of 5"),
        "{}",
        due[0].4
    );

    // Attempt 2 at 20:45: one hour later is 21:45, past the legal hours; Saturday is a
    // holiday; so Sunday 08:00.
    clock.set(due[0].2);
    let due = settle(&h, phone, 2, 1).await;
    assert_eq!(due[0].3, local(zone, (2027, 1, 8), (21, 45)));
    assert_eq!(due[0].2, local(zone, (2027, 1, 10), (8, 0)));

    // Attempt 3 on Sunday 08:00: four hours, 12:00.
    clock.set(due[0].2);
    let due = settle(&h, phone, 3, 1).await;
    assert_eq!(due[0].2, local(zone, (2027, 1, 10), (12, 0)));

    // Attempt 4: a day, Monday 12:00.
    clock.set(due[0].2);
    let due = settle(&h, phone, 4, 1).await;
    assert_eq!(due[0].2, local(zone, (2027, 1, 11), (12, 0)));

    // Attempt 5 is the last: the lead escalates to "nurture", whose stages fall on Tuesday
    // 10:00, Thursday 22:00 (moved to Friday 08:00) and the next Monday 07:00 (08:00).
    clock.set(due[0].2);
    let due = settle(&h, phone, 5, 3).await;
    let follow_ups: Vec<_> = due.iter().map(|job| (job.0.as_str(), job.2)).collect();
    assert_eq!(
        follow_ups,
        [
            ("follow_up", local(zone, (2027, 1, 12), (10, 0))),
            ("follow_up", local(zone, (2027, 1, 15), (8, 0))),
            ("follow_up", local(zone, (2027, 1, 18), (8, 0))),
        ]
    );
    assert!(
        due.iter()
            .all(|job| job.4.starts_with("escalated: no_answer"))
    );
    let retries: Vec<_> = jobs(&h, phone)
        .await
        .into_iter()
        .filter(|job| job.0 == "retry")
        .map(|job| job.1)
        .collect();
    assert_eq!(retries, ["fired"; 4]);

    // The first follow-up is a new call; unanswered, it is not retried along the ladder (the
    // campaign's next stage is its retry).
    clock.set(due[0].2);
    settle(&h, phone, 6, 2).await;
    let calls: i64 = sqlx::query_scalar("SELECT count(*) FROM calls WHERE to_number = $1")
        .bind(phone)
        .fetch_one(&h.env.db.observer)
        .await
        .unwrap();
    assert_eq!(calls, 2, "the retried call and the follow-up call");

    // The lead books (through the booking dispatcher the agent's tool uses): the rest of the
    // campaign is cancelled at once.
    let query = SlotQuery::new(
        Utc::now() + TimeDelta::days(1),
        Utc::now() + TimeDelta::days(3),
        1,
        zone,
        Utc::now(),
    )
    .unwrap();
    let slot = h
        .runtime
        .calendars
        .free_slots(h.tenant, query)
        .await
        .unwrap()[0]
        .clone();
    h.runtime
        .calendars
        .book(BookingRequest {
            tenant: h.tenant,
            call: None,
            starts_at: slot.starts_at,
            zone,
            name: Some("Jamie Lead".to_owned()),
            phone: Some(PhoneNumber::parse(phone).unwrap()),
            email: None,
            contact: None,
            notes: None,
            idempotency_key: "test:booked".to_owned(),
        })
        .await
        .unwrap();
    assert!(pending(&h, phone).await.is_empty());
    let cancelled: Vec<_> = jobs(&h, phone)
        .await
        .into_iter()
        .filter(|job| job.1 == "cancelled")
        .collect();
    assert_eq!(cancelled.len(), 2);

    // A month later nothing is due and no create-call reached the simulator.
    clock.set(start + TimeDelta::days(31));
    let round = claimer::round(&h.runtime, &h.runtime.stages.scheduler)
        .await
        .unwrap();
    assert_eq!(round, claimer::Round::default());
    assert_eq!(h.sim.calls_to(phone), 6);
    let transitions = h.transitions(phone, "call").await;
    assert!(
        transitions
            .iter()
            .any(|(from, to)| from == "retry_scheduled" && to == "queued"),
        "{transitions:?}"
    );
    h.finish().await;
}

/// Publishes a `call.requested` for a queued call to `phone` that a scheduled job (`job`)
/// asked for, as admission would after the job fired.
async fn request_scheduled_call(h: &Harness, phone: &str, job: uuid::Uuid) -> uuid::Uuid {
    use caller::bus::envelope::Envelope;
    use caller::events::call_flow::CallRequested;
    use caller::events::lead_flow::{JobKind, ScheduledAttempt};
    use caller::ids::{CallId, EventId};
    use caller::store::calls::{self, NewCall};

    let zone = daytime_zone();
    let mut lead = harness::resolved(phone, zone);
    lead.schedule = Some(ScheduledAttempt {
        job_id: job,
        kind: JobKind::FollowUp,
        reason: "test".to_owned(),
        call_id: None,
        attempt_number: 1,
        campaign_id: None,
        campaign_name: None,
        stage_index: None,
        agent_variant: None,
        message: None,
    });
    let lead_event = EventId::new_v7();
    let call_id = CallId::from_uuid(lead_event.as_uuid());
    let to = PhoneNumber::parse(phone).unwrap();
    let from = PhoneNumber::parse(harness::CALLER_NUMBER).unwrap();
    let json = serde_json::to_value(&lead).unwrap();
    let mut tx = h.env.db.store.begin_tenant(h.tenant).await.unwrap();
    calls::create_queued(
        &mut tx,
        &NewCall {
            id: call_id,
            tenant: h.tenant,
            to: &to,
            from: &from,
            crm_contact_id: None,
            lead: &json,
            request_event_id: lead_event,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut envelope = Envelope::new(
        h.tenant,
        "test",
        CallRequested {
            call_id,
            attempt_number: 1,
            to,
            from,
            dial_not_before: Utc::now(),
            lead,
        },
    );
    envelope.meta.call_id = Some(call_id);
    h.env
        .bus
        .publish_all(&[envelope.to_message().unwrap()])
        .await
        .unwrap();
    call_id.as_uuid()
}

async fn call_state(h: &Harness, call: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT state FROM calls WHERE id = $1")
        .bind(call)
        .fetch_one(&h.env.db.observer)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_job_cancelled_after_it_fired_or_a_number_blocked_meanwhile_is_not_dialed() {
    use caller::events::lead_flow::JobKind;
    use caller::store::call_blocklist::{self, BlockList};
    use caller::store::scheduled_jobs::{self, NewJob};

    let h = Harness::start(Options {
        stages: vec!["dial", "call_status"],
        ..Options::default()
    })
    .await;
    let zone = daytime_zone();
    // A fired job, then cancelled (the lead booked between the fire and the dial).
    let cancelled_phone = "+15125550181";
    let job = uuid::Uuid::now_v7();
    let lead = serde_json::to_value(harness::resolved(cancelled_phone, zone)).unwrap();
    let to = PhoneNumber::parse(cancelled_phone).unwrap();
    let mut tx = h.env.db.store.begin_tenant(h.tenant).await.unwrap();
    scheduled_jobs::insert(
        &mut tx,
        &NewJob {
            id: job,
            tenant: h.tenant,
            kind: JobKind::FollowUp,
            to: &to,
            crm_contact_id: None,
            call_id: None,
            attempt_number: 1,
            campaign: None,
            paused: false,
            due_at: Utc::now(),
            earliest_at: Utc::now(),
            reason: "test",
            timezone: zone.name(),
            timezone_fallback: false,
            lead: &lead,
            source_event_id: caller::ids::EventId::new_v7(),
        },
    )
    .await
    .unwrap();
    // The claim loop fired it...
    scheduled_jobs::mark_fired(&mut tx, &[(job, None)], Utc::now())
        .await
        .unwrap();
    // ...and before its call was dialed the lead booked: the fired job is cancelled too.
    let cancelled = scheduled_jobs::cancel_for_lead(&mut tx, h.tenant, Some(&to), None, "booked")
        .await
        .unwrap();
    assert_eq!(cancelled, 1);
    // Another lead's number goes on the do-not-call list after its call was admitted.
    let blocked_phone = "+15125550182";
    call_blocklist::add(
        &mut tx,
        h.tenant,
        &PhoneNumber::parse(blocked_phone).unwrap(),
        BlockList::DoNotCall,
        Some("asked by phone"),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let first = request_scheduled_call(&h, cancelled_phone, job).await;
    let second = request_scheduled_call(&h, blocked_phone, uuid::Uuid::now_v7()).await;
    // A third, untouched, is dialed: the stage is working, and the other two were refused.
    let dialed_phone = "+15125550183";
    let third = request_scheduled_call(&h, dialed_phone, uuid::Uuid::now_v7()).await;
    eventually(WAIT, "the untouched call settled", || async {
        call_state(&h, third).await == "completed"
    })
    .await;
    eventually(WAIT, "both refused calls cancelled", || async {
        call_state(&h, first).await == "cancelled" && call_state(&h, second).await == "cancelled"
    })
    .await;
    assert_eq!(h.sim.calls_to(cancelled_phone), 0);
    assert_eq!(h.sim.calls_to(blocked_phone), 0);
    assert_eq!(h.sim.calls_to(dialed_phone), 1);
    h.finish().await;
}

/// Waits until rate_limit has nothing pending or unacknowledged.
async fn rate_limit_idle(h: &Harness) {
    let stream = h.env.bus.jetstream().get_stream("LEADS").await.unwrap();
    eventually(WAIT, "rate_limit idle", || async {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer("rate_limit").await.unwrap();
        let info = consumer.info().await.unwrap();
        info.num_pending == 0 && info.num_ack_pending == 0
    })
    .await;
}

async fn publish_lead(h: &Harness, lead: caller::events::lead_flow::LeadResolved) {
    let envelope = caller::bus::envelope::Envelope::new(h.tenant, "test", lead);
    h.env
        .bus
        .publish_all(&[envelope.to_message().unwrap()])
        .await
        .unwrap();
}

#[tokio::test]
async fn crm_events_enroll_a_lead_in_a_campaign_or_stop_it_and_a_disabled_client_stops_all() {
    use caller::events::lead_flow::TimezoneSource;
    use caller::tenancy::audit::Actor;
    use caller::tenancy::service;

    let h = Harness::start(Options {
        stages: vec!["rate_limit", "scheduler"],
        configuration: json!({"stop_on": {"statuses": ["Won"], "tags": ["do-not-call"]}}),
        ..Options::default()
    })
    .await;
    {
        let mut tx = h.env.db.store.begin_tenant(h.tenant).await.unwrap();
        let spec = CampaignSpec {
            name: "reactivation".to_owned(),
            stages: vec![stage(2, "11:00"), stage(9, "11:00")],
            triggers: vec![caller::scheduling::campaign::Trigger {
                tag: Some("reactivate".to_owned()),
                ..Default::default()
            }],
        };
        follow_up_campaigns::create(&mut tx, h.tenant, uuid::Uuid::now_v7(), &spec)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    // A CRM event tagging the lead enrolls it (no call now). Its zone was a guess (the
    // tenant's): the jobs are flagged.
    let phone = "+15125550191";
    let mut lead = harness::resolved(phone, Tz::UTC);
    lead.tags = vec!["Reactivate".to_owned()];
    lead.timezone_source = TimezoneSource::Tenant;
    publish_lead(&h, lead.clone()).await;
    eventually(WAIT, "two follow-up jobs", || async {
        pending(&h, phone).await.len() == 2
    })
    .await;
    // The same CRM event again (another delivery id): the lead is not enrolled twice.
    let mut again = lead.clone();
    again.source_event_id = Some("second-delivery".to_owned());
    publish_lead(&h, again).await;
    rate_limit_idle(&h).await;
    assert_eq!(pending(&h, phone).await.len(), 2);
    let flagged: Vec<bool> =
        sqlx::query_scalar("SELECT timezone_fallback FROM scheduled_jobs WHERE to_number = $1")
            .bind(phone)
            .fetch_all(&h.env.db.observer)
            .await
            .unwrap();
    assert_eq!(flagged, [true, true]);
    assert!(
        pending(&h, phone)
            .await
            .iter()
            .all(|job| job.4 == "trigger: enrolled in `reactivation`")
    );

    // A later CRM event with a stop status cancels them, and calls nobody.
    let mut won = harness::resolved(phone, Tz::UTC);
    won.custom_fields.insert("status".to_owned(), json!("won"));
    publish_lead(&h, won).await;
    eventually(WAIT, "jobs cancelled by the CRM status", || async {
        let all = jobs(&h, phone).await;
        all.len() == 2
            && all
                .iter()
                .all(|job| job.1 == "cancelled" && job.4.starts_with("trigger"))
    })
    .await;
    let reasons: Vec<Option<String>> =
        sqlx::query_scalar("SELECT cancel_reason FROM scheduled_jobs WHERE to_number = $1")
            .bind(phone)
            .fetch_all(&h.env.db.observer)
            .await
            .unwrap();
    assert_eq!(reasons, vec![Some("crm status `won`".to_owned()); 2]);
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM admission_queue")
        .fetch_one(&h.env.db.observer)
        .await
        .unwrap();
    assert_eq!(queued, 0, "neither event became a call");

    // Disabling the client cancels what it still had scheduled.
    let other = "+15125550192";
    let mut again = harness::resolved(other, daytime_zone());
    again.tags = vec!["reactivate".to_owned()];
    publish_lead(&h, again).await;
    eventually(WAIT, "enrolled", || async {
        pending(&h, other).await.len() == 2
    })
    .await;
    let mut tx = h.env.db.store.begin_platform().await.unwrap();
    service::set_status(&mut tx, &Actor::operator("test"), h.tenant, false)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(pending(&h, other).await.is_empty());
    h.finish().await;
}

#[tokio::test]
async fn a_cancelled_retry_settles_its_call_and_a_resumed_campaign_skips_missed_stages() {
    use caller::events::lead_flow::JobKind;
    use caller::store::call_blocklist::{self, BlockList};
    use caller::store::scheduled_jobs::{self, NewJob};

    let phone = "+15125550195";
    let mut behaviour = quick_calls();
    behaviour
        .by_callee
        .insert(phone.to_owned(), SimOutcome::Busy);
    // The scheduler's clock stands a month back: nothing it plans or reads here comes due.
    let h = Harness::start(Options {
        behaviour,
        clock: Clock::manual(Utc::now() - TimeDelta::days(30)),
        stages: vec!["rate_limit", "dial", "call_status", "scheduler"],
        ..Options::default()
    })
    .await;
    h.lead(h.tenant, phone, daytime_zone()).await;
    settle(&h, phone, 1, 1).await;
    eventually(WAIT, "the call waits for its retry", || async {
        h.call_of(phone)
            .await
            .is_some_and(|(state, _)| state == "retry_scheduled")
    })
    .await;
    // The number goes on the do-not-call list: the retry is cancelled and the call settles.
    let mut tx = h.env.db.store.begin_tenant(h.tenant).await.unwrap();
    call_blocklist::add(
        &mut tx,
        h.tenant,
        &PhoneNumber::parse(phone).unwrap(),
        BlockList::OptOut,
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(pending(&h, phone).await.is_empty());
    assert_eq!(h.call_of(phone).await.unwrap().0, "cancelled");

    // A campaign paused for a week: of the two stages a lead missed meanwhile only the later
    // is called on resume; the stage still ahead stays.
    let campaign = uuid::Uuid::now_v7();
    let mut tx = h.env.db.store.begin_tenant(h.tenant).await.unwrap();
    follow_up_campaigns::create(
        &mut tx,
        h.tenant,
        campaign,
        &CampaignSpec {
            name: "weekly".to_owned(),
            stages: vec![stage(1, "10:00"), stage(3, "10:00"), stage(30, "10:00")],
            triggers: vec![],
        },
    )
    .await
    .unwrap();
    let other = "+15125550196";
    let to = PhoneNumber::parse(other).unwrap();
    let lead = serde_json::to_value(harness::resolved(other, Tz::UTC)).unwrap();
    for (index, days) in [(0u32, -6i64), (1, -4), (2, 23)] {
        let at = Utc::now() + TimeDelta::days(days);
        scheduled_jobs::insert(
            &mut tx,
            &NewJob {
                id: uuid::Uuid::now_v7(),
                tenant: h.tenant,
                kind: JobKind::FollowUp,
                to: &to,
                crm_contact_id: None,
                call_id: None,
                attempt_number: 1,
                campaign: Some((campaign, index)),
                paused: true,
                due_at: at,
                earliest_at: at,
                reason: "escalated",
                timezone: "UTC",
                timezone_fallback: false,
                lead: &lead,
                source_event_id: caller::ids::EventId::new_v7(),
            },
        )
        .await
        .unwrap();
    }
    let resumed = scheduled_jobs::set_campaign_paused(&mut tx, h.tenant, campaign, false)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(resumed, 2);
    let states: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT state, cancel_reason FROM scheduled_jobs WHERE to_number = $1 ORDER BY due_at",
    )
    .bind(other)
    .fetch_all(&h.env.db.observer)
    .await
    .unwrap();
    assert_eq!(states[0].0, "cancelled");
    assert!(states[0].1.as_deref().unwrap().starts_with("skipped"));
    assert_eq!(states[1].0, "pending");
    assert_eq!(states[2].0, "pending");
    h.finish().await;
}

#[tokio::test]
async fn an_escalation_to_a_missing_campaign_alerts_the_client() {
    let phone = "+15125550197";
    let mut behaviour = quick_calls();
    behaviour
        .by_callee
        .insert(phone.to_owned(), SimOutcome::NoAnswer);
    let h = Harness::start(Options {
        behaviour,
        stages: vec!["rate_limit", "dial", "call_status", "scheduler"],
        configuration: json!({
            "retry_policy": {"ladder_minutes": [15], "max_attempts": 1, "escalate_to": "ghost"}
        }),
        ..Options::default()
    })
    .await;
    h.lead(h.tenant, phone, daytime_zone()).await;
    eventually(WAIT, "an open escalation alert", || async {
        let alerts = caller::store::alerts::list(&h.env.db.store, h.tenant, 10)
            .await
            .unwrap();
        alerts.iter().any(|alert| {
            alert.kind == caller::stages::scheduler::ESCALATION_ALERT
                && alert.message.contains("`ghost`")
        })
    })
    .await;
    assert!(jobs(&h, phone).await.is_empty());
    h.finish().await;
}
