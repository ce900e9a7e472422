#[tokio::main]
async fn main() -> anyhow::Result<()> {
    opd_shared::app::run(&inspection::SERVICE).await
}
