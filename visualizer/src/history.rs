//! Old blocks on demand: the pages of best-chain blocks below the visualizer's window
//! ([`crate::state::WINDOW_BLOCKS`]), for a page scrolling back (`GET /api/blocks`), and their
//! details (`GET /api/block/HASH`).
//!
//! The visualizer keeps no old block. Asked for a page below its window, it asks a node it
//! follows with `D`, the locator a single hash: the checkpoint its state remembered at the start
//! of that stretch ([`crate::state::Anchors`]). It believes no node: every block must be the
//! next height and link to the one before it, from that checkpoint up to the hash the state
//! holds at the stretch's end, and pass [`Block::check`] (proof of work, records, signatures);
//! a node whose answer does not is skipped for the next one. Since the hashes link both ends to
//! blocks the visualizer checked itself when they were new, the stretch is exactly the best
//! chain it followed.
//!
//! Everything is bounded: a page holds at most [`MAX_PAGE_BLOCKS`]; an address may ask
//! [`PAGES_PER_SECOND`] pages a second (a burst of [`PAGE_BURST`]); at most [`FETCHES_AT_ONCE`]
//! fetches run at once, each within [`FETCH_TIMEOUT`] per node and [`NODES_TRIED`] nodes; the
//! stretches fetched are cached, at most [`CACHED_STRETCHES`] and [`CACHE_BYTES`], the least
//! recently used going first.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use protocol::codec::LineCodec;
use protocol::params::side_block_cost;
use protocol::wire::{GetBlocks, Message};
use protocol::{Block, BlockHash, CheckedBlock, Params};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::codec::Framed;

use crate::hub::Hub;
use crate::state::Anchors;
use crate::view::{BlockDetails, BlockSummary};

/// Most blocks in one page: the strip shows about ten at once, so a hundred is many screens,
/// and a page of summaries stays under about 100 KB.
pub const MAX_PAGE_BLOCKS: u64 = 100;
/// Blocks in a page when the request does not say.
pub const DEFAULT_PAGE_BLOCKS: u64 = 50;
/// Pages an address may ask for each second, on average: scrolling back fast asks a page every
/// few hundred milliseconds; a script asking more only waits.
pub const PAGES_PER_SECOND: f64 = 4.0;
/// Pages an address may ask for at once before the rate applies.
pub const PAGE_BURST: f64 = 8.0;
/// Addresses whose rate is tracked; past it the quietest are forgotten (a forgotten address
/// starts with a full burst, so this only bounds memory).
pub const MAX_RATED_ADDRESSES: usize = 1024;
/// Fetches from nodes running at once, whoever asked: each costs a connection to a node and the
/// check of up to 500 blocks.
pub const FETCHES_AT_ONCE: usize = 2;
/// The longest one node may take to send one stretch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Nodes asked for one stretch before giving up.
pub const NODES_TRIED: usize = 3;
/// Stretches of old blocks kept once fetched, so scrolling back and forth asks no node again.
pub const CACHED_STRETCHES: usize = 8;
/// Bytes the cached stretches may hold, counted as [`side_block_cost`] (a stretch of full
/// blocks is larger than this: it is then the only one kept).
pub const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Why a page of old blocks could not be served.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The block the page ends before is neither on the best chain in the window nor among the
    /// old blocks fetched.
    #[error("unknown block: neither on the best chain in the visualizer's window nor fetched")]
    Unknown,
    /// The address asked too often.
    #[error("too many requests: at most {PAGES_PER_SECOND} pages a second")]
    TooMany,
    /// No node sent the blocks, or none sent blocks that check.
    #[error("no node sent the old blocks: {0}")]
    Unavailable(String),
    /// The visualizer is shutting down.
    #[error("shutting down")]
    Gone,
}

/// `GET /api/blocks`: best-chain blocks just below a given one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// Their summaries, oldest first, each the parent of the next.
    pub blocks: Vec<BlockSummary>,
    /// Whether older blocks exist (the first is not genesis).
    pub more: bool,
}

