//! Zoho Bookings as a [`Calendar`] (`shared/protocols/crm-calendar.md` B.7). There is no
//! official machine-readable spec of this API: paths and shapes follow Zoho's help pages
//! and the protocol notes, and what is UNCONFIRMED there is read leniently here.
//!
//! - Slots: `GET {api_domain}/bookings/v1/json/availableslots?service_id=&staff_id=&selected_date=dd-MMM-yyyy`,
//!   one request per local day of the range, in the workspace's zone (`providers.zoho.bookings.time_zone`,
//!   or the `time_zone` the answer names). `returnvalue.reponse` (sic) false, or a `data`
//!   that is not a list, means no slots. A slot lasts `slot_minutes` (default 30): the
//!   answer has start times only.
//! - Book: `POST appointment`, `multipart/form-data`: `service_id`, `staff_id`,
//!   `from_time=dd-MMM-yyyy HH:mm:ss` and `timezone`, both in the workspace's zone (so what
//!   we send is consistent whatever Bookings does with the customer's zone), and
//!   `customer_details` as a JSON string.
//! - Reschedule: `POST rescheduleappointment` (`booking_id`, `start_time`, `staff_id`);
//!   cancel: `POST updateappointment` (`booking_id`, `action=cancel`). Both endpoints are
//!   UNCONFIRMED in the protocol notes; they are the ones Zoho's Bookings API help lists
//!   ("Reschedule Appointment", "Update Appointment").
//! - Before booking or rescheduling, the slot is checked against `availableslots`: Bookings'
//!   conflict answer is UNCONFIRMED, and a time that is not offered is
//!   [`BookingError::Unavailable`] whatever Bookings would have said.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use futures::future::BoxFuture;
use reqwest::Method;
use serde_json::{Value, json};

use super::api::{Request, ZohoApi};
use super::settings::{BookingsSettings, TenantZoho};
use super::wire;
use crate::booking::{Booked, BookingError, BookingRequest, Calendar, Slot, SlotQuery};
use crate::crypto::Keyring;
use crate::ids::TenantId;
use crate::settings::ZohoSettings;
use crate::store::Store;
use crate::tenancy::directory::Directory;

/// Zoho Bookings, shared by every tenant that books through it.
#[derive(Debug, Clone)]
pub struct ZohoBookings {
    api: ZohoApi,
}

