//! Repository files that no Rust module loads at run time, checked so they cannot rot.

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    let mut value: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path} does not parse: {e}"));
    // Compose files share settings through `<<: *anchor` merge keys.
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{path}: bad merge key: {e}"));
    value
}

fn profiles(service: &serde_yaml::Value) -> Vec<String> {
    service["profiles"]
        .as_sequence()
        .map(|list| {
            list.iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_runs_nats_and_postgres_with_metabase_under_the_bi_profile() {
    let compose = yaml("compose.yaml");
    let services = &compose["services"];
    for name in ["nats", "postgres", "metabase", "caller", "simulator"] {
        assert!(
            services[name].is_mapping(),
            "compose.yaml has no service `{name}`"
        );
        assert!(
            services[name]["image"]
                .as_str()
                .is_some_and(|i| i.contains(':')),
            "`{name}` image is pinned"
        );
    }
    assert!(profiles(&services["metabase"]).contains(&"bi".to_owned()));
    assert!(profiles(&services["simulator"]).contains(&"sim".to_owned()));
    let nats_command = serde_yaml::to_string(&services["nats"]["command"]).unwrap();
    assert!(
        nats_command.contains("-js"),
        "NATS runs JetStream: {nats_command}"
    );
}

#[test]
fn load_scenarios_parse_and_target_only_loopback() {
    let dir = root().join("loadtest/scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "yaml") {
            continue;
        }
        seen += 1;
        let relative = path
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let scenario = yaml(&relative);
        assert!(scenario["name"].as_str().is_some(), "{relative} has a name");
        let base_url = scenario["target"]["base_url"].as_str().unwrap_or_default();
        let host = base_url
            .split("://")
            .nth(1)
            .unwrap_or_default()
            .split(['/', ':'])
            .next()
            .unwrap_or_default();
        let host = if base_url.contains("[::1]") {
            "::1"
        } else {
            host
        };
        assert!(
            host == "localhost" || host == "::1" || host.starts_with("127."),
            "{relative} targets `{base_url}`: load tests only ever target loopback"
        );
        assert!(
            scenario["stop"]["max_duration"].as_str().is_some(),
            "{relative} stops by itself"
        );
    }
    assert!(seen >= 1, "no scenario in loadtest/scenarios");
}

/// Every metric name (`caller_…`) that `text` mentions.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let mut index = 0;
    while let Some(found) = text[index..].find("caller_") {
        let start = index + found;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |len| start + len);
        if boundary {
            names.insert(text[start..end].to_owned());
        }
        index = end;
    }
    names
}

#[test]
fn every_alert_rule_names_served_metrics_and_says_what_to_do() {
    use caller::metrics::{ConsumerGauge, Metrics, PlatformGauges};

    let rules = yaml("monitoring/alerts.yml");
    // What `/metrics` serves, with every family present.
    let metrics = Metrics::default();
    let _ = metrics.stage("dial");
    let served = metrics.render_with(
        &[ConsumerGauge {
            stage: "dial".into(),
            pending: 1,
            ack_pending: 0,
            redelivered: 0,
        }],
        &PlatformGauges {
            scheduled: Some((0, 0)),
            open_alerts: vec![("crm_unauthorized".into(), 1)],
        },
    );
    let served = metric_names(&served);
    let mut alerts = 0;
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            alerts += 1;
            let expr = rule["expr"].as_str().expect("an expression");
            for metric in metric_names(expr) {
                assert!(
                    served.contains(&metric),
                    "{name} uses `{metric}`, which /metrics does not serve"
                );
            }
            let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
            assert!(
                ["warning", "critical"].contains(&severity),
                "{name}: severity warning or critical"
            );
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{name}: a summary"
            );
            assert!(
                rule["annotations"]["runbook"].as_str().is_some(),
                "{name}: a runbook"
            );
            assert!(rule["for"].as_str().is_some(), "{name}: a `for`");
        }
    }
    assert!(alerts >= 8, "{alerts} rules");
    // The families the issue asks for are covered.
    let text = std::fs::read_to_string(root().join("monitoring/alerts.yml")).unwrap();
    for needed in [
        "caller_stage_rejected_total",
        "caller_stage_dead_lettered_total",
        "caller_consumer_pending",
        "caller_tenant_alerts_open",
    ] {
        assert!(text.contains(needed), "no rule on {needed}");
    }
}
