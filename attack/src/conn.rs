//! A raw connection to the node from a chosen local address, and the probe that follows every
//! attack.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use protocol::codec::{LineCodec, encode_line};
use protocol::wire::{ErrorCode, GetBlocks, Message};
use protocol::{Block, BlockHash};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::codec::Framed;

use crate::{ANSWER_TIMEOUT, Outcome, Target};

/// A connection that can send raw bytes or messages and read messages.
pub struct RawConn {
    link: Framed<TcpStream, LineCodec<Message>>,
}

/// The writing half of a [`RawConn::split`].
pub type Sink = futures::stream::SplitSink<Framed<TcpStream, LineCodec<Message>>, Message>;
/// The reading half of a [`RawConn::split`].
pub type Stream = futures::stream::SplitStream<Framed<TcpStream, LineCodec<Message>>>;

/// What the probe after an attack saw.
#[derive(Debug, Default)]
pub struct Probe {
    /// `E` codes seen before the probe's answer or the close.
    pub errors: Vec<String>,
    /// Whether the node closed the connection.
    pub closed: bool,
    /// Whether the node answered the probe's `D` with a `C`.
    pub served: bool,
}

impl RawConn {
    /// Connects to the target's node from the target's local address.
    pub async fn open(target: &Target) -> anyhow::Result<RawConn> {
        let socket = if target.from.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind((target.from, 0).into())?;
        let addr = tokio::net::lookup_host(&target.node)
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{} resolves to nothing", target.node))?;
        let stream = tokio::time::timeout(ANSWER_TIMEOUT, socket.connect(addr)).await??;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            link: Framed::new(stream, LineCodec::new()),
        })
    }

    /// The connection as a sink and a stream, for floods that read answers while they write.
    pub fn split(self) -> (Sink, Stream) {
        self.link.split()
    }

    /// Writes raw bytes; false when the node has closed the connection.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> bool {
        self.link.get_mut().write_all(bytes).await.is_ok()
    }

    /// Sends a message; false when the node has closed the connection.
    pub async fn send(&mut self, message: &Message) -> bool {
        self.link.send(message).await.is_ok()
    }

    /// Sends a message without flushing, for floods; false when the connection is gone.
    pub async fn feed(&mut self, message: &Message) -> bool {
        self.link.feed(message).await.is_ok()
    }

    /// Flushes what was fed.
    pub async fn flush(&mut self) -> bool {
        SinkExt::<&Message>::flush(&mut self.link).await.is_ok()
    }

    /// The next message, `None` at the end of the stream, on a bad line or after the timeout.
    pub async fn next(&mut self) -> Option<Message> {
        match tokio::time::timeout(ANSWER_TIMEOUT, self.link.next()).await {
            Ok(Some(Ok(message))) => Some(message),
            _ => None,
        }
    }

    /// The next line as it comes, without a timeout of its own.
    pub async fn next_raw(&mut self) -> Option<Message> {
        self.link.next().await?.ok()
    }

    /// Sends `D` and reads until its `C` arrives (served) or the connection ends (closed),
    /// collecting the `E` codes on the way.
    pub async fn probe(mut self) -> Probe {
        let mut probe = Probe::default();
        if !self.send(&Message::GetBlocks(GetBlocks::default())).await {
            probe.closed = true;
            return probe;
        }
        // The node may send relays and its own `D` first: bounded by the timeout per message
        // and a count, so a chatty node cannot keep the probe going for ever.
        for _ in 0..10_000 {
            match self.next().await {
                Some(Message::Blocks(_)) => {
                    probe.served = true;
                    return probe;
                }
                Some(Message::Error(e)) => probe.errors.push(e.code.to_string()),
                Some(_) => {}
                None => {
                    probe.closed = true;
                    return probe;
                }
            }
        }
        probe
    }

    /// The node's best chain, paged with `D` (genesis first).
    pub async fn chain(&mut self) -> anyhow::Result<Vec<Block>> {
        let mut chain = vec![protocol::genesis()];
        for _ in 0..1_000_000 {
            let tip: BlockHash = chain.last().map(|b| b.header.hash()).unwrap_or_default();
            if !self
                .send(&Message::GetBlocks(GetBlocks::json_after(vec![tip])))
                .await
            {
                anyhow::bail!("the node closed the connection");
            }
            let (blocks, more) = loop {
                match self.next().await {
                    Some(Message::Blocks(c)) => break (c.blocks, c.more),
                    Some(_) => continue,
                    None => anyhow::bail!("the node did not answer D"),
                }
            };
            chain.extend(blocks);
            if !more {
                return Ok(chain);
            }
        }
        anyhow::bail!("the chain did not end")
    }
}

/// Sends `messages` on a new connection, then probes it.
pub async fn send_and_probe(target: &Target, messages: &[Message]) -> anyhow::Result<Outcome> {
    let mut conn = RawConn::open(target).await?;
    let mut sent = 0;
    for message in messages {
        if !conn.send(message).await {
            break;
        }
        sent += 1;
    }
    Ok(outcome_of(sent, conn.probe().await))
}

/// An outcome from what a probe saw.
pub fn outcome_of(sent: usize, probe: Probe) -> Outcome {
    Outcome {
        sent,
        errors: probe.errors,
        closed: probe.closed,
        still_served: probe.served,
        ..Outcome::default()
    }
}

/// Whether a new connection from the target's address is refused with `E banned`.
pub async fn is_banned(target: &Target) -> bool {
    let Ok(mut conn) = RawConn::open(target).await else {
        return false;
    };
    // A banned address is told so at once; anyone else hears nothing until they speak.
    matches!(
        tokio::time::timeout(Duration::from_millis(500), conn.link.next()).await,
        Ok(Some(Ok(Message::Error(e)))) if e.code == ErrorCode::Banned
    )
}

/// One line of bytes for a message, for attacks that corrupt what they send.
pub fn line_of(message: &Message) -> Vec<u8> {
    encode_line(message)
        .map(String::into_bytes)
        .unwrap_or_default()
}

/// The block the node's chain ends with.
pub fn tip_of(chain: &[Block]) -> &Block {
    // `chain` always starts with genesis.
    &chain[chain.len() - 1]
}
