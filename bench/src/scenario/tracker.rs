//! Scenario 7: a tracker with many simulated nodes, each reporting every second on its own
//! connection (signed reports, spread evenly over the second). Measured over a few seconds: the
//! tracker process's CPU share, and the time a client waits for the topology (`Q` to `T` on a
//! kept connection). The references are the loopback round trip, and the CPU share of the bench
//! process that signs and sends all those reports.
//!
//! The tracker lists a node only once it proved its id at its advertised address, so every
//! simulated node advertises one [`Prover`] of the bench's, which answers the tracker's checks
//! for all their keys; and since they all report from 127.0.0.1, the tracker is started with a
//! cap on ids per address above their number.
//!
//! The bench shares the machine with the tracker, so it keeps its own work out of the figures:
//! a simulated node reads only the version from a `T` (what the tracker sends is the same; a
//! real node's parse of the table is the node's cost, not the tracker's), and the client that
//! times the requests runs on a thread of its own, not queued behind a thousand node tasks.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use protocol::Keypair;
use protocol::clock::now_ms;
use protocol::codec::LineCodec;
use protocol::hash::Hash256;
use protocol::tracker::{Report, TrackerMessage};
use testkit::{Prover, Tracker};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedRead, FramedWrite, LinesCodec};

use crate::net::loopback_round_trips;
use crate::report::{Row, percentile};

/// How long the figures are measured over, after every node has joined.
const WINDOW: Duration = Duration::from_secs(5);

/// CPU seconds (user and system) a process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// CPU seconds (user and system) in the text of a `/proc/.../stat` file (a process's or a
/// thread's).
pub(crate) fn stat_cpu_seconds(stat: &str) -> f64 {
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The part of a `T` answer a simulated node keeps: the version. The nodes are skipped unread.
#[derive(serde::Deserialize)]
struct Answer {
    version: Option<u64>,
}

/// The version in a `T` line, or why the line is not a `T`.
fn answer_version(line: &str) -> anyhow::Result<Option<u64>> {
    let payload = line.strip_prefix("T ").ok_or_else(|| {
        anyhow::anyhow!(
            "not a topology: {}",
            line.chars().take(200).collect::<String>()
        )
    })?;
    Ok(serde_json::from_str::<Answer>(payload)?.version)
}

/// The key of simulated node `seed`.
fn node_key(seed: u64) -> Keypair {
    let mut key_seed = [0u8; 32];
    key_seed[..8].copy_from_slice(&seed.to_le_bytes());
    key_seed[8] = 0xbe;
    Keypair::from_seed(key_seed)
}

/// One simulated node: reports every second, starting at `offset` into the second,
/// advertising `advertise` (where the bench's prover answers for it).
async fn simulate(
    addr: String,
    seed: u64,
    offset: Duration,
    advertise: String,
) -> anyhow::Result<()> {
    let key = node_key(seed);
    tokio::time::sleep(offset).await;
    let (read, write) = TcpStream::connect(&addr).await?.into_split();
    let mut sink = FramedWrite::new(write, LineCodec::<TrackerMessage>::new());
    let mut answers = FramedRead::new(read, LinesCodec::new_with_max_length(16 << 20));
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let mut height = 0;
    // As a real node does: the table's version it holds, so an unchanged table is not resent.
    let mut known = None;
    loop {
        ticks.tick().await;
        height += 1;
        let mut report = Report::sign(
            &key,
            advertise.clone(),
            now_ms(),
            (height, Hash256::ZERO),
            0.1,
            20,
        );
        report.known = known;
        sink.send(TrackerMessage::Report(report)).await?;
        match answers.next().await {
            Some(Ok(line)) => known = answer_version(&line)?,
            other => anyhow::bail!("simulated node {seed}: {other:?}"),
        }
    }
}

/// Asks for the topology on one kept connection until [`WINDOW`] after `t0`, pausing 10 ms
/// between answers, and returns how long each answer took, in milliseconds: from sending `Q` to
/// holding the parsed topology, as a shop or the visualizer would.
async fn time_requests(addr: &str, t0: Instant) -> anyhow::Result<Vec<f64>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    // Room for a whole table from the start, so the figure is not the client regrowing its
    // buffer through every answer.
    let mut client = Framed::with_capacity(
        stream,
        LineCodec::<TrackerMessage>::with_max_line(16 << 20),
        1 << 20,
    );
    let mut waits = Vec::new();
    while t0.elapsed() < WINDOW {
        let asked = Instant::now();
        client.send(TrackerMessage::Query).await?;
        match client.next().await {
            Some(Ok(TrackerMessage::Topology(_))) => {}
            other => anyhow::bail!("the topology request failed: {other:?}"),
        }
        waits.push(asked.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(waits)
}

/// Runs the scenario with `n` simulated nodes.
pub async fn run(n: usize) -> anyhow::Result<Vec<Row>> {
    let cap = (2 * n).to_string();
    let limits = [
        "--max-active-per-address",
        &cap,
        "--max-new-ids-per-minute",
        "100000",
        "--max-connections",
        "4096",
        // Every simulated node connects from 127.0.0.1.
        "--max-connections-per-address",
        "4096",
        "--max-nodes",
        "8192",
    ];
    let tracker = Tracker::start_with(&limits).await;
    let pid = tracker
        .pid()
        .ok_or_else(|| anyhow::anyhow!("the tracker is not running"))?
        .to_string();
    let prover = Prover::start("127.0.0.1", (0..n as u64).map(node_key).collect()).await;
    let nodes: Vec<_> = (0..n)
        .map(|i| {
            let offset = Duration::from_secs(1) * i as u32 / n as u32;
            let (tracker, advertise) = (tracker.addr.clone(), prover.addr.clone());
            tokio::spawn(simulate(tracker, i as u64, offset, advertise))
        })
        .collect();
    // Every node has joined once the topology lists them all.
    let started = Instant::now();
    loop {
        let t = tracker.topology().await;
        if t.is_some_and(|t| t.active().count() >= n) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the nodes never all joined"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (cpu0, own0, t0) = (cpu_seconds(&pid), cpu_seconds("self"), Instant::now());
    let addr = tracker.addr.clone();
    let waits = tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(time_requests(&addr, t0))
    })
    .await??;
    let wall = t0.elapsed().as_secs_f64();
    let tracker_cpu = 100.0 * (cpu_seconds(&pid) - cpu0) / wall;
    let own_cpu = 100.0 * (cpu_seconds("self") - own0) / wall;
    // A node that stopped (an error, a dropped connection) no longer loads the tracker: the
    // figures would then be for fewer nodes than they say.
    let stopped = nodes.iter().filter(|node| node.is_finished()).count();
    for node in &nodes {
        node.abort();
    }
    anyhow::ensure!(
        stopped == 0,
        "{stopped} of the {n} simulated nodes stopped reporting during the measurement"
    );
    let rtt = percentile(&loopback_round_trips(1000).await?, 99.0);
    let p99 = percentile(&waits, 99.0);
    let cpu = Row::new(
        "7 tracker",
        format!("CPU share, {n} nodes reporting every second"),
        (tracker_cpu, "% of a core"),
        ("the bench signing and sending the reports", own_cpu),
    )
    .target("< 10%", tracker_cpu < 10.0);
    let topology = Row::new(
        "7 tracker",
        format!("topology request p99, {n} nodes"),
        (p99, "ms"),
        ("loopback TCP round trip p99", rtt),
    )
    .target("< 5 ms", p99 < 5.0)
    .noisy((waits.len() < 100).then(|| format!("only {} requests", waits.len())));
    Ok(vec![cpu, topology])
}
