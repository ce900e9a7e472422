//! Pending lists a page at a time. The body stays the book's bare JSON array; when more entries
//! follow, a `Link: <…?limit=N&after=CURSOR>; rel="next"` header (RFC 8288) says where. The
//! default page (100 entries) holds the whole list of a small queue, so the book's walkthrough
//! sees exactly what it always saw.
//!
//! The cursor is the list's own sort key of the page's last entry, so a page never skips or
//! repeats an entry that stays on the list while the client pages through it.

use std::fmt::Display;
use std::str::FromStr;

use axum::Json;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// The query parameters of a paginated list, for the OpenAPI document.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// The most entries to return: 1 to 1000, 100 if absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Where the previous page ended: copy it from that page's `Link: rel="next"` URL.
    after: Option<String>,
}

/// A page request, parsed: `after` is the list's sort key of type `C`.
#[derive(Debug)]
pub struct PageRequest<C> {
    pub limit: i64,
    pub after: Option<C>,
    path: String,
}

impl<C, S> FromRequestParts<S> for PageRequest<C>
where
    C: FromStr + Send,
    C::Err: Display,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Query(params) = Query::<PageParams>::try_from_uri(&parts.uri)
            .map_err(|rejection| ApiError::InvalidQuery(rejection.body_text()))?;
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::InvalidQuery(format!(
                "limit must be 1 to {MAX_LIMIT}, not {limit}"
            )));
        }
        let after = params
            .after
            .map(|text| {
                text.parse().map_err(|error: C::Err| {
                    ApiError::InvalidQuery(format!("after {text:?} is not a cursor: {error}"))
                })
            })
            .transpose()?;
        Ok(Self {
            limit,
            after,
            path: parts.uri.path().to_owned(),
        })
    }
}

impl<C> PageRequest<C> {
    /// How many rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// The page out of `limit + 1` fetched rows, with a `Link` to the next one if there is one.
    pub fn answer<T, K: Display>(
        &self,
        mut rows: Vec<T>,
        cursor: impl Fn(&T) -> K,
    ) -> (HeaderMap, Json<Vec<T>>) {
        let mut headers = HeaderMap::new();
        let page_size = usize::try_from(self.limit).unwrap_or(usize::MAX);
        if rows.len() > page_size {
            rows.truncate(page_size);
            let next = rows.last().map(|last| {
                format!(
                    "<{}?limit={}&after={}>; rel=\"next\"",
                    self.path,
                    self.limit,
                    cursor(last)
                )
            });
            if let Some(value) = next.and_then(|next| HeaderValue::from_str(&next).ok()) {
                headers.insert(header::LINK, value);
            }
        }
        (headers, Json(rows))
    }
}

/// The sort key of a list kept in day and token order (inspection's): `2026-11-22.15`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayToken {
    pub day: chrono::NaiveDate,
    pub token: i64,
}

impl FromStr for DayToken {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (day, token) = text
            .split_once('.')
            .ok_or_else(|| String::from("expected DAY.TOKEN, e.g. 2026-11-22.15"))?;
        Ok(Self {
            day: day.parse().map_err(|error| format!("{day:?}: {error}"))?,
            token: token
                .parse()
                .map_err(|error| format!("{token:?}: {error}"))?,
        })
    }
}

impl Display for DayToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.day, self.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(limit: i64) -> PageRequest<i64> {
        PageRequest {
            limit,
            after: None,
            path: String::from("/opd/x/pending"),
        }
    }

    #[test]
    fn a_full_page_links_to_the_next_from_its_last_entry() {
        let (headers, Json(rows)) = request(2).answer(vec![10, 11, 12], |row| *row);
        assert_eq!(rows, vec![10, 11]);
        assert_eq!(
            headers.get(header::LINK).map(HeaderValue::as_bytes),
            Some(&b"</opd/x/pending?limit=2&after=11>; rel=\"next\""[..])
        );
    }

    #[test]
    fn the_last_page_has_no_link() {
        let (headers, Json(rows)) = request(2).answer(vec![10, 11], |row| *row);
        assert_eq!(rows, vec![10, 11]);
        assert!(headers.get(header::LINK).is_none());
    }

    #[test]
    fn a_day_and_token_cursor_round_trips_and_refuses_garbage() -> Result<(), String> {
        let cursor: DayToken = "2026-11-22.15".parse()?;
        assert_eq!(cursor.to_string(), "2026-11-22.15");
        assert!("2026-11-22".parse::<DayToken>().is_err());
        assert!("yesterday.3".parse::<DayToken>().is_err());
        Ok(())
    }
}
