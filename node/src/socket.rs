//! A connection's socket: wire lines read and written, and reading on while a write waits.
//!
//! A connection that stopped reading while it wrote could stall a link for good: two nodes
//! relaying big blocks to each other at the same moment each filled the other's socket
//! buffers, neither read, and both waited until the send timeout closed the link (10 s in which
//! one of them mined alone; the bench's throughput fell from 2,000 to 500 purchases a second in
//! about one run in six). Here, while a write waits, the lines the other end sends are read and
//! kept, up to [`READ_AHEAD_BYTES`], and handed out first by [`Socket::next`]: the other end's
//! write completes, it reads again, and so does ours.
//!
//! Every byte a connection buffers past [`FREE_BYTES`] of each kind (the line being read, the
//! lines read ahead, what waits to be written) is held as its [`Share`] of the node's
//! [`crate::buffers`]; a connection refused more, or whose share was taken for another's, ends
//! with [`WireError::BufferFull`] (and drops what it buffered) at its next read or write. A
//! buffer grown for a big line shrinks back once the line is taken, and the write buffer is
//! given back after a flush once it grew past that, so a connection that once carried a sync
//! batch does not keep its megabytes.

use std::collections::VecDeque;
use std::convert::Infallible;

use futures::SinkExt;
use protocol::codec::{LineCodec, MAX_LINE, WireError};
use protocol::wire::Message;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, FramedWrite};

use crate::buffers::{FREE_BYTES, Refused, Share, counted};

/// Most bytes read ahead while writes wait, until the connection takes the lines read: one
/// line of the largest size ([`protocol::codec::MAX_LINE`]), so the other end's write of any
/// line can complete. Per connection, bounded whatever the other end sends: each line counts
/// its size on the wire and [`ENTRY_BYTES`], so millions of two-byte lines cannot hide a
/// queue a hundred times their size.
pub const READ_AHEAD_BYTES: usize = MAX_LINE;

/// What one line read ahead costs besides its bytes: its entry in the queue.
const ENTRY_BYTES: usize = std::mem::size_of::<(Frame, usize)>();

/// Room made before each read: the most one read takes.
const READ_CHUNK: usize = 8 * 1024;

/// The first size a buffer grows to past [`FREE_BYTES`]: most sync batches' lines fit at once,
/// without the copies of doubling up to them.
const BIG_BUFFER: usize = 1024 * 1024;

/// The largest read buffer: a line of [`MAX_LINE`] and its `\n`, and one read more, which
/// is what it takes to find a line too long.
const MAX_READ_BUFFER: usize = MAX_LINE + READ_CHUNK;

/// A line read: a message, a line that did not parse, or `None` at the end of the stream.
pub type Frame = Option<Result<Message, WireError>>;

/// The two halves of a connection's socket, the lines read ahead, and the share of the node's
/// buffers they hold.
pub struct Socket {
    reader: Lines,
    writer: FramedWrite<OwnedWriteHalf, LineCodec<Message>>,
    /// Lines read while a write waited, oldest first, each with what it costs (its size on the
    /// wire and [`ENTRY_BYTES`]).
    ahead: VecDeque<(Frame, usize)>,
    /// What the lines in `ahead` cost.
    ahead_bytes: usize,
    /// The write buffer grew past [`FREE_BYTES`] since it was last given back.
    write_grown: bool,
    share: Share,
}

impl Socket {
    /// Wraps `stream`, whose buffers are held as `share`.
    pub fn new(stream: TcpStream, share: Share) -> Socket {
        let (read, write) = stream.into_split();
        Socket {
            reader: Lines {
                half: read,
                buf: BytesMut::new(),
                allocated: 0,
                codec: LineCodec::new(),
                ended: false,
            },
            writer: FramedWrite::new(write, LineCodec::new()),
            ahead: VecDeque::new(),
            ahead_bytes: 0,
            write_grown: false,
            share,
        }
    }

