//! docs/asyncapi.json describes what the code does on NATS: its channels are exactly the
//! subjects the services use, every reference in it resolves, and every example message is one
//! the code reads.

#![allow(clippy::unwrap_used, reason = "a failed step must fail the test")]

use std::collections::BTreeSet;

use board::projection::Visit;
use opd_shared::control::{self, Ack, Command};
use opd_shared::events::{
    BOARD_BUCKET, Event, PatientAdmissionRequested, PatientDischarged, PatientRegistered,
    PatientReleaseRequested, PatientSentForTreatment,
};
use opd_shared::micro::heartbeat::{self, Heartbeat};
use opd_shared::micro::{Located, Question, WHERE_SUBJECT, patient_subject};
use serde::de::DeserializeOwned;
use serde_json::Value;

const DOCUMENT: &str = include_str!("../../docs/asyncapi.json");

fn document() -> Value {
    serde_json::from_str(DOCUMENT).unwrap()
}

#[test]
fn its_channels_are_exactly_the_subjects_the_services_use() {
    let doc = document();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let addresses: BTreeSet<String> = doc["channels"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|channel| channel["address"].as_str().map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = [
        PatientRegistered::SUBJECT.to_owned(),
        PatientSentForTreatment::SUBJECT.to_owned(),
        PatientReleaseRequested::SUBJECT.to_owned(),
        PatientAdmissionRequested::SUBJECT.to_owned(),
        PatientDischarged::SUBJECT.to_owned(),
        format!("$KV.{BOARD_BUCKET}.visit.{{patient}}"),
        WHERE_SUBJECT.to_owned(),
        patient_subject("{service}"),
        heartbeat::subject("{service}", "{instance}"),
        control::subject("{service}", None),
        control::subject("{service}", Some("{instance}")),
    ]
    .into();
    assert_eq!(addresses, expected);
}

/// Every `$ref` in `value`, with where it is.
fn references(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if let ("$ref", Value::String(target)) = (key.as_str(), inner) {
                    found.push((at.to_owned(), target.clone()));
                }
                references(inner, &format!("{at}/{key}"), found);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                references(inner, &format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let doc = document();
    let mut found = Vec::new();
    references(&doc, "", &mut found);
    assert!(found.len() > 20, "the document refers to its parts");
    let broken: Vec<String> = found
        .iter()
        .filter(|(_, target)| {
            target
                .strip_prefix('#')
                .is_none_or(|pointer| doc.pointer(pointer).is_none())
        })
        .map(|(at, target)| format!("{at}: {target}"))
        .collect();
    assert!(broken.is_empty(), "{broken:#?}");
}

/// The example payloads of `message`, each read as `T` (which fails the test if the code
/// would not read it).
fn examples<T: DeserializeOwned>(doc: &Value, message: &str) -> Vec<T> {
    let examples = doc["components"]["messages"][message]["examples"]
        .as_array()
        .unwrap_or_else(|| panic!("{message} has no examples"));
    examples
        .iter()
        .map(|example| {
            serde_json::from_value(example["payload"].clone())
                .unwrap_or_else(|e| panic!("an example of {message} does not read: {e}"))
        })
        .collect()
}

fn event_type<E: Event>(doc: &Value, message: &str) {
    examples::<E>(doc, message);
    let headers = &doc["components"]["messages"][message]["examples"][0]["headers"];
    assert_eq!(headers["ce-type"], E::TYPE, "{message}");
    assert_eq!(headers["ce-source"], E::SOURCE, "{message}");
}

#[test]
fn every_example_is_a_message_the_code_reads() {
    let doc = document();
    event_type::<PatientRegistered>(&doc, "patientRegistered");
    event_type::<PatientSentForTreatment>(&doc, "patientSentForTreatment");
    event_type::<PatientReleaseRequested>(&doc, "patientReleaseRequested");
    event_type::<PatientAdmissionRequested>(&doc, "patientAdmissionRequested");
    event_type::<PatientDischarged>(&doc, "patientDischarged");
    examples::<Visit>(&doc, "boardVisit");
    examples::<Question>(&doc, "question");
    assert_eq!(examples::<Located>(&doc, "located").len(), 2);
    examples::<Heartbeat>(&doc, "heartbeat");
    let commands: Vec<Command> = examples(&doc, "command");
    let names: BTreeSet<&str> = commands.iter().map(Command::name).collect();
    assert_eq!(
        names,
        ["log-filter", "maintenance", "pause", "resume"].into(),
        "one example of each command"
    );
    examples::<Ack>(&doc, "ack");
}
