use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    gantry_backend::telemetry::init();
    let cli = gantry_backend::cli::Cli::parse();
    match gantry_backend::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gantry: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
