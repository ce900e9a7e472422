//! Development credentials for the NATS cluster, generated, never committed: a CA for clients
//! and the nodes' client port, a second CA for the routes between nodes, the nodes'
//! certificates, and for every identity an nkey seed and a client certificate; and the
//! development token issuer's key for the HTTP APIs ([`crate::tokens`]).
//!
//! One directory holds them all (`scripts/dev.sh` uses `.secrets/nats`, compose a volume, each
//! test server its own temporary directory):
//!
//! | file                               | what                                   | who reads it        |
//! |------------------------------------|----------------------------------------|---------------------|
//! | `ca.pem`, `ca-key.pem`             | the development CA                     | everyone / this tool|
//! | `server.pem`, `server-key.pem`     | the nodes' certificate (client port)   | the NATS nodes      |
//! | `route-ca.pem`, `route-ca-key.pem` | the routes' CA                         | the nodes / this tool|
//! | `route.pem`, `route-key.pem`       | the nodes' route certificate           | the NATS nodes only |
//! | `<identity>.nk`                    | the identity's nkey seed               | that identity only  |
//! | `<identity>.pem`, `<identity>-key.pem` | its client certificate (mutual TLS) | that identity only  |
//! | `nkeys.env`                        | every identity's public key            | the NATS nodes      |
//! | `auth-issuer-key.pem`              | the token issuer's signing key         | `opd-nats token`    |
//! | `auth-jwks.json`                   | its public key (JWKS)                  | every service       |
//!
//! The routes have a CA of their own so that no certificate a service holds can open a route:
//! a node accepts on its route port only a certificate from the routes' CA, and only nodes
//! hold one. (With one CA for both, a service's client certificate made its holder a node, and a
//! node sees every message and serves the JetStream API with no authorization.)
//!
//! Generation keeps every file that exists: delete one and run it again to rotate it (a
//! certificate is then signed by the existing CA). docs/security.md describes rotation.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Every NATS identity: the five services, the administrator who owns the stream, and the two
/// leaf links (a clinic's server, and the legacy leaf). `nats/auth.conf` says what each may do.
pub const IDENTITIES: [&str; 8] = [
    "registration",
    "inspection",
    "treatment",
    "release",
    "board",
    "admin",
    "clinic",
    "legacy",
];

/// The names the nodes' certificate is valid for: the compose services (the clinic's server
/// among them), and loopback for `scripts/dev.sh` and the tests.
const SERVER_NAMES: [&str; 7] = [
    "localhost",
    "127.0.0.1",
    "nats",
    "nats-1",
    "nats-2",
    "nats-3",
    "nats-clinic",
];

/// The names the nodes reach each other by on their routes beyond [`SERVER_NAMES`]: compose's
/// routes network, which no service is on.
const ROUTE_NAMES: [&str; 3] = ["nats-1.routes", "nats-2.routes", "nats-3.routes"];

/// The development CA, valid for ten years; what it signs, for one.
const CA_YEARS: i32 = 10;
const LEAF_YEARS: i32 = 1;

/// The credentials in `dir`, by what they are for.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub dir: PathBuf,
    /// Names the nodes' certificate is valid for beyond [`SERVER_NAMES`]: where the nodes have
    /// other host names, as the pods of a Kubernetes StatefulSet do (deploy/kubernetes).
    extra_server_names: Vec<String>,
}

