//! A websocket client of the visualizer, reading what a browser's page reads: every message
//! as a [`ToBrowser`], each wait bounded by [`DEADLINE`].

use futures::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use visualizer::view::{NodeView, Snapshot, ToBrowser};

use crate::DEADLINE;

/// A websocket client reading what a browser reads.
pub struct Page {
    /// The websocket itself, for tests of its frames (pings, close reasons) and of how it was
    /// opened.
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Page {
    /// Connects to the visualizer at `addr`.
    pub async fn connect(addr: &str) -> Page {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("websocket handshake");
        Page { ws }
    }

    /// The next message; `None` when the socket closes. Fails the test after [`DEADLINE`].
    pub async fn next(&mut self) -> Option<ToBrowser> {
        loop {
            let frame = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("a message from the visualizer in time")?;
            match frame {
                Ok(WsMessage::Text(text)) => {
                    return Some(
                        serde_json::from_str(&text).unwrap_or_else(|e| {
                            panic!("a message that does not parse: {e}: {text}")
                        }),
                    );
                }
                Ok(WsMessage::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The snapshot, which must come first.
    pub async fn snapshot(&mut self) -> Snapshot {
        match self.next().await {
            Some(ToBrowser::Snapshot(s)) => s,
            other => panic!("expected the snapshot first, got {other:?}"),
        }
    }

    /// Reads messages until `check` returns `Some`, within [`DEADLINE`].
    pub async fn wait<T>(
        &mut self,
        what: &str,
        mut check: impl FnMut(&ToBrowser) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = tokio::time::timeout(left, self.next())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .unwrap_or_else(|| panic!("the socket closed while waiting for {what}"));
            if let Some(value) = check(&message) {
                return value;
            }
        }
    }

    /// Waits for the node table to satisfy `check`.
    pub async fn wait_nodes(&mut self, what: &str, check: impl Fn(&[NodeView]) -> bool) {
        self.wait(what, |m| match m {
            ToBrowser::Nodes { nodes, .. } if check(nodes) => Some(()),
            _ => None,
        })
        .await
    }
}
