//! Helpers shared by the tests: a tracker started on port 0 inside the test, a line-protocol
//! connection to it, a signing node, and deadline loops to wait for a condition.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use protocol::clock::now_ms;
use protocol::codec::{LineCodec, WireError};
use protocol::hash::BlockHash;
use protocol::tracker::{Leave, NodeInfo, NodeStatus, Report, Topology, TrackerMessage};
use protocol::wire::ErrorCode;
use protocol::{AccountId, Keypair};
use testkit::InProcess;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use tracker::Config;

/// How long any single wait in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// How often deadline loops look again.
pub const POLL: Duration = Duration::from_millis(20);

/// Short timings so that aging tests take about a second.
pub fn fast_config() -> Config {
    Config {
        silent_after: Duration::from_millis(300),
        forget_after: Duration::from_secs(1),
        max_connections: 64,
        max_connections_per_address: 64,
        first_message_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(10),
        max_nodes: 64,
        max_clock_skew: Duration::from_secs(300),
        max_new_ids_per_minute: 64,
        max_active_per_address: 64,
        // These simulated nodes listen nowhere; `reach.rs` tests the address check.
        check_reachability: false,
    }
}

/// `fast_config`, but a node that reported once stays active for the length of any test: for
/// tests about something other than silence.
pub fn steady_config() -> Config {
    Config {
        silent_after: Duration::from_secs(10),
        ..fast_config()
    }
}

/// A tracker running inside the test on a port of its own. Dropping it cancels it.
pub struct Tracker {
    /// Where it listens, `127.0.0.1:PORT`.
    pub addr: String,
    server: InProcess,
}

impl Tracker {
    /// Binds port 0 and starts `tracker::run` on it.
    pub async fn start(config: Config) -> Tracker {
        let server =
            InProcess::start(|listener, shutdown| tracker::run(config, listener, shutdown)).await;
        Tracker {
            addr: server.addr.clone(),
            server,
        }
    }

    /// Cancels the tracker and checks that `run` returns `Ok` within 2 s.
    pub async fn stop(self) {
        self.server.stop(Duration::from_secs(2)).await;
    }

    /// A new connection to it.
    pub async fn connect(&self) -> Conn {
        Conn::connect(&self.addr).await
    }
}

/// A connection speaking the tracker's line protocol, every read bounded by [`DEADLINE`].
pub struct Conn {
    framed: Framed<TcpStream, LineCodec<TrackerMessage>>,
}

impl Conn {
    /// Connects to `addr`.
    pub async fn connect(addr: &str) -> Conn {
        let stream = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
            .await
            .expect("connect within the deadline")
            .expect("connect to the tracker");
        Conn {
            framed: Framed::new(stream, LineCodec::new()),
        }
    }

    /// Connects to `addr` from the local address `from` (another loopback address, to look
    /// like another host).
    pub async fn connect_from(addr: &str, from: &str) -> Conn {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        let from: std::net::IpAddr = from.parse().expect("an address");
        socket
            .bind((from, 0).into())
            .expect("bind the local address");
        let addr = addr.parse().expect("a socket address");
        let stream = tokio::time::timeout(DEADLINE, socket.connect(addr))
            .await
            .expect("connect within the deadline")
            .expect("connect to the tracker");
        Conn {
            framed: Framed::new(stream, LineCodec::new()),
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, message: TrackerMessage) {
        self.framed.send(message).await.expect("send a message");
    }

    /// Sends raw bytes, for lines the codec would never write.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.framed
            .get_mut()
            .write_all(bytes)
            .await
            .expect("send raw bytes");
    }

    /// The next message; `None` when the tracker closed the connection.
    pub async fn recv(&mut self) -> Option<Result<TrackerMessage, WireError>> {
        tokio::time::timeout(DEADLINE, self.framed.next())
            .await
            .expect("an answer or a close within the deadline")
    }

    /// Sends `message` and returns the answer.
    pub async fn ask(&mut self, message: TrackerMessage) -> TrackerMessage {
        self.send(message).await;
        self.recv()
            .await
            .expect("an answer, not a close")
            .expect("a well-formed answer")
    }

    /// Sends `message` and returns the topology it must be answered with.
    pub async fn expect_topology(&mut self, message: TrackerMessage) -> Topology {
        match self.ask(message).await {
            TrackerMessage::Topology(topology) => topology,
            other => panic!("expected T, got {other:?}"),
        }
    }