impl Credentials {
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            extra_server_names: Vec::new(),
        }
    }

    /// The same directory, with a nodes' certificate (when one is generated) also valid for
    /// `names` (DNS names, wildcards such as `*.opd-nats-headless`, or IP addresses).
    pub fn with_server_names(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.extra_server_names.extend(names);
        self
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server-key.pem")
    }

    /// The CA the nodes accept on their route ports; it signs [`Self::route_cert`] only.
    pub fn route_ca(&self) -> PathBuf {
        self.dir.join("route-ca.pem")
    }

    /// The certificate a node presents to, and expects from, the other nodes.
    pub fn route_cert(&self) -> PathBuf {
        self.dir.join("route.pem")
    }

    pub fn route_key(&self) -> PathBuf {
        self.dir.join("route-key.pem")
    }

    pub fn seed(&self, identity: &str) -> PathBuf {
        self.dir.join(format!("{identity}.nk"))
    }

    pub fn client_cert(&self, identity: &str) -> PathBuf {
        self.dir.join(format!("{identity}.pem"))
    }

    pub fn client_key(&self, identity: &str) -> PathBuf {
        self.dir.join(format!("{identity}-key.pem"))
    }

    /// `NATS_NKEY_<IDENTITY>=<public key>` lines, the variables `nats/auth.conf` reads.
    /// The development token issuer's signing key (`opd-nats token`).
    pub fn token_key(&self) -> PathBuf {
        self.dir.join("auth-issuer-key.pem")
    }

    /// Its public half, the JWKS document every service reads (`auth.jwks_file`).
    pub fn jwks(&self) -> PathBuf {
        self.dir.join("auth-jwks.json")
    }

    pub fn public_keys_env(&self) -> PathBuf {
        self.dir.join("nkeys.env")
    }

    /// The environment variable that carries `identity`'s public key to the NATS nodes.
    pub fn public_key_variable(identity: &str) -> String {
        format!("NATS_NKEY_{}", identity.to_uppercase())
    }

    /// Every identity's public key, as (variable, key), read from the seeds.
    pub fn public_keys(&self) -> anyhow::Result<Vec<(String, String)>> {
        IDENTITIES
            .iter()
            .map(|identity| {
                let path = self.seed(identity);
                let seed = fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let key = nkeys::KeyPair::from_seed(seed.trim())
                    .with_context(|| format!("{} holds no valid seed", path.display()))?;
                Ok((Self::public_key_variable(identity), key.public_key()))
            })
            .collect()
    }

    /// Creates whatever is missing, and returns the names of the files it wrote.
    pub fn generate(&self) -> anyhow::Result<Vec<String>> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let mut written = Vec::new();
        let ca = Authority {
            cert: self.ca(),
            key: self.dir.join("ca-key.pem"),
            common_name: "OPD development CA",
        };
        let (issuer, renewed) = ca.load_or_create(&mut written)?;
        if renewed {
            // Everything the old CA signed is worthless now.
            for identity in IDENTITIES {
                remove_if_present(&self.client_cert(identity))?;
            }
            remove_if_present(&self.server_cert())?;
        }
        let routes = Authority {
            cert: self.route_ca(),
            key: self.dir.join("route-ca-key.pem"),
            common_name: "OPD development route CA",
        };
        let (route_issuer, renewed) = routes.load_or_create(&mut written)?;
        if renewed {
            remove_if_present(&self.route_cert())?;
        }
        let names = SERVER_NAMES
            .iter()
            .map(|name| (*name).to_owned())
            .chain(self.extra_server_names.iter().cloned())
            .collect::<Vec<_>>();
        if !self.server_cert().exists() || !self.server_key().exists() {
            let leaf = Leaf {
                names: names.clone(),
                common_name: "OPD NATS node",
                usages: &[ExtendedKeyUsagePurpose::ServerAuth],
            };
            leaf.issue(&issuer, &self.server_cert(), &self.server_key())?;
            written.extend(["server.pem".to_owned(), "server-key.pem".to_owned()]);
        }
        if !self.route_cert().exists() || !self.route_key().exists() {
            // Server and client: a node both accepts routes and opens them.
            let leaf = Leaf {
                names: names
                    .into_iter()
                    .chain(ROUTE_NAMES.iter().map(|name| (*name).to_owned()))
                    .collect(),
                common_name: "OPD NATS route",
                usages: &[
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            };
            leaf.issue(&route_issuer, &self.route_cert(), &self.route_key())?;
            written.extend(["route.pem".to_owned(), "route-key.pem".to_owned()]);
        }
        for identity in IDENTITIES {
            let seed = self.seed(identity);
            if !seed.exists() {
                let key = nkeys::KeyPair::new_user();
                let seed_text = key.seed().context("cannot encode an nkey seed")?;
                write_secret(&seed, &format!("{seed_text}\n"))?;
                written.push(format!("{identity}.nk"));
            }
            let (cert, key) = (self.client_cert(identity), self.client_key(identity));
            if !cert.exists() || !key.exists() {
                let leaf = Leaf {
                    names: Vec::new(),
                    common_name: identity,
                    usages: &[ExtendedKeyUsagePurpose::ClientAuth],
                };
                leaf.issue(&issuer, &cert, &key)?;
                written.push(format!("{identity}.pem"));
            }
        }
        if !self.token_key().exists() {
            write_secret(&self.token_key(), &crate::tokens::Issuer::generate_pem()?)?;
            written.push(file_name(&self.token_key()));
            remove_if_present(&self.jwks())?;
        }
        if !self.jwks().exists() {
            let issuer = crate::tokens::Issuer::from_file(&self.token_key())?;
            write_public(&self.jwks(), &issuer.jwks()?)?;
            written.push(file_name(&self.jwks()));
        }
        let mut env = String::new();
        for (variable, key) in self.public_keys()? {
            let _ = writeln!(env, "{variable}={key}");
        }
        write_public(&self.public_keys_env(), &env)?;
        Ok(written)
    }
}

