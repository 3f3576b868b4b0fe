//! One browser's websocket: registers with the hub, then forwards its queue (the snapshot first,
//! then every delta) as text frames until the browser leaves, the hub drops it for being too
//! slow, or the visualizer shuts down. What the browser sends is ignored but for being a sign of
//! life: it only listens.
//!
//! When the hub drops a slow browser its queue ends; the socket is closed with the reason
//! `lagged`, and the page reconnects and starts again from a fresh snapshot.
//!
//! A websocket holds one of the visualizer's browser slots, so one that is dead must not keep
//! it: a browser silent for half the idle timeout is sent a ping (browsers answer pings by
//! themselves, with no script), one silent for the whole idle timeout is closed (`idle`), and a
//! frame the browser does not take within [`SEND_TIMEOUT`] closes the socket too. When a newer
//! websocket needs the slot ([`daemon::slots`]), this one is closed with the reason `evicted`.

use std::time::Duration;

use daemon::slots::Slot;
use futures::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warp::ws::{Message, WebSocket};

use crate::hub::Hub;

/// Close code for "going away" (RFC 6455): the server stops, or drops a slow, silent or evicted
/// browser.
const GOING_AWAY: u16 = 1001;
/// How long one frame to a browser may take to leave: a browser that does not read fills the
/// socket buffers, and is closed rather than allowed to hold its slot and its task.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one browser until it leaves; `slot` holds its place among the browser slots, and
/// `idle_timeout` is how long it may stay silent.
pub async fn serve(
    socket: WebSocket,
    hub: Hub,
    shutdown: CancellationToken,
    slot: Slot,
    idle_timeout: Duration,
) {
    let (mut sink, mut incoming) = socket.split();
    let Some(mut queue) = hub.subscribe().await else {
        let _ = sink
            .send(Message::close_with(GOING_AWAY, "shutting down"))
            .await;
        return;
    };
    drop(hub);
    let mut last_heard = Instant::now();
    let mut pinged = false;
    let reason = loop {
        let ping_due = async {
            if pinged {
                std::future::pending::<()>().await;
            } else {
                tokio::time::sleep_until(last_heard + idle_timeout / 2).await;
            }
        };
        let outgoing = tokio::select! {
            () = shutdown.cancelled() => break "shutting down",
            () = slot.evicted() => break "evicted",
            () = tokio::time::sleep_until(last_heard + idle_timeout) => break "idle",
            () = ping_due => {
                pinged = true;
                Message::ping(Vec::new())
            }
            frame = queue.recv() => match frame {
                Some(text) => Message::text(&*text),
                None => break "lagged",
            },
            message = incoming.next() => match message {
                Some(Ok(message)) if message.is_close() => return,
                Some(Ok(_)) => {
                    last_heard = Instant::now();
                    pinged = false;
                    slot.touch();
                    continue;
                }
                Some(Err(_)) | None => return,
            },
        };
        // A browser that stops reading must not hold up shutdown, nor its slot for ever.
        let sent = tokio::select! {
            () = shutdown.cancelled() => break "shutting down",
            sent = tokio::time::timeout(SEND_TIMEOUT, sink.send(outgoing)) => sent,
        };
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::debug!("a browser stopped reading; closing its websocket");
                return;
            }
        }
    };
    tracing::debug!(reason, "closing a browser's websocket");
    let close = sink.send(Message::close_with(GOING_AWAY, reason));
    let _ = tokio::time::timeout(SEND_TIMEOUT, close).await;
}
