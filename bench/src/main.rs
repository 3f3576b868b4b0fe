//! The Monkeychain benchmark: starts real tracker and node processes on loopback, runs each
//! scenario, and prints one table with every figure beside a reference measured in the same
//! run, the ratio, and the target.
//!
//! `cargo run --release -p bench -- [SCENARIO[=SIZE]]... [--quick]`
//!
//! `--help` lists the scenarios with their sizes (see [`SCENARIOS`]); no scenario named runs
//! them all; `--quick` makes every default small.

mod chain_cache;
mod chains;
mod net;
mod report;
mod scenario;
mod watch;

use std::process::ExitCode;

use report::Row;

/// A scenario to run, with its size.
struct Pick {
    name: String,
    size: Option<String>,
}

/// Every scenario, in order: its name, its default size in a full and in a quick run, and what
/// the size counts.
const SCENARIOS: [(&str, &str, &str, &str); 10] = [
    ("hashrate", "2", "0.5", "seconds per measurement"),
    (
        "propagation",
        "3,10,30",
        "3",
        "network sizes (500 blocks each)",
    ),
    ("purchase", "60", "10", "purchases"),
    ("throughput", "6000", "600", "purchases"),
    ("sync", "10000,100000", "1000", "chain lengths"),
    ("restart", "100000", "2000", "blocks in the store"),
    ("tracker", "1000", "100", "simulated nodes"),
    ("memory", "100000", "2000", "blocks"),
    ("shop", "100000", "2000", "blocks in the chain"),
    ("visualizer", "20000", "2000", "empty blocks followed"),
];

/// The default size of scenario `name`, full or quick.
fn default_size(name: &str, quick: bool) -> &'static str {
    SCENARIOS
        .iter()
        .find(|(n, ..)| *n == name)
        .map_or("", |&(_, full, small, _)| if quick { small } else { full })
}

fn usage() -> String {
    let mut out = String::from(
        "usage: cargo run --release -p bench -- [SCENARIO[=SIZE[,SIZE...]]]... [--quick]\n\n\
         Starts real tracker and node processes on loopback and prints one table of figures, each\n\
         beside a reference measured in the same run. No scenario named runs them all.\n\n\
         scenarios (default sizes):\n",
    );
    for (name, full, _, counts) in SCENARIOS {
        out.push_str(&format!("  {:<26}{counts}\n", format!("{name}={full}")));
    }
    out.push_str("  --quick                   small default sizes for every scenario\n\n");
    out.push_str(
        "The million-block rows (minutes each; not in the default run):\n  \
         cargo run --release -p bench -- memory=1000000 restart=1000000 sync=1000000 shop=1000000\n\n\
         Long chains are built once and kept in target/bench-chains (or $BENCH_CHAINS_DIR);\n\
         a damaged file there is rebuilt.",
    );
    out
}

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
        println!("{}", usage());
        return ExitCode::SUCCESS;
    }
    if let Some(bad) = args.iter().find(|a| a.starts_with('-') && *a != "--quick") {
        eprintln!("bench: unknown flag {bad:?}\n{}", usage());
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
        picks = SCENARIOS
            .iter()
            .map(|(name, ..)| Pick {
                name: (*name).into(),
                size: None,
            })
            .collect();
    }
    if let Some(bad) = picks
        .iter()
        .find(|p| default_size(&p.name, false).is_empty())
    {
        eprintln!("bench: unknown scenario {:?}\n{}", bad.name, usage());
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
            "propagation" => {
                scenario::propagation::run(&sizes(&size)?, scenario::propagation::BLOCKS).await?
            }
            "purchase" => scenario::purchase::run(sizes(&size)?[0]).await?,
            "throughput" => scenario::throughput::run(sizes(&size)?[0]).await?,
            "sync" => scenario::sync::run(&sizes(&size)?, &mut chains).await?,
            "restart" => scenario::restart::run(sizes(&size)?[0], &mut chains).await?,
            "tracker" => scenario::tracker::run(sizes(&size)?[0]).await?,
            "memory" => scenario::memory::run(sizes(&size)?[0], &mut chains).await?,
            "shop" => scenario::shop::run(sizes(&size)?[0], &mut chains).await?,
            "visualizer" => scenario::visualizer::run(sizes(&size)?[0], &mut chains).await?,
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
