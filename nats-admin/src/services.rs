//! `opd-nats services` and `opd-nats where`: the platform's instances as the NATS Services API
//! reports them (a broadcast of `$SRV.INFO` and `$SRV.STATS`, answers gathered until a
//! deadline), and the broadcast question "where is this patient?".

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use async_nats::service::{Info, Stats};
use bytes::Bytes;
use futures::StreamExt;
use opd_shared::domain::PatientId;
use opd_shared::micro::ask::{self, Answer, Answers};

/// One running instance: what it says about itself, and its endpoints' counts.
pub struct Instance {
    pub info: Info,
    pub stats: Option<Stats>,
}

/// Every reply to one empty request on `subject`, gathered for `deadline`.
pub async fn gather(
    client: &async_nats::Client,
    subject: &str,
    deadline: Duration,
) -> anyhow::Result<Vec<async_nats::Message>> {
    gather_until(client, subject, Bytes::new(), deadline, |_| false).await
}

/// Every reply to one request (`payload`) on `subject`, gathered until `deadline`, or until
/// `enough` says the replies so far are all that is expected.
pub async fn gather_until(
    client: &async_nats::Client,
    subject: &str,
    payload: Bytes,
    deadline: Duration,
    enough: impl Fn(&[async_nats::Message]) -> bool,
) -> anyhow::Result<Vec<async_nats::Message>> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await?;
    client
        .publish_with_reply(subject.to_owned(), inbox, payload)
        .await?;
    client.flush().await?;
    let mut gathered = Vec::new();
    let _ = tokio::time::timeout(deadline, async {
        while let Some(reply) = replies.next().await {
            gathered.push(reply);
            if enough(&gathered) {
                break;
            }
        }
    })
    .await;
    replies.unsubscribe().await.ok();
    Ok(gathered)
}

/// Every instance that answers `$SRV.INFO` within `deadline`, with its `$SRV.STATS`.
pub async fn discover(
    client: &async_nats::Client,
    deadline: Duration,
) -> anyhow::Result<Vec<Instance>> {
    let (infos, stats) = tokio::join!(
        gather(client, "$SRV.INFO", deadline),
        gather(client, "$SRV.STATS", deadline)
    );
    let mut stats: BTreeMap<String, Stats> = stats?
        .iter()
        .filter_map(|reply| serde_json::from_slice::<Stats>(&reply.payload).ok())
        .map(|stats| (stats.id.clone(), stats))
        .collect();
    let mut instances: Vec<Instance> = infos?
        .iter()
        .filter_map(|reply| serde_json::from_slice::<Info>(&reply.payload).ok())
        .map(|info| Instance {
            stats: stats.remove(&info.id),
            info,
        })
        .collect();
    instances.sort_by(|a, b| (&a.info.name, &a.info.id).cmp(&(&b.info.name, &b.info.id)));
    Ok(instances)
}

/// A table a person can read: one line per instance, one indented line per endpoint.
pub fn render(instances: &[Instance], mut out: impl Write) -> std::io::Result<()> {
    if instances.is_empty() {
        writeln!(out, "no service answered")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<14} {:<8} {:<24} HOST",
        "SERVICE", "VERSION", "INSTANCE"
    )?;
    for instance in instances {
        let info = &instance.info;
        let host = info.metadata.get("host").map_or("-", String::as_str);
        writeln!(
            out,
            "{:<14} {:<8} {:<24} {host}",
            info.name, info.version, info.id
        )?;
        for endpoint in &info.endpoints {
            let counts = instance
                .stats
                .as_ref()
                .and_then(|stats| stats.endpoints.iter().find(|s| s.name == endpoint.name));
            match counts {
                Some(counts) => writeln!(
                    out,
                    "  {:<10} {:<26} {} requests, {} errors, {:.2} ms on average",
                    endpoint.name,
                    endpoint.subject,
                    counts.requests,
                    counts.errors,
                    counts.average_processing_time.as_secs_f64() * 1000.0
                )?,
                None => writeln!(
                    out,
                    "  {:<10} {:<26} (no stats)",
                    endpoint.name, endpoint.subject
                )?,
            }
        }
    }
    Ok(())
}

/// The instances as JSON: the services' own INFO and STATS documents.
pub fn to_json(instances: &[Instance]) -> serde_json::Value {
    instances
        .iter()
        .map(|instance| serde_json::json!({ "info": instance.info, "stats": instance.stats }))
        .collect()
}

/// Asks every service where patient `id` is.
pub async fn where_is(
    client: &async_nats::Client,
    id: PatientId,
    deadline: Duration,
) -> anyhow::Result<Answers> {
    ask::where_is(client, id, deadline)
        .await
        .map_err(|error| anyhow::anyhow!(error))
}

/// One line per service.
pub fn render_answers(answers: &Answers, mut out: impl Write) -> std::io::Result<()> {
    for (service, answer) in &answers.services {
        let text = match answer {
            Answer::Here { whereabouts: w } => {
                let mut text = format!("since {}", w.arrived_at.format("%Y-%m-%d %H:%M:%S UTC"));
                if let Some(token) = w.token {
                    text.push_str(&format!(", token {token}"));
                }
                if w.waiting {
                    text.push_str(&format!(", waiting, {} ahead", w.ahead.unwrap_or(0)));
                }
                if let Some(done) = w.done_at {
                    text.push_str(&format!(", done {}", done.format("%Y-%m-%d %H:%M:%S UTC")));
                }
                text
            }
            Answer::NotHere => "has never seen the patient".into(),
            Answer::Error { code, reason } => format!("error {code}: {reason}"),
            Answer::NotAnswering => "did not answer in time (down or unreachable)".into(),
        };
        writeln!(out, "{service:<14} {text}")?;
    }
    Ok(())
}
