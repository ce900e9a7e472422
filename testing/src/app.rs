//! The service under test: the real service running in the test process, on its own database
//! and its own NATS server, with a typed client for its API and a look at its stream.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opd_shared::app::Application;
use opd_shared::domain::Site;
use opd_shared::events::consumer::{Consumer, EventHandler};
use opd_shared::events::housekeeping::Housekeeping;
use opd_shared::events::outbox::Relay;
use opd_shared::events::{Event, EventMeta};
use opd_shared::infra::Infra;
use opd_shared::infra::config::{LogFormat, LogSettings, Settings};
use opd_shared::infra::telemetry::Telemetry;
use opd_shared::service::Service;
use serde_json::Value;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::stream::{self, Message, StreamSettings};
use crate::{LeafServer, NatsServer, TestDatabase, eventually};

/// One running instance of a service, stopped when dropped.
pub struct Running {
    pub base_url: String,
    infra: Infra,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    async fn start(service: &'static Service, settings: Settings, background: bool) -> Self {
        // The first app of the test process installs the subscriber, and it stays.
        static TELEMETRY: OnceLock<Option<Telemetry>> = OnceLock::new();
        TELEMETRY.get_or_init(|| {
            opd_shared::infra::telemetry::init(
                &LogSettings {
                    filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
                    format: LogFormat::Pretty,
                    otlp_endpoint: None,
                },
                service.name,
            )
        });
        let mut app = Application::build(service, settings)
            .await
            .expect("the service failed to build");
        if !background {
            app = app.without_background_tasks();
        }
        let base_url = format!("http://127.0.0.1:{}", app.port());
        let infra = app.infra().clone();
        let shutdown = app.shutdown_token();
        let handle = tokio::spawn(app.run_until_stopped());
        Self {
            base_url,
            infra,
            shutdown,
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Stops the instance as SIGTERM would and waits until it has finished.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle
                .await
                .expect("the service task panicked")
                .expect("the service stopped with an error");
        }
    }
}

