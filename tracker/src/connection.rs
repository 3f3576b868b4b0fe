//! One client connection: read a message, answer it, repeat, until the client leaves, goes quiet,
//! sends something unparseable, or the tracker shuts down.
//!
//! A node keeps its connection open and reports every second on it; a shop or the visualizer
//! connects, sends `Q`, reads `T` and goes. Every connection is its own task, so a slow or silent
//! client delays nobody else. Each holds a [`Slot`]: it is touched at every message, and the
//! connection is closed with `E evicted` when its slot is taken for a newer connection.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use daemon::slots::Slot;
use futures::StreamExt;
use protocol::AccountId;
use protocol::clock::now_ms;
use protocol::codec::{LineCodec, WireError, encode_line};
use protocol::tracker::{Report, Topology, TrackerMessage};
use protocol::wire::{ErrorCode, ErrorMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::registry::{self, Refusal, Shared, TableCache, lock};

/// The longest line the tracker reads, in bytes. A report is well under 1 KiB (its address is at
/// most 256 bytes), so this is plenty for any honest client, while it caps what one connection
/// can make the tracker buffer at 16 KiB instead of the protocol's 8 MiB: with the default 1024
/// connections, 16 MiB in all. Answers are written with the protocol's full limit, because a
/// topology of thousands of nodes is far longer than any request.
pub const MAX_REQUEST_LINE: usize = 16 * 1024;

/// How long an encoded whole table is reused for, while the membership stays the same.
const TABLE_CACHE_AGE: Duration = Duration::from_millis(100);
/// The age at which a whole table still in use is encoded again in the background, so that
/// while clients keep asking, none of them waits for an encoding (a millisecond or two at a
/// thousand nodes, more on a busy machine); only a membership change makes one wait.
const TABLE_REFRESH_AGE: Duration = Duration::from_millis(70);

/// How long the last words to a closing connection (an `E`, then its unread bytes drained so the
/// close is a clean FIN rather than a reset that could destroy that `E`) may take.
const LINGER: Duration = Duration::from_millis(500);
/// The most unread bytes drained from a closing connection.
const LINGER_BYTES: usize = 64 * 1024;

/// Why a connection ends.
enum Close {
    /// The tracker is shutting down.
    Shutdown,
    /// Its slot was taken for a newer connection.
    Evicted,
    /// The client closed its side.
    PeerClosed,
    /// No complete message within the timeout.
    Timeout(Duration),
    /// A line that does not parse.
    BadFrame(WireError),
    /// The socket failed, or an answer could not be written in time.
    Broken(String),
}

/// Serves one connection until it ends. Never panics on anything the client sends.
pub(crate) async fn serve(
    stream: TcpStream,
    registry: Shared,
    config: Arc<Config>,
    shutdown: CancellationToken,
    slot: Slot,
) {
    let mut client = Client {
        // Unknown only if the socket already failed; such a client gets nowhere anyway.
        source: stream
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip()),
        bound: None,
        signed_addr: None,
    };
    // Every answer is one whole line written at once, so Nagle's algorithm could only hold back
    // its tail until the client acknowledges the start: with a delayed ACK, tens of
    // milliseconds. Nothing is gained by it, since nothing is ever written in small pieces.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot turn Nagle's algorithm off");
    }
    let (read, mut writer) = stream.into_split();
    let mut reader = FramedRead::new(
        read,
        LineCodec::<TrackerMessage>::with_max_line(MAX_REQUEST_LINE),
    );
    let mut wait = config.first_message_timeout;
    let close = loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => break Close::Shutdown,
            () = slot.evicted() => break Close::Evicted,
            next = tokio::time::timeout(wait, reader.next()) => next,
        };
        let message = match next {
            Err(_elapsed) => break Close::Timeout(wait),
            Ok(None) => break Close::PeerClosed,
            Ok(Some(Err(WireError::Io(e)))) => break Close::Broken(e.to_string()),
            Ok(Some(Err(e))) => break Close::BadFrame(e),
            Ok(Some(Ok(message))) => message,
        };
        slot.touch();
        wait = config.idle_timeout;
        let reply = answer(message, &registry, &mut client);
        // A client that never reads would fill the socket buffers and park this task forever.
        if let Err(reason) = send(&mut writer, &reply, config.idle_timeout, &shutdown).await {
            break Close::Broken(reason);
        }
    };
    match close {
        Close::Shutdown => tracing::debug!("closing connection: shutting down"),
        Close::PeerClosed => tracing::debug!("client closed the connection"),
        Close::Broken(reason) => tracing::debug!(%reason, "connection broken"),
        Close::Evicted => {
            tracing::debug!("closing: its slot went to a newer connection");
            let error = ErrorMessage::new(
                ErrorCode::Evicted,
                "closed to make room for a new connection",
            );
            last_words(reader, writer, error, &shutdown).await;
        }
        Close::Timeout(after) => {
            tracing::debug!(?after, "closing quiet connection");
            let error = ErrorMessage::new(
                ErrorCode::Timeout,
                format!("no complete message within {} ms", after.as_millis()),
            );
            last_words(reader, writer, error, &shutdown).await;
        }
        Close::BadFrame(e) => {
            tracing::debug!(code = %e.code(), error = %e, "closing connection after a bad line");
            last_words(reader, writer, ErrorMessage::new(e.code(), &e), &shutdown).await;
        }
    }
}