/// Consecutive best-chain blocks fetched from a node and checked.
#[derive(Debug)]
struct Stretch {
    /// The height its first block follows.
    from: u64,
    /// The blocks at heights `from + 1` onwards.
    blocks: Vec<Arc<CheckedBlock>>,
    /// What they count for against [`CACHE_BYTES`].
    bytes: usize,
}

impl Stretch {
    fn at(&self, height: u64) -> Option<&Arc<CheckedBlock>> {
        let index = usize::try_from(height.checked_sub(self.from + 1)?).ok()?;
        self.blocks.get(index)
    }
}

/// Stretches fetched, the most recently used last.
#[derive(Debug, Default)]
struct Cache {
    stretches: VecDeque<Arc<Stretch>>,
}

impl Cache {
    fn get(&mut self, from: u64, from_hash: &BlockHash) -> Option<Arc<Stretch>> {
        let index = self.stretches.iter().position(|s| {
            s.from == from && s.blocks.first().map(|b| b.header.prev_hash) == Some(*from_hash)
        })?;
        let stretch = self.stretches.remove(index)?;
        self.stretches.push_back(Arc::clone(&stretch));
        Some(stretch)
    }

    fn insert(&mut self, stretch: Arc<Stretch>) {
        self.stretches.push_back(stretch);
        while self.stretches.len() > 1
            && (self.stretches.len() > CACHED_STRETCHES
                || self.stretches.iter().map(|s| s.bytes).sum::<usize>() > CACHE_BYTES)
        {
            self.stretches.pop_front();
        }
    }

    /// A cached block by hash, with the hash of the block after it if cached too.
    fn find(&self, hash: &BlockHash) -> Option<(Arc<CheckedBlock>, Option<BlockHash>)> {
        self.stretches.iter().find_map(|s| {
            let index = s.blocks.iter().position(|b| b.hash() == *hash)?;
            let next = s.blocks.get(index + 1).map(|b| b.hash());
            Some((Arc::clone(&s.blocks[index]), next))
        })
    }
}

/// Each address's token bucket.
#[derive(Debug, Default)]
struct Rates {
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl Rates {
    /// Takes a token for `source` at `now`; false when it has none left.
    fn take(&mut self, source: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&source) && self.buckets.len() >= MAX_RATED_ADDRESSES {
            let refill = Duration::from_secs_f64(PAGE_BURST / PAGES_PER_SECOND);
            self.buckets
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < refill);
            if self.buckets.len() >= MAX_RATED_ADDRESSES {
                self.buckets.clear();
            }
        }
        let (tokens, at) = self.buckets.entry(source).or_insert((PAGE_BURST, now));
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * PAGES_PER_SECOND).min(PAGE_BURST);
        *at = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }
}

/// What the hub's state says about a page: the part in its window, and where the rest lies.
struct Plan {
    window: Vec<BlockSummary>,
    genesis: Option<BlockSummary>,
    anchors: Vec<Anchors>,
    nodes: Vec<String>,
}

/// Old blocks on demand; one per visualizer, shared by the HTTP handlers.
#[derive(Debug)]
pub struct History {
    hub: Hub,
    params: Params,
    cache: Mutex<Cache>,
    rates: Mutex<Rates>,
    fetches: Semaphore,
}

impl History {
    /// Serves old blocks for the state behind `hub`, checking them against `params`.
    pub fn new(hub: Hub, params: Params) -> History {
        History {
            hub,
            params,
            cache: Mutex::new(Cache::default()),
            rates: Mutex::new(Rates::default()),
            fetches: Semaphore::new(FETCHES_AT_ONCE),
        }
    }

    /// Whether `source` may ask for another page now.
    pub fn admit(&self, source: IpAddr) -> Result<(), HistoryError> {
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        if rates.take(source, Instant::now()) {
            Ok(())
        } else {
            Err(HistoryError::TooMany)
        }
    }

