//! `monkey-visualizer`: parses flags, sets up logging, binds the listener, prints `listening on
//! http://ADDR` on stdout, and runs the visualizer until Ctrl-C or SIGTERM.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
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
}

impl Args {
    /// The validated configuration.
    fn config(&self) -> anyhow::Result<Config> {
        let config = Config {
            tracker: self.tracker.clone(),
            tracker_interval: Duration::from_millis(self.tracker_interval_ms),
            max_browsers: self.max_browsers,
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
            eprintln!("monkey-visualizer: error: {e:#}");
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
        writeln!(stdout, "listening on http://{addr}").context("cannot write to stdout")?;
        stdout.flush().context("cannot write to stdout")?;
    }
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        signals.await;
        tracing::info!("shutting down");
        cancel.cancel();
    });
    visualizer::run(config, listener, shutdown).await
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed before this returns, so a signal
/// sent right after the `listening on` line is already ours.
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
            std::future::pending::<()>().await;
        }
    })
}
