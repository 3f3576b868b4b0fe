//! Scenario 10: the visualizer on a long chain. A node holds `n` empty blocks at the floor (from
//! the bench's disk cache of chains); the
//! `monkey-visualizer` binary starts, follows it to the tip, and then new browsers connect. The
//! figures: the visualizer's peak resident memory (reference: the blocks' binary size, what
//! keeping every block would cost at the least), the time from a new browser's websocket
//! handshake to its first frame, the snapshot, and its size (reference for the time: a
//! loopback round trip).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::chains::{Chains, FLOOR, Kind, seed};
use crate::net::{PATIENCE, loopback_round_trips, network};
use crate::report::Row;

/// New browsers timed; the median is reported.
const BROWSERS: usize = 5;

/// The visualizer binary, killed when dropped.
struct Visualizer {
    addr: String,
    child: Child,
}

impl Visualizer {
    fn start(tracker: &str, log: &std::path::Path) -> anyhow::Result<Visualizer> {
        let mut child = Command::new(testkit::binary("monkey-visualizer"))
            .args(["--tracker", tracker, "--listen", "127.0.0.1:0"])
            .env("MONKEY_VISUALIZER_DIFFICULTY_FLOOR", FLOOR.to_string())
            .env("MONKEY_VISUALIZER_TRACKER_INTERVAL_MS", "200")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .ok_or_else(|| anyhow::anyhow!("the visualizer printed {line:?}"))?
            .to_string();
        Ok(Visualizer { addr, child })
    }

    fn peak_mb(&self) -> anyhow::Result<f64> {
        let (_, peak_kib) = testkit::memory_kib(self.child.id())
            .ok_or_else(|| anyhow::anyhow!("cannot read /proc for the visualizer"))?;
        Ok(peak_kib as f64 * 1024.0 / 1e6)
    }
}

impl Drop for Visualizer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The best height in a new browser's snapshot.
async fn snapshot_height(addr: &str) -> Option<u64> {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .ok()?;
    let frame = tokio::time::timeout(PATIENCE, socket.next())
        .await
        .ok()??
        .ok()?;
    let WsMessage::Text(text) = frame else {
        return None;
    };
    let snapshot: serde_json::Value = serde_json::from_str(&text).ok()?;
    snapshot["height"].as_u64()
}

/// A new browser: the time from opening its websocket to its first frame, and that frame's size.
async fn first_snapshot(addr: &str) -> anyhow::Result<(f64, usize)> {
    let started = Instant::now();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await?;
    let frame = tokio::time::timeout(PATIENCE, socket.next())
        .await
        .map_err(|_| anyhow::anyhow!("no snapshot within {PATIENCE:?}"))?;
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    let size = match frame {
        Some(Ok(WsMessage::Text(text))) => text.len(),
        other => anyhow::bail!("the first frame was {other:?}"),
    };
    Ok((elapsed, size))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs the scenario with a chain of `n` empty blocks.
pub async fn run(n: usize, chains: &mut Chains) -> anyhow::Result<Vec<Row>> {
    anyhow::ensure!(n > 0, "the visualizer scenario needs at least one block");
    let chain = chains.kind(Kind::Empty, FLOOR, n);
    let data_mb = chain.iter().map(|b| b.to_bytes().len() as f64).sum::<f64>() / 1e6;
    let floor = FLOOR.to_string();
    let dir = tempfile::tempdir()?;
    let (tracker, nodes) = network(dir.path(), 1, &["--difficulty-floor", &floor]).await?;
    seed(&nodes[0], &chain).await?;
    drop(chain);
    let started = Instant::now();
    let log = dir.path().join("visualizer.log");
    let vis = Visualizer::start(&tracker.addr, &log)?;
    let limit = PATIENCE + Duration::from_millis(n as u64 / 5);
    loop {
        // The node may mine on past the chain handed to it: what counts is the height.
        if snapshot_height(&vis.addr)
            .await
            .is_some_and(|h| h >= n as u64)
        {
            break;
        }
        if started.elapsed() > limit {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            anyhow::bail!(
                "the visualizer did not reach the tip of {n} blocks within {limit:?}; its log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caught_up = started.elapsed().as_secs_f64();
    println!("  the visualizer followed {n} blocks in {caught_up:.1} s");
    let mut times = Vec::with_capacity(BROWSERS);
    let mut size = 0;
    for _ in 0..BROWSERS {
        let (ms, bytes) = first_snapshot(&vis.addr).await?;
        times.push(ms);
        size = size.max(bytes);
    }
    println!("  first snapshots (ms): {times:?}, {size} bytes");
    let peak = vis.peak_mb()?;
    let round_trip = median(loopback_round_trips(50).await?);
    let snapshot_ms = median(times);
    let snapshot_kb = size as f64 / 1e3;
    Ok(vec![
        Row::new(
            "10 visualizer",
            format!("peak RSS, following {n} blocks"),
            (peak, "MB"),
            ("the blocks' binary size", data_mb),
        )
        .target("< 150 MB", peak < 150.0),
        Row::new(
            "10 visualizer",
            format!("new browser's first snapshot, {n} blocks (median of {BROWSERS})"),
            (snapshot_ms, "ms"),
            ("loopback round trip", round_trip),
        )
        .target("< 1000 ms", snapshot_ms < 1000.0),
        Row::new(
            "10 visualizer",
            format!("snapshot size, {n} blocks"),
            (snapshot_kb, "kB"),
            ("the blocks' binary size", data_mb * 1e3),
        ),
    ])
}
