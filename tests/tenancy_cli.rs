//! The operator commands as operators run them: the real `caller` binary against a fresh
//! database, configured only through `CALLER__*` environment variables.
//!
//! Every test also checks that no secret it handed to the binary comes back on its output.

mod common;

use std::collections::BTreeMap;
use std::process::{Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use caller::crypto::Keyring;
use caller::ids::TenantId;
use caller::providers::sim::{self, SimAccounts};
use caller::tenancy::api_keys;
use caller::tenancy::service;
use common::TestDatabase;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

const K1: [u8; 32] = [11; 32];
const K2: [u8; 32] = [22; 32];

/// The master keys the binary gets, and which one is active. Ids are lowercase: figment
/// lowercases environment keys, so `CALLER__CRYPTO__KEYS__K1` names the key `k1`.
struct Keys {
    active: &'static str,
    keys: Vec<(&'static str, [u8; 32])>,
}

fn only_k1() -> Keys {
    Keys {
        active: "k1",
        keys: vec![("k1", K1)],
    }
}

fn k1_and_active_k2() -> Keys {
    Keys {
        active: "k2",
        keys: vec![("k1", K1), ("k2", K2)],
    }
}

/// A finished command with its output as text.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            success: output.status.success(),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }
}

impl Run {
    fn ok(self) -> Self {
        assert!(
            self.success,
            "command failed\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    fn failed(self) -> Self {
        assert!(!self.success, "command succeeded: {}", self.stdout);
        self
    }
}

/// Runs commands and remembers everything they printed.
struct Cli<'a> {
    db: &'a TestDatabase,
    printed: String,
}

impl<'a> Cli<'a> {
    fn new(db: &'a TestDatabase) -> Self {
        Self {
            db,
            printed: String::new(),
        }
    }

    fn command(&self, keys: &Keys, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_caller"));
        command
            .args(args)
            .env_remove("CALLER_CONFIG")
            .env_remove("CALLER_LOG")
            .env("CALLER__DATABASE__URL", &self.db.app_url)
            .env("CALLER__DATABASE__OWNER_URL", &self.db.url)
            .env("CALLER__LOG__FILTER", "warn")
            .env("CALLER__CRYPTO__ACTIVE_KEY", keys.active)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (id, key) in &keys.keys {
            command.env(
                format!("CALLER__CRYPTO__KEYS__{}", id.to_uppercase()),
                STANDARD.encode(key),
            );
        }
        command
    }

    async fn run_with(&mut self, keys: &Keys, args: &[&str]) -> Run {
        let mut command = self.command(keys, args);
        command.stdin(Stdio::null());
        self.record(command.output().await.unwrap().into())
    }

    async fn run(&mut self, args: &[&str]) -> Run {
        self.run_with(&only_k1(), args).await
    }

    async fn run_with_stdin(&mut self, args: &[&str], input: &str) -> Run {
        let mut command = self.command(&only_k1(), args);
        command.stdin(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        self.record(child.wait_with_output().await.unwrap().into())
    }

    fn record(&mut self, run: Run) -> Run {
        self.printed.push_str(&run.stdout);
        self.printed.push_str(&run.stderr);
        run
    }

    /// Asserts that `secret` never appeared on any output so far.
    fn assert_never_printed(&self, secret: &str) {
        assert!(
            !self.printed.contains(secret),
            "a secret was printed:\n{}",
            self.printed
        );
    }
}

async fn database() -> TestDatabase {
    caller::telemetry::init_for_tests();
    TestDatabase::create().await
}

fn write_json(dir: &tempfile::TempDir, name: &str, value: &serde_json::Value) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

async fn key_ids(db: &TestDatabase) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT key_id, count(*) FROM client_credentials GROUP BY key_id")
            .fetch_all(&db.observer)
            .await
            .unwrap();
    rows.into_iter().collect()
}

#[tokio::test]
async fn admin_create_key_prints_a_well_formed_key_once() {
    let db = database().await;
    let mut cli = Cli::new(&db);
    let run = cli
        .run(&["admin", "create-key", "--name", "ops laptop"])
        .await
        .ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    let key = lines[0];
    assert!(api_keys::is_well_formed(key), "{key}");
    assert!(
        run.stderr.contains("cannot be shown again"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(key));

    let (tenant, scopes): (Option<uuid::Uuid>, Vec<String>) =
        sqlx::query_as("SELECT tenant_id, scopes FROM api_keys")
            .fetch_one(&db.observer)
            .await
            .unwrap();
    assert_eq!(tenant, None, "an operator key belongs to no client");
    assert_eq!(scopes.len(), api_keys::Scope::ALL.len());
    let hash: Vec<u8> = sqlx::query_scalar("SELECT key_hash FROM api_keys")
        .fetch_one(&db.observer)
        .await
        .unwrap();
    assert_eq!(hash, api_keys::hash(key));

    // A client key with chosen scopes.
    cli.run(&[
        "tenant",
        "create",
        "--slug",
        "acme",
        "--name",
        "Acme",
        "--timezone",
        "UTC",
    ])
    .await
    .ok();
    let run = cli
        .run(&[
            "admin",
            "create-key",
            "--name",
            "acme reader",
            "--tenant",
            "acme",
            "--scope",
            "clients:read",
        ])
        .await
        .ok();
    assert!(api_keys::is_well_formed(run.stdout.trim()));
    let scopes: Vec<String> =
        sqlx::query_scalar("SELECT scopes FROM api_keys WHERE tenant_id IS NOT NULL")
            .fetch_one(&db.observer)
            .await
            .unwrap();
    assert_eq!(scopes, ["clients:read"]);
    let refused = cli
        .run(&[
            "admin",
            "create-key",
            "--name",
            "x",
            "--scope",
            "clients:write",
        ])
        .await
        .failed();
    assert!(refused.stderr.contains("`scopes[0]`"), "{}", refused.stderr);

    // An operator key is revoked at once from the command line.
    let operator_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM api_keys WHERE tenant_id IS NULL")
            .fetch_one(&db.observer)
            .await
            .unwrap();
    let run = cli
        .run(&["admin", "revoke-key", &operator_id.to_string()])
        .await
        .ok();
    assert!(run.stdout.contains("revoked api key"), "{}", run.stdout);
    let revoked: bool =
        sqlx::query_scalar("SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = $1")
            .bind(operator_id)
            .fetch_one(&db.observer)
            .await
            .unwrap();
    assert!(revoked);
    let again = cli
        .run(&["admin", "revoke-key", &operator_id.to_string()])
        .await
        .failed();
    assert!(again.stderr.contains("no live api key"), "{}", again.stderr);
    db.drop_database().await;
}

#[tokio::test]
async fn a_client_is_created_shown_and_given_a_credential_whose_value_never_appears() {
    let db = database().await;
    let eleven_secret = format!("xi-{}", uuid::Uuid::new_v4().simple());
    let file_secret = format!("tw-{}", uuid::Uuid::new_v4().simple());
    let accounts = SimAccounts {
        elevenlabs_api_key: eleven_secret.clone(),
        ..SimAccounts::default()
    };
    let (simulator, _task) = sim::spawn(accounts).await;
    let dir = tempfile::tempdir().unwrap();
    let request = write_json(
        &dir,
        "acme.json",
        &serde_json::json!({
            "slug": "overridden-by-the-flag",
            "configuration": {
                "voice": "elevenlabs",
                "providers": {"elevenlabs": {"base_url": format!("http://{simulator}")}},
            },
            "features": {"beta": {"enabled": true}},
            "credentials": {"twilio.auth_token": {"value": file_secret}},
        }),
    );
    let mut cli = Cli::new(&db);
    let created = cli
        .run(&[
            "tenant",
            "create",
            "--slug",
            "acme",
            "--name",
            "Acme Dental",
            "--timezone",
            "America/Chicago",
            "--config-file",
            &request,
        ])
        .await
        .ok();
    assert!(
        created.stdout.starts_with("created client "),
        "{}",
        created.stdout
    );

    let shown = cli.run(&["tenant", "show", "acme"]).await.ok();
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["client"]["slug"], "acme");
    assert_eq!(shown["client"]["timezone"], "America/Chicago");
    assert_eq!(shown["configuration"]["voice"], "elevenlabs");
    assert_eq!(shown["features"]["beta"]["enabled"], true);
    assert_eq!(shown["credentials"][0]["kind"], "twilio.auth_token");
    let id = shown["client"]["id"].as_str().unwrap().to_owned();
    // The id works wherever the slug does.
    cli.run(&["tenant", "show", &id]).await.ok();

    cli.run_with_stdin(
        &["tenant", "credential", "set", "acme", "elevenlabs.api_key"],
        &format!("{eleven_secret}\n"),
    )
    .await
    .ok();
    let listed = cli
        .run(&["tenant", "credential", "list", "acme"])
        .await
        .ok();
    let line = listed
        .stdout
        .lines()
        .find(|line| line.starts_with("elevenlabs.api_key\t"))
        .unwrap_or_else(|| panic!("{}", listed.stdout));
    assert!(line.contains("••••") && line.contains("\tk1\t"), "{line}");
    // Stored without the line break stdin carried: the vendor accepts it.
    let health = cli.run(&["tenant", "healthcheck", "acme"]).await.ok();
    assert!(
        health.stdout.starts_with("elevenlabs\tok\t"),
        "{}",
        health.stdout
    );

    let audit = cli.run(&["tenant", "audit", "acme"]).await.ok();
    for action in ["client.create", "feature.put", "credential.set"] {
        assert!(audit.stdout.contains(action), "{}", audit.stdout);
    }
    assert!(audit.stdout.contains("operator:"));
    cli.assert_never_printed(&eleven_secret);
    cli.assert_never_printed(&file_secret);

    // Argv never carries a value: there is no flag for it.
    cli.run(&[
        "tenant",
        "credential",
        "set",
        "acme",
        "twilio.auth_token",
        "--value",
        "x",
    ])
    .await
    .failed();
    db.drop_database().await;
}

#[tokio::test]
async fn every_management_command_changes_what_show_prints() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cli = Cli::new(&db);
    cli.run(&[
        "tenant",
        "create",
        "--slug",
        "bravo",
        "--name",
        "Bravo",
        "--timezone",
        "UTC",
    ])
    .await
    .ok();
    cli.run(&[
        "tenant",
        "create",
        "--slug",
        "alpha",
        "--name",
        "Alpha",
        "--timezone",
        "UTC",
    ])
    .await
    .ok();
    let listed = cli.run(&["tenant", "list"]).await.ok();
    let slugs: Vec<&str> = listed
        .stdout
        .lines()
        .map(|line| line.split('\t').nth(1).unwrap())
        .collect();
    assert_eq!(slugs, ["alpha", "bravo"]);

    cli.run(&[
        "tenant",
        "update",
        "bravo",
        "--name",
        "Bravo Inc",
        "--timezone",
        "Europe/Paris",
    ])
    .await
    .ok();
    cli.run(&["tenant", "disable", "bravo"]).await.ok();
    let configuration = write_json(
        &dir,
        "configuration.json",
        &serde_json::json!({"crm": "zoho", "concurrency_cap": 9}),
    );
    cli.run(&["tenant", "config", "set", "bravo", "--file", &configuration])
        .await
        .ok();
    cli.run(&[
        "tenant",
        "feature",
        "set",
        "bravo",
        "ab_greeting",
        "--enabled",
        "true",
        "--variants",
        r#"{"a": 50, "b": 50}"#,
    ])
    .await
    .ok();
    cli.run(&[
        "tenant",
        "feature",
        "set",
        "bravo",
        "gone",
        "--enabled",
        "false",
    ])
    .await
    .ok();
    cli.run(&["tenant", "feature", "delete", "bravo", "gone"])
        .await
        .ok();
    let shown = cli.run(&["tenant", "show", "bravo"]).await.ok();
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["client"]["name"], "Bravo Inc");
    assert_eq!(shown["client"]["timezone"], "Europe/Paris");
    assert_eq!(shown["client"]["status"], "disabled");
    assert_eq!(shown["configuration"]["crm"], "zoho");
    assert_eq!(shown["configuration"]["concurrency_cap"], 9);
    assert_eq!(shown["features"]["ab_greeting"]["variants"]["a"], 50);
    assert!(shown["features"].get("gone").is_none());
    let config = cli.run(&["tenant", "config", "show", "bravo"]).await.ok();
    let config: serde_json::Value = serde_json::from_str(&config.stdout).unwrap();
    assert_eq!(config["crm"], "zoho");

    cli.run(&["tenant", "enable", "bravo"]).await.ok();
    let missing = cli
        .run(&["tenant", "feature", "delete", "bravo", "gone"])
        .await
        .failed();
    assert_eq!(
        missing.stderr.trim(),
        "caller: delete feature `gone`: not found"
    );
    let unknown = cli.run(&["tenant", "show", "nobody"]).await.failed();
    assert_eq!(unknown.stderr.trim(), "caller: no client `nobody`");
    db.drop_database().await;
}

