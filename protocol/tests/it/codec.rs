//! The line codec and the messages: round trips, chunking, limits, and garbage.

use bytes::BytesMut;
use proptest::prelude::*;
use protocol::codec::{LineCodec, MAX_LINE, WireError, encode_line};
use protocol::genesis;
use protocol::hash::Hash256;
use protocol::params::MAX_BLOCKS_PER_MESSAGE;
use protocol::tracker::{Leave, NodeInfo, NodeStatus, Report, Topology, TrackerMessage};
use protocol::wire::{ErrorCode, ErrorMessage, GetBlocks, Message};
use tokio_util::codec::{Decoder, Encoder};

use super::*;

/// One of every node message ([`protocol::fuzzing::every_message`]).
fn every_message() -> Vec<Message> {
    let b1 = mine_on(&genesis(), vec![join(&key(1), "alice")], FLOOR);
    let b2 = mine_on(&b1, vec![buy(&key(1), 1, "baboon")], FLOOR);
    protocol::fuzzing::every_message(&b2.records[0], &b1, &b2, &key(4))
}

fn every_tracker_message() -> Vec<TrackerMessage> {
    let k = key(3);
    vec![
        TrackerMessage::Report(Report::sign(
            &k,
            "127.0.0.1:7000".into(),
            1,
            (0, Hash256::ZERO),
            0.25,
            20,
        )),
        TrackerMessage::Leave(Leave::sign(&k, 2)),
        TrackerMessage::Query,
        TrackerMessage::Topology(Topology {
            nodes: vec![NodeInfo {
                id: k.account(),
                addr: "127.0.0.1:7000".into(),
                status: NodeStatus::A,
                last_seen_ms: 10,
                tip_height: 3,
                tip_hash: Hash256([4; 32]),
                load: 0.5,
                difficulty: 21,
            }],
            version: Some(7),
            unchanged: false,
        }),
        TrackerMessage::Topology(Topology {
            version: Some(7),
            unchanged: true,
            ..Topology::default()
        }),
        TrackerMessage::Error(ErrorMessage::new(
            ErrorCode::TrackerFull,
            "too many connections",
        )),
    ]
}

fn encode_all<M: protocol::codec::WireMessage>(messages: &[M]) -> Vec<u8> {
    let mut codec = LineCodec::<M>::new();
    let mut buf = BytesMut::new();
    for m in messages {
        codec.encode(m, &mut buf).unwrap();
    }
    buf.to_vec()
}

/// Feeds `bytes` to a fresh decoder `chunk` bytes at a time, then signals end of stream.
fn decode_chunked<M: protocol::codec::WireMessage>(
    bytes: &[u8],
    chunk: usize,
) -> Result<Vec<M>, WireError> {
    let mut codec = LineCodec::<M>::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(m) = codec.decode(&mut buf)? {
            out.push(m);
        }
    }
    while let Some(m) = codec.decode_eof(&mut buf)? {
        out.push(m);
    }
    Ok(out)
}

#[test]
fn every_message_round_trips() {
    let messages = every_message();
    let bytes = encode_all(&messages);
    assert_eq!(
        decode_chunked::<Message>(&bytes, bytes.len()).unwrap(),
        messages
    );
    let tracker = every_tracker_message();
    let bytes = encode_all(&tracker);
    assert_eq!(
        decode_chunked::<TrackerMessage>(&bytes, bytes.len()).unwrap(),
        tracker
    );
}

#[test]
fn the_same_bytes_in_every_chunk_size_give_the_same_messages() {
    let messages = every_message();
    let bytes = encode_all(&messages);
    // Every size up to 300, then a spread of larger ones (every size would be O(n^2) slow).
    let sizes = (1..300)
        .chain((300..bytes.len()).step_by(97))
        .chain([bytes.len()]);
    for chunk in sizes {
        assert_eq!(
            decode_chunked::<Message>(&bytes, chunk).unwrap(),
            messages,
            "chunk {chunk}"
        );
    }
}

