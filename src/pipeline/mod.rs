//! `pipelines/*.yaml`: the declared topology, compiled against the stage registry and `nats/`.
//!
//! A pipeline file lists its sources (where events enter from outside: ingress, CLI,
//! scheduler) and its stages, each with its consumer, declared outputs, concurrency and
//! dead-letter subject. [`compile`] refuses an inconsistent graph with messages that
//! name the file, the stage and the problem. No business logic lives in these files.

mod check;
mod graph;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use self::check::compile;
pub use self::graph::mermaid;

/// One `pipelines/<name>.yaml` file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Pipeline name (matches the file stem).
    pub name: String,
    /// What the pipeline is for.
    #[serde(default)]
    pub description: String,
    /// Where events enter the pipeline from outside the bus.
    #[serde(default)]
    pub sources: Vec<SourceEntry>,
    /// The stages, in flow order.
    pub stages: Vec<StageEntry>,
}

/// An entry point of events (ingress, CLI, scheduler).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    /// Source name, e.g. `ingress`.
    pub name: String,
    /// Event types it publishes.
    pub emits: Vec<String>,
}

/// A stage as declared in a pipeline file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageEntry {
    /// Stage name (registry key, consumer, metric label).
    pub name: String,
    /// `<STREAM>/<durable>`: `nats/consumers/<STREAM>/<durable>.json`.
    pub consumer: String,
    /// Handlers in flight per worker process.
    pub concurrency: usize,
    /// Event types the stage may emit in this pipeline.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Dead-letter subject, `dlq.<stage>`.
    pub dead_letter: String,
}

/// A stage ready to run: everything the runner needs, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageSpec {
    /// Stage name.
    pub name: String,
    /// Pipeline that declares it.
    pub pipeline: String,
    /// Stream the consumer reads.
    pub stream: String,
    /// Durable consumer name (equal to `name`).
    pub consumer: String,
    /// Handlers in flight per process.
    pub concurrency: usize,
    /// Declared output event types.
    pub outputs: Vec<String>,
    /// Dead-letter subject.
    pub dead_letter: String,
}

/// A pipeline file with its path, for error messages.
#[derive(Clone, Debug)]
pub struct LoadedPipeline {
    /// Source file.
    pub path: PathBuf,
    /// Parsed content.
    pub file: PipelineFile,
}

/// Every pipeline, compiled.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// The pipelines as loaded.
    pub pipelines: Vec<LoadedPipeline>,
    /// Every stage, checked, in file then flow order.
    pub stages: Vec<StageSpec>,
}

impl Topology {
    /// Returns the spec of one stage.
    pub fn stage(&self, name: &str) -> Option<&StageSpec> {
        self.stages.iter().find(|stage| stage.name == name)
    }
}

/// Reads every `*.yaml` directly under `dir` (behaviour tests in subfolders are not topology).
pub fn load(dir: &Path) -> anyhow::Result<Vec<LoadedPipeline>> {
    let entries = std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    paths.sort();
    let mut pipelines = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let file: PipelineFile =
            serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        pipelines.push(LoadedPipeline { path, file });
    }
    anyhow::ensure!(
        !pipelines.is_empty(),
        "{}: no pipeline files (*.yaml)",
        dir.display()
    );
    Ok(pipelines)
}
