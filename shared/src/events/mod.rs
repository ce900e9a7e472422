//! The event contracts: every subject, payload and header the services exchange, in one place.
//! docs/events.md documents them with an example of each.
//!
//! Payloads keep the book's JSON fields. Metadata travels in NATS headers named after
//! CloudEvents' binary mode (`ce-*`), so the payload stays exactly the book's.
//!
//! Below them, how events travel: [`outbox`] (written in the producer's transaction, relayed
//! to JetStream), [`consumer`] (durable consumers with idempotent effects),
//! [`dead_letters`] (what a consumer could not handle, for an operator, who can have it handled
//! again from the database) and [`housekeeping`]
//! (the outbox, inbox and idempotency rows deleted once nothing can need them).

pub mod consumer;
pub mod dead_letters;
pub mod housekeeping;
pub mod outbox;

use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Disposition, Note, PatientId, Site, Text};

/// A message on the `patient.*` stream.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The book's subject, without any deployment prefix.
    const SUBJECT: &'static str;
    /// The CloudEvents `type`.
    const TYPE: &'static str;
    /// The CloudEvents `source`: the one service that produces it. A consumer parks an event
    /// on this subject that says it comes from anywhere else, or is of another type.
    const SOURCE: &'static str;
}

/// A durable consumer on the stream: its name and the subjects it reads.
///
/// The stream's owner creates every one of them (`opd-nats stream`), as it creates the stream;
/// the service that runs one may read its information, pull from it and acknowledge, nothing
/// more (`nats/auth.conf`). A service's identity that could create consumers could also change
/// its own to read every subject of the stream from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    pub name: &'static str,
    pub subjects: &'static [&'static str],
}

/// The consumer of the waiting-room board's projection: every event that moves a patient
/// between the OPD's queues, in the stream's order.
pub const BOARD_DURABLE: Durable = Durable {
    name: "board-patient-flow",
    subjects: &[
        PatientRegistered::SUBJECT,
        PatientSentForTreatment::SUBJECT,
        PatientReleaseRequested::SUBJECT,
        PatientDischarged::SUBJECT,
        PatientAdmissionRequested::SUBJECT,
    ],
};

/// The key-value bucket where the board's projection keeps the state of the waiting room: one
/// key per visit and one per stage's called token (services/board says what they hold).
/// The stream's owner creates it with the stream; the board service alone writes it.
pub const BOARD_BUCKET: &str = "OPD_BOARD";

/// Inspection's: the patients registered.
pub const INSPECTION_DURABLE: Durable = Durable {
    name: "inspection-patient-register",
    subjects: &[PatientRegistered::SUBJECT],
};

/// Treatment's: the patients inspection sent for treatment.
pub const TREATMENT_DURABLE: Durable = Durable {
    name: "treatment-patient-treatment",
    subjects: &[PatientSentForTreatment::SUBJECT],
};

/// Release's: the patients treatment asked to release.
pub const RELEASE_DURABLE: Durable = Durable {
    name: "release-patient-release",
    subjects: &[PatientReleaseRequested::SUBJECT],
};

/// Every durable consumer of the platform: one per service's [`crate::service::Subscription`]
/// (a test holds each service to it).
pub const DURABLES: [Durable; 4] = [
    INSPECTION_DURABLE,
    TREATMENT_DURABLE,
    RELEASE_DURABLE,
    BOARD_DURABLE,
];

/// `patient.register`: a patient got a token and waits for inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientRegistered {
    pub id: PatientId,
    pub token: i64,
    /// The site that gave the token (the book's payload has none: the hospital).
    #[serde(default)]
    pub site: Site,
}

impl Event for PatientRegistered {
    const SUBJECT: &'static str = "patient.register";
    const TYPE: &'static str = "opd.patient.registered.v1";
    const SOURCE: &'static str = "/opd/registration";
}

/// `patient.treatment`: inspection sent the patient for treatment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PatientSentForTreatment {
    pub id: PatientId,
    #[serde(default, skip_serializing_if = "is_absent")]
    pub medication: Note<1000>,
    #[serde(default, skip_serializing_if = "is_absent")]
    pub tests: Note<1000>,
    #[serde(default, skip_serializing_if = "is_absent")]
    pub notes: Note<2000>,
}

impl Event for PatientSentForTreatment {
    const SUBJECT: &'static str = "patient.treatment";
    const TYPE: &'static str = "opd.patient.sent-for-treatment.v1";
    const SOURCE: &'static str = "/opd/inspection";
}

