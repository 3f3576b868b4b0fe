//! Writes the fuzzers' seed corpus: one valid example of every message, and a few valid blocks.
//!
//! `cargo run -p protocol --example seed_corpus -- fuzz/corpus`

use std::path::Path;

use protocol::codec::encode_line;
use protocol::tracker::{Leave, Report, TrackerMessage};
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
    let messages = protocol::fuzzing::every_message(&b2.records[0], &b1, &b2, &bob);
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
