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
use protocol::{Block, BlockHash, CheckedBlock};

use super::timers::SYNC_RETRY;
use super::{Action, Closing, Pending, Question, Role, Session, error};
use crate::actor::BlocksOutcome;

/// Most bytes of block JSON, or of packed blocks in base64, in one `C` line: half of
/// [`MAX_LINE`], so any answer fits.
pub const C_LINE_BUDGET: usize = MAX_LINE / 2;

/// Batch ends a sync's next `D` names after the last block received: a peer that reorged
/// away the last batch's branch finds the fork among them (a reorg is at most
/// `MAX_REORG_DEPTH` blocks, two batches of 500), not at our tip from before the sync.
const RECENT_BATCH_ENDS: usize = 4;

/// Where our own chain requests stand.
#[derive(Debug, Default)]
pub struct Requests {
    /// When our last unanswered `D` went out.
    pending: Option<Instant>,
    /// The locator the chain actor gave for our last `D` from its own tip, `None` before the
    /// first: a sync's next `D` falls back on it after the batch ends below.
    base: Option<Vec<BlockHash>>,
    /// The last blocks of the latest batches with more to follow, newest first.
    batch_ends: std::collections::VecDeque<BlockHash>,
    /// When an empty `C` that said more follow last made us ask again.
    empty_retry: Option<Instant>,
}

impl Session {
    /// `B` (`relay`) or `C`: imported.
    pub(super) fn on_blocks(&mut self, blocks: Vec<Block>, relay: bool) -> Vec<Action> {
        self.ask(Pending::Import, Question::Import { blocks, relay })
    }

    /// `C`: the answer to our `D`. When more follow, the next `D` goes out before this batch
    /// is imported: the peer reads and sends the next batch while this one is checked, instead
    /// of both sides taking turns (a sync of a million blocks is 2,000 batches). At most one
    /// batch waits unread meanwhile, since the next `D` is sent only when a `C` is read.
    pub(super) fn on_chain(&mut self, blocks: Vec<Block>, more: bool, now: Instant) -> Vec<Action> {
        self.sync.pending = None;
        let Some(last) = blocks.last().map(|b| b.header.hash()) else {
            // Nothing to import. An empty batch that says more follow is asked again from our
            // own locator rather than taken for the end, once per [`SYNC_RETRY`]: a flood of
            // empty `C`s costs one locator per period, not one per line.
            let due = |at: Instant| now.saturating_duration_since(at) >= SYNC_RETRY;
            if !more || !self.sync.empty_retry.is_none_or(due) {
                return Vec::new();
            }
            self.sync.empty_retry = Some(now);
            return self.ask_locator(now);
        };
        let mut actions = Vec::new();
        if more {
            // The last block first, so the answer continues right after it whichever branch it
            // was on; should the peer have dropped that branch, the batch ends before it and
            // then our own locator find the fork.
            let mut locator = vec![last];
            locator.extend(self.sync.batch_ends.iter().copied());
            locator.extend(self.sync.base.iter().flatten().copied());
            locator.truncate(MAX_LOCATOR);
            self.sync.batch_ends.push_front(last);
            self.sync.batch_ends.truncate(RECENT_BATCH_ENDS);
            self.sync.pending = Some(now);
            let d = GetBlocks::packed_after(locator);
            actions.push(Action::Send(Message::GetBlocks(d)));
        } else {
            self.sync.batch_ends.clear();
        }
        actions.extend(self.on_blocks(blocks, false));
        actions
    }

    /// What became of a sync batch the connection did not wait for (see
    /// [`crate::conn`]'s import): the chain thread attached it after the last answer.
    pub fn on_attached(&mut self, outcome: BlocksOutcome, now: Instant) -> Vec<Action> {
        self.imported(outcome, now)
    }

    /// What became of blocks a connection sent.
    pub(super) fn imported(&mut self, outcome: BlocksOutcome, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(invalid) = outcome.invalid {
            actions.push(error(ErrorCode::InvalidBlock, &invalid));
            // A block from the future may become valid; anything else is provably invalid.
            if invalid.is_final() {
                actions.push(Action::Ban(invalid.to_string()));
                actions.push(Action::Close(Closing::InvalidBlock(invalid)));
                return actions;
            }
            tracing::debug!(conn = self.id, error = %invalid, "block from the future");
        }
        if outcome.orphan.is_some() {
            actions.extend(self.ask_locator(now));
        }
        actions
    }

    /// `D` answered: `C`, then on a new peer link our own `D`.
    pub(super) fn chain_answered(
        &mut self,
        blocks: &[Arc<CheckedBlock>],
        more: bool,
        packed: bool,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = vec![Action::Send(blocks_message(blocks, more, packed))];
        if self.role == Role::Peer && self.sync.base.is_none() {
            // Each side of a new link asks for what it lacks.
            actions.extend(self.ask_locator(now));
        }
        actions
    }

    /// Asks for our locator, to send a `D`. Nothing when a `D` is unanswered since less than
    /// [`SYNC_RETRY`].
    pub(super) fn ask_locator(&mut self, now: Instant) -> Vec<Action> {
        if self
            .sync
            .pending
            .is_some_and(|sent| now.saturating_duration_since(sent) < SYNC_RETRY)
        {
            // The answer to the last one is on its way; it will say if more is needed.
            return Vec::new();
        }
        self.sync.pending = Some(now);
        self.ask(Pending::Locator, Question::Locator)
    }

    /// Our locator: the `D` to send.
    pub(super) fn locator_answered(&mut self, locator: Vec<BlockHash>) -> Vec<Action> {
        self.sync.base = Some(locator.clone());
        self.sync.batch_ends.clear();
        vec![Action::Send(Message::GetBlocks(GetBlocks::packed_after(
            locator,
        )))]
    }

    /// A periodic `D` on a quiet peer link: it forgets any unanswered one first.
    pub(super) fn sync_due(&mut self, now: Instant) -> Vec<Action> {
        self.sync.pending = None;
        self.ask_locator(now)
    }
}

/// A `C` message with as many of `blocks` as fit in [`C_LINE_BUDGET`], `packed` or as JSON;
/// `more` is set when any were left out.
pub fn blocks_message(blocks: &[Arc<CheckedBlock>], more: bool, packed: bool) -> Message {
    let mut budget = C_LINE_BUDGET;
    let mut out = Vec::with_capacity(blocks.len());
    for block in blocks {
        let size = if packed {
            Blocks::packed_len(block)
        } else {
            serde_json::to_vec(block.block()).map_or(usize::MAX, |v| v.len() + 1)
        };
        if size > budget {
            break;
        }
        budget -= size;
        out.push(block.block().clone());
    }
    let more = more || out.len() < blocks.len();
    Message::Blocks(Blocks {
        blocks: out,
        more,
        packed,
    })
}