#[test]
fn humans_can_type_it() {
    assert_eq!(
        decode_chunked::<Message>(b"D\n", 1).unwrap(),
        vec![Message::GetBlocks(GetBlocks::default())]
    );
    // No trailing newline (printf 'D' | nc), CRLF, and blank lines are all fine.
    assert_eq!(decode_chunked::<Message>(b"D", 1).unwrap().len(), 1);
    assert_eq!(
        decode_chunked::<Message>(b"\n\r\nD\r\n", 1).unwrap().len(),
        1
    );
    let line = encode_line(&Message::GetBlocks(GetBlocks::default())).unwrap();
    assert_eq!(line, "D\n");
}

/// An `E` line of exactly `len` bytes before its newline.
fn error_line_of(len: usize) -> Vec<u8> {
    let empty = encode_line(&Message::Error(ErrorMessage::new(ErrorCode::Io, ""))).unwrap();
    let pad = len - (empty.len() - 1);
    let line = encode_line(&Message::Error(ErrorMessage::new(
        ErrorCode::Io,
        "m".repeat(pad),
    )))
    .unwrap();
    assert_eq!(line.len(), len + 1);
    line.into_bytes()
}

#[test]
fn exactly_the_limit_passes_and_one_byte_more_fails() {
    let ok = error_line_of(MAX_LINE);
    assert_eq!(decode_chunked::<Message>(&ok, 1 << 20).unwrap().len(), 1);
    let over = error_line_of(MAX_LINE + 1);
    assert!(matches!(
        decode_chunked::<Message>(&over, 1 << 20),
        Err(WireError::LineTooLong { limit: MAX_LINE })
    ));
}

#[test]
fn an_endless_line_fails_once_past_the_limit_without_buffering_more() {
    let mut codec = LineCodec::<Message>::with_max_line(1000);
    let mut buf = BytesMut::from(&[b'x'; 1000][..]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(b"x");
    assert!(matches!(
        codec.decode(&mut buf),
        Err(WireError::LineTooLong { limit: 1000 })
    ));
}

#[test]
fn an_oversize_message_is_not_sent() {
    let mut codec = LineCodec::<Message>::with_max_line(100);
    let big = Message::Error(ErrorMessage::new(ErrorCode::Io, "y".repeat(200)));
    assert!(matches!(
        codec.encode(&big, &mut BytesMut::new()),
        Err(WireError::LineTooLong { .. })
    ));
}

#[test]
fn bad_lines_are_error_values() {
    let err = |bytes: &[u8]| decode_chunked::<Message>(bytes, 64).unwrap_err();
    assert!(matches!(err(b"X {}\n"), WireError::UnknownOpcode(_)));
    assert!(matches!(err(b"hello\n"), WireError::UnknownOpcode(_)));
    assert!(matches!(err(b"\xff\xfe\n"), WireError::NotUtf8));
    assert!(matches!(err(b"A\n"), WireError::MissingPayload('A')));
    assert!(matches!(err(b"A{}\n"), WireError::Malformed));
    assert!(matches!(
        err(b"A {not json\n"),
        WireError::BadPayload { opcode: 'A', .. }
    ));
    assert!(matches!(
        err(b"A {\"seq\": 1}\n"),
        WireError::BadPayload { opcode: 'A', .. }
    ));
    assert!(matches!(
        err(b"B [1,2,3]\n"),
        WireError::BadPayload { opcode: 'B', .. }
    ));
    let huge_locator = format!(
        "D {{\"locator\": [{}]}}\n",
        vec![format!("\"{}\"", Hash256::ZERO); 65].join(",")
    );
    assert!(matches!(
        err(huge_locator.as_bytes()),
        WireError::BadPayload { opcode: 'D', .. }
    ));
    assert_eq!(err(b"X\n").code(), ErrorCode::UnknownOpcode);
}

#[test]
fn a_packed_c_is_read_whole_or_is_a_bad_payload() {
    use base64::Engine as _;
    let base64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let line = |packed: &str| format!("C {{\"packed\":\"{packed}\",\"more\":true}}\n");
    let b1 = mine_on(&genesis(), vec![join(&key(1), "alice")], FLOOR);
    let full = vec![b1.clone(); MAX_BLOCKS_PER_MESSAGE];
    let packed = protocol::binary::pack_blocks(&full);
    let [Message::Blocks(c)] =
        &decode_chunked::<Message>(line(&base64(&packed)).as_bytes(), 999).unwrap()[..]
    else {
        panic!("not one C");
    };
    assert_eq!(
        (c.blocks.len(), c.more, c.packed),
        (MAX_BLOCKS_PER_MESSAGE, true, true)
    );
    assert_eq!(c.blocks[0], b1);

    let bad = |text: String| {
        let e = decode_chunked::<Message>(text.as_bytes(), 999).unwrap_err();
        assert!(
            matches!(e, WireError::BadPayload { opcode: 'C', .. }),
            "{e} for {}",
            &text[..text.len().min(80)]
        );
    };
    let one_more = protocol::binary::pack_blocks(&vec![b1.clone(); MAX_BLOCKS_PER_MESSAGE + 1]);
    bad(line(&base64(&one_more)));
    bad(line(&base64(&packed[..packed.len() - 1])));
    let mut stray = packed.clone();
    stray.push(0);
    bad(line(&base64(&stray)));
    bad(line("not base64!"));
    bad(line(&base64(b"\x00\x01 not a block")));
    bad("C {\"packed\":\"\",\"blocks\":[],\"more\":true}\n".to_string());
    bad("C {\"more\":true}\n".to_string());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..64) {
        let _ = decode_chunked::<Message>(&bytes, chunk);
        let _ = decode_chunked::<TrackerMessage>(&bytes, chunk);
    }

    #[test]
    fn damaged_packed_blocks_never_panic(
        cut in 0usize..2000,
        flips in proptest::collection::vec((0usize..2000, any::<u8>()), 0..8),
    ) {
        // Valid blocks, then cut and overwritten, so that most cases get past the first
        // header into the counts, lengths and records.
        let k = key(1);
        let b1 = protocol::Block::template(&genesis().header, vec![join(&k, "al")], k.account(), 9, 5);
        let b2 = protocol::Block::template(&b1.header, vec![buy(&k, 1, "baboon")], k.account(), 9, 6);
        let mut bytes = protocol::binary::pack_blocks(&[b1, b2]);
        for (at, byte) in flips {
            let len = bytes.len();
            bytes[at % len] = byte;
        }
        bytes.truncate(cut.min(bytes.len()));
        let _ = protocol::binary::unpack_blocks(&bytes, MAX_BLOCKS_PER_MESSAGE);
    }

    #[test]
    fn arbitrary_payloads_after_a_real_opcode_never_panic(op in "[A-Z]", payload in ".{0,300}") {
        let line = format!("{op} {payload}\n");
        let _ = decode_chunked::<Message>(line.as_bytes(), 7);
        let _ = decode_chunked::<TrackerMessage>(line.as_bytes(), 7);
    }
}

