//! One conversation on one worker: caller audio from `media.<call>.in` to the voice engine,
//! agent audio to `media.<call>.out`, barge-in as `clear` on `media.<call>.ctl`, transcript
//! turns and tool calls to the database, reconnects with context when the engine drops.
//!
//! The loop never awaits the database or a tool: writes go to a per-session writer task (in
//! order), tools run in tasks of their own, so a slow query or CRM never delays a frame.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::Deps;
use super::context::SessionContext;
use super::tools::{Action, CallScope, ToolAnswer};
use crate::bus::subjects;
use crate::events::conversation::ConversationEnd;
use crate::ids::{AttemptId, CallId, TenantId};
use crate::media::frame::{MediaFrame, Sequenced};
use crate::providers::telephony::{CallInstructions, Telephony as _};
use crate::providers::twilio::Twilio;
use crate::store::conversations::{self, Claimed, Holder, ToolRecord, WriteError};
use crate::voice::engine::{
    EndReason, EngineCommand, EngineError, EngineEvent, EngineSession, PriorTurn, TurnRole,
};

/// How a session stopped on this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The conversation is over.
    Ended(ConversationEnd),
    /// Another worker owns it now (this one stalled past its lease).
    LeaseLost,
    /// This process is shutting down; the lease was released for another worker.
    Released,
}

/// How one engine session ended, as the session loop sees it.
enum Bridged {
    Ended(ConversationEnd),
    EngineDropped(String),
    LeaseLost,
    Shutdown,
}

/// A database write of the session, done in order by its writer task.
enum Write {
    Turn(TurnRole, String),
    EngineId(String),
    Tool {
        tool_call_id: String,
        name: String,
        parameters: serde_json::Value,
        answer: ToolAnswer,
        latency_ms: i32,
        started_at: chrono::DateTime<Utc>,
    },
}

/// The ids of the session.
#[derive(Clone, Copy, Debug)]
struct Ids {
    tenant: TenantId,
    call: CallId,
    attempt: AttemptId,
}

/// A finished tool call, back from its task.
struct ToolDone {
    tool_call_id: String,
    name: String,
    parameters: serde_json::Value,
    answer: ToolAnswer,
    latency_ms: i32,
    started_at: chrono::DateTime<Utc>,
}

/// Publishes frames on the call's media subjects with sequence numbers that keep rising
/// across take-overs (the epoch is the high half), so the gateway can tell old from new.
struct MediaOut {
    client: async_nats::Client,
    out_subject: String,
    ctl_subject: String,
    out_seq: u64,
    ctl_seq: u64,
}

impl MediaOut {
    fn new(client: async_nats::Client, call: &CallId, epoch: i32) -> Self {
        let base = u64::try_from(epoch).unwrap_or(0) << 32;
        Self {
            client,
            out_subject: subjects::media_out(call),
            ctl_subject: subjects::media_ctl(call),
            out_seq: base,
            ctl_seq: base,
        }
    }

    async fn audio(&mut self, audio: Bytes) {
        self.out_seq += 1;
        let frame = Sequenced {
            seq: self.out_seq,
            frame: MediaFrame::Audio(audio),
        };
        if let Err(error) = self
            .client
            .publish(self.out_subject.clone(), frame.encode())
            .await
        {
            tracing::warn!(%error, "agent audio not published");
        }
    }

    async fn control(&mut self, frame: MediaFrame) {
        self.ctl_seq += 1;
        let frame = Sequenced {
            seq: self.ctl_seq,
            frame,
        };
        if let Err(error) = self
            .client
            .publish(self.ctl_subject.clone(), frame.encode())
            .await
        {
            tracing::warn!(%error, "media control not published");
        }
        // Control must not wait behind buffered audio in the client's write buffer.
        if let Err(error) = self.client.flush().await {
            tracing::warn!(%error, "media control not flushed");
        }
    }
}

