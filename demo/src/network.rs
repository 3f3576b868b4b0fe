//! The daemons of the demo network, as tasks of this process: the tracker, the nodes and the
//! visualizer, each the same library `run` its own binary calls, on a listener bound here.
//!
//! They stop in order: the visualizer and the nodes first (each node tells the tracker it is
//! leaving, stops mining and lets its chain thread finish its last store write), the tracker
//! last, so the nodes' goodbyes find it there.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use node::Node;
use protocol::AccountId;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::folder::Folder;

/// Where the tracker listens unless told otherwise: the address every tool defaults to.
pub const TRACKER_ADDR: &str = "127.0.0.1:7070";
/// Where the visualizer listens unless told otherwise.
pub const VISUALIZER_ADDR: &str = "127.0.0.1:8080";
/// How long the whole network may take to stop. Each library bounds its own shutdown to about
/// two seconds; this only matters if one of them hangs.
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// How long to wait for the tracker to list every node before the shop starts anyway.
const READY_LIMIT: Duration = Duration::from_secs(10);

/// What the network is made of.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How many nodes.
    pub nodes: usize,
    /// The network's difficulty floor.
    pub difficulty_floor: u32,
    /// The tracker's address when given, else [`TRACKER_ADDR`] or any free port.
    pub tracker_listen: Option<String>,
    /// The visualizer's address when given, else [`VISUALIZER_ADDR`] or any free port.
    pub visualizer_listen: Option<String>,
}

/// One running node, as the banner shows it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its key's account id.
    pub id: AccountId,
    /// Its data dir.
    pub dir: PathBuf,
}

/// A daemon task with its name.
struct Daemon {
    name: String,
    task: JoinHandle<anyhow::Result<()>>,
}

/// The running network.
pub struct Network {
    /// The tracker's address.
    pub tracker: SocketAddr,
    /// Whether the tracker is on a free port because the default one was taken.
    pub tracker_moved: bool,
    /// The visualizer's address.
    pub visualizer: SocketAddr,
    /// Whether the visualizer is on a free port because the default one was taken.
    pub visualizer_moved: bool,
    /// The nodes, in order.
    pub nodes: Vec<NodeInfo>,
    /// Mining threads per node.
    pub threads: usize,
    /// Stops the nodes and the visualizer.
    front: CancellationToken,
    /// Stops the tracker.
    back: CancellationToken,
    /// Cancelled when a daemon ends before it was told to.
    failed: CancellationToken,
    front_tasks: Vec<Daemon>,
    back_task: Daemon,
}

/// Binds `flag`'s address; without one, `default`, or a free loopback port when `default` is
/// taken (the second result says so).
async fn bind(
    flag: Option<&str>,
    default: &str,
    what: &str,
) -> anyhow::Result<(TcpListener, bool)> {
    if let Some(addr) = flag {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("the {what} cannot listen on {addr}"))?;
        return Ok((listener, false));
    }
    match TcpListener::bind(default).await {
        Ok(listener) => Ok((listener, false)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .with_context(|| format!("the {what} cannot listen on a free port"))?;
            Ok((listener, true))
        }
        Err(e) => Err(e).with_context(|| format!("the {what} cannot listen on {default}")),
    }
}

fn local_addr(listener: &TcpListener) -> anyhow::Result<SocketAddr> {
    listener
        .local_addr()
        .context("cannot read a listener's address")
}

/// Runs `run` as a task that cancels `failed` if it ends before `stop` was cancelled: a daemon
/// that dies leaves the demo pointless, so the demo stops rather than limp on.
fn spawn(
    name: String,
    span: tracing::Span,
    stop: CancellationToken,
    failed: CancellationToken,
    run: impl Future<Output = anyhow::Result<()>> + Send + 'static,
) -> Daemon {
    let label = name.clone();
    let task = tokio::spawn(
        async move {
            let result = run.await.with_context(|| format!("the {label} failed"));
            if stop.is_cancelled() {
                return result;
            }
            let result = result.and_then(|()| Err(anyhow!("the {label} stopped by itself")));
            if let Err(e) = &result {
                tracing::error!(error = %format!("{e:#}"), "a daemon ended early");
            }
            failed.cancel();
            result
        }
        .instrument(span),
    );
    Daemon { name, task }
}

