//! One Media Streams socket, from `connected` to the end of the call.

use std::sync::Arc;

use async_nats::Subscriber;
use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use bytes::Bytes;
use chrono::Utc;
use futures::stream::{SplitSink, SplitStream};
use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::MediaGateway;
use super::recorder::{self, Recorder};
use crate::bus::envelope::Envelope;
use crate::bus::subjects;
use crate::calls::stream_token::StreamClaims;
use crate::events::conversation::CallAnswered;
use crate::ids::{AttemptId, CallId, TenantId};
use crate::ingress::publish::content_message_id;
use crate::media::frame::{MediaFrame, Sequenced};
use crate::media::twilio_stream::{self, Inbound, Outbound, Start, Track, WireError};
use crate::providers::telephony::Telephony as _;
use crate::providers::twilio::Twilio;
use crate::tenancy::directory::TenantSnapshot;

type Sink = SplitSink<WebSocket, Message>;
type Source = SplitStream<WebSocket>;

/// Why a socket was refused before the call was answered.
struct Refusal {
    /// The close code: 1008 for anything the peer got wrong, 1011 for our own failures.
    code: u16,
    /// The close reason (short, no secrets).
    reason: &'static str,
    /// What to log (no secrets either).
    detail: String,
}

impl Refusal {
    fn policy(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code: close_code::POLICY,
            reason,
            detail: detail.into(),
        }
    }

    fn internal(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code: close_code::ERROR,
            reason,
            detail: detail.into(),
        }
    }
}

/// Runs one socket to its end.
pub(super) async fn run(gateway: Arc<MediaGateway>, socket: WebSocket) {
    let (mut sink, mut source) = socket.split();
    let start = match tokio::time::timeout(gateway.settings.start_timeout(), handshake(&mut source))
        .await
    {
        Ok(Ok(start)) => start,
        Ok(Err(refusal)) => return refuse(&mut sink, refusal, None).await,
        Err(_elapsed) => {
            let refusal = Refusal::policy("no start in time", "no connected and start in time");
            return refuse(&mut sink, refusal, None).await;
        }
    };
    let claims = match authenticate(&gateway, &start) {
        Ok(claims) => claims,
        Err(refusal) => return refuse(&mut sink, refusal, Some(&start)).await,
    };
    let span = tracing::info_span!(
        "media_session",
        tenant_id = %claims.tenant,
        call_id = %claims.call,
        attempt_id = %claims.attempt,
        stream_sid = %start.stream_sid,
    );
    async move {
        match answer(&gateway, &claims, &start).await {
            Ok((snapshot, out, ctl)) => {
                let bridge = Bridge::new(gateway, claims, start, snapshot, sink).await;
                bridge.run(source, out, ctl).await;
            }
            Err(refusal) => refuse(&mut sink, refusal, Some(&start)).await,
        }
    }
    .instrument(span)
    .await;
}

/// Logs a refusal at warn and closes the socket with its code.
async fn refuse(sink: &mut Sink, refusal: Refusal, start: Option<&Start>) {
    tracing::warn!(
        code = refusal.code,
        reason = refusal.reason,
        detail = refusal.detail,
        stream_sid = start.map(|start| start.stream_sid.as_str()),
        call_sid = start.map(|start| start.start.call_sid.as_str()),
        "media stream refused"
    );
    close(sink, refusal.code, refusal.reason).await;
}

/// Sends a close frame; a socket that is already gone needs none.
async fn close(sink: &mut Sink, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    // The peer may be gone already; there is nobody left to tell.
    sink.send(Message::Close(Some(frame))).await.ok();
    sink.close().await.ok();
}

/// Reads `connected` then `start`.
async fn handshake(source: &mut Source) -> Result<Start, Refusal> {
    let mut connected = false;
    loop {
        let text = match source.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Binary(_))) => {
                return Err(Refusal::policy("expected text frames", "binary frame"));
            }
            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                return Err(Refusal::policy("closed before start", "socket closed"));
            }
        };
        match (twilio_stream::parse(text.as_str()), connected) {
            (Ok(Inbound::Connected(_)), false) => connected = true,
            (Ok(Inbound::Start(start)), true) => return Ok(start),
            (Ok(_), false) => {
                return Err(Refusal::policy(
                    "expected connected",
                    "first frame is not connected",
                ));
            }
            (Ok(_), true) => {
                return Err(Refusal::policy(
                    "expected start",
                    "second frame is not start",
                ));
            }
            (Err(error), _) => {
                return Err(Refusal::policy("malformed frame", describe(&error)));
            }
        }
    }
}

