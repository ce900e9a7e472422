//! One instance's side of the control plane: it hears the commands addressed to its service and
//! to itself, carries each out, logs it and acknowledges it to the sender.

use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::control::{Ack, Command, InstanceState, subject};
use crate::infra::Infra;
use crate::service::Service;

/// Listens for commands until `shutdown`.
pub(crate) async fn run(
    service: &'static Service,
    infra: Infra,
    instance: String,
    shutdown: CancellationToken,
) {
    let backoff = crate::infra::retry::Backoff::from_settings(infra.settings.consumer.retry);
    let Some((mut all, mut one)) =
        crate::infra::retry::until_ready("listen for control commands", backoff, &shutdown, || {
            subscribe(&infra.nats, service.name, &instance)
        })
        .await
    else {
        return;
    };
    let steward = Steward {
        service,
        infra,
        instance,
    };
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            message = all.next() => message,
            message = one.next() => message,
        };
        let Some(message) = message else { break };
        // One at a time, in the order sent: a pause and the resume after it must not swap.
        let ack = steward.carry_out(&message.payload).await;
        let Some(reply) = message.reply else {
            tracing::warn!(command = %ack.command, "control command without a reply subject: done, not acknowledged");
            continue;
        };
        match serde_json::to_vec(&ack) {
            Ok(body) => {
                if let Err(error) = steward.infra.nats.publish(reply, body.into()).await {
                    tracing::warn!(%error, "control command done but not acknowledged");
                }
            }
            Err(error) => tracing::warn!(%error, "control acknowledgement not encoded"),
        }
    }
    all.unsubscribe().await.ok();
    one.unsubscribe().await.ok();
}

async fn subscribe(
    nats: &async_nats::Client,
    service: &str,
    instance: &str,
) -> Result<(async_nats::Subscriber, async_nats::Subscriber), async_nats::SubscribeError> {
    // No queue group: every instance the subject names must hear the command.
    let all = nats.subscribe(subject(service, None)).await?;
    let one = nats.subscribe(subject(service, Some(instance))).await?;
    Ok((all, one))
}

/// What carries commands out in one instance.
struct Steward {
    service: &'static Service,
    infra: Infra,
    instance: String,
}

impl Steward {
    async fn carry_out(&self, payload: &[u8]) -> Ack {
        let (command, outcome) = match serde_json::from_slice::<Command>(payload) {
            Ok(command) => {
                let outcome = self.apply(&command).await;
                (command.name(), outcome)
            }
            Err(error) => ("unknown", Err(format!("cannot read the command: {error}"))),
        };
        let ok = outcome.is_ok();
        let detail = outcome.unwrap_or_else(|error| error);
        if ok {
            tracing::info!(command, %detail, "control command carried out");
        } else {
            tracing::warn!(command, %detail, "control command refused");
        }
        self.infra.metrics.control_command(command, ok);
        Ack {
            service: self.service.name.to_owned(),
            instance: self.instance.clone(),
            command: command.to_owned(),
            ok,
            detail,
            state: self.state(),
        }
    }

    /// Carries `command` out: what was done, or why it could not be.
    async fn apply(&self, command: &Command) -> Result<String, String> {
        match command {
            Command::Pause { until } => {
                if *until <= chrono::Utc::now() {
                    return Err(format!(
                        "{until} has passed: a pause must end in the future"
                    ));
                }
                let nanos = until
                    .timestamp_nanos_opt()
                    .ok_or_else(|| format!("{until} is out of range"))?;
                let deadline = async_nats::datetime::from_nanos(i128::from(nanos))
                    .map_err(|error| error.to_string())?;
                self.each_consumer(|stream, durable| async move {
                    stream.pause_consumer(&durable, deadline).await.map(|_| ())
                })
                .await?;
                for subscription in self.service.consumers {
                    self.infra
                        .consumers
                        .set_paused(subscription.durable, Some(*until));
                }
                Ok(format!(
                    "{} paused until {}",
                    self.durables(),
                    until.format("%Y-%m-%d %H:%M:%S UTC")
                ))
            }
            Command::Resume => {
                self.each_consumer(|stream, durable| async move {
                    stream.resume_consumer(&durable).await.map(|_| ())
                })
                .await?;
                for subscription in self.service.consumers {
                    self.infra.consumers.set_paused(subscription.durable, None);
                }
                Ok(format!("{} resumed", self.durables()))
            }
            Command::Maintenance {
                on: true,
                retry_after_secs,
                reason,
            } => {
                self.infra
                    .control
                    .set_maintenance(Some(crate::control::state::Maintenance {
                        since: chrono::Utc::now(),
                        retry_after: Duration::from_secs(*retry_after_secs),
                        reason: reason.clone(),
                    }));
                Ok("in maintenance: state-changing routes answer 503".to_owned())
            }
            Command::Maintenance { on: false, .. } => {
                self.infra.control.set_maintenance(None);
                Ok("out of maintenance".to_owned())
            }
            Command::LogFilter { filter } => {
                crate::infra::telemetry::set_log_filter(filter)?;
                Ok(format!("log filter now {filter:?}"))
            }
        }
    }

    /// Runs `request` (a pause or a resume) for each durable consumer of the service.
    async fn each_consumer<F, Fut>(&self, request: F) -> Result<(), String>
    where
        F: Fn(async_nats::jetstream::stream::Stream<()>, String) -> Fut,
        Fut: Future<Output = Result<(), async_nats::jetstream::stream::ConsumerError>>,
    {
        if self.service.consumers.is_empty() {
            return Err(format!(
                "{} has no durable consumer to pause or resume",
                self.service.name
            ));
        }
        let stream = self
            .infra
            .jetstream
            .get_stream_no_info(&self.infra.settings.nats.stream)
            .await
            .map_err(|error| format!("JetStream cannot be reached: {error}"))?;
        for subscription in self.service.consumers {
            let durable = subscription.durable;
            request(stream.clone(), durable.to_owned())
                .await
                .map_err(|error| format!("{durable}: {error}"))?;
        }
        Ok(())
    }

    fn durables(&self) -> String {
        self.service
            .consumers
            .iter()
            .map(|subscription| subscription.durable)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn state(&self) -> InstanceState {
        InstanceState {
            maintenance: self.infra.control.maintenance().is_some(),
            log_filter: crate::infra::telemetry::log_filter(),
            consumers: self.infra.consumers.states(),
        }
    }
}
