//! `GET /2010-04-01/Accounts/{AccountSid}/Calls.json`: the calls, newest first, filtered and
//! paged as the spec's `ListCall` operation describes.
//!
//! - Filters: `To`, `From`, `ParentCallSid` (the simulator's calls have no parent), `Status`,
//!   and the dates `StartTime`, `StartTime<`, `StartTime>`, `EndTime`, `EndTime<`,
//!   `EndTime>`. A date is `YYYY-MM-DD` in UTC (a longer value is read by its date, and
//!   `MM/DD/YYYY` is accepted, like the spec's "fun date formats" example): `=` is that day,
//!   `<` before it, `>` on or after it. A call not dialed yet is dated by its creation.
//! - Paging: `PageSize` (default 50, at most 1000; larger is capped), `Page` (client state),
//!   `PageToken` (`PA<sid>`: the calls older than that call; `PB<sid>`: the page before it).
//!   Without a token, `Page` is an offset in pages. `next_page_uri` is null on the last page.
//!
//! UNCONFIRMED: the answer to a malformed date, `PageSize`, `Page` or `PageToken` (here 400 with
//! code 20001), and capping rather than refusing a `PageSize` above 1000.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde_json::json;

use super::callback::form_encode;
use super::rest::{call_resource, twilio_error};
use super::{Book, SimCall, TwilioSimState};

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;

/// The query parameters that filter, echoed in every page URI.
const FILTERS: [&str; 10] = [
    "To",
    "From",
    "ParentCallSid",
    "Status",
    "StartTime",
    "StartTime<",
    "StartTime>",
    "EndTime",
    "EndTime<",
    "EndTime>",
];

pub(super) async fn list_calls(
    State(state): State<TwilioSimState>,
    Path(account): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let path = format!("/2010-04-01/Accounts/{account}/Calls.json");
    if let Some(refusal) = state.gate(&account, &headers, &path) {
        return refusal;
    }
    let params = crate::http::form::parse(query.unwrap_or_default().as_bytes());
    let query = match ListQuery::parse(&params) {
        Ok(query) => query,
        Err(field) => {
            let message = format!("Invalid value for {field}");
            return twilio_error(StatusCode::BAD_REQUEST, 20001, &message);
        }
    };
    let Some((calls, more)) = select(&state.book(), &query) else {
        return twilio_error(StatusCode::BAD_REQUEST, 20001, "Invalid PageToken");
    };
    let uri = |page: usize, token: Option<String>| {
        let mut pairs = query.filters.clone();
        pairs.push(("PageSize".to_owned(), query.page_size.to_string()));
        pairs.push(("Page".to_owned(), page.to_string()));
        pairs.extend(token.map(|token| ("PageToken".to_owned(), token)));
        format!("{path}?{}", form_encode(&pairs))
    };
    let start = query.page.saturating_mul(query.page_size);
    let end = (start + calls.len()).saturating_sub(1).max(start);
    let next = calls
        .last()
        .filter(|_| more)
        .map(|last| uri(query.page + 1, Some(format!("PA{}", last.sid))));
    let previous = calls
        .first()
        .filter(|_| query.page > 0)
        .map(|first| uri(query.page - 1, Some(format!("PB{}", first.sid))));
    let resources: Vec<_> = calls
        .iter()
        .map(|call| call_resource(&state.account_sid, call))
        .collect();
    Json(json!({
        "calls": resources,
        "end": end,
        "first_page_uri": uri(0, None),
        "next_page_uri": next,
        "page": query.page,
        "page_size": query.page_size,
        "previous_page_uri": previous,
        "start": start,
        "uri": uri(query.page, query.token.as_ref().map(PageToken::text)),
    }))
    .into_response()
}

/// The calls of the requested page, newest first, and whether older ones match too; `None`
/// when the page token names no call.
fn select(book: &Book, query: &ListQuery) -> Option<(Vec<SimCall>, bool)> {
    let arrival = |sid: &str| book.controls.get(sid).map(|control| control.arrival);
    let mut matching: Vec<(usize, &SimCall)> = book
        .calls
        .values()
        .filter(|call| query.admits(call))
        .filter_map(|call| Some((arrival(&call.sid)?, call)))
        .collect();
    matching.sort_by_key(|(order, _)| std::cmp::Reverse(*order));
    let size = query.page_size;
    let (begin, end) = match &query.token {
        Some(PageToken::After(sid)) => {
            let anchor = arrival(sid)?;
            let begin = matching.partition_point(|(order, _)| *order >= anchor);
            (begin, begin.saturating_add(size).min(matching.len()))
        }
        Some(PageToken::Before(sid)) => {
            let anchor = arrival(sid)?;
            let end = matching.partition_point(|(order, _)| *order > anchor);
            (end.saturating_sub(size), end)
        }
        None => {
            let begin = query.page.saturating_mul(size).min(matching.len());
            (begin, begin.saturating_add(size).min(matching.len()))
        }
    };
    let page = matching[begin..end]
        .iter()
        .map(|(_, call)| (*call).clone())
        .collect();
    Some((page, end < matching.len()))
}