/// `patient.release`: treatment asked for the patient to be released.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientReleaseRequested {
    pub id: PatientId,
    pub time: Text<100>,
    pub next_state: Disposition,
    #[serde(default, skip_serializing_if = "is_absent")]
    pub post_medication: Note<1000>,
    #[serde(default, skip_serializing_if = "is_absent")]
    pub notes: Note<2000>,
}

impl Event for PatientReleaseRequested {
    const SUBJECT: &'static str = "patient.release";
    const TYPE: &'static str = "opd.patient.release-requested.v1";
    const SOURCE: &'static str = "/opd/treatment";
}

/// `patient.admission`: release sent the patient to be admitted to the hospital.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientAdmissionRequested {
    pub id: PatientId,
    pub time: Text<100>,
    #[serde(default, skip_serializing_if = "is_absent")]
    pub notes: Note<2000>,
}

impl Event for PatientAdmissionRequested {
    const SUBJECT: &'static str = "patient.admission";
    const TYPE: &'static str = "opd.patient.admission-requested.v1";
    const SOURCE: &'static str = "/opd/release";
}

/// `patient.discharge`: release sent the patient home. (Not in the book, where a discharge
/// publishes nothing: without it nobody outside the release service could tell that the
/// patient left the OPD, and the waiting-room board needs to.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientDischarged {
    pub id: PatientId,
    pub time: Text<100>,
    #[serde(default, skip_serializing_if = "is_absent")]
    pub next_visit: Note<100>,
}

impl Event for PatientDischarged {
    const SUBJECT: &'static str = "patient.discharge";
    const TYPE: &'static str = "opd.patient.discharged.v1";
    const SOURCE: &'static str = "/opd/release";
}

fn is_absent<const N: usize>(note: &Note<N>) -> bool {
    note.as_deref().is_none()
}

/// Header names. `Nats-Msg-Id` carries the event id too, for JetStream's de-duplication.
pub mod headers {
    pub const MESSAGE_ID: &str = "Nats-Msg-Id";
    pub(crate) const SPEC_VERSION: &str = "ce-specversion";
    pub const ID: &str = "ce-id";
    pub const TYPE: &str = "ce-type";
    pub(crate) const SOURCE: &str = "ce-source";
    pub(crate) const TIME: &str = "ce-time";
    /// CloudEvents extension attribute: the `x-request-id` of the HTTP call behind the event.
    pub const REQUEST_ID: &str = "ce-requestid";
    /// CloudEvents extension attribute: the subject of the token of the HTTP call behind the
    /// event (never the token).
    pub const CALLER: &str = "ce-caller";
    /// W3C trace context (the CloudEvents distributed-tracing extension's attribute).
    pub(crate) const TRACEPARENT: &str = "traceparent";
    pub const CONTENT_TYPE: &str = "content-type";
}

/// The metadata of one event, as written to the outbox and read back by consumers.
#[derive(Debug, Clone, PartialEq)]
pub struct EventMeta {
    pub id: Uuid,
    pub event_type: String,
    /// The producing service, as a URI reference: `/opd/registration`.
    pub source: String,
    pub time: DateTime<Utc>,
    pub request_id: Option<String>,
    /// Who made the HTTP call behind the event: its token's subject (`ce-caller`).
    pub caller: Option<String>,
    /// W3C trace context of the request that caused the event (`traceparent` header).
    pub traceparent: Option<String>,
}

impl EventMeta {
    pub fn to_headers(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        let id = self.id.to_string();
        map.insert(headers::MESSAGE_ID, id.as_str());
        map.insert(headers::SPEC_VERSION, "1.0");
        map.insert(headers::ID, id.as_str());
        map.insert(headers::TYPE, self.event_type.as_str());
        map.insert(headers::SOURCE, self.source.as_str());
        map.insert(headers::TIME, self.time.to_rfc3339().as_str());
        map.insert(headers::CONTENT_TYPE, "application/json");
        if let Some(request_id) = &self.request_id {
            map.insert(headers::REQUEST_ID, request_id.as_str());
        }
        if let Some(caller) = &self.caller {
            map.insert(headers::CALLER, caller.as_str());
        }
        if let Some(traceparent) = &self.traceparent {
            map.insert(headers::TRACEPARENT, traceparent.as_str());
        }
        map
    }