    /// Asks for the topology.
    pub async fn topology(&mut self) -> Topology {
        self.expect_topology(TrackerMessage::Query).await
    }

    /// Sends `message` and checks that it is answered with `E` with this code.
    pub async fn expect_error(&mut self, message: TrackerMessage, code: ErrorCode) {
        match self.ask(message).await {
            TrackerMessage::Error(e) => assert_eq!(e.code, code, "error message: {}", e.message),
            other => panic!("expected E {code}, got {other:?}"),
        }
    }

    /// Reads until the tracker closes the connection (a reset counts as a close) and returns the
    /// messages received before that. Fails if it stays open past the deadline.
    pub async fn read_until_closed(&mut self) -> Vec<TrackerMessage> {
        let mut received = Vec::new();
        for _ in 0..100 {
            match self.recv().await {
                None | Some(Err(WireError::Io(_))) => return received,
                Some(Ok(message)) => received.push(message),
                Some(Err(e)) => panic!("unparseable line from the tracker: {e}"),
            }
        }
        panic!("the tracker sent 100 messages without closing: {received:?}");
    }

    /// Whether nothing has arrived and the connection is still open right now.
    pub async fn is_quiet_and_open(&mut self) -> bool {
        tokio::time::timeout(Duration::ZERO, self.framed.next())
            .await
            .is_err()
    }
}

/// Checks that `messages` is exactly one `E` with `code`.
pub fn assert_single_error(messages: &[TrackerMessage], code: ErrorCode) {
    match messages {
        [TrackerMessage::Error(e)] => assert_eq!(e.code, code, "error message: {}", e.message),
        other => panic!("expected a single E {code}, got {other:?}"),
    }
}

/// A node's identity: a key, an advertised address, and the last timestamp it signed.
pub struct Node {
    /// Its signing key.
    pub key: Keypair,
    /// The address it advertises.
    pub addr: String,
    /// The last timestamp it signed, always increasing.
    pub timestamp: u64,
    /// The tip height it reports, to check that stats travel.
    pub height: u64,
}

impl Node {
    /// A node with the key from `seed`, advertising `127.0.0.1:port`.
    pub fn new(seed: u8, port: u16) -> Node {
        Node {
            key: Keypair::from_seed([seed; 32]),
            addr: format!("127.0.0.1:{port}"),
            timestamp: 0,
            height: 0,
        }
    }

    /// Its id.
    pub fn id(&self) -> AccountId {
        self.key.account()
    }

    /// A fresh timestamp, later than every one before.
    pub fn next_timestamp(&mut self) -> u64 {
        self.timestamp = now_ms().max(self.timestamp + 1);
        self.timestamp
    }

    /// A fresh signed report.
    pub fn report(&mut self) -> Report {
        let timestamp = self.next_timestamp();
        self.height += 1;
        Report::sign(
            &self.key,
            self.addr.clone(),
            timestamp,
            (self.height, BlockHash::ZERO),
            0.5,
            20,
        )
    }

    /// A fresh signed report as a message.
    pub fn r(&mut self) -> TrackerMessage {
        TrackerMessage::Report(self.report())
    }

    /// A fresh signed leave as a message.
    pub fn leave(&mut self) -> TrackerMessage {
        let timestamp = self.next_timestamp();
        TrackerMessage::Leave(Leave::sign(&self.key, timestamp))
    }
}

/// The entry for `id`, if the topology lists it.
pub fn entry<'a>(topology: &'a Topology, id: &AccountId) -> Option<&'a NodeInfo> {
    topology.nodes.iter().find(|node| node.id == *id)
}

/// The status of `id`, if the topology lists it.
pub fn status(topology: &Topology, id: &AccountId) -> Option<NodeStatus> {
    entry(topology, id).map(|node| node.status)
}

/// Asks the tracker at `addr` for the topology (a new connection each time) until `done` holds,
/// polling every [`POLL`] for at most [`DEADLINE`]; returns that topology.
pub async fn wait_for(addr: &str, what: &str, done: impl Fn(&Topology) -> bool) -> Topology {
    let deadline = Instant::now() + DEADLINE;
    let mut last = None;
    for _ in 0..(DEADLINE.as_millis() / POLL.as_millis()) {
        let topology = Conn::connect(addr).await.topology().await;
        if done(&topology) {
            return topology;
        }
        last = Some(topology);
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("timed out waiting until {what}; last topology: {last:?}");
}