impl ZohoBookings {
    /// Builds the calendar (same arguments as [`super::Zoho::new`]).
    #[must_use]
    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        directory: Directory,
        settings: ZohoSettings,
    ) -> Self {
        Self::from_api(ZohoApi::new(store, keyring, directory, settings))
    }

    pub(crate) fn from_api(api: ZohoApi) -> Self {
        Self { api }
    }

    async fn settings(
        &self,
        tenant: TenantId,
    ) -> Result<(TenantZoho, BookingsSettings), BookingError> {
        let settings = self.api.tenant(tenant).await?;
        let bookings = settings.bookings()?.clone();
        Ok((settings, bookings))
    }

    /// The start times offered on `date`, as instants, earliest first.
    async fn offered(
        &self,
        tenant: TenantId,
        settings: &TenantZoho,
        bookings: &BookingsSettings,
        date: NaiveDate,
    ) -> Result<Vec<DateTime<Utc>>, BookingError> {
        let request = Request::new(Method::GET, &["bookings", "v1", "json", "availableslots"])
            .query("service_id", &bookings.service_id)
            .query("staff_id", &bookings.staff_id)
            .query("selected_date", wire::bookings_date(date));
        let answer = self.api.send(tenant, settings, "service", &request).await?;
        let returned = match wire::bookings_answer(answer.body.as_ref())? {
            Ok(returned) => returned,
            Err(message) => {
                return match wire::bookings_failure(&message) {
                    // "no slots that day" may come as a failure too
                    BookingError::Unavailable(_) => Ok(Vec::new()),
                    other => Err(other),
                };
            }
        };
        let zone = returned
            .get("time_zone")
            .and_then(Value::as_str)
            .and_then(|zone| zone.parse::<Tz>().ok())
            .unwrap_or(bookings.time_zone);
        Ok(wire::offered_times(returned)
            .into_iter()
            .filter_map(|time| wire::instant(zone, date.and_time(time)))
            .collect())
    }

    /// Refuses a start that `availableslots` does not offer.
    async fn ensure_offered(
        &self,
        tenant: TenantId,
        settings: &TenantZoho,
        bookings: &BookingsSettings,
        starts_at: DateTime<Utc>,
    ) -> Result<(), BookingError> {
        let date = starts_at.with_timezone(&bookings.time_zone).date_naive();
        let offered = self.offered(tenant, settings, bookings, date).await?;
        if offered.contains(&starts_at) {
            Ok(())
        } else {
            Err(BookingError::Unavailable(
                "zoho bookings does not offer that time".to_owned(),
            ))
        }
    }

    /// Sends a form to a Bookings endpoint; returns its `returnvalue`.
    async fn post(
        &self,
        tenant: TenantId,
        settings: &TenantZoho,
        endpoint: &str,
        fields: Vec<(String, String)>,
    ) -> Result<Value, BookingError> {
        let request =
            Request::new(Method::POST, &["bookings", "v1", "json", endpoint]).form(fields);
        let answer = self
            .api
            .send(tenant, settings, "appointment", &request)
            .await?;
        match wire::bookings_answer(answer.body.as_ref())? {
            Ok(returned) => Ok(returned.clone()),
            Err(message) => Err(wire::bookings_failure(&message)),
        }
    }

    async fn free(&self, tenant: TenantId, query: SlotQuery) -> Result<Vec<Slot>, BookingError> {
        let (settings, bookings) = self.settings(tenant).await?;
        let length = TimeDelta::minutes(i64::from(bookings.slot_minutes));
        let zone = bookings.time_zone;
        let mut date = query.from.with_timezone(&zone).date_naive();
        let last = query.to.with_timezone(&zone).date_naive();
        let mut slots = Vec::new();
        while date <= last && slots.len() < query.limit {
            for starts_at in self.offered(tenant, &settings, &bookings, date).await? {
                if starts_at >= query.from && starts_at < query.to && slots.len() < query.limit {
                    slots.push(Slot {
                        starts_at,
                        ends_at: starts_at + length,
                    });
                }
            }
            let Some(next) = date.succ_opt() else { break };
            date = next;
        }
        slots.sort_by_key(|slot| slot.starts_at);
        slots.dedup();
        Ok(slots)
    }

    async fn create(&self, request: BookingRequest) -> Result<Booked, BookingError> {
        let tenant = request.tenant;
        let (settings, bookings) = self.settings(tenant).await?;
        self.ensure_offered(tenant, &settings, &bookings, request.starts_at)
            .await?;
        let local = request
            .starts_at
            .with_timezone(&bookings.time_zone)
            .naive_local();
        let mut customer =
            json!({"name": request.name.clone().unwrap_or_else(|| "Caller".to_owned())});
        if let Some(email) = &request.email {
            customer["email"] = json!(email);
        }
        if let Some(phone) = &request.phone {
            customer["phone_number"] = json!(phone.as_str());
        }
        let mut fields = vec![
            ("service_id".to_owned(), bookings.service_id.clone()),
            ("staff_id".to_owned(), bookings.staff_id.clone()),
            ("from_time".to_owned(), wire::bookings_time(local)),
            ("timezone".to_owned(), bookings.time_zone.name().to_owned()),
            ("customer_details".to_owned(), customer.to_string()),
        ];
        if let Some(notes) = &request.notes {
            fields.push(("notes".to_owned(), notes.clone()));
        }
        let returned = self.post(tenant, &settings, "appointment", fields).await?;
        booked(&returned, request.starts_at, &bookings)
    }

    async fn moved(
        &self,
        tenant: TenantId,
        appointment_id: &str,
        starts_at: DateTime<Utc>,
    ) -> Result<Booked, BookingError> {
        check_id(appointment_id)?;
        let (settings, bookings) = self.settings(tenant).await?;
        self.ensure_offered(tenant, &settings, &bookings, starts_at)
            .await?;
        let local = starts_at.with_timezone(&bookings.time_zone).naive_local();
        let fields = vec![
            ("booking_id".to_owned(), appointment_id.to_owned()),
            ("staff_id".to_owned(), bookings.staff_id.clone()),
            ("start_time".to_owned(), wire::bookings_time(local)),
        ];
        let returned = self
            .post(tenant, &settings, "rescheduleappointment", fields)
            .await?;
        let mut booked = booked(&returned, starts_at, &bookings)?;
        // Rescheduling keeps the booking; an answer without its id still means this one.
        if booked.appointment_id.is_empty() {
            appointment_id.clone_into(&mut booked.appointment_id);
        }
        Ok(booked)
    }

    async fn cancelled(&self, tenant: TenantId, appointment_id: &str) -> Result<(), BookingError> {
        check_id(appointment_id)?;
        let (settings, _) = self.settings(tenant).await?;
        let fields = vec![
            ("booking_id".to_owned(), appointment_id.to_owned()),
            ("action".to_owned(), "cancel".to_owned()),
        ];
        self.post(tenant, &settings, "updateappointment", fields)
            .await
            .map(|_| ())
    }
}

