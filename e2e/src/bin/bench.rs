//! `cargo run --release -p pgreplica-e2e --bin bench -- --runs 5`: pgreplica's local runtime,
//! Patroni and pgpool-II through the same scenarios on this machine; writes docs/benchmarks.md
//! and docs/benchmarks.json.

use std::time::Instant;

use clap::Parser;

use pgreplica_e2e::bench::report::{self, Report, SystemResult};
use pgreplica_e2e::bench::scenarios::{self, Options, Samples};
use pgreplica_e2e::bench::system::System;
use pgreplica_e2e::bench::systems::{patroni::Patroni, pgpool::Pgpool, pgreplica::Pgreplica};
use pgreplica_e2e::cluster::repo_file;

#[derive(Parser, Debug)]
#[command(about = "Benchmark pgreplica against Patroni and pgpool-II on this machine")]
struct Args {
    /// Runs per system (N ≥ 5 for published numbers; medians are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Scenarios: data-loss, member-loss, failback, recovery, apply-delay, sync-cost, footprint, all.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    scenarios: Vec<String>,
    /// Systems: pgreplica, patroni (recommended fast settings), patroni-default, pgpool (the
    /// lab's settings), pgpool-fast.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "pgreplica,patroni,patroni-default,pgpool"
    )]
    systems: Vec<String>,
    /// pgbench scale of the small data set (≈15 MiB per unit).
    #[arg(long, default_value_t = 7)]
    small_scale: u32,
    /// pgbench scale of the large data set (0 skips it).
    #[arg(long, default_value_t = 30)]
    large_scale: u32,
    /// Where to write benchmarks.md and benchmarks.json.
    #[arg(long)]
    out_dir: Option<std::path::PathBuf>,
}

fn make(name: &str) -> Result<Box<dyn System>, String> {
    match name {
        "pgreplica" => Ok(Box::new(Pgreplica::default())),
        "patroni" => Ok(Box::new(Patroni::new(true))),
        "patroni-default" => Ok(Box::new(Patroni::new(false))),
        "pgpool" => Ok(Box::new(Pgpool::new(false))),
        "pgpool-fast" => Ok(Box::new(Pgpool::new(true))),
        other => Err(format!("unknown system {other}")),
    }
}

fn postgres_version() -> String {
    std::process::Command::new(pgreplica_e2e::bench::pg_bin("postgres"))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    // The release agent, not a debug build someone else left in target/debug.
    if std::env::var_os("PGREPLICA_BIN").is_none() {
        let release = repo_file("target/release/pgreplica");
        if release.exists() {
            std::env::set_var("PGREPLICA_BIN", release);
        }
    }
    let started = Instant::now();
    let started_at = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let opts = Options {
        scenarios: args.scenarios.clone(),
        small_scale: args.small_scale,
        large_scale: args.large_scale,
        verbose: true,
    };
    let mut results = Vec::new();
    for name in &args.systems {
        let mut sys = match make(name) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        };
        let mut samples = Samples::default();
        let mut ok = 0;
        for run in 1..=args.runs {
            println!("===== {name}: run {run}/{} =====", args.runs);
            match scenarios::run_once(sys.as_mut(), &opts, &mut samples).await {
                Ok(()) => ok += 1,
                Err(e) => {
                    println!("{name} run {run} failed: {e}");
                    let diag = sys.diagnostics();
                    let tail: String = diag
                        .lines()
                        .rev()
                        .take(60)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n");
                    println!("{tail}");
                    samples.errors.push(format!("run {run}: {e}"));
                    tokio::task::block_in_place(|| sys.down());
                }
            }
        }
        let (install_bytes, install_note) = sys.install_size();
        results.push(SystemResult {
            name: name.clone(),
            version: sys.version(),
            config: sys.config_note(),
            install_bytes,
            install_note,
            runs_ok: ok,
            samples,
        });
    }
    let command = format!(
        "cargo run --release -p pgreplica-e2e --bin bench -- --runs {} --systems {} --scenarios {} --small-scale {} --large-scale {}",
        args.runs,
        args.systems.join(","),
        args.scenarios.join(","),
        args.small_scale,
        args.large_scale
    );
    let r = Report {
        command,
        runs: args.runs,
        started_at,
        duration_s: started.elapsed().as_secs_f64(),
        machine: report::machine(),
        postgres: postgres_version(),
        medians: report::medians(&results),
        systems: results,
    };
    let dir = args.out_dir.unwrap_or_else(|| repo_file("docs"));
    let _ = std::fs::create_dir_all(&dir);
    let md = report::markdown(&r);
    let json = serde_json::to_string_pretty(&r).unwrap_or_default();
    if let Err(e) = std::fs::write(dir.join("benchmarks.md"), &md)
        .and_then(|_| std::fs::write(dir.join("benchmarks.json"), json))
    {
        eprintln!("cannot write the report: {e}");
        std::process::exit(1);
    }
    println!("\n{}", report::summary(&r));
    println!("wrote {}/benchmarks.md and benchmarks.json", dir.display());
}
