//! `opd-drill`: walks hundreds of patients through the whole journey of a running platform
//! while a fault is injected, then reports one line: patients, lost, duplicated, client errors,
//! recovery time. `scripts/drills.sh` runs it once per fault against the native stack.
//!
//!   opd-drill --name NAME --first-id ID [--patients 300] [--rate 25]
//!             [--fault-after 100] [--fault CMD] [--heal-after 30] [--heal CMD]
//!             [--deadline 240] [--report FILE]
//!
//! CMD runs with `bash -c` once `--fault-after` patients are registered; `--heal` runs
//! `--heal-after` seconds after the fault command returned. The services' URLs come from
//! OPD_DRILL_{REGISTRATION,INSPECTION,TREATMENT,RELEASE}_URL (default: the book's ports);
//! OPD_DRILL_TOKEN, the bearer token it sends (roles registrar, clinician and discharge).
//!
//! Lost: journeys that did not complete by the deadline. Duplicated: patients listed twice on
//! a pending list, listed again after leaving it, or with two inspections or medications.
//! Recovery: from the end of the fault (the heal, or the fault command if there is no heal) to
//! the completion of every journey that had started by then.

mod board;
mod client;
mod journey;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::future::join_all;
use serde_json::json;
use tokio::sync::watch;

use crate::board::{Board, Stage};
use crate::client::Client;
use crate::journey::{Urls, Walked};

struct Options {
    name: String,
    first_id: i64,
    patients: i64,
    rate: f64,
    fault_after: i64,
    fault: Option<String>,
    heal_after: Duration,
    heal: Option<String>,
    deadline: Duration,
    report: Option<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Options> {
    let mut options = Options {
        name: String::from("no-fault"),
        first_id: 0,
        patients: 300,
        rate: 25.0,
        fault_after: 100,
        fault: None,
        heal_after: Duration::ZERO,
        heal: None,
        deadline: Duration::from_secs(240),
        report: None,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<f64>()
                .with_context(|| format!("{flag} {value:?}"))
        };
        match flag.as_str() {
            "--name" => options.name = value,
            "--first-id" => options.first_id = value.parse().context("--first-id")?,
            "--patients" => options.patients = value.parse().context("--patients")?,
            "--rate" => options.rate = number()?,
            "--fault-after" => options.fault_after = value.parse().context("--fault-after")?,
            "--fault" => options.fault = Some(value),
            "--heal-after" => options.heal_after = Duration::from_secs_f64(number()?),
            "--heal" => options.heal = Some(value),
            "--deadline" => options.deadline = Duration::from_secs_f64(number()?),
            "--report" => options.report = Some(value),
            other => bail!("unknown flag {other:?}; see the top of drills/src/main.rs"),
        }
    }
    if options.first_id <= 0 || options.patients <= 0 || options.rate <= 0.0 {
        bail!("--first-id, --patients and --rate must be positive");
    }
    Ok(options)
}

fn url(service: &str, port: u16) -> String {
    std::env::var(format!("OPD_DRILL_{service}_URL"))
        .unwrap_or_else(|_| format!("http://127.0.0.1:{port}"))
}

async fn run_command(what: &str, command: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(command)
        .status()
        .await
        .with_context(|| format!("running the {what} command"))?;
    if !status.success() {
        bail!("the {what} command failed ({status}): {command}");
    }
    Ok(())
}

