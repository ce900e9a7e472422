//! Development credentials for the NATS cluster, generated, never committed: a CA, the nodes'
//! certificate, and for every identity an nkey seed and a client certificate.
//!
//! One directory holds them all (`scripts/dev.sh` uses `.secrets/nats`, compose a volume, each
//! test server its own temporary directory):
//!
//! | file                               | what                                   | who reads it        |
//! |------------------------------------|----------------------------------------|---------------------|
//! | `ca.pem`, `ca-key.pem`             | the development CA                     | everyone / this tool|
//! | `server.pem`, `server-key.pem`     | the nodes' certificate (client + routes)| the NATS nodes     |
//! | `<identity>.nk`                    | the identity's nkey seed               | that identity only  |
//! | `<identity>.pem`, `<identity>-key.pem` | its client certificate (mutual TLS) | that identity only  |
//! | `nkeys.env`                        | every identity's public key            | the NATS nodes      |
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

/// Every NATS identity: the four services, and the administrator who owns the stream.
/// `nats/auth.conf` says what each may do.
pub const IDENTITIES: [&str; 5] = [
    "registration",
    "inspection",
    "treatment",
    "release",
    "admin",
];

/// The names the nodes' certificate is valid for: the compose services, and loopback for
/// `scripts/dev.sh` and the tests.
const SERVER_NAMES: [&str; 6] = [
    "localhost",
    "127.0.0.1",
    "nats",
    "nats-1",
    "nats-2",
    "nats-3",
];

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
        let (ca_cert, ca_key) = (self.ca(), self.dir.join("ca-key.pem"));
        if !ca_cert.exists() || !ca_key.exists() {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            write_secret(&ca_key, &key.serialize_pem())?;
            write_public(&ca_cert, &cert.pem())?;
            written.extend(["ca.pem".to_owned(), "ca-key.pem".to_owned()]);
            // Everything the old CA signed is worthless now.
            for identity in IDENTITIES {
                remove_if_present(&self.client_cert(identity))?;
            }
            remove_if_present(&self.server_cert())?;
        }
        let issuer = Issuer::from_ca_cert_pem(
            &fs::read_to_string(&ca_cert)?,
            KeyPair::from_pem(&fs::read_to_string(&ca_key)?)?,
        )?;
        if !self.server_cert().exists() || !self.server_key().exists() {
            let names = SERVER_NAMES
                .iter()
                .map(|name| (*name).to_owned())
                .chain(self.extra_server_names.iter().cloned())
                .collect::<Vec<_>>();
            // Server and client: the nodes present it to each other on their routes too.
            self.issue(
                &issuer,
                names,
                "OPD NATS node",
                &self.server_cert(),
                &self.server_key(),
            )?;
            written.extend(["server.pem".to_owned(), "server-key.pem".to_owned()]);
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
                self.issue(&issuer, Vec::new(), identity, &cert, &key)?;
                written.push(format!("{identity}.pem"));
            }
        }
        let mut env = String::new();
        for (variable, key) in self.public_keys()? {
            let _ = writeln!(env, "{variable}={key}");
        }
        write_public(&self.public_keys_env(), &env)?;
        Ok(written)
    }

    fn issue(
        &self,
        issuer: &Issuer<'_, KeyPair>,
        names: Vec<String>,
        common_name: &str,
        cert_path: &Path,
        key_path: &Path,
    ) -> anyhow::Result<()> {
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        (params.not_before, params.not_after) = validity(LEAF_YEARS);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, issuer)?;
        write_secret(key_path, &key.serialize_pem())?;
        write_public(cert_path, &cert.pem())?;
        Ok(())
    }
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "OPD development CA");
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
}
