//! Real `nats-server` processes on loopback ports: one node for most tests, three clustered
//! nodes for the tests that are about clustering (replication, losing a node). They run with the
//! platform's own configuration: TLS, and the identities and permissions of `nats/auth.conf`,
//! with credentials generated for each server in its directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use opd_nats_admin::Credentials;
use opd_shared::infra::config::{NatsSettings, ServiceDefaults, Settings};

use crate::unique_name;

/// The platform's NATS configuration; `OPD_NATS_CONFIG_DIR` points the servers at a changed
/// copy instead (scripts/widened-permissions.sh checks that the break-in tests notice).
pub(crate) fn config_dir() -> String {
    std::env::var("OPD_NATS_CONFIG_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../nats").to_owned())
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("no free local port")
}

struct Node {
    name: String,
    client_port: u16,
    cluster_port: u16,
    monitor_port: u16,
    leaf_port: u16,
    child: Option<Child>,
}

/// One JetStream server, or a cluster of three. Nodes can be killed and restarted through a
/// shared reference, so that a test and the services it runs can hold the same server.
pub struct NatsServer {
    dir: PathBuf,
    credentials: Credentials,
    /// Clients must present a certificate too (`NATS_TLS_VERIFY`).
    mutual_tls: bool,
    nodes: Mutex<Vec<Node>>,
}

impl NatsServer {
    /// A single JetStream node, configured from `nats/node.conf`.
    pub async fn single() -> Self {
        Self::start(1, false).await
    }

    /// A single node that also asks every client for a certificate (mutual TLS).
    pub async fn single_with_mutual_tls() -> Self {
        Self::start(1, true).await
    }

    /// Three nodes forming one JetStream cluster, configured from `nats/cluster.conf`.
    pub async fn cluster() -> Self {
        Self::start(3, false).await
    }

    async fn start(size: usize, mutual_tls: bool) -> Self {
        // Free ports are found by binding and releasing them, so a test running beside this
        // one can take a port in between; a fresh set of ports settles that.
        for _ in 0..3 {
            let server = Self::spawn_all(size, mutual_tls);
            if server.healthy_within(Duration::from_secs(20)).await
                && server
                    .jetstream_usable_within(Duration::from_secs(20))
                    .await
            {
                return server;
            }
            eprintln!(
                "NATS did not become healthy; retrying with new ports\n{}",
                server.logs()
            );
            // Dropping stops the nodes without waiting for their ports to close: a port taken
            // by another process is the usual reason for the retry, and it stays open.
            drop(server);
        }
        panic!("could not start a healthy NATS server of {size} node(s)");
    }

