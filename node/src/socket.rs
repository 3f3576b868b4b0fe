//! A connection's socket: wire lines read and written, and reading on while a write waits.
//!
//! A connection that stopped reading while it wrote could stall a link for good: two nodes
//! relaying big blocks to each other at the same moment each filled the other's socket
//! buffers, neither read, and both waited until the send timeout closed the link (10 s in which
//! one of them mined alone; the bench's throughput fell from 2,000 to 500 purchases a second in
//! about one run in six). Here, while a write waits, the lines the other end sends are read and
//! kept, up to [`READ_AHEAD_BYTES`], and handed out first by [`Socket::next`]: the other end's
//! write completes, it reads again, and so does ours.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{SinkExt, StreamExt};
use protocol::codec::{LineCodec, WireError};
use protocol::wire::Message;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{FramedRead, FramedWrite};

/// Most bytes read ahead while writes wait, until the connection takes the lines read: one
/// line of the largest size ([`protocol::codec::MAX_LINE`]), so the other end's write of any
/// line can complete. Per connection, bounded whatever the other end sends.
pub const READ_AHEAD_BYTES: u64 = protocol::codec::MAX_LINE as u64;

/// A line read: a message, a line that did not parse, or `None` at the end of the stream.
pub type Frame = Option<Result<Message, WireError>>;

/// The two halves of a connection's socket, and the lines read ahead.
pub struct Socket {
    reader: FramedRead<Counted<OwnedReadHalf>, LineCodec<Message>>,
    writer: FramedWrite<OwnedWriteHalf, LineCodec<Message>>,
    /// Lines read while a write waited, oldest first.
    ahead: VecDeque<Frame>,
    /// The reader's byte count when `ahead` was last empty.
    mark: u64,
}

impl Socket {
    /// Wraps `stream`.
    pub fn new(stream: TcpStream) -> Socket {
        let (read, write) = stream.into_split();
        let codec = LineCodec::<Message>::new;
        Socket {
            reader: FramedRead::new(
                Counted {
                    inner: read,
                    read: 0,
                },
                codec(),
            ),
            writer: FramedWrite::new(write, codec()),
            ahead: VecDeque::new(),
            mark: 0,
        }
    }

    /// The next line: one read ahead, else from the socket. Cancel-safe.
    pub async fn next(&mut self) -> Frame {
        match self.ahead.pop_front() {
            Some(frame) => frame,
            None => self.reader.next().await,
        }
    }

    /// The buffer of bytes to write, for lines encoded once and sent on many connections.
    pub fn write_buffer_mut(&mut self) -> &mut tokio_util::bytes::BytesMut {
        self.writer.write_buffer_mut()
    }

    /// Queues `message` (a full buffer is written out first, reading ahead meanwhile).
    pub async fn feed(&mut self, message: Message) -> Result<(), WireError> {
        let (writer, reading) = self.split();
        tokio::select! {
            biased;
            fed = writer.feed(message) => fed,
            never = reading => match never {},
        }
    }

    /// Writes out what is queued, reading ahead meanwhile.
    pub async fn flush(&mut self) -> Result<(), WireError> {
        let (writer, reading) = self.split();
        tokio::select! {
            biased;
            flushed = SinkExt::<Message>::flush(writer) => flushed,
            never = reading => match never {},
        }
    }

    /// The writer, and a future that reads lines ahead until [`READ_AHEAD_BYTES`] since the
    /// queue was last empty (or the end of the stream), then waits for ever.
    fn split(
        &mut self,
    ) -> (
        &mut FramedWrite<OwnedWriteHalf, LineCodec<Message>>,
        impl Future<Output = Infallible> + '_,
    ) {
        if self.ahead.is_empty() {
            self.mark = self.reader.get_ref().read;
        }
        let (reader, ahead, mark) = (&mut self.reader, &mut self.ahead, self.mark);
        let reading = async move {
            loop {
                let ended = matches!(ahead.back(), Some(None));
                if ended || reader.get_ref().read - mark >= READ_AHEAD_BYTES {
                    return std::future::pending().await;
                }
                ahead.push_back(reader.next().await);
            }
        };
        (&mut self.writer, reading)
    }
}

/// A reader that counts the bytes read through it.
struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let got = buf.filled().len() - before;
        self.read += got as u64;
        polled
    }
}
