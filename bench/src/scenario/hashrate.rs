//! Scenario 1: the node's miner (`protocol::pow::mine`, what the node runs) against raw SHA-256
//! on a precomputed midstate, on one core and on every core, measured back to back.

use std::hint::black_box;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use protocol::genesis;
use protocol::header::Header;
use protocol::pow::{Midstate, mine};

use crate::report::Row;

/// Hashes counted per measurement step.
const STEP: u64 = 1 << 20;

/// A template no nonce solves, so the miner runs its whole budget.
fn template() -> Header {
    Header {
        bits: 96,
        ..genesis().header
    }
}

/// Raw rate: one compression per nonce on `threads` threads for about `time`.
fn raw_rate(threads: u64, time: Duration) -> f64 {
    let midstate = Midstate::new(&template());
    let started = Instant::now();
    let mut hashes = 0u64;
    while started.elapsed() < time {
        std::thread::scope(|s| {
            for t in 0..threads {
                let midstate = &midstate;
                s.spawn(move || {
                    let mut acc = 0u32;
                    for nonce in t * STEP..(t + 1) * STEP {
                        acc ^= midstate.state_for(nonce)[0];
                    }
                    black_box(acc)
                });
            }
        });
        hashes += threads * STEP;
    }
    hashes as f64 / started.elapsed().as_secs_f64()
}

/// The miner's rate on `threads` threads for about `time`.
fn miner_rate(threads: u64, time: Duration) -> f64 {
    let header = template();
    let never = AtomicBool::new(false);
    let started = Instant::now();
    let mut hashes = 0u64;
    while started.elapsed() < time {
        hashes += mine(&header, threads as usize, &never, Some(threads * STEP)).hashes;
    }
    hashes as f64 / started.elapsed().as_secs_f64()
}

/// Runs the scenario for `seconds` per measurement.
pub fn run(seconds: f64, cores: usize) -> Vec<Row> {
    let time = Duration::from_secs_f64(seconds);
    let mut rows = Vec::new();
    for threads in [1, cores as u64] {
        // Interleaved, so a change in the machine's load hits both.
        let raw = (raw_rate(threads, time / 2) + raw_rate(threads, time / 2)) / 2.0;
        let miner = (miner_rate(threads, time / 2) + miner_rate(threads, time / 2)) / 2.0;
        let ratio = miner / raw;
        let cores = if threads == 1 { "core" } else { "cores" };
        let row = Row::new(
            "1 hashrate",
            format!("miner, {threads} {cores}"),
            (miner / 1e6, "MH/s"),
            ("raw SHA-256 midstate", raw / 1e6),
        );
        rows.push(row.target("ratio >= 0.9", ratio >= 0.9));
    }
    rows
}
