//! `opd-nats credentials DIR [--server-name NAME]...`: creates the development CA, the nodes'
//! certificate and every identity's seed and client certificate in DIR, keeping whatever exists.
//! Each `--server-name` adds a name the nodes' certificate is valid for (when it is generated),
//! e.g. the pods' names in Kubernetes (deploy/kubernetes/make-secrets.sh).
//!
//! `opd-nats stream`: creates the PATIENT stream and the services' durable consumers as the
//! administrator, with the stream's own settings (`OPD_STREAM__REPLICAS`,
//! `OPD_STREAM__DUPLICATE_WINDOW`, `OPD_STREAM__MAX_AGE`, `OPD_STREAM__MAX_BYTES`,
//! `OPD_STREAM__ACK_WAIT`, or `[stream]` in `opd.toml`); what exists is left as it is, any
//! difference reported.
//!
//! `opd-nats site-stream`: on a site's own NATS server (a clinic's, `nats/site.conf`), creates
//! the site's PATIENT stream of registrations (`OPD_STREAM__SITE_REPLICAS` copies, 1 by
//! default), leaving a live one as it is.
//!
//! `opd-nats link-site SITE`: on the hospital's cluster, adds SITE's stream to the sources of
//! the hospital's PATIENT stream, so that every registration made at SITE reaches the hospital
//! once, whenever the link is up (docs/architecture.md, "Sites"); does nothing if it is there.
//!
//! `opd-nats events [--all | --last N] [--count N]`: prints the stream's events, one
//! `SUBJECT PAYLOAD` line each: from now on until Ctrl-C; from the start (`--all`); or the last
//! N and then stops (`--last N`). `--count N` stops after N events, or after 10 s without one.
//!
//! `opd-nats publish SUBJECT JSON`: puts a message on the stream as it is, with no event
//! headers (the tutorial's poison message).
//!
//! `opd-nats services [--json]`: every running instance of the services, as the NATS Services
//! API reports them (`$SRV.INFO`, `$SRV.STATS`): name, version, instance, host, and each
//! endpoint's requests, errors and average processing time. `--json` prints the services' own
//! INFO and STATS documents.
//!
//! `opd-nats where ID [--json]`: asks every service where patient ID is (the broadcast query
//! `opd.where`), waiting `nats.query_deadline` (`OPD_NATS__QUERY_DEADLINE`) for the answers.
//!
//! `opd-nats status [--json]`: every instance that beat within `stream.presence_ttl`, with its
//! last heartbeat's age and health (database, each consumer, authentication).
//!
//! `opd-nats control SERVICE COMMAND [--instance ID] [--json]`: steers running instances
//! without restarting them (the control plane, `opd.control.<service>[.<instance>]`), and prints
//! each instance's acknowledgement; fails unless every live instance addressed took it. COMMAND
//! is one of:
//! - `pause [--for DURATION]`: JetStream stops delivering to the service's durable consumer
//!   (messages wait in the stream) for DURATION (default 1h) or until `resume`;
//! - `resume`;
//! - `maintenance on [--retry-after DURATION] [--reason TEXT]` | `maintenance off`: while on,
//!   the instance's state-changing routes answer 503 with `Retry-After` (default 60s);
//! - `log-filter FILTER`: the log filter, in `RUST_LOG` syntax (`info,opd_shared=debug`).
//!
//! `--instance` takes an instance id or its first characters, as `opd-nats status` prints it
//! (not for `pause` and `resume`, which act on the consumer all instances share).
//!
//! `opd-nats token ROLE... [--subject NAME] [--ttl DURATION]`: prints a development bearer
//! token for the HTTP APIs with those roles (`registrar`, `clinician`, `discharge`,
//! `operator`), signed with the issuer key of the credentials (`OPD_AUTH__ISSUER_KEY_FILE`, else
//! `auth-issuer-key.pem` beside the administrator's seed); the subject defaults to the first
//! role's name, the lifetime to 12 h.
//!
//! Settings as a service reads them (`OPD_NATS__SERVERS`, `OPD_NATS__NKEY_SEED_FILE` = the admin
//! seed, `OPD_NATS__TLS__CA_FILE`, `opd.toml`, …). An unset seed means the administrator's
//! credentials that `scripts/dev.sh` generated (`.dev/credentials`, or under `OPD_DEV_DIR`), so
//! that the tutorial's commands work as printed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use opd_nats_admin::control::{self, Target};
use opd_nats_admin::events::{self, Watch};
use opd_nats_admin::{Credentials, StreamSettings};
use opd_shared::auth::Role;
use opd_shared::control::Command;
use opd_shared::domain::Site;
use opd_shared::infra::config::{NatsSettings, ServiceDefaults, Settings};