impl Running {
    /// Ends the instance as SIGKILL would: its tasks stop wherever they are, nothing is drained
    /// or acknowledged; transactions in flight roll back.
    pub async fn crash(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A change a test makes to the settings before the service starts.
type Adjustment = Box<dyn FnOnce(&mut Settings)>;

/// How to start a [`TestApp`]: by default on a single NATS node of its own, with its relay and
/// consumers running.
pub struct TestAppBuilder {
    service: &'static Service,
    nats: Option<Arc<NatsServer>>,
    cluster: bool,
    background: bool,
    adjustments: Vec<Adjustment>,
    stream_adjustments: Vec<StreamAdjustment>,
    /// Serving another site, on that site's own server: its client URL and name.
    site: Option<(String, Site)>,
}

/// A change a test makes to what the stream's owner creates.
type StreamAdjustment = Box<dyn FnOnce(&mut StreamSettings)>;

impl TestAppBuilder {
    /// Changes the settings the stream's owner creates the stream and the durable consumers
    /// with (a shorter `ack_wait`, a smaller `max_bytes`); on a server where they exist
    /// already, they are kept as they are.
    pub fn stream_settings(mut self, adjust: impl FnOnce(&mut StreamSettings) + 'static) -> Self {
        self.stream_adjustments.push(Box::new(adjust));
        self
    }

    /// The durable consumers' `ack_wait` (see [`Self::stream_settings`]).
    pub fn ack_wait(self, ack_wait: Duration) -> Self {
        self.stream_settings(move |owned| owned.ack_wait = ack_wait)
    }

    /// On a three-node cluster: for tests about replication and losing nodes.
    pub fn cluster(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// On a NATS server that other services share (end-to-end tests).
    pub fn nats(mut self, nats: Arc<NatsServer>) -> Self {
        self.nats = Some(nats);
        self
    }

    /// An instance at another site (a clinic): on that site's own server, with that site's
    /// name, and that site's stream (`opd-nats site-stream`) rather than the hospital's.
    pub fn on_site(mut self, server: &LeafServer) -> Self {
        let site = server.site().expect("a site's server").clone();
        self.site = Some((server.url(), site));
        self
    }

    /// Changes the test settings before the service starts.
    pub fn settings(mut self, adjust: impl FnOnce(&mut Settings) + 'static) -> Self {
        self.adjustments.push(Box::new(adjust));
        self
    }

    /// The API only: the test drives the relay and the consumers with [`TestApp::relay`] and
    /// [`TestApp::consumer`].
    pub fn without_background_tasks(mut self) -> Self {
        self.background = false;
        self
    }

    pub async fn spawn(self) -> TestApp {
        let nats = match self.nats {
            Some(nats) => nats,
            None if self.cluster => Arc::new(NatsServer::cluster().await),
            None => Arc::new(NatsServer::single().await),
        };
        let database = TestDatabase::create(self.service.name).await;
        let mut settings = test_settings(self.service, &database, &nats);
        if let Some((url, site)) = &self.site {
            settings.nats.servers = vec![url.clone()];
            settings.site = site.clone();
        }
        for adjust in self.adjustments {
            adjust(&mut settings);
        }
        // The stream's owner creates it and the durable consumers before the service starts,
        // as `opd-nats stream` does on the platform: the service's identity may not.
        let mut owned = stream::settings_for(&settings.nats);
        for adjust in self.stream_adjustments {
            adjust(&mut owned);
        }
        if self.site.is_some() {
            opd_nats_admin::site::create_site_stream(
                &stream::as_admin(&settings.nats),
                &owned,
                crate::PATIENCE,
            )
            .await
            .expect("cannot create the site's stream");
        } else {
            stream::create_with(&settings.nats, &owned).await;
        }
        let running = Running::start(self.service, settings.clone(), self.background).await;
        TestApp {
            service: self.service,
            pool: database.pool().await,
            settings,
            database,
            nats,
            client: crate::auth::client_with(&crate::auth::all_roles()),
            background: self.background,
            running: Some(running),
        }
    }
}

/// Settings for a service under test: a free port, its own database and NATS server, and short
/// retry delays.
fn test_settings(service: &Service, database: &TestDatabase, nats: &NatsServer) -> Settings {
    let mut settings = Settings::defaults(service.defaults());
    settings.http.host = "127.0.0.1".into();
    settings.http.port = 0;
    settings.http.shutdown_grace = Duration::from_secs(5);
    settings.database.url = database.url.clone();
    settings.database.startup_timeout = Duration::from_secs(10);
    settings.database.acquire_timeout = Duration::from_secs(1);
    settings.nats.servers = nats.urls();
    nats.identify(&mut settings.nats, service.name);
    settings.outbox.retry.initial = Duration::from_millis(100);
    settings.outbox.retry.max = Duration::from_secs(1);
    settings.outbox.publish_timeout = Duration::from_secs(2);
    settings.consumer.retry.initial = Duration::from_millis(200);
    settings.consumer.retry.max = Duration::from_secs(2);
    crate::auth::trust_test_issuer(&mut settings);
    settings.log.format = LogFormat::Pretty;
    settings.log.filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    settings
}

/// A service under test. It owns everything it runs on, and stops and removes it when dropped.
pub struct TestApp {
    pub service: &'static Service,
    pub settings: Settings,
    pub database: TestDatabase,
    pub nats: Arc<NatsServer>,
    /// The test's own connection to the service's database, for its checks.
    pub pool: PgPool,
    pub client: reqwest::Client,
    background: bool,
    running: Option<Running>,
}

impl TestApp {
    /// The service with its relay and consumers, on a NATS node of its own.
    pub async fn spawn(service: &'static Service) -> Self {
        Self::builder(service).spawn().await
    }

    pub fn builder(service: &'static Service) -> TestAppBuilder {
        TestAppBuilder {
            service,
            nats: None,
            cluster: false,
            background: true,
            adjustments: Vec::new(),
            stream_adjustments: Vec::new(),
            site: None,
        }
    }

    fn running(&self) -> &Running {
        self.running
            .as_ref()
            .unwrap_or_else(|| panic!("{} is stopped", self.service.name))
    }

    pub fn url(&self, path: &str) -> String {
        self.running().url(path)
    }

    /// Sends `method path` with `body` as JSON (none when `None`).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    /// Sends `body` as the book's curl commands do (`-d`, no JSON content type), which must
    /// answer `status`; returns the body as JSON.
    pub async fn curl_expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &str,
        status: u16,
    ) -> Value {
        let request = self.client.request(method.clone(), self.url(path));
        let response = crate::curl_style(request, body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        expect_json(response, status, &format!("{method} {path}")).await
    }

    /// `GET path`, which must answer `status`; returns the body as JSON.
    pub async fn get_expect(&self, path: &str, status: u16) -> Value {
        expect_json(self.get(path).await, status, &format!("GET {path}")).await
    }

    /// `POST path` with `body`, which must answer `status`; returns the body as JSON.
    pub async fn post_expect(&self, path: &str, body: &Value, status: u16) -> Value {
        expect_json(self.post(path, body).await, status, &format!("POST {path}")).await
    }

    /// `PUT path` with `body`, which must answer `status`; returns the body as JSON.
    pub async fn put_expect(&self, path: &str, body: &Value, status: u16) -> Value {
        expect_json(self.put(path, body).await, status, &format!("PUT {path}")).await
    }

    /// Polls `GET path` until it answers a list that satisfies `done`, and returns it. A failed
    /// answer (a service still recovering) is polled again, not a failure.
    pub async fn list_until(
        &self,
        path: &str,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        eventually(what, || async {
            let response = self.client.get(self.url(path)).send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            let list: Vec<Value> = response.json().await.ok()?;
            done(&list).then_some(list)
        })
        .await
    }

    /// The value of one series from `GET /metrics`, named with its labels exactly as the
    /// service writes them (`opd_dead_letters`,
    /// `opd_consumer_messages_total{durable="…",outcome="applied"}`); None when the service does
    /// not report it (yet).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), 200, "GET /metrics");
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
        text.lines().find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            Some(
                value
                    .parse()
                    .unwrap_or_else(|e| panic!("{series} has the value {value:?}: {e}")),
            )
        })
    }

