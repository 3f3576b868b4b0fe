//! `B`, `C` and `D`, which anyone may send: blocks are imported and a provably invalid one
//! closes the connection; an orphan, or a `C` that says more follow, is answered with our own
//! `D`; a `D` is answered with a `C` that fits [`C_LINE_BUDGET`], and on a new peer link,
//! followed once by our own `D` (each side asks for what it lacks). Our `D`s are not repeated
//! while one is unanswered, for [`SYNC_RETRY`]: orphans arriving in a burst ask once.

use std::sync::Arc;
use std::time::Instant;

use protocol::codec::MAX_LINE;
use protocol::params::MAX_LOCATOR;
use protocol::wire::{Blocks, ErrorCode, GetBlocks, Message};
use protocol::{Block, BlockError, BlockHash, CheckedBlock};

use super::timers::SYNC_RETRY;
use super::{Action, Closing, Pending, Question, Role, Session, error};
use crate::actor::BlocksOutcome;

/// Most bytes of block JSON in one `C` line: half of [`MAX_LINE`], so any answer fits.
pub const C_LINE_BUDGET: usize = MAX_LINE / 2;

/// Where our own chain requests stand.
#[derive(Debug, Default)]
pub struct Requests {
    /// When our last unanswered `D` went out.
    pending: Option<Instant>,
    /// Whether we ever sent a `D` on this connection.
    sent_locator: bool,
}

impl Session {
    /// `B` (`relay`) or `C`: imported; `more_after` is the last block of a `C` that said more
    /// follow.
    pub(super) fn on_blocks(
        &mut self,
        blocks: Vec<Block>,
        relay: bool,
        more_after: Option<BlockHash>,
    ) -> Vec<Action> {
        self.ask(
            Pending::Import { more_after },
            Question::Import { blocks, relay },
        )
    }

    /// `C`: the answer to our `D`, so another may go out.
    pub(super) fn on_chain(&mut self, blocks: Vec<Block>, more: bool) -> Vec<Action> {
        self.sync.pending = None;
        let last = blocks.last().map(|b| b.header.hash());
        self.on_blocks(blocks, false, last.filter(|_| more))
    }

    /// What became of blocks a connection sent.
    pub(super) fn imported(
        &mut self,
        outcome: BlocksOutcome,
        more_after: Option<BlockHash>,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(invalid) = outcome.invalid {
            actions.push(error(ErrorCode::InvalidBlock, &invalid));
            // A block from the future may become valid; anything else is provably invalid.
            if !matches!(invalid, BlockError::FutureTimestamp { .. }) {
                actions.push(Action::Ban(invalid.to_string()));
                actions.push(Action::Close(Closing::InvalidBlock(invalid)));
                return actions;
            }
            tracing::debug!(conn = self.id, error = %invalid, "block from the future");
        }
        if outcome.orphan.is_some() {
            actions.extend(self.ask_locator(None, now));
        } else if more_after.is_some() {
            actions.extend(self.ask_locator(more_after, now));
        }
        actions
    }

    /// `D` answered: `C`, then on a new peer link our own `D`.
    pub(super) fn chain_answered(
        &mut self,
        blocks: &[Arc<CheckedBlock>],
        more: bool,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = vec![Action::Send(blocks_message(blocks, more))];
        if self.role == Role::Peer && !self.sync.sent_locator {
            // Each side of a new link asks for what it lacks.
            actions.extend(self.ask_locator(None, now));
        }
        actions
    }

    /// Asks for our locator, to send a `D`; after a `C` with more to come, the last block
    /// received goes first (`after`), so the answer continues right after it whichever branch
    /// it was on. Nothing when a `D` is unanswered since less than [`SYNC_RETRY`].
    pub(super) fn ask_locator(&mut self, after: Option<BlockHash>, now: Instant) -> Vec<Action> {
        if after.is_none()
            && self
                .sync
                .pending
                .is_some_and(|sent| now.saturating_duration_since(sent) < SYNC_RETRY)
        {
            // The answer to the last one is on its way; it will say if more is needed.
            return Vec::new();
        }
        self.sync.pending = Some(now);
        self.ask(Pending::Locator { after }, Question::Locator)
    }

    /// Our locator: the `D` to send.
    pub(super) fn locator_answered(
        &mut self,
        after: Option<BlockHash>,
        mut locator: Vec<BlockHash>,
    ) -> Vec<Action> {
        if let Some(hash) = after {
            locator.insert(0, hash);
            locator.truncate(MAX_LOCATOR);
        }
        self.sync.sent_locator = true;
        vec![Action::Send(Message::GetBlocks(GetBlocks { locator }))]
    }

    /// A periodic `D` on a quiet peer link: it forgets any unanswered one first.
    pub(super) fn sync_due(&mut self, now: Instant) -> Vec<Action> {
        self.sync.pending = None;
        self.ask_locator(None, now)
    }
}

/// A `C` message with as many of `blocks` as fit in [`C_LINE_BUDGET`]; `more` is set when any
/// were left out.
pub fn blocks_message(blocks: &[Arc<CheckedBlock>], more: bool) -> Message {
    let mut budget = C_LINE_BUDGET;
    let mut out = Vec::with_capacity(blocks.len());
    for block in blocks {
        let size = serde_json::to_vec(block.block()).map_or(usize::MAX, |v| v.len() + 1);
        if size > budget {
            break;
        }
        budget -= size;
        out.push(block.block().clone());
    }
    let more = more || out.len() < blocks.len();
    Message::Blocks(Blocks { blocks: out, more })
}
