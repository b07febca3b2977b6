//! A tiny scenario end to end against a private nats-server and a scratch database: every
//! request kind, replays and bad credentials. Counts and checks only, never timings.

use super::*;

const TINY: &str = r#"
version: 1
name: tiny
description: every request kind, a few seconds
seed: 7
target: { base_url: "http://127.0.0.1:0", timeout: 10s, max_in_flight: 64 }
duration: 3s
tenants: { count: 2, id_prefix: lt-tiny- }
arrival: { kind: constant, rate: 8, spacing: uniform }
mix:
  - weight: 2
    request:
      kind: ghl_workflow_webhook
      duplicate_ratio: 0.5
      invalid_auth_ratio: 0.2
      body_template:
        inline:
          contact_id: "{{lead.id}}"
          first_name: "{{lead.first_name}}"
          phone: "{{lead.phone}}"
          timezone: "{{lead.timezone}}"
          location: { id: "{{tenant.crm_account_id}}" }
          workflow: { id: lt-workflow-1, name: Call new leads }
  - weight: 1
    request:
      kind: zoho_workflow_webhook
      encoding: form
      body_template:
        inline: { lead_id: "{{lead.id}}", phone: "{{lead.phone}}", time_zone: "{{lead.timezone}}", org_id: "{{tenant.crm_account_id}}" }
  - weight: 1
    request:
      kind: custom_webhook
      duplicate_ratio: 0.5
      invalid_auth_ratio: 0.2
      body_template:
        inline:
          id: "{{request.id}}"
          data: { external_id: "{{lead.id}}", name: "{{lead.full_name}}", phone: "{{lead.phone}}", timezone: "{{lead.timezone}}" }
  - weight: 1
    request:
      kind: api_call
      method: POST
      path: /v1/calls
      invalid_auth_ratio: 0.2
      body_template:
        inline: { phone: "{{lead.phone}}", first_name: "{{lead.first_name}}", timezone: "{{lead.timezone}}", external_id: "{{lead.id}}" }
  - weight: 1
    request:
      kind: bulk_leads
      batch_size: 3
      body_template:
        inline: { phone: "{{lead.phone}}", first_name: "{{lead.first_name}}", timezone: "{{lead.timezone}}", external_id: "{{lead.id}}" }
vendors:
  telephony:
    answer_ratio: 0
    busy_ratio: 0.5
    ring_time: { kind: fixed, value: 50ms }
stop: { max_duration: 40s, drain: 20s }
"#;

fn write_scenario(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("scenario.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_scenario_calls_every_accepted_lead_once_and_refuses_bad_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::load(&write_scenario(dir.path(), TINY)).unwrap();
    let options = harness::Options {
        admin_database_url: std::env::var("CALLER_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://caller:caller@127.0.0.1:5432/caller".to_owned()),
        app_database_url: std::env::var("CALLER_TEST_APP_DATABASE_URL").unwrap_or_else(|_| {
            "postgres://caller_app:caller_app@127.0.0.1:5432/caller".to_owned()
        }),
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        database_connections: None,
    };
    let report = run(&scenario, None, &options, false).await.unwrap();
    let table = report.table();

    assert!(report.passed(), "{table}");
    let sent: usize = report.requests.values().map(|kind| kind.sent).sum();
    assert!(sent >= 20, "{table}");
    for (kind, figures) in &report.requests {
        let ok = figures.by_class.get("2xx").copied().unwrap_or(0);
        let refused = figures.by_class.get("4xx").copied().unwrap_or(0);
        assert_eq!(ok + refused, figures.sent, "{kind}: {table}");
        assert_eq!(refused, figures.invalid_auth, "{kind}: {table}");
    }
    assert!(report.leads.accepted > 0, "{table}");
    assert_eq!(report.leads.called, report.leads.accepted, "{table}");
    assert_eq!(report.leads.pending, 0, "{table}");
    assert!(!report.end_to_end.histogram.is_empty(), "{table}");
    assert!(
        report.stages.iter().any(|s| s.name.starts_with("dedupe")),
        "{table}"
    );
}

#[test]
fn unsupported_fields_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let text = TINY.replace(
        "    ring_time: { kind: fixed, value: 50ms }",
        "    ring_time: { kind: fixed, value: 50ms }\n    callback_reorder_ratio: 0.1",
    );
    let error = Scenario::load(&write_scenario(dir.path(), &text)).unwrap_err();
    assert!(
        format!("{error:#}").contains("`vendors.telephony.callback_reorder_ratio` is part of"),
        "{error:#}"
    );
    let text = TINY.replacen("{{lead.phone}}", "{{lead.fone}}", 1);
    let error = Scenario::load(&write_scenario(dir.path(), &text)).unwrap_err();
    assert!(format!("{error:#}").contains("lead.fone"), "{error:#}");
    let text = TINY.replace("127.0.0.1:0", "10.0.0.1:8080");
    let error = Scenario::load(&write_scenario(dir.path(), &text)).unwrap_err();
    assert!(format!("{error:#}").contains("loopback"), "{error:#}");
}
