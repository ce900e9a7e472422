//! The NATS servers' own monitoring endpoints (`/varz`, `/jsz`) as Prometheus metrics.
//!
//! Each scrape asks every node at once and builds a fresh registry from the answers, so a
//! stream or consumer that is gone disappears from the metrics instead of lingering. Stream and
//! consumer figures come from the node that leads them: followers may lag behind, and the
//! leader is the one that decides what is delivered and acknowledged.
//!
//! What a service cannot tell about itself is here: the lag of a consumer whose service is down,
//! and the state of every node and replica.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

mod monitoring;

use monitoring::{Jsz, Varz};

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Where the exporter listens and which nodes it asks.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `OPD_NATS_EXPORTER_LISTEN`, default `127.0.0.1:7777` (port 0 picks a free one).
    pub listen: String,
    /// `OPD_NATS_EXPORTER_SERVERS`, comma-separated monitoring URLs, default the three nodes of
    /// `scripts/dev.sh` (`http://127.0.0.1:8222`, `…:8223`, `…:8224`).
    pub servers: Vec<String>,
    /// How long a scrape waits for a node before it counts it as down.
    pub timeout: Duration,
}

impl Settings {
    pub fn from_env() -> Self {
        let listen =
            std::env::var("OPD_NATS_EXPORTER_LISTEN").unwrap_or_else(|_| "127.0.0.1:7777".into());
        let servers = std::env::var("OPD_NATS_EXPORTER_SERVERS")
            .unwrap_or_else(|_| {
                "http://127.0.0.1:8222,http://127.0.0.1:8223,http://127.0.0.1:8224".into()
            })
            .split(',')
            .map(|server| server.trim().trim_end_matches('/').to_owned())
            .filter(|server| !server.is_empty())
            .collect();
        Self {
            listen,
            servers,
            timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Clone)]
struct Exporter {
    client: reqwest::Client,
    servers: Vec<String>,
}

/// A bound exporter, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()?;
        let listener = TcpListener::bind(&settings.listen).await?;
        let router = Router::new()
            .route("/metrics", get(serve_metrics))
            .route("/healthz", get(|| async { "alive\n" }))
            .with_state(Exporter {
                client,
                servers: settings.servers,
            });
        Ok(Self { listener, router })
    }

    pub fn port(&self) -> anyhow::Result<u16> {
        Ok(self.listener.local_addr()?.port())
    }

    /// Serves until `shutdown` completes.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

/// The whole `main`: settings from the environment, logs, serve until SIGTERM or Ctrl-C.
pub async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let settings = Settings::from_env();
    tracing::info!(?settings, "starting");
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port()?, "serving /metrics");
    app.run_until(stop_signal()).await
}

/// SIGTERM (docker stop) or Ctrl-C. The exporter holds no state worth draining.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn serve_metrics(State(exporter): State<Exporter>) -> Response {
    let nodes = futures::future::join_all(
        exporter
            .servers
            .iter()
            .map(|server| ask(&exporter.client, server)),
    )
    .await;
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry_of(&nodes)) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics not encoded: {error}"),
        )
            .into_response(),
    }
}

/// What one node answered, if it did.
struct Node {
    url: String,
    report: Option<(Varz, Jsz)>,
}

