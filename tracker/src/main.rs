//! `monkey-tracker`: parses flags, sets up logging, binds the listener, prints `listening on
//! ADDR` on stdout, and runs the tracker until Ctrl-C or SIGTERM.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
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
}

impl Args {
    /// The validated tracker configuration.
    fn config(&self) -> anyhow::Result<Config> {
        let config = Config {
            silent_after: Duration::from_millis(self.silent_after_ms),
            forget_after: Duration::from_millis(self.forget_after_ms),
            max_connections: self.max_connections,
            first_message_timeout: Duration::from_millis(self.first_message_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_nodes: self.max_nodes,
            max_clock_skew: Duration::from_millis(self.max_clock_skew_ms),
            max_new_ids_per_minute: self.max_new_ids_per_minute,
        };
        config.validate().context("invalid configuration")?;
        Ok(config)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monkey-tracker: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn serve(args: Args) -> anyhow::Result<()> {
    let config = args.config()?;
    let signals = shutdown_signals()?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    {
        // Scripts and tests wait for this line to know the port; it must not sit in a buffer.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {addr}").context("cannot write to stdout")?;
        stdout.flush().context("cannot write to stdout")?;
    }
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        signals.await;
        tracing::info!("shutting down");
        cancel.cancel();
    });
    tracker::run(config, listener, shutdown).await
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed before this returns, so a signal
/// sent right after the `listening on` line is already ours, not the default that kills.
#[cfg(unix)]
fn shutdown_signals() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signals() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No way to be told to stop: run until killed rather than stop at once.
            std::future::pending::<()>().await;
        }
    })
}
