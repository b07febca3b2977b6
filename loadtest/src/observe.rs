//! Watches the pipeline from outside: a core-NATS subscription to `leads.>`, `calls.>` and
//! `dlq.>` records each event's envelope headers (`ce-id`, `ce-type`, `ce-source`,
//! `ce-time`, `ce-causationid`). Core NATS sees every publish to the streams' subjects
//! without a consumer of its own, so watching costs JetStream nothing.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use caller::bus::envelope::Meta;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use tokio::time::Instant;

/// One event as seen on the bus.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) source: String,
    pub(crate) time: DateTime<Utc>,
    pub(crate) causation: Option<String>,
    pub(crate) subject: String,
    pub(crate) received: Instant,
}

/// The running watcher.
pub(crate) struct Watcher {
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    /// Subscribes before any traffic, so no event is missed.
    pub(crate) async fn start(nats_url: &str) -> anyhow::Result<Self> {
        let client = async_nats::connect(nats_url)
            .await
            .context("connect the watcher to nats")?;
        let mut subscriptions = Vec::new();
        for subject in ["leads.>", "calls.>", "dlq.>"] {
            subscriptions.push(client.subscribe(subject).await?);
        }
        client.flush().await?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            let mut messages = futures::stream::select_all(subscriptions);
            while let Some(message) = messages.next().await {
                // The project's own envelope reader: a message without one is not an event.
                let Ok(meta) = Meta::from_headers(message.headers.as_ref()) else {
                    continue;
                };
                let event = Seen {
                    id: meta.event_id.to_string(),
                    kind: meta.event_type,
                    source: meta.source,
                    time: meta.occurred_at,
                    causation: meta.causation_id.map(|cause| cause.to_string()),
                    subject: message.subject.to_string(),
                    received: Instant::now(),
                };
                sink.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(event);
            }
        });
        Ok(Self { seen, task })
    }

    /// Stops watching and returns everything seen.
    pub(crate) fn finish(self) -> Vec<Seen> {
        self.task.abort();
        std::mem::take(
            &mut *self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}
