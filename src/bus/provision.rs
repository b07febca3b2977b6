//! Streams and consumers from `nats/`, created or verified idempotently.
//!
//! `nats/streams/<STREAM>.json` and `nats/consumers/<STREAM>/<stage>.json` are in the server's
//! own JSON shape (durations in nanoseconds), so the `nats` CLI can apply them by hand too.
//! Only keys a NATS 2.9 server understands are accepted: a 2.9 server silently ignores newer
//! ones (e.g. `filter_subjects` makes a consumer receive the *whole* stream), so a file using
//! one is refused here, naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_nats::jetstream::{consumer::pull, stream};
use serde_json::{Map, Value};

use super::Bus;

/// Stream keys a NATS 2.9 server honours.
const STREAM_KEYS: &[&str] = &[
    "name",
    "description",
    "subjects",
    "retention",
    "max_consumers",
    "max_msgs",
    "max_bytes",
    "max_age",
    "max_msgs_per_subject",
    "max_msg_size",
    "discard",
    "storage",
    "num_replicas",
    "duplicate_window",
    "no_ack",
    "sealed",
    "deny_delete",
    "deny_purge",
    "allow_rollup_hdrs",
    "allow_direct",
    "mirror_direct",
    "republish",
    "placement",
    "mirror",
    "sources",
];

/// Consumer keys a NATS 2.9 server honours.
const CONSUMER_KEYS: &[&str] = &[
    "durable_name",
    "name",
    "description",
    "deliver_policy",
    "opt_start_seq",
    "opt_start_time",
    "ack_policy",
    "ack_wait",
    "max_deliver",
    "backoff",
    "filter_subject",
    "replay_policy",
    "sample_freq",
    "max_waiting",
    "max_ack_pending",
    "headers_only",
    "max_batch",
    "max_expires",
    "max_bytes",
    "inactive_threshold",
    "num_replicas",
    "mem_storage",
];

/// A definition file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The file could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// File.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The file is readable but wrong.
    #[error("{path}: {reason}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The server refused a definition.
    #[error("{what}: server refused: {reason}")]
    Server {
        /// Stream or consumer.
        what: String,
        /// The server's answer.
        reason: String,
    },
}

/// One stream definition.
#[derive(Clone, Debug)]
pub struct StreamDefinition {
    /// Source file.
    pub path: PathBuf,
    /// Parsed configuration.
    pub config: stream::Config,
    raw: Map<String, Value>,
}

/// One durable pull consumer definition.
#[derive(Clone, Debug)]
pub struct ConsumerDefinition {
    /// Source file.
    pub path: PathBuf,
    /// Stream it reads.
    pub stream: String,
    /// Parsed configuration.
    pub config: pull::Config,
    raw: Map<String, Value>,
}

impl ConsumerDefinition {
    /// Returns the subjects it takes: its filter, or `>` (all of its stream) without one.
    pub fn filter(&self) -> &str {
        if self.config.filter_subject.is_empty() {
            ">"
        } else {
            &self.config.filter_subject
        }
    }

    /// Returns the durable name.
    pub fn name(&self) -> &str {
        self.config.durable_name.as_deref().unwrap_or_default()
    }
}

/// Everything under `nats/`.
#[derive(Clone, Debug, Default)]
pub struct Definitions {
    /// Streams, by file name order.
    pub streams: Vec<StreamDefinition>,
    /// Consumers, by stream then file name.
    pub consumers: Vec<ConsumerDefinition>,
}

/// What provisioning did to one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// It did not exist.
    Created,
    /// These keys differed and were updated.
    Updated(Vec<String>),
    /// It already matched.
    Unchanged,
}

fn read_object(path: &Path, allowed: &[&str]) -> Result<Map<String, Value>, ProvisionError> {
    let text = std::fs::read_to_string(path).map_err(|e| ProvisionError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|e| ProvisionError::Invalid {
        path: path.to_owned(),
        reason: format!("invalid json: {e}"),
    })?;
    let Value::Object(map) = value else {
        return Err(ProvisionError::Invalid {
            path: path.to_owned(),
            reason: "expected a json object".to_owned(),
        });
    };
    if let Some(key) = map.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(ProvisionError::Invalid {
            path: path.to_owned(),
            reason: format!(
                "key `{key}` is not supported by NATS 2.9 (the oldest server we target) or unknown"
            ),
        });
    }
    Ok(map)
}

fn json_files(dir: &Path) -> Result<Vec<PathBuf>, ProvisionError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ProvisionError::Read {
        path: dir.to_owned(),
        reason: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    Ok(files)
}