/// Ids we could have been given by Bookings; anything else cannot exist there.
fn check_id(appointment_id: &str) -> Result<(), BookingError> {
    let plausible = (1..=64).contains(&appointment_id.len())
        && appointment_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '#'));
    if plausible {
        Ok(())
    } else {
        Err(BookingError::NotFound)
    }
}

/// Reads a booking answer: `booking_id` (text or number), `end_time` when readable.
fn booked(
    returned: &Value,
    starts_at: DateTime<Utc>,
    bookings: &BookingsSettings,
) -> Result<Booked, BookingError> {
    let appointment_id = match returned.get("booking_id") {
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        None => String::new(),
        Some(_) => {
            return Err(crate::crm::ProviderError::malformed("a booking id of an odd type").into());
        }
    };
    let zone = returned
        .get("time_zone")
        .and_then(Value::as_str)
        .and_then(|zone| zone.parse::<Tz>().ok())
        .unwrap_or(bookings.time_zone);
    let ends_at = returned
        .get("end_time")
        .and_then(Value::as_str)
        .and_then(wire::parse_bookings_time)
        .and_then(|local| wire::instant(zone, local))
        .filter(|end| *end > starts_at)
        .unwrap_or(starts_at + TimeDelta::minutes(i64::from(bookings.slot_minutes)));
    Ok(Booked {
        appointment_id,
        starts_at,
        ends_at,
    })
}

impl Calendar for ZohoBookings {
    fn free_slots(
        &self,
        tenant: TenantId,
        query: SlotQuery,
    ) -> BoxFuture<'_, Result<Vec<Slot>, BookingError>> {
        Box::pin(self.free(tenant, query))
    }

    fn book(&self, request: BookingRequest) -> BoxFuture<'_, Result<Booked, BookingError>> {
        Box::pin(async move {
            let booked = self.create(request).await?;
            if booked.appointment_id.is_empty() {
                return Err(crate::crm::ProviderError::malformed("a booking without an id").into());
            }
            Ok(booked)
        })
    }

    fn reschedule<'a>(
        &'a self,
        tenant: TenantId,
        appointment_id: &'a str,
        starts_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Booked, BookingError>> {
        Box::pin(self.moved(tenant, appointment_id, starts_at))
    }

    fn cancel<'a>(
        &'a self,
        tenant: TenantId,
        appointment_id: &'a str,
    ) -> BoxFuture<'a, Result<(), BookingError>> {
        Box::pin(self.cancelled(tenant, appointment_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;

    fn settings() -> BookingsSettings {
        BookingsSettings {
            service_id: "1".to_owned(),
            staff_id: "2".to_owned(),
            time_zone: chrono_tz::America::Chicago,
            slot_minutes: 30,
        }
    }

    #[test]
    fn a_booking_answer_gives_the_id_and_the_end_in_the_workspace_zone() {
        let start = wire::instant(
            chrono_tz::America::Chicago,
            NaiveDate::from_ymd_opt(2025, 3, 10)
                .unwrap()
                .and_time(NaiveTime::from_hms_opt(9, 0, 0).unwrap()),
        )
        .unwrap();
        let answer = json!({"booking_id": "#BK-1001", "end_time": "10-Mar-2025 10:00:00",
            "time_zone": "America/Chicago"});
        let booked = booked(&answer, start, &settings()).unwrap();
        assert_eq!(booked.appointment_id, "#BK-1001");
        assert_eq!(booked.ends_at - booked.starts_at, TimeDelta::hours(1));
        let numeric = super::booked(&json!({"booking_id": 7}), start, &settings()).unwrap();
        assert_eq!(numeric.appointment_id, "7");
        assert_eq!(numeric.ends_at - start, TimeDelta::minutes(30));
        assert!(super::booked(&json!({"booking_id": []}), start, &settings()).is_err());
    }

    #[test]
    fn appointment_ids_that_cannot_exist_are_not_found_without_asking() {
        assert!(check_id("#BK-1001_a").is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            assert!(
                matches!(check_id(bad), Err(BookingError::NotFound)),
                "{bad}"
            );
        }
    }
}
