//! `monkey-tracker`: its flags. `daemon::main` does the rest: logging, the listener, the
//! `listening on ADDR` line, and running the tracker until Ctrl-C or SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use daemon::Show;
use tracker::Config;

/// The Monkeychain tracker: nodes report to it, shops and the visualizer ask it who is there.
#[derive(Debug, Parser)]
#[command(name = "monkey-tracker", version, about)]
struct Args {
    /// Address to listen on, `host:port`; port 0 picks a free one (printed on stdout).
    #[arg(long, env = "MONKEY_TRACKER_LISTEN", default_value = "127.0.0.1:7070")]
    listen: String,
    /// Milliseconds without a report after which a node is marked removed.
    #[arg(long, env = "MONKEY_TRACKER_SILENT_AFTER_MS", default_value_t = 5_000)]
    silent_after_ms: u64,
    /// Milliseconds a removed node stays listed before it is forgotten.
    #[arg(long, env = "MONKEY_TRACKER_FORGET_AFTER_MS", default_value_t = 60_000)]
    forget_after_ms: u64,
    /// Most connections served at once.
    #[arg(long, env = "MONKEY_TRACKER_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Most connections from one source address (one more closes that address's longest-idle
    /// connection).
    #[arg(
        long,
        env = "MONKEY_TRACKER_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 256
    )]
    max_connections_per_address: usize,
    /// Most nodes remembered; reports from new nodes beyond this are refused.
    #[arg(long, env = "MONKEY_TRACKER_MAX_NODES", default_value_t = 4096)]
    max_nodes: usize,
    /// Milliseconds a new connection has to send its first message.
    #[arg(
        long,
        env = "MONKEY_TRACKER_FIRST_MESSAGE_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    first_message_timeout_ms: u64,
    /// Milliseconds of silence after which a connection is closed.
    #[arg(long, env = "MONKEY_TRACKER_IDLE_TIMEOUT_MS", default_value_t = 15_000)]
    idle_timeout_ms: u64,
    /// Milliseconds a signed timestamp may be away from the tracker's clock.
    #[arg(
        long,
        env = "MONKEY_TRACKER_MAX_CLOCK_SKEW_MS",
        default_value_t = 300_000
    )]
    max_clock_skew_ms: u64,
    /// New node ids one source address may bring per minute (a whole class on one machine
    /// fits; a flood of fake registrations does not).
    #[arg(
        long,
        env = "MONKEY_TRACKER_MAX_NEW_IDS_PER_MINUTE",
        default_value_t = 256
    )]
    max_new_ids_per_minute: u32,
    /// Most node ids reporting from one source address at once (a whole class's demo on one
    /// machine fits; a host making up ids by the hundred does not).
    #[arg(
        long,
        env = "MONKEY_TRACKER_MAX_ACTIVE_PER_ADDRESS",
        default_value_t = 32
    )]
    max_active_per_address: usize,
}

impl Args {
    /// The validated tracker configuration.
    fn config(&self) -> anyhow::Result<Config> {
        let config = Config {
            silent_after: Duration::from_millis(self.silent_after_ms),
            forget_after: Duration::from_millis(self.forget_after_ms),
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            first_message_timeout: Duration::from_millis(self.first_message_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_nodes: self.max_nodes,
            max_clock_skew: Duration::from_millis(self.max_clock_skew_ms),
            max_new_ids_per_minute: self.max_new_ids_per_minute,
            max_active_per_address: self.max_active_per_address,
            ..Config::default()
        };
        config.validate().context("invalid configuration")?;
        Ok(config)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    daemon::main(
        "monkey-tracker",
        &args.listen,
        Show::Address,
        || args.config(),
        tracker::run,
    )
}