impl Definitions {
    /// Loads and validates `dir/streams/*.json` and `dir/consumers/<STREAM>/*.json`.
    pub fn load(dir: &Path) -> Result<Self, ProvisionError> {
        let mut definitions = Self::default();
        for path in json_files(&dir.join("streams"))? {
            let raw = read_object(&path, STREAM_KEYS)?;
            let invalid = |reason: String| ProvisionError::Invalid {
                path: path.clone(),
                reason,
            };
            let config: stream::Config = serde_json::from_value(Value::Object(raw.clone()))
                .map_err(|e| invalid(e.to_string()))?;
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            if config.name != stem {
                return Err(invalid(format!(
                    "stream name `{}` must match the file name `{stem}`",
                    config.name
                )));
            }
            // A stream that only sources others (FACTS) holds their subjects, not its own.
            if config.subjects.is_empty() && config.sources.as_ref().is_none_or(Vec::is_empty) {
                return Err(invalid(
                    "a stream must list its subjects, or the streams it sources".to_owned(),
                ));
            }
            definitions
                .streams
                .push(StreamDefinition { path, config, raw });
        }
        for stream in &definitions.streams {
            for source in stream.config.sources.iter().flatten() {
                if definitions.stream(&source.name).is_none() {
                    return Err(ProvisionError::Invalid {
                        path: stream.path.clone(),
                        reason: format!("it sources `{}`, which has no definition", source.name),
                    });
                }
            }
        }
        let consumers_dir = dir.join("consumers");
        if consumers_dir.exists() {
            let mut stream_dirs: Vec<PathBuf> = std::fs::read_dir(&consumers_dir)
                .map_err(|e| ProvisionError::Read {
                    path: consumers_dir.clone(),
                    reason: e.to_string(),
                })?
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.is_dir())
                .collect();
            stream_dirs.sort();
            for stream_dir in stream_dirs {
                let stream_name = stream_dir
                    .file_name()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_owned();
                for path in json_files(&stream_dir)? {
                    definitions.consumers.push(Self::load_consumer(
                        &definitions,
                        &stream_name,
                        path,
                    )?);
                }
            }
        }
        Ok(definitions)
    }

    fn load_consumer(
        &self,
        stream_name: &str,
        path: PathBuf,
    ) -> Result<ConsumerDefinition, ProvisionError> {
        let raw = read_object(&path, CONSUMER_KEYS)?;
        let invalid = |reason: String| ProvisionError::Invalid {
            path: path.clone(),
            reason,
        };
        let config: pull::Config = serde_json::from_value(Value::Object(raw.clone()))
            .map_err(|e| invalid(e.to_string()))?;
        let Some(stream) = self.stream(stream_name) else {
            return Err(invalid(format!(
                "stream `{stream_name}` has no definition in streams/"
            )));
        };
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if config.durable_name.as_deref() != Some(stem) {
            return Err(invalid(format!(
                "`durable_name` must be present and match the file name `{stem}`"
            )));
        }
        if config.ack_policy != async_nats::jetstream::consumer::AckPolicy::Explicit {
            return Err(invalid(
                "`ack_policy` must be `explicit`: stages ack after effects are durable".to_owned(),
            ));
        }
        let sourcing = stream.config.subjects.is_empty();
        if config.filter_subject.is_empty() && !sourcing {
            return Err(invalid(
                "`filter_subject` is required (one subject per consumer on NATS 2.9)".to_owned(),
            ));
        }
        // A consumer of a sourcing stream may take all of it (no filter); a filter must fall
        // inside the subjects the stream holds, its own or its sources'.
        let held: Vec<&String> = if sourcing {
            stream
                .config
                .sources
                .iter()
                .flatten()
                .filter_map(|source| self.stream(&source.name))
                .flat_map(|sourced| &sourced.config.subjects)
                .collect()
        } else {
            stream.config.subjects.iter().collect()
        };
        if !config.filter_subject.is_empty()
            && !held
                .iter()
                .any(|subject| super::subjects::covers(subject, &config.filter_subject))
        {
            return Err(invalid(format!(
                "`filter_subject` `{}` is outside stream `{stream_name}`'s subjects {:?}",
                config.filter_subject, held
            )));
        }
        if !config.backoff.is_empty()
            && config.max_deliver > 0
            && config.max_deliver <= config.backoff.len() as i64
        {
            return Err(invalid(
                "`max_deliver` must exceed the number of `backoff` steps".to_owned(),
            ));
        }
        Ok(ConsumerDefinition {
            path,
            stream: stream_name.to_owned(),
            config,
            raw,
        })
    }

    /// Returns true when `consumer` receives messages on `subject`: its filter matches, and
    /// its stream holds the subject (its own subjects, or those of the streams it sources).
    pub fn takes(&self, consumer: &ConsumerDefinition, subject: &str) -> bool {
        if !super::subjects::overlaps(consumer.filter(), subject) {
            return false;
        }
        let Some(stream) = self.stream(&consumer.stream) else {
            return false;
        };
        let held = |stream: &StreamDefinition| {
            stream
                .config
                .subjects
                .iter()
                .any(|held| super::subjects::overlaps(held, subject))
        };
        held(stream)
            || stream
                .config
                .sources
                .iter()
                .flatten()
                .filter_map(|source| self.stream(&source.name))
                .any(held)
    }

    /// Returns a stream definition by name.
    pub fn stream(&self, name: &str) -> Option<&StreamDefinition> {
        self.streams
            .iter()
            .find(|stream| stream.config.name == name)
    }

    /// Returns a consumer definition by stream and durable name.
    pub fn consumer(&self, stream: &str, name: &str) -> Option<&ConsumerDefinition> {
        self.consumers
            .iter()
            .find(|consumer| consumer.stream == stream && consumer.name() == name)
    }

    /// Returns the streams whose subjects cover `subject`.
    pub fn streams_covering(&self, subject: &str) -> Vec<&StreamDefinition> {
        self.streams
            .iter()
            .filter(|stream| {
                stream
                    .config
                    .subjects
                    .iter()
                    .any(|s| super::subjects::covers(s, subject))
            })
            .collect()
    }
}

