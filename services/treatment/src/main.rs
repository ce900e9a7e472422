#[tokio::main]
async fn main() -> anyhow::Result<()> {
    opd_shared::app::run(&treatment::SERVICE).await
}
