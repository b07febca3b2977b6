//! [`Calendar`] over a HighLevel calendar (`providers.gohighlevel.calendar_id`): free slots,
//! appointments booked on the lead's contact, rescheduled and cancelled.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use futures::future::BoxFuture;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::client::{CALENDARS, Call};
use super::{Account, CACHE_TTL, GoHighLevel, ProviderError, Session, wire};
use crate::booking::{Booked, BookingError, BookingRequest, Calendar, Slot, SlotQuery};
use crate::crm::{ContactDraft, ContactId};
use crate::ids::TenantId;

/// A booking or move the calendar refused because the time is not free.
fn refused_as_unavailable(error: ProviderError) -> BookingError {
    match error {
        ProviderError::Invalid { reason } if is_slot_refusal(&reason) => {
            BookingError::Unavailable(reason)
        }
        ProviderError::NotFound { what } if what == "appointment" => BookingError::NotFound,
        other => BookingError::Provider(other),
    }
}

/// HighLevel refuses a taken or invalid slot with a 400/422 message about the slot (exact
/// text UNCONFIRMED: match loosely).
fn is_slot_refusal(reason: &str) -> bool {
    let reason = reason.to_lowercase();
    reason.contains("slot")
        || reason.contains("not available")
        || reason.contains("no longer available")
}

impl GoHighLevel {
    /// The tenant's calendar id, or why it has none.
    fn calendar_id(account: &Account) -> Result<String, BookingError> {
        account.calendar.clone().ok_or_else(|| {
            BookingError::NotConfigured(
                "the client has no HighLevel calendar (`providers.gohighlevel.calendar_id`)"
                    .to_owned(),
            )
        })
    }

    /// The calendar's slot length (`slotDuration`, `slotDurationUnit`), cached.
    async fn slot_length(
        &self,
        account: &Account,
        session: &Session,
        calendar: &str,
    ) -> Result<TimeDelta, ProviderError> {
        let key = (session.location.clone(), calendar.to_owned());
        let cached = self
            .slot_lengths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, length)| *length);
        if let Some(length) = cached {
            return Ok(length);
        }
        let answer = self
            .send(
                account,
                session,
                &Call::new(Method::GET, &["calendars", calendar], CALENDARS, "calendar"),
            )
            .await?;
        let details = answer
            .get("calendar")
            .ok_or_else(|| ProviderError::malformed("no `calendar` in the answer"))?;
        let amount = details
            .get("slotDuration")
            .map_or(Some(30.0), Value::as_f64)
            .filter(|amount| amount.is_finite() && *amount > 0.0 && *amount <= 24.0 * 60.0)
            .ok_or_else(|| ProviderError::malformed("a calendar `slotDuration`"))?;
        let minutes = match details.get("slotDurationUnit").and_then(Value::as_str) {
            Some("hours") => amount * 60.0,
            _ => amount,
        };
        #[allow(clippy::cast_possible_truncation)]
        let length = TimeDelta::seconds((minutes * 60.0).round() as i64);
        self.slot_lengths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (Instant::now(), length));
        Ok(length)
    }

    async fn slots(&self, tenant: TenantId, query: SlotQuery) -> Result<Vec<Slot>, BookingError> {
        let (account, session) = self.open(tenant).await?;
        let calendar = Self::calendar_id(&account)?;
        let length = self.slot_length(&account, &session, &calendar).await?;
        let mut call = Call::new(
            Method::GET,
            &["calendars", &calendar, "free-slots"],
            CALENDARS,
            "calendar",
        )
        .query("startDate", query.from.timestamp_millis().to_string())
        .query("endDate", query.to.timestamp_millis().to_string())
        .query("timezone", query.zone.name());
        if let Some(user) = &account.user_id {
            call = call.query("userId", user.clone());
        }
        let answer = self.send(&account, &session, &call).await?;
        Ok(wire::free_slot_starts(&answer)?
            .into_iter()
            .map(|starts_at| Slot {
                starts_at,
                ends_at: starts_at + length,
            })
            .filter(|slot| slot.starts_at >= query.from && slot.ends_at <= query.to)
            .take(query.limit)
            .collect())
    }

    /// The contact to book for: the request's, else one upserted from its name and phone or
    /// e-mail.
    async fn booking_contact(
        &self,
        account: &Account,
        session: &Session,
        request: &BookingRequest,
    ) -> Result<ContactId, BookingError> {
        if let Some(contact) = &request.contact {
            return Ok(contact.clone());
        }
        if request.phone.is_none() && request.email.is_none() {
            return Err(BookingError::Invalid(
                "a booking needs the lead's phone or e-mail".to_owned(),
            ));
        }
        let (first_name, last_name) = match request.name.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => match name.split_once(' ') {
                Some((first, last)) => (Some(first.to_owned()), Some(last.trim().to_owned())),
                None => (Some(name.to_owned()), None),
            },
            _ => (None, None),
        };
        let draft = ContactDraft {
            first_name,
            last_name,
            email: request.email.clone(),
            phone: request.phone.clone(),
            timezone: Some(request.zone.name().to_owned()),
            custom_fields: std::collections::BTreeMap::new(),
        };
        let contact = self.upsert(account, session, &draft).await?;
        contact
            .id
            .ok_or_else(|| ProviderError::malformed("an upserted contact without id").into())
    }

    async fn book_slot(&self, request: BookingRequest) -> Result<Booked, BookingError> {
        let (account, session) = self.open(request.tenant).await?;
        let calendar = Self::calendar_id(&account)?;
        let length = self.slot_length(&account, &session, &calendar).await?;
        let contact = self.booking_contact(&account, &session, &request).await?;
        let ends_at = request.starts_at + length;
        let title = match request.name.as_deref() {
            Some(name) if !name.trim().is_empty() => format!("{} (booked by AI)", name.trim()),
            _ => "Appointment (booked by AI)".to_owned(),
        };
        let mut body = json!({
            "calendarId": calendar,
            "locationId": session.location,
            "contactId": contact.as_str(),
            "startTime": local(request.starts_at, request.zone),
            "endTime": local(ends_at, request.zone),
            "title": title,
            "appointmentStatus": "confirmed",
            "ignoreFreeSlotValidation": false,
            "toNotify": true,
        });
        if let Some(notes) = &request.notes {
            body["description"] = json!(notes);
        }
        if let Some(user) = &account.user_id {
            body["assignedUserId"] = json!(user);
        }
        let answer = self
            .send(
                &account,
                &session,
                &Call::new(
                    Method::POST,
                    &["calendars", "events", "appointments"],
                    CALENDARS,
                    "appointment",
                )
                .body(body),
            )
            .await
            .map_err(refused_as_unavailable)?;
        booked(&answer, request.starts_at, ends_at)
    }

    async fn move_appointment(
        &self,
        tenant: TenantId,
        appointment: &str,
        starts_at: DateTime<Utc>,
    ) -> Result<Booked, BookingError> {
        if !wire::is_id(appointment) {
            return Err(BookingError::NotFound);
        }
        let (account, session) = self.open(tenant).await?;
        let calendar = Self::calendar_id(&account)?;
        let length = self.slot_length(&account, &session, &calendar).await?;
        let ends_at = starts_at + length;
        let answer = self
            .send(
                &account,
                &session,
                &Call::new(
                    Method::PUT,
                    &["calendars", "events", "appointments", appointment],
                    CALENDARS,
                    "appointment",
                )
                .body(json!({
                    "calendarId": calendar,
                    "startTime": local(starts_at, account.timezone),
                    "endTime": local(ends_at, account.timezone),
                    "ignoreFreeSlotValidation": false,
                })),
            )
            .await
            .map_err(refused_as_unavailable)?;
        booked(&answer, starts_at, ends_at)
    }

    async fn cancel_appointment(
        &self,
        tenant: TenantId,
        appointment: &str,
    ) -> Result<(), BookingError> {
        if !wire::is_id(appointment) {
            return Err(BookingError::NotFound);
        }
        let (account, session) = self.open(tenant).await?;
        self.send(
            &account,
            &session,
            &Call::new(
                Method::PUT,
                &["calendars", "events", "appointments", appointment],
                CALENDARS,
                "appointment",
            )
            .body(json!({"appointmentStatus": "cancelled"})),
        )
        .await
        .map_err(refused_as_unavailable)?;
        Ok(())
    }
}