#[test]
fn an_unknown_ack_status_or_error_code_is_a_bad_payload_not_a_guess() {
    let err = |bytes: &[u8]| decode_chunked::<Message>(bytes, 64).unwrap_err();
    let id = "00".repeat(32);
    for status in ["pending", "waiting", "mined"] {
        let line = format!("K {{\"id\":\"{id}\",\"status\":\"{status}\"}}\n");
        let [Message::Ack(ack)] = &decode_chunked::<Message>(line.as_bytes(), 7).unwrap()[..]
        else {
            panic!("{line} is not one K");
        };
        assert_eq!(serde_json::to_value(ack.status).unwrap(), status);
    }
    let line = format!("K {{\"id\":\"{id}\",\"status\":\"confirmed\"}}\n");
    assert!(matches!(
        err(line.as_bytes()),
        WireError::BadPayload { opcode: 'K', .. }
    ));

    let line = b"E {\"code\":\"invalid_record\",\"message\":\"no\"}\n";
    let [Message::Error(e)] = &decode_chunked::<Message>(line, 5).unwrap()[..] else {
        panic!("not one E");
    };
    assert_eq!(e.code, ErrorCode::InvalidRecord);
    assert!(matches!(
        err(b"E {\"code\":\"oops\",\"message\":\"no\"}\n"),
        WireError::BadPayload { opcode: 'E', .. }
    ));
}

#[test]
fn every_error_code_is_written_as_its_name() {
    for code in [
        ErrorCode::LineTooLong,
        ErrorCode::UnknownOpcode,
        ErrorCode::InvalidRecord,
        ErrorCode::NotStored,
        ErrorCode::TrackerFull,
        ErrorCode::WrongConnection,
        ErrorCode::BufferFull,
    ] {
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, format!("\"{code}\""));
        assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
    }
}
