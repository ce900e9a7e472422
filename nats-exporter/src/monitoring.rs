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
