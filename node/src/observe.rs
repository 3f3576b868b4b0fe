//! What a node tells its subscribers besides blocks and tips (the visualizer draws them): every
//! report interval its CPU load, the difficulty it mines at and its live peers (`U` `status`,
//! from [`run`]), and the records entering and leaving its pending pool (`U` `pool`, from the
//! chain thread through a [`PoolReport`]). The same tick refreshes the load and difficulty in the
//! node's [`Status`], so its report to the tracker is never older than one interval: before,
//! they changed only with the chain, and a busy host went unseen until the next block.

use std::time::Duration;

use protocol::AccountId;
use protocol::difficulty::difficulty_for_load;
use protocol::params::MAX_REPORTED_PEERS;
use protocol::wire::Update;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use protocol::clock::now_ms;

use crate::actor::{Event, Events, Status};
use crate::events::Posted;
use crate::links::Links;
use crate::load::Load;

/// The peers this node has a link with, by id, at most [`MAX_REPORTED_PEERS`] (the lowest ids).
pub fn peers(links: &Links) -> Vec<AccountId> {
    let inner = links.lock();
    let mut ids: Vec<AccountId> = inner
        .outbound
        .keys()
        .chain(inner.inbound.keys())
        .copied()
        .collect();
    drop(inner);
    ids.sort();
    ids.dedup();
    ids.truncate(MAX_REPORTED_PEERS);
    ids
}

/// Load as thousandths, for the wire.
fn permille(load: f32) -> u16 {
    (load.clamp(0.0, 1.0) * 1000.0).round() as u16
}

/// Every `interval` until `cancel`: refreshes the load and difficulty in `status` (which the
/// tracker reports read) and tells subscribers the load, difficulty and peers.
pub async fn run(
    interval: Duration,
    load: Load,
    floor: u32,
    links: Links,
    events: Events,
    status: watch::Sender<Status>,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = load.get();
        let difficulty = difficulty_for_load(floor, now);
        status.send_modify(|s| {
            s.load = now;
            s.difficulty = difficulty;
        });
        let update = Update::Status {
            at_ms: now_ms(),
            load_permille: permille(now),
            difficulty,
            peers: peers(&links),
        };
        // No receiver is no error: nobody subscribes.
        let _ = events.send(Posted::uncounted(Event::notice(update)));
    }
}
