use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use opd_shared::domain::{Disposition, Note, PatientId, Site, Text};
use opd_shared::events::{
    PatientAdmissionRequested, PatientDischarged, PatientRegistered, PatientReleaseRequested,
    PatientSentForTreatment,
};
use opd_testing::{PATIENCE, TestApp, eventually};
use serde_json::{Value, json};

pub async fn board() -> TestApp {
    TestApp::spawn(&board::SERVICE).await
}

fn id(id: i64) -> PatientId {
    PatientId::try_from(id).unwrap()
}

fn time() -> Text<100> {
    Text::try_from("2021 07 12 8:35 PM".to_owned()).unwrap()
}

pub async fn register(app: &TestApp, patient: i64, token: i64) {
    register_at(app, patient, token, Site::HOSPITAL).await;
}

/// A registration at `site`: its token counts there.
pub async fn register_at(app: &TestApp, patient: i64, token: i64, site: &str) {
    app.publish(&PatientRegistered {
        id: id(patient),
        token,
        site: site.parse().unwrap(),
    })
    .await;
}

pub async fn inspect(app: &TestApp, patient: i64) {
    app.publish(&PatientSentForTreatment {
        id: id(patient),
        medication: Note::default(),
        tests: Note::default(),
        notes: Note::default(),
    })
    .await;
}

pub async fn treat(app: &TestApp, patient: i64) {
    app.publish(&PatientReleaseRequested {
        id: id(patient),
        time: time(),
        next_state: Disposition::Discharge,
        post_medication: Note::default(),
        notes: Note::default(),
    })
    .await;
}

pub async fn discharge(app: &TestApp, patient: i64) {
    app.publish(&PatientDischarged {
        id: id(patient),
        time: time(),
        next_visit: Note::default(),
    })
    .await;
}

pub async fn admit(app: &TestApp, patient: i64) {
    app.publish(&PatientAdmissionRequested {
        id: id(patient),
        time: time(),
        notes: Note::default(),
    })
    .await;
}

/// The board's bucket, with the board's own identity: nothing else may write there.
pub async fn board_bucket(app: &TestApp) -> async_nats::jetstream::kv::Store {
    let client = opd_testing::stream::connect(&app.settings.nats, "board")
        .await
        .unwrap();
    async_nats::jetstream::new(client)
        .get_key_value(opd_shared::events::BOARD_BUCKET)
        .await
        .unwrap()
}

/// The board as `GET /opd/board/state` has it, without its day and revision.
pub async fn stages(app: &TestApp) -> Value {
    let state = app.get_expect("/opd/board/state", 200).await;
    without_orders(&state["stages"])
}

/// `stages` without their `orders`, once these are checked: one per waiting token, first come
/// first.
pub fn without_orders(stages: &Value) -> Value {
    let mut stages = stages.clone();
    for stage in stages.as_array_mut().into_iter().flatten() {
        let orders: Vec<u64> = serde_json::from_value(stage["orders"].take()).unwrap();
        assert_eq!(
            orders.len(),
            stage["waiting"].as_array().unwrap().len(),
            "{stage}"
        );
        assert!(
            orders.windows(2).all(|pair| pair[0] < pair[1]),
            "{orders:?}"
        );
        stage.as_object_mut().unwrap().remove("orders");
    }
    stages
}

/// Waits until the board's stages are `expected`.
pub async fn board_shows(app: &TestApp, expected: Value) {
    eventually(&format!("the board to show {expected}"), || async {
        (stages(app).await == expected).then_some(())
    })
    .await;
}

/// The three stages with these waiting tokens and called tokens, all the hospital's.
pub fn expect(
    inspection: (&[i64], Option<i64>),
    treatment: (&[i64], Option<i64>),
    release: (&[i64], Option<i64>),
) -> Value {
    let stage = |name: &str, (waiting, called): (&[i64], Option<i64>)| {
        json!({
            "stage": name,
            "waiting": waiting.iter().map(|token| hospital(*token)).collect::<Vec<_>>(),
            "called": called.map(hospital),
        })
    };
    json!([
        stage("inspection", inspection),
        stage("treatment", treatment),
        stage("release", release),
    ])
}

/// A hospital token as the board shows it.
pub fn hospital(token: i64) -> Value {
    json!({"token": token, "site": Site::HOSPITAL})
}

/// One server-sent event; a `visit` event's `order` and a token's `site` are kept apart from
/// its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub event: String,
    pub id: Option<u64>,
    pub data: Value,
    pub order: Option<u64>,
    pub site: Option<String>,
}

/// An open `GET /opd/board/events`, read event by event.
pub struct Events {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: String,
}

impl Events {
    pub async fn open(app: &TestApp, last_event_id: Option<u64>) -> Self {
        let mut request = app.client.get(app.url("/opd/board/events"));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        assert_eq!(response.headers()["x-accel-buffering"], "no");
        Self {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event with data (comments and the `retry` field are skipped).
    pub async fn next(&mut self) -> Sse {
        tokio::time::timeout(PATIENCE, self.next_event())
            .await
            .expect("no event within the patience")
            .expect("the stream ended")
    }

    /// Whether the stream sends no event within `wait`.
    pub async fn quiet_for(&mut self, wait: Duration) -> Option<Sse> {
        tokio::time::timeout(wait, self.next_event())
            .await
            .ok()
            .flatten()
    }

    async fn next_event(&mut self) -> Option<Sse> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return Some(event);
                }
            }
            let chunk = self.body.next().await?.ok()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

fn parse(block: &str) -> Option<Sse> {
    let mut event = String::from("message");
    let mut id = None;
    let mut data = None;
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            event = value.trim().to_owned();
        } else if let Some(value) = line.strip_prefix("id:") {
            id = value.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("data:") {
            data = Some(serde_json::from_str(value.trim()).unwrap());
        }
    }
    let mut data: Value = data?;
    let order = data
        .as_object_mut()
        .and_then(|object| object.remove("order"))
        .and_then(|order| order.as_u64());
    let site = data
        .as_object_mut()
        .and_then(|object| object.remove("site"))
        .and_then(|site| site.as_str().map(str::to_owned));
    if event == "visit" || event == "called" {
        assert!(site.is_some(), "a token without its site: {block}");
    }
    Some(Sse {
        event,
        id,
        data,
        order,
        site,
    })
}
