//! `opd-nats credentials DIR [--server-name NAME]...`: creates the development CA, the nodes'
//! certificate and every identity's seed and client certificate in DIR, keeping whatever exists.
//! Each `--server-name` adds a name the nodes' certificate is valid for (when it is generated),
//! e.g. the pods' names in Kubernetes (deploy/kubernetes/make-secrets.sh).
//!
//! `opd-nats stream`: creates the PATIENT stream as the administrator. Settings as a service
//! reads them (`OPD_NATS__SERVERS`, `OPD_NATS__NKEY_SEED_FILE` = the admin seed,
//! `OPD_NATS__TLS__CA_FILE`, `OPD_NATS__REPLICAS`, …).

use std::process::ExitCode;
use std::time::Duration;

use opd_nats_admin::Credentials;
use opd_shared::config::{ServiceDefaults, Settings};

const USAGE: &str = "usage: opd-nats credentials DIR [--server-name NAME]... | opd-nats stream";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["credentials", dir, ref options @ ..] => {
            server_names(options).and_then(|names| credentials(dir, names))
        }
        ["stream"] => stream().await,
        _ => Err(anyhow::anyhow!(USAGE)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("opd-nats: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The names of `--server-name NAME` pairs; anything else is a usage error.
fn server_names(options: &[&str]) -> anyhow::Result<Vec<String>> {
    options
        .chunks(2)
        .map(|pair| match pair {
            ["--server-name", name] if !name.is_empty() => Ok((*name).to_owned()),
            _ => Err(anyhow::anyhow!(USAGE)),
        })
        .collect()
}

fn credentials(dir: &str, server_names: Vec<String>) -> anyhow::Result<()> {
    let written = Credentials::at(dir)
        .with_server_names(server_names)
        .generate()?;
    if written.is_empty() {
        println!("{dir}: every credential is there already");
    }
    for name in written {
        println!("generated {dir}/{name}");
    }
    Ok(())
}

async fn stream() -> anyhow::Result<()> {
    let settings = Settings::load(ServiceDefaults {
        name: "admin",
        port: 0,
    })?;
    let _telemetry = opd_shared::telemetry::init(&settings.log, "opd-nats");
    opd_nats_admin::create_stream(&settings.nats, Duration::from_secs(60)).await?;
    println!("stream {} is in place", settings.nats.stream);
    Ok(())
}
