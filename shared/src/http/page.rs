//! Pending lists a page at a time. The body stays the book's bare JSON array; when more entries
//! follow, a `Link: <…?limit=N&after=CURSOR>; rel="next"` header (RFC 8288) says where. The
//! default page (100 entries) holds the whole list of a small queue, so the book's walkthrough
//! sees exactly what it always saw.
//!
//! The cursor names the page's last entry, as one non-negative integer: the list's own sort key
//! where that is one number, or else the entry's own number, by which the next page looks up
//! its place in the list's order (inspection's, in day, token and site order). Either way a page
//! never skips or repeats an entry that stays on the list while the client pages through it. A
//! cursor past the end of the list gives an empty page.
//!
//! `?patient=ID` keeps one patient's entries: on a busy day the patient a desk is looking for
//! is far down the list, and paging through it to find them is not what a reader would do.
//!
//! Each list's query is written out where the list lives, all of the same shape
//! (`where <not yet taken> and id > $1 and ($3::bigint is null or patient_id = $3) order by …
//! limit $2`, bound to [`PageRequest`]'s `after`, `fetch()` and `patient_id()`): its table and
//! columns differ, and `sqlx::query_as!` checks a query against the schema only when it is one
//! literal string.

use axum::Json;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::domain::PatientId;
use crate::http::error::ApiError;

pub(crate) const DEFAULT_LIMIT: i64 = 100;
pub(crate) const MAX_LIMIT: i64 = 1000;

/// The query parameters of a paginated list, for the OpenAPI document.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// The most entries to return: 1 to 1000, 100 if absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Where the previous page ended: copy it from that page's `Link: rel="next"` URL.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Only this patient's entries (their national id): where one patient is on a long list.
    #[param(value_type = Option<PatientId>)]
    patient: Option<i64>,
}

/// A page request, parsed.
#[derive(Debug)]
pub struct PageRequest {
    pub limit: i64,
    /// The sort key of the previous page's last entry.
    pub after: Option<i64>,
    /// Only this patient's entries.
    patient: Option<PatientId>,
    path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for PageRequest {
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
        if params.after.is_some_and(|after| after < 0) {
            return Err(ApiError::InvalidQuery(String::from(
                "after must not be negative: copy it from a Link header",
            )));
        }
        let patient = params
            .patient
            .map(PatientId::try_from)
            .transpose()
            .map_err(|error| ApiError::InvalidQuery(format!("patient: {error}")))?;
        Ok(Self {
            limit,
            after: params.after,
            patient,
            path: parts.uri.path().to_owned(),
        })
    }
}

impl PageRequest {
    /// How many rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// The patient filter as the queries take it: `null` for everyone.
    pub fn patient_id(&self) -> Option<i64> {
        self.patient.map(PatientId::get)
    }

    /// The page out of `limit + 1` fetched rows, with a `Link` to the next one if there is one.
    pub fn answer<T>(
        &self,
        mut rows: Vec<T>,
        cursor: impl Fn(&T) -> i64,
    ) -> (HeaderMap, Json<Vec<T>>) {
        let mut headers = HeaderMap::new();
        let page_size = usize::try_from(self.limit).unwrap_or(usize::MAX);
        if rows.len() > page_size {
            rows.truncate(page_size);
            // The next page keeps the filter: it is the same list, further on.
            let filter = self
                .patient
                .map(|patient| format!("&patient={patient}"))
                .unwrap_or_default();
            let next = rows.last().map(|last| {
                format!(
                    "<{}?limit={}{filter}&after={}>; rel=\"next\"",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(limit: i64) -> PageRequest {
        PageRequest {
            limit,
            after: None,
            patient: None,
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
    fn the_next_page_of_one_patient_keeps_the_filter() {
        let request = PageRequest {
            patient: PatientId::try_from(300).ok(),
            ..request(1)
        };
        let (headers, _) = request.answer(vec![10, 11], |row| *row);
        assert_eq!(
            headers.get(header::LINK).map(HeaderValue::as_bytes),
            Some(&b"</opd/x/pending?limit=1&patient=300&after=10>; rel=\"next\""[..])
        );
    }

    #[test]
    fn the_last_page_has_no_link() {
        let (headers, Json(rows)) = request(2).answer(vec![10, 11], |row| *row);
        assert_eq!(rows, vec![10, 11]);
        assert!(headers.get(header::LINK).is_none());
    }
}
