//! Watches the `PATIENT` stream, or puts a raw message on it: the tutorial's window on the
//! events, for machines without the `nats` CLI.
//!
//!   opd-events                        every event from now on, one line each, until Ctrl-C
//!   opd-events --all                  from the start of the stream
//!   opd-events --all --count 4        stop after four events (or after 10 s without one)
//!   opd-events publish SUBJECT JSON   publish a message as it is, e.g. a poison message
//!
//! It reads the NATS settings the services read (`OPD_NATS__SERVERS`, `opd.toml`), and it
//! follows the stream with an ordered consumer, which leaves nothing behind on the server.
//!
//! It connects as the administrator (no service identity may read the whole stream or publish
//! every subject): `OPD_NATS__NKEY_SEED_FILE` and `OPD_NATS__TLS__CA_FILE` name the seed and the
//! CA; unset, it takes those `scripts/dev.sh` generated (`.dev/credentials`, or under
//! `OPD_DEV_DIR`), so that the tutorial's commands work as they are.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use opd_shared::config::{ServiceDefaults, Settings};

/// How long `--count` waits for the next event before giving up.
const IDLE: Duration = Duration::from_secs(10);

enum Command {
    Watch { all: bool, count: Option<usize> },
    Publish { subject: String, payload: String },
}

fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Command> {
    let mut all = false;
    let mut count = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--all" => all = true,
            "--count" => {
                let n = args.next().context("--count needs a number")?;
                count = Some(n.parse().with_context(|| format!("--count {n:?}"))?);
            }
            "publish" => {
                let subject = args.next().context("publish needs a subject")?;
                let payload = args.next().context("publish needs a payload")?;
                return Ok(Command::Publish { subject, payload });
            }
            other => {
                bail!("unknown argument {other:?}; see the top of shared/src/bin/opd-events.rs")
            }
        }
    }
    Ok(Command::Watch { all, count })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = parse(std::env::args().skip(1))?;
    let settings = Settings::load(ServiceDefaults {
        name: "events",
        port: 0,
    })?;
    let mut nats = settings.nats.clone();
    if nats.nkey_seed_file.is_none() {
        let dev = std::env::var_os("OPD_DEV_DIR").map_or_else(|| ".dev".into(), PathBuf::from);
        let credentials = dev.join("credentials");
        nats.nkey_seed_file = Some(credentials.join("admin.nk"));
        nats.tls.ca_file = nats.tls.ca_file.or(Some(credentials.join("ca.pem")));
    }
    let client = opd_shared::nats::connect(&nats, "admin").await?;
    let jetstream = opd_shared::nats::jetstream(client);
    match command {
        Command::Publish { subject, payload } => {
            jetstream
                .publish(subject.clone(), payload.into())
                .await?
                .await
                .with_context(|| format!("JetStream did not store the message on {subject}"))?;
            println!("published on {subject}");
        }
        Command::Watch { all, count } => {
            let stream = jetstream
                .get_stream(&settings.nats.stream)
                .await
                .with_context(|| format!("no stream {}", settings.nats.stream))?;
            let consumer = stream
                .create_consumer(pull::OrderedConfig {
                    deliver_policy: if all {
                        DeliverPolicy::All
                    } else {
                        DeliverPolicy::New
                    },
                    ..Default::default()
                })
                .await?;
            let mut messages = consumer.messages().await?;
            let mut seen = 0;
            while count.is_none_or(|count| seen < count) {
                let next = match count {
                    Some(_) => match tokio::time::timeout(IDLE, messages.next()).await {
                        Ok(next) => next,
                        Err(_) => bail!("only {seen} events arrived; no more came in {IDLE:?}"),
                    },
                    None => messages.next().await,
                };
                let Some(message) = next else { break };
                let message = message?;
                println!(
                    "{} {}",
                    message.subject,
                    String::from_utf8_lossy(&message.payload)
                );
                seen += 1;
            }
        }
    }
    Ok(())
}
