use auth_svc::config::Config;
use auth_svc::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init(auth_svc::SERVICE);
    let config = Config::load()?;
    let app = Application::build(config).await?;
    tokio::spawn(shared::shutdown::on_signal(app.shutdown_token()));
    app.run_until_stopped().await?;
    Ok(())
}