/// Runs a claimed session until it ends, its lease is lost or the process shuts down.
pub async fn run(deps: Arc<Deps>, claimed: Claimed, lost: CancellationToken) -> Stopped {
    let ids = Ids {
        tenant: TenantId::from_uuid(claimed.tenant_id),
        call: CallId::from_uuid(claimed.call_id),
        attempt: AttemptId::from_uuid(claimed.attempt_id),
    };
    let span = tracing::info_span!(
        "session",
        tenant_id = %ids.tenant,
        call_id = %ids.call,
        attempt_id = %ids.attempt,
        epoch = claimed.epoch
    );
    run_claimed(deps, ids, claimed, lost).instrument(span).await
}

async fn run_claimed(
    deps: Arc<Deps>,
    ids: Ids,
    claimed: Claimed,
    lost: CancellationToken,
) -> Stopped {
    let holder = Holder {
        owner: deps.owner.clone(),
        epoch: claimed.epoch,
    };
    let context: SessionContext = match serde_json::from_value(claimed.context.clone()) {
        Ok(context) => context,
        Err(error) => {
            tracing::error!(%error, "stored session context unreadable; ending the conversation");
            return finish(&deps, ids, &holder, ConversationEnd::EngineFailed).await;
        }
    };
    let context = Arc::new(context);
    let inbound = match deps
        .bus
        .client()
        .subscribe(subjects::media_in(&ids.call))
        .await
    {
        Ok(inbound) => inbound,
        Err(error) => {
            tracing::warn!(%error, "cannot subscribe to caller audio; releasing the session");
            return release(&deps, ids, &holder).await;
        }
    };
    let (writes, writer) = spawn_writer(deps.clone(), ids, holder.clone(), lost.clone());
    let mut session = Session {
        deps: deps.clone(),
        ids,
        context,
        provider_call_id: claimed.provider_call_id.clone(),
        inbound,
        media: MediaOut::new(deps.bus.client().clone(), &ids.call, claimed.epoch),
        writes,
        lost,
        transcript: Vec::new(),
        resumed: claimed.epoch > 1,
    };
    if session.resumed {
        session.transcript = load_transcript(&deps, ids).await;
        tracing::info!(
            turns = session.transcript.len(),
            "resuming a conversation another worker held"
        );
    }
    let stopped = session.converse().await;
    drop(session);
    // Every queued write lands before the end is recorded.
    if writer.await.is_err() {
        tracing::error!("the session's writer failed");
    }
    match stopped {
        Stopped::Ended(end) => finish(&deps, ids, &holder, end).await,
        Stopped::Released => release(&deps, ids, &holder).await,
        Stopped::LeaseLost => Stopped::LeaseLost,
    }
}

struct Session {
    deps: Arc<Deps>,
    ids: Ids,
    context: Arc<SessionContext>,
    provider_call_id: String,
    inbound: async_nats::Subscriber,
    media: MediaOut,
    writes: mpsc::UnboundedSender<Write>,
    lost: CancellationToken,
    /// The transcript as this worker heard it (after what it loaded on take-over).
    transcript: Vec<PriorTurn>,
    /// True once the conversation has been interrupted (take-over or engine drop).
    resumed: bool,
}