const USAGE: &str = "usage: opd-nats credentials DIR [--server-name NAME]... | opd-nats stream \
                     | opd-nats site-stream | opd-nats link-site SITE \
                     | opd-nats events [--all | --last N] [--count N] | opd-nats publish SUBJECT JSON \
                     | opd-nats services [--json] | opd-nats where ID [--json] | opd-nats status [--json] \
                     | opd-nats token ROLE... [--subject NAME] [--ttl DURATION] \
                     | opd-nats control SERVICE (pause [--for DURATION] | resume \
                     | maintenance on [--retry-after DURATION] [--reason TEXT] | maintenance off \
                     | log-filter FILTER) [--instance ID] [--json]";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["credentials", dir, ref options @ ..] => {
            server_names(options).and_then(|names| credentials(dir, names))
        }
        ["stream"] => stream().await,
        ["site-stream"] => site_stream().await,
        ["link-site", site] => link_site(site).await,
        ["events", ref options @ ..] => watch(options).await,
        ["publish", subject, payload] => publish(subject, payload).await,
        ["token", ref options @ ..] => token(options),
        ["status"] => status(false).await,
        ["status", "--json"] => status(true).await,
        ["services"] => services(false).await,
        ["services", "--json"] => services(true).await,
        ["where", id] => where_is(id, false).await,
        ["where", id, "--json"] => where_is(id, true).await,
        ["control", service, ref rest @ ..] => control(service, rest).await,
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
    let settings = admin_settings()?;
    let stream = StreamSettings::load()?;
    let _telemetry = opd_shared::infra::telemetry::init(&settings.log, "opd-nats");
    let nats = operator_nats(settings.nats);
    opd_nats_admin::stream::create(&nats, &stream, Duration::from_secs(60)).await?;
    println!(
        "stream {} and its durable consumers are in place",
        nats.stream
    );
    Ok(())
}

async fn site_stream() -> anyhow::Result<()> {
    let settings = admin_settings()?;
    let stream = StreamSettings::load()?;
    let _telemetry = opd_shared::infra::telemetry::init(&settings.log, "opd-nats");
    let nats = operator_nats(settings.nats);
    opd_nats_admin::site::create_site_stream(&nats, &stream, Duration::from_secs(60)).await?;
    println!("this site's stream {} is in place", nats.stream);
    Ok(())
}

async fn link_site(site: &str) -> anyhow::Result<()> {
    let site: Site = site
        .parse()
        .map_err(|error: String| anyhow::anyhow!(error))?;
    let settings = admin_settings()?;
    let _telemetry = opd_shared::infra::telemetry::init(&settings.log, "opd-nats");
    let nats = operator_nats(settings.nats);
    let added = opd_nats_admin::site::link(&nats, &site, Duration::from_secs(60)).await?;
    println!(
        "{site}'s registrations {} the sources of stream {}",
        if added {
            "joined"
        } else {
            "were already among"
        },
        nats.stream
    );
    Ok(())
}

async fn watch(options: &[&str]) -> anyhow::Result<()> {
    let watch = Watch::parse(options)?;
    events::watch(
        &operator_nats(admin_settings()?.nats),
        watch,
        std::io::stdout(),
    )
    .await
}

async fn publish(subject: &str, payload: &str) -> anyhow::Result<()> {
    events::publish(&operator_nats(admin_settings()?.nats), subject, payload).await?;
    println!("published on {subject}");
    Ok(())
}

async fn status(json: bool) -> anyhow::Result<()> {
    let nats = operator_nats(admin_settings()?.nats);
    let client = opd_shared::infra::nats::connect(&nats, "admin").await?;
    let js = opd_shared::infra::nats::jetstream(client);
    let beats = opd_nats_admin::presence::live(&js).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&beats)?);
    } else {
        opd_nats_admin::presence::render(&beats, std::io::stdout())?;
    }
    Ok(())
}

async fn services(json: bool) -> anyhow::Result<()> {
    let settings = admin_settings()?;
    let deadline = settings.nats.query_deadline;
    let nats = operator_nats(settings.nats);
    let client = opd_shared::infra::nats::connect(&nats, "admin").await?;
    let instances = opd_nats_admin::services::discover(&client, deadline).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&opd_nats_admin::services::to_json(&instances))?
        );
    } else {
        opd_nats_admin::services::render(&instances, std::io::stdout())?;
    }
    Ok(())
}

async fn where_is(id: &str, json: bool) -> anyhow::Result<()> {
    let id: opd_shared::domain::PatientId = id
        .parse()
        .map_err(|error| anyhow::anyhow!("{id}: not a patient id: {error}"))?;
    let settings = admin_settings()?;
    let deadline = settings.nats.query_deadline;
    let nats = operator_nats(settings.nats);
    let client = opd_shared::infra::nats::connect(&nats, "admin").await?;
    let answers = opd_nats_admin::services::where_is(&client, id, deadline).await?;
    if json {
        println!("{}", serde_json::to_string(&answers)?);
    } else {
        opd_nats_admin::services::render_answers(&answers, std::io::stdout())?;
    }
    Ok(())
}

