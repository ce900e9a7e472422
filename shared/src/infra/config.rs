//! Typed configuration, layered as: built-in defaults, then an optional file, then environment
//! variables. See `docs/configuration.md` for every key.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::Site;

/// Environment variables that override the configuration start with this prefix, and nested keys
/// are separated by a double underscore: `OPD_HTTP__PORT=9090`, `OPD_DATABASE__URL=postgres://…`.
pub(crate) const ENV_PREFIX: &str = "OPD";

/// Names a configuration file to read after the defaults (TOML). Without it, `opd.toml` in the
/// working directory is read if there is one.
pub(crate) const CONFIG_FILE_ENV: &str = "OPD_CONFIG_FILE";

/// What a service contributes to its own defaults.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDefaults {
    /// Short name, also the name of its database and role: `registration` → `opd_registration`.
    pub name: &'static str,
    /// The book's port for this service.
    pub port: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub http: HttpSettings,
    pub auth: AuthSettings,
    pub database: DatabaseSettings,
    pub nats: NatsSettings,
    pub outbox: OutboxSettings,
    pub consumer: ConsumerSettings,
    pub log: LogSettings,
    /// The board service's (the other services ignore it).
    pub board: BoardSettings,
    /// The site this instance serves (`OPD_SITE`): `hospital`, or a clinic's name. Registration
    /// puts it beside every token it gives; a clinic's instance runs against the clinic's own
    /// NATS server and database (docs/architecture.md, "Sites").
    pub site: Site,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpSettings {
    pub host: String,
    /// 0 binds a free port (the tests do this).
    pub port: u16,
    /// Requests with a larger body are answered with 413.
    pub body_limit_bytes: usize,
    /// How long in-flight requests and background tasks may take to finish once shutdown has
    /// begun.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// A request that takes longer is answered with 503 and abandoned, so that a stuck
    /// dependency cannot hold connections for ever. Keep it above `database.statement_timeout`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A client must send its whole request head (line and headers) within this time of
    /// connecting, or of its previous request on a kept-alive connection.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Connections open at once. At the limit the service accepts no more until one closes;
    /// keep it below the process's file descriptor limit, less the database pool's.
    pub max_connections: usize,
    /// The names the service answers to besides IP addresses (`Host`); `*` allows any. A
    /// browser tricked into sending a request under another name (DNS rebinding) gets 421.
    pub allowed_hosts: Vec<String>,
    /// Takes a JSON body sent as `application/x-www-form-urlencoded` (or with no content
    /// type), as the book's curl commands send it. Off: such a body is refused with 415, so
    /// that a form on another site cannot post JSON-looking text.
    pub accept_form_encoded_json: bool,
    /// Requests served at once; one more is answered with 503 at once instead of queueing, so
    /// that a burst degrades into quick refusals rather than ever longer waits.
    pub max_concurrent_requests: usize,
    /// An `Idempotency-Key` and the answer to its request are kept this long: a repeat within
    /// it gets the first answer back.
    #[serde(with = "humantime_serde")]
    pub idempotency_retention: Duration,
}

