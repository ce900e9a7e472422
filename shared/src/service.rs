//! The life cycle every service shares: connect, migrate, serve, relay, consume, stop.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream;
use axum::Router;
use axum::routing::get;
use futures::future::BoxFuture;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{ServiceDefaults, Settings};
use crate::consumer::{Consumer, EventHandler};
use crate::health::{self, Readiness};
use crate::outbox::{EventContext, Relay};

/// What identifies a service.
#[derive(Debug, Clone, Copy)]
pub struct ServiceInfo {
    pub defaults: ServiceDefaults,
    /// The book's name, shown by `GET /opd/<area>/`.
    pub title: &'static str,
    pub version: &'static str,
    /// CloudEvents `source` of the events it produces.
    pub source: &'static str,
}

impl ServiceInfo {
    /// The book's `GET /opd/<area>/` answer: name and version.
    pub fn home_route<S: Clone + Send + Sync + 'static>(self) -> axum::routing::MethodRouter<S> {
        get(move || async move { format!("{} v{}\n", self.title, self.version) })
    }

    pub fn event_context(self, request_id: Option<String>) -> EventContext {
        EventContext {
            source: self.source,
            request_id,
        }
    }
}

/// Connections a service holds for its whole life.
#[derive(Clone)]
pub struct Infra {
    pub settings: Settings,
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub jetstream: jetstream::Context,
}

impl Infra {
    pub async fn connect(
        settings: Settings,
        info: ServiceInfo,
        migrations: &Migrator,
    ) -> anyhow::Result<Self> {
        let pool = crate::db::connect_and_migrate(&settings.database, migrations).await?;
        let nats = crate::nats::connect(&settings.nats, info.defaults.name).await?;
        let jetstream = crate::nats::jetstream(nats.clone());
        Ok(Self {
            settings,
            pool,
            nats,
            jetstream,
        })
    }
}

type Task = BoxFuture<'static, ()>;
/// A background task, started when the service runs, stopped by the shutdown token.
type StartTask = Box<dyn FnOnce(CancellationToken) -> Task + Send>;

/// A built service: a bound listener, its router and background tasks, not yet running.
pub struct Application {
    port: u16,
    listener: TcpListener,
    router: Router,
    infra: Infra,
    shutdown: CancellationToken,
    tasks: Vec<(String, StartTask)>,
}

impl Application {
    /// Binds the HTTP port (0 picks a free one) and adds the health routes, the common
    /// middleware and the outbox relay to the service's own `api`.
    pub async fn build(infra: Infra, api: Router) -> anyhow::Result<Self> {
        let http = &infra.settings.http;
        let listener = TcpListener::bind((http.host.as_str(), http.port)).await?;
        let port = listener.local_addr()?.port();
        let router = crate::http::with_common_layers(
            api.merge(health::routes(Readiness {
                pool: infra.pool.clone(),
                nats: infra.nats.clone(),
            })),
            http,
        );
        let relay = Relay::new(
            infra.pool.clone(),
            infra.jetstream.clone(),
            infra.settings.outbox.clone(),
            infra.settings.nats.clone(),
        );
        let mut app = Self {
            port,
            listener,
            router,
            infra,
            shutdown: CancellationToken::new(),
            tasks: Vec::new(),
        };
        app.spawn_on_run("outbox relay", move |token| Box::pin(relay.run(token)));
        Ok(app)
    }

    /// Adds a durable consumer named `durable` that feeds `handler`.
    pub fn with_consumer<H: EventHandler>(mut self, durable: &str, handler: H) -> Self {
        let consumer = Consumer {
            durable: durable.to_owned(),
            pool: self.infra.pool.clone(),
            jetstream: self.infra.jetstream.clone(),
            nats: self.infra.settings.nats.clone(),
            settings: self.infra.settings.consumer.clone(),
            handler,
        };
        self.spawn_on_run(durable, move |token| Box::pin(consumer.run(token)));
        self
    }

    fn spawn_on_run<F>(&mut self, name: &str, task: F)
    where
        F: FnOnce(CancellationToken) -> Task + Send + 'static,
    {
        self.tasks.push((name.to_owned(), Box::new(task)));
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cancelling this token stops the service as SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn pool(&self) -> &PgPool {
        &self.infra.pool
    }

    /// Serves until the shutdown token is cancelled, then stops in order: no new requests,
    /// in-flight requests finish, the relay and consumers finish the message at hand, the
    /// connections close.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            port,
            listener,
            router,
            infra,
            shutdown,
            tasks,
        } = self;
        let handles: Vec<_> = tasks
            .into_iter()
            .map(|(name, task)| (name, tokio::spawn(task(shutdown.clone()))))
            .collect();
        tracing::info!(port, "listening for HTTP requests");
        let grace = Duration::from_secs(infra.settings.http.shutdown_grace_secs);
        let served = crate::http::serve(listener, router, shutdown.clone(), grace).await;
        shutdown.cancel();
        for (name, handle) in handles {
            match tokio::time::timeout(grace, handle).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(task = %name, %error, "background task failed"),
                Err(_) => tracing::warn!(task = %name, "background task did not stop in time"),
            }
        }
        if let Err(error) = infra.nats.flush().await {
            tracing::warn!(%error, "could not flush NATS on shutdown");
        }
        infra.pool.close().await;
        tracing::info!("stopped");
        Ok(served?)
    }
}

/// Connects (migrating the database), builds the service's API from its pool with `api`, and
/// wraps it in an [`Application`]. A service's `startup::build` is this, plus its consumers.
pub async fn build<A>(
    settings: Settings,
    info: ServiceInfo,
    migrations: &Migrator,
    api: A,
) -> anyhow::Result<Application>
where
    A: FnOnce(PgPool) -> Router,
{
    let infra = Infra::connect(settings, info, migrations).await?;
    let router = api(infra.pool.clone());
    Application::build(infra, router).await
}

/// The whole `main` of a service: configuration, logging, build, run until SIGTERM or Ctrl-C.
pub async fn run<F, Fut>(info: ServiceInfo, build: F) -> anyhow::Result<()>
where
    F: FnOnce(Settings) -> Fut,
    Fut: Future<Output = anyhow::Result<Application>>,
{
    let settings = Settings::load(info.defaults)?;
    crate::telemetry::init(&settings.log);
    tracing::info!(
        service = info.defaults.name,
        version = info.version,
        ?settings,
        "starting"
    );
    let app = build(settings).await?;
    crate::shutdown::cancel_on_signal(app.shutdown_token());
    app.run_until_stopped().await
}
