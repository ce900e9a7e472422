//! The platform's HTTP API as a careful client uses it: every POST carries an
//! `Idempotency-Key` and is repeated with the same key until the platform answers it, and
//! every failed attempt is counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// Per attempt: a killed service or a partitioned node must not hold a journey forever.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub struct Client {
    http: reqwest::Client,
    errors: AtomicU64,
}

/// What a POST finally got: anything but a transport error, a 5xx or a 409 for a request
/// still in progress, which are retried.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// The problem type of an error answer, e.g. `/problems/conflict`.
    pub fn problem_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }
}

impl Client {
    /// A client that sends `OPD_DRILL_TOKEN` (a bearer token with every role the journey needs)
    /// with every request.
    pub fn new() -> anyhow::Result<Self> {
        let token = std::env::var("OPD_DRILL_TOKEN").map_err(|_| {
            anyhow::anyhow!(
                "OPD_DRILL_TOKEN is not set: a bearer token with the roles registrar, clinician \
                 and discharge (scripts/dev.sh token registrar clinician discharge)"
            )
        })?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(ATTEMPT_TIMEOUT)
                .default_headers(headers)
                .build()?,
            errors: AtomicU64::new(0),
        })
    }

    /// Attempts that failed: no answer, a 5xx, or a 409 "still in progress".
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    fn failed(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub async fn post(&self, url: &str, body: &Value) -> Answer {
        let key = uuid::Uuid::new_v4().to_string();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let sent = self
                .http
                .post(url)
                .header("Idempotency-Key", &key)
                .json(body)
                .send()
                .await;
            if let Ok(response) = sent {
                let status = response.status();
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                let answer = Answer { status, body };
                let in_progress = status == StatusCode::CONFLICT
                    && answer.problem_type() == "/problems/request-in-progress";
                if !status.is_server_error() && !in_progress {
                    return answer;
                }
            }
            self.failed();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Every entry of a pending list, following `Link: <…>; rel="next"` pages; None (and one
    /// error counted) if any page could not be read.
    pub async fn list(&self, url: &str) -> Option<Vec<Value>> {
        let mut entries = Vec::new();
        let mut next = Some(url.to_owned());
        while let Some(page) = next.take() {
            let response = match self.http.get(&page).send().await {
                Ok(response) if response.status().is_success() => response,
                _ => {
                    self.failed();
                    return None;
                }
            };
            next = next_page(&page, response.headers());
            match response.json::<Vec<Value>>().await {
                Ok(page) => entries.extend(page),
                Err(_) => {
                    self.failed();
                    return None;
                }
            }
        }
        Some(entries)
    }

    /// GET of a JSON document, retried until it is answered with a 2xx or 404.
    pub async fn get(&self, url: &str) -> Option<Value> {
        let mut backoff = FIRST_BACKOFF;
        for _ in 0..20 {
            match self.http.get(url).send().await {
                Ok(response) if response.status() == StatusCode::NOT_FOUND => return None,
                Ok(response) if response.status().is_success() => {
                    return response.json().await.ok();
                }
                _ => self.failed(),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        None
    }
}

/// The `rel="next"` target of a `Link` header, resolved against the page's URL.
fn next_page(page: &str, headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    let target = link
        .split(',')
        .find(|part| part.contains("rel=\"next\""))?
        .split(';')
        .next()?
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    reqwest::Url::parse(page)
        .ok()?
        .join(target)
        .ok()
        .map(String::from)
}