/// Describes a parse failure without quoting the frame (a `start` carries the token).
fn describe(error: &WireError) -> String {
    match error {
        WireError::Malformed(_) => "not a Media Streams frame".to_owned(),
        WireError::UnknownEvent(event) => {
            format!(
                "unknown event {:?}",
                event.chars().take(32).collect::<String>()
            )
        }
        WireError::Invalid { event, .. } => format!("invalid {event} frame"),
        WireError::Payload(_) => "payload is not base64".to_owned(),
    }
}

/// Checks the stream parameters and the token.
fn authenticate(gateway: &MediaGateway, start: &Start) -> Result<StreamClaims, Refusal> {
    let parameters = &start.start.custom_parameters;
    let get = |name: &str| parameters.get(name).map(String::as_str);
    let (Some(tenant), Some(call), Some(attempt), Some(token)) = (
        get("tenant_id"),
        get("call_id"),
        get("attempt_id"),
        get("token"),
    ) else {
        return Err(Refusal::policy(
            "missing stream parameters",
            "tenant_id, call_id, attempt_id or token missing",
        ));
    };
    let (Ok(tenant), Ok(call), Ok(attempt)) = (
        TenantId::parse(tenant),
        CallId::parse(call),
        AttemptId::parse(attempt),
    ) else {
        return Err(Refusal::policy(
            "invalid stream parameters",
            "tenant_id, call_id or attempt_id is not an id",
        ));
    };
    let claims = StreamClaims {
        tenant,
        call,
        attempt,
    };
    gateway
        .tokens
        .verify(token, &claims, Utc::now())
        .map_err(|error| {
            Refusal::policy(
                "stream not authorized",
                format!("{error} (tenant {tenant}, call {call}, attempt {attempt})"),
            )
        })?;
    Ok(claims)
}

/// Loads the tenant, subscribes to the call's `out` and `ctl`, then publishes `call.answered`.
async fn answer(
    gateway: &MediaGateway,
    claims: &StreamClaims,
    start: &Start,
) -> Result<(Arc<TenantSnapshot>, Subscriber, Subscriber), Refusal> {
    let snapshot = match gateway.directory.tenant(claims.tenant).await {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => {
            return Err(Refusal::policy(
                "unknown tenant",
                "the tenant does not exist",
            ));
        }
        Err(error) => return Err(Refusal::internal("tenant lookup failed", error.to_string())),
    };
    let client = gateway.bus.client();
    let subscribe = |subject: String| async move {
        client
            .subscribe(subject)
            .await
            .map_err(|error| Refusal::internal("media plane unavailable", error.to_string()))
    };
    let out = subscribe(subjects::media_out(&claims.call)).await?;
    let ctl = subscribe(subjects::media_ctl(&claims.call)).await?;
    let answered = CallAnswered {
        call_id: claims.call,
        attempt_id: claims.attempt,
        provider_call_id: start.start.call_sid.clone(),
        stream_id: start.stream_sid.clone(),
        connected_at: Utc::now(),
    };
    let message_id = answered_message_id(claims.attempt, &start.stream_sid);
    let mut envelope = Envelope::new(claims.tenant, super::SOURCE, answered);
    envelope.meta.call_id = Some(claims.call);
    let mut message = envelope
        .to_message()
        .map_err(|error| Refusal::internal("encoding failed", error.to_string()))?;
    message.set_message_id(&message_id);
    let unpublished = |error: String| Refusal::internal("call.answered not published", error);
    let ack = gateway
        .bus
        .send(&message)
        .await
        .map_err(|error| unpublished(error.to_string()))?;
    ack.await.map_err(|error| unpublished(error.to_string()))?;
    tracing::info!(call_sid = %start.start.call_sid, "media stream answered");
    Ok((snapshot, out, ctl))
}

