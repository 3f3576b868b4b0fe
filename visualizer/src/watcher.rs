//! Watching the tracker: asks it for the topology every interval, hands each answer to the hub,
//! and keeps one follower per active node.
//!
//! A node the tracker marks removed (`R`) is dropped at once. A node that is simply missing from
//! the list is dropped only after [`ABSENT_GRACE`]: a restarted tracker starts with an empty
//! table and relearns every node from its next report a second later, and the page should not
//! lose its nodes for that. While the tracker does not answer at all, every follower carries on:
//! the nodes are still there, and each follower reconnects on its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::AccountId;
use protocol::tracker::{NodeStatus, Topology};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::follower;
use crate::hub::{Command, Hub};

/// How long a node may be missing from the tracker's answers before it is no longer followed.
pub const ABSENT_GRACE: Duration = Duration::from_secs(5);

/// A follower the watcher started.
struct Followed {
    addr: String,
    cancel: CancellationToken,
    /// When the tracker's answers stopped listing it.
    absent_since: Option<Instant>,
}

/// The followers, by node.
struct Followers {
    hub: Hub,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    by_node: HashMap<AccountId, Followed>,
    next_session: u64,
}

impl Followers {
    fn start(&mut self, node: AccountId, addr: &str) {
        self.stop(&node);
        self.next_session += 1;
        let cancel = self.shutdown.child_token();
        tracing::info!(node = %node.short(), %addr, "following a node");
        self.tasks.spawn(follower::follow(
            node,
            addr.to_string(),
            self.next_session,
            self.hub.clone(),
            cancel.clone(),
        ));
        self.by_node.insert(
            node,
            Followed {
                addr: addr.to_string(),
                cancel,
                absent_since: None,
            },
        );
    }

    fn stop(&mut self, node: &AccountId) {
        if let Some(followed) = self.by_node.remove(node) {
            tracing::info!(node = %node.short(), addr = %followed.addr, "no longer following a node");
            followed.cancel.cancel();
        }
    }

    /// Starts, keeps or stops followers to match one answer of the tracker.
    fn update(&mut self, topology: &Topology, now: Instant) {
        for info in &topology.nodes {
            match (info.status, self.by_node.get_mut(&info.id)) {
                (NodeStatus::A, Some(followed)) if followed.addr == info.addr => {
                    followed.absent_since = None;
                }
                // New, or back at another address.
                (NodeStatus::A, _) => self.start(info.id, &info.addr),
                (NodeStatus::R, _) => self.stop(&info.id),
            }
        }
        let expired: Vec<AccountId> = self
            .by_node
            .iter_mut()
            .filter(|(id, _)| !topology.nodes.iter().any(|n| n.id == **id))
            .filter_map(|(id, followed)| {
                let since = *followed.absent_since.get_or_insert(now);
                (now.duration_since(since) >= ABSENT_GRACE).then_some(*id)
            })
            .collect();
        for id in expired {
            self.stop(&id);
        }
    }
}

/// Asks the tracker every `config.tracker_interval` until `shutdown`, keeping the followers (on
/// `tasks`) and the hub up to date.
pub async fn watch(config: Arc<Config>, hub: Hub, tasks: TaskTracker, shutdown: CancellationToken) {
    let mut followers = Followers {
        hub: hub.clone(),
        tasks,
        shutdown: shutdown.clone(),
        by_node: HashMap::new(),
        next_session: 0,
    };
    let mut ticks = tokio::time::interval(config.tracker_interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let timeout = config.tracker_interval.max(Duration::from_secs(2));
    let mut up = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let answer = tokio::select! {
            () = shutdown.cancelled() => break,
            answer = tracker::client::query(&config.tracker, timeout) => answer,
        };
        let topology = match answer {
            Ok(topology) => {
                if up != Some(true) {
                    tracing::info!(tracker = %config.tracker, nodes = topology.nodes.len(), "tracker answers");
                }
                up = Some(true);
                followers.update(&topology, Instant::now());
                Some(topology)
            }
            Err(error) => {
                if up != Some(false) {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "tracker does not answer; following the nodes already known"
                    );
                }
                up = Some(false);
                None
            }
        };
        if !hub.send(Command::Topology(topology)).await {
            break;
        }
    }
    for (_, followed) in followers.by_node.drain() {
        followed.cancel.cancel();
    }
}
