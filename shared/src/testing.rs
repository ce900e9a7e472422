//! Test support: a real three-node NATS cluster, real PostgreSQL databases, and services running
//! in the test process. Everything a test starts is stopped and removed when its handle drops.
//!
//! PostgreSQL: `OPD_TEST_DATABASE_URL` names a superuser connection (scripts/test.sh starts a
//! throwaway server and sets it); each test gets its own role and database.
//! NATS: `nats-server` from `PATH` (or `NATS_SERVER_BIN`), configured from `nats/cluster.conf`,
//! the same file scripts/dev.sh and docker-compose.yml use.

#![allow(
    clippy::expect_used,
    reason = "test support: a set-up that fails must stop the test loudly"
)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{LogFormat, ServiceDefaults, Settings};
use crate::service::Application;

const CLUSTER_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../nats/cluster.conf");

/// A short random name, unique enough to separate tests that run side by side.
pub fn unique_name(prefix: &str) -> String {
    let id = Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("no free local port")
}

struct Node {
    name: String,
    client_port: u16,
    cluster_port: u16,
    monitor_port: u16,
    child: Option<Child>,
}

/// Three `nats-server` processes forming one JetStream cluster on loopback ports.
pub struct NatsCluster {
    dir: PathBuf,
    nodes: Vec<Node>,
}

impl NatsCluster {
    pub async fn start() -> Self {
        // Free ports are found by binding and releasing them, so a test running beside this
        // one can take a port in between; a fresh set of ports settles that.
        for _ in 0..3 {
            let mut cluster = Self::spawn_all();
            if cluster.healthy_within(Duration::from_secs(20)).await
                && cluster
                    .jetstream_usable_within(Duration::from_secs(20))
                    .await
            {
                return cluster;
            }
            eprintln!(
                "NATS cluster did not become healthy; retrying with new ports\n{}",
                cluster.logs()
            );
            cluster.kill_all();
        }
        panic!("could not start a healthy three-node NATS cluster");
    }