impl Network {
    /// Binds every listener and opens every node's store, then starts them all; nothing runs
    /// until everything could be set up, so an error here leaves nothing to stop.
    pub async fn start(plan: &Plan, folder: &Folder) -> anyhow::Result<Network> {
        let (tracker_listener, tracker_moved) =
            bind(plan.tracker_listen.as_deref(), TRACKER_ADDR, "tracker").await?;
        let tracker = local_addr(&tracker_listener)?;
        let (visualizer_listener, visualizer_moved) = bind(
            plan.visualizer_listen.as_deref(),
            VISUALIZER_ADDR,
            "visualizer",
        )
        .await?;
        let visualizer = local_addr(&visualizer_listener)?;
        // The nodes share the cores: more mining threads than cores would only take turns.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cores / plan.nodes).max(1);
        let mut nodes = Vec::new();
        for n in 1..=plan.nodes {
            let dir = folder.node_dir(n);
            let config = node::Config {
                tracker: tracker.to_string(),
                advertise: None,
                data_dir: dir.clone(),
                threads,
                difficulty_floor: plan.difficulty_floor,
                max_peers: 8,
                peer_rotation: node::peers::PEER_ROTATION,
                report_interval: Duration::from_secs(1),
                refuse_peers_file: None,
                idle_timeout: node::conn::IDLE_TIMEOUT,
                max_event_bytes: node::actor::MAX_EVENT_BYTES,
            };
            let span = tracing::info_span!("node", n);
            // Loading checks the stored chain on every core: not a job for an async worker.
            let opened = tokio::task::spawn_blocking({
                let span = span.clone();
                move || span.in_scope(|| Node::open(config))
            })
            .await
            .context("the thread opening a node failed")?
            .with_context(|| format!("cannot open node {n} in {}", dir.display()))?;
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .with_context(|| format!("node {n} cannot listen on a free port"))?;
            let info = NodeInfo {
                addr: local_addr(&listener)?,
                id: opened.id(),
                dir,
            };
            nodes.push((opened, listener, info, span));
        }

        let (front, back, failed) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let back_task = spawn(
            "tracker".into(),
            tracing::info_span!("tracker"),
            back.clone(),
            failed.clone(),
            tracker::run(tracker::Config::default(), tracker_listener, back.clone()),
        );
        let mut front_tasks = Vec::new();
        let mut infos = Vec::new();
        for (n, (opened, listener, info, span)) in nodes.into_iter().enumerate() {
            front_tasks.push(spawn(
                format!("node {}", n + 1),
                span,
                front.clone(),
                failed.clone(),
                opened.run(listener, front.clone()),
            ));
            infos.push(info);
        }
        let config = visualizer::Config {
            tracker: tracker.to_string(),
            difficulty_floor: plan.difficulty_floor,
            ..visualizer::Config::default()
        };
        front_tasks.push(spawn(
            "visualizer".into(),
            tracing::info_span!("visualizer"),
            front.clone(),
            failed.clone(),
            visualizer::run(config, visualizer_listener, front.clone()),
        ));
        tracing::info!(%tracker, %visualizer, nodes = infos.len(), "the demo network started");
        Ok(Network {
            tracker,
            tracker_moved,
            visualizer,
            visualizer_moved,
            nodes: infos,
            threads,
            front,
            back,
            failed,
            front_tasks,
            back_task,
        })
    }

    /// Waits until the tracker lists every node as active, so the shop's first look finds them;
    /// after [`READY_LIMIT`] the shop starts anyway (it says so itself if no node answers).
    pub async fn ready(&self) -> bool {
        let deadline = Instant::now() + READY_LIMIT;
        let tracker = self.tracker.to_string();
        while Instant::now() < deadline {
            if let Ok(topology) = tracker::client::query(&tracker, Duration::from_secs(1)).await {
                let active: Vec<_> = topology.active().map(|n| n.id).collect();
                if self.nodes.iter().all(|n| active.contains(&n.id)) {
                    return true;
                }
            }
            // A poll, not a wait for something we could be told about: the tracker pushes
            // nothing to clients that only ask.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Resolves when a daemon ended before it was told to stop.
    pub fn failed(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.failed.clone().cancelled_owned()
    }

    /// Stops the network: nodes and visualizer, then the tracker. Returns the first daemon's
    /// error, if any; a daemon that does not stop in time is an error too.
    pub async fn stop(self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STOP_LIMIT;
        tracing::info!("stopping the demo network");
        self.front.cancel();
        let mut errors = Vec::new();
        for daemon in self.front_tasks {
            errors.extend(finish(daemon, deadline).await.err());
        }
        self.back.cancel();
        errors.extend(finish(self.back_task, deadline).await.err());
        tracing::info!(errors = errors.len(), "the demo network stopped");
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Waits for one daemon until `deadline`.
async fn finish(daemon: Daemon, deadline: Instant) -> anyhow::Result<()> {
    match tokio::time::timeout_at(deadline, daemon.task).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(anyhow!("the {} crashed: {e}", daemon.name)),
        Err(_) => Err(anyhow!("the {} did not stop in time", daemon.name)),
    }
}