    /// The `count` best-chain blocks just below `before` (at most [`MAX_PAGE_BLOCKS`]), oldest
    /// first, from the window or fetched from a node and checked.
    pub async fn page(&self, before: BlockHash, count: u64) -> Result<Page, HistoryError> {
        let count = count.clamp(1, MAX_PAGE_BLOCKS);
        let in_window = self
            .hub
            .read(move |s| s.best_height_of(&before))
            .await
            .ok_or(HistoryError::Gone)?;
        let height = match in_window {
            Some(height) => height,
            None => self
                .cached(&before)
                .map(|(b, _)| b.header.height)
                .ok_or(HistoryError::Unknown)?,
        };
        if height == 0 {
            return Ok(Page {
                blocks: Vec::new(),
                more: false,
            });
        }
        let (from, to) = (height.saturating_sub(count), height - 1);
        let plan = self
            .hub
            .read(move |s| {
                let base = s.base_height();
                let mut anchors: Vec<Anchors> = Vec::new();
                for h in from.max(1)..=to.min(base.saturating_sub(1)) {
                    match s.anchors(h) {
                        Some(a) if anchors.last() != Some(&a) => anchors.push(a),
                        _ => {}
                    }
                }
                Plan {
                    window: s.best_summaries(from, to),
                    genesis: (from == 0 && base > 0).then(|| s.summary(&CheckedBlock::genesis())),
                    anchors,
                    nodes: s.following(),
                }
            })
            .await
            .ok_or(HistoryError::Gone)?;
        let mut old = Vec::new();
        for anchors in &plan.anchors {
            let stretch = self.stretch(anchors, &plan.nodes).await?;
            old.extend((from.max(1)..=to).filter_map(|h| stretch.at(h).cloned()));
        }
        let mut blocks = self
            .hub
            .read(move |s| old.iter().map(|b| s.summary(b)).collect::<Vec<_>>())
            .await
            .ok_or(HistoryError::Gone)?;
        blocks.extend(plan.genesis);
        blocks.extend(plan.window);
        blocks.sort_by_key(|b| b.height);
        blocks.dedup_by_key(|b| b.height);
        Ok(Page {
            more: blocks.first().is_some_and(|b| b.height > 0),
            blocks,
        })
    }

    /// The details of an old block fetched earlier, if it is still cached.
    pub async fn details(&self, hash: &BlockHash) -> Option<BlockDetails> {
        let (block, next) = self.cached(hash)?;
        self.hub
            .read(move |s| s.details_of(&block, true, next.into_iter().collect()))
            .await
    }

    fn cached(&self, hash: &BlockHash) -> Option<(Arc<CheckedBlock>, Option<BlockHash>)> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.find(hash)
    }

    /// The stretch between `anchors`, from the cache or from the first of `nodes` that sends it.
    async fn stretch(
        &self,
        anchors: &Anchors,
        nodes: &[String],
    ) -> Result<Arc<Stretch>, HistoryError> {
        let cached = || {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.get(anchors.from, &anchors.from_hash)
        };
        if let Some(stretch) = cached() {
            return Ok(stretch);
        }
        let _permit = self
            .fetches
            .acquire()
            .await
            .map_err(|_| HistoryError::Gone)?;
        // Another request may have fetched it while this one waited.
        if let Some(stretch) = cached() {
            return Ok(stretch);
        }
        let mut why = String::from("no node is followed");
        for addr in nodes.iter().take(NODES_TRIED) {
            let fetched =
                tokio::time::timeout(FETCH_TIMEOUT, fetch_checked(addr, anchors, &self.params))
                    .await;
            let blocks = match fetched {
                Ok(Ok(blocks)) => blocks,
                Ok(Err(error)) => {
                    tracing::info!(%addr, %error, "a node's old blocks refused");
                    why = format!("{addr}: {error}");
                    continue;
                }
                Err(_) => {
                    why = format!("{addr}: timed out");
                    continue;
                }
            };
            let bytes = blocks
                .iter()
                .map(|b| side_block_cost(b.header.records_size))
                .sum();
            let stretch = Arc::new(Stretch {
                from: anchors.from,
                blocks,
                bytes,
            });
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.insert(Arc::clone(&stretch));
            return Ok(stretch);
        }
        Err(HistoryError::Unavailable(why))
    }
}

