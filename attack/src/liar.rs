//! A lying node: it binds a loopback address, registers with the tracker like any node (a signed
//! report every second with a throwaway key), and answers shops and visualizers according to a
//! [`Lie`]. Anyone can do this, since a fresh key is all a node needs to be listed, so the shop
//! and the visualizer must check what they are told: these lies are how the tests show they do.
//!
//! Registration lives in one place, [`report`]: if the tracker ever asks a node to prove its id
//! at its advertised address, that is where the liar learns to answer like a real node.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use protocol::codec::{LineCodec, MAX_LINE};
use protocol::handshake::{Accept, Identity, Nonce};
use protocol::header::Header;
use protocol::params::{MAX_BLOCK_RECORDS, MAX_BLOCKS_PER_MESSAGE};
use protocol::tracker::{Leave, Report, TrackerMessage};
use protocol::wire::{Ack, Blocks, GetBlocks, Message, PendingRecord, Update};
use protocol::{AccountId, Action, Block, BlockHash, Keypair, Record, genesis};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use protocol::clock::now_ms;

/// How the liar lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lie {
    /// Answers a record (`A`) with `K`, then a `B` holding it in a block at `height` (parent
    /// made up) declaring `bits` of proof of work: 0 for no work at all, or the network's floor
    /// for a block that passes proof of work but sits on no chain. Its `D` answer is a chain of
    /// genesis alone, which holds no such block: it contradicts itself.
    FakeMined {
        /// The height the fake block claims (say 1,000,000,000).
        height: u64,
        /// The proof of work it declares and carries.
        bits: u32,
    },
    /// Answers `S` and `D` (what a visualizer sends) with `blocks` blocks of `bits` 0 from
    /// genesis, each holding `records_per_block` validly signed records (the same ones in
    /// every block, signed once).
    ZeroWorkFlood {
        /// How many blocks.
        blocks: usize,
        /// Records in each (capped at the protocol's [`MAX_BLOCK_RECORDS`]).
        records_per_block: usize,
    },
    /// Answers `S` (a visualizer) with its tip at genesis, then a `U` `pool` listing a purchase
    /// "pending" in its pool whose signature does not verify: a record nobody signed, which a
    /// page must not show as waiting to be mined.
    ForgedPending,
    /// A useless peer: proves its id, answers every keep-alive `Z`, answers `D` with no blocks
    /// and `S` with a tip at genesis, and relays nothing. Many of them, listed first, would hold
    /// every outbound slot of a node that kept any link that works.
    Useless,
}

/// Most connections the liar serves at once: it is a test tool, not a server, but its own
/// memory should not depend on who connects.
const MAX_CONNECTIONS: usize = 64;
/// Time between reports to the tracker, as a real node's default.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How long connecting to the tracker or its answer may take.
const TRACKER_TIMEOUT: Duration = Duration::from_secs(2);
/// Most bytes of block JSON in one `C` line: half of [`MAX_LINE`], as a node does, so every
/// answer parses on the other side and the lie is about the blocks, not the framing.
const MAX_SEGMENT_BYTES: usize = MAX_LINE / 2;

/// A lying node, running until [`Liar::stop`] or until it is dropped.
pub struct Liar {
    /// The address it listens on and advertises, `host:port`.
    pub addr: String,
    /// Its id in the tracker's table.
    pub id: AccountId,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// What the liar answers with, made once before it starts.
struct Script {
    lie: Lie,
    key: Keypair,
    /// The address it advertises, for the proof the tracker asks for before listing it.
    addr: String,
    /// The flood's blocks (for [`Lie::ZeroWorkFlood`]): each block's hash, its JSON up to its
    /// records, and the records' JSON shared by all.
    flood: Vec<(BlockHash, String)>,
    flood_records: String,
}

impl Liar {
    /// Binds `bind:0`, prepares the lie (signing and building off the async threads), registers
    /// with the tracker at `tracker` and starts answering.
    pub async fn start(tracker: &str, bind: IpAddr, lie: Lie) -> anyhow::Result<Liar> {
        let listener = TcpListener::bind(SocketAddr::new(bind, 0)).await?;
        let addr = listener.local_addr()?.to_string();
        let key = Keypair::from_seed(rand::random());
        let id = key.account();
        let script = {
            let (lie, key, addr) = (lie.clone(), key.clone(), addr.clone());
            tokio::task::spawn_blocking(move || Script::prepare(lie, key, addr)).await?
        };
        let script = Arc::new(script);
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (height, tip) = script.claimed_tip();
        tasks.spawn(report(
            tracker.to_string(),
            key,
            addr.clone(),
            (height, tip),
            cancel.clone(),
        ));
        tasks.spawn(serve(listener, script, cancel.clone(), tasks.clone()));
        Ok(Liar {
            addr,
            id,
            cancel,
            tasks,
        })
    }

