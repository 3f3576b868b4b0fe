//! `monkey-visualizer`: its flags. `daemon::main` does the rest: logging, the listener, the
//! `listening on http://ADDR` line, and running the visualizer until Ctrl-C or SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use daemon::Show;
use visualizer::Config;

/// The Monkeychain visualizer: shows the network's chain growing in a browser.
#[derive(Debug, Parser)]
#[command(name = "monkey-visualizer", version, about)]
struct Args {
    /// The tracker's address, `host:port`.
    #[arg(
        long,
        env = "MONKEY_VISUALIZER_TRACKER",
        default_value = "127.0.0.1:7070"
    )]
    tracker: String,
    /// Address to serve the page on, `host:port`; port 0 picks a free one (printed on stdout).
    #[arg(
        long,
        env = "MONKEY_VISUALIZER_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    listen: String,
    /// Milliseconds between questions to the tracker.
    #[arg(
        long,
        env = "MONKEY_VISUALIZER_TRACKER_INTERVAL_MS",
        default_value_t = 1_000
    )]
    tracker_interval_ms: u64,
    /// Most browsers connected at once.
    #[arg(long, env = "MONKEY_VISUALIZER_MAX_BROWSERS", default_value_t = 256)]
    max_browsers: usize,
    /// Most browsers from one address (one more closes that address's longest-idle one).
    #[arg(
        long,
        env = "MONKEY_VISUALIZER_MAX_BROWSERS_PER_ADDRESS",
        default_value_t = 16
    )]
    max_browsers_per_address: usize,
    /// Milliseconds a browser may stay silent (it is pinged halfway; browsers answer by
    /// themselves) before its websocket is closed.
    #[arg(
        long,
        env = "MONKEY_VISUALIZER_IDLE_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    idle_timeout_ms: u64,
    /// The network's difficulty floor, as its nodes' `--difficulty-floor`: blocks below it are
    /// refused and the node that sent them is shown as misbehaving.
    #[arg(long, env = "MONKEY_VISUALIZER_DIFFICULTY_FLOOR", default_value_t = protocol::params::DEFAULT_DIFFICULTY_FLOOR)]
    difficulty_floor: u32,
}

impl Args {
    /// The validated configuration.
    fn config(&self) -> anyhow::Result<Config> {
        let config = Config {
            tracker: self.tracker.clone(),
            tracker_interval: Duration::from_millis(self.tracker_interval_ms),
            max_browsers: self.max_browsers,
            max_browsers_per_address: self.max_browsers_per_address,
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            difficulty_floor: self.difficulty_floor,
        };
        config.validate().context("invalid configuration")?;
        Ok(config)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    daemon::main(
        "monkey-visualizer",
        &args.listen,
        Show::Url,
        || args.config(),
        visualizer::run,
    )
}
