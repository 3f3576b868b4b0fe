//! The line codec: one message per line, an ASCII opcode letter, optionally a space and a JSON
//! value, then `\n`. The length limit is checked before a line is buffered past it, and every
//! malformed line is an error value, never a panic.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error_code::ErrorCode;

/// Longest line accepted, in bytes, not counting its `\n`.
pub const MAX_LINE: usize = 8 * 1024 * 1024;

/// A message type that travels as lines.
pub trait WireMessage: Sized {
    /// The opcode letter.
    fn opcode(&self) -> u8;
    /// The JSON payload, if the message has one.
    fn payload(&self) -> Result<Option<String>, serde_json::Error>;
    /// Parses a message from its opcode and payload.
    fn parse(opcode: u8, payload: Option<&str>) -> Result<Self, WireError>;
}

/// What can go wrong with a line.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The line (or the unterminated rest of the buffer) is over the limit.
    #[error("line longer than {limit} bytes")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// The line is not UTF-8.
    #[error("line is not valid UTF-8")]
    NotUtf8,
    /// The first byte is not a known opcode.
    #[error("unknown opcode {0:?}")]
    UnknownOpcode(String),
    /// The opcode is not followed by a space or the end of the line.
    #[error("an opcode is one letter, then a space or the end of the line")]
    Malformed,
    /// The opcode needs a JSON payload and has none.
    #[error("opcode {0} needs a JSON payload")]
    MissingPayload(char),
    /// The payload is not valid JSON of the right shape.
    #[error("bad {opcode} payload: {reason}")]
    BadPayload {
        /// The opcode.
        opcode: char,
        /// What serde or a check said.
        reason: String,
    },
    /// A message could not be turned into JSON (a bug, not bad input).
    #[error("could not encode message: {0}")]
    Encode(#[from] serde_json::Error),
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The receiver holds as many bytes of unfinished lines and unread answers for the sender's
    /// address (or in all) as it will.
    #[error("buffers full: {0}")]
    BufferFull(String),
}

impl WireError {
    /// The short code sent back in an `E` message.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::LineTooLong { .. } => ErrorCode::LineTooLong,
            WireError::NotUtf8 => ErrorCode::NotUtf8,
            WireError::UnknownOpcode(_) => ErrorCode::UnknownOpcode,
            WireError::Malformed => ErrorCode::Malformed,
            WireError::MissingPayload(_) => ErrorCode::MissingPayload,
            WireError::BadPayload { .. } => ErrorCode::BadPayload,
            WireError::Encode(_) => ErrorCode::Internal,
            WireError::Io(_) => ErrorCode::Io,
            WireError::BufferFull(_) => ErrorCode::BufferFull,
        }
    }

    /// Parses JSON for `opcode`, turning serde's error into [`WireError::BadPayload`].
    pub fn json<T: serde::de::DeserializeOwned>(
        opcode: u8,
        payload: Option<&str>,
    ) -> Result<T, WireError> {
        let text = payload.ok_or(WireError::MissingPayload(opcode as char))?;
        serde_json::from_str(text).map_err(|e| WireError::BadPayload {
            opcode: opcode as char,
            reason: e.to_string(),
        })
    }
}

/// Frames lines into messages of type `M` and back.
#[derive(Debug)]
pub struct LineCodec<M> {
    max_line: usize,
    /// Bytes already searched for `\n`, so a slow line is not rescanned from its start.
    scanned: usize,
    _message: PhantomData<fn() -> M>,
}

impl<M> LineCodec<M> {
    /// A codec with the protocol's [`MAX_LINE`].
    pub fn new() -> LineCodec<M> {
        LineCodec::with_max_line(MAX_LINE)
    }

    /// A codec with another limit (tests, or a tracker that expects short lines).
    pub fn with_max_line(max_line: usize) -> LineCodec<M> {
        LineCodec {
            max_line,
            scanned: 0,
            _message: PhantomData,
        }
    }
}

impl<M> Default for LineCodec<M> {
    fn default() -> Self {
        LineCodec::new()
    }
}

/// Parses one line (without its `\n`) into a message.
pub fn parse_line<M: WireMessage>(line: &[u8]) -> Result<M, WireError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| WireError::NotUtf8)?;
    let opcode = *line.first().ok_or(WireError::Malformed)?;
    if !opcode.is_ascii_uppercase() {
        return Err(WireError::UnknownOpcode(
            text.chars().next().unwrap_or(' ').to_string(),
        ));
    }
    let payload = match &text[1..] {
        "" => None,
        rest => {
            let json = rest.strip_prefix(' ').ok_or(WireError::Malformed)?;
            Some(json).filter(|j| !j.trim().is_empty())
        }
    };
    M::parse(opcode, payload)
}

/// Encodes a message as one line, `\n` included.
pub fn encode_line<M: WireMessage>(message: &M) -> Result<String, WireError> {
    let mut line = String::new();
    line.push(message.opcode() as char);
    if let Some(payload) = message.payload()? {
        line.push(' ');
        line.push_str(&payload);
    }
    line.push('\n');
    Ok(line)
}

impl<M: WireMessage> Decoder for LineCodec<M> {
    type Item = M;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<M>, WireError> {
        loop {
            let Some(offset) = src[self.scanned..].iter().position(|b| *b == b'\n') else {
                if src.len() > self.max_line {
                    return Err(WireError::LineTooLong {
                        limit: self.max_line,
                    });
                }
                self.scanned = src.len();
                return Ok(None);
            };
            let end = self.scanned + offset;
            self.scanned = 0;
            if end > self.max_line {
                src.advance(end + 1);
                return Err(WireError::LineTooLong {
                    limit: self.max_line,
                });
            }
            let line = src.split_to(end + 1);
            let line = &line[..end];
            // Blank lines (a stray Enter in nc) are not messages.
            if line.is_empty() || line == b"\r" {
                continue;
            }
            return parse_line(line).map(Some);
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<M>, WireError> {
        match self.decode(src)? {
            Some(message) => Ok(Some(message)),
            // A last line without its `\n` (`printf 'D' | nc`) still counts.
            None if !src.is_empty() => {
                let line = src.split();
                self.scanned = 0;
                parse_line(&line).map(Some)
            }
            None => Ok(None),
        }
    }
}

impl<M: WireMessage> Encoder<M> for LineCodec<M> {
    type Error = WireError;

    fn encode(&mut self, message: M, dst: &mut BytesMut) -> Result<(), WireError> {
        Encoder::<&M>::encode(self, &message, dst)
    }
}

impl<M: WireMessage> Encoder<&M> for LineCodec<M> {
    type Error = WireError;

    fn encode(&mut self, message: &M, dst: &mut BytesMut) -> Result<(), WireError> {
        let line = encode_line(message)?;
        if line.len() - 1 > self.max_line {
            return Err(WireError::LineTooLong {
                limit: self.max_line,
            });
        }
        dst.reserve(line.len());
        dst.put_slice(line.as_bytes());
        Ok(())
    }
}