/// Bearer tokens on the HTTP APIs (see [`crate::auth`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthSettings {
    /// Off, every caller is served as anonymous with every role: only for running the book's
    /// curl commands as printed. The service then says so at start-up, in every request's log
    /// context and in `/readyz`.
    pub enabled: bool,
    /// The JWKS document (`{"keys": [...]}`) with the public keys of the token issuer: the
    /// development issuer's `auth-jwks.json`, or a copy of an OIDC provider's `jwks_uri`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The tokens' `iss`, exactly.
    pub issuer: String,
    /// A value the tokens' `aud` must hold.
    pub audience: String,
    /// Where the roles are in the token: a claim name, or a dotted path to an array
    /// (Keycloak's realm roles: `realm_access.roles`).
    pub roles_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/database`
    pub url: String,
    /// A file holding the password (a Docker or Kubernetes secret), which then replaces any
    /// password in `url`, so that the URL itself holds no secret. Surrounding white space (the
    /// file's final newline) is not part of the password.
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    pub max_connections: u32,
    /// A request waits at most this long for a connection before it is answered with 503.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// At start-up, keep trying to reach the database for this long before giving up.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// A statement running longer is cancelled, so a stuck database answers 503 instead of
    /// holding requests and connections for ever.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
}

// The URL carries a password: never print it.
impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("password_file", &self.password_file)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("startup_timeout", &self.startup_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// Replaces the password of a URL with `***` for logs.
pub(crate) fn redact_url(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    redact_query_password(&url)
}

/// libpq also takes the password as a query parameter (`?password=…`, `&sslpassword=…`).
fn redact_query_password(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().ends_with("password") => {
                format!("{key}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

#[derive(Clone, Serialize, Deserialize)]
pub struct NatsSettings {
    /// Every node of the cluster; the client fails over between them.
    pub servers: Vec<String>,
    /// The file holding this service's NATS identity: an nkey seed (`SU…`). The server knows
    /// only the public key, and what that identity may publish and subscribe to
    /// (`nats/auth.conf`). A secret: give it as a file, never in the configuration itself.
    pub nkey_seed_file: Option<PathBuf>,
    pub tls: NatsTlsSettings,
    /// The JetStream stream that carries every `patient.*` event. Its owner creates and tunes
    /// it (`opd-nats stream`, with its own settings); a service only uses it.
    pub stream: String,
    /// How long a broadcast query (`opd.where`) gathers answers; a service that has not
    /// answered by then is reported as not answering.
    #[serde(with = "humantime_serde")]
    pub query_deadline: Duration,
    /// How often each instance publishes its heartbeat (`opd.heartbeat.<service>.<instance>`).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
}

/// TLS towards the NATS servers. On by default: the servers refuse plain-text clients anyway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NatsTlsSettings {
    /// Refuse a server that does not offer TLS.
    pub required: bool,
    /// The CA certificate (PEM) the servers' certificates must chain to; the system's roots
    /// when unset.
    pub ca_file: Option<PathBuf>,
    /// This client's certificate and key (PEM), for servers that ask for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSettings")
            .field(
                "servers",
                &self
                    .servers
                    .iter()
                    .map(|s| redact_url(s))
                    .collect::<Vec<_>>(),
            )
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field("tls", &self.tls)
            .field("stream", &self.stream)
            .field("query_deadline", &self.query_deadline)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .finish()
    }
}

/// Growing delays while a dependency is away: from `initial`, doubling, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrySettings {
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxSettings {
    /// Rows published per database transaction.
    pub batch_size: i64,
    /// The relay is woken by a notification when an event is written; this tick is the fallback.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Once woken, how long the relay waits for more events before it claims a batch, so that
    /// events written one by one still go out many to a round trip (claim, publish, stamp).
    /// Adds at most this to an event's way to its consumers; `0s` turns it off.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// How long to wait for JetStream to acknowledge one publish.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// Backoff while NATS or the database is unreachable.
    pub retry: RetrySettings,
    /// Published rows are deleted once they are this old.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often the relay deletes old published rows and old handled-event records.
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
    /// At start-up and after each reconnection to NATS, the relay publishes again what it
    /// published this recently: longer than the nodes' `sync_interval` (10 s), shorter than
    /// the stream's duplicate window (10 min).
    #[serde(with = "humantime_serde")]
    pub republish_window: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumerSettings {
    /// Messages pulled from JetStream in one request.
    pub batch_size: usize,
    /// A message that failed for a passing reason (database down) is redelivered after a delay
    /// that grows with each delivery; binding the consumer again after NATS was lost backs off
    /// the same way.
    pub retry: RetrySettings,
    /// A message that failed this many deliveries for a reason that may pass is parked in
    /// `dead_letters` (with an error log line carrying `alert`), where an operator can retry it.
    /// While the database is down nothing can be parked, so an outage only delays events.
    pub max_deliveries: u32,
    /// Handled event ids are kept this long to recognise a repeat. Far longer than anything
    /// can repeat: a relay republishes within its lease, JetStream redelivers until acknowledged.
    #[serde(with = "humantime_serde")]
    pub inbox_retention: Duration,
}

/// The waiting-room board's event streams (`GET /opd/board/events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardSettings {
    /// Event streams open at once on one instance; one more is refused with 503 and
    /// `Retry-After`. Keep it below `http.max_connections`.
    pub max_streams: usize,
    /// A comment goes down every open stream this often, so that proxies and browsers keep an
    /// idle stream open, and a dead one is noticed.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// How long a browser waits before it reconnects a broken stream (the `retry` field).
    #[serde(with = "humantime_serde")]
    pub reconnect_after: Duration,
    /// Changes held for a slow stream; one that falls further behind is sent a snapshot.
    pub buffer: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogSettings {
    /// An `EnvFilter` directive; `RUST_LOG` wins when it is set.
    pub filter: String,
    /// `pretty` for people, `json` for log collectors.
    pub format: LogFormat,
    /// Where spans are exported over OTLP/HTTP (`http://collector:4318/v1/traces`); none are
    /// exported when unset. Trace context travels with requests and events either way.
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The configuration file read when `OPD_CONFIG_FILE` is not set, if it exists.
pub(crate) const DEFAULT_CONFIG_FILE: &str = "opd.toml";

/// The configuration file to read: the one `OPD_CONFIG_FILE` names, else `opd.toml` in the
/// working directory if there is one.
pub fn config_file() -> Option<PathBuf> {
    match std::env::var_os(CONFIG_FILE_ENV) {
        Some(path) => Some(PathBuf::from(path)),
        None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|path| path.is_file()),
    }
}

/// `defaults`, then `file` (which must exist when given), then the `OPD_*` variables of
/// `environment` (the process environment when `None`): the layering every program of the
/// platform reads its settings with, whatever their type. Keys `T` does not have are ignored,
/// so that one file or environment can hold a service's settings and a tool's.
///
/// ```
/// use std::collections::HashMap;
/// use std::time::Duration;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Tool {
///     #[serde(with = "humantime_serde")]
///     patience: Duration,
/// }
///
/// let environment = HashMap::from([("OPD_PATIENCE".to_owned(), "2m".to_owned())]);
/// let tool = opd_shared::infra::config::layered(
///     &Tool { patience: Duration::from_secs(60) },
///     None,
///     Some(environment),
/// )?;
/// assert_eq!(tool.patience, Duration::from_secs(120));
/// # Ok::<(), config::ConfigError>(())
/// ```
pub fn layered<T: Serialize + serde::de::DeserializeOwned>(
    defaults: &T,
    file: Option<&Path>,
    environment: Option<HashMap<String, String>>,
) -> Result<T, config::ConfigError> {
    let mut builder = config::Config::builder().add_source(config::Config::try_from(defaults)?);
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).required(true));
    }
    builder
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("nats.servers")
                .with_list_parse_key("http.allowed_hosts")
                .try_parsing(true)
                .source(environment),
        )
        .build()?
        .try_deserialize::<T>()
}

