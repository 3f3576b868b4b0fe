//! Following nodes the way the visualizer does, through `S`: when each block reached each node
//! (as the bench saw its `U`), and when each record first joined each node's best chain.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use protocol::codec::{LineCodec, WireError};
use protocol::wire::{ErrorCode, Message, Update};
use protocol::{BlockHash, RecordId};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder, Framed};

/// What the subscriptions saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// When block `hash` reached node `i`: `(i, hash)`.
    pub block_at: HashMap<(usize, BlockHash), Instant>,
    /// When record `id` first joined node `i`'s best chain: `(i, id)`.
    pub record_at: HashMap<(usize, RecordId), Instant>,
    /// The records of every block seen.
    pub contents: HashMap<BlockHash, Vec<RecordId>>,
    /// Each node's tip height.
    pub heights: Vec<u64>,
}

impl Seen {
    /// Whether block `hash` reached every one of the first `nodes` nodes.
    pub fn block_everywhere(&self, nodes: usize, hash: BlockHash) -> bool {
        last_of_all(&self.block_at, nodes, hash).is_some()
    }

    /// When block `hash` reached the last of the first `nodes` nodes, once it reached them all.
    pub fn block_last(&self, nodes: usize, hash: BlockHash) -> Option<Instant> {
        last_of_all(&self.block_at, nodes, hash)
    }

    /// Whether record `id` joined the best chain of every one of the first `nodes` nodes.
    pub fn record_everywhere(&self, nodes: usize, id: RecordId) -> bool {
        last_of_all(&self.record_at, nodes, id).is_some()
    }

    /// When record `id` joined the best chain of the last of the first `nodes` nodes, once it
    /// joined them all.
    pub fn record_last(&self, nodes: usize, id: RecordId) -> Option<Instant> {
        last_of_all(&self.record_at, nodes, id)
    }
}

/// The latest time in `at` for `key` on nodes `0..nodes`, or `None` while a node lacks it.
fn last_of_all<K: Copy + Eq + std::hash::Hash>(
    at: &HashMap<(usize, K), Instant>,
    nodes: usize,
    key: K,
) -> Option<Instant> {
    (0..nodes)
        .map(|n| at.get(&(n, key)).copied())
        .try_fold(None, |last: Option<Instant>, seen| {
            Some(last.max(Some(seen?)))
        })
        .flatten()
}

/// Subscriptions to a set of nodes.
pub struct Watch {
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watch {
    /// Subscribes to every node in `addrs`, following their blocks and tips.
    pub async fn start(addrs: &[String]) -> anyhow::Result<Watch> {
        Watch::follow(addrs, Follow::Blocks).await
    }

    /// Subscribes to every node in `addrs`, following their tips only: each node's blocks are
    /// skipped unread. For a scenario that waits for a height, so that the bench's own parsing
    /// of a million blocks (about a quarter of a core in a sync) does not take the cores the
    /// node it measures runs on.
    pub async fn tips(addrs: &[String]) -> anyhow::Result<Watch> {
        Watch::follow(addrs, Follow::Tips).await
    }

    async fn follow(addrs: &[String], follow: Follow) -> anyhow::Result<Watch> {
        let seen = Arc::new(Mutex::new(Seen {
            heights: vec![0; addrs.len()],
            ..Seen::default()
        }));
        let changed = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let link = subscribe(addr, follow).await?;
            let (seen, changed) = (Arc::clone(&seen), Arc::clone(&changed));
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut link = Some(link);
                // A subscriber the node drops for falling behind (`E lagged`: the node does not
                // keep what it has to send a slow reader) subscribes again, as the visualizer
                // does; its first `U tip` says where the node is.
                for _ in 0..MAX_RESUBSCRIBES {
                    let Some(current) = link.take() else { break };
                    if !read(current, i, &seen, &changed).await {
                        break;
                    }
                    link = subscribe(&addr, follow).await.ok();
                }
            }));
        }
        let watch = Watch {
            seen,
            changed,
            tasks,
        };
        Ok(watch)
    }

    /// Runs `f` on what was seen.
    pub fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Waits until `done` holds on what was seen, at most `limit`; returns whether it did.
    pub async fn until(&self, limit: Duration, done: impl Fn(&Seen) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if self.with(&done) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.with(&done);
            }
        }
    }
}

/// How many times one subscription is renewed after the node dropped it for falling behind.
const MAX_RESUBSCRIBES: usize = 1000;

type Link = Framed<TcpStream, Lines>;

/// A subscription to the node at `addr`.
async fn subscribe(addr: &str, follow: Follow) -> anyhow::Result<Link> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut link = Framed::new(stream, Lines::new(follow));
    link.send(Message::Subscribe).await?;
    Ok(link)
}

