//! The schedule's management API and its operator commands on a real PostgreSQL: follow-up
//! campaigns, scheduled attempts (list, cancel, move into the lead's windows, cancel a lead),
//! pausing a campaign, retry schedules, bad input named field by field, and isolation from
//! other clients.

mod common;

use std::process::Stdio;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use caller::api::{self, AppState};
use caller::crypto::Keyring;
use caller::events::lead_flow::JobKind;
use caller::ids::{CallId, EventId, PhoneNumber, TenantId};
use caller::settings::ApiSettings;
use caller::store::scheduled_jobs::{self, NewJob};
use caller::tenancy::api_keys::Scope;
use caller::tenancy::audit::Actor;
use caller::tenancy::service::{self, KeyRequest};
use chrono::{DateTime, Duration, NaiveTime, TimeZone, Timelike, Utc};
use common::TestDatabase;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

const LEAD_A: &str = "+14155550100";
const LEAD_B: &str = "+14155550123";

struct Api {
    db: TestDatabase,
    router: Router,
    operator: String,
}

impl Api {
    async fn start() -> Self {
        caller::telemetry::init_for_tests();
        let db = TestDatabase::create().await;
        let settings = ApiSettings::default();
        let keyring = Keyring::from_parts("k1", [("k1", [42u8; 32])]).unwrap();
        let router = api::router(
            AppState::new(db.store.clone(), keyring, &settings),
            &settings,
        );
        let mut tx = db.store.begin_platform().await.unwrap();
        let request = KeyRequest {
            name: "operator".into(),
            scopes: Scope::ALL.iter().map(|s| s.as_str().to_owned()).collect(),
            rate_limit_per_minute: None,
        };
        let issued = service::issue_key(&mut tx, &Actor::operator("test"), None, &request)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        Self {
            db,
            router,
            operator: issued.text.expose().clone(),
        }
    }

