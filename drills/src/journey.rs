//! One patient's walk through the book's journey: registered, inspected, medicated, sent for
//! release, discharged or admitted.

use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::board::{Board, Stage};
use crate::client::{Answer, Client};

pub struct Urls {
    pub registration: String,
    pub inspection: String,
    pub treatment: String,
    pub release: String,
}

/// How one journey ended.
pub struct Walked {
    pub id: i64,
    pub started: Instant,
    /// None: a step was refused in a way a completed journey cannot explain.
    pub finished: Option<Instant>,
    pub refusal: Option<String>,
}

/// `registered` counts the patients registered so far (the fault waits for a number of them).
pub async fn walk(
    id: i64,
    urls: &Urls,
    client: &Client,
    board: &Board,
    registered: &watch::Sender<i64>,
) -> Walked {
    let started = Instant::now();
    let finished = steps(id, urls, client, board, registered).await;
    Walked {
        id,
        started,
        finished: finished.as_ref().ok().map(|()| Instant::now()),
        refusal: finished.err(),
    }
}

async fn steps(
    id: i64,
    urls: &Urls,
    client: &Client,
    board: &Board,
    registered: &watch::Sender<i64>,
) -> Result<(), String> {
    let registration = json!({"id": id, "full_name": format!("drill patient {id}"),
                              "address": "44, sw19, london"});
    let url = format!("{}/opd/patient/register", urls.registration);
    // 409 "already registered": an earlier attempt of ours registered them (its answer was
    // lost with the process that gave it).
    accept(
        client.post(&url, &registration).await,
        "register",
        &["/problems/conflict"],
    )?;
    registered.send_modify(|count| *count += 1);

    board.arrival(Stage::Inspection, id).await;
    let record = json!({"id": id, "time": "10:21", "medication": format!("dose {id}"),
                        "notes": "drill"});
    let url = format!("{}/opd/inspection/record", urls.inspection);
    accept(
        client.post(&url, &record).await,
        "inspect",
        &["/problems/conflict"],
    )?;
    board.left(Stage::Inspection, id);

    board.arrival(Stage::Treatment, id).await;
    let medication = json!({"id": id, "time": "16:35", "dose": "xyz x 1"});
    let url = format!("{}/opd/treatment/medication", urls.treatment);
    accept(
        client.post(&url, &medication).await,
        "medicate",
        &["/problems/answer-lost"],
    )?;
    board.left(Stage::Treatment, id);
    let release = json!({"id": id, "time": "20:35", "next_state": disposition(id)});
    let url = format!("{}/opd/treatment/release", urls.treatment);
    accept(
        client.post(&url, &release).await,
        "request release",
        &["/problems/conflict"],
    )?;

    board.arrival(Stage::Release, id).await;
    let discharge = json!({"id": id, "time": "21:35", "state": disposition(id)});
    let url = format!("{}/opd/release/discharge", urls.release);
    accept(
        client.post(&url, &discharge).await,
        "discharge",
        &["/problems/conflict"],
    )?;
    board.left(Stage::Release, id);
    Ok(())
}

/// Even ids go home, odd ones are admitted (which publishes `patient.admission`).
pub fn disposition(id: i64) -> &'static str {
    if id % 2 == 0 {
        "discharge"
    } else {
        "admission"
    }
}

/// A 201, or one of the conflicts that mean "an earlier attempt of this very request took
/// effect".
fn accept(answer: Answer, step: &str, done_before: &[&str]) -> Result<(), String> {
    if answer.status == StatusCode::CREATED
        || (answer.status == StatusCode::CONFLICT && done_before.contains(&answer.problem_type()))
    {
        Ok(())
    } else {
        Err(format!("{step}: {} {}", answer.status, answer.body))
    }
}

/// Records that must exist exactly once for a completed journey; the count of patients whose
/// records are repeated.
pub async fn repeated_records(ids: &[i64], urls: &Urls, client: &Client) -> Vec<i64> {
    let mut repeated = Vec::new();
    for &id in ids {
        let inspections = history(
            client,
            &format!("{}/opd/inspection/history/{id}", urls.inspection),
        )
        .await;
        let medications = history(
            client,
            &format!("{}/opd/treatment/history/{id}", urls.treatment),
        )
        .await;
        if inspections > 1 || medications > 1 {
            repeated.push(id);
        }
    }
    repeated
}

async fn history(client: &Client, url: &str) -> usize {
    client
        .get(url)
        .await
        .as_ref()
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}
