//! The life of one simulated call, walked in real time by one task per call.
//!
//! `queued` (REST) → `initiated` (posted at once; dialing starts, `start_time` is set) →
//! after `dial`: `busy` or `failed` end here, others go `ringing` → after `ring` (capped by
//! the create request's `Timeout`, which turns an answer into `no-answer`): `no-answer` or
//! `canceled` end here, `human` and `machine` are answered (`in-progress`) → the TwiML runs
//! for at most `talk` → `completed`.
//!
//! Status callbacks (A4) go to `StatusCallback` for the events listed in
//! `StatusCallbackEvent`, plus the terminal one always; `SequenceNumber` counts the callbacks
//! posted for the call. A REST hang-up wakes the task, which posts the terminal callback (none
//! for a call canceled while `queued`). With `MachineDetection`, the result is known
//! `amd_delay` after the answer: synchronously it delays the `answered` callback and the TwiML,
//! and rides on both status callbacks that follow; with `AsyncAmd=true` it goes to
//! `AsyncAmdStatusCallback` instead, even if the call has ended by then.
//!
//! The TwiML (inline `Twiml`, or fetched from `Url` with the call's parameters, then from
//! `FallbackUrl`) decides the answered part: `<Connect><Stream>` streams media until the talk
//! time ends, the socket closes or fails (the call then completes, as TwiML falls through), or
//! a redirect arrives; `<Hangup/>` completes at once; anything else is listened to for `talk`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::callback::{self, Webhook};
use super::twiml::{self, StreamSpec, Verb};
use super::{CallbackKind, SimBehaviour, SimCall, SimOutcome, TwilioSimState, media, rest};

/// Twilio's default and largest `Timeout` (seconds of ringing).
const DEFAULT_TIMEOUT_SECS: u64 = 60;
const MAX_TIMEOUT_SECS: u64 = 600;

/// What a call runs when it is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Instructions {
    /// TwiML fetched from `url` with `method` (`Url`, `Method`).
    Url { url: String, method: String },
    /// Inline TwiML (`Twiml`).
    Twiml(String),
}

impl Instructions {
    /// Reads create or update parameters: `Url` (with `Method`, default `POST`), else
    /// `Twiml`. Twilio ignores `Twiml` when a create request has both.
    pub(super) fn from_params(params: &[(String, String)]) -> Option<Self> {
        let value = |name: &str| first(params, name);
        if let Some(url) = value("Url") {
            let method = value("Method").unwrap_or_else(|| "POST".to_owned());
            return Some(Self::Url { url, method });
        }
        value("Twiml").map(Self::Twiml)
    }

    /// Returns the `Url` or the TwiML text.
    pub(super) fn value(&self) -> &str {
        match self {
            Self::Url { url, .. } => url,
            Self::Twiml(text) => text,
        }
    }
}

fn first(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
        .filter(|value| !value.is_empty())
}

/// The call was ended by a REST update; its lifecycle stops where it is.
struct HungUp;

/// What comes after the TwiML's answered part.
enum Next {
    /// The call completes.
    Done,
    /// New instructions arrived: run them.
    Redirected,
}

#[derive(Debug, Clone, Copy)]
enum AmdMode {
    Enable,
    DetectMessageEnd,
}

#[derive(Debug)]
struct Amd {
    mode: AmdMode,
    asynchronous: bool,
    /// `AsyncAmdStatusCallback` with its method.
    callback: Option<(String, String)>,
}

#[derive(Debug)]
struct StatusCallbacks {
    url: String,
    method: String,
    /// Lowercase event names; Twilio's repeated keys, or one space-separated value.
    events: Vec<String>,
}

/// Everything the lifecycle needs from the create request, read once.
#[derive(Debug)]
pub(super) struct Plan {
    sid: String,
    to: String,
    from: String,
    outcome: SimOutcome,
    status_callbacks: Option<StatusCallbacks>,
    amd: Option<Amd>,
    record: bool,
    fallback: Option<(String, String)>,
    timeout: Duration,
    hangup: CancellationToken,
    instructions: watch::Receiver<Option<Instructions>>,
}

