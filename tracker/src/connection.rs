//! One client connection: read a message, answer it, repeat, until the client leaves, goes quiet,
//! sends something unparseable, or the tracker shuts down.
//!
//! A node keeps its connection open and reports every second on it; a shop or the visualizer
//! connects, sends `Q`, reads `T` and goes. Every connection is its own task, so a slow or silent
//! client delays nobody else.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use protocol::AccountId;
use protocol::codec::{LineCodec, WireError};
use protocol::tracker::{Topology, TrackerMessage};
use protocol::wire::ErrorMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::registry::{self, Refusal, Registry};

/// The longest line the tracker reads, in bytes. A report is well under 1 KiB (its address is at
/// most 256 bytes), so this is plenty for any honest client, while it caps what one connection
/// can make the tracker buffer at 16 KiB instead of the protocol's 8 MiB: with the default 1024
/// connections, 16 MiB in all. Answers are written with the protocol's full limit, because a
/// topology of thousands of nodes is far longer than any request.
pub const MAX_REQUEST_LINE: usize = 16 * 1024;

/// How long the last words to a closing connection (an `E`, then its unread bytes drained so the
/// close is a clean FIN rather than a reset that could destroy that `E`) may take.
const LINGER: Duration = Duration::from_millis(500);
/// The most unread bytes drained from a closing connection.
const LINGER_BYTES: usize = 64 * 1024;

/// Why a connection ends.
enum Close {
    /// The tracker is shutting down.
    Shutdown,
    /// The client closed its side.
    PeerClosed,
    /// No complete message within the timeout.
    Timeout(Duration),
    /// A line that does not parse.
    BadFrame(WireError),
    /// The socket failed, or an answer could not be written in time.
    Broken(String),
}

/// The state every connection shares: the table, behind a lock held only for quick updates.
pub(crate) type Shared = Arc<Mutex<Registry>>;

/// Serves one connection until it ends. Never panics on anything the client sends.
pub(crate) async fn serve(
    stream: TcpStream,
    registry: Shared,
    config: Arc<Config>,
    shutdown: CancellationToken,
) {
    let mut client = Client {
        // Unknown only if the socket already failed; such a client gets nowhere anyway.
        source: stream
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip()),
        bound: None,
    };
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(
        read,
        LineCodec::<TrackerMessage>::with_max_line(MAX_REQUEST_LINE),
    );
    let mut writer = FramedWrite::new(write, LineCodec::<TrackerMessage>::new());
    let mut wait = config.first_message_timeout;
    let close = loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => break Close::Shutdown,
            next = tokio::time::timeout(wait, reader.next()) => next,
        };
        let message = match next {
            Err(_elapsed) => break Close::Timeout(wait),
            Ok(None) => break Close::PeerClosed,
            Ok(Some(Err(WireError::Io(e)))) => break Close::Broken(e.to_string()),
            Ok(Some(Err(e))) => break Close::BadFrame(e),
            Ok(Some(Ok(message))) => message,
        };
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
        Close::Timeout(after) => {
            tracing::debug!(?after, "closing quiet connection");
            let error = ErrorMessage::new(
                "timeout",
                format!("no complete message within {} ms", after.as_millis()),
            );
            last_words(reader, writer, error, &shutdown).await;
        }
        Close::BadFrame(e) => {
            tracing::debug!(code = e.code(), error = %e, "closing connection after a bad line");
            last_words(reader, writer, ErrorMessage::new(e.code(), &e), &shutdown).await;
        }
    }
}

/// Who a connection is: where it comes from, and the node it reports for once it has.
struct Client {
    source: IpAddr,
    /// A connection reports for one node only: the first it reported for.
    bound: Option<AccountId>,
}

impl Client {
    /// Refuses a report or leave for another node than this connection's own.
    fn check_bound(&self, id: &AccountId) -> Result<(), Refusal> {
        match self.bound {
            Some(bound) if bound != *id => Err(Refusal::WrongConnection(bound.short())),
            _ => Ok(()),
        }
    }
}

/// The answer to one message.
fn answer(message: TrackerMessage, registry: &Shared, client: &mut Client) -> TrackerMessage {
    // Signatures are checked before taking the lock: it is the slow part.
    let mut known = None;
    let outcome = match message {
        TrackerMessage::Report(report) => {
            known = report.known;
            client
                .check_bound(&report.id)
                .and_then(|()| registry::verify_report(&report))
                .and_then(|()| {
                    let now = Instant::now();
                    lock(registry).report(&report, client.source, now, registry::wall_clock_ms())
                })
                .map(|()| client.bound = Some(report.id))
        }
        TrackerMessage::Leave(leave) => client
            .check_bound(&leave.id)
            .and_then(|()| registry::verify_leave(&leave))
            .and_then(|()| lock(registry).leave(&leave, Instant::now(), registry::wall_clock_ms())),
        TrackerMessage::Query => Ok(()),
        TrackerMessage::Topology(_) | TrackerMessage::Error(_) => {
            return TrackerMessage::Error(ErrorMessage::new(
                "unexpected",
                "the tracker takes R, L and Q; T and E are its own answers",
            ));
        }
    };
    match outcome {
        Ok(()) => {
            let mut registry = lock(registry);
            let version = registry.version();
            // A node that holds the current table is told so in a few bytes: with a thousand
            // nodes, the whole table a thousand times a second would be most of the work.
            if known == Some(version) {
                TrackerMessage::Topology(Topology {
                    version: Some(version),
                    unchanged: true,
                    ..Topology::default()
                })
            } else {
                TrackerMessage::Topology(registry.topology(Instant::now()))
            }
        }
        Err(refusal) => {
            tracing::debug!(code = refusal.code(), reason = %refusal, "refused");
            TrackerMessage::Error(ErrorMessage::new(refusal.code(), &refusal))
        }
    }
}

/// Takes the table's lock. A panic while holding it cannot leave the table half-updated in a way
/// that matters more than stopping the tracker would, so a poisoned lock is used as it is.
fn lock(registry: &Shared) -> std::sync::MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes one message, giving up after `limit` or on shutdown.
async fn send(
    writer: &mut FramedWrite<OwnedWriteHalf, LineCodec<TrackerMessage>>,
    message: &TrackerMessage,
    limit: Duration,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    tokio::select! {
        () = shutdown.cancelled() => Err("shutting down".to_string()),
        sent = tokio::time::timeout(limit, writer.send(message)) => match sent {
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
    mut writer: FramedWrite<OwnedWriteHalf, LineCodec<TrackerMessage>>,
    error: ErrorMessage,
    shutdown: &CancellationToken,
) {
    if send(&mut writer, &TrackerMessage::Error(error), LINGER, shutdown)
        .await
        .is_err()
    {
        return;
    }
    let mut write = writer.into_inner();
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