    /// Sends a request with the operator key; the body is JSON, or raw text when a string.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(&self.operator, method, path, body).await
    }

    async fn call_as(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"));
        let body = match body {
            Some(Value::String(raw)) => {
                request = request.header("content-type", "application/json");
                Body::from(raw)
            }
            Some(body) => {
                request = request.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    /// Onboards a client in New York whose leads may be called 09:00-20:00 every day, with an
    /// agent variant `warm`; returns its id.
    async fn onboard(&self, slug: &str) -> String {
        let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let windows: Vec<Value> = days
            .iter()
            .map(|day| json!({"day": day, "open": "09:00", "close": "20:00"}))
            .collect();
        let body = json!({
            "slug": slug,
            "name": format!("{slug} dental"),
            "timezone": "America/New_York",
            "configuration": {
                "calling_windows": windows,
                "agent": {"agent_id": "agent_1", "variants": [{"name": "warm"}]},
            },
        });
        let (status, client) = self.call(Method::POST, "/v1/clients", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{client}");
        client["id"].as_str().unwrap().to_owned()
    }

    async fn key(&self, client: &str, scopes: &[&str]) -> String {
        let body = json!({"name": "client key", "scopes": scopes});
        let (status, issued) = self
            .call(
                Method::POST,
                &format!("/v1/clients/{client}/api-keys"),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{issued}");
        issued["secret"].as_str().unwrap().to_owned()
    }

    async fn create_campaign(&self, client: &str, name: &str) -> String {
        let (status, campaign) = self
            .call(
                Method::POST,
                &format!("/v1/clients/{client}/follow-up-campaigns"),
                Some(campaign(name)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{campaign}");
        campaign["id"].as_str().unwrap().to_owned()
    }

    /// Inserts a pending attempt the way the scheduler does, due in a day; returns its id.
    async fn insert_job(&self, client: &str, job: TestJob<'_>) -> Uuid {
        let tenant = TenantId::parse(client).unwrap();
        let id = Uuid::now_v7();
        let phone = PhoneNumber::parse(job.phone).unwrap();
        let due = Utc::now() + Duration::days(1);
        let (kind, call_id, campaign) = match job.campaign {
            Some(campaign) => (
                JobKind::FollowUp,
                None,
                Some((campaign.parse().unwrap(), 0)),
            ),
            None => (
                JobKind::Retry,
                Some(CallId::from_uuid(Uuid::now_v7())),
                None,
            ),
        };
        let mut tx = self.db.store.begin_tenant(tenant).await.unwrap();
        let inserted = scheduled_jobs::insert(
            &mut tx,
            &NewJob {
                id,
                tenant,
                kind,
                to: &phone,
                crm_contact_id: job.contact,
                call_id,
                attempt_number: 2,
                campaign,
                paused: false,
                due_at: due,
                earliest_at: due,
                reason: "no_answer",
                timezone: "America/Chicago",
                timezone_fallback: false,
                lead: &json!({}),
                source_event_id: EventId::new_v7(),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert!(inserted);
        id
    }
}

#[derive(Clone, Copy)]
struct TestJob<'a> {
    phone: &'a str,
    contact: Option<&'a str>,
    campaign: Option<&'a str>,
}

fn campaign(name: &str) -> Value {
    json!({
        "name": name,
        "stages": [
            {"day_offset": 0, "time": "17:00"},
            {"day_offset": 2, "time": "10:00", "agent_variant": "warm", "message": "Hi again"},
        ],
        "triggers": [{"tag": "no-show"}],
    })
}

/// Returns the named fields of a 422 problem.
fn fields(problem: &Value) -> Vec<&str> {
    assert_eq!(problem["code"], "validation_failed", "{problem}");
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["field"].as_str().unwrap())
        .collect()
}

fn ids(jobs: &Value) -> Vec<&str> {
    let mut ids: Vec<&str> = jobs
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {jobs}"))
        .iter()
        .map(|job| job["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn a_campaign_is_created_and_a_bad_one_is_refused_field_by_field() {
    let api = Api::start().await;
    let client = api.onboard("acme").await;
    let base = format!("/v1/clients/{client}/follow-up-campaigns");
    let (status, created) = api
        .call(Method::POST, &base, Some(campaign("no-shows")))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["state"], "active");
    assert_eq!(created["stages"][1]["agent_variant"], "warm");
    let id = created["id"].as_str().unwrap();
    for key in [id, "no-shows"] {
        let (status, found) = api.call(Method::GET, &format!("{base}/{key}"), None).await;
        assert_eq!((status, found["id"].as_str()), (StatusCode::OK, Some(id)));
    }

    let mut bad_variant = campaign("x");
    bad_variant["stages"][1]["agent_variant"] = json!("cold");
    let mut bad_time = campaign("x");
    bad_time["stages"][0]["time"] = json!("25:00");
    let refusals = [
        (json!({"name": "x", "stages": []}), vec!["stages"]),
        (bad_variant, vec!["stages[1].agent_variant"]),
        (bad_time, vec!["stages[0].time"]),
        (
            json!(r#"{"name": "x", "stages": [{"day_offset": -1, "time": "10:00"}]}"#),
            vec!["stages[0].day_offset"],
        ),
        (
            json!({"name": "x", "stages": [{"day_offset": 1, "time": "10:00", "colour": "red"}]}),
            vec!["stages[0].colour"],
        ),
    ];
    for (body, expected) in refusals {
        let (status, problem) = api.call(Method::POST, &base, Some(body.clone())).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {problem}"
        );
        assert_eq!(fields(&problem), expected, "{body}");
    }

    let (status, duplicate) = api
        .call(Method::POST, &base, Some(campaign("no-shows")))
        .await;
    assert_eq!(
        (status, duplicate["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    // Replacing keeps the id; taking another campaign's name is a conflict too.
    api.create_campaign(&client, "nurture").await;
    let mut renamed = campaign("no-shows-2");
    renamed["stages"] = json!([{"day_offset": 1, "time": "11:00"}]);
    let (status, replaced) = api
        .call(Method::PUT, &format!("{base}/no-shows"), Some(renamed))
        .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(
        (replaced["id"].as_str(), replaced["name"].as_str()),
        (Some(id), Some("no-shows-2"))
    );
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("{base}/{id}"),
            Some(campaign("nurture")),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, listed) = api.call(Method::GET, &base, None).await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["no-shows-2", "nurture"]);
    let (status, _) = api
        .call(Method::DELETE, &format!("{base}/nurture"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api
        .call(Method::GET, &format!("{base}/nurture"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, audit) = api
        .call(Method::GET, &format!("/v1/clients/{client}/audit"), None)
        .await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    for action in [
        "follow_up_campaign.create",
        "follow_up_campaign.replace",
        "follow_up_campaign.delete",
    ] {
        assert!(actions.contains(&action), "{actions:?}");
    }
    api.db.drop_database().await;
}

#[tokio::test]
async fn attempts_are_listed_cancelled_once_and_moved_into_the_leads_windows() {
    let api = Api::start().await;
    let client = api.onboard("acme").await;
    let campaign = api.create_campaign(&client, "no-shows").await;
    let retry_a = api
        .insert_job(
            &client,
            TestJob {
                phone: LEAD_A,
                contact: Some("contact-a"),
                campaign: None,
            },
        )
        .await;
    let follow_up_a = api
        .insert_job(
            &client,
            TestJob {
                phone: LEAD_A,
                contact: Some("contact-a"),
                campaign: Some(&campaign),
            },
        )
        .await;
    let follow_up_b = api
        .insert_job(
            &client,
            TestJob {
                phone: LEAD_B,
                contact: None,
                campaign: Some(&campaign),
            },
        )
        .await;
    let base = format!("/v1/clients/{client}/scheduled-attempts");

    let (status, all) = api.call(Method::GET, &base, None).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert!(all[0].get("lead").is_none(), "the stored lead is not shown");
    // A number in national format is read in the client's region.
    for phone in ["%2B14155550100", "(415)%20555-0100"] {
        let (status, by_phone) = api
            .call(Method::GET, &format!("{base}?phone={phone}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{by_phone}");
        assert_eq!(
            ids(&by_phone),
            sorted(vec![retry_a.to_string(), follow_up_a.to_string()])
        );
    }
    for key in [campaign.as_str(), "no-shows"] {
        let (_, by_campaign) = api
            .call(Method::GET, &format!("{base}?campaign_id={key}"), None)
            .await;
        assert_eq!(
            ids(&by_campaign),
            sorted(vec![follow_up_a.to_string(), follow_up_b.to_string()])
        );
    }
    let (_, by_contact) = api
        .call(
            Method::GET,
            &format!("{base}?crm_contact_id=contact-a&limit=1"),
            None,
        )
        .await;
    assert_eq!(by_contact.as_array().unwrap().len(), 1);
    let (status, problem) = api
        .call(
            Method::GET,
            &format!("{base}?phone=call-me&state=later&campaign_id=nope&call_id=1"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        fields(&problem),
        ["phone", "campaign_id", "call_id", "state"]
    );

    // Cancelled once; a second cancel conflicts, an unknown attempt is not found.
    let cancel = format!("{base}/{retry_a}/cancel");
    let (status, cancelled) = api
        .call(Method::POST, &cancel, Some(json!({"reason": "lead asked"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(
        (
            cancelled["state"].as_str(),
            cancelled["cancel_reason"].as_str()
        ),
        (Some("cancelled"), Some("lead asked"))
    );
    // A bodiless POST sent with a JSON content type counts as no body.
    let (status, again) = api.call(Method::POST, &cancel, Some(json!(""))).await;
    assert_eq!(
        (status, again["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    let (status, _) = api
        .call(
            Method::POST,
            &format!("{base}/{}/cancel", Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .call(
            Method::POST,
            &format!("{base}/{retry_a}/reschedule"),
            Some(json!({"at": Utc::now() + Duration::hours(1)})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a cancelled attempt is not moved"
    );

    // Moved into the night on the lead's clock (Chicago): it lands when the window opens.
    let chicago = chrono_tz::America::Chicago;
    let tomorrow = Utc::now().with_timezone(&chicago).date_naive() + Duration::days(2);
    let night = chicago
        .from_local_datetime(&tomorrow.and_time(NaiveTime::from_hms_opt(4, 30, 0).unwrap()))
        .single()
        .unwrap()
        .with_timezone(&Utc);
    let reschedule = format!("{base}/{follow_up_b}/reschedule");
    let (status, moved) = api
        .call(Method::POST, &reschedule, Some(json!({"at": night})))
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    let due: DateTime<Utc> = moved["due_at"].as_str().unwrap().parse().unwrap();
    let earliest: DateTime<Utc> = moved["earliest_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(earliest, night);
    let local = due.with_timezone(&chicago);
    assert_eq!(
        (local.date_naive(), local.hour(), local.minute()),
        (tomorrow, 9, 0),
        "due at the window's opening on the lead's clock: {moved}"
    );
    let (status, problem) = api
        .call(
            Method::POST,
            &reschedule,
            Some(json!({"at": Utc::now() - Duration::hours(1)})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&problem), ["at"]);
    let (status, problem) = api
        .call(Method::POST, &reschedule, Some(json!({"at": "tomorrow"})))
        .await;
    assert_eq!(
        (status, fields(&problem)),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["at"])
    );

    let (_, audit) = api
        .call(Method::GET, &format!("/v1/clients/{client}/audit"), None)
        .await;
    let text = audit.to_string();
    assert!(text.contains("scheduled_attempt.cancel"), "{text}");
    assert!(text.contains("scheduled_attempt.reschedule"), "{text}");
    api.db.drop_database().await;
}

#[tokio::test]
async fn a_leads_pending_attempts_are_cancelled_together() {
    let api = Api::start().await;
    let client = api.onboard("acme").await;
    let campaign = api.create_campaign(&client, "no-shows").await;
    for campaign in [None, Some(campaign.as_str())] {
        let job = TestJob {
            phone: LEAD_A,
            contact: Some("contact-a"),
            campaign,
        };
        api.insert_job(&client, job).await;
    }
    let other = api
        .insert_job(
            &client,
            TestJob {
                phone: LEAD_B,
                contact: Some("contact-b"),
                campaign: None,
            },
        )
        .await;
    let path = format!("/v1/clients/{client}/leads/cancel-scheduled");

    let (status, problem) = api
        .call(Method::POST, &path, Some(json!({"reason": "x"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&problem), ["phone", "crm_contact_id"]);
    let (status, problem) = api
        .call(Method::POST, &path, Some(json!({"phone": "12"})))
        .await;
    assert_eq!(
        (status, fields(&problem)),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["phone"])
    );

    let (status, done) = api
        .call(
            Method::POST,
            &path,
            Some(json!({"phone": LEAD_A, "reason": "asked us to stop"})),
        )
        .await;
    assert_eq!(
        (status, done["cancelled"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{done}"
    );
    let (_, done) = api
        .call(Method::POST, &path, Some(json!({"phone": LEAD_A})))
        .await;
    assert_eq!(done["cancelled"], 0, "nothing left to cancel");
    let (_, done) = api
        .call(
            Method::POST,
            &path,
            Some(json!({"crm_contact_id": "contact-b"})),
        )
        .await;
    assert_eq!(done["cancelled"], 1);
    let (_, cancelled) = api
        .call(
            Method::GET,
            &format!("/v1/clients/{client}/scheduled-attempts?state=cancelled"),
            None,
        )
        .await;
    assert_eq!(cancelled.as_array().unwrap().len(), 3);
    let (_, pending) = api
        .call(
            Method::GET,
            &format!("/v1/clients/{client}/scheduled-attempts?state=pending"),
            None,
        )
        .await;
    assert_eq!(pending, json!([]));
    let reasons: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, cancel_reason FROM scheduled_jobs ORDER BY id")
            .fetch_all(&api.db.observer)
            .await
            .unwrap();
    assert!(
        reasons.contains(&(other, "cancelled manually".to_owned())),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(_, reason)| reason == "asked us to stop")
    );
    api.db.drop_database().await;
}

#[tokio::test]
async fn pausing_a_campaign_holds_its_attempts_until_it_resumes() {
    let api = Api::start().await;
    let client = api.onboard("acme").await;
    let campaign = api.create_campaign(&client, "no-shows").await;
    for phone in [LEAD_A, LEAD_B] {
        let job = TestJob {
            phone,
            contact: None,
            campaign: Some(&campaign),
        };
        api.insert_job(&client, job).await;
    }
    let retry = TestJob {
        phone: LEAD_A,
        contact: None,
        campaign: None,
    };
    api.insert_job(&client, retry).await;
    let base = format!("/v1/clients/{client}/follow-up-campaigns/no-shows");
    let states = |state: &'static str| {
        let path = format!("/v1/clients/{client}/scheduled-attempts?state={state}");
        let api = &api;
        async move {
            api.call(Method::GET, &path, None)
                .await
                .1
                .as_array()
                .unwrap()
                .len()
        }
    };

    let (status, paused) = api.call(Method::POST, &format!("{base}/pause"), None).await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(
        (paused["state"].as_str(), paused["jobs_moved"].as_u64()),
        (Some("paused"), Some(2))
    );
    assert_eq!(
        (states("paused").await, states("pending").await),
        (2, 1),
        "the retry keeps going"
    );
    let (_, again) = api.call(Method::POST, &format!("{base}/pause"), None).await;
    assert_eq!(again["jobs_moved"], 0);

    let (status, resumed) = api
        .call(Method::POST, &format!("{base}/resume"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(
        (resumed["state"].as_str(), resumed["jobs_moved"].as_u64()),
        (Some("active"), Some(2))
    );
    assert_eq!((states("paused").await, states("pending").await), (0, 3));
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/v1/clients/{client}/follow-up-campaigns/gone/pause"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    api.db.drop_database().await;
}

#[tokio::test]
async fn retry_schedules_are_checked_field_by_field_then_set_and_removed() {
    let api = Api::start().await;
    let client = api.onboard("acme").await;
    api.create_campaign(&client, "no-shows").await;
    let base = format!("/v1/clients/{client}/retry-schedules");
    let path = format!("{base}/spring-promo");
    let refusals = [
        (
            json!({"ladder_minutes": [], "max_attempts": 3}),
            vec!["ladder_minutes"],
        ),
        (
            json!(r#"{"ladder_minutes": [15], "max_attempts": -1}"#),
            vec!["max_attempts"],
        ),
        (
            json!({"ladder_minutes": [15], "max_attempts": 0, "jitter_secs": 9000}),
            vec!["max_attempts", "jitter_secs"],
        ),
        (
            json!({"ladder_minutes": [15], "max_attempts": 3, "escalate_to": "nurture"}),
            vec!["escalate_to"],
        ),
    ];
    for (body, expected) in refusals {
        let (status, problem) = api.call(Method::PUT, &path, Some(body.clone())).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {problem}"
        );
        assert_eq!(fields(&problem), expected, "{body}");
    }
    let policy = json!({"ladder_minutes": [30, 120], "max_attempts": 3, "escalate_to": "no-shows"});
    let (status, stored) = api.call(Method::PUT, &path, Some(policy)).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["campaign_id"], "spring-promo");
    assert_eq!(
        stored["policy"]["technical_retry_minutes"], 2,
        "defaults filled in"
    );
    let (_, listed) = api.call(Method::GET, &base, None).await;
    assert_eq!(listed[0]["policy"]["ladder_minutes"], json!([30, 120]));
    let (status, _) = api.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = api.call(Method::GET, &base, None).await;
    assert_eq!(listed, json!([]));
    api.db.drop_database().await;
}

#[tokio::test]
async fn another_clients_key_sees_and_changes_nothing_of_the_schedule() {
    let api = Api::start().await;
    let a = api.onboard("tenant-a").await;
    let b = api.onboard("tenant-b").await;
    let campaign = api.create_campaign(&a, "no-shows").await;
    let job = api
        .insert_job(
            &a,
            TestJob {
                phone: LEAD_A,
                contact: None,
                campaign: Some(&campaign),
            },
        )
        .await;
    let b_key = api.key(&b, &["clients:read", "clients:admin"]).await;
    let a_reader = api.key(&a, &["clients:read"]).await;
    let at = json!({"at": Utc::now() + Duration::days(2)});
    let requests = [
        (
            Method::GET,
            format!("/v1/clients/{a}/scheduled-attempts"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/clients/{a}/scheduled-attempts/{job}/cancel"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/clients/{a}/scheduled-attempts/{job}/reschedule"),
            Some(at),
        ),
        (
            Method::POST,
            format!("/v1/clients/{a}/leads/cancel-scheduled"),
            Some(json!({"phone": LEAD_A})),
        ),
        (
            Method::GET,
            format!("/v1/clients/{a}/follow-up-campaigns/{campaign}"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/clients/{a}/follow-up-campaigns/{campaign}/pause"),
            None,
        ),
        (
            Method::DELETE,
            format!("/v1/clients/{a}/follow-up-campaigns/{campaign}"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/clients/{a}/retry-schedules"),
            None,
        ),
    ];
    for (method, path, body) in requests {
        let (status, problem) = api
            .call_as(&b_key, method.clone(), &path, body.clone())
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{method} {path}"
        );
        // A's own read-only key may read but not change.
        let (status, _) = api.call_as(&a_reader, method.clone(), &path, body).await;
        let expected = if method == Method::GET {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(status, expected, "{method} {path} with a read-only key");
    }
    // B's own list does not show A's attempt.
    let (status, listed) = api
        .call_as(
            &b_key,
            Method::GET,
            &format!("/v1/clients/{b}/scheduled-attempts"),
            None,
        )
        .await;
    assert_eq!((status, listed), (StatusCode::OK, json!([])));
    let (_, still) = api
        .call(
            Method::GET,
            &format!("/v1/clients/{a}/scheduled-attempts?state=pending"),
            None,
        )
        .await;
    assert_eq!(ids(&still), [job.to_string()]);
    api.db.drop_database().await;
}

/// Runs the real `caller` binary against the test database.
async fn caller(db: &TestDatabase, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_caller"))
        .args(args)
        .env_remove("CALLER_CONFIG")
        .env_remove("CALLER_LOG")
        .env("CALLER__DATABASE__URL", &db.app_url)
        .env("CALLER__DATABASE__OWNER_URL", &db.url)
        .env("CALLER__LOG__FILTER", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test]
async fn the_schedule_commands_list_cancel_move_and_pause_like_the_api() {
    let api = Api::start().await;
    let client = api.onboard("acme").await;
    let campaign = api.create_campaign(&client, "no-shows").await;
    let follow_up = api
        .insert_job(
            &client,
            TestJob {
                phone: LEAD_A,
                contact: None,
                campaign: Some(&campaign),
            },
        )
        .await;
    let retry = api
        .insert_job(
            &client,
            TestJob {
                phone: LEAD_B,
                contact: None,
                campaign: None,
            },
        )
        .await;
    let db = &api.db;

    let (ok, listed, stderr) = caller(db, &["schedule", "list", "--client", "acme"]).await;
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = listed.lines().collect();
    assert!(lines[0].starts_with("ID "), "{listed}");
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(listed.contains("no-shows stage 1"), "{listed}");
    assert!(listed.contains("America/Chicago"), "{listed}");
    let (ok, listed, _) = caller(
        db,
        &[
            "schedule",
            "list",
            "--client",
            &client,
            "--campaign",
            "no-shows",
            "--state",
            "pending",
        ],
    )
    .await;
    assert!(ok);
    assert!(listed.contains(&follow_up.to_string()) && !listed.contains(&retry.to_string()));

    let (ok, _, stderr) = caller(
        db,
        &["schedule", "list", "--client", "acme", "--phone", "x"],
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.starts_with("caller: validation failed: `phone`"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let job = retry.to_string();
    let (ok, out, stderr) = caller(
        db,
        &[
            "schedule",
            "cancel",
            "--client",
            "acme",
            &job,
            "--reason",
            "wrong number",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(out.contains("wrong number"), "{out}");
    let (ok, _, stderr) = caller(db, &["schedule", "cancel", "--client", "acme", &job]).await;
    assert!(!ok);
    assert!(stderr.contains("already cancelled"), "{stderr}");
    let (ok, _, stderr) = caller(db, &["schedule", "cancel", "--client", "acme", "nope"]).await;
    assert!(!ok && stderr.contains("not an attempt id"), "{stderr}");

    let at = (Utc::now() + Duration::days(3)).to_rfc3339();
    let (ok, out, stderr) = caller(
        db,
        &[
            "schedule",
            "reschedule",
            "--client",
            "acme",
            &follow_up.to_string(),
            "--at",
            &at,
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(out.contains("America/Chicago"), "{out}");
    let earliest: DateTime<Utc> =
        sqlx::query_scalar("SELECT earliest_at FROM scheduled_jobs WHERE id = $1")
            .bind(follow_up)
            .fetch_one(&db.observer)
            .await
            .unwrap();
    assert_eq!(
        earliest.timestamp(),
        at.parse::<DateTime<Utc>>().unwrap().timestamp()
    );

    let (ok, out, stderr) =
        caller(db, &["campaign", "pause", "--client", "acme", "no-shows"]).await;
    assert!(ok, "{stderr}");
    assert!(out.contains("is paused: 1 attempts"), "{out}");
    let (ok, out, _) = caller(db, &["campaign", "list", "--client", "acme"]).await;
    assert!(
        ok && out.contains("paused") && out.contains("day 2 10:00"),
        "{out}"
    );
    let (ok, out, _) = caller(db, &["campaign", "resume", "--client", "acme", &campaign]).await;
    assert!(ok && out.contains("is active: 1 attempts"), "{out}");

    let (ok, out, stderr) = caller(
        db,
        &[
            "schedule",
            "cancel-lead",
            "--client",
            "acme",
            "--phone",
            LEAD_A,
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(out.contains("cancelled 1 scheduled attempts"), "{out}");
    let (ok, _, stderr) = caller(db, &["schedule", "cancel-lead", "--client", "acme"]).await;
    assert!(
        !ok && stderr.contains("--phone"),
        "clap asks for the lead: {stderr}"
    );

    let actors: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT actor FROM audit_log WHERE action LIKE 'scheduled_attempt.%'",
    )
    .fetch_all(&db.observer)
    .await
    .unwrap();
    assert!(
        actors.iter().all(|actor| actor.starts_with("operator:")),
        "{actors:?}"
    );
    api.db.drop_database().await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_schedule_type_it_refers_to() {
    let api = Api::start().await;
    let (status, document) = api.call(Method::GET, "/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for name in [
        "Job",
        "Campaign",
        "CampaignSpec",
        "CampaignStage",
        "Trigger",
        "CampaignStateChange",
        "RetryPolicy",
        "RetrySchedule",
        "CancelRequest",
        "RescheduleRequest",
        "LeadCancelRequest",
        "LeadCancelled",
    ] {
        assert!(schemas.contains_key(name), "no schema `{name}`");
    }
    let mut refs = Vec::new();
    collect_refs(&document, &mut refs);
    for reference in refs {
        let name = reference.trim_start_matches("#/components/schemas/");
        assert!(schemas.contains_key(name), "`{reference}` does not resolve");
    }
    api.db.drop_database().await;
}

fn collect_refs<'a>(value: &'a Value, refs: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(reference)) => refs.push(reference),
                    _ => collect_refs(inner, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
        _ => {}
    }
}