/// Reads node `i`'s updates into `seen` until the link ends; returns whether the node dropped
/// it for falling behind.
async fn read(mut link: Link, i: usize, seen: &Mutex<Seen>, changed: &Notify) -> bool {
    while let Some(Ok(message)) = link.next().await {
        let now = Instant::now();
        let update = match message {
            // The node checks that a quiet subscriber is still there.
            Message::KeepAlive => {
                if link.send(Message::KeepAlive).await.is_err() {
                    return false;
                }
                continue;
            }
            Message::Error(error) => return error.code == ErrorCode::Lagged,
            Message::Update(update) => update,
            _ => continue,
        };
        let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
        match update {
            Update::Block { block, .. } => {
                let hash = block.header.hash();
                s.block_at.entry((i, hash)).or_insert(now);
                s.contents
                    .entry(hash)
                    .or_insert_with(|| block.records.iter().map(|r| r.id()).collect());
            }
            Update::Tip {
                height, connected, ..
            } => {
                s.heights[i] = height;
                for hash in connected {
                    let ids = s.contents.get(&hash).cloned().unwrap_or_default();
                    for id in ids {
                        s.record_at.entry((i, id)).or_insert(now);
                    }
                }
            }
            // The bench times blocks and records only.
            Update::Status { .. } | Update::Pool { .. } => {}
        }
        drop(s);
        changed.notify_waiters();
    }
    false
}

/// What a [`Watch`] reads of its subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// Every update.
    Blocks,
    /// All but the blocks.
    Tips,
}

/// The start of a block's `U` line: `Update` is tagged by its first field.
const BLOCK_LINE: &[u8] = b"U {\"kind\":\"block\"";

/// The protocol's line codec, dropping block lines unparsed when following tips only.
struct Lines {
    codec: LineCodec<Message>,
    follow: Follow,
}

impl Lines {
    fn new(follow: Follow) -> Lines {
        Lines {
            codec: LineCodec::new(),
            follow,
        }
    }
}

impl Decoder for Lines {
    type Item = Message;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, WireError> {
        if self.follow == Follow::Tips {
            // A line cut before it says what it is waits whole: the codec, once it searched
            // a line's start, must be handed the rest of the same line.
            if src.len() < BLOCK_LINE.len() && BLOCK_LINE.starts_with(src) {
                return Ok(None);
            }
            while src.starts_with(BLOCK_LINE) {
                let Some(end) = src.iter().position(|b| *b == b'\n') else {
                    return Ok(None);
                };
                src.advance(end + 1);
            }
        }
        self.codec.decode(src)
    }
}

impl Encoder<Message> for Lines {
    type Error = WireError;

    fn encode(&mut self, message: Message, dst: &mut BytesMut) -> Result<(), WireError> {
        self.codec.encode(message, dst)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use protocol::codec::encode_line;

    use super::*;

    #[test]
    fn following_tips_skips_block_lines_whole_even_split_across_reads() {
        let block = Message::Update(Update::Block {
            block: protocol::block::genesis(),
            received_ms: 1,
        });
        let tip = Message::Update(Update::Tip {
            hash: protocol::block::genesis().header.hash(),
            height: 7,
            disconnected: Vec::new(),
            connected: Vec::new(),
        });
        let (block_line, tip_line) = (encode_line(&block).unwrap(), encode_line(&tip).unwrap());
        assert!(block_line.as_bytes().starts_with(BLOCK_LINE));

        let mut tips = Lines::new(Follow::Tips);
        // A block line in three reads, the first too short to tell what it is: nothing yet.
        let mut src = BytesMut::from(&block_line.as_bytes()[..5]);
        assert_eq!(tips.decode(&mut src).unwrap(), None);
        src.extend_from_slice(&block_line.as_bytes()[5..20]);
        assert_eq!(tips.decode(&mut src).unwrap(), None);
        src.extend_from_slice(&block_line.as_bytes()[20..]);
        src.extend_from_slice(block_line.as_bytes());
        src.extend_from_slice(tip_line.as_bytes());
        assert_eq!(tips.decode(&mut src).unwrap(), Some(tip.clone()));
        assert!(src.is_empty());

        // Following blocks, the same bytes give both.
        let mut blocks = Lines::new(Follow::Blocks);
        let mut src = BytesMut::from(format!("{block_line}{tip_line}").as_bytes());
        assert_eq!(blocks.decode(&mut src).unwrap(), Some(block));
        assert_eq!(blocks.decode(&mut src).unwrap(), Some(tip));
    }
}
