//! Reports to the tracker every second over one persistent connection and keeps the latest
//! topology. When the tracker is unreachable the node keeps working with the peers it has,
//! retries with backoff, and logs the change of state once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use protocol::Keypair;
use protocol::codec::LineCodec;
use protocol::tracker::{Leave, Report, Topology, TrackerMessage};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::actor::Status;
use protocol::clock::now_ms;

/// How long to wait for the tracker to accept a connection or answer a report.
const TRACKER_TIMEOUT: Duration = Duration::from_secs(2);
/// The first pause before reconnecting to a tracker that went away.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// The longest pause between reconnection attempts: one report interval, so that a restarted
/// tracker hears from every node within about a second and its topology is whole within two.
/// An attempt costs one connection a second, nothing a tracker notices.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The timestamp to sign a report or a leave with: the clock, but always after the last one
/// signed in this process. The tracker refuses a timestamp that is not after the node's last
/// one, so a leave in the same millisecond as a report was refused as replayed and the node
/// stayed listed until it went silent. Process-wide, so several nodes in one process (the demo)
/// share it; it only ever moves a stamp by a millisecond.
fn stamp() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_ms();
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or_else(|last| last);
    now.max(previous + 1)
}

/// Where and how to report.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// The tracker's address.
    pub tracker: String,
    /// Our advertised address.
    pub advertise: String,
    /// Our key.
    pub key: Keypair,
    /// Time between reports.
    pub interval: Duration,
}

type TrackerLink = Framed<TcpStream, LineCodec<TrackerMessage>>;

impl Reporter {
    /// Reports until `cancel`, then says goodbye.
    pub async fn run(
        self,
        status: watch::Receiver<Status>,
        topology: watch::Sender<Topology>,
        cancel: CancellationToken,
    ) {
        let mut reachable = true;
        let mut backoff = MIN_BACKOFF;
        while !cancel.is_cancelled() {
            match self
                .session(&status, &topology, &cancel, &mut reachable)
                .await
            {
                Ok(()) => return,
                Err(error) => {
                    if reachable {
                        // It was answering until now: try again soon.
                        backoff = MIN_BACKOFF;
                        tracing::warn!(tracker = %self.tracker, %error, "tracker unreachable; carrying on with known peers");
                        reachable = false;
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        self.leave_fresh().await;
    }

    /// One connection's worth of reports. `Ok` means we left cleanly.
    async fn session(
        &self,
        status: &watch::Receiver<Status>,
        topology: &watch::Sender<Topology>,
        cancel: &CancellationToken,
        reachable: &mut bool,
    ) -> anyhow::Result<()> {
        let stream =
            tokio::time::timeout(TRACKER_TIMEOUT, TcpStream::connect(&self.tracker)).await??;
        let mut link = Framed::new(
            stream,
            LineCodec::<TrackerMessage>::with_max_line(16 * 1024 * 1024),
        );
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    let leave = TrackerMessage::Leave(Leave::sign(&self.key, stamp()));
                    link.send(leave).await?;
                    let _ = tokio::time::timeout(Duration::from_millis(500), link.next()).await;
                    return Ok(());
                }
                _ = ticker.tick() => {}
            }
            let s = status.borrow().clone();
            let mut report = Report::sign(
                &self.key,
                self.advertise.clone(),
                stamp(),
                (s.height, s.tip),
                s.load,
                s.difficulty,
            );
            // The tracker answers "unchanged" instead of the whole table when we hold it.
            report.known = topology.borrow().version;
            link.send(TrackerMessage::Report(report)).await?;
            match tokio::time::timeout(TRACKER_TIMEOUT, link.next()).await? {
                Some(Ok(TrackerMessage::Topology(t))) => {
                    if !*reachable {
                        tracing::info!(tracker = %self.tracker, "tracker reachable again");
                        *reachable = true;
                    }
                    if t.unchanged {
                        // Still a tick for the peer manager: it redials lost peers and rereads
                        // the refused list on every report's answer. An "unchanged" for another
                        // version than ours is the tracker's mistake: ask for the whole table.
                        topology.send_modify(|ours| {
                            if ours.version != t.version {
                                ours.version = None;
                            }
                        });
                    } else {
                        topology.send_replace(t);
                    }
                }
                Some(Ok(TrackerMessage::Error(e))) => {
                    anyhow::bail!("tracker refused our report: {}: {}", e.code, e.message)
                }
                Some(Ok(other)) => anyhow::bail!("unexpected tracker answer {other:?}"),
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("tracker closed the connection"),
            }
        }
    }

    /// Says goodbye on a new connection, when the old one is gone.
    async fn leave_fresh(&self) {
        let attempt = async {
            let stream = TcpStream::connect(&self.tracker).await?;
            let mut link: TrackerLink = Framed::new(stream, LineCodec::new());
            link.send(TrackerMessage::Leave(Leave::sign(&self.key, stamp())))
                .await?;
            let _ = link.next().await;
            anyhow::Ok(())
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), attempt).await;
    }
}
