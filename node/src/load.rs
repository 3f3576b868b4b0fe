//! Samples the host's CPU load that is not this node's own, once a report interval (a second by
//! default), on its own thread, so that mining never waits for a sample.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use sysinfo::{ProcessesToUpdate, System};

/// The latest sample, shared with the miner: other processes' CPU load, 0 to 1.
#[derive(Debug, Clone, Default)]
pub struct Load(Arc<AtomicU32>);

impl Load {
    /// The latest sample.
    pub fn get(&self) -> f32 {
        f32::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, value: f32) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

/// Starts the sampler thread, sampling every `period`; it stops soon after `stop` is set.
pub fn spawn(stop: Arc<AtomicBool>, period: Duration) -> Load {
    let load = Load::default();
    let shared = load.clone();
    // What it logs belongs to the node that started it.
    let span = tracing::Span::current();
    let spawned = std::thread::Builder::new().name("load-sampler".into()).spawn(move || {
        let _entered = span.enter();
        let mut system = match System::new() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read CPU load; mining at the difficulty floor");
                return;
            }
        };
        let pid = sysinfo::get_current_pid().ok();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f32;
        while !stop.load(Ordering::Relaxed) {
            system.refresh_cpu_usage();
            let global = system.global_cpu_usage();
            let own = pid
                .and_then(|pid| {
                    system.refresh_processes(ProcessesToUpdate::Some(&[pid]), false);
                    system.process(pid).map(|p| p.cpu_usage())
                })
                .unwrap_or(0.0);
            let other = ((global - own / cpus) / 100.0).clamp(0.0, 1.0);
            shared.set(if other.is_finite() { other } else { 0.0 });
            // A sampling period, not a wait on anything: CPU usage is a rate over an interval.
            std::thread::sleep(period);
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the load sampler; mining at the difficulty floor");
    }
    load
}
