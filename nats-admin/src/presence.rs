//! `opd-nats status`: the platform at a glance, from the presence stream (`OPD_HEARTBEATS`),
//! which holds the last heartbeat of every instance that beat within `stream.presence_ttl`.

use std::io::Write;

use futures::StreamExt;
use opd_shared::micro::heartbeat::{Heartbeat, SUBJECT_PREFIX};

use crate::stream::HEARTBEATS;

/// The last heartbeat of every live instance, by service and instance.
pub async fn live(js: &async_nats::jetstream::Context) -> anyhow::Result<Vec<Heartbeat>> {
    let stream = js.get_stream(HEARTBEATS).await?;
    let mut subjects = stream
        .info_with_subjects(format!("{SUBJECT_PREFIX}.>"))
        .await?;
    let mut beats = Vec::new();
    while let Some(entry) = subjects.next().await {
        let (subject, _) = entry?;
        // Expired between the listing and now: the instance has just left.
        let Ok(message) = stream.get_last_raw_message_by_subject(&subject).await else {
            continue;
        };
        if let Ok(beat) = serde_json::from_slice::<Heartbeat>(&message.payload) {
            beats.push(beat);
        }
    }
    beats.sort_by(|a, b| {
        (&a.service, &a.host, &a.instance).cmp(&(&b.service, &b.host, &b.instance))
    });
    Ok(beats)
}

/// One line per instance: when it last beat, and its health.
pub fn render(beats: &[Heartbeat], mut out: impl Write) -> std::io::Result<()> {
    if beats.is_empty() {
        return writeln!(out, "no instance has beaten lately");
    }
    writeln!(
        out,
        "{:<14} {:<14} {:<8} {:>9}  {:<9} {:<4} {:<12} CONSUMERS",
        "SERVICE", "INSTANCE", "VERSION", "LAST BEAT", "DATABASE", "AUTH", "MAINTENANCE"
    )?;
    let now = chrono::Utc::now();
    for beat in beats {
        let age = (now - beat.at).num_milliseconds().max(0) as f64 / 1000.0;
        let consumers = if beat.consumers.is_empty() {
            "-".to_owned()
        } else {
            beat.consumers
                .iter()
                .map(|(durable, state)| format!("{durable}: {state}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            out,
            "{:<14} {:<14} {:<8} {:>7.1} s  {:<9} {:<4} {:<12} {consumers}",
            beat.service,
            &beat.instance[..beat.instance.len().min(12)],
            beat.version,
            age,
            if beat.database { "up" } else { "DOWN" },
            if beat.authentication { "on" } else { "OFF" },
            if beat.maintenance { "ON" } else { "off" },
        )?;
    }
    Ok(())
}
