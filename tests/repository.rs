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
    for name in ["nats", "postgres", "metabase", "caller"] {
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
