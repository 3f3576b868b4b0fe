//! Talking to a node: a line client, and the whole best chain fetched with `D`.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use protocol::codec::LineCodec;
use protocol::wire::{GetBlocks, Message};
use protocol::{Block, Record};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::DEADLINE;

/// A connection to a node speaking lines.
pub struct Client {
    link: Framed<TcpStream, LineCodec<Message>>,
}

impl Client {
    /// Connects to a node; fails the test if it cannot.
    pub async fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect to node");
        stream.set_nodelay(true).ok();
        Client {
            link: Framed::new(stream, LineCodec::new()),
        }
    }

    /// Connects to a node from the local address `from` (another loopback address plays
    /// another host); fails the test if it cannot.
    pub async fn connect_from(addr: &str, from: std::net::IpAddr) -> Client {
        let socket = match from {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .expect("a socket");
        socket
            .bind((from, 0).into())
            .expect("bind the local address");
        let addr = addr.parse().expect("a socket address");
        let stream = socket.connect(addr).await.expect("connect to node");
        stream.set_nodelay(true).ok();
        Client {
            link: Framed::new(stream, LineCodec::new()),
        }
    }

    /// Sends one message; fails the test if the connection is gone.
    pub async fn send(&mut self, message: Message) {
        self.link.send(message).await.expect("send");
    }

    /// The next message, or `None` at end of stream or error; fails the test after [`DEADLINE`].
    pub async fn next(&mut self) -> Option<Message> {
        tokio::time::timeout(DEADLINE, self.link.next())
            .await
            .expect("no answer in time")?
            .ok()
    }

    /// Sends a record and waits for the block that holds it; fails the test if it is refused.
    pub async fn submit_and_wait(&mut self, record: Record) -> Block {
        let id = record.id();
        self.send(Message::Record(record)).await;
        loop {
            match self.next().await {
                Some(Message::Ack(ack)) => assert_eq!(ack.id, id),
                // The node checks that a quiet client is still there.
                Some(Message::KeepAlive) => self.send(Message::KeepAlive).await,
                Some(Message::Block(block)) if block.records.iter().any(|r| r.id() == id) => {
                    return block;
                }
                Some(Message::Error(e)) => panic!("record refused: {} {}", e.code, e.message),
                other => panic!("unexpected answer {other:?}"),
            }
        }
    }
}

/// The node's whole best chain (genesis excluded), fetched with `D` until no more follow;
/// `None` if the node cannot be reached or does not answer. A reorg while paging starts over.
pub async fn fetch_chain(addr: &str) -> Option<Vec<Block>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let mut link = Framed::new(stream, LineCodec::<Message>::new());
    let mut chain: Vec<Block> = Vec::new();
    for _ in 0..100_000 {
        let locator = chain
            .last()
            .map(|b| vec![b.header.hash()])
            .unwrap_or_default();
        link.send(Message::GetBlocks(GetBlocks::json_after(locator)))
            .await
            .ok()?;
        // The node also asks us for our chain once; skip anything but the answer.
        let (blocks, more) = loop {
            match tokio::time::timeout(Duration::from_secs(10), link.next())
                .await
                .ok()??
            {
                Ok(Message::Blocks(c)) => break (c.blocks, c.more),
                Ok(_) => continue,
                Err(_) => return None,
            }
        };
        let continues = match (blocks.first(), chain.last()) {
            (Some(first), Some(last)) => first.header.prev_hash == last.header.hash(),
            _ => true,
        };
        if !continues {
            chain.clear();
            continue;
        }
        chain.extend(blocks);
        if !more {
            return Some(chain);
        }
    }
    None
}

/// Submits `record` the way a shop does: to the first node, and on a refused connection, a drop
/// or no block within `per_node`, the same signed record to the next, round after round.
/// Returns the block holding it, or `None` after `rounds` rounds. The same record id is never
/// applied twice, so retrying cannot buy twice.
pub async fn submit_with_retry(
    addrs: &[String],
    record: &Record,
    per_node: Duration,
    rounds: usize,
) -> Option<Block> {
    let id = record.id();
    for _ in 0..rounds {
        for addr in addrs {
            let attempt = async {
                let stream = TcpStream::connect(addr).await.ok()?;
                let mut link = Framed::new(stream, LineCodec::<Message>::new());
                link.send(Message::Record(record.clone())).await.ok()?;
                // Bounded by `per_node` below; a node sends a handful of lines per record.
                while let Some(Ok(message)) = link.next().await {
                    match message {
                        Message::Block(block) if block.records.iter().any(|r| r.id() == id) => {
                            return Some(block);
                        }
                        Message::Error(e) => {
                            eprintln!("submit_with_retry: {addr} said {} {}", e.code, e.message);
                            return None;
                        }
                        _ => {}
                    }
                }
                None
            };
            if let Ok(Some(block)) = tokio::time::timeout(per_node, attempt).await {
                return Some(block);
            }
        }
    }
    None
}