/// Who a connection is: where it comes from, and the node it reports for once it has.
struct Client {
    source: IpAddr,
    /// A connection reports for one node only: the first it reported for.
    bound: Option<AccountId>,
    /// The address in the last report whose signature this connection verified.
    signed_addr: Option<String>,
}

impl Client {
    /// Checks a report. Its signature is verified once per connection and address: the first
    /// signed report authenticates the connection for its node (the connection is bound to it),
    /// later reports on it can only come from the same sender, and their timestamps must still
    /// move forward. A report that changes the address is verified again. Verifying an ed25519
    /// signature is most of the cost of a report, and a thousand nodes report every second.
    fn verify(&mut self, report: &Report) -> Result<(), Refusal> {
        let signed =
            self.bound == Some(report.id) && self.signed_addr.as_deref() == Some(&*report.addr);
        registry::verify_report(report, signed)?;
        if !signed {
            self.signed_addr = Some(report.addr.clone());
        }
        Ok(())
    }

    /// Refuses a report or leave for another node than this connection's own.
    fn check_bound(&self, id: &AccountId) -> Result<(), Refusal> {
        match self.bound {
            Some(bound) if bound != *id => Err(Refusal::WrongConnection(bound.short())),
            _ => Ok(()),
        }
    }
}

/// One message as a line on the wire, `\n` included.
fn line(message: &TrackerMessage) -> Bytes {
    match encode_line(message) {
        Ok(line) => Bytes::from(line),
        Err(e) => cannot_encode(&e),
    }
}

/// The answer sent when an answer cannot be encoded. Only a float JSON cannot carry fails to
/// encode, and reports with one are refused, so this is a bug.
fn cannot_encode(error: &dyn std::fmt::Display) -> Bytes {
    tracing::error!(%error, "cannot encode an answer");
    Bytes::from_static(b"E {\"code\":\"internal\",\"message\":\"cannot encode the answer\"}\n")
}

/// The answer to one message, encoded.
fn answer(message: TrackerMessage, registry: &Shared, client: &mut Client) -> Bytes {
    // Signatures are checked before taking the lock: it is the slow part.
    let mut known = None;
    let outcome = match message {
        TrackerMessage::Report(report) => {
            known = report.known;
            client
                .check_bound(&report.id)
                .and_then(|()| client.verify(&report))
                .and_then(|()| {
                    let now = Instant::now();
                    lock(registry).report(&report, client.source, now, now_ms())
                })
                .map(|check| {
                    client.bound = Some(report.id);
                    // Listed once it proves its id at its address, checked off this path.
                    if let Some(check) = check {
                        crate::reach::spawn(check, registry.clone());
                    }
                })
        }
        TrackerMessage::Leave(leave) => client
            .check_bound(&leave.id)
            .and_then(|()| registry::verify_leave(&leave))
            .and_then(|()| lock(registry).leave(&leave, Instant::now(), now_ms())),
        TrackerMessage::Query => return whole_table(registry),
        TrackerMessage::Topology(_) | TrackerMessage::Error(_) => {
            return line(&TrackerMessage::Error(ErrorMessage::new(
                ErrorCode::Unexpected,
                "the tracker takes R, L and Q; T and E are its own answers",
            )));
        }
    };
    match outcome {
        Ok(()) => {
            let version = lock(registry).version();
            // A node that holds the current table is told so in a few bytes: with a thousand
            // nodes, the whole table a thousand times a second would be most of the work.
            if known == Some(version) {
                line(&TrackerMessage::Topology(Topology {
                    version: Some(version),
                    unchanged: true,
                    ..Topology::default()
                }))
            } else {
                whole_table(registry)
            }
        }
        Err(refusal) => {
            tracing::debug!(code = %refusal.code(), reason = %refusal, "refused");
            line(&TrackerMessage::Error(ErrorMessage::new(
                refusal.code(),
                &refusal,
            )))
        }
    }
}

