fn main() {
    // Installed as `kubectl-pgrc`, the binary is the kubectl plugin: `kubectl pgrc status lab`.
    let cli = pgreplica::cli::Cli::from_args(std::env::args_os().collect());
    cli.init_logging();
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