/// Returns the keys of `raw` whose normalized value differs between desired and actual.
fn differing_keys<T: serde::Serialize>(
    raw: &Map<String, Value>,
    desired: &T,
    actual: &T,
) -> Vec<String> {
    let normalize = |config: &T| match serde_json::to_value(config) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let (desired, actual) = (normalize(desired), normalize(actual));
    raw.keys()
        .filter(|key| desired.get(*key) != actual.get(*key))
        .cloned()
        .collect()
}

/// Creates what is missing and updates what drifted; returns what happened to each object.
pub async fn provision(
    bus: &Bus,
    definitions: &Definitions,
) -> Result<BTreeMap<String, Change>, ProvisionError> {
    let js = bus.jetstream();
    let mut report = BTreeMap::new();
    for definition in &definitions.streams {
        let what = format!("stream {}", definition.config.name);
        let server = |reason: String| ProvisionError::Server {
            what: what.clone(),
            reason,
        };
        let change = match js.get_stream(&definition.config.name).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(|e| server(e.to_string()))?;
                let differing = differing_keys(&definition.raw, &definition.config, &info.config);
                if differing.is_empty() {
                    Change::Unchanged
                } else {
                    js.update_stream(&definition.config)
                        .await
                        .map_err(|e| server(e.to_string()))?;
                    Change::Updated(differing)
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    async_nats::jetstream::context::GetStreamErrorKind::JetStream(_)
                ) =>
            {
                // Not found (or another JetStream answer): try to create; a racing creator
                // makes this fail, and the next run reports it unchanged.
                js.create_stream(definition.config.clone())
                    .await
                    .map_err(|e| server(e.to_string()))?;
                Change::Created
            }
            Err(error) => return Err(server(error.to_string())),
        };
        report.insert(what, change);
    }
    for definition in &definitions.consumers {
        let what = format!("consumer {}/{}", definition.stream, definition.name());
        let server = |reason: String| ProvisionError::Server {
            what: what.clone(),
            reason,
        };
        let stream = js
            .get_stream(&definition.stream)
            .await
            .map_err(|e| server(e.to_string()))?;
        let change = match stream.consumer_info(definition.name()).await {
            Ok(info) => {
                let mut actual: pull::Config = serde_json::from_value(
                    serde_json::to_value(&info.config).map_err(|e| server(e.to_string()))?,
                )
                .map_err(|e| server(e.to_string()))?;
                actual.name = None;
                let mut desired = definition.config.clone();
                desired.name = None;
                let differing = differing_keys(&definition.raw, &desired, &actual);
                if differing.is_empty() {
                    Change::Unchanged
                } else {
                    stream
                        .create_consumer(definition.config.clone())
                        .await
                        .map_err(|e| server(e.to_string()))?;
                    Change::Updated(differing)
                }
            }
            Err(_) => {
                stream
                    .create_consumer(definition.config.clone())
                    .await
                    .map_err(|e| server(e.to_string()))?;
                Change::Created
            }
        };
        report.insert(what, change);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_nats_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("nats")
    }

    #[test]
    fn every_definition_in_the_repository_parses() {
        let definitions = Definitions::load(&project_nats_dir()).unwrap();
        assert!(definitions.stream("DLQ").is_some());
        assert!(!definitions.consumers.is_empty());
    }

    #[test]
    fn newer_server_keys_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("streams")).unwrap();
        std::fs::write(
            dir.path().join("streams/S.json"),
            r#"{"name":"S","subjects":["s.>"],"compression":"s2"}"#,
        )
        .unwrap();
        let error = Definitions::load(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("key `compression` is not supported by NATS 2.9"),
            "{error}"
        );
    }

    #[test]
    fn consumer_filter_must_be_inside_its_stream() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("streams")).unwrap();
        std::fs::create_dir_all(dir.path().join("consumers/S")).unwrap();
        std::fs::write(
            dir.path().join("streams/S.json"),
            r#"{"name":"S","subjects":["s.>"],"retention":"limits","storage":"file","discard":"old","num_replicas":1}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("consumers/S/c.json"),
            r#"{"durable_name":"c","deliver_policy":"all","ack_policy":"explicit","replay_policy":"instant","filter_subject":"other.>"}"#,
        )
        .unwrap();
        let error = Definitions::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("outside stream `S`"), "{error}");
    }
}
