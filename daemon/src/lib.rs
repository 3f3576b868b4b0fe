//! What every daemon's binary (`monkey-tracker`, `monkey-node`, `monkey-visualizer`) does the
//! same way: logs on stderr, the one `listening on` line on stdout that scripts and tests wait
//! for, and a clean stop on Ctrl-C or SIGTERM. Libraries never call these: they take a bound
//! listener and a cancellation token.
//!
//! One thing the three libraries do share: [`slots`], the table of connection slots (a cap per
//! source address, and which idle connection to close when a new one needs room).

pub mod slots;

use std::fmt::Display;
use std::io::Write;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

/// Logs (tracing, filtered by `RUST_LOG`, `info` by default) to stderr.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}

/// Prints `listening on {addr}` on stdout, flushed: scripts and tests wait for this line to know
/// the port, so it must not sit in a buffer.
pub fn announce(addr: impl Display) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}").context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")
}

/// A token cancelled on Ctrl-C or SIGTERM. The handlers are installed before this returns, so a
/// signal sent right after the `listening on` line is already ours, not the default that kills.
/// Call it inside a runtime.
pub fn stop_on_signals() -> anyhow::Result<CancellationToken> {
    let signals = signals()?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        signals.await;
        tracing::info!("shutting down");
        cancel.cancel();
    });
    Ok(token)
}

/// Resolves on Ctrl-C or SIGTERM.
#[cfg(unix)]
fn signals() -> anyhow::Result<impl Future<Output = ()>> {
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
fn signals() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No way to be told to stop: run until killed rather than stop at once.
            std::future::pending::<()>().await;
        }
    })
}
