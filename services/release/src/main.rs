#[tokio::main]
async fn main() -> anyhow::Result<()> {
    opd_shared::service::run(&release::SERVICE).await
}
