//! Entry points for fuzzing, shared by the `cargo fuzz` targets in `fuzz/` (nightly) and the
//! test that replays their seed corpus and arbitrary inputs through proptest on stable, so CI
//! runs the very code the fuzzer does. Each takes any bytes and must never panic; each also
//! checks an invariant that must hold for whatever it accepted.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::account::Keypair;
use crate::block::{Block, GENESIS_TIMESTAMP, genesis};
use crate::chain::Chain;
use crate::codec::{LineCodec, WireMessage, encode_line, parse_line};
use crate::handshake::{Hello, Nonce, Proof};
use crate::hash::Hash256;
use crate::params::Params;
use crate::record::Record;
use crate::tracker::TrackerMessage;
use crate::wire::{
    Ack, AckStatus, Blocks, ErrorCode, ErrorMessage, GetBlocks, Identify, Message, Update,
};

/// The line codec: `data` fed in chunks of a size taken from its first byte, for node and
/// tracker messages. Every message it yields encodes to a line that decodes to the same
/// message.
pub fn codec(data: &[u8]) {
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    decode_in_chunks::<Message>(data, chunk);
    decode_in_chunks::<TrackerMessage>(data, chunk);
}

fn decode_in_chunks<M: WireMessage + PartialEq + std::fmt::Debug>(data: &[u8], chunk: usize) {
    let mut codec = LineCodec::<M>::new();
    let mut buffer = BytesMut::new();
    for piece in data.chunks(chunk) {
        buffer.extend_from_slice(piece);
        // Bounded: each iteration consumes a line or stops.
        for _ in 0..data.len() + 1 {
            match codec.decode(&mut buffer) {
                Ok(Some(message)) => round_trip(&message),
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// The message parser on one line (without its `\n`), for node and tracker messages.
pub fn parse(data: &[u8]) {
    if let Ok(message) = parse_line::<Message>(data) {
        round_trip(&message);
    }
    if let Ok(message) = parse_line::<TrackerMessage>(data) {
        round_trip(&message);
    }
}

/// A message that parsed must survive encoding and parsing again unchanged.
fn round_trip<M: WireMessage + PartialEq + std::fmt::Debug>(message: &M) {
    let line = encode_line(message).expect("a parsed message encodes");
    let again =
        parse_line::<M>(line.trim_end_matches('\n').as_bytes()).expect("an encoded message parses");
    assert_eq!(&again, message, "round trip changed the message");
}

/// Block validation: `data` as a block's JSON, checked and inserted into a fresh chain (at the
/// lowest floor, so that blocks reach the deeper rules). Whatever is accepted, the chain's
/// ledger must equal the ledger replayed from genesis.
pub fn block(data: &[u8]) {
    let Ok(block) = serde_json::from_slice::<Block>(data) else {
        return;
    };
    let mut chain = Chain::new(Params::with_floor(0));
    let now = GENESIS_TIMESTAMP + 365 * 24 * 3600 * 1000;
    if chain.insert(block, now).is_ok() {
        let replayed = chain.replay_ledger().expect("the best chain replays");
        assert_eq!(&replayed, chain.ledger(), "ledger differs from its replay");
    }
}

/// One valid example of every node message, made of `record`, two blocks `b1` and `b2` (its
/// child) and `key`'s account: the seed corpus's examples (`examples/seed_corpus.rs`) and the
/// codec test's round trips.
pub fn every_message(record: &Record, b1: &Block, b2: &Block, key: &Keypair) -> Vec<Message> {
    vec![
        Message::Record(record.clone()),
        Message::Block(b1.clone()),
        Message::Blocks(Blocks {
            blocks: vec![b1.clone(), b2.clone()],
            more: true,
            packed: false,
        }),
        Message::Blocks(Blocks {
            blocks: vec![b1.clone(), b2.clone()],
            more: false,
            packed: true,
        }),
        Message::GetBlocks(GetBlocks::default()),
        Message::GetBlocks(GetBlocks::json_after(vec![
            b2.header.hash(),
            genesis().header.hash(),
        ])),
        Message::GetBlocks(GetBlocks {
            locator: Vec::new(),
            packed: true,
        }),
        Message::Error(ErrorMessage::new(ErrorCode::InvalidRecord, "bad signature")),
        Message::Ack(Ack {
            id: Hash256([2; 32]),
            status: AckStatus::Pending,
        }),
        Message::Identify(Identify {
            id: key.account(),
            addr: "127.0.0.1:7001".into(),
        }),
        Message::Hello(Hello {
            nonce: Nonce([5; 32]),
            to: Some(key.account()),
            from: Some(b1.header.miner),
        }),
        Message::Proof(Proof {
            id: key.account(),
            addr: "127.0.0.1:7001".into(),
            nonce: Nonce([6; 32]),
            sig: key.sign(b"any"),
        }),
        Message::Subscribe,
        Message::KeepAlive,
        Message::Update(Update::Block {
            block: b2.clone(),
            received_ms: 7,
        }),
        Message::Update(Update::Tip {
            hash: b2.header.hash(),
            height: 2,
            disconnected: vec![Hash256([3; 32])],
            connected: vec![b1.header.hash(), b2.header.hash()],
        }),
    ]
}
