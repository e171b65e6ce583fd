use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PGREPLICA_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // colour only for a person at a terminal: log files and `kubectl logs` get plain text
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Installed as `kubectl-pgrc`, the binary is the kubectl plugin: `kubectl pgrc status lab`.
    let cli = pgreplica::cli::Cli::from_args(std::env::args_os().collect());
    let runtime = if cli.wants_single_thread() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    let code = match runtime {
        Ok(rt) => match rt.block_on(pgreplica::cli::run(cli)) {
            Ok(()) => pgreplica::cli::exit::OK,
            Err(e) => {
                eprintln!("error: {e}");
                e.exit_code()
            }
        },
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            pgreplica::cli::exit::FAILED
        }
    };
    std::process::exit(code);
}
