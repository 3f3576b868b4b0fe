//! Asking a tracker who is there: what the shop and the visualizer use. Nodes keep their own
//! persistent connection for reporting.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::{SinkExt, StreamExt};
use protocol::codec::LineCodec;
use protocol::tracker::{Topology, TrackerMessage};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Connects to the tracker at `addr` (`host:port`), sends `Q` and returns the topology it answers,
/// all within `timeout`. Errors say which tracker and what went wrong.
pub async fn query(addr: &str, timeout: Duration) -> anyhow::Result<Topology> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            anyhow!(
                "tracker at {addr} is unreachable: no connection within {} ms",
                timeout.as_millis()
            )
        })?
        .with_context(|| format!("tracker at {addr} is unreachable"))?;
    let exchange = async {
        let mut framed = Framed::new(stream, LineCodec::<TrackerMessage>::new());
        framed
            .send(TrackerMessage::Query)
            .await
            .with_context(|| format!("could not ask the tracker at {addr}"))?;
        match framed.next().await {
            Some(Ok(TrackerMessage::Topology(topology))) => Ok(topology),
            Some(Ok(TrackerMessage::Error(e))) => bail!(
                "tracker at {addr} refused the query: {}: {}",
                e.code,
                e.message
            ),
            Some(Ok(other)) => bail!("tracker at {addr} answered with an unexpected {other:?}"),
            Some(Err(e)) => Err(e).with_context(|| format!("tracker at {addr} sent a bad answer")),
            None => bail!("tracker at {addr} closed the connection without answering"),
        }
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        anyhow!(
            "tracker at {addr} did not answer within {} ms",
            timeout.as_millis()
        )
    })?
}