enum PageToken {
    /// `PA<sid>`: the calls older than `sid`.
    After(String),
    /// `PB<sid>`: the page of calls just newer than `sid`.
    Before(String),
}

impl PageToken {
    fn parse(text: &str) -> Option<Self> {
        if let Some(sid) = text.strip_prefix("PA") {
            return Some(Self::After(sid.to_owned()));
        }
        text.strip_prefix("PB")
            .map(|sid| Self::Before(sid.to_owned()))
    }

    fn text(&self) -> String {
        match self {
            Self::After(sid) => format!("PA{sid}"),
            Self::Before(sid) => format!("PB{sid}"),
        }
    }
}

/// A date filter: on a day, before a day, on or after a day.
#[derive(Default)]
struct Dates {
    on: Option<NaiveDate>,
    before: Option<NaiveDate>,
    from: Option<NaiveDate>,
}

impl Dates {
    fn admits(&self, date: Option<NaiveDate>) -> bool {
        if self.on.is_none() && self.before.is_none() && self.from.is_none() {
            return true;
        }
        let Some(date) = date else {
            return false;
        };
        self.on.is_none_or(|on| date == on)
            && self.before.is_none_or(|before| date < before)
            && self.from.is_none_or(|from| date >= from)
    }
}

struct ListQuery {
    /// The filters as given, in order, for the page URIs.
    filters: Vec<(String, String)>,
    to: Option<String>,
    from: Option<String>,
    parent: Option<String>,
    status: Option<String>,
    started: Dates,
    ended: Dates,
    page_size: usize,
    page: usize,
    token: Option<PageToken>,
}

impl ListQuery {
    /// Reads the query; `Err` names the parameter whose value is malformed.
    fn parse(params: &[(String, String)]) -> Result<Self, &'static str> {
        let mut query = Self {
            filters: Vec::new(),
            to: None,
            from: None,
            parent: None,
            status: None,
            started: Dates::default(),
            ended: Dates::default(),
            page_size: DEFAULT_PAGE_SIZE,
            page: 0,
            token: None,
        };
        for (name, value) in params {
            if let Some(known) = FILTERS.iter().find(|filter| *filter == name) {
                query.filters.push((name.clone(), value.clone()));
                query.filter(known, value)?;
                continue;
            }
            match name.as_str() {
                "PageSize" => {
                    let size: usize = value.parse().map_err(|_| "PageSize")?;
                    if size == 0 {
                        return Err("PageSize");
                    }
                    query.page_size = size.min(MAX_PAGE_SIZE);
                }
                "Page" => query.page = value.parse().map_err(|_| "Page")?,
                "PageToken" => query.token = Some(PageToken::parse(value).ok_or("PageToken")?),
                _ => {}
            }
        }
        Ok(query)
    }

    fn filter(&mut self, name: &'static str, value: &str) -> Result<(), &'static str> {
        let date = || parse_date(value).ok_or(name);
        match name {
            "To" => self.to = Some(value.to_owned()),
            "From" => self.from = Some(value.to_owned()),
            "ParentCallSid" => self.parent = Some(value.to_owned()),
            "Status" => self.status = Some(value.to_owned()),
            "StartTime" => self.started.on = Some(date()?),
            "StartTime<" => self.started.before = Some(date()?),
            "StartTime>" => self.started.from = Some(date()?),
            "EndTime" => self.ended.on = Some(date()?),
            "EndTime<" => self.ended.before = Some(date()?),
            "EndTime>" => self.ended.from = Some(date()?),
            _ => {}
        }
        Ok(())
    }

    fn admits(&self, call: &SimCall) -> bool {
        let same =
            |wanted: &Option<String>, actual: &str| wanted.as_deref().is_none_or(|w| w == actual);
        let started = call.started_at.unwrap_or(call.created_at).date_naive();
        same(&self.to, &call.to)
            && same(&self.from, &call.from)
            && self.parent.is_none()
            && same(&self.status, &call.status)
            && self.started.admits(Some(started))
            && self
                .ended
                .admits(call.ended_at.map(|ended| ended.date_naive()))
    }
}

/// Reads the date a filter value starts with: `YYYY-MM-DD…` or `MM/DD/YYYY…`.
fn parse_date(value: &str) -> Option<NaiveDate> {
    let head = value.trim().get(..10)?;
    NaiveDate::parse_from_str(head, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(head, "%m/%d/%Y"))
        .ok()
}
