#[tokio::main]
async fn main() -> anyhow::Result<()> {
    opd_shared::app::run(&board::SERVICE).await
}