    /// A single number from the service's database, e.g. `select count(*) from outbox`.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs `sql` (one or more statements) in the service's database, as its owner.
    pub async fn execute(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Stops the service, then counts the index entries read from `table` over all its
    /// indexes, once the statistics count a scan of `sign` (an index the statement under test
    /// must use). A backend reports its counts when it goes idle (at most once a second, else
    /// ten seconds later) or when it ends, as the stopped service's connections do: the sign
    /// tells that their counts are in.
    pub async fn stop_and_count_index_reads(&mut self, table: &str, sign: &str) -> i64 {
        self.stop().await;
        crate::eventually(&format!("a scan of {sign} counted"), || async {
            let (signed, read): (i64, i64) = sqlx::query_as(
                "select coalesce(sum(idx_scan) filter (where indexrelname = $2), 0)::bigint,
                        coalesce(sum(idx_tup_read), 0)::bigint
                 from pg_stat_user_indexes where relname = $1",
            )
            .bind(table)
            .bind(sign)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("index statistics of {table}: {e}"));
            (signed > 0).then_some(read)
        })
        .await
    }

    /// Asserts that this consuming service handled exactly `count` distinct events and parked
    /// none. A repeated delivery that slipped past the inbox shows up here (as a second
    /// handled id, or as a dead letter where a table key refused it), not in a pending list.
    pub async fn assert_handled_once(&self, count: i64) {
        assert_eq!(
            self.count("select count(*) from processed_events").await,
            count,
            "{}: events handled",
            self.service.name
        );
        assert_eq!(
            self.count("select count(*) from dead_letters").await,
            0,
            "{}: dead letters",
            self.service.name
        );
    }

    /// The messages of `subject` on the stream now, as (headers, payload).
    pub async fn events(&self, subject: &str) -> Vec<Message> {
        stream::events(&self.settings.nats, subject).await
    }

    /// Waits until at least `count` messages of `subject` are on the stream, and returns them.
    pub async fn events_until(&self, subject: &str, count: usize) -> Vec<Message> {
        eventually(&format!("{count} {subject} events"), || async {
            let events = self.events(subject).await;
            (events.len() >= count).then_some(events)
        })
        .await
    }

    /// Publishes `event` with fresh metadata, as its producer would; returns the metadata so a
    /// test can publish the very same event again.
    pub async fn publish<E: Event>(&self, event: &E) -> EventMeta {
        let meta = stream::new_meta::<E>();
        stream::publish_meta(&self.settings.nats, event, &meta).await;
        meta
    }

    /// Creates the stream as its owner does (`opd-nats stream`), after the cluster lost it.
    pub async fn create_stream(&self) {
        stream::create(&self.settings.nats).await;
    }

    /// The stream's information once it exists and has a leader.
    pub async fn stream_info(&self) -> async_nats::jetstream::stream::Info {
        eventually("a stream with an elected leader", || async {
            stream::stream_info(&self.settings.nats)
                .await
                .filter(|info| info.cluster.as_ref().is_some_and(|c| c.leader.is_some()))
        })
        .await
    }

    /// Waits until the durable consumer `durable` has handled and acknowledged everything.
    pub async fn caught_up(&self, durable: &str) {
        eventually(&format!("{durable} to catch up"), || async {
            let backlog = stream::consumer_backlog(&self.settings.nats, durable).await?;
            (backlog == (0, 0)).then_some(())
        })
        .await;
    }

    /// The running service's connections and clients, to reach into it (hold its pool, say).
    pub fn infra(&self) -> &Infra {
        &self.running().infra
    }

    /// A relay over the service's outbox, to drive it one step at a time.
    pub fn relay(&self) -> Relay {
        Relay::new(&self.running().infra)
    }

    /// The service's housekeeping, to run one round of it.
    pub fn housekeeping(&self) -> Housekeeping {
        Housekeeping::new(&self.running().infra)
    }

    /// The service's durable consumer `durable`, to drive it one step at a time.
    pub fn consumer<H: EventHandler + Default>(&self, durable: &str) -> Consumer<H> {
        assert!(
            self.service.consumer(durable).is_some(),
            "{} has no consumer {durable}",
            self.service.name
        );
        Consumer::new(durable, &self.running().infra, H::default())
    }

    /// Stops the service as SIGTERM would; its database and NATS server stay.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// Ends the service as SIGKILL would (see [`Running::crash`]); its database and NATS server
    /// stay.
    pub async fn crash(&mut self) {
        if let Some(running) = self.running.take() {
            running.crash().await;
        }
    }

    /// Stops the service (if it runs) and starts a new instance on the same database.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.running =
            Some(Running::start(self.service, self.settings.clone(), self.background).await);
    }

    /// A second instance of the service on the same database and NATS server, as a replica in
    /// production would be.
    pub async fn spawn_replica(&self) -> Running {
        Running::start(self.service, self.settings.clone(), self.background).await
    }
}

async fn expect_json(response: reqwest::Response, status: u16, what: &str) -> Value {
    let actual = response.status().as_u16();
    let body = response.text().await.expect("no response body");
    assert_eq!(actual, status, "{what}: {body}");
    if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"))
    }
}