impl Plan {
    pub(super) fn new(
        call: &SimCall,
        hangup: CancellationToken,
        instructions: watch::Receiver<Option<Instructions>>,
    ) -> Self {
        let value = |name: &str| first(&call.params, name);
        let method = |name: &str| value(name).unwrap_or_else(|| "POST".to_owned());
        let status_callbacks = value("StatusCallback").map(|url| StatusCallbacks {
            url,
            method: method("StatusCallbackMethod"),
            events: call
                .param("StatusCallbackEvent")
                .iter()
                .flat_map(|events| events.split([' ', ',']))
                .filter(|event| !event.is_empty())
                .map(str::to_ascii_lowercase)
                .collect(),
        });
        let mode = match value("MachineDetection").as_deref() {
            Some("Enable") => Some(AmdMode::Enable),
            Some("DetectMessageEnd") => Some(AmdMode::DetectMessageEnd),
            _ => None,
        };
        let amd = mode.map(|mode| Amd {
            mode,
            asynchronous: value("AsyncAmd").is_some_and(|on| on.eq_ignore_ascii_case("true")),
            callback: value("AsyncAmdStatusCallback")
                .map(|url| (url, method("AsyncAmdStatusCallbackMethod"))),
        });
        let timeout_secs = value("Timeout")
            .and_then(|secs| secs.parse::<u64>().ok())
            .unwrap_or(DEFAULT_TIMEOUT_SECS)
            .min(MAX_TIMEOUT_SECS);
        Self {
            sid: call.sid.clone(),
            to: call.to.clone(),
            from: call.from.clone(),
            outcome: call.outcome,
            status_callbacks,
            amd,
            record: value("Record").is_some_and(|on| on.eq_ignore_ascii_case("true")),
            fallback: value("FallbackUrl").map(|url| (url, method("FallbackMethod"))),
            timeout: Duration::from_secs(timeout_secs),
            hangup,
            instructions,
        }
    }
}

/// Walks the call described by `plan` to its end and posts its terminal callback.
pub(super) async fn run(state: TwilioSimState, plan: Plan) {
    let wants_webhooks = plan.status_callbacks.is_some()
        || plan.amd.as_ref().is_some_and(|amd| amd.callback.is_some());
    let notifier = wants_webhooks.then(|| callback::spawn_notifier(state.clone()));
    let mut call = Call {
        behaviour: Arc::clone(&state.behaviour),
        state,
        plan,
        notifier,
        sequence: 0,
        sync_answered_by: None,
    };
    if let Ok(status) = call.walk().await {
        // False when a REST update ended the call at the same moment: its status stands.
        let _ended_here = call.state.book().end(&call.plan.sid, status);
    }
    call.post_terminal();
}

struct Call {
    state: TwilioSimState,
    behaviour: Arc<SimBehaviour>,
    plan: Plan,
    notifier: Option<mpsc::UnboundedSender<Webhook>>,
    /// The next status callback's `SequenceNumber`.
    sequence: u32,
    /// The synchronous AMD result, which rides on later status callbacks and the TwiML request.
    sync_answered_by: Option<&'static str>,
}

