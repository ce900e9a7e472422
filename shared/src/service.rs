//! What a service declares about itself, once: a [`Service`] (name, port, migrations, routes,
//! the events it consumes), and what its handlers are given ([`AppState`]). [`crate::app`]
//! builds and runs everything else from that declaration.

use std::sync::Arc;

use async_nats::jetstream;
use axum::extract::State;
use futures::future::BoxFuture;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::events::Durable;
use crate::events::consumer::{Consumer, EventHandler, Retried};
use crate::infra::Infra;
use crate::infra::config::ServiceDefaults;

/// Everything that makes one service different from the others.
pub struct Service {
    /// Short name, also the name of its database and role: `registration` → `opd_registration`.
    pub name: &'static str,
    /// The book's port for this service.
    pub port: u16,
    /// The book's name, shown by `GET /opd/<area>/`.
    pub title: &'static str,
    pub version: &'static str,
    /// Its own tables (the shared outbox and inbox tables are added by [`crate::infra::db`]).
    pub migrations: &'static Migrator,
    /// The book's home route, `GET /opd/<area>/`, answered by [`home`].
    pub home: &'static str,
    /// Its HTTP API, each route documented by its handler's `#[utoipa::path]`; the home page,
    /// health routes, the OpenAPI document and the middleware are added around it.
    pub routes: fn() -> OpenApiRouter<AppState>,
    /// The durable consumers it runs, one per subject it consumes.
    pub consumers: &'static [Subscription],
    /// Where a patient is at this service: its answer on NATS to `opd.<name>.patient` and to
    /// the broadcast `opd.where` ([`crate::micro`]). `None` for a service that holds no
    /// patient of its own (the board): it answers neither.
    pub locate: Option<crate::micro::Locate>,
    /// What this service has beyond the common shape, built for each instance
    /// ([`Extras`]); `None` for most.
    pub extras: Option<fn(&Infra, CancellationToken) -> anyhow::Result<Extras>>,
}

/// A service's own parts beside the common shape, for one instance: state its routes reach
/// with `axum::Extension`, and tasks that keep it up to date. Built by [`Service::extras`]
/// from the instance's connections and a token that is cancelled when the instance stops.
pub struct Extras {
    /// Adds the state to the service's router (`router.layer(axum::Extension(state))`).
    pub layer: Box<dyn FnOnce(axum::Router) -> axum::Router + Send>,
    /// Run beside the API, like the consumers, until the token is cancelled.
    pub tasks: Vec<(&'static str, Task)>,
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

/// What every handler gets: the service's database and its description, behind one reference
/// count. axum clones the state for each request (the handler's copy, each `State`
/// extractor's). Held by value, the connections and the site's name were cloned each time,
/// with their allocations and reference counts; behind the `Arc`, registration spends a
/// quarter less CPU per `GET /opd/patient/view/{id}` (docs/benchmarks.md, "The book's sample
/// in the same run").
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    pub(crate) fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The parts of [`AppState`], reached through it (`state.pool`).
pub struct AppStateInner {
    pub pool: PgPool,
    pub service: &'static Service,
    /// For the operator's routes that publish directly (retrying a dead letter).
    pub jetstream: jetstream::Context,
    /// For requests over NATS (the broadcast query), answered within `query_deadline`.
    pub nats: async_nats::Client,
    pub query_deadline: std::time::Duration,
    /// The site this instance serves (`site` in the settings).
    pub site: crate::domain::Site,
    pub(crate) outbox_written: Arc<Notify>,
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
}

/// The book's `GET /opd/<area>/` answer: name and version.
pub async fn home(State(state): State<AppState>) -> String {
    format!("{} v{}\n", state.service.title, state.service.version)
}

/// A background task of a service instance.
pub type Task = BoxFuture<'static, ()>;

/// A service's durable consumer, one of [`crate::events::DURABLES`] (created by the stream's
/// owner), and what runs it. Every replica of a service uses the same durable, so each event is
/// handled by one of them.
pub struct Subscription {
    pub durable: &'static str,
    /// The subjects it reads.
    pub subjects: &'static [&'static str],
    pub(crate) start: fn(&'static str, &Infra, CancellationToken) -> Task,
    /// Handles one of its dead letters again, from the database (the operator's retry).
    pub(crate) retry: fn(PgPool, &'static str, i64) -> BoxFuture<'static, Retried>,
}

/// What runs a consumer that is not an [`EventHandler`] over the service's database (the
/// board's projection, whose effects live on NATS): the task that consumes `durable` until the
/// token is cancelled, and the operator's retry of one of its dead letters.
pub struct CustomConsumer {
    pub start: fn(&'static str, &Infra, CancellationToken) -> BoxFuture<'static, ()>,
    pub retry: fn(PgPool, &'static str, i64) -> BoxFuture<'static, Retried>,
}

impl Subscription {
    /// `durable`, read by [`Consumer`] with handler `H`. `durable` reads `H`'s event's subject
    /// alone: the consumer reports any other filter when it binds (`alert="consumer-drift"`).
    pub const fn new<H: EventHandler + Default>(durable: &'static Durable) -> Self {
        Self {
            durable: durable.name,
            subjects: durable.subjects,
            start: start_consumer::<H>,
            retry: retry_dead_letter::<H>,
        }
    }

    /// `durable`, read by a consumer of the service's own making.
    pub const fn custom(durable: &'static Durable, consumer: CustomConsumer) -> Self {
        Self {
            durable: durable.name,
            subjects: durable.subjects,
            start: consumer.start,
            retry: consumer.retry,
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

fn retry_dead_letter<H: EventHandler + Default>(
    pool: PgPool,
    durable: &'static str,
    id: i64,
) -> BoxFuture<'static, Retried> {
    Box::pin(async move { crate::events::consumer::retry::<H>(&pool, durable, id).await })
}