impl Session {
    async fn converse(&mut self) -> Stopped {
        let deps = self.deps.clone();
        let settings = &deps.settings;
        let mut failures = 0_u32;
        loop {
            let prior = if self.resumed {
                self.transcript.clone()
            } else {
                Vec::new()
            };
            let request = self.context.start_request(
                (self.ids.tenant, self.ids.call, self.ids.attempt),
                prior,
                &settings.resume_line,
            );
            let started = match self.deps.engine(self.ids.tenant).await {
                Ok(engine) => engine.start(request).await,
                Err(error) => Err(EngineError::Refused(error)),
            };
            let reason = match started {
                Ok(engine_session) => match self.bridge(engine_session).await {
                    Bridged::Ended(end) => return Stopped::Ended(end),
                    Bridged::LeaseLost => return Stopped::LeaseLost,
                    Bridged::Shutdown => return Stopped::Released,
                    Bridged::EngineDropped(reason) => reason,
                },
                Err(EngineError::Refused(reason)) => {
                    tracing::error!(reason, "voice engine refused the session");
                    self.goodbye().await;
                    return Stopped::Ended(ConversationEnd::EngineFailed);
                }
                Err(EngineError::Unavailable(reason)) => reason,
            };
            failures += 1;
            if failures > settings.engine_reconnects {
                tracing::error!(
                    reason,
                    failures,
                    "voice engine keeps failing; saying goodbye"
                );
                self.goodbye().await;
                return Stopped::Ended(ConversationEnd::EngineFailed);
            }
            tracing::warn!(
                reason,
                failures,
                "voice engine dropped; reconnecting with context"
            );
            self.resumed = true;
            let backoff = Duration::from_millis(200 * u64::from(failures));
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = self.lost.cancelled() => return Stopped::LeaseLost,
                () = self.deps.shutdown.cancelled() => return Stopped::Released,
            }
        }
    }

    /// Bridges one engine session.
    async fn bridge(&mut self, engine: EngineSession) -> Bridged {
        let EngineSession {
            commands,
            mut events,
        } = engine;
        let (tool_done_tx, mut tool_done) = mpsc::channel::<ToolDone>(16);
        let media_timeout = Duration::from_millis(self.deps.settings.media_timeout_ms);
        let mut last_inbound = Instant::now();
        let mut ending: Option<ConversationEnd> = None;
        loop {
            tokio::select! {
                biased;
                () = self.lost.cancelled() => return Bridged::LeaseLost,
                () = self.deps.shutdown.cancelled() => return Bridged::Shutdown,
                event = events.recv() => {
                    let Some(event) = event else {
                        return ending.map_or_else(
                            || Bridged::EngineDropped("engine events ended".to_owned()),
                            Bridged::Ended,
                        );
                    };
                    match event {
                        EngineEvent::Started { conversation_id } => {
                            self.write(Write::EngineId(conversation_id));
                        }
                        EngineEvent::Audio(audio) => self.media.audio(audio).await,
                        EngineEvent::Interruption => self.media.control(MediaFrame::Clear).await,
                        EngineEvent::AgentResponse(text) => self.turn(TurnRole::Agent, text),
                        EngineEvent::UserTranscript(text) => self.turn(TurnRole::User, text),
                        EngineEvent::ToolCall { tool_call_id, name, parameters } => {
                            self.spawn_tool(tool_call_id, name, parameters, tool_done_tx.clone());
                        }
                        EngineEvent::Ended(EndReason::AgentEnded) => {
                            self.media.control(MediaFrame::Hangup).await;
                            return Bridged::Ended(ConversationEnd::AgentEnded);
                        }
                        EngineEvent::Ended(EndReason::Requested) => {
                            return Bridged::Ended(ending.unwrap_or(ConversationEnd::AgentEnded));
                        }
                        EngineEvent::Ended(EndReason::Failed { kind, message }) => {
                            if let Some(end) = ending {
                                return Bridged::Ended(end);
                            }
                            return Bridged::EngineDropped(format!("{kind}: {message}"));
                        }
                        EngineEvent::Ended(EndReason::Disconnected(reason)) => {
                            if let Some(end) = ending {
                                return Bridged::Ended(end);
                            }
                            return Bridged::EngineDropped(reason);
                        }
                    }
                }
                done = tool_done.recv() => {
                    let Some(done) = done else { continue };
                    let command = EngineCommand::ToolResult {
                        tool_call_id: done.tool_call_id.clone(),
                        result: done.answer.result.clone(),
                        is_error: done.answer.is_error,
                    };
                    let action = done.answer.action.clone();
                    self.write(Write::Tool {
                        tool_call_id: done.tool_call_id,
                        name: done.name,
                        parameters: done.parameters,
                        answer: done.answer,
                        latency_ms: done.latency_ms,
                        started_at: done.started_at,
                    });
                    if commands.send(command).await.is_err() {
                        return Bridged::EngineDropped("engine commands closed".to_owned());
                    }
                    match action {
                        Action::Continue => {}
                        Action::EndCall => {
                            // The agent's last words are queued at the gateway; it hangs up
                            // once they have played.
                            self.media.control(MediaFrame::Hangup).await;
                            ending = Some(ConversationEnd::AgentEnded);
                            let _closed = commands.send(EngineCommand::End).await;
                        }
                        Action::Transferred => {
                            let _closed = commands.send(EngineCommand::End).await;
                            return Bridged::Ended(ConversationEnd::Transferred);
                        }
                    }
                }
                message = self.inbound.next() => {
                    let Some(message) = message else {
                        return Bridged::EngineDropped("caller audio subscription closed".to_owned());
                    };
                    last_inbound = Instant::now();
                    match Sequenced::decode(&message.payload).map(|sequenced| sequenced.frame) {
                        Ok(MediaFrame::Audio(audio)) => {
                            // Late audio is worse than lost audio: never wait for room.
                            if let Err(mpsc::error::TrySendError::Closed(_)) =
                                commands.try_send(EngineCommand::Audio(audio))
                            {
                                return Bridged::EngineDropped("engine commands closed".to_owned());
                            }
                        }
                        Ok(MediaFrame::Stopped) => {
                            let _closed = commands.send(EngineCommand::End).await;
                            return Bridged::Ended(ending.unwrap_or(ConversationEnd::CallerHungUp));
                        }
                        Ok(MediaFrame::Dtmf(digit)) => {
                            let update = format!("The caller pressed the key {digit}.");
                            let _full = commands.try_send(EngineCommand::ContextualUpdate(update));
                        }
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "malformed caller media frame skipped"),
                    }
                }
                () = tokio::time::sleep_until(last_inbound + media_timeout) => {
                    let _closed = commands.send(EngineCommand::End).await;
                    tracing::warn!("no caller audio for too long; ending the conversation");
                    return Bridged::Ended(ending.unwrap_or(ConversationEnd::MediaLost));
                }
            }
        }
    }

    fn write(&self, write: Write) {
        // The writer only stops after the session does; a send error cannot happen before.
        let _closed = self.writes.send(write);
    }

    fn turn(&mut self, role: TurnRole, text: String) {
        self.transcript.push(PriorTurn {
            role,
            text: text.clone(),
        });
        self.write(Write::Turn(role, text));
    }

    fn spawn_tool(
        &self,
        tool_call_id: String,
        name: String,
        parameters: serde_json::Value,
        done: mpsc::Sender<ToolDone>,
    ) {
        let tools = self.deps.tools.clone();
        let scope = CallScope {
            tenant: self.ids.tenant,
            call: self.ids.call,
            attempt: self.ids.attempt,
            provider_call_id: self.provider_call_id.clone(),
            context: self.context.clone(),
        };
        tokio::spawn(async move {
            let started_at = Utc::now();
            let clock = Instant::now();
            let answer = tools.run(&scope, &tool_call_id, &name, &parameters).await;
            let latency_ms = i32::try_from(clock.elapsed().as_millis()).unwrap_or(i32::MAX);
            tracing::info!(
                tool = name,
                latency_ms,
                is_error = answer.is_error,
                "agent tool ran"
            );
            let _session_gone = done
                .send(ToolDone {
                    tool_call_id,
                    name,
                    parameters,
                    answer,
                    latency_ms,
                    started_at,
                })
                .await;
        });
    }

    /// Has the telephony provider say the goodbye and hang up (the engine cannot speak).
    async fn goodbye(&mut self) {
        let twiml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>{}</Say><Hangup/></Response>"#,
            crate::calls::twiml::escape(&self.deps.settings.goodbye)
        );
        let Ok(Some(snapshot)) = self.deps.directory.tenant(self.ids.tenant).await else {
            return;
        };
        match Twilio::for_tenant(&snapshot, self.deps.http.clone()) {
            Ok(twilio) => {
                if let Err(error) = twilio
                    .redirect(&self.provider_call_id, &CallInstructions::Twiml(twiml))
                    .await
                {
                    tracing::error!(%error, "goodbye not delivered; hanging up through the stream");
                    self.media.control(MediaFrame::Hangup).await;
                }
            }
            Err(missing) => {
                tracing::error!(missing, "no telephony account for the goodbye");
            }
        }
    }
}