/// ISO-8601 with the zone's offset, as HighLevel wants appointment times.
fn local(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone).to_rfc3339()
}

fn booked(
    answer: &Value,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
) -> Result<Booked, BookingError> {
    let answer = wire::appointment(answer)?;
    Ok(Booked {
        appointment_id: answer.id,
        starts_at: answer.starts_at.unwrap_or(starts_at),
        ends_at: answer.ends_at.unwrap_or(ends_at),
    })
}

impl Calendar for GoHighLevel {
    fn free_slots(
        &self,
        tenant: TenantId,
        query: SlotQuery,
    ) -> BoxFuture<'_, Result<Vec<Slot>, BookingError>> {
        Box::pin(async move { self.slots(tenant, query).await })
    }

    fn book(&self, request: BookingRequest) -> BoxFuture<'_, Result<Booked, BookingError>> {
        Box::pin(async move { self.book_slot(request).await })
    }

    fn reschedule<'a>(
        &'a self,
        tenant: TenantId,
        appointment_id: &'a str,
        starts_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Booked, BookingError>> {
        Box::pin(async move {
            self.move_appointment(tenant, appointment_id, starts_at)
                .await
        })
    }

    fn cancel<'a>(
        &'a self,
        tenant: TenantId,
        appointment_id: &'a str,
    ) -> BoxFuture<'a, Result<(), BookingError>> {
        Box::pin(async move { self.cancel_appointment(tenant, appointment_id).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_refusals_are_unavailable_and_unknown_appointments_not_found() {
        let taken = ProviderError::Invalid {
            reason: "The slot you have selected is no longer available.".to_owned(),
        };
        assert!(matches!(
            refused_as_unavailable(taken),
            BookingError::Unavailable(_)
        ));
        let other = ProviderError::Invalid {
            reason: "contactId should not be empty".to_owned(),
        };
        assert!(matches!(
            refused_as_unavailable(other),
            BookingError::Provider(_)
        ));
        let missing = ProviderError::NotFound {
            what: "appointment".to_owned(),
        };
        assert!(matches!(
            refused_as_unavailable(missing),
            BookingError::NotFound
        ));
    }

    #[test]
    fn appointment_times_carry_the_zone_offset() {
        let at = DateTime::parse_from_rfc3339("2025-03-10T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            local(at, chrono_tz::America::Chicago),
            "2025-03-10T09:00:00-05:00"
        );
    }
}
