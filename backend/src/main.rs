use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Run by git as a push's pre-receive hook (a link to this binary by that name).
    if gantry_backend::git::hook::invoked_as_hook() {
        return gantry_backend::git::hook::main().await;
    }
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
