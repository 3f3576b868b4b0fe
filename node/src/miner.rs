//! The mining thread: takes block templates from the chain actor, searches nonces on every
//! configured core with the protocol's midstate miner, and hands solved blocks back. A new
//! template cancels the current search at once (the miner sees the flag within a millisecond).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use protocol::Block;
use protocol::pow::mine;

/// A solved block with what it took.
#[derive(Debug)]
pub struct Solved {
    /// The job it solves, as [`Miner::submit`] numbered it.
    pub job: u64,
    /// The block, ready to insert.
    pub block: Block,
    /// Hashes tried.
    pub hashes: u64,
    /// Time spent.
    pub elapsed: Duration,
}

struct Job {
    id: u64,
    template: Block,
    cancel: Arc<AtomicBool>,
}

/// The chain actor's handle on the mining thread.
pub struct Miner {
    jobs: mpsc::Sender<Job>,
    /// The job being searched, until it is stopped or solved.
    current: Option<(u64, Arc<AtomicBool>)>,
    next_job: u64,
}

impl Miner {
    /// Starts the mining thread; `on_solved` runs on it for every block found.
    pub fn spawn(
        threads: usize,
        on_solved: impl Fn(Solved) + Send + 'static,
    ) -> std::io::Result<Miner> {
        let (jobs, rx) = mpsc::channel::<Job>();
        // What it logs belongs to the node that started it.
        let span = tracing::Span::current();
        std::thread::Builder::new()
            .name("miner".into())
            .spawn(move || {
                let _entered = span.enter();
                while let Ok(mut job) = rx.recv() {
                    // Only the newest template matters.
                    while let Ok(newer) = rx.try_recv() {
                        job = newer;
                    }
                    if job.cancel.load(Ordering::Relaxed) {
                        continue;
                    }
                    let start = Instant::now();
                    let outcome = mine(&job.template.header, threads, &job.cancel, None);
                    if let Some(header) = outcome.header {
                        let block = Block {
                            header,
                            records: job.template.records,
                        };
                        on_solved(Solved {
                            job: job.id,
                            block,
                            hashes: outcome.hashes,
                            elapsed: start.elapsed(),
                        });
                    }
                }
            })?;
        Ok(Miner {
            jobs,
            current: None,
            next_job: 1,
        })
    }

    /// Mines `template` from now on, abandoning the current search.
    pub fn submit(&mut self, template: Block) {
        self.stop();
        let cancel = Arc::new(AtomicBool::new(false));
        let id = self.next_job;
        self.next_job += 1;
        self.current = Some((id, Arc::clone(&cancel)));
        // The thread only goes away with the process; nothing to do if it did.
        let _ = self.jobs.send(Job {
            id,
            template,
            cancel,
        });
    }

    /// Notes that `job` was solved: the miner is idle unless a newer job was submitted since.
    pub fn solved(&mut self, job: u64) {
        if self.current.as_ref().is_some_and(|(id, _)| *id == job) {
            self.current = None;
        }
    }

    /// Whether a search is under way.
    pub fn is_busy(&self) -> bool {
        self.current.is_some()
    }

    /// Stops the current search, if any.
    pub fn stop(&mut self) {
        if let Some((_, cancel)) = self.current.take() {
            cancel.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.stop();
    }
}
