//! One instance's registration with the NATS Services API, and its answers.

use std::collections::HashMap;

use async_nats::service::{self, ServiceExt};
use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::infra::Infra;
use crate::micro::{Located, Question, WHERE_SUBJECT, patient_subject};
use crate::service::Service;

/// Registers `service` with the Services API and answers its endpoints until `shutdown`; then
/// stops the endpoints and leaves the Services API before the connection drains.
pub(crate) async fn run(
    service: &'static Service,
    infra: Infra,
    instance: String,
    shutdown: CancellationToken,
) {
    // The connection may be down at start: the registration is retried until it succeeds.
    let backoff = crate::infra::retry::Backoff::from_settings(infra.settings.consumer.retry);
    let Some((registered, endpoints)) = crate::infra::retry::until_ready(
        "register with the NATS Services API",
        backoff,
        &shutdown,
        || register(service, &infra, &instance),
    )
    .await
    else {
        return;
    };
    let id = registered.info().await.id;
    tracing::info!(%id, "registered with the NATS Services API");
    match (service.locate, endpoints) {
        (Some(locate), Some((patient, broadcast))) => {
            answer_until(service, &infra, locate, patient, broadcast, &shutdown).await;
        }
        _ => shutdown.cancelled().await,
    }
    if let Err(error) = registered.stop().await {
        tracing::debug!(%error, "leaving the Services API");
    }
}

/// Answers "where is this patient?" on both endpoints until `shutdown`, then stops them.
async fn answer_until(
    service: &'static Service,
    infra: &Infra,
    locate: crate::micro::Locate,
    mut patient: service::endpoint::Endpoint,
    mut broadcast: service::endpoint::Endpoint,
    shutdown: &CancellationToken,
) {
    loop {
        let request = tokio::select! {
            () = shutdown.cancelled() => break,
            request = patient.next() => request,
            request = broadcast.next() => request,
        };
        let Some(request) = request else { break };
        let pool = infra.pool.clone();
        let site = infra.settings.site.clone();
        tokio::spawn(async move {
            let answer = answer(service.name, locate, pool, site, &request.message.payload).await;
            if let Err(error) = request.respond(answer).await {
                tracing::debug!(%error, "could not answer a request");
            }
        });
    }
    if let Err(error) = patient.stop().await {
        tracing::debug!(%error, "stopping an endpoint");
    }
    if let Err(error) = broadcast.stop().await {
        tracing::debug!(%error, "stopping an endpoint");
    }
}

async fn register(
    service: &'static Service,
    infra: &Infra,
    instance: &str,
) -> Result<
    (
        service::Service,
        Option<(service::endpoint::Endpoint, service::endpoint::Endpoint)>,
    ),
    async_nats::Error,
> {
    let metadata = HashMap::from([
        ("title".to_owned(), service.title.to_owned()),
        ("http_port".to_owned(), infra.settings.http.port.to_string()),
        ("host".to_owned(), host_name()),
        // The same id as its heartbeats'.
        ("instance".to_owned(), instance.to_owned()),
    ]);
    let registered = infra
        .nats
        .service_builder()
        .description(match service.locate {
            Some(_) => format!(
                "{} of the OPD platform: where a patient is ({} and {})",
                service.title,
                patient_subject(service.name),
                WHERE_SUBJECT
            ),
            None => format!("{} of the OPD platform", service.title),
        })
        .metadata(metadata)
        // One queue group per service: one instance of each service answers the broadcast.
        .queue_group(service.name)
        .start(service.name, service.version)
        .await?;
    if service.locate.is_none() {
        return Ok((registered, None));
    }
    let patient = registered
        .endpoint_builder()
        .name("patient")
        .add(patient_subject(service.name))
        .await?;
    let broadcast = registered
        .endpoint_builder()
        .name("where")
        .add(WHERE_SUBJECT)
        .await?;
    Ok((registered, Some((patient, broadcast))))
}

/// The machine's (or pod's) name: `HOSTNAME` where the environment exports it (containers),
/// else the kernel's.
pub(crate) fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The answer to one request: [`Located`] as JSON, or an ADR-32 error.
async fn answer(
    name: &str,
    locate: crate::micro::Locate,
    pool: sqlx::PgPool,
    site: crate::domain::Site,
    payload: &[u8],
) -> Result<Bytes, service::error::Error> {
    let question: Question =
        crate::http::parse_json(payload).map_err(|error| service::error::Error {
            code: 400,
            status: format!(
                "{name}: the request must be {{\"id\": <patient id>}}: {}",
                error.to_problem().detail
            ),
        })?;
    let here = locate(pool, site, question.id).await.map_err(|error| {
        tracing::warn!(%error, "cannot answer where a patient is");
        service::error::Error {
            code: 503,
            status: format!("{name}: the database cannot answer right now"),
        }
    })?;
    let located = Located {
        service: name.to_owned(),
        id: question.id.get(),
        here,
    };
    serde_json::to_vec(&located)
        .map(Bytes::from)
        .map_err(|error| service::error::Error {
            code: 500,
            status: format!("{name}: {error}"),
        })
}
