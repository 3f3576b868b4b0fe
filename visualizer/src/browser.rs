//! One browser's websocket: registers with the hub, then forwards its queue (the snapshot first,
//! then every delta) as text frames until the browser leaves, the hub drops it for being too
//! slow, or the visualizer shuts down. What the browser sends is ignored: it only listens.
//!
//! When the hub drops a slow browser its queue ends; the socket is closed with the reason
//! `lagged`, and the page reconnects and starts again from a fresh snapshot.

use futures::{SinkExt, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use warp::ws::{Message, WebSocket};

use crate::hub::Hub;

/// Close code for "going away" (RFC 6455): the server stops, or drops a slow browser.
const GOING_AWAY: u16 = 1001;

/// Serves one browser until it leaves; `_permit` holds its place under the browser cap.
pub async fn serve(
    socket: WebSocket,
    hub: Hub,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let (mut sink, mut incoming) = socket.split();
    let Some(mut queue) = hub.subscribe().await else {
        let _ = sink
            .send(Message::close_with(GOING_AWAY, "shutting down"))
            .await;
        return;
    };
    drop(hub);
    let reason = loop {
        tokio::select! {
            () = shutdown.cancelled() => break "shutting down",
            frame = queue.recv() => match frame {
                Some(text) => {
                    // A browser that stops reading must not hold up shutdown.
                    let sent = tokio::select! {
                        () = shutdown.cancelled() => break "shutting down",
                        sent = sink.send(Message::text(&*text)) => sent,
                    };
                    if sent.is_err() {
                        return;
                    }
                }
                None => break "lagged",
            },
            message = incoming.next() => match message {
                Some(Ok(message)) if message.is_close() => return,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
        }
    };
    tracing::debug!(reason, "closing a browser's websocket");
    let _ = sink.send(Message::close_with(GOING_AWAY, reason)).await;
}
