//! The WebDAV/CalDAV wire format: REPORT bodies and the reading of their answers.
//!
//! - `free-busy-query` (RFC 4791 §7.10) answers 200 `text/calendar` with a VFREEBUSY. The
//!   `Content-Type` is read leniently (Radicale 3.9 repeats `charset=utf-8`; a body that
//!   starts with `BEGIN:VCALENDAR` is accepted whatever the header says).
//! - A 207 Multi-Status to a free-busy-query (Radicale 3.1.8's bug), or a refusal of the
//!   report, means: ask with a `calendar-query` over the same range instead.
//! - `calendar-query` answers 207 with each object's `href`, `getetag` and `calendar-data`,
//!   read with a namespace-agnostic XML reader (prefixes differ between servers).

use chrono::{DateTime, Utc};
use quick_xml::Reader;
use quick_xml::events::Event;

/// Returns the body of a `free-busy-query` REPORT over `[start, end)`.
pub(crate) fn free_busy_query(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <C:free-busy-query xmlns:C=\"urn:ietf:params:xml:ns:caldav\">\
         <C:time-range start=\"{}\" end=\"{}\"/></C:free-busy-query>",
        utc(start),
        utc(end)
    )
}

/// Returns the body of a `calendar-query` REPORT for the VEVENTs overlapping `[start, end)`,
/// asking the server to expand recurrences into instances in UTC (RFC 4791 §9.6.5).
pub(crate) fn calendar_query(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let (start, end) = (utc(start), utc(end));
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <C:calendar-query xmlns:D=\"DAV:\" xmlns:C=\"urn:ietf:params:xml:ns:caldav\">\
         <D:prop><D:getetag/><C:calendar-data><C:expand start=\"{start}\" end=\"{end}\"/>\
         </C:calendar-data></D:prop>\
         <C:filter><C:comp-filter name=\"VCALENDAR\"><C:comp-filter name=\"VEVENT\">\
         <C:time-range start=\"{start}\" end=\"{end}\"/>\
         </C:comp-filter></C:comp-filter></C:filter></C:calendar-query>"
    )
}

/// Returns the body of a `MKCALENDAR` (used by tests and by operators creating collections).
#[must_use]
pub fn mkcalendar() -> &'static str {
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
     <C:mkcalendar xmlns:D=\"DAV:\" xmlns:C=\"urn:ietf:params:xml:ns:caldav\"/>"
}

fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// What a free-busy-query's answer means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FreeBusyAnswer {
    /// A VFREEBUSY to read.
    Calendar(String),
    /// The server does not answer free-busy properly: ask with a calendar-query.
    UseCalendarQuery,
    /// An error status, to classify.
    Failed,
}

/// Classifies a free-busy-query's answer by status, `Content-Type` and body.
pub(crate) fn free_busy_answer(
    status: u16,
    content_type: Option<&str>,
    body: &str,
) -> FreeBusyAnswer {
    let calendar_type = content_type.is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/calendar"))
    });
    let looks_like_calendar = body.trim_start().starts_with("BEGIN:VCALENDAR");
    match status {
        200 if calendar_type || looks_like_calendar => FreeBusyAnswer::Calendar(body.to_owned()),
        // 207: Radicale 3.1.8 lists hrefs instead; 200 with XML is the same mistake. 400, 403,
        // 405, 415, 422 and 501: servers that do not offer the report (or the privilege).
        200 | 207 | 400 | 403 | 405 | 415 | 422 | 501 => FreeBusyAnswer::UseCalendarQuery,
        _ => FreeBusyAnswer::Failed,
    }
}

/// One `response` of a Multi-Status answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DavObject {
    /// The resource's path.
    pub(crate) href: String,
    /// Its ETag, quotes included, when given.
    pub(crate) etag: Option<String>,
    /// Its iCalendar text, when given.
    pub(crate) calendar_data: Option<String>,
}

/// Reads a Multi-Status body. Malformed XML is an error (never a panic); unknown elements are
/// skipped.
pub(crate) fn multistatus(body: &str) -> Result<Vec<DavObject>, String> {
    let mut reader = Reader::from_str(body);
    let mut objects = Vec::new();
    let mut current: Option<DavObject> = None;
    // The innermost element whose text we keep, and the text so far.
    let mut capturing: Option<&'static str> = None;
    let mut text = String::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|error| format!("unreadable multistatus xml: {error}"))?;
        match event {
            Event::Start(element) => match element.local_name().as_ref() {
                b"response" => current = Some(DavObject::default()),
                b"href" if current.is_some() => start_capture(&mut capturing, &mut text, "href"),
                b"getetag" if current.is_some() => start_capture(&mut capturing, &mut text, "etag"),
                b"calendar-data" if current.is_some() => {
                    start_capture(&mut capturing, &mut text, "data");
                }
                _ => {}
            },
            Event::End(element) => {
                let name = element.local_name();
                let field = match name.as_ref() {
                    b"href" => Some("href"),
                    b"getetag" => Some("etag"),
                    b"calendar-data" => Some("data"),
                    b"response" => {
                        if let Some(object) = current.take() {
                            objects.push(object);
                        }
                        None
                    }
                    _ => None,
                };
                if let (Some(field), Some(object)) = (field, current.as_mut())
                    && capturing == Some(field)
                {
                    let value = std::mem::take(&mut text);
                    match field {
                        "href" if object.href.is_empty() => object.href = value.trim().to_owned(),
                        "etag" => object.etag = Some(value.trim().to_owned()),
                        "data" => object.calendar_data = Some(value),
                        _ => {}
                    }
                    capturing = None;
                }
            }
            Event::Text(content) if capturing.is_some() => {
                let decoded = content
                    .xml10_content()
                    .map_err(|error| format!("undecodable multistatus text: {error}"))?;
                text.push_str(&decoded);
            }
            Event::CData(content) if capturing.is_some() => {
                let decoded = content
                    .decode()
                    .map_err(|error| format!("undecodable multistatus text: {error}"))?;
                text.push_str(&decoded);
            }
            Event::GeneralRef(reference) if capturing.is_some() => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    Ok(None) => match reference.decode().as_deref() {
                        Ok("lt") => Some('<'),
                        Ok("gt") => Some('>'),
                        Ok("amp") => Some('&'),
                        Ok("quot") => Some('"'),
                        Ok("apos") => Some('\''),
                        _ => None,
                    },
                    Err(_) => None,
                };
                let c = resolved.ok_or_else(|| "unknown entity in multistatus".to_owned())?;
                text.push(c);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(objects)
}

