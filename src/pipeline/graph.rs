//! `caller pipeline graph`: the topology as a Mermaid flowchart.

use std::fmt::Write as _;

use super::Topology;
use crate::bus::provision::Definitions;
use crate::bus::subjects;
use crate::events;

/// Renders every pipeline: sources and stages as nodes, event types as edges, outputs that no
/// stage consumes ending in the stream that stores them, and each stage's dead letters.
pub fn mermaid(topology: &Topology, definitions: &Definitions) -> String {
    let mut out = String::from("flowchart LR\n");
    let consumers_of = |subject: &str| -> Vec<&str> {
        topology
            .stages
            .iter()
            .filter(|stage| {
                definitions
                    .consumer(&stage.stream, &stage.consumer)
                    .is_some_and(|c| definitions.takes(c, subject))
            })
            .map(|stage| stage.name.as_str())
            .collect()
    };
    let edge = |out: &mut String, from: &str, event_type: &str| {
        let Some(spec) = events::find(event_type) else {
            return;
        };
        let subject = (spec.subject_pattern)();
        let targets = consumers_of(&subject);
        if targets.is_empty() {
            for stream in definitions.streams_covering(&subject) {
                let node = format!("stream_{}", stream.config.name);
                writeln!(
                    out,
                    "  {from} -->|{event_type}| {node}[({})]",
                    stream.config.name
                )
                .expect("writing to a String never fails");
            }
        }
        for target in targets {
            writeln!(out, "  {from} -->|{event_type}| stage_{target}")
                .expect("writing to a String never fails");
        }
    };
    for pipeline in &topology.pipelines {
        writeln!(
            out,
            "  subgraph pipeline_{0}[pipeline {0}]",
            pipeline.file.name
        )
        .expect("writing to a String never fails");
        for source in &pipeline.file.sources {
            writeln!(out, "  source_{0}([{0}])", source.name)
                .expect("writing to a String never fails");
        }
        for stage in topology
            .stages
            .iter()
            .filter(|s| s.pipeline == pipeline.file.name)
        {
            writeln!(out, "  stage_{0}[{0}]", stage.name).expect("writing to a String never fails");
        }
        writeln!(out, "  end").expect("writing to a String never fails");
        for source in &pipeline.file.sources {
            for event_type in &source.emits {
                edge(&mut out, &format!("source_{}", source.name), event_type);
            }
        }
        for stage in topology
            .stages
            .iter()
            .filter(|s| s.pipeline == pipeline.file.name)
        {
            for event_type in &stage.outputs {
                edge(&mut out, &format!("stage_{}", stage.name), event_type);
            }
            writeln!(
                out,
                "  stage_{} -.->|dead letters| stream_{}[({})]",
                stage.name,
                subjects::DEAD_LETTER_STREAM,
                subjects::DEAD_LETTER_STREAM
            )
            .expect("writing to a String never fails");
        }
    }
    out
}
