//! The life cycle every service shares: connect, migrate, serve, relay, consume, stop.
//!
//! A service crate describes itself once, as a [`Service`]: its name and port, its migrations,
//! its routes and the events it consumes. Everything else (configuration, connections, the HTTP
//! stack, the outbox relay, the consumers, shutdown) is built here from that description.

use std::sync::Arc;

use async_nats::jetstream;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use futures::future::BoxFuture;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use utoipa_axum::router::OpenApiRouter;

use crate::config::{ServiceDefaults, Settings};
use crate::consumer::{Consumer, EventHandler};
use crate::health::{self, Readiness};
use crate::outbox::{EventContext, Relay};

/// Everything that makes one service different from the others.
pub struct Service {
    /// Short name, also the name of its database and role: `registration` → `opd_registration`.
    pub name: &'static str,
    /// The book's port for this service.
    pub port: u16,
    /// The book's name, shown by `GET /opd/<area>/`.
    pub title: &'static str,
    pub version: &'static str,
    /// CloudEvents `source` of the events it produces.
    pub source: &'static str,
    /// Its own tables (the shared outbox and inbox tables are added by [`crate::db`]).
    pub migrations: &'static Migrator,
    /// The book's home route, `GET /opd/<area>/`, answered by [`home`].
    pub home: &'static str,
    /// Its HTTP API, each route documented by its handler's `#[utoipa::path]`; the home page,
    /// health routes, the OpenAPI document and the middleware are added around it.
    pub routes: fn() -> OpenApiRouter<AppState>,
    /// The durable consumers it runs, one per subject it consumes.
    pub consumers: &'static [Subscription],
}

impl Service {
    pub fn defaults(&self) -> ServiceDefaults {
        ServiceDefaults {
            name: self.name,
            port: self.port,
        }
    }

    /// The subscription named `durable`, if this service has one.
    pub fn consumer(&self, durable: &str) -> Option<&Subscription> {
        self.consumers
            .iter()
            .find(|subscription| subscription.durable == durable)
    }
}

/// What every handler gets: the service's database and its description.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub service: &'static Service,
    /// For the operator's routes that publish directly (retrying a dead letter); None where
    /// the API runs without NATS (in-process tests).
    pub jetstream: Option<jetstream::Context>,
    outbox_written: Arc<Notify>,
}

impl AppState {
    /// Tells the outbox relay that events were committed: call it after the commit of every
    /// transaction that wrote to the outbox. (Without it they go out on the relay's polling
    /// tick.)
    pub fn events_written(&self) {
        self.outbox_written.notify_one();
    }

    /// Commits a transaction that wrote to the outbox, and wakes the relay.
    pub async fn commit(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Postgres>,
    ) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.events_written();
        Ok(())
    }

    /// Who causes the events this request writes to the outbox.
    pub fn event_context(&self, request_id: Option<String>) -> EventContext {
        EventContext {
            source: self.service.source,
            request_id,
        }
    }
}

/// The book's `GET /opd/<area>/` answer: name and version.
pub async fn home(State(state): State<AppState>) -> String {
    format!("{} v{}\n", state.service.title, state.service.version)
}

type Task = BoxFuture<'static, ()>;

