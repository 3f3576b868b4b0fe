//! Attacks on the line codec: bytes that are not messages.

use std::time::Duration;

use protocol::wire::Message;
use rand::RngExt;

use crate::conn::{RawConn, outcome_of};
use crate::{ANSWER_TIMEOUT, Outcome, Target};

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

/// `target.count` connections at once, each sending nearly [`protocol::codec::MAX_LINE`] bytes
/// of a line it never ends, then holding it: without a budget a node holds every one of them
/// (64 connections from one address, 512 MiB). The node holds its share per address and closes
/// the rest with `E buffer_full`; the probe, a new connection from the same address, is served.
pub async fn unfinished_lines(target: &Target) -> anyhow::Result<Outcome> {
    let line: Vec<u8> = [
        b"A ".as_slice(),
        &vec![b'x'; protocol::codec::MAX_LINE - 64],
    ]
    .concat();
    let opened = futures::future::join_all((0..target.count).map(|_| async {
        let mut conn = RawConn::open(target).await.ok()?;
        // The node may stop reading or close: it is told apart below.
        let sent = tokio::time::timeout(ANSWER_TIMEOUT, conn.write_raw(&line))
            .await
            .unwrap_or(false);
        Some((conn, sent))
    }))
    .await;
    let mut held = Vec::new();
    let mut errors = Vec::new();
    for (mut conn, sent) in opened.into_iter().flatten() {
        match tokio::time::timeout(Duration::from_millis(100), conn.next_raw()).await {
            Ok(Some(Message::Error(e))) => errors.push(e.code.to_string()),
            Ok(None) => errors.push("closed".into()),
            _ if sent => held.push(conn),
            _ => {}
        }
    }
    let probe = RawConn::open(target).await?.probe().await;
    let mut outcome = outcome_of(target.count, probe);
    outcome.note = format!(
        "{} unfinished lines held, {} refused ({} with E buffer_full)",
        held.len(),
        errors.len(),
        errors.iter().filter(|e| *e == "buffer_full").count()
    );
    outcome
        .errors
        .extend(errors.into_iter().filter(|e| e != "closed"));
    outcome.errors.sort();
    outcome.errors.dedup();
    drop(held);
    Ok(outcome)
}
