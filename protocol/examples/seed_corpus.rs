//! Writes the fuzzers' seed corpus: one valid example of every message, and a few valid blocks.
//!
//! `cargo run -p protocol --example seed_corpus -- fuzz/corpus`

use std::path::Path;

use protocol::codec::encode_line;
use protocol::hash::Hash256;
use protocol::tracker::{Leave, Report, TrackerMessage};
use protocol::wire::{
    Ack, AckStatus, Blocks, ErrorCode, ErrorMessage, GetBlocks, Identify, Message, Update,
};
use protocol::{Action, Block, Keypair, Record, genesis};

fn solve(parent: &Block, records: Vec<Record>, key: &Keypair) -> Block {
    let t = Block::template(
        &parent.header,
        records,
        key.account(),
        4,
        parent.header.timestamp + 1000,
    );
    protocol::block::solve(t)
}

fn main() -> std::io::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let out = Path::new(&out);
    let alice = Keypair::from_seed([1; 32]);
    let bob = Keypair::from_seed([2; 32]);
    let join = |k: &Keypair, name: &str| Record::sign(k, 0, Action::Join { name: name.into() });
    let b1 = solve(
        &genesis(),
        vec![join(&alice, "alice"), join(&bob, "bob")],
        &alice,
    );
    let b2 = solve(
        &b1,
        vec![
            Record::sign(
                &alice,
                1,
                Action::Purchase {
                    monkey: "capuchin".into(),
                },
            ),
            Record::sign(
                &bob,
                1,
                Action::Transfer {
                    to: alice.account(),
                    amount: 5,
                },
            ),
            Record::sign(
                &alice,
                2,
                Action::Vote {
                    poll: "monkey-of-the-month".into(),
                    choice: "baboon".into(),
                },
            ),
        ],
        &bob,
    );
    let messages: Vec<Message> = vec![
        Message::Record(b2.records[0].clone()),
        Message::Block(b1.clone()),
        Message::Blocks(Blocks {
            blocks: vec![b1.clone(), b2.clone()],
            more: true,
        }),
        Message::GetBlocks(GetBlocks::default()),
        Message::GetBlocks(GetBlocks {
            locator: vec![b2.header.hash(), genesis().header.hash()],
        }),
        Message::Error(ErrorMessage::new(
            ErrorCode::InvalidRecord,
            "insufficient funds",
        )),
        Message::Ack(Ack {
            id: Hash256([3; 32]),
            status: AckStatus::Pending,
        }),
        Message::Identify(Identify {
            id: bob.account(),
            addr: "127.0.0.1:7001".into(),
        }),
        Message::Hello(protocol::handshake::Hello {
            nonce: protocol::handshake::Nonce([5; 32]),
            to: Some(bob.account()),
            from: None,
        }),
        Message::Proof(protocol::handshake::Proof {
            id: bob.account(),
            addr: "127.0.0.1:7001".into(),
            nonce: protocol::handshake::Nonce([6; 32]),
            sig: bob.sign(b"seed"),
        }),
        Message::Subscribe,
        Message::KeepAlive,
        Message::Update(Update::Block {
            block: b2.clone(),
            received_ms: 1,
        }),
        Message::Update(Update::Tip {
            hash: b2.header.hash(),
            height: 2,
            disconnected: vec![],
            connected: vec![b1.header.hash(), b2.header.hash()],
        }),
    ];
    let report = Report::sign(
        &alice,
        "127.0.0.1:7001".into(),
        5,
        (2, b2.header.hash()),
        0.5,
        20,
    );
    let tracker: Vec<TrackerMessage> = vec![
        TrackerMessage::Report(report),
        TrackerMessage::Leave(Leave::sign(&alice, 6)),
        TrackerMessage::Query,
    ];
    let mut lines: Vec<String> = messages
        .iter()
        .map(|m| encode_line(m).expect("encodes"))
        .collect();
    lines.extend(tracker.iter().map(|m| encode_line(m).expect("encodes")));

    for dir in ["codec", "parse", "block"] {
        std::fs::create_dir_all(out.join(dir))?;
    }
    let mut all = vec![7u8];
    for (i, line) in lines.iter().enumerate() {
        std::fs::write(
            out.join("parse").join(format!("line-{i:02}")),
            line.trim_end(),
        )?;
        all.extend_from_slice(line.as_bytes());
    }
    std::fs::write(out.join("codec").join("every-message"), &all)?;
    std::fs::write(out.join("codec").join("query"), b"\x01Q\n")?;
    for (name, block) in [("genesis", genesis()), ("joins", b1), ("purchases", b2)] {
        std::fs::write(out.join("block").join(name), serde_json::to_vec(&block)?)?;
    }
    Ok(())
}