    /// The next line: one read ahead, else from the socket; a [`WireError::BufferFull`] once
    /// this connection's share was taken for another's. Cancel-safe.
    pub async fn next(&mut self) -> Frame {
        if self.share.is_evicted() {
            return Some(Err(self.evicted()));
        }
        if let Some((frame, cost)) = self.ahead.pop_front() {
            self.ahead_bytes -= cost;
            if self.ahead.is_empty() {
                // A queue that held many lines gives its room back.
                self.ahead = VecDeque::new();
            }
            // Less: never refused (an eviction is seen by the next call).
            let _ = self.hold();
            return frame;
        }
        let writing = held(0, 0, self.write_capacity());
        tokio::select! {
            biased;
            _ = self.share.evicted() => Some(Err(self.evicted())),
            frame = self.reader.next(&self.share, writing) => frame.map(|(frame, _)| frame),
        }
    }

    /// The buffer of bytes to write, for lines encoded once and sent on many connections.
    pub fn write_buffer_mut(&mut self) -> &mut BytesMut {
        self.writer.write_buffer_mut()
    }

    /// Queues `message` (a full buffer is written out first, reading ahead meanwhile).
    pub async fn feed(&mut self, message: Message) -> Result<(), WireError> {
        // A full buffer is written out inside `feed`, which hides how big it grew.
        self.note_write_size();
        self.hold()?;
        let (writer, reading) = self.split();
        tokio::select! {
            biased;
            fed = writer.feed(message) => fed?,
            () = reading => return Err(self.evicted()),
        }
        self.hold()
    }

    /// Writes out what is queued, reading ahead meanwhile, then gives the write buffer back if
    /// it grew past [`FREE_BYTES`]: its allocation stays whole however much of it was written
    /// out (`capacity` falls as bytes leave its front), so only a new buffer frees the
    /// megabytes of a big write. A small one is kept, as the allocator would keep it anyway.
    pub async fn flush(&mut self) -> Result<(), WireError> {
        self.note_write_size();
        self.hold()?;
        let (writer, reading) = self.split();
        tokio::select! {
            biased;
            flushed = SinkExt::<Message>::flush(writer) => flushed?,
            () = reading => return Err(self.evicted()),
        }
        if std::mem::take(&mut self.write_grown) {
            *self.writer.write_buffer_mut() = BytesMut::new();
            // Less: never refused (an eviction is seen by the next call).
            let _ = self.hold();
        }
        Ok(())
    }

    fn note_write_size(&mut self) {
        self.write_grown |= self.write_capacity() > FREE_BYTES;
    }

    fn write_capacity(&self) -> usize {
        self.writer.write_buffer().capacity()
    }

    /// Drops everything this connection buffered, once its share was taken for another's: its
    /// last words fit in what it may still hold (nothing), and the bytes are free at once.
    fn evicted(&mut self) -> WireError {
        self.reader.release();
        self.ahead.clear();
        self.ahead_bytes = 0;
        *self.writer.write_buffer_mut() = BytesMut::new();
        buffer_full(Refused::Evicted)
    }

    /// Holds what this connection buffers now as its share.
    fn hold(&self) -> Result<(), WireError> {
        let bytes = held(
            self.reader.allocated,
            self.ahead_bytes,
            self.write_capacity(),
        );
        self.share.hold(bytes).map_err(buffer_full)
    }

