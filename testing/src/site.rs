//! Servers that join a hospital's cluster as leaf nodes, with the platform's own files: a
//! clinic's (`nats/site.conf`, a JetStream of its own in the site's domain) and the legacy leaf
//! (`nats/legacy.conf`); and [`LinkCut`], which drops the packets of their links for real.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use opd_shared::domain::Site;
use opd_shared::infra::config::NatsSettings;

use crate::nats::{NatsServer, config_dir, free_port};
use crate::{eventually_within, unique_name};

/// A `nats-server` joined to a [`NatsServer`] as a leaf node. It can be killed and started
/// again on its ports and data; it stops when dropped.
pub struct LeafServer {
    dir: PathBuf,
    config: &'static str,
    environment: Vec<(String, String)>,
    client_port: u16,
    monitor_port: Option<u16>,
    site: Option<Site>,
    hospital_ca: PathBuf,
    hospital_seeds: PathBuf,
    child: Mutex<Option<Child>>,
}

impl NatsServer {
    /// The hospital nodes' leaf URLs, as `nats/site.conf` and `nats/legacy.conf` take them (three,
    /// the last repeated on a single node).
    fn leaf_urls(&self) -> Vec<(String, String)> {
        let ports = self.leaf_ports();
        (0..3)
            .map(|i| {
                let port = ports[i.min(ports.len() - 1)];
                (
                    format!("NATS_HOSPITAL_LEAF_URL_{}", i + 1),
                    format!("tls://127.0.0.1:{port}"),
                )
            })
            .collect()
    }

    fn seed_text(&self, identity: &str) -> String {
        std::fs::read_to_string(self.credentials().seed(identity))
            .expect("no seed")
            .trim()
            .to_owned()
    }

    /// A clinic's server for `site`, linked to this cluster with the `clinic` identity, once
    /// it is healthy and its link is up.
    pub async fn clinic(&self, site: &str) -> LeafServer {
        let credentials = self.credentials();
        let monitor_port = free_port();
        let mut environment = vec![
            ("NATS_SITE".to_owned(), site.to_owned()),
            ("NATS_HOST".to_owned(), "127.0.0.1".to_owned()),
            ("NATS_MONITOR_PORT".to_owned(), monitor_port.to_string()),
            ("NATS_TLS_CERT".to_owned(), path(credentials.server_cert())),
            ("NATS_TLS_KEY".to_owned(), path(credentials.server_key())),
            ("NATS_TLS_CA".to_owned(), path(credentials.ca())),
            ("NATS_TLS_VERIFY".to_owned(), "false".to_owned()),
            ("NATS_SITE_LINK_SEED".to_owned(), self.seed_text("clinic")),
            (
                "NATS_SITE_LINK_CERT".to_owned(),
                path(credentials.client_cert("clinic")),
            ),
            (
                "NATS_SITE_LINK_KEY".to_owned(),
                path(credentials.client_key("clinic")),
            ),
        ];
        environment.extend(credentials.public_keys().expect("no public keys"));
        environment.extend(self.leaf_urls());
        let server = self.leaf("site.conf", environment, Some(monitor_port), Some(site));
        server.start().await;
        server
    }

    /// The legacy leaf: plain core NATS on loopback, linked with the `legacy` identity.
    pub async fn legacy_leaf(&self) -> LeafServer {
        let credentials = self.credentials();
        let mut environment = vec![
            ("NATS_LEGACY_LINK_SEED".to_owned(), self.seed_text("legacy")),
            (
                "NATS_LEGACY_LINK_CERT".to_owned(),
                path(credentials.client_cert("legacy")),
            ),
            (
                "NATS_LEGACY_LINK_KEY".to_owned(),
                path(credentials.client_key("legacy")),
            ),
            ("NATS_TLS_CA".to_owned(), path(credentials.ca())),
        ];
        environment.extend(self.leaf_urls());
        let server = self.leaf("legacy.conf", environment, None, None);
        server.start().await;
        server
    }

    fn leaf(
        &self,
        config: &'static str,
        mut environment: Vec<(String, String)>,
        monitor_port: Option<u16>,
        site: Option<&str>,
    ) -> LeafServer {
        let name = unique_name(config.trim_end_matches(".conf"));
        let dir = self.dir().join(&name);
        std::fs::create_dir_all(&dir).expect("cannot create the leaf's directory");
        let client_port = free_port();
        environment.extend([
            ("NATS_SERVER_NAME".to_owned(), name),
            ("NATS_CLIENT_PORT".to_owned(), client_port.to_string()),
            ("NATS_STORE_DIR".to_owned(), path(dir.join("store"))),
        ]);
        LeafServer {
            dir,
            config,
            environment,
            client_port,
            monitor_port,
            site: site.map(|site| site.parse().expect("a site name")),
            hospital_ca: self.credentials().ca(),
            hospital_seeds: self.credentials().dir.clone(),
            child: Mutex::new(None),
        }
    }

