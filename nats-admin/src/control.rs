//! `opd-nats control`: sends a control-plane command ([`opd_shared::control`]) to every
//! instance of a service, or to one, and reports each instance's acknowledgement. An instance
//! that beats (it is in the presence stream) but did not acknowledge before the deadline is
//! reported as not answering.

use std::io::Write;
use std::time::Duration;

use opd_shared::control::{Ack, Command, subject};
use opd_shared::micro::SERVICES;
use opd_shared::micro::heartbeat::Heartbeat;
use serde::Serialize;

use crate::services::gather_until;

/// Who a command is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub service: String,
    /// One instance (its id, as `opd-nats status` shows it); None: all of them.
    pub instance: Option<String>,
}

impl Target {
    /// Checks the service's name, and that `command` may address one instance.
    pub fn new(service: &str, instance: Option<&str>, command: &Command) -> anyhow::Result<Self> {
        if !SERVICES.contains(&service) {
            anyhow::bail!("{service}: not a service (one of {})", SERVICES.join(", "));
        }
        if instance.is_some() && matches!(command, Command::Pause { .. } | Command::Resume) {
            anyhow::bail!(
                "{} addresses the whole service: its durable consumer is shared by all its \
                 instances",
                command.name()
            );
        }
        Ok(Self {
            service: service.to_owned(),
            instance: instance.map(str::to_owned),
        })
    }

    fn covers(&self, beat: &Heartbeat) -> bool {
        beat.service == self.service
            && self
                .instance
                .as_ref()
                .is_none_or(|instance| beat.instance.starts_with(instance.as_str()))
    }
}

/// What came of a command.
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// One per instance that answered.
    pub acks: Vec<Ack>,
    /// Instances alive (beating) that did not answer before the deadline.
    pub not_answering: Vec<String>,
}

impl Outcome {
    /// Every instance addressed took the command, and at least one did.
    pub fn complete(&self) -> bool {
        !self.acks.is_empty() && self.not_answering.is_empty() && self.acks.iter().all(|a| a.ok)
    }
}

/// Sends `command` to `target` and gathers acknowledgements until `deadline`, or until every
/// instance in `alive` (the live heartbeats) has answered.
pub async fn send(
    client: &async_nats::Client,
    target: &Target,
    command: &Command,
    alive: &[Heartbeat],
    deadline: Duration,
) -> anyhow::Result<Outcome> {
    let expected: Vec<&str> = alive
        .iter()
        .filter(|beat| target.covers(beat))
        .map(|beat| beat.instance.as_str())
        .collect();
    // An instance is addressed by its whole id on the wire; a prefix (as `status` prints it)
    // is completed from the heartbeats.
    let instance = match (&target.instance, expected.as_slice()) {
        (Some(_), [one]) => Some((*one).to_owned()),
        (Some(prefix), []) => Some(prefix.clone()),
        (Some(prefix), _) => anyhow::bail!("{prefix}: several instances have an id like it"),
        (None, _) => None,
    };
    let payload = serde_json::to_vec(command)?;
    let replies = gather_until(
        client,
        &subject(&target.service, instance.as_deref()),
        payload.into(),
        deadline,
        |replies| !expected.is_empty() && replies.len() >= expected.len(),
    )
    .await?;
    let acks: Vec<Ack> = replies
        .iter()
        .filter_map(|reply| serde_json::from_slice(&reply.payload).ok())
        .collect();
    let not_answering = expected
        .iter()
        .filter(|id| !acks.iter().any(|ack| ack.instance == **id))
        .map(|id| (*id).to_owned())
        .collect();
    Ok(Outcome {
        acks,
        not_answering,
    })
}

/// One line per instance: whether it took the command, and its state now.
pub fn render(target: &Target, outcome: &Outcome, mut out: impl Write) -> std::io::Result<()> {
    if outcome.acks.is_empty() && outcome.not_answering.is_empty() {
        return match &target.instance {
            Some(instance) => writeln!(
                out,
                "no instance {instance} of {} acknowledged: see `opd-nats status`",
                target.service
            ),
            None => writeln!(
                out,
                "no instance of {} acknowledged: is it running?",
                target.service
            ),
        };
    }
    for ack in &outcome.acks {
        let consumers = ack
            .state
            .consumers
            .iter()
            .map(|(durable, state)| format!("{durable}: {state}"))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            out,
            "{:<13} {:<12} {:<8} {}  [maintenance {}{}]",
            ack.service,
            &ack.instance[..ack.instance.len().min(12)],
            if ack.ok { "ok" } else { "REFUSED" },
            ack.detail,
            if ack.state.maintenance { "on" } else { "off" },
            if consumers.is_empty() {
                String::new()
            } else {
                format!("; {consumers}")
            },
        )?;
    }
    for instance in &outcome.not_answering {
        writeln!(
            out,
            "{:<13} {:<12} NOT ANSWERING: it beats, but did not acknowledge in time",
            target.service,
            &instance[..instance.len().min(12)],
        )?;
    }
    Ok(())
}