    /// Whether this event may be an `E`: its producer and type are `E`'s. Anything else on
    /// `E`'s subject is forged or misrouted; the reason says which.
    pub(crate) fn check_origin<E: Event>(&self) -> Result<(), String> {
        if self.source == E::SOURCE && self.event_type == E::TYPE {
            return Ok(());
        }
        Err(format!(
            "foreign event on {}: ce-source {:?}, ce-type {:?}; only {} sends it, as {}",
            E::SUBJECT,
            self.source,
            self.event_type,
            E::SOURCE,
            E::TYPE
        ))
    }

    /// Reads the metadata of a received message. An error means the message can never be
    /// handled (it names what is missing), so the caller parks it.
    pub(crate) fn from_headers(map: Option<&HeaderMap>) -> Result<Self, String> {
        let map = map.ok_or(
            "the message has no headers; ce-id, ce-type, ce-source and ce-time are required",
        )?;
        let get = |name: &str| -> Result<String, String> {
            map.get(name)
                .map(|value| value.as_str().to_owned())
                .filter(|value| !value.is_empty())
                .ok_or_else(|| format!("header {name} is missing"))
        };
        let id = get(headers::ID)?;
        let id = Uuid::parse_str(&id).map_err(|e| format!("header {}: {e}", headers::ID))?;
        let time = get(headers::TIME)?;
        let time = DateTime::parse_from_rfc3339(&time)
            .map_err(|e| format!("header {}: {e}", headers::TIME))?
            .with_timezone(&Utc);
        Ok(Self {
            id,
            event_type: get(headers::TYPE)?,
            source: get(headers::SOURCE)?,
            time,
            request_id: get(headers::REQUEST_ID).ok(),
            caller: get(headers::CALLER).ok(),
            traceparent: get(headers::TRACEPARENT).ok(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_survives_a_round_trip_through_headers() {
        let meta = EventMeta {
            id: Uuid::now_v7(),
            event_type: PatientRegistered::TYPE.into(),
            source: "/opd/registration".into(),
            time: DateTime::parse_from_rfc3339("2026-11-21T10:00:00.123456Z")
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
            request_id: Some("req-1".into()),
            caller: Some("registrar-1".into()),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        let headers = meta.to_headers();
        assert_eq!(
            headers.get(headers::MESSAGE_ID).map(|v| v.as_str()),
            Some(meta.id.to_string().as_str())
        );
        assert_eq!(EventMeta::from_headers(Some(&headers)), Ok(meta));
    }

    #[test]
    fn metadata_without_an_id_is_rejected_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(headers::TYPE, "x");
        let error = EventMeta::from_headers(Some(&headers))
            .err()
            .unwrap_or_default();
        assert!(error.contains("ce-id"), "{error}");
    }

    #[test]
    fn payloads_keep_the_books_fields() -> Result<(), serde_json::Error> {
        let event: PatientSentForTreatment = serde_json::from_str(
            r#"{"id":200,"medication":"XYZ x 3","tests":"FBT, UC","notes":"possible Covid-19"}"#,
        )?;
        assert_eq!(
            serde_json::to_value(&event)?,
            serde_json::json!({"id":200,"medication":"XYZ x 3","tests":"FBT, UC","notes":"possible Covid-19"})
        );
        assert!(serde_json::from_str::<PatientRegistered>(r#"{"id":-1,"token":1}"#).is_err());
        // The book's registration says no site: its tokens are the hospital's.
        let book: PatientRegistered = serde_json::from_str(r#"{"id":200,"token":1}"#)?;
        assert_eq!(book.site, Site::hospital());
        let clinic: PatientRegistered =
            serde_json::from_str(r#"{"id":200,"token":1,"site":"clinic"}"#)?;
        assert_eq!(clinic.site.as_str(), "clinic");
        assert!(
            serde_json::from_str::<PatientRegistered>(r#"{"id":200,"token":1,"site":"A.B"}"#)
                .is_err()
        );
        let release: PatientReleaseRequested = serde_json::from_str(
            r#"{"id":200,"time":"2021 07 12 8:35 PM","next_state":"discharge"}"#,
        )?;
        assert_eq!(release.next_state, Disposition::Discharge);
        assert!(
            serde_json::from_str::<PatientReleaseRequested>(
                r#"{"id":200,"time":"2021 07 12 8:35 PM","next_state":"home"}"#
            )
            .is_err(),
            "a consumer never stores a disposition the producer could not have sent"
        );
        Ok(())
    }
}
