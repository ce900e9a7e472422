//! A service, built and running: the one router made from its [`Service`] declaration
//! ([`app`]), the background tasks beside it (outbox relay, consumers), and the life cycle that
//! starts and stops them in order ([`Application`], [`run`]).

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::access::{Access, Authenticator};
use crate::events::housekeeping::Housekeeping;
use crate::events::outbox::Relay;
use crate::http::health::{self, Readiness};
use crate::infra::Infra;
use crate::infra::config::Settings;
use crate::service::{AppState, AppStateInner, Service, Subscription, Task, home};

/// The whole HTTP stack of `service` over `infra`: its routes and home page (with the
/// operator's dead-letter routes where it consumes events), each behind the roles its OpenAPI
/// entry declares ([`crate::auth`]), the OpenAPI document, health and metrics, inside the
/// common middleware, with the state of the service's [`crate::service::Extras`]; and the
/// extras' tasks, not yet started (they stop when `shutdown` is cancelled).
/// [`Application::build`] serves it; in-process tests answer requests with the very same
/// router.
pub fn app(
    service: &'static Service,
    infra: &Infra,
    shutdown: CancellationToken,
) -> anyhow::Result<(Router, Vec<(&'static str, Task)>)> {
    let router = common_stack(service, infra);
    match service.extras {
        Some(extras) => {
            let extras = extras(infra, shutdown)?;
            Ok(((extras.layer)(router), extras.tasks))
        }
        None => Ok((router, Vec::new())),
    }
}

/// [`app`] without the service's extras.
fn common_stack(service: &'static Service, infra: &Infra) -> Router {
    let http = &infra.settings.http;
    let (routes, api) = documented_routes(service).split_for_parts();
    let document = crate::http::openapi::document(service, api);
    let access = Access::new(&document, infra.authenticator.clone());
    let readiness = readiness(infra);
    let events = crate::infra::metrics::EventsSource {
        jetstream: infra.jetstream.clone(),
        stream: infra.settings.nats.stream.clone(),
        durables: service.consumers.iter().map(|c| c.durable).collect(),
    };
    let api = routes
        .route(service.home, get(home))
        .layer(axum::middleware::from_fn_with_state(
            crate::http::idempotency::Keys {
                pool: infra.pool.clone(),
                body_limit: http.body_limit_bytes,
                // Twice the longest a live request may run: a timed-out request's commit may
                // still be landing at the timeout itself.
                abandon_after: http.request_timeout * 2,
            },
            crate::http::idempotency::layer,
        ))
        // Outside the idempotency layer: a refused request touches no table.
        .route_layer(axum::middleware::from_fn_with_state(
            infra.control.clone(),
            crate::http::maintenance::layer,
        ))
        // Outside the idempotency layer: a stored answer is given only to a caller who may
        // make the request. Outside maintenance too: a stranger learns nothing of it.
        .route_layer(axum::middleware::from_fn_with_state(
            access,
            crate::auth::access::authorize,
        ))
        .with_state(AppState::new(AppStateInner {
            pool: infra.pool.clone(),
            service,
            jetstream: infra.jetstream.clone(),
            nats: infra.nats.clone(),
            query_deadline: infra.settings.nats.query_deadline,
            site: infra.settings.site.clone(),
            outbox_written: infra.outbox_written.clone(),
        }))
        .merge(crate::http::openapi::routes(document))
        .merge(health::routes(readiness))
        .merge(crate::infra::metrics::routes(
            infra.metrics.clone(),
            infra.pool.clone(),
            events,
            infra.control.clone(),
        ));
    crate::http::with_common_layers(api, http, infra.metrics.clone())
}

/// What `/readyz` and the heartbeat report about `infra`. (Here, not in `http::health`, which
/// `infra` depends on.)
fn readiness(infra: &Infra) -> Readiness {
    Readiness {
        pool: infra.pool.clone(),
        nats: infra.nats.clone(),
        consumers: infra.consumers.clone(),
        authentication: !matches!(*infra.authenticator, Authenticator::Off),
        control: infra.control.clone(),
    }
}

/// The service's own routes, and the dead-letter routes where it consumes events.
fn documented_routes(service: &'static Service) -> OpenApiRouter<AppState> {
    let routes = (service.routes)();
    if service.consumers.is_empty() {
        routes
    } else {
        routes.merge(crate::events::dead_letters::routes())
    }
}

/// The OpenAPI document `service` serves at `/openapi.json`.
pub fn openapi(service: &'static Service) -> utoipa::openapi::OpenApi {
    crate::http::openapi::document(service, documented_routes(service).split_for_parts().1)
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
    service: &'static Service,
    /// The tasks of the service's [`crate::service::Extras`].
    extra_tasks: Vec<(&'static str, Task)>,
}

impl Application {
    /// Connects (migrating the database), binds the HTTP port (0 picks a free one) and builds
    /// the service's [`app`].
    pub async fn build(service: &'static Service, settings: Settings) -> anyhow::Result<Self> {
        let infra = Infra::connect(settings, service.name, service.migrations).await?;
        let http = &infra.settings.http;
        let listener = crate::http::listen(&http.host, http.port).await?;
        let port = listener.local_addr()?.port();
        let shutdown = CancellationToken::new();
        let (router, extra_tasks) = app(service, &infra, shutdown.child_token())?;
        Ok(Self {
            port,
            listener,
            router,
            infra,
            shutdown,
            relay: true,
            consumers: service.consumers,
            service,
            extra_tasks,
        })
    }

    /// Serves the API only: no outbox relay, housekeeping, consumers, Services API or the
    /// tasks of the service's extras. Events written by this instance
    /// wait in the outbox for an instance that relays. Tests use it to drive the relay and the
    /// consumers one step at a time.
    pub fn without_background_tasks(mut self) -> Self {
        self.relay = false;
        self.consumers = &[];
        self.extra_tasks.clear();
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
            service,
            extra_tasks,
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
            let instance = uuid::Uuid::new_v4().simple().to_string();
            handles.push((
                "services api",
                AbortOnDropHandle::new(tokio::spawn(crate::micro::responder::run(
                    service,
                    infra.clone(),
                    instance.clone(),
                    shutdown.child_token(),
                ))),
            ));
            handles.push((
                "control",
                AbortOnDropHandle::new(tokio::spawn(crate::control::listener::run(
                    service,
                    infra.clone(),
                    instance.clone(),
                    shutdown.child_token(),
                ))),
            ));
            handles.push((
                "heartbeat",
                AbortOnDropHandle::new(tokio::spawn(crate::micro::heartbeat::run(
                    service,
                    readiness(&infra),
                    instance,
                    infra.settings.nats.heartbeat_interval,
                    shutdown.child_token(),
                ))),
            ));
            let housekeeping = Housekeeping::new(&infra);
            handles.push((
                "housekeeping",
                AbortOnDropHandle::new(tokio::spawn(housekeeping.run(shutdown.child_token()))),
            ));
        }
        for subscription in consumers {
            let task = (subscription.start)(subscription.durable, &infra, shutdown.child_token());
            handles.push((
                subscription.durable,
                AbortOnDropHandle::new(tokio::spawn(task)),
            ));
        }
        for (name, task) in extra_tasks {
            handles.push((name, AbortOnDropHandle::new(tokio::spawn(task))));
        }
        tracing::info!(port, "listening for HTTP requests");
        let grace = infra.settings.http.shutdown_grace;
        let limits = crate::http::ConnectionLimits {
            max_connections: infra.settings.http.max_connections,
            header_read_timeout: infra.settings.http.header_read_timeout,
        };
        let served = crate::http::serve(listener, router, shutdown.clone(), grace, limits).await;
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
        infra.relay_pool.close().await;
        tracing::info!("stopped");
        Ok(served?)
    }
}

/// The whole `main` of a service: configuration, logging, build, run until SIGTERM or Ctrl-C.
pub async fn run(service: &'static Service) -> anyhow::Result<()> {
    let settings = Settings::load(service.defaults())?;
    let _telemetry = crate::infra::telemetry::init(&settings.log, service.name);
    tracing::info!(
        service = service.name,
        version = service.version,
        ?settings,
        "starting"
    );
    let app = Application::build(service, settings).await?;
    crate::infra::shutdown::cancel_on_signal(app.shutdown_token());
    app.run_until_stopped().await
}