/// A durable consumer of one subject, feeding one [`EventHandler`]. Every replica of a service
/// uses the same durable name, so each event is handled by one of them.
pub struct Subscription {
    pub durable: &'static str,
    start: fn(&'static str, &Infra, CancellationToken) -> Task,
}

impl Subscription {
    pub const fn new<H: EventHandler + Default>(durable: &'static str) -> Self {
        Self {
            durable,
            start: start_consumer::<H>,
        }
    }
}

fn start_consumer<H: EventHandler + Default>(
    durable: &'static str,
    infra: &Infra,
    shutdown: CancellationToken,
) -> Task {
    Box::pin(Consumer::new(durable, infra, H::default()).run(shutdown))
}

/// Connections a service holds for its whole life.
#[derive(Clone)]
pub struct Infra {
    pub settings: Settings,
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub jetstream: jetstream::Context,
    /// Requests that wrote events wake the relay through it.
    pub outbox_written: Arc<Notify>,
    /// The consumers report their state here, `/readyz` reads it.
    pub consumers: crate::health::Consumers,
    /// This instance's metrics, served at `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Infra {
    pub async fn connect(settings: Settings, service: &Service) -> anyhow::Result<Self> {
        let pool = crate::db::connect_and_migrate(&settings.database, service.migrations).await?;
        let nats = crate::nats::connect(&settings.nats, service.name).await?;
        let jetstream = crate::nats::jetstream(nats.clone());
        Ok(Self {
            settings,
            pool,
            nats,
            jetstream,
            outbox_written: Arc::new(Notify::new()),
            consumers: crate::health::Consumers::default(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
        })
    }
}

/// The service's HTTP API with its state and the common middleware, without health routes:
/// what a request meets after the health checks.
pub fn api_router(service: &'static Service, pool: PgPool, settings: &Settings) -> Router {
    crate::http::with_common_layers(
        routes_with_state(service, pool, None, Arc::new(Notify::new()), &settings.http),
        &settings.http,
        Arc::new(crate::metrics::Metrics::new()),
    )
}

/// The service's routes and its home page with their state, and the routes that serve their
/// OpenAPI document.
fn routes_with_state(
    service: &'static Service,
    pool: PgPool,
    jetstream: Option<jetstream::Context>,
    outbox_written: Arc<Notify>,
    http: &crate::config::HttpSettings,
) -> Router {
    let (routes, api) = documented_routes(service).split_for_parts();
    let document = crate::openapi::document(service, api);
    routes
        .route(service.home, get(home))
        .layer(axum::middleware::from_fn_with_state(
            crate::idempotency::Keys {
                pool: pool.clone(),
                body_limit: http.body_limit_bytes,
                // Twice the longest a live request may run: a timed-out request's commit may
                // still be landing at the timeout itself.
                abandon_after: http.request_timeout * 2,
            },
            crate::idempotency::layer,
        ))
        .with_state(AppState {
            pool,
            service,
            jetstream,
            outbox_written,
        })
        .merge(crate::openapi::routes(document))
}

/// The service's own routes, and the dead-letter routes where it consumes events.
fn documented_routes(service: &'static Service) -> OpenApiRouter<AppState> {
    let routes = (service.routes)();
    if service.consumers.is_empty() {
        routes
    } else {
        routes.merge(crate::dead_letters::routes())
    }
}

/// The OpenAPI document `service` serves at `/openapi.json`.
pub fn openapi(service: &'static Service) -> utoipa::openapi::OpenApi {
    crate::openapi::document(service, documented_routes(service).split_for_parts().1)
}

/// A built service: a bound listener, its router and background tasks, not yet running.
pub struct Application {
    port: u16,
    listener: TcpListener,
    router: Router,
    infra: Infra,
    shutdown: CancellationToken,
    relay: bool,
    consumers: &'static [Subscription],
}

impl Application {
    /// Connects (migrating the database), binds the HTTP port (0 picks a free one) and adds the
    /// health routes and the common middleware to the service's routes.
    pub async fn build(service: &'static Service, settings: Settings) -> anyhow::Result<Self> {
        let infra = Infra::connect(settings, service).await?;
        let http = &infra.settings.http;
        let listener = TcpListener::bind((http.host.as_str(), http.port)).await?;
        let port = listener.local_addr()?.port();
        let readiness = Readiness {
            pool: infra.pool.clone(),
            nats: infra.nats.clone(),
            consumers: infra.consumers.clone(),
        };
        let router = crate::http::with_common_layers(
            routes_with_state(
                service,
                infra.pool.clone(),
                Some(infra.jetstream.clone()),
                infra.outbox_written.clone(),
                http,
            )
            .merge(health::routes(readiness))
            .merge(crate::metrics::routes(
                infra.metrics.clone(),
                infra.pool.clone(),
                Some(crate::metrics::EventsSource {
                    jetstream: infra.jetstream.clone(),
                    stream: infra.settings.nats.stream.clone(),
                    durables: service.consumers.iter().map(|c| c.durable).collect(),
                }),
            )),
            http,
            infra.metrics.clone(),
        );
        Ok(Self {
            port,
            listener,
            router,
            infra,
            shutdown: CancellationToken::new(),
            relay: true,
            consumers: service.consumers,
        })
    }

    /// Serves the API only: no outbox relay and no consumers. Events written by this instance
    /// wait in the outbox for an instance that relays. Tests use it to drive the relay and the
    /// consumers one step at a time.
    pub fn without_background_tasks(mut self) -> Self {
        self.relay = false;
        self.consumers = &[];
        self
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cancelling this token stops the service as SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn infra(&self) -> &Infra {
        &self.infra
    }

    /// Serves until the shutdown token is cancelled, then stops in order: no new requests and
    /// the consumers finish the messages at hand; in-flight requests finish; the relay publishes
    /// what they committed; the connections close.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            port,
            listener,
            router,
            infra,
            shutdown,
            relay,
            consumers,
        } = self;
        // Aborted if this future is dropped (a test's simulated crash): no task outlives its
        // service.
        let mut handles: Vec<(&str, AbortOnDropHandle<()>)> = Vec::new();
        // The relay stops only once the HTTP server has drained: requests still running when
        // shutdown begins may commit events, and it publishes them before the process ends.
        let relay_stop = CancellationToken::new();
        if relay {
            let relay = Relay::new(&infra);
            handles.push((
                "outbox relay",
                AbortOnDropHandle::new(tokio::spawn(relay.run(relay_stop.clone()))),
            ));
        }
        for subscription in consumers {
            let task = (subscription.start)(subscription.durable, &infra, shutdown.child_token());
            handles.push((
                subscription.durable,
                AbortOnDropHandle::new(tokio::spawn(task)),
            ));
        }
        tracing::info!(port, "listening for HTTP requests");
        let grace = infra.settings.http.shutdown_grace;
        let served = crate::http::serve(
            listener,
            router,
            shutdown.clone(),
            grace,
            infra.settings.http.header_read_timeout,
        )
        .await;
        shutdown.cancel();
        relay_stop.cancel();
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

/// The whole `main` of a service: configuration, logging, build, run until SIGTERM or Ctrl-C.
pub async fn run(service: &'static Service) -> anyhow::Result<()> {
    let settings = Settings::load(service.defaults())?;
    let _telemetry = crate::telemetry::init(&settings.log, service.name);
    tracing::info!(
        service = service.name,
        version = service.version,
        ?settings,
        "starting"
    );
    let app = Application::build(service, settings).await?;
    crate::shutdown::cancel_on_signal(app.shutdown_token());
    app.run_until_stopped().await
}