/// The `Nats-Msg-Id` of a stream's `call.answered`: the same attempt and stream always get
/// the same one, so a retried publish is stored once.
#[must_use]
pub(super) fn answered_message_id(attempt: AttemptId, stream_sid: &str) -> String {
    let attempt = attempt.to_string();
    content_message_id("answered", &[attempt.as_bytes(), stream_sid.as_bytes()])
}

/// How the bridge ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Twilio sent `stop`.
    Stopped,
    /// The socket closed or broke.
    Closed,
    /// A hang-up was asked for and its audio played (or the drain timed out).
    HangUp,
    /// The media plane's subscriptions ended (the NATS client is gone).
    PlaneGone,
}

/// What handling one message leads to.
enum Step {
    Continue,
    End(End),
}

/// The answered call: both directions and the recording.
struct Bridge {
    gateway: Arc<MediaGateway>,
    claims: StreamClaims,
    start: Start,
    snapshot: Arc<TenantSnapshot>,
    sink: Sink,
    in_subject: String,
    /// The last sequence number published on `in`.
    in_seq: u64,
    recorder: Option<Recorder>,
    /// Hang-up marks sent so far.
    hangups: u64,
    /// The pending hang-up's mark and deadline.
    hangup: Option<(String, Instant)>,
}

impl Bridge {
    async fn new(
        gateway: Arc<MediaGateway>,
        claims: StreamClaims,
        start: Start,
        snapshot: Arc<TenantSnapshot>,
        sink: Sink,
    ) -> Self {
        let recorder = if snapshot.configuration.record_calls {
            start_recording(&gateway, &claims).await
        } else {
            None
        };
        Self {
            in_subject: subjects::media_in(&claims.call),
            gateway,
            claims,
            start,
            snapshot,
            sink,
            in_seq: 0,
            recorder,
            hangups: 0,
            hangup: None,
        }
    }

    async fn run(mut self, mut source: Source, mut out: Subscriber, mut ctl: Subscriber) {
        let end = loop {
            let deadline = self.hangup.as_ref().map(|(_, deadline)| *deadline);
            // Control first (a clear must not wait behind audio), then the caller, then audio.
            let step = tokio::select! {
                biased;
                message = ctl.next() => match message {
                    Some(message) => self.on_plane(&message.payload, &mut out).await,
                    None => Step::End(End::PlaneGone),
                },
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                    if deadline.is_some() => {
                    tracing::warn!("hang-up mark not played in time; hanging up anyway");
                    Step::End(End::HangUp)
                }
                message = source.next() => self.on_twilio(message).await,
                message = out.next() => match message {
                    Some(message) => self.on_plane(&message.payload, &mut out).await,
                    None => Step::End(End::PlaneGone),
                },
            };
            if let Step::End(end) = step {
                break end;
            }
        };
        drop((out, ctl));
        tracing::info!(?end, frames_in = self.in_seq, "media stream ended");
        match end {
            End::HangUp => {
                self.hang_up().await;
                close(&mut self.sink, close_code::NORMAL, "call ended").await;
            }
            End::Stopped => close(&mut self.sink, close_code::NORMAL, "stopped").await,
            End::PlaneGone => close(&mut self.sink, close_code::ERROR, "media plane lost").await,
            End::Closed => {}
        }
        self.publish(MediaFrame::Stopped).await;
        if let Some(recorder) = self.recorder.take() {
            let finished = recorder.finish().await;
            let store = &self.gateway.store;
            if let Err(error) =
                recorder::complete_row(store, self.claims.tenant, self.claims.attempt, finished)
                    .await
            {
                tracing::warn!(%error, "recording row not completed");
            }
        }
    }

