//! The operator's window on the stream (`opd-nats events` and `opd-nats publish`) against a real
//! NATS server configured as the platform's: what it prints, and that only the administrator
//! may use it.

#![allow(clippy::unwrap_used, reason = "a failed step must fail the test")]

use opd_nats_admin::events::{self, Start, Watch};
use opd_testing::NatsServer;

async fn printed(
    nats: &opd_shared::infra::config::NatsSettings,
    watch: Watch,
) -> anyhow::Result<String> {
    let mut out = Vec::new();
    events::watch(nats, watch, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn the_last_events_are_the_ones_just_published_and_only_the_administrator_reads_them() {
    let nats = NatsServer::single().await;
    let admin = nats.admin_settings();
    opd_testing::stream::create(&admin).await;
    for id in 1..=5 {
        events::publish(&admin, "patient.register", &format!(r#"{{"id":{id}}}"#))
            .await
            .unwrap();
    }

    let last_two = Watch::parse(&["--last", "2"]).unwrap();
    assert_eq!(
        printed(&admin, last_two).await.unwrap(),
        "patient.register {\"id\":4}\npatient.register {\"id\":5}\n"
    );
    // More than the stream holds: all of it, then it waits out its idle time for the rest.
    let every = Watch {
        start: Start::Last(5),
        count: Some(5),
    };
    assert_eq!(printed(&admin, every).await.unwrap().lines().count(), 5);
    let first = Watch {
        start: Start::All,
        count: Some(1),
    };
    assert_eq!(
        printed(&admin, first).await.unwrap(),
        "patient.register {\"id\":1}\n"
    );

    // A service's identity may neither read the whole stream nor publish on another's subject.
    let inspection = nats.settings_for("inspection");
    assert!(printed(&inspection, last_two).await.is_err());
    assert!(
        events::publish(&inspection, "patient.register", "{}")
            .await
            .is_err()
    );
}
