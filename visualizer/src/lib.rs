//! monkey-visualizer: follows every node of a Monkeychain network and shows its chain growing
//! in a browser.
//!
//! The visualizer learns the nodes from the tracker ([`watcher`]) and keeps one connection per
//! active node ([`follower`]): it subscribes with `S`, catches up with `D`, then receives every
//! new block and tip move as a `U` update. Every block is checked against the network's floor
//! and its signatures verified by the follower ([`verify`]; a node that sends an invalid block is
//! dropped and shown as misbehaving), then goes into one block tree owned by the [`hub`] thread
//! ([`state`]), which turns each change into small deltas for the browsers. The web server
//! ([`http`]) serves the page compiled into the binary ([`assets`]), block details, and a
//! websocket per browser ([`browser`]) that carries a snapshot and then the deltas ([`view`]
//! defines every message).
//!
//! [`run`] serves an already bound listener until its token is cancelled, which is what lets a
//! test start a whole visualizer on port 0.

pub mod assets;
pub mod browser;
mod config;
pub mod follower;
pub mod history;
pub mod http;
pub mod hub;
pub mod observed;
pub mod state;
pub mod verify;
pub mod view;
pub mod watcher;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use daemon::slots::SlotTable;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Config, ConfigError};

use crate::hub::Hub;

/// How long followers and the watcher get to finish once shutdown starts. They watch the same
/// token, so they normally end at once; this bounds the wait if one does not.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serves the visualizer on `listener` until `shutdown` is cancelled: follows the tracker's
/// nodes, serves the page and streams the chain to every browser. Then it closes every
/// connection and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let config = Arc::new(config);
    let params = protocol::Params::with_floor(config.difficulty_floor);
    let (hub, hub_thread) =
        Hub::spawn(&config.tracker, params.clone()).context("cannot start the hub thread")?;
    let history = Arc::new(history::History::new(hub.clone(), params));
    let tasks = TaskTracker::new();
    tasks.spawn(watcher::watch(
        Arc::clone(&config),
        hub.clone(),
        tasks.clone(),
        shutdown.clone(),
    ));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, tracker = %config.tracker, "visualizer serving");
    }
    let browsers = SlotTable::new(config.max_browsers, config.max_browsers_per_address);
    let routes = http::routes(
        hub,
        history,
        browsers,
        config.idle_timeout,
        shutdown.clone(),
    );
    warp::serve(routes)
        .incoming(listener)
        .graceful(shutdown.clone().cancelled_owned())
        .run()
        .await;
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some followers did not stop in time");
    }
    // Every handle is gone with the routes and the tasks, so the hub's loop ends by itself.
    for _ in 0..100 {
        if hub_thread.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