fn start_capture(capturing: &mut Option<&'static str>, text: &mut String, field: &'static str) {
    *capturing = Some(field);
    text.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vfreebusy_is_read_whatever_the_charset_says() {
        let body = "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n";
        for content_type in [
            Some("text/calendar; charset=utf-8; charset=utf-8"),
            Some("TEXT/CALENDAR"),
            Some("text/plain"),
            None,
        ] {
            assert_eq!(
                free_busy_answer(200, content_type, body),
                FreeBusyAnswer::Calendar(body.to_owned()),
                "{content_type:?}"
            );
        }
    }

    #[test]
    fn a_multistatus_to_free_busy_falls_back_to_a_calendar_query() {
        // Radicale 3.1.8's answer to a free-busy-query.
        let listing = "<?xml version='1.0' encoding='utf-8'?>\n<multistatus xmlns=\"DAV:\">\
            <response><href>/alice/sales/a1.ics</href><propstat><prop/>\
            <status>HTTP/1.1 200 OK</status></propstat></response></multistatus>";
        assert_eq!(
            free_busy_answer(207, Some("text/xml; charset=utf-8"), listing),
            FreeBusyAnswer::UseCalendarQuery
        );
        assert_eq!(
            free_busy_answer(200, Some("text/xml"), listing),
            FreeBusyAnswer::UseCalendarQuery
        );
        assert_eq!(
            free_busy_answer(501, None, ""),
            FreeBusyAnswer::UseCalendarQuery
        );
        assert_eq!(free_busy_answer(401, None, ""), FreeBusyAnswer::Failed);
        assert_eq!(free_busy_answer(503, None, ""), FreeBusyAnswer::Failed);
    }

    #[test]
    fn calendar_query_answers_are_read_with_any_prefixes() {
        let body = "<?xml version='1.0' encoding='utf-8'?>\n\
            <d:multistatus xmlns:d=\"DAV:\" xmlns:cal=\"urn:ietf:params:xml:ns:caldav\">\
            <d:response><d:href>/alice/sales/a1.ics</d:href><d:propstat><d:prop>\
            <d:getetag>&quot;abc&quot;</d:getetag>\
            <cal:calendar-data>BEGIN:VCALENDAR&#13;\nBEGIN:VEVENT&#13;\nUID:a1&#13;\n\
            SUMMARY:Tom &amp; Jerry&#13;\nEND:VEVENT&#13;\nEND:VCALENDAR&#13;\n</cal:calendar-data>\
            </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>\
            <response xmlns=\"DAV:\"><href>/alice/sales/b2.ics</href><propstat><prop>\
            <getetag>\"def\"</getetag><calendar-data xmlns=\"urn:ietf:params:xml:ns:caldav\">\
            <![CDATA[BEGIN:VCALENDAR\nEND:VCALENDAR]]></calendar-data></prop></propstat></response>\
            </d:multistatus>";
        let objects = multistatus(body).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].href, "/alice/sales/a1.ics");
        assert_eq!(objects[0].etag.as_deref(), Some("\"abc\""));
        let data = objects[0].calendar_data.as_deref().unwrap();
        assert!(data.contains("SUMMARY:Tom & Jerry\r\n"), "{data:?}");
        assert_eq!(objects[1].etag.as_deref(), Some("\"def\""));
        assert_eq!(
            objects[1].calendar_data.as_deref(),
            Some("BEGIN:VCALENDAR\nEND:VCALENDAR")
        );
    }

    #[test]
    fn malformed_xml_is_an_error_not_a_panic() {
        for body in [
            "<multistatus><response><href>x</hre></response>",
            "<multistatus><response><href>&bogus;</href></response></multistatus>",
        ] {
            assert!(multistatus(body).is_err(), "{body}");
        }
        assert_eq!(multistatus("").unwrap(), Vec::new());
        assert_eq!(multistatus("not xml at all").unwrap(), Vec::new());
    }
}
