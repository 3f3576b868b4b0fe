//! The Monkeychain benchmark: starts real tracker and node processes on loopback, runs each
//! scenario, and prints one table with every figure beside a reference measured in the same
//! run, the ratio, and the target.
//!
//! `cargo run --release -p bench -- [SCENARIO[=SIZE]]... [--quick]`
//!
//! Scenarios (sizes in brackets are the defaults): `hashrate[=2]` (seconds per measurement),
//! `propagation[=3,10,30]` (network sizes), `purchase[=60]` (purchases), `throughput[=6000]`
//! (purchases), `sync[=10000,100000]` (chain lengths), `restart[=100000]` (blocks),
//! `tracker[=1000]` (simulated nodes), `memory[=100000]` (blocks). No scenario runs them all;
//! `--quick` makes every default small.

mod chains;
mod net;
mod report;
mod scenario;
mod watch;

use std::process::ExitCode;

use report::Row;

const USAGE: &str =
    "usage: cargo run --release -p bench -- [SCENARIO[=SIZE[,SIZE...]]]... [--quick]

Starts real tracker and node processes on loopback and prints one table of figures, each beside
a reference measured in the same run. No scenario named runs them all.

scenarios (default sizes):
  hashrate=2                seconds per measurement
  propagation=3,10,30       network sizes (50 blocks each)
  purchase=60               purchases
  throughput=6000           purchases
  sync=10000,100000         chain lengths
  restart=100000            blocks in the store
  tracker=1000              simulated nodes
  memory=100000             blocks
  --quick                   small default sizes for every scenario";

/// A scenario to run, with its size.
struct Pick {
    name: String,
    size: Option<String>,
}

/// The sizes of every scenario, full or quick.
fn default_size(name: &str, quick: bool) -> &'static str {
    match (name, quick) {
        ("hashrate", false) => "2",
        ("hashrate", true) => "0.5",
        ("propagation", false) => "3,10,30",
        ("propagation", true) => "3",
        ("purchase", false) => "60",
        ("purchase", true) => "10",
        ("throughput", false) => "6000",
        ("throughput", true) => "600",
        ("sync", false) => "10000,100000",
        ("sync", true) => "1000",
        ("restart", false) => "100000",
        ("restart", true) => "2000",
        ("tracker", false) => "1000",
        ("tracker", true) => "100",
        ("memory", false) => "100000",
        ("memory", true) => "2000",
        _ => "",
    }
}

/// Every scenario, in order.
const ALL: [&str; 8] = [
    "hashrate",
    "propagation",
    "purchase",
    "throughput",
    "sync",
    "restart",
    "tracker",
    "memory",
];

fn sizes(text: &str) -> anyhow::Result<Vec<usize>> {
    text.split(',')
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("size {s:?}: {e}"))
        })
        .collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if let Some(bad) = args.iter().find(|a| a.starts_with('-') && *a != "--quick") {
        eprintln!("bench: unknown flag {bad:?}\n{USAGE}");
        return ExitCode::FAILURE;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let mut picks: Vec<Pick> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(|a| match a.split_once('=') {
            Some((name, size)) => Pick {
                name: name.into(),
                size: Some(size.into()),
            },
            None => Pick {
                name: a.clone(),
                size: None,
            },
        })
        .collect();
    if picks.is_empty() {
        picks = ALL
            .iter()
            .map(|n| Pick {
                name: (*n).into(),
                size: None,
            })
            .collect();
    }
    if let Some(bad) = picks.iter().find(|p| !ALL.contains(&p.name.as_str())) {
        eprintln!(
            "bench: unknown scenario {:?}; known: {}",
            bad.name,
            ALL.join(", ")
        );
        return ExitCode::FAILURE;
    }
    match run(&picks, quick) {
        Ok(rows) => {
            println!("\n{}", report::table(&rows));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(picks: &[Pick], quick: bool) -> anyhow::Result<Vec<Row>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "Monkeychain bench on {cores} cores (load average {:.2}); release build: {}",
        report::load_average(),
        !cfg!(debug_assertions)
    );
    if cfg!(debug_assertions) {
        println!("warning: a debug build; run with --release for real figures");
    }
    let mut rows = Vec::new();
    let mut chains = chains::Chains::default();
    for pick in picks {
        let size = pick
            .size
            .clone()
            .unwrap_or_else(|| default_size(&pick.name, quick).into());
        let load = report::load_average();
        println!("running {} ({size}) ...", pick.name);
        let mut got = match pick.name.as_str() {
            "hashrate" => scenario::hashrate::run(size.parse()?, cores),
            "propagation" => scenario::propagation::run(&sizes(&size)?, 50).await?,
            "purchase" => scenario::purchase::run(sizes(&size)?[0]).await?,
            "throughput" => scenario::throughput::run(sizes(&size)?[0]).await?,
            "sync" => scenario::sync::run(&sizes(&size)?, &mut chains).await?,
            "restart" => scenario::restart::run(sizes(&size)?[0], &mut chains).await?,
            "tracker" => scenario::tracker::run(sizes(&size)?[0]).await?,
            "memory" => scenario::memory::run(sizes(&size)?[0], &mut chains).await?,
            _ => Vec::new(),
        };
        if let Some(warning) = report::busy_warning(load, cores) {
            for row in &mut got {
                row.noisy.get_or_insert_with(|| warning.clone());
            }
        }
        for row in &got {
            println!(
                "  {} {}: {} {} (reference {} {})",
                row.scenario,
                row.figure,
                report::num(row.value),
                row.unit,
                report::num(row.reference_value),
                row.unit
            );
        }
        rows.extend(got);
    }
    Ok(rows)
}