/// Why one node's answer was not taken.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connecting failed.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The line did not parse, or the socket failed.
    #[error("{0}")]
    Wire(#[from] protocol::codec::WireError),
    /// The node hung up before answering.
    #[error("the node closed the connection")]
    Closed,
    /// The node answered `E`.
    #[error("the node sent {0}")]
    Refused(String),
    /// The node sent an empty `C`.
    #[error("the node sent no block after {0}")]
    Empty(BlockHash),
    /// A block is not the next height on the one before it.
    #[error("block {0} at height {1} does not follow the one before it")]
    Unlinked(BlockHash, u64),
    /// The blocks link, but not to the block the visualizer holds at the stretch's end.
    #[error("the blocks do not lead to the visualizer's block {0}")]
    Elsewhere(BlockHash),
    /// A block fails its own checks (proof of work, records, signatures).
    #[error("invalid block {0}: {1}")]
    Invalid(BlockHash, protocol::BlockError),
    /// The checking thread failed.
    #[error("the check did not finish")]
    Check,
}

/// Asks the node at `addr` for the stretch between `anchors` ([`fetch`]) and checks every block
/// on its own against `params` on a blocking thread.
pub async fn fetch_checked(
    addr: &str,
    anchors: &Anchors,
    params: &Params,
) -> Result<Vec<Arc<CheckedBlock>>, FetchError> {
    let blocks = fetch(addr, anchors).await?;
    let params = params.clone();
    tokio::task::spawn_blocking(move || {
        blocks
            .into_iter()
            .map(|b| {
                let hash = b.header.hash();
                b.check(&params)
                    .map(Arc::new)
                    .map_err(|e| FetchError::Invalid(hash, e))
            })
            .collect()
    })
    .await
    .map_err(|_| FetchError::Check)?
}

/// Asks the node at `addr` for the best-chain blocks after `anchors.from_hash` up to
/// `anchors.to`, and checks that they link from one anchor to the other. Each `D` adds at least
/// one block or the fetch fails, so it asks at most `to - from` times.
async fn fetch(addr: &str, anchors: &Anchors) -> Result<Vec<Block>, FetchError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(FetchError::Connect)?;
    let mut link = Framed::new(stream, LineCodec::<Message>::new());
    let need = usize::try_from(anchors.to - anchors.from).unwrap_or(usize::MAX);
    let mut blocks: Vec<Block> = Vec::with_capacity(need.min(CHECKPOINT_BLOCKS));
    let mut last = anchors.from_hash;
    while blocks.len() < need {
        link.send(Message::GetBlocks(GetBlocks::json_after(vec![last])))
            .await?;
        let segment = loop {
            match link.next().await.ok_or(FetchError::Closed)?? {
                Message::Blocks(segment) => break segment,
                Message::KeepAlive => link.send(Message::KeepAlive).await?,
                Message::Error(e) => return Err(FetchError::Refused(e.message)),
                _ => {}
            }
        };
        if segment.blocks.is_empty() {
            return Err(FetchError::Empty(last));
        }
        for block in segment.blocks {
            if blocks.len() == need {
                break;
            }
            let height = anchors.from + blocks.len() as u64 + 1;
            let hash = block.header.hash();
            if block.header.prev_hash != last || block.header.height != height {
                return Err(FetchError::Unlinked(hash, block.header.height));
            }
            last = hash;
            blocks.push(block);
        }
    }
    if last != anchors.to_hash {
        return Err(FetchError::Elsewhere(anchors.to_hash));
    }
    Ok(blocks)
}

/// The most blocks a stretch holds, to size its buffer.
const CHECKPOINT_BLOCKS: usize = crate::state::CHECKPOINT_SPACING as usize;
