//! The parts of the NATS monitoring JSON the exporter reads. Every field has a default: a
//! server version that leaves one out (a replica without lag has no `lag`) still parses.

use serde::Deserialize;

/// `GET /varz`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Varz {
    pub server_name: String,
    pub connections: i64,
    pub routes: i64,
    /// Leaf nodes connected: other sites' servers, the legacy leaf.
    pub leafnodes: i64,
    pub mem: i64,
}

/// `GET /jsz?accounts=true&streams=true&consumers=true&config=true`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Jsz {
    pub account_details: Vec<Account>,
}

impl Jsz {
    pub fn streams(&self) -> impl Iterator<Item = &Stream> {
        self.account_details
            .iter()
            .flat_map(|account| &account.stream_detail)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Account {
    pub stream_detail: Vec<Stream>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Stream {
    pub name: String,
    pub cluster: Cluster,
    pub config: StreamConfig,
    pub state: StreamState,
    pub consumer_detail: Vec<Consumer>,
    /// The streams it copies messages from: another site's, through its JetStream domain.
    pub sources: Vec<Source>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Source {
    pub name: String,
    pub external: Option<External>,
    /// Messages of the source not copied yet, as of the last word from it.
    pub lag: i64,
    /// Nanoseconds since the last word from the source (a message or a heartbeat); -1: none
    /// since this server started.
    pub active: i64,
}

impl Default for Source {
    fn default() -> Self {
        Self {
            name: String::new(),
            external: None,
            lag: 0,
            active: -1,
        }
    }
}

impl Source {
    /// The site a source reads from: the domain of its API prefix (`$JS.<site>.API`), else
    /// the source stream's name.
    pub fn site(&self) -> &str {
        self.external
            .as_ref()
            .and_then(|external| external.api.strip_prefix("$JS."))
            .and_then(|rest| rest.strip_suffix(".API"))
            .unwrap_or(&self.name)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct External {
    pub api: String,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct StreamConfig {
    /// -1: no limit.
    pub max_bytes: i64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self { max_bytes: -1 }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Cluster {
    /// Absent on a single node, and while no leader is elected.
    pub leader: Option<String>,
    pub replicas: Vec<Replica>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Replica {
    pub name: String,
    pub current: bool,
    pub lag: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StreamState {
    pub messages: i64,
    pub bytes: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Consumer {
    pub name: String,
    pub cluster: Cluster,
    pub num_pending: i64,
    pub num_ack_pending: i64,
    pub num_redelivered: i64,
}