    /// The writer, and a future that reads lines ahead until they cost [`READ_AHEAD_BYTES`]
    /// (or the end of the stream, or a refusal of more bytes), and completes only if this
    /// connection's share is taken for another's.
    fn split(
        &mut self,
    ) -> (
        &mut FramedWrite<OwnedWriteHalf, LineCodec<Message>>,
        impl Future<Output = ()> + '_,
    ) {
        let writing = self.write_capacity();
        let (reader, ahead, ahead_bytes, share) = (
            &mut self.reader,
            &mut self.ahead,
            &mut self.ahead_bytes,
            &self.share,
        );
        let read_ahead = async move {
            loop {
                let stopped = matches!(ahead.back(), Some((None | Some(Err(_)), _)));
                if stopped || *ahead_bytes >= READ_AHEAD_BYTES {
                    return std::future::pending::<Infallible>().await;
                }
                let others = held(0, *ahead_bytes, writing);
                let (frame, size) = match reader.next(share, others).await {
                    Some((frame, size)) => (Some(frame), size),
                    None => (None, 0),
                };
                let cost = size + ENTRY_BYTES;
                match share.hold(held(reader.allocated, *ahead_bytes + cost, writing)) {
                    Ok(()) => {
                        *ahead_bytes += cost;
                        ahead.push_back((frame, cost));
                    }
                    // The line is not taken: the connection ends with the refusal.
                    Err(refused) => {
                        ahead.push_back((Some(Err(buffer_full(refused))), ENTRY_BYTES));
                        *ahead_bytes += ENTRY_BYTES;
                    }
                }
            }
        };
        let reading = async move {
            tokio::select! {
                biased;
                _ = share.evicted() => {}
                never = read_ahead => match never {},
            }
        };
        (&mut self.writer, reading)
    }
}

/// The bytes a connection holds in its share: each of its read buffer's allocation, the lines
/// read ahead and its write buffer's capacity, past what is free.
fn held(read: usize, ahead: usize, write: usize) -> usize {
    counted(read) + counted(ahead) + counted(write)
}

/// The error a connection refused more of the node's buffers ends with.
fn buffer_full(refused: Refused) -> WireError {
    WireError::BufferFull(refused.to_string())
}

/// The read half: lines decoded from a buffer that grows for a big line, within the
/// connection's share, and shrinks back after it.
struct Lines {
    half: OwnedReadHalf,
    buf: BytesMut,
    /// The capacity `buf` was allocated with (a buffer's `capacity` falls as lines are split
    /// off its front, but the allocation stays whole until it is replaced).
    allocated: usize,
    codec: LineCodec<Message>,
    /// The other end closed its side.
    ended: bool,
}

impl Lines {
    /// The next line and its size on the wire, or `None` at the end of the stream. `others`
    /// is what the connection holds besides this buffer (counted bytes). Cancel-safe: a read
    /// cancelled took nothing.
    async fn next(
        &mut self,
        share: &Share,
        others: usize,
    ) -> Option<(Result<Message, WireError>, usize)> {
        loop {
            let before = self.buf.len();
            let decoded = if self.ended {
                self.codec.decode_eof(&mut self.buf)
            } else {
                self.codec.decode(&mut self.buf)
            };
            match decoded {
                Ok(Some(message)) => {
                    let size = before - self.buf.len();
                    if self.shrink() {
                        let _ = share.hold(others);
                    }
                    return Some((Ok(message), size));
                }
                Ok(None) if self.ended => return None,
                Ok(None) => {}
                Err(e) => return Some((Err(e), before - self.buf.len())),
            }
            if let Err(refused) = self.make_room(share, others) {
                self.release();
                let _ = share.hold(others);
                return Some((Err(buffer_full(refused)), 0));
            }
            match self.read_more().await {
                Ok(0) => self.ended = true,
                Ok(_) => {}
                Err(e) => return Some((Err(WireError::Io(e)), 0)),
            }
        }
    }

    /// One read into the room [`Lines::make_room`] made: never more, so the buffer never grows
    /// behind the budget's back.
    async fn read_more(&mut self) -> std::io::Result<usize> {
        let room = self.buf.capacity() - self.buf.len();
        (&mut self.half)
            .take(room as u64)
            .read_buf(&mut self.buf)
            .await
    }

