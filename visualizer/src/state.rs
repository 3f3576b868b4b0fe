//! What the visualizer knows, and the deltas each change produces for the browsers.
//!
//! Every block any node reports goes into one [`Chain`] with the network's difficulty floor, so
//! its best chain is the network's most-work valid chain and forks appear as side branches.
//! Blocks arrive here already checked on their own (proof of work, records, signatures: the
//! followers do that off this thread, [`crate::verify`]); the chain adds the checks against the
//! parent and the ledger. A node whose block is refused is marked as misbehaving
//! ([`State::misbehaved`]). Side branches are bounded in count and in bytes by the chain
//! itself ([`protocol::params::MAX_SIDE_BYTES`]), since blocks off the best chain cost their
//! sender only the proof of work; what it prunes is forgotten here too. Beside the chain: a summary per block (built once, when the block
//! arrives), the names accounts joined with, when each node got each block, and a row per node
//! merged from the tracker's topology and the node's own updates.
//!
//! Memory follows the state, not the chain's length: the chain keeps only the best chain's last
//! [`WINDOW_BLOCKS`] blocks and the side branches near the tip ([`Chain::keep_recent`]); what
//! leaves the window leaves every map here too, its contribution to the totals is kept, and one
//! hash every [`CHECKPOINT_SPACING`] heights is kept so that older blocks fetched from a node
//! later can be checked against them ([`State::anchors`], [`crate::history`]). The ledger and
//! the names accounts joined with are state, kept whole. A snapshot carries only the last
//! [`SNAPSHOT_BLOCKS`].
//!
//! Each method that changes something returns the [`ToBrowser`] deltas to send, in order, and
//! costs work in proportion to what changed: a new block is summarised once; a tip move walks
//! only the blocks that left and joined the best chain; the node table is small. Nothing here
//! does I/O or reads the clock: the hub ([`crate::hub`]) owns a `State` on its own thread.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use protocol::params::{
    MAX_BLOCKS_PER_MESSAGE, MAX_LOCATOR, MAX_REORG_DEPTH, MAX_REPORTED_PENDING, MEDIAN_TIME_SPAN,
};
use protocol::tracker::{NodeInfo, Topology};
use protocol::wire::{LeftPool, PendingRecord};
use protocol::{
    AccountId, Action, Block, BlockError, BlockHash, Chain, CheckedBlock, Params, catalog,
};

use crate::observed::Observed;
use crate::verify::Offence;
use crate::view::{
    Arrival, BlockDetails, BlockSummary, ChoiceVotes, HeaderView, LedgerDelta, LeftView, Link,
    LoadSample, Misbehaviour, NodeView, ObservedView, PendingView, PollView, PoolDelta,
    RecordSummary, RecordView, SUMMARY_RECORDS, Seen, ShopperRow, Snapshot, TipChange, ToBrowser,
    Totals, TrackerView,
};

/// Best-chain blocks the visualizer keeps in memory below its tip, with the side branches
/// hanging from them: exactly what consensus at the tip reads (the deepest reorg a node accepts,
/// plus the median-time span), so the visualizer follows every reorg a node would and no more.
/// Older blocks leave memory ([`Chain::trim`]); what the page needs of them later is fetched
/// from a node on demand ([`crate::history`]). In bytes this is at most this many times
/// [`protocol::params::MAX_BLOCK_RECORDS_SIZE`] plus the side branches' own cap, the same bound
/// a node's chain has; with the small blocks of a class, a few megabytes.
pub const WINDOW_BLOCKS: usize = MAX_REORG_DEPTH + MEDIAN_TIME_SPAN;

/// Best-chain blocks a new browser's snapshot carries, the tip's and those below it: a few
/// screens of the chain strip, so the snapshot is small and quick whatever the chain's length.
/// The page fetches older ones as it scrolls back (`GET /api/blocks`).
pub const SNAPSHOT_BLOCKS: usize = 200;

/// Side-branch blocks a snapshot carries at most, the highest first (forks near the tip are the
/// ones a class watches); side branches may hold up to
/// [`protocol::params::MAX_SIDE_BLOCKS`], which would make a snapshot as large as a chain.
pub const SNAPSHOT_SIDE_BLOCKS: usize = 200;