/// A certificate authority kept as two files.
struct Authority {
    cert: PathBuf,
    key: PathBuf,
    common_name: &'static str,
}

impl Authority {
    /// The authority as an issuer, created first if either file is missing (then `true`: what
    /// the previous one signed must be signed again).
    fn load_or_create(
        &self,
        written: &mut Vec<String>,
    ) -> anyhow::Result<(Issuer<'static, KeyPair>, bool)> {
        let created = !self.cert.exists() || !self.key.exists();
        if created {
            let key = KeyPair::generate()?;
            let cert = ca_params(self.common_name)?.self_signed(&key)?;
            write_secret(&self.key, &key.serialize_pem())?;
            write_public(&self.cert, &cert.pem())?;
            written.extend([file_name(&self.cert), file_name(&self.key)]);
        }
        let issuer = Issuer::from_ca_cert_pem(
            &fs::read_to_string(&self.cert)?,
            KeyPair::from_pem(&fs::read_to_string(&self.key)?)?,
        )?;
        Ok((issuer, created))
    }
}

/// What one issued certificate is for.
struct Leaf<'a> {
    names: Vec<String>,
    common_name: &'a str,
    usages: &'a [ExtendedKeyUsagePurpose],
}

impl Leaf<'_> {
    fn issue(
        self,
        issuer: &Issuer<'_, KeyPair>,
        cert_path: &Path,
        key_path: &Path,
    ) -> anyhow::Result<()> {
        let mut params = CertificateParams::new(self.names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, self.common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = self.usages.to_vec();
        (params.not_before, params.not_after) = validity(LEAF_YEARS);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, issuer)?;
        write_secret(key_path, &key.serialize_pem())?;
        write_public(cert_path, &cert.pem())?;
        Ok(())
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn ca_params(common_name: &str) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params.not_before, params.not_after) = validity(CA_YEARS);
    Ok(params)
}

/// From yesterday (clocks differ a little) for `years`.
fn validity(years: i32) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let until = yesterday + time::Duration::days(365 * i64::from(years));
    (yesterday, until)
}

/// Readable by its owner only (the seeds and private keys).
fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    write(path, contents, 0o600)
}

/// Certificates and public keys: readable by every user, so that a server running as another
/// user (a container's) can read them.
fn write_public(path: &Path, contents: &str) -> anyhow::Result<()> {
    write(path, contents, 0o644)
}