    fn spawn_all(size: usize, mutual_tls: bool) -> Self {
        let dir = std::env::temp_dir().join(unique_name("opd-nats"));
        std::fs::create_dir_all(&dir).expect("cannot create the server's directory");
        let credentials = Credentials::at(dir.join("credentials"));
        credentials
            .generate()
            .expect("cannot generate the NATS credentials");
        let nodes = (1..=size)
            .map(|i| Node {
                name: format!("nats-{i}"),
                client_port: free_port(),
                cluster_port: free_port(),
                monitor_port: free_port(),
                leaf_port: free_port(),
                child: None,
            })
            .collect();
        let server = Self {
            dir,
            credentials,
            mutual_tls,
            nodes: Mutex::new(nodes),
        };
        for index in 0..size {
            server.spawn(index);
        }
        server
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, Vec<Node>> {
        // A test that panicked while holding the lock has failed already; the nodes are intact.
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn spawn(&self, index: usize) {
        let mut nodes = self.nodes();
        let clustered = nodes.len() > 1;
        let routes: Vec<String> = nodes
            .iter()
            .map(|node| format!("nats://127.0.0.1:{}", node.cluster_port))
            .collect();
        let node = &mut nodes[index];
        let log = std::fs::File::create(self.dir.join(format!("{}.log", node.name)))
            .expect("cannot create a NATS log file");
        let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let config = if clustered {
            "cluster.conf"
        } else {
            "node.conf"
        };
        let mut command = Command::new(&binary);
        command
            .args(["-c", &format!("{}/{config}", config_dir())])
            .env("NATS_SERVER_NAME", &node.name)
            .env("NATS_HOST", "127.0.0.1")
            .env("NATS_CLIENT_PORT", node.client_port.to_string())
            .env("NATS_MONITOR_PORT", node.monitor_port.to_string())
            .env("NATS_LEAF_PORT", node.leaf_port.to_string())
            .env("NATS_STORE_DIR", self.dir.join(&node.name))
            .env("NATS_TLS_CERT", self.credentials.server_cert())
            .env("NATS_TLS_KEY", self.credentials.server_key())
            .env("NATS_TLS_CA", self.credentials.ca())
            .env("NATS_TLS_VERIFY", self.mutual_tls.to_string())
            .envs(
                self.credentials
                    .public_keys()
                    .expect("cannot read the identities' public keys"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if clustered {
            command
                .env("NATS_CLUSTER_HOST", "127.0.0.1")
                .env("NATS_CLUSTER_PORT", node.cluster_port.to_string())
                .env("NATS_ROUTE_TLS_CERT", self.credentials.route_cert())
                .env("NATS_ROUTE_TLS_KEY", self.credentials.route_key())
                .env("NATS_ROUTE_TLS_CA", self.credentials.route_ca());
            for (i, route) in routes.iter().enumerate() {
                command.env(format!("NATS_ROUTE_{}", i + 1), route);
            }
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} (is nats-server installed?): {e}"));
        crate::pids::record(child.id());
        node.child = Some(child);
    }

    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    fn logs(&self) -> String {
        self.nodes()
            .iter()
            .map(|node| {
                let log = std::fs::read_to_string(self.dir.join(format!("{}.log", node.name)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                format!(
                    "--- {} ---\n{}",
                    node.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// HTTP monitoring URLs of every node (`/varz`, `/jsz`, `/healthz`).
    pub fn monitor_urls(&self) -> Vec<String> {
        self.nodes()
            .iter()
            .map(|node| format!("http://127.0.0.1:{}", node.monitor_port))
            .collect()
    }

    /// The route ports the nodes use among themselves.
    pub fn cluster_ports(&self) -> Vec<u16> {
        self.nodes().iter().map(|node| node.cluster_port).collect()
    }

    /// The ports where each node takes leaf connections (other sites, the legacy leaf).
    pub fn leaf_ports(&self) -> Vec<u16> {
        self.nodes().iter().map(|node| node.leaf_port).collect()
    }

    /// Client URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes()
            .iter()
            .map(|node| format!("nats://127.0.0.1:{}", node.client_port))
            .collect()
    }

    /// Where this server's credentials are (CA, certificates, every identity's seed).
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Connection settings for `identity` (a service's name, or `admin`): this server's nodes,
    /// its CA, the identity's seed, and its client certificate where the server asks for one.
    pub fn settings_for(&self, identity: &str) -> NatsSettings {
        let mut nats = Settings::defaults(ServiceDefaults {
            name: "admin",
            port: 0,
        })
        .nats;
        nats.servers = self.urls();
        self.identify(&mut nats, identity);
        nats
    }

    /// Points `nats` at this server's CA and `identity`'s credentials.
    pub fn identify(&self, nats: &mut NatsSettings, identity: &str) {
        nats.nkey_seed_file = Some(self.credentials.seed(identity));
        nats.tls.ca_file = Some(self.credentials.ca());
        if self.mutual_tls {
            nats.tls.cert_file = Some(self.credentials.client_cert(identity));
            nats.tls.key_file = Some(self.credentials.client_key(identity));
        }
    }

    /// The administrator's settings: the identity that owns the stream.
    pub fn admin_settings(&self) -> NatsSettings {
        self.settings_for("admin")
    }

    pub fn node_count(&self) -> usize {
        self.nodes().len()
    }

    /// Kills node `index` (0-based) as a crash would, and returns once it is confirmed down:
    /// the process has exited and its client port refuses connections. Its data stays.
    pub async fn kill_node(&self, index: usize) {
        let port = {
            let mut nodes = self.nodes();
            let node = &mut nodes[index];
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                child.wait().expect("cannot wait for a killed nats-server");
                crate::pids::forget(child.id());
            }
            node.client_port
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "NATS node {index} still accepts connections after being killed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts node `index` again, on its ports and data, and waits until it is healthy.
    pub async fn restart_node(&self, index: usize) {
        self.kill_node(index).await;
        self.spawn(index);
        self.wait_until_healthy().await;
    }

    pub async fn kill_all(&self) {
        for index in 0..self.node_count() {
            self.kill_node(index).await;
        }
    }

    pub async fn restart_all(&self) {
        self.kill_all().await;
        for index in 0..self.node_count() {
            self.spawn(index);
        }
        self.wait_until_healthy().await;
    }

    /// Kills every node, throws away what each had stored, and starts them again: what a power
    /// loss does to writes the nodes acknowledged but had not flushed to disk yet, at its worst.
    pub async fn lose_everything_and_restart(&self) {
        self.kill_all().await;
        let names: Vec<String> = self.nodes().iter().map(|node| node.name.clone()).collect();
        for name in names {
            let store = self.dir.join(name);
            if store.exists() {
                std::fs::remove_dir_all(&store).expect("cannot remove a node's store");
            }
        }
        for index in 0..self.node_count() {
            self.spawn(index);
        }
        self.wait_until_healthy().await;
    }

    /// Waits until every running node reports JetStream healthy, which includes a meta leader.
    pub async fn wait_until_healthy(&self) {
        if !self.healthy_within(Duration::from_secs(30)).await {
            panic!("NATS did not become healthy\n{}", self.logs());
        }
    }

    /// A healthy node may still be electing the meta leader: wait until a stream replicated on
    /// every node can be created and removed.
    async fn jetstream_usable_within(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let Ok(js) = crate::stream::jetstream(&self.admin_settings()).await else {
            return false;
        };
        let probe = async_nats::jetstream::stream::Config {
            name: "PROBE".into(),
            subjects: vec!["probe.>".into()],
            num_replicas: self.node_count(),
            ..Default::default()
        };
        while tokio::time::Instant::now() < deadline {
            if js.create_stream(probe.clone()).await.is_ok()
                && js.delete_stream("PROBE").await.is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    async fn healthy_within(&self, timeout: Duration) -> bool {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + timeout;
        let monitors: Vec<u16> = self
            .nodes()
            .iter()
            .filter(|node| node.child.is_some())
            .map(|node| node.monitor_port)
            .collect();
        for port in monitors {
            let url = format!("http://127.0.0.1:{port}/healthz");
            loop {
                let healthy = client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success());
                if healthy {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        true
    }
}

/// An attacker's own `nats-server`, trying to join a cluster as a node: it opens a route to
/// the cluster's first node presenting the certificate it was given, trusts whatever CA a
/// genuine node could present (so that only the genuine node's check can keep it out), and
/// serves plain, unauthenticated clients of its own on [`RogueNode::client_url`].
pub struct RogueNode {
    dir: PathBuf,
    client_port: u16,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a [`RogueNode`] routed to this cluster's first node, presenting `cert` and `key`,
    /// and returns once it serves clients.
    pub async fn rogue_node(&self, cert: &std::path::Path, key: &std::path::Path) -> RogueNode {
        // A free port can be taken by another test's process before the node binds it, and
        // the node then exits at once: it starts again on new ports.
        let mut exited = String::new();
        for _ in 0..3 {
            let mut node = self.start_rogue(cert, key);
            if node.serves_clients(Duration::from_secs(15)).await {
                return node;
            }
            exited = node.log();
        }
        panic!("the rogue node did not start (three tries); its last log:\n{exited}");
    }

    fn start_rogue(&self, cert: &std::path::Path, key: &std::path::Path) -> RogueNode {
        let dir = self.dir.join(unique_name("rogue"));
        std::fs::create_dir_all(&dir).expect("cannot create the rogue node's directory");
        let mut any_ca = std::fs::read_to_string(self.credentials.ca()).expect("no CA");
        any_ca.push_str(&std::fs::read_to_string(self.credentials.route_ca()).expect("no CA"));
        std::fs::write(dir.join("any-ca.pem"), any_ca).expect("cannot write the CA bundle");
        let client_port = free_port();
        let config = format!(
            r#"server_name: rogue
host: 127.0.0.1
port: {client_port}
cluster {{
  name: opd
  host: 127.0.0.1
  port: {cluster_port}
  routes: ["nats://127.0.0.1:{route}"]
  tls {{
    cert_file: "{cert}"
    key_file: "{key}"
    ca_file: "{ca}"
    verify: true
    timeout: 3
  }}
}}
"#,
            cluster_port = free_port(),
            route = self.cluster_ports()[0],
            cert = cert.display(),
            key = key.display(),
            ca = dir.join("any-ca.pem").display(),
        );
        std::fs::write(dir.join("rogue.conf"), config).expect("cannot write the rogue's config");
        let log = std::fs::File::create(dir.join("rogue.log")).expect("cannot create a log");
        let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let child = Command::new(&binary)
            .args(["-c", &dir.join("rogue.conf").display().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        crate::pids::record(child.id());
        RogueNode {
            dir,
            client_port,
            child: Some(child),
        }
    }
}

impl RogueNode {
    /// Whether it accepts clients within `patience`; false as soon as it has exited.
    async fn serves_clients(&mut self, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        while tokio::time::Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && !matches!(child.try_wait(), Ok(None))
            {
                return false;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.client_port))
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Its client port: plain text, no identity asked.
    pub fn client_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// What it logged (why a route was refused, say).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("rogue.log")).unwrap_or_default()
    }
}

impl Drop for RogueNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            crate::pids::forget(child.id());
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        for node in self.nodes().iter_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
                crate::pids::forget(child.id());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
