//! The pipeline compiler: every rule that makes a topology consistent.

use std::collections::BTreeSet;

use super::{LoadedPipeline, StageSpec, Topology};
use crate::bus::provision::Definitions;
use crate::bus::subjects;
use crate::events;
use crate::stages;

/// Checks `pipelines` against the stage registry and the `nats/` definitions.
///
/// Returns every problem found, each naming its file and stage, or the runnable topology.
pub fn compile(
    pipelines: Vec<LoadedPipeline>,
    definitions: &Definitions,
) -> Result<Topology, Vec<String>> {
    let mut problems = Vec::new();
    let mut stages_out = Vec::new();
    let mut seen = BTreeSet::new();

    // Every subject some source or stage emits on, across all pipelines.
    let mut emitted: Vec<(String, String)> = Vec::new();
    for pipeline in &pipelines {
        let file = pipeline.path.display();
        for source in &pipeline.file.sources {
            for event_type in &source.emits {
                match events::find(event_type) {
                    Some(spec) => emitted.push((event_type.clone(), (spec.subject_pattern)())),
                    None => problems.push(format!(
                        "{file}: source `{}` emits unknown event type `{event_type}`",
                        source.name
                    )),
                }
            }
        }
        for stage in &pipeline.file.stages {
            for event_type in &stage.outputs {
                if let Some(spec) = events::find(event_type) {
                    emitted.push((event_type.clone(), (spec.subject_pattern)()));
                }
            }
        }
    }

    for pipeline in &pipelines {
        let file = pipeline.path.display();
        let stem = pipeline
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if pipeline.file.name != stem {
            problems.push(format!(
                "{file}: pipeline name `{}` must match the file name `{stem}`",
                pipeline.file.name
            ));
        }
        for entry in &pipeline.file.stages {
            let name = &entry.name;
            let at = format!("{file}: stage `{name}`");
            if !seen.insert(name.clone()) {
                problems.push(format!("{at} is declared twice"));
                continue;
            }
            let Some(descriptor) = stages::find(name) else {
                let known: Vec<&str> = stages::registry().iter().map(|s| s.name).collect();
                problems.push(format!(
                    "{at} is not a stage of this build (known: {})",
                    known.join(", ")
                ));
                continue;
            };
            if entry.concurrency == 0 {
                problems.push(format!("{at}: `concurrency` must be at least 1"));
            }
            let code_outputs: Vec<&str> = (descriptor.outputs)()
                .iter()
                .map(|s| s.event_type)
                .collect();
            for output in &entry.outputs {
                if !code_outputs.contains(&output.as_str()) {
                    problems.push(format!(
                        "{at}: output `{output}` is undeclared by the stage (it may emit: {})",
                        if code_outputs.is_empty() {
                            "nothing".to_owned()
                        } else {
                            code_outputs.join(", ")
                        }
                    ));
                    continue;
                }
                if let Some(spec) = events::find(output) {
                    let subject = (spec.subject_pattern)();
                    if definitions.streams_covering(&subject).is_empty() {
                        problems.push(format!("{at}: output `{output}` (`{subject}`) is stored by no stream in nats/streams"));
                    }
                }
            }
            let expected_dead_letter = subjects::dead_letter(name);
            if entry.dead_letter != expected_dead_letter {
                problems.push(format!(
                    "{at}: `dead_letter` must be `{expected_dead_letter}`"
                ));
            } else if definitions.streams_covering(&entry.dead_letter).is_empty() {
                problems.push(format!(
                    "{at}: dead-letter subject `{}` is stored by no stream",
                    entry.dead_letter
                ));
            }
            let Some((stream, durable)) = entry.consumer.split_once('/') else {
                problems.push(format!(
                    "{at}: `consumer` must be `<STREAM>/<durable>`, got `{}`",
                    entry.consumer
                ));
                continue;
            };
            if durable != name {
                problems.push(format!(
                    "{at}: its consumer must be named after it (`{stream}/{name}`), not `{durable}`"
                ));
            }
            let Some(consumer) = definitions.consumer(stream, durable) else {
                problems.push(format!(
                    "{at}: consumer `{}` has no definition nats/consumers/{stream}/{durable}.json",
                    entry.consumer
                ));
                continue;
            };
            let filter = consumer.filter();
            let input = (descriptor.input)();
            let input_subject = (input.subject_pattern)();
            if !subjects::overlaps(filter, &input_subject) {
                problems.push(format!(
                    "{at}: consumer filter `{filter}` does not carry its input `{}` (`{input_subject}`)",
                    input.event_type
                ));
            }
            let fed = emitted
                .iter()
                .any(|(_, subject)| definitions.takes(consumer, subject));
            if !fed {
                problems.push(format!(
                    "{at}: consumer filter `{filter}` is fed by no source or stage of any pipeline"
                ));
            }
            let max_ack_pending = consumer.config.max_ack_pending;
            if max_ack_pending > 0 && entry.concurrency as i64 > max_ack_pending {
                problems.push(format!(
                    "{at}: `concurrency` {} exceeds the consumer's `max_ack_pending` {max_ack_pending}",
                    entry.concurrency
                ));
            }
            stages_out.push(StageSpec {
                name: name.clone(),
                pipeline: pipeline.file.name.clone(),
                stream: stream.to_owned(),
                consumer: durable.to_owned(),
                concurrency: entry.concurrency,
                outputs: entry.outputs.clone(),
                dead_letter: entry.dead_letter.clone(),
            });
        }
    }
    if problems.is_empty() {
        Ok(Topology {
            pipelines,
            stages: stages_out,
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::pipeline::{PipelineFile, load};

    fn project() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn definitions() -> Definitions {
        Definitions::load(&project().join("nats")).unwrap()
    }

    fn pipeline(yaml: &str) -> Vec<LoadedPipeline> {
        let file: PipelineFile = serde_yaml::from_str(yaml).unwrap();
        vec![LoadedPipeline {
            path: Path::new("pipelines").join(format!("{}.yaml", file.name)),
            file,
        }]
    }

    const GOOD: &str = "
name: canary
sources: [{name: cli, emits: [canary.requested]}]
stages:
  - {name: canary, consumer: CANARY/canary, concurrency: 4, outputs: [canary.answered], dead_letter: dlq.canary}
";

    #[test]
    fn the_repository_pipelines_compile() {
        let topology =
            compile(load(&project().join("pipelines")).unwrap(), &definitions()).unwrap();
        assert!(topology.stage("canary").is_some());
    }

    #[test]
    fn a_consistent_pipeline_compiles() {
        let topology = compile(pipeline(GOOD), &definitions()).unwrap();
        assert_eq!(topology.stages[0].stream, "CANARY");
    }

    #[test]
    fn unknown_stage_is_named() {
        let yaml = GOOD.replace("name: canary, consumer", "name: dialer, consumer");
        let problems = compile(pipeline(&yaml), &definitions()).unwrap_err();
        assert!(
            problems[0].contains("stage `dialer` is not a stage of this build"),
            "{problems:?}"
        );
    }

    #[test]
    fn undeclared_output_is_named() {
        let yaml = GOOD.replace("outputs: [canary.answered]", "outputs: [canary.requested]");
        let problems = compile(pipeline(&yaml), &definitions()).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("output `canary.requested` is undeclared by the stage")),
            "{problems:?}"
        );
    }

    #[test]
    fn unfed_consumer_is_named() {
        let yaml = GOOD.replace(
            "sources: [{name: cli, emits: [canary.requested]}]",
            "sources: []",
        );
        let problems = compile(pipeline(&yaml), &definitions()).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("is fed by no source or stage")),
            "{problems:?}"
        );
    }

    #[test]
    fn missing_consumer_and_wrong_dead_letter_are_named() {
        let yaml = GOOD
            .replace("CANARY/canary", "CANARY/other")
            .replace("dlq.canary", "dlq.x");
        let problems = compile(pipeline(&yaml), &definitions()).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`dead_letter` must be `dlq.canary`")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("must be named after it")),
            "{problems:?}"
        );
    }
}
