//! What every daemon's binary (`monkey-tracker`, `monkey-node`, `monkey-visualizer`) does the
//! same way, in one entry point, [`main`]: logs on stderr, the one `listening on` line on stdout
//! that scripts and tests wait for, a clean stop on Ctrl-C or SIGTERM, and `NAME: error: …` with
//! exit code 1 when it cannot run. Libraries never call these: they take a bound listener and a
//! cancellation token (the demo runs all three libraries in one process that way).
//!
//! What the three libraries do share: [`accept`], an accept loop's step that survives a failed
//! accept, and [`slots`], the table of connection slots (a cap per source address, and which
//! idle connection to close when a new one needs room).

pub mod slots;

use std::fmt::Display;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The pause after a failed accept (out of file descriptors, usually), so a loop does not spin.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a stopped daemon waits for connections still closing before the process exits:
/// they watch the same token and normally end at once; one that does not must not hold the
/// process.
pub const EXIT_GRACE: Duration = Duration::from_millis(200);

/// How a daemon's `listening on` line shows its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// `host:port`, for daemons other programs dial.
    Address,
    /// `http://host:port`, for a daemon a person opens in a browser.
    Url,
}

/// The whole `main` of a daemon's binary: sets up logging, runs `open` (flags checked, files
/// opened: nothing listens yet, so a bad flag holds no port), then in a runtime installs the
/// signal handlers, binds `listen`, prints the `listening on` line and runs `serve` until a
/// signal cancels its token. Any error is printed as `NAME: error: …` and exits with 1.
pub fn main<S, F>(
    name: &str,
    listen: &str,
    show: Show,
    open: impl FnOnce() -> anyhow::Result<S>,
    serve: impl FnOnce(S, TcpListener, CancellationToken) -> F,
) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    init_logging();
    match run(listen, show, open, serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run<S, F>(
    listen: &str,
    show: Show,
    open: impl FnOnce() -> anyhow::Result<S>,
    serve: impl FnOnce(S, TcpListener, CancellationToken) -> F,
) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    let opened = open()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = stop_on_signals()?;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener
            .local_addr()
            .context("cannot read the bound address")?;
        match show {
            Show::Address => announce(addr)?,
            Show::Url => announce(format_args!("http://{addr}"))?,
        }
        serve(opened, listener, shutdown).await
    })?;
    runtime.shutdown_timeout(EXIT_GRACE);
    Ok(())
}

/// The next connection on `listener`, or `None` once `stop` is cancelled. A failed accept is
/// logged and retried after [`ACCEPT_BACKOFF`]: it is the server's trouble, not the client's,
/// and the server serves on.
pub async fn accept(
    listener: &TcpListener,
    stop: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(pair) => return Some(pair),
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
}

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
    let signals = signals(Hangup::Default)?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = signals.await;
        tracing::info!(signal = name, "shutting down");
        cancel.cancel();
    });
    Ok(token)
}

/// What SIGHUP (the terminal closed) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hangup {
    /// Left alone: the default action ends the process, and a daemon started under `nohup`
    /// keeps running.
    Default,
    /// Caught like SIGTERM, for a program that owns its terminal and must restore it first.
    Stop,
}

/// Resolves with the signal's name on Ctrl-C or SIGTERM (and SIGHUP with [`Hangup::Stop`]).
/// The handlers are installed before this returns; call it inside a runtime.
#[cfg(unix)]
pub fn signals(hangup: Hangup) -> anyhow::Result<impl Future<Output = &'static str> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut hangup = match hangup {
        Hangup::Stop => Some(signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?),
        Hangup::Default => None,
    };
    Ok(async move {
        let hung_up = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
            _ = hung_up => "SIGHUP",
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn signals(_hangup: Hangup) -> anyhow::Result<impl Future<Output = &'static str> + Send> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No way to be told to stop: run until killed rather than stop at once.
            std::future::pending::<()>().await;
        }
        "Ctrl-C"
    })
}
