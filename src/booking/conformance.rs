//! The conformance suite of [`Calendar`]: one `async fn` every calendar passes: static
//! schedules, CalDAV against a real Radicale, and each CRM-native calendar against its
//! simulator.
//!
//! It books, reschedules and cancels real appointments in the calendar under test, in a
//! week with free slots that nothing else books while it runs.

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::{BookingError, BookingRequest, Calendar, Slot, SlotQuery};
use crate::crm::ContactId;
use crate::ids::{PhoneNumber, TenantId};
use crate::providers::error::ProviderError;

/// What the suite needs to know about the calendar under test.
pub struct Subject<'a> {
    /// The calendar.
    pub calendar: &'a dyn Calendar,
    /// A tenant connected to it.
    pub tenant: TenantId,
    /// The zone slots are asked in.
    pub zone: Tz,
    /// The start of a week with at least three free slots and no other bookings.
    pub week: DateTime<Utc>,
    /// A contact to book for, when the calendar attaches appointments to CRM contacts.
    pub contact: Option<ContactId>,
    /// How many bookings one slot takes (1 for nearly every calendar).
    pub capacity: u32,
}

fn query(subject: &Subject<'_>, limit: usize) -> anyhow::Result<SlotQuery> {
    let now = Utc::now();
    let from = subject.week.max(now);
    SlotQuery::new(
        from,
        subject.week + TimeDelta::days(7),
        limit,
        subject.zone,
        now,
    )
    .context("the suite's own query is valid")
}

async fn slots(subject: &Subject<'_>, limit: usize) -> anyhow::Result<Vec<Slot>> {
    subject
        .calendar
        .free_slots(subject.tenant, query(subject, limit)?)
        .await
        .context("listing free slots")
}

/// A booking request by `who`: each person has their own phone and e-mail; only `first` is
/// the subject's CRM contact (the others are new to the CRM).
fn request(subject: &Subject<'_>, slot: &Slot, who: &str) -> anyhow::Result<BookingRequest> {
    let line = match who {
        "first" => 142,
        "second" => 143,
        _ => 144,
    };
    Ok(BookingRequest {
        tenant: subject.tenant,
        call: None,
        starts_at: slot.starts_at,
        zone: subject.zone,
        name: Some(format!("Conformance {who}")),
        phone: Some(PhoneNumber::parse(&format!("+1512555{line:04}")).context("a test number")?),
        email: Some(format!("{who}@example.com")),
        contact: if who == "first" {
            subject.contact.clone()
        } else {
            None
        },
        notes: Some("booked by the conformance suite".to_owned()),
        idempotency_key: format!("conformance-{who}-{}", slot.starts_at.timestamp()),
    })
}

fn is_unavailable(error: &BookingError) -> bool {
    matches!(error, BookingError::Unavailable(_))
}

/// Runs every check; the first failure names the step.
pub async fn run(subject: &Subject<'_>) -> anyhow::Result<()> {
    let calendar = subject.calendar;
    let tenant = subject.tenant;
    let query = query(subject, 50)?;

    let free = slots(subject, 50).await?;
    ensure!(
        free.len() >= 3,
        "the week offers {} slots, the suite needs 3",
        free.len()
    );
    ensure!(free.len() <= 50, "the limit was not respected");
    for pair in free.windows(2) {
        ensure!(
            pair[0].starts_at < pair[1].starts_at,
            "slots are not earliest first: {pair:?}"
        );
    }
    for slot in &free {
        ensure!(slot.ends_at > slot.starts_at, "an empty slot {slot:?}");
        ensure!(
            slot.starts_at >= query.from && slot.starts_at < query.to,
            "slot {slot:?} outside {}..{}",
            query.from,
            query.to
        );
    }
    let few = slots(subject, 2).await?;
    ensure!(few.len() == 2, "limit 2 gave {} slots", few.len());
    ensure!(few[..] == free[..2], "a smaller limit gave other slots");

    // Book the first slot; it is no longer offered; another person cannot take it.
    let first = free[0].clone();
    let booked = calendar
        .book(request(subject, &first, "first")?)
        .await
        .context("booking the first free slot")?;
    ensure!(
        booked.starts_at == first.starts_at,
        "booked {booked:?} for {first:?}"
    );
    ensure!(!booked.appointment_id.is_empty(), "an empty appointment id");
    if subject.capacity == 1 {
        let after = slots(subject, 50).await?;
        ensure!(
            after.iter().all(|slot| slot.starts_at != first.starts_at),
            "a booked slot is still offered"
        );
        match calendar.book(request(subject, &first, "second")?).await {
            Err(error) if is_unavailable(&error) => {}
            other => bail!("booking a taken slot must be Unavailable, got {other:?}"),
        }
    }

    // Reschedule to the third slot: the first is free again, the third is not.
    let third = free[2].clone();
    let moved = calendar
        .reschedule(tenant, &booked.appointment_id, third.starts_at)
        .await
        .context("rescheduling")?;
    ensure!(
        moved.starts_at == third.starts_at,
        "rescheduled to {moved:?}"
    );
    let after = slots(subject, 50).await?;
    ensure!(
        after.iter().any(|slot| slot.starts_at == first.starts_at),
        "the old slot was not freed by the reschedule"
    );
    if subject.capacity == 1 {
        ensure!(
            after.iter().all(|slot| slot.starts_at != third.starts_at),
            "the new slot is still offered"
        );
    }

    // Cancel: the slot is free again; an unknown appointment is NotFound.
    calendar
        .cancel(tenant, &moved.appointment_id)
        .await
        .context("cancelling")?;
    let after = slots(subject, 50).await?;
    ensure!(
        after.iter().any(|slot| slot.starts_at == third.starts_at),
        "a cancelled slot is not offered again"
    );
    match calendar.cancel(tenant, "0000doesnotexist").await {
        Err(BookingError::NotFound | BookingError::Provider(ProviderError::NotFound { .. })) => {}
        other => bail!("cancelling an unknown appointment must be NotFound, got {other:?}"),
    }

    // A time that is not a slot is refused.
    let odd = BookingRequest {
        starts_at: first.starts_at + TimeDelta::minutes(7),
        ..request(subject, &first, "odd")?
    };
    match calendar.book(odd).await {
        Err(error) if is_unavailable(&error) => {}
        other => bail!("booking a time that is not a slot must be Unavailable, got {other:?}"),
    }
    Ok(())
}

/// Checks what every query refuses before any calendar sees it.
pub fn queries_are_checked_at_the_edge() -> anyhow::Result<()> {
    let now = Utc::now();
    let zone = chrono_tz::UTC;
    for (from, to, why) in [
        (
            now - TimeDelta::hours(1),
            now + TimeDelta::days(1),
            "the past",
        ),
        (now, now + TimeDelta::days(32), "more than 31 days"),
        (
            now + TimeDelta::days(2),
            now + TimeDelta::days(1),
            "an inverted range",
        ),
    ] {
        match SlotQuery::new(from, to, 3, zone, now) {
            Err(BookingError::Invalid(_)) => {}
            other => bail!("{why} must be refused, got {other:?}"),
        }
    }
    SlotQuery::new(
        now - TimeDelta::seconds(5),
        now + TimeDelta::days(31),
        3,
        zone,
        now,
    )
    .context("31 days from a few seconds ago is fine")?;
    Ok(())
}