    /// Room for one read: a buffer of [`FREE_BYTES`], or for a line past it [`BIG_BUFFER`],
    /// doubled as the line grows (up to [`MAX_READ_BUFFER`]), its counted bytes held first.
    /// (Growing by half instead, so that a line is counted as less than twice its size, took
    /// the node's peak memory after the bench's sync of 100,000 blocks from 51-54 MB to 64-69
    /// MB in four runs, past its target; it was not kept.)
    fn make_room(&mut self, share: &Share, others: usize) -> Result<(), Refused> {
        if self.buf.capacity() - self.buf.len() >= READ_CHUNK {
            return Ok(());
        }
        let needed = self.buf.len() + READ_CHUNK;
        let capacity = match needed {
            ..=FREE_BYTES => FREE_BYTES,
            _ => needed
                .next_power_of_two()
                .clamp(BIG_BUFFER, MAX_READ_BUFFER),
        };
        share.hold(counted(capacity) + others)?;
        self.reallocate(capacity);
        Ok(())
    }

    /// After a line: a buffer grown past [`FREE_BYTES`] that holds little now goes back to that
    /// size. Returns whether it did (so the caller holds less).
    fn shrink(&mut self) -> bool {
        let big = self.allocated > FREE_BYTES && self.buf.len() <= FREE_BYTES / 2;
        if big {
            self.reallocate(FREE_BYTES);
        }
        big
    }

    /// Drops the buffer and the line in it, for a connection about to close.
    fn release(&mut self) {
        self.buf = BytesMut::new();
        self.allocated = 0;
        // The codec remembers how far it searched the old buffer for a `\n`.
        self.codec = LineCodec::new();
    }

    fn reallocate(&mut self, capacity: usize) {
        let mut buf = BytesMut::with_capacity(capacity);
        buf.extend_from_slice(&self.buf);
        self.buf = buf;
        self.allocated = capacity;
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use protocol::wire::Message;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::buffers::BufferTable;

    /// Both ends of a loopback connection: ours as a [`Socket`] holding a share of `table`,
    /// and the other end's stream.
    async fn pair(table: &BufferTable) -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let share = table.open(IpAddr::from([127, 0, 0, 1]));
        (Socket::new(server, share), client)
    }

    #[tokio::test]
    async fn lines_read_ahead_count_their_entries_not_only_their_bytes() {
        let table = BufferTable::new(1 << 30, 1 << 30);
        let (mut socket, mut client) = pair(&table).await;
        // Two million two-byte lines, from a client that never reads.
        let flood = tokio::spawn(async move {
            let _ = client.write_all(&b"Z\n".repeat(2_000_000)).await;
            client
        });
        // A write far bigger than the socket buffers waits, and meanwhile lines are read ahead.
        socket
            .write_buffer_mut()
            .extend_from_slice(&vec![b'x'; 64 << 20]);
        let waited = tokio::time::timeout(Duration::from_secs(2), socket.flush()).await;
        assert!(waited.is_err(), "the write did not wait");
        let queued = socket.ahead.len();
        assert!(queued > 0, "nothing was read ahead");
        // Counted by bytes on the wire alone, all two million would have been queued.
        assert!(
            queued <= READ_AHEAD_BYTES / ENTRY_BYTES + 1,
            "{queued} lines read ahead"
        );
        flood.abort();
    }

    #[tokio::test]
    async fn a_refused_line_is_dropped_and_the_lines_after_it_are_read_from_scratch() {
        // A share too small for any buffer past the free one.
        let table = BufferTable::new(1 << 20, 512 * 1024);
        let (mut socket, mut client) = pair(&table).await;

        client.write_all(&vec![b'x'; 70 * 1024]).await.unwrap();
        assert!(matches!(
            socket.next().await,
            Some(Err(WireError::BufferFull(_)))
        ));
        assert_eq!(table.total(), 0, "nothing is held once refused");

        // The refused line's rest, and a line after it, are read into an empty buffer (the
        // codec searched the old one: reading on must not look where it looked).
        client.write_all(b"\nD\n").await.unwrap();
        assert!(matches!(
            socket.next().await,
            Some(Err(WireError::UnknownOpcode(_)))
        ));
        assert!(matches!(
            socket.next().await,
            Some(Ok(Message::GetBlocks(_)))
        ));
    }
}