    /// How many leaf nodes are connected to this cluster's nodes, all told (`/leafz`).
    pub async fn leaf_connections(&self) -> usize {
        let client = reqwest::Client::new();
        let mut total = 0;
        for url in self.monitor_urls() {
            let Ok(response) = client.get(format!("{url}/leafz")).send().await else {
                continue;
            };
            let leafz: serde_json::Value = response.json().await.unwrap_or_default();
            total += leafz["leafnodes"].as_u64().unwrap_or(0);
        }
        usize::try_from(total).unwrap_or(usize::MAX)
    }
}

fn path(path: PathBuf) -> String {
    path.display().to_string()
}

impl LeafServer {
    fn spawn(&self) {
        let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("cannot open the leaf's log");
        let child = Command::new(&binary)
            .args(["-c", &format!("{}/{}", config_dir(), self.config)])
            .envs(self.environment.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        crate::pids::record(child.id());
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    }

    /// Starts the server (again, on its ports and data) and waits until it takes clients.
    pub async fn start(&self) {
        self.spawn();
        let port = self.client_port;
        eventually_within(
            Duration::from_secs(20),
            &format!("{} to take clients\n{}", self.config, self.log()),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
        if let Some(monitor) = self.monitor_port {
            let url = format!("http://127.0.0.1:{monitor}/healthz");
            eventually_within(Duration::from_secs(20), "the clinic to be healthy", || {
                let url = url.clone();
                async move {
                    let response = reqwest::get(url).await.ok()?;
                    response.status().is_success().then_some(())
                }
            })
            .await;
        }
    }

    /// Kills the server as a crash would (SIGKILL): what it had not written to its files is
    /// lost, what it had stays.
    pub async fn kill(&self) {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
            crate::pids::forget(child.id());
        }
        let port = self.client_port;
        eventually_within(
            Duration::from_secs(10),
            "the killed leaf to stop taking clients",
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_err()
                    .then_some(())
            },
        )
        .await;
    }

    /// Its client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// The site it serves (a clinic's).
    pub fn site(&self) -> Option<&Site> {
        self.site.as_ref()
    }

    /// Connection settings for `identity` on this server (a clinic's: TLS, and the identity's
    /// seed, the hospital's credentials).
    pub fn settings_for(&self, identity: &str) -> NatsSettings {
        let mut nats = opd_shared::infra::config::Settings::defaults(
            opd_shared::infra::config::ServiceDefaults {
                name: "admin",
                port: 0,
            },
        )
        .nats;
        nats.servers = vec![self.url()];
        nats.nkey_seed_file = Some(self.hospital_seeds.join(format!("{identity}.nk")));
        nats.tls.ca_file = Some(self.hospital_ca.clone());
        nats
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for LeafServer {
    fn drop(&mut self) {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
            crate::pids::forget(child.id());
        }
    }
}

/// Packets to and from some local TCP ports dropped, as a cut cable or a dead router would:
/// no connection is closed, nobody is told, and what is sent is lost until the cut heals (when
/// this is dropped). An nftables table of the test's own, so tests side by side cut only
/// their own links. Needs root and `nft` (scripts/test.sh installs nftables).
pub struct LinkCut {
    table: String,
}

impl LinkCut {
    /// Cuts every connection to or from `ports` on this machine.
    pub fn ports(ports: &[u16]) -> Self {
        let table = unique_name("opd_cut");
        let ports = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let rules = format!(
            "table inet {table} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n    tcp dport {{ {ports} }} drop\n    tcp sport {{ {ports} }} drop\n  }}\n}}\n"
        );
        nft(&["-f", "-"], Some(&rules)).unwrap_or_else(|error| {
            panic!(
                "cannot cut the link with nftables ({error}): the link-cut tests need root and \
                 `nft` (scripts/test.sh installs nftables)"
            )
        });
        Self { table }
    }

    /// Heals the cut: packets flow again.
    pub fn heal(self) {}
}

impl Drop for LinkCut {
    fn drop(&mut self) {
        if let Err(error) = nft(&["delete", "table", "inet", &self.table], None) {
            eprintln!("could not remove nftables table {}: {error}", self.table);
        }
    }
}

fn nft(args: &[&str], input: Option<&str>) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| error.to_string())?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .map_err(|error| error.to_string())?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| error.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}
