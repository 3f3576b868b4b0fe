//! Attacks on the line codec: bytes that are not messages.

use rand::RngExt;

use crate::conn::{RawConn, outcome_of};
use crate::{Outcome, Target};

/// Random bytes (never a newline among them), then a newline.
pub async fn garbage(target: &Target) -> anyhow::Result<Outcome> {
    let mut bytes: Vec<u8> = (0..4096)
        .map(|_| rand::rng().random_range(0..=255u8))
        .map(|b| if b == b'\n' { 0xff } else { b })
        .collect();
    // Never valid UTF-8, whatever the dice said.
    bytes[0] = 0xff;
    bytes.push(b'\n');
    send_line(target, &bytes).await
}

/// One raw line, then the probe.
pub async fn send_line(target: &Target, bytes: &[u8]) -> anyhow::Result<Outcome> {
    let mut conn = RawConn::open(target).await?;
    let sent = usize::from(conn.write_raw(bytes).await);
    Ok(outcome_of(sent, conn.probe().await))
}

/// Bytes with no newline, 64 KiB at a time, past the protocol's line limit: the node must give
/// up on the line before it has buffered much more than the limit.
pub async fn endless_line(target: &Target) -> anyhow::Result<Outcome> {
    let mut conn = RawConn::open(target).await?;
    let chunk = vec![b'x'; 64 * 1024];
    let limit = protocol::codec::MAX_LINE + 2 * chunk.len();
    let mut written = 0;
    while written < limit {
        if !conn.write_raw(&chunk).await {
            break;
        }
        written += chunk.len();
    }
    let mut outcome = outcome_of(1, conn.probe().await);
    outcome.note = format!("wrote {written} bytes without a newline");
    Ok(outcome)
}