#[tokio::test]
async fn a_validation_failure_names_every_field_and_exits_non_zero() {
    let db = database().await;
    let mut cli = Cli::new(&db);
    let refused = cli
        .run(&[
            "tenant",
            "create",
            "--slug",
            "Not A Slug",
            "--name",
            "Acme",
            "--timezone",
            "Mars/Olympus_Mons",
        ])
        .await
        .failed();
    let message = refused.stderr.trim();
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.starts_with("caller: "), "{message}");
    assert!(message.contains("`slug`"), "{message}");
    assert!(message.contains("`timezone`"), "{message}");
    assert!(message.contains("Mars/Olympus_Mons"), "{message}");

    let missing = cli
        .run(&["tenant", "create", "--name", "Acme"])
        .await
        .failed();
    assert!(
        missing.stderr.contains("`slug` is required"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("`timezone` is required"),
        "{}",
        missing.stderr
    );

    // A malformed credential in the file is named, its value is not quoted.
    let dir = tempfile::tempdir().unwrap();
    let request = write_json(
        &dir,
        "bad.json",
        &serde_json::json!({"credentials": {"twilio.auth_token": {"value": 987_654_321}}}),
    );
    let bad = cli
        .run(&[
            "tenant",
            "create",
            "--slug",
            "acme",
            "--name",
            "Acme",
            "--timezone",
            "UTC",
            "--config-file",
            &request,
        ])
        .await
        .failed();
    assert!(
        bad.stderr.contains("`credentials.twilio.auth_token`"),
        "{}",
        bad.stderr
    );
    cli.assert_never_printed("987654321");

    let clients: i64 = sqlx::query_scalar("SELECT count(*) FROM clients")
        .fetch_one(&db.observer)
        .await
        .unwrap();
    assert_eq!(clients, 0);
    db.drop_database().await;
}

