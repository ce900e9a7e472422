//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format.
//!
//! Each service instance keeps a registry of its own rather than a process-wide recorder: the
//! tests run many instances in one process, and each must count only its own work. Counters and
//! histograms are updated where the work happens; what lives in tables (the outbox backlog, the
//! dead letters) and the pool's state are read when Prometheus scrapes, so a scrape costs two
//! small queries and the hot path none.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry, Unit};
use sqlx::PgPool;

use crate::control::state::Control;
use crate::http::error::ApiError;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a scrape waits for the database before it reports it down.
const SCRAPE_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    /// The route as declared (`/opd/patient/view/{id}`), never the raw path: one series per
    /// route, whatever ids clients send.
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurableLabels {
    durable: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    durable: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterLabels {
    filter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: String,
}

/// Registers `metric` under `name` and returns it (metrics are handles: the registry and the
/// caller share one value).
fn add<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// [`add`] for a metric in seconds: the name gets the `_seconds` suffix.
fn add_seconds<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register_with_unit(name, help, Unit::Seconds, metric.clone());
    metric
}

fn seconds_histogram(first_bucket: f64, buckets: u16) -> Histogram {
    Histogram::new(exponential_buckets(first_bucket, 2.0, buckets))
}

/// One service instance's metrics.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpLabels, Histogram>,
    published: Counter,
    publish_failures: Counter,
    publish_duration: Histogram,
    consumed: Family<OutcomeLabels, Counter>,
    redelivered: Family<DurableLabels, Counter>,
    handling_duration: Family<DurableLabels, Histogram>,
    hop_duration: Family<DurableLabels, Histogram>,
    outbox_unpublished: Gauge,
    outbox_oldest_age: Gauge<f64, AtomicU64>,
    dead_letters: Gauge,
    database_up: Gauge,
    pool_connections: Family<PoolLabels, Gauge>,
    pool_max: Gauge,
    consumer_pending: Family<DurableLabels, Gauge>,
    consumer_ack_pending: Family<DurableLabels, Gauge>,
    nats_connected: Gauge,
    consumer_paused: Family<DurableLabels, Gauge>,
    control_commands: Family<CommandLabels, Counter>,
    maintenance: Gauge,
    log_filter: Family<FilterLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("opd");
        let r = &mut registry;
        let http_histogram = || seconds_histogram(0.000_5, 16);
        let batch_histogram = || seconds_histogram(0.000_25, 16);
        let hop_histogram = || seconds_histogram(0.001, 18);
        Self {
            http_requests: add(
                r,
                "http_requests",
                "HTTP requests answered, by method, matched route and status",
                Family::default(),
            ),
            http_duration: add_seconds(
                r,
                "http_request_duration",
                "Time from a request's arrival to its answer",
                Family::new_with_constructor(http_histogram),
            ),
            published: add(
                r,
                "outbox_published",
                "Events the relay published and JetStream acknowledged",
                Counter::default(),
            ),
            publish_failures: add(
                r,
                "outbox_publish_failures",
                "Events the relay sent that JetStream did not acknowledge (they are sent again)",
                Counter::default(),
            ),
            publish_duration: add_seconds(
                r,
                "outbox_publish_duration",
                "Time from sending a batch of events to JetStream's last acknowledgement of it",
                batch_histogram(),
            ),
            consumed: add(
                r,
                "consumer_messages",
                "Messages a durable consumer took, by outcome: applied, duplicate (applied \
                 before), parked (in dead_letters), retried (redelivered later), ignored",
                Family::default(),
            ),
            redelivered: add(
                r,
                "consumer_redelivered",
                "Messages that arrived for a second time or more",
                Family::default(),
            ),
            handling_duration: add_seconds(
                r,
                "consumer_handling_duration",
                "Time a consumer took over a batch of messages, from arrival to acknowledgement",
                Family::new_with_constructor(batch_histogram),
            ),
            hop_duration: add_seconds(
                r,
                "consumer_hop_duration",
                "Time from an event's ce-time (its producer's transaction) to its effect here",
                Family::new_with_constructor(hop_histogram),
            ),
            outbox_unpublished: add(
                r,
                "outbox_unpublished",
                "Events in the outbox waiting to be published",
                Gauge::default(),
            ),
            outbox_oldest_age: add_seconds(
                r,
                "outbox_oldest_unpublished_age",
                "How long the oldest unpublished event has waited (0 when none waits)",
                Gauge::default(),
            ),
            dead_letters: add(
                r,
                "dead_letters",
                "Messages parked in dead_letters, waiting for an operator",
                Gauge::default(),
            ),
            database_up: add(
                r,
                "database_up",
                "1 when the database answered this scrape's queries, else 0",
                Gauge::default(),
            ),
            pool_connections: add(
                r,
                "db_pool_connections",
                "Connections of the database pool, in use or idle",
                Family::default(),
            ),
            pool_max: add(
                r,
                "db_pool_max_connections",
                "The most connections the pool opens; requests wait when all are in use",
                Gauge::default(),
            ),
            consumer_pending: add(
                r,
                "consumer_pending",
                "Messages in the stream that this durable consumer has not been given yet (its \
                 lag), as JetStream reports it",
                Family::default(),
            ),
            consumer_ack_pending: add(
                r,
                "consumer_ack_pending",
                "Messages this durable consumer has been given but not yet acknowledged",
                Family::default(),
            ),
            nats_connected: add(
                r,
                "nats_connected",
                "1 while the service is connected to a NATS server, else 0",
                Gauge::default(),
            ),
            consumer_paused: add(
                r,
                "consumer_paused",
                "1 while JetStream holds this durable consumer's messages back (paused by an \
                 operator), else 0",
                Family::default(),
            ),
            control_commands: add(
                r,
                "control_commands",
                "Control-plane commands this instance received, by command and outcome (ok, \
                 refused)",
                Family::default(),
            ),
            maintenance: add(
                r,
                "maintenance",
                "1 while the instance is in maintenance (state-changing routes answer 503), else 0",
                Gauge::default(),
            ),
            log_filter: add(
                r,
                "log_filter_info",
                "The log filter in force, as the label of a series that is always 1",
                Family::default(),
            ),
            registry,
        }
    }

    /// A control-plane command, carried out (`ok`) or refused.
    pub(crate) fn control_command(&self, command: &str, ok: bool) {
        self.control_commands
            .get_or_create(&CommandLabels {
                command: command.to_owned(),
                outcome: if ok { "ok" } else { "refused" }.to_owned(),
            })
            .inc();
    }

    /// What the control plane has set, read at each scrape.
    fn read_control(&self, control: &Control) {
        self.maintenance
            .set(i64::from(control.maintenance().is_some()));
        self.log_filter.clear();
        if let Some(filter) = crate::infra::telemetry::log_filter() {
            self.log_filter
                .get_or_create(&FilterLabels { filter })
                .set(1);
        }
    }
    /// A batch the relay sent: how many JetStream acknowledged, how many it did not, and how long
    /// the acknowledgements took.
    pub(crate) fn batch_published(&self, acknowledged: usize, failed: usize, took: Duration) {
        self.published.inc_by(acknowledged as u64);
        self.publish_failures.inc_by(failed as u64);
        self.publish_duration.observe(took.as_secs_f64());
    }

    /// A batch a consumer handled: each message's outcome, as its label, and the event time of
    /// those applied now (the hop).
    pub fn batch_consumed(
        &self,
        durable: &str,
        messages: &[(&'static str, Option<DateTime<Utc>>)],
        redelivered: usize,
        took: Duration,
    ) {
        let durable_labels = DurableLabels {
            durable: durable.to_owned(),
        };
        let now = Utc::now();
        for (outcome, event_time) in messages {
            self.consumed
                .get_or_create(&OutcomeLabels {
                    durable: durable.to_owned(),
                    outcome: (*outcome).to_owned(),
                })
                .inc();
            if let Some(time) = event_time {
                let hop = (now - *time).to_std().unwrap_or_default();
                self.hop_duration
                    .get_or_create(&durable_labels)
                    .observe(hop.as_secs_f64());
            }
        }
        if redelivered > 0 {
            self.redelivered
                .get_or_create(&durable_labels)
                .inc_by(redelivered as u64);
        }
        if !messages.is_empty() {
            self.handling_duration
                .get_or_create(&durable_labels)
                .observe(took.as_secs_f64());
        }
    }

    fn http_answered(&self, labels: HttpLabels, took: Duration) {
        self.http_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.http_requests.get_or_create(&labels).inc();
    }

    /// Reads what lives in the database, the pool and JetStream, then encodes everything.
    async fn scrape(
        &self,
        pool: &PgPool,
        events: &EventsSource,
        control: &Control,
    ) -> Result<String, std::fmt::Error> {
        self.read_consumers(events).await;
        self.read_control(control);
        let idle = pool.num_idle() as i64;
        let size = i64::from(pool.size());
        self.pool_connections
            .get_or_create(&PoolLabels {
                state: "idle".into(),
            })
            .set(idle);
        self.pool_connections
            .get_or_create(&PoolLabels {
                state: "in_use".into(),
            })
            .set((size - idle).max(0));
        self.pool_max
            .set(i64::from(pool.options().get_max_connections()));
        match tokio::time::timeout(SCRAPE_QUERY_TIMEOUT, table_state(pool)).await {
            Ok(Ok(state)) => {
                self.outbox_unpublished.set(state.unpublished);
                self.outbox_oldest_age.set(state.oldest_age_seconds);
                self.dead_letters.set(state.dead_letters);
                self.database_up.set(1);
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "metrics: the database did not answer");
                self.database_up.set(0);
            }
            Err(_) => {
                self.database_up.set(0);
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

impl Metrics {
    async fn read_consumers(&self, events: &EventsSource) {
        let connected = events.jetstream.client().connection_state()
            == async_nats::connection::State::Connected;
        self.nats_connected.set(i64::from(connected));
        for durable in &events.durables {
            let labels = DurableLabels {
                durable: (*durable).to_owned(),
            };
            let info = async {
                let stream = events.jetstream.get_stream_no_info(&events.stream).await?;
                stream
                    .consumer_info(*durable)
                    .await
                    .map_err(anyhow::Error::from)
            };
            match tokio::time::timeout(SCRAPE_QUERY_TIMEOUT, info).await {
                Ok(Ok(info)) => {
                    self.consumer_pending
                        .get_or_create(&labels)
                        .set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
                    self.consumer_ack_pending
                        .get_or_create(&labels)
                        .set(i64::try_from(info.num_ack_pending).unwrap_or(i64::MAX));
                    self.consumer_paused
                        .get_or_create(&labels)
                        .set(i64::from(info.paused));
                }
                // A figure that cannot be read now is left out rather than shown stale.
                _ => {
                    self.consumer_pending.remove(&labels);
                    self.consumer_ack_pending.remove(&labels);
                    self.consumer_paused.remove(&labels);
                }
            }
        }
    }
}

/// Where a scrape reads the consuming side: JetStream's own counts for each durable consumer
/// of the service.
#[derive(Clone)]
pub struct EventsSource {
    pub jetstream: async_nats::jetstream::Context,
    pub stream: String,
    pub durables: Vec<&'static str>,
}

struct TableState {
    unpublished: i64,
    oldest_age_seconds: f64,
    dead_letters: i64,
}

async fn table_state(pool: &PgPool) -> Result<TableState, sqlx::Error> {
    let row = sqlx::query!(
        r#"select
               (select count(*) from outbox where published_at is null) as "unpublished!",
               (select coalesce(extract(epoch from now() - min(created_at)), 0)::float8
                from outbox where published_at is null) as "oldest_age_seconds!",
               (select count(*) from dead_letters) as "dead_letters!""#
    )
    .fetch_one(pool)
    .await?;
    Ok(TableState {
        unpublished: row.unpublished,
        oldest_age_seconds: row.oldest_age_seconds,
        dead_letters: row.dead_letters,
    })
}

#[derive(Clone)]
struct Scrape {
    metrics: Arc<Metrics>,
    pool: PgPool,
    events: EventsSource,
    control: Control,
}

/// `GET /metrics`.
pub fn routes(
    metrics: Arc<Metrics>,
    pool: PgPool,
    events: EventsSource,
    control: Control,
) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(Scrape {
            metrics,
            pool,
            events,
            control,
        })
}

async fn serve_metrics(State(scrape): State<Scrape>) -> Response {
    match scrape
        .metrics
        .scrape(&scrape.pool, &scrape.events, &scrape.control)
        .await
    {
        Ok(text) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            text,
        )
            .into_response(),
        // Writing to a String cannot fail; should the encoder ever report an error anyway, the
        // scrape fails visibly rather than answering half a page.
        Err(error) => {
            ApiError::Internal(anyhow::anyhow!("metrics not encoded: {error}")).into_response()
        }
    }
}

/// Middleware: counts every answer and its latency by method, matched route and status.
pub(crate) async fn record_http(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Clients may send any method name: only the standard ones get a series of their own.
    let method = match *request.method() {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::PATCH
        | Method::OPTIONS => request.method().as_str(),
        _ => "other",
    }
    .to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    metrics.http_answered(
        HttpLabels {
            method,
            route,
            status: response.status().as_u16().to_string(),
        },
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod documented {
    use super::*;

    /// The documents and the alerting rules name only metrics that exist, and
    /// docs/observability.md lists every metric a service serves.
    #[test]
    fn every_metric_named_exists_and_every_metric_is_documented() -> Result<(), std::fmt::Error> {
        // A family is encoded once it has a series: give every labelled one a series.
        let metrics = Metrics::new();
        let http = HttpLabels {
            method: "GET".into(),
            route: "/".into(),
            status: "200".into(),
        };
        let durable = DurableLabels {
            durable: "d".into(),
        };
        metrics.http_requests.get_or_create(&http).inc();
        metrics.http_duration.get_or_create(&http).observe(0.0);
        metrics
            .consumed
            .get_or_create(&OutcomeLabels {
                durable: "d".into(),
                outcome: "applied".into(),
            })
            .inc();
        metrics.redelivered.get_or_create(&durable).inc();
        metrics
            .handling_duration
            .get_or_create(&durable)
            .observe(0.0);
        metrics.hop_duration.get_or_create(&durable).observe(0.0);
        metrics.consumer_pending.get_or_create(&durable).set(0);
        metrics.consumer_ack_pending.get_or_create(&durable).set(0);
        metrics.consumer_paused.get_or_create(&durable).set(0);
        metrics.control_command("pause", true);
        metrics
            .log_filter
            .get_or_create(&FilterLabels {
                filter: "info".into(),
            })
            .set(1);
        metrics
            .pool_connections
            .get_or_create(&PoolLabels {
                state: "idle".into(),
            })
            .set(0);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry)?;
        // `# TYPE opd_x counter`: the family, and the names its samples take.
        let mut families = Vec::new();
        let mut names = Vec::new();
        for line in text.lines().filter_map(|line| line.strip_prefix("# TYPE ")) {
            let mut parts = line.split(' ');
            let (Some(family), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            families.push(family.to_owned());
            names.push(family.to_owned());
            match kind {
                "counter" => names.push(format!("{family}_total")),
                "histogram" => names.extend(
                    ["_bucket", "_sum", "_count"].map(|suffix| format!("{family}{suffix}")),
                ),
                _ => {}
            }
        }
        assert!(
            families.len() > 10,
            "the registry lists its metrics: {text}"
        );

        let sources = [
            (
                "docs/observability.md",
                include_str!("../../../docs/observability.md"),
            ),
            (
                "docs/reliability.md",
                include_str!("../../../docs/reliability.md"),
            ),
            (
                "docs/tutorial.md",
                include_str!("../../../docs/tutorial.md"),
            ),
            (
                "docs/benchmarks.md",
                include_str!("../../../docs/benchmarks.md"),
            ),
            (
                "observability/prometheus/alerts.yml",
                include_str!("../../../observability/prometheus/alerts.yml"),
            ),
        ];
        // Names that begin like a metric but are databases, roles and files.
        let not_metrics = |word: &str| {
            word.ends_with("_dev")
                || word.ends_with("_password")
                || [
                    "opd_",
                    "opd_registration",
                    "opd_inspection",
                    "opd_treatment",
                    "opd_release",
                    "opd_shared",
                ]
                .contains(&word)
        };
        let mut problems = Vec::new();
        for (file, source) in sources {
            for word in source.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("opd_")
                    && !not_metrics(word)
                    && !names.iter().any(|n| n == word)
                {
                    problems.push(format!("{file} names {word}, which no service serves"));
                }
            }
        }
        let observability = sources[0].1;
        for family in &families {
            if !observability.contains(family.as_str()) {
                problems.push(format!("docs/observability.md does not describe {family}"));
            }
        }
        problems.sort();
        problems.dedup();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        Ok(())
    }
}