/// The answer to `Q`, and to a report whose `known` is not the current version: the whole
/// table, encoded at most once per [`TABLE_CACHE_AGE`] while the membership stays the same, and
/// shared by every connection. With a thousand nodes the table is a few hundred KiB of JSON;
/// after a node joins, every other node asks for it within the second, and shops and
/// visualizers ask often: one encoding each would be nearly all the tracker's work. What the
/// cache may hold back is at most that old: a tip, a load, a last-seen age.
///
/// A table older than [`TABLE_REFRESH_AGE`] is still served, and encoded again off the async
/// threads for the next requests.
fn whole_table(registry: &Shared) -> Bytes {
    let now = Instant::now();
    let mut table = lock(registry);
    let version = table.version();
    if let Some(cache) = &mut table.table_cache
        && cache.version == version
    {
        let age = now.saturating_duration_since(cache.at);
        if age < TABLE_CACHE_AGE {
            if age >= TABLE_REFRESH_AGE && !cache.refreshing {
                cache.refreshing = true;
                let registry = registry.clone();
                // Dropped unrun only at shutdown; the next request then encodes it itself.
                drop(tokio::task::spawn_blocking(move || {
                    encode_table(&registry, Instant::now());
                }));
            }
            return cache.line.clone();
        }
    }
    drop(table);
    encode_table(registry, now)
}

/// Encodes the whole table as of `now`, keeps it in the cache unless a newer one is already
/// there, and returns it. Only the copy is made under the lock; sorting and encoding are done
/// outside it, so that reports from other connections are not held up.
fn encode_table(registry: &Shared, now: Instant) -> Bytes {
    let mut table = lock(registry);
    let mut topology = table.snapshot(now);
    // `snapshot` may have swept a silent node out and so changed the version.
    let version = table.version();
    let capacity = table.table_cache.as_ref().map_or(0, |c| c.line.len());
    drop(table);
    registry::sort_nodes(&mut topology.nodes);
    let encoded = encode_topology(&topology, capacity);
    let mut table = lock(registry);
    // Another connection may have stored a newer encoding meanwhile: keep the newest.
    if table.table_cache.as_ref().is_none_or(|c| c.at <= now) {
        table.table_cache = Some(TableCache {
            version,
            at: now,
            line: encoded.clone(),
            refreshing: false,
        });
    }
    encoded
}

/// A whole table as a `T` line, written straight into one buffer of about the size the last one
/// took: no intermediate strings, and no regrowing a few hundred KiB several times over.
fn encode_topology(topology: &Topology, capacity: usize) -> Bytes {
    let mut out = Vec::with_capacity(capacity + capacity / 8);
    out.extend_from_slice(b"T ");
    match serde_json::to_writer(&mut out, topology) {
        Ok(()) => {
            out.push(b'\n');
            Bytes::from(out)
        }
        Err(e) => cannot_encode(&e),
    }
}

/// Writes one whole line, giving up after `limit` or on shutdown. The line goes to the socket as
/// it is, not copied into a write buffer first: a whole table is a few hundred KiB.
async fn send(
    writer: &mut OwnedWriteHalf,
    line: &Bytes,
    limit: Duration,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    tokio::select! {
        () = shutdown.cancelled() => Err("shutting down".to_string()),
        sent = tokio::time::timeout(limit, writer.write_all(line)) => match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_elapsed) => Err(format!(
                "client did not read its answer within {} ms",
                limit.as_millis()
            )),
        },
    }
}

/// Sends a last `E`, closes the writing side, and drains what the client already sent, so that
/// the client reads the `E` and then a clean end of stream.
async fn last_words(
    reader: FramedRead<OwnedReadHalf, LineCodec<TrackerMessage>>,
    mut write: OwnedWriteHalf,
    error: ErrorMessage,
    shutdown: &CancellationToken,
) {
    if send(
        &mut write,
        &line(&TrackerMessage::Error(error)),
        LINGER,
        shutdown,
    )
    .await
    .is_err()
    {
        return;
    }
    let mut read = reader.into_inner();
    let drain = async {
        // Errors here only mean the client is already gone, which is what we want anyway.
        write.shutdown().await.ok();
        let mut buffer = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    tokio::select! {
        () = shutdown.cancelled() => {}
        _ = tokio::time::timeout(LINGER, drain) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Keypair;
    use protocol::hash::BlockHash;
    use protocol::tracker::{NodeInfo, NodeStatus};

    #[test]
    fn a_whole_table_is_the_line_the_codec_would_write() {
        let node = |seed: u8| NodeInfo {
            id: Keypair::from_seed([seed; 32]).account(),
            addr: format!("127.0.0.1:{}", 9000 + u16::from(seed)),
            status: NodeStatus::A,
            last_seen_ms: 250,
            tip_height: 7,
            tip_hash: BlockHash::ZERO,
            load: 0.25,
            difficulty: 20,
        };
        let topology = Topology {
            nodes: vec![node(1), node(2)],
            version: Some(42),
            unchanged: false,
        };
        let codec = encode_line(&TrackerMessage::Topology(topology.clone())).unwrap();
        for capacity in [0, 10, 1 << 16] {
            assert_eq!(&encode_topology(&topology, capacity)[..], codec.as_bytes());
        }
        // One line each, as the codec writes them: no stray blank line after it.
        let error = line(&TrackerMessage::Error(ErrorMessage::new(
            ErrorCode::Unexpected,
            "y",
        )));
        assert_eq!(error.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(error.ends_with(b"\n"));
    }
}