#[tokio::test]
async fn keys_rotate_moves_every_record_to_the_new_active_key() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let secrets: BTreeMap<String, String> =
        ["twilio.auth_token", "elevenlabs.api_key", "zoho.oauth"]
            .into_iter()
            .map(|kind| {
                (
                    kind.to_owned(),
                    format!("{kind}-{}", uuid::Uuid::new_v4().simple()),
                )
            })
            .collect();
    let credentials: serde_json::Map<String, serde_json::Value> = secrets
        .iter()
        .map(|(kind, value)| (kind.clone(), serde_json::json!({"value": value})))
        .collect();
    let request = write_json(
        &dir,
        "rot.json",
        &serde_json::json!({"credentials": credentials}),
    );
    let mut cli = Cli::new(&db);
    cli.run(&[
        "tenant",
        "create",
        "--slug",
        "rot",
        "--name",
        "Rot",
        "--timezone",
        "UTC",
        "--config-file",
        &request,
    ])
    .await
    .ok();
    assert_eq!(key_ids(&db).await, BTreeMap::from([("k1".to_owned(), 3)]));

    let rotated = cli
        .run_with(&k1_and_active_k2(), &["keys", "rotate", "--batch", "2"])
        .await
        .ok();
    assert!(
        rotated
            .stdout
            .contains("rotated 3 credentials to key `k2` in 2 batches"),
        "{}",
        rotated.stdout
    );
    assert!(rotated.stdout.contains("remaining 0"), "{}", rotated.stdout);
    assert_eq!(key_ids(&db).await, BTreeMap::from([("k2".to_owned(), 3)]));

    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM clients WHERE slug = 'rot'")
        .fetch_one(&db.observer)
        .await
        .unwrap();
    let tenant = TenantId::from_uuid(id);
    let only_k2 = Keyring::from_parts("k2", [("k2", K2)]).unwrap();
    let mut transaction = db.store.begin_tenant(tenant).await.unwrap();
    let opened = service::open_credentials(&mut transaction, &only_k2, tenant)
        .await
        .unwrap();
    let opened: BTreeMap<String, String> = opened
        .into_iter()
        .map(|(kind, value)| (kind, value.expose().clone()))
        .collect();
    assert_eq!(opened, secrets);
    drop(transaction);

    // The old key alone no longer opens anything: rotation leaves nothing behind on it.
    let run = cli
        .run_with(
            &Keys {
                active: "k2",
                keys: vec![("k2", K2)],
            },
            &["keys", "rotate"],
        )
        .await
        .ok();
    assert!(
        run.stdout.contains("rotated 0 credentials"),
        "{}",
        run.stdout
    );
    for secret in secrets.values() {
        cli.assert_never_printed(secret);
    }
    db.drop_database().await;
}
