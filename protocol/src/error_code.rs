//! The codes of `E` lines, from nodes, the tracker and the codec: one enum shared by every
//! party, so that the side that answers and the side that reads cannot spell a code apart.

use serde::{Deserialize, Serialize};

/// The `code` of an `E`, from a node or the tracker. On the wire it is the snake_case name
/// (`invalid_record`); a code this build does not know makes the whole line a bad payload
/// rather than a guess, so a program never acts on an error it misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A line longer than `MAX_LINE` (see `codec.rs`).
    LineTooLong,
    /// A line that is not UTF-8.
    NotUtf8,
    /// An opcode the receiver does not know.
    UnknownOpcode,
    /// A line that is not an opcode, a space and JSON.
    Malformed,
    /// An opcode that needs a payload came without one.
    MissingPayload,
    /// A payload that is not JSON of the right shape, or breaks a limit.
    BadPayload,
    /// The sender could not encode its answer (a bug).
    Internal,
    /// The socket failed.
    Io,
    /// A message the receiver never takes (a `U` sent to a node, a `T` to the tracker).
    Unexpected,
    /// The connection's slot went to a newer connection.
    Evicted,
    /// The connection's address holds as many bytes of the receiver's buffers as it may, or
    /// its bytes were taken for another address's (see the node's `buffers.rs`).
    BufferFull,
    /// The connection was silent for too long.
    Timeout,
    /// The address is banned for a while.
    Banned,
    /// A subscriber fell too far behind on updates.
    Lagged,
    /// A record the node refused (the message says why).
    InvalidRecord,
    /// A record the node could not store, so it is not acknowledged.
    NotStored,
    /// A provably invalid block.
    InvalidBlock,
    /// A link that did not prove who it is (see `handshake.rs`).
    Handshake,
    /// An `I`: a claim to be a node that proves nothing.
    Unproven,
    /// A tracker report or leave whose signature does not verify.
    BadSignature,
    /// A tracker report with an address it cannot carry.
    BadAddress,
    /// A tracker report with a load it cannot carry.
    BadReport,
    /// A tracker report or leave whose timestamp is not after the last one.
    Replayed,
    /// A tracker report whose timestamp is too far from the tracker's clock.
    ClockSkew,
    /// The tracker's table is full.
    TrackerFull,
    /// Too many new node ids from one address lately.
    TooManyNew,
    /// Too many active node ids from one address.
    TooManyActive,
    /// A report for another node than the one this connection reports for.
    WrongConnection,
}

impl ErrorCode {
    /// The code as it is written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::LineTooLong => "line_too_long",
            ErrorCode::NotUtf8 => "not_utf8",
            ErrorCode::UnknownOpcode => "unknown_opcode",
            ErrorCode::Malformed => "malformed",
            ErrorCode::MissingPayload => "missing_payload",
            ErrorCode::BadPayload => "bad_payload",
            ErrorCode::Internal => "internal",
            ErrorCode::Io => "io",
            ErrorCode::Unexpected => "unexpected",
            ErrorCode::BufferFull => "buffer_full",
            ErrorCode::Evicted => "evicted",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Banned => "banned",
            ErrorCode::Lagged => "lagged",
            ErrorCode::InvalidRecord => "invalid_record",
            ErrorCode::NotStored => "not_stored",
            ErrorCode::InvalidBlock => "invalid_block",
            ErrorCode::Handshake => "handshake",
            ErrorCode::Unproven => "unproven",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::BadAddress => "bad_address",
            ErrorCode::BadReport => "bad_report",
            ErrorCode::Replayed => "replayed",
            ErrorCode::ClockSkew => "clock_skew",
            ErrorCode::TrackerFull => "tracker_full",
            ErrorCode::TooManyNew => "too_many_new",
            ErrorCode::TooManyActive => "too_many_active",
            ErrorCode::WrongConnection => "wrong_connection",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
