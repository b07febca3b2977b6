//! The NATS JetStream bus: its contract lives here.
//!
//! - **Subjects** are built only in [`subjects`]: lowercase dot tokens, the tenant id as a token;
//!   streams are UPPERCASE.
//! - **Envelope** attributes travel as CloudEvents-style headers ([`envelope`]); payloads are
//!   MessagePack with named fields through one codec ([`codec`]).
//! - **Publishing** always sets a deterministic `Nats-Msg-Id` and awaits the PubAck
//!   ([`Bus::publish_all`]), so a republish after a crash is dropped by the duplicate window.
//! - **Consuming** goes through [`delivery::Delivery`]: ack only after effects are durable, NAK
//!   with delay to retry, TERM after dead-lettering, NAK when dropped unsettled.
//! - **Stages** run under [`runner`], which owns the outcome → ack mapping; [`outbox`] holds
//!   their declared outputs; [`dead_letter`] is the dead-letter stream's format and tooling;
//!   [`provision`] creates or verifies streams and consumers from `nats/`.

pub mod codec;
pub mod codec_json;
pub mod dead_letter;
pub mod delivery;
pub mod envelope;
pub mod outbox;
pub mod provision;
pub mod runner;
pub mod subjects;

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, context::PublishAckFuture};
use futures::future::try_join_all;

use self::envelope::BusMessage;

/// Oldest NATS server this build supports (Debian's package).
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 9);

/// A connection to NATS with its JetStream context.
#[derive(Clone, Debug)]
pub struct Bus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
}

/// A publish that did not get its PubAck.
#[derive(Debug, thiserror::Error)]
#[error("publish to `{subject}`: {reason}")]
pub struct PublishError {
    /// Subject of the failed message.
    pub subject: String,
    /// What went wrong.
    pub reason: String,
}

impl Bus {
    /// Connects, failing after `timeout` with a one-line error naming the server.
    pub async fn connect(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let options = async_nats::ConnectOptions::new()
            .connection_timeout(timeout)
            .name("caller");
        let client = tokio::time::timeout(timeout, options.connect(url))
            .await
            .map_err(|_| {
                anyhow::anyhow!("nats unreachable at `{url}`: no connection within {timeout:?}")
            })?
            .with_context(|| format!("nats unreachable at `{url}`"))?;
        let bus = Self::from_client(client);
        bus.check_server_version()?;
        Ok(bus)
    }

    /// Wraps an existing client.
    pub fn from_client(client: async_nats::Client) -> Self {
        let jetstream = jetstream::new(client.clone());
        Self { client, jetstream }
    }

    /// Returns the core NATS client (media plane, health).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Returns the JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// Returns true while the connection is up.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn check_server_version(&self) -> anyhow::Result<()> {
        let info = self.client.server_info();
        let mut parts = info
            .version
            .split(['.', '-'])
            .map(|p| p.parse::<u64>().unwrap_or(0));
        let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        anyhow::ensure!(
            found >= MIN_SERVER_VERSION,
            "nats server {} is older than {}.{}, the oldest this build supports",
            info.version,
            MIN_SERVER_VERSION.0,
            MIN_SERVER_VERSION.1
        );
        anyhow::ensure!(
            info.jetstream,
            "nats server at `{}` has JetStream disabled (start it with -js)",
            info.host
        );
        Ok(())
    }

    /// Sends one message without waiting for its PubAck; await the returned future for it.
    pub async fn send(&self, message: &BusMessage) -> Result<PublishAckFuture, PublishError> {
        let error = |reason: String| PublishError {
            subject: message.subject.clone(),
            reason,
        };
        debug_assert!(
            message.message_id().is_some(),
            "every bus message carries a Nats-Msg-Id"
        );
        self.jetstream
            .publish_with_headers(
                message.subject.clone(),
                message.header_map(),
                message.payload.clone().into(),
            )
            .await
            .map_err(|e| error(e.to_string()))
    }

    /// Publishes every message, pipelined, and returns once every PubAck has arrived.
    ///
    /// Returns how many were dropped as duplicates by the stream's window.
    pub async fn publish_all(&self, messages: &[BusMessage]) -> Result<usize, PublishError> {
        let mut pending = Vec::with_capacity(messages.len());
        for message in messages {
            pending.push(async move {
                let ack = self.send(message).await?;
                ack.await.map_err(|e| PublishError {
                    subject: message.subject.clone(),
                    reason: e.to_string(),
                })
            });
        }
        let acks = try_join_all(pending).await?;
        Ok(acks.iter().filter(|ack| ack.duplicate).count())
    }
}
