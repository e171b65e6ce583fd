use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PGREPLICA_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = pgreplica::cli::Cli::parse();
    if let Err(e) = pgreplica::cli::run(cli).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