    fn spawn_all() -> Self {
        let dir = std::env::temp_dir().join(unique_name("opd-nats"));
        std::fs::create_dir_all(&dir).expect("cannot create the cluster's directory");
        let nodes = (1..=3)
            .map(|i| Node {
                name: format!("nats-{i}"),
                client_port: free_port(),
                cluster_port: free_port(),
                monitor_port: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = Self { dir, nodes };
        for index in 0..3 {
            cluster.spawn(index);
        }
        cluster
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| {
                let log = std::fs::read_to_string(self.dir.join(format!("{}.log", node.name)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                format!(
                    "--- {} ---\n{}",
                    node.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn spawn(&mut self, index: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("nats://127.0.0.1:{}", node.cluster_port))
            .collect();
        let node = &mut self.nodes[index];
        let store = self.dir.join(&node.name);
        let log = std::fs::File::create(self.dir.join(format!("{}.log", node.name)))
            .expect("cannot create a NATS log file");
        let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let child = Command::new(&binary)
            .args(["-c", CLUSTER_CONFIG])
            .env("NATS_SERVER_NAME", &node.name)
            .env("NATS_HOST", "127.0.0.1")
            .env("NATS_CLIENT_PORT", node.client_port.to_string())
            .env("NATS_CLUSTER_PORT", node.cluster_port.to_string())
            .env("NATS_MONITOR_PORT", node.monitor_port.to_string())
            .env("NATS_STORE_DIR", &store)
            .env("NATS_ROUTE_1", &routes[0])
            .env("NATS_ROUTE_2", &routes[1])
            .env("NATS_ROUTE_3", &routes[2])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} (is nats-server installed?): {e}"));
        node.child = Some(child);
    }

    /// Client URLs of all three nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("nats://127.0.0.1:{}", node.client_port))
            .collect()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Kills node `index` (0-based) as a crash would; its data stays for a restart.
    pub fn kill_node(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn restart_node(&mut self, index: usize) {
        self.kill_node(index);
        self.spawn(index);
        self.wait_until_healthy().await;
    }

    pub fn kill_all(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill_node(index);
        }
    }

    pub async fn restart_all(&mut self) {
        self.kill_all();
        for index in 0..self.nodes.len() {
            self.spawn(index);
        }
        self.wait_until_healthy().await;
    }

    /// Waits until every running node reports JetStream healthy, which includes a meta leader.
    pub async fn wait_until_healthy(&self) {
        if !self.healthy_within(Duration::from_secs(30)).await {
            panic!("the NATS cluster did not become healthy\n{}", self.logs());
        }
    }

    /// A healthy node may still be electing the meta leader: wait until a replicated stream can
    /// be created and removed.
    async fn jetstream_usable_within(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let Ok(js) = jetstream(&self.urls()).await else {
            return false;
        };
        let probe = async_nats::jetstream::stream::Config {
            name: "PROBE".into(),
            subjects: vec!["probe.>".into()],
            num_replicas: 3,
            ..Default::default()
        };
        while tokio::time::Instant::now() < deadline {
            if js.create_stream(probe.clone()).await.is_ok()
                && js.delete_stream("PROBE").await.is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    async fn healthy_within(&self, timeout: Duration) -> bool {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + timeout;
        for node in self.nodes.iter().filter(|node| node.child.is_some()) {
            let url = format!("http://127.0.0.1:{}/healthz", node.monitor_port);
            loop {
                let healthy = client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success());
                if healthy {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        true
    }

    pub fn log_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        self.kill_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A database of its own, owned by a role of its own, on the test PostgreSQL server.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create(label: &str) -> Self {
        let admin_url = std::env::var("OPD_TEST_DATABASE_URL").expect(
            "OPD_TEST_DATABASE_URL is not set: run the tests through scripts/test.sh, or point it at a PostgreSQL superuser connection",
        );
        let name = unique_name(&format!("t_{label}"));
        let password = Uuid::new_v4().simple().to_string();
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("cannot connect to the test PostgreSQL server");
        for statement in [
            format!("create role {name} login password '{password}'"),
            format!("create database {name} owner {name}"),
            format!("revoke connect, temporary on database {name} from public"),
        ] {
            sqlx::raw_sql(&statement)
                .execute(&mut admin)
                .await
                .expect("cannot create the test database");
        }
        let url = with_credentials(&admin_url, &name, &password, &name);
        Self {
            name,
            url,
            admin_url,
        }
    }

    /// Simulates an outage: no new connections, existing ones cut.
    pub async fn take_offline(&self) {
        self.admin(&[
            format!("alter database {} with allow_connections false", self.name),
            format!(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = '{}'",
                self.name
            ),
        ])
        .await;
    }

    pub async fn bring_online(&self) {
        self.admin(&[format!(
            "alter database {} with allow_connections true",
            self.name
        )])
        .await;
    }

    async fn admin(&self, statements: &[String]) {
        let mut admin = PgConnection::connect(&self.admin_url)
            .await
            .expect("cannot connect to the test PostgreSQL server");
        for statement in statements {
            sqlx::raw_sql(statement)
                .execute(&mut admin)
                .await
                .expect("admin statement failed");
        }
    }

    /// A pool for the test's own checks of the database.
    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url)
            .await
            .expect("cannot connect to the test database")
    }
}

fn with_credentials(admin_url: &str, user: &str, password: &str, database: &str) -> String {
    let after_scheme = admin_url.find("://").map_or(0, |i| i + 3);
    let host_start = admin_url.rfind('@').map_or(after_scheme, |i| i + 1);
    let host_end = admin_url[host_start..]
        .find('/')
        .map_or(admin_url.len(), |i| host_start + i);
    format!(
        "postgres://{user}:{password}@{}/{database}",
        &admin_url[host_start..host_end]
    )
}

/// Settings for a service under test: a free port, the test's database and cluster, a subject
/// prefix of the test's own, and short retry delays.
pub fn settings(
    service: ServiceDefaults,
    database: &TestDatabase,
    nats: &NatsCluster,
    subject_prefix: &str,
) -> Settings {
    let mut settings = Settings::defaults(service);
    settings.http.host = "127.0.0.1".into();
    settings.http.port = 0;
    settings.http.shutdown_grace_secs = 5;
    settings.database.url = database.url.clone();
    settings.database.startup_timeout_secs = 10;
    settings.database.acquire_timeout_ms = 1_000;
    settings.nats.servers = nats.urls();
    settings.nats.subject_prefix = subject_prefix.into();
    settings.outbox.retry_initial_ms = 100;
    settings.outbox.retry_max_ms = 1_000;
    settings.outbox.publish_timeout_ms = 2_000;
    settings.consumer.retry_initial_ms = 200;
    settings.consumer.retry_max_ms = 2_000;
    settings.log.format = LogFormat::Pretty;
    settings.log.filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    settings
}

/// A service running inside the test, stopped when dropped.
pub struct RunningService {
    pub base_url: String,
    pub port: u16,
    pub pool: PgPool,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl RunningService {
    pub fn start(app: Application) -> Self {
        crate::telemetry::init(&crate::config::LogSettings {
            filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            format: LogFormat::Pretty,
        });
        let port = app.port();
        let pool = app.pool().clone();
        let shutdown = app.shutdown_token();
        let handle = tokio::spawn(app.run_until_stopped());
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            port,
            pool,
            http: reqwest::Client::new(),
            shutdown,
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("GET failed")
    }

    /// `GET path`, which must succeed, as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.expect("the body is not JSON")
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST failed")
    }

    pub async fn put(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .expect("PUT failed")
    }

    /// Polls `GET path` until the list it answers satisfies `done`, and returns it.
    pub async fn list_until(
        &self,
        path: &str,
        what: &str,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        eventually(Duration::from_secs(30), what, || async {
            let list = self.get_json(path).await;
            let list = list.as_array().cloned().unwrap_or_default();
            done(&list).then_some(list)
        })
        .await
    }

    /// A single number from the service's database, e.g. `select count(*) from outbox`.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect("count query failed")
    }

    /// Stops the service as SIGTERM would and waits for it to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            let result = handle.await.expect("the service task panicked");
            result.expect("the service stopped with an error");
        }
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Reads every message of `subject` currently on the stream, payloads as JSON, headers included.
/// While the cluster is recovering (no stream leader yet) it finds nothing; poll it with
/// [`eventually`].
pub async fn stream_messages(
    nats_urls: &[String],
    stream: &str,
    subject: &str,
) -> Vec<(async_nats::HeaderMap, serde_json::Value)> {
    match read_stream(nats_urls, stream, subject).await {
        Ok(found) => found,
        Err(error) => {
            eprintln!("cannot read stream {stream} yet: {error}");
            Vec::new()
        }
    }
}

/// The messages of the book's `subject` in the deployment `nats` describes (its stream and
/// subject prefix), as (headers, payload).
pub async fn events(
    nats: &crate::config::NatsSettings,
    subject: &str,
) -> Vec<(async_nats::HeaderMap, serde_json::Value)> {
    stream_messages(
        &nats.servers,
        &nats.stream,
        &crate::events::subject_with_prefix(&nats.subject_prefix, subject),
    )
    .await
}

async fn read_stream(
    nats_urls: &[String],
    stream: &str,
    subject: &str,
) -> Result<Vec<(async_nats::HeaderMap, serde_json::Value)>, async_nats::Error> {
    use futures::StreamExt;
    let consumer = jetstream(nats_urls)
        .await?
        .get_stream(stream)
        .await?
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: subject.to_owned(),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer
        .fetch()
        .max_messages(10_000)
        .expires(Duration::from_secs(1))
        .messages()
        .await?;
    let mut found = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message?;
        let payload = serde_json::from_slice(&message.payload).unwrap_or(serde_json::Value::Null);
        found.push((message.headers.clone().unwrap_or_default(), payload));
    }
    Ok(found)
}

/// Builds a service with `build` from `settings` and runs it in the test.
pub async fn spawn<F, Fut>(build: F, settings: Settings) -> RunningService
where
    F: FnOnce(Settings) -> Fut,
    Fut: Future<Output = anyhow::Result<Application>>,
{
    let app = build(settings).await.expect("the service failed to build");
    RunningService::start(app)
}

/// Sends `body` as the book's curl commands do: `-d` without a content type, which curl sends
/// as `application/x-www-form-urlencoded`.
pub fn curl_style(request: reqwest::RequestBuilder, body: &str) -> reqwest::RequestBuilder {
    request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
}

/// Asserts that `response` is a problem details document with `status`, and returns it.
pub async fn expect_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, crate::problem::CONTENT_TYPE);
    let problem: serde_json::Value = response.json().await.expect("problem body is not JSON");
    assert_eq!(problem["status"], status, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/")),
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{problem}"
    );
    problem
}

/// Publishes a raw message on the stream, as a producer (or a broken one) would. The stream is
/// created first if no service has done so yet.
pub async fn publish_raw(
    nats: &crate::config::NatsSettings,
    subject: &str,
    headers: async_nats::HeaderMap,
    payload: Vec<u8>,
) {
    let js = jetstream(&nats.servers)
        .await
        .expect("cannot connect to NATS");
    let subject = crate::events::subject_with_prefix(&nats.subject_prefix, subject);
    // A cluster that has just started, or lost a node, may need a moment to elect leaders.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            crate::nats::ensure_stream(&js, nats).await?;
            js.publish_with_headers(subject.clone(), headers.clone(), payload.clone().into())
                .await?
                .await?;
            Ok::<(), anyhow::Error>(())
        };
        match attempt.await {
            Ok(()) => return,
            Err(error) if tokio::time::Instant::now() < deadline => {
                eprintln!("publish to {subject} failed, retrying: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("cannot publish to {subject}: {error}"),
        }
    }
}

/// Publishes `event` with fresh metadata, as the outbox relay would; returns the metadata so a
/// test can publish the very same event again.
pub async fn publish_event<E: crate::events::Event>(
    nats: &crate::config::NatsSettings,
    event: &E,
) -> crate::events::EventMeta {
    let meta = crate::events::EventMeta {
        id: Uuid::now_v7(),
        event_type: E::TYPE.into(),
        source: "/opd/tests".into(),
        time: chrono::Utc::now(),
        request_id: None,
    };
    publish_meta(nats, event, &meta).await;
    meta
}

/// Publishes `event` with the given metadata. The `Nats-Msg-Id` is always fresh, so JetStream
/// stores a repeat and the consumer's own de-duplication is what is tested.
pub async fn publish_meta<E: crate::events::Event>(
    nats: &crate::config::NatsSettings,
    event: &E,
    meta: &crate::events::EventMeta,
) {
    let mut headers = meta.to_headers();
    headers.insert(
        crate::events::headers::MESSAGE_ID,
        Uuid::new_v4().to_string().as_str(),
    );
    let payload = serde_json::to_vec(event).expect("events serialise");
    publish_raw(nats, E::SUBJECT, headers, payload).await;
}

/// Messages of the durable consumer `durable` that are not yet delivered, and delivered but not
/// yet acknowledged. Both are zero once a consumer has caught up.
pub async fn consumer_backlog(
    nats: &crate::config::NatsSettings,
    durable: &str,
) -> Option<(u64, usize)> {
    let js = jetstream(&nats.servers).await.ok()?;
    let stream = js.get_stream(&nats.stream).await.ok()?;
    let info = stream.consumer_info(durable).await.ok()?;
    Some((info.num_pending, info.num_ack_pending))
}

/// The stream's information once it exists (None until then).
pub async fn stream_info(
    nats: &crate::config::NatsSettings,
) -> Option<async_nats::jetstream::stream::Info> {
    let js = jetstream(&nats.servers).await.ok()?;
    let mut stream = js.get_stream(&nats.stream).await.ok()?;
    stream.info().await.ok().cloned()
}

/// A JetStream context on a fresh connection to `servers`, for a test's own look at the cluster.
pub async fn jetstream(
    servers: &[String],
) -> Result<async_nats::jetstream::Context, async_nats::Error> {
    let addresses = servers
        .iter()
        .map(|url| url.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(async_nats::jetstream::new(
        async_nats::connect(addresses).await?,
    ))
}

/// One service under test with everything it needs of its own: a three-node NATS cluster, a
/// database, and a subject prefix.
pub struct ServiceUnderTest {
    pub settings: Settings,
    pub database: TestDatabase,
    pub nats: NatsCluster,
    running: Option<RunningService>,
}

impl ServiceUnderTest {
    pub async fn start<F, Fut>(service: ServiceDefaults, build: F) -> Self
    where
        F: FnOnce(Settings) -> Fut,
        Fut: Future<Output = anyhow::Result<Application>>,
    {
        Self::start_with(service, build, |_| {}).await
    }

    /// Like [`ServiceUnderTest::start`], with the test settings changed by `adjust` first.
    pub async fn start_with<F, Fut>(
        service: ServiceDefaults,
        build: F,
        adjust: impl FnOnce(&mut Settings),
    ) -> Self
    where
        F: FnOnce(Settings) -> Fut,
        Fut: Future<Output = anyhow::Result<Application>>,
    {
        let nats = NatsCluster::start().await;
        let database = TestDatabase::create(service.name).await;
        let prefix = format!("{}.", unique_name("t"));
        let mut settings = self::settings(service, &database, &nats, &prefix);
        adjust(&mut settings);
        let running = Some(spawn(build, settings.clone()).await);
        Self {
            settings,
            database,
            nats,
            running,
        }
    }

    /// Stops the service as SIGTERM would and starts a new instance on the same database.
    pub async fn restart<F, Fut>(&mut self, build: F)
    where
        F: FnOnce(Settings) -> Fut,
        Fut: Future<Output = anyhow::Result<Application>>,
    {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
        self.running = Some(spawn(build, self.settings.clone()).await);
    }

    /// The messages of `subject` (without prefix) on the stream, as (headers, payload).
    pub async fn events(&self, subject: &str) -> Vec<(async_nats::HeaderMap, serde_json::Value)> {
        events(&self.settings.nats, subject).await
    }

    /// Waits until `count` messages of `subject` are on the stream, and returns them.
    pub async fn events_until(
        &self,
        subject: &str,
        count: usize,
    ) -> Vec<(async_nats::HeaderMap, serde_json::Value)> {
        eventually(
            Duration::from_secs(30),
            &format!("{count} {subject} events"),
            || async {
                let events = self.events(subject).await;
                (events.len() >= count).then_some(events)
            },
        )
        .await
    }

    /// Publishes `event` as its producer would.
    pub async fn publish<E: crate::events::Event>(&self, event: &E) -> crate::events::EventMeta {
        publish_event(&self.settings.nats, event).await
    }
}

impl std::ops::Deref for ServiceUnderTest {
    type Target = RunningService;
    fn deref(&self) -> &RunningService {
        self.running.as_ref().expect("the service is not running")
    }
}
