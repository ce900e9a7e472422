//! A PostgreSQL database of its own, owned by a role of its own, on the test server.

use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::unique_name;

pub struct TestDatabase {
    pub name: String,
    /// Connects as the database's own role, as the service does.
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
        let database = Self {
            url: with_credentials(&admin_url, &name, &password, &name),
            name,
            admin_url,
        };
        database
            .admin(&[
                format!("create role {} login password '{password}'", database.name),
                format!("create database {name} owner {name}", name = database.name),
                format!(
                    "revoke connect, temporary on database {} from public",
                    database.name
                ),
            ])
            .await;
        database
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
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
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