    /// Stops answering, tells the tracker it leaves, and waits for its tasks (a few seconds at
    /// most).
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.tasks.wait()).await;
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The timestamp for the next report or leave: the clock, but always after `last`, since the
/// tracker refuses a timestamp that is not after the node's last one.
fn stamp(last: &mut u64) -> u64 {
    *last = now_ms().max(*last + 1);
    *last
}

/// Registers with the tracker as a node: a signed report every second (reconnecting when the
/// tracker goes away), and a signed leave at the end. The one place the liar talks to the
/// tracker.
async fn report(
    tracker: String,
    key: Keypair,
    addr: String,
    tip: (u64, BlockHash),
    cancel: CancellationToken,
) {
    let mut last = 0;
    while !cancel.is_cancelled() {
        tokio::select! {
            () = cancel.cancelled() => break,
            error = report_session(&tracker, &key, &addr, tip, &mut last) => {
                tracing::debug!(%tracker, %error, "liar: tracker session ended");
            }
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(REPORT_INTERVAL) => {}
        }
    }
    let leave = async {
        let stream = TcpStream::connect(&tracker).await?;
        let mut link = Framed::new(stream, LineCodec::<TrackerMessage>::new());
        link.send(TrackerMessage::Leave(Leave::sign(&key, stamp(&mut last))))
            .await?;
        let _ = link.next().await;
        anyhow::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), leave).await;
}

/// One connection's worth of reports; returns why it ended.
async fn report_session(
    tracker: &str,
    key: &Keypair,
    addr: &str,
    tip: (u64, BlockHash),
    last: &mut u64,
) -> anyhow::Error {
    let stream = match tokio::time::timeout(TRACKER_TIMEOUT, TcpStream::connect(tracker)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return e.into(),
        Err(e) => return e.into(),
    };
    let mut link = Framed::new(
        stream,
        LineCodec::<TrackerMessage>::with_max_line(16 * 1024 * 1024),
    );
    loop {
        let report = Report::sign(key, addr.to_string(), stamp(last), tip, 0.0, 0);
        if let Err(e) = link.send(TrackerMessage::Report(report)).await {
            return e.into();
        }
        match tokio::time::timeout(TRACKER_TIMEOUT, link.next()).await {
            Ok(Some(Ok(TrackerMessage::Topology(_)))) => {}
            other => return anyhow::anyhow!("tracker answered {other:?}"),
        }
        tokio::time::sleep(REPORT_INTERVAL).await;
    }
}

/// Accepts connections until cancelled, at most [`MAX_CONNECTIONS`] at once.
async fn serve(
    listener: TcpListener,
    script: Arc<Script>,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = cancel.cancelled() => return,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let script = Arc::clone(&script);
        let cancel = cancel.clone();
        tasks.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                _ = answer(stream, &script) => {}
            }
            drop(permit);
        });
    }
}

