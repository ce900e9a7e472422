//! A window on the `PATIENT` stream for people: print its events one line each, or put a raw
//! message on it (a poison message, in the tutorial). It connects as the administrator, because
//! no service identity may read the whole stream or publish on every subject.
//!
//! The stream is read with an ordered consumer, which the server forgets as soon as the reader
//! goes: watching leaves nothing behind.

use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use opd_shared::infra::config::NatsSettings;

/// How long a watch with a count waits for the next event before it gives up.
pub const IDLE: Duration = Duration::from_secs(10);

/// Where a watch starts on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With the next event published.
    New,
    /// With the oldest event the stream still holds.
    All,
    /// With the last `n` events the stream holds; on a busy stream, the ones just caused.
    Last(u64),
}

/// What `opd-nats events` was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    pub start: Start,
    /// Stop after this many events; `None` follows the stream until interrupted.
    pub count: Option<usize>,
}

impl Watch {
    /// Parses `[--all | --last N] [--count N]`. `--last N` alone stops after those N events.
    pub fn parse(options: &[&str]) -> anyhow::Result<Self> {
        let mut start = Start::New;
        let mut count = None;
        let mut options = options.iter();
        while let Some(option) = options.next() {
            match *option {
                "--all" if start == Start::New => start = Start::All,
                "--last" if start == Start::New => start = Start::Last(number(options.next())?),
                "--count" if count.is_none() => count = Some(number(options.next())?),
                other => {
                    bail!("events takes [--all | --last N] [--count N], each once; not {other:?}")
                }
            }
        }
        if let (Start::Last(n), None) = (start, count) {
            count = Some(usize::try_from(n).unwrap_or(usize::MAX));
        }
        Ok(Self { start, count })
    }
}

fn number<T: std::str::FromStr>(value: Option<&&str>) -> anyhow::Result<T> {
    let value = value.context("--last and --count take a number")?;
    value
        .parse()
        .ok()
        .with_context(|| format!("{value:?} is not a whole number"))
}

/// Prints the events of `settings.stream` as `SUBJECT PAYLOAD` lines to `out`, as `watch` asks.
pub async fn watch(
    settings: &NatsSettings,
    watch: Watch,
    mut out: impl std::io::Write,
) -> anyhow::Result<()> {
    let client = opd_shared::infra::nats::connect(settings, "admin").await?;
    let jetstream = opd_shared::infra::nats::jetstream(client);
    let mut stream = jetstream
        .get_stream(&settings.stream)
        .await
        .with_context(|| format!("no stream {}", settings.stream))?;
    let deliver_policy = match watch.start {
        Start::New => DeliverPolicy::New,
        Start::All => DeliverPolicy::All,
        Start::Last(n) => {
            let state = &stream.info().await?.state;
            // The first of the last n, but never before what the stream still holds.
            let start_sequence = state
                .last_sequence
                .saturating_sub(n.saturating_sub(1))
                .max(state.first_sequence)
                .max(1);
            DeliverPolicy::ByStartSequence { start_sequence }
        }
    };
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut seen = 0;
    while watch.count.is_none_or(|count| seen < count) {
        let next = match watch.count {
            Some(_) => match tokio::time::timeout(IDLE, messages.next()).await {
                Ok(next) => next,
                Err(_) => bail!("only {seen} events arrived; no more came in {IDLE:?}"),
            },
            None => messages.next().await,
        };
        let Some(message) = next else { break };
        let message = message?;
        writeln!(
            out,
            "{} {}",
            message.subject,
            String::from_utf8_lossy(&message.payload)
        )?;
        seen += 1;
    }
    Ok(())
}

/// Publishes `payload` on `subject` as it is, with no event headers, and waits until the stream
/// has stored it.
pub async fn publish(settings: &NatsSettings, subject: &str, payload: &str) -> anyhow::Result<()> {
    let client = opd_shared::infra::nats::connect(settings, "admin").await?;
    let jetstream = opd_shared::infra::nats::jetstream(client);
    jetstream
        .publish(subject.to_owned(), payload.to_owned().into())
        .await?
        .await
        .with_context(|| format!("JetStream did not store the message on {subject}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_to_a_start_and_a_count() {
        let parse = |options: &[&str]| Watch::parse(options).ok();
        let watch = |start, count| Some(Watch { start, count });
        assert_eq!(parse(&[]), watch(Start::New, None));
        assert_eq!(
            parse(&["--all", "--count", "3"]),
            watch(Start::All, Some(3))
        );
        assert_eq!(parse(&["--last", "5"]), watch(Start::Last(5), Some(5)));
        assert_eq!(
            parse(&["--last", "5", "--count", "2"]),
            watch(Start::Last(5), Some(2))
        );
        for wrong in [
            &["--all", "--last", "2"][..],
            &["--last"],
            &["--count", "-1"],
            &["--count", "1", "--count", "2"],
            &["--tail"],
        ] {
            assert_eq!(parse(wrong), None, "{wrong:?}");
        }
    }
}
