//! Holding every connection slot: `target.count` subscribers (`S`) spread over four source
//! addresses, none of which ever says anything again (not even an answer to the node's `Z`).
//! While they are held, a new connection from one of those addresses and one from a fifth
//! address each ask for the chain, timed: a node that refuses newcomers when full (`E busy`) is
//! shut to everyone for as long as the attacker likes; one that closes the longest-idle
//! connection of the biggest holder serves them at once.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use protocol::wire::{ErrorCode, GetBlocks, Message};

use crate::conn::{RawConn, outcome_of};
use crate::{ANSWER_TIMEOUT, Outcome, Target};

/// How many source addresses the held connections are spread over: more than one, so that a
/// cap per address alone does not stop the attack.
const HOLDERS: u8 = 4;
/// How long each held subscription may take to be answered before the next is opened.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The `n`th address after `from` (the last byte of an IPv4 address counts up; IPv6 stays
/// put: one address can only show the per-address cap).
pub fn nth_address(from: IpAddr, n: u8) -> IpAddr {
    match from {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            IpAddr::from([a, b, c, d.wrapping_add(n)])
        }
        IpAddr::V6(_) => from,
    }
}

/// The attack: hold, then time two newcomers, then let go. The outcome's probe is the newcomer
/// from the attacker's own first address.
pub async fn hold_slots(target: &Target) -> anyhow::Result<Outcome> {
    let mut held = Vec::new();
    let mut failed = 0;
    for i in 0..target.count {
        let from = nth_address(target.from, (i % usize::from(HOLDERS)) as u8);
        let holder = Target {
            from,
            ..target.clone()
        };
        let Ok(mut conn) = RawConn::open(&holder).await else {
            failed += 1;
            continue;
        };
        if !conn.send(&Message::Subscribe).await {
            failed += 1;
            continue;
        }
        // The node's `U tip` says the subscription is taken; a refusal says `E`.
        match tokio::time::timeout(SUBSCRIBE_TIMEOUT, conn.next_raw()).await {
            Ok(Some(Message::Update(_))) => held.push(conn),
            _ => failed += 1,
        }
    }
    let other = Target {
        from: nth_address(target.from, HOLDERS),
        ..target.clone()
    };
    let (other_served, other_wait) = timed_request(&other).await;
    let started = Instant::now();
    let conn = RawConn::open(target).await?;
    let probe = conn.probe().await;
    let same_wait = started.elapsed();
    // Evicted holders were told so: count them without waiting on the ones still open.
    let mut evicted = 0;
    for conn in &mut held {
        if let Ok(Some(Message::Error(e))) =
            tokio::time::timeout(Duration::from_millis(1), conn.next_raw()).await
            && e.code == ErrorCode::Evicted
        {
            evicted += 1;
        }
    }
    let mut outcome = outcome_of(target.count, probe);
    outcome.newcomer_wait = Some(other_wait.max(same_wait));
    outcome.note = format!(
        "{} subscribers held from {HOLDERS} addresses ({failed} not taken), {evicted} evicted \
         so far; a newcomer from another address served: {other_served} in {other_wait:?}, \
         from the attacker's own address in {same_wait:?}",
        held.len()
    );
    drop(held);
    Ok(outcome)
}

/// Opens a connection from `target.from`, asks for the chain, and says whether the answer came
/// and how long it took.
async fn timed_request(target: &Target) -> (bool, Duration) {
    let started = Instant::now();
    let served = async {
        let mut conn = RawConn::open(target).await.ok()?;
        let ask = Message::GetBlocks(GetBlocks::default());
        if !conn.send(&ask).await {
            return None;
        }
        // A bounded number of lines: a node sends its own `D` first at most.
        for _ in 0..16 {
            match conn.next_raw().await? {
                Message::Blocks(_) => return Some(()),
                Message::Error(_) => return None,
                _ => {}
            }
        }
        None
    };
    let served = tokio::time::timeout(ANSWER_TIMEOUT, served)
        .await
        .ok()
        .flatten()
        .is_some();
    (served, started.elapsed())
}
