//! `opd-nats-exporter`: see the crate's description and docs/observability.md.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    opd_nats_exporter::run().await
}