impl Settings {
    /// The defaults run against the local stack that `scripts/dev.sh up` starts.
    pub fn defaults(service: ServiceDefaults) -> Self {
        Self {
            http: HttpSettings {
                host: "0.0.0.0".into(),
                port: service.port,
                body_limit_bytes: 64 * 1024,
                shutdown_grace: Duration::from_secs(20),
                request_timeout: Duration::from_secs(15),
                header_read_timeout: Duration::from_secs(10),
                max_connections: 4096,
                allowed_hosts: vec!["localhost".into()],
                accept_form_encoded_json: false,
                max_concurrent_requests: 1024,
                idempotency_retention: Duration::from_secs(24 * 60 * 60),
            },
            auth: AuthSettings {
                enabled: true,
                jwks_file: None,
                // The development issuer (`opd-nats token`); a real one replaces both.
                issuer: "opd-dev".into(),
                audience: "opd".into(),
                roles_claim: "roles".into(),
                leeway: Duration::from_secs(30),
            },
            database: DatabaseSettings {
                // Development default only: scripts/dev.sh creates this role with this password.
                url: format!(
                    "postgres://opd_{name}:opd_{name}_dev@127.0.0.1:5433/opd_{name}",
                    name = service.name
                ),
                password_file: None,
                max_connections: 10,
                acquire_timeout: Duration::from_secs(3),
                startup_timeout: Duration::from_secs(60),
                statement_timeout: Duration::from_secs(10),
            },
            nats: NatsSettings {
                servers: vec![
                    "nats://127.0.0.1:4222".into(),
                    "nats://127.0.0.1:4223".into(),
                    "nats://127.0.0.1:4224".into(),
                ],
                nkey_seed_file: None,
                tls: NatsTlsSettings {
                    required: true,
                    ca_file: None,
                    cert_file: None,
                    key_file: None,
                },
                stream: "PATIENT".into(),
                query_deadline: Duration::from_secs(1),
                heartbeat_interval: Duration::from_secs(5),
            },
            outbox: OutboxSettings {
                batch_size: 100,
                poll_interval: Duration::from_secs(5),
                linger: Duration::from_millis(2),
                publish_timeout: Duration::from_secs(5),
                retry: RetrySettings {
                    initial: Duration::from_millis(200),
                    max: Duration::from_secs(10),
                },
                retention: Duration::from_secs(24 * 60 * 60),
                prune_interval: Duration::from_secs(60),
                republish_window: Duration::from_secs(30),
            },
            consumer: ConsumerSettings {
                batch_size: 50,
                max_deliveries: 100,
                retry: RetrySettings {
                    initial: Duration::from_millis(500),
                    max: Duration::from_secs(30),
                },
                // As long as the stream keeps events (its max_age): see `open_stream`.
                inbox_retention: Duration::from_secs(30 * 24 * 60 * 60),
            },
            log: LogSettings {
                filter: "info,sqlx=warn,async_nats=info".into(),
                format: LogFormat::Pretty,
                otlp_endpoint: None,
            },
            board: BoardSettings {
                max_streams: 2000,
                keep_alive: Duration::from_secs(15),
                reconnect_after: Duration::from_secs(1),
                buffer: 4096,
            },
            site: Site::hospital(),
        }
    }

