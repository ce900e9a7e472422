//! `opd-board-load`: many screens on one board instance while patients register, and what each
//! screen saw. `scripts/bench.sh` runs it (its `board` phase) against the native stack.
//!
//!   opd-board-load --first-id ID [--clients 1000] [--rate 100] [--seconds 30]
//!                  [--board-pid PID]
//!
//! Opens `--clients` event streams (`GET /opd/board/events`) and waits for each one's snapshot,
//! then registers patients at `--rate` per second for `--seconds`, noting when each
//! registration was answered and with which token. Every stream notes when the token's `visit`
//! event (stage `inspection`) reached it. Prints one JSON line: the time from a registration's
//! answer to its event at a screen over every (screen, registration) pair (p50, p99, max),
//! registrations a screen never got (lost), events a screen got twice (repeated), and, with
//! `--board-pid`, the board's resident memory before and with the streams open.
//!
//! OPD_BOARD_URL and OPD_REGISTRATION_URL name the services (default: their ports on this
//! machine); OPD_BENCH_TOKEN is the bearer token of the registrations (role registrar).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};

struct Options {
    first_id: i64,
    clients: usize,
    rate: f64,
    seconds: u64,
    board_pid: Option<u32>,
}

fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Options> {
    let mut options = Options {
        first_id: 0,
        clients: 1000,
        rate: 100.0,
        seconds: 30,
        board_pid: None,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--first-id" => options.first_id = value.parse()?,
            "--clients" => options.clients = value.parse()?,
            "--rate" => options.rate = value.parse()?,
            "--seconds" => options.seconds = value.parse()?,
            "--board-pid" => options.board_pid = Some(value.parse()?),
            other => bail!("unknown flag {other}"),
        }
    }
    if options.first_id <= 0 || options.clients == 0 || options.rate <= 0.0 {
        bail!("--first-id, --clients and --rate must be positive");
    }
    Ok(options)
}

/// What one screen received: when each token's arrival in the inspection queue reached it,
/// and how many events it got twice.
#[derive(Default)]
struct Screen {
    arrivals: HashMap<i64, Instant>,
    repeated: u64,
    last_id: u64,
    opened: bool,
}