    /// Handles one message from Twilio.
    async fn on_twilio(&mut self, message: Option<Result<Message, axum::Error>>) -> Step {
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Step::Continue,
            Some(Ok(Message::Binary(_))) => {
                tracing::warn!("binary frame from Twilio; skipped");
                return Step::Continue;
            }
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Step::End(End::Closed),
        };
        let inbound = match twilio_stream::parse(text.as_str()) {
            Ok(inbound) => inbound,
            Err(error) => {
                tracing::warn!(error = describe(&error), "malformed Twilio frame; skipped");
                return Step::Continue;
            }
        };
        match inbound {
            Inbound::Media(media) => {
                if media.media.track != Track::Inbound {
                    return Step::Continue;
                }
                let audio = match media.media.decode_payload() {
                    Ok(audio) => audio,
                    Err(error) => {
                        tracing::warn!(error = describe(&error), "Twilio media frame skipped");
                        return Step::Continue;
                    }
                };
                if let Some(recorder) = &mut self.recorder {
                    recorder.frame(&audio);
                }
                self.publish(MediaFrame::Audio(Bytes::from(audio))).await;
            }
            Inbound::Dtmf(dtmf) => {
                let mut characters = dtmf.dtmf.digit.chars();
                match (characters.next(), characters.next()) {
                    (Some(digit), None) => self.publish(MediaFrame::Dtmf(digit)).await,
                    _ => tracing::warn!("dtmf frame without one digit; skipped"),
                }
            }
            Inbound::Mark(echo) => {
                let name = echo.mark.name;
                if self
                    .hangup
                    .as_ref()
                    .is_some_and(|(pending, _)| *pending == name)
                {
                    return Step::End(End::HangUp);
                }
                self.publish(MediaFrame::MarkPlayed(name)).await;
            }
            Inbound::Stop(_) => return Step::End(End::Stopped),
            Inbound::Connected(_) | Inbound::Start(_) => {
                tracing::warn!("repeated connected or start frame; skipped");
            }
        }
        Step::Continue
    }

    /// Handles one frame from `out` or `ctl`.
    async fn on_plane(&mut self, payload: &Bytes, out: &mut Subscriber) -> Step {
        let frame = match Sequenced::decode(payload) {
            Ok(sequenced) => sequenced.frame,
            Err(error) => {
                tracing::warn!(%error, "malformed media plane frame; skipped");
                return Step::Continue;
            }
        };
        if frame != MediaFrame::Clear {
            return self.apply(frame).await;
        }
        // Agent audio already waiting was sent before the clear (one publisher keeps its
        // order across subjects): it must not play after it. Anything else still counts.
        let mut deferred = Vec::new();
        let mut dropped = 0_usize;
        while let Some(Some(message)) = out.next().now_or_never() {
            match Sequenced::decode(&message.payload) {
                Ok(Sequenced {
                    frame: MediaFrame::Audio(_),
                    ..
                }) => dropped += 1,
                Ok(sequenced) => deferred.push(sequenced.frame),
                Err(error) => tracing::warn!(%error, "malformed media plane frame; skipped"),
            }
        }
        if dropped > 0 {
            tracing::debug!(dropped, "agent audio dropped by a clear");
        }
        let mut step = self.apply(MediaFrame::Clear).await;
        for frame in deferred {
            if let Step::End(_) = step {
                break;
            }
            step = self.apply(frame).await;
        }
        step
    }

    /// Acts on one frame from the converse worker.
    async fn apply(&mut self, frame: MediaFrame) -> Step {
        let stream_sid = self.start.stream_sid.as_str();
        let outbound = match frame {
            MediaFrame::Audio(audio) => {
                if let Some(recorder) = &mut self.recorder {
                    recorder.agent_audio(&audio);
                }
                Outbound::media(stream_sid, &audio)
            }
            MediaFrame::Clear => {
                if let Some(recorder) = &mut self.recorder {
                    recorder.cleared();
                }
                Outbound::clear(stream_sid)
            }
            MediaFrame::Mark(name) => Outbound::mark(stream_sid, name),
            MediaFrame::Hangup => {
                if self.hangup.is_some() {
                    return Step::Continue;
                }
                self.hangups += 1;
                let name = format!("hangup-{}", self.hangups);
                let deadline = Instant::now() + self.gateway.settings.hangup_drain_timeout();
                let mark = Outbound::mark(stream_sid, name.clone());
                self.hangup = Some((name, deadline));
                mark
            }
            MediaFrame::Dtmf(_) | MediaFrame::MarkPlayed(_) | MediaFrame::Stopped => {
                tracing::warn!("caller-side frame on out or ctl; skipped");
                return Step::Continue;
            }
        };
        self.send(&outbound).await
    }

    /// Sends one frame to Twilio (flushed at once).
    async fn send(&mut self, outbound: &Outbound) -> Step {
        let text = match serde_json::to_string(outbound) {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(%error, "outbound frame does not encode; skipped");
                return Step::Continue;
            }
        };
        match self.sink.send(Message::Text(text.into())).await {
            Ok(()) => Step::Continue,
            Err(_) => Step::End(End::Closed),
        }
    }

    /// Publishes one frame on `media.<call>.in`.
    async fn publish(&mut self, frame: MediaFrame) {
        self.in_seq += 1;
        let sequenced = Sequenced {
            seq: self.in_seq,
            frame,
        };
        if let Err(error) = self
            .gateway
            .bus
            .client()
            .publish(self.in_subject.clone(), sequenced.encode())
            .await
        {
            tracing::warn!(%error, "media frame not published");
        }
    }

    /// Ends the call through the tenant's Twilio account (closing the socket alone would run
    /// the TwiML fallback).
    async fn hang_up(&self) {
        let account = match self.snapshot.twilio() {
            Ok(account) => account,
            Err(missing) => {
                tracing::warn!(missing, "cannot hang up: no Twilio account");
                return;
            }
        };
        let Some(token) = account.auth_tokens.first().cloned() else {
            tracing::warn!("cannot hang up: no Twilio auth token");
            return;
        };
        let Ok(twilio) = Twilio::new(&account.account_sid, token) else {
            tracing::warn!("cannot hang up: the Twilio account_sid is not an Account SID");
            return;
        };
        let twilio = twilio.with_client(self.gateway.http.clone());
        let twilio = match account.base_url.as_deref() {
            Some(base_url) => twilio.with_base_url(base_url),
            None => twilio,
        };
        match twilio.hang_up(&self.start.start.call_sid).await {
            Ok(()) => tracing::info!("call hung up"),
            Err(error) => tracing::warn!(%error, "hang-up failed"),
        }
    }
}