async fn ask(client: &reqwest::Client, server: &str) -> Node {
    let fetch = async {
        let varz: Varz = client
            .get(format!("{server}/varz"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let jsz: Jsz = client
            .get(format!(
                "{server}/jsz?accounts=true&streams=true&consumers=true&config=true"
            ))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok::<_, reqwest::Error>((varz, jsz))
    };
    let report = fetch
        .await
        .inspect_err(|error| tracing::debug!(%server, %error, "node did not answer"))
        .ok();
    Node {
        url: server.to_owned(),
        report,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    monitor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
}

/// A stream and the site whose stream it sources.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    stream: String,
    site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    stream: String,
    replica: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    stream: String,
    durable: String,
}

/// Registers a gauge family under `name` and returns it.
fn gauges<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Gauge>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

/// Whether `server` leads a stream or consumer with this cluster report. One that is not
/// replicated (a single node) has no leader and no replicas: its only node leads it.
fn leads(cluster: &monitoring::Cluster, server: &str) -> bool {
    match &cluster.leader {
        Some(leader) => leader == server,
        None => cluster.replicas.is_empty(),
    }
}

fn registry_of(nodes: &[Node]) -> Registry {
    let mut registry = Registry::with_prefix("nats");
    let up = gauges::<NodeLabels>(
        &mut registry,
        "server_up",
        "1 when the node's monitoring endpoint answered this scrape",
    );
    let connections =
        gauges::<ServerLabels>(&mut registry, "server_connections", "Client connections");
    let routes = gauges::<ServerLabels>(
        &mut registry,
        "server_routes",
        "Routes to the other nodes of the cluster",
    );
    let memory = gauges::<ServerLabels>(&mut registry, "server_memory_bytes", "Resident memory");
    let leafnodes = gauges::<ServerLabels>(
        &mut registry,
        "server_leafnodes",
        "Leaf nodes connected: other sites' servers and the legacy leaf",
    );
    let source_lag = gauges::<SourceLabels>(
        &mut registry,
        "stream_source_lag",
        "Messages of another site's stream not copied into this one yet, as of the last word \
         from that site",
    );
    let source_active = gauges::<SourceLabels>(
        &mut registry,
        "stream_source_active_seconds",
        "Seconds since the last word (a message or a heartbeat) from another site's stream that \
         this one sources; -1 when none came since the node started",
    );
    let stream_messages = gauges::<StreamLabels>(
        &mut registry,
        "stream_messages",
        "Messages in the stream, as its leader reports",
    );
    let stream_bytes = gauges::<StreamLabels>(
        &mut registry,
        "stream_bytes",
        "Bytes in the stream, as its leader reports",
    );
    let stream_max_bytes = gauges::<StreamLabels>(
        &mut registry,
        "stream_max_bytes",
        "The most bytes the stream holds before it refuses new messages (-1: no limit)",
    );
    let stream_has_leader = gauges::<StreamLabels>(
        &mut registry,
        "stream_has_leader",
        "1 when a node answering this scrape leads the stream; 0 when none does (no quorum, or \
         the leader is the node that did not answer)",
    );
    let replica_current = gauges::<ReplicaLabels>(
        &mut registry,
        "stream_replica_current",
        "1 when a follower replica has caught up with the stream's leader",
    );
    let replica_lag = gauges::<ReplicaLabels>(
        &mut registry,
        "stream_replica_lag",
        "Operations a follower replica is behind the stream's leader",
    );
    let pending = gauges::<ConsumerLabels>(
        &mut registry,
        "consumer_pending",
        "Messages the durable consumer has not been given yet (its lag), from its leader",
    );
    let ack_pending = gauges::<ConsumerLabels>(
        &mut registry,
        "consumer_ack_pending",
        "Messages given to the durable consumer and not yet acknowledged",
    );
    let redelivered = gauges::<ConsumerLabels>(
        &mut registry,
        "consumer_redelivered",
        "Messages of the durable consumer delivered more than once and not yet acknowledged",
    );

    let mut streams = BTreeMap::new();
    let mut consumers = BTreeMap::new();
    for node in nodes {
        let labels = NodeLabels {
            monitor: node.url.clone(),
        };
        let Some((varz, jsz)) = &node.report else {
            up.get_or_create(&labels).set(0);
            continue;
        };
        up.get_or_create(&labels).set(1);
        let server = ServerLabels {
            server: varz.server_name.clone(),
        };
        connections.get_or_create(&server).set(varz.connections);
        routes.get_or_create(&server).set(varz.routes);
        memory.get_or_create(&server).set(varz.mem);
        leafnodes.get_or_create(&server).set(varz.leafnodes);
        for stream in jsz.streams() {
            let led_here = leads(&stream.cluster, &varz.server_name);
            // The leader's report wins; any report is better than none.
            if led_here || !streams.contains_key(&stream.name) {
                streams.insert(stream.name.clone(), (led_here, stream));
            }
            for consumer in &stream.consumer_detail {
                let led_here = leads(&consumer.cluster, &varz.server_name);
                let key = (stream.name.clone(), consumer.name.clone());
                if led_here || !consumers.contains_key(&key) {
                    consumers.insert(key, consumer);
                }
            }
        }
    }
    for (name, (led, stream)) in &streams {
        let labels = StreamLabels {
            stream: name.clone(),
        };
        stream_messages
            .get_or_create(&labels)
            .set(stream.state.messages);
        stream_bytes.get_or_create(&labels).set(stream.state.bytes);
        stream_max_bytes
            .get_or_create(&labels)
            .set(stream.config.max_bytes);
        stream_has_leader
            .get_or_create(&labels)
            .set(i64::from(*led));
        for source in &stream.sources {
            let labels = SourceLabels {
                stream: name.clone(),
                site: source.site().to_owned(),
            };
            source_lag.get_or_create(&labels).set(source.lag);
            // Whole seconds are enough for an alert measured in minutes.
            let active = if source.active < 0 {
                -1
            } else {
                source.active / 1_000_000_000
            };
            source_active.get_or_create(&labels).set(active);
        }
        if *led {
            for replica in &stream.cluster.replicas {
                let labels = ReplicaLabels {
                    stream: name.clone(),
                    replica: replica.name.clone(),
                };
                replica_current
                    .get_or_create(&labels)
                    .set(i64::from(replica.current));
                replica_lag.get_or_create(&labels).set(replica.lag);
            }
        }
    }
    for ((stream, durable), consumer) in &consumers {
        let labels = ConsumerLabels {
            stream: stream.clone(),
            durable: durable.clone(),
        };
        pending.get_or_create(&labels).set(consumer.num_pending);
        ack_pending
            .get_or_create(&labels)
            .set(consumer.num_ack_pending);
        redelivered
            .get_or_create(&labels)
            .set(consumer.num_redelivered);
    }
    registry
}
