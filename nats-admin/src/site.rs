//! A second site (docs/architecture.md, "Sites"): a clinic with a NATS server of its own, in
//! its own JetStream domain, joined to the hospital's cluster as a leaf node (`nats/site.conf`).
//!
//! Two steps, each as an administrator:
//! - on the clinic's server, [`create_site_stream`] makes the clinic's own `PATIENT` stream,
//!   which holds its `patient.register` events only: the clinic's registration instance
//!   publishes into it as it would into the hospital's, and gets its acknowledgement from the
//!   clinic, link or no link;
//! - on the hospital's, [`link`] adds that stream to the sources of the hospital's `PATIENT`
//!   stream. The hospital's JetStream then keeps a consumer on the clinic's stream through the
//!   link (by the clinic domain's API, `$JS.<site>.API`) and copies each registration into its
//!   own stream once, in the clinic's order, resuming after the last one it holds whenever the
//!   link comes back. Nobody has to act when the link heals.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use opd_shared::domain::Site;
use opd_shared::events::{Event, PatientRegistered};
use opd_shared::infra::config::NatsSettings;
use opd_shared::infra::nats::{dbg, differences, report_drift};

use crate::StreamSettings;
use crate::stream::retry;

/// The API prefix of `site`'s JetStream, as the hospital reaches it across the link.
pub fn api_prefix(site: &Site) -> String {
    format!("$JS.{site}.API")
}

/// Where the consumer on `site`'s stream delivers to the hospital: the one subject, with the
/// API answers, that the site's link may send into the hospital's cluster (`nats/auth.conf`).
pub fn delivery_prefix(site: &Site) -> String {
    format!("opd.site.{site}")
}

/// The source that copies `site`'s registrations into the hospital's stream. The site's stream
/// has the hospital's stream's name (`stream`): the site's registration instance is the
/// hospital's program, with the hospital's settings.
pub fn source(site: &Site, stream: &str) -> stream::Source {
    stream::Source {
        name: stream.to_owned(),
        filter_subject: Some(PatientRegistered::SUBJECT.to_owned()),
        external: Some(stream::External {
            api_prefix: api_prefix(site),
            delivery_prefix: Some(delivery_prefix(site)),
        }),
        ..Default::default()
    }
}

/// The most a site's stream holds: half a million registrations or so, weeks of a clinic's
/// while its link is down, within the 1 GB its server keeps for streams (`nats/site.conf`).
/// Full, it refuses new registrations, which then wait in the registration's outbox.
const SITE_MAX_BYTES: i64 = 512 * 1024 * 1024;

/// The site's own stream: registrations only, kept like the hospital's (age, duplicate window,
/// refusing rather than dropping when full), on `settings.site_replicas` nodes (one: a clinic
/// runs one server).
pub fn site_stream_config(settings: &StreamSettings, name: &str) -> stream::Config {
    stream::Config {
        description: Some("OPD registrations of this site, sourced by the hospital".into()),
        subjects: vec![PatientRegistered::SUBJECT.to_owned()],
        num_replicas: settings.site_replicas,
        max_bytes: SITE_MAX_BYTES,
        ..settings.config(name)
    }
}

/// Creates the site's stream on the server `nats` names, trying again until `patience` has
/// passed; a live one is left as it is, its differences reported (`alert="stream-drift"`).
pub async fn create_site_stream(
    nats: &NatsSettings,
    settings: &StreamSettings,
    patience: Duration,
) -> anyhow::Result<()> {
    let client = opd_shared::infra::nats::connect(nats, "admin").await?;
    let js = opd_shared::infra::nats::jetstream(client);
    let wanted = site_stream_config(settings, &nats.stream);
    retry(patience, || async {
        let stream = js.get_or_create_stream(wanted.clone()).await?;
        let live = &stream.cached_info().config;
        let drift = differences(&[
            ("subjects", dbg(&live.subjects), dbg(&wanted.subjects)),
            (
                "replicas",
                dbg(&live.num_replicas),
                dbg(&wanted.num_replicas),
            ),
            ("discard", dbg(&live.discard), dbg(&wanted.discard)),
        ]);
        report_drift("stream-drift", &nats.stream, &drift);
        Ok(())
    })
    .await
}

/// Adds `site`'s stream to the sources of the hospital's stream (the one `nats` names), if it
/// is not there yet; whether it added it.
pub async fn link(nats: &NatsSettings, site: &Site, patience: Duration) -> anyhow::Result<bool> {
    let client = opd_shared::infra::nats::connect(nats, "admin").await?;
    let js = opd_shared::infra::nats::jetstream(client);
    retry(patience, || add_source(&js, &nats.stream, site)).await
}

async fn add_source(js: &jetstream::Context, name: &str, site: &Site) -> anyhow::Result<bool> {
    let mut config = js.get_stream(name).await?.cached_info().config.clone();
    let wanted = source(site, name);
    let sources = config.sources.get_or_insert_with(Vec::new);
    if let Some(live) = sources
        .iter()
        .find(|live| live.external.as_ref() == wanted.external.as_ref())
    {
        report_drift(
            "stream-drift",
            name,
            &differences(&[
                ("source name", dbg(&live.name), dbg(&wanted.name)),
                (
                    "source filter",
                    dbg(&live.filter_subject),
                    dbg(&wanted.filter_subject),
                ),
            ]),
        );
        return Ok(false);
    }
    sources.push(wanted);
    js.update_stream(config).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sites_source_reads_its_registrations_through_its_domain() {
        let clinic: Site = "clinic".parse().unwrap_or_default();
        let source = source(&clinic, "PATIENT");
        assert_eq!(source.name, "PATIENT");
        assert_eq!(source.filter_subject.as_deref(), Some("patient.register"));
        let external = source.external.unwrap_or_else(|| stream::External {
            api_prefix: String::new(),
            delivery_prefix: None,
        });
        assert_eq!(external.api_prefix, "$JS.clinic.API");
        assert_eq!(external.delivery_prefix.as_deref(), Some("opd.site.clinic"));
        let config = site_stream_config(&StreamSettings::default(), "PATIENT");
        assert_eq!(config.subjects, ["patient.register"]);
        assert_eq!(config.num_replicas, 1);
        assert_eq!(config.discard, stream::DiscardPolicy::New);
    }
}