/// Every how many heights the visualizer remembers the best chain's hash below its window: the
/// anchors that older blocks fetched from a node must link to ([`State::anchors`]). One `C`
/// answer's worth, so a page of old blocks costs one `D`; 32 bytes per 500 blocks (64 KB at a
/// million blocks) is the only memory that grows with the chain.
pub const CHECKPOINT_SPACING: u64 = MAX_BLOCKS_PER_MESSAGE as u64;

/// One node as the visualizer knows it.
#[derive(Debug, Clone)]
struct NodeState {
    /// Where it listens.
    addr: String,
    /// Its entry in the last topology that listed it.
    info: Option<NodeInfo>,
    /// Whether the last topology the tracker answered listed it.
    listed: bool,
    /// The follower session that last reported on it; older sessions are ignored.
    session: u64,
    /// The visualizer's connection to it.
    link: Link,
    /// Its tip, from its own updates.
    tip: Option<(BlockHash, u64)>,
    /// The newest block it told us about, and its clock when it got it.
    last_block: Option<(BlockHash, u64)>,
    /// The last invalid block it sent, if any.
    misbehaviour: Option<Misbehaviour>,
    /// What it says of itself: load, peers, pending records.
    observed: Observed,
}

impl NodeState {
    fn new(addr: String) -> NodeState {
        NodeState {
            addr,
            info: None,
            listed: false,
            session: 0,
            link: Link::None,
            tip: None,
            last_block: None,
            misbehaviour: None,
            observed: Observed::default(),
        }
    }
}

/// The visualizer's view of the network: the merged block tree, the ledger at its best tip,
/// and the nodes.
#[derive(Debug)]
pub struct State {
    chain: Chain,
    summaries: HashMap<BlockHash, BlockSummary>,
    children: HashMap<BlockHash, Vec<BlockHash>>,
    /// Names accounts joined with, from every join seen on any branch (first seen wins).
    names: HashMap<AccountId, String>,
    /// When each node got each block (its own clock), in arrival order.
    seen: HashMap<BlockHash, Vec<(AccountId, u64)>>,
    nodes: BTreeMap<AccountId, NodeState>,
    tracker: TrackerView,
    totals: Totals,
    /// The tracker's state and the node table as last sent, so an unchanged table is not sent
    /// again.
    sent_nodes: Option<(TrackerView, Vec<NodeView>)>,
    /// What the best-chain blocks below the window (trimmed) add to the totals, so totals can
    /// be recounted from the window alone.
    below_totals: Totals,
    /// The best chain's hash at every [`CHECKPOINT_SPACING`]th height below the window:
    /// `checkpoints[k]` is the hash at height `k * CHECKPOINT_SPACING`.
    checkpoints: Vec<BlockHash>,
}

/// Where the best-chain blocks of one stretch below the window are to be fetched from, and
/// what they must link to: the hash at `from` (a checkpoint), and the hash at `to`, the last
/// height of the stretch (a checkpoint, or the window's lowest block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchors {
    /// The height the stretch starts after.
    pub from: u64,
    /// The best chain's hash at `from`.
    pub from_hash: BlockHash,
    /// The stretch's last height.
    pub to: u64,
    /// The best chain's hash at `to`.
    pub to_hash: BlockHash,
}

/// Adds (`sign` 1) or removes (-1) a best-chain block's contribution to `totals`.
fn count(totals: &mut Totals, block: &CheckedBlock, sign: i64) {
    let add = |total: &mut u64, n: u64| {
        *total = if sign > 0 {
            total.saturating_add(n)
        } else {
            total.saturating_sub(n)
        };
    };
    add(&mut totals.records, block.records.len() as u64);
    let joins = block
        .records
        .iter()
        .filter(|r| matches!(r.action, Action::Join { .. }))
        .count() as u64;
    let purchases = block
        .records
        .iter()
        .filter(|r| matches!(r.action, Action::Purchase { .. }))
        .count() as u64;
    add(&mut totals.shoppers, joins);
    add(&mut totals.monkeys_sold, purchases);
}

/// Milliseconds between `first` and `then`, zero if `then` is earlier (clocks differ).
fn delay(first: u64, then: u64) -> u64 {
    then.saturating_sub(first)
}

