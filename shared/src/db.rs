//! Database pool, migrations and error classification.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::{DatabaseSettings, redact_url};
use crate::retry::Backoff;

/// The outbox and consumer tables that every service database holds. Their versions (1–99) sort
/// before every service's own migrations (100 and up).
static SHARED_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/shared");

/// The shared migrations followed by the service's own, as one migrator.
pub fn migrator(service: &Migrator) -> Migrator {
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

/// Connects, retrying while the database is not reachable yet (a container still starting),
/// then applies the migrations.
pub async fn connect_and_migrate(
    settings: &DatabaseSettings,
    service_migrations: &Migrator,
) -> anyhow::Result<PgPool> {
    let statement_timeout = format!("{}ms", settings.statement_timeout.as_millis());
    let options = settings
        .url
        .parse::<PgConnectOptions>()?
        .options([("statement_timeout", statement_timeout.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy_with(options);

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
    Ok(pool)
}

/// True for failures that go away by themselves: the database is down, restarting, overloaded,
/// or the pool is exhausted. Such work is retried; anything else is a permanent failure.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception, 53: insufficient resources, 55: object not in
            // prerequisite state (the database does not accept connections, a lock is not
            // available), 57: operator intervention (shutdown, cancelled), 3D000 and 28: the
            // database or role is missing or refused (being provisioned), 40001/40P01:
            // serialisation failure and deadlock.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("55")
                || code.starts_with("57")
                || code.starts_with("28")
                || code == "3D000"
                || code == "40001"
                || code == "40P01"
        }),
        _ => false,
    }
}

/// True when `error` is a unique-constraint violation.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