/// Runs the fault when enough patients are registered, then the heal; returns when the fault
/// ended.
async fn inject(
    options: &Options,
    mut registered: watch::Receiver<i64>,
) -> anyhow::Result<Option<Instant>> {
    let Some(fault) = &options.fault else {
        return Ok(None);
    };
    let _ = registered
        .wait_for(|&count| count >= options.fault_after)
        .await;
    run_command("fault", fault).await?;
    if let Some(heal) = &options.heal {
        tokio::time::sleep(options.heal_after).await;
        run_command("heal", heal).await?;
    }
    Ok(Some(Instant::now()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse(std::env::args().skip(1))?;
    let urls = Arc::new(Urls {
        registration: url("REGISTRATION", 9090),
        inspection: url("INSPECTION", 9091),
        treatment: url("TREATMENT", 9092),
        release: url("RELEASE", 9093),
    });
    let client = Arc::new(Client::new()?);
    let ids = options.first_id..options.first_id + options.patients;
    let board = Board::new(ids.clone());
    let pollers: Vec<_> = Stage::ALL
        .into_iter()
        .zip([
            format!("{}/opd/inspection/pending", urls.inspection),
            format!("{}/opd/treatment/pending", urls.treatment),
            format!("{}/opd/release/pending", urls.release),
        ])
        .map(|(stage, url)| tokio::spawn(board.clone().poll(stage, url, client.clone())))
        .collect();

    let began = Instant::now();
    let (registered, registered_rx) = watch::channel(0_i64);
    let registered = Arc::new(registered);
    let pace = Duration::from_secs_f64(1.0 / options.rate);
    let deadline = options.deadline;
    let journeys = ids.clone().enumerate().map(|(n, id)| {
        let (urls, client, board, registered) = (
            urls.clone(),
            client.clone(),
            board.clone(),
            registered.clone(),
        );
        let start_at = tokio::time::Instant::now() + pace.mul_f64(n as f64);
        tokio::spawn(async move {
            tokio::time::sleep_until(start_at).await;
            let started = Instant::now();
            let walk = journey::walk(id, &urls, &client, &board, &registered);
            tokio::time::timeout(deadline.saturating_sub(began.elapsed()), walk)
                .await
                .unwrap_or_else(|_| Walked {
                    id,
                    started,
                    finished: None,
                    refusal: Some(String::from("not finished by the deadline")),
                })
        })
    });
    let journeys: Vec<_> = journeys.collect();
    let (fault_ended, walked) = tokio::join!(inject(&options, registered_rx), join_all(journeys));
    let fault_ended = fault_ended?;
    let walked: Vec<Walked> = walked.into_iter().filter_map(Result::ok).collect();

    // Repeats that arrive late (a redelivery) show on the lists a little after the flow ends.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for poller in pollers {
        poller.abort();
    }
    let finished: Vec<i64> = walked
        .iter()
        .filter(|walk| walk.finished.is_some())
        .map(|walk| walk.id)
        .collect();
    let mut duplicated = board.repeated();
    duplicated.extend(journey::repeated_records(&finished, &urls, &client).await);
    let lost = options.patients as usize - finished.len();
    let recovery = fault_ended.map(|ended| {
        walked
            .iter()
            .filter(|walk| walk.started <= ended)
            .filter_map(|walk| walk.finished)
            .map(|finished| finished.saturating_duration_since(ended))
            .max()
            .unwrap_or_default()
    });
    let total = began.elapsed();
    for walk in walked.iter().filter(|walk| walk.refusal.is_some()).take(5) {
        eprintln!(
            "patient {} did not finish: {}",
            walk.id,
            walk.refusal.as_deref().unwrap_or_default()
        );
    }
    let recovery_text = recovery.map_or_else(
        || String::from("-"),
        |r| format!("{:.1} s", r.as_secs_f64()),
    );
    println!(
        "drill {}: patients {}, lost {}, duplicated {}, client errors {}, recovery {}, total {:.1} s",
        options.name,
        options.patients,
        lost,
        duplicated.len(),
        client.errors(),
        recovery_text,
        total.as_secs_f64()
    );
    if let Some(path) = &options.report {
        let line = json!({
            "drill": options.name, "patients": options.patients, "lost": lost,
            "duplicated": duplicated.len(), "client_errors": client.errors(),
            "recovery_s": recovery.map(|r| r.as_secs_f64()), "total_s": total.as_secs_f64(),
        });
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{line}")?;
    }
    if lost > 0 || !duplicated.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