/// One connection: every message gets the lie's answer.
async fn answer(stream: TcpStream, script: &Script) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut link = Framed::new(stream, LineCodec::<Message>::new());
    while let Some(message) = link.next().await {
        match (message?, &script.lie) {
            // The tracker lists only a node that proves its id at its address: a liar has a
            // key like anyone, so it proves it (a listed node is not thereby an honest one).
            (Message::Hello(hello), _) => {
                let me = Identity {
                    key: script.key.clone(),
                    addr: script.addr.clone(),
                };
                let nonce = Nonce(rand::random());
                match Accept::on_hello(&me, &hello, nonce) {
                    Ok((proof, _)) => link.send(Message::Proof(proof)).await?,
                    Err(_) => return Ok(()),
                }
            }
            (Message::Record(record), Lie::FakeMined { height, bits }) => {
                let ack = Ack {
                    id: record.id(),
                    status: protocol::wire::AckStatus::Pending,
                };
                link.send(Message::Ack(ack)).await?;
                let (height, bits, key) = (*height, *bits, script.key.clone());
                let block =
                    tokio::task::spawn_blocking(move || fake_block(record, height, bits, &key))
                        .await?;
                link.send(Message::Block(block)).await?;
            }
            (Message::GetBlocks(_), Lie::FakeMined { .. } | Lie::Useless) => {
                let only_genesis = Blocks {
                    blocks: Vec::new(),
                    more: false,
                    packed: false,
                };
                link.send(Message::Blocks(only_genesis)).await?;
            }
            (Message::Subscribe, Lie::FakeMined { .. } | Lie::Useless) => {
                link.send(tip_update(0, genesis().header.hash())).await?;
            }
            (Message::Subscribe, Lie::ForgedPending) => {
                link.send(tip_update(0, genesis().header.hash())).await?;
                link.send(forged_pool(&script.key)).await?;
            }
            (Message::KeepAlive, Lie::Useless) => link.send(Message::KeepAlive).await?,
            (Message::Subscribe, Lie::ZeroWorkFlood { .. }) => {
                let (height, tip) = script.claimed_tip();
                link.send(tip_update(height, tip)).await?;
            }
            (Message::GetBlocks(request), Lie::ZeroWorkFlood { .. }) => {
                let line = script.flood_segment(&request);
                SinkExt::<Message>::flush(&mut link).await?;
                link.get_mut().write_all(&line).await?;
            }
            // A node that only lies says nothing else.
            _ => {}
        }
    }
    Ok(())
}

fn tip_update(height: u64, hash: BlockHash) -> Message {
    Message::Update(Update::Tip {
        hash,
        height,
        disconnected: Vec::new(),
        connected: Vec::new(),
    })
}

/// A `U` `pool` listing one purchase whose signature was broken after signing.
fn forged_pool(key: &Keypair) -> Message {
    let mut record = Record::purchase(key, 1, "tamarin");
    record.sig.0[0] ^= 1;
    Message::Update(Update::Pool {
        full: true,
        added: vec![PendingRecord {
            record,
            since_ms: now_ms(),
            waiting: false,
        }],
        removed: Vec::new(),
        ready: 1,
        waiting: 0,
    })
}

/// A block at `height` holding `record`, on a parent nobody has, carrying `bits` of work.
fn fake_block(record: Record, height: u64, bits: u32, key: &Keypair) -> Block {
    let mut parent: Header = genesis().header;
    parent.height = height.saturating_sub(1);
    parent.nonce = rand::random();
    parent.timestamp = now_ms().saturating_sub(1);
    let block = Block::template(&parent, vec![record], key.account(), bits, now_ms());
    if bits > 0 {
        protocol::block::solve(block)
    } else {
        block
    }
}

impl Script {
    /// Signs and builds whatever the lie needs, once. CPU work: run it off the async threads.
    fn prepare(lie: Lie, key: Keypair, addr: String) -> Script {
        let mut script = Script {
            lie: lie.clone(),
            key,
            addr,
            flood: Vec::new(),
            flood_records: String::from("[]"),
        };
        if let Lie::ZeroWorkFlood {
            blocks,
            records_per_block,
        } = lie
        {
            let records: Vec<Record> = (0..records_per_block.min(MAX_BLOCK_RECORDS as usize))
                .map(|i| {
                    let signer = Keypair::from_seed(rand::random());
                    let name = format!("flood{i}");
                    Record::sign(&signer, 0, Action::Join { name })
                })
                .collect();
            script.flood_records = serde_json::to_string(&records).unwrap_or_default();
            let mut header = Block::template(
                &genesis().header,
                records,
                script.key.account(),
                0,
                genesis().header.timestamp + 1000,
            )
            .header;
            // Every block holds the same records, so only the links and the clock change.
            for _ in 0..blocks {
                let hash = header.hash();
                let head = format!(
                    "{{\"hash\":{},\"header\":{},\"records\":",
                    serde_json::to_string(&hash).unwrap_or_default(),
                    serde_json::to_string(&header).unwrap_or_default()
                );
                script.flood.push((hash, head));
                header.prev_hash = hash;
                header.height += 1;
                header.timestamp += 1000;
            }
        }
        script
    }