async fn load_transcript(deps: &Deps, ids: Ids) -> Vec<PriorTurn> {
    let turns = async {
        let mut tx = deps.store.begin_tenant(ids.tenant).await?;
        let turns = conversations::turns(&mut tx, ids.attempt).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(turns)
    };
    match turns.await {
        Ok(turns) => turns
            .into_iter()
            .map(|(role, text)| PriorTurn {
                role: if role == "agent" {
                    TurnRole::Agent
                } else {
                    TurnRole::User
                },
                text,
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "transcript so far unreadable; resuming without it");
            Vec::new()
        }
    }
}

/// Writes a session's turns, tool calls and engine ids in order; a fenced write means the
/// lease moved, and cancels `lost`.
fn spawn_writer(
    deps: Arc<Deps>,
    ids: Ids,
    holder: Holder,
    lost: CancellationToken,
) -> (mpsc::UnboundedSender<Write>, tokio::task::JoinHandle<()>) {
    let (sender, mut writes) = mpsc::unbounded_channel::<Write>();
    let handle = tokio::spawn(async move {
        while let Some(write) = writes.recv().await {
            let mut attempts = 0;
            loop {
                attempts += 1;
                match apply(&deps, ids, &holder, &write).await {
                    Ok(()) => break,
                    Err(WriteError::Fenced) => {
                        lost.cancel();
                        return;
                    }
                    Err(WriteError::Database(error)) if attempts < 5 => {
                        tracing::warn!(%error, attempts, "conversation write failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100 * attempts)).await;
                    }
                    Err(WriteError::Database(error)) => {
                        tracing::error!(%error, "conversation write failed; dropped");
                        break;
                    }
                }
            }
        }
    });
    (sender, handle)
}

async fn apply(deps: &Deps, ids: Ids, holder: &Holder, write: &Write) -> Result<(), WriteError> {
    let mut tx = deps.store.begin_tenant(ids.tenant).await?;
    match write {
        Write::Turn(role, text) => {
            conversations::add_turn(&mut tx, ids.attempt, holder, role.as_str(), text).await?;
        }
        Write::EngineId(id) => {
            conversations::add_engine_id(&mut tx, ids.attempt, holder, id).await?
        }
        Write::Tool {
            tool_call_id,
            name,
            parameters,
            answer,
            latency_ms,
            started_at,
        } => {
            conversations::add_tool_call(
                &mut tx,
                ids.attempt,
                holder,
                &ToolRecord {
                    tool_call_id,
                    name,
                    parameters,
                    result: &answer.result,
                    is_error: answer.is_error,
                    latency_ms: *latency_ms,
                    started_at: *started_at,
                },
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Records the end and publishes `conversation.ended`.
async fn finish(deps: &Deps, ids: Ids, holder: &Holder, end: ConversationEnd) -> Stopped {
    let ended = async {
        let mut tx = deps.store.begin_tenant(ids.tenant).await?;
        let ended = conversations::end(&mut tx, ids.attempt, holder, end_name(end)).await?;
        tx.commit().await?;
        Ok::<_, WriteError>(ended)
    };
    match ended.await {
        Ok(ended) => {
            // A failed publish is retried by the supervisor's relay of unpublished ends.
            if let Err(error) = super::relay::publish_ended(deps, &ended).await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "conversation.ended not published yet"
                );
            }
            tracing::info!(end = end_name(end), "conversation ended");
            Stopped::Ended(end)
        }
        Err(WriteError::Fenced) => Stopped::LeaseLost,
        Err(WriteError::Database(error)) => {
            // The lease runs out and another worker takes the session over; it will find the
            // caller gone and end it then.
            tracing::error!(%error, "conversation end not recorded");
            Stopped::LeaseLost
        }
    }
}

async fn release(deps: &Deps, ids: Ids, holder: &Holder) -> Stopped {
    let released = async {
        let mut tx = deps.store.begin_tenant(ids.tenant).await?;
        conversations::release(&mut tx, ids.attempt, holder).await?;
        tx.commit().await
    };
    if let Err(error) = released.await {
        tracing::warn!(%error, "lease not released; it expires instead");
    }
    Stopped::Released
}

/// The stored name of an end.
pub fn end_name(end: ConversationEnd) -> &'static str {
    match end {
        ConversationEnd::AgentEnded => "agent_ended",
        ConversationEnd::CallerHungUp => "caller_hung_up",
        ConversationEnd::Transferred => "transferred",
        ConversationEnd::EngineFailed => "engine_failed",
        ConversationEnd::MediaLost => "media_lost",
    }
}