impl State {
    /// A state holding only genesis, for a tracker at `tracker_addr`, on a network with
    /// `params` (its difficulty floor).
    pub fn new(tracker_addr: &str, params: Params) -> State {
        let chain = Chain::new(params);
        let mut state = State {
            chain,
            summaries: HashMap::new(),
            children: HashMap::new(),
            names: HashMap::new(),
            seen: HashMap::new(),
            nodes: BTreeMap::new(),
            tracker: TrackerView {
                addr: tracker_addr.to_string(),
                up: false,
            },
            totals: Totals::default(),
            sent_nodes: None,
            below_totals: Totals::default(),
            checkpoints: Vec::new(),
        };
        state.chain.keep_recent(WINDOW_BLOCKS);
        let genesis = Arc::clone(state.chain.tip());
        state.learn(&genesis);
        state
    }

    /// The best tip's hash.
    pub fn tip(&self) -> BlockHash {
        self.chain.tip().hash()
    }

    /// The best tip's height.
    pub fn height(&self) -> u64 {
        self.chain.height()
    }

    /// Whether the tree holds `hash`.
    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.chain.contains(hash)
    }

    /// A block locator for the best chain, for asking a node what we lack: the window's hashes
    /// as [`Chain::locator`] gives them, then checkpoints below the window at doubling
    /// distances, then genesis. A node far behind (a fresh one syncing a long chain) finds a
    /// checkpoint it holds and sends only what follows it, never its whole chain from genesis.
    pub fn locator(&self) -> Vec<BlockHash> {
        let mut locator = self.chain.locator();
        let genesis = locator.pop();
        let mut step = 1;
        let mut index = self.checkpoints.len().saturating_sub(1);
        while index > 0 && locator.len() < MAX_LOCATOR - 1 {
            locator.push(self.checkpoints[index]);
            index = index.saturating_sub(step);
            step *= 2;
        }
        locator.extend(genesis);
        locator
    }

    /// The network's parameters (its difficulty floor).
    pub fn params(&self) -> &Params {
        self.chain.params()
    }

    /// Sets the most bytes kept off the best chain (see [`protocol::params::MAX_SIDE_BYTES`]);
    /// for tests.
    pub fn set_max_side_bytes(&mut self, max: usize) {
        self.chain.set_max_side_bytes(max);
        self.forget_pruned();
    }

    /// How many blocks this state keeps a summary of: as many as the tree holds, since what
    /// the chain prunes or trims out of the window is forgotten here too.
    pub fn summarised(&self) -> usize {
        self.summaries.len()
    }

    /// What the blocks held off the best chain count for against the chain's byte cap.
    pub fn side_bytes(&self) -> usize {
        self.chain.side_bytes()
    }

    /// Inserts blocks a node sent, oldest first, checking each on its own first ([`Block::check`],
    /// on the caller's thread: the hub uses [`State::insert_checked`] with blocks its followers
    /// checked). A block that fails marks the node as misbehaving and ends the batch.
    /// `received_ms` is the node's clock when they entered its tree (from a `U` update; `None`
    /// for blocks fetched with `D`). `now` is the local clock, for the future-timestamp rule.
    pub fn insert(
        &mut self,
        node: AccountId,
        blocks: Vec<Block>,
        received_ms: Option<u64>,
        now: u64,
    ) -> Vec<ToBrowser> {
        let mut checked = Vec::with_capacity(blocks.len());
        let mut refused = None;
        for block in blocks {
            let header = block.header.clone();
            match block.check(self.chain.params()) {
                Ok(block) => checked.push(block),
                Err(error) => {
                    refused = Some(Offence::new(&header, &error));
                    break;
                }
            }
        }
        let (mut out, _) = self.insert_checked(node, checked, received_ms, now);
        if let Some(offence) = refused {
            out.extend(self.misbehaved(node, offence, now));
        }
        out
    }

    /// Inserts blocks a node sent that passed [`Block::check`], oldest first, and returns the
    /// deltas, with the offence if the chain refused one of them (against its parent or the
    /// ledger): the node is then marked as misbehaving and the rest of the batch is ignored. A
    /// block whose timestamp is too far ahead is not an offence (clocks differ); it is skipped.
    pub fn insert_checked(
        &mut self,
        node: AccountId,
        blocks: Vec<CheckedBlock>,
        received_ms: Option<u64>,
        now: u64,
    ) -> (Vec<ToBrowser>, Option<Offence>) {
        let old_tip = self.tip();
        let mut added = Vec::new();
        let mut arrivals = Vec::new();
        let mut refused = None;
        for block in blocks {
            let hash = block.hash();
            let header = block.header.clone();
            match self.chain.insert_checked(block, now) {
                Ok(imported) => {
                    for block in imported.added() {
                        added.push(self.learn(block));
                    }
                }
                Err(error @ BlockError::FutureTimestamp { .. }) => {
                    tracing::debug!(node = %node.short(), block = %hash.short(), %error, "block from the future skipped");
                }
                Err(error) => {
                    tracing::info!(node = %node.short(), block = %hash.short(), %error, "invalid block refused");
                    refused = Some(Offence::new(&header, &error));
                    break;
                }
            }
            if let Some(received) = received_ms
                && self.chain.contains(&hash)
            {
                arrivals.push((hash, received));
            }
        }
        let out_of_window = self.chain.trim();
        self.forget_trimmed(&out_of_window);
        self.forget_pruned();
        added.retain(|b| self.chain.contains(&b.hash));
        // Side blocks come and go without the tip moving; the count is sent with the next
        // ledger delta and in every snapshot.
        self.totals.side_blocks = self.side_blocks();
        let relayed: Vec<Arrival> = arrivals
            .iter()
            .map(|&(hash, received_ms)| Arrival { hash, received_ms })
            .collect();
        for (hash, received) in arrivals {
            self.arrived(node, hash, received);
        }
        let mut out = Vec::new();
        if !added.is_empty() {
            out.push(ToBrowser::Blocks { blocks: added });
        }
        out.extend(self.tip_moved(old_tip));
        if let Some(offence) = &refused {
            self.note_offence(node, offence.clone(), now);
        }
        out.extend(self.nodes_changed());
        if !relayed.is_empty() && self.nodes.contains_key(&node) {
            out.push(ToBrowser::Arrivals {
                node,
                blocks: relayed,
            });
        }
        (out, refused)
    }

    /// `node` sent something invalid (`offence`, seen at `now`): its row says so from now on.
    pub fn misbehaved(&mut self, node: AccountId, offence: Offence, now: u64) -> Vec<ToBrowser> {
        self.note_offence(node, offence, now);
        self.nodes_changed().into_iter().collect()
    }

    fn note_offence(&mut self, node: AccountId, offence: Offence, now: u64) {
        let Some(state) = self.nodes.get_mut(&node) else {
            return;
        };
        let offences = state.misbehaviour.as_ref().map_or(0, |m| m.offences) + 1;
        state.misbehaviour = Some(Misbehaviour {
            sent: offence.sent,
            why: offence.why,
            at_ms: now,
            offences,
        });
    }

    /// Forgets what this state keeps about best-chain blocks that left the window, keeping
    /// what they add to the totals and the checkpoints among them.
    fn forget_trimmed(&mut self, trimmed: &[Arc<CheckedBlock>]) {
        for block in trimmed {
            let hash = block.hash();
            let height = block.header.height;
            if height == self.checkpoints.len() as u64 * CHECKPOINT_SPACING {
                self.checkpoints.push(hash);
            }
            count(&mut self.below_totals, block, 1);
            self.summaries.remove(&hash);
            self.seen.remove(&hash);
            self.children.remove(&hash);
        }
    }

    /// Forgets what this state keeps beside the chain about blocks that left it (pruned side
    /// blocks, branches found invalid), so memory follows the chain's bounds.
    fn forget_pruned(&mut self) {
        if self.summaries.len() <= self.chain.len() {
            return;
        }
        let chain = &self.chain;
        self.summaries.retain(|h, _| chain.contains(h));
        self.seen.retain(|h, _| chain.contains(h));
        self.children.retain(|h, _| chain.contains(h));
        for children in self.children.values_mut() {
            children.retain(|h| chain.contains(h));
        }
    }

    /// Summarises a block that just entered the tree, learning the names it joins.
    fn learn(&mut self, block: &Arc<CheckedBlock>) -> BlockSummary {
        for record in &block.records {
            if let Action::Join { name } = &record.action {
                self.names
                    .entry(record.account)
                    .or_insert_with(|| name.clone());
            }
        }
        let header = &block.header;
        let summary = self.summary(block);
        if header.height > 0 {
            self.children
                .entry(header.prev_hash)
                .or_default()
                .push(block.hash());
        }
        self.summaries.insert(block.hash(), summary.clone());
        summary
    }

    /// A block's summary for the page, its records described with the names known now.
    pub fn summary(&self, block: &CheckedBlock) -> BlockSummary {
        let header = &block.header;
        BlockSummary {
            hash: block.hash(),
            prev: header.prev_hash,
            height: header.height,
            bits: header.bits,
            nonce: header.nonce.to_string(),
            miner: header.miner.short(),
            time: header.timestamp,
            count: header.record_count,
            records: block
                .records
                .iter()
                .take(SUMMARY_RECORDS)
                .map(|r| self.describe(&r.account, &r.action))
                .collect(),
        }
    }

    /// An account's name, or its short key.
    fn name(&self, account: &AccountId) -> String {
        self.names
            .get(account)
            .cloned()
            .unwrap_or_else(|| account.short())
    }

    fn describe(&self, account: &AccountId, action: &Action) -> RecordSummary {
        let who = self.name(account);
        match action {
            Action::Join { name } => RecordSummary::Join { who: name.clone() },
            Action::Purchase { monkey } => RecordSummary::Purchase {
                who,
                monkey: monkey.clone(),
                price: catalog::monkey(monkey).map_or(0, |m| m.price),
            },
            Action::Transfer { to, amount } => RecordSummary::Transfer {
                who,
                to: self.name(to),
                amount: *amount,
            },
            Action::Vote { poll, choice } => RecordSummary::Vote {
                who,
                poll: poll.clone(),
                choice: choice.clone(),
            },
        }
    }

    /// Notes that `node` got `hash` at `received` on its clock.
    fn arrived(&mut self, node: AccountId, hash: BlockHash, received: u64) {
        let seen = self.seen.entry(hash).or_default();
        if seen.iter().any(|(n, _)| *n == node) {
            return;
        }
        seen.push((node, received));
        if let Some(state) = self.nodes.get_mut(&node)
            && state.last_block.is_none_or(|(_, last)| received >= last)
        {
            state.last_block = Some((hash, received));
        }
    }

    /// The deltas for a move of the best tip away from `old_tip`: the tip itself, then the
    /// ledger rows and polls that the blocks leaving and joining the best chain touch.
    fn tip_moved(&mut self, old_tip: BlockHash) -> Vec<ToBrowser> {
        let tip = self.chain.tip().hash();
        if tip == old_tip {
            return Vec::new();
        }
        let Some((disconnected, connected)) = self.chain.changes_since(&old_tip) else {
            // The old tip left the tree (a branch found invalid): start the browsers over.
            tracing::warn!("best chain changed beyond tracking; sending a fresh snapshot");
            self.recount();
            return vec![self.snapshot()];
        };
        let mut accounts = BTreeSet::new();
        let mut polls = BTreeSet::new();
        // Accounts whose join left the best chain: their rows may have to go.
        let mut unjoined = BTreeSet::new();
        for (blocks, sign) in [(&disconnected, -1i64), (&connected, 1)] {
            for block in blocks.iter() {
                accounts.insert(block.header.miner);
                count(&mut self.totals, block, sign);
                for record in &block.records {
                    accounts.insert(record.account);
                    match &record.action {
                        Action::Join { .. } if sign < 0 => {
                            unjoined.insert(record.account);
                        }
                        Action::Transfer { to, .. } => {
                            accounts.insert(*to);
                        }
                        Action::Vote { poll, .. } => {
                            polls.insert(poll.clone());
                        }
                        Action::Join { .. } | Action::Purchase { .. } => {}
                    }
                }
            }
        }
        self.totals.blocks = self.chain.height();
        self.totals.side_blocks = self.side_blocks();
        let change = TipChange {
            hash: tip,
            height: self.chain.height(),
            disconnected: disconnected.iter().map(|b| b.hash()).collect(),
            connected: connected.iter().map(|b| b.hash()).collect(),
        };
        let mut delta = LedgerDelta {
            totals: self.totals,
            ..LedgerDelta::default()
        };
        for account in accounts {
            match self.shopper(&account) {
                Some(row) => delta.shoppers.push(row),
                None if unjoined.contains(&account) => delta.gone.push(account),
                None => {}
            }
        }
        delta.polls = polls.into_iter().map(|p| self.poll(p)).collect();
        vec![ToBrowser::Tip(change), ToBrowser::Ledger(delta)]
    }

    /// Recomputes the totals from the best chain in the window and what the blocks below it
    /// added (only after an untrackable change).
    fn recount(&mut self) {
        self.totals = self.below_totals;
        for height in self.chain.base_height().max(1)..=self.chain.height() {
            if let Some(block) = self.chain.at_height(height).cloned() {
                count(&mut self.totals, &block, 1);
            }
        }
        self.totals.blocks = self.chain.height();
        self.totals.side_blocks = self.side_blocks();
    }

    fn side_blocks(&self) -> u64 {
        self.chain.side_len() as u64
    }

    fn shopper(&self, account: &AccountId) -> Option<ShopperRow> {
        let state = self.chain.ledger().account(account)?;
        Some(ShopperRow {
            account: *account,
            name: state.name.clone()?,
            balance: state.balance,
            cage: state.cage.clone(),
        })
    }

    fn poll(&self, poll: String) -> PollView {
        let tally = self
            .chain
            .ledger()
            .tally(&poll)
            .into_iter()
            .map(|(choice, votes)| ChoiceVotes { choice, votes })
            .collect();
        PollView { poll, tally }
    }

    /// A node's tip moved (its `U tip`).
    pub fn node_tip(&mut self, node: AccountId, hash: BlockHash, height: u64) -> Vec<ToBrowser> {
        if let Some(state) = self.nodes.get_mut(&node) {
            state.tip = Some((hash, height));
        }
        self.nodes_changed().into_iter().collect()
    }

    /// The follower `session` of `node` (at `addr`) reports its connection. Reports from an older
    /// session than the last one heard are stale and ignored.
    pub fn link(
        &mut self,
        node: AccountId,
        addr: &str,
        session: u64,
        link: Link,
    ) -> Vec<ToBrowser> {
        let state = self
            .nodes
            .entry(node)
            .or_insert_with(|| NodeState::new(addr.to_string()));
        if session < state.session {
            return Vec::new();
        }
        state.session = session;
        state.link = link;
        if !matches!(link, Link::Syncing | Link::Following) {
            state.tip = None;
        }
        if link == Link::None && !state.listed {
            self.nodes.remove(&node);
        }
        self.nodes_changed().into_iter().collect()
    }

    /// The tracker answered with `topology`, or (`None`) did not answer.
    pub fn topology(&mut self, topology: Option<&Topology>) -> Vec<ToBrowser> {
        self.tracker.up = topology.is_some();
        if let Some(topology) = topology {
            for state in self.nodes.values_mut() {
                state.listed = false;
            }
            for info in &topology.nodes {
                let state = self
                    .nodes
                    .entry(info.id)
                    .or_insert_with(|| NodeState::new(info.addr.clone()));
                state.listed = true;
                state.addr = info.addr.clone();
                state.info = Some(info.clone());
            }
            self.nodes
                .retain(|_, state| state.listed || state.link != Link::None);
        }
        self.nodes_changed().into_iter().collect()
    }

    /// A node's `U status`, heard at `now` (the visualizer's clock): a load sample (unless the
    /// last is too recent, [`crate::observed::MIN_SAMPLE_GAP_MS`]) and its peers if they changed.
    pub fn status(
        &mut self,
        node: AccountId,
        now: u64,
        load_permille: u16,
        difficulty: u32,
        peers: Vec<AccountId>,
    ) -> Vec<ToBrowser> {
        let Some(state) = self.nodes.get_mut(&node) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let sample = LoadSample {
            at_ms: now,
            load: f32::from(load_permille.min(1000)) / 1000.0,
            difficulty,
        };
        if state.observed.sample(sample) {
            out.push(ToBrowser::Load { node, sample });
        }
        if state.observed.set_peers(peers) {
            out.push(ToBrowser::Peers {
                node,
                peers: state.observed.peers.clone(),
            });
        }
        out
    }

    /// A node's `U pool`: its records described, bounded, and passed on.
    pub fn pool(
        &mut self,
        node: AccountId,
        full: bool,
        added: Vec<PendingRecord>,
        removed: Vec<LeftPool>,
        counts: (u64, u64),
    ) -> Vec<ToBrowser> {
        if !self.nodes.contains_key(&node) {
            return Vec::new();
        }
        let described: Vec<PendingView> = added
            .into_iter()
            .take(MAX_REPORTED_PENDING)
            .map(|p| PendingView {
                id: p.record.id(),
                seq: p.record.seq,
                record: self.describe(&p.record.account, &p.record.action),
                since_ms: p.since_ms,
                waiting: p.waiting,
            })
            .collect();
        let Some(state) = self.nodes.get_mut(&node) else {
            return Vec::new();
        };
        let removed: Vec<LeftView> = removed
            .into_iter()
            .filter(|l| state.observed.pool.contains_key(&l.id))
            .map(|l| LeftView {
                id: l.id,
                block: l.block,
            })
            .collect();
        let ids: Vec<_> = removed.iter().map(|l| l.id).collect();
        let added = state.observed.pool(full, described, &ids, counts);
        vec![ToBrowser::Pool(PoolDelta {
            node,
            full,
            added,
            removed,
            ready: counts.0,
            waiting: counts.1,
        })]
    }

    /// What each node says of itself, for a snapshot.
    fn observed_views(&self) -> Vec<ObservedView> {
        self.nodes
            .iter()
            .map(|(id, state)| ObservedView {
                node: *id,
                peers: state.observed.peers.clone(),
                pool: state.observed.pool.values().cloned().collect(),
                ready: state.observed.ready,
                waiting: state.observed.waiting,
                samples: state.observed.samples.iter().copied().collect(),
            })
            .collect()
    }

    /// The node table now.
    fn node_views(&self) -> Vec<NodeView> {
        self.nodes
            .iter()
            .map(|(id, state)| {
                let listed = state.info.as_ref().filter(|_| state.listed);
                let (tip_hash, tip_height) = match (state.tip, &state.info) {
                    (Some(tip), _) => tip,
                    (None, Some(info)) => (info.tip_hash, info.tip_height),
                    (None, None) => (protocol::genesis().header.hash(), 0),
                };
                let on_best = self.chain.is_on_best(&tip_hash);
                let (last_block, delay_ms) = match state.last_block {
                    Some((hash, received)) => {
                        let first = self
                            .seen
                            .get(&hash)
                            .and_then(|s| s.iter().map(|(_, t)| *t).min())
                            .unwrap_or(received);
                        (Some(hash), Some(delay(first, received)))
                    }
                    None => (None, None),
                };
                NodeView {
                    id: *id,
                    short: id.short(),
                    addr: state.addr.clone(),
                    status: listed.map(|i| i.status),
                    link: state.link,
                    tip_height,
                    tip_hash,
                    behind: on_best.then(|| self.chain.height().saturating_sub(tip_height)),
                    on_best,
                    load: state.info.as_ref().map(|i| i.load),
                    difficulty: state.info.as_ref().map(|i| i.difficulty),
                    last_block,
                    delay_ms,
                    misbehaviour: state.misbehaviour.clone(),
                }
            })
            .collect()
    }

    /// A `Nodes` delta if the table or the tracker's state differs from what was last sent.
    fn nodes_changed(&mut self) -> Option<ToBrowser> {
        let sent = (self.tracker.clone(), self.node_views());
        if self.sent_nodes.as_ref() == Some(&sent) {
            return None;
        }
        let (tracker, nodes) = sent.clone();
        self.sent_nodes = Some(sent);
        Some(ToBrowser::Nodes { tracker, nodes })
    }

    /// Everything, for a browser that just connected: the last [`SNAPSHOT_BLOCKS`] of the best
    /// chain and the highest [`SNAPSHOT_SIDE_BLOCKS`] side blocks above them (parents first),
    /// the nodes, the totals, every shopper and every poll. Its size follows the state
    /// (accounts, polls, nodes), never the chain's length.
    pub fn snapshot(&self) -> ToBrowser {
        let height = self.chain.height();
        let start = height
            .saturating_sub(SNAPSHOT_BLOCKS as u64 - 1)
            .max(self.chain.base_height());
        let mut side: Vec<&BlockSummary> = self
            .chain
            .blocks()
            .filter(|b| b.header.height >= start && !self.chain.is_on_best(&b.hash()))
            .filter_map(|b| self.summaries.get(&b.hash()))
            .collect();
        side.sort_by_key(|b| std::cmp::Reverse(b.height));
        side.truncate(SNAPSHOT_SIDE_BLOCKS);
        let mut blocks: Vec<&BlockSummary> = (start..=height)
            .filter_map(|h| self.chain.at_height(h))
            .filter_map(|b| self.summaries.get(&b.hash()))
            .chain(side)
            .collect();
        blocks.sort_by_key(|b| b.height);
        let ledger = self.chain.ledger();
        let mut shoppers: Vec<ShopperRow> = ledger
            .accounts()
            .filter_map(|(id, _)| self.shopper(id))
            .collect();
        shoppers.sort_by_key(|a| a.name.to_lowercase());
        let polls = ledger.polls().into_iter().map(|p| self.poll(p)).collect();
        ToBrowser::Snapshot(Snapshot {
            tip: self.tip(),
            height: self.height(),
            blocks: blocks.into_iter().cloned().collect(),
            tracker: self.tracker.clone(),
            nodes: self.node_views(),
            observed: self.observed_views(),
            ledger: LedgerDelta {
                totals: self.totals,
                shoppers,
                gone: Vec::new(),
                polls,
            },
        })
    }

    /// Everything about one block, or `None` if the tree does not hold it.
    pub fn details(&self, hash: &BlockHash) -> Option<BlockDetails> {
        let block = self.chain.get(hash)?;
        let children = self.children.get(hash).cloned().unwrap_or_default();
        Some(self.details_of(block, self.chain.is_on_best(hash), children))
    }

    /// Everything about `block`, held here or fetched from a node (an old one), on the best
    /// chain or not (`best`), with the `children` known of it.
    pub fn details_of(
        &self,
        block: &CheckedBlock,
        best: bool,
        children: Vec<BlockHash>,
    ) -> BlockDetails {
        let hash = &block.hash();
        let header = &block.header;
        let records = block
            .records
            .iter()
            .map(|r| RecordView {
                id: r.id(),
                account: r.account,
                who: self.names.get(&r.account).cloned(),
                seq: r.seq,
                action: r.action.clone(),
                to_name: match &r.action {
                    Action::Transfer { to, .. } => self.names.get(to).cloned(),
                    _ => None,
                },
                sig: hex::encode(r.sig.0),
            })
            .collect();
        let mut arrivals = self.seen.get(hash).cloned().unwrap_or_default();
        arrivals.sort_by_key(|(_, t)| *t);
        let first = arrivals.first().map_or(0, |(_, t)| *t);
        let seen = arrivals
            .into_iter()
            .map(|(node, received_ms)| Seen {
                node: node.short(),
                received_ms,
                delay_ms: delay(first, received_ms),
            })
            .collect();
        BlockDetails {
            hash: *hash,
            best,
            header: HeaderView {
                version: header.version,
                bits: header.bits,
                height: header.height,
                prev_hash: header.prev_hash,
                records_root: header.records_root,
                miner: header.miner,
                timestamp: header.timestamp,
                record_count: header.record_count,
                records_size: header.records_size,
                nonce: header.nonce.to_string(),
            },
            miner_name: self.names.get(&header.miner).cloned(),
            records,
            seen,
            children,
        }
    }

    /// The lowest height whose block is in memory: the window's start.
    pub fn base_height(&self) -> u64 {
        self.chain.base_height()
    }

    /// The height of `hash` if it is on the best chain and in the window.
    pub fn best_height_of(&self, hash: &BlockHash) -> Option<u64> {
        self.chain
            .is_on_best(hash)
            .then(|| self.chain.get(hash).map(|b| b.header.height))
            .flatten()
    }

    /// Summaries of the best chain's blocks at heights `from..=to` that are in the window,
    /// oldest first.
    pub fn best_summaries(&self, from: u64, to: u64) -> Vec<BlockSummary> {
        (from.max(self.chain.base_height())..=to.min(self.chain.height()))
            .filter_map(|h| self.chain.at_height(h))
            .map(|b| {
                self.summaries
                    .get(&b.hash())
                    .cloned()
                    .unwrap_or_else(|| self.summary(b))
            })
            .collect()
    }

    /// What the best-chain block at `height`, below the window, must be fetched after and link
    /// to: the stretch of [`CHECKPOINT_SPACING`] heights that holds it, between two hashes this
    /// state checked itself when they were in its window. `None` for genesis (never fetched)
    /// and for heights in the window.
    pub fn anchors(&self, height: u64) -> Option<Anchors> {
        let base = self.chain.base_height();
        if height == 0 || height >= base {
            return None;
        }
        let k = (height - 1) / CHECKPOINT_SPACING;
        let from = k * CHECKPOINT_SPACING;
        let from_hash = *self.checkpoints.get(usize::try_from(k).ok()?)?;
        let to = (from + CHECKPOINT_SPACING).min(base);
        let to_hash = if to == base {
            self.chain.at_height(base)?.hash()
        } else {
            *self.checkpoints.get(usize::try_from(k + 1).ok()?)?
        };
        Some(Anchors {
            from,
            from_hash,
            to,
            to_hash,
        })
    }

    /// The addresses of the nodes followed now, up to date: the ones to ask for old blocks.
    pub fn following(&self) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.link == Link::Following)
            .map(|n| n.addr.clone())
            .collect()
    }
}