    /// The tip the liar claims: the flood's last block, or genesis.
    fn claimed_tip(&self) -> (u64, BlockHash) {
        match (&self.lie, self.flood.last()) {
            (Lie::ZeroWorkFlood { .. }, Some((hash, _))) => (self.flood.len() as u64, *hash),
            (Lie::FakeMined { height, .. }, _) => (*height, genesis().header.hash()),
            _ => (0, genesis().header.hash()),
        }
    }

    /// The `C` line answering `request`: the flood's blocks after the first locator hash it
    /// holds (from genesis when none), as many as fit in one line.
    fn flood_segment(&self, request: &GetBlocks) -> Vec<u8> {
        let start = request
            .locator
            .iter()
            .find_map(|wanted| self.flood.iter().position(|(hash, _)| hash == wanted))
            .map_or(0, |i| i + 1);
        let mut line = b"C {\"blocks\":[".to_vec();
        let mut end = start;
        for (_, head) in self.flood.iter().skip(start).take(MAX_BLOCKS_PER_MESSAGE) {
            let size = head.len() + self.flood_records.len() + 2;
            if end > start && line.len() + size > MAX_SEGMENT_BYTES {
                break;
            }
            if end > start {
                line.push(b',');
            }
            line.extend_from_slice(head.as_bytes());
            line.extend_from_slice(self.flood_records.as_bytes());
            line.push(b'}');
            end += 1;
        }
        let more = end < self.flood.len();
        line.extend_from_slice(format!("],\"more\":{more}}}\n").as_bytes());
        line
    }
}

#[cfg(test)]
mod tests {
    use protocol::codec::parse_line;

    use super::*;

    #[test]
    fn the_flood_is_valid_json_of_linked_zero_work_blocks() {
        let lie = Lie::ZeroWorkFlood {
            blocks: 30,
            records_per_block: 3,
        };
        let script = Script::prepare(lie, Keypair::from_seed([5; 32]), "127.0.0.1:1".into());
        let mut request = GetBlocks::default();
        let mut parent = genesis().header.hash();
        let mut seen = 0;
        for _ in 0..30 {
            let line = script.flood_segment(&request);
            let text = std::str::from_utf8(&line).unwrap().trim_end();
            let Message::Blocks(segment) = parse_line::<Message>(text.as_bytes()).unwrap() else {
                panic!("not a C line");
            };
            for block in &segment.blocks {
                assert_eq!(block.header.prev_hash, parent);
                assert_eq!(block.header.bits, 0);
                assert_eq!(block.records.len(), 3);
                assert!(block.records.iter().all(|r| r.check().is_ok()));
                parent = block.header.hash();
                seen += 1;
            }
            if !segment.more {
                break;
            }
            request.locator = vec![parent];
        }
        assert_eq!(seen, 30);
        assert_eq!(script.claimed_tip(), (30, parent));
    }

    #[test]
    fn a_fake_block_holds_the_record_at_the_claimed_height() {
        let key = Keypair::from_seed([6; 32]);
        let record = Record::sign(&key, 0, Action::Join { name: "x".into() });
        let block = fake_block(record.clone(), 1_000_000_000, 4, &key);
        assert_eq!(block.header.height, 1_000_000_000);
        assert_eq!(block.records, vec![record]);
        assert!(block.header.hash().leading_zero_bits() >= 4);
        assert!(block.check(&protocol::Params::with_floor(4)).is_ok());
    }
}
