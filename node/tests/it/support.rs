//! Test helpers: a tracker, node processes, a line client, and deadline waits.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use protocol::codec::LineCodec;
use protocol::tracker::{NodeStatus, Topology};
use protocol::wire::{GetBlocks, Message};
use protocol::{Action, Block, BlockHash, Keypair, Record, RecordId};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// The floor nodes in tests run at: a block takes a few hundred hashes.
pub const FLOOR: u32 = 8;
/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` every 20 ms until it returns `Some`, failing the test after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A tracker running in this test process.
pub struct Tracker {
    pub addr: String,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Tracker {
    pub async fn start() -> Tracker {
        Tracker::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(addr: &str) -> Tracker {
        let listener = TcpListener::bind(addr).await.expect("bind tracker");
        let addr = listener.local_addr().unwrap().to_string();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(tracker::run(
            tracker::Config::default(),
            listener,
            cancel.clone(),
        ));
        Tracker { addr, cancel, task }
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }

    pub async fn topology(&self) -> Option<Topology> {
        tracker::client::query(&self.addr, Duration::from_secs(2))
            .await
            .ok()
    }

    /// Waits until exactly `ids` are active.
    pub async fn wait_active(&self, ids: &[String]) {
        wait_for("the topology", DEADLINE, || async {
            let t = self.topology().await?;
            let mut active: Vec<String> = t.active().map(|n| n.id.to_string()).collect();
            active.sort();
            let mut want = ids.to_vec();
            want.sort();
            (active == want).then_some(())
        })
        .await
    }

    pub async fn status_of(&self, id: &str) -> Option<NodeStatus> {
        let t = self.topology().await?;
        t.nodes
            .iter()
            .find(|n| n.id.to_string() == id)
            .map(|n| n.status)
    }
}

/// A monkey-node process.
pub struct NodeProc {
    pub addr: String,
    pub id: String,
    pub dir: PathBuf,
    child: Child,
}

impl NodeProc {
    /// Starts a node on `dir` reporting to `tracker`.
    pub fn start(tracker: &str, dir: &Path) -> NodeProc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.with_extension("log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_monkey-node"))
            .args([
                "--tracker",
                tracker,
                "--listen",
                "127.0.0.1:0",
                "--threads",
                "1",
            ])
            .args(["--difficulty-floor", &FLOOR.to_string()])
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start monkey-node");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let seed = std::fs::read_to_string(dir.join("node.key")).unwrap();
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(seed.trim(), &mut bytes).unwrap();
        let id = Keypair::from_seed(bytes).account().to_string();
        NodeProc {
            addr,
            id,
            dir: dir.to_path_buf(),
            child,
        }
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status (at most 10 s).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for _ in 0..500 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("node did not stop within 10 s of SIGTERM");
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A failing test shows what each of its nodes was doing.
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of node {} ({}):", self.id, self.addr);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `n` nodes in folders of `dir` and waits until the tracker lists them all as active.
pub async fn start_network(tracker: &Tracker, dir: &Path, n: usize) -> Vec<NodeProc> {
    let nodes: Vec<NodeProc> = (0..n)
        .map(|i| NodeProc::start(&tracker.addr, &dir.join(format!("n{i}"))))
        .collect();
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    tracker.wait_active(&ids).await;
    nodes
}

/// A connection to a node speaking lines.
pub struct Client {
    link: Framed<TcpStream, LineCodec<Message>>,
}

impl Client {
    pub async fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect to node");
        Client {
            link: Framed::new(stream, LineCodec::new()),
        }
    }

    pub async fn send(&mut self, message: Message) {
        self.link.send(message).await.expect("send");
    }

    /// The next message, or `None` at end of stream or error; fails the test after `DEADLINE`.
    pub async fn next(&mut self) -> Option<Message> {
        tokio::time::timeout(DEADLINE, self.link.next())
            .await
            .expect("no answer in time")?
            .ok()
    }

    /// Sends a record and waits for the block that holds it.
    pub async fn submit_and_wait(&mut self, record: Record) -> Block {
        let id = record.id();
        self.send(Message::Record(record)).await;
        loop {
            match self.next().await {
                Some(Message::Ack(ack)) => assert_eq!(ack.id, id),
                Some(Message::Block(block)) if block.records.iter().any(|r| r.id() == id) => {
                    return block;
                }
                Some(Message::Error(e)) => panic!("record refused: {} {}", e.code, e.message),
                other => panic!("unexpected answer {other:?}"),
            }
        }
    }
}

/// The node's whole best chain (genesis excluded), fetched with `D` until no more follow.
pub async fn fetch_chain(addr: &str) -> Option<Vec<Block>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let mut link = Framed::new(stream, LineCodec::<Message>::new());
    let mut chain: Vec<Block> = Vec::new();
    loop {
        let locator = chain
            .last()
            .map(|b| vec![b.header.hash()])
            .unwrap_or_default();
        link.send(Message::GetBlocks(GetBlocks { locator }))
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
        chain.extend(blocks);
        if !more {
            return Some(chain);
        }
    }
}

/// The tip hash of a fetched chain.
pub fn tip(chain: &[Block]) -> BlockHash {
    chain
        .last()
        .map_or(protocol::genesis().header.hash(), |b| b.header.hash())
}

/// How many times each record id appears in a chain.
pub fn record_counts(chain: &[Block]) -> std::collections::HashMap<RecordId, usize> {
    let mut counts = std::collections::HashMap::new();
    for block in chain {
        for r in &block.records {
            *counts.entry(r.id()).or_insert(0) += 1;
        }
    }
    counts
}

/// Waits until every node's chain holds each of `ids` exactly once and all tips agree.
pub async fn wait_all_agree(nodes: &[&NodeProc], ids: &[RecordId]) -> Vec<Block> {
    wait_for(
        "every node to hold every record once, on one tip",
        DEADLINE,
        || async {
            let mut tips = Vec::new();
            let mut last = None;
            for node in nodes {
                let chain = fetch_chain(&node.addr).await?;
                let counts = record_counts(&chain);
                if ids.iter().any(|id| counts.get(id) != Some(&1)) {
                    return None;
                }
                assert!(counts.values().all(|&n| n == 1), "a record applied twice");
                tips.push(tip(&chain));
                last = Some(chain);
            }
            tips.windows(2).all(|w| w[0] == w[1]).then_some(last?)
        },
    )
    .await
}

pub fn key(n: u8) -> Keypair {
    Keypair::from_seed([n; 32])
}

pub fn join(k: &Keypair, name: &str) -> Record {
    Record::sign(k, 0, Action::Join { name: name.into() })
}

pub fn buy(k: &Keypair, seq: u64, monkey: &str) -> Record {
    Record::sign(
        k,
        seq,
        Action::Purchase {
            monkey: monkey.into(),
        },
    )
}