/// A control command's words, parsed: what to send, to which instance, and how to print.
fn control_command(words: &[&str]) -> anyhow::Result<(Command, Option<String>, bool)> {
    let mut instance = None;
    let mut json = false;
    let mut pause_for = Duration::from_secs(60 * 60);
    let mut retry_after = Duration::from_secs(60);
    let mut reason = String::new();
    let mut positional = Vec::new();
    let mut rest = words.iter();
    let value = |rest: &mut std::slice::Iter<&str>, option: &str| {
        rest.next()
            .map(|value| (*value).to_owned())
            .ok_or_else(|| anyhow::anyhow!("{option} needs a value"))
    };
    let duration = |text: String, option: &str| {
        humantime_serde::re::humantime::parse_duration(&text)
            .map_err(|error| anyhow::anyhow!("{option} {text}: {error}"))
    };
    while let Some(word) = rest.next() {
        match *word {
            "--instance" => instance = Some(value(&mut rest, word)?),
            "--json" => json = true,
            "--for" => pause_for = duration(value(&mut rest, word)?, word)?,
            "--retry-after" => retry_after = duration(value(&mut rest, word)?, word)?,
            "--reason" => reason = value(&mut rest, word)?,
            other => positional.push(other),
        }
    }
    let command = match positional[..] {
        ["pause"] => Command::Pause {
            until: chrono::Utc::now() + chrono::Duration::from_std(pause_for)?,
        },
        ["resume"] => Command::Resume,
        ["maintenance", "on"] => Command::Maintenance {
            on: true,
            retry_after_secs: retry_after.as_secs().max(1),
            reason,
        },
        ["maintenance", "off"] => Command::Maintenance {
            on: false,
            retry_after_secs: 0,
            reason,
        },
        ["log-filter", filter] => Command::LogFilter {
            filter: filter.to_owned(),
        },
        _ => anyhow::bail!(USAGE),
    };
    Ok((command, instance, json))
}

async fn control(service: &str, words: &[&str]) -> anyhow::Result<()> {
    let (command, instance, json) = control_command(words)?;
    let target = Target::new(service, instance.as_deref(), &command)?;
    let settings = admin_settings()?;
    let deadline = settings.nats.query_deadline;
    let nats = operator_nats(settings.nats);
    let client = opd_shared::infra::nats::connect(&nats, "admin").await?;
    let js = opd_shared::infra::nats::jetstream(client.clone());
    // Without the presence stream, the acknowledgements are still gathered (until the
    // deadline); only the silent instances cannot be named.
    let alive = opd_nats_admin::presence::live(&js)
        .await
        .unwrap_or_default();
    let outcome = control::send(&client, &target, &command, &alive, deadline).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        control::render(&target, &outcome, std::io::stdout())?;
    }
    if !outcome.complete() {
        anyhow::bail!(
            "{} was not taken by every instance addressed",
            command.name()
        );
    }
    Ok(())
}

fn token(options: &[&str]) -> anyhow::Result<()> {
    let mut roles = Vec::new();
    let mut subject = None;
    let mut ttl = opd_nats_admin::tokens::DEFAULT_TTL;
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        match *option {
            "--subject" => subject = Some(rest.next().ok_or_else(|| anyhow::anyhow!(USAGE))?),
            "--ttl" => {
                let text = rest.next().ok_or_else(|| anyhow::anyhow!(USAGE))?;
                ttl = humantime_serde::re::humantime::parse_duration(text)
                    .map_err(|error| anyhow::anyhow!("--ttl {text}: {error}"))?;
            }
            role => roles.push(
                role.parse::<Role>()
                    .map_err(|error| anyhow::anyhow!(error))?,
            ),
        }
    }
    let Some(first) = roles.first() else {
        anyhow::bail!(USAGE);
    };
    let subject = subject.map_or_else(|| format!("dev-{first}"), |name| (*name).to_owned());
    let key = std::env::var_os("OPD_AUTH__ISSUER_KEY_FILE").map_or_else(
        || {
            let seed = admin_settings().map(|settings| operator_nats(settings.nats).nkey_seed_file);
            seed.ok()
                .flatten()
                .and_then(|seed| seed.parent().map(|dir| dir.join("auth-issuer-key.pem")))
                .unwrap_or_else(|| PathBuf::from("auth-issuer-key.pem"))
        },
        PathBuf::from,
    );
    let issuer = opd_nats_admin::tokens::Issuer::from_file(&key)?;
    println!("{}", issuer.token(&subject, &roles, ttl)?);
    Ok(())
}

/// The NATS settings for an operator at a terminal: as configured, and with no seed named, the
/// administrator's credentials of the platform `scripts/dev.sh` runs.
fn operator_nats(mut nats: NatsSettings) -> NatsSettings {
    if nats.nkey_seed_file.is_none() {
        let dev = std::env::var_os("OPD_DEV_DIR").map_or_else(|| ".dev".into(), PathBuf::from);
        let credentials = dev.join("credentials");
        nats.nkey_seed_file = Some(credentials.join("admin.nk"));
        nats.tls.ca_file = nats.tls.ca_file.or(Some(credentials.join("ca.pem")));
    }
    nats
}

/// The settings as a service reads them, for the administrative identity.
fn admin_settings() -> anyhow::Result<Settings> {
    Ok(Settings::load(ServiceDefaults {
        name: "admin",
        port: 0,
    })?)
}
