//! Records that can never be mined: fresh keys signing sequence numbers 1, 2, 3... and never a
//! join. Each is valid on its own (well formed, correctly signed) and free to make; a node that
//! kept them with its minable records, relayed and stored them, had its pending pool full for
//! good, on every node and across restarts. The node must hold them apart, in a small buffer,
//! and go on admitting and mining honest records.

use std::collections::BTreeMap;

use futures::{SinkExt, StreamExt};
use protocol::params::MAX_SEQ_AHEAD;
use protocol::wire::Message;
use protocol::{Action, Keypair, Record};

use crate::conn::{RawConn, outcome_of};
use crate::{ANSWER_TIMEOUT, Outcome, Target};

/// Records per connection: under the node's burst of messages a connection may send before it
/// is paced, so the flood arrives at full speed; connections run at once.
const PER_CONNECTION: usize = 3000;

/// Signs `count` records: keys of their own, each signing purchases 1 to [`MAX_SEQ_AHEAD`] (the
/// furthest ahead a node keeps a record), never a join.
fn sign(count: usize) -> Vec<Record> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let key = Keypair::from_seed(rand::random());
        for seq in 1..=MAX_SEQ_AHEAD {
            if out.len() == count {
                break;
            }
            let buy = Action::Purchase {
                monkey: "marmoset".into(),
            };
            out.push(Record::sign(&key, seq, buy));
        }
    }
    out
}

/// `target.count` unminable records, sent over several connections at once, every answer read.
/// The note counts the answers (`K waiting`, `E invalid_record`, ...).
pub async fn unminable(target: &Target) -> anyhow::Result<Outcome> {
    let count = target.count;
    // Signing thousands of records is CPU work: off the async threads.
    let records = tokio::task::spawn_blocking(move || sign(count)).await?;
    let mut floods = Vec::new();
    for chunk in records.chunks(PER_CONNECTION) {
        let (target, chunk) = (target.clone(), chunk.to_vec());
        floods.push(tokio::spawn(async move { flood(&target, chunk).await }));
    }
    let mut sent = 0;
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for flood in floods {
        let (n, got) = flood.await??;
        sent += n;
        for (answer, k) in got {
            *answers.entry(answer).or_default() += k;
        }
    }
    let probe = RawConn::open(target).await?.probe().await;
    let mut outcome = outcome_of(sent, probe);
    outcome.errors = answers
        .keys()
        .filter_map(|a| a.strip_prefix("E ").map(String::from))
        .collect();
    outcome.note = answers
        .iter()
        .map(|(answer, k)| format!("{k} {answer}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(outcome)
}

/// Sends `records` on one connection while reading the answers; returns how many were sent and
/// the answers by kind.
async fn flood(
    target: &Target,
    records: Vec<Record>,
) -> anyhow::Result<(usize, BTreeMap<String, usize>)> {
    let (mut sink, mut stream) = RawConn::open(target).await?.split();
    let expected = records.len();
    // Read while writing: a node whose answers nobody reads stops reading too.
    let reader = tokio::spawn(async move {
        let mut answers: BTreeMap<String, usize> = BTreeMap::new();
        let mut got = 0;
        while got < expected {
            let answer = match tokio::time::timeout(ANSWER_TIMEOUT, stream.next()).await {
                Ok(Some(Ok(Message::Ack(ack)))) => format!("K {}", ack.status),
                Ok(Some(Ok(Message::Error(e)))) => format!("E {}", e.code),
                Ok(Some(Ok(_))) => continue,
                _ => break,
            };
            *answers.entry(answer).or_default() += 1;
            got += 1;
        }
        answers
    });
    let mut sent = 0;
    for record in records {
        if sink.feed(Message::Record(record)).await.is_err() {
            break;
        }
        sent += 1;
        if sent % 256 == 0 && sink.flush().await.is_err() {
            break;
        }
    }
    let _ = sink.flush().await;
    Ok((sent, reader.await?))
}
