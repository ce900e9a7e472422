//! Database pool, migrations and error classification.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

use crate::infra::config::{DatabaseSettings, redact_url};
use crate::infra::retry::Backoff;
use crate::infra::secret_file;

/// The outbox and consumer tables that every service database holds. Their versions (1–99) sort
/// before every service's own migrations (100 and up).
static SHARED_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/shared");

/// The shared migrations followed by the service's own, as one migrator.
pub(crate) fn migrator(service: &Migrator) -> Migrator {
    let mut migrations: Vec<_> = SHARED_MIGRATIONS
        .iter()
        .chain(service.iter())
        .cloned()
        .collect();
    migrations.sort_by_key(|migration| migration.version);
    Migrator {
        migrations: migrations.into(),
        ..Migrator::DEFAULT
    }
}

/// A pooled connection idle for this long is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// The outbox relay's connections, beside the pool that serves requests.
const RELAY_CONNECTIONS: u32 = 2;

/// A service's connections to its database.
pub struct Pools {
    /// Requests, consumers and housekeeping: `database.max_connections`, every commit durable.
    pub main: PgPool,
    /// The outbox relay's own: it never queues behind the requests for a connection (under load
    /// it fell behind them by seconds); its bookkeeping commits without waiting for the disk
    /// (`synchronous_commit = off`); and each of its statements is planned for the table as it
    /// is (`plan_cache_mode = force_custom_plan`). Not waiting for the disk is safe because its
    /// writes (a claim, a `published_at` stamp, a republish mark) only decide whether an event
    /// is published once more: one lost in a crash makes the relay publish again what it had
    /// published, which JetStream's de-duplication and the consumers' inbox absorb. What it
    /// publishes was committed by a request durably (on `main`), and a commit is visible to the
    /// relay only once it is on disk.
    pub relay: PgPool,
}

/// Connects, retrying while the database is not reachable yet (a container still starting),
/// then applies the migrations.
pub(crate) async fn connect_and_migrate(
    settings: &DatabaseSettings,
    service_migrations: &Migrator,
) -> anyhow::Result<Pools> {
    let statement_timeout = format!("{}ms", settings.statement_timeout.as_millis());
    let mut options = settings
        .url
        .parse::<PgConnectOptions>()?
        .options([("statement_timeout", statement_timeout.as_str())]);
    if let Some(path) = &settings.password_file {
        let password = secret_file::read("database.password_file", path).await?;
        options = options.password(&password);
    }
    let pool = pool_of(settings, settings.max_connections, options.clone());
    let relay = pool_of(
        settings,
        RELAY_CONNECTIONS,
        options.options([
            ("synchronous_commit", "off"),
            // Planned afresh at every run: its statements run once a batch, and a plan cached
            // while the outbox was empty (a sequential scan) would stay for the connection's
            // life as the table grows to a day of events (docs/benchmarks.md).
            ("plan_cache_mode", "force_custom_plan"),
        ]),
    );

    let deadline = tokio::time::Instant::now() + settings.startup_timeout;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match sqlx::query("select 1").execute(&pool).await {
            Ok(_) => break,
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%error, url = %redact_url(&settings.url), "database not reachable yet; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(error) => {
                return Err(anyhow::Error::new(error).context(format!(
                    "database {} not reachable",
                    redact_url(&settings.url)
                )));
            }
        }
    }

    migrator(service_migrations).run(&pool).await?;
    Ok(Pools { main: pool, relay })
}

/// A few connections of their own for one hot statement, beside `main` and like its
/// connections but for the session settings `options` (`plan_cache_mode`, say). Closed when the
/// pool is dropped.
pub fn dedicated_pool(
    main: &PgPool,
    settings: &DatabaseSettings,
    connections: u32,
    options: &[(&str, &str)],
) -> PgPool {
    let connect = main
        .connect_options()
        .as_ref()
        .clone()
        .options(options.iter().copied());
    // Opened at start, in the background, so that the first statement does not wait for a
    // connection (and its authentication) to be made.
    pool_options(settings, connections)
        .min_connections(1)
        .connect_lazy_with(connect)
}

fn pool_of(settings: &DatabaseSettings, connections: u32, options: PgConnectOptions) -> PgPool {
    pool_options(settings, connections).connect_lazy_with(options)
}

fn pool_options(settings: &DatabaseSettings, connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(settings.acquire_timeout)
        // By default sqlx pings every connection it hands out: one more round trip per request,
        // although a busy pool's connections were in use milliseconds ago (and sqlx pings each
        // one again as it comes back, dropping it if that fails). Only a connection idle for
        // longer, which the server or a proxy may have closed meanwhile, is checked first.
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
}

/// True when `error` says the data itself is wrong, so that the same statement with the same data
/// fails every time: SQLSTATE class 22 (data exception: a value out of range, an invalid text
/// representation) and 23 (integrity constraint violation). Every other error, known or not (a
/// read-only failover target, a column missing during a rolling deploy, an I/O error), may pass
/// once its cause is fixed.
pub(crate) fn is_data_error(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23")))
}
