//! What a subscriber (a connection that sent `S`: the visualizer, the bench's watchers) is
//! sent: a `U tip` with the current tip at once and its pool listing, then a `U` for every event the actor
//! broadcasts that it cares about. A new kind of update is a new [`Event`] variant, a new
//! `Update` variant in `protocol::wire`, and one arm in [`updates`].

use protocol::CheckedBlock;
use protocol::wire::Update;

use super::{Action, Pending, Question, Role, Session};
use crate::actor::Event;

impl Session {
    /// `S`: the connection becomes a subscriber; its first `U` is the tip, asked for now.
    pub(super) fn on_subscribe(&mut self) -> Vec<Action> {
        self.role = Role::Subscriber;
        self.ask(Pending::Tip, Question::Tip)
    }
}

/// The `U tip` a new subscriber starts with.
pub fn tip(tip: &CheckedBlock) -> Update {
    Update::Tip {
        hash: tip.hash(),
        height: tip.header.height,
        disconnected: Vec::new(),
        connected: Vec::new(),
    }
}

/// The updates an event makes for a subscriber, in order: a `U block` for every block that
/// entered the tree (any branch, parents first), a `U tip` for every move of the best tip.
pub fn updates(event: &Event) -> Vec<Update> {
    match event {
        Event::Blocks {
            blocks,
            received_ms,
            ..
        } => blocks
            .iter()
            .map(|b| Update::Block {
                block: b.block.block().clone(),
                received_ms: *received_ms,
            })
            .collect(),
        Event::Tip {
            tip,
            disconnected,
            connected,
            ..
        } => vec![Update::Tip {
            hash: tip.hash(),
            height: tip.header.height,
            disconnected: disconnected.iter().map(|b| b.hash()).collect(),
            connected: connected.iter().map(|b| b.hash()).collect(),
        }],
        // The node's load, peers and pool (see `crate::observe`).
        Event::Notice(update) => vec![Update::clone(update)],
        // Records are for peers.
        Event::Record { .. } => Vec::new(),
    }
}