impl Call {
    /// Walks the phases; returns the terminal status reached, or [`HungUp`].
    async fn walk(&mut self) -> Result<&'static str, HungUp> {
        let behaviour = Arc::clone(&self.behaviour);
        self.pause(behaviour.create_latency).await?;
        self.advance(|call| call.started_at = Some(Utc::now()))?;
        self.status_event("initiated", "initiated", Vec::new());
        self.pause(behaviour.dial).await?;
        match self.plan.outcome {
            SimOutcome::Busy => return Ok("busy"),
            SimOutcome::Failed => return Ok("failed"),
            SimOutcome::Human
            | SimOutcome::Machine
            | SimOutcome::NoAnswer
            | SimOutcome::Canceled => {}
        }
        self.advance(|call| "ringing".clone_into(&mut call.status))?;
        self.status_event("ringing", "ringing", Vec::new());
        let rings_out = behaviour.ring > self.plan.timeout;
        self.pause(behaviour.ring.min(self.plan.timeout)).await?;
        // Twilio's `Timeout` ends the ringing before anyone answers or gives up.
        if rings_out || self.plan.outcome == SimOutcome::NoAnswer {
            return Ok("no-answer");
        }
        if self.plan.outcome == SimOutcome::Canceled {
            return Ok("canceled");
        }
        let answered = Instant::now();
        self.advance(|call| {
            "in-progress".clone_into(&mut call.status);
            call.answered_at = Some(Utc::now());
        })?;
        self.answer().await?;
        // NOTE(sim): a talk time too long for the clock means "until hung up".
        let far_future = Duration::from_secs(30 * 365 * 24 * 3600);
        let deadline = answered
            .checked_add(behaviour.talk)
            .unwrap_or_else(|| answered + far_future);
        self.converse(deadline).await?;
        Ok("completed")
    }

    /// Posts `answered`, with answering machine detection as the create request asked.
    async fn answer(&mut self) -> Result<(), HungUp> {
        let Some(amd) = &self.plan.amd else {
            self.status_event("answered", "in-progress", Vec::new());
            return Ok(());
        };
        let result = match (self.plan.outcome, amd.mode) {
            (SimOutcome::Machine, AmdMode::Enable) => "machine_start",
            (SimOutcome::Machine, AmdMode::DetectMessageEnd) => "machine_end_beep",
            _ => "human",
        };
        if amd.asynchronous {
            self.status_event("answered", "in-progress", Vec::new());
            self.spawn_async_amd(result);
            return Ok(());
        }
        self.pause(self.behaviour.amd_delay).await?;
        self.advance(|call| call.answered_by = Some(result.to_owned()))?;
        self.sync_answered_by = Some(result);
        let answered_by = vec![("AnsweredBy".to_owned(), result.to_owned())];
        self.status_event("answered", "in-progress", answered_by);
        Ok(())
    }

    /// Records `result` and posts it to `AsyncAmdStatusCallback` after `amd_delay`, whether
    /// or not the call is still up by then.
    fn spawn_async_amd(&self, result: &'static str) {
        let state = self.state.clone();
        let sid = self.plan.sid.clone();
        let delay = self.behaviour.amd_delay;
        let callback = self.plan.amd.as_ref().and_then(|amd| amd.callback.clone());
        let notifier = self.notifier.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(call) = state.book().calls.get_mut(&sid) {
                call.answered_by = Some(result.to_owned());
            }
            let (Some((url, method)), Some(notifier)) = (callback, notifier) else {
                return;
            };
            let params = [
                ("AccountSid", state.account_sid.clone()),
                ("CallSid", sid.clone()),
                ("AnsweredBy", result.to_owned()),
                ("MachineDetectionDuration", delay.as_millis().to_string()),
            ];
            let webhook = Webhook {
                kind: CallbackKind::Amd,
                call_sid: sid,
                url,
                method,
                params: params.map(|(k, v)| (k.to_owned(), v)).to_vec(),
            };
            // A closed queue means the simulator is shutting down.
            let _queued = notifier.send(webhook);
        });
    }

    /// Runs the call's TwiML until the call completes; follows redirects.
    async fn converse(&mut self, deadline: Instant) -> Result<(), HungUp> {
        loop {
            let instructions = self.plan.instructions.borrow_and_update().clone();
            let verbs = match instructions {
                None => Vec::new(),
                Some(Instructions::Twiml(document)) => twiml::verbs(&document),
                Some(Instructions::Url { url, method }) => {
                    match self.fetch_twiml(url, method).await {
                        Some(document) => twiml::verbs(&document),
                        // No TwiML: Twilio says "an application error has occurred" and hangs up.
                        None => return Ok(()),
                    }
                }
            };
            let action = verbs.into_iter().find_map(|verb| match verb {
                Verb::ConnectStream(stream) => Some(Some(stream)),
                Verb::Hangup => Some(None),
                Verb::Other(_) => None,
            });
            let next = match action {
                Some(Some(stream)) => self.stream(stream, deadline).await?,
                Some(None) => Next::Done,
                None => self.listen(deadline).await?,
            };
            if let Next::Done = next {
                return Ok(());
            }
        }
    }

    /// Waits out the talk time on TwiML without a stream.
    async fn listen(&mut self, deadline: Instant) -> Result<Next, HungUp> {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => Ok(Next::Done),
            () = self.plan.hangup.cancelled() => Err(HungUp),
            changed = self.plan.instructions.changed() => Ok(redirected(changed.is_ok())),
        }
    }

    /// Streams media until the talk time ends, the call is hung up or redirected, or the
    /// server leaves (the TwiML then falls through and the call completes).
    async fn stream(&mut self, spec: StreamSpec, deadline: Instant) -> Result<Next, HungUp> {
        let stop = CancellationToken::new();
        let session = media::run(
            self.state.clone(),
            self.plan.sid.clone(),
            spec,
            stop.clone(),
        );
        tokio::pin!(session);
        let next = tokio::select! {
            _ended = &mut session => return Ok(Next::Done),
            () = tokio::time::sleep_until(deadline) => Ok(Next::Done),
            () = self.plan.hangup.cancelled() => Err(HungUp),
            changed = self.plan.instructions.changed() => Ok(redirected(changed.is_ok())),
        };
        stop.cancel();
        let _stopped = session.await;
        next
    }

    /// Requests the TwiML at `url` (then `FallbackUrl`) with the call's parameters.
    async fn fetch_twiml(&self, url: String, method: String) -> Option<String> {
        let mut params = self.call_params("in-progress");
        if let Some(answered_by) = self.sync_answered_by {
            params.push(("AnsweredBy".to_owned(), answered_by.to_owned()));
        }
        let webhook = Webhook {
            kind: CallbackKind::Twiml,
            call_sid: self.plan.sid.clone(),
            url,
            method,
            params,
        };
        if let Some(document) = callback::deliver(&self.state, &webhook).await {
            return Some(document);
        }
        let (url, method) = self.plan.fallback.clone()?;
        let fallback = Webhook {
            url,
            method,
            ..webhook
        };
        callback::deliver(&self.state, &fallback).await
    }

    /// Posts the terminal status callback, unless the call was canceled while queued.
    fn post_terminal(&mut self) {
        let (call, silent) = {
            let book = self.state.book();
            let silent = book
                .controls
                .get(&self.plan.sid)
                .is_some_and(|control| control.silent);
            (book.calls.get(&self.plan.sid).cloned(), silent)
        };
        let Some(call) = call.filter(|_| !silent) else {
            return;
        };
        let talk = rest::talk_secs(&call);
        let answered = call.answered_at.is_some();
        let mut extra = vec![("CallDuration", talk.to_string())];
        if call.status == "completed" {
            // Billed minutes: started minutes, at least one for an answered call.
            let minutes = if answered {
                talk.div_ceil(60).max(1)
            } else {
                0
            };
            extra.push(("Duration", minutes.to_string()));
        }
        extra.push(("SipResponseCode", sip_response_code(&call).to_owned()));
        if let Some(answered_by) = self.sync_answered_by {
            extra.push(("AnsweredBy", answered_by.to_owned()));
        }
        if self.plan.record && answered && call.status == "completed" {
            let recording = format!("RE{}", uuid::Uuid::new_v4().simple());
            let url = format!(
                "https://api.twilio.com/2010-04-01/Accounts/{}/Recordings/{recording}",
                self.state.account_sid
            );
            extra.push(("RecordingUrl", url));
            extra.push(("RecordingSid", recording));
            extra.push(("RecordingDuration", talk.to_string()));
        }
        let extra = extra.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        self.status_event("completed", &call.status, extra);
    }

    /// Queues the status callback of `event` with `CallStatus=call_status`, if the create
    /// request asked for that event (the terminal `completed` one is always sent).
    fn status_event(&mut self, event: &str, call_status: &str, extra: Vec<(String, String)>) {
        let Some(callbacks) = &self.plan.status_callbacks else {
            return;
        };
        if event != "completed" && !callbacks.events.iter().any(|wanted| wanted == event) {
            return;
        }
        let (url, method) = (callbacks.url.clone(), callbacks.method.clone());
        let mut params = self.call_params(call_status);
        params.extend([
            ("Timestamp".to_owned(), Utc::now().to_rfc2822()),
            (
                "CallbackSource".to_owned(),
                "call-progress-events".to_owned(),
            ),
            ("SequenceNumber".to_owned(), self.sequence.to_string()),
        ]);
        params.extend(extra);
        self.sequence += 1;
        if let Some(notifier) = &self.notifier {
            let webhook = Webhook {
                kind: CallbackKind::Status,
                call_sid: self.plan.sid.clone(),
                url,
                method,
                params,
            };
            // A closed queue means the simulator is shutting down.
            let _queued = notifier.send(webhook);
        }
    }

    /// The parameters every request about the call carries (A4, first block).
    fn call_params(&self, call_status: &str) -> Vec<(String, String)> {
        [
            ("AccountSid", self.state.account_sid.as_str()),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", &self.plan.sid),
            ("CallStatus", call_status),
            ("Called", &self.plan.to),
            ("Caller", &self.plan.from),
            ("Direction", "outbound-api"),
            ("From", &self.plan.from),
            ("To", &self.plan.to),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .to_vec()
    }

    /// Waits `duration`, unless the call is hung up first.
    async fn pause(&self, duration: Duration) -> Result<(), HungUp> {
        tokio::select! {
            () = self.plan.hangup.cancelled() => Err(HungUp),
            () = tokio::time::sleep(duration) => Ok(()),
        }
    }

    /// Applies `change` to the call, unless a REST update has ended it.
    fn advance(&self, change: impl FnOnce(&mut SimCall)) -> Result<(), HungUp> {
        if self.state.update_live(&self.plan.sid, change) {
            Ok(())
        } else {
            Err(HungUp)
        }
    }
}

/// A redirect, or (when the instructions can no longer change) the end of the call.
fn redirected(changed: bool) -> Next {
    if changed {
        Next::Redirected
    } else {
        Next::Done
    }
}

/// The SIP answer Twilio reports: 200 after an answer, else per status (UNCONFIRMED beyond
/// A4's 404 and 487 examples: 486 busy, 487 given up while ringing).
fn sip_response_code(call: &SimCall) -> &'static str {
    if call.answered_at.is_some() {
        return "200";
    }
    match call.status.as_str() {
        "busy" => "486",
        "failed" => "404",
        _ => "487",
    }
}
