//! The `monkey-node` binary: its flags; logging, the listener and signals are `daemon::main`,
//! the rest is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use daemon::Show;
use node::{Config, Node};

/// A Monkeychain node: mines, relays, syncs and stores the chain.
#[derive(Debug, Parser)]
#[command(name = "monkey-node", version, about)]
struct Args {
    /// The tracker's address.
    #[arg(long, env = "MONKEY_NODE_TRACKER", default_value = "127.0.0.1:7070")]
    tracker: String,
    /// The address to listen on for peers and shops.
    #[arg(long, env = "MONKEY_NODE_LISTEN", default_value = "127.0.0.1:0")]
    listen: String,
    /// The address others reach this node at (default: the listening address). Set it to
    /// THIS-HOST:PORT when listening on 0.0.0.0.
    #[arg(long, env = "MONKEY_NODE_ADVERTISE")]
    advertise: Option<String>,
    /// Where the chain and the node's key are kept (default: a `node` folder in the platform's
    /// data directory). One node per data dir.
    #[arg(long, env = "MONKEY_NODE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Mining threads (default: every core).
    #[arg(long, env = "MONKEY_NODE_THREADS")]
    threads: Option<usize>,
    /// The lowest difficulty, in leading zero bits, a block may have on this network.
    #[arg(long, env = "MONKEY_NODE_DIFFICULTY_FLOOR", default_value_t = protocol::params::DEFAULT_DIFFICULTY_FLOOR)]
    difficulty_floor: u32,
    /// Test only: a file of peer ids (hex, one per line) this node refuses to talk to, read
    /// again every second. Tests split a network in two with it.
    #[arg(long, env = "MONKEY_NODE_REFUSE_PEERS_FILE", hide = true)]
    refuse_peers_file: Option<PathBuf>,
    /// Most peers this node connects to.
    #[arg(long, env = "MONKEY_NODE_MAX_PEERS", default_value_t = 8)]
    max_peers: usize,
    /// Milliseconds a client or subscriber may stay silent before it is closed; one that may
    /// have nothing to say (a subscriber, a client waiting on a record) is sent a keep-alive
    /// `Z` halfway, which it must answer.
    #[arg(long, env = "MONKEY_NODE_IDLE_TIMEOUT_MS", default_value_t = node::conn::IDLE_TIMEOUT.as_millis() as u64)]
    idle_timeout_ms: u64,
    /// Milliseconds between reports to the tracker; also how often the CPU load is sampled and
    /// subscribers (the visualizer) are told the load, the difficulty and the peers.
    #[arg(long, env = "MONKEY_NODE_REPORT_INTERVAL_MS", default_value_t = 1000)]
    report_interval_ms: u64,
    /// Milliseconds a link this node opened may deliver no new block before its slot may go to
    /// another candidate (one such rotation per period at most), so peers that answer but relay
    /// nothing cannot hold the slots.
    #[arg(long, env = "MONKEY_NODE_PEER_ROTATION_MS", default_value_t = node::peers::PEER_ROTATION.as_millis() as u64)]
    peer_rotation_ms: u64,
    /// Most bytes of blocks the node keeps in its events for connections that have not taken
    /// them yet; past it, the slowest fall behind. Less in tests.
    #[arg(long, env = "MONKEY_NODE_MAX_EVENT_BYTES", default_value_t = node::actor::MAX_EVENT_BYTES, hide = true)]
    max_event_bytes: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let listen = args.listen.clone();
    daemon::main(
        "monkey-node",
        &listen,
        Show::Address,
        || open(args),
        |node: Node, listener, shutdown| node.run(listener, shutdown),
    )
}

/// Checks the flags and opens the node's store and key; nothing listens yet.
fn open(args: Args) -> anyhow::Result<Node> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => dirs::data_dir()
            .context("no data directory on this platform; pass --data-dir")?
            .join("monkeychain")
            .join("node"),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    anyhow::ensure!(threads > 0, "--threads must be at least 1");
    anyhow::ensure!(
        args.report_interval_ms > 0,
        "--report-interval-ms must be more than zero"
    );
    anyhow::ensure!(
        args.peer_rotation_ms > 0,
        "--peer-rotation-ms must be more than zero"
    );
    anyhow::ensure!(
        args.idle_timeout_ms > 0,
        "--idle-timeout-ms must be more than zero"
    );
    anyhow::ensure!(
        args.max_event_bytes > 0,
        "--max-event-bytes must be more than zero"
    );
    anyhow::ensure!(
        args.difficulty_floor <= protocol::params::MAX_BITS,
        "--difficulty-floor must be at most {}",
        protocol::params::MAX_BITS
    );
    let config = Config {
        tracker: args.tracker,
        advertise: args.advertise,
        data_dir,
        threads,
        difficulty_floor: args.difficulty_floor,
        max_peers: args.max_peers,
        peer_rotation: Duration::from_millis(args.peer_rotation_ms),
        report_interval: Duration::from_millis(args.report_interval_ms),
        refuse_peers_file: args.refuse_peers_file,
        idle_timeout: Duration::from_millis(args.idle_timeout_ms),
        max_event_bytes: args.max_event_bytes,
    };
    Node::open(config)
}
