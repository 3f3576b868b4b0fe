//! A network of real release processes on loopback, and the pieces scenarios share: a peer
//! link that injects blocks, mining on a tip in-process, and the loopback round trip.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use protocol::clock::now_ms;
use protocol::codec::LineCodec;
use protocol::wire::Message;
use protocol::{Block, Keypair, Record};
use testkit::{NodeProc, Tracker, start_network_with};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

use crate::watch::Watch;

/// A tracker and `n` nodes, each in a folder of `dir`, with `extra` flags; waits until the
/// tracker lists them all.
pub async fn network(
    dir: &std::path::Path,
    n: usize,
    extra: &[&str],
) -> anyhow::Result<(Tracker, Vec<NodeProc>)> {
    let tracker = Tracker::start().await;
    let nodes = start_network_with(&tracker, dir, n, extra).await;
    Ok((tracker, nodes))
}

/// [`network`] at the difficulty floor `floor`, every other flag left at the tests' default.
pub async fn network_at(
    dir: &std::path::Path,
    n: usize,
    floor: u32,
) -> anyhow::Result<(Tracker, Vec<NodeProc>)> {
    network(dir, n, &["--difficulty-floor", &floor.to_string()]).await
}

/// A network of `n` nodes at one floor in a temporary folder, and a [`Watch`] on all of them:
/// what the scenarios that time blocks and records run on. Dropping it stops everything.
pub struct Watched {
    /// The nodes' addresses, in the order they started.
    pub addrs: Vec<String>,
    /// Every node's subscription.
    pub watch: Watch,
    /// The nodes.
    pub nodes: Vec<NodeProc>,
    /// The tracker they report to, held until the network is dropped.
    _tracker: Tracker,
    /// Their folder, removed when the network is dropped.
    _dir: tempfile::TempDir,
}

impl Watched {
    /// Starts `n` nodes at `floor` ([`network_at`]) and subscribes to each.
    pub async fn start(n: usize, floor: u32) -> anyhow::Result<Watched> {
        let dir = tempfile::tempdir()?;
        let (tracker, nodes) = network_at(dir.path(), n, floor).await?;
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
        let watch = Watch::start(&addrs).await?;
        Ok(Watched {
            addrs,
            watch,
            nodes,
            _tracker: tracker,
            _dir: dir,
        })
    }

    /// Copies every node's log to `bench-logs/<what>/node-<i>.log` beside the chain cache
    /// (`target/bench-logs`) and returns the folder: for a scenario that fails, since the
    /// network's own folder goes with it.
    pub fn keep_logs(&self, what: &str) -> std::path::PathBuf {
        let dir = crate::chain_cache::dir()
            .with_file_name("bench-logs")
            .join(what);
        let _ = std::fs::create_dir_all(&dir);
        for (i, node) in self.nodes.iter().enumerate() {
            let _ = std::fs::write(dir.join(format!("node-{i}.log")), node.log());
        }
        dir
    }
}

/// A solved block on `parent` holding `records`, at `bits`, stamped now.
pub fn mine_on(parent: &Block, records: Vec<Record>, bits: u32, key: &Keypair) -> Block {
    let timestamp = now_ms().max(parent.header.timestamp + 1);
    let template = Block::template(&parent.header, records, key.account(), bits, timestamp);
    protocol::block::solve(template)
}

/// A link to a node that behaves as a peer: it sends blocks, and reads (and drops) what the
/// node relays back so the node never waits on it.
pub struct Peer {
    link: futures::stream::SplitSink<Framed<TcpStream, LineCodec<Message>>, Message>,
    drain: tokio::task::JoinHandle<()>,
}

impl Peer {
    /// Connects to `addr`.
    pub async fn connect(addr: &str) -> anyhow::Result<Peer> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (link, mut incoming) = Framed::new(stream, LineCodec::<Message>::new()).split();
        let drain = tokio::spawn(async move { while let Some(Ok(_)) = incoming.next().await {} });
        Ok(Peer { link, drain })
    }

    /// Sends one message.
    pub async fn send(&mut self, message: Message) -> anyhow::Result<()> {
        Ok(self.link.send(message).await?)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.drain.abort();
    }
}

/// Round trips of a short line over loopback TCP, in milliseconds: the floor under anything a
/// node does across a connection.
pub async fn loopback_round_trips(samples: usize) -> anyhow::Result<Vec<f64>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let echo = tokio::spawn(async move {
        if let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(true).ok();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if write
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    });
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        write.write_all(b"D\n").await?;
        lines.next_line().await?;
        out.push(started.elapsed().as_secs_f64() * 1e3);
    }
    echo.abort();
    Ok(out)
}

/// How long to wait for anything in a scenario before calling it failed.
pub const PATIENCE: Duration = Duration::from_secs(60);