/// Reads one event stream until `stop`, noting what `screen` needs.
async fn follow(
    http: reqwest::Client,
    url: String,
    screen: Arc<Mutex<Screen>>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let response = http.get(&url).send().await?.error_for_status()?;
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    loop {
        let chunk = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            chunk = body.next() => chunk,
        };
        let Some(chunk) = chunk else {
            bail!("the stream ended");
        };
        let received = Instant::now();
        buffer.push_str(std::str::from_utf8(&chunk?)?);
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut name, mut id, mut data) = ("message", None, None);
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = match value {
                        "snapshot" => "snapshot",
                        "visit" => "visit",
                        "called" => "called",
                        _ => "other",
                    };
                } else if let Some(value) = line.strip_prefix("id: ") {
                    id = value.parse::<u64>().ok();
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = serde_json::from_str::<Value>(value).ok();
                }
            }
            let mut screen = screen.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(id) = id {
                if id <= screen.last_id && name != "snapshot" {
                    screen.repeated += 1;
                    continue;
                }
                screen.last_id = id;
            }
            match (name, data) {
                ("snapshot", _) => screen.opened = true,
                ("visit", Some(visit)) if visit["stage"] == "inspection" => {
                    if let Some(token) = visit["token"].as_i64() {
                        match screen.arrivals.entry(token) {
                            std::collections::hash_map::Entry::Occupied(_) => {
                                screen.repeated += 1;
                            }
                            std::collections::hash_map::Entry::Vacant(slot) => {
                                slot.insert(received);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// The resident memory of process `pid`, in kB.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
}

fn percentile(sorted: &[f64], share: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() - 1) as f64 * share).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse(std::env::args().skip(1))?;
    let board = std::env::var("OPD_BOARD_URL").unwrap_or_else(|_| "http://127.0.0.1:9094".into());
    let registration =
        std::env::var("OPD_REGISTRATION_URL").unwrap_or_else(|_| "http://127.0.0.1:9090".into());
    let token = std::env::var("OPD_BENCH_TOKEN")
        .context("OPD_BENCH_TOKEN is not set: a bearer token with the role registrar")?;

    let rss_before = options.board_pid.and_then(rss_kb);
    // One connection per screen, as browsers would hold them.
    let streams = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let screens: Vec<Arc<Mutex<Screen>>> = (0..options.clients)
        .map(|_| Arc::new(Mutex::new(Screen::default())))
        .collect();
    let url = format!("{board}/opd/board/events");
    let opening = Instant::now();
    let mut followers = Vec::new();
    for screen in &screens {
        followers.push(tokio::spawn(follow(
            streams.clone(),
            url.clone(),
            screen.clone(),
            stop.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while screens
        .iter()
        .any(|s| !s.lock().unwrap_or_else(PoisonError::into_inner).opened)
    {
        if Instant::now() > deadline {
            bail!("not every stream opened within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let opened_s = opening.elapsed().as_secs_f64();
    let rss_open = options.board_pid.and_then(rss_kb);

    // The registrations, on a fixed schedule whatever the answers take.
    let desk = reqwest::Client::new();
    let answers: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let total = (options.rate * options.seconds as f64).round() as i64;
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = Vec::new();
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for n in 0..total {
        ticks.tick().await;
        let (desk, answers, errors) = (desk.clone(), answers.clone(), errors.clone());
        let url = format!("{registration}/opd/patient/register");
        let body = json!({"full_name": "board load", "id": options.first_id + n, "sex": "female", "phone": 777777777});
        let token = token.clone();
        requests.push(tokio::spawn(async move {
            let answered = desk.post(url).bearer_auth(token).json(&body).send().await;
            let body = match answered {
                Ok(response) if response.status().as_u16() == 201 => {
                    response.json::<Value>().await.ok()
                }
                _ => None,
            };
            match body.and_then(|body| body["token"].as_i64()) {
                Some(token) => {
                    answers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(token, Instant::now());
                }
                None => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for request in requests {
        request.await?;
    }
    let answers = answers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    // Until every screen has every registration, or 15 s.
    let grace = Instant::now() + Duration::from_secs(15);
    loop {
        let complete = screens.iter().all(|screen| {
            let screen = screen.lock().unwrap_or_else(PoisonError::into_inner);
            answers
                .keys()
                .all(|token| screen.arrivals.contains_key(token))
        });
        if complete || Instant::now() > grace {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_end = options.board_pid.and_then(rss_kb);
    stop.cancel();
    let mut broken = 0;
    for follower in followers {
        if !matches!(follower.await, Ok(Ok(()))) {
            broken += 1;
        }
    }

    let mut latencies = Vec::with_capacity(answers.len() * screens.len());
    let (mut lost, mut repeated) = (0u64, 0u64);
    for screen in &screens {
        let screen = screen.lock().unwrap_or_else(PoisonError::into_inner);
        repeated += screen.repeated;
        for (token, answered) in &answers {
            match screen.arrivals.get(token) {
                // An event may beat the answer to this process: then it took no time at all.
                Some(arrived) => latencies.push(
                    arrived
                        .checked_duration_since(*answered)
                        .unwrap_or_default()
                        .as_secs_f64()
                        * 1000.0,
                ),
                None => lost += 1,
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let per_client_kb = match (rss_before, rss_open.max(rss_end)) {
        (Some(before), Some(peak)) => {
            Some((peak.saturating_sub(before)) as f64 / options.clients as f64)
        }
        _ => None,
    };
    let report = json!({
        "clients": options.clients,
        "offered_per_s": options.rate,
        "seconds": options.seconds,
        "registered": answers.len(),
        "registration_errors": errors.load(std::sync::atomic::Ordering::Relaxed),
        "streams_opened_in_s": (opened_s * 10.0).round() / 10.0,
        "streams_broken": broken,
        "pairs": latencies.len(),
        "p50_ms": (percentile(&latencies, 0.5) * 10.0).round() / 10.0,
        "p99_ms": (percentile(&latencies, 0.99) * 10.0).round() / 10.0,
        "max_ms": (percentile(&latencies, 1.0) * 10.0).round() / 10.0,
        "lost": lost,
        "repeated": repeated,
        "rss_before_kb": rss_before,
        "rss_open_kb": rss_open,
        "rss_end_kb": rss_end,
        "kb_per_client": per_client_kb.map(|kb| (kb * 10.0).round() / 10.0),
    });
    println!("{report}");
    if lost > 0 || repeated > 0 || broken > 0 {
        bail!("{lost} lost, {repeated} repeated, {broken} streams broken");
    }
    Ok(())
}