/// Writes a temporary file and renames it, so that a reader never sees half a key.
fn write(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    fs::set_permissions(&temporary, fs::Permissions::from_mode(mode))?;
    fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_keeps_what_exists_and_replaces_what_was_removed() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("opd-credentials-{}", std::process::id()));
        let credentials = Credentials::at(&dir);
        let first = credentials.generate()?;
        assert!(first.contains(&"ca.pem".to_owned()) && first.contains(&"admin.nk".to_owned()));
        let seed = fs::read_to_string(credentials.seed("inspection"))?;
        assert!(seed.starts_with("SU"), "a user seed");
        let mode = fs::metadata(credentials.seed("inspection"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "seeds are private");

        assert!(credentials.generate()?.is_empty(), "nothing is missing");
        assert_eq!(fs::read_to_string(credentials.seed("inspection"))?, seed);

        fs::remove_file(credentials.seed("release"))?;
        assert_eq!(credentials.generate()?, ["release.nk"]);
        let env = fs::read_to_string(credentials.public_keys_env())?;
        assert_eq!(env.lines().count(), IDENTITIES.len());
        assert!(env.contains("NATS_NKEY_RELEASE=U"));
        fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn the_nodes_certificate_carries_the_extra_names() -> anyhow::Result<()> {
        let dir =
            std::env::temp_dir().join(format!("opd-credentials-names-{}", std::process::id()));
        let extra = ["*.opd-nats-headless".to_owned(), "opd-nats".to_owned()];
        let credentials = Credentials::at(&dir).with_server_names(extra.clone());
        credentials.generate()?;
        let pem = fs::read(credentials.server_cert())?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)?;
        let certificate = pem.parse_x509()?;
        let names = certificate
            .subject_alternative_name()?
            .map(|extension| extension.value.general_names.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(name) => Some(name.to_owned()),
                _ => None,
            })
            .collect::<Vec<_>>();
        for name in extra.iter().chain(&["nats-1".to_owned()]) {
            assert!(names.contains(name), "{name} missing from {names:?}");
        }
        fs::remove_dir_all(&dir)?;
        Ok(())
    }

    fn issuer_and_usages(path: &Path) -> anyhow::Result<(String, bool, bool)> {
        let pem = fs::read(path)?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)?;
        let certificate = pem.parse_x509()?;
        let issuer = certificate.issuer().to_string();
        let usage = certificate
            .extended_key_usage()?
            .map(|extension| extension.value.clone())
            .ok_or_else(|| anyhow::anyhow!("{} has no extended key usage", path.display()))?;
        Ok((issuer, usage.server_auth, usage.client_auth))
    }

    #[test]
    fn the_routes_have_a_ca_of_their_own() -> anyhow::Result<()> {
        let dir =
            std::env::temp_dir().join(format!("opd-credentials-routes-{}", std::process::id()));
        let credentials = Credentials::at(&dir);
        credentials.generate()?;
        let (issuer, server, client) = issuer_and_usages(&credentials.route_cert())?;
        assert_eq!(
            (issuer.as_str(), server, client),
            ("CN=OPD development route CA", true, true)
        );
        // Nothing else the routes' CA signs; nothing a client holds is from it.
        let (issuer, server, client) = issuer_and_usages(&credentials.server_cert())?;
        assert_eq!(
            (issuer.as_str(), server, client),
            ("CN=OPD development CA", true, false)
        );
        for identity in IDENTITIES {
            let (issuer, server, client) = issuer_and_usages(&credentials.client_cert(identity))?;
            assert_eq!(
                (issuer.as_str(), server, client),
                ("CN=OPD development CA", false, true),
                "{identity}"
            );
        }
        // A new routes' CA signs the route certificate again; the clients' CA is untouched.
        fs::remove_file(credentials.route_ca())?;
        let written = credentials.generate()?;
        assert_eq!(
            written,
            [
                "route-ca.pem",
                "route-ca-key.pem",
                "route.pem",
                "route-key.pem"
            ]
        );
        fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
