//! The `mining` benchmark: the miner's hash rate beside the raw SHA-256-with-midstate rate,
//! measured in the same run, on one core and on every core. Run with
//! `cargo bench -p protocol --bench mining`; the last lines print the two ratios.

use std::hint::black_box;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use protocol::genesis;
use protocol::header::Header;
use protocol::pow::{Midstate, mine};

/// Hashes per measured iteration.
const BATCH: u64 = 1 << 16;

/// A template no nonce will ever solve, so the miner runs its full budget.
fn template() -> Header {
    Header {
        bits: 96,
        ..genesis().header
    }
}

/// The reference: one compression per nonce on a precomputed midstate, nothing else.
fn raw(midstate: &Midstate, start: u64, count: u64) -> u32 {
    let mut acc = 0;
    for nonce in start..start + count {
        acc ^= midstate.state_for(nonce)[0];
    }
    acc
}

fn raw_on_threads(midstate: &Midstate, threads: u64, count: u64) {
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || black_box(raw(midstate, t * count, count / threads)));
        }
    });
}

fn bench(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let header = template();
    let midstate = Midstate::new(&header);
    let never = AtomicBool::new(false);
    let mut group = c.benchmark_group("mining");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("raw_midstate_1_core", |b| {
        b.iter(|| black_box(raw(&midstate, 0, BATCH)))
    });
    group.bench_function("miner_1_core", |b| {
        b.iter(|| mine(&header, 1, &never, Some(BATCH)))
    });
    group.bench_function(format!("raw_midstate_{cores}_cores"), |b| {
        b.iter(|| raw_on_threads(&midstate, cores, BATCH))
    });
    group.bench_function(format!("miner_{cores}_cores"), |b| {
        b.iter(|| mine(&header, cores as usize, &never, Some(BATCH)))
    });
    group.finish();
}

/// Hashes per second of `f` run on batches for about `span`.
fn rate(span: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut batches = 0u64;
    while start.elapsed() < span {
        f();
        batches += 1;
    }
    (batches * BATCH) as f64 / start.elapsed().as_secs_f64()
}

/// Interleaves the two measurements so machine noise hits both alike, and prints the ratio.
fn print_ratios() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let header = template();
    let midstate = Midstate::new(&header);
    let never = AtomicBool::new(false);
    for threads in [1, cores] {
        let (mut raw_total, mut miner_total) = (0.0, 0.0);
        for _ in 0..5 {
            raw_total += rate(Duration::from_millis(200), || {
                raw_on_threads(&midstate, threads, BATCH * threads)
            });
            miner_total += rate(Duration::from_millis(200), || {
                black_box(mine(
                    &header,
                    threads as usize,
                    &never,
                    Some(BATCH * threads),
                ));
            });
        }
        // Each batch above is BATCH * threads hashes; `rate` counted BATCH per call.
        let (raw_rate, miner_rate) = (
            raw_total / 5.0 * threads as f64,
            miner_total / 5.0 * threads as f64,
        );
        println!(
            "mining on {threads} core(s): miner {:.2} MH/s, raw midstate {:.2} MH/s, ratio {:.3}",
            miner_rate / 1e6,
            raw_rate / 1e6,
            miner_rate / raw_rate
        );
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
    print_ratios();
}
