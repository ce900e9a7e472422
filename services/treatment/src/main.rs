#[tokio::main]
async fn main() -> anyhow::Result<()> {
    opd_shared::service::run(&treatment::SERVICE).await
}