    /// Defaults, then the configuration file (`OPD_CONFIG_FILE`, else `opd.toml` in the working
    /// directory if there is one), then `OPD_*` environment variables.
    pub fn load(service: ServiceDefaults) -> Result<Self, config::ConfigError> {
        Self::layered(service, config_file().as_deref(), None)
    }

    /// The layering behind [`Settings::load`]: `file` is read only when given (and must exist),
    /// and `environment` replaces the process environment (for tests).
    pub fn layered(
        service: ServiceDefaults,
        file: Option<&Path>,
        environment: Option<HashMap<String, String>>,
    ) -> Result<Self, config::ConfigError> {
        layered(&Self::defaults(service), file, environment)?.checked()
    }

    /// The settings, if they agree with each other. Each rule below is a relation between two
    /// settings that their types cannot hold; breaking one does not fail at once but loses or
    /// repeats work later, so it stops start-up instead, naming both. The relations with the
    /// stream's own settings, which its owner sets, are checked against the live stream when a
    /// relay or a consumer opens it ([`crate::infra::nats::StreamNeed`]).
    pub fn checked(self) -> Result<Self, config::ConfigError> {
        let rules = [
            (
                self.outbox.republish_window < self.outbox.retention,
                format!(
                    "outbox.republish_window ({:?}) must be shorter than outbox.retention \
                     ({:?}): the relay can only publish again a row it still has",
                    self.outbox.republish_window, self.outbox.retention
                ),
            ),
            (
                self.http.request_timeout > self.database.statement_timeout,
                format!(
                    "http.request_timeout ({:?}) must be longer than \
                     database.statement_timeout ({:?}): a slow statement must end as a \
                     database error, not as a request abandoned while it still runs",
                    self.http.request_timeout, self.database.statement_timeout
                ),
            ),
            (
                self.http.max_connections >= self.http.max_concurrent_requests.max(1),
                format!(
                    "http.max_connections ({}) must be at least http.max_concurrent_requests \
                     ({}), and at least 1: every request being served holds a connection, and \
                     with none the service would accept nothing and say nothing",
                    self.http.max_connections, self.http.max_concurrent_requests
                ),
            ),
            (
                self.outbox.retry.initial <= self.outbox.retry.max,
                format!(
                    "outbox.retry.initial ({:?}) must not exceed outbox.retry.max ({:?})",
                    self.outbox.retry.initial, self.outbox.retry.max
                ),
            ),
            (
                self.board.max_streams >= 1
                    && self.board.buffer >= 1
                    && self.board.max_streams < self.http.max_connections,
                format!(
                    "board.max_streams ({}) and board.buffer ({}) must be at least 1, and \
                     board.max_streams below http.max_connections ({}): every stream holds a \
                     connection, and the page and the JSON need some too",
                    self.board.max_streams, self.board.buffer, self.http.max_connections
                ),
            ),
            (
                self.consumer.retry.initial <= self.consumer.retry.max,
                format!(
                    "consumer.retry.initial ({:?}) must not exceed consumer.retry.max ({:?})",
                    self.consumer.retry.initial, self.consumer.retry.max
                ),
            ),
        ];
        let broken: Vec<String> = rules
            .into_iter()
            .filter(|(holds, _)| !holds)
            .map(|(_, why)| why)
            .collect();
        if broken.is_empty() {
            Ok(self)
        } else {
            Err(config::ConfigError::Message(broken.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_password_of_a_database_url() {
        assert_eq!(
            redact_url("postgres://opd:secret@db:5432/opd"),
            "postgres://opd:***@db:5432/opd"
        );
        assert_eq!(
            redact_url("postgres://db:5432/opd"),
            "postgres://db:5432/opd"
        );
        assert_eq!(
            redact_url("postgres://opd@db/opd?sslmode=require&password=secret&sslpassword=key"),
            "postgres://opd@db/opd?sslmode=require&password=***&sslpassword=***"
        );
    }

    #[test]
    fn settings_never_print_a_secret() {
        let mut settings = Settings::layered(REGISTRATION, None, Some(HashMap::new())).unwrap();
        settings.database.url = "postgres://opd:hunter2@db/opd?password=hunter2".into();
        settings.nats.servers = vec!["nats://svc:hunter2@nats-1:4222".into()];
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    const REGISTRATION: ServiceDefaults = ServiceDefaults {
        name: "registration",
        port: 9090,
    };

    #[test]
    fn environment_overrides_file_overrides_defaults() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("opd-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("opd.toml");
        std::fs::write(
            &file,
            "[http]\nport = 7000\nbody_limit_bytes = 1024\n[outbox.retry]\nmax = \"2m\"\n",
        )?;
        let environment = HashMap::from([
            ("OPD_HTTP__PORT".to_owned(), "8000".to_owned()),
            (
                "OPD_NATS__SERVERS".to_owned(),
                "nats://a:4222,nats://b:4222".to_owned(),
            ),
            ("OPD_LOG__FORMAT".to_owned(), "json".to_owned()),
            ("OPD_CONSUMER__RETRY__MAX".to_owned(), "1m 30s".to_owned()),
        ]);
        let settings = Settings::layered(REGISTRATION, Some(&file), Some(environment))?;
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(settings.http.port, 8000, "environment wins over the file");
        assert_eq!(
            settings.http.body_limit_bytes, 1024,
            "the file wins over defaults"
        );
        assert_eq!(settings.nats.servers, ["nats://a:4222", "nats://b:4222"]);
        assert_eq!(settings.log.format, LogFormat::Json);
        assert_eq!(settings.consumer.retry.max, Duration::from_secs(90));
        assert_eq!(settings.outbox.retry.max, Duration::from_secs(120));
        assert_eq!(
            settings.outbox.retry.initial,
            Duration::from_millis(200),
            "a nested default survives a file that sets its sibling"
        );
        assert_eq!(settings.nats.stream, "PATIENT", "defaults fill the rest");
        Ok(())
    }

    #[test]
    fn defaults_point_at_the_local_stack() -> Result<(), config::ConfigError> {
        let settings = Settings::layered(REGISTRATION, None, Some(HashMap::new()))?;
        assert_eq!(settings.http.port, 9090);
        assert!(
            settings
                .database
                .url
                .ends_with("@127.0.0.1:5433/opd_registration")
        );
        assert_eq!(settings.nats.servers.len(), 3);
        assert_eq!(
            settings.consumer.inbox_retention,
            Duration::from_secs(30 * 24 * 60 * 60)
        );
        Ok(())
    }

    #[test]
    fn a_duration_that_does_not_parse_is_an_error_naming_the_key() {
        let environment =
            HashMap::from([("OPD_OUTBOX__POLL_INTERVAL".to_owned(), "often".to_owned())]);
        let error = Settings::layered(REGISTRATION, None, Some(environment))
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(error.contains("poll_interval"), "{error}");
    }

    #[test]
    fn settings_that_disagree_stop_loading_with_both_named() {
        for (variable, value, both) in [
            (
                "OPD_OUTBOX__RETENTION",
                "10s",
                ["outbox.republish_window", "outbox.retention"],
            ),
            (
                "OPD_DATABASE__STATEMENT_TIMEOUT",
                "20s",
                ["http.request_timeout", "database.statement_timeout"],
            ),
            (
                "OPD_OUTBOX__RETRY__INITIAL",
                "1m",
                ["outbox.retry.initial", "outbox.retry.max"],
            ),
            (
                "OPD_HTTP__MAX_CONNECTIONS",
                "0",
                ["http.max_connections", "http.max_concurrent_requests"],
            ),
            (
                "OPD_HTTP__MAX_CONNECTIONS",
                "100",
                ["http.max_connections", "http.max_concurrent_requests"],
            ),
            (
                "OPD_CONSUMER__RETRY__MAX",
                "100ms",
                ["consumer.retry.initial", "consumer.retry.max"],
            ),
        ] {
            let environment = HashMap::from([(variable.to_owned(), value.to_owned())]);
            let error = Settings::layered(REGISTRATION, None, Some(environment))
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default();
            for name in both {
                assert!(
                    error.contains(name),
                    "{variable}={value}: {error:?} names {name}"
                );
            }
        }
        // What agrees loads: a longer request time, a shorter republish window.
        let environment = HashMap::from([
            ("OPD_OUTBOX__REPUBLISH_WINDOW".to_owned(), "15s".to_owned()),
            ("OPD_HTTP__REQUEST_TIMEOUT".to_owned(), "1m".to_owned()),
        ]);
        assert!(Settings::layered(REGISTRATION, None, Some(environment)).is_ok());
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let mut settings = Settings::defaults(ServiceDefaults {
            name: "registration",
            port: 9090,
        });
        settings.nats.servers = vec!["nats://svc:hunter2@nats-1:4222".into()];
        let printed = format!("{settings:?}");
        assert!(!printed.contains("opd_registration_dev"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
