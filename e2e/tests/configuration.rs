//! docs/configuration.md says what every setting is called, which environment variable sets it
//! and what its default is, for the services and for the stream's owner (`opd-nats stream`).
//! These tests read its two tables and hold each against the settings themselves (their
//! serialized defaults), both ways: a documented setting that does not exist, a default that
//! differs, or a setting a table does not list fails them.

use std::collections::BTreeMap;

use opd_nats_admin::StreamSettings;
use opd_shared::infra::config::{ServiceDefaults, Settings};

const DOC: &str = include_str!("../../docs/configuration.md");

/// Every leaf of the serialized defaults, by dotted path (`outbox.retry.max`).
fn leaves(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    match value {
        serde_json::Value::Object(fields) => {
            for (key, field) in fields {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(&path, field, out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), leaf.clone());
        }
    }
}

/// The backticked pieces of a table cell: "`a`, `b`" → ["a", "b"].
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// What the documented default means as the serialized value would print it.
fn as_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Array(items) => Some(
            items
                .iter()
                .filter_map(as_text)
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => Some(other.to_string()),
    }
}

/// Equal as written, or as durations (`24h` is `1day`).
fn same_value(real: &str, stated: &str) -> bool {
    let duration = |text: &str| humantime_serde::re::humantime::parse_duration(text).ok();
    real == stated
        || real == stated.replace(' ', "")
        || duration(real).is_some_and(|d| Some(d) == duration(stated))
}

/// What is wrong with the settings table under `heading`, held against `defaults` serialized.
fn table_problems(heading: &str, defaults: &serde_json::Value) -> Vec<String> {
    let mut actual = BTreeMap::new();
    leaves("", defaults, &mut actual);

    let mut problems = Vec::new();
    let mut documented = Vec::new();
    // The first settings table after the heading: from its header to the first line that is
    // not a row.
    let table = DOC
        .lines()
        .skip_while(|line| *line != heading)
        .skip_while(|line| !line.starts_with("| Key | Environment variable |"))
        .take_while(|line| line.starts_with('|'));
    for row in table.filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let [keys, variables, default, ..] = cells[..] else {
            problems.push(format!("a row with too few cells: {row}"));
            continue;
        };
        let keys = ticked(keys.trim_start_matches("| "));
        let variables = ticked(variables);
        // One default per key ("`200ms`, `10s`"), or one for all of them ("unset").
        let stated = ticked(default);
        for (index, key) in keys.iter().enumerate() {
            documented.push(key.clone());
            let wanted_variable = format!("OPD_{}", key.to_uppercase().replace('.', "__"));
            // "`OPD_A__B`, `…__C`": the second names only what differs from the first.
            let variable = variables.get(index).map(|v| match v.strip_prefix('…') {
                Some(rest) => {
                    let first = &variables[0];
                    let cut = first.rfind("__").map_or(0, |at| at);
                    format!("{}{rest}", &first[..cut])
                }
                None => v.clone(),
            });
            if variable.as_deref() != Some(wanted_variable.as_str()) {
                problems.push(format!(
                    "{key}: documented as {variable:?}, read from {wanted_variable}"
                ));
            }
            let Some(value) = actual.get(key) else {
                problems.push(format!("{key}: documented, but there is no such setting"));
                continue;
            };
            let stated_default = stated
                .get(index)
                .or_else(|| {
                    if stated.len() == 1 {
                        stated.first()
                    } else {
                        None
                    }
                })
                .map(|text| text.replace("<service>", "registration"));
            let unset = default.contains("unset") || default.contains("none");
            match (as_text(value), stated_default) {
                (None, _) if unset => {}
                (Some(_), None) if key == "http.port" => {} // one port per service: the row lists them
                (Some(real), Some(text)) if same_value(&real, &text) => {}
                (real, text) => problems.push(format!(
                    "{key}: the table says {text:?}, the default is {real:?}"
                )),
            }
        }
    }
    for key in actual.keys() {
        if !documented.contains(key) {
            problems.push(format!(
                "{key}: a setting docs/configuration.md does not list"
            ));
        }
    }
    if documented.is_empty() {
        problems.push(format!("no settings table under {heading:?}"));
    }
    problems
}

fn assert_agrees(heading: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "docs/configuration.md ({heading}) disagrees with the code:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_services_settings_table_matches_the_settings() -> Result<(), serde_json::Error> {
    let defaults = serde_json::to_value(Settings::defaults(ServiceDefaults {
        name: "registration",
        port: 9090,
    }))?;
    let heading = "# Configuration";
    assert_agrees(heading, &table_problems(heading, &defaults));
    Ok(())
}

#[test]
fn the_streams_settings_table_matches_the_streams_settings() -> Result<(), serde_json::Error> {
    let defaults = serde_json::json!({ "stream": StreamSettings::default() });
    let heading = "## The stream's settings";
    assert_agrees(heading, &table_problems(heading, &defaults));
    Ok(())
}

/// The durable consumers the stream's owner creates (`opd-nats stream`) are exactly the ones
/// the services bind to, each reading its handler's subject.
#[test]
fn every_subscription_is_a_durable_the_owner_creates() {
    use opd_shared::events::{DURABLES, Durable};
    let services = [
        &registration::SERVICE,
        &inspection::SERVICE,
        &treatment::SERVICE,
        &release::SERVICE,
        &board::SERVICE,
    ];
    let mut subscribed: Vec<Durable> = services
        .iter()
        .flat_map(|service| service.consumers.iter())
        .map(|subscription| Durable {
            name: subscription.durable,
            subjects: subscription.subjects,
        })
        .collect();
    subscribed.sort_by_key(|durable| durable.name);
    let mut owned = DURABLES.to_vec();
    owned.sort_by_key(|durable| durable.name);
    assert_eq!(subscribed, owned);
}
