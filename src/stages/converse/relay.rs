//! `conversation.ended`: published when a session ends, and republished by any worker for
//! ends a crash left unconfirmed (the message id is derived from the attempt, so the stream's
//! duplicate window drops a second copy).

use chrono::{TimeDelta, Utc};

use super::Deps;
use crate::bus::envelope::{Envelope, Meta};
use crate::events::conversation::{ConversationEnd, ConversationEnded};
use crate::ids::{AttemptId, CallId, EventId, TenantId};
use crate::store::conversations::{self, Ended};

/// Ends older than this without a confirmed publish are republished.
const LEFTOVER_AFTER: TimeDelta = TimeDelta::seconds(5);

/// Ends republished per round.
const LEFTOVER_BATCH: i64 = 100;

fn end_of(name: &str) -> ConversationEnd {
    match name {
        "caller_hung_up" => ConversationEnd::CallerHungUp,
        "transferred" => ConversationEnd::Transferred,
        "engine_failed" => ConversationEnd::EngineFailed,
        "media_lost" => ConversationEnd::MediaLost,
        _ => ConversationEnd::AgentEnded,
    }
}

fn envelope(ended: &Ended) -> Envelope<ConversationEnded> {
    let tenant = TenantId::from_uuid(ended.tenant_id);
    let call = CallId::from_uuid(ended.call_id);
    let attempt = AttemptId::from_uuid(ended.attempt_id);
    let mut meta = Meta::new::<ConversationEnded>(tenant, "caller/stage/converse");
    meta.event_id = EventId::derived(
        EventId::from_uuid(ended.attempt_id),
        &[b"conversation.ended"],
    );
    meta.call_id = Some(call);
    meta.occurred_at = ended.ended_at;
    Envelope {
        meta,
        payload: ConversationEnded {
            call_id: call,
            attempt_id: attempt,
            end: end_of(&ended.end_reason),
            started_at: ended.started_at,
            ended_at: ended.ended_at,
            turns: u32::try_from(ended.turns).unwrap_or(u32::MAX),
            tool_calls: u32::try_from(ended.tool_calls).unwrap_or(u32::MAX),
            resumes: u32::try_from(ended.resumes).unwrap_or(0),
            engine_conversation_ids: ended.engine_conversation_ids.clone(),
        },
    }
}

/// Publishes one end and records the confirmation.
pub async fn publish_ended(deps: &Deps, ended: &Ended) -> anyhow::Result<()> {
    let message = envelope(ended).to_message()?;
    deps.bus.publish_all(std::slice::from_ref(&message)).await?;
    let mut tx = deps
        .store
        .begin_tenant(TenantId::from_uuid(ended.tenant_id))
        .await?;
    conversations::mark_published(&mut tx, ended.attempt_id).await?;
    tx.commit().await?;
    Ok(())
}

/// Republishes ends that a crash (or a NATS outage) left unconfirmed.
pub async fn republish_leftovers(deps: &Deps) -> anyhow::Result<()> {
    let mut tx = deps.store.begin_platform().await?;
    let leftovers =
        conversations::unpublished(&mut tx, Utc::now() - LEFTOVER_AFTER, LEFTOVER_BATCH).await?;
    tx.commit().await?;
    for ended in &leftovers {
        publish_ended(deps, ended).await?;
    }
    Ok(())
}
