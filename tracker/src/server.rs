//! The accept loop: takes connections from an already bound listener, caps how many are served
//! at once and how many one address holds (past either cap, the longest-idle connection of the
//! biggest holder is closed to make room: [`daemon::slots`]), runs the sweeper that ages the
//! table, and shuts everything down when told to.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use daemon::slots::SlotTable;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::Config;
use crate::connection;
use crate::registry::{Registry, Shared};

/// How long connection tasks get to finish once shutdown starts. They watch the same token, so
/// they normally end at once; this bounds the wait if one does not.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Serves the tracker on `listener` until `shutdown` is cancelled, then stops accepting, closes
/// every connection and returns. The table starts empty: nodes fill it with their next reports.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let config = Arc::new(config);
    let mut table = Registry::new(&config);
    // No node may advertise the tracker's own address.
    table.own_addr = listener.local_addr().ok();
    let registry: Shared = Arc::new(Mutex::new(table));
    let slots = SlotTable::new(config.max_connections, config.max_connections_per_address);
    let tasks = TaskTracker::new();
    tasks.spawn(sweep(
        registry.clone(),
        sweep_period(&config),
        shutdown.clone(),
    ));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "tracker serving");
    }

    while let Some((stream, peer)) = daemon::accept(&listener, &shutdown).await {
        let slot = slots.admit(peer.ip());
        let span = tracing::debug_span!("connection", %peer);
        let (registry, config, shutdown) = (registry.clone(), config.clone(), shutdown.clone());
        tasks.spawn(connection::serve(stream, registry, config, shutdown, slot).instrument(span));
    }

    drop(listener);
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(left = tasks.len(), "some connections did not close in time");
    }
    tracing::info!("tracker stopped");
    Ok(())
}

/// How often the sweeper ages the table: often enough that status changes are logged close to
/// when they happen, seldom enough to cost nothing.
fn sweep_period(config: &Config) -> Duration {
    (config.silent_after.min(config.forget_after) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Ages the table every `period` (answers age it too), so a silent node is logged as removed and
/// its memory freed even when nobody asks for the topology.
async fn sweep(registry: Shared, period: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {
                let mut table = registry.lock().unwrap_or_else(PoisonError::into_inner);
                table.sweep(Instant::now());
            }
        }
    }
}
