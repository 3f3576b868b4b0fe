//! Integration tests of the visualizer: a real tracker and real nodes (from `testkit`) on
//! loopback, the visualizer running in-process on port 0 (or as its binary), and a websocket
//! client reading what a browser would. The end-to-end test drives headless Chromium.
//!
//! Helpers here: [`Visualizer`] (runs `visualizer::run` and stops it on drop), [`VisProc`] (the
//! binary, for a test that measures its memory or its command line), [`Page`] (testkit's
//! websocket client that waits for messages with a deadline), [`mine_chain`] (test blocks at a
//! low difficulty, fed to a node as a peer would).

mod browser;
mod cdp;
mod garbage;
mod http;
mod lab;
mod liar;
mod page_model;
mod slots;
mod state;
mod stream;
mod survive;
mod verify;
mod window;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use protocol::clock::now_ms;
use protocol::{Block, BlockHash};
pub use testkit::Page;
use testkit::{FLOOR, InProcess};
use visualizer::view::{BlockSummary, NodeView, Snapshot, ToBrowser};

/// How often the visualizer asks the tracker in tests: often, so tests wait less.
pub const TRACKER_INTERVAL: Duration = Duration::from_millis(200);

/// A visualizer running in this test process; stopped when dropped.
pub struct Visualizer {
    /// Where it serves, `127.0.0.1:PORT`.
    pub addr: String,
    server: InProcess,
}

impl Visualizer {
    /// Starts one for the tracker at `tracker`, on a free loopback port.
    pub async fn start(tracker: &str) -> Visualizer {
        Visualizer::start_with(visualizer::Config {
            tracker: tracker.to_string(),
            tracker_interval: TRACKER_INTERVAL,
            difficulty_floor: testkit::FLOOR,
            ..visualizer::Config::default()
        })
        .await
    }

    /// Starts one with `config`, on a free loopback port.
    pub async fn start_with(config: visualizer::Config) -> Visualizer {
        let server =
            InProcess::start(|listener, shutdown| visualizer::run(config, listener, shutdown))
                .await;
        Visualizer {
            addr: server.addr.clone(),
            server,
        }
    }

    /// Stops it and checks that it stopped cleanly and promptly.
    pub async fn stop(self) {
        self.server.stop(Duration::from_secs(10)).await;
    }
}

/// The `monkey-visualizer` binary, killed when dropped.
pub struct VisProc {
    /// Where it serves, `127.0.0.1:PORT`.
    pub addr: String,
    child: Child,
}

impl VisProc {
    /// Starts it for the tracker at `tracker`, serving on `listen`, at the tests' floor.
    pub fn start(tracker: &str, listen: &str) -> VisProc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_monkey-visualizer"))
            .args(["--tracker", tracker, "--listen", listen])
            .env(
                "MONKEY_VISUALIZER_TRACKER_INTERVAL_MS",
                TRACKER_INTERVAL.as_millis().to_string(),
            )
            .env("MONKEY_VISUALIZER_DIFFICULTY_FLOOR", FLOOR.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start monkey-visualizer");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("its first line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("printed {line:?}"))
            .to_string();
        VisProc { addr, child }
    }

    /// Its resident memory now and at its peak, in KiB.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        testkit::memory_kib(self.child.id())
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, once it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait for the child")
    }
}

impl Drop for VisProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a snapshot's node table satisfies `check` already.
pub fn snapshot_nodes_ok(snapshot: &Snapshot, check: impl Fn(&[NodeView]) -> bool) -> bool {
    check(&snapshot.nodes)
}

/// The summaries in a `Blocks` delta.
pub fn blocks_of(message: &ToBrowser) -> &[BlockSummary] {
    match message {
        ToBrowser::Blocks { blocks } => blocks,
        _ => &[],
    }
}

/// The hashes of blocks.
pub fn hashes(blocks: &[Block]) -> Vec<BlockHash> {
    blocks.iter().map(|b| b.header.hash()).collect()
}

/// A liar telling `lie` from 127.0.0.3, once the tracker lists it and `node` as active.
pub async fn liar_beside(
    tracker: &testkit::Tracker,
    node: &testkit::NodeProc,
    lie: attack::liar::Lie,
) -> attack::liar::Liar {
    let liar = attack::liar::Liar::start(&tracker.addr, [127, 0, 0, 3].into(), lie)
        .await
        .expect("the liar starts");
    tracker
        .wait_active(&[node.id.clone(), liar.id.to_string()])
        .await;
    liar
}