/// Opens the call's sealed recording and its row; `None` (logged) when either fails: the
/// call goes on unrecorded rather than not at all.
async fn start_recording(gateway: &MediaGateway, claims: &StreamClaims) -> Option<Recorder> {
    let keyring = gateway.directory.keyring()?;
    let (key_id, key) = keyring.active();
    let location = recorder::location(claims.tenant, claims.call, claims.attempt);
    let path = gateway.settings.recordings_dir.join(&location);
    let context = recorder::context(claims.tenant, claims.call, claims.attempt);
    let recorder = match Recorder::start(
        path.clone(),
        key_id.as_str().to_owned(),
        *key.expose(),
        context,
    )
    .await
    {
        Ok(recorder) => recorder,
        Err(error) => {
            tracing::warn!(%error, "recording not started");
            return None;
        }
    };
    if let Err(error) = recorder::insert_row(
        &gateway.store,
        claims.tenant,
        claims.call,
        claims.attempt,
        &location,
        key_id.as_str(),
    )
    .await
    {
        tracing::warn!(%error, "recording row not inserted; not recording");
        // The empty file is removed below; how it ended does not matter.
        let _finished = recorder.finish().await;
        // Not recorded anywhere, so the file must not stay behind.
        tokio::fs::remove_file(&path).await.ok();
        return None;
    }
    tracing::info!("recording");
    Some(recorder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answered_message_id_is_per_attempt_and_stream() {
        let attempt = AttemptId::from_uuid(uuid::Uuid::now_v7());
        let other = AttemptId::from_uuid(uuid::Uuid::now_v7());
        let id = answered_message_id(attempt, "MZ1");
        assert_eq!(id, answered_message_id(attempt, "MZ1"));
        assert_ne!(id, answered_message_id(attempt, "MZ2"));
        assert_ne!(id, answered_message_id(other, "MZ1"));
    }
}
